//! The prompt stage's cache: each prompt string is run through CLIP's text tower once
//! per model, so an edit of the vocabulary encodes only its new words, and a bank made
//! here is updated in place ([`PromptCache::update`]) with only its changed rows.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::model::prompts::{PromptBank, PromptEncoding, PromptInfo, PromptSource, RowSource};
use crate::model::{ModelError, PromptMner};
use crate::prompts::Vocabulary;
use crate::stages::StageCounters;

/// Stamps that tell apart the contents of caches (each cache, after each clear).
static NEXT_STAMP: AtomicU64 = AtomicU64::new(1);

/// Prompt encodings of one model's weights, by prompt text (discrete prompts) and by
/// template (all continuous prompts). Clear it when the trainable weights change.
pub struct PromptCache {
    discrete: Mutex<HashMap<String, Arc<PromptEncoding>>>,
    continuous: Mutex<HashMap<String, Arc<PromptEncoding>>>,
    /// Which encodings this cache holds: a bank made under another stamp is rebuilt,
    /// not updated.
    stamp: AtomicU64,
}

impl Default for PromptCache {
    fn default() -> Self {
        Self {
            discrete: Mutex::default(),
            continuous: Mutex::default(),
            stamp: AtomicU64::new(NEXT_STAMP.fetch_add(1, Ordering::Relaxed)),
        }
    }
}

/// The encodings a bank of given prompts needs.
struct Encoded {
    infos: Vec<PromptInfo>,
    discrete: HashMap<String, Arc<PromptEncoding>>,
    continuous: Option<Arc<PromptEncoding>>,
}

impl Encoded {
    /// The encoding and row of `info`.
    fn row(&self, info: &PromptInfo) -> Result<(&PromptEncoding, usize), ModelError> {
        let found = match info.source {
            PromptSource::Discrete { .. } => self.discrete.get(&info.text).map(|e| (&**e, 0)),
            PromptSource::Continuous { index } => self.continuous.as_deref().map(|e| (e, index)),
        };
        found.ok_or_else(|| {
            ModelError::Invalid(format!(
                "the prompt stage has no encoding of '{}'",
                info.text
            ))
        })
    }
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
        let encoded = self.encode(model, vocabulary, n_continuous, counters)?;
        let rows = encoded
            .infos
            .iter()
            .map(|info| encoded.row(info))
            .collect::<Result<Vec<_>, _>>()?;
        let mut bank = model.prompt_bank(encoded.infos.clone(), &vocabulary.template, &rows)?;
        bank.stamp = self.stamp.load(Ordering::Relaxed);
        Ok(bank)
    }

    /// Makes `bank` the bank [`PromptCache::bank`] gives for these settings, in place:
    /// only new prompts are encoded, the rows of removed prompts are dropped and new
    /// rows spliced in; the others stay as they are. A bank this cache did not make (or
    /// made before a clear) is rebuilt. On an error the bank is unchanged.
    pub fn update(
        &self,
        model: &PromptMner,
        bank: &mut PromptBank,
        vocabulary: &Vocabulary,
        n_continuous: usize,
        counters: &StageCounters,
    ) -> Result<(), ModelError> {
        if bank.stamp != self.stamp.load(Ordering::Relaxed) {
            *bank = self.bank(model, vocabulary, n_continuous, counters)?;
            return Ok(());
        }
        let encoded = self.encode(model, vocabulary, n_continuous, counters)?;
        let sources = row_sources(bank, &encoded, &vocabulary.template)?;
        bank.splice(encoded.infos.clone(), &vocabulary.template, &sources);
        Ok(())
    }

    /// The prompts of these settings and their encodings, running CLIP on the texts
    /// not cached yet.
    fn encode(
        &self,
        model: &PromptMner,
        vocabulary: &Vocabulary,
        n_continuous: usize,
        counters: &StageCounters,
    ) -> Result<Encoded, ModelError> {
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
            cache.extend(missing.into_iter().zip(encodings.into_iter().map(Arc::new)));
        }
        let discrete = discrete
            .iter()
            .map(|text| (text.to_string(), Arc::clone(&cache[*text])))
            .collect();
        drop(cache);
        let has_continuous = infos
            .iter()
            .any(|p| matches!(p.source, PromptSource::Continuous { .. }));
        let continuous = if has_continuous {
            self.continuous(model, &vocabulary.template, counters)?
        } else {
            None
        };
        Ok(Encoded {
            infos,
            discrete,
            continuous,
        })
    }

    /// All continuous prompts in `template`, encoded once per template.
    fn continuous(
        &self,
        model: &PromptMner,
        template: &str,
        counters: &StageCounters,
    ) -> Result<Option<Arc<PromptEncoding>>, ModelError> {
        let mut cache = self.continuous.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(hit) = cache.get(template) {
            return Ok(Some(Arc::clone(hit)));
        }
        let Some(encoding) = model.encode_continuous_prompts(template)? else {
            return Ok(None);
        };
        counters
            .prompts_encoded
            .fetch_add(model.continuous_count(), Ordering::Relaxed);
        let encoding = Arc::new(encoding);
        cache.insert(template.to_string(), Arc::clone(&encoding));
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
        self.stamp.store(
            NEXT_STAMP.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
    }
}

/// Where each row of the updated bank comes from: the old bank's row of the same prompt
/// where one follows the last kept row (prompts keep their order), else its encoding.
/// A discrete row depends on its text alone; a continuous row also on the template.
fn row_sources<'a>(
    bank: &PromptBank,
    encoded: &'a Encoded,
    template: &str,
) -> Result<Vec<RowSource<'a>>, ModelError> {
    let same_template = bank.template == template;
    let mut old_rows: HashMap<&str, Vec<usize>> = HashMap::new();
    for (j, info) in bank.prompts.iter().enumerate() {
        if same_template || matches!(info.source, PromptSource::Discrete { .. }) {
            old_rows.entry(info.text.as_str()).or_default().push(j);
        }
    }
    let mut next_old = 0;
    encoded
        .infos
        .iter()
        .map(|info| {
            let kept = old_rows.get(info.text.as_str()).and_then(|rows| {
                rows.iter()
                    .copied()
                    .find(|&j| j >= next_old && bank.prompts[j] == *info)
            });
            match kept {
                Some(j) => {
                    next_old = j + 1;
                    Ok(RowSource::Kept(j))
                }
                None => {
                    let (encoding, row) = encoded.row(info)?;
                    Ok(RowSource::Encoded(encoding, row))
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::data::tags::EntityType;
    use crate::model::fusion::FusionMode;
    use crate::model::store::{Preset, write_tiny_backbones};
    use crate::prompts::WordList;

    fn tiny_model(dir: &std::path::Path, fusion: FusionMode) -> PromptMner {
        let backbones = write_tiny_backbones(dir, &crate::prompts::demo::words(), 7).unwrap();
        let config = crate::model::ModelConfig {
            fusion,
            ..Preset::Tiny.model_config()
        };
        let model = PromptMner::new(&backbones, &config, &Device::Cpu).unwrap();
        model.initialize_new_layers(3).unwrap();
        model
    }

    /// Largest difference between two banks' rows; their prompts and shapes must agree.
    fn bank_difference(a: &PromptBank, b: &PromptBank) -> f32 {
        assert_eq!(a.prompts, b.prompts);
        assert_eq!(a.template, b.template);
        let worst = |x: &[f32], y: &[f32]| {
            assert_eq!(x.len(), y.len());
            x.iter()
                .zip(y)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max)
        };
        let mut difference = worst(&a.embed_rows, &b.embed_rows);
        match (&a.clues, &b.clues) {
            (Some(x), Some(y)) => {
                for (p, q) in [
                    (&x.pk, &y.pk),
                    (&x.pv, &y.pv),
                    (&x.bk, &y.bk),
                    (&x.bv, &y.bv),
                ] {
                    difference = difference.max(worst(p, q));
                }
            }
            (None, None) => {}
            _ => panic!("one bank has clue rows, the other not"),
        }
        difference
    }

    #[test]
    fn a_bank_updated_in_place_equals_one_built_fresh() {
        for fusion in [FusionMode::Modality, FusionMode::None] {
            let dir = tempfile::tempdir().unwrap();
            let model = tiny_model(dir.path(), fusion);
            let (cache, counters) = (PromptCache::default(), StageCounters::default());
            let encoded = || counters.prompts_encoded.load(Ordering::Relaxed);
            let mut vocabulary = crate::prompts::demo::vocabulary().unwrap();
            let mut bank = cache.bank(&model, &vocabulary, 4, &counters).unwrap();
            let mut continuous = 4;
            let mut check = |vocabulary: &Vocabulary, continuous: usize, new_texts: usize| {
                let before = encoded();
                cache
                    .update(&model, &mut bank, vocabulary, continuous, &counters)
                    .unwrap();
                assert_eq!(
                    encoded() - before,
                    new_texts,
                    "{fusion:?}: only new prompts encode"
                );
                // Bit for bit the bank this cache builds, and within rounding (other
                // batches through CLIP) the bank of a fresh cache.
                let same_cache = cache
                    .bank(&model, vocabulary, continuous, &counters)
                    .unwrap();
                assert_eq!(bank_difference(&bank, &same_cache), 0.0, "{fusion:?}");
                let fresh = PromptCache::default()
                    .bank(&model, vocabulary, continuous, &StageCounters::default())
                    .unwrap();
                let difference = bank_difference(&bank, &fresh);
                assert!(difference <= 1e-6, "{fusion:?}: {difference}");
                assert_eq!(bank.embeds().unwrap().dims(), [bank.len(), bank.width]);
            };

            // An added word (in the middle of the bank), then a removed one.
            vocabulary
                .add_word(EntityType::Per, WordList::Expert, "athlete")
                .unwrap();
            check(&vocabulary, continuous, 1);
            let first = vocabulary.prompts()[0].clone();
            assert!(vocabulary.remove_word(first.kind, first.list, &first.word));
            check(&vocabulary, continuous, 0);
            // Fewer continuous prompts, then more again: no prompt is encoded.
            let continuous_rows = if fusion == FusionMode::None { 0 } else { 4 };
            continuous = 2;
            check(&vocabulary, continuous, 0);
            continuous = 4;
            check(&vocabulary, continuous, 0);
            // A new template: every prompt is new.
            vocabulary.template = "image of an {}".into();
            let discrete = vocabulary.prompts().len();
            check(&vocabulary, continuous, discrete + continuous_rows);
            // Back to an earlier vocabulary: all cached, nothing encoded.
            vocabulary.template = crate::prompts::demo::vocabulary().unwrap().template;
            check(&vocabulary, continuous, 0);
        }
    }

    #[test]
    fn a_bank_of_a_cleared_cache_is_rebuilt_not_updated() {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model(dir.path(), FusionMode::Modality);
        let (cache, counters) = (PromptCache::default(), StageCounters::default());
        let vocabulary = crate::prompts::demo::vocabulary().unwrap();
        let mut bank = cache.bank(&model, &vocabulary, 4, &counters).unwrap();
        let first = counters.prompts_encoded.load(Ordering::Relaxed);
        cache.clear();
        cache
            .update(&model, &mut bank, &vocabulary, 4, &counters)
            .unwrap();
        assert_eq!(counters.prompts_encoded.load(Ordering::Relaxed), 2 * first);
        // A bank of another cache is not this one's to update either.
        let other = PromptCache::default();
        other
            .update(&model, &mut bank, &vocabulary, 4, &counters)
            .unwrap();
        assert_eq!(counters.prompts_encoded.load(Ordering::Relaxed), 3 * first);
    }
}
