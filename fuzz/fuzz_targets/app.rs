#![no_main]
//! cargo-fuzz target `app`: the harness is `run_app` in harness/serial.rs, shared with the
//! stable replay test of the corpus (see ../README.md).

#[allow(dead_code)]
mod harness {
    include!("../harness/serial.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run_app(data));
