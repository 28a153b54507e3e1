//! A WeAct "Black Pill" STM32F411CE board (25 MHz crystal, core at 100 MHz).
//!
//! Serial: USART1, TX on PA9, RX on PA10, 115200 8N1 (a USB-serial adapter). Pin: the
//! blue LED on PC13 (active low), lit while classifying. Logs: defmt over RTT (probe-rs).
//! Cost: the DWT cycle counter (real cycles on this chip).
#![no_std]
#![no_main]

use cortex_m::peripheral::DWT;
use cortex_m::singleton;
use cortex_m_rt::entry;
use defmt_rtt as _;
use embedded_hal::digital::{ErrorType as PinErrorType, OutputPin};
use embedded_hal_nb::serial::{Read as NbRead, Write as NbWrite};
use embedded_io::{ErrorKind, ErrorType, Read, ReadReady, Write};
use microconv_firmware::app::{App, Outcome, Runner, Stopwatch};
use microconv_firmware::embedded;
use stm32f4xx_hal::pac;
use stm32f4xx_hal::prelude::*;
use stm32f4xx_hal::rcc::Config;
use stm32f4xx_hal::serial::{RxISR, Serial};

#[path = "shared/model.rs"]
mod model;
#[path = "shared/probe.rs"]
mod probe;

use probe::{embedded_failed, taken};

use model::{
    infer_f32, infer_i8, ARCH, F32_ARENA_LEN, FRAME_CAP, I8_ARENA_LEN, I8_SCRATCH_LEN, INT8,
    PARAMS, QNET, SIZES,
};

/// USART1 as an embedded-io port (the HAL offers non-blocking reads and writes).
struct Port(Serial<pac::USART1>);

/// Serial line errors (framing, noise, overrun, parity): reported as `Other`.
#[derive(Debug)]
struct LineError;

impl core::fmt::Display for LineError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("serial line error")
    }
}

impl core::error::Error for LineError {}

impl embedded_io::Error for LineError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

impl ErrorType for Port {
    type Error = LineError;
}

impl ReadReady for Port {
    fn read_ready(&mut self) -> Result<bool, LineError> {
        Ok(self.0.is_rx_not_empty())
    }
}

impl Read for Port {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, LineError> {
        if buf.is_empty() {
            return Ok(0);
        }
        buf[0] = nb::block!(NbRead::read(&mut self.0)).map_err(|_| LineError)?;
        Ok(1)
    }
}

impl Write for Port {
    fn write(&mut self, buf: &[u8]) -> Result<usize, LineError> {
        for &b in buf {
            nb::block!(NbWrite::write(&mut self.0, b)).map_err(|_| LineError)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), LineError> {
        nb::block!(NbWrite::flush(&mut self.0)).map_err(|_| LineError)
    }
}

/// An active-low LED: "high" lights it.
struct ActiveLow<P>(P);

impl<P: OutputPin> PinErrorType for ActiveLow<P> {
    type Error = P::Error;
}

impl<P: OutputPin> OutputPin for ActiveLow<P> {
    fn set_high(&mut self) -> Result<(), P::Error> {
        self.0.set_low()
    }
    fn set_low(&mut self) -> Result<(), P::Error> {
        self.0.set_high()
    }
}

/// The DWT cycle counter.
struct Cycles(u32);

impl Stopwatch for Cycles {
    fn start(&mut self) {
        self.0 = DWT::cycle_count();
    }
    fn ticks(&mut self) -> u32 {
        DWT::cycle_count().wrapping_sub(self.0)
    }
}

#[entry]
fn main() -> ! {
    let (Some(dp), Some(mut cp)) = (pac::Peripherals::take(), cortex_m::Peripherals::take()) else {
        defmt::panic!("peripherals taken twice");
    };
    cp.DCB.enable_trace();
    cp.DWT.enable_cycle_counter();
    let mut rcc = dp.RCC.freeze(Config::hse(25.MHz()).sysclk(100.MHz()));
    let gpioa = dp.GPIOA.split(&mut rcc);
    let gpioc = dp.GPIOC.split(&mut rcc);
    let serial = match dp
        .USART1
        .serial((gpioa.pa9, gpioa.pa10), 115_200.bps(), &mut rcc)
    {
        Ok(s) => s,
        Err(_) => defmt::panic!("USART1 configuration refused"),
    };
    let led = ActiveLow(gpioc.pc13.into_push_pull_output());
    let delay = dp.TIM2.delay_us(&mut rcc);
    let port = Port(serial);
    if INT8 {
        let runner = embedded::int8(
            &QNET,
            singleton!(: [i8; I8_ARENA_LEN] = [0; I8_ARENA_LEN]).unwrap_or_else(|| taken()),
            singleton!(: [u32; I8_SCRATCH_LEN] = [0; I8_SCRATCH_LEN]).unwrap_or_else(|| taken()),
            infer_i8,
            SIZES,
        )
        .unwrap_or_else(|e| embedded_failed(e));
        serve(App::new(port, led, delay, Cycles(0), runner))
    }
    let runner = embedded::float(
        ARCH,
        &PARAMS,
        singleton!(: [f32; F32_ARENA_LEN] = [0.0; F32_ARENA_LEN]).unwrap_or_else(|| taken()),
        infer_f32,
        SIZES,
    )
    .unwrap_or_else(|e| embedded_failed(e));
    serve(App::new(port, led, delay, Cycles(0), runner))
}

/// Answers requests forever, logging each.
fn serve<P: OutputPin, D: embedded_hal::delay::DelayNs, M: Runner<'static>>(
    mut app: App<'static, Port, P, D, Cycles, M, FRAME_CAP>,
) -> ! {
    defmt::info!("microconv on STM32F411: {=usize} parameters, waiting for frames on USART1 (PA9/PA10, 115200)", model::PARAM_COUNT);
    loop {
        match app.poll() {
            Ok(Outcome::Classified(c)) => {
                defmt::info!("digit {=u8} in {=u32} cycles", c.digit, c.ticks)
            }
            Ok(Outcome::Refused(e)) => defmt::warn!("refused a frame: {}", e),
            Ok(_) => {}
            Err(_) => {
                defmt::warn!("serial line error (framing, noise or overrun); resynchronising")
            }
        }
    }
}
