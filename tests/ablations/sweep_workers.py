"""Module-level stand-ins for `ablations.sweep.run_one`, importable in spawned worker processes."""
import json
import os
import time
from pathlib import Path


def record(spec, threads):
    """Write which process ran the spec with how many threads; the no-eem variant fails."""
    time.sleep(0.3)  # long enough for two runs to overlap
    Path(spec.root).mkdir(parents=True, exist_ok=True)
    (Path(spec.root) / f"{spec.variant}.json").write_text(json.dumps({"pid": os.getpid(), "threads": threads,
                                                                      "t": time.time()}))
    if spec.variant == "no-eem":
        return {"state": "failed", "error": "RuntimeError: boom", "key": spec.variant}
    return {"state": "done", "key": spec.variant}
