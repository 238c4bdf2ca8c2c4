"""S3FD face detector as syncnet_python runs it (`detectors/s3fd`: nets.py, box_utils.py, __init__.py).

The network is the VGG-16 single-shot detector whose state dict is `sfd_face.pth` (weights key "s3fd"):
`vgg.<i>` (15 convs, pools after conv1_2, 2_2, 3_3 (ceil mode), 4_3, 5_3, then fc6 dilated 6 and fc7),
`L2Norm3_3/4_3/5_3.weight`, `extras.0-3`, and six `loc.<i>` / `conf.<i>` heads on strides 4..128 with
one square anchor each (16..512 px). The first conf head predicts 3 background logits + 1 face logit and
keeps the max background ("max-out background label").

`S3FD.detect` is syncnet_python's `S3FD.detect_faces`: per scale, `cv2.resize` bilinear by the factor,
mean (123, 117, 104) subtracted from R, G, B (the reference's BGR mean [104, 117, 123], applied after
swapping to BGR and swapping back), network, softmax, decode with variances (0.1, 0.2), per-class NMS
(scores > 0.05, IoU 0.3, 5000 candidates, 750 kept), boxes with score > `conf_threshold` scaled to the
input frame's pixels, then a final NMS over all scales at IoU 0.1 (areas without the +1). run_pipeline
calls it with `conf_th=0.9, scales=[0.25]` on RGB frames; those are the defaults here.
"""
from __future__ import annotations

from itertools import product

import numpy as np
import torch
from torch import nn

__all__ = ["S3FD", "S3FDNet", "FaceAlignmentSFD", "rename_keys", "s3fd_priors", "seeded_state_dict", "greedy_nms",
           "S3FD_MEAN_RGB"]

S3FD_MEAN_RGB = np.array([123.0, 117.0, 104.0], dtype=np.float32)
MIN_SIZES = (16, 32, 64, 128, 256, 512)
STEPS = (4, 8, 16, 32, 64, 128)
VARIANCES = (0.1, 0.2)
# Detect(): candidates above this score enter the per-class NMS, which keeps at most TOP_K boxes
SCORE_FLOOR, NMS_IOU, NMS_CANDIDATES, TOP_K = 0.05, 0.3, 5000, 750
FINAL_NMS_IOU = 0.1  # detect_faces' nms_ over the boxes of all scales
MIN_INPUT_SIDE = 32  # below this the fifth max pool has nothing to pool (torch raises)

# vgg ModuleList: conv (in, out) 3x3 + ReLU; "M" a 2x2 max pool, "C" one in ceil mode (syncnet_python)
_VGG = [(3, 64), (64, 64), "M", (64, 128), (128, 128), "M", (128, 256), (256, 256), (256, 256), "C",
        (256, 512), (512, 512), (512, 512), "M", (512, 512), (512, 512), (512, 512), "M"]
_HEAD_CHANNELS = (256, 512, 512, 1024, 512, 256)
_L2NORM = (("L2Norm3_3", 256, 10.0), ("L2Norm4_3", 512, 8.0), ("L2Norm5_3", 512, 5.0))


class L2Norm(nn.Module):
    def __init__(self, channels: int, scale: float):
        super().__init__()
        self.eps = 1e-10
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x):
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
        return self.weight.view(1, -1, 1, 1) * torch.div(x, norm)

class Net(nn.Module):
    """S3FD with sfd_face.pth's key layout; forward returns (loc (N, P, 4), face score (N, P)).

    `face_alignment=True`: face_alignment's variant of the same weights' shapes (its net_s3fd.py): fc6
    with padding 3 and no dilation, and the pool after conv3_3 in floor mode."""

    def __init__(self, face_alignment: bool = False):
        super().__init__()
        layers = []
        for spec in _VGG:
            if spec == "M" or (spec == "C" and face_alignment):
                layers.append(nn.MaxPool2d(2, 2))
            elif spec == "C":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(spec[0], spec[1], 3, 1, padding=1), nn.ReLU(inplace=True)]
        fc6 = dict(padding=3) if face_alignment else dict(padding=6, dilation=6)
        layers += [nn.Conv2d(512, 1024, 3, 1, **fc6), nn.ReLU(inplace=True),
                   nn.Conv2d(1024, 1024, 1, 1), nn.ReLU(inplace=True)]
        self.vgg = nn.ModuleList(layers)
        for name, channels, scale in _L2NORM:
            setattr(self, name, L2Norm(channels, scale))
        self.extras = nn.ModuleList([nn.Conv2d(1024, 256, 1, 1), nn.Conv2d(256, 512, 3, 2, padding=1),
                                     nn.Conv2d(512, 128, 1, 1), nn.Conv2d(128, 256, 3, 2, padding=1)])
        self.loc = nn.ModuleList([nn.Conv2d(c, 4, 3, 1, padding=1) for c in _HEAD_CHANNELS])
        self.conf = nn.ModuleList([nn.Conv2d(c, 4 if i == 0 else 2, 3, 1, padding=1)
                                   for i, c in enumerate(_HEAD_CHANNELS)])

    def sources(self, x):
        # taps after conv3_3, conv4_3, conv5_3 (L2-normalised), fc7, and the two extra stages
        taps = []
        for k, layer in enumerate(self.vgg):
            x = layer(x)
            if k == 15:
                taps.append(self.L2Norm3_3(x))
            elif k == 22:
                taps.append(self.L2Norm4_3(x))
            elif k == 29:
                taps.append(self.L2Norm5_3(x))
        taps.append(x)
        for k, layer in enumerate(self.extras):
            x = torch.relu(layer(x))
            if k % 2 == 1:
                taps.append(x)
        return taps

    def heads(self, x):
        """Per level (face/background logits (N, 2, h, w), offsets (N, 4, h, w)), background max-out applied."""
        out = []
        for i, tap in enumerate(self.sources(x)):
            conf = self.conf[i](tap)
            if i == 0:
                conf = torch.cat((conf[:, 0:3].max(dim=1, keepdim=True)[0], conf[:, 3:]), dim=1)
            out.append((conf, self.loc[i](tap)))
        return out

    def forward(self, x):
        locs, confs, shapes = [], [], []
        for conf, loc in self.heads(x):
            locs.append(loc.permute(0, 2, 3, 1).reshape(x.shape[0], -1))
            confs.append(conf.permute(0, 2, 3, 1).reshape(x.shape[0], -1))
            shapes.append(tuple(conf.shape[2:]))
        loc = torch.cat(locs, 1).view(x.shape[0], -1, 4)
        scores = torch.softmax(torch.cat(confs, 1).view(x.shape[0], -1, 2), dim=-1)[..., 1]
        self.feature_shapes = shapes
        return loc, scores


def S3FDNet(face_alignment: bool = False) -> Net:
    """A fresh S3FD network (torch.nn.Module) with sfd_face.pth's state-dict layout (see Net for the variant)."""
    return Net(face_alignment)


def s3fd_priors(image_hw: tuple[int, int], feature_shapes) -> np.ndarray:
    """Anchor boxes (P, 4) float32 as (cx, cy, w, h) in [0, 1] units of the network input, row-major per map."""
    imh, imw = image_hw
    rows = []
    for k, (fh, fw) in enumerate(feature_shapes):
        for i, j in product(range(fh), range(fw)):
            rows.append(((j + 0.5) / (imw / STEPS[k]), (i + 0.5) / (imh / STEPS[k]),
                         MIN_SIZES[k] / imw, MIN_SIZES[k] / imh))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4).astype(np.float32)


def decode_boxes(loc, priors):
    """(x0, y0, x1, y1) in [0, 1] units from offsets `loc` (P, 4) and priors (P, 4), in float32 torch."""
    boxes = torch.cat((priors[:, :2] + loc[:, :2] * VARIANCES[0] * priors[:, 2:],
                       priors[:, 2:] * torch.exp(loc[:, 2:] * VARIANCES[1])), 1)
    boxes[:, :2] -= boxes[:, 2:] / 2
    boxes[:, 2:] += boxes[:, :2]
    return boxes


def _nms_candidates(boxes, scores, overlap: float, max_candidates: int, stop_at: float = -1.0):
    """Greedy NMS in float32 torch as Detect() does it: returns kept indices, best score first.

    Stops once the best remaining score is <= `stop_at`: a box only suppresses lower-scored ones, and
    detect_faces reads the kept boxes only down to its threshold, so the rest cannot change the result."""
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    _, order = scores.sort(0)  # ascending; the best candidates are at the end
    order = order[-max_candidates:]
    keep = []
    while order.numel() > 0:
        i = order[-1]
        if not float(scores[i]) > stop_at:
            break
        keep.append(int(i))
        order = order[:-1]
        if order.numel() == 0:
            break
        w = (torch.clamp(x2[order], max=x2[i]) - torch.clamp(x1[order], min=x1[i])).clamp(min=0.0)
        h = (torch.clamp(y2[order], max=y2[i]) - torch.clamp(y1[order], min=y1[i])).clamp(min=0.0)
        inter = w * h
        iou = inter / ((area[order] - inter) + area[i])
        order = order[iou.le(overlap)]
    return keep


def greedy_nms(dets: np.ndarray, threshold: float) -> np.ndarray:
    """Indices kept by the py-faster-rcnn NMS on (K, 5) [x0, y0, x1, y1, score] (areas without +1)."""
    x1, y1, x2, y2, scores = (dets[:, c] for c in range(5))
    areas = (x2 - x1) * (y2 - y1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        w = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]))
        inter = w * h
        overlap = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(overlap <= threshold)[0] + 1]
    return np.asarray(keep, dtype=np.int64)


def seeded_state_dict(seed: int = 0) -> dict:
    """Stand-in weights with sfd_face.pth's exact layout, for tests and timing without the real file.

    metrics.standin's rule ("param" kind: standard normal from crc32(key) + 7919 * seed, biases 0.1 n,
    1-D gains 1 + 0.1 n), rescaled for this deep ReLU network so its outputs are not degenerate: conv
    weights by He's sqrt(2 / fan_in) (the first also by 1/64 for its 0-255 input), L2Norm gains times
    their reference initial values (10, 8, 5). Offsets and face logits are then of order one: finite
    boxes, and some anchors pass the 0.9 threshold. (The plain 1/sqrt(fan_in) rule leaves every score
    near 0.5 and nothing detected.)
    """
    from metrics.standin import seeded_array

    gains = {f"{name}.weight": scale for name, _, scale in _L2NORM}
    state = {}
    for key, tensor in S3FDNet().state_dict().items():
        value = seeded_array(key, tuple(tensor.shape), seed)
        if key in gains:
            value = value * np.float32(gains[key])
        elif value.ndim == 4:
            he = np.sqrt(2.0 / np.prod(tensor.shape[1:]))
            value = value * np.float32(he / 64.0 if key == "vgg.0.weight" else he)
        state[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    return state


class S3FD:
    """syncnet_python's S3FD detector on `sfd_face.pth` (found by metrics.weights.locate("s3fd"))."""

    name = "s3fd"

    def __init__(self, path=None, state_dict: dict | None = None, device=None,
                 conf_threshold: float = 0.9, scales=(0.25,)):
        from metrics.utils import load_matching_state, resolve_device, safe_torch_load

        self.net = S3FDNet()
        where = "the given state dict"
        if state_dict is None:
            from metrics.weights import locate

            where = locate("s3fd", path)
            state_dict = safe_torch_load(where, "syncnet_python's S3FD sfd_face.pth")
        load_matching_state(self.net, state_dict, where, "syncnet_python's S3FD state dict (sfd_face.pth)")
        device = resolve_device(device)
        self.net.to(device).eval()
        self.device = device
        self.conf_threshold = float(conf_threshold)
        self.scales = tuple(float(s) for s in scales)

    def network(self, image_rgb: np.ndarray, scale: float):
        """Network outputs on one frame at one scale: (loc (P, 4), face score (P,), priors (P, 4)) in torch."""
        import cv2

        h, w = image_rgb.shape[:2]
        if min(round(h * scale), round(w * scale)) < MIN_INPUT_SIDE:
            from metrics.errors import InputError

            raise InputError(f"s3fd: a {w}x{h} frame at detection scale {scale:g} is under the {MIN_INPUT_SIDE} px "
                             f"S3FD's five poolings need; give larger frames or a larger detection scale "
                             f"(syncnet_python detects at 0.25 of full-resolution video)")
        scaled = cv2.resize(image_rgb, dsize=(0, 0), fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        x = scaled.astype(np.float32) - S3FD_MEAN_RGB
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(self.device)
        with torch.no_grad():
            loc, scores = self.net(x)
        priors = torch.from_numpy(s3fd_priors(scaled.shape[:2], self.net.feature_shapes)).to(self.device)
        return loc[0], scores[0], priors

    def detect(self, image_rgb: np.ndarray) -> np.ndarray:
        """Faces in one uint8 (H, W, 3) RGB frame: float64 (K, 5) [x0, y0, x1, y1, score] in its pixels."""
        h, w = image_rgb.shape[:2]
        pixel_scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        found = []
        for s in self.scales:
            loc, scores, priors = self.network(image_rgb, s)
            boxes = decode_boxes(loc, priors).cpu()
            scores = scores.cpu()
            mask = scores.gt(SCORE_FLOOR)
            boxes, scores = boxes[mask], scores[mask]
            if scores.numel() == 0:
                continue
            keep = _nms_candidates(boxes, scores, NMS_IOU, NMS_CANDIDATES, self.conf_threshold)[:TOP_K]
            for i in keep:  # best first: the reference reads until the first score at or below the threshold
                if not float(scores[i]) > self.conf_threshold:
                    break
                found.append([*(boxes[i] * pixel_scale).numpy().tolist(), float(scores[i])])
        dets = np.asarray(found, dtype=np.float64).reshape(-1, 5)
        return dets[greedy_nms(dets, FINAL_NMS_IOU)] if len(dets) else dets

    def __call__(self, image_rgb: np.ndarray) -> np.ndarray:
        return self.detect(image_rgb)


# face_alignment's net_s3fd.py names -> sfd_face.pth's (the same tensors; EDTalk's crop_video.py runs this one)
_FA_CONVS = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1", "conv4_2",
             "conv4_3", "conv5_1", "conv5_2", "conv5_3", "fc6", "fc7"]
_FA_HEADS = ["conv3_3_norm", "conv4_3_norm", "conv5_3_norm", "fc7", "conv6_2", "conv7_2"]
FA_KEY_MAP = {
    **{name: f"vgg.{i}" for name, i in zip(_FA_CONVS, (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28, 31, 33),
                                           strict=True)},
    **{name: f"extras.{i}" for i, name in enumerate(["conv6_1", "conv6_2", "conv7_1", "conv7_2"])},
    **{f"{name}_mbox_conf": f"conf.{i}" for i, name in enumerate(_FA_HEADS)},
    **{f"{name}_mbox_loc": f"loc.{i}" for i, name in enumerate(_FA_HEADS)},
    "conv3_3_norm": "L2Norm3_3", "conv4_3_norm": "L2Norm4_3", "conv5_3_norm": "L2Norm5_3",
}


def rename_keys(state: dict, to_face_alignment: bool = False) -> dict:
    """A face_alignment `s3fd-619a316812.pth` state dict with sfd_face.pth's key names, or the reverse."""
    table = {v: k for k, v in FA_KEY_MAP.items()} if to_face_alignment else FA_KEY_MAP
    out = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        out[f"{table.get(module, module)}.{leaf}"] = value
    return out


class FaceAlignmentSFD:
    """face_alignment 1.3.x's SFD detector (`detect_from_image`) as EDTalk's crop_video.py calls it.

    crop_video's `extract_bbox`: a frame larger than 640 px is shrunk by skimage `resize` (bilinear,
    anti-aliased) to at most 640 and `img_as_ubyte`'d; the detector gets it as BGR and flips it back, so
    the network sees R, G, B minus (104, 117, 123). Every anchor whose face score is > 0.05 is decoded
    (pixel priors: stride / 2 + index * stride, side 4 * stride; variances 0.1, 0.2), NMS at IoU 0.3 with
    +1 areas, scores > 0.5 kept, boxes scaled back to the frame. Weights: key "s3fd-fa"
    (`s3fd-619a316812.pth`, found where face_alignment's own download puts it, torch hub's cache).
    """

    name = "s3fd-fa"

    def __init__(self, path=None, state_dict: dict | None = None, device=None, max_side: int = 640,
                 score_floor: float = 0.05, nms_iou: float = 0.3, threshold: float = 0.5):
        from metrics.utils import load_matching_state, resolve_device, safe_torch_load

        self.net = S3FDNet(face_alignment=True)
        where = "the given state dict"
        if state_dict is None:
            from metrics.weights import locate

            where = locate("s3fd-fa", path)
            state_dict = safe_torch_load(where, "face_alignment's S3FD s3fd-619a316812.pth")
        load_matching_state(self.net, rename_keys(state_dict), where, "face_alignment's S3FD state dict")
        self.device = resolve_device(device)
        self.net.to(self.device).eval()
        self.max_side, self.score_floor, self.nms_iou, self.threshold = max_side, score_floor, nms_iou, threshold

    def candidates(self, image_rgb: np.ndarray) -> np.ndarray:
        """get_predictions: (K, 5) [x0, y0, x1, y1, score] float64 of every anchor above the score floor."""
        if min(image_rgb.shape[:2]) < MIN_INPUT_SIDE:
            from metrics.errors import InputError

            raise InputError(f"s3fd-fa: a {image_rgb.shape[1]}x{image_rgb.shape[0]} frame is under the "
                             f"{MIN_INPUT_SIDE} px S3FD's five poolings need")
        x = torch.from_numpy(np.ascontiguousarray(image_rgb.transpose(2, 0, 1)))[None].to(self.device, torch.float32)
        x = x - torch.tensor([104.0, 117.0, 123.0], device=self.device).view(1, 3, 1, 1)
        rows = []
        with torch.no_grad():
            heads = self.net.heads(x)
        for i, (conf, loc) in enumerate(heads):
            scores = torch.softmax(conf, dim=1).cpu().numpy()[0, 1]
            offsets = loc.cpu().numpy()[0]
            stride = 2 ** (i + 2)
            hs, ws = np.where(scores > self.score_floor)  # row-major, as the reference's loop visits them
            prior = np.stack([stride / 2 + ws * stride, stride / 2 + hs * stride,
                              np.full(len(hs), stride * 4.0), np.full(len(hs), stride * 4.0)], 1).astype(np.float64)
            off = offsets[:, hs, ws].T  # float32, like the reference's per-anchor slices
            box = np.concatenate((prior[:, :2] + off[:, :2] * VARIANCES[0] * prior[:, 2:],
                                  prior[:, 2:] * np.exp(off[:, 2:] * VARIANCES[1])), 1)
            box[:, :2] -= box[:, 2:] / 2
            box[:, 2:] += box[:, :2]
            rows.append(np.concatenate([box, scores[hs, ws].astype(np.float64)[:, None]], 1))
        return np.concatenate(rows).reshape(-1, 5)

    def detect(self, frame_rgb: np.ndarray) -> np.ndarray:
        """Faces in one uint8 (H, W, 3) RGB frame as crop_video's extract_bbox finds them, in its pixels."""
        factor = 1.0
        if max(frame_rgb.shape[:2]) > self.max_side:
            from skimage import img_as_ubyte
            from skimage.transform import resize

            factor = max(frame_rgb.shape[:2]) / float(self.max_side)
            frame_rgb = img_as_ubyte(resize(frame_rgb, (int(frame_rgb.shape[0] / factor),
                                                        int(frame_rgb.shape[1] / factor))))
        dets = self.candidates(frame_rgb)
        if len(dets):
            dets = dets[_nms_plus_one(dets, self.nms_iou)]
            dets = dets[dets[:, 4] > self.threshold]
        dets[:, :4] *= factor
        return dets

    def __call__(self, frame_rgb: np.ndarray) -> np.ndarray:
        return self.detect(frame_rgb)


def _nms_plus_one(dets: np.ndarray, threshold: float) -> list[int]:
    """face_alignment's bbox.nms: greedy, widths and areas with +1."""
    x1, y1, x2, y2, scores = (dets[:, c] for c in range(5))
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        w = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]) + 1)
        overlap = w * h / (areas[i] + areas[order[1:]] - w * h)
        order = order[np.where(overlap <= threshold)[0] + 1]
    return keep
