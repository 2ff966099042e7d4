//! The BERT-family tokenizer over pre-tokenized words: each word's first piece, the
//! encoder's piece limit, and the words it cuts.

use std::path::{Path, PathBuf};

use tokenizers::{EncodeInput, InputSequence, Tokenizer, TruncationParams};

use crate::model::ModelError;

/// A tweet's words as word pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordPieces {
    /// Piece ids with the special tokens, at most the encoder's limit.
    pub ids: Vec<u32>,
    /// Index in `ids` of each word's first piece, up to the last word that fits the
    /// encoder's limit (`None` for a word inside that range without a piece).
    pub first_piece: Vec<Option<usize>>,
    /// Words after those, cut by the limit: never looked at, so that a 10,000-word
    /// tweet costs what its first 512 pieces cost.
    pub cut_words: usize,
}

impl WordPieces {
    /// Words that did not fit in the encoder's limit (predicted as no entity).
    pub fn truncated_words(&self) -> usize {
        self.cut_words + self.first_piece.iter().filter(|p| p.is_none()).count()
    }
}

/// The tokenizer of a BERT-family model, splitting pre-tokenized words into pieces.
pub struct WordPieceTokenizer {
    tokenizer: Tokenizer,
    unk: String,
    pub max_len: usize,
}

impl WordPieceTokenizer {
    /// Loads `tokenizer.json`; padding is turned off (MiniLM's file pads to 128, trap 4)
    /// and truncation set to `max_len` pieces.
    pub fn load(path: &Path, max_len: usize) -> std::result::Result<Self, ModelError> {
        let mut tokenizer = crate::model::load_tokenizer(path)?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| ModelError::Tokenizer {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let unk = ["[UNK]", "<unk>"]
            .into_iter()
            .find(|t| tokenizer.token_to_id(t).is_some())
            .unwrap_or("[UNK]")
            .to_string();
        Ok(Self {
            tokenizer,
            unk,
            max_len,
        })
    }

    /// Pieces the tokenizer knows (special tokens included).
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    fn encode_raw(&self, words: &[&str]) -> std::result::Result<tokenizers::Encoding, ModelError> {
        let input = EncodeInput::Single(InputSequence::from(words.to_vec()));
        self.tokenizer
            .encode(input, true)
            .map_err(|e| ModelError::Tokenizer {
                path: PathBuf::from("tokenizer.json"),
                message: e.to_string(),
            })
    }

    /// Pieces of pre-split words, as HF's `tokenizer(words, is_split_into_words=True,
    /// truncation=True, max_length=max_len)`. A word the normaliser erases entirely
    /// (a lone U+00A0, say) is read as the unknown token so that every word keeps a piece.
    pub fn encode_words<S: AsRef<str>>(
        &self,
        words: &[S],
    ) -> std::result::Result<WordPieces, ModelError> {
        let mut words: Vec<&str> = words.iter().map(AsRef::as_ref).collect();
        let mut encoding = self.encode_raw(&words)?;
        let mut first = first_pieces(&encoding, words.len());
        // A word without pieces was either cut by the limit or erased by the normaliser;
        // when the limit was reached, the words after the last one encoded were cut.
        let searched = if encoding.get_ids().len() >= self.max_len {
            first.iter().rposition(Option::is_some).map_or(0, |w| w + 1)
        } else {
            words.len()
        };
        let erased: Vec<usize> = (0..searched)
            .filter(|&w| first[w].is_none())
            .filter(|&w| {
                self.tokenizer
                    .encode(words[w], false)
                    .is_ok_and(|e| e.get_ids().is_empty())
            })
            .collect();
        if !erased.is_empty() {
            for &w in &erased {
                words[w] = &self.unk;
            }
            encoding = self.encode_raw(&words)?;
            first = first_pieces(&encoding, words.len());
        }
        let kept = first.iter().rposition(Option::is_some).map_or(0, |w| w + 1);
        let cut_words = first.len() - kept;
        first.truncate(kept);
        Ok(WordPieces {
            ids: encoding.get_ids().to_vec(),
            first_piece: first,
            cut_words,
        })
    }
}

fn first_pieces(encoding: &tokenizers::Encoding, words: usize) -> Vec<Option<usize>> {
    let mut first = vec![None; words];
    for (piece, word) in encoding.get_word_ids().iter().enumerate() {
        if let Some(w) = word {
            let slot = &mut first[*w as usize];
            if slot.is_none() {
                *slot = Some(piece);
            }
        }
    }
    first
}
