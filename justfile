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
    cp out/emulator_l96/training.png paper/figures/emulator_training.png
    cargo run -- train experiments/lorenz96/surrogate_train.toml --out out/surrogate_l96
    cargo run -- run experiments/lorenz96/surrogate_sakov2008.toml --out out/surrogate_sakov2008 --table paper/tables/surrogate_sakov2008.md
    cargo run -- evaluate experiments/lorenz96/emulator_evaluate.toml --out out/emulator_evaluate --table paper/tables/emulator_evaluate.md
    cp out/emulator_evaluate/rmse.png paper/figures/emulator_rmse.png
    cp out/emulator_evaluate/spread_skill.png paper/figures/surrogate_spread_skill.png
    cp out/emulator_evaluate/rank_histogram.png paper/figures/surrogate_rank_histogram.png
    cp out/emulator_evaluate/spectra.png paper/figures/emulator_spectra.png

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

# rime against DAPPER (per cycle) and JAX (4D-Var gradient) on the same machine.
peers:
    bash benches/peers/dapper_cycle.sh
    bash benches/peers/jax_gradient.sh
    bash benches/peers/dapper_qg.sh

# Regenerates every table of the paper.
paper: reproduce
    @echo "tables in paper/tables/"
