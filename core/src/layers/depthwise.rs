//! Depthwise 2-D convolution with bias, stride, SAME/VALID padding and a channel
//! multiplier (TensorFlow's `depthwise_conv2d`).
//!
//! ```text
//! x  [n, h,  w,  c    ]      input, NHWC
//! w  [k, k, c, m      ]      weights, TensorFlow's depthwise layout
//! b  [c * m]                 bias, one per output channel
//! y  [n, oh, ow, c * m]      y[n,oy,ox,ci*m+j] = b[ci*m+j]
//!                               + sum_{ky,kx} x[n, oy*s+ky-pt, ox*s+kx-pl, ci] * w[ky,kx,ci,j]
//!                            (positions outside x are zeros; oh, ow, pt, pl from `Padding`)
//! ```
//! Each input channel is convolved with its own `m` filters and nothing mixes channels.
//! Flat, the weights are `[k*k, c*m]`: the `(ky, kx)` row then the output channel, so an
//! output channel's weights are a column, as a convolution's are (`[k*k*cin, cout]`).
//! The int8 weights are stored output channel first, `[c*m, k, k, 1]`.

use core::fmt;

use super::{ParamShapes, Record, Site};
use crate::error::{check_len, Error, ShapeError};
use crate::quant::{clamp_i8, params_of, requantize, QLayer};
use crate::shape::{window_axis, window_output, Padding, Shape};

/// The kind code of depthwise convolution in the weights file; its record is `(padding,
/// a = kernel, b = stride, c = multiplier)`.
pub const KIND: u8 = 7;

/// A depthwise convolution's configuration: a square `kernel x kernel` window, `multiplier`
/// output channels per input channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepthwiseConv2d {
    /// Kernel height and width.
    pub kernel: usize,
    /// Stride along both axes.
    pub stride: usize,
    /// Border handling.
    pub padding: Padding,
    /// Output channels per input channel (TensorFlow's `depth_multiplier`).
    pub multiplier: usize,
}

/// Geometry of one depthwise convolution, derived once.
#[derive(Clone, Copy, Debug)]
struct Geom {
    input: Shape,
    output: Shape,
    k: usize,
    s: usize,
    m: usize,
    pt: usize,
    pl: usize,
}

impl Geom {
    /// Input row (or column) of output position `o` and kernel offset `kk` along an axis
    /// of `len` with `pad` before, or `None` in the padding.
    #[inline]
    fn src(&self, o: usize, kk: usize, pad: usize, len: usize) -> Option<usize> {
        let i = (o * self.s + kk).checked_sub(pad)?;
        (i < len).then_some(i)
    }
}

impl DepthwiseConv2d {
    /// A `kernel x kernel` depthwise convolution with the given stride, padding and
    /// channel multiplier.
    pub const fn new(kernel: usize, stride: usize, padding: Padding, multiplier: usize) -> Self {
        DepthwiseConv2d {
            kernel,
            stride,
            padding,
            multiplier,
        }
    }

    /// This layer's record in the weights file.
    pub(crate) fn record(&self) -> Record {
        Record {
            kind: KIND,
            padding: self.padding.code(),
            a: self.kernel as u32,
            b: self.stride as u32,
            c: self.multiplier as u32,
        }
    }

    /// The layer a record of [`KIND`] describes.
    pub(crate) fn from_record(r: &Record) -> Result<Self, &'static str> {
        let padding = r.padding()?;
        Ok(DepthwiseConv2d::new(
            r.a as usize,
            r.b as usize,
            padding,
            r.c as usize,
        ))
    }

    /// The Rust expression that builds this layer.
    pub(crate) fn write_rust(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "microconv::Layer::DepthwiseConv2d(microconv::layers::DepthwiseConv2d::new({}, {}, {}, {}))",
            self.kernel,
            self.stride,
            self.padding.rust_path(),
            self.multiplier
        )
    }

    /// Output shape for `input`: `c * multiplier` channels.
    pub const fn output_shape(&self, input: Shape) -> Result<Shape, ShapeError> {
        if self.multiplier == 0 {
            return Err(ShapeError::Zero);
        }
        let Some(cout) = input.c.checked_mul(self.multiplier) else {
            return Err(ShapeError::Overflow);
        };
        window_output(input, self.kernel, self.stride, self.padding, cout)
    }

    /// Output channels for `input`, `c * multiplier` (saturating).
    pub const fn out_channels(&self, input: Shape) -> usize {
        input.c.saturating_mul(self.multiplier)
    }

    /// Number of weights, `k * k * c * multiplier` (saturating).
    pub const fn weight_len(&self, input: Shape) -> usize {
        self.kernel
            .saturating_mul(self.kernel)
            .saturating_mul(self.out_channels(input))
    }

    /// Number of parameters: weights then biases.
    pub const fn param_len(&self, input: Shape) -> usize {
        self.weight_len(input)
            .saturating_add(self.out_channels(input))
    }

    /// The weights' and biases' shapes for `input`: `[k, k, c, m]` weights (`[c*m, k, k,
    /// 1]` in int8), `c * m` biases. One output sees `k * k` inputs.
    pub const fn param_shapes(&self, input: Shape) -> ParamShapes {
        let (k, c, m) = (self.kernel, input.c, self.multiplier);
        let cout = self.out_channels(input);
        ParamShapes {
            weights: (4, [k, k, c, m]),
            weights_i8: (4, [cout, k, k, 1]),
            bias: cout,
            fan_in: k * k,
            fan_out: k * k * m,
        }
    }

    fn geom(&self, input: Shape) -> Result<Geom, Error> {
        let e = |reason| Error::Shape {
            layer: usize::MAX,
            reason,
        };
        let output = self.output_shape(input).map_err(e)?;
        let (_, pt) = window_axis(input.h, self.kernel, self.stride, self.padding).map_err(e)?;
        let (_, pl) = window_axis(input.w, self.kernel, self.stride, self.padding).map_err(e)?;
        Ok(Geom {
            input,
            output,
            k: self.kernel,
            s: self.stride,
            m: self.multiplier,
            pt,
            pl,
        })
    }

    /// Zero rows above and zero columns left of the input that the window sees.
    pub fn padding_before(&self, input: Shape) -> Result<(usize, usize), Error> {
        let g = self.geom(input)?;
        Ok((g.pt, g.pl))
    }

    fn check(&self, g: &Geom, n: usize, x: usize, w: usize, b: usize) -> Result<(), Error> {
        Error::expect_len("depthwise input", n.saturating_mul(g.input.len()), x)?;
        Error::expect_len("depthwise weights", self.weight_len(g.input), w)?;
        Error::expect_len("depthwise bias", g.output.c, b)
    }

    /// Forward pass over a batch of `n` images (see the module doc for shapes).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        input: Shape,
        n: usize,
        x: &[f32],
        w: &[f32],
        b: &[f32],
        y: &mut [f32],
    ) -> Result<(), Error> {
        let g = self.geom(input)?;
        self.check(&g, n, x.len(), w.len(), b.len())?;
        check_len("depthwise output", y, n.saturating_mul(g.output.len()))?;
        let (c, cout, m) = (g.input.c, g.output.c, g.m);
        for (xi, yi) in x
            .chunks_exact(g.input.len())
            .zip(y.chunks_exact_mut(g.output.len()))
        {
            for oy in 0..g.output.h {
                for ox in 0..g.output.w {
                    let out = &mut yi[(oy * g.output.w + ox) * cout..][..cout];
                    // Bias, then the window's positions in (ky, kx) order.
                    out.copy_from_slice(b);
                    for ky in 0..g.k {
                        let Some(iy) = g.src(oy, ky, g.pt, g.input.h) else {
                            continue;
                        };
                        for kx in 0..g.k {
                            let Some(ix) = g.src(ox, kx, g.pl, g.input.w) else {
                                continue;
                            };
                            let xs = &xi[(iy * g.input.w + ix) * c..][..c];
                            let wk = &w[(ky * g.k + kx) * cout..][..cout];
                            if m == 1 {
                                for ((o, &xv), &wv) in out.iter_mut().zip(xs).zip(wk) {
                                    *o += xv * wv;
                                }
                            } else {
                                for ((o, &xv), wv) in
                                    out.chunks_exact_mut(m).zip(xs).zip(wk.chunks_exact(m))
                                {
                                    for (o, &wv) in o.iter_mut().zip(wv) {
                                        *o += xv * wv;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Backward pass: accumulates `dw += dL/dw`, `db += dL/db`, and, if `dx` is given,
    /// overwrites it with `dL/dx`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        input: Shape,
        n: usize,
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        mut dx: Option<&mut [f32]>,
        dw: &mut [f32],
        db: &mut [f32],
    ) -> Result<(), Error> {
        let g = self.geom(input)?;
        self.check(&g, n, x.len(), w.len(), db.len())?;
        check_len(
            "depthwise output gradient",
            dy,
            n.saturating_mul(g.output.len()),
        )?;
        check_len("depthwise weight gradient", dw, w.len())?;
        if let Some(dx) = dx.as_deref_mut() {
            check_len("depthwise input gradient", dx, x.len())?;
            dx.fill(0.0);
        }
        let (c, cout, m) = (g.input.c, g.output.c, g.m);
        let (in_img, out_img) = (g.input.len(), g.output.len());
        for (ni, dyi) in dy.chunks_exact(out_img).enumerate() {
            let xi = &x[ni * in_img..(ni + 1) * in_img];
            for oy in 0..g.output.h {
                for ox in 0..g.output.w {
                    let d = &dyi[(oy * g.output.w + ox) * cout..][..cout];
                    for (a, &v) in db.iter_mut().zip(d) {
                        *a += v;
                    }
                    for ky in 0..g.k {
                        let Some(iy) = g.src(oy, ky, g.pt, g.input.h) else {
                            continue;
                        };
                        for kx in 0..g.k {
                            let Some(ix) = g.src(ox, kx, g.pl, g.input.w) else {
                                continue;
                            };
                            let at = (iy * g.input.w + ix) * c;
                            let wo = (ky * g.k + kx) * cout;
                            for ci in 0..c {
                                let xv = xi[at + ci];
                                let mut acc = 0.0;
                                for j in ci * m..(ci + 1) * m {
                                    dw[wo + j] += xv * d[j];
                                    acc += w[wo + j] * d[j];
                                }
                                if let Some(dx) = dx.as_deref_mut() {
                                    dx[ni * in_img + at + ci] += acc;
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Int8 forward pass (weights `[c*m, k, k, 1]`, per-output-channel scales; the
    /// arithmetic of [`crate::quant`], padding positions contributing nothing).
    pub(crate) fn forward_i8(
        &self,
        site: &Site,
        l: &QLayer<'_>,
        z_in: i32,
        x: &[i8],
        y: &mut [i8],
    ) -> Result<(), Error> {
        let g = self.geom(site.input)?;
        let (c, cout, m, kk) = (g.input.c, g.output.c, g.m, g.k * g.k);
        let p = params_of(l, "int8 depthwise parameters")?;
        check_len("int8 depthwise weights", p.weights, kk * cout)?;
        check_len("int8 depthwise bias", p.bias, cout)?;
        check_len("int8 depthwise multipliers", p.multiplier, cout)?;
        check_len("int8 depthwise shifts", p.shift, cout)?;
        check_len("int8 depthwise input", x, site.n * g.input.len())?;
        check_len("int8 depthwise output", y, site.n * g.output.len())?;
        for (xi, yi) in x
            .chunks_exact(g.input.len())
            .zip(y.chunks_exact_mut(g.output.len()))
        {
            for oy in 0..g.output.h {
                for ox in 0..g.output.w {
                    let out = &mut yi[(oy * g.output.w + ox) * cout..][..cout];
                    for (oc, o) in out.iter_mut().enumerate() {
                        let ci = oc / m;
                        let wo = &p.weights[oc * kk..][..kk];
                        let mut acc = p.bias[oc];
                        for ky in 0..g.k {
                            let Some(iy) = g.src(oy, ky, g.pt, g.input.h) else {
                                continue;
                            };
                            for kx in 0..g.k {
                                let Some(ix) = g.src(ox, kx, g.pl, g.input.w) else {
                                    continue;
                                };
                                let xv = xi[(iy * g.input.w + ix) * c + ci] as i32 - z_in;
                                acc = acc.wrapping_add(xv * wo[ky * g.k + kx] as i32);
                            }
                        }
                        let r = requantize(acc, p.multiplier[oc], p.shift[oc]);
                        *o = clamp_i8(l.output.zero.saturating_add(r), l.act_min, l.act_max);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::layers::{Conv2d, ConvAlgo};
    use crate::quant::{quantize_multiplier, QParams, QTensors};
    use crate::rng::Rng;
    use crate::testutil::{check_grad, dot, rand_vec};
    use std::vec;
    use std::vec::Vec;

    /// (h, w, c, kernel, stride, padding, multiplier).
    const CASES: [(usize, usize, usize, usize, usize, Padding, usize); 6] = [
        (6, 6, 3, 3, 1, Padding::Same, 1),
        (5, 7, 2, 3, 2, Padding::Same, 2),
        (7, 5, 2, 2, 2, Padding::Same, 1),
        (6, 6, 1, 3, 1, Padding::Valid, 3),
        (7, 7, 4, 3, 2, Padding::Valid, 1),
        (4, 4, 2, 5, 1, Padding::Same, 2),
    ];

    #[test]
    fn gradients_match_finite_differences() {
        for (i, &(h, w_, c, k, s, pad, m)) in CASES.iter().enumerate() {
            let dw_layer = DepthwiseConv2d::new(k, s, pad, m);
            let input = Shape::new(h, w_, c);
            let out = dw_layer.output_shape(input).unwrap();
            assert_eq!(out.c, c * m);
            let n = 2;
            let x = rand_vec(1 + i as u64, n * input.len(), 1.0);
            let w = rand_vec(2, dw_layer.weight_len(input), 0.5);
            let b = rand_vec(3, out.c, 0.5);
            let r = rand_vec(4, n * out.len(), 1.0);
            let loss = |x: &[f32], w: &[f32], b: &[f32]| {
                let mut y = vec![0.0; n * out.len()];
                dw_layer.forward(input, n, x, w, b, &mut y).unwrap();
                dot(&y, &r)
            };
            let (mut dx, mut dw, mut db) =
                (vec![9.0; x.len()], vec![0.0; w.len()], vec![0.0; out.c]);
            dw_layer
                .backward(input, n, &x, &w, &r, Some(&mut dx), &mut dw, &mut db)
                .unwrap();
            check_grad(&std::format!("dw{i} dx"), &x, &dx, 1e-2, 2e-3, |x| {
                loss(x, &w, &b)
            });
            check_grad(&std::format!("dw{i} dw"), &w, &dw, 1e-2, 2e-3, |w| {
                loss(&x, w, &b)
            });
            check_grad(&std::format!("dw{i} db"), &b, &db, 1e-2, 2e-3, |b| {
                loss(&x, &w, b)
            });
        }
    }

    /// With one input channel, a depthwise convolution is a convolution with `m`
    /// filters: the same weights and the same outputs, to rounding.
    #[test]
    fn one_channel_equals_conv2d() {
        let input = Shape::new(6, 5, 1);
        let (d, conv) = (
            DepthwiseConv2d::new(3, 2, Padding::Same, 4),
            Conv2d::with(3, 2, Padding::Same, 4),
        );
        let out = d.output_shape(input).unwrap();
        assert_eq!(out, conv.output_shape(input).unwrap());
        let x = rand_vec(5, 2 * input.len(), 1.0);
        let w = rand_vec(6, d.weight_len(input), 1.0);
        let b = rand_vec(7, 4, 1.0);
        let (mut y1, mut y2) = (vec![0.0; 2 * out.len()], vec![0.0; 2 * out.len()]);
        d.forward(input, 2, &x, &w, &b, &mut y1).unwrap();
        conv.forward(
            input,
            2,
            &x,
            &w,
            &b,
            &mut y2,
            ConvAlgo::Direct,
            &mut [],
            &crate::gemm::PortableGemm,
        )
        .unwrap();
        for (a, b) in y1.iter().zip(&y2) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn bad_shapes_and_buffers_are_errors() {
        let d = DepthwiseConv2d::new(3, 1, Padding::Same, 2);
        let input = Shape::new(4, 4, 3);
        assert_eq!(d.output_shape(input), Ok(Shape::new(4, 4, 6)));
        assert_eq!(
            DepthwiseConv2d::new(3, 1, Padding::Same, 0).output_shape(input),
            Err(ShapeError::Zero)
        );
        assert_eq!(
            DepthwiseConv2d::new(5, 1, Padding::Valid, 1).output_shape(input),
            Err(ShapeError::WindowLargerThanInput)
        );
        assert_eq!(
            DepthwiseConv2d::new(1, 1, Padding::Valid, usize::MAX).output_shape(input),
            Err(ShapeError::Overflow)
        );
        let (x, w, b) = ([0.0; 48], [0.0; 54], [0.0; 6]);
        let mut y = [0.0; 96];
        assert!(d.forward(input, 1, &x, &w, &b, &mut y).is_ok());
        assert!(matches!(
            d.forward(input, 1, &x, &w[..53], &b, &mut y),
            Err(Error::BufferLen {
                buffer: "depthwise weights",
                expected: 54,
                actual: 53
            })
        ));
        assert!(d.forward(input, 1, &x, &w, &b[..5], &mut y).is_err());
        assert!(d.forward(input, 1, &x, &w, &b, &mut y[..95]).is_err());
        let (mut dw, mut db) = ([0.0; 54], [0.0; 6]);
        assert!(d
            .backward(input, 1, &x, &w, &y[..95], None, &mut dw, &mut db)
            .is_err());
        assert!(d
            .backward(input, 1, &x, &w, &y, Some(&mut [0.0; 47]), &mut dw, &mut db)
            .is_err());
    }

    /// Per-channel symmetric weights and requantization done by hand: the int8 outputs
    /// must be the float ones within about one output step, and equal an integer
    /// reference written independently (over the padded input).
    #[test]
    fn int8_matches_the_float_and_an_integer_reference() {
        for &(h, w_, c, k, s, pad, m) in &CASES {
            let d = DepthwiseConv2d::new(k, s, pad, m);
            let input = Shape::new(h, w_, c);
            let out = d.output_shape(input).unwrap();
            let n = 2;
            let mut rng = Rng::new(11);
            let xq: Vec<i8> = (0..n * input.len())
                .map(|_| (rng.below(256) as i32 - 128) as i8)
                .collect();
            let q_in = QParams {
                scale: 0.02,
                zero: -5,
            };
            let x: Vec<f32> = xq.iter().map(|&q| q_in.dequantize(q)).collect();
            let w = rand_vec(12, d.weight_len(input), 0.7);
            let b = rand_vec(13, out.c, 0.3);
            let mut yf = vec![0.0; n * out.len()];
            d.forward(input, n, &x, &w, &b, &mut yf).unwrap();
            let (lo, hi) = yf
                .iter()
                .fold((0.0f32, 0.0f32), |(a, z), &v| (a.min(v), z.max(v)));
            let s_out = (hi - lo) / 255.0;
            let q_out = QParams {
                scale: s_out,
                zero: (-128.0 - lo / s_out).round() as i32,
            };
            let kk = k * k;
            let (mut wq, mut bq, mut mq, mut sq) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for oc in 0..out.c {
                let col: Vec<f32> = (0..kk).map(|j| w[j * out.c + oc]).collect();
                let sw = col.iter().fold(0.0f32, |a, &v| a.max(v.abs())) / 127.0;
                wq.extend(col.iter().map(|&v| (v / sw).round() as i8));
                bq.push((b[oc] / (q_in.scale * sw)).round() as i32);
                let (mm, sh) = quantize_multiplier((q_in.scale * sw / s_out) as f64);
                mq.push(mm);
                sq.push(sh);
            }
            let l = QLayer {
                params: Some(QTensors {
                    weights: &wq,
                    bias: &bq,
                    multiplier: &mq,
                    shift: &sq,
                }),
                output: q_out,
                act_min: -128,
                act_max: 127,
            };
            let site = Site {
                index: 0,
                input,
                output: out,
                n,
            };
            let mut yq = vec![0i8; n * out.len()];
            d.forward_i8(&site, &l, q_in.zero, &xq, &mut yq).unwrap();
            for (q, f) in yq.iter().zip(&yf) {
                let r = q_out.dequantize(*q);
                assert!((r - f).abs() <= 2.0 * s_out, "{r} vs {f} (step {s_out})");
            }
            // Integer reference: pad the input with its zero point, then plain loops.
            let (pt, pl) = d.padding_before(input).unwrap();
            let (ph, pw) = ((out.h - 1) * s + k, (out.w - 1) * s + k);
            for img in 0..n {
                let mut padded = vec![q_in.zero; ph * pw * c];
                for yy in 0..h {
                    for xx in 0..w_ {
                        for ch in 0..c {
                            if yy + pt < ph && xx + pl < pw {
                                padded[((yy + pt) * pw + xx + pl) * c + ch] =
                                    xq[img * input.len() + (yy * w_ + xx) * c + ch] as i32;
                            }
                        }
                    }
                }
                for oy in 0..out.h {
                    for ox in 0..out.w {
                        for oc in 0..out.c {
                            let mut acc = bq[oc] as i64;
                            for ky in 0..k {
                                for kx in 0..k {
                                    let v = padded[((oy * s + ky) * pw + ox * s + kx) * c + oc / m];
                                    acc +=
                                        (v - q_in.zero) as i64 * wq[oc * kk + ky * k + kx] as i64;
                                }
                            }
                            let r = requantize(acc as i32, mq[oc], sq[oc]);
                            let want = (q_out.zero + r).clamp(-128, 127) as i8;
                            let got = yq[img * out.len() + (oy * out.w + ox) * out.c + oc];
                            assert_eq!(got, want, "({oy}, {ox}, {oc})");
                        }
                    }
                }
            }
            assert!(d
                .forward_i8(&site, &l, q_in.zero, &xq[1..], &mut yq)
                .is_err());
        }
    }
}
