//! Predictions for a whole split: length-sorted batches through the model's plain forward.

use candle_core::Tensor;

use crate::data::Tweet;
use crate::model::prompts::PromptBank;
use crate::model::{ImageState, ModelError, Prediction, PromptMner};
use crate::progress::{Progress, Task};

/// One prediction per tweet, in the tweets' order; `images[i]` is tweet i's image state
/// (see [`crate::stages::image_cache::image_states`]).
// Each `expect` here states an invariant that holds by construction.
#[allow(clippy::expect_used)]
pub fn predict_split(
    model: &PromptMner,
    tweets: &[Tweet],
    images: &[ImageState],
    bank: &PromptBank,
    batch_size: usize,
    progress: &dyn Progress,
) -> Result<Vec<Prediction>, ModelError> {
    let batch_size = batch_size.max(1);
    let pieces = tweets
        .iter()
        .map(|t| model.tokenize(&t.words))
        .collect::<Result<Vec<_>, _>>()?;
    // Similar lengths together: less padding.
    let mut order: Vec<usize> = (0..tweets.len()).collect();
    order.sort_by_key(|&i| pieces[i].ids.len());
    let mut task = Task::start(progress, "predicting", tweets.len() as u64);
    let mut predictions: Vec<Option<Prediction>> = vec![None; tweets.len()];
    for chunk in order.chunks(batch_size) {
        let embeds: Vec<Option<&Tensor>> = chunk.iter().map(|&i| images[i].embedding()).collect();
        let batch: Vec<_> = chunk.iter().map(|&i| &pieces[i]).collect();
        for (&i, prediction) in chunk
            .iter()
            .zip(model.predict_batch(&batch, &embeds, bank)?)
        {
            predictions[i] = Some(prediction);
        }
        task.advance(chunk.len() as u64);
    }
    drop(task);
    Ok(predictions
        .into_iter()
        .map(|p| p.expect("every tweet is in one batch"))
        .collect())
}

/// The predicted tweets: the gold words with predicted tags (for CoNLL output and scoring).
pub fn predicted_tweets(tweets: &[Tweet], predictions: &[Prediction]) -> Vec<Tweet> {
    tweets
        .iter()
        .zip(predictions)
        .map(|(t, p)| {
            let spans: Vec<_> = p.spans.iter().map(|s| s.span).collect();
            Tweet {
                tags: crate::data::spans::tags_from_spans(&spans, t.len()),
                ..t.clone()
            }
        })
        .collect()
}
