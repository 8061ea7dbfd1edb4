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

pub mod data;
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
