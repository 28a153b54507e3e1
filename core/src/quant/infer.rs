//! Int8 inference over a whole network ([`QNet`]): two live buffers, one layer after the
//! other, each layer's int8 kernel from its file under [`crate::layers`].

use super::{QLayer, QParams};
use crate::arch::Arch;
use crate::error::{check_len, Error};
use crate::layers::Site;

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

/// Runs layer `i` of `net` on `n` samples.
pub(crate) fn layer_i8(
    net: &QNet<'_>,
    i: usize,
    n: usize,
    x: &[i8],
    y: &mut [i8],
) -> Result<(), Error> {
    let arch = &net.arch;
    let (input, output) = arch.layer_io(i)?;
    let z_in = if i == 0 {
        net.input.zero
    } else {
        net.layers[i - 1].output.zero
    };
    let site = Site {
        index: i,
        input,
        output,
        n,
    };
    arch.layers[i].forward_i8(&site, &net.layers[i], z_in, x, y)
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
        let prev_clamped =
            i > 0 && net.layers[i - 1].act_min as i32 >= net.layers[i - 1].output.zero;
        let identity = arch.layers[i].int8_identity(prev_clamped);
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
    use crate::layers::{Conv2d, Layer, MaxPool};
    use crate::quant::{quantize_multiplier, QTensors};
    use crate::rng::Rng;
    use crate::shape::Shape;
    use crate::Padding;
    use std::vec::Vec;

    type Store = (Vec<i8>, Vec<i32>, Vec<i32>, Vec<i32>);

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
