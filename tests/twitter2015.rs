//! Reader, writer and scorer on the real Twitter-2015 text (needs ../shared).

mod common;

use promptmner::data::conll::{format_conll, parse_conll, read_conll};
use promptmner::data::spans::{Span, spans_from_tags, tags_from_spans};
use promptmner::data::tags::EntityType;
use promptmner::data::{SPLITS, Tweet, split_path};
use promptmner::eval::score::{Counts, score_tweets};
use std::collections::BTreeMap;

#[test]
fn twitter2015_splits_round_trip_through_the_writer() {
    let Some(dir) = common::twitter2015() else {
        return;
    };
    let expected_tweets = [4000, 1000, 3257];
    for (split, expected) in SPLITS.iter().zip(expected_tweets) {
        let path = split_path(&dir, split);
        let tweets = read_conll(&path).unwrap();
        assert_eq!(tweets.len(), expected, "{split}");
        let written = format_conll(&tweets);
        let again = parse_conll(&written, &path).unwrap();
        assert_eq!(again, tweets, "{split} changed through the writer");
        // The published files are already in the canonical layout.
        assert_eq!(written, std::fs::read_to_string(&path).unwrap(), "{split}");
    }
}

#[test]
fn twitter2015_test_scored_against_itself_is_perfect() {
    let Some(dir) = common::twitter2015() else {
        return;
    };
    let gold = read_conll(&split_path(&dir, "test")).unwrap();
    let report = score_tweets(&gold, &gold).unwrap();
    assert_eq!(report.micro.prf.f1, 100.0);
    assert_eq!(report.micro.counts.fp + report.micro.counts.fn_, 0);
    assert_eq!(report.gold_entities, 5207);
}

/// Changes every 7th entity's type, drops every 11th, and adds a one-word entity on
/// the first free word of every 13th tweet; returns the predictions and the counts
/// that must follow, computed here from the perturbation itself.
fn perturb(gold: &[Tweet]) -> (Vec<Tweet>, BTreeMap<EntityType, Counts>, [usize; 3]) {
    let mut counts: BTreeMap<EntityType, Counts> = BTreeMap::new();
    let (mut retyped, mut dropped, mut added) = (0, 0, 0);
    let mut entity_index = 0;
    let mut pred = Vec::new();
    for (t, tweet) in gold.iter().enumerate() {
        let mut spans: Vec<Span> = Vec::new();
        for span in spans_from_tags(&tweet.tags) {
            entity_index += 1;
            if entity_index % 7 == 0 {
                let next = EntityType::ALL[(span.kind.index() + 1) % 4];
                spans.push(Span { kind: next, ..span });
                counts.entry(span.kind).or_default().fn_ += 1;
                counts.entry(next).or_default().fp += 1;
                retyped += 1;
            } else if entity_index % 11 == 0 {
                counts.entry(span.kind).or_default().fn_ += 1;
                dropped += 1;
            } else {
                spans.push(span);
                counts.entry(span.kind).or_default().tp += 1;
            }
        }
        if t % 13 == 0 {
            let taken: Vec<bool> = (0..tweet.len())
                .map(|w| {
                    spans_from_tags(&tweet.tags)
                        .iter()
                        .any(|s| s.start <= w && w < s.end)
                })
                .collect();
            if let Some(free) = taken.iter().position(|taken| !taken) {
                spans.push(Span {
                    start: free,
                    end: free + 1,
                    kind: EntityType::Other,
                });
                counts.entry(EntityType::Other).or_default().fp += 1;
                added += 1;
            }
        }
        spans.sort();
        pred.push(Tweet {
            tags: tags_from_spans(&spans, tweet.len()),
            ..tweet.clone()
        });
    }
    (pred, counts, [retyped, dropped, added])
}

#[test]
fn twitter2015_scores_a_deterministic_perturbation_as_computed_independently() {
    let Some(dir) = common::twitter2015() else {
        return;
    };
    for split in SPLITS {
        let gold = read_conll(&split_path(&dir, split)).unwrap();
        let (pred, expected, [retyped, dropped, added]) = perturb(&gold);
        let report = score_tweets(&gold, &pred).unwrap();
        let mut micro = Counts::default();
        for kind in EntityType::ALL {
            let want = expected.get(&kind).copied().unwrap_or_default();
            assert_eq!(report.per_type[&kind].counts, want, "{split} {kind}");
            micro.tp += want.tp;
            micro.fp += want.fp;
            micro.fn_ += want.fn_;
        }
        assert_eq!(report.micro.counts, micro);
        let p = micro.tp as f64 / (micro.tp + micro.fp) as f64 * 100.0;
        let r = micro.tp as f64 / (micro.tp + micro.fn_) as f64 * 100.0;
        assert!((report.micro.prf.f1 - 2.0 * p * r / (p + r)).abs() < 1e-9);
        assert_eq!(report.errors.wrong_type, retyped);
        assert_eq!(report.errors.missed, dropped);
        assert_eq!(report.errors.spurious, added);
        assert_eq!(
            report.errors.wrong_boundary + report.errors.wrong_boundary_and_type,
            0
        );
        assert!(
            retyped > 100 && dropped > 50 && added > 50,
            "{split}: the perturbation is too small"
        );
    }
}
