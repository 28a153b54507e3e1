#![no_main]
//! cargo-fuzz target `weights`: the harness is harness/weights.rs, shared with the stable replay
//! test of the corpus (see ../README.md).

#[allow(dead_code)]
mod harness {
    include!("../harness/weights.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
