//! QEMU's `mps2-an386` (Cortex-M4F): the firmware CI runs.
//!
//! Serial: CMSDK APB UART0 at 0x4000_4000 (QEMU's `-serial`). Pin: FPGAIO LED0 at
//! 0x4002_8000. Logs: defmt over semihosting (QEMU's stdout, decode with `defmt-print`).
//! Cost: SysTick counts the core clock (25 MHz); under `-icount shift=0` one instruction
//! is 1 ns, so one tick is 40 instructions.
#![no_std]
#![no_main]

use core::convert::Infallible;
use core::panic::PanicInfo;
use core::ptr::{addr_of, read_volatile, write_volatile};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m::singleton;
use cortex_m_rt::entry;
use defmt_semihosting as _;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{ErrorType as PinErrorType, OutputPin};
use embedded_io::{ErrorType, Read, ReadReady, Write};
use microconv::qformat::QModel;
use microconv_firmware::app::{App, Outcome, Runner, Stopwatch};
use microconv_firmware::embedded::{self, EmbeddedError, Storage};
use microconv_firmware::finetune::{all_layers, arena_len, marks_len, plain, Buffers, FineTune};

include!(concat!(env!("OUT_DIR"), "/model.rs"));

/// Buffer sizes: the float pair for a float model, the int8 pair for an int8 one.
const F32_BUF: usize = if INT8 { 0 } else { ARCH.inference_len(1) };
const F32_IN: usize = if INT8 { 0 } else { 784 };
const I8_BUF: usize = if INT8 { ARCH.inference_len(1) } else { 0 };
const I8_IN: usize = if INT8 { 784 } else { 0 };

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
/// SGD's learning rate until a TRAIN frame sets its own.
const DEFAULT_LR: f32 = 0.003;

const CLOCK_HZ: u32 = 25_000_000;
const INSTRUCTIONS_PER_TICK: u32 = 40;

/// CMSDK APB UART: DATA +0x0, STATE +0x4 (bit 0 TX full, bit 1 RX full), CTRL +0x8
/// (bit 0 TX enable, bit 1 RX enable), BAUDDIV +0x10 (QEMU ignores the UART until it is >= 16).
struct CmsdkUart {
    base: usize,
}

impl CmsdkUart {
    fn reg(&self, off: usize) -> *mut u32 {
        (self.base + off) as *mut u32
    }
    fn read_reg(&self, off: usize) -> u32 {
        // SAFETY: `base` is UART0's register block on this machine (QEMU hw/arm/mps2.c),
        // always mapped, 4-byte aligned; reads of DATA/STATE have no effect beyond the
        // UART's. Exercised by every CI run of the QEMU end-to-end test.
        unsafe { read_volatile(self.reg(off)) }
    }
    fn write_reg(&self, off: usize, v: u32) {
        // SAFETY: as in `read_reg`; writes go to the UART's own registers.
        unsafe { write_volatile(self.reg(off), v) }
    }
    fn new(base: usize) -> Self {
        let u = CmsdkUart { base };
        u.write_reg(0x10, 16); // BAUDDIV: 25 MHz / 16
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

/// FPGAIO LED0 as an output pin.
struct Led;

impl PinErrorType for Led {
    type Error = Infallible;
}

impl OutputPin for Led {
    fn set_high(&mut self) -> Result<(), Infallible> {
        // SAFETY: FPGAIO's LED register (0x4002_8000) on mps2-an386, always mapped.
        unsafe { write_volatile(0x4002_8000 as *mut u32, 1) };
        Ok(())
    }
    fn set_low(&mut self) -> Result<(), Infallible> {
        // SAFETY: as in `set_high`.
        unsafe { write_volatile(0x4002_8000 as *mut u32, 0) };
        Ok(())
    }
}

/// Busy-wait delay counted in core clock cycles.
struct CycleDelay;

impl DelayNs for CycleDelay {
    fn delay_ns(&mut self, ns: u32) {
        cortex_m::asm::delay(((ns as u64 * CLOCK_HZ as u64) / 1_000_000_000).max(1) as u32);
    }
}

/// SysTick as a 24-bit down-counter from its maximum.
struct SysTickWatch(SYST);

impl Stopwatch for SysTickWatch {
    fn start(&mut self) {
        self.0.disable_counter();
        self.0.set_reload(0x00FF_FFFF);
        self.0.clear_current();
        self.0.enable_counter();
    }
    fn ticks(&mut self) -> u32 {
        0x00FF_FFFF - SYST::get_current()
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

#[entry]
fn main() -> ! {
    paint_stack();
    let cp = cortex_m::Peripherals::take();
    let Some(mut cp) = cp else {
        fail("core peripherals taken twice")
    };
    cp.SYST.set_clock_source(SystClkSource::Core);
    let f32_buf = singleton!(: [f32; F32_BUF] = [0.0; F32_BUF])
        .unwrap_or_else(|| fail("buffers taken twice"));
    let f32_input =
        singleton!(: [f32; F32_IN] = [0.0; F32_IN]).unwrap_or_else(|| fail("buffers taken twice"));
    let (bottom, top) = stack_bounds();
    defmt::info!(
        "microconv on mps2-an386: {=usize} parameters, {=usize} B weights in flash, {=usize} B inference buffers, {=usize} B for the stack",
        ARCH.param_count(),
        MODEL.0.len(),
        4 * F32_BUF + I8_BUF,
        top - bottom
    );
    let (serial, watch) = (CmsdkUart::new(0x4000_4000), SysTickWatch(cp.SYST));
    if TRAIN {
        let model = microconv::format::Model::parse(&MODEL.0).unwrap_or_else(|e| fail_fmt(e));
        let buffers = Buffers {
            arena: singleton!(: [f32; ARENA] = [0.0; ARENA])
                .unwrap_or_else(|| fail("buffers taken twice")),
            marks: singleton!(: [u8; MARKS] = [0; MARKS])
                .unwrap_or_else(|| fail("buffers taken twice")),
            buf: f32_buf,
            input: f32_input,
        };
        let tuner = FineTune::new(ARCH, model.params(), buffers, DEFAULT_LR)
            .unwrap_or_else(|_| fail("the model cannot be fine-tuned"));
        defmt::info!(
            "training on the device: {=usize} B arena (trainable copy, optimizer state, saved inputs), {=usize} B of ReLU signs and max-pool positions",
            4 * ARENA,
            MARKS
        );
        serve(App::new(serial, Led, CycleDelay, watch, tuner))
    } else {
        let storage = Storage {
            f32_buf,
            f32_input,
            i8_buf: singleton!(: [i8; I8_BUF] = [0; I8_BUF])
                .unwrap_or_else(|| fail("buffers taken twice")),
            i8_input: singleton!(: [i8; I8_IN] = [0; I8_IN])
                .unwrap_or_else(|| fail("buffers taken twice")),
            qmodel: singleton!(: Option<QModel<'static>> = None)
                .unwrap_or_else(|| fail("buffers taken twice")),
        };
        let classifier = match embedded::classifier(&MODEL.0, ARCH, INT8, storage) {
            Ok(c) => c,
            Err(EmbeddedError::Format(e)) => fail_fmt(e),
            Err(EmbeddedError::ArchMismatch) => {
                fail("embedded weights do not match the compiled architecture")
            }
            Err(EmbeddedError::Classifier(_)) => fail("model does not fit the classifier"),
        };
        serve(App::new(serial, Led, CycleDelay, watch, classifier))
    }
}

/// Answers requests forever, logging every 1,000th classification and 100th training step.
fn serve<M: Runner<'static>>(app: App<'static, CmsdkUart, Led, CycleDelay, SysTickWatch, M>) -> ! {
    let mut app = app.with_stack_probe(stack_high_water);
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
                        c.ticks * INSTRUCTIONS_PER_TICK,
                        stack_high_water()
                    );
                }
            }
            Outcome::Trained(t) if t.steps == 1 || t.steps % 100 == 0 => {
                defmt::info!(
                    "training step {=u32}: loss {=f32}, {=u32} instructions (-icount shift=0), stack high-water {=u32} B",
                    t.steps,
                    t.loss,
                    t.ticks * INSTRUCTIONS_PER_TICK,
                    stack_high_water()
                );
            }
            Outcome::Refused(e) => defmt::warn!("refused a frame: {}", e),
            _ => {}
        }
    }
}

fn fail(msg: &str) -> ! {
    defmt::error!("{=str}", msg);
    cortex_m_semihosting::debug::exit(cortex_m_semihosting::debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

fn fail_fmt(e: microconv::format::FormatError) -> ! {
    defmt::error!("embedded weights: {}", defmt::Debug2Format(&e));
    fail("invalid embedded weights")
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    defmt::error!("panic: {}", defmt::Display2Format(info));
    fail("panicked")
}
