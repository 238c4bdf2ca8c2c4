"""Errors whose message is for the user: one line that says what is wrong and what to do.

The CLI prints these without a traceback. They live in the bottom layer so every package can raise them.
"""


class UserError(Exception):
    """Input the user can fix (bad file, bad option, missing weights)."""


class InputError(UserError, ValueError):
    """A value, array, video or audio file that does not meet a function's contract."""


class MissingWeightsError(UserError, FileNotFoundError):
    """A pretrained network's weight file is absent or fails its checksum."""


class CheckpointMismatchError(UserError, RuntimeError):
    """A checkpoint whose keys or shapes do not match the architecture."""


def closest(name, known, cutoff: float = 0.6) -> str | None:
    """The entry of `known` closest to a misspelt `name` (difflib's ratio >= cutoff), or None."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=cutoff)
    return close[0] if close else None


def suggest(name, known, cutoff: float = 0.6) -> str:
    """" (did you mean 'x'?)" naming `closest(name, known)`, or "" when nothing is close: for error messages."""
    close = closest(name, known, cutoff)
    return f" (did you mean {close!r}?)" if close else ""
