//! Golden values: a fixed small network matched against TensorFlow 2.21.
//!
//! `tests/data/golden.json` was produced by `tools/golden/make_golden.py` (TensorFlow,
//! float32, CPU); this test never needs Python. Tolerance: every value within
//! `1e-5 * (1 + |reference|)` (f32 sums in another order differ in the last bits), except the
//! "big logits" case (logits around 1e5) compared with a relative `1e-5`.

mod common;
use common::{assert_close, data};
use microconv::layers::{Conv2d, Dense, MaxPool};
use microconv::loss::{batch_loss, Loss, Reduction};
use microconv::net::{self, Exec, Mode, Workspace};
use microconv::{Arch, Layer, Padding, Shape};
use serde_json::Value;

const ARCH: Arch<'static> = Arch::new(
    Shape::new(7, 7, 2),
    &[
        Layer::Conv2d(Conv2d::with(3, 2, Padding::Same, 4)),
        Layer::Relu,
        Layer::MaxPool(MaxPool::new(3, 2, Padding::Same)),
        Layer::Conv2d(Conv2d::with(2, 1, Padding::Valid, 5)),
        Layer::Relu,
        Layer::Flatten,
        Layer::Dense(Dense::new(3)),
    ],
);
const PARAMS: [&str; 6] = [
    "conv0_w", "conv0_b", "conv3_w", "conv3_b", "dense6_w", "dense6_b",
];

fn golden() -> Value {
    serde_json::from_str(include_str!("data/golden.json")).unwrap()
}

/// The flat parameter buffer in microconv's layout (per layer: weights, then biases;
/// HWIO and [in, out] are TensorFlow's own layouts, so no transposition).
fn params(g: &Value, scale: f32) -> Vec<f32> {
    let p: Vec<f32> = PARAMS
        .iter()
        .flat_map(|k| data(&g["params"][k]))
        .map(|v| v * scale)
        .collect();
    assert_eq!(p.len(), ARCH.param_count());
    p
}

fn labels(g: &Value) -> Vec<u8> {
    g["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u8)
        .collect()
}

fn cases() -> [(Loss, Reduction, &'static str); 3] {
    [
        (Loss::Naive, Reduction::Sum, "naive"),
        (Loss::LogSoftmax, Reduction::Sum, "log_softmax"),
        (Loss::Fused, Reduction::Mean, "fused"),
    ]
}

#[test]
fn forward_losses_and_gradients_match_tensorflow() {
    let g = golden();
    let x = data(&g["input"]);
    let labels = labels(&g);
    let n = labels.len();
    let params = params(&g, 1.0);
    let mut acts = vec![0.0; ARCH.activations_len(n)];
    let mut grad = vec![0.0; ARCH.grad_buffer_len(n)];
    net::forward(
        &ARCH,
        &params,
        &x,
        n,
        &mut acts,
        Mode::Eval,
        &Exec::REFERENCE,
        &mut [],
    )
    .unwrap();
    let mut off = 0;
    for (i, a) in g["activations"].as_array().unwrap().iter().enumerate() {
        let want = data(a);
        assert_close(
            &format!("layer {i} {}", a["name"]),
            &acts[off..off + want.len()],
            &want,
            1e-5,
        );
        off += want.len();
    }
    for (loss, red, name) in cases() {
        let mut ws = Workspace {
            acts: &mut acts,
            grad: &mut grad,
            scratch: &mut [],
        };
        let mut grads = vec![0.0; ARCH.param_count()];
        let mut dx = vec![0.0; x.len()];
        let out = net::forward_backward(
            &ARCH,
            &params,
            &mut grads,
            &mut ws,
            &x,
            &labels,
            loss,
            red,
            n,
            Mode::Eval,
            &Exec::REFERENCE,
        )
        .unwrap();
        let want = g["losses"][name]["value"].as_f64().unwrap() as f32;
        assert_close(&format!("{name} loss"), &[out.value], &[want], 1e-5);
        // Parameter gradients, tensor by tensor.
        let mut at = 0;
        for k in PARAMS {
            let want = data(&g["losses"][name]["grads"][k]);
            assert_close(
                &format!("{name} d{k}"),
                &grads[at..at + want.len()],
                &want,
                1e-5,
            );
            at += want.len();
        }
        // Input gradient: rerun the backward pass from the same logits gradient.
        let mut dl = vec![0.0; n * 3];
        let mut tmp = [0.0; 3];
        batch_loss(
            loss,
            red,
            net::logits(&ARCH, ws.acts, n).unwrap(),
            3,
            &labels,
            n,
            Some(&mut dl),
            &mut tmp,
        )
        .unwrap();
        let mut scratch_grads = vec![0.0; ARCH.param_count()];
        net::backward(
            &ARCH,
            &params,
            &x,
            n,
            &dl,
            &mut scratch_grads,
            &mut ws,
            Mode::Eval,
            &Exec::REFERENCE,
            Some(&mut dx),
        )
        .unwrap();
        assert_close(
            &format!("{name} dinput"),
            &dx,
            &data(&g["losses"][name]["grads"]["input"]),
            1e-5,
        );
    }
}

#[test]
fn big_logits_break_only_the_naive_loss_like_tensorflow() {
    let g = golden();
    let big = &g["big_logits"];
    let scale = big["scale"].as_f64().unwrap() as f32;
    let x = data(&g["input"]);
    let labels = labels(&g);
    let n = labels.len();
    let params = params(&g, scale);
    let mut buf = vec![0.0; ARCH.inference_len(n)];
    let logits = net::infer(&ARCH, &params, &x, n, &mut buf, &Exec::REFERENCE, &mut [])
        .unwrap()
        .to_vec();
    let want = data(&big["logits"]);
    for (a, b) in logits.iter().zip(&want) {
        assert!(
            (a - b).abs() <= 1e-5 * b.abs(),
            "logit {a} vs TensorFlow {b}"
        );
    }
    // Compare the losses on TensorFlow's own logits, so that only the loss is tested.
    for (loss, red, name) in cases() {
        let mut d = vec![0.0; n * 3];
        let mut tmp = [0.0; 3];
        let out = batch_loss(loss, red, &want, 3, &labels, n, Some(&mut d), &mut tmp).unwrap();
        let case = &big["losses"][name];
        let v = case["value"].as_f64().unwrap() as f32;
        assert!(
            (out.value - v).abs() <= 1e-6 * v.abs().max(1.0),
            "{name}: {} vs TensorFlow {v}",
            out.value
        );
        assert_eq!(d, data(&case["dlogits"]), "{name} dlogits");
    }
}
