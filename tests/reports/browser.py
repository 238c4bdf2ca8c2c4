"""Loading a report page in headless Chromium, as the report tests check it."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def load_in_chromium(html, tmp_path, window: str):
    """Screenshot `html` in headless Chromium (`window` "W,H"); fails on a console error, skips without Chromium.

    Returns the screenshot's path."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium not installed (apt-get install chromium): HTML not loaded in a browser")
    shot = tmp_path / "shot.png"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           f"--screenshot={shot}", f"--window-size={window}", html.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    assert shot.is_file(), proc.stderr[-2000:]
    console = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
    return shot
