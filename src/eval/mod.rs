//! Evaluation: entity-level scores and error analysis.

pub mod compare;
pub mod confusion;
pub mod predict;
pub mod probe;
pub mod score;
pub mod split;

pub use score::{ErrorKind, ScoreReport, Scorer, SpanError, classify_errors, score_tweets};
