//! The one scoring path for a split's predictions: `promptmner eval`, training's
//! evaluation and the engine's live rescoring all score through [`score_predictions`].

use serde::Serialize;

use crate::data::Tweet;
use crate::data::spans::spans_from_tags;
use crate::eval::predict::predicted_tweets;
use crate::eval::score::{ScoreReport, Scorer, SpanError, classify_errors};
use crate::model::Prediction;

/// Scores of a split and each tweet's errors (for the misclassified filters).
#[derive(Debug, Clone, Serialize)]
pub struct SplitScores {
    pub report: ScoreReport,
    /// Per tweet, in the split's order; empty where the prediction is exact.
    pub tweet_errors: Vec<Vec<SpanError>>,
}

/// Scores predictions (one per tweet, in order) against the split's gold tags with
/// conlleval's rules.
pub fn score_predictions(gold: &[Tweet], predictions: &[Prediction]) -> SplitScores {
    let predicted = predicted_tweets(gold, predictions);
    let mut scorer = Scorer::new();
    let mut tweet_errors = Vec::with_capacity(gold.len());
    for (g, p) in gold.iter().zip(&predicted) {
        scorer.add_tweet(g, p);
        tweet_errors.push(classify_errors(
            &spans_from_tags(&g.tags),
            &spans_from_tags(&p.tags),
        ));
    }
    SplitScores {
        report: scorer.report(),
        tweet_errors,
    }
}
