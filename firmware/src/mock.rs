//! Mock peripherals and frame helpers for running the [`App`] on the host (feature
//! `mock`, which needs `std`): the tests in `firmware/tests/` and the fuzz harnesses in
//! `fuzz/harness/` share them.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::vec::Vec;

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{ErrorType as PinErrorType, OutputPin};
use embedded_io::{ErrorType, Read, ReadReady, Write};

use crate::app::{App, Runner, Stopwatch};
use crate::protocol::{encode, Decoder, Event, DEFAULT_CAPACITY, OVERHEAD};

/// A serial port: the app reads `rx` and appends what it sends to `tx`.
#[derive(Default)]
pub struct Serial {
    /// Bytes waiting to be read by the app.
    pub rx: VecDeque<u8>,
    /// Bytes the app wrote.
    pub tx: Vec<u8>,
}

impl ErrorType for Serial {
    type Error = Infallible;
}

impl ReadReady for Serial {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(!self.rx.is_empty())
    }
}

impl Read for Serial {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let mut n = 0;
        while n < buf.len() {
            match self.rx.pop_front() {
                Some(b) => buf[n] = b,
                None => break,
            }
            n += 1;
        }
        Ok(n)
    }
}

impl Write for Serial {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        self.tx.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// An output pin that records every level it is set to (`true`: high).
#[derive(Default)]
pub struct Pin(pub Vec<bool>);

impl PinErrorType for Pin {
    type Error = Infallible;
}

impl OutputPin for Pin {
    fn set_high(&mut self) -> Result<(), Infallible> {
        self.0.push(true);
        Ok(())
    }
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.0.push(false);
        Ok(())
    }
}

/// A delay that returns at once (the app counts its idle time in polls, not in time).
pub struct Delay;

impl DelayNs for Delay {
    fn delay_ns(&mut self, _: u32) {}
}

/// A stopwatch that always reads the same number of ticks.
pub struct Watch(pub u32);

impl Stopwatch for Watch {
    fn start(&mut self) {}
    fn ticks(&mut self) -> u32 {
        self.0
    }
}

/// The app over mock peripherals, with a frame buffer of `CAP` bytes (an MNIST
/// model's by default).
pub type MockApp<'m, M, const CAP: usize = DEFAULT_CAPACITY> =
    App<'m, Serial, Pin, Delay, Watch, M, CAP>;

/// The app over mock peripherals whose stopwatch reads `ticks`, answering with `model`
/// (whose input is at most an MNIST image: see [`app_sized`]).
pub fn app<'m, M: Runner<'m>>(model: M, ticks: u32) -> MockApp<'m, M> {
    app_sized(model, ticks)
}

/// [`app`] with a frame buffer of `CAP` bytes
/// ([`frame_capacity`](crate::protocol::frame_capacity)`(input bytes)`, as a board binary sizes it).
pub fn app_sized<'m, M: Runner<'m>, const CAP: usize>(model: M, ticks: u32) -> MockApp<'m, M, CAP> {
    App::new(
        Serial::default(),
        Pin::default(),
        Delay,
        Watch(ticks),
        model,
    )
}

/// A frame of `kind` around `payload`, as the host sends it (empty if the payload is
/// longer than a frame's length field can say, 65,535 bytes).
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = std::vec![0u8; OVERHEAD + payload.len()];
    let n = encode(kind, payload, &mut out).unwrap_or(0);
    out.truncate(n);
    out
}

/// The well-formed frames in `tx` (what the app sent) as (kind, payload) pairs.
pub fn answers(tx: &[u8]) -> Vec<(u8, Vec<u8>)> {
    // Answers are at most a RESULT of 32 scores: the default capacity holds them.
    let mut d: Decoder = Decoder::new();
    let mut out = Vec::new();
    for &b in tx {
        if let Some(Event::Frame { kind, payload }) = d.push(b) {
            out.push((kind, payload.to_vec()));
        }
    }
    out
}
