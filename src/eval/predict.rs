//! Predictions for a whole split: length-sorted batches through the model's plain
//! forward, images encoded in batches too.

use candle_core::Tensor;

use crate::data::Tweet;
use crate::data::images::ImageResolver;
use crate::model::prompts::PromptBank;
use crate::model::{ImageState, ModelError, Prediction, PromptMner};

/// One prediction per tweet, in the tweets' order.
pub fn predict_split(
    model: &PromptMner,
    tweets: &[Tweet],
    images: &ImageResolver,
    bank: &PromptBank,
    batch_size: usize,
) -> Result<Vec<Prediction>, ModelError> {
    let batch_size = batch_size.max(1);
    let pieces = tweets
        .iter()
        .map(|t| model.tokenize(&t.words))
        .collect::<Result<Vec<_>, _>>()?;
    // Similar lengths together: less padding.
    let mut order: Vec<usize> = (0..tweets.len()).collect();
    order.sort_by_key(|&i| pieces[i].ids.len());
    let bar = crate::progress::bar(tweets.len() as u64, "predicting");
    let mut predictions: Vec<Option<Prediction>> = vec![None; tweets.len()];
    for chunk in order.chunks(batch_size) {
        let states = encode_images(model, chunk.iter().map(|&i| &tweets[i]), images)?;
        let embeds: Vec<Option<&Tensor>> = states.iter().map(ImageState::embedding).collect();
        let batch: Vec<_> = chunk.iter().map(|&i| &pieces[i]).collect();
        for (&i, prediction) in chunk
            .iter()
            .zip(model.predict_batch(&batch, &embeds, bank)?)
        {
            predictions[i] = Some(prediction);
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(predictions
        .into_iter()
        .map(|p| p.expect("every tweet is in one batch"))
        .collect())
}

/// Image states of tweets, decoding their images and encoding the found ones in one batch.
pub fn encode_images<'a>(
    model: &PromptMner,
    tweets: impl Iterator<Item = &'a Tweet>,
    images: &ImageResolver,
) -> Result<Vec<ImageState>, ModelError> {
    let mut states: Vec<Option<ImageState>> = Vec::new();
    let mut pixels = Vec::new();
    let mut slots = Vec::new();
    for tweet in tweets {
        match images.load(tweet.image_id.as_deref()) {
            Ok((_, image)) => {
                slots.push(states.len());
                pixels.push(model.pixels(&image)?);
                states.push(None);
            }
            Err(reason) => states.push(Some(ImageState::none(reason))),
        }
    }
    if !pixels.is_empty() {
        let encoded = model.encode_pixels(&Tensor::stack(&pixels, 0)?)?;
        for (slot, state) in slots.into_iter().zip(encoded) {
            states[slot] = Some(state);
        }
    }
    Ok(states
        .into_iter()
        .map(|s| s.expect("every tweet has a state"))
        .collect())
}
