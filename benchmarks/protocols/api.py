"""`evaluate_protocol`: what `edtalk evaluate`, the sweep and nox call to score one method."""
from __future__ import annotations

from pathlib import Path

from benchmarks.protocols.engine import evaluate, folder_method
from benchmarks.protocols.registry import get_protocol
from metrics.errors import InputError
from metrics.utils import atomic_write_json


def sibling_file(results: Path, kind: str) -> Path:
    """A file written beside a results file: results.json -> <kind>.json, results-<setting>.json ->
    <kind>-<setting>.json (a run scored in two settings keeps one of each), any other name -> <kind>.json."""
    name = Path(results).name
    tail = name[len("results"):] if name.startswith("results-") else ".json"
    return Path(results).with_name(kind + tail)


def evaluate_protocol(protocol: str, out, *, method=None, videos=None, data=None, metrics=None,
                      device=None, progress: bool = True, disentanglement: bool = True,
                      lists=None, real_options: dict | None = None) -> dict:
    """Score a method or a folder of generated videos (`videos`) under `protocol`.

    `method(world)` builds the method for the protocol's world: a callable `case -> uint8 frames`,
    optionally with `describe` (a dict for the results), `generate(source, mouth, pose, expression)`
    (enables the disentanglement metrics) and `model` (its bank geometry is measured);
    `edtalk.method.score_run` passes our trained model this way.
    Writes `out` (results.json) and, for methods on the synthetic world, `confusion.json` and
    `disentanglement.json` beside it. Returns the results dict. `lists`: a folder with the official
    split's `test.json` overriding the bundled one (real-data protocols). `real_options`: passed to
    `benchmarks.protocols.real.evaluate_real` (eat_roundtrip, verify_weights, fid_resamples).
    """
    proto = get_protocol(protocol)
    if (method is None) == (videos is None):
        raise InputError("give exactly one of --run RUN_DIR (a model trained with `edtalk train`) or "
                         "--videos DIR (one <case>.mp4 per test clip)")
    if proto.data != "synthetic":
        if videos is None:
            raise InputError(f"protocol {proto.name!r} scores generated videos: pass --videos DIR (one <case>.mp4 per "
                             "test clip, e.g. from `edtalk generate`)")
        from benchmarks.protocols.real import evaluate_real

        return evaluate_real(proto, out, videos=videos, data=data, metrics=metrics, device=device,
                             progress=progress, lists=lists, **(real_options or {}))
    if data is None:
        raise InputError(f"protocol {proto.name!r} scores against a synthetic world: pass --data WORLD_DIR "
                         "(made by `edtalk data synth`)")
    from benchmarks.datasets.synthetic import SyntheticWorld
    from benchmarks.evaluators import load_evaluators
    from benchmarks.protocols.synthetic import LandmarkReaders, SyntheticScorer, confusion_from_results, synthetic_cases

    world = SyntheticWorld(data)
    if int(world.meta["size"]) != proto.size:
        raise InputError(f"protocol {proto.name!r} is defined at {proto.size} px but {data} is "
                         f"{world.meta['size']} px; use the matching protocol or world preset")
    ev = load_evaluators(data, device=device, progress=progress)
    names = list(metrics or proto.metric_names)
    if method is not None:
        method = method(world)
        info = getattr(method, "describe", {"kind": "method", "name": type(method).__name__})
    else:
        # Videos must be at the protocol's frame rate and size (refused otherwise, with the fix).
        method = folder_method(videos, fps=proto.fps, fps_policy=proto.fps_policy, size=proto.size)
        info = {"kind": "videos", "name": Path(videos).name, "path": str(Path(videos).resolve())}
    scorer = SyntheticScorer(world, ev, names)
    cases = synthetic_cases(world, proto)
    out = Path(out)
    weights = {"evaluators": {"cache": str(ev.meta.get("cache_dir", "")), "key": ev.meta.get("key"),
                              "validation": ev.validation}}
    results = evaluate(proto, method, cases, scorer, out, metrics=names, method_info=info,
                       config={"data": str(Path(data).resolve()), "world": world.meta},
                       seeds={"bootstrap": proto.aggregation.get("bootstrap_seed", 0)},
                       evaluator_weights=weights, progress=progress)
    conversions = getattr(method, "conversions", None)
    if conversions:
        # What the reader changed (frame rate resampled, grey/alpha to RGB) for the cases read in this
        # process; a resumed evaluation lists only the cases it read itself.
        results["input_conversions"] = dict(conversions)
        atomic_write_json(out, results)
    if "acc_emo" in names:
        atomic_write_json(sibling_file(out, "confusion"), confusion_from_results(results))
    generate = getattr(method, "generate", None)
    if generate is not None and disentanglement and not sibling_file(out, "disentanglement").exists():
        from metrics.disentanglement import bank_geometry_of, evaluate_disentanglement

        cd = proto.cross_driving
        d = evaluate_disentanglement(generate, world, LandmarkReaders(world, ev), n_tuples=cd["tuples"], seed=0,
                                     split=proto.split, max_frames=cd["max_frames"], reference=cd["reference"])
        try:
            d["bank_geometry"] = bank_geometry_of(getattr(method, "model", None)).to_dict()
        except InputError as exc:  # a variant with every bank off or direct has no bases to measure
            d["bank_geometry"] = {"skipped": str(exc)}
        atomic_write_json(sibling_file(out, "disentanglement"), d)
    return results
