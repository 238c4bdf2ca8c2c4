"""`edtalk generate`: one `<case>.mp4` per test case of the official list, for `edtalk evaluate` to score.

What each setting drives, frame i of a case (T = the GT clip's frames at 25 fps; benchmarks.protocols.generation
holds the rules shared by every method: source = the GT clip's first frame, T output frames, GT speech muxed):

* `audio` (EDTalk-A): lip weights from Audio2Lip on the clip's speech (the release's mel and 80x16 windows,
  `edtalk.audio_features`), smoothed by the release's `conv_feat` (kernel 3, sigma 1, ZERO padding as the
  release: the first and last frames' weights are scaled by 0.726); pose from GT frame i; expression from the GT
  frames by the release demo's schedule (`expression_indices`). The paper does not say where EDTalk-A takes pose
  and expression (paper notes §3); demo_EDTalk_A.py takes both from driving videos, and the GT clip is the only
  video that belongs to a test case, so it drives both (the paper's audio-driven table scores against GT frames,
  which a sampled pose could not match).
* `video` (EDTalk-V, demo_EDTalk_V.py): lip and pose from GT frame i, expression by the same schedule.
* `copy-source` (`--baseline copy-source`): the source frame held still, no model.

`expression_indices`: both demos drop the expression video's last 20 frames (when it has more than 20) and
extend it by playing it backwards until it covers the output; with the GT clip as driver, the last 20 output
frames take the mirrored expression of frames T-21, T-22, ... `expression_schedule="aligned"` uses frame i
instead. Each GT frame is encoded once (the release encodes the source and three drivers per output frame);
frames are decoded in batches, one frame at a time on CPU (faster there, and bit-identical to the release's
per-frame procedure), batched on GPU. Output pixels use the fixed map of `benchmarks.media.tensor_to_frames`
(the demo stretches each video's min..max, which shifts colours per video).

Resumable: a finished case is `GEN_DIR/<case>.mp4`, renamed into place only when complete (partial files
live in `GEN_DIR/.partial/`, cleared on start); a re-run skips finished cases. `GEN_DIR/generate.json`
records the setting, the checkpoints (sha256), the rules above and every finished case; a re-run with
another setting or checkpoint into the same folder is refused.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metrics.errors import InputError, UserError

__all__ = ["SETTINGS", "BASELINES", "EXPRESSION_SCHEDULES", "GENERATE_SCHEMA", "expression_indices",
           "release_smoothing", "select_cases", "EDTalkRenderer", "CopySourceRenderer", "official_renderer",
           "run_renderer", "run_mouth_from_audio", "speech_mel_windows", "audio2lip_mouth", "generate_test_set"]

SETTINGS = ("audio", "video")
BASELINES = ("copy-source",)
EXPRESSION_SCHEDULES = ("demo", "aligned")
GENERATE_SCHEMA = "edtalk-bench/generate@1"
MANIFEST_NAME = "generate.json"
PARTIAL_DIR = ".partial"
DEMO_EXPRESSION_TRIM = 20  # frames the release's demos drop from the end of an expression video
PROTOCOL_DATASETS = {"mead-edtalk": "mead", "hdtf-edtalk": "hdtf"}


def expression_indices(n_driver: int, n_out: int, schedule: str = "demo") -> np.ndarray:
    """Which expression-driver frame each output frame takes. "demo": demo_EDTalk_V/A's rule (drop the last
    20 frames if there are more than 20, append the reversed clip until it covers n_out, index i);
    "aligned": frame i (the last frame held past the driver's end)."""
    if schedule not in EXPRESSION_SCHEDULES:
        raise InputError(f"expression schedule must be one of {', '.join(EXPRESSION_SCHEDULES)}, not {schedule!r}")
    if n_driver < 1 or n_out < 1:
        raise InputError(f"expression schedule needs frames: driver {n_driver}, output {n_out}")
    if schedule == "aligned":
        return np.minimum(np.arange(n_out), n_driver - 1)
    idx = np.arange(n_driver)
    if n_driver > DEMO_EXPRESSION_TRIM:
        idx = idx[:-DEMO_EXPRESSION_TRIM]
    while len(idx) < n_out:
        idx = np.concatenate([idx, idx[::-1]])
    return idx[:n_out]


def release_smoothing(weights):
    """The release's `conv_feat(x, k_size=3, sigma=1)`: a per-channel Gaussian over time, zero-padded. (T, C)."""
    import torch
    import torch.nn.functional as F

    from edtalk.model.audio2motion import RELEASE_SMOOTHING

    k = torch.tensor(RELEASE_SMOOTHING, dtype=torch.float32, device=weights.device)
    c = weights.shape[1]
    x = weights.T.unsqueeze(0)  # (1, C, T)
    y = F.conv1d(x, k.view(1, 1, -1).repeat(c, 1, 1).to(weights.dtype), padding=len(RELEASE_SMOOTHING) // 2,
                 groups=c)
    return y[0].T


def select_cases(dataset: str, lists=None, speakers=None, max_clips: int | None = None) -> list[str]:
    """The official test cases of `dataset` (--lists overrides the bundled list), restricted to `speakers`
    (MEAD ids or HDTF video ids, the part before '#') and then to the first `max_clips`, in list order."""
    from benchmarks.datasets.common import preview
    from benchmarks.datasets.real import official_test_names

    names = official_test_names(dataset, lists)
    if speakers:
        wanted = [s.strip() for s in speakers if s.strip()]
        have = sorted({n.split("#", 1)[0] for n in names})
        unknown = [s for s in wanted if s not in have]
        if unknown:
            raise InputError(f"--speakers: {preview(unknown)} not in the {dataset.upper()} test list; it has "
                             f"{preview(have, 8)}")
        names = [n for n in names if n.split("#", 1)[0] in wanted]
    if max_clips is not None:
        if max_clips < 1:
            raise InputError(f"--max-clips must be at least 1, got {max_clips}")
        names = names[:max_clips]
    if not names:
        raise InputError(f"no {dataset.upper()} test cases in the list{' ' + str(lists) if lists else ''}; "
                         "check --lists")
    return names


@dataclass
class _Case:
    name: str
    video: Path
    audio: Path | None
    start: float
    duration: float | None


def _find_cases(dataset: str, root, names: list[str], skip_missing: bool, warn) -> list[_Case]:
    from benchmarks.datasets.common import preview
    from benchmarks.protocols.real_data import find_ground_truth

    found, missing = find_ground_truth(dataset, root, names)
    if missing:
        line = (f"--data {root}: {len(missing)} of {len(names)} test clips are missing ({preview(missing)})")
        if not skip_missing or not found:
            raise InputError(line + "; add them, restrict the run with --lists DIR / --speakers, or pass "
                                    "--skip-missing to generate the others")
        warn(f"warning: {line}; generating the other {len(found)}")
    return [_Case(n, g.video, g.audio, g.start, g.duration) for n, g in found.items()]


class CopySourceRenderer:
    """The baseline; like EDTalkRenderer: `describe` (what it is) and `render(gt_frames, speech)` (uint8 batches)."""

    def __init__(self):
        from benchmarks.protocols.generation import SOURCE_FRAME_RULE

        self.runtime: dict = {}
        self.describe = {"kind": "baseline", "name": "copy-source", "setting": "copy-source",
                         "source_frame": SOURCE_FRAME_RULE, "drivers": "none: the source frame held still"}

    def render(self, gt_frames: np.ndarray, speech: np.ndarray) -> Iterator[np.ndarray]:
        from benchmarks.protocols.generation import copy_source_baseline

        yield copy_source_baseline(gt_frames)


class EDTalkRenderer:
    """EDTalk driven as in the setting (module docstring). `mouth_from_audio` maps (T, 1, 80, 16) mel windows to
    (T, n_mouth) lip weights (audio setting); `official_renderer` and `run_renderer` build one from files."""

    def __init__(self, model, setting: str, *, mouth_from_audio=None, describe: dict | None = None, device=None,
                 batch: int = 8, expression_schedule: str = "demo", exact: bool | None = None,
                 match_ground_truth_size: bool = False):
        from benchmarks.protocols.generation import SOURCE_FRAME_RULE
        from metrics.utils import resolve_device

        if setting not in SETTINGS:
            raise InputError(f"--setting must be one of {', '.join(SETTINGS)}, not {setting!r}")
        if expression_schedule not in EXPRESSION_SCHEDULES:
            raise InputError(f"--expression-schedule must be one of {', '.join(EXPRESSION_SCHEDULES)}")
        if batch < 1:
            raise InputError(f"--batch must be at least 1, got {batch}")
        if setting == "audio" and mouth_from_audio is None:
            raise InputError("the audio setting needs an audio-to-lip model")
        self.model, self.mouth_from_audio = model, mouth_from_audio
        self.device = resolve_device(device)
        self.setting, self.batch, self.schedule = setting, int(batch), expression_schedule
        # CPU: one frame at a time, the release's bits (python -m edtalk.perf.release_side_by_side: max abs diff
        # 0). Batches (exact=False) round differently, which the decoder amplifies to whole grey levels, and take
        # twice the memory; measured side by side they were slower on a quiet 2-core host (issue 17) and faster
        # only under heavy load (2x at load 17), so exactness decides on CPU and batches run on GPUs.
        self.exact = self.device.type == "cpu" if exact is None else bool(exact)
        self.size = model.cfg.size
        self.describe = {
            **(describe or {}), "setting": setting, "source_frame": SOURCE_FRAME_RULE,
            "drivers": {"mouth": "audio-to-lip model on the clip's speech" if setting == "audio" else "GT frame i",
                        "pose": "GT frame i",
                        "expression": (f"GT frames, {expression_schedule} schedule" if model.cfg.expression
                                       else "none (lip/pose generator)")},
            "expression_schedule": expression_schedule, "pixel_map": "fixed: round((x + 1) * 127.5)"}
        # A model smaller than the data (a smoke/study run on 256-px MEAD) is scored at the GT clip's size:
        # the face crops and SyncNet's face track need a face of the size the reference pipelines expect.
        self.match_gt = bool(match_ground_truth_size)
        if self.match_gt:
            self.describe["output_size"] = "the ground-truth clip's (model frames resized bilinearly when it differs)"
        # how it ran, not what it makes: a resumed run may change these
        self.runtime = {"device": str(self.device), "exact_per_frame": self.exact, "batch": self.batch}

    def _to_model_input(self, gt_frames: np.ndarray):
        """GT frames as (T, 3, size, size) in [-1, 1]; a square clip of another size is resized as the demo's
        transforms.Resize does (bilinear, antialiased), anything else was not cropped."""
        import torch.nn.functional as F

        from benchmarks.media import frames_to_tensor

        h, w = gt_frames.shape[1:3]
        if h != w:
            raise InputError(f"ground-truth frames are {w}x{h}, not a square face crop; crop the dataset first "
                             "(`edtalk data crop RAW_DIR --out CROPPED_DIR`) and pass the cropped folder as --data")
        x = frames_to_tensor(gt_frames)
        if h != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return x

    def _clip_coefficients(self, clip) -> dict:
        """Per-frame mouth/pose/expression weights of the GT frames: each frame encoded once."""
        import torch

        step = 1 if self.exact else self.batch
        parts = []
        with torch.no_grad():
            for i in range(0, len(clip), step):
                latent, _ = self.model.encode(clip[i:i + step].to(self.device))
                parts.append(self.model.coefficients(latent))
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def render(self, gt_frames: np.ndarray, speech: np.ndarray) -> Iterator[np.ndarray]:
        import torch
        import torch.nn.functional as F

        from benchmarks.media import tensor_to_frames
        from edtalk.animate import animate_chunks

        clip = self._to_model_input(gt_frames)
        n = len(clip)
        coeffs = self._clip_coefficients(clip)
        kw = {"pose_coeffs": coeffs["pose"]}
        if self.model.cfg.expression:
            kw["expression_coeffs"] = coeffs["expression"][torch.from_numpy(expression_indices(n, n, self.schedule))]
        if self.setting == "audio":
            kw["mouth_coeffs"] = self.mouth_from_audio(speech_mel_windows(speech, n, self.device))
        else:
            kw["mouth_coeffs"] = coeffs["mouth"]
        source = clip[:1].to(self.device)  # benchmarks.protocols.generation.source_frame: the first GT frame
        side = gt_frames.shape[1]
        for batch in animate_chunks(self.model, source, batch_size=self.batch, exact=self.exact, **kw):
            if self.match_gt and side != self.size:
                batch = F.interpolate(batch, size=(side, side), mode="bilinear", align_corners=False,
                                      antialias=side < self.size)
            yield tensor_to_frames(batch)


def speech_mel_windows(speech: np.ndarray, n: int, device=None):
    """(n, 1, 80, 16) mel windows of 16 kHz speech, one per 25-fps frame: what `mouth_from_audio` reads."""
    import torch

    from edtalk.audio_features import mel_windows, melspectrogram

    return torch.from_numpy(mel_windows(melspectrogram(speech), n))[:, None].to(device)


def run_mouth_from_audio(run, device=None):
    """A run's EDTalk-A lip weights: RUN/audio/audio2motion.pt's mouth predictor on the mel windows, smoothed as
    the release does (`predict_mouth(smooth=True)`). Returns (mouth_from_audio, the checkpoint's path)."""
    from edtalk.model.audio2motion import Audio2Motion

    a2m_file = Path(run) / "audio" / "audio2motion.pt"
    if not a2m_file.is_file():
        raise InputError(f"--setting audio needs the run's audio-to-lip model {a2m_file}; train it "
                         "(`edtalk train --stage audio`) or use --setting video")
    a2m = Audio2Motion.load(a2m_file, map_location=device).to(device).eval()
    return (lambda windows: a2m.predict_mouth(windows[:, 0], smooth=True)), a2m_file


def audio2lip_mouth(a2l):
    """The release's EDTalk-A lip weights: Audio2Lip on the mel windows, then `release_smoothing`."""
    import torch

    def mouth(windows):
        with torch.no_grad():
            return release_smoothing(torch.cat([a2l(windows[i:i + 256]) for i in range(0, len(windows), 256)]))

    return mouth


def official_renderer(checkpoint_dir, setting: str, *, lip_pose: bool = False, device=None,
                      **options) -> EDTalkRenderer:
    """The release's checkpoints (EDTalk.pt or EDTalk_lip_pose.pt; Audio2Lip.pt for the audio setting)."""
    from edtalk import official
    from metrics.utils import resolve_device, sha256_file

    device = resolve_device(device)
    d = Path(checkpoint_dir)
    gen_file = d / official.OFFICIAL_FILES["lip_pose" if lip_pose else "generator"]
    model = (official.load_lip_pose_generator if lip_pose else official.load_generator)(gen_file, device)
    files = {gen_file.name: sha256_file(gen_file)}
    mouth = None
    if setting == "audio":
        a2l_file = d / official.OFFICIAL_FILES["audio2lip"]
        mouth = audio2lip_mouth(official.load_audio2lip(a2l_file, device))
        files[a2l_file.name] = sha256_file(a2l_file)
    describe = {"kind": "edtalk-official", "name": "EDTalk-A" if setting == "audio" else "EDTalk-V",
                "checkpoints": files, "generator": gen_file.name,
                "mouth": "Audio2Lip, release smoothing (zero-padded)" if setting == "audio" else "GT frames"}
    return EDTalkRenderer(model, setting, mouth_from_audio=mouth, describe=describe, device=device, **options)


def run_renderer(run, setting: str, *, device=None, **options) -> EDTalkRenderer:
    """A model of `edtalk train` (RUN/model.pt; RUN/audio/audio2motion.pt's mouth predictor for the audio setting)."""
    from edtalk.trained import load_trained_model
    from metrics.utils import resolve_device, sha256_file

    device = resolve_device(device)
    model, _ = load_trained_model(run, device)
    model_file = Path(run) / "model.pt" if Path(run).is_dir() else Path(run)
    files = {model_file.name: sha256_file(model_file)}
    mouth = None
    if setting == "audio":
        mouth, a2m_file = run_mouth_from_audio(model_file.parent, device)
        files["audio/audio2motion.pt"] = sha256_file(a2m_file)
    describe = {"kind": "edtalk-run", "name": f"{model_file.parent.name}-{setting}", "checkpoints": files,
                "run_dir": str(model_file.parent.resolve())}
    return EDTalkRenderer(model, setting, mouth_from_audio=mouth, describe=describe, device=device, **options)


def _manifest(out: Path, protocol: str, describe: dict, lists) -> dict:
    """The run's manifest: a new one, or the existing one if it describes the same generation (else refused)."""
    import json

    path = out / MANIFEST_NAME
    fresh = {"schema": GENERATE_SCHEMA, "protocol": protocol, "method": describe,
             "lists": str(Path(lists).resolve()) if lists else "bundled", "cases": {}}
    if not path.is_file():
        return fresh
    try:
        old = json.loads(path.read_text())
    except ValueError:
        raise InputError(f"{path} is not valid JSON; delete it (the finished videos are kept) and re-run") from None
    same = {k: old.get(k) for k in ("schema", "protocol", "method")} == {k: fresh[k] for k in
                                                                         ("schema", "protocol", "method")}
    if not same:
        raise InputError(f"--out {out} holds videos of another generation ({old.get('protocol')}, "
                         f"{(old.get('method') or {}).get('name')}, setting {(old.get('method') or {}).get('setting')}"
                         "); choose another --out, or delete the folder to start over")
    return {**fresh, "cases": dict(old.get("cases") or {})}  # cases generated by earlier runs stay recorded


def generate_test_set(protocol: str, data, out, *, setting: str | None = None, checkpoint_dir=None, run=None,
                      baseline: str | None = None, lists=None, speakers=None, max_clips: int | None = None,
                      batch: int = 8, device=None, skip_missing: bool = False, expression_schedule: str = "demo",
                      lip_pose: bool = False, progress: bool = True, warn=None,
                      match_ground_truth_size: bool = False) -> dict:
    """Write `<case>.mp4` for every selected test case into `out` (resumable). `match_ground_truth_size`: a model
    of another size than the GT clips writes them at the GT's size (the sweep's smaller models). Returns a summary:
    {"out", "cases", "generated", "kept", "missing", "manifest"}."""
    import sys

    from tqdm import tqdm

    from benchmarks.media import VideoWriter
    from benchmarks.protocols.generation import fit_speech, read_ground_truth
    from metrics.utils import atomic_write_json

    warn = warn or (lambda line: print(line, file=sys.stderr))
    if protocol not in PROTOCOL_DATASETS:
        raise InputError(f"--protocol must be one of {', '.join(PROTOCOL_DATASETS)}, not {protocol!r}")
    if sum(x is not None for x in (checkpoint_dir, run, baseline)) != 1:
        raise UserError("give exactly one of --checkpoint-dir DIR (the release's checkpoints), --run RUN_DIR "
                        "(a model of `edtalk train`) or --baseline copy-source")
    if baseline is not None and baseline not in BASELINES:
        raise InputError(f"--baseline must be one of {', '.join(BASELINES)}, not {baseline!r}")
    if baseline is None and setting is None:
        raise UserError("--setting audio|video is required with --checkpoint-dir or --run")
    dataset = PROTOCOL_DATASETS[protocol]
    names = select_cases(dataset, lists, speakers, max_clips)
    cases = _find_cases(dataset, data, names, skip_missing, warn)
    options = {"device": device, "batch": batch, "expression_schedule": expression_schedule,
               "match_ground_truth_size": match_ground_truth_size}
    if baseline:
        renderer = CopySourceRenderer()
    elif checkpoint_dir is not None:
        renderer = official_renderer(checkpoint_dir, setting, lip_pose=lip_pose, **options)
    else:
        renderer = run_renderer(run, setting, **options)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = _manifest(out, protocol, renderer.describe, lists)
    manifest["runtime"] = renderer.runtime
    partial = out / PARTIAL_DIR
    shutil.rmtree(partial, ignore_errors=True)  # what a killed run left half-written
    todo = [c for c in cases if not (out / f"{c.name}.mp4").is_file()]
    kept = len(cases) - len(todo)
    bar = tqdm(total=len(cases), initial=kept, desc=f"generate {protocol}", unit="clip", disable=not progress)
    try:
        for case in todo:
            frames, speech, record = read_ground_truth(case.video, case.audio, case.start, case.duration)
            if speech is None:
                raise InputError(f"{case.video}: test case {case.name!r} has no speech (no audio stream and no "
                                 ".m4a beside it); the generated video needs the GT audio")
            speech = fit_speech(speech, len(frames))
            target = partial / f"{case.name}.mp4"
            with VideoWriter(target, fps=25, audio=speech) as writer:
                for block in renderer.render(frames, speech):
                    writer.write(block)
            frames_written = writer.frames_written
            os.replace(target, out / f"{case.name}.mp4")
            manifest["cases"][case.name] = {"frames": int(frames_written), "ground_truth": record}
            atomic_write_json(out / MANIFEST_NAME, manifest)
            bar.update(1)
    finally:
        bar.close()
    shutil.rmtree(partial, ignore_errors=True)
    atomic_write_json(out / MANIFEST_NAME, manifest)
    return {"out": out, "cases": len(cases), "generated": len(todo), "kept": kept,
            "missing": len(names) - len(cases), "manifest": out / MANIFEST_NAME}
