//! The board-independent application: read frames from a serial port, classify images
//! with the core, answer, blink a pin. Generic over embedded-hal 1.0 and embedded-io, so
//! the same code runs on QEMU, on a board, and in host tests with mocks.

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;
use embedded_io::{Read, ReadReady, Write};
use microconv::loss::argmax;
use microconv::net::{infer, Exec};
use microconv::quant::{argmax_i8, infer_i8, QNet};
use microconv::{Arch, Error};

use crate::protocol::{
    encode, kind, unpack_bits, Classification, Decoder, ErrorCode, Event, IMAGE_LEN, MAX_RESPONSE,
    PONG_LEN,
};

/// Counts time around an inference (SysTick on the boards; ticks of 40 instructions
/// under QEMU with `-icount shift=0`).
pub trait Stopwatch {
    /// Starts counting from zero.
    fn start(&mut self);
    /// Ticks since [`Stopwatch::start`].
    fn ticks(&mut self) -> u32;
}

/// How a [`Classifier`] computes: float (the core's reference kernels) or int8.
enum Engine<'m> {
    Float {
        params: &'m [f32],
        buf: &'m mut [f32],
        input: &'m mut [f32],
    },
    Int8 {
        net: QNet<'m>,
        buf: &'m mut [i8],
        input: &'m mut [i8],
    },
}

/// One engine's classify function.
type RunFn<'m> = fn(&Arch<'m>, &mut Engine<'m>, &[u8]) -> Result<(u8, [f32; 10]), Error>;

/// A network with its parameters and the two static buffers inference needs, float or
/// int8 (see `microconv::quant`).
pub struct Classifier<'m> {
    arch: Arch<'m>,
    engine: Engine<'m>,
    /// The engine's classify function, set by the constructor: a firmware that never
    /// builds an int8 classifier does not link the int8 kernels (and the other way round).
    run: RunFn<'m>,
}

/// Checks that `arch` classifies 28x28 images into 10 classes.
fn check_digits(arch: &Arch<'_>) -> Result<(), Error> {
    arch.validate()?;
    Error::expect_len("input shape", IMAGE_LEN, arch.input.len())?;
    Error::expect_len("classes", 10, arch.classes())
}

impl<'m> Classifier<'m> {
    /// A float classifier. Checks the buffers against the architecture (`buf`:
    /// [`Arch::inference_len`]`(1)`, `input`: one image) and that it classifies 28x28
    /// images into 10 classes.
    pub fn new(
        arch: Arch<'m>,
        params: &'m [f32],
        buf: &'m mut [f32],
        input: &'m mut [f32],
    ) -> Result<Self, Error> {
        check_digits(&arch)?;
        Error::expect_len("params", arch.param_count(), params.len())?;
        Error::expect_len("inference buffer", arch.inference_len(1), buf.len())?;
        Error::expect_len("input", IMAGE_LEN, input.len())?;
        Ok(Classifier {
            arch,
            engine: Engine::Float { params, buf, input },
            run: run_float,
        })
    }

    /// An int8 classifier (buffers in bytes, same sizes as [`Classifier::new`]'s). The
    /// network's input quantization must be pixels - 128 (scale 1/255, zero -128).
    pub fn new_int8(net: QNet<'m>, buf: &'m mut [i8], input: &'m mut [i8]) -> Result<Self, Error> {
        check_digits(&net.arch)?;
        Error::expect_len(
            "int8 inference buffer",
            net.arch.inference_len(1),
            buf.len(),
        )?;
        Error::expect_len("input", IMAGE_LEN, input.len())?;
        if net.input.zero != -128 || net.input.scale != 1.0 / 255.0 {
            return Err(Error::InvalidParameter {
                name: "int8 input quantization (must be scale 1/255, zero -128)",
            });
        }
        Ok(Classifier {
            arch: net.arch,
            engine: Engine::Int8 { net, buf, input },
            run: run_int8,
        })
    }

    /// Whether this classifier runs int8.
    pub fn is_int8(&self) -> bool {
        matches!(self.engine, Engine::Int8 { .. })
    }

    /// Classifies one 28x28 8-bit image: float models see pixels / 255 as in training,
    /// int8 models pixels - 128 (the same real values), and answer their int8 logits
    /// dequantized (`scale * (q - zero)`).
    pub fn classify(&mut self, pixels: &[u8]) -> Result<(u8, [f32; 10]), Error> {
        if pixels.len() != IMAGE_LEN {
            return Err(Error::BufferLen {
                buffer: "image",
                expected: IMAGE_LEN,
                actual: pixels.len(),
            });
        }
        (self.run)(&self.arch, &mut self.engine, pixels)
    }
}

fn run_float(arch: &Arch<'_>, e: &mut Engine<'_>, pixels: &[u8]) -> Result<(u8, [f32; 10]), Error> {
    let Engine::Float { params, buf, input } = e else {
        return Err(Error::InvalidParameter {
            name: "classifier engine",
        });
    };
    for (x, &p) in input.iter_mut().zip(pixels) {
        *x = p as f32 / 255.0;
    }
    let logits = infer(arch, params, input, 1, buf, &Exec::REFERENCE, &mut [])?;
    let mut scores = [0.0; 10];
    scores.copy_from_slice(logits);
    Ok((argmax(&scores) as u8, scores))
}

fn run_int8(_: &Arch<'_>, e: &mut Engine<'_>, pixels: &[u8]) -> Result<(u8, [f32; 10]), Error> {
    let Engine::Int8 { net, buf, input } = e else {
        return Err(Error::InvalidParameter {
            name: "classifier engine",
        });
    };
    for (x, &p) in input.iter_mut().zip(pixels) {
        *x = (p as i32 - 128) as i8;
    }
    let logits = infer_i8(net, input, 1, buf)?;
    let mut scores = [0.0; 10];
    if let Some(last) = net.layers.last() {
        for (s, &l) in scores.iter_mut().zip(logits) {
            *s = last.output.dequantize(l);
        }
    }
    Ok((argmax_i8(logits) as u8, scores))
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
    /// Another request was answered.
    Answered,
    /// An error answer was sent.
    Refused(ErrorCode),
}

/// The application: a serial port, an output pin (on while classifying), a delay and a
/// stopwatch.
pub struct App<'m, S, P, D, W> {
    serial: S,
    led: P,
    delay: D,
    watch: W,
    classifier: Classifier<'m>,
    decoder: Decoder,
    idle_us: u32,
    stack_probe: fn() -> u32,
    /// Counters.
    pub stats: Stats,
}

fn no_probe() -> u32 {
    0
}

impl<'m, S, P, D, W> App<'m, S, P, D, W>
where
    S: Read + ReadReady + Write,
    P: OutputPin,
    D: DelayNs,
    W: Stopwatch,
{
    /// An application over these peripherals.
    pub fn new(serial: S, led: P, delay: D, watch: W, classifier: Classifier<'m>) -> Self {
        App {
            serial,
            led,
            delay,
            watch,
            classifier,
            decoder: Decoder::new(),
            idle_us: 0,
            stack_probe: no_probe,
            stats: Stats::default(),
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
        // Payloads sent here are at most RESULT_LEN bytes, which MAX_RESPONSE holds.
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
        // Copy the request out of the decoder so that answering can borrow `self`.
        let mut image = [0u8; IMAGE_LEN];
        let request = match self.decoder.push(byte[0]) {
            None => return Ok(Outcome::Busy),
            Some(Event::Error(e)) => Err(e),
            Some(Event::Frame {
                kind: kind::CLASSIFY_PACKED,
                payload,
            }) => match unpack_bits(payload, &mut image) {
                Some(()) => Ok((kind::CLASSIFY, IMAGE_LEN)),
                None => Err(ErrorCode::BadLength),
            },
            Some(Event::Frame { kind, payload }) => {
                let n = payload.len();
                image[..n].copy_from_slice(payload);
                Ok((kind, n))
            }
        };
        match request {
            Err(e) => self.refuse(e),
            Ok((kind::CLASSIFY, IMAGE_LEN)) => {
                let _ = self.led.set_high();
                self.watch.start();
                let result = self.classifier.classify(&image);
                let ticks = self.watch.ticks();
                let _ = self.led.set_low();
                match result {
                    Ok((digit, scores)) => {
                        let c = Classification {
                            digit,
                            scores,
                            ticks,
                        };
                        self.stats.classified = self.stats.classified.wrapping_add(1);
                        self.stats.last_ticks = ticks;
                        self.send(kind::RESULT, &c.to_bytes())?;
                        Ok(Outcome::Classified(c))
                    }
                    Err(_) => self.refuse(ErrorCode::Model),
                }
            }
            Ok((kind::CLASSIFY, _)) | Ok((kind::PING, 1..)) => self.refuse(ErrorCode::BadLength),
            Ok((kind::PING, _)) => {
                let a = &self.classifier.arch;
                let mut p = [0u8; PONG_LEN];
                let stack = (self.stack_probe)() as usize;
                for (i, v) in [
                    a.param_count(),
                    a.classes(),
                    a.input.h,
                    a.input.w,
                    a.input.c,
                    stack,
                ]
                .iter()
                .enumerate()
                {
                    p[4 * i..4 * i + 4].copy_from_slice(&(*v as u32).to_le_bytes());
                }
                self.send(kind::PONG, &p)?;
                Ok(Outcome::Answered)
            }
            Ok(_) => self.refuse(ErrorCode::UnknownKind),
        }
    }
}
