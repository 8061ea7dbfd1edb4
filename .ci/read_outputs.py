"""Reads every NetCDF file rime wrote with xarray and checks it against summary.json.

Per output directory: observations.nc, truth.nc (twins) and one file per
method. The stored per-cycle analysis RMSE must be the RMSE of the stored
analysis mean against the stored truth (over every field), and its time mean
after burn-in summary.json's rmse_a.
"""

import json
import math
import pathlib
import sys

import numpy as np
import xarray as xr

checked = 0
for directory in map(pathlib.Path, sys.argv[1:]):
    summary = json.loads((directory / "summary.json").read_text())
    leftovers = sorted(p.name for p in directory.glob("*.partial.nc"))
    assert not leftovers, f"{directory}: partial files left behind: {leftovers}"
    cycles = summary["cycles"]
    obs = xr.open_dataset(directory / summary["observations"])
    assert obs.sizes["time"] == cycles, (directory, obs.sizes)
    for name in ("observations", "obs_error_std", "obs_index", "obs_x", "obs_count"):
        assert name in obs, f"observations.nc: missing {name}"
    # An integer index, as the README says (a _FillValue made it float64).
    assert obs["obs_index"].dtype.kind == "i", obs["obs_index"].dtype
    # The set of each observation, an integer named by set_names.
    assert obs["obs_set"].dtype.kind == "i", obs["obs_set"].dtype
    sets = obs["obs_set"].attrs["set_names"].split()
    assert int(obs["obs_set"].max()) < len(sets), (sets, int(obs["obs_set"].max()))
    counts = obs["obs_count"].values
    present = np.isfinite(obs["observations"].values).sum(axis=1)
    np.testing.assert_array_equal(present, counts)
    truth = None
    if summary["has_truth"]:
        truth = xr.open_dataset(directory / summary["truth"])
        assert truth.sizes["time"] == cycles
        np.testing.assert_array_equal(truth["time"].values, obs["time"].values)
        checked += 1
    checked += 1
    for method in summary["methods"]:
        path = directory / method["netcdf"]
        with xr.open_dataset(path) as ds:
            assert ds.attrs["Conventions"].startswith("CF-"), path
            means = [v for v in ds.data_vars if v.startswith("analysis_mean")]
            assert means, f"{path}: no analysis_mean"
            for name in means + ["rmse_a", "omb_rms", "obs_count"]:
                assert "units" in ds[name].attrs or name == "obs_count", f"{path}: {name} has no units"
            for name in means:
                for kind in ("forecast_mean", "forecast_spread", "analysis_spread"):
                    other = name.replace("analysis_mean", kind)
                    assert other in ds, f"{path}: missing {other}"
            stopped = int(ds["stopped_at_cycle"])
            ran_to_the_end = method.get("stopped_at_cycle") is None
            if ran_to_the_end:
                assert stopped == -1 and ds.sizes["time"] == cycles, (path, stopped, ds.sizes)
            else:
                assert stopped == method["stopped_at_cycle"], (path, stopped)
                assert ds.sizes["time"] == stopped + 1, (path, ds.sizes)
            if truth is not None:
                # The per-cycle RMSE in the file is the RMSE of the stored
                # fields (every field counts once per point).
                steps = ds.sizes["time"]
                sq, count = 0.0, 0
                for name in means:
                    field = truth[name.replace("analysis_mean", "truth")].isel(time=slice(0, steps))
                    err = ds[name] - field.values
                    dims = [d for d in err.dims if d != "time"]
                    sq = sq + (err**2).sum(dims)
                    count += int(np.prod([err.sizes[d] for d in dims]))
                rmse = np.sqrt(sq / count)
                ok = np.isfinite(ds["rmse_a"])
                np.testing.assert_allclose(rmse[ok], ds["rmse_a"][ok], rtol=1e-10)
                if ran_to_the_end:
                    mean = float(ds["rmse_a"][summary["burn_in"]:].mean())
                    assert math.isclose(mean, method["rmse_a"], rel_tol=1e-9), (path, mean, method["rmse_a"])
            if "rank_histogram" in ds and ran_to_the_end and truth is not None:
                n = sum(int(np.prod([ds[m].sizes[d] for d in ds[m].dims if d != "time"])) for m in means)
                total = int(ds["rank_histogram"].sum())
                assert total == (cycles - summary["burn_in"]) * n, (path, total)
        checked += 1
        print(f"ok {path} (rmse_a = {method['rmse_a']}, omb_rms = {method['omb_rms']})")
    obs.close()
    if truth is not None:
        truth.close()
assert checked > 0, "no NetCDF file was checked"
print(f"{checked} files passed, 0 failed")
