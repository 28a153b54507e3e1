//! Direct convolutions for x86-64 CPUs with AVX-512, plugged into the core through
//! [`ConvKernels`]: no im2col matrix, no packing, the input read where it lies.
//!
//! All three passes of a stride-1 convolution are register-blocked outer products over
//! flat NHWC buffers, with output (or input) channels in vector lanes:
//!
//! ```text
//! forward  y[p, co]    = b[co] + sum over (ky, kx, ci) of xpad[p + (ky, kx), ci] * w[ky, kx, ci, co]
//!          blocks: P = 8 output pixels x CB vectors of L channels in registers
//! input    dx = forward(pad(dy), w flipped in (ky, kx) and transposed in (ci, co)), no bias
//! weights  dw[ky, (kx, ci), co] += sum over p of xpad[p + (ky, 0) + kx, ci] * dy[p, co]
//!          (for a fixed ky, the (kx, ci) values of one output pixel are contiguous in NHWC)
//!          blocks: J = 8 (kx, ci) rows x CB vectors of L channels in registers
//! ```
//! The kernels are plain Rust over fixed-size arrays, compiled a second time with
//! `#[target_feature(enable = "avx512f")]` so that each `[f32; 16]` is one register and
//! each multiply-add one FMA; they are chosen at run time when the CPU has AVX-512 and
//! the layer's channels fit the lanes (output and, for the input gradient, input
//! channels a multiple of 8), and fall back to the core's im2col path otherwise.
//! Tests check every pass against the core's reference convolution.

use microconv::layers::{Conv2d, ConvKernels};
use microconv::{Error, Shape};

/// Output pixels per register block: 7 divides the widths of these networks (28, 14,
/// 7), and 7 pixels x 2 vectors of 16 channels leave registers to spare.
const P: usize = 7;

/// The AVX-512 convolution kernels; obtain them with [`Avx512Conv::detect`].
#[derive(Debug)]
pub struct Avx512Conv(());

static AVX512: Avx512Conv = Avx512Conv(());

impl Avx512Conv {
    /// The kernels, if this CPU has AVX-512F (checked once per call, cheaply cached by
    /// the standard library).
    pub fn detect() -> Option<&'static Avx512Conv> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Some(&AVX512);
        }
        None
    }
}

/// Shapes of one stride-1 convolution pass over a zero-padded input.
#[derive(Clone, Copy, Debug)]
struct Pass {
    /// Padded input height and width (`wp` covers whole blocks of `P` outputs).
    hp: usize,
    wp: usize,
    cin: usize,
    k: usize,
    /// Output height, width, channels.
    oh: usize,
    ow: usize,
    cout: usize,
}

impl Pass {
    fn new(oh: usize, ow: usize, k: usize, cin: usize, cout: usize) -> Self {
        Pass {
            hp: oh + k - 1,
            wp: ow.div_ceil(P) * P + k - 1,
            cin,
            k,
            oh,
            ow,
            cout,
        }
    }
    fn padded_len(&self) -> usize {
        self.hp * self.wp * self.cin
    }
}

/// Copies one image of shape `img_shape` into the padded buffer `out` at row `top`,
/// column `left`, zeros elsewhere.
fn pad_into(
    img: &[f32],
    img_shape: Shape,
    (top, left): (usize, usize),
    pass: &Pass,
    out: &mut [f32],
) {
    let (h, w, c) = (img_shape.h, img_shape.w, img_shape.c);
    out.fill(0.0);
    for r in 0..h {
        let dst = ((r + top) * pass.wp + left) * c;
        out[dst..dst + w * c].copy_from_slice(&img[r * w * c..(r + 1) * w * c]);
    }
}

/// Whether `channels` in vector lanes pay: at least half a vector, and at most two
/// (beyond that the im2col product with the `gemm` crate's kernels measured faster:
/// on the seed's 14x14x32 -> 64 layer, 106-130 against 78-97 GFLOP/s forward, while
/// for the small network's 8-, 16- and 32-channel layers the direct kernels were
/// 1.3-2x faster).
fn fits(channels: usize) -> bool {
    (8..=32).contains(&channels)
}

/// The AVX-512 kernels. Pointer arithmetic stays inside the bounds that the safe
/// callers check before every call (see each `SAFETY` comment).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)] // index loops show the register blocking plainly
mod x86 {
    use super::{Pass, P};
    use core::arch::x86_64::*;

    /// Lanes of one vector.
    const L: usize = 16;

    /// Vectors of channels per block: 7 x 2 accumulators, 2 weight (or gradient)
    /// vectors and a broadcast use 17 of the 32 registers. (Blocks of 4 vectors,
    /// 28 accumulators, measured slower: the compiler spilled.)
    const CB_MAX: usize = 2;

    /// Masks of the `cb` vectors covering channels `co0 .. min(co0 + 16 cb, c)`.
    fn masks<const CB: usize>(co0: usize, c: usize) -> [__mmask16; CB] {
        let mut m = [0; CB];
        for (v, mv) in m.iter_mut().enumerate() {
            let lo = co0 + v * L;
            let n = c.saturating_sub(lo).min(L);
            *mv = ((1u32 << n) - 1) as __mmask16;
        }
        m
    }

    /// One block of `P` output pixels x `CB` vectors of channels.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `xs` points at padded pixel `(oy, ox0)`, channel 0, with
    /// `P + k - 1` pixels of `k` rows (row stride `pass.wp * cin`) readable; `w` points at
    /// channel `co0` of a `[k, k, cin, cout]` array with every unmasked lane readable;
    /// `y` points at output pixel `(oy, ox0)`, channel `co0`, with `np` pixels of
    /// unmasked lanes writable; `bias` (if not null) has the unmasked lanes readable.
    #[inline(always)]
    unsafe fn forward_block<const CB: usize>(
        pass: &Pass,
        xs: *const f32,
        w: *const f32,
        bias: *const f32,
        y: *mut f32,
        m: [__mmask16; CB],
        np: usize,
    ) {
        let (cin, cout, k) = (pass.cin, pass.cout, pass.k);
        let mut acc = [[_mm512_setzero_ps(); CB]; P];
        if !bias.is_null() {
            for cb in 0..CB {
                let b = _mm512_maskz_loadu_ps(m[cb], bias.add(cb * L));
                for a in acc.iter_mut() {
                    a[cb] = b;
                }
            }
        }
        for ky in 0..k {
            for kx in 0..k {
                let xr = xs.add((ky * pass.wp + kx) * cin);
                let wr = w.add((ky * k + kx) * cin * cout);
                for ci in 0..cin {
                    let mut wv = [_mm512_setzero_ps(); CB];
                    for cb in 0..CB {
                        wv[cb] = _mm512_maskz_loadu_ps(m[cb], wr.add(ci * cout + cb * L));
                    }
                    for p in 0..P {
                        let xv = _mm512_set1_ps(*xr.add(p * cin + ci));
                        for cb in 0..CB {
                            acc[p][cb] = _mm512_fmadd_ps(xv, wv[cb], acc[p][cb]);
                        }
                    }
                }
            }
        }
        for (p, a) in acc.iter().enumerate().take(np) {
            for cb in 0..CB {
                _mm512_mask_storeu_ps(y.add(p * cout + cb * L), m[cb], a[cb]);
            }
        }
    }

    /// Forward pass of one padded image `xp` into `y` (`[oh, ow, cout]`).
    ///
    /// # Safety
    /// The CPU has AVX-512F. (Lengths are checked here.)
    #[target_feature(enable = "avx512f")]
    pub unsafe fn forward(pass: &Pass, xp: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
        let (cin, cout, k) = (pass.cin, pass.cout, pass.k);
        assert!(xp.len() >= pass.padded_len(), "padded input");
        assert!(
            w.len() >= k * k * cin * cout && y.len() >= pass.oh * pass.ow * cout,
            "buffers"
        );
        assert!(bias.is_none_or(|b| b.len() >= cout), "bias");
        let bp = bias.map_or(core::ptr::null(), |b| b.as_ptr());
        for oy in 0..pass.oh {
            for ox0 in (0..pass.ow).step_by(P) {
                let np = P.min(pass.ow - ox0);
                let mut co0 = 0;
                while co0 < cout {
                    // SAFETY: the padded image holds rows oy..oy+k and, since
                    // `wp >= ceil(ow / P) * P + k - 1`, pixels ox0..ox0+P+k-1 of each;
                    // weights, bias and output lanes beyond `cout` are masked off; the
                    // output pixels ox0..ox0+np of row oy are inside `y`.
                    let xs = xp.as_ptr().add((oy * pass.wp + ox0) * cin);
                    let wp = w.as_ptr().add(co0);
                    let b = if bp.is_null() { bp } else { bp.add(co0) };
                    let yp = y.as_mut_ptr().add((oy * pass.ow + ox0) * cout + co0);
                    if cout - co0 > L {
                        forward_block::<2>(pass, xs, wp, b, yp, masks(co0, cout), np);
                    } else {
                        forward_block::<1>(pass, xs, wp, b, yp, masks(co0, cout), np);
                    }
                    co0 += CB_MAX * L;
                }
            }
        }
    }

    /// `J` rows of `(kx, ci)` x `CB` vectors of output channels of the weight gradient
    /// for kernel row `ky`, summed over every output pixel of one image.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `xp` points at padded row `ky`, pixel 0, channel `j0`
    /// (every `(oy, ox)` offset below plus `J` values readable); `dy` points at channel
    /// `co0` of `[oh, ow, cout]` and `dw` at row `ky * k * cin + j0`, channel `co0`
    /// of `[k * k * cin, cout]` (unmasked lanes readable / writable).
    #[inline(always)]
    unsafe fn weights_block<const J: usize, const CB: usize>(
        pass: &Pass,
        xp: *const f32,
        dy: *const f32,
        dw: *mut f32,
        m: [__mmask16; CB],
    ) {
        let (cin, cout) = (pass.cin, pass.cout);
        let mut acc = [[_mm512_setzero_ps(); CB]; J];
        for oy in 0..pass.oh {
            for ox in 0..pass.ow {
                let xr = xp.add((oy * pass.wp + ox) * cin);
                let g = dy.add((oy * pass.ow + ox) * cout);
                let mut gv = [_mm512_setzero_ps(); CB];
                for cb in 0..CB {
                    gv[cb] = _mm512_maskz_loadu_ps(m[cb], g.add(cb * L));
                }
                for j in 0..J {
                    let xv = _mm512_set1_ps(*xr.add(j));
                    for cb in 0..CB {
                        acc[j][cb] = _mm512_fmadd_ps(xv, gv[cb], acc[j][cb]);
                    }
                }
            }
        }
        for (j, a) in acc.iter().enumerate() {
            for cb in 0..CB {
                let d = dw.add(j * cout + cb * L);
                let old = _mm512_maskz_loadu_ps(m[cb], d);
                _mm512_mask_storeu_ps(d, m[cb], _mm512_add_ps(old, a[cb]));
            }
        }
    }

    /// The weight gradient of one padded image: `dw += ...` for every `(ky, kx, ci, co)`.
    ///
    /// # Safety
    /// The CPU has AVX-512F. (Lengths are checked here.)
    #[target_feature(enable = "avx512f")]
    pub unsafe fn weights(pass: &Pass, xp: &[f32], dy: &[f32], dw: &mut [f32]) {
        let (cin, cout, k) = (pass.cin, pass.cout, pass.k);
        assert!(xp.len() >= pass.padded_len(), "padded input");
        assert!(
            dy.len() >= pass.oh * pass.ow * cout && dw.len() >= k * k * cin * cout,
            "buffers"
        );
        let rows = k * cin;
        for ky in 0..k {
            let mut co0 = 0;
            while co0 < cout {
                let mut j0 = 0;
                while j0 < rows {
                    // SAFETY: row ky + oy (< hp) and pixel ox + kx (< wp) of the padded
                    // image hold values j0..j0+J (j = kx * cin + ci < k * cin); dy and
                    // dw lanes beyond `cout` are masked off.
                    let x = xp.as_ptr().add(ky * pass.wp * cin + j0);
                    let g = dy.as_ptr().add(co0);
                    let d = dw.as_mut_ptr().add((ky * rows + j0) * cout + co0);
                    let left = rows - j0;
                    let step = if left >= 7 {
                        7
                    } else if left >= 4 {
                        4
                    } else {
                        1
                    };
                    macro_rules! go {
                        ($j:literal) => {
                            if cout - co0 > L {
                                weights_block::<$j, 2>(pass, x, g, d, masks(co0, cout))
                            } else {
                                weights_block::<$j, 1>(pass, x, g, d, masks(co0, cout))
                            }
                        };
                    }
                    match step {
                        7 => go!(7),
                        4 => go!(4),
                        _ => go!(1),
                    }
                    j0 += step;
                }
                co0 += CB_MAX * L;
            }
        }
    }
}

/// A pass and the zero rows / columns before the input (`(top, left)`).
type Plan = (Pass, (usize, usize));

impl Avx512Conv {
    /// The geometry, if these kernels handle it: stride 1, output channels in lanes.
    fn plan(conv: &Conv2d, input: Shape) -> Result<Option<Plan>, Error> {
        let out = conv.output_shape(input).map_err(|reason| Error::Shape {
            layer: usize::MAX,
            reason,
        })?;
        if conv.stride != 1 || !fits(conv.filters) {
            return Ok(None);
        }
        let (pt, pl) = conv.padding_before(input)?;
        let pass = Pass::new(out.h, out.w, conv.kernel, input.c, conv.filters);
        Ok(Some((pass, (pt, pl))))
    }
}

impl ConvKernels for Avx512Conv {
    fn forward(
        &self,
        conv: &Conv2d,
        input: Shape,
        n: usize,
        x: &[f32],
        w: &[f32],
        b: &[f32],
        y: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<bool, Error> {
        #[cfg(target_arch = "x86_64")]
        {
            let Some((pass, (pt, pl))) = Self::plan(conv, input)? else {
                return Ok(false);
            };
            let plen = pass.padded_len();
            if scratch.len() < plen {
                return Ok(false);
            }
            let xp = &mut scratch[..plen];
            let out_len = pass.oh * pass.ow * pass.cout;
            for (xi, yi) in x
                .chunks_exact(input.len())
                .zip(y.chunks_exact_mut(out_len))
                .take(n)
            {
                pad_into(xi, input, (pt, pl), &pass, xp);
                // SAFETY: `detect` returned this value only after checking that the CPU
                // has AVX-512F (which implies AVX2 and FMA); the function body is safe
                // code. Exercised by `kernels_match_the_reference`.
                unsafe { x86::forward(&pass, xp, w, Some(b), yi) };
            }
            Ok(true)
        }
        #[cfg(not(target_arch = "x86_64"))]
        Ok(false)
    }

    fn backward(
        &self,
        conv: &Conv2d,
        input: Shape,
        n: usize,
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        dx: Option<&mut [f32]>,
        dw: &mut [f32],
        db: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<bool, Error> {
        #[cfg(target_arch = "x86_64")]
        {
            let Some((pass, (pt, pl))) = Self::plan(conv, input)? else {
                return Ok(false);
            };
            let k = conv.kernel;
            let (cin, cout) = (input.c, conv.filters);
            // The input gradient is a forward pass over dy padded by k-1-pt, k-1-pl, with
            // the flipped and transposed weights; its lanes are the input channels.
            let back = Pass::new(input.h, input.w, k, cout, cin);
            let need_dx = dx.is_some();
            if need_dx && !fits(cin) {
                return Ok(false);
            }
            let (plen, blen, wlen) = (pass.padded_len(), back.padded_len(), w.len());
            let total = plen + if need_dx { blen + wlen } else { 0 };
            if scratch.len() < total {
                return Ok(false);
            }
            let (xp, rest) = scratch.split_at_mut(plen);
            let (dyp, rest) = rest.split_at_mut(if need_dx { blen } else { 0 });
            let wt = &mut rest[..if need_dx { wlen } else { 0 }];
            if need_dx {
                for ky in 0..k {
                    for kx in 0..k {
                        for ci in 0..cin {
                            for co in 0..cout {
                                wt[((ky * k + kx) * cout + co) * cin + ci] =
                                    w[(((k - 1 - ky) * k + (k - 1 - kx)) * cin + ci) * cout + co];
                            }
                        }
                    }
                }
            }
            let out = conv.output_shape(input).map_err(|reason| Error::Shape {
                layer: usize::MAX,
                reason,
            })?;
            for row in dy.chunks_exact(cout) {
                for (a, v) in db.iter_mut().zip(row) {
                    *a += v;
                }
            }
            let mut dx = dx;
            for i in 0..n {
                let xi = &x[i * input.len()..][..input.len()];
                let dyi = &dy[i * out.len()..][..out.len()];
                pad_into(xi, input, (pt, pl), &pass, xp);
                // SAFETY: as in `forward`: only reachable after `detect` found AVX-512F;
                // safe code inside. Exercised by `kernels_match_the_reference`.
                unsafe { x86::weights(&pass, xp, dyi, dw) };
                if let Some(dx) = dx.as_deref_mut() {
                    pad_into(dyi, out, (k - 1 - pt, k - 1 - pl), &back, dyp);
                    let dxi = &mut dx[i * input.len()..][..input.len()];
                    // SAFETY: as above.
                    unsafe { x86::forward(&back, dyp, wt, None, dxi) };
                }
            }
            Ok(true)
        }
        #[cfg(not(target_arch = "x86_64"))]
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use microconv::gemm::PortableGemm;
    use microconv::layers::ConvAlgo;
    use microconv::Padding;

    fn vals(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn kernels_match_the_reference() {
        let Some(kern) = Avx512Conv::detect() else {
            eprintln!("no AVX-512 on this CPU: the kernels are not used, nothing to check");
            return;
        };
        // (h, w, cin, k, cout, padding): the networks' layers and odd sizes, SAME and VALID.
        for &(h, w, cin, k, cout, pad) in &[
            (28, 28, 1, 5, 8, Padding::Same),
            (28, 28, 1, 5, 32, Padding::Same),
            (14, 14, 8, 5, 16, Padding::Same),
            (7, 7, 16, 3, 32, Padding::Same),
            (14, 14, 32, 5, 32, Padding::Same),
            (9, 11, 8, 4, 24, Padding::Same),
            (6, 13, 20, 3, 20, Padding::Same),
            (10, 9, 3, 3, 16, Padding::Valid),
            (5, 6, 8, 3, 8, Padding::Valid),
        ] {
            let conv = Conv2d::with(k, 1, pad, cout);
            let input = Shape::new(h, w, cin);
            let out = conv.output_shape(input).unwrap();
            let n = 3;
            let x = vals(1, n * input.len());
            let wt = vals(2, conv.weight_len(input));
            let b = vals(3, cout);
            let dy = vals(4, n * out.len());
            let mut scratch = vec![0.0; 1 << 18];
            let (mut y1, mut y2) = (vec![0.0; n * out.len()], vec![0.0; n * out.len()]);
            assert!(kern
                .forward(&conv, input, n, &x, &wt, &b, &mut y1, &mut scratch)
                .unwrap());
            conv.forward(
                input,
                n,
                &x,
                &wt,
                &b,
                &mut y2,
                ConvAlgo::Direct,
                &mut [],
                &PortableGemm,
            )
            .unwrap();
            let close = |a: &[f32], b: &[f32], what: &str| {
                for (i, (p, q)) in a.iter().zip(b).enumerate() {
                    assert!(
                        (p - q).abs() <= 1e-4 * (1.0 + q.abs()),
                        "{what} [{i}] {p} vs {q} ({h}x{w}x{cin} k{k} -> {cout})"
                    );
                }
            };
            close(&y1, &y2, "forward");
            let with_dx = cin >= 8;
            let (mut dx1, mut dx2) = (vec![0.0; x.len()], vec![0.0; x.len()]);
            let (mut dw1, mut dw2) = (vec![0.5; wt.len()], vec![0.5; wt.len()]);
            let (mut db1, mut db2) = (vec![0.25; cout], vec![0.25; cout]);
            let handled = kern
                .backward(
                    &conv,
                    input,
                    n,
                    &x,
                    &wt,
                    &dy,
                    with_dx.then_some(&mut dx1[..]),
                    &mut dw1,
                    &mut db1,
                    &mut scratch,
                )
                .unwrap();
            assert!(handled);
            conv.backward(
                input,
                n,
                &x,
                &wt,
                &dy,
                with_dx.then_some(&mut dx2[..]),
                &mut dw2,
                &mut db2,
                ConvAlgo::Direct,
                &mut [],
                &PortableGemm,
            )
            .unwrap();
            close(&dw1, &dw2, "dw");
            close(&db1, &db2, "db");
            close(&dx1, &dx2, "dx");
            // Input channels that do not fit the lanes: the input gradient falls back.
            if !with_dx {
                let r = kern.backward(
                    &conv,
                    input,
                    n,
                    &x,
                    &wt,
                    &dy,
                    Some(&mut dx1[..]),
                    &mut dw1,
                    &mut db1,
                    &mut scratch,
                );
                assert!(!r.unwrap());
            }
        }
        // Stride 2 and channels that do not fit are left to the core.
        let wide = Conv2d::with(3, 1, Padding::Same, 64);
        let input = Shape::new(6, 6, 8);
        let mut y = vec![0.0; wide.output_shape(input).unwrap().len()];
        let x = vals(7, input.len());
        let wt = vals(8, wide.weight_len(input));
        assert!(!kern
            .forward(
                &wide,
                input,
                1,
                &x,
                &wt,
                &[0.0; 64],
                &mut y,
                &mut [0.0; 4096]
            )
            .unwrap());
        let conv = Conv2d::with(3, 2, Padding::Same, 16);
        let input = Shape::new(8, 8, 8);
        let mut y = vec![0.0; conv.output_shape(input).unwrap().len()];
        let x = vals(5, input.len());
        let wt = vals(6, conv.weight_len(input));
        assert!(!kern
            .forward(
                &conv,
                input,
                1,
                &x,
                &wt,
                &[0.0; 16],
                &mut y,
                &mut [0.0; 4096]
            )
            .unwrap());
    }
}
