//! Matrix products x·Wᵀ + b of inference through weights packed in panels for
//! AVX-512 micro-kernels: 16 output columns a register, 8 rows × 3 panels a tile, one
//! hand-over between threads a product.
//!
//! - **bf16** (`--precision bf16`): the weights are rounded to bf16 once and packed in
//!   the order AVX512_BF16's `vdpbf16ps` reads them (16 columns × 2 inputs a register),
//!   the activations are rounded per product, and the sums accumulate in fp32 (as
//!   PyTorch's bf16 autocast does).
//! - **fp32** (the default): the weights stay as they are and are packed per product,
//!   once, by all threads, into a buffer each thread keeps for its next product (a copy
//!   of 1/m of the product's work), so that nothing is kept beside the model.
//!
//! The store of each tile adds the bias and, where the caller asks ([`Epilogue`]), a
//! residual or GELU, so that those take no pass of their own over memory.
//!
//! The kernels are x86-64 only and detected at run time ([`bf16_supported`],
//! [`f32_supported`]). A portable loop computes the same tiles elsewhere (the
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
pub(crate) fn bf16_supported() -> bool {
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    return f32_supported() && std::arch::is_x86_feature_detected!("avx512bf16");
    #[cfg(not(all(target_arch = "x86_64", not(feature = "portable"))))]
    false
}

/// Whether this CPU runs the fp32 micro-kernel (AVX512F); elsewhere `gemm` does.
pub(crate) fn f32_supported() -> bool {
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    return std::arch::is_x86_feature_detected!("avx512f");
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

/// How the words of packed operands hold numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// One f32 a word: a panel step is one input.
    F32,
    /// Two bf16 a word (the even input in the low half): a panel step is two inputs.
    Bf16,
}

impl Format {
    /// Panel steps for `inp` inputs.
    fn depth(self, inp: usize) -> usize {
        match self {
            Self::F32 => inp,
            Self::Bf16 => inp.div_ceil(2),
        }
    }
}

/// Packs columns `first..first + count` of W [out, in] (rows of W) as panels: for each
/// step, 16 words, one a column; columns past `out` are zero.
fn pack_panels(format: Format, w: &[f32], inp: usize, first: usize, count: usize, dst: &mut [u32]) {
    let depth = format.depth(inp);
    for (p, panel) in dst.chunks_exact_mut(depth * PANEL).enumerate() {
        for j in 0..PANEL {
            let col = first + p * PANEL + j;
            if col >= first + count {
                for step in 0..depth {
                    panel[step * PANEL + j] = 0;
                }
                continue;
            }
            let row = &w[col * inp..][..inp];
            match format {
                Format::F32 => {
                    for (step, v) in row.iter().enumerate() {
                        panel[step * PANEL + j] = v.to_bits();
                    }
                }
                Format::Bf16 => {
                    for (step, pair) in row.chunks(2).enumerate() {
                        let high = pair.get(1).map_or(0, |&v| to_bf16(v));
                        panel[step * PANEL + j] = to_bf16(pair[0]) | high << 16;
                    }
                }
            }
        }
    }
}

/// A weight matrix W [out, in] in bf16, packed once as panels of 16 columns (rows of W).
pub(crate) struct PackedBf16 {
    out: usize,
    inp: usize,
    words: Vec<u32>,
}

impl PackedBf16 {
    /// Packs W [out, in] (row-major, `w.len() = out · in`).
    pub(crate) fn pack(w: &[f32], out: usize) -> Self {
        let mut words = Vec::new();
        pack_groups(Format::Bf16, w, out, &mut words);
        let inp = w.len() / out.max(1);
        Self { out, inp, words }
    }
}

/// W [out, in] as panel groups (48 columns each) in `format` into `dst`, the groups
/// shared out among the threads.
fn pack_groups(format: Format, w: &[f32], out: usize, dst: &mut Vec<u32>) {
    let inp = w.len() / out.max(1);
    let len = format.depth(inp) * PANEL * PANELS;
    dst.resize(out.div_ceil(PANEL * PANELS) * len, 0);
    dst.par_chunks_mut(len).enumerate().for_each(|(g, group)| {
        let first = g * PANEL * PANELS;
        let count = (out - first).min(PANEL * PANELS);
        pack_panels(format, w, inp, first, count, group);
    });
}

/// The weights of one product.
#[derive(Clone, Copy)]
enum Weights<'a> {
    Bf16(&'a PackedBf16),
    /// W [out, in] in fp32, packed group by group as the threads reach them.
    F32 {
        w: &'a [f32],
        out: usize,
    },
}

impl Weights<'_> {
    fn format(&self) -> Format {
        match self {
            Self::Bf16(_) => Format::Bf16,
            Self::F32 { .. } => Format::F32,
        }
    }

    fn shape(&self) -> (usize, usize) {
        match *self {
            Self::Bf16(p) => (p.out, p.inp),
            Self::F32 { w, out } => (out, w.len() / out.max(1)),
        }
    }

    /// Words of one panel group (48 columns).
    fn group_len(&self) -> usize {
        self.format().depth(self.shape().1) * PANEL * PANELS
    }

    /// Every panel group: the packed store, or W packed into `scratch` by all threads.
    fn groups<'s>(&'s self, scratch: &'s mut Vec<u32>) -> &'s [u32] {
        match *self {
            Self::Bf16(p) => &p.words,
            Self::F32 { w, out } => {
                pack_groups(Format::F32, w, out, scratch);
                scratch
            }
        }
    }
}

thread_local! {
    /// Buffers a thread's products pack into, kept for its next product (taken while in
    /// use, so that a product started inside another one gets fresh buffers).
    static PACKED_ROWS: std::cell::Cell<Vec<u32>> = const { std::cell::Cell::new(Vec::new()) };
    static PACKED_WEIGHTS: std::cell::Cell<Vec<u32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Rows of x [m, in] in `format` into `rows`: [⌈m/8⌉·8, depth] words, the rows past m
/// zero.
fn pack_rows(format: Format, x: &[f32], m: usize, inp: usize, rows: &mut Vec<u32>) {
    let depth = format.depth(inp);
    rows.resize(m.div_ceil(ROWS) * ROWS * depth, 0);
    rows[m * depth..].fill(0);
    rows.par_chunks_mut(depth * ROWS)
        .zip(x[..m * inp].par_chunks(inp * ROWS))
        .for_each(|(dst, src)| {
            super::simd(
                #[inline(always)]
                || {
                    for (d, s) in dst.chunks_exact_mut(depth).zip(src.chunks_exact(inp)) {
                        match format {
                            Format::F32 => {
                                for (w, v) in d.iter_mut().zip(s) {
                                    *w = v.to_bits();
                                }
                            }
                            Format::Bf16 => {
                                for (w, pair) in d.iter_mut().zip(s.chunks_exact(2)) {
                                    *w = to_bf16(pair[0]) | to_bf16(pair[1]) << 16;
                                }
                                if inp % 2 == 1 {
                                    d[inp / 2] = to_bf16(s[inp - 1]);
                                }
                            }
                        }
                    }
                },
            )
        });
}

/// What the store does with each result v of row i, column j, besides adding the bias.
#[derive(Clone, Copy)]
pub(crate) enum Epilogue<'a> {
    /// v + b.
    Bias,
    /// GELU(v + b), BERT's exact GELU ([`super::gelu`]).
    BiasGelu,
    /// (v + b) + r[i, j] for the residual rows r [m, out].
    BiasResidual(&'a [f32]),
}

impl Epilogue<'_> {
    /// `row` (columns `col..`) from the products `values` of row `i`, as the epilogue
    /// says; the same arithmetic as the separate passes it replaces.
    #[inline(always)]
    pub(crate) fn store(
        self,
        row: &mut [f32],
        values: &[f32],
        b: &[f32],
        (i, col): (usize, usize),
    ) {
        let (out, bias) = (b.len(), &b[col..]);
        super::simd(
            #[inline(always)]
            || match self {
                Self::Bias => {
                    for ((o, v), b) in row.iter_mut().zip(values).zip(bias) {
                        *o = v + b;
                    }
                }
                Self::BiasGelu => {
                    for ((o, v), b) in row.iter_mut().zip(values).zip(bias) {
                        *o = super::gelu(v + b);
                    }
                }
                Self::BiasResidual(r) => {
                    let r = &r[i * out + col..];
                    for (((o, v), b), res) in row.iter_mut().zip(values).zip(bias).zip(r) {
                        *o = (v + b) + res;
                    }
                }
            },
        )
    }
}

impl Epilogue<'_> {
    /// What the epilogue adds to dst's rows (m of them, `out` wide, stride `ld`) that
    /// already hold v + b: for the products computed without the packed kernel.
    pub(crate) fn after_bias(self, dst: &mut [f32], ld: usize, m: usize, out: usize) {
        let rows = dst.par_chunks_mut(ld).take(m).enumerate();
        match self {
            Self::Bias => {}
            Self::BiasGelu => rows.for_each(|(_, row)| {
                for v in &mut row[..out] {
                    *v = super::gelu(*v);
                }
            }),
            Self::BiasResidual(r) => rows.for_each(|(i, row)| {
                for (v, res) in row[..out].iter_mut().zip(&r[i * out..]) {
                    *v += res;
                }
            }),
        }
    }
}

/// A tile of results: ROWS rows × PANELS panels of fp32.
type Tile = [[f32; PANEL * PANELS]; ROWS];

/// dst (rows of stride `ld`) = epilogue(x·Wᵀ + b) for x [m, in], through the bf16
/// weights `w`.
pub(crate) fn linear_bf16(
    dst: &mut [f32],
    ld: usize,
    (x, m): (&[f32], usize),
    w: &PackedBf16,
    b: &[f32],
    epilogue: Epilogue,
) {
    linear(dst, ld, (x, m), Weights::Bf16(w), b, epilogue);
}

/// dst (rows of stride `ld`) = epilogue(x·Wᵀ + b) for x [m, in] and W [out, in] in
/// fp32, through the AVX-512 micro-kernel where [`f32_supported`] (else the portable
/// loop: callers take `gemm` there).
pub(crate) fn linear_f32(
    dst: &mut [f32],
    ld: usize,
    (x, m): (&[f32], usize),
    w: &[f32],
    b: &[f32],
    epilogue: Epilogue,
) {
    linear(
        dst,
        ld,
        (x, m),
        Weights::F32 { w, out: b.len() },
        b,
        epilogue,
    );
}

/// The product, its operands packed into the thread's kept buffers.
fn linear(dst: &mut [f32], ld: usize, x: (&[f32], usize), w: Weights, b: &[f32], e: Epilogue) {
    let (out, inp) = w.shape();
    assert_eq!(
        x.0.len() / x.1.max(1),
        inp,
        "input width differs from the weights'"
    );
    let (mut rows, mut weights) = (PACKED_ROWS.take(), PACKED_WEIGHTS.take());
    pack_rows(w.format(), x.0, x.1, inp, &mut rows);
    let operands = Operands {
        rows: &rows,
        m: x.1,
        groups: w.groups(&mut weights),
        group_len: w.group_len(),
        format: w.format(),
        out,
    };
    operands.run(dst, ld, b, e);
    PACKED_ROWS.set(rows);
    PACKED_WEIGHTS.set(weights);
}

/// A product's packed operands.
struct Operands<'a> {
    rows: &'a [u32],
    m: usize,
    groups: &'a [u32],
    group_len: usize,
    format: Format,
    out: usize,
}

impl Operands<'_> {
    fn tile(&self, block: usize, g: usize) -> Tile {
        let group = &self.groups[g * self.group_len..][..self.group_len];
        compute_tile(self.format, self.rows, block, group, self.out, g)
    }

    /// Many rows: the rows are shared out among the threads, each computing all
    /// columns. A few rows: the columns are, each thread writing its own block, copied
    /// in after.
    fn run(&self, dst: &mut [f32], ld: usize, b: &[f32], e: Epilogue) {
        let (m, out) = (self.m, self.out);
        assert!(
            m == 0 || (m - 1) * ld + out <= dst.len(),
            "destination out of bounds"
        );
        let threads = rayon::current_num_threads().max(1);
        let groups = out.div_ceil(PANEL * PANELS);
        let blocks = m.div_ceil(ROWS);
        if blocks >= 2 * threads {
            let per_task = blocks.div_ceil(threads);
            dst.par_chunks_mut(ld * ROWS * per_task)
                .enumerate()
                .for_each(|(task, dst)| {
                    let first = task * per_task;
                    for g in 0..groups {
                        for block in first..(first + per_task).min(blocks) {
                            let tile = self.tile(block, g);
                            let rows = (block * ROWS, (m - block * ROWS).min(ROWS));
                            let local = &mut dst[(block - first) * ROWS * ld..];
                            write_tile(&tile, (local, ld), rows, (g, out), b, e);
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
            .for_each(|(task, columns)| {
                let first = task * per_task;
                for g in first..(first + per_task).min(groups) {
                    for block in 0..blocks {
                        let tile = self.tile(block, g);
                        let local = (g - first) * PANELS * PANEL;
                        for (r, values) in tile.iter().enumerate() {
                            let row = &mut columns[(block * ROWS + r) * width + local..];
                            row[..values.len()].copy_from_slice(values);
                        }
                    }
                }
            });
        for i in 0..m {
            for task in 0..groups.div_ceil(per_task) {
                let col = task * width;
                let cols = (out - col).min(width);
                let values = &columns[(task * blocks * ROWS + i) * width..][..cols];
                e.store(&mut dst[i * ld + col..][..cols], values, b, (i, col));
            }
        }
    }
}

/// Writes a tile's first `valid` rows (through the epilogue) into `dst` (stride `ld`),
/// the tile's first row being row `first` of the product: the columns of panel group
/// `g` that exist (W has `out`).
fn write_tile(
    tile: &Tile,
    (dst, ld): (&mut [f32], usize),
    (first, valid): (usize, usize),
    (g, out): (usize, usize),
    b: &[f32],
    e: Epilogue,
) {
    let col = g * PANELS * PANEL;
    let cols = (out - col).min(PANELS * PANEL);
    for (r, values) in tile.iter().enumerate().take(valid) {
        e.store(
            &mut dst[r * ld + col..][..cols],
            values,
            b,
            (first + r, col),
        );
    }
}

/// One tile: rows `block·8 ..` of the packed rows against panel group `g` (`group`,
/// its words; the last group of W's `out` columns may have fewer than 3 panels).
fn compute_tile(
    format: Format,
    rows: &[u32],
    block: usize,
    group: &[u32],
    out: usize,
    g: usize,
) -> Tile {
    let depth = group.len() / (PANEL * PANELS);
    let x = &rows[block * ROWS * depth..][..ROWS * depth];
    let panels = (out - g * PANEL * PANELS).div_ceil(PANEL).min(PANELS);
    let mut tile = [[0f32; PANEL * PANELS]; ROWS];
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    if (format == Format::Bf16 && bf16_supported()) || (format == Format::F32 && f32_supported()) {
        // Safety: the CPU has what the kernel's format needs (checked above); `x` holds
        // ROWS rows of `depth` words and `group` PANELS panels of `depth · 16`, which is
        // all the kernel reads.
        unsafe {
            match (format, panels) {
                (Format::Bf16, 3) => x86::tile_bf16::<3>(x, group, depth, &mut tile),
                (Format::Bf16, 2) => x86::tile_bf16::<2>(x, group, depth, &mut tile),
                (Format::Bf16, _) => x86::tile_bf16::<1>(x, group, depth, &mut tile),
                (Format::F32, 3) => x86::tile_f32::<3>(x, group, depth, &mut tile),
                (Format::F32, 2) => x86::tile_f32::<2>(x, group, depth, &mut tile),
                (Format::F32, _) => x86::tile_f32::<1>(x, group, depth, &mut tile),
            }
        }
        return tile;
    }
    portable_tile(format, x, group, depth, panels, &mut tile);
    tile
}

/// The tile by plain loops: the same products (bf16 pairs summed as `vdpbf16ps` does).
fn portable_tile(
    format: Format,
    x: &[u32],
    group: &[u32],
    depth: usize,
    panels: usize,
    tile: &mut Tile,
) {
    for (r, out) in tile.iter_mut().enumerate() {
        for p in 0..panels {
            for j in 0..PANEL {
                let mut acc = 0f32;
                for k in 0..depth {
                    let (xw, ww) = (x[r * depth + k], group[(p * depth + k) * PANEL + j]);
                    acc += match format {
                        Format::F32 => f32::from_bits(xw) * f32::from_bits(ww),
                        Format::Bf16 => {
                            from_bf16(xw & 0xffff) * from_bf16(ww & 0xffff)
                                + from_bf16(xw >> 16) * from_bf16(ww >> 16)
                        }
                    };
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

    /// ROWS rows × NP panels in bf16: for each input pair, NP weight registers loaded
    /// once and each row's pair broadcast, NP·ROWS independent `vdpbf16ps` chains.
    ///
    /// # Safety
    /// The CPU must have AVX512F and AVX512_BF16; `x` must hold ROWS · depth words and
    /// `group` NP · depth · 16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn tile_bf16<const NP: usize>(
        x: &[u32],
        group: &[u32],
        depth: usize,
        tile: &mut Tile,
    ) {
        assert!(x.len() >= ROWS * depth && group.len() >= NP * depth * PANEL);
        let (xp, wp) = (x.as_ptr(), group.as_ptr());
        let mut acc = [[_mm512_setzero_ps(); NP]; ROWS];
        // Safety (every block below): k < depth, p < NP and r < ROWS keep each read
        // inside the asserted lengths; the loads are unaligned, and a 512-bit integer
        // vector and 32 bf16 are the same 64 bytes.
        let zero = unsafe { std::mem::transmute::<__m512i, __m512bh>(_mm512_setzero_si512()) };
        for k in 0..depth {
            let mut weights = [zero; NP];
            for (p, w) in weights.iter_mut().enumerate() {
                let at = unsafe { wp.add((p * depth + k) * PANEL) };
                *w = unsafe {
                    std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(at.cast()))
                };
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let pair = unsafe { *xp.add(r * depth + k) } as i32;
                let broadcast =
                    unsafe { std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(pair)) };
                for (a, w) in row.iter_mut().zip(&weights) {
                    *a = _mm512_dpbf16_ps(*a, broadcast, *w);
                }
            }
        }
        store(&acc, tile);
    }

    /// ROWS rows × NP panels in fp32: for each input, NP weight registers loaded once
    /// and each row's value broadcast, NP·ROWS independent FMA chains.
    ///
    /// # Safety
    /// The CPU must have AVX512F; `x` must hold ROWS · depth words and `group`
    /// NP · depth · 16.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile_f32<const NP: usize>(
        x: &[u32],
        group: &[u32],
        depth: usize,
        tile: &mut Tile,
    ) {
        assert!(x.len() >= ROWS * depth && group.len() >= NP * depth * PANEL);
        let (xp, wp) = (x.as_ptr().cast::<f32>(), group.as_ptr().cast::<f32>());
        let mut acc = [[_mm512_setzero_ps(); NP]; ROWS];
        // Safety (every block below): k < depth, p < NP and r < ROWS keep each read
        // inside the asserted lengths; the words are f32 bits, the loads unaligned.
        for k in 0..depth {
            let mut weights = [_mm512_setzero_ps(); NP];
            for (p, w) in weights.iter_mut().enumerate() {
                *w = unsafe { _mm512_loadu_ps(wp.add((p * depth + k) * PANEL)) };
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let broadcast = _mm512_set1_ps(unsafe { *xp.add(r * depth + k) });
                for (a, w) in row.iter_mut().zip(&weights) {
                    *a = _mm512_fmadd_ps(broadcast, *w, *a);
                }
            }
        }
        store(&acc, tile);
    }

    /// The accumulators into the tile's rows.
    #[target_feature(enable = "avx512f")]
    fn store<const NP: usize>(acc: &[[__m512; NP]; ROWS], tile: &mut Tile) {
        for (out, row) in tile.iter_mut().zip(acc) {
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

    /// x·Wᵀ + b in f64 over the operands as `round` leaves them.
    fn reference(
        (x, m): (&[f32], usize),
        (w, out): (&[f32], usize),
        b: &[f32],
        round: fn(f32) -> f32,
    ) -> Vec<f64> {
        let inp = w.len() / out;
        let r = |v: f32| f64::from(round(v));
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
    fn packed_products_equal_the_plain_product_for_every_shape_and_format() {
        // Few rows and many, odd widths, a partial panel, partial groups, one row.
        for &(m, inp, out) in &[(1, 7, 5), (7, 64, 48), (9, 37, 130), (70, 385, 97)] {
            let (x, w, b) = (values(m * inp, 1), values(out * inp, 5), values(out, 9));
            let packed = PackedBf16::pack(&w, out);
            let ld = out + 2;
            let exact: fn(f32) -> f32 = |v| v;
            let rounded: fn(f32) -> f32 = |v| from_bf16(to_bf16(v));
            for (format, round) in [(Format::F32, exact), (Format::Bf16, rounded)] {
                let mut dst = vec![7f32; m * ld];
                match format {
                    Format::F32 => linear_f32(&mut dst, ld, (&x, m), &w, &b, Epilogue::Bias),
                    Format::Bf16 => linear_bf16(&mut dst, ld, (&x, m), &packed, &b, Epilogue::Bias),
                }
                let want = reference((&x, m), (&w, out), &b, round);
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
                            "{format:?} ({m}, {inp}, {out}) at ({i}, {j}): {got} vs {expected}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_wide_kernels_equal_the_portable_loop() {
        for (format, runs) in [
            (Format::F32, f32_supported()),
            (Format::Bf16, bf16_supported()),
        ] {
            if !runs {
                tracing::warn!(
                    "skipped {format:?}: this CPU lacks its instructions (only the portable loop runs)"
                );
                continue;
            }
            let depth = 21;
            let inputs = format_inputs(format, depth);
            let mut x = Vec::new();
            pack_rows(format, &values(ROWS * inputs, 3), ROWS, inputs, &mut x);
            for out in [16, 40, 48] {
                let w = values(out * inputs, 4);
                let packed = PackedBf16::pack(&w, out);
                let weights = match format {
                    Format::F32 => Weights::F32 { w: &w, out },
                    Format::Bf16 => Weights::Bf16(&packed),
                };
                let mut scratch = Vec::new();
                let group = weights.groups(&mut scratch)[..weights.group_len()].to_vec();
                let wide = compute_tile(format, &x, 0, &group, out, 0);
                let mut plain = [[0f32; PANEL * PANELS]; ROWS];
                portable_tile(format, &x, &group, depth, out.div_ceil(PANEL), &mut plain);
                for (a, b) in wide.iter().flatten().zip(plain.iter().flatten()) {
                    assert!(
                        (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                        "{format:?}, {out}: {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_epilogues_equal_the_passes_they_replace() {
        // Many rows (split by rows) and few (split by columns).
        for &(m, inp, out) in &[(70, 33, 100), (5, 33, 100)] {
            let (x, w, b) = (values(m * inp, 2), values(out * inp, 6), values(out, 8));
            let residual = values(m * out, 3);
            let product = |e: Epilogue| {
                let mut dst = vec![0f32; m * out];
                linear_f32(&mut dst, out, (&x, m), &w, &b, e);
                dst
            };
            let plain = product(Epilogue::Bias);
            let gelu: Vec<f32> = plain.iter().map(|&v| crate::kernels::gelu(v)).collect();
            assert_eq!(product(Epilogue::BiasGelu), gelu, "({m} rows) GELU");
            let summed: Vec<f32> = plain.iter().zip(&residual).map(|(v, r)| v + r).collect();
            assert_eq!(
                product(Epilogue::BiasResidual(&residual)),
                summed,
                "({m} rows) residual"
            );
        }
    }

    /// Inputs that fill `depth` steps of `format`.
    fn format_inputs(format: Format, depth: usize) -> usize {
        match format {
            Format::F32 => depth,
            Format::Bf16 => 2 * depth,
        }
    }
}
