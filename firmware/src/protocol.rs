//! The serial protocol: framed requests from a PC, framed answers from the board.
//!
//! ```text
//! frame   = 0xA5 0x5A | kind u8 | len u16 LE | payload (len bytes) | crc u32 LE
//! crc     = CRC-32 (IEEE, zlib's) of kind, len and payload
//! ```
//!
//! | kind | direction | payload |
//! |---|---|---|
//! | `0x01` CLASSIFY | PC -> board | 784 bytes: one 28x28 image, row-major, 0 = background, 255 = ink (MNIST's convention) |
//! | `0x02` PING | PC -> board | empty |
//! | `0x03` CLASSIFY_PACKED | PC -> board | the same image compressed with PackBits (below): 3-5x fewer bytes for MNIST digits |
//! | `0x04` TRAIN | PC -> board | label u8, learning rate f32 LE, the image with PackBits: one SGD step of the last layer ([`crate::finetune`]) |
//! | `0x05` EVALUATE | PC -> board | label u8, the image with PackBits: classify (answered with RESULT) and count it right or wrong |
//! | `0x06` DIGEST | PC -> board | empty |
//! | `0x07` CONFIGURE | PC -> board | [`TrainConfig`], 10 bytes: which layers learn u32 LE (bit `i` = layer `i`, only layers with parameters), flags u8 (bit 0: biases only; the other bits 0), SGD momentum f32 LE in `[0, 1)`, samples per update u8 (`1..=64`; gradients averaged). Restores the weights from flash and the step count to 0, then trains that selection |
//! | `0x81` RESULT | board -> PC | digit u8, 3 zero bytes, 10 scores f32 LE (the logits), ticks u32 LE (SysTick ticks the inference took) |
//! | `0x82` PONG | board -> PC | parameter count, classes, input h, w, c, stack high-water mark in bytes: u32 LE each |
//! | `0x83` TRAINED | board -> PC | [`Trained`]: loss before the step f32 LE, steps so far u32 LE, the digit predicted before the step u8, 3 zero bytes, ticks the step took u32 LE |
//! | `0x84` DIGEST_RESULT | board -> PC | [`Digest`]: steps u32, CRC-32 of the trainable parameters u32, EVALUATE answers right u32 and in all u32 since the last DIGEST (LE) |
//! | `0x85` CONFIGURED | board -> PC | [`Configured`]: parameters that learn u32, RAM bytes the selection uses u32, RAM bytes the firmware has for training u32, CRC-32 of the trainable parameters u32 (LE) |
//! | `0xEE` ERROR | board -> PC | error code u8 (see [`ErrorCode`]) |
//!
//! PackBits (Apple's, as in TIFF): a header byte `h` read as `i8`; `0..=127`: the next
//! `h + 1` bytes are literal; `-127..=-1`: the next byte repeated `1 - h` times; `-128`:
//! nothing. It must expand to exactly 784 bytes, else the answer is `BadLength`.
//! A firmware that cannot train (an int8 model, or built without the `train` feature)
//! answers TRAIN, EVALUATE, DIGEST and CONFIGURE with `Unsupported`. Until a CONFIGURE,
//! the last layer learns (SGD without momentum, one sample per update). A CONFIGURE
//! naming a layer the model does not have or one without parameters, a momentum that is
//! not finite or outside `[0, 1)`, 0 or more than 64 samples per update, or set unknown
//! flag bits is answered `BadValue`; one whose buffers do not fit the firmware's RAM is
//! answered `NoMemory`: both change nothing on the device.
//!
//! The decoder is a byte-at-a-time state machine with a fixed buffer: it hunts for the
//! sync bytes, rejects a length it cannot hold as soon as it sees it, checks the CRC,
//! and after any error goes back to hunting, so a valid frame after garbage is answered.

use microconv::crc32::crc32;

/// The two bytes every frame starts with.
pub const SYNC: [u8; 2] = [0xA5, 0x5A];
/// Pixels of one image.
pub const IMAGE_LEN: usize = 28 * 28;
/// Largest PackBits encoding of an image (a header byte per 128 literals).
pub const MAX_PACKED: usize = IMAGE_LEN + IMAGE_LEN.div_ceil(128);
/// Payload bytes of a CONFIGURE frame.
pub const CONFIGURE_LEN: usize = 10;
/// Payload bytes of a CONFIGURED frame.
pub const CONFIGURED_LEN: usize = 16;
/// Most samples whose gradients one update averages.
pub const MAX_ACCUMULATE: u8 = 64;
/// Bytes before the packed image in a TRAIN frame: label and learning rate.
pub const TRAIN_HEADER: usize = 1 + 4;
/// Largest payload the decoder accepts (a TRAIN frame of an incompressible image).
pub const MAX_PAYLOAD: usize = TRAIN_HEADER + MAX_PACKED;
/// Bytes around a payload: sync, kind, length, CRC.
pub const OVERHEAD: usize = 2 + 1 + 2 + 4;
/// Scores in a RESULT frame (a model with fewer classes leaves the rest 0).
pub const SCORES: usize = 10;
/// Payload bytes of a RESULT frame.
pub const RESULT_LEN: usize = 4 + 4 * SCORES + 4;
/// Payload bytes of a PONG frame.
pub const PONG_LEN: usize = 6 * 4;
/// Largest frame the board sends.
pub const MAX_RESPONSE: usize = OVERHEAD + RESULT_LEN;

/// Frame kinds.
pub mod kind {
    /// Classify the image in the payload.
    pub const CLASSIFY: u8 = 0x01;
    /// Ask for the model's description.
    pub const PING: u8 = 0x02;
    /// Classify the PackBits-compressed image in the payload.
    pub const CLASSIFY_PACKED: u8 = 0x03;
    /// One training step on a labelled image.
    pub const TRAIN: u8 = 0x04;
    /// Classify a labelled image and count whether it was right.
    pub const EVALUATE: u8 = 0x05;
    /// Ask for the training state.
    pub const DIGEST: u8 = 0x06;
    /// Choose which layers learn, and how.
    pub const CONFIGURE: u8 = 0x07;
    /// Answer to CONFIGURE.
    pub const CONFIGURED: u8 = 0x85;
    /// Answer to TRAIN.
    pub const TRAINED: u8 = 0x83;
    /// Answer to DIGEST.
    pub const DIGEST_RESULT: u8 = 0x84;
    /// Answer to CLASSIFY.
    pub const RESULT: u8 = 0x81;
    /// Answer to PING.
    pub const PONG: u8 = 0x82;
    /// Something was wrong with a request.
    pub const ERROR: u8 = 0xEE;
}

/// Why a request was refused (the payload of an ERROR frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum ErrorCode {
    /// The CRC did not match: the frame was corrupted.
    BadChecksum = 1,
    /// The length field is larger than any request, or wrong for the kind.
    BadLength = 2,
    /// The kind is not a request this firmware knows.
    UnknownKind = 3,
    /// A frame started but its remaining bytes did not arrive in time.
    Timeout = 4,
    /// The model failed on this input (should not happen with a valid image).
    Model = 5,
    /// This firmware cannot do that (training with an int8 model or without `train`).
    Unsupported = 6,
    /// A field is out of range: a label above 9, a learning rate not positive and
    /// finite, a CONFIGURE naming a layer without parameters (or none, or one past the
    /// last), a momentum outside `[0, 1)`, samples per update outside `1..=64`.
    BadValue = 7,
    /// The CONFIGURE selection's buffers do not fit the RAM this firmware has for training.
    NoMemory = 8,
}

impl ErrorCode {
    /// The code from its byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => ErrorCode::BadChecksum,
            2 => ErrorCode::BadLength,
            3 => ErrorCode::UnknownKind,
            4 => ErrorCode::Timeout,
            5 => ErrorCode::Model,
            6 => ErrorCode::Unsupported,
            7 => ErrorCode::BadValue,
            8 => ErrorCode::NoMemory,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Sync0,
    Sync1,
    Header,
    Body,
}

/// What [`Decoder::push`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A frame with a valid CRC.
    Frame {
        /// Its kind.
        kind: u8,
        /// Its payload.
        payload: &'a [u8],
    },
    /// A broken frame; the decoder is hunting for the next one.
    Error(ErrorCode),
}

/// The frame decoder: feed it bytes, one at a time.
pub struct Decoder {
    state: State,
    /// kind, len (2 bytes), payload, crc (4 bytes).
    buf: [u8; 3 + MAX_PAYLOAD + 4],
    got: usize,
    need: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder hunting for a frame.
    pub const fn new() -> Self {
        Decoder {
            state: State::Sync0,
            buf: [0; 3 + MAX_PAYLOAD + 4],
            got: 0,
            need: 0,
        }
    }

    /// True while in the middle of a frame (after its sync bytes).
    pub fn in_frame(&self) -> bool {
        matches!(self.state, State::Header | State::Body)
    }

    /// Drops any partial frame and hunts for the next one.
    pub fn reset(&mut self) {
        self.state = State::Sync0;
        self.got = 0;
    }

    /// Feeds one byte; returns an event when a frame ends (well or badly).
    pub fn push(&mut self, b: u8) -> Option<Event<'_>> {
        match self.state {
            State::Sync0 => {
                if b == SYNC[0] {
                    self.state = State::Sync1;
                }
                None
            }
            State::Sync1 => {
                self.state = match b {
                    _ if b == SYNC[1] => {
                        self.got = 0;
                        State::Header
                    }
                    _ if b == SYNC[0] => State::Sync1,
                    _ => State::Sync0,
                };
                None
            }
            State::Header => {
                self.buf[self.got] = b;
                self.got += 1;
                if self.got == 3 {
                    let len = u16::from_le_bytes([self.buf[1], self.buf[2]]) as usize;
                    if len > MAX_PAYLOAD {
                        self.reset();
                        return Some(Event::Error(ErrorCode::BadLength));
                    }
                    self.need = 3 + len + 4;
                    self.state = State::Body;
                }
                None
            }
            State::Body => {
                self.buf[self.got] = b;
                self.got += 1;
                if self.got < self.need {
                    return None;
                }
                self.state = State::Sync0;
                let n = self.need;
                let stored = u32::from_le_bytes([
                    self.buf[n - 4],
                    self.buf[n - 3],
                    self.buf[n - 2],
                    self.buf[n - 1],
                ]);
                if crc32(&self.buf[..n - 4]) != stored {
                    return Some(Event::Error(ErrorCode::BadChecksum));
                }
                Some(Event::Frame {
                    kind: self.buf[0],
                    payload: &self.buf[3..n - 4],
                })
            }
        }
    }
}

/// Writes a frame of `kind` with `payload` into `out`; returns its length, or `None`
/// if `out` is too small or the payload too long.
pub fn encode(kind: u8, payload: &[u8], out: &mut [u8]) -> Option<usize> {
    let len = u16::try_from(payload.len()).ok()?;
    let total = OVERHEAD + payload.len();
    let out = out.get_mut(..total)?;
    out[..2].copy_from_slice(&SYNC);
    out[2] = kind;
    out[3..5].copy_from_slice(&len.to_le_bytes());
    out[5..5 + payload.len()].copy_from_slice(payload);
    let crc = crc32(&out[2..5 + payload.len()]);
    out[total - 4..].copy_from_slice(&crc.to_le_bytes());
    Some(total)
}

/// Expands PackBits `src` into exactly `dst.len()` bytes; `None` if it is malformed,
/// or expands to more or fewer bytes.
pub fn unpack_bits(src: &[u8], dst: &mut [u8]) -> Option<()> {
    let (mut i, mut o) = (0, 0);
    while i < src.len() {
        let h = src[i] as i8;
        i += 1;
        match h {
            0..=127 => {
                let n = h as usize + 1;
                dst.get_mut(o..o + n)?.copy_from_slice(src.get(i..i + n)?);
                i += n;
                o += n;
            }
            -127..=-1 => {
                let n = (1 - h as isize) as usize;
                dst.get_mut(o..o + n)?.fill(*src.get(i)?);
                i += 1;
                o += n;
            }
            -128 => {}
        }
    }
    (o == dst.len()).then_some(())
}

/// Compresses `src` with PackBits into `out`; returns the length, or `None` if `out`
/// is too small (`src.len() + src.len() / 128 + 1` bytes always suffice).
pub fn pack_bits(src: &[u8], out: &mut [u8]) -> Option<usize> {
    let (mut i, mut o) = (0, 0);
    while i < src.len() {
        // A run of at least 3 equal bytes is worth a repeat packet.
        let mut run = 1;
        while i + run < src.len() && run < 128 && src[i + run] == src[i] {
            run += 1;
        }
        if run >= 3 {
            *out.get_mut(o)? = (1 - run as isize) as i8 as u8;
            *out.get_mut(o + 1)? = src[i];
            o += 2;
            i += run;
            continue;
        }
        // Literals up to the next run of 3 (or 128 bytes).
        let start = i;
        while i < src.len() && i - start < 128 {
            if i + 2 < src.len() && src[i] == src[i + 1] && src[i] == src[i + 2] {
                break;
            }
            i += 1;
        }
        let n = i - start;
        *out.get_mut(o)? = (n - 1) as u8;
        out.get_mut(o + 1..o + 1 + n)?
            .copy_from_slice(&src[start..i]);
        o += 1 + n;
    }
    Some(o)
}

/// The answer to one image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Classification {
    /// The predicted digit (argmax of the scores, first on ties).
    pub digit: u8,
    /// The logits.
    pub scores: [f32; SCORES],
    /// SysTick ticks the inference took (40 instructions each under QEMU `-icount shift=0`).
    pub ticks: u32,
}

impl Classification {
    /// The RESULT payload.
    pub fn to_bytes(&self) -> [u8; RESULT_LEN] {
        let mut b = [0u8; RESULT_LEN];
        b[0] = self.digit;
        for (i, s) in self.scores.iter().enumerate() {
            b[4 + 4 * i..8 + 4 * i].copy_from_slice(&s.to_le_bytes());
        }
        b[44..48].copy_from_slice(&self.ticks.to_le_bytes());
        b
    }

    /// Parses a RESULT payload.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != RESULT_LEN || b[0] > 9 {
            return None;
        }
        let word = |o: usize| [b[o], b[o + 1], b[o + 2], b[o + 3]];
        let mut scores = [0.0; SCORES];
        for (i, s) in scores.iter_mut().enumerate() {
            *s = f32::from_le_bytes(word(4 + 4 * i));
        }
        Some(Classification {
            digit: b[0],
            scores,
            ticks: u32::from_le_bytes(word(44)),
        })
    }
}

/// A request, parsed from a frame (images expanded into the caller's buffer).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Request {
    /// Classify the image.
    Classify,
    /// Describe the model.
    Ping,
    /// One training step on the image with this label and learning rate.
    Train {
        /// The digit the image shows.
        label: u8,
        /// SGD's learning rate.
        lr: f32,
    },
    /// Classify the image and count it against this label.
    Evaluate {
        /// The digit the image shows.
        label: u8,
    },
    /// Report the training state.
    Digest,
    /// Train this selection of layers from now on (from the weights in flash).
    Configure(TrainConfig),
}

/// What learns on the device and how: the payload of CONFIGURE.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    /// Layers that learn: bit `i` is layer `i` of the architecture (layers with
    /// parameters only: convolutions and dense layers).
    pub layers: u32,
    /// Only the biases of those layers learn.
    pub biases_only: bool,
    /// SGD momentum in `[0, 1)`: `a = momentum a + g; p -= lr a` (0: plain SGD, no state).
    pub momentum: f32,
    /// Samples per update, `1..=64`: their gradients are averaged, then one step.
    pub accumulate: u8,
}

impl TrainConfig {
    /// The CONFIGURE payload.
    pub fn to_bytes(&self) -> [u8; CONFIGURE_LEN] {
        let mut b = [0u8; CONFIGURE_LEN];
        b[..4].copy_from_slice(&self.layers.to_le_bytes());
        b[4] = u8::from(self.biases_only);
        b[5..9].copy_from_slice(&self.momentum.to_le_bytes());
        b[9] = self.accumulate;
        b
    }

    /// Parses a CONFIGURE payload: `BadLength` if it is not 10 bytes, `BadValue` if a
    /// field is out of range (no layer, unknown flags, momentum, samples per update);
    /// whether the layers exist is the model's to check.
    pub fn from_bytes(b: &[u8]) -> Result<Self, ErrorCode> {
        let b: &[u8; CONFIGURE_LEN] = b.try_into().map_err(|_| ErrorCode::BadLength)?;
        let c = TrainConfig {
            layers: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            biases_only: b[4] & 1 != 0,
            momentum: f32::from_le_bytes([b[5], b[6], b[7], b[8]]),
            accumulate: b[9],
        };
        if b[4] & !1 != 0 || !c.is_valid() {
            return Err(ErrorCode::BadValue);
        }
        Ok(c)
    }

    /// Whether the fields are in range (at least one layer, momentum finite in
    /// `[0, 1)`, `1..=64` samples per update).
    pub fn is_valid(&self) -> bool {
        self.layers != 0
            && self.momentum.is_finite()
            && (0.0..1.0).contains(&self.momentum)
            && (1..=MAX_ACCUMULATE).contains(&self.accumulate)
    }
}

/// The answer to CONFIGURE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Configured {
    /// Parameters that learn.
    pub trainable: u32,
    /// RAM bytes this selection uses for training (trainable copy, optimizer state,
    /// saved activations, recorded max-pool positions and ReLU signs, buffers).
    pub ram: u32,
    /// RAM bytes the firmware has for training.
    pub capacity: u32,
    /// CRC-32 of the trainable parameters (as in [`Digest`]).
    pub crc: u32,
}

impl Configured {
    /// The CONFIGURED payload.
    pub fn to_bytes(&self) -> [u8; CONFIGURED_LEN] {
        let mut b = [0u8; CONFIGURED_LEN];
        for (i, v) in [self.trainable, self.ram, self.capacity, self.crc]
            .iter()
            .enumerate()
        {
            b[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Parses a CONFIGURED payload.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let b: &[u8; CONFIGURED_LEN] = b.try_into().ok()?;
        let w = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        Some(Configured {
            trainable: w(0),
            ram: w(4),
            capacity: w(8),
            crc: w(12),
        })
    }
}

/// Parses the frame `kind`/`payload` into a request, expanding any image into `image`.
pub fn parse_request(
    kind: u8,
    payload: &[u8],
    image: &mut [u8; IMAGE_LEN],
) -> Result<Request, ErrorCode> {
    let label = |b: Option<&u8>| match b {
        Some(&l) if l <= 9 => Ok(l),
        Some(_) => Err(ErrorCode::BadValue),
        None => Err(ErrorCode::BadLength),
    };
    let unpack = |src: &[u8], image: &mut [u8; IMAGE_LEN]| {
        unpack_bits(src, image).ok_or(ErrorCode::BadLength)
    };
    match kind {
        kind::CLASSIFY => {
            let src: &[u8; IMAGE_LEN] = payload.try_into().map_err(|_| ErrorCode::BadLength)?;
            image.copy_from_slice(src);
            Ok(Request::Classify)
        }
        kind::CLASSIFY_PACKED => unpack(payload, image).map(|()| Request::Classify),
        kind::PING if payload.is_empty() => Ok(Request::Ping),
        kind::DIGEST if payload.is_empty() => Ok(Request::Digest),
        kind::PING | kind::DIGEST => Err(ErrorCode::BadLength),
        kind::TRAIN => {
            let Some((head, packed)) = payload.split_first_chunk::<TRAIN_HEADER>() else {
                return Err(ErrorCode::BadLength);
            };
            let label = label(head.first())?;
            let lr = f32::from_le_bytes([head[1], head[2], head[3], head[4]]);
            if !(lr.is_finite() && lr > 0.0) {
                return Err(ErrorCode::BadValue);
            }
            unpack(packed, image)?;
            Ok(Request::Train { label, lr })
        }
        kind::CONFIGURE => TrainConfig::from_bytes(payload).map(Request::Configure),
        kind::EVALUATE => {
            let Some((l, packed)) = payload.split_first() else {
                return Err(ErrorCode::BadLength);
            };
            let label = label(Some(l))?;
            unpack(packed, image)?;
            Ok(Request::Evaluate { label })
        }
        _ => Err(ErrorCode::UnknownKind),
    }
}

/// Payload bytes of a TRAINED frame.
pub const TRAINED_LEN: usize = 16;
/// Payload bytes of a DIGEST_RESULT frame.
pub const DIGEST_LEN: usize = 16;

/// The answer to TRAIN.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Trained {
    /// The loss on the image before the step.
    pub loss: f32,
    /// Training steps taken so far, this one included.
    pub steps: u32,
    /// The digit predicted before the step.
    pub digit_before: u8,
    /// SysTick ticks the step took.
    pub ticks: u32,
}

impl Trained {
    /// The TRAINED payload.
    pub fn to_bytes(&self) -> [u8; TRAINED_LEN] {
        let mut b = [0u8; TRAINED_LEN];
        b[..4].copy_from_slice(&self.loss.to_le_bytes());
        b[4..8].copy_from_slice(&self.steps.to_le_bytes());
        b[8] = self.digit_before;
        b[12..16].copy_from_slice(&self.ticks.to_le_bytes());
        b
    }

    /// Parses a TRAINED payload.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let b: &[u8; TRAINED_LEN] = b.try_into().ok()?;
        let w = |o: usize| [b[o], b[o + 1], b[o + 2], b[o + 3]];
        Some(Trained {
            loss: f32::from_le_bytes(w(0)),
            steps: u32::from_le_bytes(w(4)),
            digit_before: b[8],
            ticks: u32::from_le_bytes(w(12)),
        })
    }
}

/// The answer to DIGEST.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest {
    /// Training steps taken.
    pub steps: u32,
    /// CRC-32 of the trainable parameters (little-endian `f32` bytes).
    pub crc: u32,
    /// EVALUATE answers that were right since the last DIGEST.
    pub right: u32,
    /// EVALUATE requests since the last DIGEST.
    pub total: u32,
}

impl Digest {
    /// The DIGEST_RESULT payload.
    pub fn to_bytes(&self) -> [u8; DIGEST_LEN] {
        let mut b = [0u8; DIGEST_LEN];
        for (i, v) in [self.steps, self.crc, self.right, self.total]
            .iter()
            .enumerate()
        {
            b[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Parses a DIGEST_RESULT payload.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let b: &[u8; DIGEST_LEN] = b.try_into().ok()?;
        let w = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        Some(Digest {
            steps: w(0),
            crc: w(4),
            right: w(8),
            total: w(12),
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = [0u8; OVERHEAD + MAX_PAYLOAD];
        let n = encode(kind, payload, &mut out).unwrap();
        out[..n].to_vec()
    }

    fn events(bytes: &[u8]) -> Vec<Result<(u8, Vec<u8>), ErrorCode>> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for &b in bytes {
            match d.push(b) {
                Some(Event::Frame { kind, payload }) => out.push(Ok((kind, payload.to_vec()))),
                Some(Event::Error(e)) => out.push(Err(e)),
                None => {}
            }
        }
        out
    }

    #[test]
    fn round_trip_after_garbage() {
        let img: Vec<u8> = (0..IMAGE_LEN).map(|i| i as u8).collect();
        let mut bytes = std::vec![0x00, 0xA5, 0xA5, 0x13, 0x5A];
        bytes.extend(frame(kind::CLASSIFY, &img));
        bytes.extend(frame(kind::PING, &[]));
        assert_eq!(
            events(&bytes),
            std::vec![Ok((kind::CLASSIFY, img)), Ok((kind::PING, std::vec![]))]
        );
    }

    #[test]
    fn errors_then_resync() {
        let mut bad = frame(kind::PING, &[]);
        bad[2] ^= 0x40; // corrupt the kind: CRC catches it
        let mut long = std::vec![0xA5, 0x5A, 0x01, 0xFF, 0xFF]; // 65535 bytes announced
        long.extend(frame(kind::PING, &[]));
        let mut bytes = bad;
        bytes.extend(long);
        assert_eq!(
            events(&bytes),
            std::vec![
                Err(ErrorCode::BadChecksum),
                Err(ErrorCode::BadLength),
                Ok((kind::PING, std::vec![]))
            ]
        );
    }

    #[test]
    fn packbits_round_trip_and_rejects() {
        let mut img = [0u8; IMAGE_LEN];
        for (i, p) in img.iter_mut().enumerate() {
            *p = if (300..500).contains(&i) {
                (i * 7) as u8
            } else {
                0
            };
        }
        for src in [
            &img[..],
            &[7u8; IMAGE_LEN][..],
            &(0..IMAGE_LEN).map(|i| i as u8).collect::<Vec<_>>()[..],
        ] {
            let mut packed = [0u8; IMAGE_LEN + 8];
            let n = pack_bits(src, &mut packed).unwrap();
            let mut back = [1u8; IMAGE_LEN];
            unpack_bits(&packed[..n], &mut back).unwrap();
            assert_eq!(&back[..], src);
        }
        let mut out = [0u8; 4];
        assert_eq!(unpack_bits(&[0x01, 9], &mut out), None); // literal of 2 runs past the input
        assert_eq!(unpack_bits(&[0xFD, 9], &mut out), Some(())); // 4 x 9
        assert_eq!(out, [9; 4]);
        assert_eq!(unpack_bits(&[0xFC, 9], &mut out), None); // 5 bytes: too many
        assert_eq!(unpack_bits(&[0xFE, 9], &mut out), None); // 3 bytes: too few
        assert_eq!(unpack_bits(&[0x80, 0xFD], &mut out), None); // run without its byte
    }

    #[test]
    fn configure_round_trip_and_rejects() {
        let c = TrainConfig {
            layers: 0b101_0000_1001,
            biases_only: false,
            momentum: 0.9,
            accumulate: 4,
        };
        let mut img = [0u8; IMAGE_LEN];
        assert_eq!(
            parse_request(kind::CONFIGURE, &c.to_bytes(), &mut img),
            Ok(Request::Configure(c))
        );
        let mut bad = |f: &dyn Fn(&mut [u8; CONFIGURE_LEN])| {
            let mut b = c.to_bytes();
            f(&mut b);
            parse_request(kind::CONFIGURE, &b, &mut img)
        };
        let e = Err(ErrorCode::BadValue);
        assert_eq!(bad(&|b| b[..4].fill(0)), e); // no layer
        assert_eq!(bad(&|b| b[4] = 2), e); // unknown flag
        assert_eq!(
            bad(&|b| b[5..9].copy_from_slice(&f32::NAN.to_le_bytes())),
            e
        );
        assert_eq!(bad(&|b| b[5..9].copy_from_slice(&1.0f32.to_le_bytes())), e);
        assert_eq!(
            bad(&|b| b[5..9].copy_from_slice(&(-0.1f32).to_le_bytes())),
            e
        );
        assert_eq!(bad(&|b| b[9] = 0), e);
        assert_eq!(bad(&|b| b[9] = 65), e);
        assert_eq!(
            parse_request(kind::CONFIGURE, &c.to_bytes()[..9], &mut img),
            Err(ErrorCode::BadLength)
        );
        let r = Configured {
            trainable: 13_194,
            ram: 1,
            capacity: 2,
            crc: 3,
        };
        assert_eq!(Configured::from_bytes(&r.to_bytes()), Some(r));
    }

    #[test]
    fn classification_bytes() {
        let c = Classification {
            digit: 7,
            scores: [1.5, -2.0, 0.0, 3.25, 4.0, 5.0, 6.0, 7.0, 8.0, -9.5],
            ticks: 12345,
        };
        assert_eq!(Classification::from_bytes(&c.to_bytes()), Some(c));
        assert_eq!(Classification::from_bytes(&[0; 3]), None);
    }
}
