//! The serial protocol, version 2: framed requests from a PC, framed answers from the
//! board, for any model the firmware embeds (its input `h*w*c` bytes, its `N` classes).
//!
//! ```text
//! frame   = 0xA5 0x5A | kind u8 | len u16 LE | payload (len bytes) | crc u32 LE
//! crc     = CRC-32 (IEEE, zlib's) of kind, len and payload
//! ```
//!
//! Field offsets are named in the modules [`field`] (the frame), [`pong`], [`result`],
//! [`train`], [`evaluate`], [`configure`], [`trained`], [`digest`] and [`configured`]
//! (the payloads). An *image* is the model's input as 8-bit values, row-major, channels
//! last (`h*w*c` bytes, the IDX file's own order; 0 = background, 255 = ink for MNIST);
//! PING's answer gives `h`, `w`, `c` and `N`.
//!
//! | kind | direction | payload |
//! |---|---|---|
//! | `0x01` CLASSIFY | PC -> board | one image, exactly `h*w*c` bytes (else `InputLen`) |
//! | `0x02` PING | PC -> board | empty |
//! | `0x03` CLASSIFY_PACKED | PC -> board | the same image compressed with PackBits (below): 3-5x fewer bytes for MNIST digits |
//! | `0x04` TRAIN | PC -> board | label u8 (`< N`), learning rate f32 LE, the image with PackBits: one SGD step ([`crate::finetune`]) |
//! | `0x05` EVALUATE | PC -> board | label u8 (`< N`), the image with PackBits: classify (answered with RESULT) and count it right or wrong |
//! | `0x06` DIGEST | PC -> board | empty |
//! | `0x07` CONFIGURE | PC -> board | [`TrainConfig`], 10 bytes: which layers learn u32 LE (bit `i` = layer `i`, only layers with parameters), flags u8 (bit 0: biases only; the other bits 0), SGD momentum f32 LE in `[0, 1)`, samples per update u8 (`1..=64`; gradients averaged). Restores the weights from flash and the step count to 0, then trains that selection |
//! | `0x81` RESULT | board -> PC | class u8, `N` u8, 2 zero bytes, `N` scores f32 LE (the logits), ticks u32 LE (SysTick ticks the inference took): `8 + 4N` bytes |
//! | `0x82` PONG | board -> PC | [`Pong`], 32 bytes, u32 LE each: protocol version (2), parameter count, classes `N`, input `h`, `w`, `c`, stack high-water mark in bytes, largest request payload the firmware takes |
//! | `0x83` TRAINED | board -> PC | [`Trained`]: loss before the step f32 LE, steps so far u32 LE, the class predicted before the step u8, 3 zero bytes, ticks the step took u32 LE |
//! | `0x84` DIGEST_RESULT | board -> PC | [`Digest`]: steps u32, CRC-32 of the trainable parameters u32, EVALUATE answers right u32 and in all u32 since the last DIGEST (LE) |
//! | `0x85` CONFIGURED | board -> PC | [`Configured`]: parameters that learn u32, RAM bytes the selection uses u32, RAM bytes the firmware has for training u32, CRC-32 of the trainable parameters u32 (LE) |
//! | `0xEE` ERROR | board -> PC | error code u8 (see [`ErrorCode`]) |
//!
//! PackBits (Apple's, as in TIFF): a header byte `h` read as `i8`; `0..=127`: the next
//! `h + 1` bytes are literal; `-127..=-1`: the next byte repeated `1 - h` times; `-128`:
//! nothing. It must expand to exactly the model's `h*w*c` bytes, else the answer is
//! `InputLen`. A firmware that cannot train (an int8 model, or built without the `train`
//! feature) answers TRAIN, EVALUATE, DIGEST and CONFIGURE with `Unsupported`. Until a
//! CONFIGURE, the last layer learns (SGD without momentum, one sample per update). A
//! CONFIGURE naming a layer the model does not have or one without parameters, a momentum
//! that is not finite or outside `[0, 1)`, 0 or more than 64 samples per update, or set
//! unknown flag bits is answered `BadValue`; one whose buffers do not fit the firmware's
//! RAM is answered `NoMemory`: both change nothing on the device.
//!
//! The decoder is a byte-at-a-time state machine with a fixed buffer (sized at build time
//! from the model's input, [`frame_capacity`]): it hunts for the sync bytes, rejects a
//! length it cannot hold as soon as it sees it (`BadLength`; it then hunts again, so the
//! rest of such a frame is read as garbage: a host asks PING for the shape first), checks
//! the CRC, and after any error goes back to hunting, so a valid frame after garbage is
//! answered.
//!
//! # Versions
//! Version 1 (before the firmware ran models of any shape) carried 784-byte images, 10
//! scores per RESULT (a zero where version 2 has `N`) and a 24-byte PONG without the
//! version word. Frames, kinds, error codes 1-8 and every other payload are unchanged, so:
//! - a version 1 host and a version 2 firmware agree on a 28x28x1, 10-class model (the
//!   RESULT is then byte for byte the same); on any other model the host's length checks
//!   fail on PONG ("unexpected answer to PING") or RESULT, never a wrong score;
//! - a version 2 host reads the version word first and refuses a version 1 firmware (its
//!   24-byte PONG) or any other version with [`PongError`], which says which.

use core::ops::{Deref, Range};

use microconv::crc32::crc32;

/// The protocol version this firmware speaks (PONG's first word).
pub const VERSION: u32 = 2;
/// The two bytes every frame starts with.
pub const SYNC: [u8; 2] = [0xA5, 0x5A];
/// A field of a frame or payload: its byte range.
pub type Field = Range<usize>;

/// Where a frame's fields are (smoltcp style).
pub mod field {
    use super::Field;
    /// The sync bytes.
    pub const SYNC: Field = 0..2;
    /// The kind.
    pub const KIND: usize = 2;
    /// The payload length, u16 LE.
    pub const LEN: Field = 3..5;
    /// Where the payload starts; the CRC-32 (u32 LE) follows it.
    pub const PAYLOAD: usize = 5;
}

/// Pixels of one MNIST image (28x28x1): the input of the shipped models, and the size
/// of [`DEFAULT_CAPACITY`].
pub const IMAGE_LEN: usize = 28 * 28;
/// Largest PackBits encoding of `n` bytes (a header byte per 128 literals).
pub const fn packed_max(n: usize) -> usize {
    n + n.div_ceil(128)
}
/// Largest PackBits encoding of an MNIST image.
pub const MAX_PACKED: usize = packed_max(IMAGE_LEN);
/// Payload bytes of a CONFIGURE frame.
pub const CONFIGURE_LEN: usize = 10;
/// Payload bytes of a CONFIGURED frame.
pub const CONFIGURED_LEN: usize = 16;
/// Most samples whose gradients one update averages.
pub const MAX_ACCUMULATE: u8 = 64;
/// Bytes before the packed image in a TRAIN frame: label and learning rate.
pub const TRAIN_HEADER: usize = 1 + 4;
/// Largest request payload for a model of `input_len` bytes of input: a TRAIN frame of
/// an incompressible image (or a CONFIGURE, for tiny inputs).
pub const fn max_payload(input_len: usize) -> usize {
    let train = TRAIN_HEADER + packed_max(input_len);
    if train > CONFIGURE_LEN {
        train
    } else {
        CONFIGURE_LEN
    }
}
/// Bytes of the decoder's buffer for a model of `input_len` bytes of input: kind,
/// length, the largest payload, CRC (the `CAP` of [`Decoder`] and of `App`).
pub const fn frame_capacity(input_len: usize) -> usize {
    3 + max_payload(input_len) + 4
}
/// The decoder's capacity for an MNIST model (and the host's, which receives answers
/// only: every answer fits).
pub const DEFAULT_CAPACITY: usize = frame_capacity(IMAGE_LEN);
/// Largest payload the decoder of an MNIST model accepts.
pub const MAX_PAYLOAD: usize = max_payload(IMAGE_LEN);
/// Bytes around a payload: sync, kind, length, CRC.
pub const OVERHEAD: usize = 2 + 1 + 2 + 4;
/// Most classes a model may have: the firmware's score buffer (a model with more is
/// refused by the firmware build).
pub const SCORES: usize = 32;
/// Payload bytes of a RESULT frame of a model with `classes` classes.
pub const fn result_len(classes: usize) -> usize {
    result::SCORES + 4 * classes + 4
}
/// Payload bytes of the largest RESULT frame.
pub const MAX_RESULT_LEN: usize = result_len(SCORES);
/// Payload bytes of a RESULT frame of a 10-class model (the same as version 1's).
pub const RESULT_LEN: usize = result_len(10);
/// Payload bytes of a PONG frame.
pub const PONG_LEN: usize = pong::MAX_PAYLOAD.end;
/// Payload bytes of a version 1 PONG (no version word).
pub const PONG_V1_LEN: usize = 24;
/// Largest frame the board sends.
pub const MAX_RESPONSE: usize = OVERHEAD + MAX_RESULT_LEN;

/// Where RESULT's fields are.
pub mod result {
    /// The predicted class, u8.
    pub const CLASS: usize = 0;
    /// The number of scores `N`, u8 (0 in version 1).
    pub const COUNT: usize = 1;
    /// Where the `N` scores (f32 LE) start; the ticks (u32 LE) follow them.
    pub const SCORES: usize = 4;
}

/// Where PONG's fields are (u32 LE each).
pub mod pong {
    use super::Field;
    /// The protocol version.
    pub const VERSION: Field = 0..4;
    /// Parameters of the model.
    pub const PARAMS: Field = 4..8;
    /// Classes `N`.
    pub const CLASSES: Field = 8..12;
    /// Input height.
    pub const HEIGHT: Field = 12..16;
    /// Input width.
    pub const WIDTH: Field = 16..20;
    /// Input channels.
    pub const CHANNELS: Field = 20..24;
    /// Stack high-water mark, bytes.
    pub const STACK: Field = 24..28;
    /// Largest request payload the firmware's decoder takes.
    pub const MAX_PAYLOAD: Field = 28..32;
}

/// Where TRAIN's fields are.
pub mod train {
    use super::Field;
    /// The label, u8.
    pub const LABEL: usize = 0;
    /// The learning rate, f32 LE.
    pub const LR: Field = 1..5;
    /// Where the PackBits image starts.
    pub const IMAGE: usize = 5;
}

/// Where EVALUATE's fields are.
pub mod evaluate {
    /// The label, u8.
    pub const LABEL: usize = 0;
    /// Where the PackBits image starts.
    pub const IMAGE: usize = 1;
}

/// Where CONFIGURE's fields are.
pub mod configure {
    use super::Field;
    /// Layers that learn, u32 LE bit mask.
    pub const LAYERS: Field = 0..4;
    /// Flags, u8 (bit 0: biases only).
    pub const FLAGS: usize = 4;
    /// SGD momentum, f32 LE.
    pub const MOMENTUM: Field = 5..9;
    /// Samples per update, u8.
    pub const ACCUMULATE: usize = 9;
}

/// Where TRAINED's fields are.
pub mod trained {
    use super::Field;
    /// The loss before the step, f32 LE.
    pub const LOSS: Field = 0..4;
    /// Steps so far, u32 LE.
    pub const STEPS: Field = 4..8;
    /// The class predicted before the step, u8 (3 zero bytes follow).
    pub const CLASS: usize = 8;
    /// Ticks the step took, u32 LE.
    pub const TICKS: Field = 12..16;
}

/// Where DIGEST_RESULT's fields are (u32 LE each).
pub mod digest {
    use super::Field;
    /// Steps taken.
    pub const STEPS: Field = 0..4;
    /// CRC-32 of the trainable parameters.
    pub const CRC: Field = 4..8;
    /// EVALUATE answers right.
    pub const RIGHT: Field = 8..12;
    /// EVALUATE requests.
    pub const TOTAL: Field = 12..16;
}

/// Where CONFIGURED's fields are (u32 LE each).
pub mod configured {
    use super::Field;
    /// Parameters that learn.
    pub const TRAINABLE: Field = 0..4;
    /// RAM bytes the selection uses.
    pub const RAM: Field = 4..8;
    /// RAM bytes the firmware has for training.
    pub const CAPACITY: Field = 8..12;
    /// CRC-32 of the trainable parameters.
    pub const CRC: Field = 12..16;
}

/// The u32 LE at `f` of `b` (which the caller has checked is long enough).
fn word(b: &[u8], f: Field) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[f]);
    u32::from_le_bytes(w)
}

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
#[non_exhaustive]
#[repr(u8)]
pub enum ErrorCode {
    /// The CRC did not match: the frame was corrupted.
    BadChecksum = 1,
    /// The length field is larger than any request this firmware takes, or wrong for
    /// the kind.
    BadLength = 2,
    /// The kind is not a request this firmware knows.
    UnknownKind = 3,
    /// A frame started but its remaining bytes did not arrive in time.
    Timeout = 4,
    /// The model failed on this input (should not happen with a valid image).
    Model = 5,
    /// This firmware cannot do that (training with an int8 model or without `train`).
    Unsupported = 6,
    /// A field is out of range: a label not below the model's classes, a learning rate
    /// not positive and finite, a CONFIGURE naming a layer without parameters (or none,
    /// or one past the last), a momentum outside `[0, 1)`, samples per update outside
    /// `1..=64`.
    BadValue = 7,
    /// The CONFIGURE selection's buffers do not fit the RAM this firmware has for training.
    NoMemory = 8,
    /// The image (raw, or PackBits expanded) is not the model's input, `h*w*c` bytes
    /// (PONG gives the shape). New in version 2.
    InputLen = 9,
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
            9 => ErrorCode::InputLen,
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

/// The frame decoder: feed it bytes, one at a time. `CAP` bytes of buffer hold kind,
/// length, payload and CRC ([`frame_capacity`] of the model's input): a frame whose
/// payload is longer than `CAP - 7` bytes is refused with `BadLength`.
pub struct Decoder<const CAP: usize = DEFAULT_CAPACITY> {
    state: State,
    /// kind, len (2 bytes), payload, crc (4 bytes).
    buf: [u8; CAP],
    got: usize,
    need: usize,
}

impl<const CAP: usize> Default for Decoder<CAP> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const CAP: usize> Decoder<CAP> {
    /// A decoder hunting for a frame.
    pub const fn new() -> Self {
        Decoder {
            state: State::Sync0,
            buf: [0; CAP],
            got: 0,
            need: 0,
        }
    }

    /// The longest payload this decoder takes.
    pub const fn max_payload(&self) -> usize {
        CAP.saturating_sub(3 + 4)
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
                    if len > self.max_payload() {
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
    let end = field::PAYLOAD + payload.len();
    out[field::SYNC].copy_from_slice(&SYNC);
    out[field::KIND] = kind;
    out[field::LEN].copy_from_slice(&len.to_le_bytes());
    out[field::PAYLOAD..end].copy_from_slice(payload);
    let crc = crc32(&out[field::KIND..end]);
    out[end..].copy_from_slice(&crc.to_le_bytes());
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

/// A RESULT payload as bytes (`8 + 4N` of them; derefs to the slice).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResultBytes {
    buf: [u8; MAX_RESULT_LEN],
    len: usize,
}

impl Deref for ResultBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The answer to one image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Classification {
    /// The predicted class (argmax of the scores, first on ties): a digit for MNIST.
    pub digit: u8,
    /// The model's classes `N`: the first `N` scores are its logits.
    pub classes: u8,
    /// The logits, then zeros up to [`SCORES`].
    pub scores: [f32; SCORES],
    /// SysTick ticks the inference took (40 instructions each under QEMU `-icount shift=0`).
    pub ticks: u32,
}

impl Classification {
    /// The model's scores (the first `classes`).
    pub fn logits(&self) -> &[f32] {
        &self.scores[..(self.classes as usize).min(SCORES)]
    }

    /// The RESULT payload: `8 + 4N` bytes.
    pub fn to_bytes(&self) -> ResultBytes {
        let n = (self.classes as usize).min(SCORES);
        let mut b = [0u8; MAX_RESULT_LEN];
        b[result::CLASS] = self.digit;
        b[result::COUNT] = n as u8;
        for (i, s) in self.scores[..n].iter().enumerate() {
            let o = result::SCORES + 4 * i;
            b[o..o + 4].copy_from_slice(&s.to_le_bytes());
        }
        let t = result::SCORES + 4 * n;
        b[t..t + 4].copy_from_slice(&self.ticks.to_le_bytes());
        ResultBytes {
            buf: b,
            len: result_len(n),
        }
    }

    /// Parses a RESULT payload: `None` unless its length is `8 + 4N` for the `N` it
    /// states (1 to [`SCORES`]) and the class is below `N`.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let n = *b.get(result::COUNT)? as usize;
        if n == 0 || n > SCORES || b.len() != result_len(n) || b[result::CLASS] as usize >= n {
            return None;
        }
        let mut scores = [0.0; SCORES];
        for (i, s) in scores[..n].iter_mut().enumerate() {
            let o = result::SCORES + 4 * i;
            *s = f32::from_bits(word(b, o..o + 4));
        }
        let t = result::SCORES + 4 * n;
        Some(Classification {
            digit: b[result::CLASS],
            classes: n as u8,
            scores,
            ticks: word(b, t..t + 4),
        })
    }
}

/// The answer to PING: who is there and what it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pong {
    /// The protocol version ([`VERSION`]).
    pub version: u32,
    /// Parameters of the model.
    pub params: u32,
    /// Classes `N` (scores per RESULT).
    pub classes: u32,
    /// Input height, width and channels: an image is `h*w*c` bytes.
    pub input: [u32; 3],
    /// Stack high-water mark in bytes.
    pub stack: u32,
    /// Largest request payload the firmware's decoder takes.
    pub max_payload: u32,
}

/// Why a PONG cannot be read as version 2's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PongError {
    /// The firmware speaks another protocol version (1: a 24-byte PONG without the
    /// version word, 784-byte images and 10 scores only).
    Version(u32),
    /// Not a PONG of any version this host knows (its length).
    Malformed(usize),
}

impl core::fmt::Display for PongError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PongError::Version(v) => write!(
                f,
                "the firmware speaks serial protocol version {v}, this host version {VERSION}: build the firmware and the host from the same microconv"
            ),
            PongError::Malformed(n) => write!(
                f,
                "a {n}-byte PONG is no version of the serial protocol ({PONG_LEN} bytes in version {VERSION}): is this a microconv firmware?"
            ),
        }
    }
}

impl Pong {
    /// Bytes of one image: `h*w*c`.
    pub fn input_len(&self) -> usize {
        self.input.iter().map(|&d| d as usize).product()
    }

    /// The PONG payload.
    pub fn to_bytes(&self) -> [u8; PONG_LEN] {
        let mut b = [0u8; PONG_LEN];
        let [h, w, c] = self.input;
        for (f, v) in [
            (pong::VERSION, self.version),
            (pong::PARAMS, self.params),
            (pong::CLASSES, self.classes),
            (pong::HEIGHT, h),
            (pong::WIDTH, w),
            (pong::CHANNELS, c),
            (pong::STACK, self.stack),
            (pong::MAX_PAYLOAD, self.max_payload),
        ] {
            b[f].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Parses a PONG payload of this version; another version's is [`PongError`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, PongError> {
        if b.len() == PONG_V1_LEN {
            return Err(PongError::Version(1));
        }
        if b.len() < pong::VERSION.end {
            return Err(PongError::Malformed(b.len()));
        }
        let version = word(b, pong::VERSION);
        if version != VERSION {
            return Err(PongError::Version(version));
        }
        if b.len() != PONG_LEN {
            return Err(PongError::Malformed(b.len()));
        }
        Ok(Pong {
            version,
            params: word(b, pong::PARAMS),
            classes: word(b, pong::CLASSES),
            input: [
                word(b, pong::HEIGHT),
                word(b, pong::WIDTH),
                word(b, pong::CHANNELS),
            ],
            stack: word(b, pong::STACK),
            max_payload: word(b, pong::MAX_PAYLOAD),
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
        /// The class the image shows.
        label: u8,
        /// SGD's learning rate.
        lr: f32,
    },
    /// Classify the image and count it against this label.
    Evaluate {
        /// The class the image shows.
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
        b[configure::LAYERS].copy_from_slice(&self.layers.to_le_bytes());
        b[configure::FLAGS] = u8::from(self.biases_only);
        b[configure::MOMENTUM].copy_from_slice(&self.momentum.to_le_bytes());
        b[configure::ACCUMULATE] = self.accumulate;
        b
    }

    /// Parses a CONFIGURE payload: `BadLength` if it is not 10 bytes, `BadValue` if a
    /// field is out of range (no layer, unknown flags, momentum, samples per update);
    /// whether the layers exist is the model's to check.
    pub fn from_bytes(b: &[u8]) -> Result<Self, ErrorCode> {
        if b.len() != CONFIGURE_LEN {
            return Err(ErrorCode::BadLength);
        }
        let c = TrainConfig {
            layers: word(b, configure::LAYERS),
            biases_only: b[configure::FLAGS] & 1 != 0,
            momentum: f32::from_bits(word(b, configure::MOMENTUM)),
            accumulate: b[configure::ACCUMULATE],
        };
        if b[configure::FLAGS] & !1 != 0 || !c.is_valid() {
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

/// Writes `values` as u32 LE at their fields of a `N`-byte payload.
fn words<const N: usize>(values: [(Field, u32); 4]) -> [u8; N] {
    let mut b = [0u8; N];
    for (f, v) in values {
        b[f].copy_from_slice(&v.to_le_bytes());
    }
    b
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
        use configured::*;
        words([
            (TRAINABLE, self.trainable),
            (RAM, self.ram),
            (CAPACITY, self.capacity),
            (CRC, self.crc),
        ])
    }

    /// Parses a CONFIGURED payload.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        use configured::*;
        (b.len() == CONFIGURED_LEN).then(|| Configured {
            trainable: word(b, TRAINABLE),
            ram: word(b, RAM),
            capacity: word(b, CAPACITY),
            crc: word(b, CRC),
        })
    }
}

/// Parses the frame `kind`/`payload` into a request for a model of `classes` classes
/// whose input is `image.len()` bytes, expanding any image into `image`: `InputLen` if
/// the image is not exactly that long, `BadValue` for a label not below `classes`.
pub fn parse_request(
    kind: u8,
    payload: &[u8],
    image: &mut [u8],
    classes: usize,
) -> Result<Request, ErrorCode> {
    let label = |b: Option<&u8>| match b {
        Some(&l) if (l as usize) < classes => Ok(l),
        Some(_) => Err(ErrorCode::BadValue),
        None => Err(ErrorCode::BadLength),
    };
    let unpack = |src: &[u8], image: &mut [u8]| unpack_bits(src, image).ok_or(ErrorCode::InputLen);
    match kind {
        kind::CLASSIFY if payload.len() == image.len() => {
            image.copy_from_slice(payload);
            Ok(Request::Classify)
        }
        kind::CLASSIFY => Err(ErrorCode::InputLen),
        kind::CLASSIFY_PACKED => unpack(payload, image).map(|()| Request::Classify),
        kind::PING if payload.is_empty() => Ok(Request::Ping),
        kind::DIGEST if payload.is_empty() => Ok(Request::Digest),
        kind::PING | kind::DIGEST => Err(ErrorCode::BadLength),
        kind::TRAIN => {
            if payload.len() < train::IMAGE {
                return Err(ErrorCode::BadLength);
            }
            let label = label(payload.get(train::LABEL))?;
            let lr = f32::from_bits(word(payload, train::LR));
            if !(lr.is_finite() && lr > 0.0) {
                return Err(ErrorCode::BadValue);
            }
            unpack(&payload[train::IMAGE..], image)?;
            Ok(Request::Train { label, lr })
        }
        kind::CONFIGURE => TrainConfig::from_bytes(payload).map(Request::Configure),
        kind::EVALUATE => {
            let label = label(payload.get(evaluate::LABEL))?;
            unpack(&payload[evaluate::IMAGE..], image)?;
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
    /// The class predicted before the step.
    pub digit_before: u8,
    /// SysTick ticks the step took.
    pub ticks: u32,
}

impl Trained {
    /// The TRAINED payload.
    pub fn to_bytes(&self) -> [u8; TRAINED_LEN] {
        let mut b = [0u8; TRAINED_LEN];
        b[trained::LOSS].copy_from_slice(&self.loss.to_le_bytes());
        b[trained::STEPS].copy_from_slice(&self.steps.to_le_bytes());
        b[trained::CLASS] = self.digit_before;
        b[trained::TICKS].copy_from_slice(&self.ticks.to_le_bytes());
        b
    }

    /// Parses a TRAINED payload.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        (b.len() == TRAINED_LEN).then(|| Trained {
            loss: f32::from_bits(word(b, trained::LOSS)),
            steps: word(b, trained::STEPS),
            digit_before: b[trained::CLASS],
            ticks: word(b, trained::TICKS),
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
        use digest::*;
        words([
            (STEPS, self.steps),
            (CRC, self.crc),
            (RIGHT, self.right),
            (TOTAL, self.total),
        ])
    }

    /// Parses a DIGEST_RESULT payload.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        use digest::*;
        (b.len() == DIGEST_LEN).then(|| Digest {
            steps: word(b, STEPS),
            crc: word(b, CRC),
            right: word(b, RIGHT),
            total: word(b, TOTAL),
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
        let mut d: Decoder = Decoder::new();
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
            parse_request(kind::CONFIGURE, &c.to_bytes(), &mut img, 10),
            Ok(Request::Configure(c))
        );
        let mut bad = |f: &dyn Fn(&mut [u8; CONFIGURE_LEN])| {
            let mut b = c.to_bytes();
            f(&mut b);
            parse_request(kind::CONFIGURE, &b, &mut img, 10)
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
            parse_request(kind::CONFIGURE, &c.to_bytes()[..9], &mut img, 10),
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
            classes: 10,
            scores: {
                let mut s = [0.0; SCORES];
                s[..10].copy_from_slice(&[1.5, -2.0, 0.0, 3.25, 4.0, 5.0, 6.0, 7.0, 8.0, -9.5]);
                s
            },
            ticks: 12345,
        };
        let b = c.to_bytes();
        assert_eq!(b.len(), RESULT_LEN);
        assert_eq!(Classification::from_bytes(&b), Some(c));
        // Version 1's reader (class at 0, 10 scores from 4, ticks at 44) reads the same.
        assert_eq!(b[0], 7);
        assert_eq!(&b[4..8], &1.5f32.to_le_bytes());
        assert_eq!(&b[40..44], &(-9.5f32).to_le_bytes());
        assert_eq!(&b[44..48], &12345u32.to_le_bytes());
        assert_eq!(Classification::from_bytes(&[0; 3]), None);
        // Three classes: 20 bytes; a wrong count, a class out of range are refused.
        let mut s3 = [0.0; SCORES];
        s3[..3].copy_from_slice(&[0.25, -1.0, 2.0]);
        let c3 = Classification {
            digit: 2,
            classes: 3,
            scores: s3,
            ticks: 9,
        };
        let b3 = c3.to_bytes();
        assert_eq!(b3.len(), 20);
        assert_eq!(Classification::from_bytes(&b3), Some(c3));
        assert_eq!(
            Classification::from_bytes(&b3).unwrap().logits(),
            &[0.25, -1.0, 2.0]
        );
        let mut bad = b3.to_vec();
        bad[result::COUNT] = 4;
        assert_eq!(Classification::from_bytes(&bad), None);
        bad[result::COUNT] = 0;
        assert_eq!(Classification::from_bytes(&bad), None);
        let mut bad = b3.to_vec();
        bad[result::CLASS] = 3;
        assert_eq!(Classification::from_bytes(&bad), None);
        // Version 1's 10-class RESULT has a 0 where the count is: refused.
        let mut v1 = b.to_vec();
        v1[result::COUNT] = 0;
        assert_eq!(Classification::from_bytes(&v1), None);
    }

    #[test]
    fn pong_carries_version_and_shape_and_refuses_other_versions() {
        let p = Pong {
            version: VERSION,
            params: 13_194,
            classes: 3,
            input: [8, 8, 3],
            stack: 4000,
            max_payload: max_payload(192) as u32,
        };
        let b = p.to_bytes();
        assert_eq!(b.len(), 32);
        assert_eq!(&b[pong::VERSION], &2u32.to_le_bytes());
        assert_eq!(&b[pong::CHANNELS], &3u32.to_le_bytes());
        assert_eq!(Pong::from_bytes(&b), Ok(p));
        assert_eq!(p.input_len(), 192);
        assert_eq!(Pong::from_bytes(&b[..24]), Err(PongError::Version(1)));
        let mut v3 = b;
        v3[0] = 3;
        assert_eq!(Pong::from_bytes(&v3), Err(PongError::Version(3)));
        assert_eq!(Pong::from_bytes(&b[..31]), Err(PongError::Malformed(31)));
        assert_eq!(Pong::from_bytes(&b[..2]), Err(PongError::Malformed(2)));
        let msg = std::format!("{}", PongError::Version(1));
        assert!(
            msg.contains("version 1") && msg.contains("same microconv"),
            "{msg}"
        );
    }

    #[test]
    fn requests_take_the_models_input_and_classes() {
        let img: Vec<u8> = (0..192).map(|i| (i % 7) as u8).collect();
        let mut buf = [0u8; 192];
        assert_eq!(
            parse_request(kind::CLASSIFY, &img, &mut buf, 3),
            Ok(Request::Classify)
        );
        assert_eq!(&buf[..], &img[..]);
        // An MNIST image to an 8x8x3 model, one byte short or long: InputLen.
        for len in [IMAGE_LEN, 191, 193, 0] {
            let p = std::vec![1u8; len];
            assert_eq!(
                parse_request(kind::CLASSIFY, &p, &mut buf, 3),
                Err(ErrorCode::InputLen),
                "{len}"
            );
        }
        let mut packed = [0u8; 256];
        let n = pack_bits(&img, &mut packed).unwrap();
        let mut short = [0u8; 256];
        let m = pack_bits(&img[..100], &mut short).unwrap();
        assert_eq!(
            parse_request(kind::CLASSIFY_PACKED, &packed[..n], &mut buf, 3),
            Ok(Request::Classify)
        );
        assert_eq!(
            parse_request(kind::CLASSIFY_PACKED, &short[..m], &mut buf, 3),
            Err(ErrorCode::InputLen)
        );
        // Labels: below the model's classes.
        let ev = |label: u8| {
            let mut p = std::vec![label];
            p.extend_from_slice(&packed[..n]);
            p
        };
        assert_eq!(
            parse_request(kind::EVALUATE, &ev(2), &mut buf, 3),
            Ok(Request::Evaluate { label: 2 })
        );
        assert_eq!(
            parse_request(kind::EVALUATE, &ev(3), &mut buf, 3),
            Err(ErrorCode::BadValue)
        );
        assert_eq!(
            parse_request(kind::EVALUATE, &[], &mut buf, 3),
            Err(ErrorCode::BadLength)
        );
        let mut t = std::vec![1u8];
        t.extend_from_slice(&0.5f32.to_le_bytes());
        t.extend_from_slice(&packed[..n]);
        assert_eq!(
            parse_request(kind::TRAIN, &t, &mut buf, 3),
            Ok(Request::Train { label: 1, lr: 0.5 })
        );
        assert_eq!(
            parse_request(kind::TRAIN, &t[..4], &mut buf, 3),
            Err(ErrorCode::BadLength)
        );
    }

    #[test]
    fn the_decoder_holds_what_its_capacity_says() {
        const CAP: usize = frame_capacity(192);
        let mut d = Decoder::<CAP>::new();
        assert_eq!(d.max_payload(), max_payload(192));
        assert_eq!(max_payload(192), 5 + 192 + 2);
        assert_eq!(max_payload(1), CONFIGURE_LEN);
        // An MNIST image is too long for an 8x8x3 model's decoder: refused at its header.
        let f = frame(kind::CLASSIFY, &[0u8; IMAGE_LEN]);
        let mut got = std::vec![];
        for &b in &f[..5] {
            if let Some(e) = d.push(b) {
                got.push(std::format!("{e:?}"));
            }
        }
        assert_eq!(
            got,
            [std::format!("{:?}", Event::Error(ErrorCode::BadLength))]
        );
        let ok = frame(kind::CLASSIFY, &[7u8; 192]);
        let mut frames = 0;
        for &b in &ok {
            if let Some(Event::Frame { payload, .. }) = d.push(b) {
                assert_eq!(payload, &[7u8; 192][..]);
                frames += 1;
            }
        }
        assert_eq!(frames, 1);
    }
}
