#!/usr/bin/env bash
# rime's 2-D U-Net (3x3 convolutions with GELU, 2x2 average pooling down,
# nearest-neighbour doubling and skip connections up, f32) with its
# residual step in PyTorch (CPU) and in rime (benches/cycle.rs, function
# `unet`), back to back on this machine, on the same cores: one forecast
# step of 25 QG states on 65 x 65 (channels 8, levels 3) and one Adam
# training step (batch 16); one forced forecast step of 16 sea-ice states
# (h and a on 32 x 32 beside 4 forcing channels; channels 16, levels 3) and
# one Adam training step (batch 16, rollout 2). Prints the medians and the
# ratios both ways.
#
# Usage: bash benches/peers/torch_unet.sh [REPEATS=50]
#   THREADS=1 (default; both pinned to CPU 0) or THREADS=2 (both on CPUs 0-1).
#   RIME_BENCH_PROFILE=bench (default) or dev.
# PyTorch comes from PyPI into the peers' venv (a large download the first
# time). Exits non-zero only on errors, never because of a speed.
set -euo pipefail

default_repeats=50
torch_script=torch_unet.py
filter=unet
benchmarks=(
    "qg unet forecast step=qg_forecast"
    "qg unet training step=qg_train"
    "sea ice unet forecast step=ice_forecast"
    "sea ice unet training step=ice_train"
)
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/torch_common.sh"
