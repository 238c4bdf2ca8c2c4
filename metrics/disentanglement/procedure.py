"""The whole cross-driving procedure over a synthetic world: sample tuples, generate, read, score."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from metrics.disentanglement.arrays import FACTORS, as_array
from metrics.disentanglement.identity import identity_across_outputs
from metrics.disentanglement.leakage import leakage_matrix
from metrics.disentanglement.transfer import emotion_accuracy, transfer_errors
from metrics.errors import InputError
from metrics.utils import to_jsonable

__all__ = ["evaluate_disentanglement"]


def _pick(clips: Sequence, rng: np.random.Generator, src, used: set[str], replacing=None):
    """The clip with the smallest preference key, ties broken at random (deterministic given rng).

    Key, most important first: for a replacement, not the clip it replaces, then another emotion
    than it; then not yet used in this tuple; then another identity than the source's.
    """
    tie = rng.random(len(clips))

    def key(i: int) -> tuple:
        c = clips[i]
        repl = (c.name == replacing.name, c.emotion == replacing.emotion) if replacing is not None else ()
        return *repl, c.name in used, c.identity == src.identity, tie[i]

    return clips[min(range(len(clips)), key=key)]


def _sample_tuples(clips: Sequence, n_tuples: int, rng: np.random.Generator) -> list[dict]:
    """Source + one base and one replacement driver per factor, from distinct clips where possible.

    Sources cycle through a seeded permutation of the clips. Drivers prefer clips not yet used in
    the tuple and other identities than the source's; a replacement must differ from the driver it
    replaces and prefers another emotion (so the expression diagonal and the expression column have
    a non-zero reference).
    """
    order = [clips[i] for i in rng.permutation(len(clips))]
    tuples = []
    for n in range(n_tuples):
        src = order[n % len(order)]
        used = {src.name}
        drivers, repl = {}, {}
        for f in FACTORS:
            drivers[f] = _pick(clips, rng, src, used)
            used.add(drivers[f].name)
        for f in FACTORS:
            repl[f] = _pick(clips, rng, src, used, replacing=drivers[f])
            used.add(repl[f].name)
        tuples.append({"source": src, "drivers": drivers, "replacements": repl})
    return tuples


def _reader_output(x, what: str, n_frames: int | None = None) -> np.ndarray:
    a = as_array(x, what)
    if n_frames is not None and (a.ndim != 2 or a.shape[0] != n_frames):
        raise InputError(f"{what} returned shape {a.shape} for {n_frames} frames; it must return (T, d)")
    return a


_LOGITS_DIFFER = "readers.emotion returned a different number of logits for different outputs"


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def evaluate_disentanglement(model_fn: Callable, world, readers, n_tuples: int = 8, seed: int = 0,
                             split: str | None = "test", max_frames: int | None = None,
                             reference: str = "reader") -> dict:
    """Cross-driving disentanglement of a model over clips of a synthetic world.

    Procedure:
      1. Deterministically (from `seed`) sample `n_tuples` tuples from `world.clips(split)`: a source
         clip (its frame 0 is the source image) and, per factor, a base driver and a replacement
         driver (see `_sample_tuples`: distinct clips, other identities than the source's where the
         world allows it, replacements with another emotion where possible).
      2. Trim every driver to T = the shortest n_frames among the clips used (and `max_frames`).
      3. Per tuple, generate the base output `model_fn(source, mouth, pose, expression)` and three
         outputs each with one driver replaced.
      4. Read factors from every output: mouth = readers.mouth (T, 3), pose = readers.pose (T, 3) in
         the ground truth's units; expression = softmax(readers.emotion) as a (1, C) clip-level
         posterior, whose truth is the one-hot emotion of the expression driver.
      5. transfer: `transfer_errors` on base outputs vs their drivers' truth (mouth, pose) and
         `emotion_accuracy` of the base outputs' emotion vs the expression driver's label;
         leakage: `leakage_matrix(reference="driver")` with the drivers' truth in the readers' units
         (below); identity: `identity_across_outputs` of readers.identity(source[None]).mean(0) vs
         readers.identity(output) for all four outputs.

    The leakage reference (`reference`):
      "reader" (default): the truth is *read*: the world draws the source with ground-truth factors
         (`world.render_truth(source, drivers, T)`) and the same readers measure it. ref[n,c,m] is how much
         reader m moves when factor m of that render is taken from driver c's replacement instead of
         driver c. So a perfect model scores 1 on the diagonal whatever the readers' gain: a regressor
         that reads 40% of the mouth's true movement, or a soft emotion posterior, no longer caps
         responsiveness. "reader_floor" is the matrix of those renders themselves: diagonal 1, and
         off-diagonal the leakage the readers add (a pose change that moves the mouth reading), which no
         model can go below.
      "truth": the drivers' ground truth as numbers (mouth, pose in the world's units; expression as the
         one-hot emotion), for worlds that cannot render; responsiveness then includes the readers' gain.

    Args:
        model_fn: (source uint8 (H,W,3), mouth_frames, pose_frames, expression_frames uint8
            (T,H,W,3)) -> uint8 (T,H',W',3) generated frames.
        world: a benchmarks.datasets.synthetic.SyntheticWorld (clips, frames, ground_truth).
        readers: object with .mouth(frames)->(T,3), .pose(frames)->(T,3), .emotion(frames)->(C,)
            logits, .identity(frames)->(T,D).
        n_tuples: tuples to sample; seed: sampling seed; split: world split (None = all clips);
        max_frames: optional cap on T.

    Returns:
        JSON-able dict: {"n_tuples", "n_frames", "seed", "split", "tuples": [clip names],
        "transfer": {"mouth": {...}, "pose": {...}, "expression": {"accuracy"}},
        "leakage": {"labels", "matrix", "off_diagonal_mean", "diagonal_mean", "movement", "reference",
        "reference_mode", "n_tuples"}, "identity": {"mean", "min", "std", "per_output", "n"},
        "reference": "reader" | "truth", and with "reader" "reader_floor" (a leakage dict)}.
    """
    if reference not in ("reader", "truth"):
        raise InputError(f"reference must be 'reader' or 'truth', not {reference!r}")
    if reference == "reader" and not callable(getattr(world, "render_truth", None)):
        raise InputError("reference='reader' needs a world that renders its ground truth (world.render_truth); "
                         "pass reference='truth' for this world")
    if int(n_tuples) < 1:
        raise InputError(f"n_tuples must be at least 1, not {n_tuples}")
    for name in ("mouth", "pose", "emotion", "identity"):
        if not callable(getattr(readers, name, None)):
            raise InputError(f"readers has no {name}(frames) method; it needs mouth, pose, emotion and "
                             "identity")
    clips = list(world.clips(split))
    if len(clips) < 2:
        raise InputError(f"the world has {len(clips)} clip(s) in split {split!r}; cross-driving needs at "
                         "least 2")
    tuples = _sample_tuples(clips, int(n_tuples), np.random.default_rng(seed))
    used = {c.name: c for t in tuples
            for c in [t["source"], *t["drivers"].values(), *t["replacements"].values()]}
    n_frames = min(c.n_frames for c in used.values())
    if max_frames is not None:
        n_frames = min(n_frames, int(max_frames))
    if n_frames < 1:
        raise InputError("the sampled clips have no frames")
    scores = _CrossDriving(model_fn, world, readers, n_frames).run(tuples, read_truth=reference == "reader")
    names = [{"source": t["source"].name, **{f: t["drivers"][f].name for f in FACTORS},
              "replacements": {f: t["replacements"][f].name for f in FACTORS}} for t in tuples]
    return to_jsonable({"n_tuples": len(tuples), "n_frames": n_frames, "seed": seed, "split": split,
                        "tuples": names, "reference": reference, **scores})


class _CrossDriving:
    """One evaluation's generation and reading: drivers trimmed to `n_frames`, ground truth cached per clip."""

    def __init__(self, model_fn: Callable, world, readers, n_frames: int):
        self.model_fn, self.world, self.readers, self.n_frames = model_fn, world, readers, n_frames
        self._truth: dict[str, dict] = {}

    def truth(self, c) -> dict:
        if c.name not in self._truth:
            gt = self.world.ground_truth(c)
            self._truth[c.name] = {"mouth": np.asarray(gt["mouth"], np.float64)[:self.n_frames],
                                   "pose": np.asarray(gt["pose"], np.float64)[:self.n_frames],
                                   "emotion_index": int(gt["emotion_index"])}
        return self._truth[c.name]

    def frames(self, c) -> np.ndarray:
        return np.asarray(self.world.frames(c))[:self.n_frames]

    def generate(self, source, drv: dict) -> np.ndarray:
        out = self.model_fn(source, self.frames(drv["mouth"]), self.frames(drv["pose"]),
                            self.frames(drv["expression"]))
        out = np.asarray(out)
        if out.dtype != np.uint8 or out.ndim != 4 or out.shape[0] != self.n_frames or out.shape[-1] != 3:
            raise InputError(f"model_fn returned {out.dtype} {out.shape}; it must return uint8 (T, H, W, 3) "
                             f"with T = {self.n_frames}, the length of the trimmed drivers")
        return out

    def measure(self, out: np.ndarray) -> dict:
        readers, n = self.readers, self.n_frames
        logits = _reader_output(readers.emotion(out), "readers.emotion")
        logits = logits.mean(0) if logits.ndim == 2 else logits
        if logits.ndim != 1 or logits.shape[0] < 2:
            raise InputError(f"readers.emotion returned shape {logits.shape}; it must return (C,) logits")
        return {"mouth": _reader_output(readers.mouth(out), "readers.mouth", n),
                "pose": _reader_output(readers.pose(out), "readers.pose", n),
                "expression": _softmax(logits)[None], "logits": logits,
                "identity": _reader_output(readers.identity(out), "readers.identity", n)}

    def truth_factors(self, c, n_classes: int) -> dict:
        t = self.truth(c)
        onehot = np.zeros((1, n_classes))
        if not 0 <= t["emotion_index"] < n_classes:
            raise InputError(f"clip {c.name} has emotion index {t['emotion_index']} but readers.emotion "
                             f"gives {n_classes} logits")
        onehot[0, t["emotion_index"]] = 1.0
        return {"mouth": t["mouth"], "pose": t["pose"], "expression": onehot}

    def read_truth(self, tup: dict) -> tuple[dict, dict, dict, dict]:
        """The world's render of the tuple's truth, read: base (`measure`'s dict), swapped[c] (c's driver
        replaced), and the reference pair truth_base[c][m] / truth_swapped[c][m] (factor m taken from driver c /
        its replacement, the others from the base drivers). Each distinct assignment is rendered and read once."""
        src, drv, rep = tup["source"], tup["drivers"], tup["replacements"]
        seen: dict[tuple, dict] = {}

        def read(assign: dict) -> dict:
            key = tuple(assign[f].name for f in FACTORS)
            if key not in seen:
                seen[key] = self.measure(np.asarray(self.world.render_truth(src, assign, self.n_frames)))
            return seen[key]

        base = read(drv)
        swapped = {c: read({**drv, c: rep[c]}) for c in FACTORS}
        t_base = {c: {m: read({**drv, m: drv[c]})[m] for m in FACTORS} for c in FACTORS}
        t_swap = {c: {m: read({**drv, m: rep[c]})[m] for m in FACTORS} for c in FACTORS}
        return base, swapped, t_base, t_swap

    def run(self, tuples: list[dict], read_truth: bool = True) -> dict:
        """Generate and read every output of every tuple; score transfer, leakage and identity."""
        base: dict[str, list] = {f: [] for f in FACTORS}
        swapped, t_base, t_swap = ({c: {m: [] for m in FACTORS} for c in FACTORS} for _ in range(3))
        floor_base: dict[str, list] = {f: [] for f in FACTORS}
        floor_swapped = {c: {m: [] for m in FACTORS} for c in FACTORS}
        logits, labels, src_emb = [], [], []
        id_out: dict[str, list] = {"base": [], **{f"swap_{c}": [] for c in FACTORS}}
        for tup in tuples:
            source = np.asarray(self.world.frames(tup["source"]))[0]
            src_emb.append(_reader_output(self.readers.identity(source[None]), "readers.identity", 1).mean(0))
            drv = tup["drivers"]
            meas = self.measure(self.generate(source, drv))
            n_classes = meas["logits"].shape[0]
            for f in FACTORS:
                base[f].append(meas[f])
            logits.append(meas["logits"])
            labels.append(self.truth(drv["expression"])["emotion_index"])
            id_out["base"].append(meas["identity"])
            if read_truth:
                r_base, r_swapped, old, new = self.read_truth(tup)
                if r_base["expression"].shape != meas["expression"].shape:
                    raise InputError(_LOGITS_DIFFER)
                for m in FACTORS:
                    floor_base[m].append(r_base[m])
            else:  # truth_factors of c's driver / replacement: the same for every measured factor m
                old = {c: self.truth_factors(drv[c], n_classes) for c in FACTORS}
                new = {c: self.truth_factors(tup["replacements"][c], n_classes) for c in FACTORS}
            for c in FACTORS:
                sw = self.measure(self.generate(source, {**drv, c: tup["replacements"][c]}))
                if sw["logits"].shape[0] != n_classes:
                    raise InputError(_LOGITS_DIFFER)
                for m in FACTORS:
                    swapped[c][m].append(sw[m])
                    t_base[c][m].append(old[c][m])
                    t_swap[c][m].append(new[c][m])
                    if read_truth:
                        floor_swapped[c][m].append(r_swapped[c][m])
                id_out[f"swap_{c}"].append(sw["identity"])
        try:
            logits_arr = np.stack(logits)
        except ValueError:
            raise InputError(_LOGITS_DIFFER) from None
        driver_truth = {f: np.stack([self.truth(t["drivers"][f])[f] for t in tuples]) for f in ("mouth", "pose")}
        transfer = {f: r.to_dict() for f, r in
                    transfer_errors({f: np.stack(base[f]) for f in ("mouth", "pose")}, driver_truth).items()}
        transfer["expression"] = {"accuracy": emotion_accuracy(logits_arr, np.asarray(labels)),
                                  "n_clips": len(labels)}

        def stacked(nested: dict) -> dict:
            return {c: {m: np.stack(v) for m, v in row.items()} for c, row in nested.items()}

        leak = leakage_matrix({f: np.stack(base[f]) for f in FACTORS}, stacked(swapped), stacked(t_base),
                              stacked(t_swap))
        ident = identity_across_outputs(np.stack(src_emb), id_out)
        out = {"transfer": transfer, "leakage": leak.to_dict(), "identity": ident.to_dict()}
        if read_truth:
            out["reader_floor"] = leakage_matrix({f: np.stack(floor_base[f]) for f in FACTORS}, stacked(floor_swapped),
                                                 stacked(t_base), stacked(t_swap)).to_dict()
        return out
