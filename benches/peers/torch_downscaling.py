"""The downscaling network of rime (src/learned/downscaling.rs,
`DownscalingNet`) in PyTorch on the CPU, timed on the operations the
`downscaling` group of benches/cycle.rs times in rime, at its sizes
(channels 8, levels 3, fine_channels 8, fine_levels 1; one predictor on
the 65 x 65 coarse grid, no scalars, one static field and one output on
the 257 x 257 fine grid, node-aligned, fine point j at coarse index j / 4):

- `forward`: the network on 25 members, then the sum of the outputs read
  back (rime reads back `net.forward(t, None).sum()`);
- `vjp`: the gradient with respect to the 25 members' predictors of
  j = sum(y * w), w a fixed [25, 257 * 257] field; the weights require
  gradients too, as they do in rime's autodiff module, so the backward
  pass computes theirs as well (as torch_emulator.py's `gradient`);
- `train`: one Adam step (lr 1e-3) on a batch of 4 with rime's `mse` loss,
  sum(mask * (yhat - y)^2) / sum(mask), the mask all ones.

Same layers and widths: the coarse U-Net is rime's `Unet2d` without its
last layer (as torch_unet.py: down level l has width channels << l and is
two 3x3 convolutions, zero padding 1, bias, each followed by exact (erf)
GELU, after a 2x2 average pool at every level but the first; the input
padded with zeros at the bottom and right to a multiple of 2^(levels - 1),
65 -> 68, and the output cropped back; on the way up a nearest-neighbour
doubling, the upsampled channels then the skip's, and two 3x3
convolutions to the level's width). Then a 1x1 convolution (bias, no
activation) to the fine stage's width, the predictors beside it (8 + 1
channels), linear interpolation to the fine grid in each axis
(F.interpolate bilinear with align_corners=True: the same two taps and
weights as rime's gathers along x then y), the static field beside that
(10 channels), the fine U-Net (one level: one double convolution 10 -> 8)
and a 1x1 convolution to the output; f32. Weights from PyTorch's default
initialisation (timing only). Prints one JSON object of median seconds per
call (and the parameter count, checked against the one by hand).

Parameter count (weights + biases), by hand from rime's architecture:
    down0    1->8   80     8->8    584    664
    down1    8->16  1168   16->16  2320   3488
    down2    16->32 4640   32->32  9248   13888
    up1      48->16 6928   16->16  2320   9248
    up0      24->8  1736   8->8    584    2320
    project  8->8 (1x1)                   72
    fine0    10->8  728    8->8    584    1312
    last     8->1 (1x1)                   9
    total                                 31001

Usage: python torch_downscaling.py [REPEATS]
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


class UnetBody(torch.nn.Module):
    """rime's `unet_pass`: [b, c, ny, nx] -> [b, channels, ny, nx]."""

    def __init__(self, inputs, channels, levels):
        super().__init__()
        width = lambda l: channels << l
        self.down = torch.nn.ModuleList(
            [DoubleConv(inputs if l == 0 else width(l - 1), width(l)) for l in range(levels)]
        )
        # up[l] sees the upsampled level l + 1 beside the skip of level l.
        self.up = torch.nn.ModuleList(
            [DoubleConv(width(l + 1) + width(l), width(l)) for l in range(levels - 1)]
        )

    def forward(self, h):
        ny, nx = h.shape[2], h.shape[3]
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
        return h[:, :, :ny, :nx]


class DownscalingNet(torch.nn.Module):
    def __init__(self, predictors, statics, outputs, channels, levels, fine_channels, fine_levels, terrain, fine):
        super().__init__()
        self.coarse = UnetBody(predictors, channels, levels)
        self.project = torch.nn.Conv2d(channels, fine_channels, 1)
        self.fine_net = UnetBody(fine_channels + predictors + statics, fine_channels, fine_levels)
        self.last = torch.nn.Conv2d(fine_channels, outputs, 1)
        self.register_buffer("terrain", terrain)  # [1, statics, nyf, nxf]
        self.fine = fine

    def forward(self, x):
        # x: [b, predictors, nyc, nxc].
        h = torch.cat([self.project(self.coarse(x)), x], dim=1)
        h = F.interpolate(h, size=self.fine, mode="bilinear", align_corners=True)
        h = torch.cat([h, self.terrain.expand(x.shape[0], -1, -1, -1)], dim=1)
        return self.last(self.fine_net(h))


def downscaling_params(predictors, statics, outputs, channels, levels, fine_channels, fine_levels):
    """Weights and biases of rime's `DownscalingNet` without scalars, by hand."""
    conv = lambda i, o, k: o * i * k * k + o
    double = lambda i, o: conv(i, o, 3) + conv(o, o, 3)

    def body(inputs, channels, levels):
        width = lambda l: channels << l
        down = sum(double(inputs if l == 0 else width(l - 1), width(l)) for l in range(levels))
        return down + sum(double(width(l + 1) + width(l), width(l)) for l in range(levels - 1))

    return (
        body(predictors, channels, levels)
        + conv(channels, fine_channels, 1)
        + body(fine_channels + predictors + statics, fine_channels, fine_levels)
        + conv(fine_channels, outputs, 1)
    )


def count(net):
    return sum(p.numel() for p in net.parameters())


def median_time(f, repeats):
    for _ in range(max(3, repeats // 10)):
        f()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 20

# Inputs as in benches/cycle.rs (f32, flattened order).
nyc = nxc = 65
nyf = nxf = 257
nc, nf = nyc * nxc, nyf * nxf
f32 = lambda n: torch.arange(n, dtype=torch.float32)
x = torch.sin(f32(25 * nc) * 0.37).reshape(25, 1, nyc, nxc)
terrain = torch.sin(f32(nf) * 0.013).reshape(1, 1, nyf, nxf)
w = torch.cos(f32(25 * nf) * 0.71).reshape(25, nf)

net = DownscalingNet(1, 1, 1, 8, 3, 8, 1, terrain, (nyf, nxf))
assert count(net) == downscaling_params(1, 1, 1, 8, 3, 8, 1) == 31001, count(net)
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
x4, y4, mask4 = x[:4], w[:4], torch.ones(4, nf)


def forward():
    with torch.no_grad():
        return net(x).sum().item()


def vjp():
    net.zero_grad()
    t = x.clone().requires_grad_(True)
    j = (net(t).reshape(25, nf) * w).sum()
    j.backward()
    return t.grad


def train():
    opt.zero_grad()
    e = net(x4).reshape(4, nf) - y4
    loss = (mask4 * e**2).sum() / mask4.sum()
    loss.backward()
    opt.step()


print(
    json.dumps(
        {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "params": count(net),
            "forward": median_time(forward, repeats),
            "vjp": median_time(vjp, repeats),
            "train": median_time(train, repeats),
        }
    )
)
