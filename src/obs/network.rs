//! Observation networks: what is observed at each cycle, through which
//! operator and with which errors. A network may be fixed or change every
//! cycle (moving platforms, random subsets, partial coverage).

use std::sync::Arc;

use nalgebra::{DMatrix, DVector};

use super::spec::Choice;
use crate::core::{Geometry, Location, ObsError, ObsOperator};
use crate::rng::stream;

/// What a network observes at one cycle.
#[derive(Clone)]
pub struct NetworkAt {
    /// The operator.
    pub operator: Arc<dyn ObsOperator>,
    /// The operator that simulates a twin's observations where it is not
    /// `operator` (a set's `truth_operator`); same size and sites.
    pub truth: Option<Arc<dyn ObsOperator>>,
    /// The errors of its observations (before any are missing).
    pub error: ObsError,
    /// Equal ids mean the same operator and locations.
    pub network_id: u64,
    /// The number of observations of each observation set, in order (one
    /// entry for a single set).
    pub sets: Vec<usize>,
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

/// The generator of `what` at `cycle` for a set whose streams start with
/// `prefix` (empty for the first set: its draws are those of earlier
/// versions).
fn rng(seed: u64, prefix: &str, what: &str, cycle: usize) -> crate::rng::Rng {
    stream(seed, &format!("{prefix}{what}/{cycle}"))
}

/// The same candidates at every cycle.
pub struct FixedChoice(pub Vec<usize>);

impl Choice for FixedChoice {
    fn at(&self, _cycle: usize) -> Vec<usize> {
        self.0.clone()
    }
    fn is_fixed(&self) -> bool {
        true
    }
    fn max_len(&self) -> usize {
        self.0.len()
    }
}

/// A moving network: at each cycle, `count` distinct candidates drawn at
/// random (seeded by the run seed and the cycle, so every method sees the
/// same network).
pub struct RandomChoice {
    n: usize,
    count: usize,
    seed: u64,
    prefix: String,
}

impl RandomChoice {
    /// `count` of `n` candidates per cycle.
    pub fn new(n: usize, count: usize, seed: u64, prefix: &str) -> Self {
        Self {
            n,
            count: count.min(n),
            seed,
            prefix: prefix.to_string(),
        }
    }
}

impl Choice for RandomChoice {
    fn at(&self, cycle: usize) -> Vec<usize> {
        let mut r = rng(self.seed, &self.prefix, "network", cycle);
        let mut chosen = rand::seq::index::sample(&mut r, self.n, self.count).into_vec();
        chosen.sort_unstable();
        chosen
    }
    fn is_fixed(&self) -> bool {
        false
    }
    fn max_len(&self) -> usize {
        self.count
    }
}

/// Satellite-like tracks: `count` candidates evenly spaced along the
/// candidate list (`floor(k n / count)`, DAPPER's `linspace_int`), all
/// shifted by one random offset in `[0, spacing)` drawn anew at each cycle
/// (seeded by the run seed and the cycle). On a row-major 2-D grid the
/// points fall along slanted lines.
pub struct TrackChoice {
    base: Vec<usize>,
    n: usize,
    seed: u64,
    prefix: String,
}

impl TrackChoice {
    /// `count` evenly spaced of `n` candidates.
    pub fn new(n: usize, count: usize, seed: u64, prefix: &str) -> Self {
        Self {
            base: (0..count).map(|k| k * n / count).collect(),
            n,
            seed,
            prefix: prefix.to_string(),
        }
    }

    /// The largest offset plus one: the first gap.
    fn spacing(&self) -> usize {
        match self.base.as_slice() {
            [a, b, ..] => b - a,
            _ => self.n,
        }
    }
}

impl Choice for TrackChoice {
    fn at(&self, cycle: usize) -> Vec<usize> {
        use rand::Rng as _;
        let offset =
            rng(self.seed, &self.prefix, "tracks", cycle).random_range(0..self.spacing().max(1));
        self.base.iter().map(|i| i + offset).collect()
    }
    fn is_fixed(&self) -> bool {
        false
    }
    fn max_len(&self) -> usize {
        self.base.len()
    }
}

/// Satellite swaths on a 2-D domain: at each cycle, every candidate within
/// `width / 2` of a straight ground track at `angle` to the x axis. The
/// track moves across itself by `shift` every cycle, from a start drawn
/// from the run seed, and wraps round once it has crossed the observable
/// points (a polar orbiter's successive passes over a regional domain).
/// Every method sees the same swaths.
pub struct SwathChoice {
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

impl SwathChoice {
    /// Swaths `width` wide (distance units of the geometry) over candidates
    /// at `locations`, whose track points `angle` degrees anticlockwise
    /// from the x axis, moving `shift` across the track each cycle. Fails,
    /// naming the gap, when the swath is narrower than a gap between
    /// candidates across the track (a cycle could see nothing).
    pub fn new(
        locations: &[Location],
        width: f64,
        angle: f64,
        shift: f64,
        seed: u64,
        prefix: &str,
    ) -> Result<Self, String> {
        use rand::Rng as _;
        let (sin, cos) = angle.to_radians().sin_cos();
        let across: Vec<f64> = locations.iter().map(|&[x, y]| -x * sin + y * cos).collect();
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
        let phase = rng(seed, prefix, "swath", 0).random_range(0.0..1.0) * period;
        Ok(Self {
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

impl Choice for SwathChoice {
    fn at(&self, cycle: usize) -> Vec<usize> {
        let centre = self.centre(cycle);
        let half = 0.5 * self.width;
        (0..self.across.len())
            .filter(|&k| (self.across[k] - centre).abs() <= half)
            .collect()
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

    #[test]
    fn tracks_are_evenly_spaced_and_shift_together_each_cycle() {
        let net = TrackChoice::new(129 * 129, 300, 7, "");
        assert_eq!(net.max_len(), 300);
        assert!(!net.is_fixed());
        // DAPPER's linspace_int(16641, 300): floor(k * 16641 / 300).
        assert_eq!(&net.base[..4], &[0, 55, 110, 166]);
        assert_eq!(net.spacing(), 55);
        let mut offsets = std::collections::BTreeSet::new();
        for cycle in 0..40 {
            let at = net.at(cycle);
            assert_eq!(at, net.at(cycle));
            // Every point moved by one offset below the spacing; all in range.
            let offset = at[0];
            assert!(offset < 55);
            for (k, &i) in at.iter().enumerate() {
                assert_eq!(i, net.base[k] + offset);
                assert!(i < 16641);
            }
            offsets.insert(offset);
        }
        assert!(
            offsets.len() > 20,
            "offsets vary across cycles: {offsets:?}"
        );
        // Another set's prefix draws other offsets.
        let other = TrackChoice::new(129 * 129, 300, 7, "buoys/");
        assert!((0..20).any(|c| other.at(c) != net.at(c)));
    }

    #[test]
    fn random_networks_draw_distinct_sorted_candidates() {
        let net = RandomChoice::new(50, 20, 3, "");
        for cycle in 0..30 {
            let at = net.at(cycle);
            assert_eq!(at.len(), 20);
            assert!(at.windows(2).all(|w| w[0] < w[1]) && at[19] < 50);
        }
        assert_ne!(net.at(0), net.at(1));
        assert_eq!(RandomChoice::new(5, 20, 3, "").max_len(), 5);
    }

    /// A swath observes every candidate within half its width of the
    /// track and nothing else, moves by its shift, wraps round, never
    /// exceeds its largest size, and is refused when narrower than a gap.
    #[test]
    fn swaths_cover_bands_that_move_across_the_track() {
        let candidates: Vec<usize> = (0..400).filter(|k| k % 13 != 0).collect();
        let location = |k: usize| [(k % 20) as f64 * 1000.0, (k / 20) as f64 * 1000.0];
        let locations: Vec<Location> = candidates.iter().map(|&k| location(k)).collect();
        let angle = 70.0f64;
        let net = SwathChoice::new(&locations, 4000.0, angle, 3000.0, 5, "").unwrap();
        let (sin, cos) = angle.to_radians().sin_cos();
        let across = |l: &Location| -l[0] * sin + l[1] * cos;
        let mut seen = std::collections::BTreeSet::new();
        for cycle in 0..40 {
            let at = net.at(cycle);
            let centre = net.centre(cycle);
            let inside: Vec<usize> = (0..candidates.len())
                .filter(|&c| (across(&locations[c]) - centre).abs() <= 2000.0)
                .collect();
            assert_eq!(at, inside, "cycle {cycle}");
            assert!(!inside.is_empty() && inside.len() <= net.max_len());
            seen.extend(at);
            let next = net.centre(cycle + 1);
            let moved = (next - centre).rem_euclid(net.period);
            assert!((moved - 3000.0f64.rem_euclid(net.period)).abs() < 1e-6);
        }
        // Over the cycles the swaths cover every observable point.
        assert_eq!(seen.len(), candidates.len());
        let narrow = SwathChoice::new(&locations, 200.0, 0.0, 100.0, 5, "");
        assert!(narrow.err().unwrap().contains("could see nothing"));
    }
}
