//! Two models' predictions on one split: where they disagree, by entity type and by
//! which one is right.
//!
//! A disagreement is a predicted entity (boundaries and type) that one model has and the
//! other has not; the model right about it is the one that agrees with gold (has it when
//! gold has it, lacks it when gold lacks it).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::data::spans::Span;
use crate::data::tags::EntityType;

/// Which model a disagreement favours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Right {
    A,
    B,
}

/// One disagreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Disagreement {
    pub tweet: usize,
    pub span: Span,
    /// The model that predicted the span.
    pub predicted_by: Right,
    pub right: Right,
}

/// Counts of disagreements by who is right.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct RightCounts {
    pub a_right: usize,
    pub b_right: usize,
}

impl RightCounts {
    fn add(&mut self, right: Right) {
        match right {
            Right::A => self.a_right += 1,
            Right::B => self.b_right += 1,
        }
    }

    pub(crate) fn total(&self) -> usize {
        self.a_right + self.b_right
    }
}

/// Every disagreement and the counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Comparison {
    pub disagreements: Vec<Disagreement>,
    /// Tweets with at least one disagreement.
    pub tweets: usize,
    pub overall: RightCounts,
    pub per_type: BTreeMap<EntityType, RightCounts>,
}

/// Compares two models' entities with gold, tweet by tweet.
pub(crate) fn compare(gold: &[Vec<Span>], a: &[Vec<Span>], b: &[Vec<Span>]) -> Comparison {
    let mut comparison = Comparison::default();
    for (tweet, ((gold, a), b)) in gold.iter().zip(a).zip(b).enumerate() {
        let only = |mine: &[Span], theirs: &[Span], by: Right| -> Vec<Disagreement> {
            mine.iter()
                .filter(|s| !theirs.contains(s))
                .map(|&span| Disagreement {
                    tweet,
                    span,
                    predicted_by: by,
                    right: match (gold.contains(&span), by) {
                        (true, by) => by,
                        (false, Right::A) => Right::B,
                        (false, Right::B) => Right::A,
                    },
                })
                .collect()
        };
        let mut here = only(a, b, Right::A);
        here.extend(only(b, a, Right::B));
        if !here.is_empty() {
            comparison.tweets += 1;
        }
        for d in &here {
            comparison.overall.add(d.right);
            comparison
                .per_type
                .entry(d.span.kind)
                .or_default()
                .add(d.right);
        }
        comparison.disagreements.extend(here);
    }
    comparison
}

#[cfg(test)]
mod tests {
    use super::*;
    use EntityType::{Loc, Org, Per};

    fn s(start: usize, end: usize, kind: EntityType) -> Span {
        Span { start, end, kind }
    }

    #[test]
    fn each_disagreement_has_one_right_model() {
        let gold = vec![vec![s(0, 1, Per)], vec![s(2, 4, Loc)], vec![]];
        let a = vec![vec![s(0, 1, Per)], vec![s(2, 4, Org)], vec![]];
        let b = vec![vec![s(0, 1, Org)], vec![s(2, 4, Org)], vec![s(1, 2, Per)]];
        let c = compare(&gold, &a, &b);
        // Tweet 0: A's PER (right: A), B's ORG (right: A). Tweet 2: B's spurious PER (A).
        assert_eq!(c.tweets, 2);
        assert_eq!(
            c.overall,
            RightCounts {
                a_right: 3,
                b_right: 0
            }
        );
        assert_eq!(
            c.per_type[&Per],
            RightCounts {
                a_right: 2,
                b_right: 0
            }
        );
        assert_eq!(c.per_type[&Org].total(), 1);
        let swapped = compare(&gold, &b, &a);
        assert_eq!(
            swapped.overall,
            RightCounts {
                a_right: 0,
                b_right: 3
            }
        );
    }
}
