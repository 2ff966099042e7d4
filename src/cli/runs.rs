//! `promptmner runs`: submit ablations, list and inspect runs, cancel, the results table.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::jobs::registry::{BackendKind, Registry, RunView, default_root, view};
use crate::jobs::submit::{Submission, submit};
use crate::jobs::table::{Format, render, rows};
use crate::jobs::variant::Variant;
use crate::jobs::{Backend, SlurmConfig, backend_for};
use crate::prompts::Vocabulary;

#[derive(Debug, clap::Args)]
pub struct RunsArgs {
    /// The runs folder (default: $PROMPTMNER_RUNS, else the platform data directory).
    #[arg(long, global = true)]
    pub runs: Option<PathBuf>,
    #[command(subcommand)]
    pub command: RunsCommand,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Queue ablation runs derived from a checkpoint's (or a config file's) training config.
    Submit {
        /// A checkpoint directory or a training config file.
        #[arg(long)]
        from: PathBuf,
        /// full, no-discrete, no-continuous, plain, none, continuous-N, current-vocabulary.
        #[arg(long = "variant", required = true)]
        variants: Vec<String>,
        /// Seeds per variant (the config's seed, then +1, +2, ...).
        #[arg(long, default_value_t = 3)]
        seeds: usize,
        /// Override a config key in every run, e.g. --set epochs=5.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        #[arg(long, value_enum, default_value_t = BackendKind::Local)]
        backend: BackendKind,
        /// The vocabulary of current-vocabulary runs.
        #[arg(long)]
        prompts: Option<PathBuf>,
        /// A label for this group of runs.
        #[arg(long)]
        name: Option<String>,
        /// Slurm resources (TOML: partition, gpus, cpus, memory, time); default
        /// RUNS/slurm.toml when it exists.
        #[arg(long)]
        slurm_config: Option<PathBuf>,
        /// Local runs at once (on a machine with GPUs, one GPU each: see the README).
        #[arg(long = "max-parallel", alias = "limit", default_value_t = 1)]
        limit: usize,
    },
    /// Every run with its state, epoch and scores.
    List,
    /// One run: spec, status, progress and the tail of its log.
    Show { id: String },
    /// Cancel a queued or running run, or (by its name) every run of a group: a Slurm
    /// submission's job array is cancelled as one.
    Cancel { id: String },
    /// The results table over a group (or run ids): mean ± std over seeds per variant.
    Table {
        /// Run ids or one group name; default: the newest group.
        ids: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Md)]
        format: Format,
    },
    /// The local runner (started by `submit`; runs queued local runs).
    #[command(hide = true)]
    Worker {
        #[arg(long = "max-parallel", alias = "limit", default_value_t = 1)]
        limit: usize,
    },
}

fn program() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find this executable to start runs with")
}

fn slurm_config(root: &Path, path: Option<&Path>) -> anyhow::Result<SlurmConfig> {
    let default = root.join("slurm.toml");
    match path {
        Some(path) => Ok(SlurmConfig::load(path)?),
        None if default.is_file() => Ok(SlurmConfig::load(&default)?),
        None => Ok(SlurmConfig::default()),
    }
}

pub(super) fn run(args: RunsArgs) -> anyhow::Result<()> {
    let root = args.runs.unwrap_or_else(default_root);
    let registry = Registry::open(&root)?;
    match args.command {
        RunsCommand::Submit {
            from,
            variants,
            seeds,
            overrides,
            backend,
            prompts,
            name,
            slurm_config: slurm_path,
            limit,
        } => {
            let variants = variants
                .iter()
                .map(|v| v.parse::<Variant>())
                .collect::<Result<Vec<_>, _>>()?;
            let vocabulary = prompts.as_deref().map(Vocabulary::load).transpose()?;
            let submission = Submission {
                source: from,
                variants,
                seeds,
                overrides,
                backend,
                vocabulary,
                name,
            };
            let program = program()?;
            // The Slurm config is read (and checked) before any run folder is made.
            let backend: Box<dyn Backend> = match backend {
                BackendKind::Local => Box::new(crate::jobs::LocalBackend {
                    root: root.clone(),
                    program,
                    limit,
                }),
                kind => backend_for(
                    kind,
                    &root,
                    &program,
                    &slurm_config(&root, slurm_path.as_deref())?,
                ),
            };
            let runs = submit(&registry, &submission)?;
            backend.submit(&runs)?;
            for run in &runs {
                println!("{}", run.spec()?.id);
            }
            Ok(())
        }
        RunsCommand::List => {
            let (runs, skipped) = registry.list()?;
            for message in skipped {
                eprintln!("{message}");
            }
            let slurm = slurm_config(&root, None)?;
            let mut table =
                crate::util::listing(&["id", "state", "epoch", "loss", "dev F1", "test F1"]);
            if let Some(state) = table.column_mut(1) {
                state.set_cell_alignment(comfy_table::CellAlignment::Left);
            }
            for run in runs {
                let run = refreshed(run, &root, &slurm)?;
                let p = &run.progress;
                table.add_row(vec![
                    crate::util::printable(&run.spec.id),
                    run.state.as_str().to_string(),
                    format!("{}/{}", p.epoch, p.epochs),
                    p.loss.map_or("–".into(), |l| format!("{l:.4}")),
                    p.dev_f1.map_or("–".into(), |f| format!("{f:.2}")),
                    p.test.map_or("–".into(), |t| format!("{:.2}", t.f1)),
                ]);
            }
            println!("{}", table.trim_fmt());
            Ok(())
        }
        RunsCommand::Show { id } => {
            let run = view(registry.run(&id)?)?;
            let run = refreshed(run, &root, &slurm_config(&root, None)?)?;
            // Everything here comes from files others may write: no raw control codes.
            let shown = crate::util::printable;
            println!(
                "{}: {} ({} seed {}, {:?} backend)",
                shown(&run.spec.id),
                run.state.as_str(),
                shown(&run.spec.variant),
                run.spec.seed,
                run.spec.backend
            );
            println!(
                "group {} · from {}",
                shown(&run.spec.group),
                shown(&run.spec.source.to_string_lossy())
            );
            println!("folder {}", shown(&run.run.dir().to_string_lossy()));
            if let Some(message) = &run.status.message {
                println!("{}", shown(message));
            }
            print_attempts(&run.progress.attempts);
            println!("--- log tail ---");
            for line in run.run.log_tail(15) {
                println!("{}", shown(&line));
            }
            Ok(())
        }
        RunsCommand::Cancel { id } if registry.run(&id).is_err() => {
            let (all, _) = registry.list()?;
            let group: Vec<RunView> = all.into_iter().filter(|r| r.spec.group == id).collect();
            if group.is_empty() {
                bail!("no run or group named {id} (see `promptmner runs list`)");
            }
            let (slurm, local): (Vec<RunView>, Vec<RunView>) = group
                .into_iter()
                .partition(|r| r.spec.backend == BackendKind::Slurm);
            let slurm: Vec<_> = slurm.into_iter().map(|r| r.run).collect();
            crate::jobs::slurm::cancel_group(&slurm)?;
            let backend = backend_for(
                BackendKind::Local,
                &root,
                &program()?,
                &SlurmConfig::default(),
            );
            for run in local.iter().filter(|r| !r.state.is_final()) {
                backend.cancel(&run.run)?;
            }
            println!("cancelled group {id}");
            Ok(())
        }
        RunsCommand::Cancel { id } => {
            let run = registry.run(&id)?;
            let kind = run.spec()?.backend;
            backend_for(kind, &root, &program()?, &slurm_config(&root, None)?).cancel(&run)?;
            println!("cancelled {id}");
            Ok(())
        }
        RunsCommand::Table { ids, format } => {
            let (runs, skipped) = registry.list()?;
            for message in skipped {
                eprintln!("{message}");
            }
            let chosen = choose(runs, &ids)?;
            let mut table = rows(&chosen);
            crate::jobs::table::with_test_predictions(&mut table, &chosen);
            print!("{}", render(&table, format));
            Ok(())
        }
        RunsCommand::Worker { limit } => {
            crate::jobs::local::run_worker(&root, &program()?, limit)?;
            Ok(())
        }
    }
}

/// A Slurm run's state asked of Slurm; local runs are as the registry sees them.
fn refreshed(run: RunView, root: &Path, slurm: &SlurmConfig) -> anyhow::Result<RunView> {
    if run.spec.backend == BackendKind::Slurm && !run.state.is_final() {
        backend_for(BackendKind::Slurm, root, &program()?, slurm).poll(&run.run)?;
        return Ok(view(run.run)?);
    }
    Ok(run)
}

/// The runs named (ids, or a group), or the newest group.
fn choose(runs: Vec<RunView>, ids: &[String]) -> anyhow::Result<Vec<RunView>> {
    if ids.is_empty() {
        let Some(newest) = runs
            .iter()
            .max_by(|a, b| a.spec.submitted.total_cmp(&b.spec.submitted))
        else {
            bail!("no runs yet (promptmner runs submit ...)");
        };
        let group = newest.spec.group.clone();
        return Ok(runs.into_iter().filter(|r| r.spec.group == group).collect());
    }
    let chosen: Vec<RunView> = runs
        .into_iter()
        .filter(|r| ids.contains(&r.spec.id) || ids.contains(&r.spec.group))
        .collect();
    if chosen.is_empty() {
        bail!("no run or group named {}", ids.join(", "));
    }
    Ok(chosen)
}

/// `runs show`'s list of the processes that trained a run, when there was more than one
/// or one stopped: when each began (after the first) and how it ended.
fn print_attempts(attempts: &[crate::jobs::registry::Attempt]) {
    let stopped =
        |a: &crate::jobs::registry::Attempt| a.ended.is_some_and(|(_, k)| k == "interrupted");
    let Some(first) = attempts.first() else {
        return;
    };
    if attempts.len() < 2 && !stopped(first) {
        return;
    }
    println!("attempts:");
    for (i, attempt) in attempts.iter().enumerate() {
        let how = if attempt.resumed {
            "resumed"
        } else {
            "started"
        };
        let end = attempt.ended.map_or_else(
            || "no end recorded (running, or killed)".to_string(),
            |(at, kind)| format!("{kind} after {:.0} s", at - attempt.started),
        );
        let offset = attempt.started - first.started;
        println!("  {}. {how} at +{offset:.0} s · {end}", i + 1);
    }
}
