"""The Lorenz-96 emulator network of rime (src/learned/net.rs, the sizes of
experiments/lorenz96/emulator_train.toml) in PyTorch on the CPU, timed on
the operations benches/cycle.rs times in rime:

- `forecast`: one residual step of 24 states (the ETKF's ensemble);
- `gradient`: the gradient of the sum of a 4-step forecast of one state
  with respect to that state (a 4D-Var window of one Bocquet cycle);
- `train`: one Adam step on a batch of 128 with a 2-step rollout loss.

Same layers and widths: a bilinear first layer (1 -> 96 channels, width 5,
circular padding; channels [0:32] and the product [32:64] * [64:96]), two
GELU convolutions of width 5 (64 -> 32, 32 -> 32), a linear 1x1 output
layer; f32. Prints one JSON object of median seconds per call.

Usage: python torch_emulator.py [REPEATS]
"""

import json
import statistics
import sys
import time

import torch

torch.manual_seed(0)
C = 32


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        conv = lambda i, o, k: torch.nn.Conv1d(i, o, k, padding=k // 2, padding_mode="circular")
        self.first = conv(1, 3 * C, 5)
        self.hidden = torch.nn.ModuleList([conv(2 * C, C, 5), conv(C, C, 5)])
        self.last = conv(C, 1, 1)

    def forward(self, x):
        b, n = x.shape
        h = self.first(x.reshape(b, 1, n))
        h = torch.cat([h[:, :C], h[:, C : 2 * C] * h[:, 2 * C :]], dim=1)
        for layer in self.hidden:
            h = torch.nn.functional.gelu(layer(h))
        return self.last(h).reshape(b, n)


net = Net()
mean, inv_std, dmean, dstd = 2.3, 1 / 3.6, 0.0, 0.9


def step(x):
    return x + dmean + net((x - mean) * inv_std) * dstd


def median_time(f, repeats):
    for _ in range(max(3, repeats // 10)):
        f()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 300
x24 = (8 * torch.sin(torch.arange(24 * 40, dtype=torch.float32) * 0.37)).reshape(24, 40)


def forecast():
    with torch.no_grad():
        return step(x24)


def gradient():
    x = x24[:1].clone().requires_grad_(True)
    y = x
    for _ in range(4):
        y = step(y)
    y.sum().backward()
    return x.grad


batch = (8 * torch.sin(torch.arange(128 * 40, dtype=torch.float32) * 0.37)).reshape(128, 40)
opt = torch.optim.Adam(net.parameters(), lr=1e-4)


def train():
    opt.zero_grad()
    x1 = step(batch)
    x2 = step(x1)
    loss = ((x1 - batch) ** 2).mean() + ((x2 - batch) ** 2).mean()
    loss.backward()
    opt.step()


print(
    json.dumps(
        {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "forecast": median_time(forecast, repeats * 10),
            "gradient": median_time(gradient, repeats * 10),
            "train": median_time(train, repeats),
        }
    )
)
