//! Counterfactual images over a split: does a tweet's prediction change when its image
//! is removed, or swapped for another tweet's (of another scene where the dataset says)?

use std::collections::BTreeMap;

use serde::Serialize;

use crate::data::Tweet;
use crate::data::images::NoImage;
use crate::data::spans::{Span, spans_from_tags};
use crate::data::tags::EntityType;
use crate::eval::predict::predict_split;
use crate::model::prompts::PromptBank;
use crate::model::{ImageState, ModelError, Prediction, PromptMner};
use crate::progress::Progress;

/// One tweet under the three images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct TweetProbe {
    pub index: usize,
    pub has_image: bool,
    /// The tweet whose image replaced this one's.
    pub swapped_with: Option<usize>,
    pub changes_without_image: bool,
    pub changes_with_other_image: bool,
}

impl TweetProbe {
    /// Whether the prediction depends on the image at all.
    pub(crate) fn depends(&self) -> bool {
        self.changes_without_image || self.changes_with_other_image
    }
}

/// How many tweets (with an image) depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Share {
    pub tweets: usize,
    pub dependent: usize,
    pub share: f64,
}

impl Share {
    fn of<'a>(probes: impl Iterator<Item = &'a TweetProbe>) -> Self {
        let (tweets, dependent) = probes
            .filter(|p| p.has_image)
            .fold((0, 0), |(t, d), p| (t + 1, d + usize::from(p.depends())));
        let share = if tweets > 0 {
            dependent as f64 / tweets as f64
        } else {
            0.0
        };
        Self {
            tweets,
            dependent,
            share,
        }
    }
}

/// The whole probe.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ImageProbe {
    pub tweets: Vec<TweetProbe>,
    pub overall: Share,
    /// Over the tweets with a gold entity of each type.
    pub per_type: BTreeMap<EntityType, Share>,
    /// Over the image-ambiguous tweets and the rest, where the dataset marks them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ambiguous: Option<Share>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unambiguous: Option<Share>,
}

/// For each tweet with an image, the next tweet with an image of another scene (any
/// other image where scenes are unknown).
pub(crate) fn swap_partners(
    states: &[ImageState],
    scenes: Option<&[Option<String>]>,
) -> Vec<Option<usize>> {
    let has_image: Vec<bool> = states.iter().map(ImageState::has_image).collect();
    (0..states.len())
        .map(|i| {
            has_image[i]
                .then(|| swap_partner(i, &has_image, scenes))
                .flatten()
        })
        .collect()
}

/// The first tweet after `i` (cyclically) with an image of another scene than `i`'s
/// (any image where `i`'s scene is unknown): the other image of a counterfactual.
pub(crate) fn swap_partner(
    i: usize,
    has_image: &[bool],
    scenes: Option<&[Option<String>]>,
) -> Option<usize> {
    let n = has_image.len();
    let scene = |t: usize| scenes.and_then(|s| s.get(t).cloned().flatten());
    (1..n)
        .map(|k| (i + k) % n)
        .find(|&j| has_image[j] && (scene(i).is_none() || scene(j) != scene(i)))
}

fn spans(prediction: &Prediction) -> Vec<Span> {
    prediction.spans.iter().map(|p| p.span).collect()
}

/// Predicts the split three times (own images, none, swapped) and compares.
#[allow(clippy::too_many_arguments)]
pub(crate) fn probe_images(
    model: &PromptMner,
    gold: &[Tweet],
    states: &[ImageState],
    bank: &PromptBank,
    batch_size: usize,
    scenes: Option<&[Option<String>]>,
    ambiguous: Option<&[bool]>,
    progress: &dyn Progress,
) -> Result<ImageProbe, ModelError> {
    let own = predict_split(model, gold, states, bank, batch_size, progress)?;
    let removed: Vec<ImageState> = states
        .iter()
        .map(|_| ImageState::none(NoImage::Removed))
        .collect();
    let without = predict_split(model, gold, &removed, bank, batch_size, progress)?;
    let partners = swap_partners(states, scenes);
    let swapped: Vec<ImageState> = partners
        .iter()
        .zip(states)
        .map(|(p, own)| p.map_or_else(|| own.clone(), |j| states[j].clone()))
        .collect();
    let other = predict_split(model, gold, &swapped, bank, batch_size, progress)?;
    let tweets: Vec<TweetProbe> = (0..gold.len())
        .map(|i| TweetProbe {
            index: i,
            has_image: states[i].has_image(),
            swapped_with: partners[i],
            changes_without_image: spans(&own[i]) != spans(&without[i]),
            changes_with_other_image: spans(&own[i]) != spans(&other[i]),
        })
        .collect();
    let gold_spans: Vec<Vec<Span>> = gold.iter().map(|t| spans_from_tags(&t.tags)).collect();
    let per_type = EntityType::ALL
        .into_iter()
        .map(|kind| {
            let with_type = tweets
                .iter()
                .filter(|p| gold_spans[p.index].iter().any(|s| s.kind == kind));
            (kind, Share::of(with_type))
        })
        .collect();
    let subset = |flag: bool| {
        ambiguous.map(|flags| {
            Share::of(
                tweets
                    .iter()
                    .filter(|p| flags.get(p.index).copied() == Some(flag)),
            )
        })
    };
    Ok(ImageProbe {
        overall: Share::of(tweets.iter()),
        per_type,
        ambiguous: subset(true),
        unambiguous: subset(false),
        tweets,
    })
}
