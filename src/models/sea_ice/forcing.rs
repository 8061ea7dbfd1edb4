//! Wind, ocean current and initial fields of the sea-ice model, as
//! functions of space and time written in the experiment file (never
//! stored arrays): each is one of a few analytic forms with its parameters.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

use super::super::BuildError;

/// The 10 m wind (m/s), a function of `(x, y, t)` in metres and seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Wind {
    /// Constant in space and time.
    Uniform {
        /// Eastward wind (m/s).
        u: f64,
        /// Northward wind (m/s).
        v: f64,
    },
    /// The moving cyclone of Mehlmann et al. (2021, JAMES, Eqs. 10-15):
    /// centre `c(t) = centre + velocity t`, `s = exp(-r / decay) / scale`
    /// with `r` the distance to the centre, and
    /// `u = -amplitude s [cos a X + sin a Y]`,
    /// `v = -amplitude s [-sin a X + cos a Y]` with `(X, Y)` the offset
    /// from the centre and `a = angle` (degrees). The wind is multiplied by
    /// `min(1, t / ramp)` when a ramp (s) is given.
    Cyclone {
        /// Amplitude (m/s per unit `s X`).
        amplitude: f64,
        /// Centre at t = 0 (m).
        centre: [f64; 2],
        /// Velocity of the centre (m/s).
        velocity: [f64; 2],
        /// e-folding distance of `s` (m).
        decay: f64,
        /// Divisor of `s` (m).
        scale: f64,
        /// Convergence angle `a` (degrees).
        angle: f64,
        /// Linear ramp-up time (s).
        #[serde(default)]
        ramp: Option<f64>,
    },
    /// The box test's wind (Hunke 2001 style), with `L` the domain size:
    /// `u = mean + (sin(2 pi t / period) - 3) sin(2 pi x / L) sin(pi y / L)`,
    /// `v = mean + (sin(2 pi t / period) - 3) sin(2 pi y / L) sin(pi x / L)`.
    Box {
        /// The constant part (m/s).
        mean: f64,
        /// The period of the oscillation (s).
        period: f64,
    },
}

impl Wind {
    /// The wind at `(x, y)` and time `t` in a `width x height` domain.
    pub fn at(&self, x: f64, y: f64, t: f64, width: f64, height: f64) -> [f64; 2] {
        match *self {
            Wind::Uniform { u, v } => [u, v],
            Wind::Cyclone {
                amplitude,
                centre,
                velocity,
                decay,
                scale,
                angle,
                ramp,
            } => {
                let (cx, cy) = (centre[0] + velocity[0] * t, centre[1] + velocity[1] * t);
                let (dx, dy) = (x - cx, y - cy);
                let r = (dx * dx + dy * dy).sqrt();
                let s = (-r / decay).exp() / scale;
                let (sa, ca) = angle.to_radians().sin_cos();
                let ramp = ramp.map_or(1.0, |tr| (t / tr).min(1.0));
                let k = -amplitude * s * ramp;
                [k * (ca * dx + sa * dy), k * (-sa * dx + ca * dy)]
            }
            Wind::Box { mean, period } => {
                let a = (2.0 * PI * t / period).sin() - 3.0;
                [
                    mean + a * (2.0 * PI * x / width).sin() * (PI * y / height).sin(),
                    mean + a * (2.0 * PI * y / height).sin() * (PI * x / width).sin(),
                ]
            }
        }
    }

    /// Checks the parameters.
    pub(crate) fn check(&self) -> Result<(), BuildError> {
        let bad = |key: &str, v: f64| -> Result<(), BuildError> {
            if v.is_finite() {
                Ok(())
            } else {
                Err(BuildError::invalid(key, format!("must be finite, got {v}")))
            }
        };
        match self {
            Wind::Uniform { u, v } => {
                bad("wind.u", *u)?;
                bad("wind.v", *v)
            }
            Wind::Cyclone {
                amplitude,
                centre,
                velocity,
                decay,
                scale,
                angle,
                ramp,
            } => {
                bad("wind.amplitude", *amplitude)?;
                bad("wind.angle", *angle)?;
                for v in centre.iter().chain(velocity) {
                    bad("wind.centre/velocity", *v)?;
                }
                super::super::positive("wind.decay", *decay)?;
                super::super::positive("wind.scale", *scale)?;
                if let Some(r) = ramp {
                    super::super::positive("wind.ramp", *r)?;
                }
                Ok(())
            }
            Wind::Box { mean, period } => {
                bad("wind.mean", *mean)?;
                super::super::positive("wind.period", *period)
            }
        }
    }
}

/// The surface ocean current (m/s), steady.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Ocean {
    /// At rest.
    #[default]
    Rest,
    /// Constant.
    Uniform {
        /// Eastward current (m/s).
        u: f64,
        /// Northward current (m/s).
        v: f64,
    },
    /// The anticyclonic gyre of the Mehlmann and box tests:
    /// `u = speed (2 y / L - 1)`, `v = speed (1 - 2 x / L)`.
    Gyre {
        /// Its speed at the walls (m/s).
        speed: f64,
    },
}

impl Ocean {
    /// The current at `(x, y)` in a `width x height` domain.
    pub fn at(&self, x: f64, y: f64, width: f64, height: f64) -> [f64; 2] {
        match *self {
            Ocean::Rest => [0.0, 0.0],
            Ocean::Uniform { u, v } => [u, v],
            Ocean::Gyre { speed } => [
                speed * (2.0 * y / height - 1.0),
                speed * (1.0 - 2.0 * x / width),
            ],
        }
    }

    /// Checks the parameters.
    pub(crate) fn check(&self) -> Result<(), BuildError> {
        let values: Vec<f64> = match self {
            Ocean::Rest => Vec::new(),
            Ocean::Uniform { u, v } => vec![*u, *v],
            Ocean::Gyre { speed } => vec![*speed],
        };
        match values.iter().find(|v| !v.is_finite()) {
            Some(v) => Err(BuildError::invalid(
                "ocean",
                format!("must be finite, got {v}"),
            )),
            None => Ok(()),
        }
    }
}

/// An initial field at the cell centres, a function of `(x, y)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Profile {
    /// Constant.
    Uniform {
        /// The value.
        value: f64,
    },
    /// `mean + amplitude (sin(k_x x) + sin(k_y y))` (Mehlmann et al.'s
    /// thickness: 0.3, 0.005, `[6e-5, 3e-5]` 1/m).
    Waves {
        /// Mean.
        mean: f64,
        /// Amplitude of each sine.
        amplitude: f64,
        /// Wavenumbers `[k_x, k_y]` (1/m).
        wavenumber: [f64; 2],
    },
    /// Linear in x from `west` at x = 0 to `east` at x = L (the box test's
    /// concentration `x / L`).
    RampX {
        /// Value at the west wall.
        west: f64,
        /// Value at the east wall.
        east: f64,
    },
    /// Uniform random values in `[low, high]`, a deterministic function of
    /// the position and `seed` (the heterogeneity that seeds faults).
    Noise {
        /// Smallest value.
        low: f64,
        /// Largest value.
        high: f64,
        /// Seed.
        #[serde(default)]
        seed: u64,
    },
    /// `inside` in the band `x_min <= x <= x_max`, `outside` elsewhere (a
    /// plate of ice between open water).
    BandX {
        /// West edge of the band (m).
        x_min: f64,
        /// East edge of the band (m).
        x_max: f64,
        /// Value inside.
        inside: f64,
        /// Value outside.
        outside: f64,
    },
}

/// A uniform number in [0, 1) from a position and a seed (SplitMix64).
fn hash01(x: f64, y: f64, seed: u64) -> f64 {
    let mut z = seed
        ^ x.to_bits().wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ y.to_bits()
            .rotate_left(31)
            .wrapping_mul(0xBF58_476D_1CE4_E5B9);
    for _ in 0..2 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    (z >> 11) as f64 / (1u64 << 53) as f64
}

impl Profile {
    /// The value at `(x, y)` in a domain of width `width`.
    pub fn at(&self, x: f64, y: f64, width: f64) -> f64 {
        match *self {
            Profile::Uniform { value } => value,
            Profile::Waves {
                mean,
                amplitude,
                wavenumber,
            } => mean + amplitude * ((wavenumber[0] * x).sin() + (wavenumber[1] * y).sin()),
            Profile::RampX { west, east } => west + (east - west) * x / width,
            Profile::Noise { low, high, seed } => low + (high - low) * hash01(x, y, seed),
            Profile::BandX {
                x_min,
                x_max,
                inside,
                outside,
            } => {
                if (x_min..=x_max).contains(&x) {
                    inside
                } else {
                    outside
                }
            }
        }
    }
}
