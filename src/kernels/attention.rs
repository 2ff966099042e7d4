//! Scaled dot-product attention for inference, fused per (sequence, head): a head's
//! keys are transposed once into a small tile, each query's scores stay in a buffer of
//! one row, and the softmax and the weighted sum of values follow without a probability
//! matrix ever being written. Sequences are packed (no padded rows), and the queries of
//! a sequence may be a subset of its rows (the last layer reads only the rows the model
//! uses: first word pieces, CLIP's end-of-text or class token).

use rayon::prelude::*;

use super::simd;

/// One sequence of a packed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Its first row among the keys and values.
    pub key_start: usize,
    /// Its length (every row is a key).
    pub keys: usize,
    /// Its first row among the queries (and the context rows written).
    pub query_start: usize,
    /// How many of its rows are queries.
    pub queries: usize,
}

/// The operands: queries [mq, d] (row stride `q_ld`), keys and values side by side in
/// `kv` (row stride `kv_ld`, keys at column `k_col`, values at `v_col`), and each
/// query's position in its sequence (read only when `causal`: a causal query attends to
/// positions up to its own).
#[derive(Clone, Copy)]
pub(crate) struct AttentionInput<'a> {
    pub q: &'a [f32],
    pub q_ld: usize,
    pub kv: &'a [f32],
    pub kv_ld: usize,
    pub k_col: usize,
    pub v_col: usize,
    pub positions: &'a [usize],
    pub heads: usize,
    pub head_dim: usize,
    pub causal: bool,
}

impl<'a> AttentionInput<'a> {
    /// Keys and values from `qkv` [m, 3d] (queries, keys and values side by side, as the
    /// layers' three projections write them), queries from `q` (row stride `q_ld`).
    pub(crate) fn with_qkv(
        q: &'a [f32],
        q_ld: usize,
        qkv: &'a [f32],
        heads: usize,
        head_dim: usize,
        positions: &'a [usize],
        causal: bool,
    ) -> Self {
        let d = heads * head_dim;
        Self {
            q,
            q_ld,
            kv: qkv,
            kv_ld: 3 * d,
            k_col: d,
            v_col: 2 * d,
            positions,
            heads,
            head_dim,
            causal,
        }
    }
}

/// Context rows [mq, heads·head_dim] of every segment's queries, in parallel over
/// segments.
pub(crate) fn attend(input: &AttentionInput, segments: &[Segment], context: &mut [f32]) {
    let d = input.heads * input.head_dim;
    let mut parts = Vec::with_capacity(segments.len());
    let mut rest = context;
    for s in segments {
        let (part, tail) = rest.split_at_mut(s.queries * d);
        parts.push(part);
        rest = tail;
    }
    segments
        .par_iter()
        .zip(parts)
        .with_max_len(1)
        .for_each(|(segment, out)| {
            simd(
                #[inline(always)]
                || attend_segment(input, segment, out),
            )
        });
}

/// Queries computed together: their scores and context sums share each key and value
/// load, and give the FMA units independent chains.
const QUERY_BLOCK: usize = 4;
/// Lanes of one register-sized block of scores or context.
const LANES: usize = 16;

/// Every head of one segment, QUERY_BLOCK queries at a time. Each score and context
/// element is summed in the same order as one query at a time would (over the head's
/// columns, then over the keys), so blocking changes no result.
#[inline(always)]
fn attend_segment(input: &AttentionInput, s: &Segment, out: &mut [f32]) {
    let (dh, d) = (input.head_dim, input.heads * input.head_dim);
    if s.queries == 0 || s.keys == 0 {
        out.fill(0.0);
        return;
    }
    let scale = 1.0 / (dh as f32).sqrt();
    let stride = s.keys.next_multiple_of(LANES);
    let mut keys_t = vec![0f32; dh * stride];
    let mut scores = vec![0f32; QUERY_BLOCK * stride];
    let mut q_block = vec![0f32; QUERY_BLOCK * dh];
    for h in 0..input.heads {
        for j in 0..s.keys {
            let at = (s.key_start + j) * input.kv_ld + input.k_col + h * dh;
            for (c, &k) in input.kv[at..at + dh].iter().enumerate() {
                keys_t[c * stride + j] = k;
            }
        }
        for first in (0..s.queries).step_by(QUERY_BLOCK) {
            let count = (s.queries - first).min(QUERY_BLOCK);
            q_block.fill(0.0);
            for (qi, q) in q_block.chunks_exact_mut(dh).take(count).enumerate() {
                let row = s.query_start + first + qi;
                q.copy_from_slice(&input.q[row * input.q_ld + h * dh..][..dh]);
            }
            block_scores(&q_block, &keys_t, stride, &mut scores);
            let mut longest = 0;
            for (qi, row_scores) in scores.chunks_exact_mut(stride).take(count).enumerate() {
                let row = s.query_start + first + qi;
                let valid = if input.causal {
                    (input.positions[row] + 1).min(s.keys)
                } else {
                    s.keys
                };
                longest = longest.max(valid);
                let live = &mut row_scores[..s.keys];
                for v in live.iter_mut() {
                    *v *= scale;
                }
                // Zero past `valid`, so the block's longer sums add nothing for it.
                super::softmax_row(live, valid);
            }
            let values = Values {
                kv: input.kv,
                ld: input.kv_ld,
                first: s.key_start * input.kv_ld + input.v_col + h * dh,
            };
            let out = &mut out[first * d..];
            block_context(
                &scores,
                stride,
                (longest, count),
                values,
                (out, d, h * dh),
                dh,
            );
        }
    }
}

/// Scores [QUERY_BLOCK, stride] of the block's queries (rows of `q`, dh wide) against
/// the transposed keys [dh, stride]: 16 keys at a time, each query's 16 sums in a
/// register, over the columns in order.
#[inline(always)]
fn block_scores(q: &[f32], keys_t: &[f32], stride: usize, scores: &mut [f32]) {
    let dh = q.len() / QUERY_BLOCK;
    for chunk in (0..stride).step_by(LANES) {
        let mut acc = [[0f32; LANES]; QUERY_BLOCK];
        for c in 0..dh {
            let k = &keys_t[c * stride + chunk..][..LANES];
            for (qi, a) in acc.iter_mut().enumerate() {
                let qc = q[qi * dh + c];
                for (a, &kl) in a.iter_mut().zip(k) {
                    *a += qc * kl;
                }
            }
        }
        for (qi, a) in acc.iter().enumerate() {
            scores[qi * stride + chunk..][..LANES].copy_from_slice(a);
        }
    }
}

/// Where a head's values lie: row j of the segment at `kv[first + j·ld ..]`.
#[derive(Clone, Copy)]
struct Values<'a> {
    kv: &'a [f32],
    ld: usize,
    first: usize,
}

/// Context of the block's first `count` queries into `out` (row stride `d`, head
/// columns from `col`): Σ_j p_j·v_j over the first `keys` keys (probabilities past a
/// query's own valid keys are zero), 16 columns at a time, in key order.
#[inline(always)]
fn block_context(
    probs: &[f32],
    stride: usize,
    (keys, count): (usize, usize),
    v: Values,
    (out, d, col): (&mut [f32], usize, usize),
    dh: usize,
) {
    for chunk in (0..dh).step_by(LANES) {
        let width = (dh - chunk).min(LANES);
        let mut acc = [[0f32; LANES]; QUERY_BLOCK];
        let mut row = [0f32; LANES];
        for j in 0..keys {
            row[..width].copy_from_slice(&v.kv[v.first + j * v.ld + chunk..][..width]);
            for (qi, a) in acc.iter_mut().enumerate() {
                let p = probs[qi * stride + j];
                for (a, &vl) in a.iter_mut().zip(&row) {
                    *a += p * vl;
                }
            }
        }
        for (qi, a) in acc.iter().enumerate().take(count) {
            out[qi * d + col + chunk..][..width].copy_from_slice(&a[..width]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention written out plainly, one query at a time.
    fn reference(input: &AttentionInput, segments: &[Segment]) -> Vec<f32> {
        let dh = input.head_dim;
        let mut out = Vec::new();
        for s in segments {
            for qi in 0..s.queries {
                let row = s.query_start + qi;
                for h in 0..input.heads {
                    let valid = if input.causal {
                        (input.positions[row] + 1).min(s.keys)
                    } else {
                        s.keys
                    };
                    let q = &input.q[row * input.q_ld + h * dh..][..dh];
                    let scores: Vec<f64> = (0..valid)
                        .map(|j| {
                            let k =
                                &input.kv[(s.key_start + j) * input.kv_ld + input.k_col + h * dh..];
                            q.iter().zip(k).map(|(a, b)| (a * b) as f64).sum::<f64>()
                                / (dh as f64).sqrt()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                    let total: f64 = scores.iter().map(|v| (v - max).exp()).sum();
                    for c in 0..dh {
                        out.push(
                            (0..valid)
                                .map(|j| {
                                    let v = input.kv[(s.key_start + j) * input.kv_ld
                                        + input.v_col
                                        + h * dh
                                        + c];
                                    (scores[j] - max).exp() / total * v as f64
                                })
                                .sum::<f64>() as f32,
                        );
                    }
                }
            }
        }
        out
    }

    #[test]
    fn fused_attention_equals_the_plain_formula_on_packed_segments_and_query_subsets() {
        let value = |i: usize| ((i * 7919 % 211) as f32 - 105.0) / 60.0;
        let (heads, dh) = (3, 5);
        let d = heads * dh;
        // Two sequences of 4 and 19 rows, keys and values at columns d and 2d of a [m, 3d].
        let m = 23;
        let kv: Vec<f32> = (0..m * 3 * d).map(value).collect();
        for causal in [false, true] {
            // All rows as queries (the queries read from the same buffer's first d columns).
            let positions: Vec<usize> = (0..4).chain(0..19).collect();
            let segments = [
                Segment {
                    key_start: 0,
                    keys: 4,
                    query_start: 0,
                    queries: 4,
                },
                Segment {
                    key_start: 4,
                    keys: 19,
                    query_start: 4,
                    queries: 19,
                },
            ];
            let input = AttentionInput::with_qkv(&kv, 3 * d, &kv, heads, dh, &positions, causal);
            let mut fused = vec![f32::NAN; m * d];
            attend(&input, &segments, &mut fused);
            let plain = reference(&input, &segments);
            for (i, (a, b)) in fused.iter().zip(&plain).enumerate() {
                assert!(
                    (a - b).abs() < 1e-5,
                    "causal {causal}, element {i}: {a} vs {b}"
                );
            }
        }
        // A subset of queries kept compactly: rows 1 and 3 of the first sequence and row
        // 2 of the second, as the last layer asks for them.
        let q: Vec<f32> = (0..3 * d).map(|i| value(i + 5)).collect();
        let positions = [1, 3, 2];
        let segments = [
            Segment {
                key_start: 0,
                keys: 4,
                query_start: 0,
                queries: 2,
            },
            Segment {
                key_start: 4,
                keys: 19,
                query_start: 2,
                queries: 1,
            },
        ];
        let input = AttentionInput::with_qkv(&q, d, &kv, heads, dh, &positions, true);
        let mut fused = vec![f32::NAN; 3 * d];
        attend(&input, &segments, &mut fused);
        let plain = reference(&input, &segments);
        for (a, b) in fused.iter().zip(&plain) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}
