//! Evaluation: entity-level scores and error analysis.

pub(crate) mod compare;
pub(crate) mod confusion;
pub mod figure;
pub mod inputs;
pub(crate) mod latex;
pub mod predict;
pub(crate) mod probe;
pub mod score;
pub mod significance;
pub mod split;

pub use score::{ErrorKind, ScoreReport, Scorer, SpanError, classify_errors, score_tweets};
