//! CLIP's BPE tokenizer, framing every prompt with its start and end tokens.

use std::path::Path;

use tokenizers::Tokenizer;

use crate::model::ModelError;

/// CLIP's BPE tokenizer (`tokenizer.json`), with its start and end tokens.
pub struct ClipTokenizer {
    tokenizer: Tokenizer,
    pub max_len: usize,
    /// The start and end tokens every prompt is framed with.
    pub start: u32,
    pub end: u32,
    path: std::path::PathBuf,
}

impl ClipTokenizer {
    /// Loads tokenizer.json; one whose post-processor adds no start and end tokens is
    /// refused (prompts are read at their end token).
    pub fn load(path: &Path, max_len: usize) -> std::result::Result<Self, ModelError> {
        let mut clip = Self {
            tokenizer: crate::model::load_tokenizer(path)?,
            max_len: max_len.max(2),
            start: 0,
            end: 0,
            path: path.to_path_buf(),
        };
        match clip.encode("", true)?[..] {
            [start, end] => (clip.start, clip.end) = (start, end),
            _ => {
                return Err(ModelError::Tokenizer {
                    path: path.to_path_buf(),
                    message: "it adds no start and end tokens around a text; use the \
                              tokenizer.json of a CLIP model (its post_processor frames \
                              every text with <|startoftext|> and <|endoftext|>)"
                        .into(),
                });
            }
        }
        Ok(clip)
    }

    fn encode(&self, text: &str, special: bool) -> std::result::Result<Vec<u32>, ModelError> {
        self.tokenizer
            .encode(text, special)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| ModelError::Tokenizer {
                path: self.path.clone(),
                message: e.to_string(),
            })
    }

    /// Ids of `text` with start and end tokens, cut to the tower's length (end kept).
    pub fn encode_prompt(&self, text: &str) -> std::result::Result<Vec<u32>, ModelError> {
        let mut ids = self.encode(text, true)?;
        if ids.len() > self.max_len {
            ids.truncate(self.max_len - 1);
            ids.push(self.end);
        }
        Ok(ids)
    }

    /// Ids of `text` without special tokens (a template's fixed words).
    pub fn encode_words(&self, text: &str) -> std::result::Result<Vec<u32>, ModelError> {
        self.encode(text, false)
    }
}
