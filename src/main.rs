//! The `rime` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rime::device::DeviceChoice;
use rime::experiment::{ExperimentConfig, RunOptions, output, run, runner};
use rime::io::NetcdfFormat;

/// rime: differentiable programming and data assimilation for the geosciences.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs an experiment, streaming one NetCDF file per method (and truth.nc,
    /// observations.nc) into the output directory, then summary.json.
    Run {
        /// The experiment file (TOML).
        file: PathBuf,
        /// Output directory.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Number of cycles (overrides `run.cycles`).
        #[arg(long)]
        cycles: Option<usize>,
        /// Random seed (overrides `run.seed`).
        #[arg(long)]
        seed: Option<u64>,
        /// NetCDF flavour of the outputs (`netcdf4` needs the `netcdf` feature).
        #[arg(long, value_enum, default_value = "classic")]
        format: Format,
        /// Also write the results table (Markdown) to this file.
        #[arg(long)]
        table: Option<PathBuf>,
        /// Exit with status 1 if a method misses its `[expected]` score or does not end `ok`.
        #[arg(long)]
        check_expected: bool,
        /// Where models run (overrides `run.device`).
        #[arg(long, value_enum)]
        device: Option<DeviceChoice>,
        /// Replace files in the output folder that no recorded rime command
        /// wrote (without it, rime refuses to overwrite them).
        #[arg(long)]
        overwrite: bool,
    },
    /// Prints the reference of every command's files (experiment,
    /// simulation, training and evaluation files): every table and key with
    /// its type, default and meaning (Markdown).
    Schema,
    /// Draws PNG maps of one record of a trajectory file (`rime simulate`'s
    /// output): every 2-D field of the state and the fields the model derives
    /// from it (for the sea ice: thickness, concentration, speed, shear and
    /// divergence), one `<field>.png` each in `--out`. Given a twin run's
    /// folder (`rime run --out`, with `[output] states`) and `--field`: the
    /// truth, each method's analysis mean and its error for that field.
    Map {
        /// The trajectory file, or a run's output folder.
        file: PathBuf,
        /// The field to map from a run's folder (e.g. `h`; optional when the
        /// run has one field).
        #[arg(long)]
        field: Option<String>,
        /// The folder of the maps.
        #[arg(long)]
        out: PathBuf,
        /// The record (default: the last).
        #[arg(long)]
        record: Option<usize>,
        /// The trajectory.
        #[arg(long, default_value_t = 0)]
        trajectory: usize,
        /// Replace files in the output folder that no recorded rime command
        /// wrote (without it, rime refuses to overwrite them).
        #[arg(long)]
        overwrite: bool,
    },
    /// Draws columns of a CSV table as a PNG line plot (one curve per value of
    /// `--group`; with `--log`, log-log axes and each curve's fitted power-law
    /// exponent, also printed).
    Plot {
        /// The table (CSV with a header row).
        csv: PathBuf,
        /// Column of the x values.
        #[arg(long)]
        x: String,
        /// Column of the y values.
        #[arg(long)]
        y: String,
        /// Column naming the curves.
        #[arg(long)]
        group: Option<String>,
        /// Logarithmic axes and fitted exponents.
        #[arg(long)]
        log: bool,
        /// A logarithmic y axis only.
        #[arg(long)]
        log_y: bool,
        /// Title (default: "y against x").
        #[arg(long)]
        title: Option<String>,
        /// The PNG file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Runs a model and writes its trajectories (time, trajectory, state) to
    /// NetCDF, split by time into train, validation and test: the data of
    /// `rime train`.
    Simulate {
        /// The simulation file (TOML: `[model]`, `[initial]`, `[simulate]`).
        file: PathBuf,
        /// The NetCDF file to write.
        #[arg(long, default_value = "trajectories.nc")]
        out: PathBuf,
        /// Replace files in the output folder that no recorded rime command
        /// wrote (without it, rime refuses to overwrite them).
        #[arg(long)]
        overwrite: bool,
    },
    /// Trains a neural emulator on a trajectory file: writes `emulator.ckpt`
    /// (best validation loss), `last.ckpt` (with the optimiser state) and the
    /// training curve (`training.csv`, `training.nc`, `training.png`).
    Train {
        /// The training file (TOML: `[data]`, `[network]`, `[training]`;
        /// with a `[downscaling]` table, a downscaling emulator: writes
        /// `downscaling.ckpt` and the training curve).
        file: PathBuf,
        /// Output directory.
        #[arg(long, default_value = "emulator")]
        out: PathBuf,
        /// Continue from `<out>/last.ckpt` up to `training.epochs`.
        #[arg(long)]
        resume: bool,
        /// Stop after this epoch (split a long training into jobs; the next
        /// one passes `--resume`).
        #[arg(long)]
        until_epoch: Option<usize>,
        /// Replace files in the output folder that no recorded rime command
        /// wrote (without it, rime refuses to overwrite them).
        #[arg(long)]
        overwrite: bool,
    },
    /// Scores models (emulators, surrogates, physical models) against the
    /// test split of a trajectory file, lead by lead, beside persistence and
    /// climatology: RMSE, anomaly correlation, and for ensembles CRPS,
    /// spread-skill and rank histograms; spectra and free-run statistics.
    /// Writes evaluation.csv, evaluation.nc and PNG plots.
    Evaluate {
        /// The evaluation file (TOML: `[data]`, `[evaluate]`, `[[models]]`;
        /// with a `[downscaling]` table, the CORDEX-ML-Bench scores of a
        /// downscaling emulator, with maps and spectra).
        file: PathBuf,
        /// Output directory.
        #[arg(long, default_value = "evaluation")]
        out: PathBuf,
        /// Also write the summary table (Markdown) to this file.
        #[arg(long)]
        table: Option<PathBuf>,
        /// Replace files in the output folder that no recorded rime command
        /// wrote (without it, rime refuses to overwrite them).
        #[arg(long)]
        overwrite: bool,
    },
    /// Reads and validates an experiment file and builds its models without running it.
    Check {
        /// The experiment file (TOML).
        file: PathBuf,
        /// Where models would run (overrides `run.device`).
        #[arg(long, value_enum)]
        device: Option<DeviceChoice>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Classic,
    Netcdf4,
}

/// The `*.partial.nc` files in `dir` written since `since`, sorted.
fn partial_files(dir: &std::path::Path, since: std::time::SystemTime) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial.nc"))
        .collect();
    names.sort();
    names
}

/// Writes a results table (Markdown), creating its folder.
fn write_table(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    rime::io::write_atomic(path, text.as_bytes())?;
    Ok(())
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::Schema => {
            print!("{}", rime::experiment::schema::markdown());
            Ok(ExitCode::SUCCESS)
        }
        Command::Map {
            file,
            field,
            out,
            record,
            trajectory,
            overwrite,
        } => {
            if file.is_dir() {
                let maps = rime::experiment::maps::draw_run_maps(
                    &file,
                    field.as_deref(),
                    record,
                    &out,
                    overwrite,
                )?;
                for path in maps {
                    println!("wrote {}", path.display());
                }
                return Ok(ExitCode::SUCCESS);
            }
            let report =
                rime::experiment::maps::draw_maps(&file, &out, record, trajectory, overwrite)?;
            for path in &report.maps {
                println!("wrote {}", path.display());
            }
            println!("diagnostics at t = {}:", report.time);
            for (name, value) in &report.diagnostics {
                println!("{name}: {value:.6e}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Plot {
            csv,
            x,
            y,
            group,
            log,
            log_y,
            title,
            out,
        } => {
            let text = std::fs::read_to_string(&csv)
                .map_err(|e| anyhow::anyhow!("{}: {e}", csv.display()))?;
            let spec = rime::plot::PlotSpec {
                title: title.unwrap_or_else(|| format!("{y} against {x}")),
                x,
                y,
                group,
                log,
                log_y,
            };
            let curves = rime::plot::curves(&text, &spec, &csv.display().to_string())?;
            rime::plot::draw(&curves, &spec, &out)?;
            for c in &curves {
                if let Some(b) = c.exponent {
                    let name = if c.name.is_empty() { "all" } else { &c.name };
                    println!("{name}: {} ~ {} ^ {b:.3}", spec.y, spec.x);
                }
            }
            println!("wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate {
            file,
            out,
            overwrite,
        } => {
            let config =
                rime::learned::SimulateConfig::from_file(&file).map_err(anyhow::Error::msg)?;
            let report = rime::learned::simulate(&config, &file, &out, true, overwrite)?;
            println!(
                "wrote {}: {} trajectories x {} records of {} variables, {} model time apart ({:.1} s)",
                report.path.display(),
                report.trajectories,
                report.records,
                report.n,
                report.interval,
                report.seconds
            );
            for (name, values) in &report.diagnostics {
                if report.checks.iter().any(|c| &c.name == name) || values.len() > 8 {
                    continue;
                }
                let values: Vec<String> = values.iter().map(|v| format!("{v:.4}")).collect();
                println!("{name}: {}", values.join(", "));
            }
            for check in &report.checks {
                let values: Vec<String> = check.values.iter().map(|v| format!("{v:.4}")).collect();
                println!(
                    "{}: {} (expected [{}, {}]: {})",
                    check.name,
                    values.join(", "),
                    check.range.min,
                    check.range.max,
                    if check.inside() { "inside" } else { "OUTSIDE" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Train {
            file,
            out,
            resume,
            until_epoch,
            overwrite,
        } => {
            if rime::learned::downscaling::is_downscaling_file(&file) {
                use rime::learned::downscaling as d;
                if resume || until_epoch.is_some() {
                    anyhow::bail!(
                        "{}: a downscaling emulator trains in one go (--resume and --until-epoch are for emulators of a model step)",
                        file.display()
                    );
                }
                let config = d::DownscalingConfig::from_file(&file).map_err(anyhow::Error::msg)?;
                let report = d::train(&config, &file, &out, true, overwrite)?;
                let h = &report.header;
                if let Some(best) = h.history.iter().find(|r| r.epoch == h.best_epoch) {
                    println!(
                        "best epoch {} of {}: validation loss {:.4e}, validation RMSE {:.4e} {}",
                        best.epoch,
                        h.history.len(),
                        best.validation_loss,
                        best.validation_rmse,
                        h.target_units
                    );
                }
                println!(
                    "{:.1} training samples per second",
                    report.samples_per_second
                );
                println!("wrote {}", report.checkpoint.display());
                return Ok(ExitCode::SUCCESS);
            }
            let config =
                rime::learned::TrainConfig::from_file(&file).map_err(anyhow::Error::msg)?;
            let report =
                rime::learned::train(&config, &file, &out, resume, until_epoch, true, overwrite)?;
            let s = &report.state;
            if let Some(best) = s.history.iter().find(|r| r.epoch == s.best_epoch) {
                println!(
                    "best epoch {} of {}: validation loss {:.4e}, one-step validation RMSE {:.4e}{}",
                    best.epoch,
                    s.epoch,
                    best.validation_loss,
                    best.validation_rmse,
                    if s.stopped_early {
                        " (stopped early)"
                    } else {
                        ""
                    }
                );
            }
            println!(
                "{:.0} training samples per second",
                report.samples_per_second
            );
            println!(
                "wrote {} and {}",
                report.best.display(),
                report.last.display()
            );
            for f in &report.files {
                println!("wrote {}", f.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Evaluate {
            file,
            out,
            table,
            overwrite,
        } => {
            if rime::learned::downscaling::is_downscaling_file(&file) {
                use rime::learned::downscaling as d;
                let config =
                    d::DownscalingEvaluateConfig::from_file(&file).map_err(anyhow::Error::msg)?;
                if let Some(path) = &table {
                    rime::io::folder::check_writable(path)?;
                }
                let ev = d::evaluate(&config, &file, &out, overwrite)?;
                let markdown = d::evaluation_table(&ev);
                print!("{markdown}");
                if let Some(path) = table {
                    let header = format!("Evaluation `{}`.\n\n", file.display());
                    write_table(&path, &(header + &markdown))?;
                }
                for f in &ev.files {
                    println!("wrote {}", f.display());
                }
                return Ok(ExitCode::SUCCESS);
            }
            let config = rime::learned::evaluate::EvaluateConfig::from_file(&file)
                .map_err(anyhow::Error::msg)?;
            // Every output target is checked before any computing.
            if let Some(path) = &table {
                rime::io::folder::check_writable(path)?;
            }
            let ev = rime::learned::evaluate::evaluate(&config, &out, true, overwrite)?;
            let markdown = rime::learned::evaluate::table(&ev);
            print!("{markdown}");
            if let Some(path) = table {
                let header = format!("Evaluation `{}`.\n\n", file.display());
                write_table(&path, &(header + &markdown))?;
            }
            for f in &ev.files {
                println!("wrote {}", f.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { file, device } => {
            let config = ExperimentConfig::from_file(&file)?;
            let options = RunOptions {
                device,
                ..RunOptions::default()
            };
            let config = runner::with_options(&config, &options)?;
            let built = runner::build(&config)?;
            let estimate = runner::check_memory(&config, &built)?;
            if config.initial.sample.is_none()
                && let Some(hint) = config.model.start_hint()
            {
                eprintln!("note: {hint}");
            }
            println!(
                "{}: {} model ({} variables), {} method(s), {} cycles, device {}",
                file.display(),
                config.model.name(),
                built.model().size(),
                config.methods.len(),
                config.run.cycles,
                config.run.device.name()
            );
            let machine = runner::machine_memory().map_or(String::new(), |t| {
                format!(
                    " of the machine's {:.1} GiB",
                    t as f64 / (1u64 << 30) as f64
                )
            });
            println!(
                "estimated memory: {:.1} MiB{machine} (largest part: {})",
                estimate.total() as f64 / 1048576.0,
                estimate.parts.first().map_or("none", |p| p.0.as_str())
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            file,
            out,
            cycles,
            seed,
            format,
            table,
            check_expected,
            device,
            overwrite,
        } => {
            let config = ExperimentConfig::from_file(&file)?;
            // Every output target is checked before any computing.
            if let Some(path) = &table {
                rime::io::folder::check_writable(path)?;
            }
            let format = match format {
                Format::Classic => NetcdfFormat::Classic,
                Format::Netcdf4 => NetcdfFormat::Netcdf4,
            };
            let options = RunOptions {
                cycles,
                seed,
                progress: true,
                device,
                output: Some(output::OutputTarget {
                    dir: out.clone(),
                    format,
                    overwrite,
                }),
                // The per-cycle scores are in the NetCDF files.
                drop_series: true,
            };
            let effective = runner::with_options(&config, &options)?;
            if effective.run.burn_in != config.run.burn_in {
                eprintln!(
                    "note: --cycles {} is not above run.burn_in = {}; the burn-in is shortened to {} cycles",
                    effective.run.cycles, config.run.burn_in, effective.run.burn_in
                );
            }
            let started = std::time::SystemTime::now();
            let report = match run(&config, &options) {
                Ok(r) => r,
                Err(e) => {
                    let partial = partial_files(&out, started);
                    if !partial.is_empty() {
                        eprintln!(
                            "note: no output file is complete; {} in {} hold the cycles up to the last flush",
                            partial.join(", "),
                            out.display()
                        );
                    }
                    return Err(
                        anyhow::Error::new(e).context(format!("running {}", file.display()))
                    );
                }
            };
            for note in &report.notes {
                eprintln!("note: {note}");
            }
            let summary = output::write_summary(&report, &out)?;
            let markdown = output::table(&report);
            print!("{markdown}");
            println!(
                "wrote {} files to {}",
                report.files.len() + 1,
                summary.parent().unwrap_or(&out).display()
            );
            if let Some(bytes) = report.peak_memory_bytes {
                println!("peak resident memory: {:.1} MiB", bytes as f64 / 1048576.0);
            }
            if let Some(path) = table {
                let header = format!(
                    "Experiment `{}`, seed {}, {} cycles, burn-in {}.\n\n",
                    file.display(),
                    report.config.run.seed,
                    report.config.run.cycles,
                    report.config.run.burn_in
                );
                write_table(&path, &(header + &markdown))?;
            }
            for m in &report.methods {
                match &m.status {
                    rime::experiment::runner::Status::Ok => {}
                    rime::experiment::runner::Status::Diverged { reason, .. }
                    | rime::experiment::runner::Status::Failed { reason, .. } => {
                        eprintln!("warning: {} {}: {reason}", m.label, m.status.describe());
                    }
                    other => eprintln!("warning: {}: {}", m.label, other.describe()),
                }
            }
            // Anything but a clean run fails the check: a missed score, and
            // a method stopped early whether or not it has an expectation.
            let failed = report.methods.iter().any(|m| {
                m.meets_expectation() == Some(false)
                    || m.status != rime::experiment::runner::Status::Ok
            });
            Ok(if check_expected && failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
