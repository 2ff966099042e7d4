//! A CPU trainer for the BERT text encoder: the forward pass of
//! [`crate::model::bert::cpu`] with every activation kept, and its backward pass
//! written out by hand.
//!
//! Fine-tuning the encoder through candle's autograd spends most of a step outside the
//! matrix products: every op allocates its output, every gradient is summed into a
//! fresh zero tensor, and element-wise ops run one at a time. Here a layer is a handful
//! of matrix products (gemm, AVX-512) and fused row kernels over buffers reused from
//! step to step, and the weight gradients land in host buffers, by name, that the
//! optimiser reads in place. It computes the gradients of
//! [`crate::model::bert::BertModel`] (tested against candle's autograd); the rest of the
//! model stays in candle and hands back the gradient of the hidden states.

use std::collections::HashMap;

use candle_core::{CpuStorage, Device, Result, Storage, Tensor, TensorId};
use rayon::prelude::*;

use crate::kernels::{self, DropoutMask, MatRef, matmul, simd};
use crate::model::bert::cpu::{
    ATTENTION_OUT, ATTENTION_PROBS, AttentionShape, EMBEDDING_SITE, EncoderPass, FFN_OUT,
    HostWeights, site, sized, with_host,
};
use crate::model::bert::{
    BertModel, BertParams, BertTensors, LayerParams, LinearParams, NormParams, WordPieces,
};

/// Buffers reused from step to step (fresh large allocations each step would cost page
/// faults: the kernel clears every new page).
#[derive(Default)]
struct Scratch {
    /// Gradient of the current layer's output, and of its input.
    dy: Vec<f32>,
    dx: Vec<f32>,
    /// Gradient of the residual sum after attention.
    dx1: Vec<f32>,
    /// Gradient of a dropped-out branch output.
    d_branch: Vec<f32>,
    d_context: Vec<f32>,
    d_act: Vec<f32>,
    dz: Vec<f32>,
    d_qkv: Vec<f32>,
}

/// The trainer; it reads the encoder's weights from the model's own variables.
pub(crate) struct EncoderTrainer {
    params: BertTensors,
    /// Each variable's position in [`BertParams::leaves`], to find its gradient.
    index: HashMap<TensorId, usize>,
    grads: BertParams<Vec<f32>>,
    /// Rows of the word-embedding gradient written by the last backward pass.
    touched_words: Vec<u32>,
    pass: EncoderPass,
    scratch: Scratch,
}

impl EncoderTrainer {
    /// Whether the trainer can run this encoder here (f32 weights on the CPU, erf GELU).
    pub(crate) fn supports(model: &BertModel, device: &Device) -> bool {
        crate::model::bert::cpu::supports(model, device)
    }

    pub(crate) fn new(model: &BertModel) -> Result<Self> {
        let params = model.tensors()?;
        let index = params
            .leaves()
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id(), i))
            .collect();
        let grads = params.try_map(|t| Ok::<_, candle_core::Error>(vec![0f32; t.elem_count()]))?;
        Ok(Self {
            params,
            index,
            grads,
            touched_words: Vec::new(),
            pass: EncoderPass::new(&model.config, true),
            scratch: Scratch::default(),
        })
    }

    /// The gradient the last backward pass computed for `tensor`, if it is an encoder
    /// weight.
    pub(crate) fn gradient(&self, tensor: &Tensor) -> Option<&[f32]> {
        self.index
            .get(&tensor.id())
            .map(|&i| self.grads.leaves()[i].as_slice())
    }

    /// Hidden states [b, n, d] of a padded batch; with `dropout`, BERT's dropouts drawn
    /// from `seed`. Keeps what [`EncoderTrainer::backward`] needs.
    pub(crate) fn forward(
        &mut self,
        batch: &[&WordPieces],
        seed: u64,
        dropout: bool,
    ) -> Result<Tensor> {
        self.pass
            .forward(&self.params, batch, dropout.then_some(seed))
    }

    /// Weight gradients from the gradient [b, n, d] of the last forward pass's hidden
    /// states; they replace those of the previous backward pass.
    pub(crate) fn backward(&mut self, grad: &Tensor) -> Result<()> {
        let (b, n, d) = (self.pass.batch, self.pass.len, self.pass.config.hidden_size);
        let m = b * n;
        if grad.dims() != [b, n, d] {
            candle_core::bail!(
                "gradient {:?} does not match the forward pass [{b}, {n}, {d}]",
                grad.dims()
            );
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        {
            let (storage, layout) = grad.storage_and_layout();
            let Storage::Cpu(CpuStorage::F32(values)) = &*storage else {
                candle_core::bail!("the encoder trainer needs an f32 gradient on the CPU");
            };
            match layout.contiguous_offsets() {
                Some((start, end)) => {
                    sized(&mut scratch.dy, m * d).copy_from_slice(&values[start..end])
                }
                None => {
                    drop(storage);
                    scratch.dy = grad.flatten_all()?.to_vec1::<f32>()?;
                }
            }
        }
        // Weight matrices' gradients below are written; these are added to.
        let g = &mut self.grads;
        for &row in &self.touched_words {
            let r = row as usize;
            g.word[r * d..(r + 1) * d].fill(0.0);
        }
        for v in [
            &mut g.position,
            &mut g.token_type,
            &mut g.embedding_norm.weight,
            &mut g.embedding_norm.bias,
        ] {
            v.fill(0.0);
        }
        for layer in &mut g.layers {
            for v in layer.vectors_mut() {
                v.fill(0.0);
            }
        }
        let mut grads = std::mem::take(&mut self.grads);
        let params = self.params.clone();
        let result = with_host(&params, |w| {
            for l in (0..w.layers.len()).rev() {
                self.layer_backward(&w.layers[l], &mut grads.layers[l], &mut scratch, l, m, d);
            }
            self.embeddings_backward(w, &mut grads, &mut scratch, m, n, d);
            Ok(())
        });
        self.grads = grads;
        self.scratch = scratch;
        result
    }

    /// From the gradient of the layer's output in `s.dy`, leaves that of its input there.
    fn layer_backward(
        &self,
        w: &LayerParams<&[f32]>,
        g: &mut LayerParams<Vec<f32>>,
        s: &mut Scratch,
        l: usize,
        m: usize,
        d: usize,
    ) {
        let pass = &self.pass;
        let inner = pass.config.intermediate_size;
        let heads = pass.config.num_attention_heads;
        let (hidden_p, attention_p) = pass.dropout_rates();
        let acts = pass.activations(l);
        let x = pass.layer_input(l);
        let dy = &s.dy[..m * d];

        // Output LayerNorm and its residual, the feed-forward branch, then the attention
        // LayerNorm and its residual and the attention output projection.
        let dx1 = sized(&mut s.dx1, m * d);
        let d_act = sized(&mut s.d_act, m * inner);
        let branch = Branch {
            norm: &w.output_norm,
            xhat: &acts.xhat2,
            rstd: &acts.rstd2,
            dropout: pass.mask(site(l, FFN_OUT), hidden_p),
            linear: &w.output,
            input: &acts.act,
        };
        branch.backward(
            &mut g.output_norm,
            &mut g.output,
            dy,
            dx1,
            &mut s.d_branch,
            d_act,
        );
        let dz = sized(&mut s.dz, m * inner);
        kernels::gelu_backward(&acts.z, d_act, dz);
        linear_backward_weights(&mut g.intermediate, dz, &acts.x1, m, inner, d);
        matmul(
            dx1,
            d,
            MatRef::new(dz, m, inner),
            MatRef::new(w.intermediate.weight, inner, d),
            true,
            true,
        );

        let dx = sized(&mut s.dx, m * d);
        let d_context = sized(&mut s.d_context, m * d);
        let branch = Branch {
            norm: &w.attention_norm,
            xhat: &acts.xhat1,
            rstd: &acts.rstd1,
            dropout: pass.mask(site(l, ATTENTION_OUT), hidden_p),
            linear: &w.attention_out,
            input: &acts.context,
        };
        branch.backward(
            &mut g.attention_norm,
            &mut g.attention_out,
            dx1,
            dx,
            &mut s.d_branch,
            d_context,
        );

        let d_qkv = sized(&mut s.d_qkv, m * 3 * d);
        attention_backward(
            &acts.qkv,
            &acts.probs,
            d_context,
            d_qkv,
            AttentionShape {
                n: pass.len,
                d,
                heads,
                causal: false,
            },
            pass.mask(site(l, ATTENTION_PROBS), attention_p),
        );
        let mut bias_sums = vec![0f32; 3 * d];
        kernels::add_column_sums(d_qkv, 3 * d, &mut bias_sums);
        for (weights, grads, off) in [
            (&w.query, &mut g.query, 0),
            (&w.key, &mut g.key, d),
            (&w.value, &mut g.value, 2 * d),
        ] {
            grads.bias.copy_from_slice(&bias_sums[off..off + d]);
            let dq = MatRef::strided(&d_qkv[off..], m, d, 3 * d, 1);
            matmul(
                &mut grads.weight,
                d,
                dq.t(),
                MatRef::new(x, m, d),
                false,
                true,
            );
            matmul(dx, d, dq, MatRef::new(weights.weight, d, d), true, true);
        }
        std::mem::swap(&mut s.dy, &mut s.dx);
    }

    fn embeddings_backward(
        &mut self,
        w: &HostWeights,
        g: &mut BertParams<Vec<f32>>,
        s: &mut Scratch,
        m: usize,
        n: usize,
        d: usize,
    ) {
        let dy = &mut s.dy[..m * d];
        if let Some(mask) = self.pass.mask(EMBEDDING_SITE, self.pass.dropout_rates().0) {
            mask.apply_all(dy);
        }
        let de = sized(&mut s.dx, m * d);
        kernels::layer_norm_backward(
            &self.pass.embedding_xhat,
            &self.pass.embedding_rstd,
            w.embedding_norm.weight,
            dy,
            de,
            false,
            &mut g.embedding_norm.weight,
            &mut g.embedding_norm.bias,
        );
        self.touched_words.clear();
        for (r, row) in de.chunks(d).enumerate() {
            let id = self.pass.ids[r] as usize;
            self.touched_words.push(id as u32);
            let pos = r % n;
            for (dst, v) in g.word[id * d..(id + 1) * d].iter_mut().zip(row) {
                *dst += v;
            }
            for (dst, v) in g.position[pos * d..(pos + 1) * d].iter_mut().zip(row) {
                *dst += v;
            }
            for (dst, v) in g.token_type[..d].iter_mut().zip(row) {
                *dst += v;
            }
        }
        self.touched_words.sort_unstable();
        self.touched_words.dedup();
    }
}

/// The backward pass of `LayerNorm(x + dropout(input·Wᵀ + b))`: a residual sum's norm
/// over a linear branch.
struct Branch<'a> {
    norm: &'a NormParams<&'a [f32]>,
    xhat: &'a [f32],
    rstd: &'a [f32],
    dropout: Option<DropoutMask>,
    linear: &'a LinearParams<&'a [f32]>,
    input: &'a [f32],
}

impl Branch<'_> {
    /// From the gradient `dy` of the norm's output: writes the residual's gradient to
    /// `d_residual` and the branch input's to `d_input`, and the weight gradients to
    /// `g_norm` and `g_linear`.
    fn backward(
        &self,
        g_norm: &mut NormParams<Vec<f32>>,
        g_linear: &mut LinearParams<Vec<f32>>,
        dy: &[f32],
        d_residual: &mut [f32],
        d_branch: &mut Vec<f32>,
        d_input: &mut [f32],
    ) {
        let (m, d) = (self.rstd.len(), d_residual.len() / self.rstd.len().max(1));
        let inp = self.input.len() / m.max(1);
        kernels::layer_norm_backward(
            self.xhat,
            self.rstd,
            self.norm.weight,
            dy,
            d_residual,
            false,
            &mut g_norm.weight,
            &mut g_norm.bias,
        );
        let d_out = sized(d_branch, m * d);
        d_out.copy_from_slice(d_residual);
        if let Some(mask) = &self.dropout {
            mask.apply_all(d_out);
        }
        linear_backward_weights(g_linear, d_out, self.input, m, d, inp);
        matmul(
            d_input,
            inp,
            MatRef::new(d_out, m, d),
            MatRef::new(self.linear.weight, d, inp),
            false,
            true,
        );
    }
}

/// dW = dyᵀ·x (written) and db += Σ rows of dy (biases start each pass at zero) for
/// y = x·Wᵀ + b.
fn linear_backward_weights(
    g: &mut LinearParams<Vec<f32>>,
    dy: &[f32],
    x: &[f32],
    m: usize,
    out: usize,
    inp: usize,
) {
    matmul(
        &mut g.weight,
        inp,
        MatRef::new(dy, m, out).t(),
        MatRef::new(x, m, inp),
        false,
        true,
    );
    kernels::add_column_sums(dy, out, &mut g.bias);
}

/// Gradients of queries, keys and values [m, 3d] from the context gradient [m, d].
fn attention_backward(
    qkv: &[f32],
    probs: &[f32],
    d_context: &[f32],
    d_qkv: &mut [f32],
    s: AttentionShape,
    dropout: Option<DropoutMask>,
) {
    let AttentionShape { n, d, heads, .. } = s;
    let dh = d / heads;
    let scale = 1.0 / (dh as f32).sqrt();
    d_qkv
        .par_chunks_mut(n * 3 * d)
        .enumerate()
        .for_each(|(bi, d_rows)| {
            let rows = &qkv[bi * n * 3 * d..(bi + 1) * n * 3 * d];
            let dc_rows = &d_context[bi * n * d..(bi + 1) * n * d];
            let mut dropped = vec![0f32; n * n];
            let mut d_probs = vec![0f32; n * n];
            let mut d_scores = vec![0f32; n * n];
            for h in 0..heads {
                let at = (bi * heads + h) * n * n;
                let p = &probs[at..at + n * n];
                let q = MatRef::strided(&rows[h * dh..], n, dh, 3 * d, 1);
                let k = MatRef::strided(&rows[d + h * dh..], n, dh, 3 * d, 1);
                let v = MatRef::strided(&rows[2 * d + h * dh..], n, dh, 3 * d, 1);
                let dc = MatRef::strided(&dc_rows[h * dh..], n, dh, d, 1);
                let used: &[f32] = match &dropout {
                    Some(mask) => {
                        dropped.copy_from_slice(p);
                        simd(
                            #[inline(always)]
                            || mask.apply(&mut dropped, at),
                        );
                        &dropped
                    }
                    None => p,
                };
                // dV = P̃ᵀ·dC; dP̃ = dC·Vᵀ, then through dropout and softmax.
                matmul(
                    &mut d_rows[2 * d + h * dh..],
                    3 * d,
                    MatRef::new(used, n, n).t(),
                    dc,
                    false,
                    false,
                );
                matmul(&mut d_probs, n, dc, v.t(), false, false);
                simd(
                    #[inline(always)]
                    || {
                        if let Some(mask) = &dropout {
                            mask.apply(&mut d_probs, at);
                        }
                        for ((ds, pr), dp) in d_scores
                            .chunks_mut(n)
                            .zip(p.chunks(n))
                            .zip(d_probs.chunks(n))
                        {
                            kernels::softmax_row_backward(pr, dp, ds);
                            for x in ds.iter_mut() {
                                *x *= scale;
                            }
                        }
                    },
                );
                let ds = MatRef::new(&d_scores, n, n);
                matmul(&mut d_rows[h * dh..], 3 * d, ds, k, false, false);
                matmul(&mut d_rows[d + h * dh..], 3 * d, ds.t(), q, false, false);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::bert::pad_batch;
    use crate::model::ops::Mode;
    use crate::model::testing::{max_abs_diff, pieces, tiny_bert};

    #[test]
    fn forward_and_gradients_match_candles_autograd_on_a_padded_batch() {
        let (model, varmap) = tiny_bert(0.1);
        let batch = [
            pieces(&[1, 7, 9, 3, 2]),
            pieces(&[1, 4, 2]),
            pieces(&[1, 5, 6, 8, 11, 12, 2]),
        ];
        let refs: Vec<&WordPieces> = batch.iter().collect();
        let mut trainer = EncoderTrainer::new(&model).unwrap();
        let ours = trainer.forward(&refs, 0, false).unwrap();

        let (ids, mask) = pad_batch(&refs, &Device::Cpu).unwrap();
        let reference = model.forward(&ids, &mask, Mode::Grad).unwrap();
        let diff = max_abs_diff(&ours, &reference);
        assert!(diff < 1e-5, "hidden states differ by {diff}");

        // Loss Σ h ⊙ W, with W zero at padding as the model's word gather leaves it.
        let weights = (Tensor::randn(0f32, 1.0, reference.shape(), &Device::Cpu).unwrap()
            * mask
                .unsqueeze(2)
                .unwrap()
                .broadcast_as(reference.shape())
                .unwrap())
        .unwrap();
        let grads = (&reference * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        trainer.backward(&weights).unwrap();
        let named = varmap.data().lock().unwrap();
        assert_eq!(named.len(), trainer.params.leaves().len());
        for (name, var) in named.iter() {
            let theirs = grads.get(var.as_tensor()).unwrap();
            let ours = trainer.gradient(var.as_tensor()).unwrap();
            let ours = Tensor::from_slice(ours, theirs.shape(), &Device::Cpu).unwrap();
            let scale = theirs
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            let diff = max_abs_diff(&ours, theirs);
            assert!(
                diff <= 1e-4 * scale.max(1.0),
                "{name}: gradient differs by {diff} (scale {scale})"
            );
        }
        // A second backward pass replaces the gradients rather than adding to them.
        let first = trainer
            .gradient(named["embeddings.word_embeddings.weight"].as_tensor())
            .unwrap()
            .to_vec();
        trainer.backward(&weights).unwrap();
        let again = trainer
            .gradient(named["embeddings.word_embeddings.weight"].as_tensor())
            .unwrap();
        assert_eq!(first, again);
    }

    #[test]
    fn dropout_is_seeded_and_its_gradient_matches_finite_differences() {
        let (model, varmap) = tiny_bert(0.2);
        let batch = [pieces(&[1, 7, 9, 3, 2]), pieces(&[1, 4, 2])];
        let refs: Vec<&WordPieces> = batch.iter().collect();
        let mut trainer = EncoderTrainer::new(&model).unwrap();
        let a = trainer.forward(&refs, 11, true).unwrap();
        let b = trainer.forward(&refs, 11, true).unwrap();
        let c = trainer.forward(&refs, 12, true).unwrap();
        let plain = trainer.forward(&refs, 11, false).unwrap();
        assert_eq!(max_abs_diff(&a, &b), 0.0);
        assert!(max_abs_diff(&a, &c) > 1e-3);
        assert!(max_abs_diff(&a, &plain) > 1e-3);

        // f(θ) = Σ h(θ) ⊙ W under fixed masks; compare ⟨∇f, v⟩ with a central difference
        // along a random direction v of every weight.
        let weights = Tensor::randn(0f32, 1.0, a.shape(), &Device::Cpu).unwrap();
        let f = |t: &mut EncoderTrainer| {
            let h = t.forward(&refs, 11, true).unwrap();
            (h * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap() as f64
        };
        f(&mut trainer);
        trainer.backward(&weights).unwrap();
        let vars = varmap.all_vars();
        let directions: Vec<Tensor> = vars
            .iter()
            .map(|v| Tensor::randn(0f32, 1.0, v.shape(), &Device::Cpu).unwrap())
            .collect();
        let predicted: f64 = vars
            .iter()
            .zip(&directions)
            .map(|(v, d)| {
                let g = trainer.gradient(v.as_tensor()).unwrap();
                let d = d.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                g.iter().zip(&d).map(|(a, b)| (a * b) as f64).sum::<f64>()
            })
            .sum();
        let originals: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().copy().unwrap()).collect();
        let shifted = |t: &mut EncoderTrainer, eps: f64| {
            for ((v, o), d) in vars.iter().zip(&originals).zip(&directions) {
                v.set(&(o + (d * eps).unwrap()).unwrap()).unwrap();
            }
            f(t)
        };
        let eps = 1e-3;
        let numeric = (shifted(&mut trainer, eps) - shifted(&mut trainer, -eps)) / (2.0 * eps);
        let rel = (numeric - predicted).abs() / predicted.abs().max(1.0);
        assert!(
            rel < 2e-2,
            "directional derivative {predicted} vs finite difference {numeric}"
        );
    }
}
