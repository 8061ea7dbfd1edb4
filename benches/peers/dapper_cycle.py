"""Helper of dapper_cycle.sh.

    python dapper_cycle.py CYCLES SEED
        Times DAPPER's ETKF (N=24) and LETKF (N=7) on its Sakov & Oke (2008)
        Lorenz-96 twin; prints one JSON line per method. Run from a directory
        whose dpr_config.yaml turns live plotting off, with
        OMP/OPENBLAS/MKL_NUM_THREADS=1 and TQDM_DISABLE=1 (the script does).
    python dapper_cycle.py report DAPPER_JSONL RIME_SUMMARY_JSON
        Prints the comparison table.

Only DAPPER's public API is called; none of its code is copied here.
"""

import copy
import json
import sys
import time


def time_dapper(cycles, seed):
    import dapper.tools.progressbar as progressbar
    from dapper.da_methods import LETKF, EnKF
    from dapper.dpr_config import rc
    from dapper.mods.Lorenz96.sakov2008 import HMM
    from dapper.xp_launch import seed_and_simulate

    # No progress bars: DAPPER >= 1.8 reads `rc.progbar`, the PyPI 1.7.x
    # release only this module flag (TQDM_DISABLE covers both anyway).
    progressbar.disable_progbar = True
    rc.progbar = False

    # DAPPER has Ko+1 analyses (ko = 0..Ko) over K = Ko+1 model steps, so
    # Ko = cycles-1 runs exactly rime's `--cycles`. BurnIn stays 20 time units
    # = 400 cycles, rime's burn_in: both average cycles 400..cycles-1.
    HMM.tseq.Ko = cycles - 1

    xps = {
        "etkf": EnKF("Sqrt", N=24, infl=1.013, rot=True),
        # mp=False (the default): the local analyses run in this process.
        "letkf": LETKF(N=7, rot=True, infl=1.04, loc_rad=4),
    }
    for label, xp in xps.items():
        xp.seed = seed
        # As xpList.launch does: a copy of the HMM per xp, seeded from xp.seed.
        hmm, xx, yy = seed_and_simulate(copy.deepcopy(HMM), xp)
        start = time.perf_counter()
        xp.assimilate(hmm, xx, yy)  # forecast + analysis + DAPPER's own stats
        elapsed = time.perf_counter() - start
        xp.stats.average_in_time()  # fills xp.avrgs
        print(json.dumps({
            "label": label,
            "cycles": hmm.tseq.K,
            "averaged": int(hmm.tseq.masko.sum()),
            "time_per_cycle_s": elapsed / hmm.tseq.K,
            "rmse_a": float(xp.avrgs.rmse.a.val),
        }), flush=True)


def report(dapper_jsonl, rime_summary):
    dapper = {d["label"]: d for d in map(json.loads, open(dapper_jsonl))}
    rime = json.load(open(rime_summary))
    print(f"Lorenz-96 Sakov & Oke (2008), {rime['cycles']} cycles "
          f"(RMSE over the last {rime['cycles'] - rime['burn_in']}), seed {rime['seed']}\n")
    row = "{:<7}{:>14}{:>14}{:>13}{:>12}{:>15}  {}"
    print(row.format("method", "DAPPER ms/cyc", "DAPPER rmse.a", "rime ms/cyc",
                     "rime rmse_a", "DAPPER/rime", "equal RMSE?"))
    for m in rime["methods"]:
        d = dapper[m["label"]]
        r_rmse = m["rmse_a"] if m["rmse_a"] is not None else float("nan")
        # Equal RMSE: within the tolerance the experiment file gives.
        tol = (m.get("expected") or {}).get("tolerance", 0.02)
        same = abs(d["rmse_a"] - r_rmse) <= tol
        verdict = f"yes (|diff| <= {tol})" if same else f"NO (|diff| > {tol}): ratio not at equal RMSE"
        print(row.format(m["label"], f"{1e3 * d['time_per_cycle_s']:.3f}", f"{d['rmse_a']:.4f}",
                         f"{1e3 * m['time_per_cycle_s']:.3f}", f"{r_rmse:.4f}",
                         f"{d['time_per_cycle_s'] / m['time_per_cycle_s']:.1f}x", verdict))


if __name__ == "__main__":
    if sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3])
    else:
        time_dapper(int(sys.argv[1]), int(sys.argv[2]))
