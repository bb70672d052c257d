"""Headless Chromium for looking at generated HTML the way a person would: render, screenshot, DOM.

Used by tests/python/test_report.py and tools/make_example_report.py. Chromium is the Debian
package `chromium` (`make test` installs it with apt-get when it is missing and it can).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import numpy as np

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found on PATH (Debian package `chromium`)")
    with tempfile.TemporaryDirectory(prefix="mft-chromium-") as profile:
        cmd = [
            exe,
            "--headless",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--user-data-dir={profile}",
            *args,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "HOME": profile})
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def dump_dom(html_path: str, timeout: float = 120) -> str:
    """The DOM after Chromium has loaded the page, serialised."""
    return _run(["--dump-dom", f"file://{os.path.abspath(html_path)}"], timeout).stdout


def screenshot(html_path: str, png_path: str, width: int = 1440, height: int = 4200, timeout: float = 120) -> np.ndarray:
    """Renders the page in a width x height window, saves the PNG with the blank bottom cropped
    off, and returns its pixels (H, W, 3) uint8."""
    from PIL import Image

    out_dir = os.path.dirname(os.path.abspath(png_path))
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".shot-") as tmp:
        raw = os.path.join(tmp, "shot.png")
        _run([f"--window-size={width},{height}", f"--screenshot={raw}", f"file://{os.path.abspath(html_path)}"], timeout)
        pixels = np.asarray(Image.open(raw).convert("RGB"))
    rows = np.nonzero((pixels < 250).any(axis=(1, 2)))[0]
    bottom = min(pixels.shape[0], int(rows[-1]) + 24) if rows.size else pixels.shape[0]
    pixels = np.ascontiguousarray(pixels[:bottom])
    Image.fromarray(pixels).save(png_path, optimize=True)
    return pixels
