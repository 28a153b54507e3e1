//! Whether the embedded model fits the board being built for: flash for the weights and
//! the code, RAM for the inference arena, the frame buffers and the stack, from the
//! board's memory.x. A model too large fails the build here with one message (what it
//! needs, what the board has, what to do) instead of the linker's overflow errors.

use std::fs;

use microconv::weights::{AnyModel, Precision};
use microconv_build::Embedded;

/// Code and constant data besides the weights, at least: the smallest firmware of this
/// crate (mps2-an386, int8 `small`, 2026-12-02) has 27,204 B of flash of which 15,236 B
/// are the weights file. Builds with a float model, DSP kernels or training have more.
const CODE_AT_LEAST: usize = 11 * 1024;
/// Stack besides the app's frame and image buffers, at least: the mps2-an386 `small`
/// firmware's painted stack high-water mark is 3,972 B with 1,587 B of those buffers.
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
    let what = if int8 {
        "train a smaller network (fewer filters, a pool earlier; `host-trainer summary --arch FILE` shows each layer's flash and RAM)"
    } else {
        "quantize it (`host-trainer quantize --out FILE.mcw`: int8 weights take a quarter of the flash, its arena a quarter of the RAM) or train a smaller network (fewer filters, a pool earlier; `host-trainer summary --arch FILE` shows each layer's flash and RAM)"
    };
    let i = arch.input;
    super::fail(format!(
        "the {precision} model in {} ({} parameters, {}x{}x{} input, {} classes) does not fit this board: it needs at least {flash_need} B of flash ({weights} B of weights + at least {CODE_AT_LEAST} B of code) and at least {ram_need} B of RAM ({arena} B {precision} inference arena + {frames} B frame buffers + at least {STACK_AT_LEAST} B of stack{}); the board has {flash} B of flash and {ram} B of RAM (memory.x in firmware/build.rs). To fit: {what}",
        embedded.path.display(),
        arch.param_count(),
        i.h,
        i.w,
        i.c,
        arch.classes(),
        if train { ", and more for training" } else { "" },
    ));
}
