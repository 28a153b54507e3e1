//! Replays the corpora of the `idx`, `checkpoint`, `image` and `safetensors` fuzz targets (`fuzz/`,
//! cargo-fuzz) on stable Rust: every input the fuzzer kept, and every input that once
//! crashed it, must be read or refused without a panic (see fuzz/README.md).

mod idx {
    include!("../../fuzz/harness/idx.rs");
}
mod checkpoint {
    include!("../../fuzz/harness/checkpoint.rs");
}
mod image_harness {
    include!("../../fuzz/harness/image.rs");
}
mod safetensors {
    include!("../../fuzz/harness/safetensors.rs");
}
mod replay {
    include!("../../fuzz/harness/replay.rs");
}

#[test]
fn idx_corpus_replays_without_panic() {
    let n = replay::replay("idx", idx::run);
    eprintln!("idx: {n} inputs replayed");
}

#[test]
fn checkpoint_corpus_replays_without_panic() {
    let n = replay::replay("checkpoint", checkpoint::run);
    eprintln!("checkpoint: {n} inputs replayed");
}

#[test]
fn image_corpus_replays_without_panic() {
    let n = replay::replay("image", image_harness::run);
    eprintln!("image: {n} inputs replayed");
}

#[test]
fn safetensors_corpus_replays_without_panic() {
    let n = replay::replay("safetensors", safetensors::run);
    eprintln!("safetensors: {n} inputs replayed");
}
