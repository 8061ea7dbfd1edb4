//! Scores of the CORDEX-ML-Bench evaluation of regional-climate downscaling
//! emulators (Doury et al. 2023, 2024), comparing an emulated field with a
//! reference (target) field from the regional climate model.
//!
//! # Data layout
//!
//! * A *field* is a row-major `&[f64]` of shape `[ny, nx]` (`x` fastest).
//! * A *series* is a slice of `times * npoints` values laid out as
//!   `[time][npoints]` (time slowest), where `npoints = ny * nx` and each
//!   time slice is a row-major field.
//!
//! Scores "per point" are computed over time at every grid point and
//! returned as a [`PointwiseScore`] (the map and its unweighted spatial
//! mean). Scores "pooled" treat every value of every time and point as one
//! sample.
//!
//! # Invalid input
//!
//! Every function returns `Err` with a message naming the problem when the
//! input is empty, when lengths do not match the stated shape or each other,
//! or when a value is not finite. Missing values (NaN, for instance a
//! land–sea mask) are therefore not supported: select the valid points
//! before calling.

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

/// Wet-day threshold of the ETCCDI precipitation indices, in mm/day: a day
/// is wet when its amount is at least this, and dry otherwise.
pub const WET_DAY_THRESHOLD: f64 = 1.0;

/// A score computed at every grid point, with its spatial mean.
#[derive(Debug, Clone, PartialEq)]
pub struct PointwiseScore {
    /// The score at each grid point, in the row-major order of the field.
    pub map: Vec<f64>,
    /// Unweighted arithmetic mean of `map` over the grid points.
    pub spatial_mean: f64,
}

impl PointwiseScore {
    fn from_map(map: Vec<f64>) -> Self {
        let spatial_mean = mean(&map);
        Self { map, spatial_mean }
    }
}

// ---------------------------------------------------------------------------
// Validation and per-point helpers
// ---------------------------------------------------------------------------

fn check_finite(context: &str, name: &str, values: &[f64]) -> Result<(), String> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(format!(
            "{context}: {name} has a non-finite value ({}) at index {i}",
            values[i]
        )),
        None => Ok(()),
    }
}

fn check_sample(context: &str, name: &str, values: &[f64]) -> Result<(), String> {
    if values.is_empty() {
        return Err(format!("{context}: {name} is empty"));
    }
    check_finite(context, name, values)
}

fn check_same_len(context: &str, emulated: &[f64], reference: &[f64]) -> Result<(), String> {
    if emulated.len() != reference.len() {
        return Err(format!(
            "{context}: emulated has {} values but reference has {}",
            emulated.len(),
            reference.len()
        ));
    }
    check_sample(context, "emulated", emulated)?;
    check_sample(context, "reference", reference)
}

fn check_series(
    context: &str,
    name: &str,
    series: &[f64],
    times: usize,
    npoints: usize,
) -> Result<(), String> {
    if times == 0 || npoints == 0 {
        return Err(format!(
            "{context}: the number of times ({times}) and of points ({npoints}) must be positive"
        ));
    }
    let expected = times
        .checked_mul(npoints)
        .ok_or_else(|| format!("{context}: times x points ({times} x {npoints}) overflows"))?;
    if series.len() != expected {
        return Err(format!(
            "{context}: {name} has {} values but times x points = {times} x {npoints} = {expected}",
            series.len()
        ));
    }
    check_finite(context, name, series)
}

fn check_threshold(context: &str, threshold: f64) -> Result<(), String> {
    if threshold.is_finite() {
        Ok(())
    } else {
        Err(format!(
            "{context}: the wet-day threshold ({threshold}) must be finite"
        ))
    }
}

/// Copies the time series of grid point `point` into `out` (length `times`).
fn gather(series: &[f64], npoints: usize, point: usize, out: &mut [f64]) {
    for (o, row) in out.iter_mut().zip(series.chunks_exact(npoints)) {
        *o = row[point];
    }
}

/// Applies `f` to the time series of every grid point of one series.
fn map_points(
    context: &str,
    series: &[f64],
    times: usize,
    npoints: usize,
    mut f: impl FnMut(&[f64]) -> f64,
) -> Result<Vec<f64>, String> {
    check_series(context, "series", series, times, npoints)?;
    let mut buffer = vec![0.0; times];
    Ok((0..npoints)
        .map(|p| {
            gather(series, npoints, p, &mut buffer);
            f(&buffer)
        })
        .collect())
}

/// Applies `f` to the time series (emulated, reference) of every grid point.
/// The buffers are passed mutably so that `f` may sort them in place.
fn map_point_pairs(
    context: &str,
    emulated: &[f64],
    reference: &[f64],
    times: usize,
    npoints: usize,
    mut f: impl FnMut(&mut [f64], &mut [f64]) -> f64,
) -> Result<Vec<f64>, String> {
    check_series(context, "emulated", emulated, times, npoints)?;
    check_series(context, "reference", reference, times, npoints)?;
    let mut em = vec![0.0; times];
    let mut re = vec![0.0; times];
    Ok((0..npoints)
        .map(|p| {
            gather(emulated, npoints, p, &mut em);
            gather(reference, npoints, p, &mut re);
            f(&mut em, &mut re)
        })
        .collect())
}

// ---------------------------------------------------------------------------
// Statistical kernels (inputs already validated)
// ---------------------------------------------------------------------------

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Sample standard deviation with the `n - 1` (Bessel) denominator; needs
/// at least two values.
fn sample_std(values: &[f64]) -> f64 {
    let m = mean(values);
    let ss: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
    (ss / (values.len() - 1) as f64).sqrt()
}

fn sort(values: &mut [f64]) {
    values.sort_unstable_by(f64::total_cmp);
}

/// numpy's "linear" quantile of sorted, non-empty values, including its
/// two-sided linear interpolation (`_lerp`).
fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let last = sorted.len() - 1;
    let virtual_index = last as f64 * q;
    let below = virtual_index.floor();
    if below >= last as f64 {
        return sorted[last];
    }
    let i = below as usize;
    let (a, b) = (sorted[i], sorted[i + 1]);
    let t = virtual_index - below;
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// Exact 1-Wasserstein distance between two sorted, non-empty samples:
/// the integral of `|F_a - F_b|` between consecutive distinct values.
fn wasserstein_sorted(a: &[f64], b: &[f64]) -> f64 {
    let (na, nb) = (a.len(), b.len());
    let (mut i, mut j) = (0, 0);
    let mut previous = a[0].min(b[0]);
    let mut total = 0.0;
    while i < na || j < nb {
        let x = match (a.get(i), b.get(j)) {
            (Some(&u), Some(&v)) => u.min(v),
            (Some(&u), None) => u,
            (None, Some(&v)) => v,
            (None, None) => break,
        };
        // |i/na - j/nb|, in exact integer arithmetic before the division;
        // u128 so that the products cannot overflow.
        let (i_nb, j_na) = (i as u128 * nb as u128, j as u128 * na as u128);
        let gap = i_nb.abs_diff(j_na) as f64 / (na as f64 * nb as f64);
        total += gap * (x - previous);
        while i < na && a[i] <= x {
            i += 1;
        }
        while j < nb && b[j] <= x {
            j += 1;
        }
        previous = x;
    }
    total
}

// ---------------------------------------------------------------------------
// RMSE and bias
// ---------------------------------------------------------------------------

/// Root-mean-square error `sqrt(mean((emulated - reference)^2))` over all
/// values (pooled over points and times).
pub fn rmse(emulated: &[f64], reference: &[f64]) -> Result<f64, String> {
    check_same_len("rmse", emulated, reference)?;
    let ss: f64 = emulated
        .iter()
        .zip(reference)
        .map(|(e, r)| (e - r) * (e - r))
        .sum();
    Ok((ss / emulated.len() as f64).sqrt())
}

/// Bias: the mean of `emulated - reference` over all values.
pub fn bias(emulated: &[f64], reference: &[f64]) -> Result<f64, String> {
    check_same_len("bias", emulated, reference)?;
    let sum: f64 = emulated.iter().zip(reference).map(|(e, r)| e - r).sum();
    Ok(sum / emulated.len() as f64)
}

/// RMSE over time at every grid point of two `[time][npoints]` series,
/// with its spatial mean (which is not the pooled [`rmse`]).
pub fn rmse_per_point(
    emulated: &[f64],
    reference: &[f64],
    times: usize,
    npoints: usize,
) -> Result<PointwiseScore, String> {
    let map = map_point_pairs(
        "rmse_per_point",
        emulated,
        reference,
        times,
        npoints,
        |e, r| {
            let ss: f64 = e.iter().zip(r.iter()).map(|(a, b)| (a - b) * (a - b)).sum();
            (ss / e.len() as f64).sqrt()
        },
    )?;
    Ok(PointwiseScore::from_map(map))
}

/// Time-mean bias `emulated - reference` at every grid point of two
/// `[time][npoints]` series; its spatial mean equals the pooled [`bias`].
pub fn bias_per_point(
    emulated: &[f64],
    reference: &[f64],
    times: usize,
    npoints: usize,
) -> Result<PointwiseScore, String> {
    let map = map_point_pairs(
        "bias_per_point",
        emulated,
        reference,
        times,
        npoints,
        |e, r| mean(e) - mean(r),
    )?;
    Ok(PointwiseScore::from_map(map))
}

// ---------------------------------------------------------------------------
// Quantiles
// ---------------------------------------------------------------------------

fn check_probability(context: &str, q: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&q) {
        Ok(())
    } else {
        Err(format!(
            "{context}: the probability q = {q} is not in [0, 1]"
        ))
    }
}

/// The `q`-quantile of `values` by numpy's default "linear" method (type 7
/// of Hyndman and Fan): with the values sorted as `x[0] <= ... <= x[n-1]`
/// and `h = (n - 1) q`, it is `x[floor(h)] + (h - floor(h)) (x[floor(h)+1]
/// - x[floor(h)])`, so `q = 0` gives the minimum and `q = 1` the maximum.
pub fn quantile(values: &[f64], q: f64) -> Result<f64, String> {
    check_probability("quantile", q)?;
    check_sample("quantile", "values", values)?;
    let mut sorted = values.to_vec();
    sort(&mut sorted);
    Ok(quantile_sorted(&sorted, q))
}

/// Pooled quantile bias: the [`quantile`] of all emulated values minus that
/// of all reference values. The two samples may differ in size.
pub fn quantile_bias(emulated: &[f64], reference: &[f64], q: f64) -> Result<f64, String> {
    check_probability("quantile_bias", q)?;
    check_sample("quantile_bias", "emulated", emulated)?;
    check_sample("quantile_bias", "reference", reference)?;
    Ok(quantile(emulated, q)? - quantile(reference, q)?)
}

/// Quantile bias at every grid point: the [`quantile`] over time of the
/// emulated series minus that of the reference series (the benchmark uses
/// `q = 0.98` and `q = 0.99`), with its spatial mean.
pub fn quantile_bias_per_point(
    emulated: &[f64],
    reference: &[f64],
    times: usize,
    npoints: usize,
    q: f64,
) -> Result<PointwiseScore, String> {
    let context = "quantile_bias_per_point";
    check_probability(context, q)?;
    let map = map_point_pairs(context, emulated, reference, times, npoints, |e, r| {
        sort(e);
        sort(r);
        quantile_sorted(e, q) - quantile_sorted(r, q)
    })?;
    Ok(PointwiseScore::from_map(map))
}

// ---------------------------------------------------------------------------
// Standard-deviation ratio
// ---------------------------------------------------------------------------

/// Ratio of the sample standard deviations (denominator `n - 1`)
/// `std(emulated) / std(reference)`; 1 is perfect. The samples may differ
/// in size but each needs at least two values, and the reference must not
/// be constant.
pub fn std_ratio(emulated: &[f64], reference: &[f64]) -> Result<f64, String> {
    let context = "std_ratio";
    check_sample(context, "emulated", emulated)?;
    check_sample(context, "reference", reference)?;
    if emulated.len() < 2 || reference.len() < 2 {
        return Err(format!(
            "{context}: need at least two values in each sample (got {} and {})",
            emulated.len(),
            reference.len()
        ));
    }
    let denominator = sample_std(reference);
    if denominator == 0.0 {
        return Err(format!(
            "{context}: the reference has zero standard deviation"
        ));
    }
    Ok(sample_std(emulated) / denominator)
}

/// [`std_ratio`] over time at every grid point (sample standard deviation,
/// denominator `times - 1`, so `times >= 2`). Where the reference is
/// constant in time the ratio is undefined: the map holds NaN there and the
/// spatial mean is taken over the other points (NaN if there are none).
pub fn std_ratio_per_point(
    emulated: &[f64],
    reference: &[f64],
    times: usize,
    npoints: usize,
) -> Result<PointwiseScore, String> {
    let context = "std_ratio_per_point";
    if times < 2 {
        return Err(format!("{context}: need at least two times (got {times})"));
    }
    let map = map_point_pairs(context, emulated, reference, times, npoints, |e, r| {
        let denominator = sample_std(r);
        if denominator == 0.0 {
            f64::NAN
        } else {
            sample_std(e) / denominator
        }
    })?;
    let defined: Vec<f64> = map.iter().copied().filter(|v| !v.is_nan()).collect();
    let spatial_mean = if defined.is_empty() {
        f64::NAN
    } else {
        mean(&defined)
    };
    Ok(PointwiseScore { map, spatial_mean })
}

// ---------------------------------------------------------------------------
// Wasserstein distance
// ---------------------------------------------------------------------------

/// Exact 1-Wasserstein (earth mover's) distance between the empirical
/// distributions of two samples, possibly of different sizes: the integral
/// over `x` of `|F_a(x) - F_b(x)|`, with `F` the empirical distribution
/// functions, evaluated from the sorted samples. For equal sizes it is the
/// mean absolute difference of the sorted samples.
pub fn wasserstein1(a: &[f64], b: &[f64]) -> Result<f64, String> {
    check_sample("wasserstein1", "first sample", a)?;
    check_sample("wasserstein1", "second sample", b)?;
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    sort(&mut a);
    sort(&mut b);
    Ok(wasserstein_sorted(&a, &b))
}

/// [`wasserstein1`] between the emulated and reference distributions over
/// time at every grid point, with its spatial mean.
pub fn wasserstein1_per_point(
    emulated: &[f64],
    reference: &[f64],
    times: usize,
    npoints: usize,
) -> Result<PointwiseScore, String> {
    let context = "wasserstein1_per_point";
    let map = map_point_pairs(context, emulated, reference, times, npoints, |e, r| {
        sort(e);
        sort(r);
        wasserstein_sorted(e, r)
    })?;
    Ok(PointwiseScore::from_map(map))
}

// ---------------------------------------------------------------------------
// Radial power spectrum
// ---------------------------------------------------------------------------

/// An isotropic (radially binned) power spectrum.
#[derive(Debug, Clone, PartialEq)]
pub struct RadialSpectrum {
    /// Centre of each bin, `k / (min(ny, nx) dx)`, in cycles per unit
    /// length of `dx`; bin `k` is the integer radial wavenumber `k`.
    pub wavenumbers: Vec<f64>,
    /// Power in each bin: the sum of the normalised `|F|^2` of the Fourier
    /// coefficients that fall in it (a sum, not an average over the ring).
    pub power: Vec<f64>,
}

/// Reusable FFT plans, bin indices and buffers for one grid shape.
struct SpectrumPlan {
    nx: usize,
    ny: usize,
    row_fft: Arc<dyn Fft<f64>>,
    column_fft: Arc<dyn Fft<f64>>,
    /// Bin of each coefficient, in the transposed layout `[kx][ky]`.
    bins: Vec<usize>,
    wavenumbers: Vec<f64>,
    rows: Vec<Complex<f64>>,
    columns: Vec<Complex<f64>>,
}

impl SpectrumPlan {
    fn new(ny: usize, nx: usize, dx: f64) -> Self {
        let mut planner = FftPlanner::<f64>::new();
        let smaller = ny.min(nx) as f64;
        let mut bins = Vec::with_capacity(ny * nx);
        for mx in 0..nx {
            // |signed frequency index|, in units of the smaller side's
            // fundamental frequency.
            let kx = mx.min(nx - mx) as f64 * smaller / nx as f64;
            for my in 0..ny {
                let ky = my.min(ny - my) as f64 * smaller / ny as f64;
                bins.push(kx.hypot(ky).round() as usize);
            }
        }
        let nbins = bins.iter().max().map_or(1, |&k| k + 1);
        let wavenumbers = (0..nbins).map(|k| k as f64 / (smaller * dx)).collect();
        Self {
            nx,
            ny,
            row_fft: planner.plan_fft_forward(nx),
            column_fft: planner.plan_fft_forward(ny),
            bins,
            wavenumbers,
            rows: vec![Complex::default(); ny * nx],
            columns: vec![Complex::default(); ny * nx],
        }
    }

    /// Adds the binned, normalised power of `field` to `power`.
    fn accumulate(&mut self, field: &[f64], remove_mean: bool, power: &mut [f64]) {
        let offset = if remove_mean { mean(field) } else { 0.0 };
        for (c, &v) in self.rows.iter_mut().zip(field) {
            *c = Complex::new(v - offset, 0.0);
        }
        self.row_fft.process(&mut self.rows);
        for (my, row) in self.rows.chunks_exact(self.nx).enumerate() {
            for (mx, &c) in row.iter().enumerate() {
                self.columns[mx * self.ny + my] = c;
            }
        }
        self.column_fft.process(&mut self.columns);
        let n = (self.ny * self.nx) as f64;
        let scale = 1.0 / (n * n);
        // With the mean removed the zero-frequency coefficient is zero
        // analytically; skip it rather than keep its rounding error.
        let start = usize::from(remove_mean);
        for (c, &k) in self.columns.iter().zip(&self.bins).skip(start) {
            power[k] += c.norm_sqr() * scale;
        }
    }
}

fn check_grid(context: &str, ny: usize, nx: usize, dx: f64) -> Result<usize, String> {
    if !(dx.is_finite() && dx > 0.0) {
        return Err(format!(
            "{context}: the grid spacing dx = {dx} must be positive and finite"
        ));
    }
    if ny == 0 || nx == 0 {
        return Err(format!("{context}: the grid {ny} x {nx} is empty"));
    }
    ny.checked_mul(nx)
        .ok_or_else(|| format!("{context}: the grid {ny} x {nx} overflows"))
}

/// Radial power spectrum of one row-major `[ny, nx]` field with grid
/// spacing `dx`.
///
/// The 2-D discrete Fourier transform `F` (1-D FFTs along the rows, then
/// along the columns) gives the power `|F|^2 / (ny nx)^2`, normalised so
/// that the power summed over all wavenumbers equals the mean square of
/// the field (Parseval). With `remove_mean` the spatial mean is subtracted
/// first, so bin 0 is zero and the total is the (population) variance.
///
/// Binning: the coefficient with signed frequency indices `(my, mx)`
/// (`|m| <= n/2`) has the physical frequencies `mx / (nx dx)` and
/// `my / (ny dx)`. Expressed in units of the fundamental frequency of the
/// smaller side, `1 / (min(ny, nx) dx)`, these are `kx = mx min(ny, nx) / nx`
/// and `ky = my min(ny, nx) / ny`, and the coefficient goes into bin
/// `k = round(sqrt(kx^2 + ky^2))` (rounding halves away from zero). All
/// bins are kept, up to the corner of the spectrum, so Parseval holds over
/// the bins; those above `min(ny, nx) / 2` are only partly filled.
pub fn radial_power_spectrum(
    field: &[f64],
    ny: usize,
    nx: usize,
    dx: f64,
    remove_mean: bool,
) -> Result<RadialSpectrum, String> {
    let context = "radial_power_spectrum";
    let npoints = check_grid(context, ny, nx, dx)?;
    check_series(context, "field", field, 1, npoints)?;
    let mut plan = SpectrumPlan::new(ny, nx, dx);
    let mut power = vec![0.0; plan.wavenumbers.len()];
    plan.accumulate(field, remove_mean, &mut power);
    Ok(RadialSpectrum {
        wavenumbers: plan.wavenumbers,
        power,
    })
}

/// The [`radial_power_spectrum`] of every field of a `[time][ny * nx]`
/// series, averaged over time.
pub fn mean_radial_power_spectrum(
    series: &[f64],
    times: usize,
    ny: usize,
    nx: usize,
    dx: f64,
    remove_mean: bool,
) -> Result<RadialSpectrum, String> {
    let context = "mean_radial_power_spectrum";
    let npoints = check_grid(context, ny, nx, dx)?;
    check_series(context, "series", series, times, npoints)?;
    let mut plan = SpectrumPlan::new(ny, nx, dx);
    let mut power = vec![0.0; plan.wavenumbers.len()];
    for field in series.chunks_exact(npoints) {
        plan.accumulate(field, remove_mean, &mut power);
    }
    for p in &mut power {
        *p /= times as f64;
    }
    Ok(RadialSpectrum {
        wavenumbers: plan.wavenumbers,
        power,
    })
}

/// Log spectral distance in decibels between two spectra on the same bins:
/// `sqrt(mean over bins of (10 log10(p_em / p_ref))^2)`. Bins where either
/// power is zero are skipped (the logarithm is undefined there); it is an
/// error if no bin is left, or if a power is negative.
pub fn log_spectral_distance(p_em: &[f64], p_ref: &[f64]) -> Result<f64, String> {
    let context = "log_spectral_distance";
    check_same_len(context, p_em, p_ref)?;
    if let Some(i) = p_em.iter().chain(p_ref).position(|&p| p < 0.0) {
        return Err(format!("{context}: negative power at position {i}"));
    }
    let (sum, count) = p_em
        .iter()
        .zip(p_ref)
        .filter(|&(&e, &r)| e > 0.0 && r > 0.0)
        .fold((0.0, 0_usize), |(sum, count), (e, r)| {
            let db = 10.0 * (e / r).log10();
            (sum + db * db, count + 1)
        });
    if count == 0 {
        return Err(format!(
            "{context}: no bin has positive power in both spectra"
        ));
    }
    Ok((sum / count as f64).sqrt())
}

// ---------------------------------------------------------------------------
// Precipitation indices
// ---------------------------------------------------------------------------

/// Length of the longest run of consecutive days satisfying `pred`.
fn longest_run(days: &[f64], pred: impl Fn(f64) -> bool) -> f64 {
    let (mut longest, mut current) = (0_usize, 0_usize);
    for &d in days {
        current = if pred(d) { current + 1 } else { 0 };
        longest = longest.max(current);
    }
    longest as f64
}

/// Rx1day: the maximum daily amount over time at every grid point of a
/// `[time][npoints]` daily series (mm/day).
pub fn rx1day(series: &[f64], times: usize, npoints: usize) -> Result<Vec<f64>, String> {
    map_points("rx1day", series, times, npoints, |days| {
        days.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    })
}

/// SDII (simple daily intensity index): the total amount on wet days
/// (amount `>= threshold`) divided by the number of wet days, at every grid
/// point. Defined as 0 where there is no wet day, so it is never NaN.
pub fn sdii(
    series: &[f64],
    times: usize,
    npoints: usize,
    threshold: f64,
) -> Result<Vec<f64>, String> {
    check_threshold("sdii", threshold)?;
    map_points("sdii", series, times, npoints, |days| {
        let (total, wet) = days
            .iter()
            .filter(|&&d| d >= threshold)
            .fold((0.0, 0_usize), |(t, n), &d| (t + d, n + 1));
        if wet == 0 { 0.0 } else { total / wet as f64 }
    })
}

/// CDD: the maximum number of consecutive dry days (amount `< threshold`)
/// at every grid point, in days.
pub fn cdd(
    series: &[f64],
    times: usize,
    npoints: usize,
    threshold: f64,
) -> Result<Vec<f64>, String> {
    check_threshold("cdd", threshold)?;
    map_points("cdd", series, times, npoints, |days| {
        longest_run(days, |d| d < threshold)
    })
}

/// CWD: the maximum number of consecutive wet days (amount `>= threshold`)
/// at every grid point, in days.
pub fn cwd(
    series: &[f64],
    times: usize,
    npoints: usize,
    threshold: f64,
) -> Result<Vec<f64>, String> {
    check_threshold("cwd", threshold)?;
    map_points("cwd", series, times, npoints, |days| {
        longest_run(days, |d| d >= threshold)
    })
}

/// Dry-day frequency: the fraction of days with amount `< threshold` at
/// every grid point.
pub fn dry_day_frequency(
    series: &[f64],
    times: usize,
    npoints: usize,
    threshold: f64,
) -> Result<Vec<f64>, String> {
    check_threshold("dry_day_frequency", threshold)?;
    map_points("dry_day_frequency", series, times, npoints, |days| {
        days.iter().filter(|&&d| d < threshold).count() as f64 / days.len() as f64
    })
}

/// The precipitation indices, for [`compare_index`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrecipitationIndex {
    /// [`rx1day`] (ignores the threshold).
    Rx1day,
    /// [`sdii`].
    Sdii,
    /// [`cdd`].
    Cdd,
    /// [`cwd`].
    Cwd,
    /// [`dry_day_frequency`].
    DryDayFrequency,
}

impl PrecipitationIndex {
    /// Computes this index at every grid point of a `[time][npoints]` daily
    /// series, with the wet-day `threshold` in the units of the series.
    pub fn compute(
        self,
        series: &[f64],
        times: usize,
        npoints: usize,
        threshold: f64,
    ) -> Result<Vec<f64>, String> {
        match self {
            Self::Rx1day => rx1day(series, times, npoints),
            Self::Sdii => sdii(series, times, npoints, threshold),
            Self::Cdd => cdd(series, times, npoints, threshold),
            Self::Cwd => cwd(series, times, npoints, threshold),
            Self::DryDayFrequency => dry_day_frequency(series, times, npoints, threshold),
        }
    }
}

/// A precipitation index of the emulated and the reference series.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexComparison {
    /// The index of the emulated series at every grid point.
    pub emulated: Vec<f64>,
    /// The index of the reference series at every grid point.
    pub reference: Vec<f64>,
    /// Bias: spatial mean of `emulated` minus spatial mean of `reference`
    /// (equal to the spatial mean of the per-point differences).
    pub bias: f64,
}

/// Computes `index` for the emulated and reference daily series (each
/// `[time][npoints]`) and the bias of its spatial mean.
pub fn compare_index(
    index: PrecipitationIndex,
    emulated: &[f64],
    reference: &[f64],
    times: usize,
    npoints: usize,
    threshold: f64,
) -> Result<IndexComparison, String> {
    let em = index.compute(emulated, times, npoints, threshold)?;
    let re = index.compute(reference, times, npoints, threshold)?;
    let bias = mean(&em) - mean(&re);
    Ok(IndexComparison {
        emulated: em,
        reference: re,
        bias,
    })
}

// ---------------------------------------------------------------------------
// All scores
// ---------------------------------------------------------------------------

/// The precipitation indices of [`scores`].
#[derive(Debug, Clone, PartialEq)]
pub struct PrecipitationScores {
    /// The wet-day threshold used, in mm/day.
    pub threshold: f64,
    /// Maximum daily amount.
    pub rx1day: IndexComparison,
    /// Simple daily intensity index.
    pub sdii: IndexComparison,
    /// Maximum consecutive dry days.
    pub cdd: IndexComparison,
    /// Maximum consecutive wet days.
    pub cwd: IndexComparison,
    /// Fraction of dry days.
    pub dry_day_frequency: IndexComparison,
}

/// All the scores of the CORDEX-ML-Bench comparison of an emulated series
/// with a reference series; see [`scores`].
#[derive(Debug, Clone, PartialEq)]
pub struct DownscalingScores {
    /// Pooled [`rmse`].
    pub rmse: f64,
    /// Pooled [`bias`].
    pub bias: f64,
    /// [`rmse_per_point`].
    pub rmse_per_point: PointwiseScore,
    /// [`bias_per_point`].
    pub bias_per_point: PointwiseScore,
    /// [`quantile_bias_per_point`] at `q = 0.98`.
    pub p98_bias: PointwiseScore,
    /// [`quantile_bias_per_point`] at `q = 0.99`.
    pub p99_bias: PointwiseScore,
    /// Pooled [`quantile_bias`] at `q = 0.98`.
    pub p98_bias_pooled: f64,
    /// Pooled [`quantile_bias`] at `q = 0.99`.
    pub p99_bias_pooled: f64,
    /// [`std_ratio_per_point`].
    pub std_ratio: PointwiseScore,
    /// [`wasserstein1_per_point`].
    pub wasserstein1: PointwiseScore,
    /// Pooled [`wasserstein1`].
    pub wasserstein1_pooled: f64,
    /// Time-mean radial spectrum of the emulated series (mean removed).
    pub spectrum_emulated: RadialSpectrum,
    /// Time-mean radial spectrum of the reference series (mean removed).
    pub spectrum_reference: RadialSpectrum,
    /// [`log_spectral_distance`] of the two time-mean spectra, in dB; NaN
    /// when no bin has positive power in both.
    pub log_spectral_distance: f64,
    /// Precipitation indices with the ETCCDI threshold
    /// [`WET_DAY_THRESHOLD`], when requested.
    pub precipitation: Option<PrecipitationScores>,
}

impl DownscalingScores {
    /// The scalar scores as table rows: (name, value, units or meaning).
    pub fn rows(&self) -> Vec<(&'static str, f64, &'static str)> {
        let mut rows = vec![
            ("RMSE", self.rmse, "pooled over points and times"),
            ("Bias", self.bias, "mean of emulated - reference"),
            (
                "RMSE per point",
                self.rmse_per_point.spatial_mean,
                "RMSE over time, spatial mean",
            ),
            (
                "P98 bias",
                self.p98_bias.spatial_mean,
                "98th percentile over time, em - ref, spatial mean",
            ),
            (
                "P99 bias",
                self.p99_bias.spatial_mean,
                "99th percentile over time, em - ref, spatial mean",
            ),
            (
                "P98 bias pooled",
                self.p98_bias_pooled,
                "98th percentile of all values, em - ref",
            ),
            (
                "P99 bias pooled",
                self.p99_bias_pooled,
                "99th percentile of all values, em - ref",
            ),
            (
                "Std ratio",
                self.std_ratio.spatial_mean,
                "std em / std ref over time (n-1), spatial mean; 1 is perfect",
            ),
            (
                "Wasserstein-1",
                self.wasserstein1.spatial_mean,
                "over time, spatial mean",
            ),
            (
                "Wasserstein-1 pooled",
                self.wasserstein1_pooled,
                "all values",
            ),
            (
                "LSD",
                self.log_spectral_distance,
                "dB, time-mean radial spectra, mean removed",
            ),
        ];
        if let Some(p) = &self.precipitation {
            rows.extend([
                (
                    "Rx1day bias",
                    p.rx1day.bias,
                    "mm/day, spatial mean em - ref",
                ),
                ("SDII bias", p.sdii.bias, "mm/day, spatial mean em - ref"),
                ("CDD bias", p.cdd.bias, "days, spatial mean em - ref"),
                ("CWD bias", p.cwd.bias, "days, spatial mean em - ref"),
                (
                    "Dry-day frequency bias",
                    p.dry_day_frequency.bias,
                    "fraction of days, em - ref",
                ),
            ]);
        }
        rows
    }
}

/// Computes every score between `emulated` and `reference`, each a
/// `[time][ny * nx]` series with grid spacing `dx`; with `precipitation`
/// the series are daily amounts in mm/day and the precipitation indices
/// are added with the threshold [`WET_DAY_THRESHOLD`]. Needs `times >= 2`
/// (for the standard-deviation ratio).
pub fn scores(
    emulated: &[f64],
    reference: &[f64],
    times: usize,
    ny: usize,
    nx: usize,
    dx: f64,
    precipitation: bool,
) -> Result<DownscalingScores, String> {
    let npoints = check_grid("scores", ny, nx, dx)?;
    check_series("scores", "emulated", emulated, times, npoints)?;
    check_series("scores", "reference", reference, times, npoints)?;
    let (em, re) = (emulated, reference);
    // Pooled distributional scores share one sort of each sample.
    let mut em_sorted = em.to_vec();
    let mut re_sorted = re.to_vec();
    sort(&mut em_sorted);
    sort(&mut re_sorted);
    let pooled_quantile_bias = |q| quantile_sorted(&em_sorted, q) - quantile_sorted(&re_sorted, q);
    let spectrum_emulated = mean_radial_power_spectrum(em, times, ny, nx, dx, true)?;
    let spectrum_reference = mean_radial_power_spectrum(re, times, ny, nx, dx, true)?;
    // Inputs are valid here, so the only possible error is "no common bin".
    let log_spectral_distance =
        log_spectral_distance(&spectrum_emulated.power, &spectrum_reference.power)
            .unwrap_or(f64::NAN);
    let precipitation = if precipitation {
        let threshold = WET_DAY_THRESHOLD;
        let compare = |index| compare_index(index, em, re, times, npoints, threshold);
        Some(PrecipitationScores {
            threshold,
            rx1day: compare(PrecipitationIndex::Rx1day)?,
            sdii: compare(PrecipitationIndex::Sdii)?,
            cdd: compare(PrecipitationIndex::Cdd)?,
            cwd: compare(PrecipitationIndex::Cwd)?,
            dry_day_frequency: compare(PrecipitationIndex::DryDayFrequency)?,
        })
    } else {
        None
    };
    Ok(DownscalingScores {
        rmse: rmse(em, re)?,
        bias: bias(em, re)?,
        rmse_per_point: rmse_per_point(em, re, times, npoints)?,
        bias_per_point: bias_per_point(em, re, times, npoints)?,
        p98_bias: quantile_bias_per_point(em, re, times, npoints, 0.98)?,
        p99_bias: quantile_bias_per_point(em, re, times, npoints, 0.99)?,
        p98_bias_pooled: pooled_quantile_bias(0.98),
        p99_bias_pooled: pooled_quantile_bias(0.99),
        std_ratio: std_ratio_per_point(em, re, times, npoints)?,
        wasserstein1: wasserstein1_per_point(em, re, times, npoints)?,
        wasserstein1_pooled: wasserstein_sorted(&em_sorted, &re_sorted),
        spectrum_emulated,
        spectrum_reference,
        log_spectral_distance,
        precipitation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    const TOL: f64 = 1e-12;

    fn close(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() <= TOL * expected.abs().max(1.0),
            "got {actual}, expected {expected}"
        );
    }

    fn all_close(actual: &[f64], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len());
        for (&a, &e) in actual.iter().zip(expected) {
            close(a, e);
        }
    }

    /// Reference series on a 2x2 grid (4 points), 3 times, `[time][point]`.
    /// Point time series: p0 [1,2,3], p1 [2,4,6], p2 [3,6,9], p3 [4,8,12].
    const REFERENCE: [f64; 12] = [1., 2., 3., 4., 2., 4., 6., 8., 3., 6., 9., 12.];
    /// Emulated series. Point time series: p0 [2,2,5], p1 [2,5,6],
    /// p2 [1,6,9], p3 [4,8,6].
    const EMULATED: [f64; 12] = [2., 2., 1., 4., 2., 5., 6., 8., 5., 6., 9., 6.];
    // Differences em - ref, [time][point]:
    //   t0 [1, 0, -2, 0], t1 [0, 1, 0, 0], t2 [2, 0, 0, -6].

    #[test]
    fn rmse_and_bias_pooled() {
        // Squares 1 + 4 + 1 + 4 + 36 = 46 over 12 values.
        close(
            rmse(&EMULATED, &REFERENCE).unwrap(),
            (46.0_f64 / 12.0).sqrt(),
        );
        // Sum 1 - 2 + 1 + 2 - 6 = -4 over 12 values.
        close(bias(&EMULATED, &REFERENCE).unwrap(), -1.0 / 3.0);
    }

    #[test]
    fn rmse_and_bias_per_point() {
        let r = rmse_per_point(&EMULATED, &REFERENCE, 3, 4).unwrap();
        // p0 sqrt((1+0+4)/3), p1 sqrt(1/3), p2 sqrt(4/3), p3 sqrt(36/3).
        let expected = [5.0_f64 / 3.0, 1.0 / 3.0, 4.0 / 3.0, 12.0].map(f64::sqrt);
        all_close(&r.map, &expected);
        close(r.spatial_mean, expected.iter().sum::<f64>() / 4.0);
        let b = bias_per_point(&EMULATED, &REFERENCE, 3, 4).unwrap();
        // p0 3/3, p1 1/3, p2 -2/3, p3 -6/3; mean -1/3 = pooled bias.
        all_close(&b.map, &[1.0, 1.0 / 3.0, -2.0 / 3.0, -2.0]);
        close(b.spatial_mean, -1.0 / 3.0);
    }

    #[test]
    fn quantile_matches_numpy_linear() {
        // numpy.quantile docs: np.quantile([[10, 7, 4], [3, 2, 1]], 0.5) == 3.5.
        close(quantile(&[10., 7., 4., 3., 2., 1.], 0.5).unwrap(), 3.5);
        // np.quantile(np.arange(8), [0.25, 0.5, 0.75]) == [1.75, 3.5, 5.25].
        let a: Vec<f64> = (0..8).map(f64::from).collect();
        close(quantile(&a, 0.25).unwrap(), 1.75);
        close(quantile(&a, 0.5).unwrap(), 3.5);
        close(quantile(&a, 0.75).unwrap(), 5.25);
        // np.quantile([20, 2, 7, 1, 34], q) == 7, 2, 20, 1.4 for q = 0.5, 0.25,
        // 0.75, 0.1 (sorted [1, 2, 7, 20, 34]; q = 0.1: h = 0.4, 1 + 0.4 * 1).
        let b = [20., 2., 7., 1., 34.];
        close(quantile(&b, 0.5).unwrap(), 7.0);
        close(quantile(&b, 0.25).unwrap(), 2.0);
        close(quantile(&b, 0.75).unwrap(), 20.0);
        close(quantile(&b, 0.1).unwrap(), 1.4);
        // 1..=10, q = 0.98: h = 9 * 0.98 = 8.82, x[8] + 0.82 (x[9] - x[8]) = 9.82.
        let c: Vec<f64> = (1..=10).map(f64::from).collect();
        close(quantile(&c, 0.98).unwrap(), 9.82);
        close(quantile(&c, 0.0).unwrap(), 1.0);
        close(quantile(&c, 1.0).unwrap(), 10.0);
        close(quantile(&[4.0], 0.3).unwrap(), 4.0);
    }

    #[test]
    fn quantile_bias_per_point_and_pooled() {
        // Three times: h = 2q; q = 0.98 gives x[1] + 0.96 (x[2] - x[1]).
        //   p0: em [2,2,5] -> 4.88, ref [1,2,3] -> 2.96, bias 1.92
        //   p1: em [2,5,6] -> 5.96, ref [2,4,6] -> 5.92, bias 0.04
        //   p2: em [1,6,9] -> 8.88, ref [3,6,9] -> 8.88, bias 0
        //   p3: em [4,6,8] -> 7.92, ref [4,8,12] -> 11.84, bias -3.92
        // Spatial mean -1.96 / 4 = -0.49.
        let p98 = quantile_bias_per_point(&EMULATED, &REFERENCE, 3, 4, 0.98).unwrap();
        all_close(&p98.map, &[1.92, 0.04, 0.0, -3.92]);
        close(p98.spatial_mean, -0.49);
        // q = 0.99: fraction 0.98; biases 1.96, 0.02, 0, -3.96; mean -0.495.
        let p99 = quantile_bias_per_point(&EMULATED, &REFERENCE, 3, 4, 0.99).unwrap();
        all_close(&p99.map, &[1.96, 0.02, 0.0, -3.96]);
        close(p99.spatial_mean, -0.495);
        // Pooled, 12 values, h = 11 * 0.98 = 10.78:
        //   em sorted [1,2,2,2,4,5,5,6,6,6,8,9] -> 8 + 0.78 * 1 = 8.78
        //   ref sorted [1,2,2,3,3,4,4,6,6,8,9,12] -> 9 + 0.78 * 3 = 11.34
        close(quantile_bias(&EMULATED, &REFERENCE, 0.98).unwrap(), -2.56);
    }

    #[test]
    fn std_ratio_per_point_by_hand() {
        // Sample std (n - 1) of ref points: 1, 2, 3, 4.
        // em p0 [2,2,5]: mean 3, ss 6, var 3 -> sqrt(3)
        // em p1 [2,5,6]: mean 13/3, ss 26/3, var 13/3 -> sqrt(13/3)
        // em p2 [1,6,9]: mean 16/3, ss 98/3, var 49/3 -> 7/sqrt(3)
        // em p3 [4,8,6]: mean 6, ss 8, var 4 -> 2
        let s = std_ratio_per_point(&EMULATED, &REFERENCE, 3, 4).unwrap();
        let expected = [
            3.0_f64.sqrt(),
            (13.0_f64 / 3.0).sqrt() / 2.0,
            7.0 / (3.0 * 3.0_f64.sqrt()),
            0.5,
        ];
        all_close(&s.map, &expected);
        close(s.spatial_mean, expected.iter().sum::<f64>() / 4.0);
    }

    #[test]
    fn std_ratio_pooled_and_constant_reference() {
        // std([1,2,3]) = 1; ref [2,4,6,8]: mean 5, ss 20, var 20/3.
        close(
            std_ratio(&[1., 2., 3.], &[2., 4., 6., 8.]).unwrap(),
            (3.0_f64 / 20.0).sqrt(),
        );
        assert!(
            std_ratio(&[1., 2.], &[3., 3.])
                .unwrap_err()
                .contains("zero")
        );
        // Point 0: em [2,4], ref [1,3] -> 1; point 1: ref [5,5] constant -> NaN.
        let s = std_ratio_per_point(&[2., 0., 4., 2.], &[1., 5., 3., 5.], 2, 2).unwrap();
        close(s.map[0], 1.0);
        assert!(s.map[1].is_nan());
        close(s.spatial_mean, 1.0);
    }

    #[test]
    fn wasserstein_by_hand() {
        let a = [3.0, -1.0, 0.5, 7.0];
        close(wasserstein1(&a, &a).unwrap(), 0.0);
        let shifted = a.map(|v| v + 2.5);
        close(wasserstein1(&a, &shifted).unwrap(), 2.5);
        close(wasserstein1(&shifted, &a).unwrap(), 2.5);
        // [0, 2] vs [1]: |1/2 - 0| on [0, 1) + |1/2 - 1| on [1, 2) = 1.
        close(wasserstein1(&[0., 2.], &[1.]).unwrap(), 1.0);
        // [0, 1, 3] vs [1, 2]: 1/3 on [0,1) + |2/3 - 1/2| on [1,2)
        // + |2/3 - 1| on [2,3) = 1/3 + 1/6 + 1/3 = 5/6.
        close(wasserstein1(&[0., 1., 3.], &[1., 2.]).unwrap(), 5.0 / 6.0);
        close(wasserstein1(&[1., 2.], &[3., 1., 0.]).unwrap(), 5.0 / 6.0);
    }

    #[test]
    fn wasserstein_per_point_and_pooled() {
        // Equal sizes: mean |sorted em - sorted ref|.
        //   p0 [2,2,5] vs [1,2,3]: (1+0+2)/3 = 1;  p1 [2,5,6] vs [2,4,6]: 1/3
        //   p2 [1,6,9] vs [3,6,9]: 2/3;  p3 [4,6,8] vs [4,8,12]: 6/3 = 2
        let w = wasserstein1_per_point(&EMULATED, &REFERENCE, 3, 4).unwrap();
        all_close(&w.map, &[1.0, 1.0 / 3.0, 2.0 / 3.0, 2.0]);
        close(w.spatial_mean, 1.0);
        // Pooled: |differences| of the sorted samples (see quantile test)
        // 0,0,0,1,1,1,1,0,0,2,1,3 sum to 10, over 12 values.
        close(wasserstein1(&EMULATED, &REFERENCE).unwrap(), 10.0 / 12.0);
    }

    #[test]
    fn spectrum_of_2x2_field_by_hand() {
        // f = [[1, 2], [3, 4]]. DFT: F(0,0) = 10, F(kx=1) = (1-2)+(3-4) = -2,
        // F(ky=1) = (1+2)-(3+4) = -4, F(1,1) = 1-2-3+4 = 0; divided by 4^2:
        // 6.25, 0.25, 1, 0. Smaller side 2: (0,1), (1,0) and (1,1)
        // (sqrt 2 -> 1) go to bin 1. Mean square (1+4+9+16)/4 = 7.5.
        let s = radial_power_spectrum(&[1., 2., 3., 4.], 2, 2, 1.0, false).unwrap();
        all_close(&s.wavenumbers, &[0.0, 0.5]);
        all_close(&s.power, &[6.25, 1.25]);
        // Mean removed: bin 0 vanishes, bin 1 = variance 1.25.
        let s = radial_power_spectrum(&[1., 2., 3., 4.], 2, 2, 1.0, true).unwrap();
        all_close(&s.power, &[0.0, 1.25]);
        // Time mean of [1, 2, 3, 4] and zeros: half of the above.
        let series = [1., 2., 3., 4., 0., 0., 0., 0.];
        let m = mean_radial_power_spectrum(&series, 2, 2, 2, 1.0, false).unwrap();
        all_close(&m.power, &[3.125, 0.625]);
    }

    #[test]
    fn spectrum_satisfies_parseval() {
        let (ny, nx) = (5, 6);
        let field: Vec<f64> = (0..ny * nx)
            .map(|i| ((i * 7 + 3) % 11) as f64 - 2.5 + 0.1 * i as f64)
            .collect();
        let mean_square = field.iter().map(|v| v * v).sum::<f64>() / field.len() as f64;
        let s = radial_power_spectrum(&field, ny, nx, 3.0, false).unwrap();
        close(s.power.iter().sum(), mean_square);
        let m = mean(&field);
        let variance = field.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / field.len() as f64;
        let s = radial_power_spectrum(&field, ny, nx, 3.0, true).unwrap();
        close(s.power.iter().sum(), variance);
        assert_eq!(s.power[0], 0.0);
    }

    fn cosine_field(ny: usize, nx: usize, my: f64, mx: f64) -> Vec<f64> {
        (0..ny)
            .flat_map(|y| {
                (0..nx).map(move |x| {
                    (2.0 * PI * (mx * x as f64 / nx as f64 + my * y as f64 / ny as f64)).cos()
                })
            })
            .collect()
    }

    fn assert_single_bin(s: &RadialSpectrum, bin: usize, power: f64) {
        for (k, &p) in s.power.iter().enumerate() {
            if k == bin {
                close(p, power);
            } else {
                assert!(p.abs() < 1e-20, "bin {k} has power {p}");
            }
        }
    }

    #[test]
    fn spectrum_of_cosine_is_in_its_bin() {
        // cos(2 pi 3 x / 8): coefficients at mx = +-3, each (64/2)^2 / 64^2
        // = 1/4, so bin 3 holds 1/2, the mean square of the cosine.
        let s = radial_power_spectrum(&cosine_field(8, 8, 0.0, 3.0), 8, 8, 1.0, false).unwrap();
        assert_single_bin(&s, 3, 0.5);
        close(s.wavenumbers[3], 3.0 / 8.0);
        // Along y, and diagonal (3, 4) -> radius 5.
        let s = radial_power_spectrum(&cosine_field(8, 8, 2.0, 0.0), 8, 8, 1.0, true).unwrap();
        assert_single_bin(&s, 2, 0.5);
        let s = radial_power_spectrum(&cosine_field(8, 8, 4.0, 3.0), 8, 8, 1.0, true).unwrap();
        assert_single_bin(&s, 5, 0.5);
        // 4 x 8 grid, dx = 2: mx = 2 has frequency 2 / (8 * 2) = 1/8, which
        // is 1 in units of the smaller side's fundamental 1 / (4 * 2).
        let s = radial_power_spectrum(&cosine_field(4, 8, 0.0, 2.0), 4, 8, 2.0, true).unwrap();
        assert_single_bin(&s, 1, 0.5);
        close(s.wavenumbers[1], 0.125);
    }

    #[test]
    fn log_spectral_distance_by_hand() {
        // Ratios 1, 10, 10 -> 0, 10, 10 dB; last bin skipped (zero power).
        let d = log_spectral_distance(&[1., 10., 100., 0.], &[1., 1., 10., 5.]).unwrap();
        close(d, (200.0_f64 / 3.0).sqrt());
        close(log_spectral_distance(&[2., 3.], &[2., 3.]).unwrap(), 0.0);
        assert!(log_spectral_distance(&[0., 1.], &[1., 0.]).is_err());
        assert!(
            log_spectral_distance(&[-1., 1.], &[1., 1.])
                .unwrap_err()
                .contains("negative")
        );
    }

    /// Builds a `[time][point]` series from per-point time series.
    fn interleave(points: &[&[f64]]) -> Vec<f64> {
        (0..points[0].len())
            .flat_map(|t| points.iter().map(move |p| p[t]))
            .collect()
    }

    // Point A: dry run of 3 at the start, wet run of 3 at the end (1.0 is wet).
    const A: [f64; 8] = [0.0, 0.5, 0.2, 3.0, 0.0, 4.0, 1.0, 2.0];
    // Point B: wet run of 2 at the start, dry run of 4 at the end.
    const B: [f64; 8] = [5.0, 2.0, 0.0, 1.5, 0.9, 0.0, 0.3, 0.99];

    #[test]
    fn precipitation_indices_by_hand() {
        let series = interleave(&[&A, &B]);
        let t = WET_DAY_THRESHOLD;
        all_close(&rx1day(&series, 8, 2).unwrap(), &[4.0, 5.0]);
        // A: wet 3 + 4 + 1 + 2 = 10 over 4 days; B: 5 + 2 + 1.5 = 8.5 over 3.
        all_close(&sdii(&series, 8, 2, t).unwrap(), &[2.5, 8.5 / 3.0]);
        all_close(&cdd(&series, 8, 2, t).unwrap(), &[3.0, 4.0]);
        all_close(&cwd(&series, 8, 2, t).unwrap(), &[3.0, 2.0]);
        // A: 4 dry days of 8; B: 5 of 8.
        all_close(&dry_day_frequency(&series, 8, 2, t).unwrap(), &[0.5, 0.625]);
        // All dry: SDII 0 (no wet day), CWD 0, CDD the whole series.
        let dry = [0.0, 0.3, 0.0];
        assert_eq!(sdii(&dry, 3, 1, t).unwrap(), vec![0.0]);
        assert_eq!(cwd(&dry, 3, 1, t).unwrap(), vec![0.0]);
        assert_eq!(cdd(&dry, 3, 1, t).unwrap(), vec![3.0]);
    }

    #[test]
    fn precipitation_index_biases() {
        let reference = interleave(&[&A, &B]);
        // Adding 1 mm/day makes every day wet.
        let emulated: Vec<f64> = reference.iter().map(|v| v + 1.0).collect();
        let bias = |index| {
            compare_index(index, &emulated, &reference, 8, 2, WET_DAY_THRESHOLD)
                .unwrap()
                .bias
        };
        // em [5, 6] vs ref [4, 5].
        close(bias(PrecipitationIndex::Rx1day), 1.0);
        // em [0, 0] vs ref [3, 4]: 0 - 3.5.
        close(bias(PrecipitationIndex::Cdd), -3.5);
        // em [8, 8] vs ref [3, 2]: 8 - 2.5.
        close(bias(PrecipitationIndex::Cwd), 5.5);
        // em [0, 0] vs ref [0.5, 0.625]: -0.5625.
        close(bias(PrecipitationIndex::DryDayFrequency), -0.5625);
        // em: all days wet, totals 10.7 + 8 and 10.69 + 8 over 8 days;
        // ref [2.5, 8.5 / 3].
        let expected = (18.7 + 18.69) / 16.0 - (2.5 + 8.5 / 3.0) / 2.0;
        close(bias(PrecipitationIndex::Sdii), expected);
    }

    #[test]
    fn all_scores_on_the_small_grid() {
        let s = scores(&EMULATED, &REFERENCE, 3, 2, 2, 1.0, false).unwrap();
        close(s.rmse, (46.0_f64 / 12.0).sqrt());
        close(s.bias, -1.0 / 3.0);
        close(s.p98_bias.spatial_mean, -0.49);
        close(s.p98_bias_pooled, -2.56);
        close(s.wasserstein1.spatial_mean, 1.0);
        close(s.wasserstein1_pooled, 10.0 / 12.0);
        // On a 2x2 grid with the mean removed, bin 1 holds the variance:
        // ref 1.25, 5, 11.25 (mean 17.5 / 3); em 1.1875, 4.6875, 2.25
        // (mean 8.125 / 3). LSD = |10 log10(8.125 / 17.5)|.
        all_close(&s.spectrum_reference.power, &[0.0, 17.5 / 3.0]);
        all_close(&s.spectrum_emulated.power, &[0.0, 8.125 / 3.0]);
        close(s.log_spectral_distance, 10.0 * (17.5_f64 / 8.125).log10());
        assert!(s.precipitation.is_none());
        assert_eq!(s.rows().len(), 11);
        assert!(
            s.rows()
                .iter()
                .any(|&(name, v, _)| name == "RMSE" && v == s.rmse)
        );

        let s = scores(&EMULATED, &REFERENCE, 3, 2, 2, 1.0, true).unwrap();
        let p = s.precipitation.as_ref().unwrap();
        // Rx1day em [5, 6, 9, 8] (mean 7) vs ref [3, 6, 9, 12] (mean 7.5).
        close(p.rx1day.bias, -0.5);
        // Every day is wet (>= 1) in both.
        close(p.cdd.bias, 0.0);
        close(p.cwd.bias, 0.0);
        close(p.dry_day_frequency.bias, 0.0);
        assert_eq!(s.rows().len(), 16);
    }

    #[test]
    fn invalid_input_is_an_error() {
        let e = rmse(&[1., 2.], &[1.]).unwrap_err();
        assert!(
            e.contains("rmse") && e.contains("2 values") && e.contains("1"),
            "{e}"
        );
        assert!(bias(&[], &[]).unwrap_err().contains("empty"));
        assert!(rmse_per_point(&EMULATED, &REFERENCE[..8], 3, 4).is_err());
        assert!(bias_per_point(&EMULATED, &REFERENCE, 4, 4).is_err());
        assert!(bias_per_point(&EMULATED, &REFERENCE, 0, 4).is_err());
        assert!(quantile(&[], 0.5).unwrap_err().contains("empty"));
        assert!(quantile(&[1.], 1.5).unwrap_err().contains("[0, 1]"));
        assert!(
            quantile(&[1., f64::NAN], 0.5)
                .unwrap_err()
                .contains("non-finite")
        );
        assert!(quantile_bias_per_point(&EMULATED, &REFERENCE[1..], 3, 4, 0.98).is_err());
        assert!(std_ratio(&[1.], &[1., 2.]).is_err());
        assert!(std_ratio_per_point(&EMULATED, &REFERENCE, 1, 12).is_err());
        assert!(wasserstein1(&[], &[1.]).is_err());
        assert!(wasserstein1_per_point(&EMULATED, &REFERENCE, 3, 3).is_err());
        assert!(radial_power_spectrum(&[1., 2., 3.], 2, 2, 1.0, false).is_err());
        assert!(radial_power_spectrum(&[1., 2., 3., 4.], 2, 2, 0.0, false).is_err());
        assert!(mean_radial_power_spectrum(&[1.; 7], 2, 2, 2, 1.0, true).is_err());
        assert!(log_spectral_distance(&[1.], &[1., 2.]).is_err());
        assert!(rx1day(&[1.; 5], 2, 2).is_err());
        assert!(sdii(&[1.; 4], 2, 2, f64::NAN).is_err());
        assert!(scores(&EMULATED, &REFERENCE[..8], 3, 2, 2, 1.0, false).is_err());
        assert!(scores(&EMULATED, &REFERENCE, 3, 2, 3, 1.0, false).is_err());
    }
}
