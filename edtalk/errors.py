"""Re-export of the user-facing error types (defined in the bottom layer, metrics.errors)."""
from metrics.errors import CheckpointMismatchError, InputError, MissingWeightsError, UserError

__all__ = ["UserError", "InputError", "MissingWeightsError", "CheckpointMismatchError"]
