//! The live engine (DESIGN §5, §7): a worker thread owns the model and every cache,
//! takes requests (select a tweet, edit the vocabulary, change the number of
//! continuous prompts, override a tweet's image, rescore, cancel), drops the stale
//! ones, and streams plain-value events back. The caller's side never waits for more
//! than a channel send.
//!
//! Start-up: the selected tweet first, then the rest of the split in visiting order
//! (text states and image embeddings from the on-disk caches when they are warm), then
//! a whole-split scoring. After an edit only the prompt stage and the scoring stage
//! run, in batches across tweets, and a newer edit stops a running rescoring at the
//! next batch.

mod error;
mod messages;
pub mod suggest;
mod worker;

pub use error::EngineError;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};

use candle_core::Device;

pub use messages::{
    AttributionView, Event, ImageChoice, ImageView, PromptEffect, PromptScore, SplitView,
    StopReason, TweetInfo, TweetView, case_study,
};
use messages::{Envelope, Request};

use crate::model::device::Precision;
use crate::prompts::Vocabulary;

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub device: Device,
    /// Tweets per batch for encoding and rescoring.
    pub batch_size: usize,
    /// Root of the on-disk caches (text states, image embeddings); None: no disk caches.
    pub cache_root: Option<PathBuf>,
    /// Images directory, instead of the dataset's `images/`.
    pub images: Option<PathBuf>,
    /// The tweet shown first (encoded before the rest).
    pub first_tweet: usize,
    /// The precision of inference's products (bf16 where the CPU has it).
    pub precision: Precision,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            batch_size: 32,
            cache_root: Some(crate::stages::cache_root()),
            images: None,
            first_tweet: 0,
            precision: Precision::Fp32,
        }
    }
}

/// How many times the worker did each kind of work (tests check caches with these).
#[derive(Debug, Default)]
pub struct EngineCounters {
    /// Tweets run through the text encoder.
    pub texts_encoded: AtomicUsize,
    /// Images run through the CLIP vision tower.
    pub images_encoded: AtomicUsize,
    /// Prompt strings run through the CLIP text tower.
    pub prompts_encoded: AtomicUsize,
    /// Requests dropped because a newer one of the same kind was waiting.
    pub stale_dropped: AtomicUsize,
    /// Batches scored by whole-split rescorings.
    pub rescored_batches: AtomicUsize,
    pub rescores_finished: AtomicUsize,
    pub rescores_stopped: AtomicUsize,
}

impl EngineCounters {
    pub fn get(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::Relaxed)
    }
}

/// The caller's end: every method sends one request and returns its generation.
pub struct EngineHandle {
    requests: Sender<Envelope>,
    generation: AtomicU64,
    pub counters: Arc<EngineCounters>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl EngineHandle {
    fn send(&self, request: Request) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        // A worker that has stopped (after an error it reported) ignores requests.
        let _ = self.requests.send(Envelope {
            generation,
            request,
        });
        generation
    }

    /// Shows tweet `index` (its prediction, similarities and clue attention).
    pub fn select(&self, index: usize) -> u64 {
        self.send(Request::Select(index))
    }

    /// Scores with an edited vocabulary (the current tweet first, then the split).
    pub fn set_vocabulary(&self, vocabulary: Vocabulary) -> u64 {
        self.send(Request::SetVocabulary(Box::new(vocabulary)))
    }

    /// Uses the first `count` trained continuous prompts.
    pub fn set_continuous(&self, count: usize) -> u64 {
        self.send(Request::SetContinuous(count))
    }

    /// Scores tweet `tweet` with another image (or none, or its own again).
    pub fn set_image(&self, tweet: usize, image: ImageChoice) -> u64 {
        self.send(Request::SetImage { tweet, image })
    }

    /// Scores the whole split again with the current settings.
    pub fn rescore(&self) -> u64 {
        self.send(Request::Rescore)
    }

    /// Leave-one-prompt-out attribution of the span [start, end) of `tweet`.
    pub fn attribute(&self, tweet: usize, start: usize, end: usize) -> u64 {
        self.send(Request::Attribute { tweet, start, end })
    }

    /// Stops a running rescoring.
    pub fn cancel(&self) -> u64 {
        self.send(Request::Cancel)
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        // Closing the channel ends the worker at its next check; wait for it so that
        // cache files are complete when the program exits.
        let (closed, _) = channel();
        self.requests = closed;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// The engine: [`Engine::spawn`] starts a worker on a checkpoint and a dataset split.
pub struct Engine;

impl Engine {
    /// Starts the worker; it loads the checkpoint and the split itself (reporting
    /// `Loaded`, or an `Error` and stopping), so this returns at once.
    pub fn spawn(
        checkpoint: &Path,
        dataset: &Path,
        split: &str,
        options: EngineOptions,
    ) -> (EngineHandle, Receiver<Event>) {
        let (requests, inbox) = channel();
        let (events, outbox) = channel();
        let counters = Arc::new(EngineCounters::default());
        let source = worker::Source {
            checkpoint: checkpoint.to_path_buf(),
            dataset: dataset.to_path_buf(),
            split: split.to_string(),
        };
        let shared = Arc::clone(&counters);
        let worker = std::thread::Builder::new()
            .name("promptmner-engine".into())
            .spawn(move || worker::run(source, options, inbox, events, shared))
            .ok();
        (
            EngineHandle {
                requests,
                generation: AtomicU64::new(0),
                counters,
                worker,
            },
            outbox,
        )
    }
}
