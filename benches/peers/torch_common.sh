# The shared body of the PyTorch peers (torch_emulator.sh, torch_unet.sh):
# sourced after the caller sets
#   default_repeats  repeats when none is given as $1,
#   torch_script     the Python side, in this folder, printing JSON of seconds,
#   filter           the criterion filter of benches/cycle.rs,
#   benchmarks       an array of "criterion name prefix=JSON key".
# Installs PyTorch into the peers' venv, runs both sides back to back on
# the same cores (THREADS=1, pinned to CPU 0, or THREADS=2) and prints the
# medians and the ratios both ways. RIME_BENCH_PROFILE=bench (default) or dev.
set -euo pipefail

repeats=${1:-$default_repeats}
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
"${pin[@]}" "$venv/bin/python" -c "import torch; torch.set_num_threads($threads); import runpy, sys; sys.argv = ['x', '$repeats']; runpy.run_path('$here/$torch_script', run_name='__main__')" >"$work/torch.json"

load_rime=$(cut -d' ' -f1-3 /proc/loadavg)
(cd "$repo" && "${pin[@]}" cargo bench --quiet --profile "$profile" --bench cycle -- \
    "$filter" --warm-up-time 2 --measurement-time 5) >"$work/rime.log" 2>&1 \
    || { cat "$work/rime.log" >&2; exit 1; }

# Criterion prints the name, then `time: [low median high]`; medians in s.
awk -v map="$(printf '%s;' "${benchmarks[@]}")" '
    BEGIN { k = split(map, pairs, ";"); for (i = 1; i <= k; i++) if (pairs[i] != "") { split(pairs[i], p, "="); key[p[1]] = p[2] } }
    { for (prefix in key) if (index($0, prefix) == 1) name = key[prefix] }
    /time:/ && name != "" {
        sub(/.*time: *\[/, ""); v = $3; u = $4
        f = (u == "ns") ? 1e-9 : (u == "µs" || u == "us") ? 1e-6 : (u == "ms") ? 1e-3 : 1
        printf "%s %.9f\n", name, v * f; name = ""
    }' "$work/rime.log" >"$work/rime.txt"
[[ $(wc -l <"$work/rime.txt") -eq ${#benchmarks[@]} ]] || { cat "$work/rime.log" >&2; echo "criterion times not parsed" >&2; exit 1; }

echo "PyTorch: $(cat "$work/torch.json")"
printf '\n%-13s %12s %12s %12s %12s\n' operation "torch ms" "rime ms" torch/rime rime/torch
while read -r name s; do
    t=$("$venv/bin/python" -c "import json,sys; print(json.load(open('$work/torch.json'))['$name'])")
    awk -v n="$name" -v a="$t" -v b="$s" 'BEGIN { printf "%-13s %12.4f %12.4f %12.2f %12.2f\n", n, a * 1e3, b * 1e3, a / b, b / a }'
done <"$work/rime.txt"
echo
echo "Same network(s), f32, $threads thread(s) each (${pin[*]:-unpinned}), back to back;" \
    "load average before PyTorch: $load_torch, before rime: $load_rime." \
    "A ratio torch/rime above 1 means rime is faster."
