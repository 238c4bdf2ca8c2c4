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
