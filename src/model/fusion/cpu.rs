//! The scoring stage for a batch of tweets on the CPU (the engine's whole-split
//! rescoring after a prompt edit): the clue merge per head, the output projection, the
//! gate, LayerNorm and the span head ([`crate::model::span::cpu`]) over host buffers, matrix products through gemm
//! and the element-wise work fused and parallel. Equal to the candle path
//! ([`crate::model::fusion::Fusion::forward`] and the span head) up to rounding (tested
//! through [`crate::model::PromptMner::score_batch`]).
//!
//! One saving over the plain formula: the gate's input is [h; o], and its h half does
//! not depend on the prompts, so `W_h·h + b` is computed once per tweet with the text
//! stage; after an edit only `W_o·o` remains.

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use crate::kernels::{self, MatRef, matmul, simd};
use crate::model::bert::cpu::{host_slice, linear};
use crate::model::params::{LinearParams, NormParams};
use crate::model::span::ScoredSpan;
use crate::model::span::cpu::{SpanParams, span_probs};

/// What the scoring stage reads of the model, by name (tensors, or host slices).
pub(crate) struct ScoreParams<T> {
    /// The fusion's output projection, its gate and LayerNorm (None: no fusion).
    pub fusion: Option<FusionParams<T>>,
    pub span: SpanParams<T>,
}

pub(crate) struct FusionParams<T> {
    pub out: LinearParams<T>,
    /// The gate [d, 2d] (modality-aware fusion only).
    pub gate: Option<LinearParams<T>>,
    pub norm: NormParams<T>,
    /// Per-head bias on the clue logits [H] (modality-aware fusion only).
    pub clue_bias: Option<T>,
    pub eps: f32,
    pub heads: usize,
}

impl<T> ScoreParams<T> {
    pub(crate) fn try_map<'a, U>(
        &'a self,
        mut f: impl FnMut(&'a T) -> Result<U>,
    ) -> Result<ScoreParams<U>> {
        let fusion = match &self.fusion {
            Some(p) => Some(FusionParams {
                out: p.out.try_map(&mut f)?,
                gate: p.gate.as_ref().map(|g| g.try_map(&mut f)).transpose()?,
                norm: p.norm.try_map(&mut f)?,
                clue_bias: p.clue_bias.as_ref().map(&mut f).transpose()?,
                eps: p.eps,
                heads: p.heads,
            }),
            None => None,
        };
        Ok(ScoreParams {
            fusion,
            span: self.span.try_map(&mut f)?,
        })
    }
}

/// A batch's prompt-independent half on the host, rows r = b·n + i.
pub(crate) struct HostTextBatch {
    pub batch: usize,
    pub len: usize,
    /// Word states [B·n, d].
    pub words: Vec<f32>,
    pub side: Option<HostSide>,
}

/// The text keys' attention statistics per head, and the gate's text half.
pub(crate) struct HostSide {
    /// [H, B·n, dh]
    pub q: Vec<f32>,
    /// [H, B·n]
    pub max: Vec<f32>,
    pub norm: Vec<f32>,
    /// [H, B·n, dh]
    pub acc: Vec<f32>,
    /// W_h·h + b of the gate [B·n, d] (modality-aware fusion only).
    pub gate_text: Option<Vec<f32>>,
}

/// A bank's clue keys and values on the host, and the matching weights.
pub(crate) struct HostClues<'a> {
    /// Prompt-major [K, d]: head h at columns h·dh..(h+1)·dh.
    pub pk: &'a [f32],
    pub pv: &'a [f32],
    /// [d]
    pub bk: &'a [f32],
    pub bv: &'a [f32],
    /// a [B, K]; rows of tweets without an image are ignored.
    pub weights: &'a [f32],
    pub present: &'a [bool],
}

/// What the CPU scoring stage gives for a batch.
pub(crate) struct HostScores {
    /// Per tweet, every span (i, w) inside its encoded words with class probabilities.
    pub spans: Vec<Vec<ScoredSpan>>,
    /// The attention mass on each clue averaged over heads, [B·n, K] (when asked for
    /// and there were clues).
    pub clue_attention: Option<Vec<f32>>,
}

/// Class probabilities of every span (i, w) inside each tweet's encoded words, per
/// tweet: the fused words through the span head.
pub(crate) fn score(
    params: &ScoreParams<Tensor>,
    text: &HostTextBatch,
    clues: Option<HostClues>,
    encoded: &[Vec<bool>],
    want_attention: bool,
) -> Result<HostScores> {
    let guards = params.try_map(|t| Ok(t.storage_and_layout()))?;
    let w = guards.try_map(|(storage, layout)| host_slice(storage, layout))?;
    let rows = text.batch * text.len;
    let d = text.words.len() / rows.max(1);
    let (fused, clue_attention) = match (&w.fusion, &text.side) {
        (Some(fusion), Some(side)) => {
            let shape = AttentionShape {
                rows,
                d,
                heads: fusion.heads,
                n: text.len,
            };
            let attended = attend(side, clues, fusion.clue_bias, shape, want_attention);
            let fused = finish(fusion, text, side, &attended.values, rows, d);
            (fused, attended.clue_attention)
        }
        _ => (text.words.clone(), None),
    };
    Ok(HostScores {
        spans: span_probs(&w.span, &fused, text.len, encoded, d),
        clue_attention,
    })
}

/// Rows (B·n), width, heads and words per tweet of a batch's attention.
#[derive(Clone, Copy)]
struct AttentionShape {
    rows: usize,
    d: usize,
    heads: usize,
    n: usize,
}

/// The attended values and, when asked for, the clue attention averaged over heads.
struct Attended {
    /// [B·n, d]
    values: Vec<f32>,
    /// [B·n, K]
    clue_attention: Option<Vec<f32>>,
}

/// The attended values [B·n, d]: text part merged with the clues (flash-attention's
/// merge), per head in parallel.
fn attend(
    side: &HostSide,
    clues: Option<HostClues>,
    clue_bias: Option<&[f32]>,
    AttentionShape { rows, d, heads, n }: AttentionShape,
    want_attention: bool,
) -> Attended {
    let dh = d / heads;
    let scale = 1.0 / (dh as f32).sqrt();
    let per_head: Vec<(Vec<f32>, Option<Vec<f32>>)> = (0..heads)
        .into_par_iter()
        .map(|h| {
            let q = &side.q[h * rows * dh..(h + 1) * rows * dh];
            let acc = &side.acc[h * rows * dh..(h + 1) * rows * dh];
            let (tmax, tnorm) = (
                &side.max[h * rows..(h + 1) * rows],
                &side.norm[h * rows..(h + 1) * rows],
            );
            let mut out = vec![0f32; rows * dh];
            let Some(c) = &clues else {
                for r in 0..rows {
                    for t in 0..dh {
                        out[r * dh + t] = acc[r * dh + t] / tnorm[r];
                    }
                }
                return (out, None);
            };
            let k = c.weights.len() / c.present.len().max(1);
            // Head h's columns of the prompt-major rows.
            let (pk, pv) = (
                MatRef::strided(&c.pk[h * dh..], k, dh, d, 1),
                MatRef::strided(&c.pv[h * dh..], k, dh, d, 1),
            );
            let (bk, bv) = (&c.bk[h * dh..(h + 1) * dh], &c.bv[h * dh..(h + 1) * dh]);
            let bias = clue_bias.map_or(0.0, |b| b[h]);
            // Clue logits, then (in place) the clue weights times a.
            let mut logits = vec![0f32; rows * k];
            matmul(
                &mut logits,
                k,
                MatRef::new(q, rows, dh),
                pk.t(),
                false,
                false,
            );
            let mut text_scale = vec![0f32; rows];
            let mut mass = vec![0f32; rows];
            let mut norm = vec![0f32; rows];
            let mut attention = want_attention.then(|| vec![0f32; rows * k]);
            simd(
                #[inline(always)]
                || {
                    for r in 0..rows {
                        let b = r / n;
                        let row = &mut logits[r * k..(r + 1) * k];
                        if !c.present[b] {
                            row.fill(0.0);
                            (text_scale[r], mass[r], norm[r]) = (1.0, 0.0, tnorm[r]);
                            continue;
                        }
                        let a = &c.weights[b * k..(b + 1) * k];
                        let base = kernels::dot(&q[r * dh..(r + 1) * dh], bk);
                        // Separate passes, each a loop the compiler vectorises (a running
                        // maximum or sum in one loop would not be).
                        for (x, &ai) in row.iter_mut().zip(a) {
                            *x = scale * (*x * ai + base) + bias;
                        }
                        let mx = kernels::max(row).max(tmax[r]);
                        for x in row.iter_mut() {
                            *x = kernels::exp(*x - mx);
                        }
                        let total = kernels::sum(row);
                        let ts = kernels::exp(tmax[r] - mx);
                        (text_scale[r], mass[r], norm[r]) = (ts, total, tnorm[r] * ts + total);
                        if let Some(attention) = attention.as_mut() {
                            // Each clue's share of the softmax, before a_i weighs its value.
                            let inv = 1.0 / norm[r];
                            for (out, &x) in attention[r * k..(r + 1) * k].iter_mut().zip(&*row) {
                                *out = x * inv;
                            }
                        }
                        for (x, &ai) in row.iter_mut().zip(a) {
                            *x *= ai;
                        }
                    }
                },
            );
            matmul(
                &mut out,
                dh,
                MatRef::new(&logits, rows, k),
                pv,
                false,
                false,
            );
            for r in 0..rows {
                let inv = 1.0 / norm[r];
                for t in 0..dh {
                    let v = acc[r * dh + t] * text_scale[r] + out[r * dh + t] + mass[r] * bv[t];
                    out[r * dh + t] = v * inv;
                }
            }
            (out, attention)
        })
        .collect();
    let mut values = vec![0f32; rows * d];
    for (h, (head, _)) in per_head.iter().enumerate() {
        for r in 0..rows {
            values[r * d + h * dh..r * d + (h + 1) * dh]
                .copy_from_slice(&head[r * dh..(r + 1) * dh]);
        }
    }
    let clue_attention = per_head
        .iter()
        .map(|(_, attention)| attention.as_deref())
        .collect::<Option<Vec<&[f32]>>>()
        .map(|heads_attention| {
            let mut mean = vec![0f32; heads_attention[0].len()];
            for head in &heads_attention {
                for (m, &x) in mean.iter_mut().zip(*head) {
                    *m += x / heads as f32;
                }
            }
            mean
        });
    Attended {
        values,
        clue_attention,
    }
}

/// words + gate ⊙ (W_o·attended + b_o), then LayerNorm: [B·n, d]. The gated sum and
/// the LayerNorm run in one pass per tile of rows (the tile's sum is normalised while
/// it is in cache).
fn finish(
    w: &FusionParams<&[f32]>,
    text: &HostTextBatch,
    side: &HostSide,
    attended: &[f32],
    rows: usize,
    d: usize,
) -> Vec<f32> {
    let mut o = vec![0f32; rows * d];
    linear(&mut o, d, attended, rows, &w.out, None);
    let tile = d * kernels::ROW_CHUNK;
    let mut out = vec![0f32; rows * d];
    let norm = |sum: &[f32], out: &mut [f32]| {
        kernels::layer_norm_forward(sum, w.norm.weight, w.norm.bias, w.eps, out, None)
    };
    match (&w.gate, &side.gate_text) {
        (Some(gate), Some(gate_text)) => {
            // The gate's o half: columns d..2d of W_g [d, 2d], added to its text half.
            let mut g = gate_text.clone();
            matmul(
                &mut g,
                d,
                MatRef::new(&o, rows, d),
                MatRef::strided(&gate.weight[d..], d, d, 2 * d, 1).t(),
                true,
                true,
            );
            // The gate's buffer becomes the tile's sum.
            out.par_chunks_mut(tile)
                .zip(g.par_chunks_mut(tile))
                .zip(o.par_chunks(tile).zip(text.words.par_chunks(tile)))
                .for_each(|((out, g), (o, h))| {
                    simd(
                        #[inline(always)]
                        || {
                            for ((g, &o), &h) in g.iter_mut().zip(o).zip(h) {
                                *g = h + o / (1.0 + kernels::exp(-*g));
                            }
                        },
                    );
                    norm(g, out);
                });
        }
        _ => {
            out.par_chunks_mut(tile)
                .zip(o.par_chunks_mut(tile).zip(text.words.par_chunks(tile)))
                .for_each(|(out, (o, h))| {
                    simd(
                        #[inline(always)]
                        || {
                            for (o, &h) in o.iter_mut().zip(h) {
                                *o += h;
                            }
                        },
                    );
                    norm(o, out);
                });
        }
    }
    out
}
