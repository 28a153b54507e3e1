//! QEMU's `mps2-an500` (Cortex-M7 with FPU, `thumbv7em-none-eabihf`, DSP kernels).
//!
//! Serial: CMSDK APB UART0 at 0x4000_4000, as on mps2-an386 (QEMU hw/arm/mps2.c maps
//! both FPGA images alike). Logs: defmt over semihosting. Cost: SysTick at the 25 MHz
//! core clock, reported in units of 40 instructions under `-icount shift=0`.
//! Memory: linked for an STM32F722RE's 512 KiB flash and 256 KiB RAM (build.rs).
#![no_std]
#![no_main]

#[path = "shared/model.rs"]
mod model;
#[path = "shared/cortex_m_qemu.rs"]
mod shared;

use cortex_m_rt::entry;
use shared::{Board, CmsdkUart, NoLed};

struct Mps2An500;

impl Board for Mps2An500 {
    fn name() -> defmt::Str {
        defmt::intern!("mps2-an500 (Cortex-M7)")
    }
    const CLOCK_HZ: u32 = 25_000_000;
    const TAG: &'static [u8] = b"microconv-qemu:qemu-system-arm;mps2-an500;cortex-m7;;\0";
}

#[entry]
fn main() -> ! {
    shared::run::<Mps2An500, _, _>(|| CmsdkUart::new(0x4000_4000), NoLed)
}
