//! Training (DESIGN §3 checkpoint layout): fine-tune the text encoder and train the new
//! layers and continuous prompts, CLIP frozen; evaluate on valid every epoch, keep the
//! best checkpoint, and leave a resumable state after every completed epoch, and at the
//! step where a stop is asked for (a signal: [`TrainOptions::stop`]).

pub mod clip_pretrain;
pub(crate) mod memory;
pub(crate) mod optim;
pub(crate) mod state;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::data::images::ImageResolver;
use crate::data::spans::spans_from_tags;
use crate::data::{Tweet, split_path};
use crate::eval::predict::predict_split;
use crate::model::bert::backward::EncoderTrainer;
use crate::model::bert::tokenizer::WordPieces;
use crate::model::device::Precision;
use crate::model::ops::Mode;
use crate::model::span::NONE_CLASS;
use crate::model::{ImageState, ModelError, PromptMner};
use crate::progress::{Progress, Task};
use crate::prompts::Vocabulary;
pub use crate::run::config::{self, TrainConfig};
use crate::run::events::{Event, RunLog};
pub use crate::run::{Checkpoint, EpochMetrics, Metrics, RunDir, Scores, resolve_backbones};
use crate::stages::image_cache::ImageCache;
use crate::stages::{ImageSource, PreparedSplit, PromptCache, StageCounters};
use optim::AdamW;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Data(#[from] crate::data::conll::ConllError),
    #[error(transparent)]
    Prepare(#[from] crate::stages::PrepareError),
    #[error(transparent)]
    Vocabulary(#[from] crate::prompts::VocabularyError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Store(#[from] crate::model::store::StoreError),
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} already holds a run: pass --resume to continue it, or choose another --out")]
    Exists(PathBuf),
    #[error("{0} holds no completed epoch to resume from")]
    NothingToResume(PathBuf),
    #[error("another process is training into {0} (it holds {0}/train.lock)")]
    Busy(PathBuf),
    #[error(
        "--resume would change the run recorded in {config} ({changes}); resume with the settings it was started with, or train into a new --out"
    )]
    ChangedOnResume { config: PathBuf, changes: String },
    #[error("{path} is not a training state: {message}")]
    BadState { path: PathBuf, message: String },
    #[error("the training set {0} is empty")]
    Empty(PathBuf),
    #[error(
        "stopped by {signal} in epoch {epoch} after {batches} batches; the state is saved: `train --resume` carries it on"
    )]
    Interrupted {
        signal: String,
        epoch: usize,
        batches: usize,
    },
    #[error(
        "this run needs about {needed_gb:.1} GB and {available_gb:.1} GB are available: lower batch_size ({batch_size}) or model.max_pieces ({max_pieces}) with --set, or train where there is more memory"
    )]
    TooLarge {
        needed_gb: f64,
        available_gb: f64,
        batch_size: usize,
        max_pieces: usize,
    },
}

/// A saved training state that does not load (truncated by a kill, edited).
fn damaged_state(path: PathBuf, error: impl std::fmt::Display) -> TrainError {
    TrainError::BadState {
        path,
        message: format!("{error}; it is damaged: train into a new --out to start afresh"),
    }
}

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes safetensors atomically through `util::write_atomic_with`: `save`
/// writes the temporary file's path; a reader, or a process killed mid-save, sees the
/// old file or the new one.
pub fn save_atomic(
    path: &Path,
    save: impl FnOnce(&Path) -> candle_core::Result<()>,
) -> Result<(), TrainError> {
    crate::util::write_atomic_with(path, |tmp| save(tmp.path())).map_err(|e| match e {
        crate::util::SaveError::Write(e) => TrainError::Candle(e),
        crate::util::SaveError::Io(e) => write_error(path)(e),
    })
}

// Each `expect` here states an invariant that holds by construction.
#[allow(clippy::expect_used)]
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value).expect("metrics serialise");
    crate::util::write_atomic(path, text.as_bytes()).map_err(write_error(path))
}

/// A split with everything the model needs per tweet.
struct Split {
    text: PreparedSplit,
    images: Vec<ImageState>,
}

fn load_split(model: &PromptMner, path: &Path, images: &ImageSource) -> Result<Split, TrainError> {
    let text = PreparedSplit::load(model, path)?;
    let started = std::time::Instant::now();
    let images = text.image_states(model, images)?;
    report_images(path, &images, started.elapsed());
    Ok(Split { text, images })
}

/// How many of a split's tweets have their image, and how fast they were embedded; a
/// missing or unreadable image is a warning (the tweet trains text-only), never fatal.
fn report_images(path: &Path, images: &[ImageState], took: std::time::Duration) {
    let with = images.iter().filter(|s| s.has_image()).count();
    let without_id = images
        .iter()
        .filter(|s| matches!(s.no_image, Some(crate::data::images::NoImage::NoImageId)))
        .count();
    let lost = images.len() - with - without_id;
    tracing::info!(
        "{}: {with} of {} tweets with an image, embedded in {:.1} s ({:.1} images/s)",
        path.display(),
        images.len(),
        took.as_secs_f64(),
        with as f64 / took.as_secs_f64().max(1e-9)
    );
    if lost > 0 {
        tracing::warn!(
            "{}: {lost} tweets name an image that is missing or unreadable; they train and score text-only",
            path.display()
        );
    }
}

/// Span labels of a batch as flat row indices into [b·n·W] and classes: every span
/// inside its tweet is a row; its class is the gold type of an entity with exactly
/// those boundaries, else NONE.
fn span_targets(
    tweets: &[&Tweet],
    pieces: &[&WordPieces],
    n: usize,
    width: usize,
) -> (Vec<u32>, Vec<u32>) {
    let mut rows = Vec::new();
    let mut classes = Vec::new();
    for (b, (tweet, p)) in tweets.iter().zip(pieces).enumerate() {
        let gold = spans_from_tags(&tweet.tags);
        let encoded: Vec<bool> = p.first_piece.iter().map(Option::is_some).collect();
        for i in 0..tweet.len() {
            for k in 0..width {
                if i + k >= tweet.len() || !encoded[i..=i + k].iter().all(|e| *e) {
                    continue;
                }
                let class = gold
                    .iter()
                    .find(|s| s.start == i && s.end == i + k + 1)
                    .map_or(NONE_CLASS, |s| s.kind.index());
                rows.push(((b * n + i) * width + k) as u32);
                classes.push(class as u32);
            }
        }
    }
    (rows, classes)
}

/// Entity-level scores of predictions against a split's gold tags.
pub fn evaluate(
    model: &PromptMner,
    split_tweets: &[Tweet],
    images: &[ImageState],
    vocabulary: &Vocabulary,
    n_continuous: usize,
    batch: usize,
    progress: &dyn Progress,
) -> Result<(Scores, Vec<crate::model::Prediction>), ModelError> {
    let bank =
        PromptCache::default().bank(model, vocabulary, n_continuous, &StageCounters::default())?;
    let predictions = predict_split(model, split_tweets, images, &bank, batch, progress)?;
    let scores = crate::eval::split::score_predictions(split_tweets, &predictions);
    Ok((scores.report.micro.prf.into(), predictions))
}

/// Unit prompt embeddings [K, e] for a training step: the discrete prompts' `discrete`
/// (encoded once: CLIP is frozen) and the continuous ones run through the CLIP text
/// tower in a differentiable mode, so their token embeddings receive gradients.
fn training_prompts(
    model: &PromptMner,
    discrete: &Tensor,
    vocabulary: &Vocabulary,
    n_continuous: usize,
) -> Result<Tensor, ModelError> {
    match model.training_continuous_prompts(&vocabulary.template, n_continuous)? {
        Some(continuous) => Ok(Tensor::cat(&[discrete, &continuous], 0)?),
        None => Ok(discrete.clone()),
    }
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub metrics: Metrics,
    pub out: PathBuf,
}

/// The exit status of `promptmner train` stopped by a signal with its state saved
/// (sysexits' EX_TEMPFAIL): the batch script requeues on it, the registry reads it.
pub const EXIT_INTERRUPTED: i32 = 75;

/// What to do with a run folder that already holds a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Refuse it: the folder must be new.
    No,
    /// Carry it on from its saved state (refused when there is none).
    Yes,
    /// Carry it on when it holds a saved state, else start it (what a requeued job
    /// runs: its first attempt may have stopped before saving anything).
    IfSaved,
}

/// How a training is started and stopped.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub resume: Resume,
    /// Nonzero asks the run to stop: it finishes the step it is in, saves its state and
    /// returns [`TrainError::Interrupted`]. A signal handler stores its signal's number
    /// (`signal_hook::flag::register_usize`).
    pub stop: Arc<AtomicUsize>,
}

impl TrainOptions {
    pub fn new(resume: Resume) -> Self {
        Self {
            resume,
            stop: Arc::default(),
        }
    }

    /// The stop asked for, by the signal's name.
    fn stop_requested(&self) -> Option<String> {
        match self.stop.load(Ordering::SeqCst) {
            0 => None,
            n => Some(
                signal_hook::low_level::signal_name(n as i32)
                    .map_or_else(|| format!("signal {n}"), str::to_string),
            ),
        }
    }
}

/// Trains as `config` says into `out`; resumed as `options` says, from the state of its
/// last completed epoch or of the step where it was stopped.
pub fn train(
    config: &TrainConfig,
    out: &Path,
    options: &TrainOptions,
    device: &Device,
    progress: &dyn Progress,
) -> Result<TrainSummary, TrainError> {
    let run = RunDir::new(out);
    std::fs::create_dir_all(out).map_err(write_error(out))?;
    // One trainer a folder, whoever started it (a runner restarted, a second command):
    // held until this process ends, released by the kernel if it dies.
    let _lock = train_lock(out)?;
    let has_state = run.state_metrics().is_file();
    let resume = match options.resume {
        Resume::Yes if !has_state => return Err(TrainError::NothingToResume(out.to_path_buf())),
        Resume::No if has_state || run.config().is_file() => {
            return Err(TrainError::Exists(out.to_path_buf()));
        }
        Resume::No => false,
        Resume::Yes | Resume::IfSaved => has_state,
    };
    if resume {
        unchanged_on_resume(config, &run)?;
    }
    let log = RunLog::open(&run).map_err(write_error(out))?;
    let result = train_inner(config, &run, (resume, options), device, &log, progress);
    if let Err(e) = &result
        && !matches!(e, TrainError::Interrupted { .. })
    {
        log.emit(&Event::Failed {
            reason: crate::util::error_chain(e),
        });
    }
    result
}

/// The exclusive lock of training into `out`.
fn train_lock(out: &Path) -> Result<std::fs::File, TrainError> {
    let path = out.join("train.lock");
    let file = crate::util::open_lock_file(&path).map_err(write_error(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(TrainError::Busy(out.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(write_error(&path)(e)),
    }
}

/// Saves the resumable state as one set: the model, the optimiser, the metrics and, inside
/// an epoch, the position.
fn save_state(
    run: &RunDir,
    model: &PromptMner,
    optimizer: &AdamW,
    metrics: &Metrics,
    position: Option<&state::EpochPosition>,
) -> Result<(), TrainError> {
    state::save(run, |dir| {
        save_atomic(&dir.join(RunDir::STATE_WEIGHTS), |p| {
            model
                .save_weights(p)
                .map_err(|e| candle_core::Error::Msg(e.to_string()))
        })?;
        save_atomic(&dir.join(RunDir::STATE_OPTIMIZER), |p| optimizer.save(p))?;
        write_json(&dir.join(RunDir::STATE_METRICS), metrics)?;
        if let Some(position) = position {
            write_json(&dir.join(RunDir::STATE_POSITION), position)?;
        }
        Ok(())
    })
}

/// A resumed run goes on as it was started: a setting that differs from its recorded
/// config.toml (a changed --set, an edited config) is refused, naming the keys, rather
/// than trained with while the record says otherwise.
fn unchanged_on_resume(config: &TrainConfig, run: &RunDir) -> Result<(), TrainError> {
    let recorded = TrainConfig::load(&run.config(), &[])?;
    // Backbones are recorded as the run resolved them (a `tiny` encoder becomes the
    // run's own `text/`); every other key must match.
    let given = TrainConfig {
        backbones: recorded.backbones.clone(),
        ..config.clone()
    };
    let table = |c: &TrainConfig| toml::Table::try_from(c).unwrap_or_default();
    let changed = changed_keys("", &table(&given), &table(&recorded));
    if changed.is_empty() {
        return Ok(());
    }
    Err(TrainError::ChangedOnResume {
        config: run.config(),
        changes: changed.join(", "),
    })
}

/// Dotted keys whose values differ between two tables, as `key: recorded → given`.
fn changed_keys(prefix: &str, given: &toml::Table, recorded: &toml::Table) -> Vec<String> {
    let mut keys: Vec<&String> = given.keys().chain(recorded.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut changed = Vec::new();
    for key in keys {
        let name = format!("{prefix}{key}");
        match (given.get(key), recorded.get(key)) {
            (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => {
                changed.extend(changed_keys(&format!("{name}."), a, b));
            }
            (a, b) if a != b => {
                let show = |v: Option<&toml::Value>| v.map_or("(none)".into(), |v| v.to_string());
                changed.push(format!("{name}: {} → {}", show(b), show(a)));
            }
            _ => {}
        }
    }
    changed
}

fn train_inner(
    config: &TrainConfig,
    run: &RunDir,
    (resume, options): (bool, &TrainOptions),
    device: &Device,
    log: &RunLog,
    progress: &dyn Progress,
) -> Result<TrainSummary, TrainError> {
    let mut vocabulary = Vocabulary::load(&config.prompts)?;
    // The checkpoint's prompts.toml records the count trained, which every command
    // then uses (the vocabulary file given may name another).
    vocabulary.continuous = config.model.continuous_prompts;
    // The backbones as the run records them: a fresh `tiny` text encoder is written into
    // the run, and paths inside the run directory are kept relative to it.
    let names = if resume {
        TrainConfig::load(&run.config(), &[])?.backbones
    } else {
        let mut names = config.backbones.clone();
        if names.text == "tiny" {
            let mut words = crate::data::demo::dataset_words(&config.data);
            for prompt in vocabulary.prompts() {
                words.extend(prompt.text.split(' ').map(str::to_string));
            }
            crate::model::store::write_tiny_text(&run.text_backbone(), &words, config.seed)?;
            names.text = RunDir::TEXT_BACKBONE.into();
        }
        for name in [&mut names.text, &mut names.clip] {
            if let (Ok(path), Ok(dir)) = (
                Path::new(name.as_str()).canonicalize(),
                run.dir.canonicalize(),
            ) && let Ok(inside) = path.strip_prefix(&dir)
            {
                *name = inside.to_string_lossy().into_owned();
            }
        }
        names
    };
    let backbones = resolve_backbones(&names, Some(&run.dir))?;
    // Host memory bounds a CPU run; a GPU's is its own (candle reports it when full).
    if device.is_cpu() {
        memory::check_fits(config, &backbones)?;
    }
    let mut model = PromptMner::new(&backbones, &config.model, device)?;
    model.initialize_new_layers(config.seed)?;
    let n_continuous = config.model.continuous_prompts;

    let resolver = ImageResolver::for_dataset(&config.data, config.images.as_deref());
    let cache = ImageCache::open(
        &ImageCache::default_root(),
        &backbones.clip,
        Precision::Fp32,
    )
    .map_err(|e| tracing::warn!("image cache unavailable: {e}"))
    .ok();
    let counters = StageCounters::default();
    let images = ImageSource {
        resolver: &resolver,
        cache: cache.as_ref(),
        batch_size: config.eval_batch_size,
        progress,
        counters: &counters,
    };
    let train_split = load_split(&model, &split_path(&config.data, "train"), &images)?;
    let valid = load_split(&model, &split_path(&config.data, "valid"), &images)?;
    let test_path = split_path(&config.data, "test");
    let test = test_path
        .is_file()
        .then(|| load_split(&model, &test_path, &images))
        .transpose()?;
    if train_split.text.tweets.is_empty() {
        return Err(TrainError::Empty(split_path(&config.data, "train")));
    }

    let per_epoch = match config.max_train_examples {
        0 => train_split.text.tweets.len(),
        n => n.min(train_split.text.tweets.len()),
    };
    let steps_per_epoch = per_epoch.div_ceil(config.batch_size.max(1));
    let mut optimizer = AdamW::new(
        &model.varmap,
        config.optim.clone(),
        steps_per_epoch * config.epochs,
    );
    // The text encoder trains through its own CPU forward and backward passes where it
    // can (see `encoder`); elsewhere through candle's autograd.
    let mut encoder = if EncoderTrainer::supports(model.text_model(), device) {
        Some(EncoderTrainer::new(model.text_model())?)
    } else {
        None
    };
    let mut metrics = Metrics::default();
    let mut position = None;
    if resume {
        model
            .load_weights(&run.state_weights())
            .map_err(|e| damaged_state(run.state_weights(), e))?;
        optimizer
            .load(&run.state_optimizer())
            .map_err(|e| damaged_state(run.state_optimizer(), e))?;
        let text = std::fs::read_to_string(run.state_metrics())
            .map_err(write_error(&run.state_metrics()))?;
        metrics = serde_json::from_str(&text).map_err(|e| TrainError::BadState {
            path: run.state_metrics(),
            message: e.to_string(),
        })?;
        position = state::position(run)?;
        log.emit(&Event::Resumed {
            after_epoch: metrics.epochs.len(),
            batches: position.as_ref().map_or(0, |p| p.batches),
        });
    } else {
        let recorded = TrainConfig {
            backbones: names.clone(),
            ..config.clone()
        };
        crate::util::write_atomic(&run.config(), recorded.to_toml().as_bytes())
            .map_err(write_error(&run.config()))?;
        vocabulary.save(&run.prompts())?;
        log.emit(&Event::Started {
            config: Box::new(config.clone()),
            train_examples: per_epoch,
            steps: steps_per_epoch * config.epochs,
        });
    }

    // Constant through training (CLIP is frozen): encoded once, not every step.
    let discrete_prompts = PromptCache::default()
        .bank(&model, &vocabulary, 0, &StageCounters::default())?
        .embeds()?
        .clone();
    for epoch in metrics.epochs.len() + 1..=config.epochs {
        // Data order and dropout come from (seed, epoch): a resumed run repeats them.
        let mut order: Vec<usize> = (0..train_split.text.tweets.len()).collect();
        let epoch_seed = config
            .seed
            .wrapping_mul(1_000_003)
            .wrapping_add(epoch as u64);
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(epoch_seed));
        order.truncate(per_epoch);
        let dropout_rng = RefCell::new(ChaCha8Rng::seed_from_u64(epoch_seed ^ 0x5eed));
        let mut task = Task::start(
            progress,
            format!("epoch {epoch}/{}", config.epochs),
            per_epoch as u64,
        );
        // A run stopped inside this epoch goes on from the batch it stopped before.
        let within = position.take().filter(|p| p.epoch == epoch);
        let (mut loss_sum, mut loss_count, done, earlier) = match &within {
            Some(p) => {
                let word = p.dropout_word.parse().map_err(|_| TrainError::BadState {
                    path: run.state_position(),
                    message: format!("dropout_word {:?} is no number", p.dropout_word),
                })?;
                dropout_rng.borrow_mut().set_word_pos(word);
                (p.loss_sum, p.loss_count, p.batches, p.seconds)
            }
            None => (0.0, 0usize, 0, 0.0),
        };
        task.advance((done * config.batch_size.max(1)).min(per_epoch) as u64);
        let started = Instant::now();
        let batches = order
            .chunks(config.batch_size.max(1))
            .enumerate()
            .skip(done);
        for (index, batch) in batches {
            if let Some(signal) = options.stop_requested() {
                let stopped = state::EpochPosition {
                    epoch,
                    batches: index,
                    loss_sum,
                    loss_count,
                    dropout_word: dropout_rng.borrow().get_word_pos().to_string(),
                    seconds: earlier + started.elapsed().as_secs_f64(),
                };
                save_state(run, &model, &optimizer, &metrics, Some(&stopped))?;
                return Err(interrupted(log, signal, epoch, index));
            }
            let tweets: Vec<&Tweet> = batch.iter().map(|&i| &train_split.text.tweets[i]).collect();
            let pieces: Vec<&WordPieces> =
                batch.iter().map(|&i| &train_split.text.pieces[i]).collect();
            let images: Vec<Option<&Tensor>> = batch
                .iter()
                .map(|&i| train_split.images[i].embedding())
                .collect();
            let prompts = training_prompts(&model, &discrete_prompts, &vocabulary, n_continuous)?;
            let mode = Mode::Train(&dropout_rng);
            let (out, states) = match &mut encoder {
                Some(encoder) => {
                    let seed = dropout_rng.borrow_mut().random::<u64>();
                    let states = Var::from_tensor(&encoder.forward(&pieces, seed, true)?)?;
                    let out = model.forward_batch_from_states(
                        states.as_tensor(),
                        &pieces,
                        &images,
                        &prompts,
                        mode,
                    )?;
                    (out, Some(states))
                }
                None => (model.forward_batch(&pieces, &images, &prompts, mode)?, None),
            };
            let (b, n, w, c) = out.logits.dims4()?;
            let (rows, classes) = span_targets(&tweets, &pieces, n, w);
            let rows = Tensor::from_vec(rows, classes.len(), device)?;
            let classes = Tensor::from_vec(classes, rows.dim(0)?, device)?;
            let logits = out.logits.reshape((b * n * w, c))?.index_select(&rows, 0)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &classes)?;
            let loss_value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            let grads = loss.backward()?;
            if let (Some(encoder), Some(states)) = (&mut encoder, &states) {
                let grad = match grads.get(states.as_tensor()) {
                    Some(g) => g.clone(),
                    None => states.zeros_like()?,
                };
                encoder.backward(&grad)?;
            }
            let report =
                optimizer.step(&grads, |t| encoder.as_ref().and_then(|e| e.gradient(t)))?;
            loss_sum += loss_value;
            loss_count += 1;
            let rate = (task.done() + batch.len() as u64) as f64
                / started.elapsed().as_secs_f64().max(1e-9);
            task.advance_with(
                batch.len() as u64,
                &format!("loss {:.4} {rate:.1} ex/s", loss_sum / loss_count as f64),
            );
            if optimizer.step.is_multiple_of(config.log_every.max(1)) {
                log.emit(&Event::Step {
                    epoch,
                    step: optimizer.step,
                    loss: loss_value,
                    grad_norm: report.grad_norm,
                    lr_scale: report.schedule,
                    examples_per_second: rate,
                });
            }
        }
        drop(task);
        let seconds = earlier + started.elapsed().as_secs_f64();
        let (dev, _) = evaluate(
            &model,
            &valid.text.tweets,
            &valid.images,
            &vocabulary,
            n_continuous,
            config.eval_batch_size,
            progress,
        )?;
        let record = EpochMetrics {
            epoch,
            train_loss: loss_sum / loss_count.max(1) as f64,
            seconds,
            examples_per_second: per_epoch as f64 / seconds.max(1e-9),
            dev,
        };
        let best = dev.f1 > metrics.best_dev_f1();
        metrics.epochs.push(record.clone());
        if best {
            metrics.best_epoch = Some(epoch);
            save_atomic(&run.weights(), |p| {
                model
                    .save_weights(p)
                    .map_err(|e| candle_core::Error::Msg(e.to_string()))
            })?;
        }
        log.emit(&Event::Epoch {
            metrics: record,
            best,
        });
        // The resumable state, written after the checkpoint so that it never points
        // past what is on disk.
        save_state(run, &model, &optimizer, &metrics, None)?;
        write_json(&run.metrics(), &metrics)?;
        if let Some(signal) = options.stop_requested()
            && epoch < config.epochs
        {
            return Err(interrupted(log, signal, epoch + 1, 0));
        }
    }

    if let Some(test) = &test {
        model.load_weights(&run.weights())?;
        let (scores, predictions) = evaluate(
            &model,
            &test.text.tweets,
            &test.images,
            &vocabulary,
            n_continuous,
            config.eval_batch_size,
            progress,
        )?;
        // For significance tests across runs (`runs table`'s p-values) and case studies.
        let predicted = crate::eval::predict::predicted_tweets(&test.text.tweets, &predictions);
        let text = crate::data::conll::format_conll(&predicted);
        crate::util::write_atomic(&run.test_predictions(), text.as_bytes())
            .map_err(write_error(&run.test_predictions()))?;
        metrics.test = Some(scores);
        write_json(&run.metrics(), &metrics)?;
    }
    log.emit(&Event::Finished {
        best_epoch: metrics.best_epoch,
        dev_f1: metrics.best_dev_f1(),
        test: metrics.test,
    });
    Ok(TrainSummary {
        metrics,
        out: run.dir.clone(),
    })
}

/// Records a stop (its state already saved) and says where it stopped.
fn interrupted(log: &RunLog, signal: String, epoch: usize, batches: usize) -> TrainError {
    log.emit(&Event::Interrupted {
        signal: signal.clone(),
        epoch,
        batches,
    });
    TrainError::Interrupted {
        signal,
        epoch,
        batches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::conll::parse_conll;

    #[test]
    fn span_targets_label_exact_gold_spans_and_none_elsewhere() {
        let tweets = parse_conll("a\tB-PER\nb\tI-PER\nc\tO\n", Path::new("x")).unwrap();
        let pieces = WordPieces {
            ids: vec![0; 5],
            first_piece: vec![Some(1), Some(2), Some(3)],
            cut_words: 0,
        };
        let (rows, classes) = span_targets(&[&tweets[0]], &[&pieces], 3, 2);
        // Spans (i, k): (0,0) (0,1) (1,0) (1,1) (2,0); (2,1) runs past the tweet.
        assert_eq!(rows, [0, 1, 2, 3, 4]);
        assert_eq!(classes, [4, 0, 4, 4, 4]);
    }
}
