"""Helper of jax_sea_ice.sh: times one sea-ice step (mEVP) and its gradient
in JAX (jit, CPU, f64).

    python jax_sea_ice.py [REPEATS=50]

The problem of rime's `benches/cycle.rs` (function `sea_ice`, benches
`sea_ice/mevp_step_20/128x128/1` and `sea_ice/mevp_step_20_gradient/
128x128/1`), written here independently in jax.numpy from the equations of
`src/models/sea_ice/` (B grid: velocities at the corners, tracers and
stresses at the centres): 128 x 128 cells of 4 km, dt = 60 s, uniform
wind (12, 5) m/s, ocean at rest, H = 1 m, A = 1, P* = 27 500 N/m2, C = 20,
e = 2, Delta_min = 2e-9 1/s, mEVP with alpha = beta = 300 and 20
sub-iterations (drag and Coriolis implicit), then upwind transport of H and
A. Times the forward step from a moving state (the state after one step,
as the rime bench does) and `grad <w, step(x0)>` from the state at rest;
prints one JSON line with median milliseconds and a finite-difference check
of the gradient.
"""

import json
import statistics
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np

N, DX, DT = 128, 4000.0, 60.0
P_STAR, C, E, DMIN = 27500.0, 20.0, 2.0, 2e-9
RHO_I, RHO_A, RHO_O, C_A, C_O, F = 900.0, 1.3, 1026.0, 1.2e-3, 5.5e-3, 1.46e-4
ALPHA = BETA = 300.0
ITERATIONS = 20
WIND = (12.0, 5.0)
CELLS, NODES = N * N, (N + 1) * (N + 1)
FLOOR = 1e-30


def node_gradient(f):
    p = f[1:, 1:] - f[:-1, :-1]
    q = f[:-1, 1:] - f[1:, :-1]
    return (p + q) * (0.5 / DX), (p - q) * (0.5 / DX)


def cell_derivatives(c):
    p_ = jnp.pad(c, 1)
    p = p_[1:, 1:] - p_[:-1, :-1]
    q = p_[:-1, 1:] - p_[1:, :-1]
    return (p + q) * (0.5 / DX), (p - q) * (0.5 / DX)


def cell_to_node(c):
    p = jnp.pad(c, 1)
    return 0.25 * (p[:-1, :-1] + p[:-1, 1:] + p[1:, :-1] + p[1:, 1:])


def upwind(q, uf, vf):
    qx = jnp.pad(q, ((0, 0), (1, 1)))
    fx = jnp.maximum(uf, 0) * qx[:, :-1] + jnp.minimum(uf, 0) * qx[:, 1:]
    qy = jnp.pad(q, ((1, 1), (0, 0)))
    fy = jnp.maximum(vf, 0) * qy[:-1, :] + jnp.minimum(vf, 0) * qy[1:, :]
    return -(DT / DX) * (fx[:, 1:] - fx[:, :-1]) - (DT / DX) * (fy[1:, :] - fy[:-1, :])


MASK = jnp.zeros((N + 1, N + 1)).at[1:-1, 1:-1].set(1.0)
SPEED = (WIND[0] ** 2 + WIND[1] ** 2) ** 0.5
TAU = (RHO_A * C_A * SPEED * WIND[0], RHO_A * C_A * SPEED * WIND[1])


def step(x):
    h = x[:CELLS].reshape(N, N)
    a = x[CELLS:2 * CELLS].reshape(N, N)
    u = x[2 * CELLS:2 * CELLS + NODES].reshape(N + 1, N + 1)
    v = x[2 * CELLS + NODES:2 * CELLS + 2 * NODES].reshape(N + 1, N + 1)
    o = 2 * CELLS + 2 * NODES
    sxx, syy, sxy = (x[o + k * CELLS:o + (k + 1) * CELLS].reshape(N, N) for k in range(3))
    strength = h * P_STAR * jnp.exp(C * (a - 1.0))
    dtm = DT / (jnp.maximum(cell_to_node(h), 1e-3) * RHO_I)
    b = F * DT
    rhs_u = u + dtm * TAU[0]
    rhs_v = v + dtm * TAU[1]
    e2, ra = 1.0 / (E * E), 1.0 / ALPHA

    def iteration(_, s):
        u, v, s1, s2, sxy = s
        ux, uy = node_gradient(u)
        vx, vy = node_gradient(v)
        d, dt_, ds = ux + vy, ux - vy, uy + vx
        delta = jnp.sqrt(d * d + (dt_ * dt_ + ds * ds) * e2 + FLOOR)
        two_zeta = strength / (delta + DMIN)
        s1 = s1 * (1 - ra) + two_zeta * (d - delta) * ra
        s2 = s2 * (1 - ra) + two_zeta * dt_ * (e2 * ra)
        sxy = sxy * (1 - ra) + two_zeta * ds * (0.5 * e2 * ra)
        dx_sxx, _ = cell_derivatives(0.5 * (s1 + s2))
        dx_sxy, dy_sxy = cell_derivatives(sxy)
        _, dy_syy = cell_derivatives(0.5 * (s1 - s2))
        speed = jnp.sqrt(u * u + v * v + FLOOR)
        cw = RHO_O * C_O * speed * dtm
        aa = cw + BETA + 1.0
        rx = u * BETA + rhs_u + dtm * (dx_sxx + dy_sxy)
        ry = v * BETA + rhs_v + dtm * (dx_sxy + dy_syy)
        inv = MASK / (aa * aa + b * b)
        return ((aa * rx + b * ry) * inv, (aa * ry - b * rx) * inv, s1, s2, sxy)

    u, v, s1, s2, sxy = jax.lax.fori_loop(
        0, ITERATIONS, iteration, (u, v, sxx + syy, sxx - syy, sxy))
    uf = 0.5 * (u[:-1, :] + u[1:, :])
    vf = 0.5 * (v[:, :-1] + v[:, 1:])
    h = h + upwind(h, uf, vf)
    a = jnp.clip(a + upwind(a, uf, vf), 0.0, 1.0)
    return jnp.concatenate([h.ravel(), a.ravel(), u.ravel(), v.ravel(),
                            (0.5 * (s1 + s2)).ravel(), (0.5 * (s1 - s2)).ravel(), sxy.ravel()])


def timed(f, arg, repeats):
    for _ in range(3):
        jax.block_until_ready(f(arg))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(arg))
        times.append(1e3 * (time.perf_counter() - t))
    return statistics.median(times)


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    x0 = jnp.concatenate([jnp.ones(2 * CELLS), jnp.zeros(2 * NODES + 3 * CELLS)])
    forward = jax.jit(step)
    moving = forward(x0)
    w = jnp.sin(0.37 * jnp.arange(x0.size, dtype=jnp.float64))
    j = lambda x: jnp.sum(w * step(x))
    gradient = jax.jit(jax.grad(j))
    forward_ms = timed(forward, moving, repeats)
    gradient_ms = timed(gradient, x0, repeats)
    g = gradient(x0)
    d = jnp.zeros_like(x0).at[:CELLS].set(1.0 + 0.5 * jnp.cos(1.7 * jnp.arange(CELLS)))
    eps = 1e-7
    fd = (j(x0 + eps * d) - j(x0 - eps * d)) / (2 * eps)
    print(json.dumps({
        "jax": jax.__version__,
        "forward_ms": forward_ms,
        "gradient_ms": gradient_ms,
        "max_speed": float(jnp.max(jnp.hypot(moving[2 * CELLS:2 * CELLS + NODES],
                                             moving[2 * CELLS + NODES:2 * CELLS + 2 * NODES]))),
        "fd_rel_error": abs(float(fd - g @ d)) / abs(float(fd)),
    }))


if __name__ == "__main__":
    main()
