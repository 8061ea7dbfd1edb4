//! Networks that choose among an operator's candidate sites: `identity`,
//! `every`, `indices` (fixed) and `random`, `tracks`, `swath` (moving).

use serde::{Deserialize, Serialize};

use super::network::{FixedChoice, RandomChoice, SwathChoice, TrackChoice};
use super::spec::{
    BuildContext, Candidate, KeyError, NetworkSpec, Sites, SpecDoc, SpecKey, key_error,
};

const fn req(
    key: &'static str,
    kind: &'static str,
    doc: &'static str,
    example: &'static str,
) -> SpecKey {
    SpecKey {
        key,
        kind,
        doc,
        required: Some(example),
    }
}

const fn opt(key: &'static str, kind: &'static str, doc: &'static str) -> SpecKey {
    SpecKey {
        key,
        kind,
        doc,
        required: None,
    }
}

/// `identity`: every candidate, at every cycle.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {}

impl SpecDoc for IdentitySpec {
    const DOC: &'static str = "every candidate of the operator (every variable, or every active point of the set's fields), at every cycle";
    const KEYS: &'static [SpecKey] = &[];
}

impl NetworkSpec for IdentitySpec {
    fn init(&self, _ctx: &BuildContext<'_>, candidates: &[Candidate]) -> Result<Sites, KeyError> {
        Ok(Sites::Choose(Box::new(FixedChoice(
            (0..candidates.len()).collect(),
        ))))
    }
}

/// `every`: every `stride`-th candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EverySpec {
    /// Candidates between two observations.
    pub stride: usize,
}

impl SpecDoc for EverySpec {
    const DOC: &'static str = "every stride-th candidate, at every cycle";
    const KEYS: &'static [SpecKey] = &[req(
        "stride",
        "integer ≥ 1",
        "observe every stride-th candidate",
        "2",
    )];
}

impl NetworkSpec for EverySpec {
    fn check(&self) -> Result<(), KeyError> {
        if self.stride == 0 {
            return Err(key_error("stride", "must be at least 1"));
        }
        Ok(())
    }

    fn init(&self, _ctx: &BuildContext<'_>, candidates: &[Candidate]) -> Result<Sites, KeyError> {
        let n = candidates.len();
        if self.stride > n {
            return Err(key_error(
                "stride",
                format!("{} exceeds the {n} candidates", self.stride),
            ));
        }
        Ok(Sites::Choose(Box::new(FixedChoice(
            (0..n).step_by(self.stride).collect(),
        ))))
    }
}

/// `indices`: the listed candidates (state indices, for `select` over
/// the whole state).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndicesSpec {
    /// The candidates observed, 0-based and distinct.
    pub indices: Vec<usize>,
}

impl SpecDoc for IndicesSpec {
    const DOC: &'static str =
        "the listed candidates at every cycle (with operator select and no fields: state indices)";
    const KEYS: &'static [SpecKey] = &[req(
        "indices",
        "list of integers (0-based, distinct)",
        "the observed candidates",
        "[0, 2]",
    )];
}

impl NetworkSpec for IndicesSpec {
    fn check(&self) -> Result<(), KeyError> {
        if self.indices.is_empty() {
            return Err(key_error("indices", "must not be empty"));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = self.indices.iter().find(|i| !seen.insert(**i)) {
            return Err(key_error(
                "indices",
                format!(
                    "index {dup} is listed twice (one observation per variable; a repeated index would count it twice with independent errors)"
                ),
            ));
        }
        Ok(())
    }

    fn init(&self, _ctx: &BuildContext<'_>, candidates: &[Candidate]) -> Result<Sites, KeyError> {
        let n = candidates.len();
        if let Some(bad) = self.indices.iter().find(|&&i| i >= n) {
            return Err(key_error(
                "indices",
                format!("index {bad} is out of range for a state of size {n} (indices start at 0)"),
            ));
        }
        Ok(Sites::Choose(Box::new(FixedChoice(self.indices.clone()))))
    }
}

/// `random`: `count` candidates drawn anew at each cycle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomSpec {
    /// Observations per cycle.
    pub count: usize,
}

impl SpecDoc for RandomSpec {
    const DOC: &'static str = "count distinct candidates drawn at random anew at each cycle (seeded: every method sees the same network)";
    const KEYS: &'static [SpecKey] = &[req("count", "integer ≥ 1", "observations per cycle", "10")];
}

/// A moving choice of `count` of `n` candidates from the seed and a
/// set's stream prefix.
type Draw<C> = fn(usize, usize, u64, &str) -> C;

/// `count` checked against the candidates, then the choice drawn.
fn counted<C: super::spec::Choice + 'static>(
    count: usize,
    ctx: &BuildContext<'_>,
    candidates: &[Candidate],
    draw: Draw<C>,
) -> Result<Sites, KeyError> {
    check_count(count)?;
    let n = candidates.len();
    if count > n {
        return Err(key_error(
            "count",
            format!("{count} exceeds the state size {n}"),
        ));
    }
    Ok(Sites::Choose(Box::new(draw(
        n,
        count,
        ctx.seed,
        &ctx.stream_prefix,
    ))))
}

fn check_count(count: usize) -> Result<(), KeyError> {
    if count == 0 {
        return Err(key_error("count", "must be at least 1"));
    }
    Ok(())
}

impl NetworkSpec for RandomSpec {
    fn check(&self) -> Result<(), KeyError> {
        check_count(self.count)
    }
    fn moving(&self) -> bool {
        true
    }
    fn init(&self, ctx: &BuildContext<'_>, candidates: &[Candidate]) -> Result<Sites, KeyError> {
        counted(self.count, ctx, candidates, RandomChoice::new)
    }
}

/// `tracks`: `count` evenly spaced candidates shifted by a random offset
/// at each cycle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracksSpec {
    /// Observations per cycle.
    pub count: usize,
}

impl SpecDoc for TracksSpec {
    const DOC: &'static str = "count evenly spaced candidates shifted together by a random offset each cycle (satellite-like tracks on a grid, DAPPER's QG observations)";
    const KEYS: &'static [SpecKey] = &[req("count", "integer ≥ 1", "observations per cycle", "10")];
}

impl NetworkSpec for TracksSpec {
    fn check(&self) -> Result<(), KeyError> {
        check_count(self.count)
    }
    fn moving(&self) -> bool {
        true
    }
    fn init(&self, ctx: &BuildContext<'_>, candidates: &[Candidate]) -> Result<Sites, KeyError> {
        counted(self.count, ctx, candidates, TrackChoice::new)
    }
}

/// `swath`: every candidate in a band that moves across the domain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwathSpec {
    /// Width across the track (distance units of the geometry).
    pub width: f64,
    /// Direction of the track, degrees anticlockwise from the x axis.
    #[serde(default)]
    pub angle: f64,
    /// How far the track moves across itself each cycle (default: the
    /// width, so successive swaths tile the domain).
    #[serde(default)]
    pub shift: Option<f64>,
}

impl SpecDoc for SwathSpec {
    const DOC: &'static str = "every candidate within width/2 of a straight ground track at angle degrees (anticlockwise from x), which moves shift across itself each cycle from a seeded start and wraps round (a polar orbiter's passes); 2-D models only";
    const KEYS: &'static [SpecKey] = &[
        req(
            "width",
            "number > 0, the geometry's distance units (m on a grid)",
            "width across the track",
            "4.0",
        ),
        opt("angle", "degrees", "direction of the track (default 0)"),
        opt(
            "shift",
            "number ≥ 0, distance",
            "how far the track moves each cycle (default: the width)",
        ),
    ];
}

impl NetworkSpec for SwathSpec {
    fn check(&self) -> Result<(), KeyError> {
        if !(self.width > 0.0 && self.width.is_finite()) {
            return Err(key_error(
                "width",
                format!("must be a positive distance, got {}", self.width),
            ));
        }
        if !self.angle.is_finite() {
            return Err(key_error(
                "angle",
                format!("must be a number of degrees, got {}", self.angle),
            ));
        }
        if let Some(shift) = self.shift
            && !(shift >= 0.0 && shift.is_finite())
        {
            return Err(key_error(
                "shift",
                format!("must be a non-negative distance, got {shift}"),
            ));
        }
        Ok(())
    }
    fn moving(&self) -> bool {
        true
    }
    fn init(&self, ctx: &BuildContext<'_>, candidates: &[Candidate]) -> Result<Sites, KeyError> {
        if !ctx.geometry.fields.iter().any(|f| f.shape.len() == 2) {
            return Err(key_error(
                "kind",
                "\"swath\" sweeps a band across a 2-D grid, and this model has no 2-D field (use \"random\", \"every\" or \"tracks\")",
            ));
        }
        let locations: Vec<_> = candidates.iter().map(|c| c.location).collect();
        let choice = SwathChoice::new(
            &locations,
            self.width,
            self.angle,
            self.shift.unwrap_or(self.width),
            ctx.seed,
            &ctx.stream_prefix,
        )
        .map_err(|why| key_error("width", why))?;
        Ok(Sites::Choose(Box::new(choice)))
    }
}
