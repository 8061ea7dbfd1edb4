//! `operator = { kind = "learned", checkpoint = "..." }`: a trained
//! downscaling emulator (`learned::downscaling`) as the observation
//! operator. The set's fields are the coarse predictors; `H` runs the
//! network on each member and reads its fine field at the sites (fine grid
//! points, or stations interpolated bilinearly on the fine grid). Burn ops
//! throughout, so 4D-Var differentiates through the network (its weights
//! are constants; gradients flow to the state). The network's own error
//! (its validation RMSE per fine point, or the Bernoulli-gamma spread)
//! enters R through `error_std` unless `network_error = false`.

use std::path::PathBuf;
use std::sync::Arc;

use burn::tensor::{DType, FloatDType, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::bilinear::bracket;
use super::spec::{
    BuildContext, Candidate, KeyError, OperatorBuilder, OperatorSpec, SpecDoc, SpecKey,
    StaticField, key_error, resolve,
};
use crate::core::{Coordinates, Location, ObsOperator};
use crate::learned::downscaling::Downscaler;

/// The `learned` operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnedSpec {
    /// The downscaling checkpoint (`rime train` with a `[downscaling]`
    /// table), relative to the experiment file's folder.
    pub checkpoint: PathBuf,
    /// Whether the network's own error enters R (default true).
    #[serde(default = "yes")]
    pub network_error: bool,
}

fn yes() -> bool {
    true
}

impl SpecDoc for LearnedSpec {
    const DOC: &'static str = "a trained downscaling emulator (a U-Net from the set's coarse fields to a fine field, `rime train` with [downscaling]) as H: candidates are the fine grid's points, stations and points are interpolated bilinearly on the fine grid; differentiable (4D-Var goes through the network); its validation error per fine point is added to R";
    const KEYS: &'static [SpecKey] = &[
        SpecKey {
            key: "checkpoint",
            kind: "path",
            doc: "the downscaling checkpoint (downscaling.ckpt), relative to the experiment file; trained on predictors named as the set's fields, on the model's grid",
            required: Some("\"../out/downscaling_temperature/downscaling.ckpt\""),
        },
        SpecKey {
            key: "network_error",
            kind: "bool",
            doc: "add the network's own error (validation RMSE per fine point, or the Bernoulli-gamma spread) to R in quadrature (default true)",
            required: None,
        },
    ];
}

impl OperatorSpec for LearnedSpec {
    fn init(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn OperatorBuilder>, KeyError> {
        let path = resolve(ctx.base, &self.checkpoint);
        let ds = Downscaler::load(&path, ctx.device).map_err(|e| key_error("checkpoint", e))?;
        let h = &ds.header;
        let g = ctx.geometry;
        let names: Vec<&str> = ctx
            .fields
            .iter()
            .map(|&k| g.fields[k].name.as_str())
            .collect();
        if names != h.predictor_names {
            return Err(key_error(
                "checkpoint",
                format!(
                    "{} was trained on the predictors {:?}; the set observes the fields {names:?} (name them with fields = [...], in the checkpoint's order)",
                    path.display(),
                    h.predictor_names
                ),
            ));
        }
        if !h.scalar_names.is_empty() {
            return Err(key_error(
                "checkpoint",
                format!(
                    "{} takes the scalars {:?}, which a DA state does not carry; train the operator without scalars",
                    path.display(),
                    h.scalar_names
                ),
            ));
        }
        for &k in &ctx.fields {
            let f = &g.fields[k];
            let close = |a: &[f64], b: &[f64]| {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|(x, y)| (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0))
            };
            let fits = match &f.coordinates {
                Coordinates::Axes { x, y } => {
                    close(x, &h.shapes.coarse_x) && close(y, &h.shapes.coarse_y)
                }
                _ => false,
            };
            if !fits {
                return Err(key_error(
                    "checkpoint",
                    format!(
                        "{} was trained on a {} x {} coarse grid; field `{}` is not on it (shape {:?})",
                        path.display(),
                        h.shapes.coarse_y.len(),
                        h.shapes.coarse_x.len(),
                        f.name,
                        f.shape
                    ),
                ));
            }
            if f.mask.is_some() {
                return Err(key_error(
                    "fields",
                    format!(
                        "\"learned\" reads whole fields, and `{}` has a mask",
                        f.name
                    ),
                ));
            }
        }
        let (fx, fy) = (h.shapes.fine_x.clone(), h.shapes.fine_y.clone());
        let field = ctx.fields[0];
        let candidates = fy
            .iter()
            .flat_map(|&y| fx.iter().map(move |&x| [x, y]))
            .map(|location| Candidate { field, location })
            .collect();
        let error = if self.network_error {
            Some(h.error_std.iter().map(|&v| f64::from(v)).collect())
        } else {
            None
        };
        let offsets = ctx.fields.iter().map(|&k| g.offset(k)).collect();
        Ok(Box::new(LearnedBuilder {
            net: Arc::new(ds),
            offsets,
            fine: [fx, fy],
            candidates,
            error,
        }))
    }
}

struct LearnedBuilder {
    net: Arc<Downscaler>,
    offsets: Vec<usize>,
    fine: [Vec<f64>; 2],
    candidates: Vec<Candidate>,
    error: Option<Vec<f64>>,
}

impl LearnedBuilder {
    fn operator(
        &self,
        rows: Vec<Vec<(usize, f64)>>,
        sites: Vec<Location>,
        name: &str,
    ) -> Arc<dyn ObsOperator> {
        let error_std = self.error.as_ref().map(|e| {
            rows.iter()
                .map(|r| r.iter().map(|&(i, w)| w * e[i]).sum())
                .collect()
        });
        Arc::new(LearnedObs {
            net: Arc::clone(&self.net),
            offsets: self.offsets.clone(),
            rows,
            sites,
            error_std,
            name: name.to_string(),
        })
    }
}

impl OperatorBuilder for LearnedBuilder {
    fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    fn at_candidates(&self, chosen: &[usize], name: &str) -> Arc<dyn ObsOperator> {
        let rows = chosen.iter().map(|&c| vec![(c, 1.0)]).collect();
        let sites = chosen
            .iter()
            .map(|&c| self.candidates[c].location)
            .collect();
        self.operator(rows, sites, name)
    }

    fn at_points(
        &self,
        points: &[Location],
        name: &str,
    ) -> Result<(Arc<dyn ObsOperator>, Vec<usize>), KeyError> {
        let [fx, fy] = &self.fine;
        let nx = fx.len();
        let mut rows = Vec::with_capacity(points.len());
        for (k, p) in points.iter().enumerate() {
            let (Some((i0, i1, sx)), Some((j0, j1, sy))) =
                (bracket(fx, None, p[0]), bracket(fy, None, p[1]))
            else {
                return Err(key_error(
                    "network",
                    format!(
                        "point {k} at {p:?} lies outside the emulator's fine grid ({}..{} x {}..{})",
                        fx[0],
                        fx[nx - 1],
                        fy[0],
                        fy[fy.len() - 1]
                    ),
                ));
            };
            rows.push(vec![
                (j0 * nx + i0, (1.0 - sx) * (1.0 - sy)),
                (j0 * nx + i1, sx * (1.0 - sy)),
                (j1 * nx + i0, (1.0 - sx) * sy),
                (j1 * nx + i1, sx * sy),
            ]);
        }
        let field = self.candidates[0].field;
        Ok((
            self.operator(rows, points.to_vec(), name),
            vec![field; points.len()],
        ))
    }

    fn static_fields(&self) -> Vec<StaticField> {
        let h = &self.net.header;
        let nf = self.candidates.len();
        h.static_names
            .iter()
            .enumerate()
            .map(|(c, name)| StaticField {
                name: name.clone(),
                units: String::new(),
                values: h.statics[c * nf..(c + 1) * nf]
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect(),
            })
            .collect()
    }
}

/// The learned operator at its sites.
struct LearnedObs {
    net: Arc<Downscaler>,
    offsets: Vec<usize>,
    /// Per observation: (fine point, weight).
    rows: Vec<Vec<(usize, f64)>>,
    sites: Vec<Location>,
    error_std: Option<Vec<f64>>,
    name: String,
}

impl ObsOperator for LearnedObs {
    fn apply(&self, state: Tensor<2>, _time: f64) -> Tensor<2> {
        let dtype = match state.dtype() {
            DType::F32 => FloatDType::F32,
            _ => FloatDType::F64,
        };
        let device = state.device();
        let nc = self.net.header.shapes.coarse_x.len() * self.net.header.shapes.coarse_y.len();
        let parts: Vec<Tensor<2>> = self
            .offsets
            .iter()
            .map(|&o| state.clone().narrow(1, o, nc))
            .collect();
        let x = if parts.len() == 1 {
            parts.into_iter().next().expect("one field")
        } else {
            Tensor::cat(parts, 1)
        };
        let (fine, _) = self.net.predict(x, None);
        // The rows as corner columns: every row padded to the longest.
        let width = self.rows.iter().map(Vec::len).max().unwrap_or(1);
        let p = self.rows.len();
        let mut y: Option<Tensor<2>> = None;
        for c in 0..width {
            let idx: Vec<i64> = self
                .rows
                .iter()
                .map(|r| r.get(c).map_or(0, |&(i, _)| i as i64))
                .collect();
            let w: Vec<f32> = self
                .rows
                .iter()
                .map(|r| r.get(c).map_or(0.0, |&(_, w)| w as f32))
                .collect();
            let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [p]), &device);
            let w = crate::learned::net::f32_tensor(w, [1, p], &device);
            let term = fine.clone().select(1, idx) * w;
            y = Some(match y {
                Some(acc) => acc + term,
                None => term,
            });
        }
        y.expect("at least one column").cast(dtype)
    }

    fn size(&self) -> usize {
        self.rows.len()
    }

    fn locations(&self) -> &[Location] {
        &self.sites
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn error_std(&self, _time: f64) -> Option<Vec<f64>> {
        self.error_std.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{CoordinateUnits, Field, Geometry};
    use crate::device::{cpu_f64, cpu_f64_autodiff, tensor_from_rows, to_vec};
    use crate::learned::downscaling::tests::{small_config, synthetic};
    use crate::learned::downscaling::{Loss, train_on};
    use crate::obs::spec::OperatorSpec;
    use burn::tensor::Device;
    use std::path::Path;

    fn geometry(name: &str, n: usize) -> Geometry {
        let axis: Vec<f64> = (0..n).map(|i| i as f64).collect();
        Geometry::new(
            vec![Field::grid(name, name, "1", axis.clone(), axis)],
            [None, None],
            CoordinateUnits::Model,
        )
    }

    /// A build context for the set observing field 0 of `g`.
    fn context<'a>(g: &'a Geometry, device: &'a Device, base: &'a Path) -> BuildContext<'a> {
        BuildContext {
            geometry: g,
            device,
            seed: 0,
            stream_prefix: String::new(),
            base,
            fields: vec![0],
            named_fields: true,
        }
    }

    /// Trains the small synthetic emulator (MSE, two epochs) into `dir`.
    fn train_small(data: &crate::learned::downscaling::DownscalingData, dir: &Path) {
        train_on(
            &small_config(Loss::Mse, 2),
            data,
            "synthetic",
            Path::new("t.toml"),
            dir,
            false,
        )
        .unwrap();
    }

    /// 4D-Var through the network: a window of the QG model (9 x 9) whose
    /// stations are observed by a learned operator at two cycles. The
    /// gradient of `J_o` (burn autodiff through the network and the QG steps,
    /// taped and checkpointed) matches centred differences, and the
    /// operator's adjoint (autodiff) passes the dot-product test against its
    /// tangent linear (centred differences). The network runs in f32, so
    /// the differences use a step of 1e-2 and the tolerances are 1e-3.
    #[test]
    fn four_d_var_differentiates_through_the_learned_operator() {
        use crate::core::{Model, ObsBatch, ObsError};
        use crate::da::var::GradientStrategy;
        use crate::da::var::window::Window;
        use crate::models::QgConfig;
        use crate::rng::{standard_normal, stream};
        use nalgebra::DVector;

        let dir = std::env::temp_dir().join(format!("rime-learned-4dvar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // The synthetic emulator on the QG grid's coordinates ([0, 1]).
        let mut data = synthetic(40);
        for v in data
            .coarse_x
            .iter_mut()
            .chain(data.coarse_y.iter_mut())
            .chain(data.fine_x.iter_mut())
            .chain(data.fine_y.iter_mut())
        {
            *v /= 8.0;
        }
        train_small(&data, &dir);
        let model = QgConfig {
            size: 9,
            ..QgConfig::default()
        }
        .build()
        .unwrap();
        let g: &'static Geometry = Box::leak(Box::new(model.geometry().clone()));
        let spec = LearnedSpec {
            checkpoint: "downscaling.ckpt".into(),
            network_error: true,
        };
        let ad = cpu_f64_autodiff();
        let builder = spec.init(&context(g, &ad, &dir)).unwrap();
        let points = [[0.31, 0.52], [0.7, 0.2], [0.45, 0.83], [0.12, 0.4]];
        let (op, _) = builder.at_points(&points, "stations").unwrap();
        // A smooth stream function of the training data's amplitude, zero
        // on the boundary.
        let n = 81;
        let x0: Vec<f64> = (0..n)
            .map(|k| {
                let (i, j) = ((k % 9) as f64 / 8.0, (k / 9) as f64 / 8.0);
                1.5 * (std::f64::consts::PI * i).sin()
                    * (std::f64::consts::PI * j).sin()
                    * (1.0 + 0.3 * (3.0 * i + j).cos())
            })
            .collect();
        let observations = [1usize, 2]
            .iter()
            .map(|&c| {
                let y = DVector::from_vec(standard_normal(&mut stream(c as u64, "y"), 4))
                    .add_scalar(1.0);
                let time = (c * 2) as f64 * model.dt();
                (
                    c,
                    ObsBatch::new(c, time, y, ObsError::uniform(0.3, 4), op.clone(), 0),
                )
            })
            .collect();
        let window = Window {
            model: &model,
            device: cpu_f64(),
            host_path: true,
            time0: 0.0,
            steps_per_cycle: 2,
            cycles: 2,
            observations,
            model_error_std: None,
            checkpoint_steps: 1,
        };
        let dx = standard_normal(&mut stream(4, "dx"), n);
        let h = 1e-2;
        let along = |s: f64| -> Vec<f64> { x0.iter().zip(&dx).map(|(a, d)| a + s * d).collect() };
        let fd = (window.cost(&along(h), &[]) - window.cost(&along(-h), &[])) / (2.0 * h);
        for strategy in [GradientStrategy::Tape, GradientStrategy::Checkpointed] {
            let grad = window.gradient(&x0, &[], strategy).unwrap();
            let analytic: f64 = grad.x0.iter().zip(&dx).map(|(a, b)| a * b).sum();
            let rel = (fd - analytic).abs() / analytic.abs();
            assert!(
                rel < 1e-3,
                "{strategy:?}: differences {fd} vs gradient {analytic} (relative {rel:e})"
            );
        }
        // The operator alone: <H'(x) d, w> = <d, H'(x)^T w>.
        let w: Vec<f64> = standard_normal(&mut stream(6, "w"), 4);
        let xt = tensor_from_rows(&x0, 1, n, &ad).require_grad();
        let loss = (op.apply(xt.clone(), 0.0) * tensor_from_rows(&w, 1, 4, &ad)).sum();
        let htw = to_vec(xt.grad(&loss.backward()).unwrap());
        let apply = |x: &[f64]| to_vec(op.apply(tensor_from_rows(x, 1, n, &cpu_f64()), 0.0));
        let (yp, ym) = (apply(&along(h)), apply(&along(-h)));
        let lhs: f64 = yp
            .iter()
            .zip(&ym)
            .zip(&w)
            .map(|((p, m), w)| (p - m) / (2.0 * h) * w)
            .sum();
        let rhs: f64 = htw.iter().zip(&dx).map(|(a, b)| a * b).sum();
        assert!(
            (lhs - rhs).abs() < 1e-3 * lhs.abs().max(rhs.abs()),
            "tangent linear {lhs} vs adjoint {rhs}"
        );
    }

    /// The learned operator reads the emulator's field at stations
    /// (bilinear on the fine grid), carries its error into R, its gradient
    /// matches differences, and checkpoints that do not fit the set are
    /// refused naming the key.
    #[test]
    fn the_learned_operator_interpolates_differentiates_and_refuses_misfits() {
        let dir = std::env::temp_dir().join(format!("rime-learned-op-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data = synthetic(40);
        train_small(&data, &dir);
        let device = cpu_f64();
        let g = geometry("psi", 9);
        let ctx = |g: &'static Geometry| context(g, &device, &dir);
        let g: &'static Geometry = Box::leak(Box::new(g));
        let spec = LearnedSpec {
            checkpoint: "downscaling.ckpt".into(),
            network_error: true,
        };
        let builder = spec.init(&ctx(g)).unwrap();
        assert_eq!(builder.candidates().len(), 17 * 17);
        assert_eq!(builder.static_fields()[0].name, "orography");
        let points = [[1.25, 3.7], [0.0, 0.0], [8.0, 8.0]];
        let (op, fields) = builder.at_points(&points, "stations").unwrap();
        assert_eq!(fields, vec![0; 3]);
        let x: Vec<f64> = data.predictors[..2 * 81]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let y = to_vec(op.apply(tensor_from_rows(&x, 2, 81, &device), 0.0));
        let ds = Downscaler::load(&dir.join("downscaling.ckpt"), &device).unwrap();
        let fine = to_vec(ds.predict(tensor_from_rows(&x, 2, 81, &device), None).0);
        // Point 0: x = 1.25 is fine column 2.5, y = 3.7 fine row 7.4.
        let at = |m: usize, j: usize, i: usize| fine[m * 289 + j * 17 + i];
        for m in 0..2 {
            let want = 0.5 * 0.6 * at(m, 7, 2)
                + 0.5 * 0.6 * at(m, 7, 3)
                + 0.5 * 0.4 * at(m, 8, 2)
                + 0.5 * 0.4 * at(m, 8, 3);
            assert!((y[m * 3] - want).abs() < 1e-5, "{} vs {want}", y[m * 3]);
            assert!((y[m * 3 + 1] - at(m, 0, 0)).abs() < 1e-6);
            assert!((y[m * 3 + 2] - at(m, 16, 16)).abs() < 1e-6);
        }
        let e = op.error_std(0.0).unwrap();
        assert_eq!(e.len(), 3);
        assert!((e[1] - f64::from(ds.header.error_std[0])).abs() < 1e-6);
        // Gradient through the operator against differences.
        let ad = cpu_f64_autodiff();
        let builder_ad = spec.init(&context(g, &ad, &dir)).unwrap();
        let (op_ad, _) = builder_ad.at_points(&points, "stations").unwrap();
        let x0 = &x[..81];
        let w = [0.7, -1.1, 0.4];
        let f = |x: &[f64]| -> f64 {
            let y = to_vec(op.apply(tensor_from_rows(x, 1, 81, &device), 0.0));
            y.iter().zip(&w).map(|(a, b)| a * b).sum()
        };
        let xt = tensor_from_rows(x0, 1, 81, &ad).require_grad();
        let j = (op_ad.apply(xt.clone(), 0.0) * tensor_from_rows(&w, 1, 3, &ad)).sum();
        let grad = to_vec(xt.grad(&j.backward()).unwrap());
        for i in [12, 30, 64] {
            let h = 1e-2;
            let (mut p, mut q) = (x0.to_vec(), x0.to_vec());
            p[i] += h;
            q[i] -= h;
            let fd = (f(&p) - f(&q)) / (2.0 * h);
            assert!(
                (fd - grad[i]).abs() < 2e-2 * (1.0 + grad[i].abs()),
                "{i}: autodiff {} vs differences {fd}",
                grad[i]
            );
        }
        // Misfits.
        let err = |r: Result<Box<dyn OperatorBuilder>, KeyError>| r.err().unwrap();
        let (k, why) = err(spec.init(&ctx(Box::leak(Box::new(geometry("temperature", 9))))));
        assert!(
            k == "checkpoint" && why.contains("predictors"),
            "{k}: {why}"
        );
        let (k, why) = err(spec.init(&ctx(Box::leak(Box::new(geometry("psi", 11))))));
        assert!(
            k == "checkpoint" && why.contains("coarse grid"),
            "{k}: {why}"
        );
        let (k, why) = builder.at_points(&[[9.5, 1.0]], "s").err().unwrap();
        assert!(k == "network" && why.contains("outside"), "{k}: {why}");
        let missing = LearnedSpec {
            checkpoint: "nowhere.ckpt".into(),
            network_error: true,
        };
        let (k, why) = err(missing.init(&ctx(g)));
        assert!(
            k == "checkpoint" && why.contains("nowhere.ckpt"),
            "{k}: {why}"
        );
    }
}
