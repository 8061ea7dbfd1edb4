#!/usr/bin/env bash
# One sea-ice mEVP step (128 x 128, 20 sub-iterations) and its gradient in
# JAX (jit, CPU, f64) and in rime (benches/cycle.rs, function `sea_ice`), one
# core each, back to back on this machine. Prints the medians and the ratios
# JAX/rime (above 1: rime is faster).
#
# Usage: bash benches/peers/jax_sea_ice.sh [REPEATS=50]
# Exits non-zero only on errors, never because of a speed.
set -euo pipefail

repeats=${1:-50}
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
if ! "$venv/bin/python" -c 'import jax' >/dev/null 2>&1; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check "jax[cpu]"
fi
(cd "$repo" && cargo bench --quiet --profile "$profile" --bench cycle --no-run)

export XLA_FLAGS=--xla_cpu_multi_thread_eigen=false
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 RAYON_NUM_THREADS=1
pin=()
if command -v taskset >/dev/null 2>&1; then pin=(taskset -c 0); fi

"${pin[@]}" "$venv/bin/python" "$here/jax_sea_ice.py" "$repeats" >"$work/jax.json"
(cd "$repo" && "${pin[@]}" cargo bench --quiet --profile "$profile" --bench cycle -- \
    'sea_ice/mevp_step_20(_gradient)?/128x128/1$' --warm-up-time 2 --measurement-time 5) \
    >"$work/rime.log" 2>&1 || { cat "$work/rime.log" >&2; exit 1; }

# Criterion prints the bench name, then `time: [low median high]`.
awk '
    /sea_ice\/mevp_step_20_gradient\/128x128\/1/ { name = "gradient" }
    /sea_ice\/mevp_step_20\/128x128\/1/ { name = "forward" }
    /time:/ && name != "" {
        sub(/.*time: *\[/, ""); v = $3; u = $4
        f = (u == "ns") ? 1e-6 : (u == "µs" || u == "us") ? 1e-3 : (u == "ms") ? 1 : 1e3
        printf "%s %.4f\n", name, v * f; name = ""
    }' "$work/rime.log" >"$work/rime.txt"
[[ $(wc -l <"$work/rime.txt") -eq 2 ]] || { cat "$work/rime.log" >&2; echo "criterion times not parsed" >&2; exit 1; }

echo "JAX: $(cat "$work/jax.json")"
printf '\n%-10s %10s %10s %10s\n' step "JAX ms" "rime ms" JAX/rime
while read -r name ms; do
    jax_ms=$("$venv/bin/python" -c "import json,sys; print(json.load(sys.stdin)['${name}_ms'])" <"$work/jax.json")
    printf '%-10s %10.3f %10.3f %10.2f\n' "$name" "$jax_ms" "$ms" "$(awk -v a="$jax_ms" -v b="$ms" 'BEGIN { print a / b }')"
done <"$work/rime.txt"
