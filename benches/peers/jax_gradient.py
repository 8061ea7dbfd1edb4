"""Helper of jax_gradient.sh: times one 4D-Var gradient in JAX (jit, CPU, f64).

    python jax_gradient.py [REPEATS=2000]

The problem of rime's `benches/cycle.rs` (function `gradient`), written here
independently in jax.numpy: Lorenz-96 (n = 40, F = 8), classical RK4 with
dt = 0.05, 100 steps from x0_i = 8 + sin(0.37 i); all variables observed every
4 steps (25 times), R = I; J_o(x0) = 1/2 sum_k |y_k - x(4k)|^2 with seeded
random-normal y_k. Times `value_and_grad(J_o)` after compilation and prints
one JSON line: median/min/max milliseconds per call, and a sanity check of
the gradient against a central finite difference.
"""

import json
import statistics
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)  # rime runs in f64
import jax.numpy as jnp
import numpy as np

N, F, DT, SPC, CYCLES = 40, 8.0, 0.05, 4, 25


def tendency(x):
    # dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F, periodic.
    return (jnp.roll(x, -1) - jnp.roll(x, 2)) * jnp.roll(x, 1) - x + F


def rk4(x):
    k1 = tendency(x)
    k2 = tendency(x + 0.5 * DT * k1)
    k3 = tendency(x + 0.5 * DT * k2)
    k4 = tendency(x + DT * k3)
    return x + DT / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def cost(x0, ys):
    # One scan iteration per observation time: SPC RK4 steps, then the misfit.
    def cycle(x, y):
        for _ in range(SPC):
            x = rk4(x)
        return x, 0.5 * jnp.sum((y - x) ** 2)

    _, misfits = jax.lax.scan(cycle, x0, ys)
    return jnp.sum(misfits)


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    x0 = 8.0 + jnp.sin(0.37 * jnp.arange(N, dtype=jnp.float64))
    ys = jnp.asarray(np.random.default_rng(1).standard_normal((CYCLES, N)))
    f = jax.jit(jax.value_and_grad(cost))

    # Warm-up: compile, then a few calls.
    for _ in range(20):
        jax.block_until_ready(f(x0, ys))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(x0, ys))
        times.append(time.perf_counter() - t)

    # Sanity: gradient vs a central finite difference along one direction.
    value, g = f(x0, ys)
    d = jnp.asarray(np.random.default_rng(2).standard_normal(N))
    eps = 1e-8  # the cost is very nonlinear in x0 over 5 time units
    fd = (cost(x0 + eps * d, ys) - cost(x0 - eps * d, ys)) / (2 * eps)
    rel = abs(float(fd - g @ d)) / abs(float(fd))

    ms = [1e3 * t for t in times]
    print(json.dumps({
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "repeats": repeats,
        "median_ms": statistics.median(ms),
        "min_ms": min(ms),
        "max_ms": max(ms),
        "cost": float(value),
        "fd_rel_error": rel,
    }))


if __name__ == "__main__":
    main()
