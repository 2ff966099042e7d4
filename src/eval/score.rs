//! Entity-level scoring with conlleval's numbers, and per-tweet error analysis.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::data::conll::Tweet;
use crate::data::spans::{Span, spans_from_tags};
use crate::data::tags::EntityType;

/// True positives, false positives and false negatives of one entity class (or all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
}

impl Counts {
    /// Precision, recall and F1 in percent; 0 where a denominator is 0 (as conlleval).
    pub fn prf(&self) -> Prf {
        let ratio = |num: usize, den: usize| {
            if den == 0 {
                0.0
            } else {
                100.0 * num as f64 / den as f64
            }
        };
        let precision = ratio(self.tp, self.tp + self.fp);
        let recall = ratio(self.tp, self.tp + self.fn_);
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        Prf {
            precision,
            recall,
            f1,
        }
    }

    fn add(&mut self, other: Counts) {
        self.tp += other.tp;
        self.fp += other.fp;
        self.fn_ += other.fn_;
    }
}

/// Precision, recall and F1, in percent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// Counts and scores of one class, or of all classes together (micro).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClassScore {
    #[serde(flatten)]
    pub counts: Counts,
    #[serde(flatten)]
    pub prf: Prf,
}

impl From<Counts> for ClassScore {
    fn from(counts: Counts) -> Self {
        ClassScore {
            counts,
            prf: counts.prf(),
        }
    }
}

/// How a prediction went wrong, by the boundaries and type of the spans involved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Same boundaries as a gold entity, another type.
    WrongType,
    /// Overlaps a gold entity of the same type, other boundaries.
    WrongBoundary,
    /// Overlaps only gold entities of other types, with other boundaries.
    WrongBoundaryAndType,
    /// Overlaps no gold entity.
    Spurious,
    /// A gold entity that no prediction overlaps.
    Missed,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::WrongType,
        ErrorKind::WrongBoundary,
        ErrorKind::WrongBoundaryAndType,
        ErrorKind::Spurious,
        ErrorKind::Missed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::WrongType => "wrong type",
            ErrorKind::WrongBoundary => "wrong boundary",
            ErrorKind::WrongBoundaryAndType => "wrong boundary and type",
            ErrorKind::Spurious => "spurious",
            ErrorKind::Missed => "missed",
        }
    }
}

/// One error in a tweet: the prediction at fault (absent for `Missed`) and the gold
/// entity it is judged against (absent for `Spurious`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SpanError {
    pub kind: ErrorKind,
    pub gold: Option<Span>,
    pub pred: Option<Span>,
}

/// Classifies every predicted span that is not an exact match, and every gold span
/// that no prediction overlaps. Each wrong prediction is one error, judged against the
/// best-matching overlapping gold entity (same boundaries, then same type, then any).
pub fn classify_errors(gold: &[Span], pred: &[Span]) -> Vec<SpanError> {
    let mut errors = Vec::new();
    for p in pred {
        if gold.contains(p) {
            continue;
        }
        let overlapping = || gold.iter().filter(|g| g.overlaps(p));
        let (kind, g) = if let Some(g) = gold.iter().find(|g| g.same_boundaries(p)) {
            (ErrorKind::WrongType, Some(*g))
        } else if let Some(g) = overlapping().find(|g| g.kind == p.kind) {
            (ErrorKind::WrongBoundary, Some(*g))
        } else if let Some(g) = overlapping().next() {
            (ErrorKind::WrongBoundaryAndType, Some(*g))
        } else {
            (ErrorKind::Spurious, None)
        };
        errors.push(SpanError {
            kind,
            gold: g,
            pred: Some(*p),
        });
    }
    for g in gold {
        if !pred.iter().any(|p| p.overlaps(g)) {
            errors.push(SpanError {
                kind: ErrorKind::Missed,
                gold: Some(*g),
                pred: None,
            });
        }
    }
    errors
}

/// Number of errors of each kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    pub wrong_type: usize,
    pub wrong_boundary: usize,
    pub wrong_boundary_and_type: usize,
    pub spurious: usize,
    pub missed: usize,
}

impl ErrorCounts {
    fn add(&mut self, kind: ErrorKind) {
        *self.get_mut(kind) += 1;
    }

    fn get_mut(&mut self, kind: ErrorKind) -> &mut usize {
        match kind {
            ErrorKind::WrongType => &mut self.wrong_type,
            ErrorKind::WrongBoundary => &mut self.wrong_boundary,
            ErrorKind::WrongBoundaryAndType => &mut self.wrong_boundary_and_type,
            ErrorKind::Spurious => &mut self.spurious,
            ErrorKind::Missed => &mut self.missed,
        }
    }

    pub fn get(&self, kind: ErrorKind) -> usize {
        let mut copy = *self;
        *copy.get_mut(kind)
    }
}

/// Entity-level scores of a set of tweets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreReport {
    pub tweets: usize,
    pub tokens: usize,
    pub gold_entities: usize,
    pub predicted_entities: usize,
    /// Share of tokens whose tag is right, in percent (conlleval's "accuracy").
    pub token_accuracy: f64,
    pub micro: ClassScore,
    /// Every entity type, present or not.
    pub per_type: BTreeMap<EntityType, ClassScore>,
    /// Unweighted mean over the types that occur in the gold or the predictions
    /// (seqeval's macro average).
    #[serde(rename = "macro")]
    pub macro_avg: Prf,
    pub errors: ErrorCounts,
}

/// Accumulates gold and predicted spans tweet by tweet.
#[derive(Debug, Clone, Default)]
pub struct Scorer {
    per_type: BTreeMap<EntityType, Counts>,
    tweets: usize,
    tokens: usize,
    correct_tokens: usize,
    errors: ErrorCounts,
}

impl Scorer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one tweet's gold and predicted entities.
    pub fn add_spans(&mut self, gold: &[Span], pred: &[Span]) {
        self.tweets += 1;
        for p in pred {
            let counts = self.per_type.entry(p.kind).or_default();
            if gold.contains(p) {
                counts.tp += 1;
            } else {
                counts.fp += 1;
            }
        }
        for g in gold {
            if !pred.contains(g) {
                self.per_type.entry(g.kind).or_default().fn_ += 1;
            }
        }
        for error in classify_errors(gold, pred) {
            self.errors.add(error.kind);
        }
    }

    /// Adds one aligned pair of tweets (tags compared token by token for accuracy).
    pub fn add_tweet(&mut self, gold: &Tweet, pred: &Tweet) {
        self.tokens += gold.tags.len();
        self.correct_tokens += gold
            .tags
            .iter()
            .zip(&pred.tags)
            .filter(|(g, p)| g == p)
            .count();
        self.add_spans(&spans_from_tags(&gold.tags), &spans_from_tags(&pred.tags));
    }

    pub fn report(&self) -> ScoreReport {
        let mut micro = Counts::default();
        for counts in self.per_type.values() {
            micro.add(*counts);
        }
        let present: Vec<Prf> = self
            .per_type
            .values()
            .filter(|c| c.tp + c.fp + c.fn_ > 0)
            .map(Counts::prf)
            .collect();
        let mean = |f: fn(&Prf) -> f64| {
            if present.is_empty() {
                0.0
            } else {
                present.iter().map(f).sum::<f64>() / present.len() as f64
            }
        };
        let macro_avg = Prf {
            precision: mean(|p| p.precision),
            recall: mean(|p| p.recall),
            f1: mean(|p| p.f1),
        };
        ScoreReport {
            tweets: self.tweets,
            tokens: self.tokens,
            gold_entities: micro.tp + micro.fn_,
            predicted_entities: micro.tp + micro.fp,
            token_accuracy: if self.tokens == 0 {
                0.0
            } else {
                100.0 * self.correct_tokens as f64 / self.tokens as f64
            },
            micro: micro.into(),
            per_type: EntityType::ALL
                .iter()
                .map(|t| (*t, self.per_type.get(t).copied().unwrap_or_default().into()))
                .collect(),
            macro_avg,
            errors: self.errors,
        }
    }
}

/// The prediction file does not line up with the gold file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlignmentError {
    #[error("the gold file has {gold} tweets but the prediction file has {pred}")]
    TweetCount { gold: usize, pred: usize },
    #[error("tweet {index} (gold line {gold_line}, prediction line {pred_line}) differs: {what}")]
    Tweet {
        /// 1-based position of the tweet in the files.
        index: usize,
        gold_line: usize,
        pred_line: usize,
        what: String,
    },
}

/// Checks that predictions align with gold token by token; names the first tweet that
/// does not.
pub fn check_alignment(gold: &[Tweet], pred: &[Tweet]) -> Result<(), AlignmentError> {
    for (i, (g, p)) in gold.iter().zip(pred).enumerate() {
        let what = if g.words.len() != p.words.len() {
            Some(format!(
                "gold has {} tokens, prediction has {}",
                g.words.len(),
                p.words.len()
            ))
        } else if let Some((k, (gw, pw))) = g
            .words
            .iter()
            .zip(&p.words)
            .enumerate()
            .find(|(_, (gw, pw))| gw != pw)
        {
            Some(format!(
                "token {} is '{gw}' in gold, '{pw}' in prediction",
                k + 1
            ))
        } else if g.image_id != p.image_id && p.image_id.is_some() {
            Some(format!(
                "IMGID {} in gold, {} in prediction",
                g.image_id.as_deref().unwrap_or("(none)"),
                p.image_id.as_deref().unwrap_or("(none)")
            ))
        } else {
            None
        };
        if let Some(what) = what {
            return Err(AlignmentError::Tweet {
                index: i + 1,
                gold_line: g.line,
                pred_line: p.line,
                what,
            });
        }
    }
    if gold.len() != pred.len() {
        return Err(AlignmentError::TweetCount {
            gold: gold.len(),
            pred: pred.len(),
        });
    }
    Ok(())
}

/// Scores aligned gold and predicted tweets.
pub fn score_tweets(gold: &[Tweet], pred: &[Tweet]) -> Result<ScoreReport, AlignmentError> {
    check_alignment(gold, pred)?;
    let mut scorer = Scorer::new();
    for (g, p) in gold.iter().zip(pred) {
        scorer.add_tweet(g, p);
    }
    Ok(scorer.report())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::conll::parse_conll;
    use EntityType::*;

    fn span(start: usize, end: usize, kind: EntityType) -> Span {
        Span { start, end, kind }
    }

    fn tweets(text: &str) -> Vec<Tweet> {
        parse_conll(text, std::path::Path::new("x")).unwrap()
    }

    #[test]
    fn hand_computed_counts_and_scores() {
        // gold: PER(0..2) LOC(3..4) | ORG(0..1)
        // pred: PER(0..2) ORG(3..4) | ORG(0..1) PER(2..3)
        let gold = tweets("a\tB-PER\nb\tI-PER\nc\tO\nd\tB-LOC\n\ne\tB-ORG\nf\tO\ng\tO\n");
        let pred = tweets("a\tB-PER\nb\tI-PER\nc\tO\nd\tB-ORG\n\ne\tB-ORG\nf\tO\ng\tB-PER\n");
        let r = score_tweets(&gold, &pred).unwrap();
        assert_eq!(
            r.micro.counts,
            Counts {
                tp: 2,
                fp: 2,
                fn_: 1
            }
        );
        assert!((r.micro.prf.precision - 50.0).abs() < 1e-9);
        assert!((r.micro.prf.recall - 200.0 / 3.0).abs() < 1e-9);
        assert!((r.micro.prf.f1 - 2.0 * 50.0 * (200.0 / 3.0) / (50.0 + 200.0 / 3.0)).abs() < 1e-9);
        assert_eq!(
            r.per_type[&Per].counts,
            Counts {
                tp: 1,
                fp: 1,
                fn_: 0
            }
        );
        assert_eq!(
            r.per_type[&Loc].counts,
            Counts {
                tp: 0,
                fp: 0,
                fn_: 1
            }
        );
        assert_eq!(
            r.per_type[&Org].counts,
            Counts {
                tp: 1,
                fp: 1,
                fn_: 0
            }
        );
        assert_eq!(r.per_type[&Other].counts, Counts::default());
        // macro over PER (P 50 R 100 F 66.67), LOC (0, 0, 0), ORG (50, 100, 66.67)
        assert!((r.macro_avg.precision - 100.0 / 3.0).abs() < 1e-9);
        assert!((r.macro_avg.recall - 200.0 / 3.0).abs() < 1e-9);
        assert!((r.macro_avg.f1 - (2.0 * 200.0 / 3.0) / 3.0).abs() < 1e-9);
        assert_eq!(r.tokens, 7);
        assert!((r.token_accuracy - 500.0 / 7.0).abs() < 1e-9);
        assert_eq!(r.errors.wrong_type, 1);
        assert_eq!(r.errors.spurious, 1);
        assert_eq!(r.errors.missed, 0);
    }

    #[test]
    fn zero_denominators_give_zero() {
        let gold = tweets("a\tO\n");
        let r = score_tweets(&gold, &gold).unwrap();
        assert_eq!(r.micro.prf, Prf::default());
        assert_eq!(r.macro_avg, Prf::default());
    }

    #[test]
    fn a_boundary_error_is_one_fp_and_one_fn() {
        let gold = tweets("New\tB-LOC\nYork\tI-LOC\ncity\tO\n");
        let pred = tweets("New\tB-LOC\nYork\tI-LOC\ncity\tI-LOC\n");
        let r = score_tweets(&gold, &pred).unwrap();
        assert_eq!(
            r.micro.counts,
            Counts {
                tp: 0,
                fp: 1,
                fn_: 1
            }
        );
        assert_eq!(r.errors.wrong_boundary, 1);
    }

    #[test]
    fn classifies_each_error_kind() {
        let gold = [
            span(0, 2, Per),
            span(3, 5, Loc),
            span(6, 7, Org),
            span(9, 10, Other),
        ];
        let pred = [
            span(0, 2, Org),   // wrong type
            span(3, 4, Loc),   // wrong boundary
            span(6, 8, Per),   // wrong boundary and type
            span(11, 12, Per), // spurious
        ];
        let errors = classify_errors(&gold, &pred);
        let kinds: Vec<_> = errors.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                ErrorKind::WrongType,
                ErrorKind::WrongBoundary,
                ErrorKind::WrongBoundaryAndType,
                ErrorKind::Spurious,
                ErrorKind::Missed
            ]
        );
        assert_eq!(errors[4].gold, Some(span(9, 10, Other)));
        assert_eq!(errors[1].gold, Some(span(3, 5, Loc)));
        assert!(classify_errors(&gold, &gold).is_empty());
    }

    #[test]
    fn misaligned_predictions_name_the_first_differing_tweet() {
        let gold = tweets("IMGID:1\na\tO\n\nIMGID:2\nb\tO\nc\tO\n");
        let short = tweets("IMGID:1\na\tO\n\nIMGID:2\nb\tO\n");
        let err = score_tweets(&gold, &short).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tweet 2 (gold line 4, prediction line 4) differs: gold has 2 tokens, prediction has 1"
        );
        let other_word = tweets("IMGID:1\na\tO\n\nIMGID:2\nb\tO\nd\tO\n");
        assert!(
            score_tweets(&gold, &other_word)
                .unwrap_err()
                .to_string()
                .contains("token 2 is 'c'")
        );
        let fewer = tweets("IMGID:1\na\tO\n");
        assert_eq!(
            score_tweets(&gold, &fewer).unwrap_err(),
            AlignmentError::TweetCount { gold: 2, pred: 1 }
        );
    }
}
