//! `bench agree`: the live engine on the CPU and on another device, side by side, over
//! one tweet with an image: as loaded, after a vocabulary edit, and after a change of
//! the continuous count. The largest differences of the prompts' similarities and the
//! spans' class probabilities, and whether the decoded spans are the same. Run with
//! `--device cpu` it compares the CPU with itself (the figures are 0), so the command a
//! GPU machine runs is the one tested here.

use std::path::Path;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use candle_core::Device;
use serde::Serialize;

use super::BenchError;
use crate::data::tags::EntityType;
use crate::engine::{Engine, EngineOptions, Event, TweetView};
use crate::prompts::{Vocabulary, WordList};

/// The differences after each step.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AgreeFigures {
    pub device: String,
    pub tweet: usize,
    /// As loaded, after the edit, after the continuous change.
    pub steps: Vec<AgreeStep>,
    pub similarity_max_diff: f32,
    pub probability_max_diff: f32,
    pub same_spans: bool,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct AgreeStep {
    pub step: &'static str,
    pub prompts: usize,
    pub similarity_max_diff: f32,
    pub probability_max_diff: f32,
    pub same_spans: bool,
}

/// One engine and the views it gave at each step.
struct Views {
    views: Vec<TweetView>,
}

fn wait<T>(
    events: &Receiver<Event>,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> Result<T, BenchError> {
    loop {
        match events.recv_timeout(Duration::from_secs(600)) {
            Ok(Event::Error { message, .. }) => return Err(BenchError::Engine(message)),
            Ok(event) => {
                if let Some(found) = pick(event) {
                    return Ok(found);
                }
            }
            Err(_) => return Err(BenchError::Engine("the engine went quiet".into())),
        }
    }
}

fn tweet_view(events: &Receiver<Event>, generation: u64) -> Result<TweetView, BenchError> {
    wait(events, |e| match e {
        Event::Tweet {
            generation: g,
            view,
        } if g == generation => Some(*view),
        _ => None,
    })
}

/// The engine on `device` through the three steps, on tweet `tweet`.
fn run(checkpoint: &Path, data: &Path, device: &Device, tweet: usize) -> Result<Views, BenchError> {
    let options = EngineOptions {
        device: device.clone(),
        cache_root: None,
        first_tweet: tweet,
        ..EngineOptions::default()
    };
    let (engine, events) = Engine::spawn(checkpoint, data, "test", options);
    let (vocabulary, trained) = wait(&events, |e| match e {
        Event::Loaded {
            vocabulary,
            continuous_trained,
            ..
        } => Some((*vocabulary, continuous_trained)),
        _ => None,
    })?;
    let mut views = vec![tweet_view(&events, 0)?];
    let mut edited: Vocabulary = vocabulary;
    let kind = EntityType::Per;
    edited
        .add_word(kind, WordList::Expert, "athlete")
        .map_err(|e| BenchError::Engine(e.to_string()))?;
    views.push(tweet_view(&events, engine.set_vocabulary(edited))?);
    views.push(tweet_view(&events, engine.set_continuous(trained / 2))?);
    Ok(Views { views })
}

fn max_diff(a: impl Iterator<Item = f32>, b: impl Iterator<Item = f32>) -> f32 {
    a.zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Compares the engine on `device` with the engine on the CPU.
pub(crate) fn agree(
    checkpoint: &Path,
    data: &Path,
    device: &Device,
) -> Result<AgreeFigures, BenchError> {
    // The first tweet of the split that has an image: its prompts are scored.
    let tweets = crate::data::read_conll(&crate::data::split_path(data, "test"))?;
    let resolver = crate::data::images::ImageResolver::for_dataset(data, None);
    let tweet = tweets
        .iter()
        .position(|t| resolver.load(t.image_id.as_deref()).is_ok())
        .unwrap_or(0);
    let cpu = run(checkpoint, data, &Device::Cpu, tweet)?;
    let other = run(checkpoint, data, device, tweet)?;
    let steps: Vec<AgreeStep> = ["loaded", "vocabulary edit", "continuous change"]
        .into_iter()
        .zip(cpu.views.iter().zip(&other.views))
        .map(|(step, (a, b))| AgreeStep {
            step,
            prompts: a.prompts.len(),
            similarity_max_diff: max_diff(
                a.prompts.iter().map(|p| p.similarity),
                b.prompts.iter().map(|p| p.similarity),
            ),
            probability_max_diff: max_diff(
                a.candidates.iter().flat_map(|c| c.probs),
                b.candidates.iter().flat_map(|c| c.probs),
            ),
            same_spans: a
                .predicted
                .iter()
                .map(|p| p.span)
                .eq(b.predicted.iter().map(|p| p.span))
                && a.prompts.len() == b.prompts.len()
                && a.candidates.len() == b.candidates.len(),
        })
        .collect();
    Ok(AgreeFigures {
        device: format!("{device:?}"),
        tweet,
        similarity_max_diff: steps
            .iter()
            .map(|s| s.similarity_max_diff)
            .fold(0.0, f32::max),
        probability_max_diff: steps
            .iter()
            .map(|s| s.probability_max_diff)
            .fold(0.0, f32::max),
        same_spans: steps.iter().all(|s| s.same_spans),
        steps,
    })
}
