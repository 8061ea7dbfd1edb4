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
    cargo run -- run experiments/lorenz96_two_scale/wilks2005.toml --out out/wilks2005 --table paper/tables/wilks2005.md

# Criterion benches (release build).
bench:
    cargo bench --bench cycle

# rime against DAPPER on the same machine, per-cycle ratio (installs dapper in a venv).
peers:
    bash benches/peers/dapper_cycle.sh

# Regenerates every table of the paper.
paper: reproduce
    @echo "tables in paper/tables/"
