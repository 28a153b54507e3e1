//! QEMU's `microbit` (nRF51822, Cortex-M0, `thumbv6m-none-eabi`): no DSP extension and no
//! FPU, so the int8 model runs the core's portable kernels (the same results, bit for
//! bit, as the DSP ones: CI compares both with the host).
//!
//! RAM: the micro:bit's own nRF51822-QFAA, 16 KiB, which the int8 firmware fits (about
//! 4.6 KiB of static buffers and 3 KiB of stack, see README); build.rs links for it and
//! `host-trainer` starts QEMU's microbit machine with that RAM, stated
//! (`-global nrf51-soc.sram-size=16384`).
//!
//! Serial: the nRF51 UART at 0x4000_2000 (TX P0.24, RX P0.25 on the micro:bit).
//! Logs: defmt over semihosting. Cost: SysTick at the 16 MHz core clock, reported in
//! units of 40 instructions under `-icount shift=0`.
#![no_std]
#![no_main]

#[path = "shared/model.rs"]
mod model;
#[path = "shared/cortex_m_qemu.rs"]
mod shared;

use core::convert::Infallible;
use core::ptr::{read_volatile, write_volatile};

use cortex_m_rt::entry;
use embedded_io::{ErrorType, Read, ReadReady, Write};
use shared::{Board, NoLed};

/// The nRF51 UART (nRF51 Series Reference Manual, chapter 29): tasks STARTRX +0x000,
/// STARTTX +0x008; events RXDRDY +0x108, TXDRDY +0x11C; ENABLE +0x500 (4 = on), PSELTXD
/// +0x50C, PSELRXD +0x514, RXD +0x518, TXD +0x51C, BAUDRATE +0x524.
struct NrfUart;

const UART: usize = 0x4000_2000;

fn reg_read(off: usize) -> u32 {
    // SAFETY: the UART0 register block of the nRF51 (0x4000_2000), always mapped, 4-byte
    // aligned; reading RXD pops one received byte, which is what `read` wants.
    // Exercised by every CI run of this target.
    unsafe { read_volatile((UART + off) as *const u32) }
}

fn reg_write(off: usize, v: u32) {
    // SAFETY: as in `reg_read`; writes go to the UART's own registers.
    unsafe { write_volatile((UART + off) as *mut u32, v) }
}

impl NrfUart {
    fn new() -> Self {
        reg_write(0x50C, 24); // PSELTXD: P0.24
        reg_write(0x514, 25); // PSELRXD: P0.25
        reg_write(0x524, 0x01D7_E000); // 115200 baud
        reg_write(0x500, 4); // ENABLE
        reg_write(0x008, 1); // STARTTX
        reg_write(0x000, 1); // STARTRX
        NrfUart
    }
}

impl ErrorType for NrfUart {
    type Error = Infallible;
}

impl ReadReady for NrfUart {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(reg_read(0x108) != 0)
    }
}

impl Read for NrfUart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        if buf.is_empty() {
            return Ok(0);
        }
        while reg_read(0x108) == 0 {}
        // Clear the event before taking the byte: if more bytes wait, the UART raises it
        // again as RXD is read.
        reg_write(0x108, 0);
        buf[0] = reg_read(0x518) as u8;
        Ok(1)
    }
}

impl Write for NrfUart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &b in buf {
            reg_write(0x11C, 0);
            reg_write(0x51C, b as u32);
            while reg_read(0x11C) == 0 {}
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

struct Microbit;

impl Board for Microbit {
    fn name() -> defmt::Str {
        defmt::intern!("microbit (nRF51822, Cortex-M0)")
    }
    const CLOCK_HZ: u32 = 16_000_000;
    const TAG: &'static [u8] =
        b"microconv-qemu:qemu-system-arm;microbit;cortex-m0;-global nrf51-soc.sram-size=16384;\0";
}

#[entry]
fn main() -> ! {
    shared::run::<Microbit, _, _>(NrfUart::new, NoLed)
}
