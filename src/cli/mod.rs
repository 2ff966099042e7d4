//! The command line (DESIGN §2): argument parsing and the commands' front ends.

use std::path::{Path, PathBuf};

mod bars;
mod bench;
mod figure;
mod runs;
mod workbench;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::data::conll::write_conll;
use crate::data::demo;
use crate::data::images::ImageResolver;
use crate::data::stats::dataset_stats;
use crate::data::tags::EntityType;
use crate::data::{Tweet, read_conll};
use crate::eval::predict::{predict_split, predicted_tweets};
use crate::eval::score::{ErrorKind, ScoreReport, score_tweets};
use crate::eval::split::score_predictions;
use crate::model::device::{self, DeviceChoice, Precision};
use crate::model::store::{ModelStore, Preset};
use crate::prompts::Vocabulary;
use crate::stages::image_cache::ImageCache;
use crate::stages::{ImageSource, PreparedSplit, PromptCache, StageCounters};
use crate::train::clip_pretrain::{PretrainConfig, pretrain_clip};
use crate::train::{self, Checkpoint, TrainConfig};
pub use bars::Bars;

#[derive(Debug, Parser)]
#[command(
    name = "promptmner",
    version,
    about = "Prompt-based multimodal NER (PromptMNER) and its research workbench"
)]
pub struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Without a command: the workbench on the embedded demo (on a terminal; otherwise
    /// the demo checkpoint's evaluation).
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Score predictions against gold, entity by entity (conlleval's numbers).
    Score {
        /// Gold CoNLL file.
        #[arg(long)]
        gold: PathBuf,
        /// Predicted CoNLL file, token-aligned with the gold file.
        #[arg(long)]
        pred: PathBuf,
        /// Print the report as JSON (the same as --format json).
        #[arg(long)]
        json: bool,
        /// text, json, or latex (a booktabs table for a paper).
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
    /// Generate the demo world: a multimodal NER dataset whose ambiguous names only the image types.
    DemoData {
        /// Output directory (train.txt, valid.txt, test.txt, images/, captions.tsv, meta.tsv).
        #[arg(long)]
        out: PathBuf,
        /// Random seed; the same seed gives byte-identical files.
        #[arg(long, default_value_t = demo::DEFAULT_SEED)]
        seed: u64,
        /// Tweets in train.txt.
        #[arg(long, default_value_t = 1200)]
        train: usize,
        /// Tweets in valid.txt.
        #[arg(long, default_value_t = 300)]
        valid: usize,
        /// Tweets in test.txt.
        #[arg(long, default_value_t = 300)]
        test: usize,
        /// Width and height of the images in pixels.
        #[arg(long, default_value_t = 96)]
        image_size: u32,
        /// Also write a PNG grid of example images, one row per scene category.
        #[arg(long)]
        contact_sheet: Option<PathBuf>,
    },
    /// Train a model (fine-tunes the text encoder; CLIP stays frozen).
    Train {
        /// TOML training configuration (see configs/).
        #[arg(long)]
        config: PathBuf,
        /// Run directory: checkpoint, metrics.json, train.log, events.jsonl.
        /// Default: runs/CONFIG, CONFIG being the config file's name without .toml.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue the run in --out from its saved state (its last completed epoch, or
        /// the step where a signal stopped it).
        #[arg(long, conflicts_with = "auto_resume")]
        resume: bool,
        /// Continue the run in --out when it holds a saved state, else start it (what a
        /// requeued cluster job runs).
        #[arg(long)]
        auto_resume: bool,
        /// Override a configuration key, e.g. --set optim.lr_text=3e-5 --set model.fusion=none.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
        device: DeviceChoice,
    },
    /// Contrastive pretraining of a tiny CLIP on a dataset's captions (captions.tsv), with
    /// its zero-shot scene accuracy on the test images (meta.tsv).
    PretrainClip {
        /// Dataset directory with captions.tsv and meta.tsv (the demo world).
        #[arg(long)]
        data: PathBuf,
        /// Where the pretrained CLIP is written (HF layout).
        #[arg(long)]
        out: PathBuf,
        /// A CLIP directory to start from; default: a fresh tiny CLIP over the dataset's words.
        #[arg(long)]
        init: Option<PathBuf>,
        /// The vocabulary whose label words name the scene categories.
        #[arg(long, default_value = "prompts/demo.toml")]
        prompts: PathBuf,
        #[arg(long, default_value_t = 40)]
        epochs: usize,
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        #[arg(long, default_value_t = 2e-3)]
        lr: f64,
        #[arg(long, default_value_t = 2022)]
        seed: u64,
        #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
        device: DeviceChoice,
    },
    /// Evaluate a checkpoint on a split: CoNLL predictions and scores.
    Eval(EvalArgs),
    /// The workbench: browse a split with its images, edit the prompts, watch the scores.
    Tui(workbench::TuiArgs),
    /// A case-study figure of one tweet for a paper (SVG or PNG): the image, gold and
    /// predicted entities (A, and B with --compare), the top prompts' a_i.
    Figure(figure::FigureArgs),
    /// Print one tweet with its image and its gold and predicted spans.
    Show(workbench::ShowArgs),
    /// Ablation runs: submit, list, show, cancel, and the results table.
    Runs(runs::RunsArgs),
    /// Which tweets' predictions change when their image is removed or swapped.
    ProbeImages(ProbeArgs),
    /// Rank candidate prompt words by the F1 change of adding each to a list.
    Suggest(SuggestArgs),
    /// Measure: text and CLIP encoding (`encode`) or the live edit loop (`live`).
    Bench(bench::BenchArgs),
    /// The local model store: backbones by name.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Dataset tools.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// The models in the store and what each preset needs.
    List,
    /// Download a model from the Hugging Face hub into the store (`tiny` writes the
    /// small random backbones from the demo world instead).
    Fetch {
        /// all-MiniLM-L6-v2, bert-base-cased, clip-vit-base-patch32, tiny, or owner/name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Tweets, tokens, entities and images of each split of a dataset directory.
    Stats {
        /// Dataset directory (train.txt, valid.txt, test.txt, images/).
        dir: PathBuf,
        /// Images directory, instead of DIR/images.
        #[arg(long)]
        images: Option<PathBuf>,
        /// Print the statistics as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let Some(command) = cli.command else {
        return demo_default();
    };
    match command {
        Command::Score {
            gold,
            pred,
            json,
            format,
        } => score(&gold, &pred, if json { ReportFormat::Json } else { format }),
        Command::DemoData {
            out,
            seed,
            train,
            valid,
            test,
            image_size,
            contact_sheet,
        } => {
            let config = demo::DemoConfig {
                seed,
                sizes: [train, valid, test],
                image_size,
            };
            let vocabulary = crate::prompts::demo::vocabulary()?;
            let world = demo::generate(&config, &|word| vocabulary.fill(word), &Bars::default());
            world.write(&out, &Bars::default())?;
            eprintln!("wrote the demo world to {}", out.display());
            if let Some(path) = contact_sheet {
                let png = demo::encode_png(&world.contact_sheet(8))?;
                crate::util::write_atomic(&path, &png)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("wrote the contact sheet to {}", path.display());
            }
            Ok(())
        }
        Command::Models { command } => models(command),
        Command::Train {
            config,
            out,
            resume,
            auto_resume,
            overrides,
            device,
        } => {
            let train_config = TrainConfig::load(&config, &overrides)?;
            let out = out.unwrap_or_else(|| {
                PathBuf::from("runs").join(config.file_stem().unwrap_or_default())
            });
            let options = train::TrainOptions::new(match (resume, auto_resume) {
                (true, _) => train::Resume::Yes,
                (_, true) => train::Resume::IfSaved,
                _ => train::Resume::No,
            });
            // SIGTERM (a kill, Slurm's end of a job) and SIGUSR1 (Slurm's warning ahead
            // of the time limit): finish the step, save the state, exit resumable.
            for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGUSR1] {
                signal_hook::flag::register_usize(signal, options.stop.clone(), signal as usize)
                    .context("cannot install the signal handlers")?;
            }
            let device = device::select(device)?;
            let summary = train::train(&train_config, &out, &options, &device, &Bars::default())?;
            let m = &summary.metrics;
            println!(
                "best epoch {} (dev F1 {:.2}){}; checkpoint in {}",
                m.best_epoch.map_or("-".into(), |e| e.to_string()),
                m.best_dev_f1(),
                m.test.map_or(String::new(), |t| format!(
                    ", test P {:.2} R {:.2} F1 {:.2}",
                    t.precision, t.recall, t.f1
                )),
                summary.out.display()
            );
            Ok(())
        }
        Command::PretrainClip {
            data,
            out,
            init,
            prompts,
            epochs,
            batch_size,
            lr,
            seed,
            device,
        } => {
            let vocabulary = Vocabulary::load(&prompts)?;
            let config = PretrainConfig {
                epochs,
                batch_size,
                lr,
                seed,
            };
            let report = pretrain_clip(
                &data,
                init.as_deref(),
                &out,
                &vocabulary,
                &config,
                &device::select(device)?,
                &Bars::default(),
            )?;
            println!(
                "zero-shot scene accuracy on {} test images: {:.1}% (final loss {:.4}); CLIP written to {}",
                report.test_images,
                report.zero_shot_accuracy,
                report.epoch_losses.last().copied().unwrap_or(f64::NAN),
                out.display()
            );
            Ok(())
        }
        Command::Eval(args) => eval(&args),
        Command::Tui(args) => workbench::tui(&args),
        Command::Figure(args) => figure::run(&args),
        Command::Show(args) => workbench::show(&args),
        Command::Runs(args) => runs::run(args),
        Command::ProbeImages(args) => probe_images(&args),
        Command::Suggest(args) => suggest(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Data {
            command: DataCommand::Stats { dir, images, json },
        } => {
            let resolver = ImageResolver::for_dataset(&dir, images.as_deref());
            let stats = dataset_stats(&dir, &resolver, &Bars::default())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print!("{stats}");
            }
            Ok(())
        }
    }
}

/// The demo checkpoint, next to the embedded demo world.
pub fn demo_checkpoint() -> PathBuf {
    let data = demo::embedded_dir();
    data.parent().and_then(Path::parent).map_or_else(
        || PathBuf::from("checkpoints/demo"),
        |root| root.join("checkpoints/demo"),
    )
}

/// Whether this command line takes over the screen (its logs then go to a file).
pub fn opens_workbench(cli: &Cli) -> bool {
    match &cli.command {
        None => workbench::on_terminal(),
        Some(command) => matches!(command, Command::Tui(_)),
    }
}

/// `promptmner` alone: the workbench on the demo, or on a non-terminal the demo
/// checkpoint's evaluation and why the workbench did not open.
fn demo_default() -> anyhow::Result<()> {
    let data = demo::embedded_dir();
    let checkpoint = demo_checkpoint();
    if workbench::on_terminal() {
        return workbench::tui(&workbench::TuiArgs::demo(data, checkpoint));
    }
    println!(
        "The workbench needs a terminal (standard input and output are not one), so here is\n\
         the demo checkpoint ({}) on the demo world's test split ({}):\n",
        checkpoint.display(),
        data.display()
    );
    eval(&EvalArgs {
        run: SplitRun {
            checkpoint,
            data,
            split: "test".into(),
            images: None,
            batch_size: 64,
            device: DeviceChoice::Auto,
            precision: Precision::Fp32,
        },
        out: None,
        json: false,
        compare: None,
        resamples: crate::eval::significance::DEFAULT_RESAMPLES,
        format: ReportFormat::Text,
    })
}

/// A checkpoint run over a dataset split: what `eval` and `probe-images` share.
#[derive(Debug, clap::Args)]
pub struct SplitRun {
    /// Checkpoint directory (config.toml, model.safetensors, prompts.toml).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Dataset directory.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Images directory, instead of DATA/images.
    #[arg(long)]
    pub images: Option<PathBuf>,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Products in bf16 where the CPU has AVX512_BF16 (else fp32, with a warning).
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
}

/// What `promptmner eval` takes.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub run: SplitRun,
    /// Write the predictions here (CoNLL, token-aligned with the split).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the scores as JSON.
    #[arg(long)]
    pub json: bool,
    /// A second checkpoint: both scores, the delta with its 95% paired-bootstrap
    /// interval and approximate-randomisation p-value, and the disagreements.
    #[arg(long)]
    pub compare: Option<PathBuf>,
    /// With --compare: resamples of the bootstrap (and rounds of the randomisation).
    #[arg(long, default_value_t = crate::eval::significance::DEFAULT_RESAMPLES)]
    pub resamples: usize,
    /// With --compare: latex prints the comparison as a booktabs table.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

/// A checkpoint with a split's tweets, their image states and the checkpoint's prompts.
struct Prepared {
    checkpoint: Checkpoint,
    gold: Vec<Tweet>,
    states: Vec<crate::model::ImageState>,
    bank: crate::model::prompts::PromptBank,
}

/// Loads `checkpoint` (the run's own, or a second one to compare) and prepares the
/// run's split for it.
fn prepare(run: &SplitRun, checkpoint: &Path) -> anyhow::Result<Prepared> {
    let SplitRun {
        data,
        split,
        images,
        batch_size,
        device,
        precision,
        ..
    } = run;
    let mut checkpoint = Checkpoint::load(checkpoint, &device::select(*device)?)?;
    let precision = checkpoint.model.set_precision(*precision)?;
    let model = &checkpoint.model;
    let split = PreparedSplit::load(model, &crate::data::split_path(data, split))?;
    let resolver = ImageResolver::for_dataset(data, images.as_deref());
    let cache = ImageCache::open(
        &ImageCache::default_root(),
        &model.backbones.clip,
        precision,
    )
    .ok();
    let states = split.image_states(
        model,
        &ImageSource {
            resolver: &resolver,
            cache: cache.as_ref(),
            batch_size: *batch_size,
            progress: &Bars::default(),
            counters: &StageCounters::default(),
        },
    )?;
    let gold = split.tweets;
    // The count the checkpoint's prompts.toml asks for (Checkpoint::load checked it).
    let bank = PromptCache::default().bank(
        model,
        &checkpoint.vocabulary,
        checkpoint.vocabulary.continuous,
        &StageCounters::default(),
    )?;
    Ok(Prepared {
        checkpoint,
        gold,
        states,
        bank,
    })
}

/// `promptmner probe-images`: which tweets' predictions depend on their image.
fn probe_images(args: &ProbeArgs) -> anyhow::Result<()> {
    let prepared = prepare(&args.run, &args.run.checkpoint)?;
    let meta = demo::meta_rows(&args.run.data, &args.run.split, prepared.gold.len());
    let scenes: Option<Vec<Option<String>>> = meta
        .as_ref()
        .map(|rows| rows.iter().map(|r| r.scene.clone()).collect());
    let ambiguous: Option<Vec<bool>> = meta
        .as_ref()
        .map(|rows| rows.iter().map(|r| r.ambiguous).collect())
        .filter(|flags: &Vec<bool>| flags.iter().any(|f| *f));
    let probe = crate::eval::probe::probe_images(
        &prepared.checkpoint.model,
        &prepared.gold,
        &prepared.states,
        &prepared.bank,
        args.run.batch_size,
        scenes.as_deref(),
        ambiguous.as_deref(),
        &Bars::default(),
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&probe)?);
        return Ok(());
    }
    let mut table = crate::util::listing(&["tweets", "changed", "with an image", "share"]);
    let mut line = |name: &str, share: &crate::eval::probe::Share| {
        table.add_row(vec![
            name.to_string(),
            share.dependent.to_string(),
            share.tweets.to_string(),
            format!("{:.1}%", share.share * 100.0),
        ]);
    };
    line("all", &probe.overall);
    for (kind, share) in &probe.per_type {
        line(&format!("with gold {kind}"), share);
    }
    if let (Some(a), Some(u)) = (&probe.ambiguous, &probe.unambiguous) {
        line("image-ambiguous", a);
        line("not image-ambiguous", u);
    }
    println!("predictions that change when the image is removed or swapped:");
    println!("{}", table.trim_fmt());
    Ok(())
}

/// What `promptmner suggest` takes.
#[derive(Debug, clap::Args)]
pub struct SuggestArgs {
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    /// The split scored for each candidate (the dev split by default).
    #[arg(long, default_value = "valid")]
    pub split: String,
    /// The list the words are added to, as TYPE.LIST (e.g. PER.expert).
    #[arg(long)]
    pub list: String,
    /// One candidate word per line; default: the type's `candidates` in the
    /// checkpoint's vocabulary.
    #[arg(long)]
    pub candidates: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Products in bf16 where the CPU has AVX512_BF16 (else fp32, with a warning).
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
}

fn suggest(args: &SuggestArgs) -> anyhow::Result<()> {
    use crate::engine::suggest::{SuggestRequest, parse_list, suggest as search};
    let (kind, list) = parse_list(&args.list).with_context(|| {
        format!(
            "--list {}: expected TYPE.LIST such as PER.expert",
            args.list
        )
    })?;
    let base = Vocabulary::load(&crate::run::RunDir::new(&args.checkpoint).prompts())?;
    let candidates: Vec<String> = match &args.candidates {
        Some(path) => crate::engine::suggest::read_candidates(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        None => base
            .types
            .get(&kind)
            .map(|w| w.candidates.clone())
            .unwrap_or_default(),
    };
    if candidates.is_empty() {
        anyhow::bail!("no candidates: give --candidates FILE or a `candidates` list for {kind}");
    }
    let request = SuggestRequest {
        base,
        kind,
        list,
        candidates,
    };
    let options = crate::engine::EngineOptions {
        device: device::select(args.device)?,
        precision: args.precision,
        ..crate::engine::EngineOptions::default()
    };
    let mut results = Vec::new();
    let bars = Bars::default();
    let mut task =
        crate::progress::Task::start(&bars, "candidates", request.candidates.len() as u64);
    search(
        &args.checkpoint,
        &args.data,
        &args.split,
        options,
        &request,
        &mut |s| {
            task.advance(1);
            results.push(s);
            true
        },
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    drop(task);
    results.sort_by(|a, b| b.delta_f1.total_cmp(&a.delta_f1));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
        return Ok(());
    }
    let header = format!("word → {}", args.list);
    let mut table = crate::util::listing(&[&header, "ΔF1", "per type"]);
    if let Some(per_type) = table.column_mut(2) {
        per_type.set_cell_alignment(comfy_table::CellAlignment::Left);
    }
    for s in &results {
        let per_type: Vec<String> = s
            .delta_per_type
            .iter()
            .map(|(k, d)| format!("{k} {d:+.2}"))
            .collect();
        table.add_row(vec![
            s.word.clone(),
            format!("{:+.2}", s.delta_f1),
            per_type.join("  "),
        ]);
    }
    println!("{}", table.trim_fmt());
    Ok(())
}

/// What `promptmner probe-images` takes.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub run: SplitRun,
    /// Every tweet's result and the shares, as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Evaluates a checkpoint on a split; the demo world's ambiguous tweets also on their own.
fn eval(args: &EvalArgs) -> anyhow::Result<()> {
    if let Some(out) = &args.out {
        refuse_overwriting_inputs(out, &args.run)?;
    }
    let prepared = prepare(&args.run, &args.run.checkpoint)?;
    let mut inputs = crate::eval::inputs::input_report(
        &prepared.gold,
        &prepared.states,
        &prepared.checkpoint.vocabulary,
        prepared.checkpoint.model.config.discrete_prompts,
    );
    inputs.precision = prepared.checkpoint.model.precision();
    for warning in &inputs.warnings {
        eprintln!("warning: {warning}");
    }
    let (model, gold, states, bank) = (
        &prepared.checkpoint.model,
        &prepared.gold,
        &prepared.states,
        &prepared.bank,
    );
    let bars = Bars::default();
    let predictions = predict_split(model, gold, states, bank, args.run.batch_size, &bars)?;
    if let Some(other) = &args.compare {
        return compare(args, other, gold, &predictions);
    }
    let scores = score_predictions(gold, &predictions);
    let predicted = predicted_tweets(gold, &predictions);
    if let Some(path) = &args.out {
        write_conll(path, &predicted)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let report = scores.report;
    // The demo world marks its image-ambiguous tweets; score them on their own too.
    let ambiguous = demo::ambiguous_flags(&args.run.data, &args.run.split, gold.len())
        .filter(|flags| flags.iter().any(|f| *f))
        .map(|flags| {
            let pick = |tweets: &[Tweet]| -> Vec<Tweet> {
                tweets
                    .iter()
                    .zip(&flags)
                    .filter(|(_, f)| **f)
                    .map(|(t, _)| t.clone())
                    .collect()
            };
            score_tweets(&pick(gold), &pick(&predicted))
        })
        .transpose()?;
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        if let Some(subset) = &ambiguous {
            value["ambiguous"] = serde_json::to_value(subset)?;
        }
        value["inputs"] = serde_json::to_value(&inputs)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", format_report(&report));
        if let Some(subset) = &ambiguous {
            println!(
                "\nimage-ambiguous tweets ({}): P {:.2} R {:.2} F1 {:.2}",
                subset.tweets,
                subset.micro.prf.precision,
                subset.micro.prf.recall,
                subset.micro.prf.f1
            );
        }
    }
    Ok(())
}

/// `eval --out` onto a file the evaluation reads (the gold split, most likely) would
/// replace it with predictions: refused.
fn refuse_overwriting_inputs(out: &Path, run: &SplitRun) -> anyhow::Result<()> {
    let split = crate::data::split_path(&run.data, &run.split);
    let checkpoint = crate::run::RunDir::new(&run.checkpoint);
    let inputs = [split, checkpoint.config(), checkpoint.prompts()];
    for input in inputs {
        if same_file(out, &input) {
            anyhow::bail!(
                "--out {} is {}, an input of this evaluation: write the predictions elsewhere",
                out.display(),
                input.display()
            );
        }
    }
    Ok(())
}

/// Whether two paths name one existing file (through links and `..` alike).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// `eval --compare B`: both models' scores, the delta, and where they disagree.
fn compare(
    args: &EvalArgs,
    other: &Path,
    gold: &[Tweet],
    predictions_a: &[crate::model::Prediction],
) -> anyhow::Result<()> {
    use crate::eval::compare::compare as compare_spans;
    let b = prepare(&args.run, other)?;
    let predictions_b = predict_split(
        &b.checkpoint.model,
        &b.gold,
        &b.states,
        &b.bank,
        args.run.batch_size,
        &Bars::default(),
    )?;
    let report_a = score_predictions(gold, predictions_a).report;
    let report_b = score_predictions(gold, &predictions_b).report;
    let spans = |p: &[crate::model::Prediction]| -> Vec<Vec<crate::data::Span>> {
        p.iter()
            .map(|p| p.spans.iter().map(|s| s.span).collect())
            .collect()
    };
    let gold_spans: Vec<Vec<crate::data::Span>> = gold
        .iter()
        .map(|t| crate::data::spans::spans_from_tags(&t.tags))
        .collect();
    let (spans_a, spans_b) = (spans(predictions_a), spans(&predictions_b));
    let comparison = compare_spans(&gold_spans, &spans_a, &spans_b);
    let delta = report_b.micro.prf.f1 - report_a.micro.prf.f1;
    use crate::eval::significance::{paired_test, tweet_counts};
    let significance = paired_test(
        &tweet_counts(&gold_spans, &spans_a),
        &tweet_counts(&gold_spans, &spans_b),
        args.resamples,
        crate::eval::significance::SEED,
    );
    if args.format == ReportFormat::Latex {
        // A paper names a model by its folder, not by where it lies on this disk.
        let name =
            |which: &str, path: &Path| format!("{which}: {}", crate::util::folder_name(path));
        let (a_name, b_name) = (name("A", &args.run.checkpoint), name("B", other));
        let models = [(a_name.as_str(), &report_a), (b_name.as_str(), &report_b)];
        print!(
            "{}",
            crate::eval::latex::compare_table(models, &significance)
        );
        return Ok(());
    }
    if args.json || args.format == ReportFormat::Json {
        let value = serde_json::json!({
            "a": { "checkpoint": args.run.checkpoint, "scores": report_a },
            "b": { "checkpoint": other, "scores": report_b },
            "delta_f1": delta,
            "significance": significance,
            "disagreements": {
                "tweets": comparison.tweets,
                "overall": comparison.overall,
                "per_type": comparison.per_type,
            },
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    for (name, path, report) in [
        ("A", &args.run.checkpoint, &report_a),
        ("B", &other.to_path_buf(), &report_b),
    ] {
        let prf = &report.micro.prf;
        println!(
            "{name} {}: P {:.2} R {:.2} F1 {:.2}",
            path.display(),
            prf.precision,
            prf.recall,
            prf.f1
        );
    }
    let [low, high] = significance.interval;
    println!(
        "ΔF1 (B − A): {delta:+.2}, 95% interval [{low:+.2}, {high:+.2}], p = {:.3}",
        significance.p_value
    );
    println!(
        "  (paired bootstrap over the {} tweets and approximate randomisation, {} resamples each, seed {})",
        gold.len(),
        significance.resamples,
        significance.seed
    );
    println!(
        "\ndisagreements: {} entities in {} tweets (A right {}, B right {})",
        comparison.overall.total(),
        comparison.tweets,
        comparison.overall.a_right,
        comparison.overall.b_right
    );
    let mut table = crate::util::listing(&["type", "entities", "A right", "B right"]);
    for (kind, counts) in &comparison.per_type {
        table.add_row(vec![
            kind.as_str().to_string(),
            counts.total().to_string(),
            counts.a_right.to_string(),
            counts.b_right.to_string(),
        ]);
    }
    println!("{}", table.trim_fmt());
    Ok(())
}

fn models(command: ModelsCommand) -> anyhow::Result<()> {
    let store = ModelStore::default_location();
    match command {
        ModelsCommand::List => {
            println!("model store: {}", store.root.display());
            let entries = store.list();
            if entries.is_empty() {
                println!("  (empty)");
            }
            for entry in &entries {
                if entry.missing.is_empty() {
                    println!("  {:<28} ready", entry.name);
                } else {
                    println!("  {:<28} lacks {}", entry.name, entry.missing.join(", "));
                }
            }
            for preset in [Preset::Tiny, Preset::Minilm, Preset::Base] {
                let (text, clip) = preset.backbone_names();
                let missing: Vec<&str> = [text, clip]
                    .into_iter()
                    .filter(|name| store.resolve(name).is_err())
                    .collect();
                let state = if missing.is_empty() {
                    "ready".to_string()
                } else if preset == Preset::Tiny {
                    "needs `promptmner models fetch tiny`".to_string()
                } else {
                    format!(
                        "needs `promptmner models fetch {}`",
                        missing.join("` and `promptmner models fetch ")
                    )
                };
                println!(
                    "preset {:<7} text {text}, clip {clip}: {state}",
                    format!("{preset:?}").to_lowercase()
                );
            }
            Ok(())
        }
        ModelsCommand::Fetch { name } => {
            for dir in store.fetch(&name, &Bars::default())? {
                eprintln!("{name}: {}", dir.display());
            }
            Ok(())
        }
    }
}

/// How `score` and `eval --compare` print their report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
    /// A booktabs table (`\usepackage{booktabs}`) with a caption.
    Latex,
}

fn score(gold: &Path, pred: &Path, format: ReportFormat) -> anyhow::Result<()> {
    let gold_tweets = read_conll(gold)?;
    let pred_tweets = read_conll(pred)?;
    let report = score_tweets(&gold_tweets, &pred_tweets)
        .with_context(|| format!("{} does not align with {}", pred.display(), gold.display()))?;
    match format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        ReportFormat::Latex => print!("{}", crate::eval::latex::score_table(&report)),
        ReportFormat::Text => print!("{}", format_report(&report)),
    }
    Ok(())
}

/// The score report as a table: per type, micro and macro, then error counts.
pub fn format_report(report: &ScoreReport) -> String {
    let mut out = format!(
        "{} tweets, {} tokens; gold entities {}, predicted {}, correct {}; token accuracy {:.2}%\n\n",
        report.tweets,
        report.tokens,
        report.gold_entities,
        report.predicted_entities,
        report.micro.counts.tp,
        report.token_accuracy
    );
    let mut table = crate::util::listing(&["type", "tp", "fp", "fn", "precision", "recall", "F1"]);
    let scores = |prf: &crate::eval::score::Prf| {
        [prf.precision, prf.recall, prf.f1].map(|value| format!("{value:.2}"))
    };
    let rows = EntityType::ALL
        .iter()
        .map(|t| (t.as_str(), &report.per_type[t]))
        .chain(std::iter::once(("micro", &report.micro)));
    for (name, s) in rows {
        let mut cells = vec![name.to_string()];
        cells.extend([s.counts.tp, s.counts.fp, s.counts.fn_].map(|n| n.to_string()));
        cells.extend(scores(&s.prf));
        table.add_row(cells);
    }
    let mut macro_row = vec![
        "macro".to_string(),
        String::new(),
        String::new(),
        String::new(),
    ];
    macro_row.extend(scores(&report.macro_avg));
    table.add_row(macro_row);
    out += &table.trim_fmt();
    out += "\n\nerrors:";
    let errors: Vec<String> = ErrorKind::ALL
        .iter()
        .map(|k| format!(" {} {}", k.as_str(), report.errors.get(*k)))
        .collect();
    out += &errors.join(",");
    out.push('\n');
    out
}
