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

repeats=${1:-50}
threads=${THREADS:-1}
profile=${RIME_BENCH_PROFILE:-bench}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/rime-target}
venv=/var/tmp/rime-peers-venv
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [[ ! -x $venv/bin/python ]]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import torch' >/dev/null 2>&1; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check torch
fi

(cd "$repo" && cargo bench --quiet --profile "$profile" --bench cycle --no-run)

export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads RAYON_NUM_THREADS=$threads
pin=()
if command -v taskset >/dev/null 2>&1; then pin=(taskset -c "0-$((threads - 1))"); fi

load_torch=$(cut -d' ' -f1-3 /proc/loadavg)
"${pin[@]}" "$venv/bin/python" -c "import torch; torch.set_num_threads($threads); import runpy, sys; sys.argv = ['x', '$repeats']; runpy.run_path('$here/torch_unet.py', run_name='__main__')" >"$work/torch.json"

load_rime=$(cut -d' ' -f1-3 /proc/loadavg)
(cd "$repo" && "${pin[@]}" cargo bench --quiet --profile "$profile" --bench cycle -- \
    unet --warm-up-time 2 --measurement-time 5) >"$work/rime.log" 2>&1 \
    || { cat "$work/rime.log" >&2; exit 1; }

# Criterion prints the name, then `time: [low median high]`; medians in s.
awk '
    /^qg unet forecast step/ { name = "qg_forecast" }
    /^qg unet training step/ { name = "qg_train" }
    /^sea ice unet forecast step/ { name = "ice_forecast" }
    /^sea ice unet training step/ { name = "ice_train" }
    /time:/ && name != "" {
        sub(/.*time: *\[/, ""); v = $3; u = $4
        f = (u == "ns") ? 1e-9 : (u == "µs" || u == "us") ? 1e-6 : (u == "ms") ? 1e-3 : 1
        printf "%s %.9f\n", name, v * f; name = ""
    }' "$work/rime.log" >"$work/rime.txt"
[[ $(wc -l <"$work/rime.txt") -eq 4 ]] || { cat "$work/rime.log" >&2; echo "criterion times not parsed" >&2; exit 1; }

echo "PyTorch: $(cat "$work/torch.json")"
printf '\n%-13s %12s %12s %12s %12s\n' operation "torch ms" "rime ms" torch/rime rime/torch
while read -r name s; do
    t=$("$venv/bin/python" -c "import json,sys; print(json.load(open('$work/torch.json'))['$name'])")
    awk -v n="$name" -v a="$t" -v b="$s" 'BEGIN { printf "%-13s %12.4f %12.4f %12.2f %12.2f\n", n, a * 1e3, b * 1e3, a / b, b / a }'
done <"$work/rime.txt"
echo
echo "Same networks, f32, $threads thread(s) each (${pin[*]:-unpinned}), back to back;" \
    "load average before PyTorch: $load_torch, before rime: $load_rime." \
    "A ratio torch/rime above 1 means rime is faster."
