//! Batch normalization folded into the layer before it, so that the files firmware runs
//! (`export`'s float .mcw, `quantize`'s int8 .mcw) hold no batchnorm layer: a conv2d,
//! depthwise or dense layer followed by batchnorm becomes that one layer with scaled
//! weights and shifted biases ([`microconv::layers::BatchNorm::fold`]), which computes
//! the same inference outputs to float rounding.

use anyhow::{bail, Result};
use microconv::{Arch, Layer};

/// Whether batchnorm at index `i` may follow `layers[i - 1]`: only a layer with weights
/// and one bias per output channel can take it in.
pub fn foldable_into(prev: Option<&Layer>) -> bool {
    matches!(
        prev,
        Some(Layer::Conv2d(_) | Layer::DepthwiseConv2d(_) | Layer::Dense(_))
    )
}

/// `arch` and `params` with every batchnorm layer folded into the layer before it (the
/// same network, with the same parameters, when there is none).
pub fn fold_batchnorm(arch: &Arch<'_>, params: &[f32]) -> Result<(Arch<'static>, Vec<f32>)> {
    if params.len() != arch.param_count() {
        bail!(
            "{} parameters given, the architecture has {}",
            params.len(),
            arch.param_count()
        );
    }
    let mut layers = Vec::with_capacity(arch.layers.len());
    let mut out = Vec::with_capacity(params.len());
    for (i, l) in arch.layers.iter().enumerate() {
        let p = &params[arch.param_range(i)?];
        let Layer::BatchNorm(bn) = l else {
            layers.push(*l);
            out.extend_from_slice(p);
            continue;
        };
        let prev = i.checked_sub(1).map(|j| &arch.layers[j]);
        if !foldable_into(prev) {
            bail!(
                "layer {i} (batchnorm) follows {}: it can only be folded into a conv2d, depthwise or dense layer directly before it",
                prev.map_or("the input", |l| l.name())
            );
        }
        let c = arch.layer_io(i)?.0.c;
        let prev_len = arch.param_range(i - 1)?.len();
        let at = out.len() - prev_len;
        let (w, b) = out[at..].split_at_mut(prev_len - c);
        bn.fold(p, w, b)
            .map_err(|e| anyhow::anyhow!("layer {i} (batchnorm): {e}"))?;
    }
    let layers: &'static [Layer] = Box::leak(layers.into_boxed_slice());
    let folded = Arch::new(arch.input, layers);
    folded.validate()?;
    Ok((folded, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use microconv::layers::{BatchNorm, Conv2d, Dense, DepthwiseConv2d};
    use microconv::{Padding, Shape};

    /// A network with batchnorm after a conv2d, a depthwise and a dense layer, with
    /// trained-looking parameters (running statistics away from 0 and 1): the folded
    /// network's logits are the original's (inference), within float tolerance.
    #[test]
    fn folding_keeps_the_logits() {
        const BN: Layer = Layer::BatchNorm(BatchNorm::new(0.99, 1e-3));
        const LAYERS: &[Layer] = &[
            Layer::Conv2d(Conv2d::with(3, 1, Padding::Same, 4)),
            BN,
            Layer::Relu,
            Layer::DepthwiseConv2d(DepthwiseConv2d::new(3, 2, Padding::Same, 2)),
            BN,
            Layer::Relu6,
            Layer::Flatten,
            Layer::Dense(Dense::new(6)),
            BN,
            Layer::Relu,
            Layer::Dense(Dense::new(3)),
        ];
        let arch = Arch::new(Shape::new(6, 6, 2), LAYERS);
        let mut p = vec![0.0; arch.param_count()];
        microconv::init::init_params(&arch, microconv::init::Init::He, 7, &mut p).unwrap();
        let mut rng = microconv::init::Rng::new(9);
        for (i, l) in arch.layers.iter().enumerate() {
            if let Layer::BatchNorm(_) = l {
                let c = arch.layer_io(i).unwrap().0.c;
                let r = arch.param_range(i).unwrap();
                for (k, v) in p[r].iter_mut().enumerate() {
                    let u = rng.uniform_f64() as f32;
                    *v = match k / c {
                        0 => 0.5 + u,       // gamma
                        1 | 2 => u - 0.5,   // beta, running mean
                        _ => 0.2 + 2.0 * u, // running variance
                    };
                }
            }
        }
        let (folded, fp) = fold_batchnorm(&arch, &p).unwrap();
        assert_eq!(folded.layers.len(), LAYERS.len() - 3);
        assert!(!folded
            .layers
            .iter()
            .any(|l| matches!(l, Layer::BatchNorm(_))));
        let n = 5;
        let x: Vec<f32> = (0..n * 72).map(|_| rng.uniform_f64() as f32).collect();
        let a = crate::engine::predict(&arch, &p, &x, n, 1).unwrap();
        let b = crate::engine::predict(&folded, &fp, &x, n, 1).unwrap();
        assert_eq!(a.len(), n * 3);
        for (u, v) in a.iter().zip(&b) {
            assert!((u - v).abs() <= 1e-4 * (1.0 + u.abs()), "{u} vs {v}");
        }
        // Without batchnorm: the same parameters.
        let (same, sp) = fold_batchnorm(&folded, &fp).unwrap();
        assert_eq!(same, folded);
        assert_eq!(sp, fp);
    }

    #[test]
    fn batchnorm_after_a_layer_without_weights_is_an_error() {
        const LAYERS: &[Layer] = &[
            Layer::Relu,
            Layer::BatchNorm(BatchNorm::new(0.9, 1e-3)),
            Layer::Flatten,
            Layer::Dense(Dense::new(2)),
        ];
        let arch = Arch::new(Shape::new(2, 2, 1), LAYERS);
        let e = fold_batchnorm(&arch, &vec![0.0; arch.param_count()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("layer 1 (batchnorm) follows relu"), "{e}");
    }
}
