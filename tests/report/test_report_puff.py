"""The report draws a puff plume run (issue 29): the mean of its first episode's plume under the
trajectories."""
from __future__ import annotations

import numpy as np

from plume_capture.cli.report import main
from plume_capture.report.data import summarize_run
from tests.report.conftest import small_cfg


def test_puff_run_field_is_the_mean_puff_plume(tmp_path):
    from plume_capture.capture import capture_many
    from plume_capture.sim.params import EnvParams
    from plume_capture.sim.puff import mean_field

    cfg = small_cfg(tmp_path, "puff", env={"grid_size": [48, 32], "goal_location": [6, 16], "plume": "puff"},
                    puff={"warmup_steps": 40})
    run = capture_many([cfg])[0].run_dir
    s = summarize_run(run, sample=5)
    assert s.field is not None and s.field.shape == (32, 48)
    assert "puff plume" in s.field_note and "seed 7" in s.field_note
    params = EnvParams.from_config(cfg)
    expected, stride, every = mean_field(params.build(), 7)
    np.testing.assert_array_equal(s.field, expected)
    assert stride == 1 and every == 3  # 60 steps / 20 frames
    # The plume lies downwind (+x) of the source, not upwind.
    assert s.field[16, 6] > 0.5 and s.field[16, 20] > 0.05 and s.field[16, 0] < s.field[16, 12]
    assert s.field[0, 0] < s.field[16, 6] / 10  # far upwind and across the wind
    out = tmp_path / "report.html"
    assert main([str(run), "-o", str(out), "--png", str(tmp_path / "png")]) == 0
    assert "puff plume" in out.read_text()


def test_a_large_grid_is_drawn_on_every_kth_cell(tmp_path):
    from plume_capture.sim.params import EnvParams
    from plume_capture.sim.puff import mean_field

    field, stride, every = mean_field(EnvParams(plume="puff", grid_size=(1024, 600), max_steps=1000).build(), 3)
    assert stride == 8 and field.shape == (75, 128) and every == 10
    assert field.max() > 0.1
