//! The span classifier (DESIGN §4 item 6): every word span up to W words is scored from
//! A·h_i + B·h_j + E[j − i] by a two-layer MLP into PER, LOC, ORG, OTHER or NONE.

use candle_core::{D, Device, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};
use serde::Serialize;

pub(crate) mod cpu;

use crate::data::spans::Span;
use crate::data::tags::EntityType;
use crate::model::ops::{Activation, Mode, dropout};
use crate::model::params::LinearParams;

/// Index of the NONE class (after the four entity types).
pub const NONE_CLASS: usize = 4;
pub const CLASSES: usize = 5;

/// A class index's name (the four entity types, then NONE).
pub fn class_name(class: usize) -> &'static str {
    EntityType::ALL
        .get(class)
        .map_or("NONE", |kind| kind.as_str())
}

/// The class of a span classifier output index.
pub fn class_type(class: usize) -> Option<EntityType> {
    EntityType::ALL.get(class).copied()
}

pub struct SpanHead {
    start: Linear,
    end: Linear,
    width: Embedding,
    out: Linear,
    pub max_width: usize,
    dropout: f32,
}

impl SpanHead {
    pub fn load(
        vb: VarBuilder,
        hidden: usize,
        inner: usize,
        max_width: usize,
        dropout: f32,
    ) -> Result<Self> {
        Ok(Self {
            start: candle_nn::linear(hidden, inner, vb.pp("start"))?,
            end: candle_nn::linear_no_bias(hidden, inner, vb.pp("end"))?,
            width: candle_nn::embedding(max_width, inner, vb.pp("width"))?,
            out: candle_nn::linear(inner, CLASSES, vb.pp("out"))?,
            max_width,
            dropout,
        })
    }

    /// Logits [b, n, W, 5] of the span starting at word i with width w + 1, from word
    /// states [b, n, d]. Spans running past the tweet read a clamped end word; callers
    /// mask them with [`span_mask`].
    pub fn forward(&self, words: &Tensor, mode: Mode) -> Result<Tensor> {
        let (b, n, _) = words.dims3()?;
        let w = self.max_width;
        let start = self.start.forward(words)?; // [b, n, m]
        let end = self.end.forward(words)?;
        let m = start.dim(2)?;
        let index: Vec<u32> = (0..n)
            .flat_map(|i| (0..w).map(move |k| (i + k).min(n - 1) as u32))
            .collect();
        let index = Tensor::from_vec(index, n * w, words.device())?;
        let end = end.index_select(&index, 1)?.reshape((b, n, w, m))?;
        let widths = self.width.embeddings().reshape((1, 1, w, m))?;
        let hidden = end
            .broadcast_add(&start.unsqueeze(2)?)?
            .broadcast_add(&widths)?;
        let hidden = dropout(&Activation::Gelu.forward(&hidden)?, self.dropout, mode)?;
        self.out.forward(&hidden)
    }
}

impl SpanHead {
    /// What the CPU span head reads of this head.
    pub(crate) fn host_params(&self) -> Result<cpu::SpanParams<Tensor>> {
        Ok(cpu::SpanParams {
            start: LinearParams::of(&self.start)?,
            end: self.end.weight().clone(),
            width: self.width.embeddings().clone(),
            out: LinearParams::of(&self.out)?,
        })
    }
}

/// 1 where span (i, w) lies inside the tweet and covers only encoded words: [b, n, W].
pub fn span_mask(
    word_mask: &[Vec<bool>],
    n: usize,
    max_width: usize,
    device: &Device,
) -> Result<Tensor> {
    let mut values = Vec::with_capacity(word_mask.len() * n * max_width);
    for words in word_mask {
        for i in 0..n {
            for k in 0..max_width {
                let ok = i + k < words.len() && words[i..=i + k].iter().all(|w| *w);
                values.push(u8::from(ok));
            }
        }
    }
    Tensor::from_vec(values, (word_mask.len(), n, max_width), device)
}

/// A candidate span with its class probabilities (PER, LOC, ORG, OTHER, NONE).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoredSpan {
    pub start: usize,
    pub end: usize,
    pub probs: [f32; CLASSES],
}

impl ScoredSpan {
    /// The most probable class and its probability.
    pub fn best(&self) -> (usize, f32) {
        self.probs.iter().enumerate().fold(
            (0, f32::MIN),
            |acc, (c, &p)| if p > acc.1 { (c, p) } else { acc },
        )
    }
}

/// A decoded entity and the probability of its type.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PredictedSpan {
    pub span: Span,
    pub prob: f32,
}

/// Class probabilities [n, W, 5] of one tweet's valid spans, as a list.
pub fn scored_spans(probs: &Tensor, words: usize, valid: &[bool]) -> Result<Vec<ScoredSpan>> {
    let (n, w, _) = probs.dims3()?;
    let values = probs.flatten_all()?.to_vec1::<f32>()?;
    let mut spans = Vec::new();
    for i in 0..n.min(words) {
        for k in 0..w {
            if i + k >= words || !valid[i..=i + k].iter().all(|v| *v) {
                continue;
            }
            let at = (i * w + k) * CLASSES;
            let mut p = [0f32; CLASSES];
            p.copy_from_slice(&values[at..at + CLASSES]);
            spans.push(ScoredSpan {
                start: i,
                end: i + k + 1,
                probs: p,
            });
        }
    }
    Ok(spans)
}

/// Keeps spans whose best class is an entity, most probable first, skipping any that
/// overlaps one already kept; the result is ordered by position.
pub fn decode(candidates: &[ScoredSpan]) -> Vec<PredictedSpan> {
    let mut entities: Vec<PredictedSpan> = candidates
        .iter()
        .filter_map(|s| {
            let (class, prob) = s.best();
            class_type(class).map(|kind| PredictedSpan {
                span: Span {
                    start: s.start,
                    end: s.end,
                    kind,
                },
                prob,
            })
        })
        .collect();
    entities.sort_by(|a, b| {
        b.prob
            .total_cmp(&a.prob)
            .then(a.span.start.cmp(&b.span.start))
            .then(a.span.end.cmp(&b.span.end))
    });
    let mut kept: Vec<PredictedSpan> = Vec::new();
    for e in entities {
        if !kept.iter().any(|k| k.span.overlaps(&e.span)) {
            kept.push(e);
        }
    }
    kept.sort_by_key(|e| e.span.start);
    kept
}

/// Softmax over the class dimension.
pub fn class_probs(logits: &Tensor) -> Result<Tensor> {
    candle_nn::ops::softmax(logits, D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(start: usize, end: usize, class: usize, p: f32) -> ScoredSpan {
        let mut probs = [(1.0 - p) / 4.0; CLASSES];
        probs[class] = p;
        ScoredSpan { start, end, probs }
    }

    #[test]
    fn decoding_keeps_the_most_probable_non_overlapping_entities() {
        let spans = decode(&[
            scored(0, 2, 0, 0.6),
            scored(1, 3, 1, 0.9),
            scored(3, 4, NONE_CLASS, 0.99),
            scored(4, 5, 2, 0.5),
            scored(0, 1, 3, 0.55),
        ]);
        let got: Vec<(usize, usize, EntityType)> = spans
            .iter()
            .map(|p| (p.span.start, p.span.end, p.span.kind))
            .collect();
        assert_eq!(
            got,
            [
                (0, 1, EntityType::Other),
                (1, 3, EntityType::Loc),
                (4, 5, EntityType::Org)
            ]
        );
    }

    #[test]
    fn span_mask_bounds_width_and_skips_unencoded_words() {
        let mask = span_mask(&[vec![true, true, false], vec![true]], 3, 2, &Device::Cpu).unwrap();
        let m = mask.to_vec3::<u8>().unwrap();
        assert_eq!(m[0], [[1, 1], [1, 0], [0, 0]]);
        assert_eq!(m[1], [[1, 0], [0, 0], [0, 0]]);
    }

    #[test]
    fn span_logits_split_over_the_concatenation() {
        // The head's first layer on [h_i; h_j; E] equals A·h_i + B·h_j + E[w].
        let dev = Device::Cpu;
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &dev);
        let head = SpanHead::load(vb, 6, 5, 3, 0.0).unwrap();
        let words = Tensor::randn(0f32, 1., (1, 4, 6), &dev).unwrap();
        let logits = head.forward(&words, Mode::Eval).unwrap();
        assert_eq!(logits.dims(), [1, 4, 3, CLASSES]);
        let (i, k) = (1, 2);
        let hi = words.narrow(1, i, 1).unwrap();
        let hj = words.narrow(1, i + k, 1).unwrap();
        let pre = (head.start.forward(&hi).unwrap() + head.end.forward(&hj).unwrap()).unwrap();
        let pre = pre
            .broadcast_add(&head.width.embeddings().narrow(0, k, 1).unwrap())
            .unwrap();
        let direct = head
            .out
            .forward(&Activation::Gelu.forward(&pre).unwrap())
            .unwrap();
        let staged = logits
            .narrow(1, i, 1)
            .unwrap()
            .narrow(2, k, 1)
            .unwrap()
            .reshape((1, 1, CLASSES))
            .unwrap();
        let diff = crate::model::testing::max_abs_diff(&direct, &staged);
        assert!(diff < 1e-5);
    }
}
