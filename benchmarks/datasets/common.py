"""Names shared by every dataset: MEAD's emotions (in MEAD's order, defined once in
metrics.functional.emotion) and the clip-name format."""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable

from metrics.errors import InputError
from metrics.functional.emotion import EMOTIONS

LEVELS = (1, 2, 3)
_CLIP = re.compile(r"^(?P<identity>[A-Za-z0-9_\-]+)#(?P<emotion>[a-z]+)#level_(?P<level>\d)#(?P<index>\d{3})$")


def clip_name(identity: str, emotion: str, level: int, index: int) -> str:
    if emotion not in EMOTIONS:
        raise InputError(f"unknown emotion {emotion!r}; use one of {', '.join(EMOTIONS)}")
    return f"{identity}#{emotion}#level_{level}#{index:03d}"


def parse_clip_name(name: str) -> dict:
    """`<identity>#<emotion>#level_<k>#<nnn>` (MEAD's naming) -> its parts."""
    m = _CLIP.match(name)
    if not m or m["emotion"] not in EMOTIONS or int(m["level"]) not in LEVELS:
        raise InputError(f"clip name {name!r} does not parse as <identity>#<emotion>#level_<1-3>#<nnn> "
                         f"with an emotion among {', '.join(EMOTIONS)}")
    return {"identity": m["identity"], "emotion": m["emotion"], "level": int(m["level"]), "index": int(m["index"])}


def preview(names: Iterable[str], k: int = 3) -> str:
    """`'a', 'b', 'c' and 4 more`: the first few names of a list for a one-line error."""
    names = list(names)
    head = ", ".join(repr(n) for n in names[:k])
    return head + (f" and {len(names) - k} more" if len(names) > k else "")


def duplicates(names: Iterable[str]) -> list[str]:
    """Names that occur more than once, sorted."""
    return sorted(n for n, c in Counter(names).items() if c > 1)


def parse_names(names: Iterable[str], parser: Callable[[str], dict] = parse_clip_name,
                where: str = "clip list",
                expected: str = "<identity>#<emotion>#level_<1-3>#<nnn>") -> list[dict]:
    """Every name parsed by `parser` (which raises InputError), or ONE InputError listing all that fail
    (first few and a count) and any duplicates."""
    names = list(names)
    parsed, bad = [], []
    for n in names:
        try:
            parsed.append(parser(n))
        except InputError:
            bad.append(n)
    if bad:
        raise InputError(f"{where}: {len(bad)} of {len(names)} clip names do not parse as {expected}: "
                         f"{preview(bad)}; rename them or remove them from the list")
    dup = duplicates(names)
    if dup:
        raise InputError(f"{where}: {len(dup)} clip names occur more than once: {preview(dup)}; "
                         "keep one of each")
    return parsed
