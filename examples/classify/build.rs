//! Embeds the model and gives the linker the board's memory layout.

use std::{env, fs, path::PathBuf};

fn main() {
    // The weights file: `model.mcw` here by default (a float file from `host-trainer
    // export` or an int8 one from `host-trainer quantize --out`); `MODEL=path` picks
    // another. Writes $OUT_DIR/model.rs (LAYERS, ARCH, MODEL, INT8); a corrupt or
    // truncated file, or one not for 28x28x1 digits in 10 classes, fails the build here.
    microconv_build::Embed::new("model.mcw")
        .env_override("MODEL")
        .expect_input(microconv_build::Shape::new(28, 28, 1))
        .expect_classes(10)
        .run();

    // cortex-m-rt's link.x includes memory.x from the linker's search path.
    let out = PathBuf::from(env::var("OUT_DIR").unwrap_or_default());
    if let Err(e) = fs::copy("memory.x", out.join("memory.x")) {
        microconv_build::fail(&format!("cannot copy memory.x to {}: {e}", out.display()));
    }
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=memory.x");
    println!("cargo:rerun-if-changed=build.rs");
}
