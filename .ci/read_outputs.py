"""Reads every NetCDF file rime wrote with xarray and checks it against summary.json."""

import json
import math
import pathlib
import sys

import numpy as np
import xarray as xr

checked = 0
for directory in map(pathlib.Path, sys.argv[1:]):
    summary = json.loads((directory / "summary.json").read_text())
    for method in summary["methods"]:
        path = directory / method["netcdf"]
        with xr.open_dataset(path) as ds:
            for name in ("truth", "observations", "analysis_mean", "analysis_spread",
                         "forecast_mean", "forecast_spread", "rmse_a"):
                assert name in ds, f"{path}: missing variable {name}"
                assert "units" in ds[name].attrs, f"{path}: {name} has no units"
            assert ds.attrs["Conventions"].startswith("CF-"), path
            assert ds["truth"].dims == ("time", "x"), ds["truth"].dims
            assert ds.sizes["time"] == summary["cycles"], (path, ds.sizes)
            # The per-cycle RMSE in the file is the RMSE of the stored fields.
            err = ds["analysis_mean"] - ds["truth"]
            rmse = np.sqrt((err**2).mean("x"))
            ok = np.isfinite(ds["rmse_a"])
            np.testing.assert_allclose(rmse[ok], ds["rmse_a"][ok], rtol=1e-10)
            # The time mean after burn-in is summary.json's rmse_a.
            if method["status"] == "ok":
                mean = float(ds["rmse_a"][summary["burn_in"]:].mean())
                assert math.isclose(mean, method["rmse_a"], rel_tol=1e-9), (path, mean, method["rmse_a"])
        checked += 1
        print(f"ok {path} (rmse_a = {method['rmse_a']})")
assert checked > 0, "no NetCDF file was checked"
print(f"{checked} passed, 0 failed")
