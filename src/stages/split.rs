//! A split prepared for one model: its tweets read, their word pieces made, and (where
//! the caller wants them all at once) their image states. Training, evaluation, the
//! engine and the live benchmark (through the engine) start from it.

use std::path::Path;

use crate::data::images::ImageResolver;
use crate::data::{Tweet, conll::ConllError, read_conll};
use crate::model::bert::WordPieces;
use crate::model::{ImageState, ModelError, PromptMner};
use crate::progress::Progress;
use crate::stages::StageCounters;
use crate::stages::image_cache::{ImageCache, image_states};

/// Why a split could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Read(#[from] ConllError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Tweets and their word pieces, index for index.
pub struct PreparedSplit {
    pub tweets: Vec<Tweet>,
    pub pieces: Vec<WordPieces>,
}

/// Where a split's images come from and how they are encoded.
pub struct ImageSource<'a> {
    pub resolver: &'a ImageResolver,
    pub cache: Option<&'a ImageCache>,
    pub batch_size: usize,
    pub progress: &'a dyn Progress,
    pub counters: &'a StageCounters,
}

impl PreparedSplit {
    /// Reads the CoNLL file `file` and splits every tweet into `model`'s word pieces.
    pub fn load(model: &PromptMner, file: &Path) -> Result<Self, PrepareError> {
        let tweets = read_conll(file)?;
        let pieces = tweets
            .iter()
            .map(|t| model.tokenize(&t.words))
            .collect::<Result<_, _>>()?;
        Ok(Self { tweets, pieces })
    }

    pub fn len(&self) -> usize {
        self.tweets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tweets.is_empty()
    }

    /// Every tweet's image state, in tweet order (from the disk cache where it holds
    /// them).
    pub fn image_states(
        &self,
        model: &PromptMner,
        source: &ImageSource,
    ) -> Result<Vec<ImageState>, ModelError> {
        image_states(
            model,
            &self.tweets,
            source.resolver,
            source.cache,
            source.batch_size,
            source.progress,
            source.counters,
        )
    }
}
