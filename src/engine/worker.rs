//! The engine's worker thread: owns the model and the caches, works through requests
//! newest-first, and runs the long jobs (encoding the split, rescoring it) a batch at a
//! time so that a new request is looked at between batches.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::Instant;

use candle_core::Tensor;

use super::error::EngineError;
use super::messages::{
    AttributionView, Envelope, Event, ImageChoice, ImageView, PromptEffect, PromptScore, Request,
    SplitView, StopReason, TweetInfo, TweetView,
};
use super::{EngineCounters, EngineOptions};
use crate::data::images::{ImageResolver, NoImage};
use crate::data::spans::spans_from_tags;
use crate::data::{Tweet, split_path};
use crate::eval::score::ScoreReport;
use crate::eval::split::score_predictions;
use crate::model::bert::tokenizer::WordPieces;
use crate::model::prompts::PromptBank;
use crate::model::{Detail, ImageState, Prediction, PromptMner, TextBatch};
use crate::progress::NoProgress;
use crate::prompts::Vocabulary;
use crate::run::{Checkpoint, RunDir};
use crate::stages::image_cache::{ImageCache, image_states};
use crate::stages::text_cache::{SplitStates, TextStateCache};
use crate::stages::{PreparedSplit, PromptCache, StageCounters};

/// What the engine works on.
pub(crate) struct Source {
    pub checkpoint: PathBuf,
    pub dataset: PathBuf,
    pub split: String,
}

/// A long job, run one batch per turn of the loop.
enum Job {
    /// Text states and image embeddings of the tweets in `order` from `next` on.
    Encode { order: Vec<usize>, next: usize },
    /// A whole-split scoring: batches (length-sorted) from `next` on.
    Rescore(Rescore),
}

struct Rescore {
    generation: u64,
    /// Scoring the checkpoint's own prompts (the reference for deltas).
    baseline: bool,
    next: usize,
    predictions: Vec<Option<Prediction>>,
    started: Instant,
}

impl Rescore {
    /// A scoring of `tweets` tweets from the first batch on.
    fn new(generation: u64, baseline: bool, tweets: usize) -> Self {
        Self {
            generation,
            baseline,
            next: 0,
            predictions: vec![None; tweets],
            started: Instant::now(),
        }
    }
}

struct Worker {
    model: PromptMner,
    prompt_cache: PromptCache,
    /// The work each stage did (the handle's counters copy them).
    stage_counters: StageCounters,
    tweets: Vec<Tweet>,
    pieces: Vec<WordPieces>,
    /// Each tweet's word states [n, d], once encoded.
    word_states: Vec<Option<Tensor>>,
    /// Each tweet's own image, once encoded or looked up.
    images: Vec<Option<ImageState>>,
    overrides: Vec<ImageChoice>,
    resolver: ImageResolver,
    image_cache: Option<ImageCache>,
    text_cache: Option<TextStateCache>,
    checkpoint_vocabulary: Vocabulary,
    trained_continuous: usize,
    vocabulary: Vocabulary,
    continuous: usize,
    bank: PromptBank,
    baseline_bank: Option<PromptBank>,
    selected: usize,
    /// The selected tweet's text stage, a batch of one (with its fusion half).
    selected_text: Option<(usize, TextBatch)>,
    /// Length-sorted batches of tweet indices and their text stages.
    batches: Vec<Vec<usize>>,
    text_batches: Vec<Option<TextBatch>>,
    baseline: Option<ScoreReport>,
    last_scores: Option<SplitView>,
    /// A rescoring asked for while the split was still being encoded.
    rescore_waiting: Option<u64>,
    job: Option<Job>,
    batch_size: usize,
    events: Sender<Event>,
    counters: Arc<EngineCounters>,
}

/// The worker's body: load, then serve until the handle is dropped.
pub(crate) fn run(
    source: Source,
    options: EngineOptions,
    inbox: Receiver<Envelope>,
    events: Sender<Event>,
    counters: Arc<EngineCounters>,
) {
    let mut worker = match Worker::load(&source, &options, events.clone(), counters) {
        Ok(worker) => worker,
        Err(error) => {
            let _ = events.send(Event::Error {
                generation: 0,
                message: crate::util::error_chain(&error),
            });
            return;
        }
    };
    // A bug in the worker must not look like a hang to the caller: say it stopped.
    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.serve(&inbox)));
    if let Err(panic) = served {
        let reason = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown cause");
        let _ = events.send(Event::Error {
            generation: 0,
            message: format!("the engine stopped: {reason}"),
        });
    }
}

/// Keeps the newest request of each kind, in the order of the kept ones.
fn coalesce(pending: &mut VecDeque<Envelope>, counters: &EngineCounters) {
    let mut kept: Vec<Envelope> = Vec::with_capacity(pending.len());
    while let Some(envelope) = pending.pop_back() {
        if kept
            .iter()
            .any(|k| k.request.kind() == envelope.request.kind())
        {
            counters.stale_dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            kept.push(envelope);
        }
    }
    pending.extend(kept.into_iter().rev());
}

impl Worker {
    fn load(
        source: &Source,
        options: &EngineOptions,
        events: Sender<Event>,
        counters: Arc<EngineCounters>,
    ) -> Result<Self, EngineError> {
        let mut checkpoint = Checkpoint::load(&source.checkpoint, &options.device)
            .map_err(EngineError::Checkpoint)?;
        let precision = checkpoint.model.set_precision(options.precision)?;
        let split_file = split_path(&source.dataset, &source.split);
        let model = checkpoint.model;
        let PreparedSplit { tweets, pieces } =
            PreparedSplit::load(&model, &split_file).map_err(EngineError::Split)?;
        let trained_continuous = checkpoint.config.model.continuous_prompts;
        // The count in use is the checkpoint's prompts.toml's, as in every command.
        let continuous = checkpoint.vocabulary.continuous;
        let prompt_cache = PromptCache::default();
        let stage_counters = StageCounters::default();
        let bank =
            prompt_cache.bank(&model, &checkpoint.vocabulary, continuous, &stage_counters)?;
        let run = RunDir::new(&source.checkpoint);
        let text_cache = options.cache_root.as_ref().and_then(|root| {
            let tokenizer = model.backbones.text.join("tokenizer.json");
            let files: [&Path; 3] = [&run.config(), &run.weights(), &tokenizer];
            TextStateCache::open(root, &files, &split_file, precision)
                .map_err(|e| tracing::warn!("text-state cache unavailable: {e}"))
                .ok()
        });
        let image_cache = options.cache_root.as_ref().and_then(|root| {
            ImageCache::open(
                &root.join("image-embeddings"),
                &model.backbones.clip,
                precision,
            )
            .map_err(|e| tracing::warn!("image cache unavailable: {e}"))
            .ok()
        });
        // Length-sorted batches: little padding in the batched scoring.
        let mut order: Vec<usize> = (0..tweets.len()).collect();
        order.sort_by_key(|&i| (pieces[i].first_piece.len(), i));
        let batches: Vec<Vec<usize>> = order
            .chunks(options.batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect();
        let n = tweets.len();
        let resolver = ImageResolver::for_dataset(&source.dataset, options.images.as_deref());
        let _ = events.send(Event::Loaded {
            tweets: tweets
                .iter()
                .map(|t| TweetInfo {
                    words: t.words.clone(),
                    gold: spans_from_tags(&t.tags),
                    image_id: t.image_id.clone(),
                    image_path: t
                        .image_id
                        .as_deref()
                        .and_then(|id| resolver.resolve(id).ok()),
                })
                .collect(),
            vocabulary: Box::new(checkpoint.vocabulary.clone()),
            continuous,
            continuous_trained: trained_continuous,
            fusion: model.config.fusion,
        });
        let mut worker = Self {
            model,
            prompt_cache,
            stage_counters,
            tweets,
            pieces,
            word_states: vec![None; n],
            images: vec![None; n],
            overrides: vec![ImageChoice::Own; n],
            resolver,
            image_cache,
            text_cache,
            vocabulary: checkpoint.vocabulary.clone(),
            checkpoint_vocabulary: checkpoint.vocabulary,
            trained_continuous,
            continuous,
            bank,
            baseline_bank: None,
            selected: options.first_tweet.min(n.saturating_sub(1)),
            selected_text: None,
            text_batches: batches.iter().map(|_| None).collect(),
            batches,
            baseline: None,
            last_scores: None,
            rescore_waiting: None,
            job: None,
            batch_size: options.batch_size.max(1),
            events,
            counters,
        };
        worker.start(0);
        Ok(worker)
    }

    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    fn sync_counters(&self) {
        let model = &self.stage_counters;
        for (from, to) in [
            (&model.texts_encoded, &self.counters.texts_encoded),
            (&model.images_encoded, &self.counters.images_encoded),
            (&model.prompts_encoded, &self.counters.prompts_encoded),
        ] {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// The first screen: the split's text states from the disk cache when it is warm,
    /// the selected tweet, then the rest in visiting order (from the selected tweet on,
    /// then from the start).
    fn start(&mut self, generation: u64) {
        let words: Vec<usize> = self.pieces.iter().map(|p| p.first_piece.len()).collect();
        let hidden = self.model.text_model().config.hidden_size;
        if let Some(stored) = self
            .text_cache
            .as_ref()
            .and_then(|c| c.load(hidden, &words))
            && let Err(e) = self.adopt_stored_states(&stored)
        {
            self.report_error(generation, e);
        }
        if !self.tweets.is_empty() {
            self.show(generation);
        }
        let n = self.tweets.len();
        let order: Vec<usize> = (self.selected..n).chain(0..self.selected).collect();
        self.job = Some(Job::Encode { order, next: 0 });
    }

    fn adopt_stored_states(&mut self, stored: &SplitStates) -> Result<(), EngineError> {
        let device = &self.model.device;
        for (i, slot) in self.word_states.iter_mut().enumerate() {
            if slot.is_none() {
                let values = stored.tweet(i);
                let tensor = Tensor::from_slice(values, (stored.words[i], stored.hidden), device)?;
                *slot = Some(tensor);
            }
        }
        Ok(())
    }

    fn report_error(&self, generation: u64, error: EngineError) {
        let message = crate::util::error_chain(&error);
        tracing::warn!("engine: {message}");
        self.emit(Event::Error {
            generation,
            message,
        });
    }

    /// Waits for requests while idle; between batches of a job, takes what has come.
    fn serve(&mut self, inbox: &Receiver<Envelope>) {
        let mut pending: VecDeque<Envelope> = VecDeque::new();
        loop {
            if self.job.is_none() && pending.is_empty() {
                match inbox.recv() {
                    Ok(envelope) => pending.push_back(envelope),
                    Err(_) => return,
                }
            }
            loop {
                match inbox.try_recv() {
                    Ok(envelope) => pending.push_back(envelope),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            coalesce(&mut pending, &self.counters);
            if let Some(envelope) = pending.pop_front() {
                if let Err(message) = self.handle(envelope.generation, envelope.request) {
                    self.report_error(envelope.generation, message);
                }
            } else if let Err(message) = self.step() {
                self.job = None;
                self.report_error(0, message);
            }
            self.sync_counters();
        }
    }

    fn handle(&mut self, generation: u64, request: Request) -> Result<(), EngineError> {
        match request {
            Request::Select(index) => {
                if index >= self.tweets.len() {
                    return Err(EngineError::NoSuchTweet {
                        index,
                        tweets: self.tweets.len(),
                    });
                }
                self.selected = index;
                self.show(generation);
            }
            Request::SetVocabulary(vocabulary) => {
                self.edited(generation, Some(*vocabulary), self.continuous)?;
            }
            Request::SetContinuous(count) => {
                if count > self.trained_continuous {
                    self.emit(Event::RetrainNeeded {
                        generation,
                        requested: count,
                        trained: self.trained_continuous,
                    });
                    return Ok(());
                }
                self.edited(generation, None, count)?;
            }
            Request::SetImage { tweet, image } => {
                let n = self.tweets.len();
                let shown = match image {
                    ImageChoice::FromTweet(j) => Some(j),
                    ImageChoice::None | ImageChoice::Own => None,
                };
                let outside = [Some(tweet), shown]
                    .into_iter()
                    .flatten()
                    .find(|&index| index >= n);
                if let Some(index) = outside {
                    return Err(EngineError::NoSuchTweet { index, tweets: n });
                }
                self.overrides[tweet] = image;
                if tweet == self.selected {
                    self.show(generation);
                }
                self.queue_rescore(generation);
            }
            Request::Rescore => self.queue_rescore(generation),
            Request::Attribute { tweet, start, end } => {
                if tweet != self.selected {
                    self.selected = tweet.min(self.tweets.len().saturating_sub(1));
                    self.show(generation);
                }
                self.attribute(generation, start, end)?;
            }
            Request::Cancel => {
                self.rescore_waiting = None;
                self.stop_rescore(StopReason::Cancelled);
            }
        }
        Ok(())
    }

    /// After a prompt edit: the prompt stage, the current tweet, then the split. The
    /// edit takes effect only when its prompts encode: one the model cannot read (a
    /// template too long for CLIP) is refused and the settings stay as they were.
    fn edited(
        &mut self,
        generation: u64,
        vocabulary: Option<Vocabulary>,
        continuous: usize,
    ) -> Result<(), EngineError> {
        let started = Instant::now();
        self.prompt_cache
            .update(
                &self.model,
                &mut self.bank,
                vocabulary.as_ref().unwrap_or(&self.vocabulary),
                continuous,
                &self.stage_counters,
            )
            .map_err(EngineError::EditNotApplied)?;
        if let Some(vocabulary) = vocabulary {
            self.vocabulary = vocabulary;
        }
        self.continuous = continuous;
        let prompts = started.elapsed();
        self.show(generation);
        tracing::debug!(
            "edit {generation}: prompt stage {prompts:?}, current tweet {:?}",
            started.elapsed() - prompts
        );
        self.queue_rescore(generation);
        Ok(())
    }

    /// Starts a rescoring of the current settings, replacing a running one; while the
    /// split is still being encoded, it waits for that.
    fn queue_rescore(&mut self, generation: u64) {
        if let Some(Job::Encode { .. }) = &self.job {
            self.rescore_waiting = Some(generation);
            return;
        }
        self.stop_rescore(StopReason::Superseded);
        self.job = Some(Job::Rescore(Rescore::new(
            generation,
            false,
            self.tweets.len(),
        )));
    }

    /// Ends a running rescoring (if one runs) and says why.
    fn stop_rescore(&mut self, reason: StopReason) {
        if let Some(Job::Rescore(r)) = &self.job {
            self.counters
                .rescores_stopped
                .fetch_add(1, Ordering::Relaxed);
            self.emit(Event::RescoreStopped {
                generation: r.generation,
                reason,
            });
            self.job = None;
        }
    }

    /// Whether the current settings are the checkpoint's own.
    fn at_checkpoint_settings(&self) -> bool {
        self.vocabulary == self.checkpoint_vocabulary
            && self.continuous == self.checkpoint_vocabulary.continuous
    }

    /// Scores the selected tweet once per prompt left out and reports how the span's
    /// class probability moves.
    fn attribute(&mut self, generation: u64, start: usize, end: usize) -> Result<(), EngineError> {
        let i = self.selected;
        let (image, _) = self.image_of(i)?;
        let (_, text) = self
            .selected_text
            .as_ref()
            .ok_or(EngineError::Missing("no text state"))?;
        let probs_of = |bank: &crate::model::prompts::PromptBank| -> Result<[f32; 5], EngineError> {
            let prediction = self
                .model
                .score_batch(text, &[image.embedding()], bank, Detail::Spans)?
                .remove(0);
            prediction
                .candidates
                .iter()
                .find(|c| c.start == start && c.end == end)
                .map(|c| c.probs)
                .ok_or(EngineError::NotACandidate { start, end })
        };
        let base = probs_of(&self.bank)?;
        let (class, probability) =
            base.iter()
                .copied()
                .enumerate()
                .fold(
                    (0, f32::MIN),
                    |best, (c, p)| if p > best.1 { (c, p) } else { best },
                );
        let mut effects = Vec::with_capacity(self.bank.len());
        for (k, prompt) in self.bank.prompts.iter().enumerate() {
            let without = self.bank.without(k);
            effects.push(PromptEffect {
                text: prompt.text.clone(),
                source: prompt.source.clone(),
                change: probs_of(&without)?[class] - probability,
            });
        }
        self.emit(Event::Attribution {
            generation,
            view: Box::new(AttributionView {
                tweet: i,
                start,
                end,
                class,
                probability,
                effects,
            }),
        });
        Ok(())
    }

    /// One batch of the running job.
    fn step(&mut self) -> Result<(), EngineError> {
        match self.job.take() {
            None => Ok(()),
            Some(Job::Encode { order, next }) => self.encode_step(order, next),
            Some(Job::Rescore(rescore)) => self.rescore_step(rescore),
        }
    }

    fn encode_step(&mut self, order: Vec<usize>, next: usize) -> Result<(), EngineError> {
        let end = (next + self.batch_size).min(order.len());
        let chunk = &order[next..end];
        self.ensure_encoded(chunk)?;
        self.emit(Event::Progress {
            generation: 0,
            task: "encoding the split".into(),
            done: end as u64,
            total: order.len() as u64,
        });
        if end < order.len() {
            self.job = Some(Job::Encode { order, next: end });
            return Ok(());
        }
        self.store_text_states();
        let generation = self.rescore_waiting.take().unwrap_or(0);
        self.queue_rescore(generation);
        Ok(())
    }

    /// Text states and own images of `tweets` that are not there yet.
    fn ensure_encoded(&mut self, tweets: &[usize]) -> Result<(), EngineError> {
        let missing: Vec<usize> = tweets
            .iter()
            .copied()
            .filter(|&i| self.word_states[i].is_none())
            .collect();
        if !missing.is_empty() {
            let batch: Vec<&WordPieces> = missing.iter().map(|&i| &self.pieces[i]).collect();
            self.stage_counters
                .texts_encoded
                .fetch_add(batch.len(), Ordering::Relaxed);
            let states = self.model.encode_word_states(&batch)?;
            for (i, state) in missing.into_iter().zip(states) {
                self.word_states[i] = Some(state);
            }
        }
        let missing: Vec<usize> = tweets
            .iter()
            .copied()
            .filter(|&i| self.images[i].is_none())
            .collect();
        if !missing.is_empty() {
            let chunk: Vec<Tweet> = missing.iter().map(|&i| self.tweets[i].clone()).collect();
            let states = image_states(
                &self.model,
                &chunk,
                &self.resolver,
                self.image_cache.as_ref(),
                self.batch_size,
                &NoProgress,
                &self.stage_counters,
            )?;
            for (i, state) in missing.into_iter().zip(states) {
                self.images[i] = Some(state);
            }
        }
        Ok(())
    }

    /// Writes the split's text states to the disk cache (when complete and not there).
    fn store_text_states(&self) {
        let Some(cache) = &self.text_cache else {
            return;
        };
        let words: Vec<usize> = self.pieces.iter().map(|p| p.first_piece.len()).collect();
        let hidden = self.model.text_model().config.hidden_size;
        if cache.path().is_file() {
            return;
        }
        let states = &self.word_states;
        let stored = cache.store(hidden, &words, |i| {
            states[i]
                .as_ref()
                .and_then(|t| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).ok())
        });
        if let Err(e) = stored {
            tracing::warn!("cannot write {}: {e}", cache.path().display());
        }
    }

    /// The image tweet `i` is scored with, and where it came from.
    fn image_of(&mut self, i: usize) -> Result<(ImageState, ImageView), EngineError> {
        self.image_for(i, self.overrides[i])
    }

    fn image_for(
        &mut self,
        i: usize,
        choice: ImageChoice,
    ) -> Result<(ImageState, ImageView), EngineError> {
        let from = match choice {
            ImageChoice::None => None,
            ImageChoice::Own => Some(i),
            ImageChoice::FromTweet(j) => Some(j),
        };
        let Some(j) = from else {
            let reason = NoImage::Removed;
            let view = ImageView {
                choice,
                from_tweet: None,
                no_image: Some(reason.to_string()),
            };
            return Ok((ImageState::none(reason), view));
        };
        self.ensure_encoded(&[j])?;
        let state = self.images[j]
            .clone()
            .ok_or(EngineError::Missing("the image was not encoded"))?;
        let view = ImageView {
            choice,
            from_tweet: state.has_image().then_some(j),
            no_image: state.no_image.as_ref().map(ToString::to_string),
        };
        Ok((state, view))
    }

    /// Scores the selected tweet with the current settings and reports it.
    fn show(&mut self, generation: u64) {
        if let Err(message) = self.try_show(generation) {
            self.report_error(generation, message);
        }
    }

    fn try_show(&mut self, generation: u64) -> Result<(), EngineError> {
        let i = self.selected;
        self.ensure_encoded(&[i])?;
        if self.selected_text.as_ref().is_none_or(|(at, _)| *at != i) {
            let states = self.word_states[i]
                .as_ref()
                .ok_or(EngineError::Missing("no text state"))?;
            let text = self.model.text_batch(&[states], &[&self.pieces[i]])?;
            self.selected_text = Some((i, text));
        }
        let (image, image_view) = self.image_of(i)?;
        let (_, text) = self
            .selected_text
            .as_ref()
            .ok_or(EngineError::Missing("no text state"))?;
        let prediction = self
            .model
            .score_batch(text, &[image.embedding()], &self.bank, Detail::Clues)?
            .remove(0);
        let prompts = if prediction.similarities.is_empty() {
            Vec::new()
        } else {
            self.bank
                .prompts
                .iter()
                .zip(&prediction.similarities)
                .map(|(p, &similarity)| PromptScore {
                    text: p.text.clone(),
                    source: p.source.clone(),
                    similarity,
                })
                .collect()
        };
        let tweet = &self.tweets[i];
        self.emit(Event::Tweet {
            generation,
            view: Box::new(TweetView {
                index: i,
                words: tweet.words.clone(),
                gold: spans_from_tags(&tweet.tags),
                predicted: prediction.spans,
                candidates: prediction.candidates,
                prompts,
                clue_attention: prediction.clue_attention,
                image: image_view,
                truncated_words: prediction.truncated_words,
            }),
        });
        Ok(())
    }

    fn rescore_step(&mut self, mut rescore: Rescore) -> Result<(), EngineError> {
        if self.batches.is_empty() {
            return self.finish_rescore(rescore);
        }
        let b = rescore.next;
        if self.text_batches[b].is_none() {
            let members = &self.batches[b];
            let states: Vec<&Tensor> = members
                .iter()
                .map(|&i| {
                    self.word_states[i]
                        .as_ref()
                        .ok_or(EngineError::Missing("a tweet was not encoded"))
                })
                .collect::<Result<_, _>>()?;
            let pieces: Vec<_> = members.iter().map(|&i| &self.pieces[i]).collect();
            let batch = self.model.text_batch(&states, &pieces)?;
            self.text_batches[b] = Some(batch);
        }
        let members = self.batches[b].clone();
        let images = members
            .iter()
            .map(|&i| {
                // The reference scores are the checkpoint's on the tweets' own images.
                let choice = if rescore.baseline {
                    ImageChoice::Own
                } else {
                    self.overrides[i]
                };
                self.image_for(i, choice).map(|(state, _)| state)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let embeds: Vec<Option<&Tensor>> = images.iter().map(ImageState::embedding).collect();
        let bank = if rescore.baseline {
            self.baseline_bank.as_ref().unwrap_or(&self.bank)
        } else {
            &self.bank
        };
        let batch = self.text_batches[b]
            .as_ref()
            .ok_or(EngineError::Missing("no text batch"))?;
        let predictions = self
            .model
            .score_batch(batch, &embeds, bank, Detail::Spans)?;
        for (i, prediction) in members.into_iter().zip(predictions) {
            rescore.predictions[i] = Some(prediction);
        }
        self.counters
            .rescored_batches
            .fetch_add(1, Ordering::Relaxed);
        rescore.next += 1;
        let done: usize = self.batches[..rescore.next].iter().map(Vec::len).sum();
        self.emit(Event::Progress {
            generation: rescore.generation,
            task: "rescoring the split".into(),
            done: done as u64,
            total: self.tweets.len() as u64,
        });
        if rescore.next < self.batches.len() {
            self.job = Some(Job::Rescore(rescore));
            return Ok(());
        }
        self.finish_rescore(rescore)
    }

    fn finish_rescore(&mut self, rescore: Rescore) -> Result<(), EngineError> {
        let predictions: Vec<Prediction> = rescore
            .predictions
            .into_iter()
            .map(|p| p.ok_or(EngineError::Missing("a tweet was not scored")))
            .collect::<Result<_, _>>()?;
        let scores = score_predictions(&self.tweets, &predictions);
        self.counters
            .rescores_finished
            .fetch_add(1, Ordering::Relaxed);
        let is_baseline = rescore.baseline || self.at_checkpoint_settings();
        if is_baseline && self.overrides.iter().all(|o| *o == ImageChoice::Own) {
            self.baseline = Some(scores.report.clone());
            self.baseline_bank = None;
        }
        if rescore.baseline {
            // Only the reference was wanted: give the last view its deltas.
            if let Some(mut view) = self.last_scores.take() {
                self.set_deltas(&mut view);
                self.emit(Event::Scores {
                    generation: rescore.generation,
                    view: Box::new(view.clone()),
                });
                self.last_scores = Some(view);
            }
            return Ok(());
        }
        let mut view = SplitView {
            report: scores.report,
            delta_f1: None,
            delta_per_type: Default::default(),
            tweet_errors: scores.tweet_errors,
            similarities: predictions.iter().map(|p| p.similarities.clone()).collect(),
            predicted: predictions.into_iter().map(|p| p.spans).collect(),
            is_baseline,
            seconds: rescore.started.elapsed().as_secs_f64(),
        };
        self.set_deltas(&mut view);
        self.emit(Event::Scores {
            generation: rescore.generation,
            view: Box::new(view.clone()),
        });
        self.last_scores = Some(view);
        if self.baseline.is_none() {
            // The reference scores are still unknown (the first scoring was an edit's).
            self.baseline_bank = Some(self.prompt_cache.bank(
                &self.model,
                &self.checkpoint_vocabulary,
                self.checkpoint_vocabulary.continuous,
                &self.stage_counters,
            )?);
            self.job = Some(Job::Rescore(Rescore::new(
                rescore.generation,
                true,
                self.tweets.len(),
            )));
        }
        Ok(())
    }

    fn set_deltas(&self, view: &mut SplitView) {
        let Some(baseline) = &self.baseline else {
            return;
        };
        view.delta_f1 = Some(view.report.micro.prf.f1 - baseline.micro.prf.f1);
        view.delta_per_type = view
            .report
            .per_type
            .iter()
            .filter_map(|(kind, score)| {
                baseline
                    .per_type
                    .get(kind)
                    .map(|b| (*kind, score.prf.f1 - b.prf.f1))
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(generation: u64, request: Request) -> Envelope {
        Envelope {
            generation,
            request,
        }
    }

    #[test]
    fn only_the_newest_request_of_each_kind_is_kept_in_order() {
        let counters = EngineCounters::default();
        let mut pending: VecDeque<Envelope> = [
            envelope(1, Request::Select(3)),
            envelope(2, Request::SetContinuous(4)),
            envelope(3, Request::Select(7)),
            envelope(
                4,
                Request::SetImage {
                    tweet: 1,
                    image: ImageChoice::None,
                },
            ),
            envelope(
                5,
                Request::SetImage {
                    tweet: 2,
                    image: ImageChoice::None,
                },
            ),
            envelope(6, Request::SetContinuous(2)),
            envelope(
                7,
                Request::SetImage {
                    tweet: 1,
                    image: ImageChoice::Own,
                },
            ),
            envelope(8, Request::Rescore),
        ]
        .into();
        coalesce(&mut pending, &counters);
        let kept: Vec<u64> = pending.iter().map(|e| e.generation).collect();
        assert_eq!(kept, [3, 5, 6, 7, 8]);
        assert_eq!(EngineCounters::get(&counters.stale_dropped), 3);
        assert!(matches!(pending[0].request, Request::Select(7)));
    }
}
