"""face_alignment's 2D-FAN 68-point landmarks, as EAT's mouth-sync crop runs them (face_alignment 1.3.4).

Which version: evaluation_eat's `_fast_align.py` / `scripts/align_68.py` call
`FaceAlignment(LandmarksType._2D)` and `get_landmarks_from_directory`; the `_2D` name exists only up to
face_alignment 1.3.4 (1.3.5 renamed it TWO_D), and EAT pins torch 1.11, for which 1.3.4 downloads the
TorchScript `2DFAN4-cd938726ad.zip` (weights key "fan-2d"). Later releases (after 1.5) load the same
network as a plain state dict, `2DFAN4-11f355bf06.pth.tar`; `FanLandmarks(path=...)` reads either.

Network (`FAN`, 4 stacks): conv1 7x7/2 + bn1 + ReLU, ConvBlock(64, 128), 2x2 average pool, ConvBlock(128,
128), ConvBlock(128, 256); per stack an hourglass of depth 4 (average-pool down, nearest up), ConvBlock,
1x1 conv + BN + ReLU, a 1x1 conv to 68 heatmaps; stacks feed the next through `bl`/`al` 1x1 convs. A
ConvBlock is pre-activation BN-ReLU-conv3x3 three times (out/2, out/4, out/4 channels), concatenated,
plus the (BN-ReLU-1x1-conv projected) input. Inference uses the last stack's 64x64 heatmaps, as the
TorchScript file's forward and later releases' `outputs[-1]` do.

Per frame (get_landmarks_from_image): the detector's boxes (S3FD, first = best score, is the one
align_68 uses); centre = box centre moved up by 0.12 box height, scale = (w + h) / 195; the region
[ul, br] of side 200 * scale around the centre (corner points mapped by the float32 inverse of
face_alignment's `transform` and truncated to int) is copied into a black canvas and resized to 256x256
(cv2 bilinear); input RGB / 255; heatmap argmax per point, +-0.25 px towards the higher neighbour when the
peak is not on the border, -0.5, then mapped back by the float64 pseudo-inverse of `transform` at 64 px
and truncated to int32, so 1.3.4's landmarks are whole pixels.
"""
from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FAN", "FanLandmarks", "face_box_frame", "fan_inputs", "heatmap_points", "load_fan_state",
           "seeded_state_dict", "REFERENCE_SCALE"]

REFERENCE_SCALE = 195.0  # face_alignment's SFDDetector.reference_scale: box (w + h) / 195 = crop scale
CENTRE_SHIFT = 0.12      # the crop centre sits this fraction of the box height above the box centre
INPUT_SIZE, HEATMAP_SIZE, STACKS, POINTS = 256, 64, 4, 68
SEEDED_CONV_GAIN = 0.4


class ConvBlock(nn.Module):
    def __init__(self, in_planes: int, out_planes: int):
        super().__init__()
        half, quarter = out_planes // 2, out_planes // 4
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, half, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, quarter, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = nn.Conv2d(quarter, quarter, 3, 1, 1, bias=False)
        self.downsample = None
        if in_planes != out_planes:
            self.downsample = nn.Sequential(nn.BatchNorm2d(in_planes), nn.ReLU(True),
                                            nn.Conv2d(in_planes, out_planes, 1, 1, bias=False))

    def forward(self, x):
        a = self.conv1(F.relu(self.bn1(x)))
        b = self.conv2(F.relu(self.bn2(a)))
        c = self.conv3(F.relu(self.bn3(b)))
        skip = x if self.downsample is None else self.downsample(x)
        return torch.cat((a, b, c), 1) + skip


class HourGlass(nn.Module):
    """Depth-`depth` hourglass; module names b1_<level>, b2_<level>, b2_plus_1, b3_<level> as in the weights."""

    def __init__(self, depth: int, features: int):
        super().__init__()
        self.depth = depth
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", ConvBlock(features, features))
            self.add_module(f"b2_{level}", ConvBlock(features, features))
            if level == 1:
                self.add_module("b2_plus_1", ConvBlock(features, features))
            self.add_module(f"b3_{level}", ConvBlock(features, features))

    def _level(self, level: int, x):
        upper = self._modules[f"b1_{level}"](x)
        lower = self._modules[f"b2_{level}"](F.avg_pool2d(x, 2, stride=2))
        lower = self._level(level - 1, lower) if level > 1 else self._modules["b2_plus_1"](lower)
        lower = self._modules[f"b3_{level}"](lower)
        return upper + F.interpolate(lower, scale_factor=2, mode="nearest")

    def forward(self, x):
        return self._level(self.depth, x)


class FAN(nn.Module):
    """2D-FAN with `stacks` hourglasses; forward returns the last stack's (N, 68, 64, 64) heatmaps."""

    def __init__(self, stacks: int = STACKS):
        super().__init__()
        self.stacks = stacks
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, 256)
        for i in range(stacks):
            self.add_module(f"m{i}", HourGlass(4, 256))
            self.add_module(f"top_m_{i}", ConvBlock(256, 256))
            self.add_module(f"conv_last{i}", nn.Conv2d(256, 256, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(256))
            self.add_module(f"l{i}", nn.Conv2d(256, POINTS, 1))
            if i < stacks - 1:
                self.add_module(f"bl{i}", nn.Conv2d(256, 256, 1))
                self.add_module(f"al{i}", nn.Conv2d(POINTS, 256, 1))

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.conv4(self.conv3(F.avg_pool2d(self.conv2(x), 2, stride=2)))
        previous, heatmaps = x, None
        for i in range(self.stacks):
            features = self._modules[f"top_m_{i}"](self._modules[f"m{i}"](previous))
            features = F.relu(self._modules[f"bn_end{i}"](self._modules[f"conv_last{i}"](features)))
            heatmaps = self._modules[f"l{i}"](features)
            if i < self.stacks - 1:
                previous = previous + self._modules[f"bl{i}"](features) + self._modules[f"al{i}"](heatmaps)
        return heatmaps


def seeded_state_dict(seed: int = 0) -> dict:
    """Stand-in weights with 2DFAN4's exact layout (metrics.standin's rule), for tests without the real file.

    Conv weights are scaled by sqrt(0.4 / fan_in): every ConvBlock adds its input back, so He's sqrt(2 / fan_in)
    grows the heatmaps to ~1e7 over the four stacks; at 0.4 they are of order one, with peaks scattered over
    the map and some on its border (the two branches of the sub-pixel shift)."""
    from metrics.standin import seeded_array

    state = {}
    for key, tensor in FAN().state_dict().items():
        if not tensor.is_floating_point():
            state[key] = torch.zeros_like(tensor)
            continue
        value = seeded_array(key, tuple(tensor.shape), seed)
        if value.ndim == 4:
            value = value * np.float32(np.sqrt(SEEDED_CONV_GAIN / np.prod(tensor.shape[1:])))
        state[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    return state


# --- weights: a plain state dict, or the TorchScript archive face_alignment 1.3.x downloads -----------------

class _ScriptObject:
    """A TorchScript module object from data.pkl: only its attribute dict is kept, no code runs."""

    def __setstate__(self, state):
        self.attributes = state


_STORAGE_DTYPES = {"FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
                   "LongStorage": torch.int64, "IntStorage": torch.int32, "BoolStorage": torch.bool,
                   "ByteStorage": torch.uint8, "BFloat16Storage": torch.bfloat16}


def _rebuild_tensor(storage, offset, size, stride, *_):
    return torch.as_strided(storage, tuple(size), tuple(stride), offset)


class _ArchiveUnpickler(pickle.Unpickler):
    """Reads a TorchScript archive's data.pkl: tensors from the archive's storages, modules as attribute dicts.

    Only the names a serialized module needs resolve; anything else (a class that would run code) is refused."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix

    def find_class(self, module, name):
        if module.startswith("__torch__"):
            return _ScriptObject
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        if module == "torch.jit._pickle" and name.startswith("build_"):
            return lambda value: value
        if module == "torch.jit._pickle" and name == "restore_type_tag":
            return lambda value, _tag: value
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a serialized FAN")

    def persistent_load(self, pid):
        kind, dtype, key = pid[0], pid[1], pid[2]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {kind!r}")
        raw = bytearray(self.archive.read(f"{self.prefix}data/{key}"))
        return torch.frombuffer(raw, dtype=dtype) if raw else torch.zeros(0, dtype=dtype)


def _flatten(obj, prefix: str, out: dict) -> None:
    for name, value in obj.attributes.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value.clone()
        elif isinstance(value, _ScriptObject):
            _flatten(value, f"{prefix}{name}.", out)


def _torchscript_state(path) -> dict:
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pickles:
            raise pickle.UnpicklingError("no data.pkl: not a TorchScript archive")
        prefix = pickles[0][: -len("data.pkl")]
        root = _ArchiveUnpickler(archive.read(pickles[0]), archive, prefix).load()
    if not isinstance(root, _ScriptObject):
        raise pickle.UnpicklingError("data.pkl does not hold a module")
    state: dict = {}
    _flatten(root, "", state)
    return state


def load_fan_state(path) -> dict:
    """The FAN state dict in `path`: a TorchScript archive (2DFAN4-cd938726ad.zip, read without running its
    code: the pickled attributes and tensor storages only) or a plain state dict (2DFAN4-11f355bf06.pth.tar)."""
    from metrics.errors import CheckpointMismatchError
    from metrics.utils import safe_torch_load

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            scripted = any(n.endswith("/code/") or "/code/__torch__" in n for n in archive.namelist())
        if scripted:
            try:
                return _torchscript_state(path)
            except (pickle.UnpicklingError, KeyError, ValueError, TypeError, AttributeError) as exc:
                raise CheckpointMismatchError(f"{path} is not face_alignment's 2DFAN4 TorchScript archive: {exc}; "
                                              f"download 2DFAN4-cd938726ad.zip again") from None
    return safe_torch_load(path, "face_alignment's 2DFAN4 weights")


# --- face_alignment 1.3.4's crop and heatmap decoding --------------------------------------------------------

def _transform_matrix(centre, scale: float, resolution: float, dtype) -> torch.Tensor:
    h = 200.0 * scale
    t = torch.eye(3, dtype=dtype)
    t[0, 0] = resolution / h
    t[1, 1] = resolution / h
    t[0, 2] = resolution * (-centre[0] / h + 0.5)
    t[1, 2] = resolution * (-centre[1] / h + 0.5)
    return t


def _crop_corner(point, centre, scale: float) -> np.ndarray:
    # utils.transform(invert=True) in float32 torch: inverse matrix, then truncation toward zero
    t = torch.inverse(_transform_matrix(centre, scale, float(INPUT_SIZE), torch.float32))
    p = torch.ones(3)
    p[0], p[1] = point[0], point[1]
    return (t @ p)[:2].int().numpy()


def face_box_frame(box) -> tuple[torch.Tensor, float]:
    """(centre, scale) of a detector box (x0, y0, x1, y1, ...): centre float64, shifted up by 0.12 height."""
    d = np.asarray(box, np.float64)
    centre = torch.tensor([d[2] - (d[2] - d[0]) / 2.0, d[3] - (d[3] - d[1]) / 2.0], dtype=torch.float64)
    centre[1] = centre[1] - (d[3] - d[1]) * CENTRE_SHIFT
    return centre, float((d[2] - d[0] + d[3] - d[1]) / REFERENCE_SCALE)


def fan_inputs(image_rgb: np.ndarray, centre, scale: float) -> np.ndarray:
    """face_alignment's `crop`: uint8 (256, 256, 3), the 200*scale square around `centre`, black outside."""
    import cv2

    ul = _crop_corner([1, 1], centre, scale)
    br = _crop_corner([INPUT_SIZE, INPUT_SIZE], centre, scale)
    canvas = np.zeros((br[1] - ul[1], br[0] - ul[0], image_rgb.shape[2]), np.uint8)
    ht, wd = image_rgb.shape[:2]
    new_x = (max(1, -ul[0] + 1), min(br[0], wd) - ul[0])
    new_y = (max(1, -ul[1] + 1), min(br[1], ht) - ul[1])
    old_x = (max(1, ul[0] + 1), min(br[0], wd))
    old_y = (max(1, ul[1] + 1), min(br[1], ht))
    canvas[new_y[0] - 1:new_y[1], new_x[0] - 1:new_x[1]] = image_rgb[old_y[0] - 1:old_y[1], old_x[0] - 1:old_x[1]]
    return cv2.resize(canvas, dsize=(INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)


def heatmap_points(heatmaps: np.ndarray, centre, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """get_preds_fromhm of one face's (68, 64, 64) float32 heatmaps: (points in heatmap pixels float32,
    points in the image int32)."""
    hm = np.asarray(heatmaps, np.float32)
    count, height, width = hm.shape
    idx = hm.reshape(count, -1).argmax(1) + 1
    preds = np.stack([(idx - 1) % width + 1, np.floor((idx - 1) / height) + 1], 1).astype(np.float32)
    for j in range(count):
        px, py = int(preds[j, 0]) - 1, int(preds[j, 1]) - 1
        if 0 < px < HEATMAP_SIZE - 1 and 0 < py < HEATMAP_SIZE - 1:
            diff = np.array([hm[j, py, px + 1] - hm[j, py, px - 1], hm[j, py + 1, px] - hm[j, py - 1, px]])
            preds[j] = preds[j] + (np.sign(diff) * 0.25).astype(np.float32)
    preds -= np.float32(0.5)
    centre = np.asarray(centre, np.float64)
    back = np.linalg.pinv(_transform_matrix(centre, scale, float(height), torch.float64).numpy())
    image_points = np.empty((count, 2), np.int32)
    for j in range(count):
        image_points[j] = (back @ np.array([preds[j, 0], preds[j, 1], 1.0]))[:2].astype(np.int32)
    return preds, image_points


def _unwrapped(state: dict, own: dict) -> dict:
    """`state` without a leading component every key shares ("module.", a tracing wrapper's attribute) when
    that makes its keys FAN's: the archive's module tree is not published, so a wrapper is not ruled out."""
    heads = {key.split(".", 1)[0] for key in state}
    if set(state) == set(own) or len(heads) != 1 or not all("." in key for key in state):
        return state
    stripped = {key.split(".", 1)[1]: value for key, value in state.items()}
    return stripped if set(stripped) == set(own) else state


class FanLandmarks:
    """`landmarks(frames) -> float64 (T, 68, 2)` (NaN rows: no face) with face_alignment 1.3.4's 2D-FAN.

    detector: "auto" = face_alignment's own S3FD (FaceAlignmentSFD, weights "s3fd-fa", on the whole frame,
    no 640-px shrink: get_landmarks_from_directory calls the detector on the file as read) when its
    weights are found, else dlib HOG (a deviation: tighter boxes, so FAN sees a tighter crop); or a
    detector callable frame -> (K, 5) boxes best first. `deviations` says which."""

    name = "fan-2d"

    def __init__(self, path=None, state_dict: dict | None = None, device=None, detector="auto",
                 detector_weights=None, detector_state: dict | None = None):
        from metrics.utils import load_matching_state, resolve_device

        where = "the given state dict"
        if state_dict is None:
            from metrics.weights import locate

            where = locate("fan-2d", path, verify=path is None)
            state_dict = load_fan_state(where)
        self.net = FAN()
        state_dict = _unwrapped(state_dict, self.net.state_dict())
        load_matching_state(self.net, state_dict, where, "face_alignment's 2D-FAN (2DFAN4) state dict")
        self.device = resolve_device(device)
        self.net.to(self.device).eval()
        self.detector, self.deviations = self._detector(detector, detector_weights, detector_state)
        self.name = f"fan-2d + {getattr(self.detector, 'name', type(self.detector).__name__)}"

    def _detector(self, spec, weights, state):
        from metrics.crops.detectors import DlibHog
        from metrics.crops.s3fd import FaceAlignmentSFD
        from metrics.errors import MissingWeightsError

        reference = "face_alignment's S3FD"
        if callable(spec):
            name = getattr(spec, "name", type(spec).__name__)
            return spec, ([] if name == "s3fd-fa" else [f"FAN face boxes from {name} instead of {reference}"])
        if spec not in ("auto", "s3fd-fa", "dlib-hog"):
            from metrics.errors import UserError

            raise UserError(f"fan-2d: unknown face detector {spec!r}; use auto, s3fd-fa or dlib-hog")
        why = ""
        if spec in ("auto", "s3fd-fa"):
            try:
                sfd = FaceAlignmentSFD(path=weights, state_dict=state, device=self.device, max_side=1 << 30)
                return _BgrSFD(sfd), []
            except MissingWeightsError as exc:
                if spec == "s3fd-fa":
                    raise
                why = f" ({str(exc).split(';')[0]})"
        return DlibHog(), [f"FAN face boxes from dlib-hog instead of {reference}{why}"]

    def heatmaps(self, image_rgb: np.ndarray, box) -> tuple[np.ndarray, torch.Tensor, float]:
        """(network input uint8 (256, 256, 3), centre, scale) and the (68, 64, 64) heatmaps for one box."""
        centre, scale = face_box_frame(box)
        crop = fan_inputs(image_rgb, centre, scale)
        x = torch.from_numpy(crop.transpose(2, 0, 1).copy()).float().div(255.0)[None].to(self.device)
        with torch.no_grad():
            out = self.net(x)[0].cpu().numpy()
        return out, centre, scale

    def frame(self, image_rgb: np.ndarray) -> np.ndarray:
        """float64 (68, 2) landmarks of the best-scored face in one frame (whole pixels), NaN when none."""
        boxes = self.detector(image_rgb)
        if len(boxes) == 0:
            return np.full((POINTS, 2), np.nan)
        out, centre, scale = self.heatmaps(image_rgb, boxes[0])
        return heatmap_points(out, centre.numpy(), scale)[1].astype(np.float64)

    def __call__(self, frames) -> np.ndarray:
        from metrics.crops.common import iter_frames

        rows = [self.frame(f) for f in iter_frames(frames, "fan-2d")]
        return np.array(rows, np.float64).reshape(-1, POINTS, 2)


class _BgrSFD:
    """FaceAlignmentSFD as get_landmarks_from_directory runs it: the detector flips the RGB file it reads to
    BGR before subtracting (104, 117, 123); FaceAlignmentSFD subtracts from its input's channels as given."""

    name = "s3fd-fa"

    def __init__(self, sfd):
        self.sfd = sfd

    def __call__(self, image_rgb: np.ndarray) -> np.ndarray:
        return self.sfd.detect(np.ascontiguousarray(image_rgb[..., ::-1]))
