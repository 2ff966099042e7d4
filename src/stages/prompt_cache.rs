//! The prompt stage's cache: each prompt string is run through CLIP's text tower once
//! per model, so an edit of the vocabulary encodes only its new words.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use crate::model::prompts::{PromptBank, PromptEncoding, PromptSource};
use crate::model::{ModelError, PromptMner};
use crate::prompts::Vocabulary;
use crate::stages::StageCounters;

/// Prompt encodings of one model's weights, by prompt text (discrete prompts) and by
/// template (all continuous prompts). Clear it when the trainable weights change.
#[derive(Default)]
pub struct PromptCache {
    discrete: Mutex<HashMap<String, PromptEncoding>>,
    continuous: Mutex<HashMap<String, PromptEncoding>>,
}

impl PromptCache {
    /// The prompt stage: the bank of `vocabulary`'s prompts and the first `n_continuous`
    /// continuous prompts, encoding only the texts not cached yet.
    pub fn bank(
        &self,
        model: &PromptMner,
        vocabulary: &Vocabulary,
        n_continuous: usize,
        counters: &StageCounters,
    ) -> Result<PromptBank, ModelError> {
        let infos = model.prompt_infos(vocabulary, n_continuous);
        let mut cache = self.discrete.lock().unwrap_or_else(|e| e.into_inner());
        let discrete: Vec<&str> = infos
            .iter()
            .filter(|p| matches!(p.source, PromptSource::Discrete { .. }))
            .map(|p| p.text.as_str())
            .collect();
        let mut seen = HashSet::new();
        let missing: Vec<String> = discrete
            .iter()
            .filter(|text| !cache.contains_key(**text) && seen.insert(**text))
            .map(|text| text.to_string())
            .collect();
        if !missing.is_empty() {
            counters
                .prompts_encoded
                .fetch_add(missing.len(), Ordering::Relaxed);
            let encodings = model.encode_prompt_texts(&missing)?;
            cache.extend(missing.into_iter().zip(encodings));
        }
        let n_continuous = infos.len() - discrete.len();
        let continuous = if n_continuous > 0 {
            self.continuous(model, &vocabulary.template, counters)?
        } else {
            None
        };
        let encodings: Vec<&PromptEncoding> = discrete.iter().map(|text| &cache[*text]).collect();
        model.prompt_bank(
            infos.clone(),
            &encodings,
            continuous.as_ref().map(|c| (c, n_continuous)),
        )
    }

    /// All continuous prompts in `template`, encoded once per template.
    fn continuous(
        &self,
        model: &PromptMner,
        template: &str,
        counters: &StageCounters,
    ) -> Result<Option<PromptEncoding>, ModelError> {
        let mut cache = self.continuous.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = cache.get(template) {
            return Ok(Some(hit.clone()));
        }
        let Some(encoding) = model.encode_continuous_prompts(template)? else {
            return Ok(None);
        };
        counters
            .prompts_encoded
            .fetch_add(model.continuous_count(), Ordering::Relaxed);
        cache.insert(template.to_string(), encoding.clone());
        Ok(Some(encoding))
    }

    /// Forgets every encoding (their clue rows depend on the trainable weights).
    pub fn clear(&self) {
        self.discrete
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.continuous
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}
