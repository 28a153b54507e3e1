//! Refuses the `dsp` feature on an Arm target whose core lacks the DSP extension.
//!
//! Stable rustc does not expose Arm's `dsp` target feature to `cfg`, so the target is
//! judged here from its triple and the `-C target-cpu` / `-C target-feature` flags:
//! Armv7E-M (`thumbv7em-*`) always has the DSP instructions; Armv8-M Mainline
//! (`thumbv8m.main-*`) has them only where the core does (Cortex-M33/M35P/M55/M85, given
//! with `-C target-cpu=...` or `-C target-feature=+dsp`); Armv6-M, Armv7-M and Armv8-M
//! Baseline never do. Without this check the assembler fails deep inside `quant.rs` with
//! "instruction requires: dsp", or, worse, a hand-linked object faults on the device.

use std::env;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(microconv_dsp_unavailable)");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    if env::var_os("CARGO_FEATURE_DSP").is_none()
        || env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("arm")
    {
        return;
    }
    let target = env::var("TARGET").unwrap_or_default();
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let flags: Vec<&str> = flags.split('\x1f').collect();
    // `-C target-cpu=X` arrives as one argument or as `-C` then `target-cpu=X`.
    let value = |key: &str| -> Vec<String> {
        flags
            .iter()
            .filter_map(|f| f.strip_prefix("-C").unwrap_or(f).strip_prefix(key))
            .map(str::to_owned)
            .collect()
    };
    let cpu_has_dsp = value("target-cpu=").iter().any(|c| {
        matches!(
            c.as_str(),
            "cortex-m4" | "cortex-m7" | "cortex-m33" | "cortex-m35p" | "cortex-m55" | "cortex-m85"
        )
    });
    let feature_dsp = value("target-feature=")
        .iter()
        .any(|f| f.split(',').any(|x| x == "+dsp"));
    let ok = target.starts_with("thumbv7em")
        || (target.starts_with("thumbv8m.main") && (cpu_has_dsp || feature_dsp));
    if !ok {
        println!("cargo:rustc-cfg=microconv_dsp_unavailable");
    }
}
