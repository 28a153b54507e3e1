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
//! | `0x81` RESULT | board -> PC | digit u8, 3 zero bytes, 10 scores f32 LE (the logits), ticks u32 LE (SysTick ticks the inference took) |
//! | `0x82` PONG | board -> PC | parameter count, classes, input h, w, c, stack high-water mark in bytes: u32 LE each |
//! | `0x83` TRAINED | board -> PC | [`Trained`]: loss before the step f32 LE, steps so far u32 LE, the digit predicted before the step u8, 3 zero bytes, ticks the step took u32 LE |
//! | `0x84` DIGEST_RESULT | board -> PC | [`Digest`]: steps u32, CRC-32 of the trainable parameters u32, EVALUATE answers right u32 and in all u32 since the last DIGEST (LE) |
//! | `0xEE` ERROR | board -> PC | error code u8 (see [`ErrorCode`]) |
//!
//! PackBits (Apple's, as in TIFF): a header byte `h` read as `i8`; `0..=127`: the next
//! `h + 1` bytes are literal; `-127..=-1`: the next byte repeated `1 - h` times; `-128`:
//! nothing. It must expand to exactly 784 bytes, else the answer is `BadLength`.
//! A firmware that cannot train (an int8 model, or built without the `train` feature)
//! answers TRAIN, EVALUATE and DIGEST with `Unsupported`.
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
/// Bytes before the packed image in a TRAIN frame: label and learning rate.
pub const TRAIN_HEADER: usize = 1 + 4;
/// Largest payload the decoder accepts (a TRAIN frame of an incompressible image).
pub const MAX_PAYLOAD: usize = TRAIN_HEADER + MAX_PACKED;
/// Bytes around a payload: sync, kind, length, CRC.
pub const OVERHEAD: usize = 2 + 1 + 2 + 4;
/// Payload bytes of a RESULT frame.
pub const RESULT_LEN: usize = 4 + 4 * 10 + 4;
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
    /// A field is out of range: a label above 9, a learning rate not positive and finite.
    BadValue = 7,
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
    /// The ten logits.
    pub scores: [f32; 10],
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
        let mut scores = [0.0; 10];
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
