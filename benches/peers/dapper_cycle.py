"""Time DAPPER's ETKF (N=24) and LETKF (N=7) on the Sakov & Oke (2008)
Lorenz-96 twin; prints one JSON line per method for dapper_cycle.sh.

Usage: python dapper_cycle.py CYCLES SEED   (run from a directory holding a
dpr_config.yaml that turns live plotting off; dapper_cycle.sh makes one)

Only DAPPER's public API is called (nothing of it is copied here). Run with
OMP/OPENBLAS/MKL_NUM_THREADS=1 and TQDM_DISABLE=1 (set by the shell script).
"""

import copy
import json
import sys
import time

import dapper.tools.progressbar as progressbar
from dapper.da_methods import LETKF, EnKF
from dapper.dpr_config import rc
from dapper.mods.Lorenz96.sakov2008 import HMM
from dapper.xp_launch import seed_and_simulate

# No progress bars, no live plots. DAPPER >= 1.8 has `rc.progbar`; the PyPI
# 1.7.x release only has the module flag (TQDM_DISABLE covers both).
progressbar.disable_progbar = True
rc.progbar = False
rc.liveplotting = False

cycles, seed = int(sys.argv[1]), int(sys.argv[2])
# DAPPER has Ko+1 analyses (ko = 0..Ko) over K = Ko+1 model steps, so Ko =
# cycles-1 gives exactly rime's `--cycles` cycles. BurnIn stays 20 time units
# (400 cycles), as rime's burn_in: both average the same 1600 of 2000 cycles.
HMM.tseq.Ko = cycles - 1

xps = {
    "etkf": EnKF("Sqrt", N=24, infl=1.013, rot=True),
    # mp=False (the default): LETKF's local analyses run in this process.
    "letkf": LETKF(N=7, rot=True, infl=1.04, loc_rad=4),
}
for label, xp in xps.items():
    xp.seed = seed
    hmm = copy.deepcopy(HMM)  # as xpList.launch does, one copy per xp
    hmm, xx, yy = seed_and_simulate(hmm, xp)  # seeds DAPPER's RNG from xp.seed
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
