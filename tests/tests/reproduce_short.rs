//! A short run of the seed experiment that CI can afford: the seed CNN, its huge-logit
//! init and Adam 1e-3, 300 steps of 128 per loss on the real MNIST. The naive loss is
//! already stuck at one class (about 0.1) while both stable losses are above 0.9.

use host_trainer::data::{default_dir, load_mnist};
use host_trainer::reproduce;
use host_trainer::train::LossName;

#[test]
fn naive_loss_is_stuck_while_stable_losses_learn() {
    let (train, test) = load_mnist(&default_dir()).expect("the vendored MNIST in data/mnist");
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let rows = reproduce::run(
        &[LossName::Naive, LossName::LogSoftmax, LossName::Fused],
        300,
        1,
        threads,
        &train,
        &test,
        &mut |l| {
            if l.contains("test accuracy") || l.contains("step 0,") || l.contains("step 200,") {
                eprintln!("{l}")
            }
        },
    )
    .unwrap();
    eprintln!("{}", reproduce::table(&rows, 300));
    let acc = |l: LossName| rows.iter().find(|r| r.loss == l).unwrap().test_accuracy;
    assert!(
        acc(LossName::Naive) <= 0.15,
        "naive: {}",
        acc(LossName::Naive)
    );
    assert!(
        acc(LossName::LogSoftmax) >= 0.9,
        "log-softmax: {}",
        acc(LossName::LogSoftmax)
    );
    assert!(
        acc(LossName::Fused) >= 0.9,
        "fused: {}",
        acc(LossName::Fused)
    );
    // Stuck means stuck: the naive loss' every-100-steps accuracy never leaves chance.
    let naive = rows.iter().find(|r| r.loss == LossName::Naive).unwrap();
    assert!(
        naive.train_range.1 <= 0.25,
        "naive batch accuracy reached {}",
        naive.train_range.1
    );
}
