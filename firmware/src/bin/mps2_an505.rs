//! QEMU's `mps2-an505` (Cortex-M33 with FPU and DSP, `thumbv8m.main-none-eabihf` built
//! with `-C target-cpu=cortex-m33`, which `.cargo/config.toml` sets for this target).
//!
//! The core starts in the secure state and the firmware stays there: code at the secure
//! alias of SSRAM1 (0x1000_0000, where QEMU's initial secure VTOR points), data in the
//! secure alias of SSRAM2 (0x3800_0000), UART0 at its secure alias 0x5020_0000 (QEMU
//! hw/arm/mps2-tz.c; the PPC lets secure accesses through). Logs: defmt over
//! semihosting. Cost: SysTick at the 20 MHz main clock, reported in units of 40
//! instructions under `-icount shift=0`.
#![no_std]
#![no_main]

#[path = "shared/model.rs"]
mod model;
#[path = "shared/cortex_m_qemu.rs"]
mod shared;

use cortex_m_rt::entry;
use shared::{Board, CmsdkUart, NoLed};

struct Mps2An505;

impl Board for Mps2An505 {
    fn name() -> defmt::Str {
        defmt::intern!("mps2-an505 (Cortex-M33)")
    }
    const CLOCK_HZ: u32 = 20_000_000;
    const TAG: &'static [u8] = b"microconv-qemu:qemu-system-arm;mps2-an505;cortex-m33;;\0";
}

#[entry]
fn main() -> ! {
    shared::run::<Mps2An505, _, _>(|| CmsdkUart::new(0x5020_0000), NoLed)
}
