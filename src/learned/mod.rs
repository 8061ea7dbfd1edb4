//! Learned models: datasets from rime's own models, neural emulators that
//! fill the [`Model`](crate::core::Model) seam, their training loop and
//! checkpoints.
//!
//! - [`data`]: `rime simulate` (trajectories of any model to NetCDF, split
//!   by time) and the loader.
//! - [`net`]: the networks (a periodic 1-D CNN for the Lorenz-96 family), in
//!   burn, f32, seeded.
//! - [`emulator`]: residual (tendency) emulators as models, normalisation
//!   and checkpoints.
//! - [`hybrid`]: a physical model with a learned tendency term or state
//!   correction, trained through the physics.
//! - [`generative`]: diffusion (EDM, Heun sampler) and flow-matching
//!   surrogates that sample the next state, as stochastic models.
//! - [`evaluate`]: `rime evaluate`: scores against lead time beside
//!   persistence and climatology, ensemble calibration, spectra, free runs.
//! - [`train`]: `rime train`: rollout loss, Adam, validation, early
//!   stopping, checkpoints and resume, the training curve.
//! - [`downscaling`]: downscaling emulators (coarse fields to a fine
//!   field, Doury et al.), their training, scores and checkpoints;
//!   [`cordex`] reads the CORDEX-ML-Bench files.

pub mod cordex;
pub mod data;
pub mod downscaling;
pub mod emulator;
pub mod evaluate;
pub mod generative;
pub mod hybrid;
pub mod net;
pub mod progress;
pub mod train;

pub use data::{ExpectedCheck, ExpectedRange, SimulateConfig, Trajectories, simulate};
pub use emulator::{Checkpoint, Emulator, EmulatorConfig};
pub use generative::{Generative, GenerativeConfig, Surrogate};
pub use hybrid::{Coupling, Hybrid, HybridConfig};
pub use net::{Architecture, Network};
pub use train::{TrainConfig, train};

/// Reads a TOML file into `T`; errors name the file (and, from the parser,
/// the key and line).
pub(crate) fn read_toml<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.to_string().trim_end()))
}

/// Asserts that the autodiff gradient of `<w, M^steps(x0)>` with respect to
/// `x0` (through every step of `model`, on the CPU's f64 autodiff device)
/// matches central differences of width 1e-2 at the variables `at`, to
/// 2e-3 (1 + |g|): a learned model computes in f32, and differences of 1e-2
/// keep its round-off (1e-7 relative) well under that.
#[cfg(test)]
pub(crate) fn assert_gradient_matches_differences(
    model: &dyn crate::core::Model,
    x0: &[f64],
    w: &[f64],
    steps: usize,
    at: &[usize],
    what: &str,
) {
    use crate::device::{cpu_f64, cpu_f64_autodiff, tensor_from_rows, to_vec};
    let n = x0.len();
    let device = cpu_f64();
    let f = |x: &[f64]| -> f64 {
        let y = to_vec(model.forecast(tensor_from_rows(x, 1, n, &device), 0.0, steps));
        y.iter().zip(w).map(|(a, b)| a * b).sum()
    };
    let ad = cpu_f64_autodiff();
    let x = tensor_from_rows(x0, 1, n, &ad).require_grad();
    let j = (model.forecast(x.clone(), 0.0, steps) * tensor_from_rows(w, 1, n, &ad)).sum();
    let g = to_vec(x.grad(&j.backward()).unwrap());
    let h = 1e-2;
    for &i in at {
        let mut p = x0.to_vec();
        let mut m = x0.to_vec();
        p[i] += h;
        m[i] -= h;
        let fd = (f(&p) - f(&m)) / (2.0 * h);
        assert!(
            (fd - g[i]).abs() < 2e-3 * (1.0 + g[i].abs()),
            "{what} {i}: autodiff {} vs differences {fd}",
            g[i]
        );
    }
}
