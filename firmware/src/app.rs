//! The board-independent application: read frames from a serial port, have the model's
//! [`Runner`] classify (or learn from) them, answer, blink a pin. Generic over
//! embedded-hal 1.0 and embedded-io, so the same code runs on QEMU, on a board, and in
//! host tests with mocks (module `mock`, feature `mock`).

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;
use embedded_io::{Read, ReadReady, Write};
use microconv::{Arch, Error};

use crate::finetune::{ram_bytes, FineTune};
use crate::protocol::{
    encode, kind, parse_request, Classification, Configured, Decoder, Digest, ErrorCode, Event,
    Pong, Request, TrainConfig, Trained, DEFAULT_CAPACITY, MAX_RESPONSE, SCORES, VERSION,
};
pub use crate::run::{Classifier, Runner};

/// Counts time around an inference (SysTick on the boards; ticks of 40 instructions
/// under QEMU with `-icount shift=0`).
pub trait Stopwatch {
    /// Starts counting from zero.
    fn start(&mut self);
    /// Ticks since [`Stopwatch::start`].
    fn ticks(&mut self) -> u32;
}

/// Microseconds between polls of an idle serial port.
pub const POLL_US: u32 = 10;
/// A frame whose bytes stop arriving for this long is dropped with a Timeout error.
pub const FRAME_TIMEOUT_US: u32 = 200_000;

/// Counters, for logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Images classified.
    pub classified: u32,
    /// Error answers sent.
    pub errors: u32,
    /// Ticks of the last inference.
    pub last_ticks: u32,
    /// Training steps taken.
    pub trained: u32,
    /// EVALUATE requests right since the last DIGEST.
    pub eval_right: u32,
    /// EVALUATE requests since the last DIGEST.
    pub eval_total: u32,
}

impl<'m> Runner<'m> for FineTune<'m> {
    fn arch(&self) -> &Arch<'m> {
        FineTune::arch(self)
    }
    fn classify(&mut self, pixels: &[u8]) -> Result<(u8, [f32; SCORES]), Error> {
        FineTune::classify(self, pixels)
    }
    fn train(&mut self, pixels: &[u8], label: u8, lr: f32) -> Option<Result<(f32, u8), Error>> {
        Some(
            self.set_lr(lr)
                .and_then(|()| FineTune::train(self, pixels, label)),
        )
    }
    fn digest(&self) -> Option<(u32, u32)> {
        Some((self.steps, FineTune::digest(self)))
    }
    fn configure(&mut self, c: &TrainConfig) -> Option<Result<Configured, ErrorCode>> {
        let r = match FineTune::configure(self, *c) {
            Ok(()) => {
                let a = *FineTune::arch(self);
                let (arena, marks) = self.capacity();
                let ram = ram_bytes(&a, c);
                let fixed =
                    ram - crate::finetune::arena_len(&a, c) * 4 - crate::finetune::marks_len(&a, c);
                Ok(Configured {
                    trainable: self.trainable().len() as u32,
                    ram: ram as u32,
                    capacity: (fixed + 4 * arena + marks) as u32,
                    crc: FineTune::digest(self),
                })
            }
            Err(Error::BufferLen { .. }) => Err(ErrorCode::NoMemory),
            Err(_) => Err(ErrorCode::BadValue),
        };
        Some(r)
    }
}

/// What one call of [`App::poll`] did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// Nothing arrived; waited [`POLL_US`].
    Idle,
    /// Bytes arrived and were decoded; no frame completed.
    Busy,
    /// An image was classified and answered.
    Classified(Classification),
    /// A training step was taken and answered.
    Trained(Trained),
    /// Another request was answered.
    Answered,
    /// An error answer was sent.
    Refused(ErrorCode),
}

/// The application: a serial port, an output pin (on while classifying), a delay, a
/// stopwatch and the model: a runner of one precision ([`crate::run`]), a [`Classifier`]
/// of either (the default), or a [`FineTune`].
///
/// `CAP` sizes the frame buffer and the image buffer:
/// [`frame_capacity`](crate::protocol::frame_capacity) of the model's input bytes (a
/// board binary computes it from the embedded model at build time; the default is an
/// MNIST model's). A model whose input does not fit answers every image with `InputLen`.
pub struct App<'m, S, P, D, W, M = Classifier<'m>, const CAP: usize = DEFAULT_CAPACITY> {
    serial: S,
    led: P,
    delay: D,
    watch: W,
    model: M,
    decoder: Decoder<CAP>,
    /// The request's image, expanded (its first `arch().input.len()` bytes).
    image: [u8; CAP],
    idle_us: u32,
    stack_probe: fn() -> u32,
    /// Counters.
    pub stats: Stats,
    _m: core::marker::PhantomData<&'m ()>,
}

fn no_probe() -> u32 {
    0
}

impl<'m, S, P, D, W, M, const CAP: usize> App<'m, S, P, D, W, M, CAP>
where
    S: Read + ReadReady + Write,
    P: OutputPin,
    D: DelayNs,
    W: Stopwatch,
    M: Runner<'m>,
{
    /// An application over these peripherals and this model.
    pub fn new(serial: S, led: P, delay: D, watch: W, model: M) -> Self {
        App {
            serial,
            led,
            delay,
            watch,
            model,
            decoder: Decoder::new(),
            image: [0; CAP],
            idle_us: 0,
            stack_probe: no_probe,
            stats: Stats::default(),
            _m: core::marker::PhantomData,
        }
    }

    /// The serial port (for tests and diagnostics).
    pub fn serial_mut(&mut self) -> &mut S {
        &mut self.serial
    }

    /// The output pin (for tests and diagnostics).
    pub fn pin_mut(&mut self) -> &mut P {
        &mut self.led
    }

    /// Reports `probe()` (the stack's high-water mark in bytes) in PONG answers.
    pub fn with_stack_probe(mut self, probe: fn() -> u32) -> Self {
        self.stack_probe = probe;
        self
    }

    fn send(&mut self, kind: u8, payload: &[u8]) -> Result<(), S::Error> {
        let mut out = [0u8; MAX_RESPONSE];
        // Payloads sent here are at most MAX_RESULT_LEN bytes, which MAX_RESPONSE holds.
        if let Some(n) = encode(kind, payload, &mut out) {
            self.serial.write_all(&out[..n])?;
            self.serial.flush()?;
        }
        Ok(())
    }

    fn refuse(&mut self, code: ErrorCode) -> Result<Outcome, S::Error> {
        self.stats.errors = self.stats.errors.wrapping_add(1);
        self.send(kind::ERROR, &[code as u8])?;
        Ok(Outcome::Refused(code))
    }

    /// Handles whatever the serial port has, or waits [`POLL_US`] if it has nothing.
    /// Never blocks longer than that when no bytes come; never panics on any input.
    pub fn poll(&mut self) -> Result<Outcome, S::Error> {
        if !self.serial.read_ready()? {
            self.delay.delay_us(POLL_US);
            if self.decoder.in_frame() {
                self.idle_us = self.idle_us.saturating_add(POLL_US);
                if self.idle_us >= FRAME_TIMEOUT_US {
                    self.decoder.reset();
                    self.idle_us = 0;
                    return self.refuse(ErrorCode::Timeout);
                }
            }
            return Ok(Outcome::Idle);
        }
        self.idle_us = 0;
        let mut byte = [0u8; 1];
        if self.serial.read(&mut byte)? == 0 {
            return Ok(Outcome::Idle);
        }
        // The request's image goes to `self.image` (the model's input length), so that
        // answering can borrow `self`.
        let mut input_len = 0;
        let request = match self.decoder.push(byte[0]) {
            None => return Ok(Outcome::Busy),
            Some(Event::Error(e)) => Err(e),
            Some(Event::Frame { kind, payload }) => {
                input_len = self.model.arch().input.len();
                let classes = self.model.classes();
                match self.image.get_mut(..input_len) {
                    Some(image) => parse_request(kind, payload, image, classes),
                    None => Err(ErrorCode::InputLen),
                }
            }
        };
        match request {
            Err(e) => self.refuse(e),
            Ok(Request::Classify) => self.classify(input_len, None),
            Ok(Request::Evaluate { label }) => self.classify(input_len, Some(label)),
            Ok(Request::Train { label, lr }) => {
                let _ = self.led.set_high();
                self.watch.start();
                let result = self.model.train(&self.image[..input_len], label, lr);
                let ticks = self.watch.ticks();
                let _ = self.led.set_low();
                match (result, self.model.digest()) {
                    (None, _) | (_, None) => self.refuse(ErrorCode::Unsupported),
                    (Some(Ok((loss, digit_before))), Some((steps, _))) => {
                        let r = Trained {
                            loss,
                            steps,
                            digit_before,
                            ticks,
                        };
                        self.stats.trained = steps;
                        self.send(kind::TRAINED, &r.to_bytes())?;
                        Ok(Outcome::Trained(r))
                    }
                    (Some(Err(_)), _) => self.refuse(ErrorCode::Model),
                }
            }
            Ok(Request::Configure(c)) => match self.model.configure(&c) {
                None => self.refuse(ErrorCode::Unsupported),
                Some(Err(e)) => self.refuse(e),
                Some(Ok(r)) => {
                    self.stats.trained = 0;
                    self.send(kind::CONFIGURED, &r.to_bytes())?;
                    Ok(Outcome::Answered)
                }
            },
            Ok(Request::Digest) => {
                let Some((steps, crc)) = self.model.digest() else {
                    return self.refuse(ErrorCode::Unsupported);
                };
                let d = Digest {
                    steps,
                    crc,
                    right: self.stats.eval_right,
                    total: self.stats.eval_total,
                };
                self.stats.eval_right = 0;
                self.stats.eval_total = 0;
                self.send(kind::DIGEST_RESULT, &d.to_bytes())?;
                Ok(Outcome::Answered)
            }
            Ok(Request::Ping) => {
                let a = self.model.arch();
                let dim = |d: usize| u32::try_from(d).unwrap_or(u32::MAX);
                let p = Pong {
                    version: VERSION,
                    params: dim(self.model.param_count()),
                    classes: dim(self.model.classes()),
                    input: [dim(a.input.h), dim(a.input.w), dim(a.input.c)],
                    stack: (self.stack_probe)(),
                    max_payload: dim(self.decoder.max_payload()),
                };
                self.send(kind::PONG, &p.to_bytes())?;
                Ok(Outcome::Answered)
            }
        }
    }

    /// Classifies the first `len` bytes of the image buffer and answers RESULT; with a
    /// label (EVALUATE), counts it.
    fn classify(&mut self, len: usize, label: Option<u8>) -> Result<Outcome, S::Error> {
        let classes = self.model.classes();
        let Ok(classes) = u8::try_from(classes) else {
            return self.refuse(ErrorCode::Model);
        };
        if classes as usize > SCORES {
            return self.refuse(ErrorCode::Model);
        }
        let _ = self.led.set_high();
        self.watch.start();
        let result = self.model.classify(&self.image[..len]);
        let ticks = self.watch.ticks();
        let _ = self.led.set_low();
        match result {
            Ok((digit, scores)) => {
                let c = Classification {
                    digit,
                    classes,
                    scores,
                    ticks,
                };
                self.stats.classified = self.stats.classified.wrapping_add(1);
                self.stats.last_ticks = ticks;
                if let Some(l) = label {
                    self.stats.eval_total = self.stats.eval_total.wrapping_add(1);
                    if l == digit {
                        self.stats.eval_right = self.stats.eval_right.wrapping_add(1);
                    }
                }
                self.send(kind::RESULT, &c.to_bytes())?;
                Ok(Outcome::Classified(c))
            }
            Err(_) => self.refuse(ErrorCode::Model),
        }
    }
}
