//! Observation networks: what is observed at each cycle, through which
//! operator and with which errors. A network may be fixed or change every
//! cycle (moving platforms, random subsets, partial coverage).

use std::sync::Arc;

use nalgebra::{DMatrix, DVector};

use super::Selection;
use crate::core::{Geometry, Location, ObsError, ObsOperator};
use crate::rng::stream;

/// What a network observes at one cycle.
#[derive(Clone)]
pub struct NetworkAt {
    /// The operator.
    pub operator: Arc<dyn ObsOperator>,
    /// The errors of its observations (before any are missing).
    pub error: ObsError,
    /// Equal ids mean the same operator and locations.
    pub network_id: u64,
}

/// An observation network.
pub trait ObsNetwork: Send + Sync {
    /// What is observed at `cycle` (model time `time`).
    fn at(&self, cycle: usize, time: f64) -> NetworkAt;
    /// Whether the network is the same at every cycle.
    fn is_fixed(&self) -> bool;
    /// The largest number of observations at one cycle (for output).
    fn max_len(&self) -> usize;
}

/// How the error standard deviation and correlation of a network's
/// observations are given.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorModel {
    /// One value for every observation, or one per observation.
    pub std: Vec<f64>,
    /// Gaussian correlation length in model distance units (`None`:
    /// independent errors).
    pub correlation_length: Option<f64>,
}

impl ErrorModel {
    /// The errors of observations at `locations`; `index` maps each
    /// observation to its entry of a per-observation `std` list.
    pub fn errors(&self, geometry: &Geometry, locations: &[Location], index: &[usize]) -> ObsError {
        let std: Vec<f64> = index
            .iter()
            .map(|&k| {
                if self.std.len() == 1 {
                    self.std[0]
                } else {
                    self.std[k]
                }
            })
            .collect();
        match self.correlation_length {
            None => ObsError::Diagonal(DVector::from_vec(std)),
            Some(length) => {
                let p = locations.len();
                let r = DMatrix::from_fn(p, p, |i, j| {
                    let d = geometry.distance(&locations[i], &locations[j]);
                    std[i] * std[j] * (-0.5 * (d / length).powi(2)).exp()
                });
                ObsError::correlated(r).unwrap_or_else(|_| {
                    // Coincident observations make a Gaussian correlation
                    // matrix singular; a relative nugget of 1e-9 keeps it SPD.
                    let nugget = DMatrix::from_diagonal(&DVector::from_iterator(
                        p,
                        std.iter().map(|s| 1e-9 * s * s),
                    ));
                    let mut rr = DMatrix::from_fn(p, p, |i, j| {
                        let d = geometry.distance(&locations[i], &locations[j]);
                        std[i] * std[j] * (-0.5 * (d / length).powi(2)).exp()
                    });
                    rr += nugget;
                    ObsError::correlated(rr).expect("a nugget makes R positive definite")
                })
            }
        }
    }
}

/// The same operator and errors at every cycle.
pub struct FixedNetwork {
    at: NetworkAt,
}

impl FixedNetwork {
    /// A fixed network.
    pub fn new(operator: Arc<dyn ObsOperator>, error: ObsError) -> Self {
        Self {
            at: NetworkAt {
                operator,
                error,
                network_id: 0,
            },
        }
    }
}

impl ObsNetwork for FixedNetwork {
    fn at(&self, _cycle: usize, _time: f64) -> NetworkAt {
        self.at.clone()
    }
    fn is_fixed(&self) -> bool {
        true
    }
    fn max_len(&self) -> usize {
        self.at.operator.size()
    }
}

/// A moving network: at each cycle, `count` distinct state variables drawn
/// at random (seeded by the run seed and the cycle, so every method sees
/// the same network), observed directly.
pub struct RandomNetwork {
    geometry: Geometry,
    locations: Vec<Location>,
    count: usize,
    seed: u64,
    errors: ErrorModel,
}

impl RandomNetwork {
    /// `count` random variables per cycle out of the geometry's.
    pub fn new(geometry: &Geometry, count: usize, seed: u64, errors: ErrorModel) -> Self {
        Self {
            locations: geometry.locations().collect(),
            geometry: geometry.clone(),
            count,
            seed,
            errors,
        }
    }
}

impl ObsNetwork for RandomNetwork {
    fn at(&self, cycle: usize, _time: f64) -> NetworkAt {
        let n = self.locations.len();
        let mut rng = stream(self.seed, &format!("network/{cycle}"));
        let mut indices = rand::seq::index::sample(&mut rng, n, self.count.min(n)).into_vec();
        indices.sort_unstable();
        let op = Selection::new(indices.clone(), &self.locations, "random")
            .expect("sampled indices are in range");
        let error = self
            .errors
            .errors(&self.geometry, op.locations_slice(), &indices);
        NetworkAt {
            operator: Arc::new(op),
            error,
            network_id: cycle as u64 + 1,
        }
    }
    fn is_fixed(&self) -> bool {
        false
    }
    fn max_len(&self) -> usize {
        self.count.min(self.locations.len())
    }
}
