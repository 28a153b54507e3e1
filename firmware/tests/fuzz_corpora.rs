//! Replays the corpora of the `serial` and `app` fuzz targets (`fuzz/`, cargo-fuzz) on
//! stable Rust: the frame decoder, the payload codecs and the application with mock
//! peripherals must take every input the fuzzer kept, and every input that once crashed
//! it, without a panic (see fuzz/README.md).

mod harness {
    include!("../../fuzz/harness/serial.rs");
}
mod replay {
    include!("../../fuzz/harness/replay.rs");
}

#[test]
fn serial_corpus_replays_without_panic() {
    let n = replay::replay("serial", harness::run);
    eprintln!("serial: {n} inputs replayed");
}

#[test]
fn app_corpus_replays_without_panic() {
    let n = replay::replay("app", harness::run_app);
    eprintln!("app: {n} inputs replayed");
}
