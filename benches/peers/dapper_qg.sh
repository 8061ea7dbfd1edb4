#!/usr/bin/env bash
# Per-cycle time of DAPPER and rime on the Sakov & Oke (2008b) QG twin
# (129 x 129, 300 observations on moving tracks; experiments/qg/sakov2008.toml):
# LETKF and serial local EAKF (SL_EAKF), N = 25, inflation 1.04, localisation
# radius 10 grid lengths, run back to back on this machine. DAPPER's model is
# its Fortran code, built here with gfortran and numpy's f2py as DAPPER's
# mods/QG/f90/README.md says. Prints the ratio DAPPER/rime per method and the
# two analysis RMSEs (short runs average few cycles: their RMSEs agree only
# roughly; the full 300-cycle scores are in paper/tables/qg_sakov2008.md).
#
# Usage: bash benches/peers/dapper_qg.sh [CYCLES=100] [SEED=3000]
#   MP=1       every core on both sides (DAPPER's multiprocessing LETKF,
#              rime's threads); default: one core each.
#   RIME_BIN=path  use this rime binary instead of building one.
# Needs gfortran (apt-get install -y gfortran). Exits non-zero only on
# errors, never because of a speed.
set -euo pipefail

cycles=${1:-100}
seed=${2:-3000}
mp=${MP:-0}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/rime-target}
venv=/var/tmp/rime-peers-venv
# DAPPER's climatological QG sample (4700 model cycles, ~3 minutes) is kept
# between runs.
data=/var/tmp/rime-peers-dapper-data
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

command -v gfortran >/dev/null ||
    { echo "gfortran is needed to build DAPPER's QG model: apt-get install -y gfortran" >&2; exit 1; }
if [[ ! -x $venv/bin/python ]]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/pip" show --quiet dapper meson ninja >/dev/null 2>&1; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check dapper meson ninja
fi
# (DAPPER prints a warning about live plotting on import: the last line is the path.)
f90=$("$venv/bin/python" -c 'import dapper.mods, os; print(os.path.join(os.path.dirname(dapper.mods.__file__), "QG", "f90"))' 2>/dev/null | tail -n 1)
if ! ls "$f90"/py_mod*.so >/dev/null 2>&1; then
    echo "building DAPPER's Fortran QG model with f2py in $f90" >&2
    (cd "$f90" && PATH=$venv/bin:$PATH "$venv/bin/f2py" -c utils.f90 parameters.f90 helmholtz.f90 \
        calc.f90 qgflux.f90 qgstep.f90 interface.f90 -m py_mod >"$work/f2py.log" 2>&1) ||
        { cat "$work/f2py.log" >&2; exit 1; }
fi

if [[ -n ${RIME_BIN:-} ]]; then
    rime=$RIME_BIN
else
    (cd "$repo" && cargo build --quiet)
    rime=$CARGO_TARGET_DIR/debug/rime
fi

if [[ $mp == 1 ]]; then
    cores="every core ($(getconf _NPROCESSORS_ONLN))"
else
    cores="one core each"
    export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
    export RAYON_NUM_THREADS=1
fi
export TQDM_DISABLE=1
mkdir -p "$data"
printf 'liveplotting: no\ndata_root: "%s"\n' "$data" >"$work/dpr_config.yaml"

load() { cut -d' ' -f1-3 /proc/loadavg; }
load_dapper=$(load)
(cd "$work" && PYTHONPATH=$here "$venv/bin/python" "$here/dapper_qg.py" "$cycles" "$seed" "$mp") \
    >"$work/dapper.jsonl"
load_rime=$(load)
(cd "$repo" && "$rime" run benches/peers/qg_speed.toml --cycles "$cycles" --seed "$seed" \
    --out "$work/rime") >"$work/rime.log" 2>&1 || { cat "$work/rime.log" >&2; exit 1; }

"$venv/bin/python" "$here/dapper_cycle.py" report \
    "QG Sakov & Oke (2008b), N = 25" "$work/dapper.jsonl" "$work/rime/summary.json"
echo "DAPPER $("$venv/bin/pip" show dapper | sed -n 's/^Version: //p') (Fortran model) and rime ran on" \
    "this machine, back to back, $cores; load average before DAPPER: $load_dapper," \
    "before rime: $load_rime. Per cycle: the forecast of 25 members (4 model steps) and the analysis."
