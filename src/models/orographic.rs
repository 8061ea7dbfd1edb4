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
//! or split the domain into blocks and pass each block's mean wind over the
//! (padded) block. The Coriolis parameter `f`, which some implementations
//! put into `m` as `(N_m^2 - sigma^2) / (sigma^2 - f^2)`, is not included
//! (it matters only where `|sigma|` approaches `f`, for terrain some hundreds
//! of kilometres wide).
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
        self.row_forward
            .process_with_scratch(&mut ws.field, &mut ws.scratch);
        transpose(&ws.field, &mut ws.spectrum, ny, nx);
        self.col_forward
            .process_with_scratch(&mut ws.spectrum, &mut ws.scratch);
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
        let (ny, nx) = (self.ny, self.nx);
        let n = ny * nx;
        for (name, w) in [("u", u), ("v", v)] {
            if !w.is_finite() {
                return Err(format!("{name} must be a finite wind in m/s, got {w}"));
            }
        }
        if out.len() != n {
            return Err(format!(
                "out has {} values, expected ny * nx = {n}",
                out.len()
            ));
        }
        if ws.field.len() != n || ws.spectrum.len() != n || ws.scratch.len() < self.scratch_len {
            return Err(format!(
                "ws was made for a grid of {} points, this model has {n}",
                ws.field.len()
            ));
        }
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
}
