//! QEMU's `mps2-an500` (Cortex-M7 with FPU, `thumbv7em-none-eabihf`, DSP kernels).
//!
//! Serial: CMSDK APB UART0 at 0x4000_4000, as on mps2-an386 (QEMU hw/arm/mps2.c maps
//! both FPGA images alike). Logs: defmt over semihosting. Cost: SysTick at the 25 MHz
//! core clock, reported in units of 40 instructions under `-icount shift=0`.
//! Memory: linked for an STM32F722RE's 512 KiB flash and 256 KiB RAM (build.rs).
#![no_std]
#![no_main]

#[path = "shared/cortex_m_qemu.rs"]
mod shared;

use cortex_m_rt::entry;
use shared::{Board, CmsdkUart, NoLed};

#[entry]
fn main() -> ! {
    shared::run(
        Board {
            name: "mps2-an500 (Cortex-M7)",
            clock_hz: 25_000_000,
            tag: b"microconv-qemu:qemu-system-arm;mps2-an500;cortex-m7;;",
        },
        || CmsdkUart::new(0x4000_4000),
        NoLed,
    )
}
