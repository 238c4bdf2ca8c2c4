"""The real-face mini MEAD the real-data training tests share: two training speakers, one test speaker."""
from __future__ import annotations

TRAIN = ("M003#neutral#level_1#001", "M003#angry#level_3#001", "M030#neutral#level_1#001", "M030#happy#level_2#002")
TEST = ("W009#sad#level_2#003",)


def build_mead(root, n_frames: int, size: int, test=TEST, train=TRAIN) -> dict:
    """Clips of `train` and `test` under root/MEAD (MEAD's raw layout) and lists of our own under root/lists:
    the mini speakers are official test speakers, so the official lists cannot be used."""
    from benchmarks.datasets.mini_mead import build_mini_mead, write_lists

    built = build_mini_mead(root / "MEAD", tuple(train) + tuple(test), n_frames=n_frames, size=size,
                            lists_dir=root / "lists")
    write_lists(root / "lists", test, train)
    return built
