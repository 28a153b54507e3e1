//! Golden values for the MobileNet-style layers (depthwise convolution, batch
//! normalization in training and inference mode, ReLU6, average pooling VALID and SAME,
//! global average pooling) matched against TensorFlow 2.21 / Keras 3.
//!
//! `tests/data/golden_layers.json` was produced by `tools/golden/make_golden_layers.py`
//! (its docstring gives the two networks, shapes and seeds); this test never needs
//! Python. Tolerance, as in `golden.rs`: every value within `1e-5 * (1 + |reference|)`.
//!
//! Compared per case: every layer's output, the loss (mean softmax cross-entropy), its
//! gradient w.r.t. the input and every trainable parameter, that the running statistics
//! get a zero gradient, and (training case) the running mean and variance after one
//! update against Keras's `moving_mean` / `moving_variance`.

mod common;
use common::{assert_close, data};
use microconv::layers::{AvgPool, BatchNorm, Dense, DepthwiseConv2d};
use microconv::loss::{batch_loss, Loss, Reduction};
use microconv::net::{self, Exec, Mode, Workspace};
use microconv::{Arch, Layer, Padding, Shape};
use serde_json::Value;

/// Both cases' batchnorm epsilon (Keras's default).
const EPS: f32 = 1e-3;

const TRAIN: Arch<'static> = Arch::new(
    Shape::new(8, 8, 3),
    &[
        Layer::DepthwiseConv2d(DepthwiseConv2d::new(3, 1, Padding::Same, 2)),
        Layer::BatchNorm(BatchNorm::new(0.9, EPS)),
        Layer::Relu6,
        Layer::AvgPool(AvgPool::new(2, 2, Padding::Valid)),
        Layer::DepthwiseConv2d(DepthwiseConv2d::new(3, 2, Padding::Same, 1)),
        Layer::GlobalAvgPool,
        Layer::Dense(Dense::new(3)),
    ],
);

const EVAL: Arch<'static> = Arch::new(
    Shape::new(9, 9, 2),
    &[
        Layer::DepthwiseConv2d(DepthwiseConv2d::new(3, 2, Padding::Valid, 3)),
        Layer::BatchNorm(BatchNorm::new(0.99, EPS)),
        Layer::Relu6,
        Layer::AvgPool(AvgPool::new(3, 1, Padding::Same)),
        Layer::GlobalAvgPool,
        Layer::Dense(Dense::new(3)),
    ],
);

/// The batchnorm's running statistics: no gradient in TensorFlow (non-trainable) and a
/// zero one in microconv.
const RUNNING: [&str; 2] = ["bn1_mean", "bn1_var"];

fn golden() -> Value {
    serde_json::from_str(include_str!("data/golden_layers.json")).unwrap()
}

/// The parameter names of a case, in microconv's order (per layer: weights, then
/// biases; batchnorm: gamma, then beta, running mean, running variance).
fn order(case: &Value) -> Vec<&str> {
    case["param_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

/// Runs one case: forward, loss, backward, and the comparisons. Returns the parameters
/// and the activations for the running-statistics check.
fn check_case(arch: &Arch<'_>, name: &str, mode: Mode) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let g = golden();
    let case = &g[name];
    assert_eq!(case["epsilon"].as_f64().unwrap() as f32, EPS);
    let names = order(case);
    // The flat parameter buffer: TensorFlow's depthwise [kh, kw, cin, mult] and dense
    // [in, out] layouts are microconv's, so no transposition.
    let params: Vec<f32> = names
        .iter()
        .flat_map(|k| data(&case["params"][k]))
        .collect();
    assert_eq!(params.len(), arch.param_count(), "{name}: parameter count");
    let x = data(&case["input"]);
    let labels: Vec<u8> = case["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u8)
        .collect();
    let n = labels.len();
    let classes = arch.classes();

    let mut acts = vec![0.0; arch.activations_len(n)];
    let mut grad = vec![0.0; arch.grad_buffer_len(n)];
    net::forward(
        arch,
        &params,
        &x,
        n,
        &mut acts,
        mode,
        &Exec::REFERENCE,
        &mut [],
    )
    .unwrap();
    let mut off = 0;
    let layers = case["activations"].as_array().unwrap();
    assert_eq!(layers.len(), arch.layers.len());
    for (i, a) in layers.iter().enumerate() {
        let want = data(a);
        assert_close(
            &format!("{name} layer {i} {}", a["name"]),
            &acts[off..off + want.len()],
            &want,
            1e-5,
        );
        off += want.len();
    }
    assert_eq!(off, acts.len());

    let mut dl = vec![0.0; n * classes];
    let mut tmp = vec![0.0; classes];
    let out = batch_loss(
        Loss::Fused,
        Reduction::Mean,
        net::logits(arch, &acts, n).unwrap(),
        classes,
        &labels,
        n,
        Some(&mut dl),
        &mut tmp,
    )
    .unwrap();
    let want = case["loss"].as_f64().unwrap() as f32;
    assert_close(&format!("{name} loss"), &[out.value], &[want], 1e-5);

    let mut grads = vec![0.0; arch.param_count()];
    let mut dx = vec![0.0; x.len()];
    let mut ws = Workspace {
        acts: &mut acts,
        grad: &mut grad,
        scratch: &mut [],
    };
    net::backward(
        arch,
        &params,
        &x,
        n,
        &dl,
        &mut grads,
        &mut ws,
        mode,
        &Exec::REFERENCE,
        Some(&mut dx),
    )
    .unwrap();
    assert_close(
        &format!("{name} dinput"),
        &dx,
        &data(&case["grads"]["input"]),
        1e-5,
    );
    let mut at = 0;
    for k in names {
        let len = case["params"][k]["data"].as_array().unwrap().len();
        let got = &grads[at..at + len];
        if RUNNING.contains(&k) {
            assert!(
                got.iter().all(|&v| v == 0.0),
                "{name} d{k}: running statistics must get no gradient, got {got:?}"
            );
        } else {
            assert_close(&format!("{name} d{k}"), got, &data(&case["grads"][k]), 1e-5);
        }
        at += len;
    }
    (params, x, acts)
}

#[test]
fn training_mode_network_matches_tensorflow() {
    let mode = Mode::Train {
        seed: 1,
        first_sample: 0,
    };
    let (mut params, x, acts) = check_case(&TRAIN, "train", mode);
    // One update of the running statistics from this batch (biased batch variance,
    // r = momentum * r + (1 - momentum) * batch's), against Keras's moving statistics.
    net::update_running_stats(&TRAIN, &mut params, &[(&x, &acts, 2)]).unwrap();
    let g = golden();
    let after = &g["train"]["running_after"];
    let r = TRAIN.param_range(1).unwrap();
    let bn = &params[r];
    let c = bn.len() / 4;
    let before = data(&g["train"]["params"]["bn1_mean"]);
    assert_ne!(&bn[2 * c..3 * c], &before[..], "running mean did not move");
    assert_close(
        "train running mean",
        &bn[2 * c..3 * c],
        &data(&after["bn1_mean"]),
        1e-5,
    );
    assert_close(
        "train running variance",
        &bn[3 * c..],
        &data(&after["bn1_var"]),
        1e-5,
    );
}

#[test]
fn inference_mode_network_matches_tensorflow() {
    let g = golden();
    assert_eq!(g["eval"]["training"], Value::Bool(false));
    check_case(&EVAL, "eval", Mode::Eval);
}

/// The cases can tell the conventions apart: from TensorFlow's own layer outputs, the
/// other common conventions (a SAME average pool dividing by the whole window, batch
/// normalization with the unbiased variance, running variance updated with it) give
/// values far outside the tolerance (and so would depthwise weights read as [k, k, m, c]), so the comparisons above would catch them.
#[test]
fn the_cases_tell_the_conventions_apart() {
    let g = golden();
    let scaled = |a: f32, b: f32| (a - b).abs() / (1.0 + b.abs());
    // Average pool 3x3, stride 1, SAME on [2, 4, 4, 6], dividing by 9 everywhere.
    let acts = &g["eval"]["activations"];
    let (x, y) = (data(&acts[2]), data(&acts[3]));
    let (h, w, c) = (4usize, 4usize, 6usize);
    let mut worst = 0.0f32;
    for img in 0..2 {
        for oy in 0..h {
            for ox in 0..w {
                for ch in 0..c {
                    let mut s = 0.0;
                    for iy in oy.saturating_sub(1)..(oy + 2).min(h) {
                        for ix in ox.saturating_sub(1)..(ox + 2).min(w) {
                            s += x[((img * h + iy) * w + ix) * c + ch];
                        }
                    }
                    let at = ((img * h + oy) * w + ox) * c + ch;
                    worst = worst.max(scaled(s / 9.0, y[at]));
                }
            }
        }
    }
    assert!(worst > 1e-2, "whole-window SAME average: worst {worst}");
    // Depthwise weights read as [k, k, m, c] (multiplier before channel) instead of
    // TensorFlow's [k, k, c, m].
    let t = &g["train"];
    let (x0, y0) = (data(&t["input"]), data(&t["activations"][0]));
    let (w0, b0) = (data(&t["params"]["dw0_w"]), data(&t["params"]["dw0_b"]));
    let (cin, mult) = (3usize, 2usize);
    let swapped: Vec<f32> = (0..w0.len())
        .map(|i| {
            let (kk, oc) = (i / (cin * mult), i % (cin * mult));
            w0[kk * cin * mult + (oc % mult) * cin + oc / mult]
        })
        .collect();
    let mut alt = vec![0.0; y0.len()];
    DepthwiseConv2d::new(3, 1, Padding::Same, 2)
        .forward(Shape::new(8, 8, 3), 2, &x0, &swapped, &b0, &mut alt)
        .unwrap();
    let worst_dw = alt
        .iter()
        .zip(&y0)
        .fold(0.0f32, |a, (&p, &q)| a.max(scaled(p, q)));
    assert!(worst_dw > 1e-2, "[k, k, m, c] depthwise: worst {worst_dw}");
    // Batch normalization with the unbiased variance (m / (m - 1), m = 2 * 8 * 8).
    let (x, y) = (data(&t["activations"][0]), data(&t["activations"][1]));
    let p = |k: &str| data(&t["params"][k]);
    let (gamma, beta, var0) = (p("bn1_gamma"), p("bn1_beta"), p("bn1_var"));
    let after = data(&t["running_after"]["bn1_var"]);
    let (c, m) = (6usize, (x.len() / 6) as f64);
    let (mut worst_y, mut worst_r) = (0.0f32, 0.0f32);
    for ch in 0..c {
        let v: Vec<f64> = x.iter().skip(ch).step_by(c).map(|&v| v as f64).collect();
        let mean = v.iter().sum::<f64>() / m;
        let unbiased = v.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / (m - 1.0);
        let is = 1.0 / (unbiased + EPS as f64).sqrt();
        for (a, &b) in v.iter().zip(y.iter().skip(ch).step_by(c)) {
            let alt = (gamma[ch] as f64 * (a - mean) * is + beta[ch] as f64) as f32;
            worst_y = worst_y.max(scaled(alt, b));
        }
        let alt_r = (0.9 * var0[ch] as f64 + 0.1 * unbiased) as f32;
        worst_r = worst_r.max(scaled(alt_r, after[ch]));
    }
    assert!(
        worst_y > 1e-3,
        "unbiased-variance batchnorm: worst {worst_y}"
    );
    assert!(worst_r > 2e-5, "unbiased running variance: worst {worst_r}");
    eprintln!(
        "other conventions, worst scaled error: [k, k, m, c] depthwise {worst_dw:.1e}, \
         whole-window SAME average {worst:.1e}, \
         unbiased batchnorm {worst_y:.1e}, unbiased running variance {worst_r:.1e}"
    );
}
