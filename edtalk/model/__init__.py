"""EDTalk networks. `EDTalk(cfg)` is the generator; see docs/CONTRACTS.md for its API."""
from edtalk.model.edtalk import EDTalk

__all__ = ["EDTalk"]
