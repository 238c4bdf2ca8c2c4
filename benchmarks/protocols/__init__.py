"""Named, versioned evaluation protocols (registry.py) and the engine that scores a method under one (engine.py)."""
from benchmarks.protocols.engine import Case, bootstrap_ci, evaluate, folder_method, load_results
from benchmarks.protocols.registry import Protocol, get_protocol, list_protocols

__all__ = ["Case", "Protocol", "bootstrap_ci", "evaluate", "folder_method", "get_protocol", "list_protocols",
           "load_results"]
