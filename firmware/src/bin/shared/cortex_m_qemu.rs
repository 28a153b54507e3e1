//! What the Cortex-M QEMU binaries (`mps2_an386.rs`, `mps2_an500.rs`, `mps2_an505.rs`,
//! `microbit.rs`) share: SysTick as a stopwatch, the stack high-water mark, the embedded
//! model's runner (and, with the `train` feature and a float model, the one that learns),
//! the serve loop, and failure through semihosting. Each binary adds its UART, its LED
//! and its [`Board`] constants; it declares `mod model` (shared/model.rs) beside this
//! module. (Not a Cargo target: only `src/bin/*.rs` and `src/bin/*/main.rs` are.)

use core::convert::Infallible;
use core::marker::PhantomData;
use core::panic::PanicInfo;
use core::ptr::{addr_of, read_volatile, write_volatile};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m::singleton;
use defmt_semihosting as _;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;
use embedded_io::{ErrorType, Read, ReadReady, Write};
use microconv_firmware::app::{App, Outcome, Runner, Stopwatch};
use microconv_firmware::embedded::{self, EmbeddedError};
use microconv_firmware::finetune::{all_layers, arena_len, marks_len, plain, Buffers, FineTune};

use crate::model::{
    infer_f32, infer_i8, ARCH, F32_ARENA_LEN, F32_BUF_LEN, F32_INPUT_LEN, I8_ARENA_LEN,
    I8_SCRATCH_LEN, INT8, PARAMS, PARAM_COUNT, QNET, SIZES, WEIGHTS_BYTES,
};

/// Training on the device (feature `train`, float models only): the arena and marks of
/// the largest selection this build accepts, every layer with plain SGD (smaller ones,
/// or the last layer with momentum and accumulation, fit in the same memory).
const TRAIN: bool = cfg!(feature = "train") && !INT8;
const ARENA: usize = if TRAIN {
    arena_len(&ARCH, &plain(all_layers(&ARCH), false))
} else {
    0
};
const MARKS: usize = if TRAIN {
    marks_len(&ARCH, &plain(all_layers(&ARCH), false))
} else {
    0
};
/// The training build's activation buffers (the backward pass needs every layer's
/// output; `FineTune` takes them); classifying alone runs in the planned arena.
const TRAIN_BUF_LEN: usize = if TRAIN { F32_BUF_LEN } else { 0 };
const TRAIN_INPUT_LEN: usize = if TRAIN { F32_INPUT_LEN } else { 0 };
/// The planned arena of a build that only classifies (0 in the training build).
const RUN_ARENA_LEN: usize = if TRAIN { 0 } else { F32_ARENA_LEN };
/// SGD's learning rate until a TRAIN frame sets its own.
const DEFAULT_LR: f32 = 0.003;

/// A board: its name (logs), core clock (SysTick counts it: under `-icount shift=0` one
/// instruction is 1 ns), and the tag `host-trainer` reads. Constants, so that the clock
/// arithmetic folds at compile time.
pub trait Board {
    /// Shown in the startup log: `defmt::intern!("...")`, which keeps the text in the
    /// ELF's defmt table, not in flash.
    fn name() -> defmt::Str;
    /// SysTick's clock, Hz.
    const CLOCK_HZ: u32;
    /// The machine, for `host-trainer board --qemu`, which reads it from the ELF:
    /// `microconv-qemu:` then the QEMU program, machine, CPU and extra options, each
    /// ended by `;`. `run` keeps it in the image. Empty for mps2-an386, the machine
    /// `host-trainer` assumes for an Arm ELF without a tag.
    const TAG: &'static [u8];
}

/// SysTick as a 24-bit down-counter from its maximum, reported in units of 40
/// instructions under `-icount shift=0` (the unit of `mps2-an386`, whose 25 MHz SysTick
/// ticks once per 40 instructions, and the one `host-trainer` multiplies by), so that
/// every QEMU target's RESULT frames mean the same thing: `raw * 1e9 / clock / 40`.
/// At 25 MHz (mps2-an386, mps2-an500) a raw tick is already that unit.
pub struct SysTickWatch<B> {
    syst: SYST,
    _board: PhantomData<B>,
}

impl<B: Board> Stopwatch for SysTickWatch<B> {
    fn start(&mut self) {
        self.syst.disable_counter();
        self.syst.set_reload(0x00FF_FFFF);
        self.syst.clear_current();
        self.syst.enable_counter();
    }
    fn ticks(&mut self) -> u32 {
        let raw = 0x00FF_FFFF - SYST::get_current();
        if B::CLOCK_HZ == 25_000_000 {
            raw
        } else {
            (raw as u64 * 1_000_000_000 / (B::CLOCK_HZ as u64 * 40)) as u32
        }
    }
}

/// Busy-wait delay counted in core clock cycles.
pub struct CycleDelay<B>(PhantomData<B>);

impl<B: Board> DelayNs for CycleDelay<B> {
    fn delay_ns(&mut self, ns: u32) {
        cortex_m::asm::delay(((ns as u64 * B::CLOCK_HZ as u64) / 1_000_000_000).max(1) as u32);
    }
}

/// A pin that goes nowhere (machines whose LED register is not worth a fault; mps2-an386
/// has its own LED).
#[allow(dead_code)]
pub struct NoLed;

impl embedded_hal::digital::ErrorType for NoLed {
    type Error = Infallible;
}

impl OutputPin for NoLed {
    fn set_high(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
    fn set_low(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// CMSDK APB UART (mps2 machines): DATA +0x0, STATE +0x4 (bit 0 TX full, bit 1 RX full),
/// CTRL +0x8 (bit 0 TX enable, bit 1 RX enable), BAUDDIV +0x10 (QEMU ignores the UART
/// until it is >= 16).
#[allow(dead_code)]
pub struct CmsdkUart {
    base: usize,
}

#[allow(dead_code)]
impl CmsdkUart {
    fn reg(&self, off: usize) -> *mut u32 {
        (self.base + off) as *mut u32
    }
    fn read_reg(&self, off: usize) -> u32 {
        // SAFETY: `base` is a CMSDK UART's register block on the machine the binary is
        // for (given by the binary, from QEMU's hw/arm/mps2*.c), always mapped, 4-byte
        // aligned; reads of DATA/STATE affect only the UART. Exercised by every CI run.
        unsafe { read_volatile(self.reg(off)) }
    }
    fn write_reg(&self, off: usize, v: u32) {
        // SAFETY: as in `read_reg`; writes go to the UART's own registers.
        unsafe { write_volatile(self.reg(off), v) }
    }
    /// Enables the UART whose registers start at `base`.
    pub fn new(base: usize) -> Self {
        let u = CmsdkUart { base };
        u.write_reg(0x10, 16); // BAUDDIV
        u.write_reg(0x8, 0b11); // TX and RX enabled, no interrupts
        u
    }
}

impl ErrorType for CmsdkUart {
    type Error = Infallible;
}

impl ReadReady for CmsdkUart {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(self.read_reg(0x4) & 0b10 != 0)
    }
}

impl Read for CmsdkUart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.read_reg(0x4) & 0b10 == 0 {}
        buf[0] = self.read_reg(0x0) as u8;
        Ok(1)
    }
}

impl Write for CmsdkUart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &b in buf {
            while self.read_reg(0x4) & 0b01 != 0 {}
            self.write_reg(0x0, b as u32);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        while self.read_reg(0x4) & 0b01 != 0 {}
        Ok(())
    }
}

const PAINT: u32 = 0xC0FF_EE55;

extern "C" {
    static __sheap: u32;
    static _stack_start: u32;
}

fn stack_bounds() -> (usize, usize) {
    // Only the addresses of the linker symbols are taken, never their contents.
    (addr_of!(__sheap) as usize, addr_of!(_stack_start) as usize)
}

/// Fills the unused stack (from the end of static data up to just below the current
/// stack pointer) with a pattern, so that the high-water mark can be measured later.
fn paint_stack() {
    let (bottom, _) = stack_bounds();
    let sp = cortex_m::register::msp::read() as usize;
    let mut p = bottom;
    while p + 4 <= sp - 64 {
        // SAFETY: [bottom, sp - 64) is RAM between the end of .bss/.data (`__sheap`) and
        // the live stack; nothing uses it (there is no heap), so overwriting it is sound.
        unsafe { write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
}

/// Bytes of stack ever used: from the top down to the lowest overwritten word.
fn stack_high_water() -> u32 {
    let (bottom, top) = stack_bounds();
    let mut p = bottom;
    // SAFETY: reads of the painted region (see `paint_stack`).
    while p < top && unsafe { read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    (top - p) as u32
}

/// The firmware: builds the embedded model's runner and answers frames on `serial`
/// forever. `serial` is made after the stack is painted, by `make_serial`.
pub fn run<B, S, P>(make_serial: impl FnOnce() -> S, led: P) -> !
where
    B: Board,
    S: Read + Write + ReadReady + ErrorType<Error = Infallible>,
    P: OutputPin,
{
    paint_stack();
    if !B::TAG.is_empty() {
        // Keep the machine tag in the image (nothing else reads it on the device).
        core::hint::black_box(B::TAG.as_ptr());
    }
    let Some(mut cp) = cortex_m::Peripherals::take() else {
        fail("core peripherals taken twice")
    };
    cp.SYST.set_clock_source(SystClkSource::Core);
    let (bottom, top) = stack_bounds();
    defmt::info!(
        "microconv on {=istr}: {=usize} parameters, {=usize} B weights in flash, {=usize} B inference buffers, {=usize} B for the stack",
        B::name(),
        PARAM_COUNT,
        WEIGHTS_BYTES,
        4 * (RUN_ARENA_LEN + TRAIN_BUF_LEN + TRAIN_INPUT_LEN + I8_SCRATCH_LEN) + I8_ARENA_LEN,
        top - bottom
    );
    let watch = SysTickWatch::<B> {
        syst: cp.SYST,
        _board: PhantomData,
    };
    let delay = CycleDelay::<B>(PhantomData);
    if INT8 {
        let runner = embedded::int8(
            &QNET,
            singleton!(: [i8; I8_ARENA_LEN] = [0; I8_ARENA_LEN])
                .unwrap_or_else(|| fail("buffers taken twice")),
            singleton!(: [u32; I8_SCRATCH_LEN] = [0; I8_SCRATCH_LEN])
                .unwrap_or_else(|| fail("buffers taken twice")),
            infer_i8,
            SIZES,
        )
        .unwrap_or_else(|e| embedded_failed(e));
        serve(make_serial(), led, delay, watch, runner)
    }
    if TRAIN {
        let buf = singleton!(: [f32; TRAIN_BUF_LEN] = [0.0; TRAIN_BUF_LEN])
            .unwrap_or_else(|| fail("buffers taken twice"));
        let input = singleton!(: [f32; TRAIN_INPUT_LEN] = [0.0; TRAIN_INPUT_LEN])
            .unwrap_or_else(|| fail("buffers taken twice"));
        let buffers = Buffers {
            arena: singleton!(: [f32; ARENA] = [0.0; ARENA])
                .unwrap_or_else(|| fail("buffers taken twice")),
            marks: singleton!(: [u8; MARKS] = [0; MARKS])
                .unwrap_or_else(|| fail("buffers taken twice")),
            buf,
            input,
        };
        let tuner = FineTune::new(ARCH, &PARAMS, buffers, DEFAULT_LR)
            .unwrap_or_else(|_| fail("the model cannot be fine-tuned"));
        defmt::info!(
            "training on the device: {=usize} B arena (trainable copy, optimizer state, saved inputs), {=usize} B of ReLU signs and max-pool positions",
            4 * ARENA,
            MARKS
        );
        serve(make_serial(), led, delay, watch, tuner)
    }
    let arena = singleton!(: [f32; RUN_ARENA_LEN] = [0.0; RUN_ARENA_LEN])
        .unwrap_or_else(|| fail("buffers taken twice"));
    let runner = embedded::float(ARCH, &PARAMS, arena, infer_f32, SIZES)
        .unwrap_or_else(|e| embedded_failed(e));
    serve(make_serial(), led, delay, watch, runner)
}

/// Answers requests forever, logging every 1,000th classification and 100th training step.
/// Inlined, and the app built here rather than moved in, so that the stack holds one copy
/// of the app (its frame decoder) in the frame of `run`, not two.
#[inline(always)]
fn serve<B, S, P, M>(serial: S, led: P, delay: CycleDelay<B>, watch: SysTickWatch<B>, model: M) -> !
where
    B: Board,
    S: Read + Write + ReadReady + ErrorType<Error = Infallible>,
    P: OutputPin,
    M: Runner<'static>,
{
    let mut app =
        App::<_, _, _, _, _, { crate::model::FRAME_CAP }>::new(serial, led, delay, watch, model)
            .with_stack_probe(stack_high_water);
    loop {
        let Ok(outcome) = app.poll();
        match outcome {
            Outcome::Classified(c) => {
                let n = app.stats.classified;
                if n == 1 || n.is_multiple_of(1000) {
                    defmt::info!(
                        "image {=u32}: digit {=u8}, {=u32} instructions (-icount shift=0), stack high-water {=u32} B",
                        n,
                        c.digit,
                        c.ticks * 40,
                        stack_high_water()
                    );
                }
            }
            Outcome::Trained(t) if TRAIN && (t.steps == 1 || t.steps % 100 == 0) => {
                defmt::info!(
                    "training step {=u32}: loss {=f32}, {=u32} instructions (-icount shift=0), stack high-water {=u32} B",
                    t.steps,
                    t.loss,
                    t.ticks * 40,
                    stack_high_water()
                );
            }
            Outcome::Refused(e) => defmt::warn!("refused a frame: {}", e),
            _ => {}
        }
    }
}

fn embedded_failed(e: EmbeddedError) -> ! {
    match e {
        EmbeddedError::Classifier(_) => fail("model does not fit the classifier"),
    }
}

/// Logs `msg` and ends QEMU with a failure status.
pub fn fail(msg: &str) -> ! {
    defmt::error!("{=str}", msg);
    cortex_m_semihosting::debug::exit(cortex_m_semihosting::debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    // Where, not what: formatting the message through `core::fmt` would link its
    // machinery (about 13 KB of flash) into every build for a path that the library's
    // no-panic rule keeps unreachable; the location finds the line.
    match info.location() {
        Some(at) => defmt::error!("panic at {=str}:{=u32}", at.file(), at.line()),
        None => defmt::error!("panic"),
    }
    fail("panicked")
}
