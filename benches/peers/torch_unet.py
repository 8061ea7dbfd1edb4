"""The 2-D U-Net of rime (src/learned/net.rs, `Unet2d`) with its residual
step (src/learned/emulator.rs, `ResidualStep`) in PyTorch on the CPU,
timed on the operations the `unet` group of benches/cycle.rs times in rime:

- `qg_forecast`: one residual step of 25 QG states on 65 x 65 (channels 8,
  levels 3, one field in, one out; the ETKF's ensemble);
- `qg_train`: one Adam step (lr 1e-4) on a batch of 16 with the loss
  mean((step(x0) - y)^2);
- `ice_forecast`: one forced residual step of 16 sea-ice states, h and a on
  32 x 32 as two channels beside four forcing channels (channels 16,
  levels 3, 6 channels in, 2 out);
- `ice_train`: one Adam step (lr 1e-4) on a batch of 16 with a 2-step
  rollout loss, the mean over the steps of mean((x_k - y_k)^2), the forcing
  of each step given beside the state.

Same layers and widths: down level l has width channels << l and is two 3x3
convolutions (zero padding 1, bias), each followed by exact (erf) GELU,
after a 2x2 average pool at every level but the first; the input is padded
with zeros at the bottom and right to a multiple of 2^(levels - 1) and the
output cropped back; on the way up a nearest-neighbour doubling, the
upsampled channels then the skip's, and two 3x3 convolutions to the level's
width; last a 1x1 convolution to the output fields. The residual step is
x + mu_d + sigma_d net((x - mu) / sigma) with per-variable rows, as rime's
`Scaling`; f32. Prints one JSON object of median seconds per call (and the
parameter counts, checked against the architecture's by hand).

Parameter counts (weights + biases), by hand from rime's architecture:
  QG, channels 8, levels 3, 1 field in and out:
    down0  1->8   80     8->8    584     664
    down1  8->16  1168   16->16  2320    3488
    down2  16->32 4640   32->32  9248    13888
    up1    48->16 6928   16->16  2320    9248
    up0    24->8  1736   8->8    584     2320
    last   8->1 (1x1)                    9
    total                                29617
  sea ice, channels 16, levels 3, 2 fields + 4 forcing in, 2 out:
    down0  6->16   880    16->16  2320   3200
    down1  16->32  4640   32->32  9248   13888
    down2  32->64  18496  64->64  36928  55424
    up1    96->32  27680  32->32  9248   36928
    up0    48->16  6928   16->16  2320   9248
    last   16->2 (1x1)                   34
    total                                118722

Usage: python torch_unet.py [REPEATS]
"""

import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

torch.manual_seed(0)


class DoubleConv(torch.nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.a = torch.nn.Conv2d(i, o, 3, padding=1)
        self.b = torch.nn.Conv2d(o, o, 3, padding=1)

    def forward(self, x):
        return F.gelu(self.b(F.gelu(self.a(x))))


class Unet2d(torch.nn.Module):
    def __init__(self, inputs, fields, channels, levels, ny, nx):
        super().__init__()
        width = lambda l: channels << l
        self.down = torch.nn.ModuleList(
            [DoubleConv(inputs if l == 0 else width(l - 1), width(l)) for l in range(levels)]
        )
        # up[l] sees the upsampled level l + 1 beside the skip of level l.
        self.up = torch.nn.ModuleList(
            [DoubleConv(width(l + 1) + width(l), width(l)) for l in range(levels - 1)]
        )
        self.last = torch.nn.Conv2d(channels, fields, 1)
        self.fields, self.ny, self.nx = fields, ny, nx

    def forward(self, x, extra=None):
        # x: [batch, fields ny nx] (fields slowest); extra: [batch, e, ny nx].
        b, n = x.shape
        ny, nx = self.ny, self.nx
        h = x.reshape(b, self.fields, ny, nx)
        if extra is not None:
            h = torch.cat([h, extra.reshape(b, extra.shape[1], ny, nx)], dim=1)
        m = 1 << (len(self.down) - 1)
        py, px = -(-ny // m) * m, -(-nx // m) * m
        if (py, px) != (ny, nx):
            h = F.pad(h, (0, px - nx, 0, py - ny))
        skips = []
        for l, block in enumerate(self.down):
            if l > 0:
                h = F.avg_pool2d(h, 2)
            h = block(h)
            skips.append(h)
        skips.pop()
        for block in reversed(self.up):
            h = block(torch.cat([F.interpolate(h, scale_factor=2, mode="nearest"), skips.pop()], dim=1))
        y = self.last(h)[:, :, :ny, :nx]
        return y.reshape(b, n)


def unet_params(inputs, fields, channels, levels):
    """Weights and biases of rime's `Unet2d`, by hand."""
    conv = lambda i, o, k: o * i * k * k + o
    double = lambda i, o: conv(i, o, 3) + conv(o, o, 3)
    width = lambda l: channels << l
    down = sum(double(inputs if l == 0 else width(l - 1), width(l)) for l in range(levels))
    up = sum(double(width(l + 1) + width(l), width(l)) for l in range(levels - 1))
    return down + up + conv(channels, fields, 1)


def count(net):
    return sum(p.numel() for p in net.parameters())


class Residual:
    """x + mu_d + sigma_d net((x - mu) / sigma), per-variable rows."""

    def __init__(self, net, n, mean, std, dmean, dstd):
        row = lambda v: torch.full((1, n), v, dtype=torch.float32)
        self.net = net
        self.mean, self.inv_std = row(mean), row(1 / std)
        self.dmean, self.dstd = row(dmean), row(dstd)

    def __call__(self, x, forcing=None):
        y = self.net((x - self.mean) * self.inv_std, forcing)
        return x + self.dmean + y * self.dstd


def median_time(f, repeats):
    for _ in range(max(3, repeats // 10)):
        f()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 50

# QG: one 65 x 65 field, synthetic states as in benches/cycle.rs.
n = 65 * 65
qg_net = Unet2d(1, 1, 8, 3, 65, 65)
assert count(qg_net) == unet_params(1, 1, 8, 3) == 29617, count(qg_net)
qg_step = Residual(qg_net, n, 0.0, 5.6, 0.0, 0.6)
xq = (5 * torch.sin(torch.arange(25 * n, dtype=torch.float32) * 0.37)).reshape(25, n)
qg_opt = torch.optim.Adam(qg_net.parameters(), lr=1e-4)


def qg_forecast():
    with torch.no_grad():
        return qg_step(xq)


def qg_train():
    qg_opt.zero_grad()
    loss = ((qg_step(xq[:16]) - xq[1:17]) ** 2).mean()
    loss.backward()
    qg_opt.step()


# Sea ice: h and a on 32 x 32, four forcing channels per step.
fields, pix = 2, 32 * 32
m = fields * pix
ice_net = Unet2d(fields + 4, fields, 16, 3, 32, 32)
assert count(ice_net) == unet_params(fields + 4, fields, 16, 3) == 118722, count(ice_net)
ice_step = Residual(ice_net, m, 0.5, 0.15, 0.0, 0.01)
# 18 rows: targets of step k are rows k..k+16, so step 2 needs row 17.
xi = (0.5 + 0.1 * torch.sin(torch.arange(18 * m, dtype=torch.float32) * 0.37)).reshape(18, m)
fi = torch.sin(torch.arange(3 * 4 * pix, dtype=torch.float32) * 0.11).reshape(3, 1, 4, pix)
forcing = lambda k, b: fi[k].expand(b, 4, pix)
ice_opt = torch.optim.Adam(ice_net.parameters(), lr=1e-4)


def ice_forecast():
    with torch.no_grad():
        return ice_step(xi[:16], forcing(0, 16))


def ice_train():
    ice_opt.zero_grad()
    x = xi[:16]
    loss = 0
    for k in (1, 2):
        x = ice_step(x, forcing(k - 1, 16))
        loss = loss + ((x - xi[k : k + 16]) ** 2).mean()
    loss = loss * 0.5
    loss.backward()
    ice_opt.step()


print(
    json.dumps(
        {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "qg_params": count(qg_net),
            "ice_params": count(ice_net),
            "qg_forecast": median_time(qg_forecast, repeats * 4),
            "qg_train": median_time(qg_train, repeats),
            "ice_forecast": median_time(ice_forecast, repeats * 4),
            "ice_train": median_time(ice_train, repeats),
        }
    )
)
