#![no_main]
//! cargo-fuzz target `safetensors`: the harness is harness/safetensors.rs, shared with the
//! stable replay test of the corpus (see ../README.md).

#[allow(dead_code)]
mod harness {
    include!("../harness/safetensors.rs");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::run(data));
