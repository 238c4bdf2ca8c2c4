"""EDTalk-A in the synthetic sweep: each run trains the audio stage (RUN/audio/) and is scored with its mouth from
speech (RUN/results-audio.json) beside the video-driven results.json; settings are part of the run's hash; a
finished audio stage is skipped; no-eem takes full's audio stage, whose computation is full's (checked here).
A tiny world, tiny evaluators and an untrained model of the study's size with motion that reaches the output."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from ablations import sweep as sw
from metrics.errors import InputError


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Tiny tensors gain nothing from threads, and OpenMP threads spin on a shared CPU (a mouth step took 45 s at
    # 2 threads under load, 3.6 s at 1): before the module's fixtures, which train.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(variant: str, seed: int = 0):
    """An untrained model of the study's shapes; LIA's random flow init, so every motion coefficient reaches the
    output (the source-copy init would hide where the mouth comes from)."""
    from ablations.variants import resolve_config
    from edtalk.train.model_init import build_models

    cfg = resolve_config("study", variant, seed=0, overrides={"flow_init": "release"})
    torch.manual_seed(seed)
    return cfg, build_models(cfg, cfg.model.size)[0].eval()


def _trained_in(model, stages) -> set[str]:
    """Names of the parameters the training stages `stages` train (STAGE_TRAINABLE's groups)."""
    from edtalk.train.config import STAGE_TRAINABLE

    groups = model.parameter_groups()
    ids = {id(p) for st in stages for g in STAGE_TRAINABLE[st] for p in groups[g]}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def _with_full_weights(model, full, except_trained_in=("expression",)):
    """`model` holding full's weights but for what the given stages train (its own draw there), as a run that took
    full's stage-1 checkpoint and trained stage 2 itself would."""
    own, theirs = _trained_in(model, except_trained_in), full.state_dict()
    model.load_state_dict({k: v if k in own or k not in theirs else theirs[k] for k, v in model.state_dict().items()})
    return model


def _save(model, cfg, run_dir, variant: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "edtalk-bench/model@1", "model_config": dataclasses.asdict(cfg.model),
                "model": model.state_dict(), "variant": variant}, run_dir / "model.pt")
    (run_dir / "config.json").write_text(json.dumps({"seed": 0}))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from benchmarks.evaluators import train_evaluators
    from benchmarks.synthetic.writer import Preset, synthesize_world

    root = tmp_path_factory.mktemp("audio-sweep")
    toy = Preset(identities=4, test_identities=2, emotions=("angry", "happy", "neutral", "sad"), levels=(3,),
                 clips_per_level=1, n_frames=12, size=64)
    path = synthesize_world(root / "world", toy, seed=5)
    train_evaluators(path, config="tiny", seed=0, device="cpu", progress=False, threads=1)
    return path


@pytest.fixture(scope="module")
def audio_run(world, tmp_path_factory):
    """A run directory with model.pt and an audio stage trained (3 small mouth steps) by the sweep's own call."""
    from edtalk.presets import audio_stage_preset
    from edtalk.train.audio_stage import load_trained_generator, train_audio_stage

    cfg, model = _model("full")
    run = tmp_path_factory.mktemp("run") / "full-s0"
    _save(model, cfg, run, "full")
    audio = dataclasses.replace(audio_stage_preset("study"), targets="model", mouth_iters=3, mouth_batch=4)
    train_audio_stage(run, data_dir=world, preset="study", seed=0, cfg=audio, model=load_trained_generator(run))
    return run


def test_audio_method_drives_the_mouth_from_speech_and_the_rest_from_the_clip(world, audio_run, monkeypatch):
    from benchmarks.datasets.synthetic import SyntheticWorld
    from benchmarks.protocols.engine import Case
    from edtalk.generate import run_mouth_from_audio, speech_mel_windows
    from edtalk.method import AudioDrivenMethod, TrainedModelMethod
    from edtalk.train.evaluate import drive_frames

    w = SyntheticWorld(world)
    clip, other = w.clips("test")[:2]
    audio, video = AudioDrivenMethod(audio_run, w), TrainedModelMethod(audio_run, w)
    frames = w.frames(clip)
    a, v = audio(Case(clip.name)), video(Case(clip.name))
    assert a.shape == v.shape == frames.shape and not np.array_equal(a, v)  # the mouth is not the clip's
    # exactly: the run's audio-to-lip model (as `edtalk generate --setting audio` reads it) on the clip's speech
    mouth, _ = run_mouth_from_audio(audio_run)
    want = drive_frames(audio.model, frames[0], None, frames, frames, "cpu",
                        mouth_coeffs=mouth(speech_mel_windows(w.audio(clip), len(frames))))
    assert np.array_equal(a, want)
    # other speech, same frames: EDTalk-A changes, EDTalk-V does not read the audio at all
    speech, other_speech = w.audio(clip), w.audio(other)
    assert len(other_speech) >= len(speech) and not np.array_equal(speech, other_speech[:len(speech)])
    monkeypatch.setattr(SyntheticWorld, "audio", lambda self, c: other_speech[:len(speech)])
    assert not np.array_equal(AudioDrivenMethod(audio_run, w)(Case(clip.name)), a)
    assert np.array_equal(TrainedModelMethod(audio_run, w)(Case(clip.name)), v)
    assert audio.describe["setting"] == "audio" and len(audio.describe["checkpoints"]["audio/audio2motion.pt"]) == 64


def test_evaluate_cli_setting_audio_writes_per_clip_results_apart(world, audio_run, tmp_path, capsys):
    from edtalk.cli import main

    out = audio_run / "results-audio.json"
    assert main(["evaluate", "--protocol", "synthetic-smoke", "--run", str(audio_run), "--data", str(world),
                 "--out", str(out), "--setting", "audio"]) == 0
    res = json.loads(out.read_text())
    assert res["method"]["setting"] == "audio" and res["method"]["variant"] == "full"
    assert len(res["per_sample"]) == 8 and "acc_emo" in res["aggregates"]
    assert (audio_run / "confusion-audio.json").is_file()  # beside it, not over the video-driven confusion.json
    assert not (audio_run / "confusion.json").exists() and not (audio_run / "disentanglement.json").exists()
    assert main(["evaluate", "--protocol", "synthetic-smoke", "--videos", str(tmp_path), "--data", str(world),
                 "--out", str(tmp_path / "r.json"), "--setting", "audio"]) != 0
    assert "--setting applies to --run" in capsys.readouterr().err


def test_settings_parse_and_belong_to_the_presets():
    assert sw.parse_settings("both") == sw.parse_settings("video,audio") == ("audio", "video")
    assert sw.parse_settings("video") == ("video",)
    with pytest.raises(InputError, match="audio, video, both"):
        sw.parse_settings("vidoe")
    assert sw.preset_settings("study") == ("audio", "video") and sw.preset_settings("smoke") == ("video",)
    assert sw.preset_settings("paper") == ("video",)  # a preset without a sweep row gets the default


def test_config_hash_follows_the_settings_and_the_audio_stage(tmp_path):
    def spec(settings=None, **kw):
        extra = {} if settings is None else {"settings": settings}
        return sw.RunSpec("full", 0, "study", "synthetic-study", "d", str(tmp_path), **extra, **kw)

    keys = {s: spec(s).key for s in [("video",), ("audio",), ("audio", "video")]}
    assert len(set(keys.values())) == 3
    assert keys[("video",)] == spec().key  # video-only runs keep the key they had before settings existed
    assert spec(("audio", "video"), max_steps=5).audio_config().mouth_iters == 5
    assert spec(("audio", "video"), max_steps=5).key != spec(("video",), max_steps=5).key
    shared = sw.RunSpec("no-eem", 0, "study", "synthetic-study", "d", str(tmp_path), ("autoencoder", "mouth_pose"),
                        settings=("audio", "video"))
    assert shared.shares_audio and not dataclasses.replace(shared, settings=("video",)).shares_audio
    assert not dataclasses.replace(shared, variant="no-expression-bank").shares_audio


@pytest.fixture
def fake_training(monkeypatch):
    """train_run replaced by writing the variant's untrained model (the sweep's scoring and audio stage run)."""
    trained = []

    def train_run(cfg, run_dir, data_dir=None, resume=False, progress=True, adopt=None, real=None):
        trained.append((cfg.variant, cfg.seed))
        # full's stages 0-1 in every run (no-eem adopts them; full's own differ from it only by its stage 2)
        ecfg, model = _model(cfg.variant, seed=1 + len(trained))
        model = _with_full_weights(model, _model("full")[1])
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        for stage in ("autoencoder", "mouth_pose", "expression", "last"):
            (run_dir / "checkpoints" / f"{stage}.pt").write_bytes(b"ckpt")
        _save(model, ecfg, run_dir, cfg.variant)
        (run_dir / "eval.json").write_text("{}")

    monkeypatch.setattr("edtalk.train.api.train_run", train_run)
    return trained


@pytest.mark.slow  # 45 s on 2 loaded cores: two runs scored in both settings, the audio stage, the ground truth
def test_sweep_scores_both_settings_shares_no_eems_audio_stage_and_skips_a_finished_one(world, tmp_path,
                                                                                       fake_training, monkeypatch):
    monkeypatch.setattr(sw.os, "cpu_count", lambda: 1)  # one thread per run (see _one_thread)
    monkeypatch.setattr("ablations.variants.sweep_plan", lambda variants, seeds, preset: [("full", 0), ("no-eem", 0)])
    out = tmp_path / "sweep"
    s = sw.run_sweep("synthetic-smoke", "full,no-eem", 1, out, world, "study", jobs=1, progress=False, max_steps=2)
    assert not s["failed"] and len(s["runs"]) == 2
    assert json.loads((out / "sweep.json").read_text())["settings"] == ["audio", "video"]
    full, noeem = (next((out / "runs").glob(f"{v}-s0-*")) for v in ("full", "no-eem"))
    for run in (full, noeem):
        audio = json.loads((run / "results-audio.json").read_text())
        video = json.loads((run / "results.json").read_text())
        assert audio["method"]["setting"] == "audio" and "setting" not in video["method"]
        assert audio["method"]["checkpoints"]["audio/audio2motion.pt"]
        assert (run / "disentanglement.json").is_file() and (run / "confusion-audio.json").is_file()
        assert {r["case"] for r in audio["per_sample"]} == {r["case"] for r in video["per_sample"]}
        assert json.loads((run / "audio" / "config.json").read_text())["config"]["mouth_iters"] == 2  # --max-steps
    assert (noeem / "audio" / "shared.json").is_file() and not (full / "audio" / "shared.json").exists()
    assert (noeem / "audio" / "audio2motion.pt").read_bytes() == (full / "audio" / "audio2motion.pt").read_bytes()

    # A re-run with full's scores gone re-scores it without training the finished audio stage again.
    def no_training(*a, **k):
        raise AssertionError("a finished audio stage was trained again")

    monkeypatch.setattr("edtalk.train.audio_stage.train_audio_stage", no_training)
    (full / "status.json").unlink()
    (full / "results-audio.json").unlink()
    (full / "results-audio.json.rows.jsonl").unlink(missing_ok=True)
    assert not sw.run_sweep("synthetic-smoke", "full,no-eem", 1, out, world, "study", jobs=1, progress=False,
                            max_steps=2)["failed"]
    assert (full / "results-audio.json").is_file()
    # Another choice of settings is another run (its own key), never mixed into these directories.
    sw.run_sweep("synthetic-smoke", "full", 1, out, world, "study", jobs=1, progress=False, max_steps=2,
                 settings="video")
    assert len(list((out / "runs").glob("full-s0-*"))) == 1 and (out / "superseded" / full.name).is_dir()


def test_an_interrupted_audio_stage_resumes(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr("edtalk.train.audio_stage.train_audio_stage", lambda run_dir, **kw: seen.update(kw))
    monkeypatch.setattr("edtalk.train.audio_stage.load_trained_generator", lambda run_dir: "model")
    spec = sw.RunSpec("full", 0, "study", "synthetic-study", "d", str(tmp_path), settings=("audio",), max_steps=4)
    (spec.run_dir / "audio").mkdir(parents=True)
    sw.train_audio(spec)
    assert seen["resume"] is False and seen["cfg"].mouth_iters == 4 and seen["model"] == "model"
    (spec.run_dir / "audio" / "config.json").write_text("{}")  # what a killed stage leaves
    sw.train_audio(spec)
    assert seen["resume"] is True
    seen.clear()
    (spec.run_dir / "audio" / "results.json").write_text("{}")  # written last: the stage is finished
    sw.train_audio(spec)
    assert not seen


def test_no_eems_audio_stage_computes_exactly_fulls(world, tmp_path):
    """The claim behind sharing it (Variant.shares_audio_with_full): with stages 0-1's weights shared and the parts
    stage 2 trains (expression head and bank, EEM) set differently, the audio stage trains the same bits; a change
    in what stage 1 trains (the mouth head) changes them, so the check can fail."""
    from edtalk.presets import audio_stage_preset
    from edtalk.train.audio_stage import train_audio_stage

    cfg = dataclasses.replace(audio_stage_preset("study"), targets="model", mouth_iters=2, mouth_batch=4)
    assert set(cfg.parts) <= set(sw.AUDIO_PARTS_FIXED_BY_STAGE_1)
    full = _model("full")[1]

    def trained(model, name):
        for p in model.parameters():
            p.requires_grad_(False)
        train_audio_stage(tmp_path / name, data_dir=world, preset="study", seed=0, cfg=cfg, model=model)
        return torch.load(tmp_path / name / "audio" / "audio2motion.pt", weights_only=True)["state_dict"]

    # each with its own draw of what stage 2 trains (expression head and bank, EEM), full's weights elsewhere
    a = trained(_with_full_weights(_model("full", seed=2)[1], full), "full")
    b = trained(_with_full_weights(_model("no-eem", seed=3)[1], full), "no-eem")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    mouth_head = _with_full_weights(_model("full", seed=2)[1], full)
    with torch.no_grad():
        mouth_head.lip_fc[0].weight.mul_(1.5)  # what stage 1 trains: the audio stage must see it
    c = trained(mouth_head, "changed-mouth")
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_a_real_protocol_takes_one_setting(tmp_path):
    with pytest.raises(InputError, match="one setting per sweep"):
        sw.run_sweep("mead-edtalk", "full", 1, tmp_path / "out", tmp_path, "smoke", settings="both")
    real, synthetic = sw._route_settings(type("P", (), {"data": "mead"})(), "smoke", "video", {"lists": None})
    assert real == {"lists": None, "setting": "video"} and synthetic == ("video",)


def test_sweep_cli_passes_the_setting_and_documents_it(tmp_path, monkeypatch, capsys):
    from edtalk.cli import main

    seen = {}
    monkeypatch.setattr("ablations.sweep.run_sweep", lambda *a, **kw: seen.update(kw) or {"runs": [], "failed": []})
    assert main(["sweep", "--preset", "study", "--data", str(tmp_path), "--out", str(tmp_path / "s"),
                 "--setting", "both"]) == 0
    assert seen["settings"] == "both" and "setting" not in seen["real"]
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    assert "audio|video|both" in capsys.readouterr().out
