//! Host-memory f32 primitives for the CPU path: matrix products through `gemm`, and row
//! kernels (LayerNorm, softmax, GELU, dropout masks, AdamW) whose loops are compiled for
//! the widest SIMD the machine has (AVX-512 or AVX2 on x86-64, NEON on aarch64, chosen
//! at run time through `pulp`). The crate is built for the baseline target, so without
//! that dispatch these loops would run on SSE2 only.
//!
//! The one x86-only kernel (the AVX-512 dot products of [`linear_few_rows`]) sits
//! behind `cfg(target_arch = "x86_64")`; every other target takes the portable loop.
//! The `portable` feature forces the portable code on x86-64 too (no dispatch, no
//! AVX-512 kernel), so that its results are tested here.

pub(crate) mod attention;
pub(crate) mod candle_ops;
pub(crate) mod packed;

use rayon::prelude::*;

/// Runs `f` with the widest SIMD instruction set of this CPU enabled, so that the
/// `#[inline(always)]` loops inlined into it vectorise.
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(not(feature = "portable"))]
    return pulp::Arch::new().dispatch(f);
    #[cfg(feature = "portable")]
    f()
}

/// Rows per parallel task of the row kernels.
pub(crate) const ROW_CHUNK: usize = 32;
/// Elements per parallel task of the element-wise kernels.
pub(crate) const CHUNK: usize = 1 << 14;

/// Sum of a slice with 16 independent accumulators (a plain fold would not vectorise:
/// float addition is not reassociated).
#[inline(always)]
pub(crate) fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = xs.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// Largest element (−∞ for none), over 16 lanes so that the loop vectorises.
#[inline(always)]
pub(crate) fn max(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let chunks = xs.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            lanes[i] = lanes[i].max(c[i]);
        }
    }
    lanes
        .iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |m, v| m.max(*v))
}

/// Dot product with 16 independent accumulators.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let whole = n / 16 * 16;
    for (ca, cb) in a[..whole].chunks_exact(16).zip(b[..whole].chunks_exact(16)) {
        for i in 0..16 {
            acc[i] += ca[i] * cb[i];
        }
    }
    let tail: f32 = a[whole..].iter().zip(&b[whole..]).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// e^x to about 1 ulp (Cephes' `expf`: Cody–Waite reduction and a degree-5 polynomial),
/// written without branches or calls so that loops over it vectorise; 0 below −87.3.
#[inline(always)]
#[allow(clippy::excessive_precision)] // the published coefficients, as published
pub(crate) fn exp(x: f32) -> f32 {
    let xc = x.clamp(-87.33, 88.3);
    let n = (xc * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
    let r = xc - n * 0.693_359_375 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_15e-4f32;
    p = p * r + 1.398_199_95e-3;
    p = p * r + 8.333_451_9e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let y = p * r * r + r + 1.0;
    // 2^n from the bits of the integer-valued n + 127 (no float-to-int conversion, which
    // would not vectorise).
    let biased = (n + (127.0 + 8_388_608.0)).to_bits() & 0x7f_ffff;
    let scale = f32::from_bits(biased << 23);
    if x < -87.33 { 0.0 } else { y * scale }
}

/// erfc with a Chebyshev fit (Numerical Recipes `erfcc`): fractional error below 1.2e-7.
#[inline(always)]
#[allow(clippy::excessive_precision)] // the published coefficients, as published
fn erfc(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223
        + t * (1.00002368
            + t * (0.37409196
                + t * (0.09678418
                    + t * (-0.18628806
                        + t * (0.27886807
                            + t * (-1.13520398
                                + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * exp(poly);
    if x >= 0.0 { r } else { 2.0 - r }
}

/// BERT's exact GELU, x·Φ(x).
#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    x - 0.5 * x * erfc(x * std::f32::consts::FRAC_1_SQRT_2)
}

/// d/dx x·Φ(x) = Φ(x) + x·φ(x).
#[inline(always)]
pub(crate) fn gelu_grad(x: f32) -> f32 {
    let inv_sqrt_2pi = 0.5 * std::f32::consts::FRAC_2_SQRT_PI * std::f32::consts::FRAC_1_SQRT_2;
    let cdf = 1.0 - 0.5 * erfc(x * std::f32::consts::FRAC_1_SQRT_2);
    cdf + x * inv_sqrt_2pi * exp(-0.5 * x * x)
}

/// out = f(x) element by element, in parallel, vectorised.
#[inline(always)]
fn map_parallel(x: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32 + Sync + Copy) {
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(o, x)| {
            simd(
                #[inline(always)]
                || {
                    for (o, &v) in o.iter_mut().zip(x) {
                        *o = f(v);
                    }
                },
            )
        });
}

/// GELU over a buffer, in parallel.
pub(crate) fn gelu_forward(x: &[f32], out: &mut [f32]) {
    // `gelu` is #[inline(always)], so passing the function inlines it like a closure.
    map_parallel(x, out, gelu);
}

/// CLIP's x·σ(1.702x) over a buffer, in parallel.
pub(crate) fn quick_gelu_forward(x: &[f32], out: &mut [f32]) {
    map_parallel(
        x,
        out,
        #[inline(always)]
        |v| v / (1.0 + exp(-1.702 * v)),
    );
}

/// dx = g · GELU'(x), in parallel.
pub(crate) fn gelu_backward(x: &[f32], grad: &[f32], dx: &mut [f32]) {
    dx.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(grad.par_chunks(CHUNK)))
        .for_each(|(d, (x, g))| {
            simd(
                #[inline(always)]
                || {
                    for ((d, &v), &gv) in d.iter_mut().zip(x).zip(g) {
                        *d = gv * gelu_grad(v);
                    }
                },
            )
        });
}

/// Softmax of one row in place; entries at and after `valid` get probability 0.
#[inline(always)]
pub(crate) fn softmax_row(row: &mut [f32], valid: usize) {
    let (live, dead) = row.split_at_mut(valid.min(row.len()));
    dead.fill(0.0);
    let max = self::max(live);
    for v in live.iter_mut() {
        *v = exp(*v - max);
    }
    let inv = 1.0 / sum(live);
    for v in live.iter_mut() {
        *v *= inv;
    }
}

/// Softmax over the last dimension (rows of `d`), in parallel.
pub(crate) fn softmax_forward(x: &[f32], out: &mut [f32], d: usize) {
    out.copy_from_slice(x);
    out.par_chunks_mut(d.max(1) * ROW_CHUNK).for_each(|rows| {
        simd(
            #[inline(always)]
            || {
                for row in rows.chunks_mut(d.max(1)) {
                    softmax_row(row, d);
                }
            },
        )
    });
}

/// Softmax backward of one row: dx = y ⊙ (g − ⟨y, g⟩).
#[inline(always)]
pub(crate) fn softmax_row_backward(y: &[f32], g: &[f32], dx: &mut [f32]) {
    let inner = dot(y, g);
    for ((d, &yv), &gv) in dx.iter_mut().zip(y).zip(g) {
        *d = yv * (gv - inner);
    }
}

/// Softmax backward over rows of `d`, in parallel.
pub(crate) fn softmax_backward(y: &[f32], g: &[f32], dx: &mut [f32], d: usize) {
    let c = d.max(1) * ROW_CHUNK;
    dx.par_chunks_mut(c)
        .zip(y.par_chunks(c).zip(g.par_chunks(c)))
        .for_each(|(dx, (y, g))| {
            simd(
                #[inline(always)]
                || {
                    for ((dx, y), g) in dx
                        .chunks_mut(d.max(1))
                        .zip(y.chunks(d.max(1)))
                        .zip(g.chunks(d.max(1)))
                    {
                        softmax_row_backward(y, g, dx);
                    }
                },
            )
        });
}

/// LayerNorm of rows of `d`: out = x̂·α + β, with x̂ and 1/σ kept for the backward pass
/// when `saved` is given.
pub(crate) fn layer_norm_forward(
    x: &[f32],
    alpha: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut [f32],
    saved: Option<(&mut [f32], &mut [f32])>,
) {
    let d = alpha.len();
    let row = |(o, x): (&mut [f32], &[f32]), xhat: Option<(&mut [f32], &mut f32)>| {
        let mean = sum(x) / d as f32;
        let mut var_acc = [0f32; 16];
        let mut k = 0;
        while k + 16 <= d {
            for i in 0..16 {
                let c = x[k + i] - mean;
                var_acc[i] += c * c;
            }
            k += 16;
        }
        let tail: f32 = x[k..].iter().map(|v| (v - mean) * (v - mean)).sum();
        let var = (var_acc.iter().sum::<f32>() + tail) / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        match xhat {
            Some((xh, rstd)) => {
                *rstd = inv;
                for i in 0..d {
                    let h = (x[i] - mean) * inv;
                    xh[i] = h;
                    o[i] = h * alpha[i] + beta[i];
                }
            }
            None => {
                for i in 0..d {
                    o[i] = (x[i] - mean) * inv * alpha[i] + beta[i];
                }
            }
        }
    };
    let c = d * ROW_CHUNK;
    match saved {
        Some((xhat, rstd)) => out
            .par_chunks_mut(c)
            .zip(x.par_chunks(c))
            .zip(xhat.par_chunks_mut(c).zip(rstd.par_chunks_mut(ROW_CHUNK)))
            .for_each(|((o, x), (xh, rs))| {
                simd(
                    #[inline(always)]
                    || {
                        for (((o, x), xh), r) in o
                            .chunks_mut(d)
                            .zip(x.chunks(d))
                            .zip(xh.chunks_mut(d))
                            .zip(rs.iter_mut())
                        {
                            row((o, x), Some((xh, r)));
                        }
                    },
                )
            }),
        None => out
            .par_chunks_mut(c)
            .zip(x.par_chunks(c))
            .for_each(|(o, x)| {
                simd(
                    #[inline(always)]
                    || {
                        for (o, x) in o.chunks_mut(d).zip(x.chunks(d)) {
                            row((o, x), None);
                        }
                    },
                )
            }),
    }
}

/// LayerNorm backward from the saved x̂ and 1/σ: writes dx (or adds it to `dx` when
/// `accumulate`) and adds the parameter gradients to `d_alpha` and `d_beta`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_norm_backward(
    xhat: &[f32],
    rstd: &[f32],
    alpha: &[f32],
    grad: &[f32],
    dx: &mut [f32],
    accumulate: bool,
    d_alpha: &mut [f32],
    d_beta: &mut [f32],
) {
    let d = alpha.len();
    let c = d * ROW_CHUNK;
    let partial: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(c)
        .zip(xhat.par_chunks(c).zip(grad.par_chunks(c)))
        .zip(rstd.par_chunks(ROW_CHUNK))
        .map(|((dx, (xh, g)), rs)| {
            simd(
                #[inline(always)]
                || {
                    let mut da = vec![0f32; d];
                    let mut db = vec![0f32; d];
                    let mut gh = vec![0f32; d];
                    for (((dx, xh), g), &inv) in
                        dx.chunks_mut(d).zip(xh.chunks(d)).zip(g.chunks(d)).zip(rs)
                    {
                        for i in 0..d {
                            gh[i] = g[i] * alpha[i];
                            da[i] += g[i] * xh[i];
                            db[i] += g[i];
                        }
                        let mg = sum(&gh) / d as f32;
                        let mgx = dot(&gh, xh) / d as f32;
                        if accumulate {
                            for i in 0..d {
                                dx[i] += inv * (gh[i] - mg - xh[i] * mgx);
                            }
                        } else {
                            for i in 0..d {
                                dx[i] = inv * (gh[i] - mg - xh[i] * mgx);
                            }
                        }
                    }
                    (da, db)
                },
            )
        })
        .collect();
    for (pa, pb) in partial {
        for i in 0..d {
            d_alpha[i] += pa[i];
            d_beta[i] += pb[i];
        }
    }
}

/// Adds the column sums of rows of `d` (a bias gradient) to `out`.
pub(crate) fn add_column_sums(x: &[f32], d: usize, out: &mut [f32]) {
    let c = d * ROW_CHUNK * 4;
    let partial: Vec<Vec<f32>> = x
        .par_chunks(c)
        .map(|rows| {
            simd(
                #[inline(always)]
                || {
                    let mut acc = vec![0f32; d];
                    for row in rows.chunks(d) {
                        for (a, v) in acc.iter_mut().zip(row) {
                            *a += v;
                        }
                    }
                    acc
                },
            )
        })
        .collect();
    for p in partial {
        for (o, v) in out.iter_mut().zip(p) {
            *o += v;
        }
    }
}

/// A stateless dropout mask: element `index` of the tensor drawn under `key` is kept
/// when its hash clears the drop threshold. Forward and backward passes redraw the same
/// mask instead of storing it, and rows can be drawn in parallel in any order.
#[derive(Debug, Clone, Copy)]
pub struct DropoutMask {
    key: u32,
    threshold: u32,
    /// 1 / (1 − p): kept values are scaled so the expectation is unchanged.
    pub scale: f32,
}

/// murmur3's 32-bit finaliser: every input bit flips about half the output bits.
#[inline(always)]
fn mix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

impl DropoutMask {
    /// The mask of drop probability `p` for the tensor `site` of the draw `seed`.
    pub fn new(seed: u64, site: u32, p: f32) -> Self {
        let key = mix32((seed as u32) ^ mix32((seed >> 32) as u32 ^ mix32(site)));
        Self {
            key,
            threshold: (p.clamp(0.0, 1.0) as f64 * 4_294_967_296.0).min(u32::MAX as f64) as u32,
            scale: 1.0 / (1.0 - p),
        }
    }

    /// The factor of element `index`: 0 (dropped) or 1/(1 − p).
    #[inline(always)]
    pub fn factor(&self, index: usize) -> f32 {
        let h = mix32((index as u32).wrapping_mul(0x9e37_79b1) ^ self.key);
        if h >= self.threshold { self.scale } else { 0.0 }
    }

    /// Multiplies `xs`, the elements from `offset` on, by the mask.
    #[inline(always)]
    pub fn apply(&self, xs: &mut [f32], offset: usize) {
        for (i, x) in xs.iter_mut().enumerate() {
            *x *= self.factor(offset + i);
        }
    }

    /// Applies the mask to a whole buffer, in parallel.
    pub fn apply_all(&self, xs: &mut [f32]) {
        xs.par_chunks_mut(CHUNK).enumerate().for_each(|(c, xs)| {
            simd(
                #[inline(always)]
                || self.apply(xs, c * CHUNK),
            )
        });
    }
}

/// Rows of x up to which [`linear_few_rows`] beats a packed matrix product.
pub(crate) const FEW_ROWS: usize = 16;

/// dst (rows of stride `ld`) = x·Wᵀ + b for a few rows of x [m, in] and W [out, in]:
/// each weight row is read once and dotted with every row of x, in parallel over the
/// weight rows. For a handful of rows (one prompt of 7 tokens) a general matrix
/// product spends its time packing the whole weight matrix; this reads it once.
pub(crate) fn linear_few_rows(
    dst: &mut [f32],
    ld: usize,
    x: &[f32],
    m: usize,
    w: &[f32],
    b: &[f32],
) {
    let (out, inp) = (b.len(), w.len() / b.len().max(1));
    // Output columns, column-major [out, m], then copied into the rows of dst.
    let mut columns = vec![0f32; out * m];
    // One task per thread: the work per call is small, and each extra task is another
    // hand-over between threads.
    let per_task = out.div_ceil(rayon::current_num_threads().max(1)).max(1);
    columns
        .par_chunks_mut(m * per_task)
        .enumerate()
        .for_each(|(chunk, cols)| {
            simd(
                #[inline(always)]
                || {
                    for (c, col) in cols.chunks_mut(m).enumerate() {
                        let j = chunk * per_task + c;
                        let row = &w[j * inp..(j + 1) * inp];
                        if !wide_dots(x, inp, row, col) {
                            for (i, value) in col.iter_mut().enumerate() {
                                *value = dot(&x[i * inp..(i + 1) * inp], row);
                            }
                        }
                        for value in col.iter_mut() {
                            *value += b[j];
                        }
                    }
                },
            )
        });
    for i in 0..m {
        for (j, o) in dst[i * ld..i * ld + out].iter_mut().enumerate() {
            *o = columns[j * m + i];
        }
    }
}

/// col[i] = ⟨x_i, row⟩ through the AVX-512 kernel where this CPU has it; false (nothing
/// written) elsewhere.
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
#[inline(always)]
fn wide_dots(x: &[f32], inp: usize, row: &[f32], col: &mut [f32]) -> bool {
    let Some(v4) = pulp::x86::V4::try_new() else {
        return false;
    };
    for (g, outs) in col.chunks_mut(4).enumerate() {
        dots_v4(v4, &x[g * 4 * inp..], inp, row, outs);
    }
    true
}

/// The portable build has no wide kernel: the caller's loop does the work.
#[cfg(not(all(target_arch = "x86_64", not(feature = "portable"))))]
#[inline(always)]
fn wide_dots(_x: &[f32], _inp: usize, _row: &[f32], _col: &mut [f32]) -> bool {
    false
}

/// out[r] = ⟨x_r, w⟩ for up to four rows x_r (length `inp`) in 512-bit registers: each
/// 16-float slice of `w` is loaded once and multiplied into one accumulator per row,
/// two slices at a time (eight independent chains).
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
#[inline(always)]
fn dots_v4(v4: pulp::x86::V4, x: &[f32], inp: usize, w: &[f32], out: &mut [f32]) {
    use pulp::f32x16;
    let rows = out.len().min(4);
    let whole = inp / 32 * 32;
    let zero = v4.splat_f32x16(0.0);
    let load = |s: &[f32], at: usize| -> f32x16 {
        let lanes: [f32; 16] = s[at..at + 16].try_into().unwrap_or([0.0; 16]);
        pulp::cast(lanes)
    };
    let mut acc = [[zero; 2]; 4];
    for k in (0..whole).step_by(32) {
        let (w0, w1) = (load(w, k), load(w, k + 16));
        for (r, a) in acc.iter_mut().enumerate().take(rows) {
            let xr = &x[r * inp..];
            a[0] = v4.mul_add_f32x16(load(xr, k), w0, a[0]);
            a[1] = v4.mul_add_f32x16(load(xr, k + 16), w1, a[1]);
        }
    }
    for (r, o) in out.iter_mut().enumerate().take(rows) {
        let (a0, a1): ([f32; 16], [f32; 16]) = (pulp::cast(acc[r][0]), pulp::cast(acc[r][1]));
        let xr = &x[r * inp..(r + 1) * inp];
        *o = a0.iter().zip(&a1).map(|(p, q)| p + q).sum::<f32>()
            + xr[whole..]
                .iter()
                .zip(&w[whole..])
                .map(|(p, q)| p * q)
                .sum::<f32>();
    }
}

/// A matrix operand: `rows × cols` read from `data` at `r·row_stride + c·col_stride`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major matrix.
    pub(crate) fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols, 1)
    }

    /// A sub-matrix with explicit strides (a head's columns inside a wider buffer).
    pub(crate) fn strided(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Self {
        assert!(
            rows == 0
                || cols == 0
                || (rows - 1) * row_stride + (cols - 1) * col_stride < data.len(),
            "matrix operand out of bounds"
        );
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    /// The transpose (a view: strides swapped).
    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// dst (rows × cols, row stride `ld`) = a·b, or += a·b when `accumulate`. `parallel`
/// spreads one product over the rayon pool; products inside parallel tasks run alone.
pub(crate) fn matmul(
    dst: &mut [f32],
    ld: usize,
    a: MatRef,
    b: MatRef,
    accumulate: bool,
    parallel: bool,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "inner dimensions differ");
    assert!(
        m == 0 || n == 0 || (m - 1) * ld + n <= dst.len(),
        "matrix product destination out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * ld..r * ld + n].fill(0.0);
            }
        }
        return;
    }
    let parallelism = if parallel && rayon::current_num_threads() > 1 {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // Safety: the asserts above keep every index the product touches inside the slices,
    // and `dst` is borrowed mutably, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            ld as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_libm_and_zero_far_below() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let rel = ((exp(x) - x.exp()) / x.exp()).abs();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 2.5e-7, "{worst}");
        assert_eq!(exp(-1e30), 0.0);
        assert_eq!(exp(-100.0), 0.0);
    }

    #[test]
    fn few_row_products_equal_the_general_product() {
        let (m, inp, out) = (5, 37, 130);
        let value = |i: usize| ((i * 7919 % 101) as f32 - 50.0) / 50.0;
        let x: Vec<f32> = (0..m * inp).map(value).collect();
        let w: Vec<f32> = (0..out * inp).map(|i| value(i + 3)).collect();
        let b: Vec<f32> = (0..out).map(|i| value(i + 11)).collect();
        let ld = out + 3;
        let mut fast = vec![9f32; m * ld];
        linear_few_rows(&mut fast, ld, &x, m, &w, &b);
        let mut general = vec![0f32; m * ld];
        for i in 0..m {
            general[i * ld..i * ld + out].copy_from_slice(&b);
        }
        matmul(
            &mut general,
            ld,
            MatRef::new(&x, m, inp),
            MatRef::new(&w, out, inp).t(),
            true,
            false,
        );
        for i in 0..m {
            for j in 0..ld {
                let (a, g) = (fast[i * ld + j], general[i * ld + j]);
                if j < out {
                    assert!((a - g).abs() < 1e-5, "({i}, {j}): {a} vs {g}");
                } else {
                    assert_eq!(a, 9.0, "columns past the output stay untouched");
                }
            }
        }
    }

    #[test]
    fn matmul_handles_transposed_and_strided_operands() {
        // a: 2×3, b: 3×2 stored transposed (2×3 row-major).
        let a = [1f32, 2., 3., 4., 5., 6.];
        let bt = [1f32, 0., 2., 0., 1., 1.];
        let mut dst = [10f32; 4];
        matmul(
            &mut dst,
            2,
            MatRef::new(&a, 2, 3),
            MatRef::new(&bt, 2, 3).t(),
            false,
            false,
        );
        assert_eq!(dst, [7., 5., 16., 11.]);
        matmul(
            &mut dst,
            2,
            MatRef::new(&a, 2, 3),
            MatRef::new(&bt, 2, 3).t(),
            true,
            true,
        );
        assert_eq!(dst, [14., 10., 32., 22.]);
    }

    #[test]
    fn dropout_masks_are_repeatable_keyed_and_drop_about_p() {
        let a = DropoutMask::new(7, 3, 0.1);
        let b = DropoutMask::new(7, 4, 0.1);
        let n = 100_000;
        let dropped = (0..n).filter(|&i| a.factor(i) == 0.0).count();
        assert!((9_000..11_000).contains(&dropped), "{dropped}");
        assert!((0..n).all(|i| a.factor(i) == DropoutMask::new(7, 3, 0.1).factor(i)));
        let same = (0..n).filter(|&i| a.factor(i) == b.factor(i)).count();
        assert!(same < n * 85 / 100, "{same}");
        assert!((a.factor(1) == 0.0) || (a.factor(1) - 1.0 / 0.9).abs() < 1e-6);
    }
}
