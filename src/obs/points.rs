//! Networks of arbitrary points, for operators that interpolate
//! (`bilinear`): `points` (listed stations, buoys) and `stations` (a
//! fixed set of points drawn at random once, from the run seed).

use rand::Rng as _;
use serde::{Deserialize, Serialize};

use super::spec::{
    BuildContext, Candidate, KeyError, NetworkSpec, Sites, SpecDoc, SpecKey, key_error,
};
use crate::core::Location;
use crate::rng::stream;

/// `points`: the same listed points at every cycle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointsSpec {
    /// The x coordinate of each point.
    pub x: Vec<f64>,
    /// The y coordinate of each point (2-D models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<Vec<f64>>,
}

impl SpecDoc for PointsSpec {
    const DOC: &'static str = "the listed points (stations, buoys) at every cycle, in the geometry's coordinates; each is observed in every field of the set by an interpolating operator (bilinear)";
    const KEYS: &'static [SpecKey] = &[
        SpecKey {
            key: "x",
            kind: "list of numbers, the geometry's coordinates",
            doc: "x of each point",
            required: Some("[0.5, 3.25]"),
        },
        SpecKey {
            key: "y",
            kind: "list of numbers, as long as x",
            doc: "y of each point (2-D models; absent: 0)",
            required: None,
        },
    ];
}

impl NetworkSpec for PointsSpec {
    fn check(&self) -> Result<(), KeyError> {
        if self.x.is_empty() {
            return Err(key_error("x", "must list at least one point"));
        }
        if let Some(y) = &self.y
            && y.len() != self.x.len()
        {
            return Err(key_error(
                "y",
                format!("has {} values for {} x values", y.len(), self.x.len()),
            ));
        }
        let all = self.x.iter().chain(self.y.iter().flatten());
        if let Some(bad) = all.into_iter().find(|v| !v.is_finite()) {
            return Err(key_error(
                "x",
                format!("coordinates must be finite, got {bad}"),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (k, p) in self.points().iter().enumerate() {
            if !seen.insert((p[0].to_bits(), p[1].to_bits())) {
                return Err(key_error(
                    "x",
                    format!(
                        "point {k} at {p:?} is listed twice (it would be counted twice with independent errors)"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn init(&self, ctx: &BuildContext<'_>, _candidates: &[Candidate]) -> Result<Sites, KeyError> {
        let two_d = ctx.geometry.fields.iter().any(|f| f.shape.len() == 2);
        if two_d && self.y.is_none() {
            return Err(key_error("y", "is required on a 2-D model"));
        }
        if !two_d && self.y.is_some() {
            return Err(key_error("y", "does not apply to a 1-D model"));
        }
        Ok(Sites::Points(self.points()))
    }
}

impl PointsSpec {
    fn points(&self) -> Vec<Location> {
        let y = self.y.clone().unwrap_or_else(|| vec![0.0; self.x.len()]);
        self.x.iter().zip(y).map(|(&x, y)| [x, y]).collect()
    }
}

/// `stations`: `count` points drawn uniformly over the domain once (from
/// the run seed), then fixed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationsSpec {
    /// How many stations.
    pub count: usize,
}

impl SpecDoc for StationsSpec {
    const DOC: &'static str = "count points drawn uniformly over the domain (the box of the operator's candidates, a whole period on periodic axes) once from the run seed, then observed at every cycle by an interpolating operator (bilinear); on a masked model a station next to land is refused: list points instead";
    const KEYS: &'static [SpecKey] = &[SpecKey {
        key: "count",
        kind: "integer ≥ 1",
        doc: "number of stations",
        required: Some("50"),
    }];
}

impl NetworkSpec for StationsSpec {
    fn check(&self) -> Result<(), KeyError> {
        if self.count == 0 {
            return Err(key_error("count", "must be at least 1"));
        }
        Ok(())
    }

    fn init(&self, ctx: &BuildContext<'_>, candidates: &[Candidate]) -> Result<Sites, KeyError> {
        if candidates.is_empty() {
            return Err(key_error("count", "the operator has no point to observe"));
        }
        let g = ctx.geometry;
        let two_d = g.fields.iter().any(|f| f.shape.len() == 2);
        let mut range = [[f64::INFINITY, f64::NEG_INFINITY]; 2];
        for c in candidates {
            for axis in 0..2 {
                range[axis][0] = range[axis][0].min(c.location[axis]);
                range[axis][1] = range[axis][1].max(c.location[axis]);
            }
        }
        for axis in 0..2 {
            if let Some(p) = g.period[axis] {
                range[axis][1] = range[axis][0] + p;
            }
        }
        let mut rng = stream(ctx.seed, &format!("{}stations", ctx.stream_prefix));
        let mut draw = |axis: usize| {
            let [lo, hi] = range[axis];
            if hi > lo {
                rng.random_range(lo..hi)
            } else {
                lo
            }
        };
        let points = (0..self.count)
            .map(|_| {
                let x = draw(0);
                let y = if two_d { draw(1) } else { 0.0 };
                [x, y]
            })
            .collect();
        Ok(Sites::Points(points))
    }
}
