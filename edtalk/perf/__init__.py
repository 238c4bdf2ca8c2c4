"""Speed and memory benchmarks of the model and its training (`python -m edtalk.perf.inference|train`).

Command-line tools of the top layer, like the CLI: they may import any package (the training one
resolves ablation variants).
"""
