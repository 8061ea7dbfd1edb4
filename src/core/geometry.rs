//! Where the state variables sit: fields with names, units, shapes, grid
//! positions, coordinates and masks.
//!
//! At the DA seam a state batch is a `[members, n]` tensor. The geometry
//! defines what the `n` columns are: the fields in order, each laid out
//! row-major over its shape (`[nx]` for a chain, `[ny, nx]` for a grid), so
//! field `k` occupies columns `offset(k)..offset(k) + len(k)`. DA code asks
//! the geometry for locations and distances (localisation); the output
//! writer asks it for names, units, shapes and coordinates.

use ndarray::{ArrayView, ArrayViewMut, IxDyn};

/// A point in model space, `[x, y]`; one-dimensional models use `x` only.
pub type Location = [f64; 2];

/// Where a field's points sit in a grid cell (Arakawa staggering).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GridPosition {
    /// Cell centres (tracers, Arakawa A/B/C `T` points).
    #[default]
    Centre,
    /// Centres of the cell faces normal to x (C-grid `u` points).
    FaceX,
    /// Centres of the cell faces normal to y (C-grid `v` points).
    FaceY,
    /// Cell corners (B-grid velocities, vorticity points).
    Corner,
}

impl GridPosition {
    /// The CF-style name used in output attributes.
    pub fn name(self) -> &'static str {
        match self {
            GridPosition::Centre => "centre",
            GridPosition::FaceX => "face_x",
            GridPosition::FaceY => "face_y",
            GridPosition::Corner => "corner",
        }
    }
}

/// The coordinates of a field's points.
#[derive(Clone, Debug, PartialEq)]
pub enum Coordinates {
    /// A rectilinear grid: one coordinate per column (`x`, length `nx`) and
    /// per row (`y`, length `ny`, empty for a one-dimensional field).
    Axes {
        /// Coordinate of each column.
        x: Vec<f64>,
        /// Coordinate of each row.
        y: Vec<f64>,
    },
    /// One location per point, for unstructured or curvilinear layouts.
    Points(Vec<Location>),
}

/// The units of the coordinates, CF style.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CoordinateUnits {
    /// Dimensionless model units (grid indices of toy models).
    #[default]
    Model,
    /// Metres on a projected plane.
    Metres,
    /// Longitude (x) and latitude (y) in degrees.
    Degrees,
}

impl CoordinateUnits {
    /// The CF `units` of the x and y coordinates.
    pub fn cf_units(&self) -> (&'static str, &'static str) {
        match self {
            CoordinateUnits::Model => ("1", "1"),
            CoordinateUnits::Metres => ("m", "m"),
            CoordinateUnits::Degrees => ("degrees_east", "degrees_north"),
        }
    }
}

/// One field of the state: a named, gridded variable.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    /// Short name, used as the NetCDF variable name (e.g. `"x"`, `"sic"`).
    pub name: String,
    /// Long name for output.
    pub long_name: String,
    /// CF units (`"1"` for dimensionless).
    pub units: String,
    /// Shape, slowest axis first: `[nx]` or `[ny, nx]`.
    pub shape: Vec<usize>,
    /// Position in the grid cell.
    pub position: GridPosition,
    /// Coordinates of the points.
    pub coordinates: Coordinates,
    /// Active points (`true` = ocean, or any point the model updates);
    /// `None` when every point is active.
    pub mask: Option<Vec<bool>>,
}

impl Field {
    /// A one-dimensional field of `n` points at positions `0..n`.
    pub fn chain(name: &str, long_name: &str, n: usize) -> Self {
        Self {
            name: name.to_string(),
            long_name: long_name.to_string(),
            units: "1".to_string(),
            shape: vec![n],
            position: GridPosition::Centre,
            coordinates: Coordinates::Axes {
                x: (0..n).map(|i| i as f64).collect(),
                y: Vec::new(),
            },
            mask: None,
        }
    }

    /// A `[ny, nx]` field on a rectilinear grid with the given axes.
    pub fn grid(name: &str, long_name: &str, units: &str, x: Vec<f64>, y: Vec<f64>) -> Self {
        Self {
            name: name.to_string(),
            long_name: long_name.to_string(),
            units: units.to_string(),
            shape: vec![y.len(), x.len()],
            position: GridPosition::Centre,
            coordinates: Coordinates::Axes { x, y },
            mask: None,
        }
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the field has no points.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The location of point `i` (row-major over the shape).
    pub fn location(&self, i: usize) -> Location {
        match &self.coordinates {
            Coordinates::Axes { x, y } => {
                let nx = x.len();
                if y.is_empty() {
                    [x[i], 0.0]
                } else {
                    [x[i % nx], y[i / nx]]
                }
            }
            Coordinates::Points(points) => points[i],
        }
    }

    /// Whether point `i` is active (not masked out).
    pub fn is_active(&self, i: usize) -> bool {
        self.mask.as_ref().is_none_or(|m| m[i])
    }

    /// Checks that shape, coordinates and mask agree.
    pub fn check(&self) -> Result<(), String> {
        let n = self.len();
        if self.shape.is_empty() || self.shape.len() > 2 {
            return Err(format!(
                "field `{}`: shape {:?} must have one or two axes",
                self.name, self.shape
            ));
        }
        match &self.coordinates {
            Coordinates::Axes { x, y } => {
                let expected = if self.shape.len() == 1 {
                    (vec![self.shape[0]], 0)
                } else {
                    (vec![self.shape[1]], self.shape[0])
                };
                if x.len() != expected.0[0] || y.len() != expected.1 {
                    return Err(format!(
                        "field `{}`: axes of lengths ({}, {}) do not fit shape {:?}",
                        self.name,
                        x.len(),
                        y.len(),
                        self.shape
                    ));
                }
            }
            Coordinates::Points(p) if p.len() != n => {
                return Err(format!(
                    "field `{}`: {} locations for {n} points",
                    self.name,
                    p.len()
                ));
            }
            Coordinates::Points(_) => {}
        }
        if let Some(m) = &self.mask
            && m.len() != n
        {
            return Err(format!(
                "field `{}`: mask of {} values for {n} points",
                self.name,
                m.len()
            ));
        }
        Ok(())
    }
}

/// The layout of a model state: its fields, in order, and the periodicity
/// of the domain.
#[derive(Clone, Debug, PartialEq)]
pub struct Geometry {
    /// The fields, in the order of their columns in the flat state.
    pub fields: Vec<Field>,
    /// Period of each axis (`[x, y]`), `None` where the axis is not periodic.
    pub period: [Option<f64>; 2],
    /// Units of the coordinates.
    pub coordinate_units: CoordinateUnits,
    offsets: Vec<usize>,
}

impl Geometry {
    /// A geometry from its fields.
    ///
    /// # Panics
    /// If a field's shape, coordinates and mask disagree (a model's own
    /// construction bug, not a user error).
    pub fn new(fields: Vec<Field>, period: [Option<f64>; 2], units: CoordinateUnits) -> Self {
        for f in &fields {
            if let Err(e) = f.check() {
                panic!("inconsistent geometry: {e}");
            }
        }
        let mut offsets = Vec::with_capacity(fields.len() + 1);
        let mut total = 0;
        for f in &fields {
            offsets.push(total);
            total += f.len();
        }
        offsets.push(total);
        Self {
            fields,
            period,
            coordinate_units: units,
            offsets,
        }
    }

    /// A one-dimensional chain of `n` variables at positions `0..n`,
    /// periodic if `periodic`, as one field named `name`.
    pub fn chain(n: usize, periodic: bool, name: &str) -> Self {
        Self::new(
            vec![Field::chain(name, "state variable", n)],
            [periodic.then_some(n as f64), None],
            CoordinateUnits::Model,
        )
    }

    /// Number of state variables (all fields).
    pub fn size(&self) -> usize {
        self.offsets[self.fields.len()]
    }

    /// First column of field `k` in the flat state.
    pub fn offset(&self, k: usize) -> usize {
        self.offsets[k]
    }

    /// The field and the index within it of flat column `i`.
    pub fn field_of(&self, i: usize) -> (usize, usize) {
        let k = self.offsets.partition_point(|&o| o <= i) - 1;
        (k, i - self.offsets[k])
    }

    /// The field named `name`, with its index.
    pub fn field(&self, name: &str) -> Option<(usize, &Field)> {
        self.fields.iter().enumerate().find(|(_, f)| f.name == name)
    }

    /// As [`Geometry::field`], with the reason for an unknown name (the
    /// fields there are).
    pub fn field_named(&self, name: &str) -> Result<(usize, &Field), String> {
        self.field(name).ok_or_else(|| {
            let known: Vec<&str> = self.fields.iter().map(|f| f.name.as_str()).collect();
            format!(
                "the model has no field `{name}` (it has: {})",
                known.join(", ")
            )
        })
    }

    /// The location of flat column `i`.
    pub fn location(&self, i: usize) -> Location {
        let (k, j) = self.field_of(i);
        self.fields[k].location(j)
    }

    /// Locations of every column, in order.
    pub fn locations(&self) -> impl Iterator<Item = Location> + '_ {
        self.fields
            .iter()
            .flat_map(|f| (0..f.len()).map(move |j| f.location(j)))
    }

    /// Whether flat column `i` is active (not masked out).
    pub fn is_active(&self, i: usize) -> bool {
        let (k, j) = self.field_of(i);
        self.fields[k].is_active(j)
    }

    /// Whether any field has a mask.
    pub fn has_mask(&self) -> bool {
        self.fields.iter().any(|f| f.mask.is_some())
    }

    /// Euclidean distance, wrapped on periodic axes.
    pub fn distance(&self, a: &Location, b: &Location) -> f64 {
        let mut sum = 0.0;
        for axis in 0..2 {
            let mut d = (a[axis] - b[axis]).abs();
            if let Some(period) = self.period[axis] {
                d %= period;
                d = d.min(period - d);
            }
            sum += d * d;
        }
        sum.sqrt()
    }

    /// Field `k` of one flat state, as an n-dimensional array view.
    pub fn view<'a>(&self, state: &'a [f64], k: usize) -> ArrayView<'a, f64, IxDyn> {
        let f = &self.fields[k];
        let o = self.offsets[k];
        ArrayView::from_shape(IxDyn(&f.shape), &state[o..o + f.len()])
            .expect("field length equals its shape's product")
    }

    /// Field `k` of one flat state, mutable.
    pub fn view_mut<'a>(&self, state: &'a mut [f64], k: usize) -> ArrayViewMut<'a, f64, IxDyn> {
        let f = &self.fields[k];
        let o = self.offsets[k];
        ArrayViewMut::from_shape(IxDyn(&f.shape), &mut state[o..o + f.len()])
            .expect("field length equals its shape's product")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_distance_wraps() {
        let g = Geometry::chain(40, true, "x");
        assert_eq!(g.distance(&[0.0, 0.0], &[39.0, 0.0]), 1.0);
        assert_eq!(g.distance(&[5.0, 0.0], &[25.0, 0.0]), 20.0);
        let open = Geometry::chain(40, false, "x");
        assert_eq!(open.distance(&[0.0, 0.0], &[39.0, 0.0]), 39.0);
    }

    #[test]
    fn fields_define_the_flat_layout() {
        let u = Field {
            position: GridPosition::FaceX,
            ..Field::grid(
                "u",
                "velocity",
                "m s-1",
                vec![0.0, 1.0, 2.0],
                vec![0.5, 1.5],
            )
        };
        let mut h = Field::grid("h", "thickness", "m", vec![0.5, 1.5], vec![0.5, 1.5]);
        h.mask = Some(vec![true, false, true, true]);
        let g = Geometry::new(vec![u, h], [None, None], CoordinateUnits::Metres);
        assert_eq!(g.size(), 6 + 4);
        assert_eq!(g.offset(1), 6);
        assert_eq!(g.field_of(7), (1, 1));
        assert_eq!(g.location(4), [1.0, 1.5]);
        assert_eq!(g.location(7), [1.5, 0.5]);
        assert!(!g.is_active(7) && g.is_active(0));
        let state: Vec<f64> = (0..10).map(f64::from).collect();
        let h_view = g.view(&state, 1);
        assert_eq!(h_view.shape(), &[2, 2]);
        assert_eq!(h_view[[1, 0]], 8.0);
        assert_eq!(g.locations().count(), 10);
    }

    #[test]
    fn inconsistent_fields_are_reported() {
        let mut f = Field::chain("x", "x", 4);
        f.mask = Some(vec![true; 3]);
        assert!(f.check().unwrap_err().contains("mask of 3"));
    }
}
