//! Whether the embedded model fits the board being built for: flash for the weights and
//! the code, RAM for the inference arena, the frame buffers and the stack, from the
//! board's memory.x. A model too large fails the build here with one message (what it
//! needs, what the board has, what to do) instead of the linker's overflow errors.

use std::fs;

use microconv::weights::{AnyModel, Precision};
use microconv_build::Embedded;

/// Code and constant data besides the weights, at least. Measured 2026-12-02 (llvm-size,
/// text): the mps2-an386 firmware with the 1,420-byte int8 weights of
/// examples/networks/digits-14x14x2.toml has 50,584 B, so 49,164 B besides the weights
/// (53,700 B with its 2,928-byte f32 weights). A lower bound well below that, for the
/// other boards and for smaller code to come: a model this check lets through may still
/// overflow by less than the code's real size, and the linker says so.
const CODE_AT_LEAST: usize = 16 * 1024;
/// Stack besides the app's frame and image buffers, at least: the same f32 firmware's
/// painted stack high-water mark is 4,288 B, 816 B of it those buffers.
const STACK_AT_LEAST: usize = 2 * 1024;

/// The `LENGTH` of region `name` in a memory.x, in bytes (`256K`, `2M`, `0x100`,
/// `2048K - 0x100`).
fn region_len(memory_x: &str, name: &str) -> Option<usize> {
    let line = memory_x
        .lines()
        .find(|l| l.trim_start().starts_with(name) && l.contains("LENGTH"))?;
    let expr = line
        .split("LENGTH")
        .nth(1)?
        .trim_start()
        .strip_prefix('=')?;
    let mut total: i64 = 0;
    for (i, term) in expr.split('-').enumerate() {
        let t = term.trim();
        let (num, scale) = match t.chars().last()? {
            'K' | 'k' => (&t[..t.len() - 1], 1024),
            'M' | 'm' => (&t[..t.len() - 1], 1024 * 1024),
            _ => (t, 1),
        };
        let v = match num.strip_prefix("0x") {
            Some(h) => i64::from_str_radix(h, 16).ok()?,
            None => num.parse::<i64>().ok()?,
        } * scale;
        total += if i == 0 { v } else { -v };
    }
    usize::try_from(total).ok()
}

/// The frame buffer of a model with `input_len` bytes of input
/// (`microconv_firmware::protocol::frame_capacity`).
fn frame_capacity(input_len: usize) -> usize {
    let train = 5 + input_len + input_len.div_ceil(128);
    3 + train.max(10) + 4
}

/// Stops the build if the model in `embedded` cannot fit the board of `memory_x`.
pub fn check(embedded: &Embedded, memory_x: &str) {
    let (Some(flash), Some(ram)) = (region_len(memory_x, "FLASH"), region_len(memory_x, "RAM"))
    else {
        return;
    };
    let Ok(bytes) = fs::read(&embedded.path) else {
        return; // microconv-build has read it already; it reports read errors
    };
    // The parser reads in place and needs 4-byte alignment.
    let mut buf = vec![0u8; bytes.len() + 16];
    let off = buf.as_ptr().align_offset(16);
    buf[off..off + bytes.len()].copy_from_slice(&bytes);
    let Ok(model) = AnyModel::parse(&buf[off..off + bytes.len()]) else {
        return; // microconv-build has parsed it already; it reports format errors
    };
    let arch = model.arch();
    let int8 = model.precision() == Precision::Int8;
    let (precision, elem) = if int8 { ("int8", 1) } else { ("f32", 4) };
    let weights = bytes.len();
    let arena = elem * arch.planned_len(1);
    let frames = 2 * frame_capacity(arch.input.len());
    let flash_need = weights + CODE_AT_LEAST;
    let ram_need = arena + frames + STACK_AT_LEAST;
    if flash_need <= flash && ram_need <= ram {
        return;
    }
    let train = std::env::var_os("CARGO_FEATURE_TRAIN").is_some();
    let verdict = |need: usize, have: usize| {
        if need <= have {
            "fits".to_string()
        } else {
            format!("{} B too many", need - have)
        }
    };
    // int8 weights are about a quarter of the float file (weights int8, biases int32).
    let int8_flash = weights / 4 + CODE_AT_LEAST;
    let int8_ram = arch.planned_len(1) + frames + STACK_AT_LEAST;
    let what = if !int8 && int8_flash <= flash && int8_ram <= ram {
        "quantize it (`host-trainer quantize --params FILE.params --out FILE-int8.mcw`: int8 weights take about a quarter of the flash, the arena a quarter of the RAM) or train a smaller network"
    } else if !int8 {
        "train a smaller network (quantizing alone is not enough: int8 takes about a quarter, still too much)"
    } else {
        "train a smaller network"
    };
    let i = arch.input;
    super::fail(format!(
        "the {precision} model in {} ({} parameters, {}x{}x{} input, {} classes) does not fit this board. Flash: needs at least {flash_need} B ({weights} B of weights + at least {CODE_AT_LEAST} B of code), the board has {flash} B: {}. RAM: needs at least {ram_need} B ({arena} B {precision} inference arena + {frames} B frame buffers + at least {STACK_AT_LEAST} B of stack{}), the board has {ram} B: {}. (The board's sizes are its memory.x in firmware/build.rs.) To fit: {what}; a smaller network has fewer filters or units, or a pool earlier (`host-trainer summary --arch FILE` gives each layer's parameters and the firmware's RAM and flash for f32 and int8).",
        embedded.path.display(),
        arch.param_count(),
        i.h,
        i.w,
        i.c,
        arch.classes(),
        verdict(flash_need, flash),
        if train { ", and more for training" } else { "" },
        verdict(ram_need, ram),
    ));
}
