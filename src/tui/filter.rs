//! Which tweets the example list shows: the filters and their counts.

use crate::data::tags::EntityType;
use crate::engine::{SplitView, TweetInfo};
use crate::eval::compare::{Disagreement, Right, compare};
use crate::eval::confusion::{Class, tweet_in_cell};
use crate::eval::score::ErrorKind;

/// One way of narrowing the example list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Filter {
    #[default]
    All,
    Misclassified,
    Error(ErrorKind),
    GoldType(EntityType),
    PredictedType(EntityType),
    HasImage,
    NoImage,
    ImageAmbiguous,
    /// Tweets with an error in one cell of the confusion matrix (gold, predicted).
    Confusion(Class, Class),
    /// Tweets where the compared checkpoints disagree (on entities of a type; where one
    /// of them is right).
    Disagree(Option<EntityType>, Option<Right>),
}

impl Filter {
    /// Every filter in menu order (the cycle order of `]` and `[`).
    pub(crate) fn all() -> Vec<Filter> {
        let mut filters = vec![Filter::All, Filter::Misclassified];
        filters.extend(ErrorKind::ALL.map(Filter::Error));
        filters.extend(EntityType::ALL.map(Filter::GoldType));
        filters.extend(EntityType::ALL.map(Filter::PredictedType));
        filters.extend([Filter::HasImage, Filter::NoImage, Filter::ImageAmbiguous]);
        filters.extend([
            Filter::Disagree(None, None),
            Filter::Disagree(None, Some(Right::A)),
            Filter::Disagree(None, Some(Right::B)),
        ]);
        filters.extend(EntityType::ALL.map(|k| Filter::Disagree(Some(k), None)));
        filters
    }

    pub(crate) fn label(self) -> String {
        match self {
            Filter::All => "all".into(),
            Filter::Misclassified => "misclassified".into(),
            Filter::Error(kind) => kind.as_str().into(),
            Filter::GoldType(kind) => format!("gold {kind}"),
            Filter::PredictedType(kind) => format!("predicted {kind}"),
            Filter::HasImage => "has image".into(),
            Filter::NoImage => "no image".into(),
            Filter::ImageAmbiguous => "image-ambiguous".into(),
            Filter::Disagree(kind, right) => {
                let mut label = "A and B disagree".to_string();
                if let Some(kind) = kind {
                    label.push_str(&format!(" on {kind}"));
                }
                match right {
                    Some(Right::A) => label.push_str(", A right"),
                    Some(Right::B) => label.push_str(", B right"),
                    None => {}
                }
                label
            }
            Filter::Confusion(gold, pred) => {
                let name = |c: Class| c.map_or("none", EntityType::as_str);
                format!("gold {} → pred {}", name(gold), name(pred))
            }
        }
    }

    /// Whether the filter needs a finished scoring to say anything.
    pub(crate) fn needs_scores(self) -> bool {
        matches!(
            self,
            Filter::Misclassified
                | Filter::Error(_)
                | Filter::PredictedType(_)
                | Filter::Confusion(..)
                | Filter::Disagree(..)
        )
    }
}

/// What the filters look at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FilterData<'a> {
    pub tweets: &'a [TweetInfo],
    pub scores: Option<&'a SplitView>,
    /// From the dataset's meta.tsv, when it has one.
    pub ambiguous: Option<&'a [bool]>,
    /// The compared checkpoint's scoring (`--compare`).
    pub compare: Option<&'a SplitView>,
}

impl FilterData<'_> {
    /// Whether tweet `index` passes `filter` (false while the data it needs is missing).
    pub(crate) fn matches(&self, filter: Filter, index: usize) -> bool {
        let tweet = &self.tweets[index];
        let errors = self.scores.and_then(|s| s.tweet_errors.get(index));
        match filter {
            Filter::All => true,
            Filter::Misclassified => errors.is_some_and(|e| !e.is_empty()),
            Filter::Error(kind) => errors.is_some_and(|e| e.iter().any(|e| e.kind == kind)),
            Filter::GoldType(kind) => tweet.gold.iter().any(|s| s.kind == kind),
            Filter::PredictedType(kind) => self
                .scores
                .and_then(|s| s.predicted.get(index))
                .is_some_and(|p| p.iter().any(|p| p.span.kind == kind)),
            Filter::HasImage => tweet.image_path.is_some(),
            Filter::NoImage => tweet.image_path.is_none(),
            Filter::ImageAmbiguous => self
                .ambiguous
                .and_then(|a| a.get(index))
                .copied()
                .unwrap_or(false),
            Filter::Confusion(gold, pred) => errors.is_some_and(|e| tweet_in_cell(e, gold, pred)),
            Filter::Disagree(kind, right) => self.disagreements(index).iter().any(|d| {
                kind.is_none_or(|k| d.span.kind == k) && right.is_none_or(|r| d.right == r)
            }),
        }
    }

    /// Where the two checkpoints disagree on tweet `index` (empty without a comparison).
    pub(crate) fn disagreements(&self, index: usize) -> Vec<Disagreement> {
        let (Some(a), Some(b)) = (self.scores, self.compare) else {
            return Vec::new();
        };
        let gold = self.tweets[index].gold.clone();
        compare(&[gold], &[a.spans_of(index)], &[b.spans_of(index)])
            .disagreements
            .into_iter()
            .map(|d| Disagreement { tweet: index, ..d })
            .collect()
    }

    /// How many tweets pass `filter`; None while it cannot be known.
    pub(crate) fn count(&self, filter: Filter) -> Option<usize> {
        if matches!(filter, Filter::Disagree(..)) && self.compare.is_none() {
            return None;
        }
        if filter.needs_scores() && self.scores.is_none()
            || filter == Filter::ImageAmbiguous && self.ambiguous.is_none()
        {
            return None;
        }
        Some(
            (0..self.tweets.len())
                .filter(|&i| self.matches(filter, i))
                .count(),
        )
    }

    /// The tweets that pass `filter` and contain `query` (case-insensitive), in order.
    pub(crate) fn visible(&self, filter: Filter, query: &str) -> Vec<usize> {
        let query = query.to_lowercase();
        (0..self.tweets.len())
            .filter(|&i| self.matches(filter, i))
            .filter(|&i| {
                query.is_empty()
                    || self.tweets[i]
                        .words
                        .join(" ")
                        .to_lowercase()
                        .contains(&query)
            })
            .collect()
    }
}
