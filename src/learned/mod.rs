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
//! - [`train`]: `rime train`: rollout loss, Adam, validation, early
//!   stopping, checkpoints and resume, the training curve.

pub mod data;
pub mod emulator;
pub mod net;
pub mod progress;
pub mod train;

pub use data::{SimulateConfig, Trajectories, simulate};
pub use emulator::{Checkpoint, Emulator, EmulatorConfig};
pub use net::{Architecture, Network};
pub use train::{TrainConfig, train};
