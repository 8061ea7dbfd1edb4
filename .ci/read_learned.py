"""Reads the files of `rime simulate` and `rime train` with xarray.

trajectories.nc: state(time, trajectory, x) with CF attributes, a split
per time (train, then validation, then test), the source model's table.
The training folder: training.nc and training.csv agree epoch by epoch,
the validation loss is finite and falls, the PNG and checkpoints exist.
The evaluation folder: evaluation.nc agrees with evaluation.csv; the
physical model that made the data has zero error; persistence's grows.
"""

import csv
import pathlib
import sys

import numpy as np
import xarray as xr

trajectories, folder = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
with xr.open_dataset(trajectories) as d:
    assert d["state"].dims == ("time", "trajectory", "x"), d["state"].dims
    assert d.attrs["Conventions"].startswith("CF-")
    assert "lorenz96" in d.attrs["rime_model"]
    assert np.isfinite(d["state"].values).all()
    split = d["split"].values
    assert (np.diff(split) >= 0).all() and set(np.unique(split)) == {0, 1, 2}, split
    dt = np.diff(d["time"].values)
    np.testing.assert_allclose(dt, d.attrs["record_interval"])
with xr.open_dataset(folder / "training.nc") as c:
    rows = list(csv.DictReader(open(folder / "training.csv")))
    assert c.sizes["epoch"] == len(rows) > 0
    np.testing.assert_allclose(c["validation_loss"].values, [float(r["validation_loss"]) for r in rows])
    v = c["validation_loss"].values
    assert np.isfinite(v).all() and v[-1] < v[0], v
for name in ("training.png", "emulator.ckpt", "last.ckpt"):
    assert (folder / name).stat().st_size > 0, name
if len(sys.argv) > 3:
    ev = pathlib.Path(sys.argv[3])
    with xr.open_dataset(ev / "evaluation.nc") as e:
        labels = e.attrs["model_labels"].split()
        assert labels[:2] == ["persistence", "climatology"], labels
        # The labels are the `model` coordinate too (issue 31).
        assert [str(m) for m in e["model"].values] == labels, e["model"].values
        assert e["rmse"].sel(model="persistence").shape == e["rmse"].shape[1:]
        rmse = e["rmse"].values
        table = list(csv.DictReader(open(ev / "evaluation.csv")))
        assert len(table) == rmse.size
        np.testing.assert_allclose(rmse.ravel(), [float(r["rmse"]) for r in table])
        assert (rmse[labels.index("physical")] == 0).all(), rmse
        p = rmse[0]
        assert p[-1] > p[0], p
    print(f"read {ev}: models {labels}")
print(f"read {trajectories} and {folder}: {len(rows)} epochs, validation loss {v[0]:.3g} -> {v[-1]:.3g}")
