//! The linear theory of orographic precipitation of Smith & Barstad (2004),
//! on a doubly periodic grid, by FFT.
//!
//! Smith, R. B. and Barstad, I. (2004): A linear theory of orographic
//! precipitation. *J. Atmos. Sci.* **61**, 1377-1391.
//!
//! # Equations
//! A uniform wind `(u, v)` (m s^-1) blows over a terrain `h(x, y)` (m). With
//! `h_hat(k, l)` the Fourier transform of the terrain, `k`, `l` the
//! wavenumbers along `x` and `y` (rad m^-1), the precipitation transform is
//!
//! ```text
//!                          C_w i sigma h_hat(k, l)
//! P_hat(k, l) = ----------------------------------------------------
//!               (1 - i m H_w) (1 + i sigma tau_c) (1 + i sigma tau_f)
//!
//! sigma = u k + v l                                   (intrinsic frequency, s^-1)
//! m     = [ (N_m^2 - sigma^2) / sigma^2 * (k^2 + l^2) ]^(1/2)   (vertical wavenumber, m^-1)
//! ```
//!
//! with the branch of the square root fixed as in the paper:
//! `m = sign(sigma) |m|` (real, vertically propagating waves) where
//! `sigma^2 < N_m^2`, and `m = i |m|` (evanescent, decaying with height)
//! where `sigma^2 > N_m^2`; then `|1 / (1 - i m H_w)| <= 1` on both branches.
//! The three factors of the denominator are, in order, the airflow dynamics
//! (how much of the surface ascent `i sigma h_hat` survives through the
//! moist layer of depth `H_w`), the conversion of cloud water to
//! hydrometeors (time `tau_c`) and the fallout of hydrometeors (time
//! `tau_f`); each delay advects the condensed water downwind by
//! `|(u, v)| tau`. The precipitation field is then
//!
//! ```text
//! P(x, y) = max( P_background + Re IFFT(P_hat), 0 )      (kg m^-2 s^-1 = mm s^-1)
//! ```
//!
//! the truncation of the paper: the linear solution is negative in the
//! descent region in the lee (evaporation of the condensed water that
//! arrives there), and the truncation keeps only the positive part.
//!
//! Units: `C_w` in kg m^-3, `sigma h_hat` is a vertical velocity (m s^-1), so
//! `P` is a water mass flux in kg m^-2 s^-1, numerically equal to mm of water
//! per second; [`OrographicModel::precipitation_mm_per_hour`] multiplies by
//! 3600.
//!
//! # Limits
//! - `H_w = 0` (the moist layer is shallow compared with the vertical scale
//!   of the ascent) removes the airflow factor: `m H_w = 0`. With also
//!   `tau_c = tau_f = 0` the transfer function is `C_w i sigma`, that is
//!   `P = C_w (u dh/dx + v dh/dy)`, the classical upslope model
//!   ([`OrographicParams::upslope`]).
//! - `N_m = 0` is allowed: `m = i (k^2 + l^2)^(1/2)` on every mode
//!   (irrotational flow, ascent decaying as `exp(-|K| z)`).
//! - `sigma = 0` (the mean of the terrain and every mode whose crests are
//!   parallel to the wind) carries no precipitation: no ascent. Hence the
//!   domain mean of the unclipped field is exactly the background.
//!
//! # Grid and conventions
//! The terrain is `ny` rows of `nx` columns, row-major (`h[j * nx + i]`),
//! column `i` at `x = i dx` (east), row `j` at `y = j dy` (north), spacings
//! in metres. `u > 0` is a wind from the west (towards `+x`), `v > 0` a wind
//! from the south (towards `+y`). The grid is doubly periodic: a terrain that
//! does not fall to a common level at the edges is wrapped, so callers should
//! pad it (the usual practice is a margin of flat terrain at least a few
//! mountain widths and delay distances wide). The wavenumbers are those of
//! the discrete Fourier transform, `k = 2 pi f / (nx dx)` with
//! `f = 0, 1, ..., -1`; the Nyquist modes of an even-sized axis are dropped
//! from the terrain (they have no defined sign of `k`, so a derivative there
//! is undefined). A terrain resolved by the grid has nothing there.
//!
//! # Wind
//! The theory is linear in the terrain for a *uniform* wind; it is not
//! linear in the wind (`m` and the delays depend on `sigma`). A wind that
//! varies in space has no such closed form: callers pass a domain-mean wind,
//! or split the domain into blocks, each with its own uniform wind, and
//! blend the blocks' fields ([`BlockedOrographic`], below). The Coriolis
//! parameter `f`, which some implementations put into `m` as
//! `(N_m^2 - sigma^2) / (sigma^2 - f^2)`, is not included (it matters only
//! where `|sigma|` approaches `f`, for terrain some hundreds of kilometres
//! wide).
//!
//! # Winds that vary: blocks
//! [`BlockedOrographic`] splits the grid into `by x bx` blocks whose centres
//! lie on a regular lattice (block `(jb, ib)` centred on the fractional cell
//! index `((jb + 1/2) ny / by - 1/2, (ib + 1/2) nx / bx - 1/2)`), gives each
//! block `b` a uniform wind `(U_b, V_b)`, and blends the blocks' fields with
//! tent weights:
//!
//! ```text
//! w_b(j, i) = t_jb(j) t_ib(i)       t: the hat function of the cell index that is
//!                                    1 at its block centre, 0 at the neighbouring
//!                                    centres, and 1 beyond the outermost centres
//! w_b >= 0,  sum_b w_b(x) = 1       (a partition of unity, to rounding)
//! P_b(x)  = P_background + Re IFFT(T(k, l; U_b, V_b) h_hat) / N     (the whole terrain)
//! P(x)    = max( P_background + sum_b w_b(x) (P_b(x) - P_background), 0 )
//! U_b     = sum_x w_b(x) u(x) / sum_x w_b(x)      (a block's wind from a wind field)
//! ```
//!
//! Each `P_b` is the uniform-wind solution over the whole (padded) terrain,
//! so the condensate lifted in one block and carried into the next keeps the
//! wind of the block it is evaluated in; between centres the field is a
//! linear blend of the neighbours' fields. With equal winds in all blocks
//! the field is the uniform-wind one (to rounding). Mass: each
//! `P_b - P_background` has zero domain mean, so with equal winds the
//! domain mean of the unclipped field is the background; with different
//! winds it is `P_background + (1/N) sum_b sum_x w_b(x) (P_b(x) - P_background)`,
//! which is not the background in general: the condensation on a windward
//! slope and the evaporation in its lee are weighed with different winds
//! where they fall in different blocks. The imbalance is of the order of the
//! difference between the neighbouring blocks' fields in the blending zones.
//! Cost: the transfer function on half the modes per block (Hermitian
//! symmetry) and one inverse 2-D FFT per two blocks (the fields are real,
//! so two go through one complex transform); a uniform-wind field costs one
//! full evaluation and one FFT.
//!
//! # Gradients
//! The transfer function depends on the wind only through `sigma`, so
//! `dT/du = k dT/dsigma` and `dT/dv = l dT/dsigma`
//! ([`transfer_function_derivative`]), with, on the branches above
//! (`K = (k^2 + l^2)^(1/2)`),
//!
//! ```text
//! d ln T / d sigma = 1/sigma + i H_w m' / (1 - i m H_w)
//!                    - i tau_c / (1 + i sigma tau_c) - i tau_f / (1 + i sigma tau_f)
//! m' = dm/dsigma = -K N_m^2 / (sigma^2 (N_m^2 - sigma^2)^(1/2))            sigma^2 < N_m^2
//!                = i sign(sigma) K N_m^2 / (sigma^2 (sigma^2 - N_m^2)^(1/2))  sigma^2 > N_m^2
//! ```
//!
//! infinite at the branch points `sigma^2 = N_m^2` (where `T` is continuous
//! but not differentiable). For an objective `J = sum_x lambda(x) P(x)` of
//! the unclipped field, Parseval's identity for the unnormalised transforms
//! (`FFT` with `exp(-i ...)`, `IFFT` with `exp(+i ...)`, real `lambda`)
//! gives the gradient from one forward FFT of `lambda`:
//!
//! ```text
//! dJ/du = (1/N) Re sum_(k,l) k dT/dsigma h_hat(k, l) conj(lambda_hat(k, l))
//! dJ/dv = (1/N) Re sum_(k,l) l dT/dsigma h_hat(k, l) conj(lambda_hat(k, l))
//! lambda_hat = FFT(lambda),  N = ny nx
//! ```
//!
//! ([`OrographicModel::wind_vjp`]); for blocks, the same with
//! `lambda w_b` for block `b` ([`BlockedOrographic::winds_vjp`], one forward
//! FFT per block). The truncation `max(., 0)` has the gradient
//! `lambda 1[P_unclipped > 0]` almost everywhere: pass that as `lambda` for
//! an objective of the clipped field.
//!
//! # Synthetic terrain
//! [`synthetic_terrain`] builds a padded test terrain: a few broad Gaussian
//! massifs plus band-limited, anisotropic random ridges (most of their
//! variance at wavelengths a grid 4 times coarser cannot carry), clipped to
//! be `>= 0`, tapered to exactly 0 in a flat outer margin, and scaled to a
//! given maximum height; see [`TerrainParams`].
//!
//! # Defaults and thermodynamics
//! [`OrographicParams::default`] takes `N_m = 0.005 s^-1` and
//! `tau_c = tau_f = 1000 s` (typical values for the theory; Barstad & Smith
//! 2005, J. Hydrometeorol. 6, constrain the delay to 0-1000 s from gauge
//! data), no background, and `C_w`, `H_w` derived
//! from a surface state by [`OrographicParams::from_surface_temperature`]
//! at `T0 = 273.15 K`, `p = 1000 hPa` with an environmental lapse rate
//! `gamma = -5.8 K/km`. At that state the moist adiabatic lapse rate is
//! `Gamma_m ~ -6.5 K/km` and the moist buoyancy frequency
//! `N_m = [g / T0 (gamma - Gamma_m)]^(1/2) ~ 0.005 s^-1`, consistent with
//! the default `N_m`; then `C_w ~ 5.4e-3 kg m^-3` and `H_w ~ 2.37 km`.
//! The formulae:
//!
//! ```text
//! e_s(T)   = 611.2 exp(17.67 (T - 273.15) / (T - 29.65))  Pa   (Bolton 1980, over water)
//! rho_s(T) = e_s / (R_v T)                                kg m^-3
//! Gamma_m  = -g (1 + L r_s / (R_d T)) / (c_pd + L^2 r_s eps / (R_d T^2)),
//!            r_s = eps e_s / (p - e_s), eps = R_d / R_v   K m^-1 (AMS glossary)
//! C_w      = rho_s(T0) Gamma_m / gamma                    kg m^-3
//! H_w      = -rho_s / (d rho_v / dz) = -R_v T0^2 / (L gamma)      m
//! N_m^2    = g / T0 (gamma - Gamma_m)                     s^-2
//! ```
//!
//! Lapse rates are `dT/dz`, negative for a temperature falling with height,
//! as in the paper. `H_w` follows from Clausius-Clapeyron
//! (`d ln e_s / dT = L / (R_v T^2)`) applied along the environmental
//! profile, neglecting the `-1/T` of the ideal-gas density in
//! `d ln rho_s / dT` (`R_v T / L`, about 5 %).

use std::fmt;
use std::sync::Arc;

use rustfft::{Fft, FftPlanner, num_complex::Complex};

/// Gravitational acceleration (m s^-2).
pub const GRAVITY: f64 = 9.81;
/// Specific gas constant of dry air (J kg^-1 K^-1).
pub const R_DRY: f64 = 287.04;
/// Specific gas constant of water vapour (J kg^-1 K^-1).
pub const R_VAPOUR: f64 = 461.5;
/// Specific heat of dry air at constant pressure (J kg^-1 K^-1).
pub const CP_DRY: f64 = 1004.0;
/// Latent heat of vaporisation of water at 0 °C (J kg^-1).
pub const LATENT_HEAT: f64 = 2.501e6;
/// Seconds per hour: kg m^-2 s^-1 times this is mm h^-1.
pub const SECONDS_PER_HOUR: f64 = 3600.0;

/// Default moist buoyancy (Brunt-Väisälä) frequency `N_m` (s^-1).
pub const DEFAULT_MOIST_STABILITY: f64 = 0.005;
/// Default cloud-water-to-hydrometeor conversion time `tau_c` (s).
pub const DEFAULT_CONVERSION_TIME: f64 = 1000.0;
/// Default hydrometeor fallout time `tau_f` (s).
pub const DEFAULT_FALLOUT_TIME: f64 = 1000.0;
/// Surface temperature (K) from which the default `C_w` and `H_w` derive.
pub const DEFAULT_SURFACE_TEMPERATURE: f64 = 273.15;
/// Environmental lapse rate `gamma = dT/dz` (K m^-1) of the defaults.
pub const DEFAULT_ENVIRONMENTAL_LAPSE_RATE: f64 = -5.8e-3;
/// Surface pressure (Pa) of the defaults.
pub const DEFAULT_SURFACE_PRESSURE: f64 = 1.0e5;

/// Lowest and highest temperatures (K) the thermodynamic helpers accept.
const TEMPERATURE_RANGE: (f64, f64) = (173.15, 373.15);

fn check_temperature(name: &str, t: f64) -> Result<(), String> {
    if t.is_finite() && t >= TEMPERATURE_RANGE.0 && t <= TEMPERATURE_RANGE.1 {
        Ok(())
    } else {
        Err(format!(
            "{name} must be a temperature in kelvin within [{}, {}], got {t}",
            TEMPERATURE_RANGE.0, TEMPERATURE_RANGE.1
        ))
    }
}

fn check_lapse_rate(name: &str, gamma: f64) -> Result<(), String> {
    if gamma.is_finite() && gamma < 0.0 {
        Ok(())
    } else {
        Err(format!(
            "{name} must be a finite, negative lapse rate dT/dz in K/m (e.g. -5.8e-3), got {gamma}"
        ))
    }
}

/// Saturation vapour pressure over liquid water (Pa) at temperature
/// `t_kelvin`, by Bolton's (1980) fit of the Magnus form,
/// `e_s = 611.2 exp(17.67 T_c / (T_c + 243.5))` with `T_c` in °C, within
/// 0.1 % of the reference values from -35 °C to 35 °C (over supercooled
/// water below 0 °C).
///
/// # Errors
/// `t_kelvin` outside [173.15, 373.15] K or not finite.
pub fn saturation_vapour_pressure(t_kelvin: f64) -> Result<f64, String> {
    check_temperature("t_kelvin", t_kelvin)?;
    let tc = t_kelvin - 273.15;
    Ok(611.2 * (17.67 * tc / (tc + 243.5)).exp())
}

/// Saturation water-vapour density `rho_s = e_s / (R_v T)` (kg m^-3), with
/// `e_s` from [`saturation_vapour_pressure`].
///
/// # Errors
/// As [`saturation_vapour_pressure`].
pub fn saturation_vapour_density(t_kelvin: f64) -> Result<f64, String> {
    Ok(saturation_vapour_pressure(t_kelvin)? / (R_VAPOUR * t_kelvin))
}

/// Moist (saturated) adiabatic lapse rate `Gamma_m = dT/dz` (K m^-1,
/// negative) at temperature `t_kelvin` and pressure `pressure` (Pa), by the
/// approximate form of the AMS Glossary of Meteorology:
/// `-g (1 + L r_s / (R_d T)) / (c_pd + L^2 r_s eps / (R_d T^2))` with the
/// saturation mixing ratio `r_s = eps e_s / (p - e_s)`, `eps = R_d / R_v`.
/// About -6.5 K/km at 0 °C and 1000 hPa, -4.3 K/km at 20 °C.
///
/// # Errors
/// `t_kelvin` as in [`saturation_vapour_pressure`]; `pressure` not finite,
/// or not above the saturation vapour pressure.
pub fn moist_adiabatic_lapse_rate(t_kelvin: f64, pressure: f64) -> Result<f64, String> {
    let es = saturation_vapour_pressure(t_kelvin)?;
    if !(pressure.is_finite() && pressure > es) {
        return Err(format!(
            "pressure must be finite and above the saturation vapour pressure ({es} Pa) in Pa, got {pressure}"
        ));
    }
    let eps = R_DRY / R_VAPOUR;
    let rs = eps * es / (pressure - es);
    let num = GRAVITY * (1.0 + LATENT_HEAT * rs / (R_DRY * t_kelvin));
    let den = CP_DRY + LATENT_HEAT * LATENT_HEAT * rs * eps / (R_DRY * t_kelvin * t_kelvin);
    Ok(-num / den)
}

/// Water-vapour scale height `H_w = -rho_s / (d rho_v / dz)` (m) of a
/// saturated environment with surface temperature `t_kelvin` and lapse rate
/// `gamma_env = dT/dz` (K m^-1, negative): by Clausius-Clapeyron,
/// `H_w = -R_v T^2 / (L gamma)`. About 2.4 km at 0 °C and -5.8 K/km.
///
/// # Errors
/// `t_kelvin` as in [`saturation_vapour_pressure`]; `gamma_env` not finite
/// or not negative.
pub fn water_vapour_scale_height(t_kelvin: f64, gamma_env: f64) -> Result<f64, String> {
    check_temperature("t_kelvin", t_kelvin)?;
    check_lapse_rate("gamma_env", gamma_env)?;
    Ok(-R_VAPOUR * t_kelvin * t_kelvin / (LATENT_HEAT * gamma_env))
}

/// Uplift sensitivity factor `C_w = rho_s Gamma_m / gamma` (kg m^-3): the
/// surface saturation vapour density times the ratio of the moist adiabatic
/// lapse rate (at `t_kelvin`, `pressure`) to the environmental one
/// `gamma_env`. The column condensation rate of the upslope model is
/// `C_w w` for a surface vertical velocity `w`.
///
/// # Errors
/// As [`moist_adiabatic_lapse_rate`] and [`water_vapour_scale_height`].
pub fn uplift_sensitivity(t_kelvin: f64, gamma_env: f64, pressure: f64) -> Result<f64, String> {
    check_lapse_rate("gamma_env", gamma_env)?;
    let gamma_m = moist_adiabatic_lapse_rate(t_kelvin, pressure)?;
    Ok(saturation_vapour_density(t_kelvin)? * gamma_m / gamma_env)
}

/// Moist buoyancy (Brunt-Väisälä) frequency `N_m` (s^-1) of a saturated
/// environment, in the simple form `N_m^2 = g / T (gamma - Gamma_m)`, lapse
/// rates as `dT/dz` (the refinements of Durran & Klemp 1982 for water
/// loading are left out). Stable, `N_m^2 > 0`, when the environment cools
/// with height more slowly than the moist adiabat.
///
/// # Errors
/// As [`moist_adiabatic_lapse_rate`] and [`water_vapour_scale_height`]; and
/// `gamma_env` steeper than the moist adiabat (a moist-unstable profile,
/// outside the linear theory).
pub fn moist_stability_frequency(
    t_kelvin: f64,
    gamma_env: f64,
    pressure: f64,
) -> Result<f64, String> {
    check_lapse_rate("gamma_env", gamma_env)?;
    let gamma_m = moist_adiabatic_lapse_rate(t_kelvin, pressure)?;
    let n2 = GRAVITY / t_kelvin * (gamma_env - gamma_m);
    if n2 < 0.0 {
        return Err(format!(
            "gamma_env = {gamma_env} K/m is steeper than the moist adiabat ({gamma_m} K/m): \
             the profile is moist-unstable, N_m^2 = {n2} s^-2 < 0"
        ));
    }
    Ok(n2.sqrt())
}

/// Parameters of the linear model. All are in SI units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OrographicParams {
    /// Moist buoyancy frequency `N_m` (s^-1), `>= 0`; 0 gives irrotational
    /// flow.
    pub nm: f64,
    /// Conversion time `tau_c` of cloud water into hydrometeors (s), `>= 0`.
    pub tau_c: f64,
    /// Fallout time `tau_f` of hydrometeors (s), `>= 0`.
    pub tau_f: f64,
    /// Uplift sensitivity factor `C_w = rho_s Gamma_m / gamma` (kg m^-3),
    /// `>= 0`.
    pub cw: f64,
    /// Water-vapour scale height `H_w` (m), `>= 0`; 0 removes the airflow
    /// dynamics (the upslope limit).
    pub hw: f64,
    /// Background (non-orographic) precipitation added before the
    /// truncation (kg m^-2 s^-1), `>= 0`.
    pub background: f64,
}

impl Default for OrographicParams {
    /// `N_m = 0.005 s^-1`, `tau_c = tau_f = 1000 s`, no background, and
    /// `C_w`, `H_w` from [`OrographicParams::from_surface_temperature`] at
    /// 273.15 K, -5.8 K/km, 1000 hPa (`C_w ~ 5.4e-3 kg m^-3`,
    /// `H_w ~ 2.37 km`); see the module documentation.
    fn default() -> Self {
        Self::from_surface_temperature(
            DEFAULT_SURFACE_TEMPERATURE,
            DEFAULT_ENVIRONMENTAL_LAPSE_RATE,
            DEFAULT_SURFACE_PRESSURE,
        )
        .expect("the default surface state is valid")
    }
}

impl OrographicParams {
    /// `C_w` ([`uplift_sensitivity`]) and `H_w`
    /// ([`water_vapour_scale_height`]) from the surface temperature
    /// `t0_kelvin`, the environmental lapse rate `gamma_env = dT/dz` (K m^-1,
    /// negative) and the surface pressure `pressure` (Pa); the other fields
    /// take their defaults (`N_m = 0.005 s^-1`, `tau_c = tau_f = 1000 s`, no
    /// background). [`moist_stability_frequency`] gives an `N_m` consistent
    /// with the same state, for callers who want it.
    ///
    /// # Errors
    /// As the helpers: a temperature outside [173.15, 373.15] K, a
    /// non-negative or non-finite `gamma_env`, a bad `pressure`.
    pub fn from_surface_temperature(
        t0_kelvin: f64,
        gamma_env: f64,
        pressure: f64,
    ) -> Result<Self, String> {
        check_temperature("t0_kelvin", t0_kelvin)?;
        let params = Self {
            nm: DEFAULT_MOIST_STABILITY,
            tau_c: DEFAULT_CONVERSION_TIME,
            tau_f: DEFAULT_FALLOUT_TIME,
            cw: uplift_sensitivity(t0_kelvin, gamma_env, pressure)?,
            hw: water_vapour_scale_height(t0_kelvin, gamma_env)?,
            background: 0.0,
        };
        params.check()?;
        Ok(params)
    }

    /// The upslope model `P = max(C_w (u dh/dx + v dh/dy), 0)`: no airflow
    /// dynamics (`H_w = 0`, `N_m = 0`), no delays, no background.
    pub fn upslope(cw: f64) -> Self {
        Self {
            nm: 0.0,
            tau_c: 0.0,
            tau_f: 0.0,
            cw,
            hw: 0.0,
            background: 0.0,
        }
    }

    /// Checks that every field is finite and non-negative.
    ///
    /// # Errors
    /// Names the first bad field.
    pub fn check(&self) -> Result<(), String> {
        let fields = [
            ("nm", self.nm, "s^-1"),
            ("tau_c", self.tau_c, "s"),
            ("tau_f", self.tau_f, "s"),
            ("cw", self.cw, "kg m^-3"),
            ("hw", self.hw, "m"),
            ("background", self.background, "kg m^-2 s^-1"),
        ];
        for (name, value, unit) in fields {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!(
                    "{name} must be finite and >= 0 (in {unit}), got {value}"
                ));
            }
        }
        Ok(())
    }
}

/// The airflow factor `1 - i m H_w` for a mode of intrinsic frequency
/// `sigma != 0` and horizontal wavenumber magnitude `kk`; `None` where
/// `|m| H_w` is infinite (the factor's inverse is then 0: no ascent reaches
/// the moist layer).
fn airflow_factor(nm: f64, hw: f64, sigma: f64, kk: f64) -> Option<Complex<f64>> {
    if hw == 0.0 {
        return Some(Complex::new(1.0, 0.0));
    }
    // |m| = K |N_m^2 / sigma^2 - 1|^(1/2), written without sigma^2 so that
    // neither N_m = 0 nor a tiny sigma loses it to underflow.
    let ratio = nm / sigma.abs();
    let m_abs = kk * ((ratio - 1.0) * (ratio + 1.0)).abs().sqrt();
    let mh = m_abs * hw;
    if !mh.is_finite() {
        return None;
    }
    if ratio > 1.0 {
        // sigma^2 < N_m^2: propagating, m = sign(sigma) |m|.
        Some(Complex::new(1.0, -sigma.signum() * mh))
    } else {
        // sigma^2 >= N_m^2: evanescent, m = i |m|, 1 - i (i |m|) H_w.
        Some(Complex::new(1.0 + mh, 0.0))
    }
}

/// The transfer function `P_hat / h_hat` (kg m^-3 s^-1) of the linear
/// theory at wavenumbers `(k, l)` (rad m^-1) for the wind `(u, v)`
/// (m s^-1):
/// `C_w i sigma / ((1 - i m H_w) (1 + i sigma tau_c) (1 + i sigma tau_f))`,
/// `sigma = u k + v l`, with `m` on the branches of the module
/// documentation. Exactly 0 where `sigma = 0` and where `|m| H_w` overflows.
/// Hermitian: the value at `(-k, -l)` is the conjugate of that at `(k, l)`.
pub fn transfer_function(
    params: &OrographicParams,
    k: f64,
    l: f64,
    u: f64,
    v: f64,
) -> Complex<f64> {
    let zero = Complex::new(0.0, 0.0);
    let sigma = u * k + v * l;
    if sigma == 0.0 {
        return zero;
    }
    let Some(airflow) = airflow_factor(params.nm, params.hw, sigma, k.hypot(l)) else {
        return zero;
    };
    let conversion = Complex::new(1.0, sigma * params.tau_c);
    let fallout = Complex::new(1.0, sigma * params.tau_f);
    Complex::new(0.0, params.cw * sigma) / (airflow * conversion * fallout)
}

/// `1 / (1 + i t)`, without overflow or underflow of `t^2` for large `|t|`
/// (0 for an infinite `t`).
fn inv_one_plus_i(t: f64) -> Complex<f64> {
    if t.abs() <= 1.0 {
        let d = 1.0 + t * t;
        Complex::new(1.0 / d, -t / d)
    } else {
        // (1/t) (1/t - i) / (1 + 1/t^2)
        let s = 1.0 / t;
        let f = s / (1.0 + s * s);
        Complex::new(f * s, -f)
    }
}

/// The derivative `dT/dsigma` (kg m^-3, i.e. kg m^-3 s^-1 per s^-1) of the
/// [`transfer_function`] `T` with respect to the intrinsic frequency
/// `sigma = u k + v l` at wavenumbers `(k, l)` (rad m^-1) and wind `(u, v)`
/// (m s^-1). `T` depends on the wind only through `sigma`, so
/// `dT/du = k dT/dsigma` and `dT/dv = l dT/dsigma` (kg m^-4, i.e.
/// kg m^-3 s^-1 per m s^-1).
///
/// Analytic on both branches of `m` (see the module documentation,
/// "Gradients"):
/// `dT/dsigma = C_w i / (A B_c B_f) (1/B_c + 1/B_f - 1 + sigma i H_w m' / A)`
/// with `A = 1 - i m H_w`, `B = 1 + i sigma tau`, written with the ratio
/// `N_m / |sigma|` as [`transfer_function`] is, so that neither a tiny
/// `sigma` nor `N_m = 0` loses it to underflow. At `sigma = 0` the value is
/// the limit `lim T / sigma`: `C_w i` with `H_w = 0`, `C_w i / (1 + K H_w)`
/// with `N_m = 0`, and 0 otherwise (there `|m| -> infinity` and
/// `T ~ -C_w sigma^2 / (K H_w N_m)`). Exactly 0 where `|m| H_w` overflows
/// (where `T` is forced to 0). Not finite (NaN) at the branch points
/// `|sigma| = N_m` exactly, where `m'` is infinite and `T` is not
/// differentiable (with `H_w > 0`).
pub fn transfer_function_derivative(
    params: &OrographicParams,
    k: f64,
    l: f64,
    u: f64,
    v: f64,
) -> Complex<f64> {
    let zero = Complex::new(0.0, 0.0);
    let i_cw = Complex::new(0.0, params.cw);
    let sigma = u * k + v * l;
    let kk = k.hypot(l);
    if sigma == 0.0 {
        let inv_airflow = if params.hw == 0.0 || kk == 0.0 {
            1.0
        } else if params.nm == 0.0 {
            1.0 / (1.0 + kk * params.hw)
        } else {
            0.0
        };
        return i_cw * inv_airflow;
    }
    // 1 / A and sigma i H_w m' / A.
    let (inv_airflow, airflow_term) = if params.hw == 0.0 {
        (Complex::new(1.0, 0.0), zero)
    } else {
        // As in airflow_factor: ratio = N_m / |sigma|, |m| H_w = K q H_w
        // with q = |ratio^2 - 1|^(1/2). Then sigma m' H_w = c r^2/q^2 |m| H_w
        // with c = -i sign(sigma) (propagating) or i^2 = -1 (evanescent), so
        // sigma i H_w m' / A = c (r/q)^2 (|m| H_w / A), each factor bounded
        // or of the size of the result.
        let ratio = params.nm / sigma.abs();
        let q = ((ratio - 1.0) * (ratio + 1.0)).abs().sqrt();
        let mh = kk * q * params.hw;
        if !mh.is_finite() {
            return zero;
        }
        if q == 0.0 {
            return Complex::new(f64::NAN, f64::NAN);
        }
        let rq = ratio / q;
        if ratio > 1.0 {
            // Propagating: A = 1 - i sign(sigma) |m| H_w.
            let inv = inv_one_plus_i(-sigma.signum() * mh);
            let c = Complex::new(0.0, -sigma.signum());
            (inv, c * (rq * rq * mh) * inv)
        } else {
            // Evanescent: A = 1 + |m| H_w.
            let inv = 1.0 / (1.0 + mh);
            (
                Complex::new(inv, 0.0),
                Complex::new(-(rq * rq) * (mh * inv), 0.0),
            )
        }
    };
    let inv_c = inv_one_plus_i(sigma * params.tau_c);
    let inv_f = inv_one_plus_i(sigma * params.tau_f);
    let bracket = inv_c + inv_f - 1.0 + airflow_term;
    i_cw * inv_airflow * inv_c * inv_f * bracket
}

/// Buffers for [`OrographicModel::precipitation_into`], so that repeated
/// calls allocate nothing. Made by [`OrographicModel::workspace`]; fits
/// only models of the same grid size.
#[derive(Clone)]
pub struct OrographicWorkspace {
    /// The spectrum, transposed: `[i * ny + j]`.
    spectrum: Vec<Complex<f64>>,
    /// The field, row-major.
    field: Vec<Complex<f64>>,
    /// FFT scratch.
    scratch: Vec<Complex<f64>>,
}

impl fmt::Debug for OrographicWorkspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrographicWorkspace")
            .field("len", &self.field.len())
            .finish()
    }
}

/// The linear orographic precipitation model on one terrain: wavenumbers,
/// FFT plans and the terrain spectrum are computed once, in
/// [`OrographicModel::new`]; each call for a wind then costs one
/// multiplication by the transfer function and one inverse 2-D FFT.
#[derive(Clone)]
pub struct OrographicModel {
    ny: usize,
    nx: usize,
    dx: f64,
    dy: f64,
    params: OrographicParams,
    /// `k` of each column mode (rad m^-1).
    kx: Vec<f64>,
    /// `l` of each row mode (rad m^-1).
    ky: Vec<f64>,
    /// Terrain spectrum, transposed (`[i * ny + j]`, `i` the `k` index),
    /// Nyquist modes zeroed.
    h_hat: Vec<Complex<f64>>,
    row_forward: Arc<dyn Fft<f64>>,
    row_inverse: Arc<dyn Fft<f64>>,
    col_forward: Arc<dyn Fft<f64>>,
    col_inverse: Arc<dyn Fft<f64>>,
    scratch_len: usize,
}

impl fmt::Debug for OrographicModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrographicModel")
            .field("ny", &self.ny)
            .field("nx", &self.nx)
            .field("dx", &self.dx)
            .field("dy", &self.dy)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// Discrete Fourier wavenumbers (rad m^-1) of `n` points `d` apart, in FFT
/// order: `2 pi f / (n d)`, `f = 0, 1, ..., -1`.
fn wavenumbers(n: usize, d: f64) -> Vec<f64> {
    let length = n as f64 * d;
    (0..n)
        .map(|i| {
            let f = if i < n.div_ceil(2) {
                i as f64
            } else {
                i as f64 - n as f64
            };
            2.0 * std::f64::consts::PI * f / length
        })
        .collect()
}

/// `dst[i * rows + j] = src[j * cols + i]` for a `rows x cols` row-major
/// `src`.
fn transpose(src: &[Complex<f64>], dst: &mut [Complex<f64>], rows: usize, cols: usize) {
    for (j, row) in src.chunks_exact(cols).enumerate() {
        for (i, value) in row.iter().enumerate() {
            dst[i * rows + j] = *value;
        }
    }
}

impl OrographicModel {
    /// A model of the terrain `terrain` (m, row-major, `ny` rows of `nx`
    /// columns, spacings `dx`, `dy` in metres) with parameters `params`.
    ///
    /// # Errors
    /// `ny` or `nx` zero; `dx`, `dy` not finite and positive; `terrain` of
    /// length other than `ny * nx` or with a non-finite value; `params` as
    /// [`OrographicParams::check`].
    pub fn new(
        terrain: &[f64],
        ny: usize,
        nx: usize,
        dx: f64,
        dy: f64,
        params: OrographicParams,
    ) -> Result<Self, String> {
        if ny == 0 {
            return Err("ny must be at least 1".into());
        }
        if nx == 0 {
            return Err("nx must be at least 1".into());
        }
        for (name, d) in [("dx", dx), ("dy", dy)] {
            if !(d.is_finite() && d > 0.0) {
                return Err(format!(
                    "{name} must be a finite, positive spacing in metres, got {d}"
                ));
            }
        }
        params.check()?;
        let n = ny
            .checked_mul(nx)
            .ok_or_else(|| format!("ny * nx overflows: ny = {ny}, nx = {nx}"))?;
        let mut planner = FftPlanner::<f64>::new();
        let row_forward = planner.plan_fft_forward(nx);
        let row_inverse = planner.plan_fft_inverse(nx);
        let col_forward = planner.plan_fft_forward(ny);
        let col_inverse = planner.plan_fft_inverse(ny);
        let scratch_len = [&row_forward, &row_inverse, &col_forward, &col_inverse]
            .iter()
            .map(|f| f.get_inplace_scratch_len())
            .max()
            .unwrap_or(0);
        let mut model = Self {
            ny,
            nx,
            dx,
            dy,
            params,
            kx: wavenumbers(nx, dx),
            ky: wavenumbers(ny, dy),
            h_hat: vec![Complex::new(0.0, 0.0); n],
            row_forward,
            row_inverse,
            col_forward,
            col_inverse,
            scratch_len,
        };
        model.set_terrain(terrain)?;
        Ok(model)
    }

    /// Replaces the terrain (m, row-major, same grid), reusing the plans.
    ///
    /// # Errors
    /// `terrain` of length other than `ny * nx` or with a non-finite value;
    /// the model is then unchanged.
    pub fn set_terrain(&mut self, terrain: &[f64]) -> Result<(), String> {
        let (ny, nx) = (self.ny, self.nx);
        if terrain.len() != ny * nx {
            return Err(format!(
                "terrain has {} values, expected ny * nx = {ny} * {nx} = {}",
                terrain.len(),
                ny * nx
            ));
        }
        if let Some(i) = terrain.iter().position(|h| !h.is_finite()) {
            return Err(format!(
                "terrain must be finite, got {} at index {i}",
                terrain[i]
            ));
        }
        let mut ws = self.workspace();
        for (c, h) in ws.field.iter_mut().zip(terrain) {
            *c = Complex::new(*h, 0.0);
        }
        self.forward_transform(&mut ws);
        // Drop the Nyquist modes of even-sized axes (see the module docs).
        let zero = Complex::new(0.0, 0.0);
        if nx % 2 == 0 {
            let i = nx / 2;
            ws.spectrum[i * ny..(i + 1) * ny].fill(zero);
        }
        if ny % 2 == 0 {
            for column in ws.spectrum.chunks_exact_mut(ny) {
                column[ny / 2] = zero;
            }
        }
        self.h_hat = ws.spectrum;
        Ok(())
    }

    /// Rows of the grid.
    pub fn ny(&self) -> usize {
        self.ny
    }

    /// Columns of the grid.
    pub fn nx(&self) -> usize {
        self.nx
    }

    /// Spacing along `x` (m).
    pub fn dx(&self) -> f64 {
        self.dx
    }

    /// Spacing along `y` (m).
    pub fn dy(&self) -> f64 {
        self.dy
    }

    /// The parameters.
    pub fn params(&self) -> &OrographicParams {
        &self.params
    }

    /// Replaces the parameters (the terrain spectrum is kept).
    ///
    /// # Errors
    /// As [`OrographicParams::check`]; the model is then unchanged.
    pub fn set_params(&mut self, params: OrographicParams) -> Result<(), String> {
        params.check()?;
        self.params = params;
        Ok(())
    }

    /// Buffers for [`precipitation_into`](Self::precipitation_into) and
    /// [`precipitation_unclipped_into`](Self::precipitation_unclipped_into).
    pub fn workspace(&self) -> OrographicWorkspace {
        let n = self.ny * self.nx;
        let zero = Complex::new(0.0, 0.0);
        OrographicWorkspace {
            spectrum: vec![zero; n],
            field: vec![zero; n],
            scratch: vec![zero; self.scratch_len],
        }
    }

    /// `ws.spectrum` (transposed) = the unnormalised forward 2-D FFT of
    /// `ws.field` (row-major); `ws.field` is overwritten.
    fn forward_transform(&self, ws: &mut OrographicWorkspace) {
        self.row_forward
            .process_with_scratch(&mut ws.field, &mut ws.scratch);
        transpose(&ws.field, &mut ws.spectrum, self.ny, self.nx);
        self.col_forward
            .process_with_scratch(&mut ws.spectrum, &mut ws.scratch);
    }

    fn check_wind(u: f64, v: f64) -> Result<(), String> {
        for (name, w) in [("u", u), ("v", v)] {
            if !w.is_finite() {
                return Err(format!("{name} must be a finite wind in m/s, got {w}"));
            }
        }
        Ok(())
    }

    fn check_workspace(&self, ws: &OrographicWorkspace) -> Result<(), String> {
        let n = self.ny * self.nx;
        if ws.field.len() != n || ws.spectrum.len() != n || ws.scratch.len() < self.scratch_len {
            return Err(format!(
                "ws was made for a grid of {} points, this model has {n}",
                ws.field.len()
            ));
        }
        Ok(())
    }

    fn check_field(&self, name: &str, field: &[f64]) -> Result<(), String> {
        let n = self.ny * self.nx;
        if field.len() != n {
            return Err(format!(
                "{name} has {} values, expected ny * nx = {n}",
                field.len()
            ));
        }
        if let Some(i) = field.iter().position(|x| !x.is_finite()) {
            return Err(format!(
                "{name} must be finite, got {} at index {i}",
                field[i]
            ));
        }
        Ok(())
    }

    /// `ws.field` = the unnormalised inverse FFT of `T h_hat` for the wind
    /// `(u, v)` (row-major; `P - P_background = Re(field) / N`). Checked
    /// arguments.
    fn anomaly_transform(&self, u: f64, v: f64, ws: &mut OrographicWorkspace) {
        let (ny, nx) = (self.ny, self.nx);
        // Transfer function times terrain spectrum, in the transposed
        // layout: one column of `l` modes per `k`.
        for ((column, h_column), &k) in ws
            .spectrum
            .chunks_exact_mut(ny)
            .zip(self.h_hat.chunks_exact(ny))
            .zip(&self.kx)
        {
            for ((p, h), &l) in column.iter_mut().zip(h_column).zip(&self.ky) {
                *p = if *h == Complex::new(0.0, 0.0) {
                    *h
                } else {
                    *h * transfer_function(&self.params, k, l, u, v)
                };
            }
        }
        self.col_inverse
            .process_with_scratch(&mut ws.spectrum, &mut ws.scratch);
        transpose(&ws.spectrum, &mut ws.field, nx, ny);
        self.row_inverse
            .process_with_scratch(&mut ws.field, &mut ws.scratch);
    }

    /// The anomaly fields of two winds in one inverse FFT: the fields are
    /// real, so `IFFT(P_hat_1 + i P_hat_2)` is `p_1 + i p_2`
    /// (unnormalised, in `ws.field`). The transfer functions are evaluated
    /// on half the modes, the other half being their conjugates
    /// (`T(-k, -l) = conj T(k, l)`, `h_hat` likewise).
    fn paired_anomaly_transform(
        &self,
        (u1, v1): (f64, f64),
        (u2, v2): (f64, f64),
        ws: &mut OrographicWorkspace,
    ) {
        let (ny, nx) = (self.ny, self.nx);
        let zero = Complex::new(0.0, 0.0);
        let imaginary = Complex::new(0.0, 1.0);
        for i in 0..=nx / 2 {
            let mirror_i = (nx - i) % nx;
            let k = self.kx[i];
            // A column that is its own mirror (k = 0, or the Nyquist
            // column) pairs its rows j and ny - j: half of it suffices.
            let last = if mirror_i == i { ny / 2 } else { ny - 1 };
            for j in 0..=last {
                let mirror_j = (ny - j) % ny;
                let h = self.h_hat[i * ny + j];
                let (z, z_mirror) = if h == zero {
                    (zero, zero)
                } else {
                    let l = self.ky[j];
                    let t1 = transfer_function(&self.params, k, l, u1, v1);
                    let t2 = transfer_function(&self.params, k, l, u2, v2);
                    (
                        h * (t1 + imaginary * t2),
                        h.conj() * (t1.conj() + imaginary * t2.conj()),
                    )
                };
                ws.spectrum[i * ny + j] = z;
                ws.spectrum[mirror_i * ny + mirror_j] = z_mirror;
            }
        }
        self.col_inverse
            .process_with_scratch(&mut ws.spectrum, &mut ws.scratch);
        transpose(&ws.spectrum, &mut ws.field, nx, ny);
        self.row_inverse
            .process_with_scratch(&mut ws.field, &mut ws.scratch);
    }

    /// `(dJ/du, dJ/dv)` for `J = sum_x lambda(x) P(x)` with `ws.spectrum`
    /// holding `FFT(lambda)` (transposed), by Parseval (module
    /// documentation, "Gradients"). Checked arguments.
    fn wind_vjp_of_spectrum(
        &self,
        u: f64,
        v: f64,
        ws: &OrographicWorkspace,
    ) -> Result<(f64, f64), String> {
        let ny = self.ny;
        let zero = Complex::new(0.0, 0.0);
        let (mut du, mut dv) = (0.0, 0.0);
        for ((lambda_column, h_column), &k) in ws
            .spectrum
            .chunks_exact(ny)
            .zip(self.h_hat.chunks_exact(ny))
            .zip(&self.kx)
        {
            let mut column_sum = 0.0;
            for ((lambda_hat, h), &l) in lambda_column.iter().zip(h_column).zip(&self.ky) {
                if *h == zero {
                    continue;
                }
                let d = transfer_function_derivative(&self.params, k, l, u, v);
                let s = (d * h * lambda_hat.conj()).re;
                column_sum += s;
                dv += l * s;
            }
            du += k * column_sum;
        }
        let scale = 1.0 / (self.ny * self.nx) as f64;
        let (du, dv) = (du * scale, dv * scale);
        if !(du.is_finite() && dv.is_finite()) {
            return Err(format!(
                "the wind gradient is not finite for u = {u}, v = {v}: a Fourier mode sits \
                 on a branch point |u k + v l| = N_m, where the field is not differentiable \
                 in the wind, or the result overflowed"
            ));
        }
        Ok((du, dv))
    }

    /// The linear field `P_background + Re IFFT(P_hat)` (kg m^-2 s^-1),
    /// before truncation, for the uniform wind `(u, v)` (m s^-1), written to
    /// `out` (length `ny * nx`, row-major). Negative in the lee.
    ///
    /// # Errors
    /// `u` or `v` not finite; `out` or `ws` not of this grid's size; a result
    /// that overflowed (only for spacings or winds far outside physical
    /// ranges).
    pub fn precipitation_unclipped_into(
        &self,
        u: f64,
        v: f64,
        ws: &mut OrographicWorkspace,
        out: &mut [f64],
    ) -> Result<(), String> {
        let n = self.ny * self.nx;
        Self::check_wind(u, v)?;
        if out.len() != n {
            return Err(format!(
                "out has {} values, expected ny * nx = {n}",
                out.len()
            ));
        }
        self.check_workspace(ws)?;
        self.anomaly_transform(u, v, ws);
        let scale = 1.0 / n as f64;
        let background = self.params.background;
        for (o, c) in out.iter_mut().zip(&ws.field) {
            *o = background + c.re * scale;
        }
        if out.iter().any(|p| !p.is_finite()) {
            return Err(format!(
                "the precipitation overflowed for u = {u}, v = {v} (dx = {}, dy = {})",
                self.dx, self.dy
            ));
        }
        Ok(())
    }

    /// The gradient `(dJ/du, dJ/dv)` (units of `lambda` times
    /// kg m^-2 s^-1 per m s^-1) of
    /// `J = sum_x lambda(x) P_unclipped(x; u, v)`, the `lambda`-weighted sum of the linear field of
    /// [`precipitation_unclipped_into`](Self::precipitation_unclipped_into)
    /// (in kg m^-2 s^-1), with respect to the uniform wind `(u, v)`
    /// (m s^-1): a vector-Jacobian product. One forward FFT of `lambda`
    /// (row-major, length `ny * nx`) and Parseval's identity with
    /// [`transfer_function_derivative`] (module documentation,
    /// "Gradients"); the background does not depend on the wind. For the
    /// truncated field pass `lambda 1[P_unclipped > 0]`.
    ///
    /// # Errors
    /// `u` or `v` not finite; `lambda` not of this grid's size or not
    /// finite; `ws` not of this grid's size; a gradient that is not finite
    /// (a mode exactly on a branch point `|sigma| = N_m`, where the field
    /// has no derivative, or an overflow).
    pub fn wind_vjp(
        &self,
        u: f64,
        v: f64,
        lambda: &[f64],
        ws: &mut OrographicWorkspace,
    ) -> Result<(f64, f64), String> {
        Self::check_wind(u, v)?;
        self.check_field("lambda", lambda)?;
        self.check_workspace(ws)?;
        for (c, x) in ws.field.iter_mut().zip(lambda) {
            *c = Complex::new(*x, 0.0);
        }
        self.forward_transform(ws);
        self.wind_vjp_of_spectrum(u, v, ws)
    }

    /// The truncated field `max(P_background + Re IFFT(P_hat), 0)`
    /// (kg m^-2 s^-1, i.e. mm s^-1) for the uniform wind `(u, v)` (m s^-1),
    /// written to `out` (length `ny * nx`, row-major).
    ///
    /// # Errors
    /// As [`precipitation_unclipped_into`](Self::precipitation_unclipped_into).
    pub fn precipitation_into(
        &self,
        u: f64,
        v: f64,
        ws: &mut OrographicWorkspace,
        out: &mut [f64],
    ) -> Result<(), String> {
        self.precipitation_unclipped_into(u, v, ws, out)?;
        for p in out.iter_mut() {
            *p = p.max(0.0);
        }
        Ok(())
    }

    /// The linear field before truncation (kg m^-2 s^-1), row-major; see
    /// [`precipitation_unclipped_into`](Self::precipitation_unclipped_into).
    ///
    /// # Errors
    /// As [`precipitation_unclipped_into`](Self::precipitation_unclipped_into).
    pub fn precipitation_unclipped(&self, u: f64, v: f64) -> Result<Vec<f64>, String> {
        let mut out = vec![0.0; self.ny * self.nx];
        self.precipitation_unclipped_into(u, v, &mut self.workspace(), &mut out)?;
        Ok(out)
    }

    /// The precipitation rate (kg m^-2 s^-1, numerically mm s^-1),
    /// row-major, for the uniform wind `(u, v)` (m s^-1); see
    /// [`precipitation_into`](Self::precipitation_into).
    ///
    /// # Errors
    /// As [`precipitation_unclipped_into`](Self::precipitation_unclipped_into).
    pub fn precipitation(&self, u: f64, v: f64) -> Result<Vec<f64>, String> {
        let mut out = vec![0.0; self.ny * self.nx];
        self.precipitation_into(u, v, &mut self.workspace(), &mut out)?;
        Ok(out)
    }

    /// [`precipitation`](Self::precipitation) in mm h^-1.
    ///
    /// # Errors
    /// As [`precipitation_unclipped_into`](Self::precipitation_unclipped_into).
    pub fn precipitation_mm_per_hour(&self, u: f64, v: f64) -> Result<Vec<f64>, String> {
        let mut p = self.precipitation(u, v)?;
        for x in &mut p {
            *x *= SECONDS_PER_HOUR;
        }
        Ok(p)
    }
}

/// Tent weights of `blocks` blocks along an axis of `n` cells: `t[b][c]`,
/// with the range of cells where each is non-zero. Block centres at the
/// fractional index `(b + 1/2) n / blocks - 1/2`; a cell at `s` centre
/// spacings from centre 0 gets `1 - f` on centre `floor(s)` and `f` on the
/// next, `f = s - floor(s)`, and 1 on the outermost centre beyond it.
fn tent_weights(n: usize, blocks: usize) -> (Vec<Vec<f64>>, Vec<std::ops::Range<usize>>) {
    tents_at(n, blocks, |c| {
        (c as f64 + 0.5) * blocks as f64 / n as f64 - 0.5
    })
}

/// Tents over the first `domain` points of an axis of `n`, as samples of
/// the segment from the first to the last of them: block `b` centred at
/// `(b + 1/2) / blocks` of the segment, the points beyond it (padding)
/// given to the last block. The same tents on any grid of the segment.
fn domain_tent_weights(
    n: usize,
    domain: usize,
    blocks: usize,
) -> (Vec<Vec<f64>>, Vec<std::ops::Range<usize>>) {
    let span = (domain.max(2) - 1) as f64;
    tents_at(n, blocks, |c| c as f64 / span * blocks as f64 - 0.5)
}

/// Tents of `blocks` blocks over `n` cells, cell `c` at block coordinate
/// `position(c)` (block `b` centred at `b`).
fn tents_at(
    n: usize,
    blocks: usize,
    position: impl Fn(usize) -> f64,
) -> (Vec<Vec<f64>>, Vec<std::ops::Range<usize>>) {
    let mut tents = vec![vec![0.0; n]; blocks];
    let last = (blocks - 1) as f64;
    // Block index and fraction towards the next centre, per cell.
    let locate = |c: usize| {
        let s = position(c);
        if s <= 0.0 {
            (0, 0.0)
        } else if s >= last {
            (blocks - 1, 0.0)
        } else {
            (s.floor() as usize, s - s.floor())
        }
    };
    for (c, (b, f)) in (0..n).map(locate).enumerate() {
        tents[b][c] = 1.0 - f;
        if f > 0.0 {
            tents[b + 1][c] = f;
        }
    }
    let supports = tents
        .iter()
        .map(|t| {
            let first = t.iter().position(|&w| w > 0.0).unwrap_or(0);
            let end = t.iter().rposition(|&w| w > 0.0).map_or(first, |i| i + 1);
            first..end
        })
        .collect();
    (tents, supports)
}

/// Buffers for [`BlockedOrographic`]'s fields and gradients, so that
/// repeated calls allocate nothing. Made by
/// [`BlockedOrographic::workspace`]; fits only models of the same grid
/// size.
#[derive(Clone, Debug)]
pub struct BlockedWorkspace {
    inner: OrographicWorkspace,
}

/// The linear model for a wind that varies over the domain: the grid is
/// split into `by x bx` blocks, each with its own uniform wind, and the
/// blocks' uniform-wind fields are blended with tent weights that sum to 1
/// (module documentation, "Winds that vary: blocks"). Blocks are numbered
/// row-major, `b = jb * bx + ib` with `jb` along `y` (rows) and `ib` along
/// `x` (columns); winds are passed as one `(U_b, V_b)` (m s^-1) per block.
///
/// Cost per call: one inverse 2-D FFT per two blocks (and half a pass of
/// the transfer function per block) for a field; one forward 2-D FFT (and
/// one pass of its derivative) per block for [`winds_vjp`](Self::winds_vjp).
#[derive(Clone, Debug)]
pub struct BlockedOrographic {
    model: OrographicModel,
    by: usize,
    bx: usize,
    /// Tent weights along `y`: `tent_y[jb][j]`.
    tent_y: Vec<Vec<f64>>,
    /// Tent weights along `x`: `tent_x[ib][i]`.
    tent_x: Vec<Vec<f64>>,
    /// Rows where `tent_y[jb]` is non-zero.
    support_y: Vec<std::ops::Range<usize>>,
    /// Columns where `tent_x[ib]` is non-zero.
    support_x: Vec<std::ops::Range<usize>>,
    /// `sum_x w_b(x)` of each block (cells).
    totals: Vec<f64>,
}

impl BlockedOrographic {
    /// Blocks `by` (along `y`, rows) by `bx` (along `x`, columns) over the
    /// grid of `model`.
    ///
    /// # Errors
    /// `by` not in `1..=ny`, `bx` not in `1..=nx`.
    pub fn new(model: OrographicModel, by: usize, bx: usize) -> Result<Self, String> {
        let (ny, nx) = (model.ny(), model.nx());
        if by == 0 || by > ny {
            return Err(format!("by must be in 1..=ny = {ny}, got {by}"));
        }
        if bx == 0 || bx > nx {
            return Err(format!("bx must be in 1..=nx = {nx}, got {bx}"));
        }
        let (tent_y, support_y) = tent_weights(ny, by);
        let (tent_x, support_x) = tent_weights(nx, bx);
        let mut totals = Vec::with_capacity(by * bx);
        for ty in &tent_y {
            let sy: f64 = ty.iter().sum();
            for tx in &tent_x {
                totals.push(sy * tx.iter().sum::<f64>());
            }
        }
        Ok(Self {
            model,
            by,
            bx,
            tent_y,
            tent_x,
            support_y,
            support_x,
            totals,
        })
    }

    /// Blocks over a domain that fills the first `ny_domain` rows and
    /// `nx_domain` columns of the (padded) grid: block centres at
    /// `(b + 1/2) / blocks` of the segment from the first to the last point
    /// of the domain along each axis, the padding given to the outermost
    /// blocks. Two grids of the same domain (a fine and a coarse one) get
    /// the same tents in physical coordinates, whatever their padding.
    ///
    /// # Errors
    /// As [`new`](Self::new); a domain larger than the grid.
    pub fn over_domain(
        model: OrographicModel,
        by: usize,
        bx: usize,
        ny_domain: usize,
        nx_domain: usize,
    ) -> Result<Self, String> {
        let (ny, nx) = (model.ny(), model.nx());
        if ny_domain > ny || nx_domain > nx || ny_domain == 0 || nx_domain == 0 {
            return Err(format!(
                "the domain of {ny_domain} x {nx_domain} points must fit the grid of {ny} x {nx}"
            ));
        }
        let mut blocked = Self::new(model, by, bx)?;
        let (tent_y, support_y) = domain_tent_weights(ny, ny_domain, by);
        let (tent_x, support_x) = domain_tent_weights(nx, nx_domain, bx);
        let mut totals = Vec::with_capacity(by * bx);
        for ty in &tent_y {
            let sy: f64 = ty.iter().sum();
            for tx in &tent_x {
                totals.push(sy * tx.iter().sum::<f64>());
            }
        }
        blocked.tent_y = tent_y;
        blocked.tent_x = tent_x;
        blocked.support_y = support_y;
        blocked.support_x = support_x;
        blocked.totals = totals;
        Ok(blocked)
    }

    /// The uniform-wind model underneath (grid, terrain, parameters).
    pub fn model(&self) -> &OrographicModel {
        &self.model
    }

    /// The uniform-wind model, mutable: its terrain and parameters may be
    /// replaced ([`OrographicModel::set_terrain`],
    /// [`OrographicModel::set_params`]); its grid cannot change, so the
    /// blocks stay valid.
    pub fn model_mut(&mut self) -> &mut OrographicModel {
        &mut self.model
    }

    /// Blocks along `y` (rows).
    pub fn by(&self) -> usize {
        self.by
    }

    /// Blocks along `x` (columns).
    pub fn bx(&self) -> usize {
        self.bx
    }

    /// Number of blocks, `by * bx`.
    pub fn blocks(&self) -> usize {
        self.by * self.bx
    }

    /// The tent weights along `y`: `[jb][j]` for block row `jb` and grid
    /// row `j` (dimensionless, in [0, 1]); `w_b(j, i) = y[jb][j] x[ib][i]`.
    pub fn tent_y(&self) -> &[Vec<f64>] {
        &self.tent_y
    }

    /// The tent weights along `x`: `[ib][i]` for block column `ib` and grid
    /// column `i` (dimensionless, in [0, 1]).
    pub fn tent_x(&self) -> &[Vec<f64>] {
        &self.tent_x
    }

    /// `sum_x w_b(x)` (number of cells, fractional) of each block, in block
    /// order.
    pub fn block_totals(&self) -> &[f64] {
        &self.totals
    }

    /// The weight `w_b` of block `b` on every cell (dimensionless,
    /// row-major, length `ny * nx`).
    ///
    /// # Errors
    /// `b` not below [`blocks`](Self::blocks).
    pub fn block_weights(&self, b: usize) -> Result<Vec<f64>, String> {
        if b >= self.blocks() {
            return Err(format!(
                "b must be a block index below by * bx = {}, got {b}",
                self.blocks()
            ));
        }
        let nx = self.model.nx();
        let (ty, tx) = (&self.tent_y[b / self.bx], &self.tent_x[b % self.bx]);
        let mut w = vec![0.0; self.model.ny() * nx];
        for (row, wy) in w.chunks_exact_mut(nx).zip(ty) {
            for (cell, wx) in row.iter_mut().zip(tx) {
                *cell = wy * wx;
            }
        }
        Ok(w)
    }

    /// Calls `f(cell, w_b(cell))` on every cell of block `b`'s support.
    fn for_each_weight(&self, b: usize, mut f: impl FnMut(usize, f64)) {
        let nx = self.model.nx();
        let (jb, ib) = (b / self.bx, b % self.bx);
        let (ty, tx) = (&self.tent_y[jb], &self.tent_x[ib]);
        let columns = self.support_x[ib].clone();
        for j in self.support_y[jb].clone() {
            let wy = ty[j];
            let row = j * nx;
            for i in columns.clone() {
                f(row + i, wy * tx[i]);
            }
        }
    }

    /// Buffers for the fields and gradients of this model.
    pub fn workspace(&self) -> BlockedWorkspace {
        BlockedWorkspace {
            inner: self.model.workspace(),
        }
    }

    /// The weighted means `sum_x w_b(x) field(x) / sum_x w_b(x)` of a
    /// row-major field (length `ny * nx`, any units) over each block,
    /// written to `out` (one per block, same units): e.g. the block winds
    /// from a wind component.
    ///
    /// # Errors
    /// `field` not of the grid's size or not finite; `out` not of length
    /// `by * bx`.
    pub fn block_means_into(&self, field: &[f64], out: &mut [f64]) -> Result<(), String> {
        self.model.check_field("field", field)?;
        if out.len() != self.blocks() {
            return Err(format!(
                "out has {} values, expected by * bx = {}",
                out.len(),
                self.blocks()
            ));
        }
        for (b, o) in out.iter_mut().enumerate() {
            let mut sum = 0.0;
            self.for_each_weight(b, |x, w| sum += w * field[x]);
            *o = sum / self.totals[b];
        }
        Ok(())
    }

    /// [`block_means_into`](Self::block_means_into), allocating.
    ///
    /// # Errors
    /// As [`block_means_into`](Self::block_means_into).
    pub fn block_means(&self, field: &[f64]) -> Result<Vec<f64>, String> {
        let mut out = vec![0.0; self.blocks()];
        self.block_means_into(field, &mut out)?;
        Ok(out)
    }

    /// The adjoint of [`block_means_into`](Self::block_means_into):
    /// `out(x) += sum_b cotangent_b w_b(x) / sum_x' w_b(x')`, accumulating
    /// into `out` (row-major, length `ny * nx`). With `cotangent` the
    /// gradient of an objective with respect to the block means, this adds
    /// its gradient with respect to the field.
    ///
    /// # Errors
    /// `cotangent` not of length `by * bx` or not finite; `out` not of the
    /// grid's size.
    pub fn block_means_adjoint(&self, cotangent: &[f64], out: &mut [f64]) -> Result<(), String> {
        if cotangent.len() != self.blocks() {
            return Err(format!(
                "cotangent has {} values, expected by * bx = {}",
                cotangent.len(),
                self.blocks()
            ));
        }
        if let Some(b) = cotangent.iter().position(|c| !c.is_finite()) {
            return Err(format!(
                "cotangent must be finite, got {} at block {b}",
                cotangent[b]
            ));
        }
        let n = self.model.ny() * self.model.nx();
        if out.len() != n {
            return Err(format!(
                "out has {} values, expected ny * nx = {n}",
                out.len()
            ));
        }
        for (b, c) in cotangent.iter().enumerate() {
            let scale = c / self.totals[b];
            self.for_each_weight(b, |x, w| out[x] += scale * w);
        }
        Ok(())
    }

    /// Block winds `(U_b, V_b)` (m s^-1) as the weighted block means of the
    /// wind components `u`, `v` (m s^-1, row-major, length `ny * nx` each);
    /// see [`block_means_into`](Self::block_means_into).
    ///
    /// # Errors
    /// `u` or `v` not of the grid's size or not finite.
    pub fn block_winds(&self, u: &[f64], v: &[f64]) -> Result<Vec<(f64, f64)>, String> {
        let bu = self
            .block_means(u)
            .map_err(|e| e.replacen("field", "u", 1))?;
        let bv = self
            .block_means(v)
            .map_err(|e| e.replacen("field", "v", 1))?;
        Ok(bu.into_iter().zip(bv).collect())
    }

    fn check_winds(&self, winds: &[(f64, f64)]) -> Result<(), String> {
        if winds.len() != self.blocks() {
            return Err(format!(
                "winds has {} values, expected by * bx = {}",
                winds.len(),
                self.blocks()
            ));
        }
        if let Some(b) = winds
            .iter()
            .position(|(u, v)| !(u.is_finite() && v.is_finite()))
        {
            return Err(format!(
                "winds must be finite in m/s, got {:?} at block {b}",
                winds[b]
            ));
        }
        Ok(())
    }

    /// The blended linear field
    /// `P_background + sum_b w_b(x) (P_b(x) - P_background)`
    /// (kg m^-2 s^-1) before truncation, `P_b` the uniform-wind field of
    /// block `b`'s wind `winds[b] = (U_b, V_b)` (m s^-1), written to `out`
    /// (row-major, length `ny * nx`). One inverse FFT per two blocks (the
    /// fields are real: one is the real part, the other the imaginary),
    /// the transfer functions on half the modes (Hermitian symmetry). With
    /// one block it is [`OrographicModel::precipitation_unclipped_into`]
    /// exactly.
    ///
    /// # Errors
    /// `winds` not of length `by * bx` or not finite; `out` or `ws` not of
    /// this grid's size; a result that overflowed.
    pub fn precipitation_unclipped_into(
        &self,
        winds: &[(f64, f64)],
        ws: &mut BlockedWorkspace,
        out: &mut [f64],
    ) -> Result<(), String> {
        let model = &self.model;
        let n = model.ny() * model.nx();
        self.check_winds(winds)?;
        if out.len() != n {
            return Err(format!(
                "out has {} values, expected ny * nx = {n}",
                out.len()
            ));
        }
        model.check_workspace(&ws.inner)?;
        out.fill(0.0);
        let scale = 1.0 / n as f64;
        if winds.len() == 1 {
            let (u, v) = winds[0];
            model.anomaly_transform(u, v, &mut ws.inner);
            let field = &ws.inner.field;
            self.for_each_weight(0, |x, w| out[x] += w * (field[x].re * scale));
        } else {
            // Two blocks per inverse FFT (their fields are real); an odd
            // last block pairs with itself.
            for first in (0..winds.len()).step_by(2) {
                let second = (first + 1).min(winds.len() - 1);
                model.paired_anomaly_transform(winds[first], winds[second], &mut ws.inner);
                let field = &ws.inner.field;
                self.for_each_weight(first, |x, w| out[x] += w * (field[x].re * scale));
                if second != first {
                    self.for_each_weight(second, |x, w| out[x] += w * (field[x].im * scale));
                }
            }
        }
        let background = model.params().background;
        for o in out.iter_mut() {
            *o += background;
        }
        if out.iter().any(|p| !p.is_finite()) {
            return Err(format!(
                "the precipitation overflowed for the winds {winds:?} (dx = {}, dy = {})",
                model.dx(),
                model.dy()
            ));
        }
        Ok(())
    }

    /// The truncated blended field `max(., 0)` (kg m^-2 s^-1) of
    /// [`precipitation_unclipped_into`](Self::precipitation_unclipped_into),
    /// written to `out`.
    ///
    /// # Errors
    /// As [`precipitation_unclipped_into`](Self::precipitation_unclipped_into).
    pub fn precipitation_into(
        &self,
        winds: &[(f64, f64)],
        ws: &mut BlockedWorkspace,
        out: &mut [f64],
    ) -> Result<(), String> {
        self.precipitation_unclipped_into(winds, ws, out)?;
        for p in out.iter_mut() {
            *p = p.max(0.0);
        }
        Ok(())
    }

    /// The gradient of `J = sum_x lambda(x) P_unclipped(x)` (the blended
    /// linear field of
    /// [`precipitation_unclipped_into`](Self::precipitation_unclipped_into),
    /// kg m^-2 s^-1) with respect to each block's wind, written to `grad`
    /// (`(dJ/dU_b, dJ/dV_b)` in units of `lambda` times kg m^-2 s^-1 per
    /// m s^-1, one per block): [`OrographicModel::wind_vjp`] with
    /// `lambda w_b`, one forward FFT per block (none for a block where
    /// `lambda w_b` vanishes, e.g. a sparse `lambda` at observation sites
    /// that misses the block's support). Chain with
    /// [`block_means_adjoint`](Self::block_means_adjoint) for the gradient
    /// with respect to a wind field.
    ///
    /// # Errors
    /// `winds` not of length `by * bx` or not finite; `lambda` not of this
    /// grid's size or not finite; `ws` not of this grid's size; `grad` not
    /// of length `by * bx`; a gradient that is not finite (see
    /// [`OrographicModel::wind_vjp`]).
    pub fn winds_vjp_into(
        &self,
        winds: &[(f64, f64)],
        lambda: &[f64],
        ws: &mut BlockedWorkspace,
        grad: &mut [(f64, f64)],
    ) -> Result<(), String> {
        let model = &self.model;
        self.check_winds(winds)?;
        model.check_field("lambda", lambda)?;
        model.check_workspace(&ws.inner)?;
        if grad.len() != self.blocks() {
            return Err(format!(
                "grad has {} values, expected by * bx = {}",
                grad.len(),
                self.blocks()
            ));
        }
        for (b, (&(u, v), g)) in winds.iter().zip(grad.iter_mut()).enumerate() {
            let field = &mut ws.inner.field;
            field.fill(Complex::new(0.0, 0.0));
            let mut any = false;
            self.for_each_weight(b, |x, w| {
                let value = lambda[x] * w;
                any |= value != 0.0;
                field[x] = Complex::new(value, 0.0);
            });
            if !any {
                // No weight on the block: no FFT needed.
                *g = (0.0, 0.0);
                continue;
            }
            model.forward_transform(&mut ws.inner);
            *g = model
                .wind_vjp_of_spectrum(u, v, &ws.inner)
                .map_err(|e| format!("block {b}: {e}"))?;
        }
        Ok(())
    }

    /// [`winds_vjp_into`](Self::winds_vjp_into), allocating the result.
    ///
    /// # Errors
    /// As [`winds_vjp_into`](Self::winds_vjp_into).
    pub fn winds_vjp(
        &self,
        winds: &[(f64, f64)],
        lambda: &[f64],
        ws: &mut BlockedWorkspace,
    ) -> Result<Vec<(f64, f64)>, String> {
        let mut grad = vec![(0.0, 0.0); self.blocks()];
        self.winds_vjp_into(winds, lambda, ws, &mut grad)?;
        Ok(grad)
    }

    /// The blended linear field (kg m^-2 s^-1), allocating; see
    /// [`precipitation_unclipped_into`](Self::precipitation_unclipped_into).
    ///
    /// # Errors
    /// As [`precipitation_unclipped_into`](Self::precipitation_unclipped_into).
    pub fn precipitation_unclipped(&self, winds: &[(f64, f64)]) -> Result<Vec<f64>, String> {
        let mut out = vec![0.0; self.model.ny() * self.model.nx()];
        self.precipitation_unclipped_into(winds, &mut self.workspace(), &mut out)?;
        Ok(out)
    }

    /// The truncated blended field (kg m^-2 s^-1), allocating; see
    /// [`precipitation_into`](Self::precipitation_into).
    ///
    /// # Errors
    /// As [`precipitation_unclipped_into`](Self::precipitation_unclipped_into).
    pub fn precipitation(&self, winds: &[(f64, f64)]) -> Result<Vec<f64>, String> {
        let mut out = vec![0.0; self.model.ny() * self.model.nx()];
        self.precipitation_into(winds, &mut self.workspace(), &mut out)?;
        Ok(out)
    }
}

/// The splitmix64 generator (Steele, Lea & Flood 2014): a 64-bit state, the
/// same stream on every platform. For [`synthetic_terrain`].
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), 53 random bits.
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [a, b).
    fn range(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.uniform()
    }
}

/// Parameters of [`synthetic_terrain`]. Lengths in metres; the defaults
/// suit a fine grid of about 2 km spacing and 256 cells or more a side
/// (a twin whose coarse grid has 8 km spacing).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TerrainParams {
    /// Height of the highest point (m), `> 0`. Default 2000.
    pub max_height: f64,
    /// Width of the outer margin where the terrain is exactly 0 (m),
    /// `>= 0`: cells within this distance of an edge of the grid (in
    /// `x` or `y`). Default 40 km. The linear field reaches well beyond the
    /// terrain (the delays carry condensate `|U| (tau_c + tau_f)` downwind,
    /// 20 km at 10 m/s with the default delays, and for broad massifs the
    /// airflow factor's response falls off only algebraically), so on a
    /// 256 x 256 grid of 2 km with the default margins the periodic
    /// wrap-around changes the unclipped field by several percent of its
    /// peak (about 5-20 % at 10-20 m/s in a few trials); embed the terrain
    /// in a larger grid of zeros, or widen the margin, where that matters.
    pub margin: f64,
    /// Width (m), `>= 0`, of the cosine taper inside the margin over which
    /// the terrain rises from 0 to its full height. Default 40 km.
    pub taper_width: f64,
    /// Number of Gaussian massifs `h_i exp(-r^2 / (w_i / 2)^2)`, relative
    /// heights `h_i` uniform in [0.5, 1), centres uniform in the interior
    /// (inside margin and taper). Default 3.
    pub massifs: usize,
    /// Smallest massif width `w` (m), twice the e-folding radius, `> 0`.
    /// Default 60 km.
    pub massif_min_width: f64,
    /// Largest massif width (m), `>= massif_min_width`. Default 120 km.
    pub massif_max_width: f64,
    /// Shortest wavelength of the ridges (m), `>= 2 max(dx, dy)` (the
    /// shortest wave of the grid). Default 6 km.
    pub min_wavelength: f64,
    /// Longest wavelength of the ridges (m), `> min_wavelength`.
    /// Default 24 km.
    pub max_wavelength: f64,
    /// Elongation `>= 1` of the ridges: the ridge field keeps only the
    /// wavevectors within `asin(1 / ridge_anisotropy)` of the across-ridge
    /// direction (along-ridge wavenumber at most `|K| / ridge_anisotropy`),
    /// so crests lie within that angle of `ridge_orientation` and run
    /// roughly `ridge_anisotropy` times longer than their spacing; 1 gives
    /// isotropic hills. Default 4.
    pub ridge_anisotropy: f64,
    /// Direction of the ridge crests (radians anticlockwise from `+x`), or
    /// `None` for one drawn from the seed. Default `None`.
    pub ridge_orientation: Option<f64>,
    /// Standard deviation of the ridge field relative to the highest
    /// possible massif (before clipping and scaling), `>= 0`, where the
    /// massifs are highest: the ridges are carved into the massifs, their
    /// amplitude scaled by the massif envelope `M / max M` (1 everywhere if
    /// there are no massifs). 0 gives massifs alone. Default 0.25.
    pub ridge_amplitude: f64,
}

impl Default for TerrainParams {
    /// See the field documentation.
    fn default() -> Self {
        Self {
            max_height: 2000.0,
            margin: 40e3,
            taper_width: 40e3,
            massifs: 3,
            massif_min_width: 60e3,
            massif_max_width: 120e3,
            min_wavelength: 6e3,
            max_wavelength: 24e3,
            ridge_anisotropy: 4.0,
            ridge_orientation: None,
            ridge_amplitude: 0.25,
        }
    }
}

impl TerrainParams {
    /// The defaults with the ridge band scaled to a grid spacing `d` (m):
    /// `min_wavelength = 3 d`, `max_wavelength = 12 d` (the defaults at
    /// `d = 2 km`), so that most of the ridges' variance stays below what a
    /// grid 4 times coarser carries. Margins and massifs keep their
    /// default sizes in metres. A non-finite or non-positive `d` gives
    /// parameters that [`check`](Self::check) rejects.
    pub fn for_grid_spacing(d: f64) -> Self {
        Self {
            min_wavelength: 3.0 * d,
            max_wavelength: 12.0 * d,
            ..Self::default()
        }
    }

    /// Checks every field alone (finite, in range) and their order
    /// (`massif_min_width <= massif_max_width`,
    /// `min_wavelength < max_wavelength`); the checks against a grid are
    /// made by [`synthetic_terrain`].
    ///
    /// # Errors
    /// Names the first bad field.
    pub fn check(&self) -> Result<(), String> {
        let positive = [
            ("max_height", self.max_height),
            ("massif_min_width", self.massif_min_width),
            ("massif_max_width", self.massif_max_width),
            ("min_wavelength", self.min_wavelength),
            ("max_wavelength", self.max_wavelength),
        ];
        for (name, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                return Err(format!("{name} must be finite and > 0 (in m), got {value}"));
            }
        }
        let non_negative = [
            ("margin", self.margin, "m"),
            ("taper_width", self.taper_width, "m"),
            ("ridge_amplitude", self.ridge_amplitude, "relative"),
        ];
        for (name, value, unit) in non_negative {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!(
                    "{name} must be finite and >= 0 ({unit}), got {value}"
                ));
            }
        }
        if self.massif_max_width < self.massif_min_width {
            return Err(format!(
                "massif_max_width must be >= massif_min_width = {}, got {}",
                self.massif_min_width, self.massif_max_width
            ));
        }
        if self.max_wavelength <= self.min_wavelength {
            return Err(format!(
                "max_wavelength must be > min_wavelength = {}, got {}",
                self.min_wavelength, self.max_wavelength
            ));
        }
        if !(self.ridge_anisotropy.is_finite() && self.ridge_anisotropy >= 1.0) {
            return Err(format!(
                "ridge_anisotropy must be finite and >= 1, got {}",
                self.ridge_anisotropy
            ));
        }
        if let Some(theta) = self.ridge_orientation
            && !theta.is_finite()
        {
            return Err(format!(
                "ridge_orientation must be finite (radians), got {theta}"
            ));
        }
        Ok(())
    }
}

/// The separate parts of [`synthetic_terrain`] (row-major): the massifs
/// (relative heights), the ridge field (unit standard deviation, before
/// the amplitude) and the taper (in [0, 1]).
struct TerrainParts {
    massifs: Vec<f64>,
    ridges: Vec<f64>,
    taper: Vec<f64>,
}

/// 2-D FFT in place of a row-major `ny x nx` array (unnormalised).
fn fft2(data: &mut [Complex<f64>], ny: usize, nx: usize, inverse: bool) {
    let mut planner = FftPlanner::<f64>::new();
    let (row, col) = if inverse {
        (planner.plan_fft_inverse(nx), planner.plan_fft_inverse(ny))
    } else {
        (planner.plan_fft_forward(nx), planner.plan_fft_forward(ny))
    };
    row.process(data);
    let mut t = vec![Complex::new(0.0, 0.0); data.len()];
    transpose(data, &mut t, ny, nx);
    col.process(&mut t);
    transpose(&t, data, nx, ny);
}

fn terrain_parts(
    ny: usize,
    nx: usize,
    dx: f64,
    dy: f64,
    params: &TerrainParams,
    seed: u64,
) -> Result<TerrainParts, String> {
    if ny == 0 {
        return Err("ny must be at least 1".into());
    }
    if nx == 0 {
        return Err("nx must be at least 1".into());
    }
    for (name, d) in [("dx", dx), ("dy", dy)] {
        if !(d.is_finite() && d > 0.0) {
            return Err(format!(
                "{name} must be a finite, positive spacing in metres, got {d}"
            ));
        }
    }
    params.check()?;
    let n = ny
        .checked_mul(nx)
        .ok_or_else(|| format!("ny * nx overflows: ny = {ny}, nx = {nx}"))?;
    let shortest = 2.0 * dx.max(dy);
    if params.min_wavelength < shortest {
        return Err(format!(
            "min_wavelength must be at least 2 max(dx, dy) = {shortest} m, the shortest wave \
             of the grid, got {}",
            params.min_wavelength
        ));
    }
    // Taper: distance of a cell to the nearest edge along each axis.
    let edge = params.margin + params.taper_width;
    let (lx, ly) = ((nx - 1) as f64 * dx, (ny - 1) as f64 * dy);
    if 2.0 * edge >= lx.min(ly) {
        return Err(format!(
            "margin + taper_width = {edge} m leaves no interior: the grid spans {lx} m by \
             {ly} m (check margin and taper_width against nx dx and ny dy)"
        ));
    }
    let taper_1d = |c: usize, cells: usize, d: f64| -> f64 {
        let dist = c.min(cells - 1 - c) as f64 * d;
        if dist <= params.margin {
            0.0
        } else if dist >= edge {
            1.0
        } else {
            let s = (dist - params.margin) / params.taper_width;
            0.5 * (1.0 - (std::f64::consts::PI * s).cos())
        }
    };
    let tx: Vec<f64> = (0..nx).map(|i| taper_1d(i, nx, dx)).collect();
    let ty: Vec<f64> = (0..ny).map(|j| taper_1d(j, ny, dy)).collect();
    let mut taper = vec![0.0; n];
    for (row, wy) in taper.chunks_exact_mut(nx).zip(&ty) {
        for (cell, wx) in row.iter_mut().zip(&tx) {
            *cell = wy * wx;
        }
    }

    let mut rng = SplitMix64(seed);
    let theta = match params.ridge_orientation {
        Some(theta) => theta,
        None => rng.range(0.0, std::f64::consts::PI),
    };
    // Massifs, centred in the interior.
    let mut massifs = vec![0.0; n];
    for _ in 0..params.massifs {
        let cx = rng.range(edge, lx - edge);
        let cy = rng.range(edge, ly - edge);
        let width = rng.range(params.massif_min_width, params.massif_max_width);
        let height = rng.range(0.5, 1.0);
        let inv_r2 = 4.0 / (width * width);
        for (j, row) in massifs.chunks_exact_mut(nx).enumerate() {
            let y = j as f64 * dy - cy;
            for (i, cell) in row.iter_mut().enumerate() {
                let x = i as f64 * dx - cx;
                *cell += height * (-(x * x + y * y) * inv_r2).exp();
            }
        }
    }

    // Ridges: uniform white noise, band-pass filtered in wavenumber
    // (k_min <= |K| <= k_max) and in direction (a |K.t| <= |K|, t along
    // the crests), normalised to unit variance.
    let mut ridges = vec![0.0; n];
    if params.ridge_amplitude > 0.0 {
        let mut noise: Vec<Complex<f64>> = (0..n)
            .map(|_| Complex::new(rng.uniform() - 0.5, 0.0))
            .collect();
        fft2(&mut noise, ny, nx, false);
        let two_pi = 2.0 * std::f64::consts::PI;
        let (k_min, k_max) = (
            two_pi / params.max_wavelength,
            two_pi / params.min_wavelength,
        );
        let (ct, st) = (theta.cos(), theta.sin());
        let a = params.ridge_anisotropy;
        let (kx, ky) = (wavenumbers(nx, dx), wavenumbers(ny, dy));
        let mut modes = 0usize;
        for (j, row) in noise.chunks_exact_mut(nx).enumerate() {
            for (i, c) in row.iter_mut().enumerate() {
                let (k, l) = (kx[i], ky[j]);
                let nyquist = 2 * i == nx || 2 * j == ny;
                let along = k * ct + l * st;
                let kk = k.hypot(l);
                let pass = !nyquist && kk >= k_min && kk <= k_max && a * along.abs() <= kk;
                if pass {
                    modes += 1;
                } else {
                    *c = Complex::new(0.0, 0.0);
                }
            }
        }
        if modes == 0 {
            return Err(format!(
                "no Fourier mode of the grid has a wavelength in [min_wavelength, \
                 max_wavelength] = [{}, {}] m within the ridge anisotropy; widen the band \
                 or enlarge the grid",
                params.min_wavelength, params.max_wavelength
            ));
        }
        fft2(&mut noise, ny, nx, true);
        for (r, c) in ridges.iter_mut().zip(&noise) {
            *r = c.re;
        }
        let mean = ridges.iter().sum::<f64>() / n as f64;
        let var = ridges.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / n as f64;
        let std = var.sqrt();
        if !(std > 0.0 && std.is_finite()) {
            return Err(format!(
                "the ridge field vanished (standard deviation {std}); widen min_wavelength, \
                 max_wavelength"
            ));
        }
        for r in &mut ridges {
            *r = (*r - mean) / std;
        }
    }
    Ok(TerrainParts {
        massifs,
        ridges,
        taper,
    })
}

/// A synthetic terrain (m above sea level, row-major, `ny` rows of `nx`
/// columns, spacings `dx`, `dy` in metres) for a fine-scale twin: a few
/// broad Gaussian massifs plus anisotropic random ridges and valleys
/// carved into them, band-limited to wavelengths in
/// `[params.min_wavelength, params.max_wavelength]`, as
///
/// ```text
/// h = max_height H / max(H),    H = taper max(M + ridge_amplitude E R, 0),
/// E = M / max(M)                (1 everywhere without massifs)
/// ```
///
/// with `M` the massifs (relative heights in [0.5, 1)), `R` the ridge field
/// (unit standard deviation, zero mean) and `taper` exactly 0 within
/// `margin` of the grid's edges, rising as a cosine over `taper_width` to 1
/// in the interior, so that the terrain itself does not wrap across the
/// periodic edges of [`OrographicModel`] (the field it drives still reaches
/// beyond it: see [`TerrainParams::margin`]). Hence `h >= 0`,
/// `max h = max_height` exactly, and `h = 0` exactly in the margin. With
/// the defaults on a 2 km grid about 90 % of the ridge field's variance
/// (and of the terrain's slope) lies at wavelengths shorter than the 16 km
/// that a grid 4 times coarser carries; on another spacing `d`,
/// [`TerrainParams::for_grid_spacing`] scales the band to keep that
/// proportion.
///
/// Deterministic: the random numbers are a splitmix64 stream of `seed`
/// (the same on every platform); the massifs, ridge orientation (if not
/// given) and the white noise of the ridges are drawn from it in that
/// order. The terrain itself is reproducible to rounding (the last bits of
/// `exp`, `cos` and the FFT may differ between platforms).
///
/// # Errors
/// `ny`, `nx` zero; `dx`, `dy` not finite and positive; `params` as
/// [`TerrainParams::check`]; `min_wavelength` below `2 max(dx, dy)`;
/// `margin + taper_width` leaving no interior; no grid mode in the ridge
/// band; a terrain that is flat (no massifs and no ridges).
pub fn synthetic_terrain(
    ny: usize,
    nx: usize,
    dx: f64,
    dy: f64,
    params: &TerrainParams,
    seed: u64,
) -> Result<Vec<f64>, String> {
    let parts = terrain_parts(ny, nx, dx, dy, params, seed)?;
    let m_top = parts.massifs.iter().fold(0.0f64, |a, &b| a.max(b));
    let envelope = |m: f64| if m_top > 0.0 { m / m_top } else { 1.0 };
    let mut h: Vec<f64> = parts
        .massifs
        .iter()
        .zip(&parts.ridges)
        .zip(&parts.taper)
        .map(|((&m, r), t)| (m + params.ridge_amplitude * envelope(m) * r).max(0.0) * t)
        .collect();
    let top = h.iter().fold(0.0f64, |a, &b| a.max(b));
    if !(top > 0.0 && top.is_finite()) {
        return Err(format!(
            "the terrain is flat (maximum {top}): set massifs or ridge_amplitude above 0"
        ));
    }
    for x in &mut h {
        *x = *x / top * params.max_height;
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hill width (e-folding radius, m) of the Gaussian tests.
    const A: f64 = 15e3;
    /// Hill height (m).
    const HM: f64 = 500.0;

    /// `hm exp(-((x - x0)^2 + (y - y0)^2) / a^2)` on the grid, row-major.
    fn gaussian(ny: usize, nx: usize, dx: f64, dy: f64, centre: (f64, f64), a: f64) -> Vec<f64> {
        let mut h = vec![0.0; ny * nx];
        for j in 0..ny {
            for i in 0..nx {
                let (x, y) = (i as f64 * dx - centre.0, j as f64 * dy - centre.1);
                h[j * nx + i] = HM * (-(x * x + y * y) / (a * a)).exp();
            }
        }
        h
    }

    fn max_abs(p: &[f64]) -> f64 {
        p.iter().fold(0.0, |m, x| m.max(x.abs()))
    }

    fn argmax(p: &[f64]) -> usize {
        (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap()
    }

    /// 128 x 128 at 2 km with a hill of radius 15 km in the middle: the
    /// periodic images are 256 km apart (`exp(-(128/15)^2) ~ 1e-32`), and the
    /// hill is resolved (its spectrum at the Nyquist wavenumber is
    /// `exp(-(pi a / 2 dx)^2 / 4) ~ 1e-61`).
    fn hill_model(params: OrographicParams) -> OrographicModel {
        let (n, d) = (128, 2e3);
        let h = gaussian(n, n, d, d, (128e3, 128e3), A);
        OrographicModel::new(&h, n, n, d, d, params).unwrap()
    }

    #[test]
    fn zero_terrain_or_zero_wind_gives_the_background() {
        // No terrain: no ascent anywhere. No wind: sigma = 0 on every mode,
        // so the transfer function is 0. Both leave the background alone.
        let params = OrographicParams {
            background: 2e-4,
            ..OrographicParams::default()
        };
        let flat = OrographicModel::new(&vec![0.0; 48 * 64], 48, 64, 2e3, 1.5e3, params).unwrap();
        for p in flat.precipitation(10.0, -4.0).unwrap() {
            assert_eq!(p, 2e-4);
        }
        let hill = hill_model(params);
        for p in hill.precipitation(0.0, 0.0).unwrap() {
            assert_eq!(p, 2e-4);
        }
        // A uniform raised plateau is the k = l = 0 mode alone: also nothing.
        let plateau =
            OrographicModel::new(&vec![750.0; 30 * 20], 30, 20, 1e3, 1e3, params).unwrap();
        for p in plateau.precipitation(12.0, 3.0).unwrap() {
            assert!((p - 2e-4).abs() < 1e-18, "{p}");
        }
    }

    #[test]
    fn unclipped_mean_is_the_background_and_clipping_only_adds() {
        // The k = l = 0 mode has sigma = 0 and carries no precipitation:
        // the condensation on the windward side is balanced exactly by the
        // evaporation in the lee, so the domain mean of the linear field is
        // the background, to rounding. Truncation only raises values.
        for (ny, nx, dx, dy) in [(128, 128, 2e3, 2e3), (45, 63, 3e3, 2.5e3)] {
            let params = OrographicParams {
                background: 1e-4,
                ..OrographicParams::default()
            };
            let h = gaussian(ny, nx, dx, dy, (nx as f64 * dx / 2.0, 40e3), A);
            let model = OrographicModel::new(&h, ny, nx, dx, dy, params).unwrap();
            for (u, v) in [(10.0, 0.0), (-7.0, 12.0), (3.0, -15.0)] {
                let lin = model.precipitation_unclipped(u, v).unwrap();
                let n = lin.len() as f64;
                let mean = lin.iter().sum::<f64>() / n;
                let amplitude = max_abs(&lin.iter().map(|p| p - 1e-4).collect::<Vec<_>>());
                assert!(amplitude > 1e-5, "the hill makes precipitation");
                assert!(
                    (mean - 1e-4).abs() <= 1e-12 * amplitude,
                    "mean {mean} vs background 1e-4 (amplitude {amplitude})"
                );
                let clipped = model.precipitation(u, v).unwrap();
                let total: f64 = clipped.iter().sum();
                assert!(total >= lin.iter().sum::<f64>());
                assert!(clipped.iter().all(|&p| p >= 0.0));
                // Here the lee is dry enough to be clipped: strictly more.
                assert!(total > lin.iter().sum::<f64>() * (1.0 + 1e-6));
            }
        }
    }

    #[test]
    fn upslope_limit_is_cw_times_wind_dot_gradient() {
        // With H_w = 0 (the ascent reaches the whole moist layer unchanged)
        // and no delays, P_hat = C_w i sigma h_hat, i.e.
        // P = C_w (u dh/dx + v dh/dy): compare with the analytic gradient of
        // the Gaussian. The hill is resolved, so the spectral derivative is
        // exact to rounding, far inside "a few percent".
        let cw = 5e-3;
        let model = hill_model(OrographicParams::upslope(cw));
        let (n, d) = (128, 2e3);
        for (u, v) in [(10.0, 0.0), (0.0, -8.0), (10.0, 5.0)] {
            let lin = model.precipitation_unclipped(u, v).unwrap();
            let clipped = model.precipitation(u, v).unwrap();
            let mut expected = vec![0.0; n * n];
            for j in 0..n {
                for i in 0..n {
                    let (x, y) = (i as f64 * d - 128e3, j as f64 * d - 128e3);
                    let h = HM * (-(x * x + y * y) / (A * A)).exp();
                    let (hx, hy) = (-2.0 * x / (A * A) * h, -2.0 * y / (A * A) * h);
                    expected[j * n + i] = cw * (u * hx + v * hy);
                }
            }
            let scale = max_abs(&expected);
            // Peak of C_w |U| |grad h|: C_w |U| hm sqrt(2/e) / a, at a radius
            // a / sqrt(2) off the grid points, so sampled within 1 %.
            let speed = u.hypot(v);
            let peak = cw * speed * HM * (2.0 / std::f64::consts::E).sqrt() / A;
            assert!(scale <= peak && scale > 0.99 * peak, "{scale} vs {peak}");
            for k in 0..n * n {
                assert!(
                    (lin[k] - expected[k]).abs() < 1e-9 * scale,
                    "at {k}: {} vs {}",
                    lin[k],
                    expected[k]
                );
                assert_eq!(clipped[k], lin[k].max(0.0));
            }
        }
    }

    #[test]
    fn upslope_ridge_precipitates_all_water_lifted_to_the_crest() {
        // A 2-D ridge (no y dependence) crossed by u: the upslope model
        // integrated over the windward slope is C_w u h_max per unit ridge
        // length (the vapour condensed by lifting the column to the crest);
        // the lee is clipped to zero. Riemann sum on the grid: the kink of
        // max(dh/dx, 0) at the crest costs dx^2 |h''| / 12 / hm = 0.17 %.
        let (nx, d, cw, u) = (512, 1e3, 5e-3, 12.0);
        let h: Vec<f64> = (0..nx)
            .map(|i| {
                let x = i as f64 * d - 200e3;
                HM * (-(x * x) / (10e3 * 10e3)).exp()
            })
            .collect();
        let model = OrographicModel::new(&h, 1, nx, d, 1e3, OrographicParams::upslope(cw)).unwrap();
        let p = model.precipitation(u, 3.0).unwrap();
        let total = p.iter().sum::<f64>() * d;
        let expected = cw * u * HM;
        assert!(
            (total - expected).abs() < 3e-3 * expected,
            "{total} vs {expected}"
        );
    }

    /// The downwind delay kernel `G(s)` of the factors
    /// `1 / ((1 + i sigma tau_c)(1 + i sigma tau_f))` along a wind of speed
    /// `speed`: `P(x) = int_0^inf G(s) S(x - s) ds`.
    fn delay_kernel(s: f64, speed: f64, tau_c: f64, tau_f: f64) -> f64 {
        let (lc, lf) = (speed * tau_c, speed * tau_f);
        if lc == 0.0 {
            (-s / lf).exp() / lf
        } else if lf == 0.0 {
            (-s / lc).exp() / lc
        } else if lc == lf {
            s / (lc * lc) * (-s / lc).exp()
        } else {
            ((-s / lf).exp() - (-s / lc).exp()) / (lf - lc)
        }
    }

    #[test]
    fn delays_match_the_advection_equations_solved_along_the_wind() {
        // With H_w = 0 the model is the steady advection of cloud water and
        // hydrometeors, u dq_c/dx = S - q_c/tau_c, u dq_h/dx = q_c/tau_c -
        // q_h/tau_f, P = q_h/tau_f, with S = C_w u dh/dx. Its solution is the
        // upslope source convolved with a one-sided downwind kernel,
        // computed here by Simpson quadrature in physical space, an
        // independent route to the spectral result.
        let (nx, d, cw, u) = (512, 1e3, 5e-3, 10.0);
        let length = nx as f64 * d;
        let a = 10e3;
        let x0 = 150e3;
        let h: Vec<f64> = (0..nx)
            .map(|i| {
                let x = i as f64 * d - x0;
                HM * (-(x * x) / (a * a)).exp()
            })
            .collect();
        // Periodic source: the images one period either side suffice.
        let source = |x: f64| -> f64 {
            let xi = (x - x0).rem_euclid(length);
            [-length, 0.0, length]
                .iter()
                .map(|shift| {
                    let r = xi + shift;
                    cw * u * (-2.0 * r / (a * a)) * HM * (-(r * r) / (a * a)).exp()
                })
                .sum()
        };
        for (tau_c, tau_f) in [(0.0, 1000.0), (1000.0, 1000.0), (1000.0, 1500.0)] {
            let params = OrographicParams {
                tau_c,
                tau_f,
                ..OrographicParams::upslope(cw)
            };
            let model = OrographicModel::new(&h, 1, nx, d, d, params).unwrap();
            let p = model.precipitation_unclipped(u, 0.0).unwrap();
            let scale = max_abs(&p);
            // Simpson on [0, 300 km] (the kernel is below 1e-8 beyond) with
            // 100 m steps; compare every 4th point.
            let (steps, ds) = (3000, 100.0);
            for i in (0..nx).step_by(4) {
                let x = i as f64 * d;
                let f = |s: f64| delay_kernel(s, u, tau_c, tau_f) * source(x - s);
                let mut sum = f(0.0) + f(steps as f64 * ds);
                for k in 1..steps {
                    sum += if k % 2 == 1 { 4.0 } else { 2.0 } * f(k as f64 * ds);
                }
                let expected = sum * ds / 3.0;
                assert!(
                    (p[i] - expected).abs() < 1e-6 * scale,
                    "tau = ({tau_c}, {tau_f}) at x = {x}: {} vs {expected}",
                    p[i]
                );
            }
        }
    }

    #[test]
    fn single_mode_follows_the_mountain_wave_dispersion_relation() {
        // A sinusoidal terrain h0 cos(k0 x) under a wind u: one mode, so
        // P - P_bg = h0 Re(T e^{i k0 x}) with T from the 2-D mountain-wave
        // form m^2 = N_m^2 / u^2 - k0^2 (l = 0): propagating
        // (m = sign(u k0) (N^2/u^2 - k0^2)^(1/2)) for long waves, evanescent
        // (m = i (k0^2 - N^2/u^2)^(1/2)) for short ones.
        let (nx, d) = (64, 1e3);
        let params = OrographicParams {
            background: 3e-5,
            ..OrographicParams::default()
        };
        let (nm, hw) = (params.nm, params.hw);
        // N_m / |u| = 5e-4 m^-1 against k0 = 1.96e-4 (n0 = 2) and 1.57e-3
        // (n0 = 16).
        for n0 in [2, 16] {
            let k0 = 2.0 * std::f64::consts::PI * n0 as f64 / (nx as f64 * d);
            let h0 = 300.0;
            let h: Vec<f64> = (0..nx).map(|i| h0 * (k0 * i as f64 * d).cos()).collect();
            let model = OrographicModel::new(&h, 1, nx, d, d, params).unwrap();
            for u in [10.0, -10.0] {
                let sigma: f64 = u * k0;
                let disc = nm * nm / (u * u) - k0 * k0;
                let m = if disc > 0.0 {
                    Complex::new(sigma.signum() * disc.sqrt(), 0.0)
                } else {
                    Complex::new(0.0, (-disc).sqrt())
                };
                assert_eq!(disc > 0.0, n0 == 2);
                let i = Complex::new(0.0, 1.0);
                let t = params.cw * i * sigma
                    / ((1.0 - i * m * hw)
                        * (1.0 + i * sigma * params.tau_c)
                        * (1.0 + i * sigma * params.tau_f));
                let p = model.precipitation_unclipped(u, 7.0).unwrap();
                for (ix, &pi) in p.iter().enumerate() {
                    let phase = Complex::new(0.0, k0 * ix as f64 * d).exp();
                    let expected = params.background + h0 * (t * phase).re;
                    assert!(
                        (pi - expected).abs() < 1e-12 * h0 * t.norm(),
                        "n0 {n0} u {u} at {ix}: {pi} vs {expected}"
                    );
                }
                // The airflow factor never amplifies the ascent.
                assert!((1.0 - i * m * hw).norm() >= 1.0);
            }
        }
    }

    #[test]
    fn delays_move_the_maximum_downwind_and_reduce_the_total() {
        // tau_c = tau_f = 1000 s carry the condensate 10 km per delay at
        // 10 m/s: the maximum moves downwind of the upslope maximum (which
        // sits on the windward flank), and part of the condensate is carried
        // into the lee and evaporates, so the truncated total drops. For the
        // delays alone this is guaranteed: P = G * S with a kernel G >= 0 of
        // unit mass, so sum max(G * S, 0) <= sum G * max(S, 0) = sum
        // max(S, 0). The full model (airflow dynamics too) also drops.
        let cw = 5e-3;
        let upslope = hill_model(OrographicParams::upslope(cw));
        let delayed = hill_model(OrographicParams {
            tau_c: 1000.0,
            tau_f: 1000.0,
            ..OrographicParams::upslope(cw)
        });
        let full = hill_model(OrographicParams {
            cw,
            ..OrographicParams::default()
        });
        let n = 128;
        let ij = |k: usize| (k % n, k / n);
        for (u, v) in [(10.0, 0.0), (0.0, 10.0), (-10.0, 0.0), (0.0, -10.0)] {
            let p0 = upslope.precipitation(u, v).unwrap();
            let (i0, j0) = ij(argmax(&p0));
            let total0: f64 = p0.iter().sum();
            for model in [&delayed, &full] {
                let p = model.precipitation(u, v).unwrap();
                let (i, j) = ij(argmax(&p));
                // Downwind along the wind, unchanged across it.
                if u > 0.0 {
                    assert!(i > i0 && j == j0, "u > 0: ({i}, {j}) vs ({i0}, {j0})");
                } else if u < 0.0 {
                    assert!(i < i0 && j == j0, "u < 0: ({i}, {j}) vs ({i0}, {j0})");
                } else if v > 0.0 {
                    assert!(j > j0 && i == i0, "v > 0: ({i}, {j}) vs ({i0}, {j0})");
                } else {
                    assert!(j < j0 && i == i0, "v < 0: ({i}, {j}) vs ({i0}, {j0})");
                }
                let total: f64 = p.iter().sum();
                assert!(total < total0, "{total} vs upslope {total0}");
            }
        }
        // Upslope maximum on the windward flank at x0 - a / sqrt(2).
        let p0 = upslope.precipitation(10.0, 0.0).unwrap();
        let (i0, _) = ij(argmax(&p0));
        let expected = ((128e3 - A / 2f64.sqrt()) / 2e3).round() as usize;
        assert_eq!(i0, expected);
    }

    /// An asymmetric terrain: two hills of different sizes off the axes.
    fn two_hills(ny: usize, nx: usize, dx: f64, dy: f64) -> Vec<f64> {
        let a = gaussian(
            ny,
            nx,
            dx,
            dy,
            (0.3 * nx as f64 * dx, 0.4 * ny as f64 * dy),
            A,
        );
        let b = gaussian(
            ny,
            nx,
            dx,
            dy,
            (0.6 * nx as f64 * dx, 0.7 * ny as f64 * dy),
            8e3,
        );
        a.iter().zip(&b).map(|(a, b)| a + 0.6 * b).collect()
    }

    #[test]
    fn mirrored_terrain_and_wind_give_mirrored_precipitation() {
        // x -> -x with u -> -u maps sigma(k) to sigma(-k): the precipitation
        // is mirrored exactly (likewise y with v). Grid index i -> (nx - i)
        // mod nx is x -> -x on the periodic grid. Odd and even sizes, with
        // dx != dy. And on a square grid, swapping x and y with (u, v) ->
        // (v, u) transposes the field.
        let params = OrographicParams {
            background: 5e-5,
            ..OrographicParams::default()
        };
        for (ny, nx, dx, dy) in [(48, 64, 2e3, 1.5e3), (45, 63, 2.5e3, 2e3)] {
            let h = two_hills(ny, nx, dx, dy);
            let mut hx = h.clone();
            let mut hy = h.clone();
            for j in 0..ny {
                for i in 0..nx {
                    hx[j * nx + i] = h[j * nx + (nx - i) % nx];
                    hy[j * nx + i] = h[((ny - j) % ny) * nx + i];
                }
            }
            let m = OrographicModel::new(&h, ny, nx, dx, dy, params).unwrap();
            let mx = OrographicModel::new(&hx, ny, nx, dx, dy, params).unwrap();
            let my = OrographicModel::new(&hy, ny, nx, dx, dy, params).unwrap();
            let (u, v) = (9.0, 4.0);
            let p = m.precipitation_unclipped(u, v).unwrap();
            let px = mx.precipitation_unclipped(-u, v).unwrap();
            let py = my.precipitation_unclipped(u, -v).unwrap();
            let tol = 1e-12 * max_abs(&p);
            for j in 0..ny {
                for i in 0..nx {
                    let k = j * nx + i;
                    assert!((px[k] - p[j * nx + (nx - i) % nx]).abs() < tol);
                    assert!((py[k] - p[((ny - j) % ny) * nx + i]).abs() < tol);
                }
            }
        }
        let (n, d) = (64, 2e3);
        let h = two_hills(n, n, d, d);
        let mut ht = h.clone();
        for j in 0..n {
            for i in 0..n {
                ht[j * n + i] = h[i * n + j];
            }
        }
        let m = OrographicModel::new(&h, n, n, d, d, params).unwrap();
        let mt = OrographicModel::new(&ht, n, n, d, d, params).unwrap();
        let p = m.precipitation(9.0, 4.0).unwrap();
        let pt = mt.precipitation(4.0, 9.0).unwrap();
        let tol = 1e-12 * max_abs(&p);
        for j in 0..n {
            for i in 0..n {
                assert!((pt[j * n + i] - p[i * n + j]).abs() < tol);
            }
        }
    }

    #[test]
    fn unclipped_field_is_linear_in_the_terrain() {
        // For a fixed wind the transfer function does not depend on h:
        // doubling the terrain doubles P - P_bg, and the sum of two terrains
        // gives the sum of the responses.
        let params = OrographicParams {
            background: 1e-4,
            ..OrographicParams::default()
        };
        let (ny, nx, dx, dy) = (48, 64, 2e3, 1.5e3);
        let h = two_hills(ny, nx, dx, dy);
        let g = gaussian(ny, nx, dx, dy, (20e3, 30e3), 12e3);
        let h2: Vec<f64> = h.iter().map(|x| 2.0 * x).collect();
        let hg: Vec<f64> = h.iter().zip(&g).map(|(a, b)| a + b).collect();
        let run = |t: &[f64]| {
            OrographicModel::new(t, ny, nx, dx, dy, params)
                .unwrap()
                .precipitation_unclipped(-6.0, 11.0)
                .unwrap()
                .iter()
                .map(|p| p - 1e-4)
                .collect::<Vec<_>>()
        };
        let (p, p2, pg, phg) = (run(&h), run(&h2), run(&g), run(&hg));
        let tol = 1e-12 * max_abs(&p2);
        for k in 0..p.len() {
            assert!((p2[k] - 2.0 * p[k]).abs() < tol);
            assert!((phg[k] - p[k] - pg[k]).abs() < tol);
        }
        // set_terrain gives the same as a new model.
        let mut m = OrographicModel::new(&h, ny, nx, dx, dy, params).unwrap();
        m.set_terrain(&h2).unwrap();
        let again = m.precipitation_unclipped(-6.0, 11.0).unwrap();
        for k in 0..p.len() {
            assert!((again[k] - 1e-4 - p2[k]).abs() < tol);
        }
    }

    #[test]
    fn workspace_path_equals_allocating_path_and_units_convert() {
        let model = hill_model(OrographicParams::default());
        let mut ws = model.workspace();
        let mut out = vec![0.0; 128 * 128];
        for (u, v) in [(10.0, 3.0), (-4.0, 8.0)] {
            model.precipitation_into(u, v, &mut ws, &mut out).unwrap();
            assert_eq!(out, model.precipitation(u, v).unwrap());
            let mmh = model.precipitation_mm_per_hour(u, v).unwrap();
            for (a, b) in mmh.iter().zip(&out) {
                assert_eq!(*a, b * 3600.0);
            }
        }
        // Default hill at 10 m/s: a peak of order 1 mm/h (C_w U hm / a
        // times the airflow and delay reductions), a physical magnitude.
        let peak = max_abs(&model.precipitation_mm_per_hour(10.0, 0.0).unwrap());
        assert!(peak > 0.1 && peak < 10.0, "{peak} mm/h");
    }

    #[test]
    fn degenerate_settings_give_finite_fields() {
        // sigma -> 0 sends |m| -> infinity (factor 0, no NaN); N_m = 0 gives
        // m = i K; H_w = 0 skips m altogether; tiny winds underflow sigma^2.
        let base = OrographicParams::default();
        let cases = [
            base,
            OrographicParams { nm: 0.0, ..base },
            OrographicParams { hw: 0.0, ..base },
            OrographicParams {
                nm: 0.0,
                hw: 0.0,
                ..base
            },
            OrographicParams::upslope(base.cw),
        ];
        for params in cases {
            let model = hill_model(params);
            for (u, v) in [
                (1e-300, 0.0),
                (0.0, 5e-324),
                (1e-160, -1e-160),
                (10.0, 1e-300),
            ] {
                let p = model.precipitation_unclipped(u, v).unwrap();
                assert!(p.iter().all(|x| x.is_finite()), "{params:?} ({u}, {v})");
            }
        }
        // N_m = 0 with H_w > 0: the evanescent factor 1 / (1 + K H_w) on
        // every mode, checked on one mode by hand.
        let p = OrographicParams { nm: 0.0, ..base };
        let (k, l) = (3e-4, -1e-4);
        let t = transfer_function(&p, k, l, 10.0, 2.0);
        let sigma: f64 = 10.0 * k + 2.0 * l;
        let i = Complex::new(0.0, 1.0);
        let expected = p.cw * i * sigma
            / ((1.0 + k.hypot(l) * p.hw)
                * (1.0 + i * sigma * p.tau_c)
                * (1.0 + i * sigma * p.tau_f));
        assert!((t - expected).norm() < 1e-14 * expected.norm());
        // Hermitian symmetry.
        let tm = transfer_function(&base, -k, -l, 10.0, 2.0);
        let tp = transfer_function(&base, k, l, 10.0, 2.0);
        assert!((tm - tp.conj()).norm() < 1e-15 * tp.norm());
        // Exactly 0 across the wind.
        assert_eq!(
            transfer_function(&base, 1e-3, 2e-3, 2.0, -1.0),
            Complex::new(0.0, 0.0)
        );
    }

    #[test]
    fn thermodynamic_helpers_match_reference_values() {
        // Bolton (1980) against the WMO/IAPWS saturation vapour pressure
        // over water: 125.6 Pa at -20 °C, 611.2 Pa at 0 °C, 2339 Pa at
        // 20 °C, 4247 Pa at 30 °C (within his stated 0.1 %, allow 0.3 %).
        for (t, e) in [
            (253.15, 125.6),
            (273.15, 611.2),
            (293.15, 2339.0),
            (303.15, 4247.0),
        ] {
            let es = saturation_vapour_pressure(t).unwrap();
            assert!((es - e).abs() < 3e-3 * e, "{t} K: {es} vs {e}");
        }
        // rho_s = e_s / (R_v T): 4.85 g/m^3 at 0 °C.
        let rho = saturation_vapour_density(273.15).unwrap();
        assert!((rho - 4.849e-3).abs() < 1e-5, "{rho}");
        // Moist adiabat at 1000 hPa: about -6.5 K/km at 0 °C, -4.3 K/km at
        // 20 °C, close to the dry g / c_p (-9.8 K/km) in very cold air.
        let g0 = moist_adiabatic_lapse_rate(273.15, 1e5).unwrap();
        let g20 = moist_adiabatic_lapse_rate(293.15, 1e5).unwrap();
        let gcold = moist_adiabatic_lapse_rate(213.15, 1e5).unwrap();
        assert!((-6.8e-3..-6.2e-3).contains(&g0), "{g0}");
        assert!((-4.7e-3..-4.0e-3).contains(&g20), "{g20}");
        assert!((gcold + GRAVITY / CP_DRY).abs() < 0.2e-3, "{gcold}");
        // H_w = R_v T^2 / (L |gamma|): 2.37 km at 0 °C, -5.8 K/km.
        let hw = water_vapour_scale_height(273.15, -5.8e-3).unwrap();
        let by_hand = 461.5 * 273.15 * 273.15 / (2.501e6 * 5.8e-3);
        assert!((hw - by_hand).abs() < 1e-9 * by_hand && (hw - 2374.0).abs() < 1.0);
        // The defaults are one consistent state: N_m from the lapse rates is
        // the default 0.005 s^-1 within 10 %, and C_w = rho_s Gamma_m / gamma.
        let d = OrographicParams::default();
        let nm = moist_stability_frequency(273.15, -5.8e-3, 1e5).unwrap();
        assert!((nm - d.nm).abs() < 0.1 * d.nm, "{nm}");
        assert!((d.cw - rho * g0 / -5.8e-3).abs() < 1e-15);
        assert!((5.0e-3..5.8e-3).contains(&d.cw), "{}", d.cw);
        assert_eq!(d.hw, hw);
        assert_eq!((d.tau_c, d.tau_f, d.background), (1000.0, 1000.0, 0.0));
        // A lapse rate steeper than the moist adiabat is moist-unstable.
        let err = moist_stability_frequency(293.15, -6.5e-3, 1e5).unwrap_err();
        assert!(err.contains("gamma_env"), "{err}");
    }

    #[test]
    fn bad_inputs_are_errors_naming_the_parameter() {
        let h = vec![0.0; 12];
        let p = OrographicParams::default();
        let err = |r: Result<OrographicModel, String>| r.unwrap_err();
        assert!(err(OrographicModel::new(&h, 3, 4, 0.0, 1e3, p)).contains("dx"));
        assert!(err(OrographicModel::new(&h, 3, 4, -1.0, 1e3, p)).contains("dx"));
        assert!(err(OrographicModel::new(&h, 3, 4, 1e3, f64::NAN, p)).contains("dy"));
        assert!(err(OrographicModel::new(&h, 3, 4, 1e3, f64::INFINITY, p)).contains("dy"));
        assert!(err(OrographicModel::new(&h, 3, 5, 1e3, 1e3, p)).contains("terrain"));
        assert!(err(OrographicModel::new(&h, 0, 4, 1e3, 1e3, p)).contains("ny"));
        assert!(err(OrographicModel::new(&h, 3, 0, 1e3, 1e3, p)).contains("nx"));
        let mut bad_h = h.clone();
        bad_h[5] = f64::NAN;
        assert!(err(OrographicModel::new(&bad_h, 3, 4, 1e3, 1e3, p)).contains("terrain"));
        type Setter = fn(&mut OrographicParams, f64);
        let fields: [(&str, Setter); 6] = [
            ("nm", |p, x| p.nm = x),
            ("tau_c", |p, x| p.tau_c = x),
            ("tau_f", |p, x| p.tau_f = x),
            ("cw", |p, x| p.cw = x),
            ("hw", |p, x| p.hw = x),
            ("background", |p, x| p.background = x),
        ];
        for (name, set) in fields {
            for bad in [f64::NAN, f64::INFINITY, -1.0] {
                let mut q = p;
                set(&mut q, bad);
                let e = q.check().unwrap_err();
                assert!(e.starts_with(name), "{name}: {e}");
                assert!(err(OrographicModel::new(&h, 3, 4, 1e3, 1e3, q)).starts_with(name));
            }
        }
        let mut model = OrographicModel::new(&h, 3, 4, 1e3, 1e3, p).unwrap();
        let mut q = p;
        q.tau_f = f64::NAN;
        assert!(model.set_params(q).unwrap_err().contains("tau_f"));
        assert_eq!(*model.params(), p);
        assert!(
            model
                .set_terrain(&[0.0; 5])
                .unwrap_err()
                .contains("terrain")
        );
        assert!(
            model
                .precipitation(f64::NAN, 1.0)
                .unwrap_err()
                .starts_with("u ")
        );
        assert!(
            model
                .precipitation(1.0, f64::INFINITY)
                .unwrap_err()
                .starts_with("v ")
        );
        let other = OrographicModel::new(&[0.0; 6], 2, 3, 1e3, 1e3, p).unwrap();
        let mut ws = other.workspace();
        let mut out = vec![0.0; 12];
        assert!(
            model
                .precipitation_into(1.0, 1.0, &mut ws, &mut out)
                .unwrap_err()
                .contains("ws")
        );
        let mut ws = model.workspace();
        let mut short = vec![0.0; 11];
        assert!(
            model
                .precipitation_into(1.0, 1.0, &mut ws, &mut short)
                .unwrap_err()
                .contains("out")
        );
        // Thermodynamic helpers.
        assert!(
            saturation_vapour_pressure(f64::NAN)
                .unwrap_err()
                .contains("t_kelvin")
        );
        assert!(
            saturation_vapour_pressure(20.0)
                .unwrap_err()
                .contains("t_kelvin")
        );
        assert!(
            water_vapour_scale_height(273.15, 5.8e-3)
                .unwrap_err()
                .contains("gamma_env")
        );
        assert!(
            moist_adiabatic_lapse_rate(273.15, 100.0)
                .unwrap_err()
                .contains("pressure")
        );
        assert!(
            OrographicParams::from_surface_temperature(273.15, f64::NAN, 1e5)
                .unwrap_err()
                .contains("gamma_env")
        );
        assert!(
            OrographicParams::from_surface_temperature(f64::INFINITY, -5.8e-3, 1e5)
                .unwrap_err()
                .contains("t0_kelvin")
        );
    }

    /// Uniform in [a, b) from the module's generator (tests only).
    fn uniform_vec(rng: &mut SplitMix64, n: usize, a: f64, b: f64) -> Vec<f64> {
        (0..n).map(|_| rng.range(a, b)).collect()
    }

    /// The parameter sets of the derivative tests: the defaults, each
    /// limit, and long delays.
    fn derivative_cases() -> Vec<OrographicParams> {
        let base = OrographicParams {
            background: 1e-5,
            ..OrographicParams::default()
        };
        vec![
            base,
            OrographicParams { nm: 0.0, ..base },
            OrographicParams { hw: 0.0, ..base },
            OrographicParams {
                nm: 0.0,
                hw: 0.0,
                ..base
            },
            OrographicParams::upslope(base.cw),
            OrographicParams {
                tau_c: 0.0,
                tau_f: 3000.0,
                nm: 0.01,
                ..base
            },
        ]
    }

    #[test]
    fn transfer_function_derivative_matches_finite_differences() {
        // dT/du = k dT/dsigma and dT/dv = l dT/dsigma against central
        // differences of transfer_function in u and in v, on random modes
        // and winds on both branches of m, away from the branch points
        // |sigma| = N_m (where m' is infinite) by far more than the step.
        let mut rng = SplitMix64(7);
        for params in derivative_cases() {
            let mut checked = [0usize; 2];
            for trial in 0..4000 {
                let d = rng.range(500.0, 5e3);
                let kmax = std::f64::consts::PI / d;
                let (mut k, mut l) = (rng.range(-kmax, kmax), rng.range(-kmax, kmax));
                let (mut u, v) = (rng.range(-25.0, 25.0), rng.range(-25.0, 25.0));
                if trial % 50 == 0 {
                    // sigma = 0 exactly: u = 0 on a mode with l = 0.
                    u = 0.0;
                    l = 0.0;
                }
                if trial % 97 == 0 {
                    // Long waves: deep in the propagating branch.
                    k *= 1e-3;
                    l *= 1e-3;
                }
                let sigma = u * k + v * l;
                // At sigma = 0 with N_m, H_w > 0 the derivative is 0 and
                // the differences see their O(h^2) error alone: a smaller
                // step there.
                let step = if sigma == 0.0 { 1e-8 } else { 1e-6 };
                let h = step * (1.0 + u.abs().max(v.abs()));
                let gap = (sigma.abs() - params.nm).abs();
                if params.hw > 0.0 && params.nm > 0.0 && gap < 1e4 * h * k.abs().max(l.abs()) {
                    continue;
                }
                checked[usize::from(sigma.abs() < params.nm)] += 1;
                let dsig = transfer_function_derivative(&params, k, l, u, v);
                assert!(dsig.re.is_finite() && dsig.im.is_finite());
                let t = |u, v| transfer_function(&params, k, l, u, v);
                let du = (t(u + h, v) - t(u - h, v)) / (2.0 * h);
                let dv = (t(u, v + h) - t(u, v - h)) / (2.0 * h);
                // Scale: the derivative's size, or 1e-4 of its natural size
                // C_w |k| where it vanishes.
                let scale = (k * dsig).norm().max((l * dsig).norm())
                    + 1e-4 * params.cw * k.abs().max(l.abs());
                for (fd, exact, what) in [(du, k * dsig, "u"), (dv, l * dsig, "v")] {
                    assert!(
                        (fd - exact).norm() <= 1e-6 * scale,
                        "d/d{what} {params:?} k {k} l {l} u {u} v {v}: {fd} vs {exact}"
                    );
                }
                // Hermitian: dT/dsigma at (-k, -l) is -conj of that at (k, l).
                let minus = transfer_function_derivative(&params, -k, -l, u, v);
                assert!((minus + dsig.conj()).norm() <= 1e-15 * dsig.norm());
            }
            // Both branches were exercised where there are two.
            assert!(checked[0] > 1000, "{checked:?}");
            if params.nm > 0.0 {
                assert!(checked[1] > 20, "{checked:?}");
            }
        }
        // The limits by hand: upslope C_w i; N_m = 0: C_w i / (1 + K H_w)
        // at sigma = 0; 0 at sigma = 0 with N_m, H_w > 0.
        let base = OrographicParams::default();
        let i = Complex::new(0.0, 1.0);
        let up = OrographicParams::upslope(base.cw);
        assert_eq!(
            transfer_function_derivative(&up, 1e-3, 2e-3, 3.0, -4.0),
            base.cw * i
        );
        let flat = OrographicParams { nm: 0.0, ..base };
        let d0 = transfer_function_derivative(&flat, 1e-3, 2e-3, 2.0, -1.0);
        let kk = 1e-3f64.hypot(2e-3);
        assert!((d0 - base.cw * i / (1.0 + kk * base.hw)).norm() < 1e-15 * d0.norm());
        assert_eq!(
            transfer_function_derivative(&base, 1e-3, 2e-3, 2.0, -1.0),
            Complex::new(0.0, 0.0)
        );
        // Overflow of |m| H_w: T and its derivative are both 0, no NaN.
        for (u, v) in [(1e-300, 0.0), (0.0, 5e-324), (1e-160, -1e-160)] {
            assert_eq!(
                transfer_function_derivative(&base, 1e-3, 2e-3, u, v),
                Complex::new(0.0, 0.0)
            );
        }
        // The branch point itself: not differentiable.
        let at_branch = transfer_function_derivative(&base, base.nm, 0.0, 1.0, 0.0);
        assert!(at_branch.re.is_nan());
    }

    /// `sum_x lambda(x) P_unclipped(x; u, v)`.
    fn weighted_sum(model: &OrographicModel, u: f64, v: f64, lambda: &[f64]) -> f64 {
        let p = model.precipitation_unclipped(u, v).unwrap();
        p.iter().zip(lambda).map(|(p, l)| p * l).sum()
    }

    /// The smallest change of wind (m/s) that moves a mode of the model's
    /// terrain onto a branch point `|sigma| = N_m`.
    fn branch_distance(model: &OrographicModel, u: f64, v: f64) -> f64 {
        let nm = model.params().nm;
        let mut best = f64::INFINITY;
        for (i, &k) in model.kx.iter().enumerate() {
            for (j, &l) in model.ky.iter().enumerate() {
                if model.h_hat[i * model.ny + j] != Complex::new(0.0, 0.0) {
                    let sigma: f64 = u * k + v * l;
                    best = best.min((sigma.abs() - nm).abs() / k.hypot(l));
                }
            }
        }
        best
    }

    /// A rough terrain: independent uniform heights in [0, 1000) m.
    fn rough_terrain(ny: usize, nx: usize, seed: u64) -> Vec<f64> {
        uniform_vec(&mut SplitMix64(seed), ny * nx, 0.0, 1000.0)
    }

    #[test]
    fn wind_vjp_matches_finite_differences() {
        // Central differences of J = sum lambda P_unclipped in u and v, on
        // a smooth hill and on a rough random terrain (every mode present),
        // odd and even sizes; winds checked to sit well away from the
        // branch points relative to the step.
        let (ny, nx, dx, dy) = (45, 64, 2e3, 1.5e3);
        let smooth = gaussian(ny, nx, dx, dy, (60e3, 30e3), A);
        let rough = rough_terrain(ny, nx, 3);
        let lambda = uniform_vec(&mut SplitMix64(11), ny * nx, -1.0, 1.0);
        for params in derivative_cases() {
            for terrain in [&smooth, &rough] {
                let model = OrographicModel::new(terrain, ny, nx, dx, dy, params).unwrap();
                let mut ws = model.workspace();
                for (u, v) in [(10.0, 0.0), (-7.3, 12.1), (5.3, -14.1), (0.0, 6.1)] {
                    // The error of the differences grows as (h / distance)^2
                    // near a branch point.
                    let h = 1e-6;
                    if params.hw > 0.0 && params.nm > 0.0 {
                        assert!(branch_distance(&model, u, v) > 2e3 * h);
                    }
                    let (gu, gv) = model.wind_vjp(u, v, &lambda, &mut ws).unwrap();
                    let j = |u, v| weighted_sum(&model, u, v, &lambda);
                    let fu = (j(u + h, v) - j(u - h, v)) / (2.0 * h);
                    let fv = (j(u, v + h) - j(u, v - h)) / (2.0 * h);
                    let norm = gu.hypot(gv);
                    assert!(norm > 0.0);
                    assert!(
                        (fu - gu).abs() < 1e-6 * norm && (fv - gv).abs() < 1e-6 * norm,
                        "{params:?} ({u}, {v}): fd ({fu}, {fv}) vs vjp ({gu}, {gv})"
                    );
                }
            }
        }
    }

    #[test]
    fn tent_weights_are_a_partition_of_unity() {
        // Per axis the tents sum to 1 exactly ((1 - f) + f rounds to 1),
        // are in [0, 1], are 1 at cells on their centre and 0 at cells on
        // the neighbours' centres; the 2-D weights sum to 1 within rounding.
        for (n, blocks) in [(1, 1), (7, 1), (7, 7), (64, 4), (63, 4), (45, 6), (10, 3)] {
            let (tents, supports) = tent_weights(n, blocks);
            for c in 0..n {
                let sum: f64 = tents.iter().map(|t| t[c]).sum();
                assert_eq!(sum, 1.0, "n {n} blocks {blocks} cell {c}");
            }
            for (b, (t, s)) in tents.iter().zip(&supports).enumerate() {
                assert!(t.iter().all(|&w| (0.0..=1.0).contains(&w)));
                for (c, &w) in t.iter().enumerate() {
                    assert_eq!(w > 0.0, s.contains(&c), "support of {b}");
                }
                // A cell on the centre (when the centre is a cell) has 1.
                let centre = (b as f64 + 0.5) * n as f64 / blocks as f64 - 0.5;
                if centre.fract() == 0.0 {
                    assert_eq!(t[centre as usize], 1.0);
                }
            }
        }
        let params = OrographicParams::default();
        let (ny, nx) = (45, 63);
        let model = OrographicModel::new(&vec![0.0; ny * nx], ny, nx, 2e3, 2e3, params).unwrap();
        let blocked = BlockedOrographic::new(model, 4, 5).unwrap();
        let weights: Vec<Vec<f64>> = (0..20).map(|b| blocked.block_weights(b).unwrap()).collect();
        for x in 0..ny * nx {
            let sum: f64 = weights.iter().map(|w| w[x]).sum();
            assert!((sum - 1.0).abs() <= 4.0 * f64::EPSILON, "{sum}");
            assert!(weights.iter().all(|w| w[x] >= 0.0));
        }
        for (w, total) in weights.iter().zip(blocked.block_totals()) {
            let sum: f64 = w.iter().sum();
            assert!((sum - total).abs() < 1e-12 * total);
        }
        assert!(blocked.block_weights(20).unwrap_err().starts_with("b "));
    }

    /// A blocked model on the two-hill terrain, odd sizes, `dx != dy`.
    fn blocked_model(params: OrographicParams, by: usize, bx: usize) -> BlockedOrographic {
        let (ny, nx, dx, dy) = (45, 63, 2.5e3, 2e3);
        let h = two_hills(ny, nx, dx, dy);
        let model = OrographicModel::new(&h, ny, nx, dx, dy, params).unwrap();
        BlockedOrographic::new(model, by, bx).unwrap()
    }

    #[test]
    fn one_block_is_the_uniform_wind_model_bit_for_bit() {
        let params = OrographicParams {
            background: 3e-5,
            ..OrographicParams::default()
        };
        let blocked = blocked_model(params, 1, 1);
        let model = blocked.model().clone();
        let mut ws = blocked.workspace();
        let mut mws = model.workspace();
        let n = model.ny() * model.nx();
        let mut out = vec![0.0; n];
        let lambda = uniform_vec(&mut SplitMix64(5), n, -1.0, 1.0);
        for (u, v) in [(10.0, 0.0), (-7.0, 12.0)] {
            blocked
                .precipitation_unclipped_into(&[(u, v)], &mut ws, &mut out)
                .unwrap();
            assert_eq!(out, model.precipitation_unclipped(u, v).unwrap());
            blocked
                .precipitation_into(&[(u, v)], &mut ws, &mut out)
                .unwrap();
            assert_eq!(out, model.precipitation(u, v).unwrap());
            let g = blocked.winds_vjp(&[(u, v)], &lambda, &mut ws).unwrap();
            assert_eq!(g, vec![model.wind_vjp(u, v, &lambda, &mut mws).unwrap()]);
        }
    }

    #[test]
    fn equal_winds_give_the_uniform_field_and_conserve_mass() {
        // Partition of unity: equal winds in all blocks give the
        // uniform-wind field (to rounding), whose domain mean is the
        // background. Different winds give a different field that agrees
        // with each block's own field at cells where its weight is 1.
        let params = OrographicParams {
            background: 1e-4,
            ..OrographicParams::default()
        };
        let blocked = blocked_model(params, 4, 5);
        let model = blocked.model();
        let (u, v) = (8.0, -5.0);
        let uniform = model.precipitation_unclipped(u, v).unwrap();
        let p = blocked.precipitation_unclipped(&[(u, v); 20]).unwrap();
        let amplitude = max_abs(&uniform.iter().map(|p| p - 1e-4).collect::<Vec<_>>());
        assert!(amplitude > 1e-6);
        for (a, b) in p.iter().zip(&uniform) {
            assert!((a - b).abs() <= 1e-14 * amplitude, "{a} vs {b}");
        }
        let mean = p.iter().sum::<f64>() / p.len() as f64;
        assert!((mean - 1e-4).abs() <= 1e-12 * amplitude, "{mean}");
        let clipped = blocked.precipitation(&[(u, v); 20]).unwrap();
        for (c, a) in clipped.iter().zip(&p) {
            assert_eq!(*c, a.max(0.0));
        }
        // Different winds: on a cell where a block's weight is 1 the field
        // is that block's uniform-wind field.
        let winds: Vec<(f64, f64)> = (0..20)
            .map(|b| (5.0 + b as f64, -3.0 + 0.5 * b as f64))
            .collect();
        let p = blocked.precipitation_unclipped(&winds).unwrap();
        let mut found = 0;
        for (b, &(ub, vb)) in winds.iter().enumerate() {
            let w = blocked.block_weights(b).unwrap();
            let own = model.precipitation_unclipped(ub, vb).unwrap();
            for x in 0..p.len() {
                if w[x] == 1.0 {
                    found += 1;
                    assert!((p[x] - own[x]).abs() <= 1e-14 * amplitude);
                }
            }
        }
        assert!(found >= 20);
    }

    #[test]
    fn block_means_adjoint_is_the_adjoint_of_block_means() {
        // <M f, c> = <f, M^T c>, and the adjoint accumulates. Means of a
        // constant field are that constant.
        let blocked = blocked_model(OrographicParams::default(), 3, 4);
        let n = 45 * 63;
        let mut rng = SplitMix64(21);
        for _ in 0..5 {
            let f = uniform_vec(&mut rng, n, -3.0, 3.0);
            let c = uniform_vec(&mut rng, 12, -2.0, 2.0);
            let mf = blocked.block_means(&f).unwrap();
            let mut mtc = vec![0.0; n];
            blocked.block_means_adjoint(&c, &mut mtc).unwrap();
            let lhs: f64 = mf.iter().zip(&c).map(|(a, b)| a * b).sum();
            let rhs: f64 = f.iter().zip(&mtc).map(|(a, b)| a * b).sum();
            assert!(
                (lhs - rhs).abs() <= 1e-12 * lhs.abs().max(1.0),
                "{lhs} vs {rhs}"
            );
            let mut twice = mtc.clone();
            blocked.block_means_adjoint(&c, &mut twice).unwrap();
            for (t, m) in twice.iter().zip(&mtc) {
                assert!((t - 2.0 * m).abs() <= 1e-15 * m.abs().max(1e-3));
            }
        }
        for m in blocked.block_means(&vec![7.5; n]).unwrap() {
            assert!((m - 7.5).abs() < 1e-14);
        }
        let u = vec![10.0; n];
        let v: Vec<f64> = (0..n).map(|x| (x % 63) as f64).collect();
        let winds = blocked.block_winds(&u, &v).unwrap();
        // Block columns' mean x index increases across the grid.
        assert!(winds[0].1 < winds[1].1 && winds[1].1 < winds[3].1);
        assert!(winds.iter().all(|w| (w.0 - 10.0).abs() < 1e-13));
    }

    #[test]
    fn winds_vjp_matches_finite_differences() {
        // Different winds per block, each component of each block's wind
        // perturbed in turn; smooth and rough terrains, 2 x 3 blocks.
        let (ny, nx, dx, dy) = (45, 63, 2.5e3, 2e3);
        let smooth = two_hills(ny, nx, dx, dy);
        let rough = rough_terrain(ny, nx, 8);
        let lambda = uniform_vec(&mut SplitMix64(13), ny * nx, -1.0, 1.0);
        let winds = vec![
            (10.0, 0.0),
            (11.1, 6.1),
            (-4.1, 9.7),
            (6.6, -7.7),
            (12.5, 1.3),
            (0.0, -9.1),
        ];
        for params in [OrographicParams::default(), OrographicParams::upslope(5e-3)] {
            for terrain in [&smooth, &rough] {
                let model = OrographicModel::new(terrain, ny, nx, dx, dy, params).unwrap();
                let h = 1e-6;
                for &(u, v) in &winds {
                    if params.hw > 0.0 && params.nm > 0.0 {
                        assert!(branch_distance(&model, u, v) > 2e3 * h);
                    }
                }
                let blocked = BlockedOrographic::new(model, 2, 3).unwrap();
                let mut ws = blocked.workspace();
                let grad = blocked.winds_vjp(&winds, &lambda, &mut ws).unwrap();
                let j = |w: &[(f64, f64)]| -> f64 {
                    let p = blocked.precipitation_unclipped(w).unwrap();
                    p.iter().zip(&lambda).map(|(p, l)| p * l).sum()
                };
                let norm = grad.iter().map(|g| g.0.hypot(g.1)).fold(0.0, f64::max);
                assert!(norm > 0.0);
                for b in 0..6 {
                    for component in 0..2 {
                        let mut plus = winds.clone();
                        let mut minus = winds.clone();
                        if component == 0 {
                            plus[b].0 += h;
                            minus[b].0 -= h;
                        } else {
                            plus[b].1 += h;
                            minus[b].1 -= h;
                        }
                        let fd = (j(&plus) - j(&minus)) / (2.0 * h);
                        let exact = if component == 0 { grad[b].0 } else { grad[b].1 };
                        assert!(
                            (fd - exact).abs() < 1e-6 * norm,
                            "{params:?} block {b} component {component}: {fd} vs {exact}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn sparse_lambda_gives_zero_gradient_to_blocks_it_misses() {
        // lambda at one corner cell only: the corner block (weight 1 there)
        // gets the uniform-wind gradient of that cell, the blocks whose
        // tents vanish there get exactly 0 (and no FFT).
        let blocked = blocked_model(OrographicParams::default(), 3, 3);
        let model = blocked.model();
        let n = model.ny() * model.nx();
        let mut lambda = vec![0.0; n];
        lambda[0] = 1.0;
        let winds: Vec<(f64, f64)> = (0..9).map(|b| (6.0 + b as f64, 2.0)).collect();
        let grad = blocked
            .winds_vjp(&winds, &lambda, &mut blocked.workspace())
            .unwrap();
        let own = model
            .wind_vjp(winds[0].0, winds[0].1, &lambda, &mut model.workspace())
            .unwrap();
        assert_eq!(grad[0], own);
        assert!(own.0 != 0.0 && own.1 != 0.0);
        for g in &grad[1..] {
            assert_eq!(*g, (0.0, 0.0));
        }
    }

    #[test]
    fn blocked_bad_inputs_are_errors_naming_the_parameter() {
        let params = OrographicParams::default();
        let model = OrographicModel::new(&[0.0; 12], 3, 4, 1e3, 1e3, params).unwrap();
        let e = |by, bx| BlockedOrographic::new(model.clone(), by, bx).unwrap_err();
        assert!(e(0, 1).starts_with("by "));
        assert!(e(4, 1).starts_with("by "));
        assert!(e(1, 0).starts_with("bx "));
        assert!(e(1, 5).starts_with("bx "));
        let blocked = BlockedOrographic::new(model.clone(), 3, 2).unwrap();
        let mut ws = blocked.workspace();
        let mut out = vec![0.0; 12];
        let winds = [(1.0, 2.0); 6];
        let lambda = [1.0; 12];
        let err = |r: Result<(), String>| r.unwrap_err();
        assert!(
            err(blocked.precipitation_unclipped_into(&winds[..5], &mut ws, &mut out))
                .starts_with("winds ")
        );
        let mut bad = winds;
        bad[4].1 = f64::NAN;
        assert!(err(blocked.precipitation_into(&bad, &mut ws, &mut out)).contains("block 4"));
        assert!(
            err(blocked.precipitation_into(&winds, &mut ws, &mut out[..11])).starts_with("out ")
        );
        let other = BlockedOrographic::new(
            OrographicModel::new(&[0.0; 6], 2, 3, 1e3, 1e3, params).unwrap(),
            1,
            1,
        )
        .unwrap();
        let mut other_ws = other.workspace();
        assert!(
            err(blocked.precipitation_into(&winds, &mut other_ws, &mut out)).starts_with("ws ")
        );
        assert!(
            blocked
                .winds_vjp(&winds, &lambda[..11], &mut ws)
                .unwrap_err()
                .starts_with("lambda ")
        );
        let mut bad_lambda = lambda;
        bad_lambda[3] = f64::INFINITY;
        assert!(
            blocked
                .winds_vjp(&winds, &bad_lambda, &mut ws)
                .unwrap_err()
                .starts_with("lambda ")
        );
        let mut grad = vec![(0.0, 0.0); 5];
        assert!(
            err(blocked.winds_vjp_into(&winds, &lambda, &mut ws, &mut grad)).starts_with("grad ")
        );
        assert!(
            blocked
                .block_means(&lambda[..3])
                .unwrap_err()
                .starts_with("field ")
        );
        assert!(
            blocked
                .block_winds(&lambda, &lambda[..3])
                .unwrap_err()
                .starts_with("v ")
        );
        assert!(err(blocked.block_means_adjoint(&[1.0; 5], &mut out)).starts_with("cotangent "));
        assert!(err(blocked.block_means_adjoint(&[1.0; 6], &mut out[..3])).starts_with("out "));
        let mut mws = model.workspace();
        assert!(
            model
                .wind_vjp(f64::NAN, 1.0, &lambda, &mut mws)
                .unwrap_err()
                .starts_with("u ")
        );
        assert!(
            model
                .wind_vjp(1.0, 1.0, &lambda[..2], &mut mws)
                .unwrap_err()
                .starts_with("lambda ")
        );
        let mut small_ws = other.model().workspace();
        assert!(
            model
                .wind_vjp(1.0, 1.0, &lambda, &mut small_ws)
                .unwrap_err()
                .starts_with("ws ")
        );
    }

    /// Fraction of the power of a row-major field (of its gradient if
    /// `slope`) at wavenumbers a grid `factor` times coarser cannot carry
    /// (`|k| > pi / (factor dx)` or `|l| > pi / (factor dy)`), and the
    /// fraction outside `[k_lo, k_hi]`.
    #[allow(clippy::too_many_arguments)]
    fn power_fractions(
        field: &[f64],
        ny: usize,
        nx: usize,
        dx: f64,
        dy: f64,
        factor: f64,
        (k_lo, k_hi): (f64, f64),
        slope: bool,
    ) -> (f64, f64) {
        let mut c: Vec<Complex<f64>> = field.iter().map(|&x| Complex::new(x, 0.0)).collect();
        fft2(&mut c, ny, nx, false);
        let (kx, ky) = (wavenumbers(nx, dx), wavenumbers(ny, dy));
        let (mut total, mut fine, mut outside) = (0.0, 0.0, 0.0);
        for (j, row) in c.chunks_exact(nx).enumerate() {
            for (i, z) in row.iter().enumerate() {
                let (k, l) = (kx[i], ky[j]);
                let p = z.norm_sqr() * if slope { k * k + l * l } else { 1.0 };
                total += p;
                if k.abs() > std::f64::consts::PI / (factor * dx)
                    || l.abs() > std::f64::consts::PI / (factor * dy)
                {
                    fine += p;
                }
                let kk = k.hypot(l);
                if kk < k_lo * (1.0 - 1e-12) || kk > k_hi * (1.0 + 1e-12) {
                    outside += p;
                }
            }
        }
        (fine / total, outside / total)
    }

    #[test]
    fn synthetic_terrain_is_deterministic_tapered_and_scaled() {
        let params = TerrainParams::default();
        let (ny, nx, dx, dy) = (256, 256, 2e3, 2e3);
        let h = synthetic_terrain(ny, nx, dx, dy, &params, 42).unwrap();
        assert_eq!(h, synthetic_terrain(ny, nx, dx, dy, &params, 42).unwrap());
        let other = synthetic_terrain(ny, nx, dx, dy, &params, 43).unwrap();
        let differ = h.iter().zip(&other).filter(|(a, b)| a != b).count();
        assert!(differ > ny * nx / 4, "{differ}");
        assert!(h.iter().all(|x| x.is_finite() && *x >= 0.0));
        assert_eq!(h.iter().fold(0.0f64, |a, &b| a.max(b)), params.max_height);
        for j in 0..ny {
            for i in 0..nx {
                let dist_x = i.min(nx - 1 - i) as f64 * dx;
                let dist_y = j.min(ny - 1 - j) as f64 * dy;
                if dist_x <= params.margin || dist_y <= params.margin {
                    assert_eq!(h[j * nx + i].to_bits(), 0, "({j}, {i})");
                }
            }
        }
        // Mountains, not a few spikes: a good part of the interior is
        // raised, and the mean height is a sizeable fraction of the top.
        let raised = h.iter().filter(|&&x| x > 100.0).count();
        assert!(raised > ny * nx / 10, "{raised}");
        // A rectangular grid with dx != dy, given orientation, no massifs.
        let ridges_only = TerrainParams {
            massifs: 0,
            ridge_orientation: Some(0.3),
            ..params
        };
        let g = synthetic_terrain(100, 160, 2e3, 2.5e3, &ridges_only, 1).unwrap();
        assert!(g.iter().all(|x| x.is_finite() && *x >= 0.0));
        assert_eq!(g.iter().fold(0.0f64, |a, &b| a.max(b)), 2000.0);
    }

    #[test]
    fn synthetic_ridges_are_band_limited_and_mostly_below_a_coarse_grid() {
        // The ridge field alone: all its power in [k_min, k_max]; most of
        // it above the Nyquist wavenumber of a grid 4 times coarser; along
        // the crests its wavenumbers are small (anisotropy).
        let params = TerrainParams::default();
        let two_pi = 2.0 * std::f64::consts::PI;
        let band = (
            two_pi / params.max_wavelength,
            two_pi / params.min_wavelength,
        );
        for (ny, nx, dx, dy, seed) in [(256, 256, 2e3, 2e3, 1), (200, 240, 2e3, 1.8e3, 2)] {
            let parts = terrain_parts(ny, nx, dx, dy, &params, seed).unwrap();
            let r = &parts.ridges;
            let mean = r.iter().sum::<f64>() / r.len() as f64;
            let var = r.iter().map(|x| x * x).sum::<f64>() / r.len() as f64;
            assert!(mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-12);
            let (fine, outside) = power_fractions(r, ny, nx, dx, dy, 4.0, band, false);
            assert!(fine > 0.5, "fine fraction {fine}");
            assert!(outside < 1e-20, "{outside}");
            // In the whole terrain the broad massifs hold most of the
            // variance, but most of the slope (which drives the ascent)
            // is still below the coarse grid.
            let h = synthetic_terrain(ny, nx, dx, dy, &params, seed).unwrap();
            let (fine_h, _) = power_fractions(&h, ny, nx, dx, dy, 4.0, band, true);
            assert!(fine_h > 0.5, "terrain slope fine fraction {fine_h}");
        }
        // The same proportion on a 1 km grid with the band scaled to it.
        let (n, d) = (256, 1e3);
        let scaled = TerrainParams::for_grid_spacing(d);
        assert_eq!(TerrainParams::for_grid_spacing(2e3), params);
        let parts = terrain_parts(n, n, d, d, &scaled, 4).unwrap();
        let band = (
            two_pi / scaled.max_wavelength,
            two_pi / scaled.min_wavelength,
        );
        let (fine, _) = power_fractions(&parts.ridges, n, n, d, d, 4.0, band, false);
        assert!(fine > 0.5, "fine fraction at 1 km {fine}");
        // Anisotropy: with crests along x, the power-weighted mean square
        // of k is far below that of l.
        let along_x = TerrainParams {
            ridge_orientation: Some(0.0),
            ..params
        };
        let (n, d) = (128, 2e3);
        let parts = terrain_parts(n, n, d, d, &along_x, 9).unwrap();
        let mut c: Vec<Complex<f64>> = parts.ridges.iter().map(|&x| Complex::new(x, 0.0)).collect();
        fft2(&mut c, n, n, false);
        let ks = wavenumbers(n, d);
        let (mut kk2, mut ll2) = (0.0, 0.0);
        for (j, row) in c.chunks_exact(n).enumerate() {
            for (i, z) in row.iter().enumerate() {
                kk2 += ks[i] * ks[i] * z.norm_sqr();
                ll2 += ks[j] * ks[j] * z.norm_sqr();
            }
        }
        assert!(kk2 < 0.2 * ll2, "{kk2} vs {ll2}");
        // The massifs and the taper: massifs peak inside the interior, the
        // taper is 1 there and 0 at the edge.
        assert_eq!(parts.taper[0], 0.0);
        assert_eq!(parts.taper[n / 2 * n + n / 2], 1.0);
        assert!(parts.massifs.iter().all(|m| *m >= 0.0));
    }

    #[test]
    fn terrain_bad_inputs_are_errors_naming_the_parameter() {
        let p = TerrainParams::default();
        type Setter = fn(&mut TerrainParams, f64);
        let fields: [(&str, Setter); 10] = [
            ("max_height", |p, x| p.max_height = x),
            ("margin", |p, x| p.margin = x),
            ("taper_width", |p, x| p.taper_width = x),
            ("massif_min_width", |p, x| p.massif_min_width = x),
            ("massif_max_width", |p, x| p.massif_max_width = x),
            ("min_wavelength", |p, x| p.min_wavelength = x),
            ("max_wavelength", |p, x| p.max_wavelength = x),
            ("ridge_anisotropy", |p, x| p.ridge_anisotropy = x),
            ("ridge_orientation", |p, x| p.ridge_orientation = Some(x)),
            ("ridge_amplitude", |p, x| p.ridge_amplitude = x),
        ];
        for (name, set) in fields {
            for bad in [f64::NAN, f64::INFINITY, -1.0] {
                if name == "ridge_orientation" && bad == -1.0 {
                    continue;
                }
                let mut q = p;
                set(&mut q, bad);
                let e = q.check().unwrap_err();
                assert!(e.starts_with(name), "{name}: {e}");
                let e = synthetic_terrain(64, 64, 2e3, 2e3, &q, 0).unwrap_err();
                assert!(e.starts_with(name), "{name}: {e}");
            }
        }
        let swapped = TerrainParams {
            min_wavelength: 30e3,
            ..p
        };
        assert!(swapped.check().unwrap_err().starts_with("max_wavelength"));
        let grid = |ny, nx, dx, dy, q: &TerrainParams| synthetic_terrain(ny, nx, dx, dy, q, 0);
        assert!(grid(0, 64, 2e3, 2e3, &p).unwrap_err().starts_with("ny "));
        assert!(grid(64, 0, 2e3, 2e3, &p).unwrap_err().starts_with("nx "));
        assert!(
            grid(64, 64, f64::NAN, 2e3, &p)
                .unwrap_err()
                .starts_with("dx ")
        );
        assert!(grid(64, 64, 2e3, 0.0, &p).unwrap_err().starts_with("dy "));
        assert!(
            grid(64, 64, 4e3, 2e3, &p)
                .unwrap_err()
                .starts_with("min_wavelength")
        );
        assert!(
            grid(32, 64, 2e3, 2e3, &p)
                .unwrap_err()
                .starts_with("margin")
        );
        let flat = TerrainParams {
            massifs: 0,
            ridge_amplitude: 0.0,
            ..p
        };
        assert!(
            grid(128, 128, 2e3, 2e3, &flat)
                .unwrap_err()
                .contains("flat")
        );
    }
}
