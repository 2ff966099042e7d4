//! Prompt-word suggestions: each candidate word added to one list in turn, the split
//! rescored through the engine's fast path, and the change in F1 reported.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::Receiver;

use serde::Serialize;

use crate::data::tags::EntityType;
use crate::engine::{Engine, EngineHandle, EngineOptions, Event, SplitView};
use crate::prompts::{Vocabulary, WordList};

/// One candidate's effect on the split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    pub word: String,
    pub kind: EntityType,
    pub list: WordList,
    /// Micro F1 with the word, minus without it (points).
    pub delta_f1: f64,
    pub delta_per_type: BTreeMap<EntityType, f64>,
    pub f1: f64,
}

/// The search's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SuggestRequest {
    /// The vocabulary the words are added to.
    pub base: Vocabulary,
    pub kind: EntityType,
    pub list: WordList,
    pub candidates: Vec<String>,
}

/// Waits for the scores of the rescoring that generation `at_least` (or later) started.
fn scores_after(events: &Receiver<Event>, at_least: u64) -> Result<SplitView, String> {
    loop {
        match events.recv() {
            Ok(Event::Scores { generation, view }) if generation >= at_least => return Ok(*view),
            Ok(Event::Error { message, .. }) => return Err(message),
            Ok(_) => {}
            Err(_) => return Err("the engine stopped".into()),
        }
    }
}

fn f1_of(view: &SplitView) -> (f64, BTreeMap<EntityType, f64>) {
    let per_type = view
        .report
        .per_type
        .iter()
        .map(|(k, s)| (*k, s.prf.f1))
        .collect();
    (view.report.micro.prf.f1, per_type)
}

/// Runs the search on `split`; `on_result` gets each suggestion as it is scored and
/// returns false to stop. Candidates already in the type's lists are skipped.
pub fn suggest(
    checkpoint: &Path,
    data: &Path,
    split: &str,
    options: EngineOptions,
    request: &SuggestRequest,
    on_result: &mut dyn FnMut(Suggestion) -> bool,
) -> Result<(), String> {
    let (engine, events): (EngineHandle, Receiver<Event>) =
        Engine::spawn(checkpoint, data, split, options);
    let generation = engine.set_vocabulary(request.base.clone());
    let (base_f1, base_per_type) = f1_of(&scores_after(&events, generation)?);
    for word in &request.candidates {
        let mut vocabulary = request.base.clone();
        if vocabulary
            .add_word(request.kind, request.list, word)
            .is_err()
        {
            continue;
        }
        let generation = engine.set_vocabulary(vocabulary);
        let (f1, per_type) = f1_of(&scores_after(&events, generation)?);
        let delta_per_type = per_type
            .iter()
            .map(|(k, v)| (*k, v - base_per_type.get(k).copied().unwrap_or(0.0)))
            .collect();
        let suggestion = Suggestion {
            word: word.trim().to_string(),
            kind: request.kind,
            list: request.list,
            delta_f1: f1 - base_f1,
            delta_per_type,
            f1,
        };
        if !on_result(suggestion) {
            break;
        }
    }
    Ok(())
}

/// A candidates file: one word per line; blank lines and `#` comments skipped.
pub fn read_candidates(path: &Path) -> std::io::Result<Vec<String>> {
    Ok(crate::util::read_text(path)?
        .lines()
        .map(str::trim)
        .filter(|w| !w.is_empty() && !w.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// `TYPE.LIST` (e.g. `PER.expert`) as a type and a list.
pub fn parse_list(text: &str) -> Option<(EntityType, WordList)> {
    let (kind, list) = text.split_once('.')?;
    let kind = EntityType::ALL.into_iter().find(|k| k.as_str() == kind)?;
    let list = WordList::ALL.into_iter().find(|l| l.as_str() == list)?;
    Some((kind, list))
}
