//! The demo world's vocabulary (`prompts/demo.toml`): its captions are the template
//! filled with these words, and the tiny backbones are built from them with the
//! world's tweets.

use std::collections::BTreeSet;
use std::path::Path;

use super::{Vocabulary, VocabularyError};

/// `prompts/demo.toml`, built in.
pub const VOCABULARY_TOML: &str = include_str!("../../prompts/demo.toml");

/// The demo vocabulary, parsed.
pub fn vocabulary() -> Result<Vocabulary, VocabularyError> {
    Vocabulary::parse(VOCABULARY_TOML, Path::new("prompts/demo.toml"))
}

/// Every word of the embedded demo world's tweets and of its vocabulary's prompts (the
/// tiny backbones' tokenizers are built from it).
pub fn words() -> BTreeSet<String> {
    let mut words = crate::data::demo::dataset_words(&crate::data::demo::embedded_dir());
    if let Ok(vocabulary) = vocabulary() {
        for prompt in vocabulary.prompts() {
            words.extend(prompt.text.split(' ').map(str::to_string));
        }
    }
    words
}
