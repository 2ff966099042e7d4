//! `promptmner bench live`: the engine's edit loop at base size. bert-base and CLIP
//! ViT-B/32 shapes with random weights (values do not change the cost), the Twitter-2015
//! test text (the demo's when ../shared is absent) with generated stand-in images.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use candle_core::Device;
use serde::Serialize;

use super::{BenchError, bert_base_config, clip_b32_config};
use crate::data::tags::EntityType;
use crate::data::{read_conll, split_path};
use crate::engine::{Engine, EngineOptions, Event};
use crate::model::device::Precision;
use crate::model::fusion::FusionMode;
use crate::model::store::write_random;
use crate::model::{Backbones, ModelConfig, PromptMner};
use crate::progress::{Progress, Task};
use crate::prompts::{Vocabulary, WordList};
use crate::run::RunDir;
use crate::run::TrainConfig;
use crate::run::config::BackboneNames;

const TWITTER_VOCABULARY: &str = include_str!("../../prompts/twitter.toml");
/// Continuous prompts of the bench model (the paper's best setting).
const CONTINUOUS: usize = 100;
/// Words added one edit at a time (none is in the Twitter vocabulary).
const EDIT_WORDS: [&str; 60] = [
    "athlete",
    "singer",
    "actor",
    "coach",
    "fan",
    "crowd",
    "soldier",
    "doctor",
    "student",
    "teacher",
    "driver",
    "pilot",
    "chef",
    "dancer",
    "artist",
    "writer",
    "lawyer",
    "nurse",
    "farmer",
    "officer",
    "village",
    "island",
    "valley",
    "harbour",
    "airport",
    "station",
    "bridge",
    "park",
    "square",
    "highway",
    "forest",
    "desert",
    "lake",
    "coast",
    "capital",
    "province",
    "university",
    "hospital",
    "parliament",
    "museum",
    "newspaper",
    "network",
    "factory",
    "bank",
    "church",
    "party",
    "league",
    "festival",
    "award",
    "concert",
    "match",
    "tournament",
    "election",
    "film",
    "novel",
    "album",
    "phone",
    "car",
    "shoe",
    "bottle",
];

/// Milliseconds at the 50th and 95th percentiles.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Percentiles {
    pub p50: f64,
    pub p95: f64,
}

fn percentiles(mut values: Vec<f64>) -> Percentiles {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Percentiles {
        p50: at(0.5),
        p95: at(0.95),
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct LiveFigures {
    /// Text: which text the split is.
    pub split: String,
    /// The precision asked for (it runs where the CPU has it).
    pub precision: Precision,
    pub split_tweets: usize,
    pub prompts: usize,
    /// Whether the caches were cold at start (the start-up figures are cold figures).
    pub cold_start: bool,
    /// Tweets a second from launch to the first full scoring (text and images encoded).
    pub cold_tweets_per_s: f64,
    pub start_to_scored_s: f64,
    pub edits: usize,
    pub edit_to_tweet_ms: Percentiles,
    /// Median seconds from an edit to its finished whole-split rescoring.
    pub edit_to_split_s: f64,
    pub edit_to_split_max_s: f64,
    pub continuous_from: usize,
    pub continuous_to: usize,
    pub continuous_to_tweet_ms: f64,
    pub continuous_to_split_s: f64,
    pub peak_rss_mb: f64,
}

/// The peak resident memory of this process (VmHWM), in MB.
pub(super) fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Where the text and tokenizers come from.
struct Inputs {
    split: PathBuf,
    text_tokenizer: PathBuf,
    clip_tokenizer: PathBuf,
    label: String,
}

fn inputs(shared: Option<&Path>) -> Inputs {
    match shared.filter(|s| s.join("data/twitter2015/test.txt").is_file()) {
        Some(shared) => Inputs {
            split: split_path(&shared.join("data/twitter2015"), "test"),
            text_tokenizer: shared.join("models/all-MiniLM-L6-v2/tokenizer.json"),
            clip_tokenizer: shared.join("fixtures/tiny-clip/tokenizer.json"),
            label: "Twitter-2015 test".into(),
        },
        None => {
            let demo = crate::data::demo::embedded_dir();
            Inputs {
                split: split_path(&demo, "test"),
                text_tokenizer: demo.join("../../checkpoints/demo/text/tokenizer.json"),
                clip_tokenizer: demo.join("../../checkpoints/demo/clip/tokenizer.json"),
                label: "demo test (../shared not found)".into(),
            }
        }
    }
}

/// Writes (once) base-size backbones, a checkpoint on them and the dataset with
/// stand-in images under `dir`; every byte is seeded, so cache keys repeat across runs.
fn prepare(dir: &Path, inputs: &Inputs) -> Result<(PathBuf, PathBuf), BenchError> {
    let checkpoint = dir.join("checkpoint");
    let data = dir.join("data");
    let done = dir.join("ready");
    if done.is_file() {
        return Ok((checkpoint, data));
    }
    let text = dir.join("bert-base");
    let clip = dir.join("clip-b32");
    for (backbone, tokenizer) in [
        (&text, &inputs.text_tokenizer),
        (&clip, &inputs.clip_tokenizer),
    ] {
        std::fs::create_dir_all(backbone).map_err(write_error(backbone))?;
        std::fs::copy(tokenizer, backbone.join("tokenizer.json")).map_err(write_error(backbone))?;
    }
    let tokenizer =
        crate::model::bert::tokenizer::WordPieceTokenizer::load(&text.join("tokenizer.json"), 512)?;
    let vocab = tokenizer.vocab_size();
    let bert = bert_base_config(vocab);
    write_random(&text, &bert, 11, |vb| {
        crate::model::bert::BertModel::load(vb, &bert).map(drop)
    })?;
    let clip_config = clip_b32_config();
    write_random(&clip, &clip_config, 12, |vb| {
        crate::model::clip::ClipModel::load(vb, &clip_config).map(drop)
    })?;

    // The dataset: the split's text, one generated image per image id.
    let images = data.join("images");
    std::fs::create_dir_all(&images).map_err(write_error(&images))?;
    std::fs::copy(&inputs.split, data.join("test.txt")).map_err(write_error(&data))?;
    for (k, tweet) in read_conll(&inputs.split)?.iter().enumerate() {
        if let Some(id) = &tweet.image_id {
            let path = images.join(format!("{id}.png"));
            stand_in_image(k as u32)
                .save(&path)
                .map_err(|e| write_error(&path)(std::io::Error::other(e)))?;
        }
    }

    // The checkpoint: modality-aware fusion and 100 continuous prompts, random layers.
    std::fs::create_dir_all(&checkpoint).map_err(write_error(&checkpoint))?;
    let model_config = ModelConfig {
        fusion: FusionMode::Modality,
        fusion_heads: 12,
        continuous_prompts: CONTINUOUS,
        ..ModelConfig::default()
    };
    let backbones = Backbones {
        text: text.clone(),
        clip: clip.clone(),
    };
    let model = PromptMner::new(&backbones, &model_config, &Device::Cpu)?;
    model.initialize_new_layers(20)?;
    let run = RunDir::new(&checkpoint);
    model.save_weights(&run.weights())?;
    let vocabulary = twitter_vocabulary();
    let prompts = run.prompts();
    crate::util::write_atomic(&prompts, vocabulary.to_toml().as_bytes())
        .map_err(write_error(&prompts))?;
    let config = TrainConfig {
        data: data.clone(),
        images: None,
        prompts: prompts.clone(),
        backbones: BackboneNames {
            text: text.to_string_lossy().into_owned(),
            clip: clip.to_string_lossy().into_owned(),
        },
        model: model_config,
        optim: Default::default(),
        epochs: 1,
        batch_size: 16,
        eval_batch_size: 32,
        seed: 0,
        log_every: 10,
        max_train_examples: 0,
    };
    let file = run.config();
    crate::util::write_atomic(&file, config.to_toml().as_bytes()).map_err(write_error(&file))?;
    std::fs::write(&done, b"").map_err(write_error(&done))?;
    Ok((checkpoint, data))
}

fn twitter_vocabulary() -> Vocabulary {
    Vocabulary::parse(TWITTER_VOCABULARY, Path::new("prompts/twitter.toml"))
        .unwrap_or_else(|e| unreachable!("the committed vocabulary parses: {e}"))
}

/// A 64-pixel picture of its own (seeded bands and a block).
fn stand_in_image(seed: u32) -> image::RgbImage {
    let mix = |x: u32| x.wrapping_mul(2_654_435_761).rotate_left(13) ^ seed.wrapping_mul(40_503);
    let (a, b) = (mix(seed) as u8, mix(seed + 1) as u8);
    image::RgbImage::from_fn(64, 64, |x, y| {
        let block = (16..40).contains(&x) && (20..44).contains(&y);
        if block {
            image::Rgb([b, a, 255 - a])
        } else {
            image::Rgb([
                a.wrapping_add(x as u8 * 3),
                b.wrapping_add(y as u8 * 2),
                (x ^ y) as u8,
            ])
        }
    })
}

/// Waits for the first event `pick` accepts; an engine error ends the benchmark.
fn wait<T>(
    events: &Receiver<Event>,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> Result<T, BenchError> {
    loop {
        let event = events
            .recv_timeout(Duration::from_secs(1800))
            .map_err(|e| BenchError::Engine(e.to_string()))?;
        if let Event::Error { message, .. } = &event {
            return Err(BenchError::Engine(message.clone()));
        }
        if let Some(found) = pick(&event) {
            return Ok(found);
        }
    }
}

/// Seconds until the tweet view and until the split scores of generation `g`.
fn timings(events: &Receiver<Event>, g: u64, since: Instant) -> Result<(f64, f64), BenchError> {
    let mut tweet = None;
    loop {
        let at = wait(events, |e| match e {
            Event::Tweet { generation, .. } if *generation == g => Some(false),
            Event::Scores { generation, .. } if *generation == g => Some(true),
            _ => None,
        })?;
        let elapsed = since.elapsed().as_secs_f64();
        if !at {
            tweet = Some(elapsed);
        } else {
            return Ok((tweet.unwrap_or(elapsed), elapsed));
        }
    }
}

/// What the live benchmark runs on.
pub(crate) enum LiveSetup<'a> {
    /// Base-size backbones with random weights, written (once) under `dir`.
    Generated { shared: Option<&'a Path> },
    /// A trained checkpoint on a dataset's test split.
    Checkpoint {
        checkpoint: &'a Path,
        data: &'a Path,
    },
}

/// Runs the live benchmark in `dir` (created; reused by later runs, the engine's caches
/// under `dir/cache`); with `cold`, those caches are emptied first.
pub(crate) fn live(
    setup: LiveSetup,
    dir: &Path,
    cold: bool,
    device: &candle_core::Device,
    precision: Precision,
    progress: &dyn Progress,
) -> Result<LiveFigures, BenchError> {
    let mut task = Task::start(progress, "bench live", 3 + EDIT_WORDS.len() as u64);
    let (checkpoint, data, label) = match setup {
        LiveSetup::Generated { shared } => {
            let inputs = inputs(shared);
            let (checkpoint, data) = prepare(dir, &inputs)?;
            (
                checkpoint,
                data,
                format!("{}, base-size shapes", inputs.label),
            )
        }
        LiveSetup::Checkpoint { checkpoint, data } => (
            checkpoint.to_path_buf(),
            data.to_path_buf(),
            format!(
                "{} test, checkpoint {}",
                data.display(),
                checkpoint.display()
            ),
        ),
    };
    let cache = dir.join("cache");
    let cold_start = cold || !cache.exists();
    if cold && cache.exists() {
        std::fs::remove_dir_all(&cache).map_err(write_error(&cache))?;
    }
    task.advance(1);
    let options = EngineOptions {
        cache_root: Some(cache),
        device: device.clone(),
        precision,
        ..EngineOptions::default()
    };
    let started = Instant::now();
    let (engine, events) = Engine::spawn(&checkpoint, &data, "test", options);
    let (split_tweets, mut vocabulary, trained) = wait(&events, |e| match e {
        Event::Loaded {
            tweets,
            vocabulary,
            continuous_trained,
            ..
        } => Some((tweets.len(), (**vocabulary).clone(), *continuous_trained)),
        _ => None,
    })?;
    wait(&events, |e| match e {
        Event::Scores { generation: 0, .. } => Some(()),
        _ => None,
    })?;
    let start_to_scored_s = started.elapsed().as_secs_f64();
    task.advance(1);

    let kinds = [
        EntityType::Per,
        EntityType::Loc,
        EntityType::Org,
        EntityType::Other,
    ];
    let (mut to_tweet, mut to_split) = (Vec::new(), Vec::new());
    for (k, word) in EDIT_WORDS.iter().enumerate() {
        vocabulary
            .add_word(kinds[k % 4], WordList::Expert, word)
            .map_err(|e| BenchError::Engine(e.to_string()))?;
        let since = Instant::now();
        let g = engine.set_vocabulary(vocabulary.clone());
        let (tweet, split) = timings(&events, g, since)?;
        to_tweet.push(1000.0 * tweet);
        to_split.push(split);
        task.advance(1);
    }
    let prompts = vocabulary.prompts().len() + trained;
    let since = Instant::now();
    let g = engine.set_continuous(trained / 2);
    let (continuous_tweet, continuous_split) = timings(&events, g, since)?;
    task.advance(1);
    let split_max = to_split.iter().copied().fold(0.0, f64::max);
    let split_median = percentiles(to_split.iter().map(|s| s * 1000.0).collect()).p50 / 1000.0;
    drop(engine);
    Ok(LiveFigures {
        split: label,
        precision,
        continuous_from: trained,
        continuous_to: trained / 2,
        split_tweets,
        prompts,
        cold_start,
        cold_tweets_per_s: split_tweets as f64 / start_to_scored_s,
        start_to_scored_s,
        edits: to_tweet.len(),
        edit_to_tweet_ms: percentiles(to_tweet),
        edit_to_split_s: split_median,
        edit_to_split_max_s: split_max,
        continuous_to_tweet_ms: 1000.0 * continuous_tweet,
        continuous_to_split_s: continuous_split,
        peak_rss_mb: peak_rss_mb(),
    })
}
