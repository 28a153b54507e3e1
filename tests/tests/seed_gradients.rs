//! The seed's diagnosis, checked on microconv: at the seed's init (normal(1) weights and
//! biases) the logits of real MNIST images are huge, softmax rows round to exactly
//! one-hot in f32, and the naive loss' gradient vanishes, while the stable losses have a
//! gradient everywhere.

use host_trainer::data::{default_dir, load_mnist};
use host_trainer::engine::fast;
use microconv::archs::SEED;
use microconv::init::{init_params, Init};
use microconv::loss::{softmax, Loss, Reduction};
use microconv::net::{self, Mode, Workspace};

#[test]
fn naive_gradient_is_zero_at_the_seed_init() {
    let (train, _) = load_mnist(&default_dir()).unwrap();
    let n = 32;
    let x = &train.to_f32()[..n * 784];
    let labels = &train.labels[..n];
    let mut params = vec![0.0; SEED.param_count()];
    init_params(&SEED, Init::Seed, 1, &mut params).unwrap();
    let mut acts = vec![0.0; SEED.activations_len(n)];
    let mut grad = vec![0.0; SEED.grad_buffer_len(n)];
    let mut scratch = vec![0.0; SEED.im2col_len(4)];
    let mut results = Vec::new();
    for loss in [Loss::Naive, Loss::LogSoftmax, Loss::Fused] {
        let mut ws = Workspace {
            acts: &mut acts,
            grad: &mut grad,
            scratch: &mut scratch,
        };
        let mut grads = vec![0.0; SEED.param_count()];
        let mode = Mode::Train {
            seed: 5,
            first_sample: 0,
        };
        let out = net::forward_backward(
            &SEED,
            &params,
            &mut grads,
            &mut ws,
            x,
            labels,
            loss,
            Reduction::Sum,
            n,
            mode,
            &fast(),
        )
        .unwrap();
        let nonzero = grads.iter().filter(|g| **g != 0.0).count();
        eprintln!(
            "{loss:?}: loss {} over {n} images, {nonzero} of {} gradients non-zero",
            out.value,
            grads.len()
        );
        results.push((out.value, nonzero));
    }
    let logits = net::logits(&SEED, &acts, n).unwrap();
    let biggest = logits.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let mut p = [0.0; 10];
    let one_hot = logits
        .chunks_exact(10)
        .filter(|row| {
            softmax(row, &mut p).unwrap();
            p.iter().all(|&v| v == 0.0 || v == 1.0)
        })
        .count();
    eprintln!("largest |logit| {biggest:.3e}; {one_hot} of {n} softmax rows exactly one-hot");
    assert!(biggest > 1e3, "the seed init should give huge logits");
    assert_eq!(one_hot, n);
    // Every naive per-sample loss is 0 or -ln(1e-10) = 23.026.
    let k = results[0].0 / 23.025_85;
    assert!(
        (k - k.round()).abs() < 1e-3,
        "naive loss {} is not a multiple of 23.026",
        results[0].0
    );
    assert_eq!(results[0].1, 0, "naive gradient should vanish");
    assert!(results[1].1 > SEED.param_count() / 2 && results[2].1 > SEED.param_count() / 2);
}
