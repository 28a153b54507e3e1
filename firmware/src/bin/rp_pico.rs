//! A Raspberry Pi Pico (RP2040, Cortex-M0+ at 125 MHz, 2 MiB flash, 264 KiB RAM).
//!
//! Serial: UART0, TX on GP0 (pin 1), RX on GP1 (pin 2), 115200 8N1 (a 3.3 V USB-serial
//! adapter). Pin: the green LED on GP25, lit while classifying. Logs: defmt over RTT
//! (probe-rs and a debug probe on SWD; without one, flash the UF2 and use no logs).
//! Cost: the RP2040's 1 MHz timer, so RESULT ticks are microseconds. No DSP extension:
//! the core's portable int8 kernels.
#![no_std]
#![no_main]

use defmt_rtt as _;
use embedded_hal::digital::OutputPin;
use microconv_firmware::app::{App, Outcome, Runner, Stopwatch};
use microconv_firmware::embedded;
use rp2040_hal::clocks::Clock;
use rp2040_hal::fugit::RateExtU32;
use rp2040_hal::gpio::{FunctionUart, Pins};
use rp2040_hal::uart::{DataBits, StopBits, UartConfig, UartPeripheral};
use rp2040_hal::{pac, Sio, Timer, Watchdog};

#[path = "shared/model.rs"]
mod model;
#[path = "shared/probe.rs"]
mod probe;

use probe::{embedded_failed, taken};

use model::{
    infer_f32, infer_i8, ARCH, F32_ARENA_LEN, FRAME_CAP, I8_ARENA_LEN, I8_SCRATCH_LEN, INT8,
    PARAMS, QNET, SIZES,
};

/// The second-stage bootloader for the Pico's W25Q080 flash, first 256 bytes of flash
/// (the `.boot2` section of build.rs's memory.x).
#[link_section = ".boot2"]
#[used]
pub static BOOT2: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;

/// The Pico's crystal.
const XTAL_HZ: u32 = 12_000_000;

/// The 1 MHz timer: microseconds.
struct Micros {
    timer: Timer,
    start: u64,
}

impl Stopwatch for Micros {
    fn start(&mut self) {
        self.start = self.timer.get_counter().ticks();
    }
    fn ticks(&mut self) -> u32 {
        self.timer.get_counter().ticks().wrapping_sub(self.start) as u32
    }
}

#[rp2040_hal::entry]
fn main() -> ! {
    let Some(mut pac) = pac::Peripherals::take() else {
        defmt::panic!("peripherals taken twice");
    };
    let mut watchdog = Watchdog::new(pac.WATCHDOG);
    let Ok(clocks) = rp2040_hal::clocks::init_clocks_and_plls(
        XTAL_HZ,
        pac.XOSC,
        pac.CLOCKS,
        pac.PLL_SYS,
        pac.PLL_USB,
        &mut pac.RESETS,
        &mut watchdog,
    ) else {
        defmt::panic!("the clocks did not start (crystal or PLL)");
    };
    let sio = Sio::new(pac.SIO);
    let pins = Pins::new(
        pac.IO_BANK0,
        pac.PADS_BANK0,
        sio.gpio_bank0,
        &mut pac.RESETS,
    );
    let uart_pins = (
        pins.gpio0.into_function::<FunctionUart>(),
        pins.gpio1.into_function::<FunctionUart>(),
    );
    let serial = match UartPeripheral::new(pac.UART0, uart_pins, &mut pac.RESETS).enable(
        UartConfig::new(115_200.Hz(), DataBits::Eight, None, StopBits::One),
        clocks.peripheral_clock.freq(),
    ) {
        Ok(s) => s,
        Err(_) => defmt::panic!("UART0 configuration refused"),
    };
    let mut led = pins.gpio25.into_push_pull_output();
    let _ = led.set_low();
    let timer = Timer::new(pac.TIMER, &mut pac.RESETS, &clocks);
    let watch = Micros { timer, start: 0 };
    if INT8 {
        let runner = embedded::int8(
            &QNET,
            cortex_m::singleton!(: [i8; I8_ARENA_LEN] = [0; I8_ARENA_LEN])
                .unwrap_or_else(|| taken()),
            cortex_m::singleton!(: [u32; I8_SCRATCH_LEN] = [0; I8_SCRATCH_LEN])
                .unwrap_or_else(|| taken()),
            infer_i8,
            SIZES,
        )
        .unwrap_or_else(|e| embedded_failed(e));
        serve(App::new(serial, led, timer, watch, runner))
    }
    let runner = embedded::float(
        ARCH,
        &PARAMS,
        cortex_m::singleton!(: [f32; F32_ARENA_LEN] = [0.0; F32_ARENA_LEN])
            .unwrap_or_else(|| taken()),
        infer_f32,
        SIZES,
    )
    .unwrap_or_else(|e| embedded_failed(e));
    serve(App::new(serial, led, timer, watch, runner))
}

/// Answers requests forever, logging each.
fn serve<S, P, M>(mut app: App<'static, S, P, Timer, Micros, M, FRAME_CAP>) -> !
where
    S: embedded_io::Read + embedded_io::ReadReady + embedded_io::Write,
    P: OutputPin,
    M: Runner<'static>,
{
    defmt::info!(
        "microconv on a Raspberry Pi Pico: {=usize} parameters, waiting for frames on UART0 (GP0/GP1, 115200)",
        model::PARAM_COUNT
    );
    loop {
        match app.poll() {
            Ok(Outcome::Classified(c)) => {
                defmt::info!("digit {=u8} in {=u32} us", c.digit, c.ticks)
            }
            Ok(Outcome::Refused(e)) => defmt::warn!("refused a frame: {}", e),
            Ok(_) => {}
            Err(_) => {
                defmt::warn!(
                    "serial line error (framing, parity, overrun or break); resynchronising"
                )
            }
        }
    }
}
