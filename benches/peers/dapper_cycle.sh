#!/usr/bin/env bash
# Per-cycle time of DAPPER and rime on the Sakov & Oke (2008) Lorenz-96 twin
# (ETKF N=24, LETKF N=7; benches/peers/sakov2008_speed.toml) and of the
# iterative ensemble Kalman smoother on the Bocquet & Sakov (2013) twin (the
# same, observed every 4 model steps; iEnKS N=20, lag 4, xN=2, 10 iterations,
# and the same stopped early at wtol=1e-4; benches/peers/bocquet2013_speed.toml),
# one core each, run back to back on this machine. Prints the ratio
# DAPPER/rime per method and whether the two analysis RMSEs agree (within
# the file's tolerance). A cycle is one observation cycle (4 model steps
# for the iEnKS).
#
# Usage: bash benches/peers/dapper_cycle.sh [CYCLES=2000] [SEED=3001]
#   IENKS_CYCLES=500  cycles of the iEnKS part (DAPPER's iEnKS takes ~40 ms
#                     a cycle); both sides average after a burn-in of 100.
#   REPEATS=3         rime's runs per method (the median time is reported)
#   RIME_BIN=path     use this rime binary instead of building one (e.g. while
#                     another build holds the cargo lock).
#   PAIRED=0          DAPPER draws its own twin instead of running on rime's
#                     truth and observations (the default pairs them: seed
#                     for seed the two generators draw different twins, and
#                     one twin's RMSE moves by ~0.01 at 500 cycles).
# Exits non-zero only on errors, never because of a speed.
set -euo pipefail

cycles=${1:-2000}
# Not the file's run.seed (3000): ETKF N=24 with infl=1.013 is marginal and
# loses the truth within 2000 cycles for some twins and ensembles (DAPPER's
# for about 4 seeds in 10, rime's for about 2 in 10). On rime's twin of seed
# 3002 both stay on track (on 3001 DAPPER's ETKF does not).
seed=${2:-3002}
ienks_cycles=${IENKS_CYCLES:-500}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/rime-target}
venv=/var/tmp/rime-peers-venv
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# DAPPER from PyPI in its own venv (created once).
if [[ ! -x $venv/bin/python ]]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/pip" show --quiet dapper >/dev/null 2>&1; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check dapper
fi

# rime: dev profile (optimised, see Cargo.toml).
if [[ -n ${RIME_BIN:-} ]]; then
    rime=$RIME_BIN
else
    (cd "$repo" && cargo build --quiet)
    rime=$CARGO_TARGET_DIR/debug/rime
fi

# One core each: numpy's BLAS threads for DAPPER, rayon's pool for rime
# (rime's runner spreads methods over rayon, so one thread runs them in turn).
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
export RAYON_NUM_THREADS=1
# No progress bars (tqdm) and, through a local dpr_config.yaml, no live
# plotting and DAPPER's data directory kept inside $work.
export TQDM_DISABLE=1
printf 'liveplotting: no\ndata_root: "$cwd"\n' >"$work/dpr_config.yaml"

load() { cut -d' ' -f1-3 /proc/loadavg; }
# rime's run of a few thousand cycles lasts well under a second, so its time
# varies by 20 % from run to run: it runs REPEATS times (the same numbers
# each time) and the report takes the median time.
repeats=${REPEATS:-3}
run_rime() {  # TOML CYCLES OUT
    local r
    for r in $(seq 1 "$repeats"); do
        local out=$3
        [[ $r == 1 ]] || out=$3.$r
        (cd "$repo" && "$rime" run "$1" --cycles "$2" --seed "$seed" --out "$out") >"$out.log" 2>&1 ||
            { cat "$out.log" >&2; exit 1; }
    done
}
summaries() {  # OUT: its summary files, comma-separated
    local list=$1/summary.json r
    for r in $(seq 2 "$repeats"); do list+=",$1.$r/summary.json"; done
    echo "$list"
}

# rime first: DAPPER then runs on rime's truth and observations (PAIRED=0:
# on its own draw), so the RMSEs compare on one twin.
twin() { [[ ${PAIRED:-1} == 1 ]] && echo "$1"; }
load_rime=$(load)
run_rime benches/peers/sakov2008_speed.toml "$cycles" "$work/rime"
load_dapper=$(load)
(cd "$work" && "$venv/bin/python" "$here/dapper_cycle.py" "$cycles" "$seed" $(twin "$work/rime")) \
    >"$work/dapper.jsonl"

load_rime_ienks=$(load)
run_rime benches/peers/bocquet2013_speed.toml "$ienks_cycles" "$work/rime_ienks"
load_dapper_ienks=$(load)
(cd "$work" && "$venv/bin/python" "$here/dapper_cycle.py" ienks "$ienks_cycles" "$seed" \
    $(twin "$work/rime_ienks")) >"$work/dapper_ienks.jsonl"

"$venv/bin/python" "$here/dapper_cycle.py" report \
    "Lorenz-96 Sakov & Oke (2008)" "$work/dapper.jsonl" "$(summaries "$work/rime")" \
    "Lorenz-96 Bocquet & Sakov (2013), observed every 4 steps" \
    "$work/dapper_ienks.jsonl" "$(summaries "$work/rime_ienks")"
echo "DAPPER $("$venv/bin/pip" show dapper | sed -n 's/^Version: //p') and rime ran on this machine" \
    "($(getconf _NPROCESSORS_ONLN) CPUs), back to back, one core each; load average before DAPPER:" \
    "$load_dapper, before rime: $load_rime; before DAPPER's iEnKS: $load_dapper_ienks," \
    "before rime's: $load_rime_ienks."
