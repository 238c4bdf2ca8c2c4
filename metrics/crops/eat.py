"""EAT's two face crops (yuangan/evaluation_eat): `eat-aligned` for PSNR/SSIM/LMD/FID, `emotion-chip` for Acc_emo.

eat-aligned (code/preprocess.py --need_align_crop -> code/utils_crop.py crop_and_align), per frame:
  grey = cv2.COLOR_BGR2GRAY of the RGB frame (EAT's channel mix-up, kept: it decides which frames have a
  face); dlib HOG detector, upsample 1; the FIRST detection (dlib orders detections by score, so with two
  faces the more confident, usually the larger, one); dlib 68 points (integers); similarity (Umeyama, in
  float32 like EAT's float32 points) from EAT's mean-face template points 27-44 (nose and eyes) onto the
  landmarks; skimage `warp` of the frame through it to 163x163 (bilinear, black outside), x255 truncated
  to uint8, rows/cols 1..128 -> 128x128. EAT ships `base_68.npy` and `base_68_close.npy` and picks one by
  eye openness; the two files are byte-identical, so the switch is a no-op and one template is shipped.
  Frames without a face are dropped (kept/dropped say which). `roi=True` is utils_crop_psnr.py's variant
  (test_psnr_ssim.py with --bool_crop_and_align True): the frame is first cut to a square of side
  2*int(0.64*h) around the box centre and INTER_AREA-resized to 163 px; a square starting left of or
  above the frame is an empty numpy slice there, so that frame is dropped, as EAT drops it.
  Not reproduced: EAT then writes the crops with OpenCV's lossy `mp4v` codec before scoring; callers that
  want that loss re-encode the crops themselves.

emotion-chip (code/face_alignment_code/lib/face_align_cuda.py), per RGB frame: dlib HOG (upsample 1); if
  no face, dlib's mmod CNN (upsample 1); then the CNN again after a linear contrast stretch (LUT from the
  red channel's histogram), after CLAHE (clip 2.5, 8x8 tiles, on Y of YCrCb) and after histogram
  equalisation of Y, each stage applied to the previous stage's image; no face after that: the frame is
  dropped. The 5-point predictor on the first detection, then `dlib.get_face_chip(size=224, padding=0.25)`
  from the (possibly enhanced) image the face was found in.
  Deliberate differences, recorded in CropResult.deviations when they touch a frame: EAT's CLAHE and
  equalisation stages write BGR into its RGB image, so a face found there is detected on and chipped from
  swapped colours; here they stay RGB. EAT's contrast stretch divides by zero when the red channel holds
  a single value below 255 (the process dies and the rest of the clip's chips are silently lost); here
  that stage leaves the image unchanged and the frame goes on to the next stage.
"""
from __future__ import annotations

import functools

import numpy as np

from metrics.crops import CropResult, register
from metrics.crops.common import CropCollector, iter_frames, length_hint, similarity
from metrics.errors import UserError

__all__ = ["EAT_TEMPLATE_68", "eat_aligned", "emotion_chip"]

# evaluation_eat code/base_68.npy: EAT's mean face, 68 (x, y) points in a 163x163 frame (== base_68_close.npy)
EAT_TEMPLATE_68 = np.array([
    [8, 41], [9, 56], [12, 71], [15, 86], [19, 101], [28, 113], [40, 122], [53, 128], [68, 129], [83, 127],
    [94, 119], [104, 109], [111, 97], [115, 82], [117, 68], [120, 53], [120, 38], [15, 32], [23, 24], [33, 21],
    [44, 23], [55, 27], [74, 26], [84, 22], [95, 20], [105, 22], [113, 30], [65, 37], [65, 47], [65, 57],
    [66, 68], [54, 75], [60, 77], [66, 78], [71, 76], [77, 75], [28, 39], [35, 35], [43, 35], [50, 40],
    [43, 42], [34, 42], [79, 40], [86, 34], [94, 34], [100, 38], [95, 41], [87, 41], [45, 95], [53, 92],
    [61, 90], [66, 92], [72, 90], [79, 92], [87, 94], [80, 99], [73, 103], [67, 104], [61, 103], [53, 101],
    [48, 96], [61, 95], [66, 95], [72, 95], [84, 95], [72, 95], [66, 96], [61, 95]], dtype=np.int64)
EAT_ALIGN_POINTS = slice(27, 45)  # nose 27-35 and eye points 36-44
EAT_WARP_SIZE = 163
EAT_CROP = slice(1, 129)  # 128x128 out of the 163x163 warp
EAT_ROI_RATIO, EAT_ROI_SIZE = 0.64, 163
CHIP_SIZE, CHIP_PADDING = 224, 0.25
CLAHE_CLIP, CLAHE_TILES = 2.5, (8, 8)
CHIP_STAGES = ("hog", "mmod", "mmod+stretch", "mmod+clahe", "mmod+equalise")


def _dlib():
    try:
        import dlib
    except ImportError:
        raise UserError("face crops need dlib, which is not installed; pip install 'edtalk-bench[faces]'") from None
    return dlib


@functools.lru_cache(maxsize=8)
def _load_dlib_model(key: str, file: str, size: int, mtime_ns: int):
    """Load weight file `key` once per file version, hash-checking it then (a 100 MB sha256 per call would
    cost more than cropping a short clip)."""
    from metrics.weights import check_file, locate

    if check_file(key, file) != "ok":
        locate(key, file)  # raises the one-line MissingWeightsError naming the file and what to do
    dlib = _dlib()
    return dlib.cnn_face_detection_model_v1(file) if key == "dlib-mmod" else dlib.shape_predictor(file)


def dlib_model(key: str, path=None):
    """The loaded dlib model for weight key "dlib-68", "dlib-5" or "dlib-mmod" (found by metrics.weights)."""
    from metrics.weights import locate

    file = locate(key, path, verify=False)
    stat = file.stat()
    return _load_dlib_model(key, str(file), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1)
def hog_detector():
    return _dlib().get_frontal_face_detector()


def _eat_roi(frame: np.ndarray, rect, landmarks: np.ndarray):
    """utils_crop_psnr.crop_image: the square ROI around the box, resized to 163, and the landmarks in it."""
    import cv2

    x, y = rect.left(), rect.top()
    w, h = rect.right() - x, rect.bottom() - y
    r = int(EAT_ROI_RATIO * h)
    new_x, new_y = x + int(0.5 * w) - r, y + int(0.5 * h) - r
    roi = frame[new_y:new_y + 2 * r, new_x:new_x + 2 * r]  # numpy slicing on purpose: EAT's semantics
    if roi.size == 0:
        return None, None
    roi = cv2.resize(roi, (EAT_ROI_SIZE, EAT_ROI_SIZE), interpolation=cv2.INTER_AREA)
    return roi, (landmarks - np.array([new_x, new_y])) * (EAT_ROI_SIZE / (2 * r))


def eat_align_frame(frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """EAT's 128x128 crop of one RGB frame given its 68 landmarks (pixel coordinates of that frame)."""
    from skimage.transform import AffineTransform, warp

    template = np.float32(EAT_TEMPLATE_68[EAT_ALIGN_POINTS])
    points = np.float32(landmarks[EAT_ALIGN_POINTS])
    # the fit maps template -> frame: skimage's warp takes exactly that output->input map
    matrix = similarity(template, points)
    warped = warp(frame, AffineTransform(matrix=matrix), output_shape=(EAT_WARP_SIZE, EAT_WARP_SIZE))
    return np.array(warped * 255, dtype=np.uint8)[EAT_CROP, EAT_CROP]  # truncation, as EAT


@register("eat-aligned")
def eat_aligned(frames, roi: bool = False, weights=None) -> CropResult:
    """EAT's 128x128 aligned face per frame (see the module docstring). boxes: (T', 68, 2) dlib landmarks
    used (frame pixels). weights: path of shape_predictor_68_face_landmarks.dat (default: metrics.weights)."""
    import cv2

    detector, predictor = hog_detector(), dlib_model("dlib-68", weights)
    out = CropCollector(128, (68, 2), length_hint(frames))
    for index, frame in enumerate(iter_frames(frames, "eat-aligned")):
        out.seen += 1
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)  # EAT's grey of an RGB frame
        rects = detector(gray, 1)
        if len(rects) == 0:
            continue
        shape = predictor(gray, rects[0])
        landmarks = np.array([(p.x, p.y) for p in shape.parts()], np.int64)
        image, points = frame, landmarks
        if roi:
            image, points = _eat_roi(frame, rects[0], landmarks)
            if image is None:
                continue
        out.add(index, eat_align_frame(image, points), landmarks)
    crops, kept, records = out.arrays()
    deviations = ["no mp4v re-encode of the crops (EAT writes them with OpenCV's lossy mp4v before scoring)"]
    return CropResult(frames=crops, kept=kept, boxes=records, style="eat-aligned", detector="dlib-hog",
                      deviations=deviations, dropped=out.seen - len(kept),
                      info={"frames_in": out.seen, "roi": bool(roi),
                            "reference": "evaluation_eat code/utils_crop.py crop_and_align"
                            + (" (utils_crop_psnr.py ROI variant)" if roi else "")})


# --- emotion-chip -------------------------------------------------------------------------------------

def contrast_stretch(image: np.ndarray) -> np.ndarray | None:
    """face_align_cuda.LinearEqual: a LUT stretching the red channel's occupied range to 0..255, applied to all
    channels. The histogram is cv2.calcHist over [0, 255) with 256 bins, so value 255 is never counted.
    None where EAT divides by zero (a single red value below 255)."""
    import cv2

    counts = np.bincount(image[..., 0].ravel(), minlength=256)[:255]
    occupied = np.flatnonzero(counts)
    low, high = (int(occupied[0]), int(occupied[-1])) if len(occupied) else (0, 255)
    if high == low:
        return None
    levels = np.arange(256)
    lut = np.where(levels < low, 0, np.where(levels > high, 255, 0))
    inside = (levels >= low) & (levels <= high)
    lut[inside] = (255.0 * (levels[inside] - low) / (high - low) + 0.5).astype(np.int64)  # int() truncation
    return cv2.LUT(image, lut.astype(np.uint8))


def _equalise_luma(image: np.ndarray, clahe: bool) -> np.ndarray:
    """CLAHE or plain histogram equalisation of Y (YCrCb), back to RGB (EAT writes BGR here: see docstring)."""
    import cv2

    ycrcb = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
    y = ycrcb[..., 0].copy()
    ycrcb[..., 0] = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=CLAHE_TILES).apply(y) if clahe \
        else cv2.equalizeHist(y)
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)


def _cnn_rects(cnn, image: np.ndarray):
    dlib = _dlib()
    rects = dlib.rectangles()
    rects.extend([d.rect for d in cnn(image, 1)])
    return rects


def find_chip_face(image: np.ndarray, cnn_fallback: bool = True, mmod_weights=None, eat_colour_bug: bool = False):
    """The reference's detector cascade on one RGB frame: (stage, image the face was found in, rects) or
    (None, None, notes) when every stage fails. notes lists stages skipped (EAT would have crashed)."""
    rects = hog_detector()(image, 1)
    if len(rects) or not cnn_fallback:
        return ("hog", image, rects, []) if len(rects) else (None, None, None, [])
    cnn = dlib_model("dlib-mmod", mmod_weights)
    notes: list[str] = []
    rects = _cnn_rects(cnn, image)
    if len(rects):
        return "mmod", image, rects, notes
    stretched = contrast_stretch(image)
    if stretched is None:
        notes.append("stretch")  # EAT: ZeroDivisionError, the clip's process dies
        stretched = image
    else:
        rects = _cnn_rects(cnn, stretched)
        if len(rects):
            return "mmod+stretch", stretched, rects, notes
    image = stretched
    for stage, clahe in (("mmod+clahe", True), ("mmod+equalise", False)):
        image = _equalise_luma(image, clahe)
        if eat_colour_bug:  # EAT converts YCrCb back to BGR into its RGB buffer
            image = np.ascontiguousarray(image[..., ::-1])
        rects = _cnn_rects(cnn, image)
        if len(rects):
            return stage, image, rects, notes
    return None, None, None, notes


@register("emotion-chip")
def emotion_chip(frames, cnn_fallback: bool = True, size: int = CHIP_SIZE, padding: float = CHIP_PADDING,
                 weights=None, mmod_weights=None, eat_colour_bug: bool = False) -> CropResult:
    """EAT's Emotion-FAN input per frame (see the module docstring): (T', 224, 224, 3) face chips.

    boxes: (T', 5, 2) the 5-point landmarks the chip was aligned on (frame pixels). info["found_by"]
    counts the cascade stage that found each kept frame's face. cnn_fallback=False stops after HOG
    (the CNN costs about 1 s per 160-px frame on a CPU core; it only runs on frames HOG misses).
    eat_colour_bug=True reproduces EAT's BGR writes in the CLAHE/equalisation stages bit for bit (to check
    parity with EAT's own output; not for scoring).
    """
    dlib = _dlib()
    predictor = dlib_model("dlib-5", weights)
    out = CropCollector(size, (5, 2), length_hint(frames))
    found_by = dict.fromkeys(CHIP_STAGES, 0)
    crash_frames: list[int] = []
    for index, frame in enumerate(iter_frames(frames, "emotion-chip")):
        out.seen += 1
        stage, image, rects, notes = find_chip_face(frame, cnn_fallback, mmod_weights, eat_colour_bug)
        if notes:
            crash_frames.append(index)
        if stage is None:
            continue
        shape = predictor(image, rects[0])
        chip = dlib.get_face_chip(image, shape, size=size, padding=padding)
        found_by[stage] += 1
        out.add(index, np.asarray(chip, np.uint8), [(p.x, p.y) for p in shape.parts()])
    crops, kept, records = out.arrays()
    deviations = ["EAT's BGR writes in the CLAHE/equalisation stages reproduced on request"] if eat_colour_bug else []
    swapped = found_by["mmod+clahe"] + found_by["mmod+equalise"]
    if swapped and not eat_colour_bug:
        deviations.append(f"{swapped} frame(s) found only after CLAHE/equalisation are chipped in RGB; EAT "
                          "writes BGR there (its chips of those frames have red and blue swapped)")
    if crash_frames:
        deviations.append(f"frame(s) {crash_frames[:10]} have a single red level: EAT's contrast stretch divides "
                          "by zero there and loses the rest of the clip; here that stage is skipped")
    return CropResult(frames=crops, kept=kept, boxes=records, style="emotion-chip",
                      detector="dlib-hog+mmod" if cnn_fallback else "dlib-hog", deviations=deviations,
                      dropped=out.seen - len(kept),
                      info={"frames_in": out.seen, "found_by": found_by, "size": size, "padding": padding,
                            "reference": "evaluation_eat code/face_alignment_code/lib/face_align_cuda.py"})
