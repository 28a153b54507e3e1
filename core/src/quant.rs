//! Int8 inference: the same layer list as [`Arch`], run on 8-bit activations and weights
//! with 32-bit accumulators and integer-only requantization, as TensorFlow Lite
//! specifies it (and CMSIS-NN implements it), so that the host and a microcontroller
//! compute bit-identical outputs.
//!
//! # The arithmetic, including every rounding rule
//!
//! ```text
//! activation  real = s * (q - z)        q: i8, one (s, z) per tensor (asymmetric)
//! weight      real = s_w[c] * q         q: i8 in [-127, 127], one s_w per output channel (symmetric)
//! bias        real = s_in * s_w[c] * q  q: i32
//!
//! conv / dense, output channel c:
//!   acc  = bias_q[c] + sum over the window of (x_q - z_in) * w_q        (i32; exact for
//!          any real model, and wrapping, as SMLAD does, for a file whose biases push
//!          it past i32; padding positions contribute nothing: they are real zeros)
//!   y_q  = clamp(z_out + mbqm(acc, m[c], shift[c]), act_min, act_max)   (the sum saturating)
//!   where m[c] * 2^shift[c] ~ s_in * s_w[c] / s_out, m in [2^30, 2^31)   (quantize_multiplier)
//!   and ReLU is the clamp act_min = z_out (the quantized real zero)
//! max-pool: the largest q of the window (same s, z in and out; padding ignored)
//! ReLU:     max(q, z)   (after a fused conv it changes nothing)
//! flatten, dropout: copies
//!
//! mbqm(x, m, shift) = rdivpot(srdhm(x * 2^max(shift, 0), m), max(-shift, 0))
//! srdhm(a, b)       = (a*b + (a*b >= 0 ? 2^30 : 1 - 2^30)) / 2^31, the division
//!                     truncating toward zero; i32::MAX for a = b = i32::MIN
//! rdivpot(x, e)     = (x >> e) + (remainder > threshold), remainder = x & (2^e - 1),
//!                     threshold = (2^e - 1) >> 1, plus 1 if x < 0   (round half away from zero)
//! quantize_multiplier(r): r = f * 2^e with f in [0.5, 1) (frexp); m = round(f * 2^31),
//!                     half away from zero; m = 2^31 becomes 2^30 with e + 1; e < -31 gives 0
//! ```
//!
//! Weights are stored output-channel first (`[cout, kh, kw, cin]` for convolutions,
//! `[out, in]` for dense layers, as CMSIS-NN does) so that each output is one contiguous
//! dot product.

use crate::error::{check_len, Error};
use crate::layers::{Conv2d, MaxPool};
use crate::net::{Arch, Layer};
use crate::shape::{window_axis, Shape};

/// Scale and zero point of an int8 tensor: `real = scale * (q - zero)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QParams {
    /// Real value of one step.
    pub scale: f32,
    /// The `q` that stands for real zero, in `[-128, 127]`.
    pub zero: i32,
}

impl QParams {
    /// The real value of `q`.
    pub fn dequantize(&self, q: i8) -> f32 {
        self.scale * (q as i32 - self.zero) as f32
    }
}

/// The int8 parameters of one layer with weights.
#[derive(Clone, Copy, Debug)]
pub struct QTensors<'a> {
    /// Weights, output channel first (see the module doc).
    pub weights: &'a [i8],
    /// Biases in units of `s_in * s_w[c]`.
    pub bias: &'a [i32],
    /// Per-output-channel multiplier `m[c]` in `[2^30, 2^31)` (or 0).
    pub multiplier: &'a [i32],
    /// Per-output-channel power-of-two exponent.
    pub shift: &'a [i32],
}

/// One layer of an int8 network: its parameters (convolution and dense layers), the
/// quantization of its output and the clamp applied to it.
#[derive(Clone, Copy, Debug)]
pub struct QLayer<'a> {
    /// Parameters of convolution and dense layers; `None` for the others.
    pub params: Option<QTensors<'a>>,
    /// Scale and zero point of the layer's output.
    pub output: QParams,
    /// Smallest output value (the zero point when a ReLU is fused in, else -128).
    pub act_min: i8,
    /// Largest output value.
    pub act_max: i8,
}

/// An int8 network: the layer list of an [`Arch`], the input's quantization and one
/// [`QLayer`] per layer.
#[derive(Clone, Copy, Debug)]
pub struct QNet<'a> {
    /// The layers and shapes (the same as the float network's).
    pub arch: Arch<'a>,
    /// Quantization of the input.
    pub input: QParams,
    /// One entry per layer of `arch`.
    pub layers: &'a [QLayer<'a>],
}

/// TensorFlow Lite's `SaturatingRoundingDoublingHighMul`: `round(a * b / 2^31)`.
pub const fn srdhm(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge = if ab >= 0 {
        1i64 << 30
    } else {
        1 - (1i64 << 30)
    };
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// TensorFlow Lite's `RoundingDivideByPOT`: `x / 2^e`, rounded half away from zero.
pub const fn rdivpot(x: i32, e: u32) -> i32 {
    if e == 0 {
        return x;
    }
    let e = if e > 31 { 31 } else { e };
    let mask = ((1i64 << e) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + (x < 0) as i32;
    (x >> e) + (remainder > threshold) as i32
}

/// TensorFlow Lite's `MultiplyByQuantizedMultiplier`: `x * m * 2^shift / 2^31`, with
/// the rounding of [`srdhm`] then [`rdivpot`].
pub const fn requantize(x: i32, m: i32, shift: i32) -> i32 {
    let left = if shift > 0 { shift as u32 } else { 0 };
    let right = if shift > 0 { 0 } else { shift.unsigned_abs() };
    rdivpot(srdhm(x.wrapping_shl(left), m), right)
}

/// Splits a positive real multiplier into `(m, shift)` with `m` in `[2^30, 2^31)`
/// (see the module doc); `(0, 0)` for zero, negative or non-finite input.
pub fn quantize_multiplier(real: f64) -> (i32, i32) {
    if real.is_nan() || real <= 0.0 || !real.is_finite() {
        return (0, 0);
    }
    let (frac, mut exp) = libm::frexp(real);
    let mut q = libm::round(frac * (1i64 << 31) as f64) as i64;
    if q == 1i64 << 31 {
        q /= 2;
        exp += 1;
    }
    if exp < -31 {
        return (0, 0);
    }
    (q as i32, exp)
}

fn clamp_i8(v: i32, lo: i8, hi: i8) -> i8 {
    v.clamp(lo as i32, hi as i32) as i8
}

fn params_of<'a>(l: &QLayer<'a>, name: &'static str) -> Result<QTensors<'a>, Error> {
    l.params.ok_or(Error::InvalidParameter { name })
}

/// Int8 convolution of one image, the readable reference (see the module doc; weights
/// `[cout, k, k, cin]`): one output value at a time.
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
    y: &mut [i8],
) {
    let (k, s, cin) = (conv.kernel, conv.stride, input.c);
    let kk = k * k * cin;
    for oy in 0..output.h {
        for ox in 0..output.w {
            let out = &mut y[(oy * output.w + ox) * output.c..][..output.c];
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

/// Largest receptive field (`k * k * cin`) the fast kernel gathers on the stack (4.6 KB:
/// four pixels' 16-bit pairs and one pixel's bytes); larger ones run the reference
/// kernel.
pub const MAX_PATCH: usize = 512;

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

/// Scratch of [`conv_image`]: one pixel's gathered bytes, [`PIXELS`] pixels' 16-bit pairs
/// and the last `k * k * cin % 4` values of each as `x - z_in`.
struct Patches {
    bytes: [i8; MAX_PATCH],
    pairs: [u32; PIXELS * MAX_PATCH / 2],
    tails: [[i32; 3]; PIXELS],
}

impl Patches {
    const fn new() -> Self {
        Patches {
            bytes: [0; MAX_PATCH],
            pairs: [0; PIXELS * MAX_PATCH / 2],
            tails: [[0; 3]; PIXELS],
        }
    }
}

/// Int8 convolution of one image, the fast kernel (equal to [`conv_image_reference`],
/// tested; needs `k * k * cin <= MAX_PATCH`), shaped like CMSIS-NN's: output pixels
/// [`PIXELS`] at a time, each one's receptive field gathered as bytes ([`gather`], padding
/// = `z_in`) and widened once to 16-bit `x - z_in` pairs ([`widen`]), interleaved by
/// pixel; then every output channel's weights are read once for all of them
/// ([`dot_4x1`]). The last `k * k * cin % 4` products of each dot product are plain
/// multiply-adds. At the end of the image the last pixel fills the group (computed and
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
    y: &mut [i8],
    scratch: &mut Patches,
) {
    let kk = conv.kernel * conv.kernel * input.c;
    let (quads, cout, width) = (kk / 4, output.c, output.w);
    let zz = pack(z_in as i16, z_in as i16);
    let pixels = output.h * width;
    for first in (0..pixels).step_by(PIXELS) {
        let group: [usize; PIXELS] = core::array::from_fn(|i| (first + i).min(pixels - 1));
        let xs = &mut scratch.pairs[..2 * PIXELS * quads];
        for (i, &px) in group.iter().enumerate() {
            let bytes = &mut scratch.bytes[..kk];
            gather(conv, input, pads, z_in, x, px / width, px % width, bytes);
            for (o, b) in xs.chunks_exact_mut(2 * PIXELS).zip(bytes.chunks_exact(4)) {
                o[2 * i..2 * i + 2].copy_from_slice(&widen(word(b), zz));
            }
            for (t, &v) in scratch.tails[i].iter_mut().zip(&bytes[4 * quads..]) {
                *t = v as i32 - z_in as i32;
            }
        }
        let xs: &[u32] = xs;
        for co in 0..cout {
            let w = &p.weights[co * kk..][..kk];
            let sums = dot_4x1(xs, w, p.bias[co]);
            for ((&px, acc), tail) in group.iter().zip(sums).zip(&scratch.tails) {
                let t: i32 = w[4 * quads..]
                    .iter()
                    .zip(tail)
                    .map(|(&w, &v)| v * w as i32)
                    .sum();
                let r = requantize(acc.wrapping_add(t), p.multiplier[co], p.shift[co]);
                y[px * cout + co] = clamp_i8(l.output.zero.saturating_add(r), l.act_min, l.act_max);
            }
        }
    }
}

/// Int8 dense layer over one sample (weights `[out, in]`).
fn dense_sample(z_in: i32, l: &QLayer<'_>, p: &QTensors<'_>, x: &[i8], y: &mut [i8]) {
    let n_in = x.len();
    for (u, o) in y.iter_mut().enumerate() {
        let w = &p.weights[u * n_in..][..n_in];
        let mut acc = p.bias[u];
        for (&a, &b) in x.iter().zip(w) {
            acc = acc.wrapping_add((a as i32 - z_in) * b as i32);
        }
        let r = requantize(acc, p.multiplier[u], p.shift[u]);
        *o = clamp_i8(l.output.zero.saturating_add(r), l.act_min, l.act_max);
    }
}

/// Int8 max-pool of one image: the largest `q` of each window (padding ignored).
fn pool_image(pool: &MaxPool, input: Shape, output: Shape, x: &[i8], y: &mut [i8]) {
    let c = input.c;
    // The same windows as the float max-pool (`window_axis`); the shape was checked.
    let before = |len| window_axis(len, pool.size, pool.stride, pool.padding).map_or(0, |(_, p)| p);
    let (pt, pl) = (before(input.h), before(input.w));
    for oy in 0..output.h {
        let y0 = (oy * pool.stride).saturating_sub(pt);
        let y1 = (oy * pool.stride + pool.size)
            .saturating_sub(pt)
            .min(input.h);
        for ox in 0..output.w {
            let x0 = (ox * pool.stride).saturating_sub(pl);
            let x1 = (ox * pool.stride + pool.size)
                .saturating_sub(pl)
                .min(input.w);
            let out = &mut y[(oy * output.w + ox) * c..][..c];
            out.fill(i8::MIN);
            for iy in y0..y1 {
                for ix in x0..x1 {
                    for (o, &v) in out.iter_mut().zip(&x[(iy * input.w + ix) * c..][..c]) {
                        *o = (*o).max(v);
                    }
                }
            }
        }
    }
}

/// Runs layer `i` of `net` on `n` samples.
fn layer_i8(net: &QNet<'_>, i: usize, n: usize, x: &[i8], y: &mut [i8]) -> Result<(), Error> {
    let arch = &net.arch;
    let (ins, outs) = arch.layer_io(i)?;
    let l = &net.layers[i];
    let z_in = if i == 0 {
        net.input.zero
    } else {
        net.layers[i - 1].output.zero
    };
    let xs = x.chunks_exact(ins.len()).take(n);
    let ys = y.chunks_exact_mut(outs.len());
    match arch.layers[i] {
        Layer::Conv2d(c) => {
            let p = params_of(l, "int8 conv2d parameters")?;
            let kk = c.kernel * c.kernel * ins.c;
            check_len("int8 conv2d weights", p.weights, kk * outs.c)?;
            check_len("int8 conv2d bias", p.bias, outs.c)?;
            check_len("int8 conv2d multipliers", p.multiplier, outs.c)?;
            check_len("int8 conv2d shifts", p.shift, outs.c)?;
            let pads = c.padding_before(ins)?;
            let mut scratch = Patches::new();
            let z8 = i8::try_from(z_in).ok().filter(|_| kk <= MAX_PATCH);
            for (xi, yi) in xs.zip(ys) {
                if let Some(z8) = z8 {
                    conv_image(&c, ins, outs, pads, z8, l, &p, xi, yi, &mut scratch);
                } else {
                    conv_image_reference(&c, ins, outs, pads, z_in, l, &p, xi, yi);
                }
            }
        }
        Layer::Dense(_) => {
            let p = params_of(l, "int8 dense parameters")?;
            check_len("int8 dense weights", p.weights, ins.len() * outs.len())?;
            check_len("int8 dense bias", p.bias, outs.len())?;
            check_len("int8 dense multipliers", p.multiplier, outs.len())?;
            check_len("int8 dense shifts", p.shift, outs.len())?;
            for (xi, yi) in xs.zip(ys) {
                dense_sample(z_in, l, &p, xi, yi);
            }
        }
        Layer::MaxPool(pool) => {
            for (xi, yi) in xs.zip(ys) {
                pool_image(&pool, ins, outs, xi, yi);
            }
        }
        Layer::Relu => {
            for (xi, yi) in xs.zip(ys) {
                for (o, &v) in yi.iter_mut().zip(xi) {
                    *o = (v as i32).max(z_in) as i8;
                }
            }
        }
        Layer::Flatten | Layer::Dropout(_) => {
            for (xi, yi) in xs.zip(ys) {
                yi.copy_from_slice(xi);
            }
        }
    }
    Ok(())
}

/// Int8 inference over `n` samples `x` (`[n, input]`, already quantized with
/// `net.input`) with two live buffers in `buf` ([`Arch::inference_len`]`(n)` bytes);
/// returns the int8 logits `[n, classes]` (a part of `buf`).
pub fn infer_i8<'b>(
    net: &QNet<'_>,
    x: &[i8],
    n: usize,
    buf: &'b mut [i8],
) -> Result<&'b [i8], Error> {
    let arch = &net.arch;
    arch.validate()?;
    if n == 0 {
        return Err(Error::EmptyBatch);
    }
    check_len("int8 layers", net.layers, arch.layers.len())?;
    check_len("int8 input batch", x, n.saturating_mul(arch.input.len()))?;
    check_len("int8 inference buffer", buf, arch.inference_len(n))?;
    let half = arch.max_len() * n;
    let (mut cur, mut next) = buf.split_at_mut(half);
    let mut cur_len = 0;
    for i in 0..arch.layers.len() {
        let len = n * arch.layer_io(i)?.1.len();
        // Copies, and a ReLU after a layer whose clamp already did it, change no value:
        // the previous output stays where it is (saves a pass over the activations).
        let identity = match arch.layers[i] {
            Layer::Flatten | Layer::Dropout(_) => true,
            Layer::Relu => {
                i > 0 && net.layers[i - 1].act_min as i32 >= net.layers[i - 1].output.zero
            }
            _ => false,
        };
        if identity && i > 0 {
            continue;
        }
        let xin = if i == 0 { x } else { &cur[..cur_len] };
        layer_i8(net, i, n, xin, &mut next[..len])?;
        core::mem::swap(&mut cur, &mut next);
        cur_len = len;
    }
    Ok(&cur[..cur_len])
}

/// Index of the largest int8 score (the first one on ties).
pub fn argmax_i8(x: &[i8]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::rng::Rng;
    use crate::Padding;
    use std::vec::Vec;

    type Store = (Vec<i8>, Vec<i32>, Vec<i32>, Vec<i32>);

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
                let mut scratch = Patches::new();
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
                    &mut y1,
                    &mut scratch,
                );
                conv_image_reference(&conv, input, out, pads, zi, &l, &p, &x, &mut y2);
                assert_eq!(y1, y2, "{h}x{w}x{cin} k{k} s{stride} -> {cout}, z_in {z}");
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

    #[test]
    fn rounding_rules() {
        // Halves round away from zero.
        assert_eq!(
            [rdivpot(5, 1), rdivpot(-5, 1), rdivpot(3, 1), rdivpot(-3, 1)],
            [3, -3, 2, -2]
        );
        assert_eq!([rdivpot(6, 2), rdivpot(-6, 2), rdivpot(7, 0)], [2, -2, 7]);
        assert_eq!(srdhm(i32::MIN, i32::MIN), i32::MAX);
        assert_eq!(srdhm(1 << 30, 1 << 30), 1 << 29);
        assert_eq!(quantize_multiplier(0.5), (1 << 30, 0));
        assert_eq!(quantize_multiplier(1.0), (1 << 30, 1));
        assert_eq!(quantize_multiplier(0.25), (1 << 30, -1));
        assert_eq!(quantize_multiplier(0.75), (1_610_612_736, 0));
        assert_eq!(quantize_multiplier(0.0), (0, 0));
        assert_eq!(quantize_multiplier(f64::NAN), (0, 0));
        // requantize(x, m, shift) is round(x * real) within one step, for many reals.
        let mut rng = Rng::new(9);
        for _ in 0..20_000 {
            let real = libm::exp(-12.0 * rng.uniform_f64());
            let (m, sh) = quantize_multiplier(real);
            let x = (rng.below(2_000_001) as i32) - 1_000_000;
            let got = requantize(x, m, sh) as f64;
            let want = x as f64 * real;
            assert!(
                (got - want).abs() <= 0.5 + 1e-6 * want.abs() + 1.0,
                "{x} * {real}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn conv_pool_dense_follow_the_real_arithmetic() {
        // A float network, quantized by hand, must give the float outputs within a step
        // or two of the output scale.
        const LAYERS: [Layer; 5] = [
            Layer::Conv2d(Conv2d::with(3, 1, Padding::Same, 4)),
            Layer::Relu,
            Layer::MaxPool(MaxPool::new(2, 2, Padding::Same)),
            Layer::Flatten,
            Layer::Dense(crate::layers::Dense::new(3)),
        ];
        let arch = Arch::new(Shape::new(5, 5, 2), &LAYERS);
        let mut rng = Rng::new(4);
        let mut params = std::vec![0.0f32; arch.param_count()];
        crate::init::init_params(&arch, crate::init::Init::He, 4, &mut params).unwrap();
        let n = 3;
        let x: Vec<f32> = (0..n * arch.input.len())
            .map(|_| rng.uniform_f64() as f32)
            .collect();
        // Float reference, keeping every layer's output.
        let mut acts = std::vec![0.0; arch.activations_len(n)];
        crate::net::forward(
            &arch,
            &params,
            &x,
            n,
            &mut acts,
            crate::net::Mode::Eval,
            &crate::net::Exec::REFERENCE,
            &mut [],
        )
        .unwrap();
        let mut outs = Vec::new();
        let mut off = 0;
        for i in 0..LAYERS.len() {
            let len = n * arch.layer_io(i).unwrap().1.len();
            outs.push(acts[off..off + len].to_vec());
            off += len;
        }
        let range = |v: &[f32]| {
            let (lo, hi) = v
                .iter()
                .fold((0.0f32, 0.0f32), |(a, b), &x| (a.min(x), b.max(x)));
            let scale = (hi - lo) / 255.0;
            QParams {
                scale,
                zero: (-128.0 - lo / scale).round() as i32,
            }
        };
        let q_in = QParams {
            scale: 1.0 / 255.0,
            zero: -128,
        };
        let xq: Vec<i8> = x
            .iter()
            .map(|&v| ((v * 255.0).round() as i32 - 128) as i8)
            .collect();
        let xr: Vec<f32> = xq.iter().map(|&q| q_in.dequantize(q)).collect();
        // Float reference again, on the quantized input.
        crate::net::forward(
            &arch,
            &params,
            &xr,
            n,
            &mut acts,
            crate::net::Mode::Eval,
            &crate::net::Exec::REFERENCE,
            &mut [],
        )
        .unwrap();
        let relu_out = range(&outs[1]);
        let logits_q = range(&outs[4]);
        // Per-channel weights, output channel first.
        // Per-output-channel symmetric weights, stored output channel first.
        let quant_layer = |i: usize, cout: usize, s_in: f32, out: QParams| {
            let p = &params[arch.param_range(i).unwrap()];
            let wlen = p.len() - cout;
            let mut st: Store = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for c in 0..cout {
                let col: Vec<f32> = (0..wlen / cout).map(|j| p[j * cout + c]).collect();
                let sw = col.iter().fold(0.0f32, |a, &v| a.max(v.abs())) / 127.0;
                st.0.extend(
                    col.iter()
                        .map(|&v| (v / sw).round().clamp(-127.0, 127.0) as i8),
                );
                st.1.push((p[wlen + c] / (s_in * sw)).round() as i32);
                let (m, sh) = quantize_multiplier((s_in * sw / out.scale) as f64);
                st.2.push(m);
                st.3.push(sh);
            }
            st
        };
        let conv = quant_layer(0, 4, q_in.scale, relu_out);
        let dense = quant_layer(4, 3, relu_out.scale, logits_q);
        fn t(s: &Store) -> QTensors<'_> {
            QTensors {
                weights: &s.0,
                bias: &s.1,
                multiplier: &s.2,
                shift: &s.3,
            }
        }
        let plain = |output: QParams| QLayer {
            params: None,
            output,
            act_min: -128,
            act_max: 127,
        };
        let layers = [
            QLayer {
                params: Some(t(&conv)),
                output: relu_out,
                act_min: relu_out.zero as i8,
                act_max: 127,
            },
            plain(relu_out),
            plain(relu_out),
            plain(relu_out),
            QLayer {
                params: Some(t(&dense)),
                output: logits_q,
                act_min: -128,
                act_max: 127,
            },
        ];
        let net = QNet {
            arch,
            input: q_in,
            layers: &layers,
        };
        let mut buf = std::vec![0i8; arch.inference_len(n)];
        let lq = infer_i8(&net, &xq, n, &mut buf).unwrap().to_vec();
        let lf = &acts[acts.len() - n * 3..];
        for (q, f) in lq.iter().zip(lf) {
            let r = logits_q.dequantize(*q);
            assert!(
                (r - f).abs() <= 3.0 * logits_q.scale,
                "{r} vs {f} (scale {})",
                logits_q.scale
            );
        }
    }
}
