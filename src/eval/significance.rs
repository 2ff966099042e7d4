//! Whether one model's F1 differs from another's by more than the test set's noise
//! (Dror et al. 2018; Berg-Kirkpatrick et al. 2012): a paired bootstrap over tweets for
//! the 95% interval of ΔF1 (B − A), and approximate randomisation (each tweet's two
//! predictions swapped at random) for its p-value. Both are seeded, so a report can be
//! made again; sacrebleu's defaults (1000 resamples, 95%).

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::data::spans::Span;
use crate::eval::score::Counts;

/// Resamples (and randomisation rounds) unless asked otherwise.
pub const DEFAULT_RESAMPLES: usize = 1000;

/// The seed of every report's tests (`eval --compare`, `runs table`, the workbench), so
/// that a report comes out the same again.
pub const SEED: u64 = 2018;

/// What the test found.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Significance {
    /// F1 of B minus F1 of A, in points.
    pub delta_f1: f64,
    /// The paired bootstrap's 95% interval of ΔF1 (2.5th and 97.5th percentiles).
    pub interval: [f64; 2],
    /// Approximate randomisation: how often swapping the models' predictions on random
    /// tweets gives a |ΔF1| at least as large, (count + 1) / (rounds + 1).
    pub p_value: f64,
    pub resamples: usize,
    pub seed: u64,
}

/// Each tweet's entity counts (exact matches of boundaries and type) against gold.
pub fn tweet_counts(gold: &[Vec<Span>], predicted: &[Vec<Span>]) -> Vec<Counts> {
    gold.iter()
        .zip(predicted)
        .map(|(gold, predicted)| {
            let tp = predicted.iter().filter(|p| gold.contains(p)).count();
            Counts {
                tp,
                fp: predicted.len() - tp,
                fn_: gold.iter().filter(|g| !predicted.contains(g)).count(),
            }
        })
        .collect()
}

/// Micro F1 (percent) over the tweets `picked` (with repeats).
fn f1(counts: &[Counts], picked: impl Iterator<Item = usize>) -> f64 {
    let mut total = Counts::default();
    for i in picked {
        total.tp += counts[i].tp;
        total.fp += counts[i].fp;
        total.fn_ += counts[i].fn_;
    }
    total.prf().f1
}

/// ΔF1 (B − A) over each resample (a list of tweet indices).
fn bootstrap_deltas(
    a: &[Counts],
    b: &[Counts],
    samples: impl Iterator<Item = Vec<usize>>,
) -> Vec<f64> {
    samples
        .map(|s| f1(b, s.iter().copied()) - f1(a, s.iter().copied()))
        .collect()
}

/// The q-quantile of sorted values, interpolated linearly between ranks (numpy's
/// default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = q * (sorted.len() - 1) as f64;
    let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64)
}

/// The 95% interval of the deltas.
fn interval(mut deltas: Vec<f64>) -> [f64; 2] {
    deltas.sort_by(f64::total_cmp);
    [quantile(&deltas, 0.025), quantile(&deltas, 0.975)]
}

/// |ΔF1| with the tweets where `swapped` is true exchanged between the models.
fn swapped_delta(a: &[Counts], b: &[Counts], swapped: &[bool]) -> f64 {
    let pick = |mine: &[Counts], theirs: &[Counts]| -> Vec<Counts> {
        (0..mine.len())
            .map(|i| if swapped[i] { theirs[i] } else { mine[i] })
            .collect()
    };
    let (a2, b2) = (pick(a, b), pick(b, a));
    (f1(&b2, 0..b2.len()) - f1(&a2, 0..a2.len())).abs()
}

/// How many of the swap patterns give a |ΔF1| at least the observed one.
fn at_least_as_large(
    a: &[Counts],
    b: &[Counts],
    patterns: impl Iterator<Item = Vec<bool>>,
) -> (usize, usize) {
    let observed = (f1(b, 0..b.len()) - f1(a, 0..a.len())).abs();
    let (mut count, mut total) = (0, 0);
    for pattern in patterns {
        total += 1;
        // A hair of slack: the same |Δ| reached by other sums of the same counts.
        if swapped_delta(a, b, &pattern) >= observed - 1e-12 {
            count += 1;
        }
    }
    (count, total)
}

/// The paired tests of B against A over the same tweets (`a[i]`, `b[i]`: tweet i's
/// counts), `resamples` of each, seeded.
pub fn paired_test(a: &[Counts], b: &[Counts], resamples: usize, seed: u64) -> Significance {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let samples: Vec<Vec<usize>> = (0..resamples)
        .map(|_| (0..n).map(|_| rng.random_range(0..n)).collect())
        .collect();
    let deltas = bootstrap_deltas(a, b, samples.into_iter());
    let patterns: Vec<Vec<bool>> = (0..resamples)
        .map(|_| (0..n).map(|_| rng.random::<bool>()).collect())
        .collect();
    let (count, rounds) = at_least_as_large(a, b, patterns.into_iter());
    Significance {
        delta_f1: f1(b, 0..n) - f1(a, 0..n),
        interval: interval(deltas),
        p_value: (count + 1) as f64 / (rounds + 1) as f64,
        resamples,
        seed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(tp: usize, fp: usize, fn_: usize) -> Counts {
        Counts { tp, fp, fn_ }
    }

    #[test]
    fn a_model_against_itself_differs_by_nothing() {
        let a: Vec<Counts> = (0..40).map(|i| counts(i % 3, i % 2, (i + 1) % 2)).collect();
        let s = paired_test(&a, &a, 1000, 7);
        assert_eq!(s.delta_f1, 0.0);
        assert_eq!(s.interval, [0.0, 0.0]);
        assert_eq!(s.p_value, 1.0);
    }

    #[test]
    fn a_model_made_worse_on_purpose_is_told_apart() {
        // B finds every entity of 200 tweets; A misses one in three of them.
        let b: Vec<Counts> = (0..200).map(|_| counts(2, 0, 0)).collect();
        let a: Vec<Counts> = (0..200)
            .map(|i| {
                if i % 3 == 0 {
                    counts(1, 1, 1)
                } else {
                    counts(2, 0, 0)
                }
            })
            .collect();
        let s = paired_test(&a, &b, 1000, 11);
        assert!(s.delta_f1 > 10.0, "{s:?}");
        assert!(
            s.interval[0] > 0.0 && s.interval[0] <= s.delta_f1 && s.delta_f1 <= s.interval[1],
            "{s:?}"
        );
        assert!(s.p_value < 0.01, "{s:?}");
        // Seeded: the same report again.
        assert_eq!(paired_test(&a, &b, 1000, 11), s);
    }

    /// Three tweets, every resample (3³) and every swap pattern (2³) enumerated, the
    /// figures worked out by hand: A finds tweet 0's entity (F1 40), B those of tweets
    /// 1 and 2 (F1 66.67).
    #[test]
    fn every_resample_of_a_small_case_gives_the_hand_computed_figures() {
        let a = [counts(1, 0, 0), counts(0, 1, 1), counts(0, 0, 1)];
        let b = [counts(0, 1, 1), counts(1, 0, 0), counts(1, 0, 0)];
        let all: Vec<Vec<usize>> = (0..27).map(|k| vec![k % 3, k / 3 % 3, k / 9]).collect();
        let mut deltas = bootstrap_deltas(&a, &b, all.into_iter());
        deltas.sort_by(f64::total_cmp);
        // By hand, per multiset of tweets {n0, n1, n2} (F1 = 2tp / (2tp + fp + fn)):
        // A: tp = n0, fp + fn = 2·n1 + n2; B: tp = n1 + n2, fp + fn = 2·n0.
        let by_hand = |n0: f64, n1: f64, n2: f64| {
            let f = |tp: f64, wrong: f64| {
                if tp == 0.0 {
                    0.0
                } else {
                    100.0 * 2.0 * tp / (2.0 * tp + wrong)
                }
            };
            f(n1 + n2, 2.0 * n0) - f(n0, 2.0 * n1 + n2)
        };
        let mut expected: Vec<f64> = (0..27)
            .map(|k| {
                let picks = [k % 3, k / 3 % 3, k / 9];
                let n = |t: usize| picks.iter().filter(|&&p| p == t).count() as f64;
                by_hand(n(0), n(1), n(2))
            })
            .collect();
        expected.sort_by(f64::total_cmp);
        for (got, want) in deltas.iter().zip(&expected) {
            assert!((got - want).abs() < 1e-9, "{deltas:?}\n{expected:?}");
        }
        // Resample {0, 0, 0}: A 100, B 0: ΔF1 −100, the smallest; {1, 1, 1} and the
        // like, B 100 and A 0: +100, the largest (the 2³ = 8 that hold no tweet 0).
        assert_eq!(deltas[0], -100.0);
        assert_eq!(deltas.iter().filter(|&&d| d == 100.0).count(), 8);
        // The 2.5th percentile sits 0.65 of the way from rank 0 to rank 1.
        let [low, high] = interval(deltas.clone());
        assert!((low - (deltas[0] + 0.65 * (deltas[1] - deltas[0]))).abs() < 1e-9);
        assert_eq!(high, 100.0);
        // Every swap pattern: observed |Δ| = 66.67 − 40 = 26.67; swapping tweet 0 or
        // tweets 1 and 2 alone gives 100, tweet 1 or tweets 0 and 2 gives 46.67, and
        // the other four give 26.67 again: all eight reach it, p = 1.
        let patterns: Vec<Vec<bool>> = (0..8)
            .map(|k| (0..3).map(|t| k >> t & 1 == 1).collect())
            .collect();
        assert_eq!(at_least_as_large(&a, &b, patterns.into_iter()), (8, 8));
        assert!((swapped_delta(&a, &b, &[true, false, false]) - 100.0).abs() < 1e-9);
        assert!((swapped_delta(&a, &b, &[false, true, false]) - 140.0 / 3.0).abs() < 1e-9);
    }
}
