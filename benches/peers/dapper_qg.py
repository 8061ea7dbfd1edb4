"""Helper of dapper_qg.sh.

    python dapper_qg.py CYCLES SEED MP
        Times DAPPER's LETKF (N=25, infl 1.04, loc_rad 10) and SL_EAKF (the
        same settings) on its Sakov & Oke (2008b) QG twin
        (dapper.mods.QG.sakov2008), the Fortran model built with f2py; prints
        one JSON line per method (the format dapper_cycle.py reports).
        MP=1 lets DAPPER's ensemble forecast and LETKF use its
        multiprocessing on every core; otherwise both run in this process.

Only DAPPER's public API is called; none of its code is copied here.
"""

import sys

from dapper_cycle import no_progress_bars, time_xps


def time_dapper_qg(cycles, seed, mp):
    from dapper.da_methods import LETKF, SL_EAKF
    from dapper.mods.QG.sakov2008 import HMM, model

    no_progress_bars()
    # The ensemble forecast spreads members over a process pool unless told
    # not to (model_config's mp=True default): one core means none.
    model.mp = mp
    # Ko+1 analyses = rime's --cycles; BurnIn stays 250 time units (50 cycles).
    HMM.tseq.Ko = cycles - 1
    time_xps(HMM, {
        "letkf_n25": LETKF(mp=mp, N=25, infl=1.04, loc_rad=10),
        "sl_eakf_n25": SL_EAKF(N=25, infl=1.04, loc_rad=10),
    }, seed)


if __name__ == "__main__":
    time_dapper_qg(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1")
