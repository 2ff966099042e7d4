//! Matrix products in bfloat16 for inference under `--precision bf16`: the weights are
//! rounded to bf16 once and packed in the order AVX512_BF16's `vdpbf16ps` reads them
//! (16 output columns × 2 inputs a register), the activations are rounded per product,
//! and the sums accumulate in fp32 (as PyTorch's bf16 autocast does). The instruction
//! is x86-64 only and detected at run time: callers ask [`supported`] and keep the fp32
//! path where it says no. A portable loop computes the same products elsewhere (the
//! `portable` feature, other targets), so that the packing is tested on every machine.

use rayon::prelude::*;

/// Output columns of one packed panel: one 512-bit register of fp32 lanes.
const PANEL: usize = 16;
/// Rows of x one micro-kernel call computes.
const ROWS: usize = 8;
/// Panels one micro-kernel call computes: 8 rows × 3 panels are 24 accumulators, which
/// leaves registers for the 3 weight loads and the broadcast.
const PANELS: usize = 3;

/// Whether this CPU runs the bf16 products (AVX512_BF16).
pub(crate) fn supported() -> bool {
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    return std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bf16");
    #[cfg(not(all(target_arch = "x86_64", not(feature = "portable"))))]
    false
}

/// x rounded to bf16 (to nearest, ties to even; NaN stays NaN), as its 16 bits. Written
/// without branches so that loops over it vectorise.
#[inline(always)]
fn to_bf16(x: f32) -> u32 {
    let bits = x.to_bits();
    let rounded = (bits.wrapping_add(0x7fff + ((bits >> 16) & 1))) >> 16;
    if x.is_nan() { 0x7fc0 } else { rounded }
}

/// The f32 value of a bf16 (its bits are the top half of the f32's).
#[inline(always)]
fn from_bf16(bits: u32) -> f32 {
    f32::from_bits(bits << 16)
}

/// A weight matrix W [out, in] in bf16, as panels of 16 rows of W (output columns): for
/// each pair of inputs (2k, 2k + 1) a panel holds 16 words, each the two bf16 of one
/// column (the even input in the low half). Columns past `out` and an odd input's
/// partner are zero.
pub(crate) struct PackedBf16 {
    out: usize,
    inp: usize,
    pairs: usize,
    words: Vec<u32>,
}

impl PackedBf16 {
    /// Packs W [out, in] (row-major, `w.len() = out · in`).
    pub(crate) fn pack(w: &[f32], out: usize) -> Self {
        let inp = w.len() / out.max(1);
        let pairs = inp.div_ceil(2);
        let panels = out.div_ceil(PANEL);
        let mut words = vec![0u32; panels * pairs * PANEL];
        words
            .par_chunks_mut(pairs * PANEL)
            .enumerate()
            .for_each(|(p, panel)| {
                for j in 0..PANEL.min(out - p * PANEL) {
                    let row = &w[(p * PANEL + j) * inp..][..inp];
                    for (k, pair) in row.chunks(2).enumerate() {
                        let high = pair.get(1).map_or(0, |&v| to_bf16(v));
                        panel[k * PANEL + j] = to_bf16(pair[0]) | high << 16;
                    }
                }
            });
        Self {
            out,
            inp,
            pairs,
            words,
        }
    }

    fn panels(&self) -> usize {
        self.out.div_ceil(PANEL)
    }
}

/// Rows of x [m, in] as bf16 pairs [⌈m/8⌉·8, pairs], the rows past m zero.
fn pack_rows(x: &[f32], m: usize, inp: usize, pairs: usize) -> Vec<u32> {
    let mut rows = vec![0u32; m.div_ceil(ROWS) * ROWS * pairs];
    rows.par_chunks_mut(pairs * ROWS)
        .zip(x[..m * inp].par_chunks(inp * ROWS))
        .for_each(|(dst, src)| {
            super::simd(
                #[inline(always)]
                || {
                    for (d, s) in dst.chunks_exact_mut(pairs).zip(src.chunks_exact(inp)) {
                        let even = inp / 2;
                        for (w, pair) in d[..even].iter_mut().zip(s.chunks_exact(2)) {
                            *w = to_bf16(pair[0]) | to_bf16(pair[1]) << 16;
                        }
                        if inp % 2 == 1 {
                            d[even] = to_bf16(s[inp - 1]);
                        }
                    }
                },
            )
        });
    rows
}

/// A tile of results: ROWS rows × PANELS panels of fp32.
type Tile = [[f32; PANEL * PANELS]; ROWS];

/// dst (rows of stride `ld`) = x·Wᵀ + b for x [m, in], through the bf16 weights `w`.
/// Many rows: the rows are shared out among the threads, each computing all columns.
/// A few rows: the columns are, each thread writing its own block, copied in after.
pub(crate) fn linear(dst: &mut [f32], ld: usize, x: &[f32], m: usize, w: &PackedBf16, b: &[f32]) {
    assert_eq!(
        x.len() / m.max(1),
        w.inp,
        "input width differs from the weights'"
    );
    assert!(
        m == 0 || (m - 1) * ld + w.out <= dst.len(),
        "destination out of bounds"
    );
    let rows = pack_rows(x, m, w.inp, w.pairs);
    let threads = rayon::current_num_threads().max(1);
    let groups = w.panels().div_ceil(PANELS);
    let blocks = m.div_ceil(ROWS);
    if blocks >= 2 * threads {
        let per_task = blocks.div_ceil(threads);
        dst.par_chunks_mut(ld * ROWS * per_task)
            .enumerate()
            .for_each(|(task, out)| {
                let first = task * per_task;
                let last = (first + per_task).min(blocks);
                for group in 0..groups {
                    for block in first..last {
                        let tile = compute_tile(w, &rows, block, group);
                        let at = (block - first) * ROWS;
                        write_tile(
                            &tile,
                            out,
                            ld,
                            at,
                            (m - block * ROWS).min(ROWS),
                            w,
                            group,
                            b,
                        );
                    }
                }
            });
        return;
    }
    let per_task = groups.div_ceil(threads).max(1);
    let width = per_task * PANELS * PANEL;
    let mut columns = vec![0f32; blocks * ROWS * width * groups.div_ceil(per_task)];
    columns
        .par_chunks_mut(blocks * ROWS * width)
        .enumerate()
        .for_each(|(task, out)| {
            let first = task * per_task;
            for group in first..(first + per_task).min(groups) {
                for block in 0..blocks {
                    let tile = compute_tile(w, &rows, block, group);
                    let local = (group - first) * PANELS * PANEL;
                    for (r, values) in tile.iter().enumerate() {
                        let row = &mut out[(block * ROWS + r) * width + local..];
                        row[..values.len()].copy_from_slice(values);
                    }
                }
            }
        });
    for i in 0..m {
        for (j, o) in dst[i * ld..i * ld + w.out].iter_mut().enumerate() {
            let (task, local) = (j / width, j % width);
            *o = columns[task * blocks * ROWS * width + i * width + local] + b[j];
        }
    }
}

/// Writes a tile's first `valid` rows (+ bias) into `out` from row `at`, the columns of
/// panel group `group` that exist.
#[allow(clippy::too_many_arguments)] // one tile's destination, described in full
fn write_tile(
    tile: &Tile,
    out: &mut [f32],
    ld: usize,
    at: usize,
    valid: usize,
    w: &PackedBf16,
    group: usize,
    b: &[f32],
) {
    let col = group * PANELS * PANEL;
    let cols = (w.out - col).min(PANELS * PANEL);
    for (r, values) in tile.iter().enumerate().take(valid) {
        let row = &mut out[(at + r) * ld + col..][..cols];
        for ((o, v), bias) in row.iter_mut().zip(values).zip(&b[col..]) {
            *o = v + bias;
        }
    }
}

/// One tile: rows `block·8 ..` of the packed rows against panel group `group`.
fn compute_tile(w: &PackedBf16, rows: &[u32], block: usize, group: usize) -> Tile {
    let pairs = w.pairs;
    let x = &rows[block * ROWS * pairs..][..ROWS * pairs];
    let first = group * PANELS;
    let panels = (w.panels() - first).min(PANELS);
    let panel = &w.words[first * pairs * PANEL..][..panels * pairs * PANEL];
    let mut tile = [[0f32; PANEL * PANELS]; ROWS];
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    if supported() {
        // Safety: the CPU has AVX512F and AVX512_BF16 (checked above); the slices hold
        // ROWS rows of `pairs` words and `panels` panels of `pairs · 16` words, which is
        // all the kernel reads.
        unsafe {
            match panels {
                3 => x86::tile::<3>(x, panel, pairs, &mut tile),
                2 => x86::tile::<2>(x, panel, pairs, &mut tile),
                _ => x86::tile::<1>(x, panel, pairs, &mut tile),
            }
        }
        return tile;
    }
    portable_tile(x, panel, pairs, panels, &mut tile);
    tile
}

/// The tile by plain loops: the same products, each pair summed as `vdpbf16ps` does.
fn portable_tile(x: &[u32], panel: &[u32], pairs: usize, panels: usize, tile: &mut Tile) {
    for (r, out) in tile.iter_mut().enumerate() {
        for p in 0..panels {
            for j in 0..PANEL {
                let mut acc = 0f32;
                for k in 0..pairs {
                    let (xw, ww) = (x[r * pairs + k], panel[(p * pairs + k) * PANEL + j]);
                    acc += from_bf16(xw & 0xffff) * from_bf16(ww & 0xffff)
                        + from_bf16(xw >> 16) * from_bf16(ww >> 16);
                }
                out[p * PANEL + j] = acc;
            }
        }
    }
}

#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
mod x86 {
    use super::{PANEL, ROWS, Tile};
    use std::arch::x86_64::*;

    /// ROWS rows × NP panels: for each input pair, NP weight registers loaded once and
    /// each row's pair broadcast, NP·ROWS independent `vdpbf16ps` chains.
    ///
    /// # Safety
    /// The CPU must have AVX512F and AVX512_BF16; `x` must hold ROWS · pairs words and
    /// `panel` NP · pairs · 16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn tile<const NP: usize>(
        x: &[u32],
        panel: &[u32],
        pairs: usize,
        tile: &mut Tile,
    ) {
        assert!(x.len() >= ROWS * pairs && panel.len() >= NP * pairs * PANEL);
        let (xp, wp) = (x.as_ptr(), panel.as_ptr());
        let mut acc = [[_mm512_setzero_ps(); NP]; ROWS];
        // Safety (every block below): k < pairs, p < NP and r < ROWS keep each read
        // inside the asserted lengths; the loads are unaligned, and a 512-bit integer
        // vector and 32 bf16 are the same 64 bytes.
        let zero = unsafe { std::mem::transmute::<__m512i, __m512bh>(_mm512_setzero_si512()) };
        for k in 0..pairs {
            let mut weights = [zero; NP];
            for (p, w) in weights.iter_mut().enumerate() {
                let at = unsafe { wp.add((p * pairs + k) * PANEL) };
                *w = unsafe {
                    std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(at.cast()))
                };
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let pair = unsafe { *xp.add(r * pairs + k) } as i32;
                let broadcast =
                    unsafe { std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(pair)) };
                for (a, w) in row.iter_mut().zip(&weights) {
                    *a = _mm512_dpbf16_ps(*a, broadcast, *w);
                }
            }
        }
        for (out, row) in tile.iter_mut().zip(&acc) {
            for (p, a) in row.iter().enumerate() {
                // Safety: p < NP ≤ PANELS keeps the 16 floats inside the tile's row.
                unsafe { _mm512_storeu_ps(out[p * PANEL..].as_mut_ptr(), *a) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, salt: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + salt) * 7919 % 211) as f32 - 105.0) / 37.0)
            .collect()
    }

    /// x·Wᵀ + b in f64 over the bf16-rounded operands.
    fn reference(x: &[f32], m: usize, w: &[f32], out: usize, b: &[f32]) -> Vec<f64> {
        let inp = w.len() / out;
        let r = |v: f32| f64::from(from_bf16(to_bf16(v)));
        (0..m * out)
            .map(|at| {
                let (i, j) = (at / out, at % out);
                let dot: f64 = (0..inp)
                    .map(|k| r(x[i * inp + k]) * r(w[j * inp + k]))
                    .sum();
                dot + f64::from(b[j])
            })
            .collect()
    }

    #[test]
    fn rounding_is_to_nearest_even_and_keeps_nan() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷: ties go to the even (1.0).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(to_bf16(-2.5), 0xc020);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
    }

    #[test]
    fn bf16_products_equal_the_rounded_operands_product_for_every_shape() {
        // Few rows and many, odd widths, a partial panel, partial groups, one row.
        for &(m, inp, out) in &[(1, 7, 5), (7, 64, 48), (9, 37, 130), (70, 385, 97)] {
            let (x, w, b) = (values(m * inp, 1), values(out * inp, 5), values(out, 9));
            let packed = PackedBf16::pack(&w, out);
            let ld = out + 2;
            let mut dst = vec![7f32; m * ld];
            linear(&mut dst, ld, &x, m, &packed, &b);
            let want = reference(&x, m, &w, out, &b);
            for i in 0..m {
                for j in 0..ld {
                    let got = dst[i * ld + j];
                    if j >= out {
                        assert_eq!(got, 7.0, "columns past the output stay untouched");
                        continue;
                    }
                    let expected = want[i * out + j];
                    let tolerance = 1e-5 * (1.0 + expected.abs()) * (inp as f64).sqrt();
                    assert!(
                        (f64::from(got) - expected).abs() < tolerance,
                        "({m}, {inp}, {out}) at ({i}, {j}): {got} vs {expected}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_wide_kernel_equals_the_portable_loop() {
        if !supported() {
            eprintln!("skipped: this CPU has no AVX512_BF16, so only the portable loop runs");
            return;
        }
        let (pairs, panels) = (21, 3);
        let x: Vec<u32> = values(ROWS * pairs * 2, 3)
            .chunks(2)
            .map(|p| to_bf16(p[0]) | to_bf16(p[1]) << 16)
            .collect();
        let w = PackedBf16::pack(&values(panels * PANEL * pairs * 2, 4), panels * PANEL);
        let wide = compute_tile(&w, &x, 0, 0);
        let mut plain = [[0f32; PANEL * PANELS]; ROWS];
        portable_tile(&x, &w.words, pairs, panels, &mut plain);
        for (a, b) in wide.iter().flatten().zip(plain.iter().flatten()) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}
