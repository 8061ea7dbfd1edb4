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

/// What the moving networks share: the geometry's points, the seed of the
/// per-cycle draws and the error model; one cycle's network from the
/// indices observed.
struct MovingSelection {
    geometry: Geometry,
    locations: Vec<Location>,
    /// The variables a network may observe (all, or some fields').
    candidates: Vec<usize>,
    seed: u64,
    errors: ErrorModel,
}

impl MovingSelection {
    fn new(
        geometry: &Geometry,
        candidates: Option<Vec<usize>>,
        seed: u64,
        errors: ErrorModel,
    ) -> Self {
        Self {
            locations: geometry.locations().collect(),
            candidates: candidates.unwrap_or_else(|| (0..geometry.size()).collect()),
            geometry: geometry.clone(),
            seed,
            errors,
        }
    }

    /// The generator of `what` at `cycle`.
    fn rng(&self, what: &str, cycle: usize) -> crate::rng::Rng {
        stream(self.seed, &format!("{what}/{cycle}"))
    }

    /// The network of `cycle` observing `indices` directly.
    fn at(&self, indices: Vec<usize>, name: &str, cycle: usize) -> NetworkAt {
        let op = Selection::new(indices.clone(), &self.locations, name)
            .expect("moving networks draw indices in range");
        let error = self
            .errors
            .errors(&self.geometry, op.locations_slice(), &indices);
        NetworkAt {
            operator: Arc::new(op),
            error,
            network_id: cycle as u64 + 1,
        }
    }
}

/// A moving network: at each cycle, `count` distinct state variables drawn
/// at random (seeded by the run seed and the cycle, so every method sees
/// the same network), observed directly.
pub struct RandomNetwork {
    moving: MovingSelection,
    count: usize,
}

impl RandomNetwork {
    /// `count` random variables per cycle out of the geometry's, or out of
    /// `candidates` where given.
    pub fn new(
        geometry: &Geometry,
        candidates: Option<Vec<usize>>,
        count: usize,
        seed: u64,
        errors: ErrorModel,
    ) -> Self {
        Self {
            moving: MovingSelection::new(geometry, candidates, seed, errors),
            count,
        }
    }
}

impl ObsNetwork for RandomNetwork {
    fn at(&self, cycle: usize, _time: f64) -> NetworkAt {
        let n = self.moving.candidates.len();
        let mut rng = self.moving.rng("network", cycle);
        let mut indices: Vec<usize> = rand::seq::index::sample(&mut rng, n, self.count.min(n))
            .into_iter()
            .map(|k| self.moving.candidates[k])
            .collect();
        indices.sort_unstable();
        self.moving.at(indices, "random", cycle)
    }
    fn is_fixed(&self) -> bool {
        false
    }
    fn max_len(&self) -> usize {
        self.count.min(self.moving.locations.len())
    }
}

/// Satellite-like tracks: `count` variables evenly spaced along the state
/// vector (`floor(k n / count)`, DAPPER's `linspace_int`), all shifted by one
/// random offset in `[0, spacing)` drawn anew at each cycle (seeded by the
/// run seed and the cycle, so every method sees the same network). On a
/// row-major 2-D grid the points fall along slanted lines.
pub struct TrackNetwork {
    moving: MovingSelection,
    base: Vec<usize>,
}

impl TrackNetwork {
    /// `count` evenly spaced variables out of the geometry's, or out of
    /// `candidates` where given.
    pub fn new(
        geometry: &Geometry,
        candidates: Option<Vec<usize>>,
        count: usize,
        seed: u64,
        errors: ErrorModel,
    ) -> Self {
        let moving = MovingSelection::new(geometry, candidates, seed, errors);
        let n = moving.candidates.len();
        Self {
            moving,
            base: (0..count).map(|k| k * n / count).collect(),
        }
    }

    /// The largest offset plus one: the first gap.
    fn spacing(&self) -> usize {
        match self.base.as_slice() {
            [a, b, ..] => b - a,
            _ => self.moving.candidates.len(),
        }
    }
}

impl ObsNetwork for TrackNetwork {
    fn at(&self, cycle: usize, _time: f64) -> NetworkAt {
        use rand::Rng as _;
        let offset = self
            .moving
            .rng("tracks", cycle)
            .random_range(0..self.spacing().max(1));
        let indices = self
            .base
            .iter()
            .map(|i| self.moving.candidates[i + offset])
            .collect();
        self.moving.at(indices, "tracks", cycle)
    }
    fn is_fixed(&self) -> bool {
        false
    }
    fn max_len(&self) -> usize {
        self.base.len()
    }
}

/// Satellite swaths on a 2-D domain: at each cycle, every candidate point
/// within `width / 2` of a straight ground track at `angle` to the x axis.
/// The track moves across itself by `shift` every cycle, from a start
/// drawn from the run seed, and wraps round once it has crossed the
/// observable points (a polar orbiter's successive passes over a regional
/// domain). Every method sees the same swaths.
pub struct SwathNetwork {
    moving: MovingSelection,
    /// Each candidate's coordinate across the track.
    across: Vec<f64>,
    width: f64,
    shift: f64,
    /// The lowest across-track coordinate, and the range the centre sweeps.
    low: f64,
    period: f64,
    /// The centre's start, in `[0, period)` above `low`.
    phase: f64,
    max_len: usize,
}

impl SwathNetwork {
    /// Swaths `width` wide (distance units of the geometry), whose track
    /// points `angle` degrees anticlockwise from the x axis, moving `shift`
    /// across the track each cycle; out of `candidates` where given.
    /// Fails, naming the gap, when the swath is narrower than a gap between
    /// observable points across the track (a cycle could see nothing).
    pub fn new(
        geometry: &Geometry,
        candidates: Option<Vec<usize>>,
        width: f64,
        angle: f64,
        shift: f64,
        seed: u64,
        errors: ErrorModel,
    ) -> Result<Self, String> {
        use rand::Rng as _;
        let moving = MovingSelection::new(geometry, candidates, seed, errors);
        let (sin, cos) = angle.to_radians().sin_cos();
        let across: Vec<f64> = moving
            .candidates
            .iter()
            .map(|&i| {
                let [x, y] = moving.locations[i];
                -x * sin + y * cos
            })
            .collect();
        let mut sorted = across.clone();
        sorted.sort_by(f64::total_cmp);
        let (low, high) = match (sorted.first(), sorted.last()) {
            (Some(&l), Some(&h)) => (l, h),
            _ => return Err("there are no points to observe".into()),
        };
        let gap = sorted.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
        if gap > width {
            return Err(format!(
                "a swath {width} wide could see nothing: observable points are up to {gap} apart across the track"
            ));
        }
        // The most points in any band of the width.
        let (mut max_len, mut first) = (0, 0);
        for last in 0..sorted.len() {
            while sorted[last] - sorted[first] > width {
                first += 1;
            }
            max_len = max_len.max(last + 1 - first);
        }
        let period = (high - low).max(f64::MIN_POSITIVE);
        let phase = moving.rng("swath", 0).random_range(0.0..1.0) * period;
        Ok(Self {
            moving,
            across,
            width,
            shift,
            low,
            period,
            phase,
            max_len,
        })
    }

    /// The across-track coordinate of the track at `cycle`.
    fn centre(&self, cycle: usize) -> f64 {
        self.low + (self.phase + cycle as f64 * self.shift).rem_euclid(self.period)
    }
}

impl ObsNetwork for SwathNetwork {
    fn at(&self, cycle: usize, _time: f64) -> NetworkAt {
        let centre = self.centre(cycle);
        let half = 0.5 * self.width;
        let indices = self
            .moving
            .candidates
            .iter()
            .zip(&self.across)
            .filter(|&(_, s)| (s - centre).abs() <= half)
            .map(|(&i, _)| i)
            .collect();
        self.moving.at(indices, "swath", cycle)
    }
    fn is_fixed(&self) -> bool {
        false
    }
    fn max_len(&self) -> usize {
        self.max_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{CoordinateUnits, Field};

    #[test]
    fn tracks_are_evenly_spaced_and_shift_together_each_cycle() {
        let axis: Vec<f64> = (0..129).map(|i| i as f64).collect();
        let geometry = Geometry::new(
            vec![Field::grid(
                "psi",
                "stream function",
                "1",
                axis.clone(),
                axis,
            )],
            [None, None],
            CoordinateUnits::Model,
        );
        let errors = ErrorModel {
            std: vec![2.0],
            correlation_length: None,
        };
        let net = TrackNetwork::new(&geometry, None, 300, 7, errors);
        assert_eq!(net.max_len(), 300);
        assert!(!net.is_fixed());
        // DAPPER's linspace_int(16641, 300): floor(k * 16641 / 300).
        assert_eq!(&net.base[..4], &[0, 55, 110, 166]);
        assert_eq!(net.spacing(), 55);
        let mut offsets = std::collections::BTreeSet::new();
        for cycle in 0..40 {
            let at = net.at(cycle, 0.0);
            let again = net.at(cycle, 0.0);
            assert_eq!(at.network_id, again.network_id);
            // Every point moved by one offset below the spacing; all in range.
            let index = |l: &Location| (l[1] * 129.0 + l[0]) as usize;
            let locations = at.operator.locations();
            let offset = index(&locations[0]);
            assert!(offset < 55);
            for (k, l) in locations.iter().enumerate() {
                assert_eq!(index(l), net.base[k] + offset);
                assert!(index(l) < 16641);
            }
            assert_eq!(at.error.std().len(), 300);
            offsets.insert(offset);
        }
        assert!(
            offsets.len() > 20,
            "offsets vary across cycles: {offsets:?}"
        );
    }

    /// Restricted to candidates (the active points of some fields), the
    /// moving networks observe nothing else, and the tracks still cover
    /// the candidates evenly.
    #[test]
    fn moving_networks_draw_only_from_their_candidates() {
        let axis: Vec<f64> = (0..10).map(|i| i as f64).collect();
        let mut h = Field::grid("h", "thickness", "m", axis.clone(), axis.clone());
        h.mask = Some((0..100).map(|k| k % 7 != 0).collect());
        // u elsewhere, so that a location tells the fields apart.
        let far: Vec<f64> = axis.iter().map(|x| x + 1000.0).collect();
        let u = Field::grid("u", "velocity", "m s-1", far.clone(), far);
        let geometry = Geometry::new(vec![u, h], [None, None], CoordinateUnits::Model);
        let candidates: Vec<usize> = (100..200).filter(|k| (k - 100) % 7 != 0).collect();
        let errors = || ErrorModel {
            std: vec![0.1],
            correlation_length: None,
        };
        let random = RandomNetwork::new(&geometry, Some(candidates.clone()), 20, 3, errors());
        let tracks = TrackNetwork::new(&geometry, Some(candidates.clone()), 20, 3, errors());
        assert_eq!(tracks.spacing(), candidates.len() / 20);
        let index = |l: &Location| (l[1] * 10.0 + l[0]) as usize + 100;
        for cycle in 0..30 {
            for net in [&random as &dyn ObsNetwork, &tracks] {
                let at = net.at(cycle, 0.0);
                let locations = at.operator.locations();
                assert_eq!(locations.len(), 20);
                for l in locations.iter() {
                    assert!(candidates.contains(&index(l)), "cycle {cycle}: {l:?}");
                }
            }
        }
    }

    /// A swath observes every candidate within half its width of the
    /// track and nothing else, moves by its shift, wraps round, never
    /// exceeds its largest size, and is refused when narrower than a gap.
    #[test]
    fn swaths_cover_bands_that_move_across_the_track() {
        let axis: Vec<f64> = (0..20).map(|i| i as f64 * 1000.0).collect();
        let mut h = Field::grid("h", "thickness", "m", axis.clone(), axis.clone());
        h.mask = Some((0..400).map(|k| k % 13 != 0).collect());
        let geometry = Geometry::new(vec![h], [None, None], CoordinateUnits::Metres);
        let errors = || ErrorModel {
            std: vec![0.1],
            correlation_length: None,
        };
        let candidates: Vec<usize> = (0..400).filter(|k| k % 13 != 0).collect();
        let angle = 70.0f64;
        let net = SwathNetwork::new(
            &geometry,
            Some(candidates.clone()),
            4000.0,
            angle,
            3000.0,
            5,
            errors(),
        )
        .unwrap();
        let (sin, cos) = angle.to_radians().sin_cos();
        let across = |l: &Location| -l[0] * sin + l[1] * cos;
        let mut seen = std::collections::BTreeSet::new();
        for cycle in 0..40 {
            let at = net.at(cycle, 0.0);
            let centre = net.centre(cycle);
            let inside: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|&k| {
                    let l = [(k % 20) as f64 * 1000.0, (k / 20) as f64 * 1000.0];
                    (across(&l) - centre).abs() <= 2000.0
                })
                .collect();
            let locations = at.operator.locations();
            assert_eq!(locations.len(), inside.len(), "cycle {cycle}");
            assert!(!inside.is_empty() && inside.len() <= net.max_len());
            for (l, &k) in locations.iter().zip(&inside) {
                assert_eq!(*l, [(k % 20) as f64 * 1000.0, (k / 20) as f64 * 1000.0]);
                seen.insert(k);
            }
            let next = net.centre(cycle + 1);
            let moved = (next - centre).rem_euclid(net.period);
            assert!((moved - 3000.0f64.rem_euclid(net.period)).abs() < 1e-6);
        }
        // Over the cycles the swaths cover every observable point.
        assert_eq!(seen.len(), candidates.len());
        let narrow = SwathNetwork::new(&geometry, None, 200.0, 0.0, 100.0, 5, errors());
        assert!(narrow.err().unwrap().contains("could see nothing"));
    }
}
