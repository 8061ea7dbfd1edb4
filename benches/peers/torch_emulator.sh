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

repeats=${1:-300}
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
"${pin[@]}" "$venv/bin/python" -c "import torch; torch.set_num_threads($threads); import runpy, sys; sys.argv = ['x', '$repeats']; runpy.run_path('$here/torch_emulator.py', run_name='__main__')" >"$work/torch.json"

load_rime=$(cut -d' ' -f1-3 /proc/loadavg)
(cd "$repo" && "${pin[@]}" cargo bench --quiet --profile "$profile" --bench cycle -- \
    emulator --warm-up-time 2 --measurement-time 5) >"$work/rime.log" 2>&1 \
    || { cat "$work/rime.log" >&2; exit 1; }

# Criterion prints the name, then `time: [low median high]`; medians in s.
awk '
    /^emulator forecast step/ { name = "forecast" }
    /^emulator 4-step gradient/ { name = "gradient" }
    /^emulator training step/ { name = "train" }
    /time:/ && name != "" {
        sub(/.*time: *\[/, ""); v = $3; u = $4
        f = (u == "ns") ? 1e-9 : (u == "µs" || u == "us") ? 1e-6 : (u == "ms") ? 1e-3 : 1
        printf "%s %.9f\n", name, v * f; name = ""
    }' "$work/rime.log" >"$work/rime.txt"
[[ $(wc -l <"$work/rime.txt") -eq 3 ]] || { cat "$work/rime.log" >&2; echo "criterion times not parsed" >&2; exit 1; }

echo "PyTorch: $(cat "$work/torch.json")"
printf '\n%-10s %12s %12s %12s %12s\n' operation "torch ms" "rime ms" torch/rime rime/torch
while read -r name s; do
    t=$("$venv/bin/python" -c "import json,sys; print(json.load(open('$work/torch.json'))['$name'])")
    awk -v n="$name" -v a="$t" -v b="$s" 'BEGIN { printf "%-10s %12.4f %12.4f %12.2f %12.2f\n", n, a * 1e3, b * 1e3, a / b, b / a }'
done <"$work/rime.txt"
echo
echo "Same network, f32, $threads thread(s) each (${pin[*]:-unpinned}), back to back;" \
    "load average before PyTorch: $load_torch, before rime: $load_rime." \
    "A ratio torch/rime above 1 means rime is faster."
