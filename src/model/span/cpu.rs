//! The span head on the CPU over host buffers (the scoring stage's last half): the
//! start and end projections as matrix products, then per span the width embedding,
//! GELU and the class layer in registers. Equal to [`super::SpanHead::forward`] up to
//! rounding (tested through `PromptMner::score_batch`).

use candle_core::Result;
use rayon::prelude::*;

use crate::kernels::{self, MatRef, matmul, simd};
use crate::model::bert::cpu::linear;
use crate::model::params::LinearParams;
use crate::model::span::{CLASSES, ScoredSpan};

/// What the CPU span head reads of [`super::SpanHead`], by name.
pub(crate) struct SpanParams<T> {
    pub start: LinearParams<T>,
    /// The end projection (no bias) [m, d] and width embeddings [W, m].
    pub end: T,
    pub width: T,
    pub out: LinearParams<T>,
}

impl<T> SpanParams<T> {
    pub(crate) fn try_map<'a, U>(
        &'a self,
        f: &mut impl FnMut(&'a T) -> Result<U>,
    ) -> Result<SpanParams<U>> {
        Ok(SpanParams {
            start: self.start.try_map(f)?,
            end: f(&self.end)?,
            width: f(&self.width)?,
            out: self.out.try_map(f)?,
        })
    }
}

/// The span head on fused words: per tweet, the class probabilities of its spans.
pub(crate) fn span_probs(
    w: &SpanParams<&[f32]>,
    fused: &[f32],
    n: usize,
    encoded: &[Vec<bool>],
    d: usize,
) -> Vec<Vec<ScoredSpan>> {
    let rows = encoded.len() * n;
    let m = w.start.bias.len();
    let width = w.width.len() / m.max(1);
    let mut start = vec![0f32; rows * m];
    linear(&mut start, m, fused, rows, &w.start, None);
    let mut end = vec![0f32; rows * m];
    matmul(
        &mut end,
        m,
        MatRef::new(fused, rows, d),
        MatRef::new(w.end, m, d).t(),
        false,
        true,
    );
    encoded
        .par_iter()
        .enumerate()
        .map(|(b, valid)| {
            let mut spans = Vec::new();
            let mut hidden = vec![0f32; m];
            for i in 0..valid.len() {
                for k in 0..width {
                    if i + k >= valid.len() || !valid[i..=i + k].iter().all(|v| *v) {
                        continue;
                    }
                    let (s, e) = (
                        &start[(b * n + i) * m..][..m],
                        &end[(b * n + i + k) * m..][..m],
                    );
                    let emb = &w.width[k * m..(k + 1) * m];
                    let mut logits = [0f32; CLASSES];
                    simd(
                        #[inline(always)]
                        || {
                            for (((h, &s), &e), &x) in hidden.iter_mut().zip(s).zip(e).zip(emb) {
                                *h = kernels::gelu(s + e + x);
                            }
                            class_logits(&hidden, w.out.weight, w.out.bias, &mut logits);
                        },
                    );
                    kernels::softmax_row(&mut logits, CLASSES);
                    spans.push(ScoredSpan {
                        start: i,
                        end: i + k + 1,
                        probs: logits,
                    });
                }
            }
            spans
        })
        .collect()
}

/// logits[c] = ⟨hidden, W[c]⟩ + b[c] for the classes, 16 lanes per class accumulated side
/// by side (five independent chains instead of five dependent dot products).
#[inline(always)]
fn class_logits(hidden: &[f32], weight: &[f32], bias: &[f32], logits: &mut [f32; CLASSES]) {
    let m = hidden.len();
    let whole = m / 16 * 16;
    let mut acc = [[0f32; 16]; CLASSES];
    for k in (0..whole).step_by(16) {
        let h = &hidden[k..k + 16];
        for (c, lanes) in acc.iter_mut().enumerate() {
            let o = &weight[c * m + k..c * m + k + 16];
            for i in 0..16 {
                lanes[i] += h[i] * o[i];
            }
        }
    }
    for (c, l) in logits.iter_mut().enumerate() {
        let row = &weight[c * m..(c + 1) * m];
        *l = kernels::sum(&acc[c]) + kernels::dot(&hidden[whole..], &row[whole..]) + bias[c];
    }
}
