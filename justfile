# Longer recipes for rime. Get just with `cargo install just`.
# Every recipe is plain cargo underneath; see README.md.

export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", "/var/tmp/rime-target")

# List the recipes.
default:
    @just --list

# The tests (what CI runs first).
test:
    cargo test

# Everything CI runs, locally.
check:
    bash .ci/run

# Full-length published reproductions; tables go to paper/tables/. Fails if a score is missed.
reproduce:
    cargo run -- run experiments/lorenz96/sakov2008.toml --out out/sakov2008 --table paper/tables/sakov2008.md --check-expected
    cargo run -- run experiments/lorenz63/sakov2012.toml --out out/sakov2012 --table paper/tables/sakov2012.md --check-expected
    cargo run -- run experiments/lorenz96/bocquet2013.toml --out out/bocquet2013 --table paper/tables/bocquet2013.md --check-expected
    cargo run -- run experiments/lorenz96_two_scale/wilks2005.toml --out out/wilks2005 --table paper/tables/wilks2005.md
    cargo run -- run experiments/qg/sakov2008.toml --out out/qg_sakov2008 --table paper/tables/qg_sakov2008.md --check-expected

# The Lorenz-96 emulator end to end: data, training (12 epochs, ~13 min on
# two cores), the twins with the emulator as forecast model, the diffusion
# surrogate (~6 min) and the evaluation of both; tables to paper/tables/,
# figures to paper/figures/. Fails if the ETKF with the emulator misses its
# target.
emulator:
    cargo run -- simulate experiments/lorenz96/emulator_simulate.toml --out out/emulator_l96/trajectories.nc
    cargo run -- train experiments/lorenz96/emulator_train.toml --out out/emulator_l96
    cargo run -- run experiments/lorenz96/emulator_sakov2008.toml --out out/emulator_sakov2008 --table paper/tables/emulator_sakov2008.md --check-expected
    cargo run -- run experiments/lorenz96/emulator_bocquet2013.toml --out out/emulator_bocquet2013 --table paper/tables/emulator_bocquet2013.md
    cargo run -- run experiments/lorenz96/emulator_en4dvar.toml --out out/emulator_en4dvar --table paper/tables/emulator_en4dvar.md
    cp out/emulator_l96/training.png paper/figures/emulator_training.png
    cargo run -- train experiments/lorenz96/surrogate_train.toml --out out/surrogate_l96
    cargo run -- run experiments/lorenz96/surrogate_sakov2008.toml --out out/surrogate_sakov2008 --table paper/tables/surrogate_sakov2008.md
    cargo run -- evaluate experiments/lorenz96/surrogate_calibrate.toml --out out/surrogate_calibrate --table paper/tables/surrogate_calibrate.md
    cargo run -- evaluate experiments/lorenz96/emulator_evaluate.toml --out out/emulator_evaluate --table paper/tables/emulator_evaluate.md
    cp out/emulator_evaluate/rmse.png paper/figures/emulator_rmse.png
    cp out/emulator_evaluate/spread_skill.png paper/figures/surrogate_spread_skill.png
    cp out/emulator_evaluate/rank_histogram.png paper/figures/surrogate_rank_histogram.png
    cp out/emulator_evaluate/spectra.png paper/figures/emulator_spectra.png

# Hybrid models of the two-scale Lorenz-96: data (both scales), a learned
# tendency term in place of Wilks' polynomial trained through the truncated
# model (~30 min on two cores), the evaluation beside the polynomial and the
# bare model, and the twins with all three as forecast models.
hybrid:
    cargo run -- simulate experiments/lorenz96_two_scale/hybrid_simulate.toml --out out/hybrid_l96/trajectories.nc
    cargo run -- train experiments/lorenz96_two_scale/hybrid_train.toml --out out/hybrid_l96
    cp out/hybrid_l96/training.png paper/figures/hybrid_training.png
    cargo run -- evaluate experiments/lorenz96_two_scale/hybrid_evaluate.toml --out out/hybrid_evaluate --table paper/tables/hybrid_evaluate.md
    cp out/hybrid_evaluate/rmse.png paper/figures/hybrid_rmse.png
    cargo run -- run experiments/lorenz96_two_scale/hybrid_wilks2005.toml --out out/hybrid_wilks2005 --table paper/tables/hybrid_wilks2005.md
    cargo run -- run experiments/lorenz96_two_scale/bare_wilks2005.toml --out out/bare_wilks2005 --table paper/tables/bare_wilks2005.md
    cargo run -- run experiments/lorenz96_two_scale/wilks2005.toml --out out/wilks2005 --table paper/tables/wilks2005.md

# The QG emulator: data on the 65 x 65 grid, a U-Net trained on them (~35
# min on two cores), the 65 x 65 twin with the physical model and with the
# emulator as forecast model; tables to paper/tables/.
qg-emulator:
    cargo run -- simulate experiments/qg/emulator_simulate.toml --out out/emulator_qg/trajectories.nc
    cargo run -- train experiments/qg/emulator_train.toml --out out/emulator_qg
    cp out/emulator_qg/training.png paper/figures/qg_emulator_training.png
    cargo run -- evaluate experiments/qg/emulator_evaluate.toml --out out/qg_emulator_evaluate --table paper/tables/qg_emulator_evaluate.md
    cp out/qg_emulator_evaluate/rmse.png paper/figures/qg_emulator_rmse.png
    cargo run -- run experiments/qg/grid65.toml --out out/qg_grid65 --table paper/tables/qg_grid65.md
    cargo run -- run experiments/qg/emulator_grid65.toml --out out/qg_emulator_grid65 --table paper/tables/qg_emulator_grid65.md

# The sea-ice emulator and diffusion surrogate (issue 11, point 6): eight
# 8-day runs of the 32 x 32 sea ice under cyclones on different tracks
# (about 5 s each), the U-Net emulator at 12-hour steps (~20 min on two
# cores) and the diffusion surrogate (~40 min), both evaluated against the
# model on the held-out cyclone; table to paper/tables/, figures to
# paper/figures/sea_ice/emulator/.
sea-ice-emulator:
    mkdir -p out/sea_ice_emulator
    for c in train1 train2 train3 train4 train5 train6 validation test; do \
        cargo run --release --quiet -- simulate experiments/sea_ice/emulator/$c.toml --out out/sea_ice_emulator/$c.nc; \
    done
    cargo run --release -- train experiments/sea_ice/emulator/train.toml --out out/sea_ice_emulator/emulator
    cargo run --release -- train experiments/sea_ice/emulator/surrogate_train.toml --out out/sea_ice_emulator/surrogate
    cargo run --release -- evaluate experiments/sea_ice/emulator/evaluate.toml --out paper/figures/sea_ice/emulator --table paper/tables/sea_ice_emulator.md
    cp out/sea_ice_emulator/emulator/training.png paper/figures/sea_ice/emulator/emulator_training.png
    cp out/sea_ice_emulator/surrogate/training.png paper/figures/sea_ice/emulator/surrogate_training.png

# The boundary-layer validation cases; each file's diagnostics against its
# [expected] ranges go to paper/tables/.
boundary-layer:
    mkdir -p out/boundary_layer
    for c in gabls1 convective; do \
        (echo "Simulation \`experiments/boundary_layer/$c.toml\`: diagnostics of the last record against [expected]."; echo; \
         cargo run --quiet -- simulate experiments/boundary_layer/$c.toml --out out/boundary_layer/$c.nc 2>&1 | grep "(expected" | sed 's/^/- /') > paper/tables/$c.md; \
    done
    cargo run --quiet -- simulate experiments/boundary_layer/ekman.toml --out out/boundary_layer/ekman.nc

# The sea-ice test cases: the Mehlmann et al. (2021) cyclone at 8, 4 and 2
# km (mEVP, about 2, 8 and 25 min on one core), the box test (3 min) and
# the compression of a BBM plate (15 s); maps and last-record diagnostics to
# paper/figures/sea_ice/ and paper/tables/sea_ice_*.txt.
sea-ice:
    mkdir -p out/sea_ice paper/tables
    for c in mehlmann2021_8km mehlmann2021_4km mehlmann2021_2km mehlmann2021_8km_abl box compression_bbm; do \
        cargo run --release --quiet -- simulate experiments/sea_ice/$c.toml --out out/sea_ice/$c.nc && \
        cargo run --release --quiet -- map out/sea_ice/$c.nc --out paper/figures/sea_ice/$c | grep -v '^wrote' > paper/tables/sea_ice_$c.txt; \
    done

# The DA twins on the sea ice (4D-Var, LETKF and the free run recovering the
# thickness; 4D-Var correcting P* and the ocean drag; 4D-Var through the ice
# coupled to its boundary layer, with the prescribed wind, and estimating the
# ice's roughness): about 1, 1.5, 6, 6 and 7 minutes on one core. Tables in paper/tables/sea_ice_twin_*.md, maps of the
# thickness twin (truth, analyses, errors) in paper/figures/sea_ice/twin_thickness/.
sea-ice-twins:
    mkdir -p out/sea_ice paper/tables
    for c in twin_thickness twin_parameters twin_coupled twin_coupled_wind twin_coupled_roughness; do \
        cargo run --release --quiet -- run experiments/sea_ice/$c.toml --out out/sea_ice/$c --table paper/tables/sea_ice_$c.md; \
    done
    cargo run --release --quiet -- map out/sea_ice/twin_thickness --field h --out paper/figures/sea_ice/twin_thickness

# The 10^6-variable scaling run (ETKF, 20 members, 100 cycles, ~4 GB of
# streamed output); prints the peak resident memory.
scale:
    cargo run -- run experiments/advection2d/million.toml --out out/million

# The ignored tests: a 2.4 GB classic NetCDF file (offsets past 2 GiB) and
# the fixtures for an external reader.
slow-tests:
    cargo test --lib -- --ignored

# Criterion benches (release build).
bench:
    cargo bench --bench cycle

# rime against DAPPER (per cycle), JAX (4D-Var gradient, sea ice) and PyTorch (the emulator networks) on the same machine.
peers:
    bash benches/peers/dapper_cycle.sh
    bash benches/peers/jax_gradient.sh
    bash benches/peers/dapper_qg.sh
    bash benches/peers/jax_sea_ice.sh
    bash benches/peers/torch_emulator.sh
    bash benches/peers/torch_unet.sh

# Regenerates every table of the paper.
paper: reproduce
    @echo "tables in paper/tables/"

# The downscaling emulators of the twin (issue 24, point 3): QG data, the
# temperature and precipitation U-Nets trained on the exact chain's fine
# fields (~25 and ~20 min on two cores), their CORDEX-ML-Bench scores with
# maps and spectra; tables to paper/tables/, figures to paper/figures/.
downscaling-emulators:
    cargo build
    "$CARGO_TARGET_DIR/debug/rime" simulate experiments/qg/downscaling/simulate.toml --out out/downscaling/trajectories.nc --overwrite
    "$CARGO_TARGET_DIR/debug/rime" train experiments/qg/downscaling/train_temperature.toml --out out/downscaling/temperature --overwrite
    "$CARGO_TARGET_DIR/debug/rime" train experiments/qg/downscaling/train_precipitation.toml --out out/downscaling/precipitation --overwrite
    "$CARGO_TARGET_DIR/debug/rime" evaluate experiments/qg/downscaling/evaluate_temperature.toml --out out/downscaling/evaluate_temperature --table paper/tables/downscaling_temperature.md --overwrite
    "$CARGO_TARGET_DIR/debug/rime" evaluate experiments/qg/downscaling/evaluate_precipitation.toml --out out/downscaling/evaluate_precipitation --table paper/tables/downscaling_precipitation.md --overwrite
    mkdir -p paper/figures
    for q in temperature precipitation; do for f in map_emulated_mean map_reference_mean map_rmse spectra; do cp out/downscaling/evaluate_$q/$f.png paper/figures/downscaling_${q}_$f.png; done; cp out/downscaling/$q/training.png paper/figures/downscaling_${q}_training.png; done

# The downscaling twin (issue 24, point 5): the coarse QG state assimilating
# fine-scale temperature and precipitation stations through the exact chain,
# the learned operators (run `just downscaling-emulators` first), the naive
# coarse chain, and not at all, over three seeds (~6 min per run with
# stations on two cores); table to paper/tables/downscaling_twin.md.
downscaling-twin:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build
    for seed in 3000 3001 3002; do
        for config in exact exact_temperature exact_precipitation learned learned_temperature naive none; do
            "$CARGO_TARGET_DIR/debug/rime" run experiments/qg/downscaling/$config.toml --seed $seed --out out/downscaling/${config}_$seed --overwrite
        done
    done
    python3 experiments/qg/downscaling/table.py out/downscaling paper/tables/downscaling_twin.md
