//! Evaluation: entity-level scores and error analysis.

pub mod predict;
pub mod score;

pub use score::{ErrorKind, ScoreReport, Scorer, SpanError, classify_errors, score_tweets};
