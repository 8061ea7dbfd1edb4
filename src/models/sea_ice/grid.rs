//! The Arakawa B grid of the sea-ice model and its stencils, in burn ops
//! over `[members, rows, columns]` tensors.
//!
//! Tracers (thickness, concentration, stresses, damage) sit at the centres
//! of the `ny x nx` cells; both velocity components sit at the
//! `(ny + 1) x (nx + 1)` cell corners (nodes). Node `(j, i)` is at
//! `(i dx, j dy)`, cell `(j, i)` at `((i + 1/2) dx, (j + 1/2) dy)`.
//!
//! Strain rates live at the cell centres (one value per cell from its four
//! corners), and the divergence of the stress at the nodes is the negative
//! transpose of that strain-rate operator, so the discrete work of the
//! stresses equals minus their discrete dissipation. Closed walls and land
//! are no-slip: a node touching land or the outer wall is inactive and its
//! velocity stays zero, so no flux crosses a wall or a coast.

use burn::tensor::Tensor;
use burn::tensor::ops::PadMode;

use crate::core::{MapField, MapScale};

/// The grid: sizes, spacings and masks.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    /// Cells along x.
    pub nx: usize,
    /// Cells along y.
    pub ny: usize,
    /// Cell width (m).
    pub dx: f64,
    /// Cell height (m).
    pub dy: f64,
    /// Ocean cells, `ny * nx` row-major.
    pub cell_mask: Vec<bool>,
    /// Active (moving) nodes, `(ny + 1) * (nx + 1)` row-major: inside the
    /// walls with four ocean cells around.
    pub node_mask: Vec<bool>,
}

impl Grid {
    /// A grid whose land cells are those where `land(x, y)` holds at the
    /// cell centre.
    pub fn new(nx: usize, ny: usize, dx: f64, dy: f64, land: impl Fn(f64, f64) -> bool) -> Self {
        let mut cell_mask = Vec::with_capacity(nx * ny);
        for j in 0..ny {
            for i in 0..nx {
                cell_mask.push(!land((i as f64 + 0.5) * dx, (j as f64 + 0.5) * dy));
            }
        }
        let mut node_mask = Vec::with_capacity((nx + 1) * (ny + 1));
        for j in 0..=ny {
            for i in 0..=nx {
                let inside = j > 0 && j < ny && i > 0 && i < nx;
                let active = inside
                    && cell_mask[(j - 1) * nx + i - 1]
                    && cell_mask[(j - 1) * nx + i]
                    && cell_mask[j * nx + i - 1]
                    && cell_mask[j * nx + i];
                node_mask.push(active);
            }
        }
        Self {
            nx,
            ny,
            dx,
            dy,
            cell_mask,
            node_mask,
        }
    }

    /// Cells.
    pub fn cells(&self) -> usize {
        self.nx * self.ny
    }

    /// Nodes.
    pub fn nodes(&self) -> usize {
        (self.nx + 1) * (self.ny + 1)
    }

    /// Domain width (m).
    pub fn width(&self) -> f64 {
        self.nx as f64 * self.dx
    }

    /// Domain height (m).
    pub fn height(&self) -> f64 {
        self.ny as f64 * self.dy
    }

    /// x of cell centres (m).
    pub fn cell_x(&self) -> Vec<f64> {
        (0..self.nx).map(|i| (i as f64 + 0.5) * self.dx).collect()
    }

    /// y of cell centres (m).
    pub fn cell_y(&self) -> Vec<f64> {
        (0..self.ny).map(|j| (j as f64 + 0.5) * self.dy).collect()
    }

    /// x of nodes (m).
    pub fn node_x(&self) -> Vec<f64> {
        (0..=self.nx).map(|i| i as f64 * self.dx).collect()
    }

    /// y of nodes (m).
    pub fn node_y(&self) -> Vec<f64> {
        (0..=self.ny).map(|j| j as f64 * self.dy).collect()
    }

    /// A map of a cell field `[ny * nx]`, drawn on the ocean cells.
    pub(crate) fn cell_map(
        &self,
        name: &str,
        long_name: &str,
        units: &str,
        values: Vec<f64>,
        scale: MapScale,
    ) -> MapField {
        MapField {
            name: name.to_string(),
            long_name: long_name.to_string(),
            units: units.to_string(),
            x: self.cell_x(),
            y: self.cell_y(),
            values,
            mask: Some(self.cell_mask.clone()),
            scale,
        }
    }

    /// Ocean cells as ones and zeros, `ny * nx` row-major.
    pub(crate) fn cell_weights(&self) -> Vec<f64> {
        ones_and_zeros(&self.cell_mask)
    }

    /// Active nodes as ones and zeros, `(ny + 1) * (nx + 1)` row-major.
    pub(crate) fn node_weights(&self) -> Vec<f64> {
        ones_and_zeros(&self.node_mask)
    }

    /// The mean at the cell centres of a node field `[m, ny + 1, nx + 1]`
    /// over the four corners of each cell.
    pub(crate) fn node_to_cell(&self, n: &Tensor<3>) -> Tensor<3> {
        let (ny, nx) = (self.ny, self.nx);
        let corner = |j: usize, i: usize| n.clone().narrow(1, j, ny).narrow(2, i, nx);
        (corner(0, 0) + corner(0, 1) + corner(1, 0) + corner(1, 1)) * 0.25
    }

    /// The x and y derivatives at the cell centres of a node field
    /// `[m, ny + 1, nx + 1]`: each the mean of the two differences across
    /// the cell.
    pub(crate) fn node_gradient(&self, f: &Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let (ny, nx) = (self.ny, self.nx);
        let corner = |j: usize, i: usize| f.clone().narrow(1, j, ny).narrow(2, i, nx);
        // ne - sw and se - nw.
        let p = corner(1, 1) - corner(0, 0);
        let q = corner(0, 1) - corner(1, 0);
        let ddx = (p.clone() + q.clone()) * (0.5 / self.dx);
        let ddy = (p - q) * (0.5 / self.dy);
        (ddx, ddy)
    }

    /// The divergence of the stress at the nodes,
    /// `(dx sxx + dy sxy, dx sxy + dy syy)`, with the derivatives of cell
    /// fields at the nodes the negative transpose of
    /// [`node_gradient`](Self::node_gradient) (cells outside the domain count
    /// as zero). Values at inactive nodes are meaningless (mask them).
    pub(crate) fn stress_divergence(
        &self,
        sxx: Tensor<3>,
        syy: Tensor<3>,
        sxy: Tensor<3>,
    ) -> (Tensor<3>, Tensor<3>) {
        let (ny, nx) = (self.ny, self.nx);
        // (ne - sw, se - nw) around every node.
        let diagonals = |c: Tensor<3>| {
            let padded = c.pad((1, 1, 1, 1), PadMode::Constant(0.0));
            let cell =
                |j: usize, i: usize| padded.clone().narrow(1, j, ny + 1).narrow(2, i, nx + 1);
            (cell(1, 1) - cell(0, 0), cell(0, 1) - cell(1, 0))
        };
        let ((pxx, qxx), (pxy, qxy), (pyy, qyy)) = (diagonals(sxx), diagonals(sxy), diagonals(syy));
        let (kx, ky) = (0.5 / self.dx, 0.5 / self.dy);
        let fx = (pxx + qxx) * kx + (pxy.clone() - qxy.clone()) * ky;
        let fy = (pxy + qxy) * kx + (pyy - qyy) * ky;
        (fx, fy)
    }

    /// The mean at the nodes of a cell field over the four cells around
    /// each node (cells outside the domain count as zero).
    pub(crate) fn cell_to_node(&self, c: Tensor<3>) -> Tensor<3> {
        let (ny, nx) = (self.ny, self.nx);
        let padded = c.pad((1, 1, 1, 1), PadMode::Constant(0.0));
        let cell = |j: usize, i: usize| padded.clone().narrow(1, j, ny + 1).narrow(2, i, nx + 1);
        (cell(0, 0) + cell(0, 1) + cell(1, 0) + cell(1, 1)) * 0.25
    }

    /// Face-normal velocities from node velocities: `u` on the `ny x (nx +
    /// 1)` faces normal to x, `v` on the `(ny + 1) x nx` faces normal to y,
    /// each the mean of the face's two end nodes.
    pub(crate) fn face_velocities(&self, u: &Tensor<3>, v: &Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let (ny, nx) = (self.ny, self.nx);
        let uf = (u.clone().narrow(1, 0, ny) + u.clone().narrow(1, 1, ny)) * 0.5;
        let vf = (v.clone().narrow(2, 0, nx) + v.clone().narrow(2, 1, nx)) * 0.5;
        (uf, vf)
    }

    /// The change of a cell quantity `q` over `dt` by first-order upwind
    /// fluxes through the faces with normal velocities `uf`, `vf` (from
    /// [`face_velocities`](Self::face_velocities)): conservative (what
    /// leaves a cell enters its neighbour; nothing crosses a wall, where
    /// the face velocity is zero) and positive while `dt (|u|/dx + |v|/dy)
    /// <= 1`.
    pub(crate) fn upwind_increment(
        &self,
        q: &Tensor<3>,
        uf: &Tensor<3>,
        vf: &Tensor<3>,
        dt: f64,
    ) -> Tensor<3> {
        let (ny, nx) = (self.ny, self.nx);
        let (u_pos, u_neg) = (uf.clone().clamp_min(0.0), uf.clone().clamp_max(0.0));
        let (v_pos, v_neg) = (vf.clone().clamp_min(0.0), vf.clone().clamp_max(0.0));
        let qx = q.clone().pad((1, 1, 0, 0), PadMode::Constant(0.0));
        let flux_x = u_pos * qx.clone().narrow(2, 0, nx + 1) + u_neg * qx.narrow(2, 1, nx + 1);
        let qy = q.clone().pad((0, 0, 1, 1), PadMode::Constant(0.0));
        let flux_y = v_pos * qy.clone().narrow(1, 0, ny + 1) + v_neg * qy.narrow(1, 1, ny + 1);
        let div_x = flux_x.clone().narrow(2, 1, nx) - flux_x.narrow(2, 0, nx);
        let div_y = flux_y.clone().narrow(1, 1, ny) - flux_y.narrow(1, 0, ny);
        div_x * (-dt / self.dx) + div_y * (-dt / self.dy)
    }
}

fn ones_and_zeros(mask: &[bool]) -> Vec<f64> {
    mask.iter().map(|&m| if m { 1.0 } else { 0.0 }).collect()
}
