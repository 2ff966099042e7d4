//! What can go wrong in the engine's worker, by cause. The worker reports each as an
//! [`crate::engine::Event::Error`] whose message is the whole chain, said once.

use crate::model::ModelError;
use crate::run::RunError;
use crate::stages::PrepareError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot load the checkpoint")]
    Checkpoint(#[source] RunError),
    #[error("cannot prepare the split")]
    Split(#[source] PrepareError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error("the edit is not applied")]
    EditNotApplied(#[source] ModelError),
    #[error("tweet {index} is not in the split ({tweets} tweets)")]
    NoSuchTweet { index: usize, tweets: usize },
    #[error("words {start}..{end} are not a candidate span")]
    NotACandidate { start: usize, end: usize },
    /// A stage the worker runs before this one did not leave its result (a bug).
    #[error("the engine has no {0} here (a stage it runs first left none)")]
    Missing(&'static str),
}
