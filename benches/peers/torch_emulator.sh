#!/usr/bin/env bash
# The Lorenz-96 emulator network (periodic CNN, bilinear first layer, 32
# channels, 4 layers, f32) in PyTorch (CPU) and in rime (benches/cycle.rs,
# function `emulator`), back to back on this machine, on the same cores:
# one forecast step of 24 states, a 4-step gradient of one state by
# autodiff, and one Adam training step (batch 128, rollout 2). Prints the
# medians and the ratios both ways.
#
# Usage: bash benches/peers/torch_emulator.sh [REPEATS=300]
#   THREADS=1 (default; both pinned to CPU 0) or THREADS=2 (both on CPUs 0-1).
#   RIME_BENCH_PROFILE=bench (default) or dev.
# PyTorch comes from PyPI into the peers' venv (a large download the first
# time). Exits non-zero only on errors, never because of a speed.
set -euo pipefail

default_repeats=300
torch_script=torch_emulator.py
filter=emulator
benchmarks=(
    "emulator forecast step=forecast"
    "emulator 4-step gradient=gradient"
    "emulator training step=train"
)
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/torch_common.sh"
