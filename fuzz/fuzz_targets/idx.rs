#![no_main]
//! cargo-fuzz target `idx`: the harness is harness/idx.rs, shared with the stable replay
//! test of the corpus (see ../README.md).

#[allow(dead_code)]
mod harness {
    include!("../harness/idx.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
