"""Names shared by every dataset: MEAD's emotions (in MEAD's order) and the clip-name format."""
from __future__ import annotations

import re

from metrics.errors import InputError

EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
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
