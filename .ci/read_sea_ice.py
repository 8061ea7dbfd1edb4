"""Reads a sea-ice trajectory file and its maps back (CI): CF layout, units,
staggered coordinates in metres, bounds and conservation."""
import os
import sys

import numpy as np
import xarray as xr

path, maps = sys.argv[1], sys.argv[2]
ds = xr.open_dataset(path)
h = ds["state_h"]
assert h.dims == ("time", "trajectory", "y", "x"), h.dims
assert h.attrs["units"] == "m", h.attrs
# The physical models count time in seconds (issue 31: it said "1").
assert ds["time"].attrs["units"] == "s" and ds["time"].dtype == np.float64, ds["time"].attrs
assert ds["x"].attrs["units"] == "m" and ds["x"].attrs.get("standard_name") == "projection_x_coordinate"
u = ds["state_u"]
assert u.attrs["grid_position"] == "corner", u.attrs
assert u.sizes[u.dims[-1]] == h.sizes["x"] + 1 and u.sizes[u.dims[-2]] == h.sizes["y"] + 1
volume = h.sum(("y", "x")).values
assert np.allclose(volume, volume[0], rtol=1e-12), volume
a = ds["state_a"].values
d = ds["state_damage"].values
assert (a >= 0).all() and (a <= 1).all() and (d >= 0).all() and (d <= 1).all()
assert d[-1].max() > d[0].max(), "no damage grew"
for name in ["h", "a", "shear", "divergence", "speed", "damage"]:
    with open(os.path.join(maps, name + ".png"), "rb") as f:
        assert f.read(4) == b"\x89PNG", name
print(f"sea ice: {path} ({dict(h.sizes)}) and {maps} read back")
