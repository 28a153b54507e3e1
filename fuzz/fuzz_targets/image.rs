#![no_main]
//! cargo-fuzz target `image`: the harness is harness/image.rs, shared with the stable replay
//! test of the corpus (see ../README.md).

#[allow(dead_code)]
mod harness {
    include!("../harness/image.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
