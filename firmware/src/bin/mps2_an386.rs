//! QEMU's `mps2-an386` (Cortex-M4F): the firmware CI runs.
//!
//! Serial: CMSDK APB UART0 at 0x4000_4000 (QEMU's `-serial`). Pin: FPGAIO LED0 at
//! 0x4002_8000. Logs: defmt over semihosting (QEMU's stdout, decode with `defmt-print`).
//! Cost: SysTick counts the core clock (25 MHz); under `-icount shift=0` one instruction
//! is 1 ns, so one tick is 40 instructions. With the `train` feature (and a float model)
//! it also learns on the device (`microconv_firmware::finetune`), linked against the
//! STM32F411's 128 KiB of RAM (build.rs). The rest is shared/cortex_m_qemu.rs.
#![no_std]
#![no_main]

#[path = "shared/model.rs"]
mod model;
#[path = "shared/cortex_m_qemu.rs"]
mod shared;

use core::convert::Infallible;
use core::ptr::write_volatile;

use cortex_m_rt::entry;
use embedded_hal::digital::{ErrorType as PinErrorType, OutputPin};
use shared::{Board, CmsdkUart};

struct Mps2An386;

impl Board for Mps2An386 {
    fn name() -> defmt::Str {
        defmt::intern!("mps2-an386")
    }
    const CLOCK_HZ: u32 = 25_000_000;
    // None: `host-trainer` runs an Arm ELF without a tag on this machine.
    const TAG: &'static [u8] = b"";
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

extern "C" {
    /// cortex-m-rt's handler of every exception and interrupt without its own.
    fn DefaultHandler();
}

/// The device's interrupt vectors (cortex-m-rt's `device` feature): the firmware enables
/// no interrupt (the UART is polled), so one vector, the fewest cortex-m-rt's linker
/// script accepts, instead of the 240 it declares by default (956 B of flash).
#[link_section = ".vector_table.interrupts"]
#[no_mangle]
pub static __INTERRUPTS: [unsafe extern "C" fn(); 1] = [DefaultHandler];

#[entry]
fn main() -> ! {
    shared::run::<Mps2An386, _, _>(|| CmsdkUart::new(0x4000_4000), Led)
}
