//! What each fuzz target checks. The targets in `fuzz/fuzz_targets` call these, and
//! `tests/fuzz_regressions.rs` replays the kept corpus and every case found through the
//! same functions in `cargo test`.
//!
//! Every input goes through the reader a user's file goes through (written to a file,
//! read back by the library). A check panics only when promptmner breaks a promise: a
//! panic inside the library, or a property that must hold for every file it accepts
//! (what it writes back reads back the same). Each returns whether the input was
//! accepted, so the replay test can insist that the valid seeds stay valid.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use promptmner::data::conll::{Tweet, format_conll, parse_conll, read_conll};
use promptmner::data::images::{ClipPreprocess, decode_image};
use promptmner::data::spans::{spans_from_tags, tags_from_spans};
use promptmner::data::tags::Tag;
use promptmner::eval::predict::predict_split;
use promptmner::jobs::registry::Registry;
use promptmner::model::bert::{BertConfig, BertModel};
use promptmner::model::store::{write_random, write_tiny_backbones};
use promptmner::progress::NoProgress;
use promptmner::prompts::Vocabulary;
use promptmner::run::Checkpoint;
use promptmner::run::config::TrainConfig;

/// Separates the files of an input made of several (a config and its weights, say).
pub const PART_SEPARATOR: &[u8] = b"\n%%%%\n";

/// The first `N` parts of `data` split at [`PART_SEPARATOR`]; missing ones are empty,
/// and the last part keeps any further separators.
pub fn parts<const N: usize>(data: &[u8]) -> [&[u8]; N] {
    let mut found = [&data[..0]; N];
    let mut rest = data;
    for slot in found.iter_mut().take(N - 1) {
        match rest
            .windows(PART_SEPARATOR.len())
            .position(|w| w == PART_SEPARATOR)
        {
            Some(at) => {
                *slot = &rest[..at];
                rest = &rest[at + PART_SEPARATOR.len()..];
            }
            None => {
                *slot = rest;
                rest = &rest[rest.len()..];
            }
        }
    }
    found[N - 1] = rest;
    found
}

/// Joins files into one input (the inverse of [`parts`]).
pub fn join_parts(files: &[&[u8]]) -> Vec<u8> {
    files.join(PART_SEPARATOR)
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary folder")
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("a scratch folder");
    }
    std::fs::write(path, bytes).expect("a scratch file");
}

/// A dataset split: whatever it reads, it writes back in a form that reads back to the
/// same tweets, and their spans turn back into the same tags.
pub fn dataset(data: &[u8]) -> bool {
    let dir = scratch();
    let path = dir.path().join("train.txt");
    write(&path, data);
    let Ok(tweets) = read_conll(&path) else {
        return false;
    };
    for tweet in &tweets {
        assert!(!tweet.words.is_empty(), "an empty tweet was accepted");
        assert_eq!(tweet.words.len(), tweet.tags.len());
        let spans = spans_from_tags(&tweet.tags);
        let again = spans_from_tags(&tags_from_spans(&spans, tweet.words.len()));
        assert_eq!(spans, again, "spans → tags → spans changed the spans");
    }
    let reread = parse_conll(&format_conll(&tweets), &path).expect("written tweets read back");
    let strip = |tweets: &[Tweet]| {
        tweets
            .iter()
            .map(|t| (t.image_id.clone(), t.words.clone(), t.tags.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        strip(&tweets),
        strip(&reread),
        "written tweets read back differently"
    );
    true
}

/// A prompt vocabulary: one it accepts saves to text that loads back equal, and every
/// prompt fills the template.
pub fn vocabulary(data: &[u8]) -> bool {
    let dir = scratch();
    let path = dir.path().join("prompts.toml");
    write(&path, data);
    let Ok(vocabulary) = Vocabulary::load(&path) else {
        return false;
    };
    vocabulary
        .save(&path)
        .expect("an accepted vocabulary saves");
    let again = Vocabulary::load(&path).expect("a saved vocabulary loads");
    assert_eq!(
        vocabulary, again,
        "saved vocabulary loaded back differently"
    );
    for prompt in vocabulary.prompts() {
        assert!(!prompt.text.is_empty());
    }
    true
}

/// A training config (first part) with `--set` overrides (second part, one per line):
/// one it accepts writes out to a config that reads back the same.
pub fn config(data: &[u8]) -> bool {
    let [text, overrides] = parts::<2>(data);
    let dir = scratch();
    let path = dir.path().join("config.toml");
    write(&path, text);
    let overrides: Vec<String> = String::from_utf8_lossy(overrides)
        .lines()
        .map(str::to_string)
        .collect();
    let Ok(config) = TrainConfig::load(&path, &overrides) else {
        return false;
    };
    let written = config.to_toml();
    let again = TrainConfig::parse(&written, &path, &[]).expect("a written config reads back");
    // Compared as text: a NaN setting is a valid TOML float but not equal to itself.
    assert_eq!(
        written,
        again.to_toml(),
        "written config read back differently"
    );
    true
}

/// A checkpoint folder: config.toml is a fixed head (data, prompts, backbones) followed
/// by the first part (usually the `[model]` table), model.safetensors is the second. A
/// checkpoint that loads predicts a tweet with an image (its weights may hold any values,
/// NaN included): an error or spans inside the tweet, never a panic.
pub fn checkpoint(data: &[u8]) -> bool {
    let [model_section, weights] = parts::<2>(data);
    let world = checkpoint_world();
    let dir = scratch();
    let mut config = world.config_head.clone().into_bytes();
    config.extend_from_slice(model_section);
    write(&dir.path().join("config.toml"), &config);
    write(&dir.path().join("model.safetensors"), weights);
    write(&dir.path().join("prompts.toml"), world.prompts.as_bytes());
    let Ok(checkpoint) = Checkpoint::load(dir.path(), &candle_core::Device::Cpu) else {
        return false;
    };
    predict_one(&checkpoint);
    true
}

fn predict_one(checkpoint: &Checkpoint) {
    let model = &checkpoint.model;
    let Ok(bank) = promptmner::stages::PromptCache::default().bank(
        model,
        &checkpoint.vocabulary,
        checkpoint.config.model.continuous_prompts,
        &promptmner::stages::StageCounters::default(),
    ) else {
        return;
    };
    let tweet = Tweet {
        image_id: Some("1".into()),
        words: ["player", "in", "city"].map(String::from).to_vec(),
        tags: vec![Tag::O; 3],
        line: 1,
    };
    let width = model.clip().config.projection_dim;
    let unit = (1.0 / width as f64).sqrt();
    let Ok(embedding) = candle_core::Tensor::full(unit as f32, width, &candle_core::Device::Cpu)
    else {
        return;
    };
    let images = [model.image_state_from_embedding(embedding)];
    if let Ok(predictions) = predict_split(model, &[tweet], &images, &bank, 1, &NoProgress) {
        for span in predictions.iter().flat_map(|p| &p.spans) {
            assert!(
                span.span.start < span.span.end && span.span.end <= 3,
                "{span:?}"
            );
        }
    }
}

/// What a checkpoint input is loaded against: backbones small enough that a valid
/// weights file is a few kilobytes.
pub struct CheckpointWorld {
    _root: tempfile::TempDir,
    pub config_head: String,
    pub prompts: String,
}

/// The model section of the valid checkpoint seed.
pub const SEED_MODEL_SECTION: &str = "[model]\nfusion_heads = 2\ncontinuous_prompts = 2\n\
                                      span_width = 3\nspan_hidden = 4\nmax_pieces = 16\n";

pub fn checkpoint_world() -> &'static CheckpointWorld {
    static WORLD: OnceLock<CheckpointWorld> = OnceLock::new();
    WORLD.get_or_init(|| {
        let root = scratch();
        let words: BTreeSet<String> = ["player", "city"].map(String::from).into();
        let backbones = write_tiny_backbones(root.path(), &words, 7).expect("tiny backbones");
        shrink_text_encoder(&backbones.text);
        let quote = |p: &PathBuf| format!("{:?}", p.display().to_string());
        let config_head = format!(
            "data = \"data\"\nprompts = \"prompts.toml\"\n\n[backbones]\ntext = {}\nclip = {}\n\n",
            quote(&backbones.text),
            quote(&backbones.clip)
        );
        let prompts = "template = \"an image of {}\"\ncontinuous = 1\n\n[PER]\n\
                       labels = [\"player\"]\n\n[LOC]\nlabels = [\"city\"]\n"
            .to_string();
        CheckpointWorld {
            _root: root,
            config_head,
            prompts,
        }
    })
}

/// Replaces the tiny text encoder by a smaller one (8 wide, one layer), keeping its
/// tokenizer and vocabulary size.
fn shrink_text_encoder(text_dir: &Path) {
    let config_path = text_dir.join("config.json");
    let mut bert: BertConfig =
        serde_json::from_slice(&std::fs::read(&config_path).expect("config.json"))
            .expect("a BERT config");
    bert.hidden_size = 8;
    bert.num_hidden_layers = 1;
    bert.num_attention_heads = 2;
    bert.intermediate_size = 16;
    bert.max_position_embeddings = 16;
    write_random(text_dir, &bert, 7, |vb| {
        BertModel::load(vb, &bert).map(drop)
    })
    .expect("a smaller text encoder");
}

/// A valid checkpoint input: the seed model section and weights saved by a model built
/// from it.
pub fn checkpoint_seed() -> Vec<u8> {
    let world = checkpoint_world();
    let dir = scratch();
    let mut config = world.config_head.clone();
    config.push_str(SEED_MODEL_SECTION);
    let config: TrainConfig =
        TrainConfig::parse(&config, &dir.path().join("config.toml"), &[]).expect("seed config");
    let backbones = promptmner::run::resolve_backbones(&config.backbones, None).expect("backbones");
    let model =
        promptmner::model::PromptMner::new(&backbones, &config.model, &candle_core::Device::Cpu)
            .expect("the seed model");
    let weights = dir.path().join("model.safetensors");
    model.save_weights(&weights).expect("seed weights");
    join_parts(&[
        SEED_MODEL_SECTION.as_bytes(),
        &std::fs::read(&weights).expect("seed weights"),
    ])
}

/// A run folder in the registry: job.toml, status.json and events.jsonl are the three
/// parts. Listing never fails on them; a run it shows reads its progress and log.
pub fn registry(data: &[u8]) -> bool {
    let [job, status, events] = parts::<3>(data);
    let root = scratch();
    let run = promptmner::run::RunDir::new(root.path().join("r0001-full-s1"));
    write(&run.job_spec(), job);
    write(&run.status_file(), status);
    write(&run.events(), events);
    let registry = Registry::open(root.path()).expect("the runs folder");
    let (runs, skipped) = registry.list().expect("listing a readable folder");
    assert_eq!(
        runs.len() + skipped.len(),
        1,
        "the run was neither listed nor skipped"
    );
    for view in &runs {
        let _ = view.run.log_tail(5);
        assert_eq!(view.progress, view.run.progress());
    }
    !runs.is_empty()
}

/// An image file: one that decodes preprocesses to CLIP's input, finite everywhere.
pub fn image(data: &[u8]) -> bool {
    let dir = scratch();
    let path = dir.path().join("image.jpg");
    write(&path, data);
    let Ok(image) = decode_image(&path) else {
        return false;
    };
    let preprocess = ClipPreprocess::default();
    let pixels = preprocess.apply(&image);
    let side = preprocess.crop_size as usize;
    assert_eq!(pixels.len(), 3 * side * side);
    assert!(pixels.iter().all(|p| p.is_finite()), "a non-finite pixel");
    true
}
