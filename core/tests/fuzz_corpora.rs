//! Replays the corpus of the `weights` fuzz target (`fuzz/`, cargo-fuzz) on stable Rust:
//! every input the fuzzer kept, and every input that once crashed it, must parse or be
//! refused without a panic (see fuzz/README.md).

mod harness {
    include!("../../fuzz/harness/weights.rs");
}
mod replay {
    include!("../../fuzz/harness/replay.rs");
}

#[test]
fn weights_corpus_replays_without_panic() {
    let n = replay::replay("weights", harness::run);
    eprintln!("weights: {n} inputs replayed");
}
