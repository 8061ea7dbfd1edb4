#!/usr/bin/env bash
# rime's downscaling network (a coarse U-Net, channels 8, levels 3, on
# 65 x 65; a 1x1 projection to 8 channels beside the predictor, both
# interpolated linearly to 257 x 257; the terrain beside them; a one-level
# fine U-Net, 8 channels, and a 1x1 convolution to one field; 3x3
# convolutions with GELU, f32) in PyTorch (CPU) and in rime
# (benches/cycle.rs, function `downscaling`), back to back on this
# machine, on the same cores: the forward pass of 25 members with the sum
# of the outputs read back; the gradient with respect to the 25 members'
# predictors of sum(y * w), w a fixed fine field per member (by autodiff,
# the weights' gradients computed too on both sides); and one Adam
# training step (batch 4, lr 1e-3, the masked mean squared error). Prints
# the medians and the ratios both ways.
#
# Usage: bash benches/peers/torch_downscaling.sh [REPEATS=20]
#   THREADS=1 (default; both pinned to CPU 0) or THREADS=2 (both on CPUs 0-1).
#   RIME_BENCH_PROFILE=bench (default) or dev.
# PyTorch comes from PyPI into the peers' venv (a large download the first
# time). Exits non-zero only on errors, never because of a speed.
set -euo pipefail

default_repeats=20
torch_script=torch_downscaling.py
filter=downscaling
benchmarks=(
    "downscaling network, 25 members, 65x65 to 257x257=forward"
    "downscaling network vjp, 25 members=vjp"
    "downscaling training step, batch 4=train"
)
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/torch_common.sh"
