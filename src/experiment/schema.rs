//! The reference of every command's files (experiment files of `rime run`,
//! and those of `rime simulate`, `rime train` and `rime evaluate`): every
//! table and key with its type, default and meaning (`rime schema`, and the
//! README's reference section).
//!
//! The descriptions are written here; the rest comes from the config types
//! themselves: the defaults are read by parsing a table with only the
//! required keys and writing the parsed value back, and the tests check
//! that the documented keys are exactly those the types accept (serde's
//! own list of expected fields, or the keys a parsed method writes back),
//! and that files of the documented required keys are read by each
//! command, so the reference cannot drift from the code.

use super::config::{InitialConfig, InitialSample, LegacyObservations, OutputConfig, RunConfig};
use super::registry::read_json;
use crate::da::MethodConfig;
use crate::learned::data::{ExpectedRange, SimulateSettings};
use crate::learned::evaluate::EvaluateSettings;
use crate::learned::generative::GenerativeConfig;
use crate::learned::hybrid::HybridConfig;
use crate::learned::net::Architecture;
use crate::learned::train::{DataConfig, TrainingSettings};
use crate::obs::set::SetKeys;
use crate::obs::spec::{SpecEntry, SpecKey};

/// One key: name, type, meaning, and for a required key an example value
/// (TOML) used to read the defaults of the others.
#[derive(Clone, Copy, Debug)]
pub struct KeyDoc {
    /// The key.
    pub key: &'static str,
    /// Its type and unit, in words.
    pub kind: &'static str,
    /// What it does.
    pub doc: &'static str,
    /// `Some(example)` when the key is required.
    pub required: Option<&'static str>,
}

const fn key(key: &'static str, kind: &'static str, doc: &'static str) -> KeyDoc {
    KeyDoc {
        key,
        kind,
        doc,
        required: None,
    }
}

const fn required(
    key: &'static str,
    kind: &'static str,
    doc: &'static str,
    example: &'static str,
) -> KeyDoc {
    KeyDoc {
        key,
        kind,
        doc,
        required: Some(example),
    }
}

/// How a table is read, to find its defaults and accepted keys.
#[derive(Clone, Copy, Debug)]
pub enum Reader {
    /// A plain table read by a config type.
    Struct(fn(toml::Table) -> Result<serde_json::Value, String>),
    /// `[model]` (or `[forecast_model]`) with this `name`.
    Model(&'static str),
    /// `[[methods]]` with this `name`.
    Method(&'static str),
    /// The keys every entry of a list takes besides (or before) those of
    /// the table it names, taken out by the file's reader: `label` and
    /// `name` of `[[methods]]` and `[[models]]`. These keys, read by no
    /// config type, are checked by parsing whole files in the tests.
    Entry(&'static [&'static str]),
}

/// One table of the file.
#[derive(Clone, Debug)]
pub struct TableDoc {
    /// How it is written, e.g. `[run]` or `[model] name = "lorenz96"`.
    pub header: &'static str,
    /// What it is.
    pub doc: &'static str,
    /// Its keys.
    pub keys: Vec<KeyDoc>,
    /// How it is read.
    pub reader: Reader,
}

const INTEGRATOR: KeyDoc = key(
    "integrator",
    "\"euler\", \"heun\" or \"rk4\"",
    "time-stepping scheme (orders 1, 2, 4)",
);
const NOISE: KeyDoc = key(
    "noise_std",
    "number ≥ 0, per unit time",
    "additive model noise: each step adds noise_std · sqrt(dt) · N(0, I), drawn per member and step from the seed (a stochastic model)",
);
const DT: KeyDoc = key("dt", "number > 0, model time", "model time step");

fn ensemble_keys(letkf: bool, ensrf: bool) -> Vec<KeyDoc> {
    let mut keys = vec![
        required("ensemble_size", "integer ≥ 2", "members N", "20"),
        key(
            "inflation",
            "number ≥ 1",
            "multiplicative inflation of the forecast anomalies",
        ),
        key(
            "rotation",
            "boolean",
            "a random mean-preserving rotation of the analysis anomalies",
        ),
        key(
            "rtpp",
            "number in [0, 1]",
            "relaxation to prior perturbations (Zhang et al. 2004)",
        ),
        key(
            "rtps",
            "number in [0, 1]",
            "relaxation to prior spread (Whitaker & Hamill 2012)",
        ),
    ];
    if letkf {
        keys.push(required(
            "localisation_radius",
            "number > 0, model distance",
            "localisation radius (DAPPER's convention: the Gaspari-Cohn support is 1.82 × radius wide each side)",
            "4.0",
        ));
        keys.push(key(
            "taper",
            "\"gaspari_cohn\", \"gauss\" or \"step\"",
            "shape of the observation-error taper",
        ));
        keys.push(key(
            "batch",
            "integer ≥ 1",
            "analyse blocks of batch × batch grid points (batch points of a 1-D field) with one transform, tapered by the mean distance to the block (DAPPER's batch_shape; 1: every point)",
        ));
        keys.push(key(
            "engine",
            "\"threads\" or \"device\"",
            "where the local analyses run: threads (host, rayon, eigendecompositions) or device (batched tensor ops on the run's device, Newton-Schulz inverse square roots; no batch); absent: threads",
        ));
    } else if ensrf {
        keys.push(key(
            "localisation_radius",
            "number > 0, model distance",
            "localises the serial updates (DAPPER's SL_EAKF: each observation updates the state and the other observations within reach, its regression tapered; same radius convention as letkf); absent: the global serial EnSRF",
        ));
        keys.push(key(
            "taper",
            "\"gaspari_cohn\", \"gauss\" or \"step\"",
            "shape of the covariance taper (with localisation_radius)",
        ));
        keys.push(key("batch", "—", "letkf only (refused here)"));
        keys.push(key("engine", "—", "letkf only (refused here)"));
    } else {
        // The keys exist for every ensemble filter; only the localised ones accept them.
        keys.push(key(
            "localisation_radius",
            "—",
            "letkf and ensrf only (refused here)",
        ));
        keys.push(key("taper", "—", "letkf and ensrf only (refused here)"));
        keys.push(key("batch", "—", "letkf only (refused here)"));
        keys.push(key("engine", "—", "letkf only (refused here)"));
    }
    keys
}

fn minimiser_keys() -> Vec<KeyDoc> {
    vec![
        key(
            "max_iterations",
            "integer ≥ 1",
            "L-BFGS iteration cap; reaching it uses the best iterate (status not_converged)",
        ),
        key(
            "gradient_tolerance",
            "number in (0, 1)",
            "converged when the gradient norm falls below this times its initial value",
        ),
        key("memory", "integer ≥ 1", "L-BFGS memory (pairs kept)"),
        key(
            "gradient",
            "\"adjoint\", \"tape\" or \"checkpointed\"",
            "how gradients are computed: hand adjoint where the model has one, full burn autodiff tape, or recomputed segments",
        ),
        key(
            "checkpoint_steps",
            "integer ≥ 1, model steps",
            "segment length for gradient = \"checkpointed\"",
        ),
    ]
}

fn var_keys(var4d: bool) -> Vec<KeyDoc> {
    let mut keys = vec![if var4d {
        required(
            "window",
            "integer ≥ 1, cycles",
            "observation cycles between the window start and the newest observation; fewer than the run's cycles",
            "2",
        )
    } else {
        key("window", "integer, cycles", "0 for 3D-Var")
    }];
    keys.extend([
        key(
            "shift",
            "integer in 1..=window, cycles",
            "cycles the window moves after each minimisation",
        ),
        key(
            "background_scale",
            "number > 0",
            "factor on the static background covariance",
        ),
        key(
            "background_covariance",
            "\"climatology\", \"identity\", \"initial\" or \"gaussian\"",
            "the covariance it scales (climatology: from the truth run, n × n; initial: [initial] std per field with its length_scale, a sparse operator controlling only the variables with a non-zero std, for gridded models and estimated parameters; gaussian: background_std with Gaussian correlations of background_length_scale, sparse, for gridded models whose ensemble comes from a sample)",
        ),
        key(
            "background_std",
            "number > 0",
            "background_covariance = \"gaussian\": the standard deviation of every variable",
        ),
        key(
            "background_length_scale",
            "number > 0",
            "background_covariance = \"gaussian\": the Gaussian correlation length, in the model's coordinates",
        ),
        key(
            "model_error_std",
            "number > 0",
            "weak constraint: model-error std at each cycle boundary (absent: strong constraint)",
        ),
    ]);
    keys.extend(minimiser_keys());
    keys
}

/// The tables of registered observation networks or operators (`what`),
/// from their own documentation.
fn spec_tables<S: ?Sized>(registry: &'static [SpecEntry<S>], what: &str) -> Vec<TableDoc> {
    registry
        .iter()
        .map(|e| TableDoc {
            // Headers are static text elsewhere; these few are made once
            // per call from the registry.
            header: Box::leak(
                format!("[[observations]] {what} = {{ kind = \"{}\" }}", e.kind).into_boxed_str(),
            ),
            doc: e.doc,
            keys: e.keys.iter().map(spec_key).collect(),
            reader: Reader::Struct(e.read_json),
        })
        .collect()
}

fn spec_key(k: &SpecKey) -> KeyDoc {
    KeyDoc {
        key: k.key,
        kind: k.kind,
        doc: k.doc,
        required: k.required,
    }
}

/// Every table of an experiment file (`rime run`), in file order.
fn run_tables() -> Vec<TableDoc> {
    let mut t = vec![TableDoc {
        header: "[[observations]]",
        doc: "An observation set: where observations are (`network`), what H does there (`operator`), the fields it observes and its errors. List several `[[observations]]` to combine sets (thickness swaths and buoys, coarse fields and stations); each gets its own O-B, O-A and Desroziers statistics in the outputs. Twins simulate the observations from the truth; network = { kind = \"file\" } reads them (then the only set). A single older flat `[observations]` table (below) is read as one set.",
        keys: vec![
            required(
                "network",
                "table with a `kind` (see the network tables below)",
                "where and when observations are taken",
                "{ kind = \"identity\" }",
            ),
            key(
                "operator",
                "table with a `kind` (see the operator tables below)",
                "what H does at the network's sites (default: { kind = \"select\" })",
            ),
            key(
                "truth_operator",
                "table with a `kind` (an operator table below)",
                "the operator that simulates a twin's observations when DA assimilates them through another (`operator`: an imperfect, naive or learned one); at the same sites; absent: `operator` does both",
            ),
            key(
                "name",
                "text",
                "names the set in outputs and errors; unique (default: the network's kind)",
            ),
            key(
                "fields",
                "list of field names",
                "observe only these fields (their active points); absent: every field",
            ),
            key(
                "error_std",
                "number, one per observation (fixed networks), or a table by field name (`{ h = 0.1, a = 0.02 }`), in the state's units",
                "observation-error standard deviation (required unless network = file); between 1e-150 and 1e150",
            ),
            key(
                "error_correlation_length",
                "number > 0, model distance",
                "Gaussian correlation length of the set's errors (absent: independent); refused where it makes R nearly singular (condition number above 1e8 at the first cycle)",
            ),
            key(
                "missing_fraction",
                "number in [0, 1)",
                "probability that an observation of the set is missing at a cycle",
            ),
            key(
                "assimilate",
                "true or false",
                "false: a verification set, simulated from the truth (through truth_operator if given) and scored at its sites (RMSE of H(forecast mean) and H(analysis mean) against the noise-free H(truth): summary.json `verification`) but not assimilated; default true",
            ),
        ],
        reader: Reader::Struct(read_json::<SetKeys>),
    }];
    t.extend(spec_tables(crate::obs::NETWORKS, "network"));
    t.extend(spec_tables(crate::obs::OPERATORS, "operator"));
    t.push(
        TableDoc {
            header: "[observations]",
            doc: "The older flat form of one observation set, still read: `operator` names the network (\"partial\" is network indices), the operator is select. Its `steps_per_cycle` may stay here (or move to [run]).",
            keys: vec![
                required(
                    "operator",
                    "\"identity\", \"every\", \"partial\", \"random\", \"tracks\", \"swath\" or \"file\"",
                    "every variable; every stride-th; a list of indices; count variables drawn anew each cycle; count evenly spaced variables shifted by a random offset each cycle (satellite-like tracks on a grid, DAPPER's QG); every point in a satellite swath that moves each cycle (see swath); or a file of observations",
                    "\"identity\"",
                ),
                key(
                    "stride",
                    "integer ≥ 1",
                    "operator = \"every\": observe every stride-th variable",
                ),
                key(
                    "indices",
                    "list of integers (0-based, distinct)",
                    "operator = \"partial\": the observed variables",
                ),
                key(
                    "count",
                    "integer ≥ 1",
                    "operator = \"random\" or \"tracks\": observations per cycle",
                ),
                key(
                    "swath",
                    "table {width, angle = 0, shift = width}",
                    "operator = \"swath\": every point within width/2 of a straight ground track at angle degrees (anticlockwise from x), which moves shift across itself each cycle from a seeded start and wraps round; width and shift in the geometry's distance units (m on a grid)",
                ),
                key(
                    "error_std",
                    "number, one per observation, or a table by field name (`{ h = 0.1, a = 0.02 }`), in the state's units",
                    "observation-error standard deviation (required unless operator = \"file\"); between 1e-150 and 1e150",
                ),
                key(
                    "file",
                    "path, relative to the experiment file",
                    "operator = \"file\": CSV with columns time, index (or x and y), value, error; or NetCDF with those variables",
                ),
                key(
                    "error_correlation_length",
                    "number > 0, model distance",
                    "Gaussian correlation length of the observation errors (absent: independent); refused where it makes R nearly singular (condition number above 1e8 at the first cycle)",
                ),
                key(
                    "missing_fraction",
                    "number in [0, 1)",
                    "probability that an observation is missing at a cycle",
                ),
                key(
                    "fields",
                    "list of field names",
                    "observe only the active points of these fields (e.g. [\"h\"] of the sea ice); operators identity, every, random, tracks and swath",
                ),
                key(
                    "steps_per_cycle",
                    "integer ≥ 1, model steps",
                    "forecast-model steps between observation times (one assimilation cycle)",
                ),
                key(
                    "every",
                    "—",
                    "the older name of `steps_per_cycle`, still accepted",
                ),
            ],
            reader: Reader::Struct(read_json::<LegacyObservations>),
        },
    );
    t.extend(vec![
        TableDoc {
            header: "[run]",
            doc: "Length, seed and where models run.",
            keys: vec![
                required(
                    "cycles",
                    "integer ≥ 1",
                    "observation cycles; `--cycles` overrides",
                    "100",
                ),
                required(
                    "burn_in",
                    "integer < cycles",
                    "leading cycles left out of time averages (a --cycles at or below it shortens it to a fifth of the run, with a note)",
                    "10",
                ),
                required(
                    "seed",
                    "integer (u64)",
                    "seed of every random stream; `--seed` overrides",
                    "1",
                ),
                key(
                    "divergence_rmse",
                    "number > 0, state units",
                    "a method whose analysis RMSE exceeds this is stopped as diverged (absent: ten climatological standard deviations, never below ten times the initial spread or the observation error)",
                ),
                key(
                    "host_fast_path",
                    "boolean",
                    "ensemble forecasts use a model's hand-written host path where it has one; false sends every forecast through burn",
                ),
                key(
                    "device",
                    "\"cpu\", \"wgpu\" or \"cuda\"",
                    "where models run; `--device` overrides",
                ),
                key(
                    "steps_per_cycle",
                    "integer ≥ 1, model steps",
                    "forecast-model steps between observation times, one assimilation cycle (default 1; older files give it in [observations])",
                ),
                key(
                    "precision",
                    "\"f64\" or \"f32\"",
                    "the models' float type (absent: f64 on the CPU, f32 on GPUs; \"f32\" needs host_fast_path = false on models with a host path, which steps in f64)",
                ),
            ],
            reader: Reader::Struct(read_json::<RunConfig>),
        },
        TableDoc {
            header: "[initial]",
            doc: "Truth and ensembles start from draws of N(mean, diag(std²)), or with `length_scale` of N(mean, B) with a Gaussian correlation of that length between the points of each field.",
            keys: vec![
                required(
                    "mean",
                    "number, a list (padded with zeros), finite, or \"model\"",
                    "the initial mean; \"model\": the model's own initial state (the boundary layer's initial profiles)",
                    "[1.0]",
                ),
                required(
                    "std",
                    "number ≥ 0, or a table of them by field name",
                    "the initial standard deviation: of every variable, or per field in its units (`{ h = 0.3, a = 0.05 }`; fields not named get 0)",
                    "0.1",
                ),
                key(
                    "truth_std",
                    "as std",
                    "the truth's draw where it differs from the ensembles' (e.g. std names the estimated parameters p_star, c_ocean and truth_std only h: the truth keeps its model's parameters while the methods start from the [forecast_model]'s)",
                ),
                key(
                    "length_scale",
                    "number > 0, in the model's coordinate units",
                    "correlate the draws of each field: Gaussian correlation exp(-d²/2L²) between its active points (metres on the sea-ice grid), never across fields; absent: uncorrelated",
                ),
                key(
                    "sample",
                    "table (below)",
                    "draw the truth and the ensembles from a climatological sample of a free run instead",
                ),
            ],
            reader: Reader::Struct(read_json::<InitialConfig>),
        },
        TableDoc {
            header: "[initial.sample]",
            doc: "A free run of the truth model from a draw of N(mean, std² I): the states every `spacing` cycles after `spinup_cycles` are the sample ensembles are drawn from (distinct members while the sample has enough); the truth starts `spacing` cycles after the last kept state, outside the sample. Methods that start from a mean and a variance take the sample's.",
            keys: vec![
                required(
                    "spinup_cycles",
                    "integer ≥ 0",
                    "cycles run before the first kept state",
                    "700",
                ),
                required("count", "integer ≥ 2", "states kept", "400"),
                required("spacing", "integer ≥ 1", "cycles between kept states", "10"),
            ],
            reader: Reader::Struct(read_json::<InitialSample>),
        },
        TableDoc {
            header: "[output]",
            doc: "What is streamed to NetCDF and how often (optional table).",
            keys: vec![
                key(
                    "flush_every",
                    "integer ≥ 1, cycles",
                    "records are flushed to disk this often, and at most once a second: a killed run leaves files readable up to the last flush",
                ),
                key(
                    "fields",
                    "list of field names",
                    "the fields written (absent: all)",
                ),
                key(
                    "states",
                    "boolean",
                    "write the state fields at all (false: scores only)",
                ),
                key(
                    "members",
                    "boolean",
                    "also write every analysis member of ensemble methods",
                ),
            ],
            reader: Reader::Struct(read_json::<OutputConfig>),
        },
        TableDoc {
            header: "[model] name = \"lorenz63\"",
            doc: "Lorenz (1963), three variables x, y, z. Also valid as [forecast_model].",
            keys: vec![
                key("sigma", "number", "σ"),
                key("rho", "number", "ρ"),
                key("beta", "number", "β"),
                DT,
                INTEGRATOR,
                NOISE,
            ],
            reader: Reader::Model("lorenz63"),
        },
        TableDoc {
            header: "[model] name = \"lorenz96\"",
            doc: "Lorenz (1996) on a periodic chain.",
            keys: vec![
                required("size", "integer ≥ 4", "number of variables", "40"),
                key("forcing", "number, finite", "forcing F"),
                DT,
                INTEGRATOR,
                NOISE,
            ],
            reader: Reader::Model("lorenz96"),
        },
        TableDoc {
            header: "[model] name = \"lorenz96_two_scale\"",
            doc: "The two-scale Lorenz-96 of Wilks (2005): slow variables X and fast Y.",
            keys: vec![
                key("slow", "integer", "slow variables"),
                key("fast_per_slow", "integer", "fast variables per slow one"),
                key("forcing", "number", "forcing F"),
                key("coupling", "number", "coupling h"),
                key("time_scale", "number", "time-scale ratio c"),
                key("amplitude", "number", "amplitude ratio b"),
                DT,
                INTEGRATOR,
                NOISE,
            ],
            reader: Reader::Model("lorenz96_two_scale"),
        },
        TableDoc {
            header: "[model] name = \"lorenz96_truncated\"",
            doc: "The slow Lorenz-96 with a parametrisation of the fast scale (Wilks 2005), the forecast model of imperfect-model twins.",
            keys: vec![
                key("size", "integer ≥ 4", "number of variables"),
                key("forcing", "number", "forcing F"),
                key(
                    "parametrisation",
                    "\"wilks2005\" or \"none\"",
                    "Wilks' quartic polynomial, or plain truncation",
                ),
                DT,
                INTEGRATOR,
                NOISE,
            ],
            reader: Reader::Model("lorenz96_truncated"),
        },
        TableDoc {
            header: "[model] name = \"advection2d\"",
            doc: "A tracer advected on a doubly periodic grid, first-order upwind; one field `c` of shape [ny, nx].",
            keys: vec![
                key("nx", "integer ≥ 2", "grid columns"),
                key("ny", "integer ≥ 2", "grid rows"),
                key("dx", "number > 0, model length", "spacing along x"),
                key("dy", "number > 0, model length", "spacing along y"),
                key("u", "number, length per time", "velocity along x"),
                key("v", "number, length per time", "velocity along y"),
                key(
                    "dt",
                    "number > 0, model time",
                    "time step; abs(u) dt/dx + abs(v) dt/dy must not exceed 1",
                ),
                INTEGRATOR,
                NOISE,
            ],
            reader: Reader::Model("advection2d"),
        },
        TableDoc {
            header: "[model] name = \"qg\"",
            doc: "The 2-D quasi-geostrophic double gyre of Sakov & Oke (2008b) and DAPPER's mods/QG: stream function `psi` of shape [size, size] on the unit square, zero on the boundary; defaults are DAPPER's.",
            keys: vec![
                key(
                    "size",
                    "integer ≥ 5",
                    "grid points per side, boundary included (65, 129, 257)",
                ),
                key(
                    "dt",
                    "number > 0, model time",
                    "time step (DAPPER: 1.25; output every 5 is 4 steps)",
                ),
                key(
                    "froude",
                    "number > 0",
                    "F, the inverse squared deformation radius",
                ),
                key(
                    "rossby",
                    "number",
                    "r, the factor of the nonlinear advection (DAPPER's R)",
                ),
                key("bottom_friction", "number ≥ 0", "bottom friction rkb"),
                key("viscosity", "number ≥ 0", "harmonic friction rkh"),
                key(
                    "biharmonic_viscosity",
                    "number ≥ 0",
                    "biharmonic friction rkh2 (2e-11 steadies small ensembles)",
                ),
                key("beta", "number", "planetary vorticity gradient"),
                key(
                    "forcing",
                    "number",
                    "amplitude of the wind-stress curl -2 pi sin(2 pi y)",
                ),
                INTEGRATOR,
                NOISE,
            ],
            reader: Reader::Model("qg"),
        },
        TableDoc {
            header: "[model] name = \"boundary_layer\"",
            doc: "Single-column atmospheric boundary layer after NEMO's ABL1d (Lemarié et al. 2021): u, v, theta, q and TKE on a stretched grid, TKE closure with a Deardorff mixing length, implicit vertical diffusion, Coriolis, geostrophic forcing, bulk surface fluxes over ice and open water; fields `u`, `v`, `theta`, `q`, `tke` of shape [columns, levels], SI units, time in seconds. Defaults are GABLS1 (Beare et al. 2006) on a uniform grid; start it with `[initial] mean = \"model\"`.",
            keys: vec![
                key("levels", "integer ≥ 4", "cells in each column"),
                key("top", "number > 0, m", "model top"),
                key(
                    "bottom_thickness",
                    "number > 0, m",
                    "thickness of the lowest cell; cells grow geometrically above it (absent: uniform)",
                ),
                key(
                    "columns",
                    "integer ≥ 1",
                    "columns (grid cells), stepped as one batch",
                ),
                key(
                    "dt",
                    "number > 0, s",
                    "time step (implicit: not limited by diffusion)",
                ),
                key("coriolis", "number, 1/s", "Coriolis parameter f"),
                key(
                    "coriolis_implicitness",
                    "number in [0.5, 1]",
                    "weight of the new time level in the Coriolis term (NEMO: 0.55)",
                ),
                key("geostrophic_wind", "[u_g, v_g], m/s", "large-scale forcing"),
                key(
                    "constant_viscosity",
                    "number > 0, m²/s",
                    "constant K for momentum and tracers instead of the TKE closure (the Ekman layer)",
                ),
                key(
                    "surface",
                    "\"bulk\", \"no_slip\" or \"insulated\"",
                    "bulk fluxes over ice and water; zero wind at the ground and no heat flux; no flux at all",
                ),
                key(
                    "ice_fraction",
                    "number or one per column, in [0, 1]",
                    "weight of the ice fluxes against the open-water ones",
                ),
                key(
                    "ice_temperature",
                    "number or one per column, K",
                    "ice surface temperature at time 0",
                ),
                key(
                    "ice_cooling_rate",
                    "number, K/h",
                    "cooling of the ice surface",
                ),
                key(
                    "ice_roughness",
                    "number > 0, m",
                    "roughness length over ice (momentum and heat)",
                ),
                key(
                    "water_temperature",
                    "number or one per column, K",
                    "open-water temperature (roughness from Charnock)",
                ),
                key(
                    "surface_saturation",
                    "number in [0, 1]",
                    "surface humidity as a fraction of saturation (0: dry)",
                ),
                key(
                    "surface_heat_flux",
                    "number, K m/s",
                    "prescribed upward kinematic heat flux instead of the bulk one",
                ),
                key(
                    "reference_temperature",
                    "number > 0, K",
                    "theta_ref of the buoyancy g/theta_ref",
                ),
                key(
                    "initial_wind",
                    "[u, v], m/s",
                    "initial wind (absent: geostrophic)",
                ),
                key(
                    "initial_theta",
                    "number, K",
                    "initial theta below initial_mixed_height",
                ),
                key(
                    "initial_mixed_height",
                    "number, m",
                    "top of the initial well-mixed layer",
                ),
                key(
                    "initial_lapse_rate",
                    "number, K/m",
                    "initial d(theta)/dz above it",
                ),
                key(
                    "initial_humidity",
                    "number ≥ 0, kg/kg",
                    "initial specific humidity, and its large-scale value",
                ),
                key(
                    "initial_tke",
                    "number ≥ 0, m²/s²",
                    "e_0 of the initial TKE e_0 (1 - z/d)³",
                ),
                key("initial_tke_depth", "number > 0, m", "d of the initial TKE"),
                key(
                    "relaxation_time_above",
                    "number > 0, s",
                    "relaxation towards the geostrophic wind and the initial theta and q above relaxation_height (absent: none)",
                ),
                key(
                    "relaxation_time_inside",
                    "number > 0, s",
                    "the same below relaxation_height (absent: none)",
                ),
                key(
                    "relaxation_height",
                    "number, m",
                    "height separating the two relaxation times",
                ),
            ],
            reader: Reader::Model("boundary_layer"),
        },
        TableDoc {
            header: "[model] name = \"sea_ice\"",
            doc: "Sea-ice dynamics on an Arakawa B grid (velocities at the cell corners, tracers at the centres), closed no-slip walls and land: momentum with quadratic air and ocean drag, Coriolis and the divergence of the internal stress; viscous-plastic rheology by mEVP, or the brittle BBM rheology with damage; conservative upwind transport of thickness and concentration with ridging at A = 1. Fields `h`, `a` (cells), `u`, `v` (corners), `sxx`, `syy`, `sxy` (cells), `damage` (cells, bbm), then the estimated parameters; SI units, time in seconds. Start it with `[initial] mean = \"model\"`. Wind, current and initial fields are analytic forms with a `kind` (see `experiments/sea_ice/`).",
            keys: vec![
                key("nx", "integer ≥ 3", "cells along x"),
                key("ny", "integer ≥ 3", "cells along y (absent: nx)"),
                key("dx", "number > 0, m", "cell width"),
                key("dy", "number > 0, m", "cell height (absent: dx)"),
                key(
                    "dt",
                    "number > 0, s",
                    "time step; ice at 1 m/s must cross at most one cell a step",
                ),
                key(
                    "land",
                    "array of {x = [w, e], y = [s, n]}",
                    "land rectangles in metres: cells whose centre lies inside",
                ),
                key(
                    "moving_wall",
                    "table {side = \"north\" | \"south\" | \"east\" | \"west\", velocity = [u, v]}",
                    "a wall whose nodes (corners excepted) move at a prescribed velocity (m/s): a press for compression tests",
                ),
                key(
                    "rheology",
                    "\"mevp\" or \"bbm\"",
                    "viscous-plastic by mEVP, or brittle Bingham-Maxwell with a prognostic damage field `damage`",
                ),
                key(
                    "mevp",
                    "table {alpha, beta, iterations, kernel}",
                    "mEVP relaxation parameters (hundreds), sub-iterations per step, and `kernel`: \"fused\" (default; one CPU kernel with a hand-written backward registered in burn's autodiff, burn ops off the CPU backend) or \"ops\" (burn ops)",
                ),
                key(
                    "vp",
                    "table {p_star, c, ellipse, delta_min}",
                    "viscous-plastic parameters: P* (N/m2), C, the ellipse ratio e, Delta_min (1/s)",
                ),
                key(
                    "bbm",
                    "table {young, poisson, relaxation_time, alpha, p0, friction, cohesion, c, healing_time, substeps}",
                    "BBM parameters: E0 (Pa), nu, lambda0 (s), alpha, P0 (Pa), mu, laboratory cohesion (Pa, scaled by sqrt(0.1 m/dx) and H), C, healing time (s), momentum sub-steps per step",
                ),
                key(
                    "wind",
                    "table with kind = \"uniform\" {u, v}, \"cyclone\" {amplitude, centre, velocity, decay, scale, angle, ramp} or \"box\" {mean, period}",
                    "10 m wind (m/s) as a function of space and time",
                ),
                key(
                    "ocean",
                    "table with kind = \"rest\", \"uniform\" {u, v} or \"gyre\" {speed}",
                    "surface current (m/s)",
                ),
                key(
                    "thickness",
                    "table with kind = \"uniform\" {value}, \"waves\" {mean, amplitude, wavenumber}, \"ramp_x\" {west, east}, \"band_x\" {x_min, x_max, inside, outside} or \"noise\" {low, high, seed}",
                    "initial thickness (m)",
                ),
                key(
                    "concentration",
                    "table as thickness",
                    "initial concentration, in [0, 1]",
                ),
                key(
                    "damage",
                    "table as thickness",
                    "initial damage (bbm), in [0, 1]",
                ),
                key("rho_ice", "number > 0, kg/m3", "ice density"),
                key("rho_air", "number > 0, kg/m3", "air density"),
                key("rho_ocean", "number > 0, kg/m3", "sea-water density"),
                key("c_air", "number ≥ 0", "air drag coefficient"),
                key("c_ocean", "number ≥ 0", "ocean drag coefficient"),
                key("coriolis", "number, 1/s", "Coriolis parameter"),
                key(
                    "estimate",
                    "array of \"p_star\", \"c_ocean\", \"cohesion\"",
                    "parameters appended to the state (one value per member), to be estimated with it",
                ),
            ],
            reader: Reader::Model("sea_ice"),
        },
        TableDoc {
            header: "[model] name = \"sea_ice_abl\"",
            doc: "The sea ice coupled to an atmospheric boundary layer: one column above every ice cell, stepped `atmosphere_steps` times per ice step. The columns see the ice's concentration, its velocity (the stress over ice acts on the relative wind) and its surface temperature, with the ice's `wind` as their large-scale (geostrophic) wind; the ice moves under the columns' stress, and a zero-layer thermodynamics grows or melts it from the heat the air takes (open water at freezing makes new ice in leads). State: the sea ice's fields and parameters, `ts` (ice surface temperature, K, cells), then `air_u`, `air_v`, `air_theta`, `air_q`, `air_tke`, each one column of `levels` values per cell, located at the cell centres. Start it with `[initial] mean = \"model\"`; `rime map` draws the ice's maps and the lowest level's wind speed and temperature.",
            keys: vec![
                key(
                    "ice",
                    "table (the keys of name = \"sea_ice\")",
                    "the sea ice; its `wind` is the large-scale wind above the boundary layer",
                ),
                key(
                    "atmosphere",
                    "table (the keys of name = \"boundary_layer\")",
                    "the boundary layer; `columns`, `dt`, `ice_fraction`, `ice_temperature` and `water_temperature` come from the coupling, the geostrophic wind from the ice's `wind`",
                ),
                key(
                    "atmosphere_steps",
                    "integer ≥ 1",
                    "boundary-layer steps per ice step; the two exchange stress and heat once per ice step",
                ),
                key(
                    "thermodynamics",
                    "table {enabled, conductivity, latent_heat, freezing, ocean_heat_flux, radiative_loss, air_heat_capacity, lead_thickness, initial_surface_temperature}",
                    "zero-layer growth and melt: whether on (true), k (2.03 W/m/K), L (3.34e5 J/kg), freezing point (271.35 K), ocean heat flux into the ice (2 W/m2), net radiative loss upward (30 W/m2), c_p of air (1005 J/kg/K), h_0 of new ice in leads (0.5 m), initial ice surface temperature (258 K)",
                ),
                key(
                    "ice_forcing",
                    "\"boundary_layer\" or \"wind\"",
                    "what moves the ice: the columns' stress (default), or the prescribed `ice.wind` as in the uncoupled sea ice (the columns still run and exchange heat): the uncoupled forecast model of a coupled twin",
                ),
                key(
                    "estimate",
                    "array of \"ice_roughness\"",
                    "boundary-layer parameters appended to the state after the air (one value per member), to be estimated with it; the ice's own go in ice.estimate",
                ),
            ],
            reader: Reader::Model("sea_ice_abl"),
        },
        TableDoc {
            header: "[model] name = \"emulator\"",
            doc: "A model trained by `rime train`, whichever the checkpoint holds: a neural emulator (one network step advances the state by the record interval of its training data; residual learning, f32 network, cast at the seam), a generative surrogate (a stochastic model whose samples make the ensemble) or a hybrid model (its physical model with the learned tendency term or state correction). Its geometry is that of the model the data came from (a hybrid's: its physical model's). Usually the `[forecast_model]` of a twin whose `[model]` is the physical model.",
            keys: vec![
                required(
                    "checkpoint",
                    "path",
                    "the checkpoint (`emulator.ckpt` in the output folder of `rime train`), relative to the experiment file",
                    "\"emulator.ckpt\"",
                ),
                key(
                    "temperature",
                    "number > 0",
                    "generative surrogates only: the scale of the sampling noise (1: as trained; below 1 narrows the ensemble), a calibration to choose on validation data",
                ),
                key(
                    "forcing",
                    "path",
                    "networks trained with forcing (data with `forcing_*` variables, e.g. a sea ice's wind) only, and required for them: a trajectory file whose `forcing_*` variables hold the forcing at every step of the run (`rime simulate` of the physical model under it writes one), relative to the experiment file",
                ),
            ],
            reader: Reader::Model("emulator"),
        },
        TableDoc {
            header: "[[methods]]",
            doc: "Every entry of the list: `name` picks the method (one of the tables below, with its keys), `label` names its results. The methods run one after the other, in file order.",
            keys: vec![
                required("name", "a method name (below)", "the method", "\"free\""),
                key(
                    "label",
                    "text: letters, digits, `_`, `.` and `-`",
                    "names the method's output file (`<label>.nc`) and its entry in the summary and in `[expected]` (absent: the name); unique in the file, not starting with a dot, not ending in `.partial`, and not `truth`, `observations` or `summary` (the run's own files)",
                ),
            ],
            reader: Reader::Entry(&["label", "name"]),
        },
    ]);
    for (name, doc) in [
        (
            "climatology",
            "the climatological mean of the truth run, no observation used",
        ),
        (
            "oi",
            "optimal interpolation with the climatological covariance, not cycled",
        ),
        (
            "free",
            "the free run: the initial mean forecast by the model, no observation used (the baseline a twin's analysis must beat)",
        ),
    ] {
        t.push(TableDoc {
            header: match name {
                "climatology" => "[[methods]] name = \"climatology\"",
                "free" => "[[methods]] name = \"free\"",
                _ => "[[methods]] name = \"oi\"",
            },
            doc,
            keys: vec![],
            reader: Reader::Method(name),
        });
    }
    t.push(TableDoc {
        header: "[[methods]] name = \"ekf\"",
        doc: "extended Kalman filter (tangent-linear model from the hand adjoint or autodiff)",
        keys: vec![key(
            "inflation",
            "number ≥ 1, per unit time",
            "the forecast covariance is multiplied by inflation^dt each step (as DAPPER)",
        )],
        reader: Reader::Method("ekf"),
    });
    for (name, header, doc) in [
        (
            "enkf",
            "[[methods]] name = \"enkf\"",
            "stochastic EnKF with perturbed observations",
        ),
        (
            "etkf",
            "[[methods]] name = \"etkf\"",
            "ensemble transform Kalman filter (symmetric square root)",
        ),
        (
            "denkf",
            "[[methods]] name = \"denkf\"",
            "deterministic EnKF (Sakov & Oke 2008)",
        ),
        (
            "ensrf",
            "[[methods]] name = \"ensrf\"",
            "serial ensemble square-root filter (EAKF form, random observation order); with localisation_radius, the serial local EAKF (DAPPER's SL_EAKF)",
        ),
        (
            "letkf",
            "[[methods]] name = \"letkf\"",
            "local ETKF with tapered observation errors",
        ),
    ] {
        t.push(TableDoc {
            header,
            doc,
            keys: ensemble_keys(name == "letkf", name == "ensrf"),
            reader: Reader::Method(name),
        });
    }
    t.push(TableDoc {
        header: "[[methods]] name = \"var3d\"",
        doc: "3D-Var with a static background covariance, L-BFGS",
        keys: var_keys(false),
        reader: Reader::Method("var3d"),
    });
    t.push(TableDoc {
        header: "[[methods]] name = \"var4d\"",
        doc: "4D-Var over a window of cycles, strong or weak constraint",
        keys: var_keys(true),
        reader: Reader::Method("var4d"),
    });
    t.push(TableDoc {
        header: "[[methods]] name = \"ienks\"",
        doc: "iterative ensemble Kalman smoother, square-root form (Bocquet & Sakov 2013)",
        keys: vec![
            required("ensemble_size", "integer ≥ 2", "members N", "20"),
            key(
                "lag",
                "integer, cycles",
                "window length L (0: the ETKF); fewer than the run's cycles",
            ),
            key(
                "iterations",
                "integer ≥ 1",
                "Gauss-Newton iterations at most",
            ),
            key(
                "weight_tolerance",
                "number ≥ 0",
                "stop iterating when the weight update is smaller",
            ),
            key(
                "finite_size",
                "number > 0",
                "finite-size inflation ε_N factor (EnKF-N style); absent: none",
            ),
            key("inflation", "number ≥ 1", "multiplicative inflation"),
            key("rotation", "boolean", "random mean-preserving rotation"),
        ],
        reader: Reader::Method("ienks"),
    });
    let mut en4dvar = vec![
        required(
            "ensemble_size",
            "integer ≥ 2",
            "members N (N + 1 minimisations per window)",
            "20",
        ),
        key(
            "window",
            "integer ≥ 1, cycles",
            "window length; fewer than the run's cycles",
        ),
        required(
            "localisation_radius",
            "number > 0, model distance",
            "localisation radius of the ensemble covariance",
            "6.0",
        ),
        key(
            "taper",
            "\"gaspari_cohn\", \"gauss\" or \"step\"",
            "covariance taper",
        ),
        key(
            "inflation",
            "number ≥ 1",
            "inflation of the analysis anomalies",
        ),
    ];
    en4dvar.extend(minimiser_keys());
    t.push(TableDoc {
        header: "[[methods]] name = \"en4dvar\"",
        doc: "4D-Var with a localised ensemble covariance and an ensemble of perturbed analyses",
        keys: en4dvar,
        reader: Reader::Method("en4dvar"),
    });
    t
}

/// The reference of one command's files.
#[derive(Clone, Debug)]
pub struct FileDoc {
    /// The command that reads them, e.g. `rime simulate`.
    pub command: &'static str,
    /// What the file holds besides its tables (top-level keys, tables
    /// documented elsewhere).
    pub doc: &'static str,
    /// Its tables, in file order.
    pub tables: Vec<TableDoc>,
}

const DEVICE: KeyDoc = key(
    "device",
    "\"cpu\", \"wgpu\" or \"cuda\"",
    "where it runs (\"wgpu\" and \"cuda\" need rime built with that feature)",
);

/// A network or generative table of this `kind`, read by its enum.
macro_rules! tagged_reader {
    ($t:ty, $kind:literal) => {{
        fn read(mut table: toml::Table) -> Result<serde_json::Value, String> {
            table.insert("kind".into(), toml::Value::String($kind.into()));
            read_json::<$t>(table)
        }
        Reader::Struct(read)
    }};
}

/// `[data]` of training and evaluation files.
fn data_table(doc: &'static str) -> TableDoc {
    TableDoc {
        header: "[data]",
        doc,
        keys: vec![
            required(
                "file",
                "path, or a list of paths, relative to this file",
                "the trajectory file (`rime simulate`'s output, or any NetCDF file of that layout), or a list of such files read as one: the records of each follow those of the one before, each is split by its own `split` variable, and no sample spans two files (runs under different forcings)",
                "\"trajectories.nc\"",
            ),
            key(
                "split",
                "[train, validation], fractions summing to at most 1 (both > 0 for `rime train`)",
                "fractions of the records, in time order, used only where a file has no `split` variable; the rest is the test split",
            ),
            key(
                "variables",
                "list of variable names",
                "the state variables read, in order (absent: all of them), e.g. `[\"state_x\"]` for the slow variables of a two-scale run",
            ),
        ],
        reader: Reader::Struct(read_json::<DataConfig>),
    }
}

/// The censoring bounds of both generative kinds.
fn bound_keys() -> [KeyDoc; 2] {
    [
        key(
            "lower",
            "number, or a list with one per field (-inf: none)",
            "sampled states are clipped to at least this (e.g. `[0.0, 0.0]` for a sea ice's h and a)",
        ),
        key(
            "upper",
            "number, or a list with one per field (inf: none)",
            "sampled states are clipped to at most this (e.g. `[inf, 1.0]`); above lower",
        ),
    ]
}

fn simulate_tables() -> Vec<TableDoc> {
    vec![
        TableDoc {
            header: "[simulate]",
            doc: "How many trajectories, how long, and how their records are split for training.",
            keys: vec![
                key(
                    "trajectories",
                    "integer ≥ 1",
                    "independent runs, each from its own draw of `[initial]`, stepped together as one batch",
                ),
                required(
                    "records",
                    "integer ≥ 2",
                    "records kept per trajectory (after the spin-up)",
                    "100",
                ),
                key(
                    "steps_per_record",
                    "integer ≥ 1, model steps",
                    "model steps between records (the data's record interval is this times the model's dt)",
                ),
                key(
                    "spinup_steps",
                    "integer ≥ 0, model steps",
                    "model steps run and discarded before the first record",
                ),
                key(
                    "seed",
                    "integer (u64)",
                    "seed of the initial states (and of the model's noise, if stochastic)",
                ),
                key(
                    "split",
                    "[train, validation], fractions ≥ 0 summing to at most 1",
                    "fractions of the records, in time order, marked train and validation in the file's `split` variable; the rest is the test split ([0, 0]: a file of test records only, e.g. a held-out forcing)",
                ),
                DEVICE,
                key(
                    "precision",
                    "\"f64\" or \"f32\"",
                    "the model's float type (absent: the device's, f64 on the CPU, f32 on GPUs)",
                ),
                key(
                    "host_fast_path",
                    "boolean",
                    "use the model's hand-written host path where it has one; false steps it through burn",
                ),
            ],
            reader: Reader::Struct(read_json::<SimulateSettings>),
        },
        TableDoc {
            header: "[expected.<diagnostic>]",
            doc: "A published range that a diagnostic of the last record should fall in, `<diagnostic>` being one the model computes (e.g. `boundary_layer_height` of the boundary layer; a name the model does not compute is an error). `rime simulate` reports every diagnostic of the last record and each expected one against its range.",
            keys: vec![
                required("min", "number, finite", "lower end", "0.0"),
                required("max", "number, finite, ≥ min", "upper end", "1.0"),
                key(
                    "source",
                    "text",
                    "the publication and how the range was read from it",
                ),
            ],
            reader: Reader::Struct(read_json::<ExpectedRange>),
        },
    ]
}

fn train_tables() -> Vec<TableDoc> {
    let mut diffusion = vec![
        key(
            "sigma_min",
            "number > 0, below sigma_max",
            "smallest noise level of the sampler",
        ),
        key(
            "sigma_max",
            "number > 0",
            "largest noise level of the sampler",
        ),
        key(
            "rho",
            "number > 0",
            "exponent of the sampler's noise schedule",
        ),
        key("steps", "integer ≥ 1", "Heun steps of the sampler"),
        key(
            "sigma_data",
            "number > 0",
            "standard deviation of the (normalised) data",
        ),
        key("p_mean", "number", "mean of the training ln sigma"),
        key(
            "p_std",
            "number > 0",
            "standard deviation of the training ln sigma",
        ),
    ];
    diffusion.extend(bound_keys());
    let mut flow = vec![
        key(
            "s_min",
            "number in [0, 1)",
            "width of the path at the data end",
        ),
        key("steps", "integer ≥ 1", "Heun steps of the sampler"),
    ];
    flow.extend(bound_keys());
    vec![
        data_table(
            "The trajectories trained on: the train split for the weights, the validation split for the loss that picks the best epoch and stops training.",
        ),
        TableDoc {
            header: "[network] kind = \"cnn1d\"",
            doc: "A 1-D convolutional network on a periodic line (the Lorenz-96 family): every layer pads circularly, so the network commutes with shifts of the state, as the dynamics do.",
            keys: vec![
                key("channels", "integer ≥ 1", "hidden channels"),
                key(
                    "layers",
                    "integer ≥ 2",
                    "convolution layers, input and output layers included",
                ),
                key("kernel", "odd integer", "kernel width of the hidden layers"),
                key(
                    "bilinear",
                    "boolean",
                    "a bilinear first layer (Brajard et al. 2020): the first convolution gives three groups of channels a, b, c, and the next layer sees a and the product b c, so quadratic advection terms are one layer away",
                ),
            ],
            reader: tagged_reader!(Architecture, "cnn1d"),
        },
        TableDoc {
            header: "[network] kind = \"unet2d\"",
            doc: "A U-Net for one 2-D field, or several of one shape (Ronneberger et al. 2015): at each level two 3x3 convolutions with GELU, halving the grid by 2x2 averages on the way down and doubling it on the way up beside the skip connection. Zero padding (a closed domain such as the QG basin); the field is padded with zeros to a multiple of 2^(levels - 1) and cropped back.",
            keys: vec![
                key(
                    "channels",
                    "integer ≥ 1",
                    "channels at the finest level, doubled at each coarser one",
                ),
                key(
                    "levels",
                    "integer in 1..=6",
                    "resolutions (1: no downsampling)",
                ),
            ],
            reader: tagged_reader!(Architecture, "unet2d"),
        },
        TableDoc {
            header: "[training]",
            doc: "The optimisation: Adam on the rollout loss in increment units (the network stepped `rollout` times from each training state); after every epoch the validation loss and one-step RMSE are recorded, the best weights go to `emulator.ckpt` and the latest, with the optimiser state, to `last.ckpt` (for `--resume`). Networks train in f32.",
            keys: vec![
                key("epochs", "integer ≥ 1", "passes over the training samples"),
                key("batch_size", "integer ≥ 1", "samples per batch"),
                key("learning_rate", "number > 0", "Adam's learning rate"),
                key(
                    "learning_rate_final",
                    "number in (0, learning_rate]",
                    "the learning rate decays along a cosine from learning_rate to this over the epochs (absent: constant)",
                ),
                key(
                    "rollout",
                    "integer ≥ 1, records",
                    "network steps in the rollout loss (1 for a generative surrogate)",
                ),
                key(
                    "patience",
                    "integer ≥ 0, epochs",
                    "stop when the validation loss has not improved for this many epochs (0: never)",
                ),
                key(
                    "seed",
                    "integer (u64)",
                    "seed of the initial weights and of the batch order",
                ),
                key(
                    "max_batches",
                    "integer",
                    "at most this many batches per epoch (absent: all)",
                ),
                DEVICE,
            ],
            reader: Reader::Struct(read_json::<TrainingSettings>),
        },
        TableDoc {
            header: "[generative] kind = \"diffusion\"",
            doc: "A generative surrogate instead of a deterministic emulator (optional table; needs rollout = 1, not with `[hybrid]`): EDM diffusion (Karras et al. 2022) of the normalised increment given the current state, trained on ln sigma ~ N(p_mean, p_std²) and sampled by Heun's method on the probability-flow ODE from sigma_max to sigma_min along the rho schedule.",
            keys: diffusion,
            reader: tagged_reader!(GenerativeConfig, "diffusion"),
        },
        TableDoc {
            header: "[generative] kind = \"flow_matching\"",
            doc: "A generative surrogate by conditional flow matching along straight optimal-transport paths, sampled by Heun's method from t = 0 (noise) to 1 (optional table; needs rollout = 1, not with `[hybrid]`).",
            keys: flow,
            reader: tagged_reader!(GenerativeConfig, "flow_matching"),
        },
        TableDoc {
            header: "[hybrid]",
            doc: "A hybrid model (optional table, not with `[generative]`): the network is a term of a physical model's tendency or a correction of its state, trained end to end through the physics.",
            keys: vec![
                required(
                    "physics",
                    "a `[model]` table (inline)",
                    "the physical model; the data's record interval must be a whole number of its steps, and its state the data's",
                    "{ name = \"lorenz96\", size = 40 }",
                ),
                key(
                    "coupling",
                    "\"tendency\" or \"resolvent\"",
                    "tendency: a learned term added to the physical tendency inside the model's integrator (an ODE model only; with a term left out of the physics, e.g. lorenz96_truncated with parametrisation = \"none\", the network replaces it); resolvent: a learned correction of the state after the physical steps of one record interval (any model)",
                ),
            ],
            reader: Reader::Struct(read_json::<HybridConfig>),
        },
    ]
}

fn evaluate_tables() -> Vec<TableDoc> {
    vec![
        data_table(
            "The trajectories the forecasts start from and are scored against (the records of `[evaluate] split`); the training split gives the climatology.",
        ),
        TableDoc {
            header: "[evaluate]",
            doc: "Lengths and sizes.",
            keys: vec![
                required(
                    "leads",
                    "integer ≥ 1, records",
                    "forecast length, in records of the data",
                    "20",
                ),
                key(
                    "starts",
                    "integer ≥ 1",
                    "initial states, evenly spaced in the split",
                ),
                key(
                    "members",
                    "integer ≥ 2",
                    "ensemble size of stochastic models (their own samples make the ensemble)",
                ),
                key(
                    "free_run",
                    "integer ≥ 0, records",
                    "length of a free run of each model from the first start, whose mean and variance over its second half are compared with the data's (does the model stay on the attractor?); 0: none",
                ),
                key(
                    "seed",
                    "integer (u64)",
                    "seed of the stochastic models' noise",
                ),
                DEVICE,
                key(
                    "split",
                    "\"test\" or \"validation\"",
                    "the split the forecasts start from and are scored on; \"validation\" to choose a setting (a surrogate's temperature) without looking at the test split",
                ),
            ],
            reader: Reader::Struct(read_json::<EvaluateSettings>),
        },
        TableDoc {
            header: "[[models]]",
            doc: "One entry per model scored: a `label` and any `[model]` table of an experiment file (e.g. `name = \"emulator\"` and its checkpoint; paths relative to this file). Persistence and climatology are always scored beside them.",
            keys: vec![
                required(
                    "label",
                    "text: letters, digits, `_`, `.` and `-`",
                    "names the model in the outputs; unique in the file, not `persistence` or `climatology`, not starting with a dot, not ending in `.partial`, and not `truth`, `observations` or `summary`",
                    "\"physics\"",
                ),
                required(
                    "name",
                    "a `[model]` name",
                    "the model; its other keys are those of `[model]` with that name",
                    "\"lorenz96\"",
                ),
            ],
            reader: Reader::Entry(&["label", "name"]),
        },
    ]
}

/// The files of every command, each with its tables.
pub fn files() -> Vec<FileDoc> {
    vec![
        FileDoc {
            command: "rime run",
            doc: "An experiment file (`rime run FILE`, `rime check FILE`) has `description` and `reference` (text, optional), the tables below, and `[expected]` (published scores by method label: `label = { rmse_a = 0.18, tolerance = 0.02 }`). Unknown keys are errors that name the file and key. `[forecast_model]` takes any `[model]` table and is the model the methods cycle (imperfect-model twins).",
            tables: run_tables(),
        },
        FileDoc {
            command: "rime simulate",
            doc: "A simulation file (`rime simulate FILE`; the trajectories that `rime train` learns from) has `description` (text, optional), a `[model]` table as in an experiment file (any name above), `[initial]` as in an experiment file (each trajectory starts from a draw of its `mean`, `std` and `length_scale`; `truth_std` and `[initial.sample]` are refused), and the tables below. Unknown keys are errors.",
            tables: simulate_tables(),
        },
        FileDoc {
            command: "rime train",
            doc: "A training file (`rime train FILE`) has `description` (text, optional), `[data]`, one `[network]`, `[training]`, and at most one of `[generative]` and `[hybrid]`: without them it trains a deterministic emulator (residual learning: the network gives the normalised one-record increment). Its checkpoint is used as `[model] name = \"emulator\"`. Unknown keys are errors.",
            tables: train_tables(),
        },
        FileDoc {
            command: "rime evaluate",
            doc: "An evaluation file (`rime evaluate FILE`) has `description` (text, optional), `[data]`, `[evaluate]` and one or more `[[models]]`. Unknown keys are errors.",
            tables: evaluate_tables(),
        },
    ]
}

/// Every table of every command's files, command by command.
pub fn tables() -> Vec<TableDoc> {
    files().into_iter().flat_map(|f| f.tables).collect()
}

impl TableDoc {
    /// The table as TOML with only its required keys (and its name).
    fn minimal(&self) -> toml::Table {
        let mut text = String::new();
        match self.reader {
            Reader::Model(name) | Reader::Method(name) => text += &format!("name = \"{name}\"\n"),
            Reader::Struct(_) | Reader::Entry(_) => {}
        }
        for k in &self.keys {
            if let Some(example) = k.required {
                text += &format!("{} = {example}\n", k.key);
            }
        }
        text.parse().expect("examples are valid TOML")
    }

    /// The table as the config types read it, with every default filled in.
    ///
    /// # Errors
    /// The table with its required keys does not parse (a schema bug).
    pub fn defaults(&self) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        let mut table = self.minimal();
        let value = match self.reader {
            Reader::Struct(read) => read(table)?,
            Reader::Model(name) => {
                table.remove("name");
                let entry = super::registry::model_entry(name).ok_or("unregistered model")?;
                (entry.read_json)(table)?
            }
            Reader::Method(_) => {
                let m: MethodConfig = toml::Value::Table(table)
                    .try_into()
                    .map_err(|e: toml::de::Error| e.message().trim_end().to_string())?;
                serde_json::to_value(&m).map_err(|e| e.to_string())?
            }
            // Read by the file's reader, not by a config type.
            Reader::Entry(_) => serde_json::Value::Null,
        };
        Ok(match value {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        })
    }
}

/// The key of a `[[methods]]` table with `name` whose value makes it
/// fail to parse (serde names the expected type, not the key): each key is
/// tried alone next to the method's required keys.
pub fn bad_method_key(name: &str, table: &toml::Table) -> Option<String> {
    let doc = tables()
        .into_iter()
        .find(|t| matches!(t.reader, Reader::Method(n) if n == name))?;
    let base = doc.minimal();
    let parses = |t: toml::Table| toml::Value::Table(t).try_into::<MethodConfig>().is_ok();
    table
        .iter()
        .filter(|(k, _)| k.as_str() != "name")
        .find(|(k, v)| {
            let mut one = base.clone();
            one.insert((*k).clone(), (*v).clone());
            !parses(one)
        })
        .map(|(k, _)| k.clone())
}

/// The keys a table accepts, read from the config types: serde's list of
/// expected fields for plain tables and models (which refuse unknown
/// keys), the keys a parsed method writes back for methods.
///
/// # Errors
/// A table that cannot be probed (a schema bug).
pub fn accepted_keys(doc: &TableDoc) -> Result<Vec<String>, String> {
    let probe = |read: &dyn Fn(toml::Table) -> Result<serde_json::Value, String>| {
        let mut table = toml::Table::new();
        table.insert("__probe__".into(), toml::Value::Integer(0));
        match read(table) {
            Ok(_) => Err("a table with an unknown key was accepted".to_string()),
            Err(e) if e.contains("there are no fields") => Ok(Vec::new()),
            Err(e) => {
                let list = e
                    .split("expected one of ")
                    .nth(1)
                    .or_else(|| e.split("expected ").nth(1))
                    .ok_or(format!("no list of fields in `{e}`"))?;
                Ok(list
                    .replace(" or ", ", ")
                    .split(", ")
                    .map(|k| k.trim().trim_matches('`').to_string())
                    .collect())
            }
        }
    };
    let mut keys: Vec<String> = match doc.reader {
        Reader::Struct(read) => probe(&read)?,
        Reader::Model(name) => {
            let entry = super::registry::model_entry(name).ok_or("unregistered model")?;
            probe(&entry.read_json)?
        }
        Reader::Entry(keys) => keys.iter().map(|k| k.to_string()).collect(),
        Reader::Method(_) => {
            let mut keys: Vec<String> = doc
                .defaults()?
                .keys()
                .filter(|k| *k != "name")
                .cloned()
                .collect();
            // Keys written back only when set (so that the random streams
            // keyed by older settings stay as they were): accepted where a
            // table that sets one parses and writes it back.
            for (key, value) in WRITTEN_ONLY_WHEN_SET {
                let mut table = doc.minimal();
                let value = match value {
                    Ok(i) => toml::Value::Integer(*i),
                    Err(text) => toml::Value::String(text.to_string()),
                };
                table.insert(key.to_string(), value);
                let parsed: Result<MethodConfig, _> = toml::Value::Table(table).try_into();
                if let Ok(m) = parsed
                    && serde_json::to_value(&m)
                        .ok()
                        .is_some_and(|v| v.get(key).is_some())
                {
                    keys.push(key.to_string());
                }
            }
            keys
        }
    };
    keys.sort();
    Ok(keys)
}

/// Method keys that are serialised only when set, with a value that sets
/// them (an integer, or a string as `Err`).
const WRITTEN_ONLY_WHEN_SET: &[(&str, Result<i64, &str>)] =
    &[("batch", Ok(1)), ("engine", Err("threads"))];

/// The reference as Markdown: one section per command's files, in it one
/// per table, one row per key with its type, default (from the types) and
/// meaning.
pub fn markdown() -> String {
    let mut out = String::new();
    for (i, file) in files().into_iter().enumerate() {
        if i > 0 {
            out += "\n";
        }
        out += &format!("### {} files\n\n{}\n", file.command, file.doc);
        for t in file.tables {
            let defaults = t.defaults().unwrap_or_default();
            out += &format!("\n#### `{}`\n\n{}\n\n", t.header, t.doc);
            if t.keys.is_empty() {
                out += "No settings.\n";
                continue;
            }
            out += "| key | type | default | meaning |\n|---|---|---|---|\n";
            for k in &t.keys {
                let default = match (k.required, defaults.get(k.key)) {
                    (Some(_), _) => "**required**".to_string(),
                    (None, Some(serde_json::Value::Null)) | (None, None) => "none".to_string(),
                    (None, Some(v)) => format!("`{v}`"),
                };
                out += &format!("| `{}` | {} | {} | {} |\n", k.key, k.kind, default, k.doc);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_lists_exactly_the_keys_the_types_accept() {
        let mut problems = Vec::new();
        for t in tables() {
            let mut documented: Vec<String> = t.keys.iter().map(|k| k.key.to_string()).collect();
            documented.sort();
            match accepted_keys(&t) {
                Ok(accepted) if accepted == documented => {}
                Ok(accepted) => problems.push(format!(
                    "{}: documented {documented:?}, accepted {accepted:?}",
                    t.header
                )),
                Err(e) => problems.push(format!("{}: {e}", t.header)),
            }
            if let Err(e) = t.defaults() {
                problems.push(format!(
                    "{}: required keys alone do not parse: {e}",
                    t.header
                ));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn every_registered_model_and_method_is_documented() {
        let headers: Vec<&str> = tables().iter().map(|t| t.header).collect();
        for name in super::super::registry::model_names() {
            let h = format!("[model] name = \"{name}\"");
            assert!(headers.contains(&h.as_str()), "{h}");
        }
        for name in [
            "climatology",
            "free",
            "oi",
            "var3d",
            "var4d",
            "ekf",
            "enkf",
            "etkf",
            "denkf",
            "ensrf",
            "letkf",
            "ienks",
            "en4dvar",
        ] {
            let h = format!("[[methods]] name = \"{name}\"");
            assert!(headers.contains(&h.as_str()), "{h}");
        }
    }

    #[test]
    fn every_command_has_its_section_and_every_header_is_unique_in_it() {
        let files = files();
        let commands: Vec<&str> = files.iter().map(|f| f.command).collect();
        assert_eq!(
            commands,
            ["rime run", "rime simulate", "rime train", "rime evaluate"]
        );
        for f in &files {
            let mut headers: Vec<&str> = f.tables.iter().map(|t| t.header).collect();
            headers.sort();
            headers.dedup();
            assert_eq!(headers.len(), f.tables.len(), "{}", f.command);
        }
        let text = markdown();
        for c in commands {
            assert!(text.contains(&format!("### {c} files\n")), "{c}");
        }
    }

    /// `name` (a TOML header) with the required keys of the documented
    /// table `header` of `command`'s files, after `extra`.
    fn section(command: &str, name: &str, header: &str, extra: &str) -> String {
        let t = files()
            .into_iter()
            .find(|f| f.command == command)
            .and_then(|f| f.tables.into_iter().find(|t| t.header == header))
            .unwrap_or_else(|| panic!("{command}: no table {header}"));
        let mut text = format!("{name}\n{extra}");
        if let Reader::Model(n) | Reader::Method(n) = t.reader {
            text += &format!("name = \"{n}\"\n");
        }
        for k in &t.keys {
            if let Some(example) = k.required {
                text += &format!("{} = {example}\n", k.key);
            }
        }
        text
    }

    /// Writes `text` to a file of its own (the readers take paths).
    fn file(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rime-schema-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn files_of_the_documented_required_keys_are_read_by_every_command() {
        use crate::learned::evaluate::EvaluateConfig;
        use crate::learned::{SimulateConfig, TrainConfig};
        let run = |extra: &str| {
            let r = |n: &str, h: &str, e: &str| section("rime run", n, h, e);
            [
                r("[[observations]]", "[[observations]]", "error_std = 1.0\n"),
                r("[run]", "[run]", ""),
                r("[initial]", "[initial]", ""),
                r("[model]", "[model] name = \"lorenz96\"", ""),
                r("[[methods]]", "[[methods]]", extra),
            ]
            .concat()
        };
        let config = super::super::config::ExperimentConfig::from_toml(
            &run("label = \"free-run_1.0\"\n"),
            std::path::Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(config.methods[0].label, "free-run_1.0");
        let config =
            super::super::config::ExperimentConfig::from_toml(&run(""), "x.toml".as_ref()).unwrap();
        assert_eq!(config.methods[0].label, "free");
        for bad in ["truth", ".hidden", "a/b", "x.partial"] {
            let text = run(&format!("label = \"{bad}\"\n"));
            let e = super::super::config::ExperimentConfig::from_toml(&text, "x.toml".as_ref())
                .unwrap_err()
                .to_string();
            assert!(e.contains("label"), "{bad}: {e}");
        }

        let s = |n: &str, h: &str, e: &str| section("rime simulate", n, h, e);
        let text = [
            section("rime run", "[model]", "[model] name = \"lorenz96\"", ""),
            section("rime run", "[initial]", "[initial]", ""),
            s("[simulate]", "[simulate]", ""),
            s("[expected.energy]", "[expected.<diagnostic>]", ""),
        ]
        .concat();
        let config = SimulateConfig::from_file(&file("simulate.toml", &text)).unwrap();
        assert_eq!(config.expected.len(), 1);

        let t = |n: &str, h: &str, e: &str| section("rime train", n, h, e);
        let base = |network: &str| {
            [
                t("[data]", "[data]", ""),
                t(
                    "[network]",
                    &format!("[network] kind = \"{network}\""),
                    &format!("kind = \"{network}\"\n"),
                ),
                t("[training]", "[training]", ""),
            ]
            .concat()
        };
        for (i, text) in [
            base("cnn1d"),
            base("unet2d"),
            base("cnn1d")
                + &t(
                    "[generative]",
                    "[generative] kind = \"diffusion\"",
                    "kind = \"diffusion\"\n",
                ),
            base("cnn1d")
                + &t(
                    "[generative]",
                    "[generative] kind = \"flow_matching\"",
                    "kind = \"flow_matching\"\n",
                ),
            base("cnn1d") + &t("[hybrid]", "[hybrid]", ""),
        ]
        .iter()
        .enumerate()
        {
            TrainConfig::from_file(&file(&format!("train{i}.toml"), text))
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
        }

        let e = |n: &str, h: &str, x: &str| section("rime evaluate", n, h, x);
        let text = [
            e("[data]", "[data]", ""),
            e("[evaluate]", "[evaluate]", ""),
            e("[[models]]", "[[models]]", "size = 40\n"),
        ]
        .concat();
        let config = EvaluateConfig::from_file(&file("evaluate.toml", &text)).unwrap();
        assert_eq!(config.models[0].0, "physics");
    }

    #[test]
    fn the_readme_carries_the_current_reference() {
        let readme = include_str!("../../README.md");
        let current = markdown();
        if !readme.contains(&current) {
            let path = std::env::temp_dir().join("rime-schema.md");
            std::fs::write(&path, &current).unwrap();
            panic!(
                "README.md's reference section is out of date: replace it with {} (what `cargo run -- schema` prints), under \"## Experiment file reference\"",
                path.display()
            );
        }
    }
}
