//! The confusion matrix of a scored split: gold type against predicted type, with a "no
//! entity" row (spurious predictions) and column (missed gold entities). Each error of
//! the per-tweet error classification falls in one cell, and exact matches on the
//! diagonal, so the cells add up to `score`'s counts.

use serde::Serialize;

use crate::data::tags::EntityType;
use crate::eval::score::{ErrorKind, SpanError};

/// A row or column: an entity type, or no entity.
pub(crate) type Class = Option<EntityType>;

/// Every class in matrix order: the four types, then "no entity".
pub(crate) fn classes() -> [Class; 5] {
    [
        Some(EntityType::Per),
        Some(EntityType::Loc),
        Some(EntityType::Org),
        Some(EntityType::Other),
        None,
    ]
}

fn position(class: Class) -> usize {
    class.map_or(4, EntityType::index)
}

/// Counts per (gold, predicted) cell: exact matches and errors apart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Confusion {
    /// [gold][predicted] errors.
    pub errors: [[usize; 5]; 5],
    /// Exact matches per type (the diagonal's correct part).
    pub correct: [usize; 4],
}

impl Confusion {
    /// From each tweet's errors and the true positives per type.
    pub(crate) fn new(tweet_errors: &[Vec<SpanError>], correct: [usize; 4]) -> Self {
        let mut confusion = Self {
            errors: [[0; 5]; 5],
            correct,
        };
        for error in tweet_errors.iter().flatten() {
            let (gold, pred) = cell_of(error);
            confusion.errors[position(gold)][position(pred)] += 1;
        }
        confusion
    }

    /// All entries of a cell: errors, plus exact matches on the diagonal.
    pub(crate) fn count(&self, gold: Class, pred: Class) -> usize {
        let diagonal = match (gold, pred) {
            (Some(g), Some(p)) if g == p => self.correct[g.index()],
            _ => 0,
        };
        self.errors[position(gold)][position(pred)] + diagonal
    }

    pub(crate) fn total_errors(&self) -> usize {
        self.errors.iter().flatten().sum()
    }
}

/// The cell an error falls in.
pub(crate) fn cell_of(error: &SpanError) -> (Class, Class) {
    match error.kind {
        ErrorKind::Spurious => (None, error.pred.map(|p| p.kind)),
        ErrorKind::Missed => (error.gold.map(|g| g.kind), None),
        _ => (error.gold.map(|g| g.kind), error.pred.map(|p| p.kind)),
    }
}

/// Whether a tweet has an error in the cell.
pub(crate) fn tweet_in_cell(errors: &[SpanError], gold: Class, pred: Class) -> bool {
    errors.iter().any(|e| cell_of(e) == (gold, pred))
}
