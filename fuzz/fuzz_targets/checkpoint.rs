#![no_main]
//! cargo-fuzz target `checkpoint`: the harness is harness/checkpoint.rs, shared with the stable replay
//! test of the corpus (see ../README.md).

#[allow(dead_code)]
mod harness {
    include!("../harness/checkpoint.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
