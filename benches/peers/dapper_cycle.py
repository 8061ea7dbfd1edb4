"""Helper of dapper_cycle.sh.

    python dapper_cycle.py CYCLES SEED [RIME_RUN_DIR]
        Times DAPPER's ETKF (N=24) and LETKF (N=7) on its Sakov & Oke (2008)
        Lorenz-96 twin; prints one JSON line per method. With RIME_RUN_DIR
        (the output folder of rime's run of the same setup), DAPPER runs on
        rime's truth and observations (truth.nc, observations.nc) instead
        of its own draw, so both score the same twin: only the initial
        ensembles and the methods' random draws differ. Otherwise the two
        twins differ (numpy's and rime's generators), and one 500-cycle
        RMSE varies by about 0.01 between twins. Run from a directory
        whose dpr_config.yaml turns live plotting off, with
        OMP/OPENBLAS/MKL_NUM_THREADS=1 and TQDM_DISABLE=1 (the script does).
    python dapper_cycle.py ienks CYCLES SEED [RIME_RUN_DIR]
        Times DAPPER's iEnKS('Sqrt', N=20, Lag=4, xN=2) on the same twin
        observed every 4 model steps (Bocquet & Sakov 2013), once with
        DAPPER's default wtol=0 (always nIter=10 iterations) and once with
        wtol=1e-4; same output and environment as above.
    python dapper_cycle.py report TITLE DAPPER_JSONL RIME_SUMMARIES [TITLE ...]
        Prints one comparison table per (TITLE, DAPPER, rime) triple;
        RIME_SUMMARIES lists the summary.json of repeated rime runs,
        comma-separated (median time).

Only DAPPER's public API is called; none of its code is copied here.
"""

import copy
import json
import math
import sys
import time


def no_progress_bars():
    import dapper.tools.progressbar as progressbar
    from dapper.dpr_config import rc

    # No progress bars: DAPPER >= 1.8 reads `rc.progbar`, the PyPI 1.7.x
    # release only this module flag (TQDM_DISABLE covers both anyway).
    progressbar.disable_progbar = True
    rc.progbar = False


def rime_twin(hmm, run_dir):
    """rime's truth and observations as DAPPER's (xx, yy).

    rime's cycle k is DAPPER's observation ko = k, at model step
    (k + 1) dko. DAPPER also wants the truth at every model step in
    between: it is integrated from the previous observation time (it enters
    only DAPPER's 'u' statistics, never the analysis scores compared here).
    """
    import numpy as np
    from scipy.io import netcdf_file

    def read(name, var):
        with netcdf_file(f"{run_dir}/{name}", "r", mmap=False) as f:
            return np.array(f.variables[var][:], dtype=float)

    truth = read("truth.nc", "truth")
    yy = read("observations.nc", "observations")
    dko, dt = hmm.tseq.dko, hmm.tseq.dt
    assert len(truth) == hmm.tseq.Ko + 1, "rime's run has another number of cycles"
    xx = np.zeros((hmm.tseq.K + 1, truth.shape[1]))
    xx[0] = hmm.X0.mu
    for ko, x in enumerate(truth):
        xx[(ko + 1) * dko] = x
    for ko in range(len(truth)):
        k0 = ko * dko
        x = xx[k0]
        for j in range(1, dko):
            x = hmm.Dyn(x, (k0 + j - 1) * dt, dt)
            xx[k0 + j] = x
    return xx, yy


def time_xps(hmm_template, xps, seed, run_dir=None):
    """Runs each xp on its own twin, or on rime's (run_dir); one JSON line per xp."""
    from dapper.xp_launch import seed_and_simulate

    for label, xp in xps.items():
        xp.seed = seed
        # As xpList.launch does: a copy of the HMM per xp, seeded from xp.seed.
        hmm, xx, yy = seed_and_simulate(copy.deepcopy(hmm_template), xp)
        if run_dir is not None:
            xx, yy = rime_twin(hmm, run_dir)
        start = time.perf_counter()
        xp.assimilate(hmm, xx, yy)  # forecast + analysis + DAPPER's own stats
        elapsed = time.perf_counter() - start
        xp.stats.average_in_time()  # fills xp.avrgs
        # Per observation cycle (= rime's cycle): Ko+1 of them, each of dko
        # model steps (K = dko (Ko+1) in all).
        cycles = hmm.tseq.Ko + 1
        line = {
            "label": label,
            "cycles": cycles,
            "averaged": int(hmm.tseq.masko.sum()),
            "time_per_cycle_s": elapsed / cycles,
            "rmse_a": float(xp.avrgs.rmse.a.val),
            "twin": "rime's" if run_dir is not None else "DAPPER's own",
        }
        iters = float(xp.avrgs.iters.val) if "iters" in xp.avrgs else float("nan")
        if not math.isnan(iters):  # iEnKS: Gauss-Newton iterations per window
            line["iterations"] = iters
        print(json.dumps(line), flush=True)


def time_dapper(cycles, seed, run_dir=None):
    from dapper.da_methods import LETKF, EnKF
    from dapper.mods.Lorenz96.sakov2008 import HMM

    no_progress_bars()
    # DAPPER has Ko+1 analyses (ko = 0..Ko) over K = Ko+1 model steps, so
    # Ko = cycles-1 runs exactly rime's `--cycles`. BurnIn stays 20 time units
    # = 400 cycles, rime's burn_in: both average cycles 400..cycles-1.
    HMM.tseq.Ko = cycles - 1

    time_xps(HMM, {
        "etkf": EnKF("Sqrt", N=24, infl=1.013, rot=True),
        # mp=False (the default): the local analyses run in this process.
        "letkf": LETKF(N=7, rot=True, infl=1.04, loc_rad=4),
    }, seed, run_dir)


def time_dapper_ienks(cycles, seed, run_dir=None):
    from dapper.da_methods import iEnKS
    from dapper.mods.Lorenz96.sakov2008 import HMM

    no_progress_bars()
    # Bocquet & Sakov (2013), as in the comments of DAPPER's sakov2008.py:
    # observations every dko = 4 model steps (dto = 0.2). Setting dko keeps
    # BurnIn = 20 time units, now 100 observation cycles; then, as above,
    # Ko = cycles-1 runs rime's `--cycles` observation cycles (K = 4 cycles
    # model steps) and the averages cover cycles 100..cycles-1 on both sides
    # (DAPPER's masko is tto > BurnIn with tto = 0.2 (ko+1)).
    HMM.tseq.dko = 4
    HMM.tseq.Ko = cycles - 1

    time_xps(HMM, {
        # nIter=10 and wtol=0 are DAPPER's defaults: always 10 iterations.
        "ienks": iEnKS("Sqrt", N=20, Lag=4, xN=2),
        "ienks_wtol": iEnKS("Sqrt", N=20, Lag=4, xN=2, wtol=1e-4),
    }, seed, run_dir)


def report_one(title, dapper_jsonl, rime_summaries):
    """rime_summaries: comma-separated summary.json files of repeated runs
    (the same numbers); the scores of the first, the median time of all."""
    import statistics

    dapper = {d["label"]: d for d in map(json.loads, open(dapper_jsonl))}
    runs = [json.load(open(path)) for path in rime_summaries.split(",")]
    rime = runs[0]
    for m in rime["methods"]:
        m["time_per_cycle_s"] = statistics.median(
            next(r for r in run["methods"] if r["label"] == m["label"])["time_per_cycle_s"]
            for run in runs)
    twins = {d.get("twin", "DAPPER's own") for d in dapper.values()}
    timing = f", rime's median time of {len(runs)} runs" if len(runs) > 1 else ""
    print(f"{title}, {rime['cycles']} cycles{timing} "
          f"(RMSE over the last {rime['cycles'] - rime['burn_in']}), seed {rime['seed']}; "
          f"DAPPER on {' and '.join(sorted(twins))} twin\n")
    row = "{:<11}{:>14}{:>14}{:>13}{:>12}{:>15}  {}"
    print(row.format("method", "DAPPER ms/cyc", "DAPPER rmse.a", "rime ms/cyc",
                     "rime rmse_a", "DAPPER/rime", "equal RMSE?"))
    # A method without an expected score gets the file's widest tolerance.
    tols = [m["expected"]["tolerance"] for m in rime["methods"] if m.get("expected")]
    default_tol = max(tols, default=0.02)
    for m in rime["methods"]:
        d = dapper[m["label"]]
        r_rmse = m["rmse_a"] if m["rmse_a"] is not None else float("nan")
        # Equal RMSE: within the tolerance the experiment file gives.
        tol = (m.get("expected") or {}).get("tolerance", default_tol)
        same = abs(d["rmse_a"] - r_rmse) <= tol
        verdict = f"yes (|diff| <= {tol})" if same else f"NO (|diff| > {tol}): ratio not at equal RMSE"
        if m.get("status", "ok") != "ok":
            verdict += f"; rime {m['status']} at cycle {m.get('stopped_at_cycle')}"
        print(row.format(m["label"], f"{1e3 * d['time_per_cycle_s']:.3f}", f"{d['rmse_a']:.4f}",
                         f"{1e3 * m['time_per_cycle_s']:.3f}", f"{r_rmse:.4f}",
                         f"{d['time_per_cycle_s'] / m['time_per_cycle_s']:.1f}x", verdict))
    iters = {label: d["iterations"] for label, d in dapper.items() if "iterations" in d}
    if iters:
        print("DAPPER Gauss-Newton iterations per window (avrgs.iters, after burn-in): "
              + ", ".join(f"{label} {n:.2f}" for label, n in iters.items()))
    print()


if __name__ == "__main__":
    if sys.argv[1] == "report":
        args = sys.argv[2:]
        for i in range(0, len(args), 3):
            report_one(*args[i:i + 3])
    elif sys.argv[1] == "ienks":
        time_dapper_ienks(int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:5])
    else:
        time_dapper(int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:4])
