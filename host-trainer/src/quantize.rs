//! Post-training int8 quantization (`host-trainer quantize`), TensorFlow Lite's scheme
//! (the arithmetic is documented in `microconv::quant`):
//!
//! - weights: symmetric, one scale per output channel, `s_w[c] = max |w[., c]| / 127`,
//!   `q = round(w / s_w[c])` (half away from zero) in `[-127, 127]`;
//! - activations: asymmetric, one `(scale, zero)` per layer output, from the **minimum and
//!   maximum** of that output over the calibration images (the first `calibration`
//!   training images; 1,000 by default), widened to include 0, `scale = (max - min) / 255`,
//!   `zero = round(-128 - min / scale)`; a ReLU after a convolution or dense layer is
//!   folded into its clamp (`act_min = zero`), and max-pool, flatten and dropout keep their
//!   input's quantization;
//! - input: pixels `p` in 0..=255 are `q = p - 128` with `scale = 1/255, zero = -128`,
//!   exactly the float input `p / 255`;
//! - bias: `round(b / (s_in * s_w[c]))` as i32; multiplier: `s_in * s_w[c] / s_out` split by
//!   `quantize_multiplier`.
//!
//! The host then runs the core's int8 kernels, the same code the firmware runs.

use anyhow::{bail, Result};
use microconv::net::{self, Mode};
use microconv::quant::{argmax_i8, infer_i8, quantize_multiplier, QLayer, QNet, QParams, QTensors};
use microconv::{Arch, Layer};

use crate::engine::{fast, im2col_images, split};

/// One layer's int8 data, owned.
#[derive(Clone, Debug)]
pub struct OwnedLayer {
    /// Weights (output channel first), biases, multipliers and shifts; empty for layers
    /// without parameters.
    pub weights: Vec<i8>,
    /// See `microconv::quant::QTensors`.
    pub bias: Vec<i32>,
    /// See `microconv::quant::QTensors`.
    pub multiplier: Vec<i32>,
    /// See `microconv::quant::QTensors`.
    pub shift: Vec<i32>,
    /// Whether the layer has parameters.
    pub has_params: bool,
    /// Output quantization.
    pub output: QParams,
    /// Output clamp.
    pub act_min: i8,
    /// Output clamp.
    pub act_max: i8,
}

/// A quantized network: the float network's layer list with int8 data.
#[derive(Clone, Debug)]
pub struct QuantModel {
    /// The layers.
    pub arch: Arch<'static>,
    /// Input quantization (`1/255`, `-128`).
    pub input: QParams,
    /// One per layer.
    pub layers: Vec<OwnedLayer>,
}

/// The input quantization: 8-bit pixels `p` become `p - 128`.
pub const INPUT: QParams = QParams {
    scale: 1.0 / 255.0,
    zero: -128,
};

/// Scale and zero point covering `[lo, hi]` (widened to include 0).
fn qparams(lo: f32, hi: f32) -> QParams {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
    let zero = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i32;
    QParams { scale, zero }
}

impl QuantModel {
    /// The core's view of this model.
    pub fn qlayers(&self) -> Vec<QLayer<'_>> {
        self.layers
            .iter()
            .map(|l| QLayer {
                params: l.has_params.then_some(QTensors {
                    weights: &l.weights,
                    bias: &l.bias,
                    multiplier: &l.multiplier,
                    shift: &l.shift,
                }),
                output: l.output,
                act_min: l.act_min,
                act_max: l.act_max,
            })
            .collect()
    }

    /// Bytes of parameters: int8 weights and int32 biases, multipliers and shifts.
    pub fn param_bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.weights.len() + 4 * (l.bias.len() + l.multiplier.len() + l.shift.len()))
            .sum()
    }

    /// Int8 logits `[n, classes]` for `n` 8-bit images, on `threads` threads.
    pub fn predict(&self, pixels: &[u8], n: usize, threads: usize) -> Result<Vec<i8>> {
        let arch = &self.arch;
        let inlen = arch.input.len();
        if pixels.len() != n * inlen {
            bail!("{} pixels for {n} images of {inlen}", pixels.len());
        }
        let classes = arch.classes();
        let layers = self.qlayers();
        let net = QNet {
            arch: *arch,
            input: self.input,
            layers: &layers,
        };
        let mut out = vec![0i8; n * classes];
        std::thread::scope(|s| -> Result<()> {
            let mut rest = &mut out[..];
            let mut handles = Vec::new();
            for r in split(n, threads) {
                let (mine, tail) = rest.split_at_mut(r.len() * classes);
                rest = tail;
                let net = &net;
                handles.push(s.spawn(move || -> Result<(), microconv::Error> {
                    let mut buf = vec![0i8; arch.inference_len(1)];
                    let mut x = vec![0i8; inlen];
                    for (i, o) in r.zip(mine.chunks_exact_mut(classes)) {
                        for (q, &p) in x.iter_mut().zip(&pixels[i * inlen..(i + 1) * inlen]) {
                            *q = (p as i32 - 128) as i8;
                        }
                        o.copy_from_slice(infer_i8(net, &x, 1, &mut buf)?);
                    }
                    Ok(())
                }));
            }
            for h in handles {
                h.join()
                    .map_err(|_| anyhow::anyhow!("an inference thread panicked"))??;
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// The quantized 6.0 of `q` (ReLU6's upper clamp), within the i8 range.
fn q_six(q: QParams) -> i8 {
    (q.zero as f64 + (6.0 / q.scale as f64).round()).clamp(-128.0, 127.0) as i8
}

/// Quantizes `params` of `arch`, calibrating the activations on `calib` (`[n, input]`,
/// floats in [0, 1]).
pub fn quantize(
    arch: Arch<'static>,
    params: &[f32],
    calib: &[f32],
    n: usize,
) -> Result<QuantModel> {
    arch.validate()?;
    if params.len() != arch.param_count() {
        bail!(
            "{} parameters, the architecture has {}",
            params.len(),
            arch.param_count()
        );
    }
    if n == 0 || calib.len() != n * arch.input.len() {
        bail!("calibration needs at least one image");
    }
    let nl = arch.layers.len();
    // Minimum and maximum of every layer's output over the calibration images.
    let mut lo = vec![f32::INFINITY; nl];
    let mut hi = vec![f32::NEG_INFINITY; nl];
    const CHUNK: usize = 100;
    let exec = fast();
    let mut acts = vec![0.0; arch.activations_len(CHUNK)];
    let mut scratch = vec![0.0; arch.im2col_len(im2col_images(&arch, CHUNK))];
    for start in (0..n).step_by(CHUNK) {
        let m = CHUNK.min(n - start);
        let x = &calib[start * arch.input.len()..(start + m) * arch.input.len()];
        let acts = &mut acts[..arch.activations_len(m)];
        net::forward(&arch, params, x, m, acts, Mode::Eval, &exec, &mut scratch)?;
        let mut off = 0;
        for i in 0..nl {
            let len = m * arch.layer_io(i)?.1.len();
            for &v in &acts[off..off + len] {
                lo[i] = lo[i].min(v);
                hi[i] = hi[i].max(v);
            }
            off += len;
        }
    }
    if let Some(i) = (0..nl).find(|&i| !(lo[i].is_finite() && hi[i].is_finite())) {
        bail!("layer {i}'s outputs are not finite on the calibration images");
    }
    let mut layers: Vec<OwnedLayer> = Vec::with_capacity(nl);
    let mut s_in = INPUT;
    for i in 0..nl {
        let (ins, outs) = arch.layer_io(i)?;
        let fused_relu = matches!(arch.layers.get(i + 1), Some(Layer::Relu | Layer::Relu6));
        let fused_relu6 = matches!(arch.layers.get(i + 1), Some(Layer::Relu6));
        let mut l = OwnedLayer {
            weights: Vec::new(),
            bias: Vec::new(),
            multiplier: Vec::new(),
            shift: Vec::new(),
            has_params: false,
            output: s_in,
            act_min: i8::MIN,
            act_max: i8::MAX,
        };
        match arch.layers[i] {
            Layer::Conv2d(_) | Layer::Dense(_) | Layer::DepthwiseConv2d(_) => {
                let stat = if fused_relu { i + 1 } else { i };
                l.output = qparams(lo[stat], hi[stat]);
                if fused_relu {
                    l.act_min = l.output.zero as i8;
                }
                if fused_relu6 {
                    l.act_max = q_six(l.output);
                }
                let cout = if matches!(arch.layers[i], Layer::Dense(_)) {
                    outs.len()
                } else {
                    outs.c
                };
                let p = &params[arch.param_range(i)?];
                let wlen = p.len() - cout;
                let per = wlen / cout;
                for c in 0..cout {
                    let amax = (0..per).fold(0.0f32, |a, j| a.max(p[j * cout + c].abs()));
                    let sw = if amax > 0.0 { amax / 127.0 } else { 1.0 };
                    l.weights.extend(
                        (0..per).map(|j| (p[j * cout + c] / sw).round().clamp(-127.0, 127.0) as i8),
                    );
                    let b = (p[wlen + c] as f64 / (s_in.scale as f64 * sw as f64)).round();
                    l.bias
                        .push(b.clamp(i32::MIN as f64, i32::MAX as f64) as i32);
                    let (m, sh) =
                        quantize_multiplier(s_in.scale as f64 * sw as f64 / l.output.scale as f64);
                    l.multiplier.push(m);
                    l.shift.push(sh);
                }
                l.has_params = true;
                let _ = ins;
            }
            Layer::Relu => {
                l.act_min = s_in.zero as i8;
            }
            Layer::Relu6 => {
                l.act_min = s_in.zero as i8;
                l.act_max = q_six(s_in);
            }
            // Pools keep their input's scale and zero point (TensorFlow Lite's rule).
            Layer::MaxPool(_)
            | Layer::AvgPool(_)
            | Layer::GlobalAvgPool
            | Layer::Flatten
            | Layer::Dropout(_) => {}
            Layer::BatchNorm(_) => bail!(
                "layer {i} (batchnorm): fold it into the layer before first (host_trainer::fold)"
            ),
        }
        s_in = l.output;
        layers.push(l);
    }
    Ok(QuantModel {
        arch,
        input: INPUT,
        layers,
    })
}

impl QuantModel {
    /// The int8 weights file (version 2, `docs/weights-format.md`) of this model, checked
    /// by reading it back with the firmware's reader.
    pub fn to_file(&self) -> Result<Vec<u8>> {
        let layers = self.qlayers();
        let len = microconv::qformat::file_len(&self.arch).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut bytes = vec![0u8; len];
        microconv::qformat::write(&self.arch, self.input, &layers, &mut bytes)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let stored = crate::export::WeightsFile::from_bytes(&bytes);
        let back = microconv::qformat::QModel::parse(stored.bytes())
            .map_err(|e| anyhow::anyhow!("the int8 file does not parse: {e}"))?;
        let (a, b) = (back.net(), layers);
        let same = a.layers.len() == b.len()
            && a.layers.iter().zip(&b).all(|(x, y)| {
                x.output == y.output
                    && (x.act_min, x.act_max) == (y.act_min, y.act_max)
                    && match (x.params, y.params) {
                        (Some(p), Some(q)) => {
                            (p.weights, p.bias, p.multiplier, p.shift)
                                == (q.weights, q.bias, q.multiplier, q.shift)
                        }
                        (None, None) => true,
                        _ => false,
                    }
            });
        if !same || a.input != self.input {
            bail!("the int8 file does not round-trip");
        }
        Ok(bytes)
    }
}

/// Fraction of `labels` that the argmax of int8 `logits` gets right.
pub fn accuracy_i8(logits: &[i8], labels: &[u8]) -> f64 {
    crate::engine::accuracy_by(logits, labels, argmax_i8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{default_dir, load_mnist};
    use crate::engine::{accuracy, predict};
    use crate::export::WeightsFile;

    #[test]
    fn shipped_model_loses_at_most_a_fifth_of_a_point() {
        let wf = WeightsFile::read(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../firmware/models/small.mcw"
        )))
        .unwrap();
        let model = wf.model().unwrap();
        let params = model.params().to_vec();
        let arch = microconv::archs::SMALL;
        let (train, test) = load_mnist(&default_dir()).unwrap();
        let mut calib = vec![0.0; 1000 * 784];
        train.fill(&(0..1000).collect::<Vec<_>>(), &mut calib);
        let q = quantize(arch, &params, &calib, 1000).unwrap();
        let f32_acc = accuracy(
            &predict(&arch, &params, &test.to_f32(), test.len(), 2).unwrap(),
            &test.labels,
        );
        let logits = q.predict(&test.images, test.len(), 2).unwrap();
        let i8_acc = accuracy_i8(&logits, &test.labels);
        eprintln!(
            "f32 {f32_acc:.4}, int8 {i8_acc:.4}, {} parameter bytes",
            q.param_bytes()
        );
        assert!(i8_acc >= f32_acc - 0.002, "int8 {i8_acc} vs f32 {f32_acc}");
        assert!(q.param_bytes() < params.len() * 4 / 3);
    }
}
