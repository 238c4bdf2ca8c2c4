"""Module-level stand-ins for `ablations.sweep.run_one`, importable in spawned worker processes."""
import json
import os
import time
from pathlib import Path


def record(spec, threads):
    """Write which process ran the spec with how many threads; the no-eem variant fails."""
    # long enough for two runs to overlap; no-orthogonality ends later, so the run queued behind two starts while
    # one of them still holds a core (had both ended in the same wait, it would rightly get both cores)
    time.sleep(0.3 + 0.7 * (spec.variant == "no-orthogonality"))
    Path(spec.root).mkdir(parents=True, exist_ok=True)
    (Path(spec.root) / f"{spec.variant}.json").write_text(json.dumps({"pid": os.getpid(), "threads": threads,
                                                                      "t": time.time()}))
    if spec.variant == "no-eem":
        return {"state": "failed", "error": "RuntimeError: boom", "key": spec.variant}
    return {"state": "done", "key": spec.variant}
