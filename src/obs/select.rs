//! `operator = { kind = "select" }`: observes grid points directly (the
//! default operator).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Selection;
use super::spec::{
    BuildContext, Candidate, KeyError, OperatorBuilder, OperatorSpec, SpecDoc, SpecKey, key_error,
};
use crate::core::{Location, ObsOperator};

/// The `select` operator: `H` reads state variables.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectSpec {}

impl SpecDoc for SelectSpec {
    const DOC: &'static str = "observes state variables directly: the candidates are every state variable, or the active points of the set's `fields`; networks choose among them (the default operator)";
    const KEYS: &'static [SpecKey] = &[];
}

/// The grid points a set may observe: every column's location, the
/// state index of each candidate, and the candidates; chosen ones are
/// observed by a selection.
pub(crate) struct GridSites {
    locations: Vec<Location>,
    indices: Vec<usize>,
    candidates: Vec<Candidate>,
}

impl GridSites {
    /// The candidates of a set: every state variable, or the active
    /// points of its named fields.
    pub(crate) fn new(ctx: &BuildContext<'_>) -> Self {
        let g = ctx.geometry;
        let locations: Vec<Location> = g.locations().collect();
        let indices = grid_candidates(ctx);
        let candidates = indices
            .iter()
            .map(|&i| Candidate {
                field: g.field_of(i).0,
                location: locations[i],
            })
            .collect();
        Self {
            locations,
            indices,
            candidates,
        }
    }

    /// The candidates.
    pub(crate) fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// The selection of candidates `chosen`.
    pub(crate) fn select(&self, chosen: &[usize], name: &str) -> Arc<dyn ObsOperator> {
        let indices = chosen.iter().map(|&c| self.indices[c]).collect();
        // Candidates are state indices: in range by construction.
        Arc::new(Selection::in_range(indices, &self.locations, name))
    }
}

struct SelectBuilder(GridSites);

/// The state indices a set may observe: every variable, or the active
/// points of its named fields, in state order.
pub(crate) fn grid_candidates(ctx: &BuildContext<'_>) -> Vec<usize> {
    let g = ctx.geometry;
    if !ctx.named_fields {
        return (0..g.size()).collect();
    }
    let mut c = Vec::new();
    for &k in &ctx.fields {
        let f = &g.fields[k];
        let offset = g.offset(k);
        c.extend((0..f.len()).filter(|&j| f.is_active(j)).map(|j| offset + j));
    }
    c.sort_unstable();
    c.dedup();
    c
}

impl OperatorSpec for SelectSpec {
    fn init(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn OperatorBuilder>, KeyError> {
        Ok(Box::new(SelectBuilder(GridSites::new(ctx))))
    }
}

impl OperatorBuilder for SelectBuilder {
    fn candidates(&self) -> &[Candidate] {
        self.0.candidates()
    }

    fn at_candidates(&self, chosen: &[usize], name: &str) -> Arc<dyn ObsOperator> {
        self.0.select(chosen, name)
    }

    fn at_points(
        &self,
        _points: &[Location],
        _name: &str,
    ) -> Result<(Arc<dyn ObsOperator>, Vec<usize>), KeyError> {
        Err(key_error(
            "operator.kind",
            "\"select\" observes grid points, and this network gives arbitrary points: use operator = { kind = \"bilinear\" } to interpolate to them",
        ))
    }
}
