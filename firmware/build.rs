//! Embeds the weights file and picks the memory layout of the target board.
//!
//! The weights come from `$MICROCONV_WEIGHTS` if set (relative to firmware/), else
//! `models/small.mcw`, embedded by `microconv-build` as any firmware crate would: checked
//! with the same parser the firmware runs, so a corrupt or incompatible file fails the
//! build with the reason, and the architecture read from the file becomes `const ARCH`
//! so that every buffer is a static sized by the core's `const fn`s.

use std::path::PathBuf;
use std::{env, fs, process};

use microconv_build::Shape;

fn fail(msg: String) -> ! {
    eprintln!("\nerror: {msg}\n");
    println!("cargo::error={msg}");
    process::exit(1);
}

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").unwrap_or_default());
    println!("cargo:rerun-if-changed=build.rs");
    // The weights: `$OUT_DIR/model.rs` declares LAYERS, ARCH, MODEL and INT8 (see
    // microconv-build), included by each board binary.
    microconv_build::Embed::new("models/small.mcw")
        .env_override("MICROCONV_WEIGHTS")
        .expect_input(Shape::new(28, 28, 1))
        .expect_classes(10)
        .run();

    // Memory layout of the board being built for (the real chip's sizes, so the linker
    // proves the footprint).
    let memory = if env::var_os("CARGO_FEATURE_STM32F411").is_some() {
        // STM32F411CE: 512 KiB flash, 128 KiB RAM.
        Some("MEMORY\n{\n  FLASH : ORIGIN = 0x08000000, LENGTH = 512K\n  RAM : ORIGIN = 0x20000000, LENGTH = 128K\n}\n")
    } else if env::var_os("CARGO_FEATURE_MPS2_AN386").is_some()
        && env::var_os("CARGO_FEATURE_TRAIN").is_some()
    {
        // Training on the device needs more RAM: we claim STM32F411CE's 512 KiB / 128 KiB.
        Some("MEMORY\n{\n  FLASH : ORIGIN = 0x00000000, LENGTH = 512K\n  RAM : ORIGIN = 0x20000000, LENGTH = 128K\n}\n")
    } else if env::var_os("CARGO_FEATURE_MPS2_AN386").is_some() {
        // QEMU maps 4 MiB of each; we claim a 256 KiB / 64 KiB part (STM32F401CC-sized).
        Some("MEMORY\n{\n  FLASH : ORIGIN = 0x00000000, LENGTH = 256K\n  RAM : ORIGIN = 0x20000000, LENGTH = 64K\n}\n")
    } else {
        None
    };
    if let Some(m) = memory {
        fs::write(out.join("memory.x"), m)
            .unwrap_or_else(|e| fail(format!("cannot write memory.x: {e}")));
        println!("cargo:rustc-link-search={}", out.display());
    }
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-Tlink.x");
        println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    }
}
