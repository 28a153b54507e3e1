//! The int8 convolution (TensorFlow Lite's arithmetic, see [`crate::quant`]): a readable
//! reference and the fast kernel, shaped like CMSIS-NN's, that the Cortex-M DSP
//! instructions speed up (`dsp` feature). Weights `[cout, k, k, cin]`.

use super::Conv2d;
use crate::error::{check_len, Error};
use crate::layers::Site;
use crate::quant::{clamp_i8, params_of, requantize, QLayer, QTensors, Requant};
use crate::shape::Shape;

/// Int8 forward pass of `c` at `site`: each image with the fast kernel when its
/// receptive field fits [`MAX_PATCH`] (its scratch then on the stack) and `z_in` is an
/// i8, else with the reference.
pub(crate) fn forward(
    c: &Conv2d,
    site: &Site,
    l: &QLayer<'_>,
    z_in: i32,
    x: &[i8],
    y: &mut [i8],
) -> Result<(), Error> {
    let (ins, outs) = (site.input, site.output);
    let xs = x.chunks_exact(ins.len()).take(site.n);
    let ys = y.chunks_exact_mut(outs.len());
    let mut scratch = [0u32; scratch_words(MAX_PATCH)];
    for (xi, yi) in xs.zip(ys) {
        forward_rows(c, (ins, outs), l, z_in, xi, 0..outs.h, yi, &mut scratch)?;
    }
    Ok(())
}

/// Output rows `rows` of one image `x` into `band` (`rows.len() * ow * cout` bytes, row
/// `rows.start` first): the fast kernel when `scratch` holds its patches
/// ([`scratch_words`] of `k * k * cin`) and `z_in` is an i8, else the reference (the
/// same values, tested). [`forward`] runs it on every whole image, the row-band
/// inference of [`crate::plan`] on the rows one pooled row needs.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_rows(
    c: &Conv2d,
    io: (Shape, Shape),
    l: &QLayer<'_>,
    z_in: i32,
    x: &[i8],
    rows: core::ops::Range<usize>,
    band: &mut [i8],
    scratch: &mut [u32],
) -> Result<(), Error> {
    let kk = c.kernel * c.kernel * io.0.c;
    if i8::try_from(z_in).is_ok() && scratch.len() >= scratch_words(kk) {
        return forward_rows_fast(c, io, l, z_in, x, rows, band, scratch);
    }
    let (p, pads) = checked(c, io, l, x, &rows, band)?;
    conv_image_reference(c, io.0, io.1, pads, z_in, l, &p, x, rows, band);
    Ok(())
}

/// [`forward_rows`] with the fast kernel only: an error (not the reference) when
/// `scratch` is shorter than [`scratch_words`] of `k * k * cin` or `z_in` is not an i8.
/// What a firmware whose scratch is planned for its model runs, so that it does not
/// link the reference kernel.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_rows_fast(
    c: &Conv2d,
    (ins, outs): (Shape, Shape),
    l: &QLayer<'_>,
    z_in: i32,
    x: &[i8],
    rows: core::ops::Range<usize>,
    band: &mut [i8],
    scratch: &mut [u32],
) -> Result<(), Error> {
    let (p, pads) = checked(c, (ins, outs), l, x, &rows, band)?;
    let kk = c.kernel * c.kernel * ins.c;
    let z8 = i8::try_from(z_in).map_err(|_| Error::InvalidParameter {
        name: "int8 conv2d input zero point (outside [-128, 127])",
    })?;
    let words = scratch_words(kk);
    let have = scratch.len();
    let scratch = scratch.get_mut(..words).ok_or(Error::BufferLen {
        buffer: "int8 conv2d patch scratch",
        expected: words,
        actual: have,
    })?;
    let pixels = rows.start * outs.w..rows.end * outs.w;
    conv_image(c, ins, outs, pads, z8, l, &p, x, pixels, band, scratch);
    Ok(())
}

/// The checks of [`forward_rows`]: the parameters, their lengths, the rows and the band;
/// the parameters and the padding before (rows, columns).
fn checked<'a>(
    c: &Conv2d,
    (ins, outs): (Shape, Shape),
    l: &QLayer<'a>,
    x: &[i8],
    rows: &core::ops::Range<usize>,
    band: &[i8],
) -> Result<(QTensors<'a>, (usize, usize)), Error> {
    let p = params_of(l, "int8 conv2d parameters")?;
    let kk = c.kernel * c.kernel * ins.c;
    check_len("int8 conv2d weights", p.weights, kk * outs.c)?;
    check_len("int8 conv2d bias", p.bias, outs.c)?;
    check_len("int8 conv2d multipliers", p.multiplier, outs.c)?;
    check_len("int8 conv2d shifts", p.shift, outs.c)?;
    check_len("int8 conv2d input", x, ins.len())?;
    if rows.end > outs.h {
        return Err(Error::InvalidParameter {
            name: "int8 conv2d rows (past the last output row)",
        });
    }
    let row = outs.w * outs.c;
    check_len("int8 conv2d row band", band, rows.len() * row)?;
    Ok((p, c.padding_before(ins)?))
}

/// Int8 convolution of output rows `rows` of one image into `y` (row `rows.start`
/// first), the readable reference (see the module doc; weights `[cout, k, k, cin]`):
/// one output value at a time.
#[allow(clippy::too_many_arguments)]
fn conv_image_reference(
    conv: &Conv2d,
    input: Shape,
    output: Shape,
    (pt, pl): (usize, usize),
    z_in: i32,
    l: &QLayer<'_>,
    p: &QTensors<'_>,
    x: &[i8],
    rows: core::ops::Range<usize>,
    y: &mut [i8],
) {
    let (k, s, cin) = (conv.kernel, conv.stride, input.c);
    let kk = k * k * cin;
    let first = rows.start;
    for oy in rows {
        for ox in 0..output.w {
            let out = &mut y[((oy - first) * output.w + ox) * output.c..][..output.c];
            for (co, o) in out.iter_mut().enumerate() {
                let w = &p.weights[co * kk..][..kk];
                let mut acc = p.bias[co];
                for ky in 0..k {
                    let Some(iy) = (oy * s + ky).checked_sub(pt).filter(|&v| v < input.h) else {
                        continue;
                    };
                    for kx in 0..k {
                        let Some(ix) = (ox * s + kx).checked_sub(pl).filter(|&v| v < input.w)
                        else {
                            continue;
                        };
                        let xs = &x[(iy * input.w + ix) * cin..][..cin];
                        let ws = &w[(ky * k + kx) * cin..][..cin];
                        for (&a, &b) in xs.iter().zip(ws) {
                            acc = acc.wrapping_add((a as i32 - z_in) * b as i32);
                        }
                    }
                }
                let r = requantize(acc, p.multiplier[co], p.shift[co]);
                *o = clamp_i8(l.output.zero.saturating_add(r), l.act_min, l.act_max);
            }
        }
    }
}

/// The receptive field of output pixel `(oy, ox)` as bytes in `(ky, kx, ci)` order like
/// the weights, `z_in` where the window is in the padding (so that `x - z_in` is 0 there).
#[allow(clippy::too_many_arguments)]
fn gather(
    conv: &Conv2d,
    input: Shape,
    (pt, pl): (usize, usize),
    z_in: i8,
    x: &[i8],
    oy: usize,
    ox: usize,
    out: &mut [i8],
) {
    let (k, s, cin) = (conv.kernel, conv.stride, input.c);
    // Kernel columns whose input column is inside the image: one contiguous run per row.
    let x0 = ox * s;
    let kx_lo = pl.saturating_sub(x0).min(k);
    let kx_hi = (input.w + pl).saturating_sub(x0).min(k).max(kx_lo);
    for (ky, row) in out.chunks_exact_mut(k * cin).enumerate() {
        let Some(iy) = (oy * s + ky).checked_sub(pt).filter(|&v| v < input.h) else {
            row.fill(z_in);
            continue;
        };
        let start = (iy * input.w + x0 + kx_lo - pl) * cin;
        let src = &x[start..start + (kx_hi - kx_lo) * cin];
        if src.len() == row.len() {
            row.copy_from_slice(src); // inside the image: no padding to write
            continue;
        }
        let (before, rest) = row.split_at_mut(kx_lo * cin);
        let (mid, after) = rest.split_at_mut(src.len());
        before.fill(z_in);
        after.fill(z_in);
        mid.copy_from_slice(src);
    }
}

/// Largest receptive field (`k * k * cin`) the whole-image pass (`forward`) runs with
/// the fast kernel, its scratch on the stack (4.6 KB: `scratch_words` of it); larger
/// ones run the reference kernel there. Planned inference ([`crate::plan`]) has no such
/// limit: its scratch is sized for the model ([`crate::Arch::planned_scratch_i8`]).
pub const MAX_PATCH: usize = 512;

/// Words of scratch the fast kernel needs for a receptive field of `kk = k * k * cin`
/// values: [`PIXELS`] pixels' 16-bit pairs (`2 * PIXELS * (kk / 4)` words), then one
/// pixel's gathered bytes (`kk`, rounded up to whole words).
pub const fn scratch_words(kk: usize) -> usize {
    2 * PIXELS * (kk / 4) + kk.div_ceil(4)
}

/// Two 16-bit values in one word, `lo` in the low half: the operand layout of `SMLAD`.
fn pack(lo: i16, hi: i16) -> u32 {
    (lo as u16 as u32) | ((hi as u16 as u32) << 16)
}

/// Four bytes as a little-endian word (one unaligned `LDR` on a Cortex-M4).
#[inline(always)]
fn word(b: &[i8]) -> u32 {
    u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8])
}

/// The Cortex-M DSP instructions the int8 convolution uses: inline assembly with the
/// `dsp` feature on Arm, their exact portable definitions everywhere else (so that the
/// host runs, and tests, the same algorithm bit for bit).
mod dsp {
    /// `SMLAD`: `acc + lo(a) * lo(b) + hi(a) * hi(b)`, halves signed 16-bit.
    #[cfg(not(all(feature = "dsp", target_arch = "arm")))]
    #[inline(always)]
    pub fn smlad(a: u32, b: u32, acc: i32) -> i32 {
        let lo = (a as i16 as i32) * (b as i16 as i32);
        let hi = ((a >> 16) as i16 as i32) * ((b >> 16) as i16 as i32);
        acc.wrapping_add(lo).wrapping_add(hi)
    }

    /// `SXTB16`: bytes 0 and 2 of `x`, sign-extended into the low and high halves.
    #[cfg(not(all(feature = "dsp", target_arch = "arm")))]
    #[inline(always)]
    pub fn sxtb16(x: u32) -> u32 {
        super::pack(x as u8 as i8 as i16, (x >> 16) as u8 as i8 as i16)
    }

    /// `SXTB16` with `ROR #8`: bytes 1 and 3 of `x`, sign-extended.
    #[cfg(not(all(feature = "dsp", target_arch = "arm")))]
    #[inline(always)]
    pub fn sxtb16_ror8(x: u32) -> u32 {
        sxtb16(x.rotate_right(8))
    }

    /// `SSUB16`: `lo(a) - lo(b)` and `hi(a) - hi(b)`, each a wrapping signed 16-bit
    /// difference.
    #[cfg(not(all(feature = "dsp", target_arch = "arm")))]
    #[inline(always)]
    pub fn ssub16(a: u32, b: u32) -> u32 {
        super::pack(
            (a as i16).wrapping_sub(b as i16),
            ((a >> 16) as i16).wrapping_sub((b >> 16) as i16),
        )
    }

    #[cfg(all(feature = "dsp", target_arch = "arm"))]
    #[allow(unsafe_code)]
    mod arm {
        /// `SXTB16` (see the portable definition).
        #[inline(always)]
        pub fn sxtb16(x: u32) -> u32 {
            let r: u32;
            // SAFETY: one DSP instruction on registers only (no memory, no stack, no
            // flags). The `dsp` feature promises an Armv7E-M or later core, where it
            // exists. The QEMU run in CI checks every result against the portable
            // definitions on the host.
            unsafe {
                core::arch::asm!("sxtb16 {r}, {x}", r = lateout(reg) r, x = in(reg) x, options(pure, nomem, nostack, preserves_flags));
            }
            r
        }

        /// `SXTB16 ..., ROR #8` (see the portable definition).
        #[inline(always)]
        pub fn sxtb16_ror8(x: u32) -> u32 {
            let r: u32;
            // SAFETY: as for `sxtb16`: one register-only DSP instruction.
            unsafe {
                core::arch::asm!("sxtb16 {r}, {x}, ror #8", r = lateout(reg) r, x = in(reg) x, options(pure, nomem, nostack, preserves_flags));
            }
            r
        }

        /// `SSUB16` (see the portable definition).
        #[inline(always)]
        pub fn ssub16(a: u32, b: u32) -> u32 {
            let r: u32;
            // SAFETY: as for `sxtb16`: one register-only DSP instruction (it sets the GE
            // flags, which nothing here reads; `preserves_flags` is not claimed).
            unsafe {
                core::arch::asm!("ssub16 {r}, {a}, {b}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b, options(pure, nomem, nostack));
            }
            r
        }

        /// The loop of the portable `dot_4x1` (see there), 17 instructions per 16
        /// multiply-adds.
        pub fn dot_4x1(xs: &[u32], w: &[i8], bias: i32) -> [i32; super::super::PIXELS] {
            let steps = (xs.len() / 8).min(w.len() / 4);
            let [mut a, mut b, mut c, mut d] = [bias; 4];
            if steps == 0 {
                return [a, b, c, d];
            }
            // SAFETY: reads only, `steps` times 32 bytes from `xs` and 4 bytes from `w`,
            // both inside the slices by the `min` above (and `steps > 0`, so the
            // count-down loop ends). `xs` is `u32`-aligned as `LDRD` needs; `w` may be
            // unaligned, which `LDR` allows on the Armv7E-M cores the `dsp` feature is
            // for (unless software sets CCR.UNALIGN_TRP, which this crate never does and
            // no board binary here does). Every operand register is declared (the
            // pointers and count as clobbered inouts, the temporaries as outputs); the
            // flags are clobbered (`SUBS`, `SMLAD`'s Q). Checked: the QEMU run in CI
            // compares every output against the portable loop on the host.
            unsafe {
                core::arch::asm!(
                    "2:",
                    "ldr {u}, [{w}], #4",
                    "sxtb16 {u02}, {u}",
                    "sxtb16 {u}, {u}, ror #8",
                    "ldrd {q0}, {q1}, [{x}], #8",
                    "smlad {a}, {q0}, {u02}, {a}",
                    "smlad {a}, {q1}, {u}, {a}",
                    "ldrd {q0}, {q1}, [{x}], #8",
                    "smlad {b}, {q0}, {u02}, {b}",
                    "smlad {b}, {q1}, {u}, {b}",
                    "ldrd {q0}, {q1}, [{x}], #8",
                    "smlad {c}, {q0}, {u02}, {c}",
                    "smlad {c}, {q1}, {u}, {c}",
                    "ldrd {q0}, {q1}, [{x}], #8",
                    "smlad {d}, {q0}, {u02}, {d}",
                    "smlad {d}, {q1}, {u}, {d}",
                    "subs {n}, {n}, #1",
                    "bne 2b",
                    w = inout(reg) w.as_ptr() => _,
                    x = inout(reg) xs.as_ptr() => _,
                    n = inout(reg) steps => _,
                    a = inout(reg) a,
                    b = inout(reg) b,
                    c = inout(reg) c,
                    d = inout(reg) d,
                    u = out(reg) _,
                    u02 = out(reg) _,
                    q0 = out(reg) _,
                    q1 = out(reg) _,
                    options(nostack, readonly),
                );
            }
            [a, b, c, d]
        }
    }
    #[cfg(all(feature = "dsp", target_arch = "arm"))]
    pub use arm::*;
}

/// `x - z` of four bytes as the two `SMLAD` operands `(x0, x2)` and `(x1, x3)`, from
/// `zz = (z, z)`: the order `SXTB16` gives, matching the weights widened the same way.
#[inline(always)]
fn widen(w: u32, zz: u32) -> [u32; 2] {
    [
        dsp::ssub16(dsp::sxtb16(w), zz),
        dsp::ssub16(dsp::sxtb16_ror8(w), zz),
    ]
}

/// Output pixels computed together: each weight word loaded and widened serves all of them.
const PIXELS: usize = 4;

/// The inner products of [`PIXELS`] pixels' patches with one weight row, four
/// multiply-adds per pixel per step: `xs` is `[quad][pixel][x02, x13]` (from [`widen`]),
/// `w` the row's bytes (only whole quads are used). Per step: one weight word, 2 `SXTB16`,
/// 8 words of `xs` (4 `LDRD`), 8 `SMLAD` for 16 multiply-adds. The portable definition;
/// with the `dsp` feature on Arm the same loop is written in assembly
/// ([`dsp::dot_4x1`]), because LLVM's schedule of it spills sums to the stack.
#[cfg(not(all(feature = "dsp", target_arch = "arm")))]
fn dot_4x1(xs: &[u32], w: &[i8], bias: i32) -> [i32; PIXELS] {
    let [mut a, mut b, mut c, mut d] = [bias; PIXELS];
    for (q, u) in xs.chunks_exact(2 * PIXELS).zip(w.chunks_exact(4)) {
        let u = word(u);
        let (u02, u13) = (dsp::sxtb16(u), dsp::sxtb16_ror8(u));
        a = dsp::smlad(q[0], u02, a);
        a = dsp::smlad(q[1], u13, a);
        b = dsp::smlad(q[2], u02, b);
        b = dsp::smlad(q[3], u13, b);
        c = dsp::smlad(q[4], u02, c);
        c = dsp::smlad(q[5], u13, c);
        d = dsp::smlad(q[6], u02, d);
        d = dsp::smlad(q[7], u13, d);
    }
    [a, b, c, d]
}

#[cfg(all(feature = "dsp", target_arch = "arm"))]
use dsp::dot_4x1;

/// Int8 convolution of the output pixels `pixels` (row-major indices; whole rows) of one
/// image into `y` (pixel `pixels.start` first), the fast kernel (equal to
/// [`conv_image_reference`], tested; `scratch` holds [`scratch_words`] of `k * k * cin`),
/// shaped like
/// CMSIS-NN's: output pixels
/// [`PIXELS`] at a time, each one's receptive field gathered as bytes ([`gather`], padding
/// = `z_in`) and widened once to 16-bit `x - z_in` pairs ([`widen`]), interleaved by
/// pixel; then every output channel's weights are read once for all of them
/// ([`dot_4x1`]). The last `k * k * cin % 4` products of each dot product are plain
/// multiply-adds. At the end of the range the last pixel fills the group (computed and
/// stored again, the same value).
#[allow(clippy::too_many_arguments)]
fn conv_image(
    conv: &Conv2d,
    input: Shape,
    output: Shape,
    pads: (usize, usize),
    z_in: i8,
    l: &QLayer<'_>,
    p: &QTensors<'_>,
    x: &[i8],
    pixels: core::ops::Range<usize>,
    y: &mut [i8],
    scratch: &mut [u32],
) {
    let kk = conv.kernel * conv.kernel * input.c;
    let (quads, cout, width) = (kk / 4, output.c, output.w);
    let (pairs, bytes) = scratch.split_at_mut((2 * PIXELS * quads).min(scratch.len()));
    let bytes: &mut [i8] = bytemuck::cast_slice_mut(bytes);
    let mut tails = [[0i32; 3]; PIXELS];
    let zz = pack(z_in as i16, z_in as i16);
    let (z_out, lo, hi) = (l.output.zero, l.act_min, l.act_max);
    let (p0, last) = (pixels.start, pixels.end.saturating_sub(1));
    for first in pixels.step_by(PIXELS) {
        let group: [usize; PIXELS] = core::array::from_fn(|i| (first + i).min(last));
        let xs = &mut *pairs;
        for (i, &px) in group.iter().enumerate() {
            let bytes = &mut bytes[..kk];
            gather(conv, input, pads, z_in, x, px / width, px % width, bytes);
            for (o, b) in xs.chunks_exact_mut(2 * PIXELS).zip(bytes.chunks_exact(4)) {
                o[2 * i..2 * i + 2].copy_from_slice(&widen(word(b), zz));
            }
            for (t, &v) in tails[i].iter_mut().zip(&bytes[4 * quads..]) {
                *t = v as i32 - z_in as i32;
            }
        }
        let xs: &[u32] = xs;
        for co in 0..cout {
            let w = &p.weights[co * kk..][..kk];
            let sums = dot_4x1(xs, w, p.bias[co]);
            let q = Requant::new(p.multiplier[co], p.shift[co]);
            for ((&px, acc), tail) in group.iter().zip(sums).zip(&tails) {
                let t: i32 = w[4 * quads..]
                    .iter()
                    .zip(tail)
                    .map(|(&w, &v)| v * w as i32)
                    .sum();
                let r = q.apply(acc.wrapping_add(t));
                y[(px - p0) * cout + co] = clamp_i8(z_out.saturating_add(r), lo, hi);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::quant::QParams;
    use crate::rng::Rng;
    use crate::Padding;
    use std::vec::Vec;

    #[test]
    fn fast_convolution_equals_the_reference() {
        let mut rng = Rng::new(11);
        for &(h, w, cin, k, stride, pad, cout) in &[
            (28, 28, 1, 5, 1, Padding::Same, 8),
            (14, 14, 8, 5, 1, Padding::Same, 16),
            (7, 7, 16, 3, 1, Padding::Same, 32),
            (9, 8, 3, 3, 2, Padding::Same, 7),
            (6, 7, 5, 2, 1, Padding::Valid, 5),
            (5, 3, 4, 3, 1, Padding::Valid, 3), // 3 output pixels: one group, filled
            (1, 1, 2, 1, 1, Padding::Same, 1),  // a 2-value dot product: no whole quad
        ] {
            let conv = Conv2d::with(k, stride, pad, cout);
            let input = Shape::new(h, w, cin);
            let out = conv.output_shape(input).unwrap();
            let kk = k * k * cin;
            let mut byte = || (rng.below(256) as i32 - 128) as i8;
            let x: Vec<i8> = (0..input.len()).map(|_| byte()).collect();
            let wq: Vec<i8> = (0..kk * cout).map(|_| byte()).collect();
            let bias: Vec<i32> = (0..cout).map(|i| i as i32 * 1000 - 3000).collect();
            let mult: Vec<i32> = (0..cout).map(|i| (1 << 30) + i as i32 * 12345).collect();
            let shift: Vec<i32> = (0..cout).map(|i| -(8 + (i % 3) as i32)).collect();
            let p = QTensors {
                weights: &wq,
                bias: &bias,
                multiplier: &mult,
                shift: &shift,
            };
            let l = QLayer {
                params: Some(p),
                output: QParams {
                    scale: 0.1,
                    zero: -5,
                },
                act_min: -5,
                act_max: 127,
            };
            let pads = conv.padding_before(input).unwrap();
            // Zero points at both ends of the range and inside: padding is `z_in` bytes.
            for z in [3i8, -128, 127, 0] {
                let (mut y1, mut y2) = (std::vec![0i8; out.len()], std::vec![0i8; out.len()]);
                let mut scratch = std::vec![0u32; scratch_words(kk)];
                let zi = z as i32;
                conv_image(
                    &conv,
                    input,
                    out,
                    pads,
                    z,
                    &l,
                    &p,
                    &x,
                    0..out.h * out.w,
                    &mut y1,
                    &mut scratch,
                );
                let all = 0..out.h;
                conv_image_reference(&conv, input, out, pads, zi, &l, &p, &x, all, &mut y2);
                assert_eq!(y1, y2, "{h}x{w}x{cin} k{k} s{stride} -> {cout}, z_in {z}");
                // Any band of rows is the same rows of the whole image.
                let row = out.w * out.c;
                for r0 in 0..out.h {
                    for r1 in r0 + 1..=out.h {
                        let mut band = std::vec![0i8; (r1 - r0) * row];
                        let io = (input, out);
                        forward_rows(&conv, io, &l, zi, &x, r0..r1, &mut band, &mut scratch)
                            .unwrap();
                        assert_eq!(band, y1[r0 * row..r1 * row], "rows {r0}..{r1}");
                    }
                }
                let mut band = std::vec![0i8; row];
                let past = forward_rows(
                    &conv,
                    (input, out),
                    &l,
                    zi,
                    &x,
                    out.h..out.h + 1,
                    &mut band,
                    &mut scratch,
                );
                assert!(past.is_err());
            }
        }
    }

    #[test]
    fn dsp_primitives_follow_the_arm_definitions() {
        // SXTB16 takes bytes 0 and 2 (or 1 and 3 after ROR #8), sign-extended.
        assert_eq!(dsp::sxtb16(0x80_7f_ff_01), pack(1, 0x7f));
        assert_eq!(dsp::sxtb16_ror8(0x80_7f_ff_01), pack(-1, -128));
        // SMLAD adds both 16-bit products to the accumulator.
        assert_eq!(dsp::smlad(pack(-3, 7), pack(5, -2), 100), 100 - 15 - 14);
        assert_eq!(
            dsp::smlad(pack(-255, 255), pack(-128, 127), 0),
            255 * 128 + 255 * 127
        );
        // SSUB16 subtracts the halves separately (no borrow between them).
        assert_eq!(dsp::ssub16(pack(-128, 0), pack(127, -128)), pack(-255, 128));
        assert_eq!(dsp::ssub16(pack(0, 5), pack(1, 5)), pack(-1, 0));
        // Widening gives the SMLAD operands (x0 - z, x2 - z) and (x1 - z, x3 - z).
        assert_eq!(
            widen(word(&[-128, 127, 5, -1]), pack(-3, -3)),
            [pack(-125, 8), pack(130, 2)]
        );
    }
}
