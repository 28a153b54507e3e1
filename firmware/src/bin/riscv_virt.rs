//! QEMU's RISC-V `virt` machine (`qemu-system-riscv32 -M virt -cpu rv32 -bios none`),
//! built for `riscv32imac-unknown-none-elf` (int8 or soft-float f32) or
//! `riscv32imafc-unknown-none-elf` (f32 on the FPU; riscv-rt turns it on).
//!
//! Serial: the 16550 UART at 0x1000_0000. Logs: none (no defmt on this target); a
//! failure or panic ends QEMU through the virt machine's test device (0x10_0000) with
//! exit status 1, which `host-trainer` reports. Cost: the CLINT's 10 MHz `mtime` (100
//! instructions per tick under `-icount shift=0`), reported in units of 40 instructions
//! like the Arm targets. Memory: linked for a GD32VF103CB's 128 KiB flash and 32 KiB RAM, placed in
//! QEMU's RAM at 0x8000_0000 (build.rs).
#![no_std]
#![no_main]

use core::convert::Infallible;
use core::panic::PanicInfo;
use core::ptr::{addr_of, read_volatile, write_volatile};

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{ErrorType as PinErrorType, OutputPin};
use embedded_io::{ErrorType, Read, ReadReady, Write};
use microconv_firmware::app::{App, Outcome, Runner, Stopwatch};
use microconv_firmware::embedded;
use riscv::singleton;

#[path = "shared/model.rs"]
mod model;

use model::{
    infer_f32, infer_i8, ARCH, F32_ARENA_LEN, FRAME_CAP, I8_ARENA_LEN, I8_SCRATCH_LEN, INT8,
    PARAMS, QNET, SIZES,
};

/// Read by `host-trainer board --qemu` (see host-trainer/src/board.rs, `machine_of`);
/// the NUL ends it, whatever the linker places after it (with LTO, non-text bytes).
static QEMU_MACHINE: &[u8] = b"microconv-qemu:qemu-system-riscv32;virt;rv32;-bios none;\0";

/// The 16550 UART of the virt machine: RBR/THR +0, FCR +2, LSR +5 (bit 0 data ready,
/// bit 5 transmit holding register empty).
struct Uart16550;

const UART: usize = 0x1000_0000;

fn uart_read(off: usize) -> u8 {
    // SAFETY: the virt machine's 16550 (QEMU hw/riscv/virt.c, 0x1000_0000), always mapped,
    // byte registers; reading RBR pops one received byte, which is what `read` wants.
    // Exercised by every CI run of this target.
    unsafe { read_volatile((UART + off) as *const u8) }
}

fn uart_write(off: usize, v: u8) {
    // SAFETY: as in `uart_read`; writes go to the UART's own registers.
    unsafe { write_volatile((UART + off) as *mut u8, v) }
}

impl ErrorType for Uart16550 {
    type Error = Infallible;
}

impl ReadReady for Uart16550 {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(uart_read(5) & 0x01 != 0)
    }
}

impl Read for Uart16550 {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        if buf.is_empty() {
            return Ok(0);
        }
        while uart_read(5) & 0x01 == 0 {}
        buf[0] = uart_read(0);
        Ok(1)
    }
}

impl Write for Uart16550 {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &b in buf {
            while uart_read(5) & 0x20 == 0 {}
            uart_write(0, b);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// No LED on the virt machine.
struct NoLed;

impl PinErrorType for NoLed {
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

/// The CLINT's `mtime` (low word), 10 MHz on the virt machine: under `-icount shift=0`
/// one instruction is 1 ns, so one tick is 100 instructions. (QEMU 7.2's `minstret` and
/// `mcycle` read back non-monotonic values here: measured, so not used.)
fn mtime() -> u32 {
    // SAFETY: the virt machine's CLINT `mtime` register (0x0200_BFF8), always mapped,
    // 4-byte aligned, read-only in effect. Exercised by every CI run of this target.
    unsafe { read_volatile(0x0200_BFF8 as *const u32) }
}

/// Busy-wait for at least `ns` nanoseconds of virtual time.
struct TimerDelay;

impl DelayNs for TimerDelay {
    fn delay_ns(&mut self, ns: u32) {
        let start = mtime();
        let ticks = ns.div_ceil(100).max(1);
        while mtime().wrapping_sub(start) < ticks {}
    }
}

/// `mtime`, in units of 40 instructions (the unit of the Arm QEMU targets): one
/// 100-instruction tick is 2.5 units, so the count is exact to 100 instructions.
struct MtimeWatch(u32);

impl Stopwatch for MtimeWatch {
    fn start(&mut self) {
        self.0 = mtime();
    }
    fn ticks(&mut self) -> u32 {
        ((mtime().wrapping_sub(self.0) as u64 * 5) / 2) as u32
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

/// Fills the unused stack (from the end of static data up to 256 bytes below a local
/// of this frame) with a pattern, so that the high-water mark can be measured later.
#[inline(never)]
fn paint_stack() {
    let here = 0u32;
    let sp = core::hint::black_box(addr_of!(here)) as usize;
    let (bottom, _) = stack_bounds();
    let mut p = bottom;
    while p + 4 <= sp - 256 {
        // SAFETY: [bottom, sp - 256) is RAM between the end of .bss (`__sheap`; there is
        // no heap) and the live stack, which lies above this frame's local: unused.
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

/// Ends QEMU through the virt test device (SiFive "test finisher"): status `code`.
fn exit(code: u16) -> ! {
    let v = if code == 0 {
        0x5555
    } else {
        0x3333 | (code as u32) << 16
    };
    // SAFETY: the virt machine's test device at 0x10_0000; the write ends QEMU.
    unsafe { write_volatile(0x10_0000 as *mut u32, v) };
    loop {
        riscv::asm::wfi();
    }
}

fn fail() -> ! {
    exit(1)
}

#[riscv_rt::entry]
fn main() -> ! {
    paint_stack();
    core::hint::black_box(QEMU_MACHINE.as_ptr());
    if INT8 {
        let runner = embedded::int8(
            &QNET,
            singleton!(: [i8; I8_ARENA_LEN] = [0; I8_ARENA_LEN]).unwrap_or_else(|| fail()),
            singleton!(: [u32; I8_SCRATCH_LEN] = [0; I8_SCRATCH_LEN]).unwrap_or_else(|| fail()),
            infer_i8,
            SIZES,
        )
        .unwrap_or_else(|_| fail());
        serve(runner)
    }
    let runner = embedded::float(
        ARCH,
        &PARAMS,
        singleton!(: [f32; F32_ARENA_LEN] = [0.0; F32_ARENA_LEN]).unwrap_or_else(|| fail()),
        infer_f32,
        SIZES,
    )
    .unwrap_or_else(|_| fail());
    serve(runner)
}

/// Answers requests forever. Inlined, so that the app lives in `main`'s frame beside
/// what building the runner left there, not in a frame of its own below it.
#[inline(always)]
fn serve<M: Runner<'static>>(runner: M) -> ! {
    let mut app =
        App::<_, _, _, _, _, FRAME_CAP>::new(Uart16550, NoLed, TimerDelay, MtimeWatch(0), runner)
            .with_stack_probe(stack_high_water);
    loop {
        let Ok(outcome) = app.poll();
        if let Outcome::Refused(_) = outcome {
            // The host counts refusals from the ERROR frames; nothing to log here.
        }
    }
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    fail()
}
