#!/usr/bin/env bash
# How the cost of a cycle grows: time per cycle and peak resident memory of
# one localised filter against the state size, and of the ETKF and LETKF
# against the ensemble size, each a separate `rime run` (so that its peak
# memory is its own), scores only (no fields written). Writes
# paper/tables/scaling.csv and scaling.md, and with `rime plot` (log-log
# axes, fitted exponents) paper/figures/scaling_state.png,
# scaling_memory.png and scaling_members.png.
#
#   state size:    Lorenz-96, every variable observed, LETKF N = 20,
#                  radius 4, n = 40 ... 100 000;
#                  QG (DAPPER's twin, 300 track observations per 129^2
#                  points, the same density on every grid), LETKF N = 25 in
#                  2 x 2 batches, 65^2, 129^2, 257^2 (dt halved on 257^2:
#                  twice the model steps per cycle);
#   ensemble size: Lorenz-96 with n = 1000, ETKF and LETKF, N = 10 ... 200.
#
# Usage: bash benches/scaling.sh [OUT=paper]   (about 8 minutes on 2 cores)
#   RIME_BIN=path  use this rime binary instead of building one.
#   PLOT_ONLY=1    redo the table and figures from OUT/tables/scaling.csv.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
out=$(cd "$repo" && mkdir -p "${1:-paper}" && cd "${1:-paper}" && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/rime-target}
if [[ -n ${RIME_BIN:-} ]]; then
    rime=$RIME_BIN
else
    (cd "$repo" && cargo build --quiet)
    rime=$CARGO_TARGET_DIR/debug/rime
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out/tables" "$out/figures"
csv=$out/tables/scaling.csv

# run NAME MODEL METHOD N MEMBERS CYCLES TOML: one run, one CSV row.
run() {
    local name=$1 model=$2 method=$3 n=$4 members=$5 cycles=$6 toml=$7
    printf '%s' "$toml" >"$work/$name.toml"
    "$rime" run "$work/$name.toml" --out "$work/$name" >"$work/$name.log" 2>&1 ||
        { cat "$work/$name.log" >&2; exit 1; }
    local mib
    mib=$(sed -n 's/^peak resident memory: \([0-9.]*\) MiB.*/\1/p' "$work/$name.log")
    python3 - "$work/$name/summary.json" "$model,$method,$n,$members,$cycles" "$mib" \
        >>"$work/scaling.csv" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
m = s["methods"][0]
print(f"{sys.argv[2]},{m['time_per_cycle_s']:.6g},{sys.argv[3]},{m['rmse_a']:.4g}")
EOF
    echo "$name: $(tail -n 1 "$work/scaling.csv")" >&2
}

l96() {  # SIZE METHOD MEMBERS CYCLES
    local radius=""
    [[ $2 == letkf ]] && radius="localisation_radius = 4.0"
    cat <<EOF
[model]
name = "lorenz96"
size = $1
[observations]
operator = "identity"
error_std = 1.0
[run]
cycles = $4
burn_in = $(( $4 / 5 ))
seed = 3000
[initial]
mean = 1.0
std = 1.0
[output]
states = false
[[methods]]
name = "$2"
ensemble_size = $3
inflation = 1.04
$radius
EOF
}

qg() {  # SIZE DT STEPS CYCLES
    local count=$(( $1 * $1 * 300 / 16641 ))
    cat <<EOF
[model]
name = "qg"
size = $1
dt = $2
[observations]
operator = "tracks"
count = $count
error_std = 2.0
steps_per_cycle = $3
[run]
cycles = $4
burn_in = 2
seed = 3000
[initial]
mean = 0.0
std = 0.0
[initial.sample]
spinup_cycles = 200
count = 30
spacing = 2
[output]
states = false
[[methods]]
name = "letkf"
ensemble_size = 25
inflation = 1.04
localisation_radius = 0.078125
batch = 2
EOF
}

if [[ -z ${PLOT_ONLY:-} ]]; then
echo "model,method,n,members,cycles,time_per_cycle_s,peak_memory_mib,rmse_a" >"$work/scaling.csv"
for n in 40 400 4000 40000 100000; do
    cycles=40
    (( n >= 40000 )) && cycles=10
    run "l96_letkf_n$n" lorenz96 letkf "$n" 20 "$cycles" "$(l96 "$n" letkf 20 "$cycles")"
done
run qg65 qg letkf 4225 25 10 "$(qg 65 1.25 4 10)"
run qg129 qg letkf 16641 25 10 "$(qg 129 1.25 4 10)"
run qg257 qg letkf 66049 25 10 "$(qg 257 0.625 8 10)"
for members in 10 20 50 100 200; do
    for method in etkf letkf; do
        run "l96_${method}_members$members" lorenz96 "$method" 1000 "$members" 20 \
            "$(l96 1000 "$method" "$members" 20)"
    done
done

mv "$work/scaling.csv" "$csv"
fi
python3 - "$csv" >"$out/tables/scaling.md" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print("Cost of one cycle (forecast and analysis) by `benches/scaling.sh`: wall time per")
print("cycle and the run's peak resident memory on a 2-core machine; RMSE only as a")
print("check that the filter ran (short runs; the unlocalised ETKF cannot track")
print("n = 1000 with N <= 200 and is there for its cost).\n")
print("| model | method | n | N | cycles | ms/cycle | peak MiB | rmse_a |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['model']} | {r['method']} | {r['n']} | {r['members']} | {r['cycles']} | "
          f"{1e3 * float(r['time_per_cycle_s']):.2f} | {r['peak_memory_mib']} | {r['rmse_a']} |")
EOF
python3 - "$csv" "$work" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
keys = ["model", "method", "n", "members", "time_per_cycle_s", "peak_memory_mib"]
def write(name, keep, label):
    with open(f"{sys.argv[2]}/{name}.csv", "w") as f:
        f.write("curve,n,members,time_per_cycle_s,peak_memory_mib\n")
        for r in rows:
            if keep(r):
                f.write(f"{label(r)},{r['n']},{r['members']},{r['time_per_cycle_s']},{r['peak_memory_mib']}\n")
write("state", lambda r: r["members"] in ("20", "25") and not (r["model"] == "lorenz96" and r["n"] == "1000"),
      lambda r: f"{r['model']} {r['method']} N={r['members']}")
write("members", lambda r: r["n"] == "1000", lambda r: f"lorenz96 n=1000 {r['method']}")
EOF
"$rime" plot "$work/state.csv" --x n --y time_per_cycle_s --group curve --log \
    --title "time per cycle against the state size" --out "$out/figures/scaling_state.png"
"$rime" plot "$work/state.csv" --x n --y peak_memory_mib --group curve --log \
    --title "peak memory against the state size" --out "$out/figures/scaling_memory.png"
"$rime" plot "$work/members.csv" --x members --y time_per_cycle_s --group curve --log \
    --title "time per cycle against the ensemble size" --out "$out/figures/scaling_members.png"
echo "wrote $csv, $out/tables/scaling.md and $out/figures/scaling_*.png"
