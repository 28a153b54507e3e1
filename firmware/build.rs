//! Embeds the weights file and picks the memory layout of the target board.
//!
//! The weights come from `$MICROCONV_WEIGHTS` if set (relative to firmware/), else
//! `models/small.mcw`, embedded by `microconv-build` as any firmware crate would: checked
//! with the same parser the firmware runs, so a corrupt or incompatible file fails the
//! build with the reason, and the architecture read from the file becomes `const ARCH`
//! so that every buffer is a static sized by the core's `const fn`s.

use std::path::PathBuf;
use std::{env, fs, process};

#[path = "build/fit.rs"]
mod fit;

/// Most classes a RESULT frame carries (`microconv_firmware::protocol::SCORES`; the board
/// binaries check the two agree at compile time).
const SCORES: usize = 32;

fn fail(msg: String) -> ! {
    eprintln!("\nerror: {msg}\n");
    println!("cargo::error={msg}");
    process::exit(1);
}

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").unwrap_or_default());
    println!("cargo:rerun-if-changed=build.rs");
    // The weights: `$OUT_DIR/model.rs` declares LAYERS, ARCH, MODEL and INT8 (see
    // microconv-build), included by each board binary. Any input shape and any number of
    // classes up to what a RESULT frame carries (the serial protocol, version 2).
    let embedded = microconv_build::Embed::new("models/small.mcw")
        .env_override("MICROCONV_WEIGHTS")
        .run();
    if embedded.summary.classes > SCORES {
        fail(format!(
            "weights file {} holds a model with {} classes; the serial protocol carries at most {SCORES} scores per answer: train a model with fewer classes",
            embedded.path.display(),
            embedded.summary.classes
        ));
    }

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
    } else if env::var_os("CARGO_FEATURE_MPS2_AN500").is_some() {
        // Cortex-M7: QEMU maps 4 MiB of each; we claim an STM32F722RE's 512 KiB / 256 KiB.
        Some("MEMORY\n{\n  FLASH : ORIGIN = 0x00000000, LENGTH = 512K\n  RAM : ORIGIN = 0x20000000, LENGTH = 256K\n}\n")
    } else if env::var_os("CARGO_FEATURE_MPS2_AN505").is_some() {
        // Cortex-M33, secure aliases of QEMU's SSRAM1 (code, 4 MiB) and SSRAM2 (data,
        // 2 MiB); we claim an STM32L552CE's 512 KiB / 256 KiB.
        Some("MEMORY\n{\n  FLASH : ORIGIN = 0x10000000, LENGTH = 512K\n  RAM : ORIGIN = 0x38000000, LENGTH = 256K\n}\n")
    } else if env::var_os("CARGO_FEATURE_MICROBIT").is_some() {
        // The micro:bit's nRF51822-QFAA: 256 KiB flash, 16 KiB RAM (the int8 firmware's
        // static buffers and stack take about 7.6 KiB since the compiled plan, README).
        Some("MEMORY\n{\n  FLASH : ORIGIN = 0x00000000, LENGTH = 256K\n  RAM : ORIGIN = 0x20000000, LENGTH = 16K\n}\n")
    } else if env::var_os("CARGO_FEATURE_RP_PICO").is_some() {
        // Raspberry Pi Pico: 2 MiB QSPI flash (the first 256 bytes are the second-stage
        // bootloader), 264 KiB SRAM of which the 256 KiB striped banks are used here.
        Some("MEMORY\n{\n  BOOT2 : ORIGIN = 0x10000000, LENGTH = 0x100\n  FLASH : ORIGIN = 0x10000100, LENGTH = 2048K - 0x100\n  RAM : ORIGIN = 0x20000000, LENGTH = 256K\n}\nEXTERN(BOOT2_FIRMWARE)\nSECTIONS {\n  .boot2 ORIGIN(BOOT2) :\n  {\n    KEEP(*(.boot2));\n  } > BOOT2\n} INSERT BEFORE .text;\n")
    } else if env::var_os("CARGO_FEATURE_RISCV_VIRT").is_some() {
        // QEMU's virt machine has RAM only (0x8000_0000): we place a real part's flash and
        // RAM sizes in it (riscv-rt's regions). Without an FPU (riscv32imac) a GD32VF103CB's
        // 128 KiB / 32 KiB; with one (riscv32imafc) a CH32V303RC's 256 KiB / 64 KiB.
        // Stable rustc does not show the `f` feature to cfg: read the target's ISA letters.
        let target = env::var("TARGET").unwrap_or_default();
        let isa = target.split('-').next().unwrap_or_default();
        let fpu = isa
            .strip_prefix("riscv32")
            .is_some_and(|letters| letters.contains('f') || letters.starts_with('g'));
        Some(if fpu {
            "MEMORY\n{\n  FLASH : ORIGIN = 0x80000000, LENGTH = 256K\n  RAM : ORIGIN = 0x80100000, LENGTH = 64K\n}\nREGION_ALIAS(\"REGION_TEXT\", FLASH);\nREGION_ALIAS(\"REGION_RODATA\", FLASH);\nREGION_ALIAS(\"REGION_DATA\", RAM);\nREGION_ALIAS(\"REGION_BSS\", RAM);\nREGION_ALIAS(\"REGION_HEAP\", RAM);\nREGION_ALIAS(\"REGION_STACK\", RAM);\n"
        } else {
            "MEMORY\n{\n  FLASH : ORIGIN = 0x80000000, LENGTH = 128K\n  RAM : ORIGIN = 0x80100000, LENGTH = 32K\n}\nREGION_ALIAS(\"REGION_TEXT\", FLASH);\nREGION_ALIAS(\"REGION_RODATA\", FLASH);\nREGION_ALIAS(\"REGION_DATA\", RAM);\nREGION_ALIAS(\"REGION_BSS\", RAM);\nREGION_ALIAS(\"REGION_HEAP\", RAM);\nREGION_ALIAS(\"REGION_STACK\", RAM);\n"
        })
    } else {
        None
    };
    if env::var_os("CARGO_FEATURE_MPS2_AN386").is_some() {
        // cortex-m-rt's `device` feature includes device.x, where a device crate names
        // its interrupt handlers: mps2_an386.rs declares its one vector itself.
        fs::write(
            out.join("device.x"),
            "/* mps2-an386: no interrupt handlers */\n",
        )
        .unwrap_or_else(|e| fail(format!("cannot write device.x: {e}")));
    }
    if let Some(m) = memory {
        fit::check(&embedded, m);
        fs::write(out.join("memory.x"), m)
            .unwrap_or_else(|e| fail(format!("cannot write memory.x: {e}")));
        println!("cargo:rustc-link-search={}", out.display());
    }
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-Tlink.x");
        if env::var_os("CARGO_FEATURE_DEFMT").is_some() {
            println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
        }
    }
}
