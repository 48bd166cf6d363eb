"""The report opened in a real headless Chromium: it renders, and the DOM holds the figures and rows."""
from __future__ import annotations

import os
import re
import subprocess

import matplotlib.image as mpimg
import numpy as np
import pytest

from plume_capture.cli.report import main

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason="Debian chromium not installed (apt-get install -y chromium)")


def chromium(tmp_path, *args):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=300,
                          check=True)


def test_sweep_report_in_headless_chromium(sweep_dir, tmp_path):
    out = tmp_path / "report.html"
    assert main([str(sweep_dir), "-o", str(out)]) == 0
    shot = tmp_path / "shot.png"
    chromium(tmp_path, "--window-size=1400,1600", f"--screenshot={shot}", out.as_uri())
    img = mpimg.imread(shot)
    assert img.shape[:2] == (1600, 1400)
    # Rendered content, not a blank page: many distinct colours (heat maps, bars).
    assert len(np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 200
    dom = chromium(tmp_path, "--dump-dom", out.as_uri()).stdout
    figs = re.findall(r'<img data-figure="([^"]+)"', dom)
    assert sorted(figs) == sorted([f"run{i}_{k}" for i in range(1, 5)
                                   for k in ("trajectories", "histograms")] + ["success_comparison"])
    assert len(re.findall(r'<tr class="run-row">', dom)) == 4
