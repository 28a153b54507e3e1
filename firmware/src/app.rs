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

use crate::finetune::{ram_bytes, FineTune};
use crate::protocol::{
    encode, kind, parse_request, Classification, Configured, Decoder, Digest, ErrorCode, Event,
    Request, TrainConfig, Trained, IMAGE_LEN, MAX_RESPONSE, PONG_LEN,
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
    /// Training steps taken.
    pub trained: u32,
    /// EVALUATE requests right since the last DIGEST.
    pub eval_right: u32,
    /// EVALUATE requests since the last DIGEST.
    pub eval_total: u32,
}

/// What answers the requests: a [`Classifier`], or a [`FineTune`] that also learns. The
/// app is generic over it, so a firmware that only classifies links no training code.
pub trait Runner<'m> {
    /// The layers.
    fn arch(&self) -> &Arch<'m>;
    /// Classifies one 28x28 8-bit image.
    fn classify(&mut self, pixels: &[u8]) -> Result<(u8, [f32; 10]), Error>;
    /// One training step with learning rate `lr`: the loss and the digit predicted
    /// before it; `None` if this model does not learn.
    fn train(&mut self, _pixels: &[u8], _label: u8, _lr: f32) -> Option<Result<(f32, u8), Error>> {
        None
    }
    /// Steps taken and the CRC-32 of the trainable parameters; `None` if it does not learn.
    fn digest(&self) -> Option<(u32, u32)> {
        None
    }
    /// Trains the selection `c` from the weights in flash on: the answer, or why not
    /// (nothing changed then); `None` if this model does not learn.
    fn configure(&mut self, _c: &TrainConfig) -> Option<Result<Configured, ErrorCode>> {
        None
    }
}

impl<'m> Runner<'m> for Classifier<'m> {
    fn arch(&self) -> &Arch<'m> {
        &self.arch
    }
    fn classify(&mut self, pixels: &[u8]) -> Result<(u8, [f32; 10]), Error> {
        Classifier::classify(self, pixels)
    }
}

impl<'m> Runner<'m> for FineTune<'m> {
    fn arch(&self) -> &Arch<'m> {
        FineTune::arch(self)
    }
    fn classify(&mut self, pixels: &[u8]) -> Result<(u8, [f32; 10]), Error> {
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
                let fixed = ram_bytes(&a, c)
                    - crate::finetune::arena_len(&a, c) * 4
                    - crate::finetune::marks_len(&a, c);
                Ok(Configured {
                    trainable: self.trainable().len() as u32,
                    ram: ram_bytes(&a, c) as u32,
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
/// stopwatch and the model ([`Classifier`] by default, or a [`FineTune`]).
pub struct App<'m, S, P, D, W, M = Classifier<'m>> {
    serial: S,
    led: P,
    delay: D,
    watch: W,
    model: M,
    decoder: Decoder,
    idle_us: u32,
    stack_probe: fn() -> u32,
    /// Counters.
    pub stats: Stats,
    _m: core::marker::PhantomData<&'m ()>,
}

fn no_probe() -> u32 {
    0
}

impl<'m, S, P, D, W, M> App<'m, S, P, D, W, M>
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
            Some(Event::Frame { kind, payload }) => parse_request(kind, payload, &mut image),
        };
        match request {
            Err(e) => self.refuse(e),
            Ok(Request::Classify) => self.classify(&image, None),
            Ok(Request::Evaluate { label }) => self.classify(&image, Some(label)),
            Ok(Request::Train { label, lr }) => {
                let _ = self.led.set_high();
                self.watch.start();
                let result = self.model.train(&image, label, lr);
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
                let mut p = [0u8; PONG_LEN];
                let stack = (self.stack_probe)() as usize;
                let fields = [
                    a.param_count(),
                    a.classes(),
                    a.input.h,
                    a.input.w,
                    a.input.c,
                    stack,
                ];
                for (o, v) in p.chunks_exact_mut(4).zip(fields) {
                    o.copy_from_slice(&(v as u32).to_le_bytes());
                }
                self.send(kind::PONG, &p)?;
                Ok(Outcome::Answered)
            }
        }
    }

    /// Classifies `image` and answers RESULT; with a label (EVALUATE), counts it.
    fn classify(&mut self, image: &[u8], label: Option<u8>) -> Result<Outcome, S::Error> {
        let _ = self.led.set_high();
        self.watch.start();
        let result = self.model.classify(image);
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
