#!/usr/bin/env bash
# One 4D-Var gradient (Lorenz-96 n=40, RK4 dt=0.05, 100 steps, 25 observation
# times, R=I) in JAX (jit, CPU, f64) and in rime (benches/cycle.rs, function
# `gradient`, each bench of the group), one core each, back to back on this
# machine. Prints the median time per call and the ratio JAX/rime.
#
# Usage: bash benches/peers/jax_gradient.sh [REPEATS=2000]
#   RIME_BENCH_PROFILE=bench (default: release settings, own build under
#   $CARGO_TARGET_DIR/release) or dev (reuses the opt-level 3 dev build).
# Exits non-zero only on errors, never because of a speed.
set -euo pipefail

repeats=${1:-2000}
profile=${RIME_BENCH_PROFILE:-bench}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/rime-target}
venv=/var/tmp/rime-peers-venv
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# JAX from PyPI in the peers' venv (shared with dapper_cycle.sh).
if [[ ! -x $venv/bin/python ]]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import jax' >/dev/null 2>&1; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check "jax[cpu]"
fi

# Build rime's bench first, on all cores, so the timed run builds nothing.
(cd "$repo" && cargo bench --quiet --profile "$profile" --bench cycle --no-run)

# One core each. XLA: no Eigen thread pool (`intra_op_parallelism_threads` is
# a TensorFlow option, not an XLA flag: XLA rejects it as `--intra_op...` and
# silently ignores it without dashes, so it is left out). taskset pins both
# processes to CPU 0 if available; rime's gradient is single-threaded anyway.
export XLA_FLAGS=--xla_cpu_multi_thread_eigen=false
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 RAYON_NUM_THREADS=1
pin=()
if command -v taskset >/dev/null 2>&1; then pin=(taskset -c 0); fi

load_jax=$(cut -d' ' -f1-3 /proc/loadavg)
"${pin[@]}" "$venv/bin/python" "$here/jax_gradient.py" "$repeats" >"$work/jax.json"

load_rime=$(cut -d' ' -f1-3 /proc/loadavg)
(cd "$repo" && "${pin[@]}" cargo bench --quiet --profile "$profile" --bench cycle -- \
    lorenz96_4dvar_gradient_100_steps --warm-up-time 2 --measurement-time 5) \
    >"$work/rime.log" 2>&1 || { cat "$work/rime.log" >&2; exit 1; }

# Criterion prints `<group>/<Strategy>` then `time: [low median high]` (on
# the same line or the next); take the median, in ms.
awk '
    match($0, /lorenz96_4dvar_gradient_100_steps\/[A-Za-z]+/) { name = substr($0, RSTART + 34, RLENGTH - 34) }
    /time:/ && name != "" {
        sub(/.*time: *\[/, ""); v = $3; u = $4
        f = (u == "ns") ? 1e-6 : (u == "µs" || u == "us") ? 1e-3 : (u == "ms") ? 1 : 1e3
        printf "%s %.6f\n", name, v * f; name = ""
    }' "$work/rime.log" >"$work/rime.txt"
[[ -s $work/rime.txt ]] || { cat "$work/rime.log" >&2; echo "no criterion times parsed" >&2; exit 1; }

jax_ms=$("$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["median_ms"])' <"$work/jax.json")
echo "JAX: $(cat "$work/jax.json")"
printf '\n%-22s %10s %10s %10s\n' strategy "JAX ms" "rime ms" JAX/rime
while read -r name ms; do
    printf '%-22s %10.4f %10.4f %10.2f\n' "$name" "$jax_ms" "$ms" "$(awk -v a="$jax_ms" -v b="$ms" 'BEGIN { print a / b }')"
done <"$work/rime.txt"
echo
echo "JAX $("$venv/bin/python" -c 'import jax; print(jax.__version__)') (median of $repeats calls) and rime" \
    "(criterion median, profile $profile) ran on this machine ($(getconf _NPROCESSORS_ONLN) CPUs)," \
    "back to back, ${pin[*]:-unpinned}; load average before JAX: $load_jax, before rime: $load_rime."
