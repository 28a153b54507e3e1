//! The weights file: a trained network in one little-endian byte string that firmware
//! reads in place from flash, without copying. Two precisions share one header and one
//! layer table and differ in their tensors: [`float`] (version 1, `f32` parameters) and
//! [`int8`] (version 2, int8 weights and int32 biases, multipliers, shifts). The full
//! specification, precise enough to write a reader in another language, is
//! `docs/weights-format.md`; the shared part, with its offsets named in [`field`]:
//!
//! ```text
//! 0    8   magic "MCONVNET"
//! 8    4   version (u32): 1 float, 2 int8 (see Precision::of)
//! 12   4   file length in bytes, including the trailing CRC (u32)
//! 16   12  input shape h, w, c (u32 each)
//! 28   4   layer count L (u32, 1..=MAX_LAYERS)
//! 32   16L layer records: kind u8, padding u8, reserved u16, a u32, b u32, c u32
//! ..   4   tensor count T (u32)
//! ..   32T tensor records: layer u32, role u8, dtype u8, rank u8, reserved u8,
//!          dims [u32; 4], offset u32, byte length u32
//! ..       zero padding to a multiple of 16
//! ..       tensor data, back to back in record order (per precision)
//! end-4 4  CRC-32 (IEEE) of every byte before it
//! ```
//!
//! Ask a file's precision with [`Precision::of`], then parse it with
//! [`float::Model::parse`] or [`int8::QModel::parse`]; each checks everything (magic,
//! version, length, checksum, every layer, the architecture, every tensor) and borrows
//! the data from the input. That needs the bytes to start at a 4-byte aligned address:
//! wrap an `include_bytes!` in [`Aligned`]; misaligned input is an error, never a copy or UB.

use core::fmt;

use crate::arch::Arch;
use crate::crc32::crc32;
use crate::error::Error;
use crate::layers::{Layer, Record};
use crate::shape::Shape;

pub mod float;
pub mod int8;

/// The first 8 bytes of every weights file.
pub const MAGIC: [u8; 8] = *b"MCONVNET";
/// The version of float files ([`float`]).
pub const VERSION_FLOAT: u32 = 1;
/// The version of int8 files ([`int8`]).
pub const VERSION_INT8: u32 = 2;
/// Most layers a file may describe (the parsers keep them in a fixed-size list).
pub const MAX_LAYERS: usize = 32;

/// Byte offsets of the fields every weights file shares (see the module table); the
/// ranges index the whole file, [`field::layer`] and [`field::tensor`] one record.
pub mod field {
    use core::ops::Range;

    /// `"MCONVNET"`.
    pub const MAGIC: Range<usize> = 0..8;
    /// The version (u32): which [`super::Precision`] the file holds.
    pub const VERSION: Range<usize> = 8..12;
    /// The file length in bytes, CRC included (u32).
    pub const LENGTH: Range<usize> = 12..16;
    /// The input's height (u32).
    pub const INPUT_H: Range<usize> = 16..20;
    /// The input's width (u32).
    pub const INPUT_W: Range<usize> = 20..24;
    /// The input's channels (u32).
    pub const INPUT_C: Range<usize> = 24..28;
    /// The number of layer records (u32).
    pub const LAYER_COUNT: Range<usize> = 28..32;
    /// Where the layer records start (the fixed header's length).
    pub const LAYERS: usize = 32;

    /// One layer record ([`LEN`](layer::LEN) bytes; what `a`, `b`, `c` mean is the
    /// layer kind's, see [`crate::layers`]).
    pub mod layer {
        use core::ops::Range;
        /// Bytes per record.
        pub const LEN: usize = 16;
        /// The layer kind (u8).
        pub const KIND: usize = 0;
        /// The padding code (u8): 0 SAME, 1 VALID.
        pub const PADDING: usize = 1;
        /// Zero.
        pub const RESERVED: Range<usize> = 2..4;
        /// First hyper-parameter (u32).
        pub const A: Range<usize> = 4..8;
        /// Second hyper-parameter (u32).
        pub const B: Range<usize> = 8..12;
        /// Third hyper-parameter (u32).
        pub const C: Range<usize> = 12..16;
    }

    /// One tensor record ([`LEN`](tensor::LEN) bytes), after the tensor count.
    pub mod tensor {
        use core::ops::Range;
        /// Bytes per record.
        pub const LEN: usize = 32;
        /// The layer the tensor belongs to (u32).
        pub const LAYER: Range<usize> = 0..4;
        /// Its role (u8; weights 0, bias 1, ...).
        pub const ROLE: usize = 4;
        /// Its data type (u8; f32 1, i8 2, i32 3).
        pub const DTYPE: usize = 5;
        /// Its rank (u8, 1..=4).
        pub const RANK: usize = 6;
        /// Zero.
        pub const RESERVED: usize = 7;
        /// Its dimensions (4 u32, unused ones 0).
        pub const DIMS: Range<usize> = 8..24;
        /// Offset of its data from the start of the file (u32).
        pub const OFFSET: Range<usize> = 24..28;
        /// Length of its data in bytes (u32).
        pub const BYTES: Range<usize> = 28..32;

        /// The values of the [`ROLE`] byte.
        pub mod role {
            /// Weights (float or int8).
            pub const WEIGHTS: u8 = 0;
            /// Biases (f32 or i32).
            pub const BIAS: u8 = 1;
            /// int8 files: each output channel's requantization multiplier (i32).
            pub const MULTIPLIER: u8 = 2;
            /// int8 files: each output channel's requantization shift (i32).
            pub const SHIFT: u8 = 3;
            /// int8 files: the layer's quantization record.
            pub const QUANT: u8 = 4;
        }

        /// The values of the [`DTYPE`] byte.
        pub mod dtype {
            /// `f32`, little-endian.
            pub const F32: u8 = 1;
            /// `i8`.
            pub const I8: u8 = 2;
            /// `i32`, little-endian.
            pub const I32: u8 = 3;
        }
    }

    /// The data of every tensor starts at a multiple of this.
    pub const DATA_ALIGN: usize = 16;
    /// The CRC-32 at the end of the file.
    pub const CRC_LEN: usize = 4;
}

pub(crate) const HEADER: usize = field::LAYERS;
pub(crate) const LAYER_RECORD: usize = field::layer::LEN;
pub(crate) const TENSOR_RECORD: usize = field::tensor::LEN;
pub(crate) const DATA_ALIGN: usize = field::DATA_ALIGN;

/// The precision of a weights file, which its version says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Precision {
    /// `f32` parameters (version 1: `host-trainer export`), read by [`float::Model`].
    Float,
    /// int8 weights, int32 biases (version 2: `host-trainer quantize --out`), read by
    /// [`int8::QModel`].
    Int8,
}

impl Precision {
    /// The version number files of this precision carry.
    pub const fn version(self) -> u32 {
        match self {
            Precision::Float => VERSION_FLOAT,
            Precision::Int8 => VERSION_INT8,
        }
    }

    /// The precision of a version number, if this build reads it.
    pub const fn from_version(version: u32) -> Option<Precision> {
        match version {
            VERSION_FLOAT => Some(Precision::Float),
            VERSION_INT8 => Some(Precision::Int8),
            _ => None,
        }
    }

    /// The precision of the weights file `bytes`, from its magic and version only (the
    /// rest is checked by the parser of that precision). The one place that reads the
    /// version field:
    ///
    /// ```
    /// use microconv::weights::{self, Precision};
    /// use microconv::Error;
    /// use microconv::{Arch, Layer, Shape, layers::Dense};
    ///
    /// const ARCH: Arch = Arch::new(Shape::flat(4), &[Layer::Dense(Dense::new(3))]);
    /// let mut file = [0u8; 256];
    /// let len = weights::float::write(&ARCH, &[0.5; ARCH.param_count()], &mut file).unwrap();
    /// assert_eq!(Precision::of(&file[..len]), Ok(Precision::Float));
    /// assert_eq!(Precision::of(b"MCONVNET"), Err(Error::TooShort { len: 8 }));
    /// ```
    pub fn of(bytes: &[u8]) -> Result<Precision, Error> {
        if bytes.len() < field::VERSION.end {
            return Err(Error::TooShort { len: bytes.len() });
        }
        if bytes[field::MAGIC] != MAGIC {
            return Err(Error::BadMagic);
        }
        let version = u32_at(bytes, field::VERSION.start)?;
        Precision::from_version(version).ok_or(Error::UnsupportedVersion {
            found: version,
            supported: VERSION_INT8,
        })
    }
}

/// A parsed weights file of either precision, as [`Precision::of`] found it.
// The int8 model is larger (its per-layer quantization records); without `alloc` there is no
// box to even them out, and a program holds one parsed model, so the size is what it is.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum AnyModel<'a> {
    /// A float file.
    Float(float::Model<'a>),
    /// An int8 file.
    Int8(int8::QModel<'a>),
}

impl<'a> AnyModel<'a> {
    /// Parses `bytes` with the parser of its precision (4-byte aligned, see [`Aligned`]).
    ///
    /// ```
    /// use microconv::weights::{self, AnyModel, Precision};
    /// use microconv::{Arch, Layer, Shape, layers::Dense};
    ///
    /// const ARCH: Arch = Arch::new(Shape::flat(4), &[Layer::Dense(Dense::new(3))]);
    /// let mut file = weights::Aligned([0u8; 256]);
    /// let len = weights::float::write(&ARCH, &[0.5; ARCH.param_count()], &mut file.0).unwrap();
    /// let model = AnyModel::parse(&file.0[..len]).unwrap();
    /// assert_eq!(model.precision(), Precision::Float);
    /// assert!(model.arch() == ARCH);
    /// ```
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        Ok(match Precision::of(bytes)? {
            Precision::Float => AnyModel::Float(float::Model::parse(bytes)?),
            Precision::Int8 => AnyModel::Int8(int8::QModel::parse(bytes)?),
        })
    }

    /// The file's precision.
    pub fn precision(&self) -> Precision {
        match self {
            AnyModel::Float(_) => Precision::Float,
            AnyModel::Int8(_) => Precision::Int8,
        }
    }

    /// The architecture the file describes.
    pub fn arch(&self) -> Arch<'_> {
        match self {
            AnyModel::Float(m) => m.arch(),
            AnyModel::Int8(m) => m.arch(),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Float => "float (version 1, `host-trainer export`)",
            Precision::Int8 => "int8 (version 2, `host-trainer quantize --out`)",
        })
    }
}

/// Bytes aligned to 16, for embedding a weights file so it can be read in place:
/// `static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!("model.mcw"));`
#[repr(C, align(16))]
pub struct Aligned<T: ?Sized>(pub T);

/// The old name of [`Error`] for weights-file errors: the core has one error enum, and
/// what is wrong with a weights file is one of its variants.
pub type FormatError = Error;

pub(crate) fn u32_at(b: &[u8], off: usize) -> Result<u32, Error> {
    match b.get(off..off.saturating_add(4)) {
        Some(s) => Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]])),
        None => Err(Error::TooShort { len: b.len() }),
    }
}

/// Header bytes (everything before the tensor data) for `layers` layers and `tensors` tensors.
pub(crate) const fn header_len(layers: usize, tensors: usize) -> usize {
    let raw = HEADER + LAYER_RECORD * layers + 4 + TENSOR_RECORD * tensors;
    raw.div_ceil(DATA_ALIGN) * DATA_ALIGN
}

/// The error of an architecture whose file would be larger than `usize::MAX` bytes.
pub(crate) const SIZE_OVERFLOW: Error = Error::Shape {
    layer: usize::MAX,
    reason: crate::error::ShapeError::Overflow,
};

/// Reads the layer record `r` (16 bytes) of layer `index`.
pub(crate) fn parse_layer(r: &[u8], index: usize) -> Result<Layer, Error> {
    use field::layer as L;
    let bad = |reason| Error::BadLayer { index, reason };
    let rec = Record {
        kind: r[L::KIND],
        padding: r[L::PADDING],
        a: u32_at(r, L::A.start)?,
        b: u32_at(r, L::B.start)?,
        c: u32_at(r, L::C.start)?,
    };
    if r[L::RESERVED].iter().any(|&b| b != 0) {
        return Err(bad("reserved bytes are not zero"));
    }
    Layer::from_record(&rec).map_err(bad)
}

/// The checks and fields every version shares: magic, version (`want`), length, CRC,
/// input shape, layer records. Returns the bytes before the CRC, the input shape and the
/// layers (already checked to form a valid network).
pub(crate) fn parse_header(
    bytes: &[u8],
    want: Precision,
) -> Result<(&[u8], Shape, heapless::Vec<Layer, MAX_LAYERS>), Error> {
    if cfg!(target_endian = "big") {
        return Err(Error::BigEndianTarget);
    }
    let min = header_len(1, 0) + field::CRC_LEN;
    if bytes.len() < min {
        return Err(Error::TooShort { len: bytes.len() });
    }
    let found = Precision::of(bytes).map_err(|e| match e {
        Error::UnsupportedVersion { found, .. } => Error::UnsupportedVersion {
            found,
            supported: want.version(),
        },
        e => e,
    })?;
    if found != want {
        return Err(Error::WrongPrecision {
            found: found.version(),
        });
    }
    let len = u32_at(bytes, field::LENGTH.start)? as usize;
    if len != bytes.len() {
        return Err(Error::LengthMismatch {
            header: len,
            actual: bytes.len(),
        });
    }
    let (body, tail) = bytes.split_at(len - field::CRC_LEN);
    let stored = u32_at(tail, 0)?;
    let computed = crc32(body);
    if stored != computed {
        return Err(Error::ChecksumMismatch { stored, computed });
    }
    let input = Shape::new(
        u32_at(body, field::INPUT_H.start)? as usize,
        u32_at(body, field::INPUT_W.start)? as usize,
        u32_at(body, field::INPUT_C.start)? as usize,
    );
    let count = u32_at(body, field::LAYER_COUNT.start)? as usize;
    if count > MAX_LAYERS {
        return Err(Error::TooManyLayers {
            count,
            max: MAX_LAYERS,
        });
    }
    let mut layers = heapless::Vec::new();
    for i in 0..count {
        let off = HEADER + i * LAYER_RECORD;
        let rec = body
            .get(off..off + LAYER_RECORD)
            .ok_or(Error::TooShort { len: bytes.len() })?;
        // Cannot fail: count <= MAX_LAYERS was checked above.
        let _ = layers.push(parse_layer(rec, i)?);
    }
    let arch = Arch::new(input, &layers);
    arch.validate()?;
    Ok((body, input, layers))
}

/// Writes `v` little-endian at `off`.
pub(crate) fn put_u32(out: &mut [u8], off: usize, v: u32) {
    out[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// What every version writes first (the mirror of [`parse_header`]): zeroes `out[..len]`,
/// then magic, the version of `precision`, length, input shape, layer records and the tensor count.
/// Returns `out[..len]`.
pub(crate) fn write_header<'o>(
    arch: &Arch<'_>,
    precision: Precision,
    len: usize,
    tensors: usize,
    out: &'o mut [u8],
) -> Result<&'o mut [u8], Error> {
    if out.len() < len {
        return Err(Error::BufferTooSmall {
            needed: len,
            actual: out.len(),
        });
    }
    let out = &mut out[..len];
    out.fill(0);
    out[field::MAGIC].copy_from_slice(&MAGIC);
    put_u32(out, field::VERSION.start, precision.version());
    put_u32(out, field::LENGTH.start, len as u32);
    put_u32(out, field::INPUT_H.start, arch.input.h as u32);
    put_u32(out, field::INPUT_W.start, arch.input.w as u32);
    put_u32(out, field::INPUT_C.start, arch.input.c as u32);
    put_u32(out, field::LAYER_COUNT.start, arch.layers.len() as u32);
    for (i, l) in arch.layers.iter().enumerate() {
        let off = HEADER + i * LAYER_RECORD;
        let Record {
            kind: k,
            padding: pad,
            a,
            b,
            c,
        } = l.record();
        out[off + field::layer::KIND] = k;
        out[off + field::layer::PADDING] = pad;
        put_u32(out, off + field::layer::A.start, a);
        put_u32(out, off + field::layer::B.start, b);
        put_u32(out, off + field::layer::C.start, c);
    }
    put_u32(
        out,
        HEADER + arch.layers.len() * LAYER_RECORD,
        tensors as u32,
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_of_reads_magic_and_version_only() {
        let mut b = [0u8; 16];
        b[field::MAGIC].copy_from_slice(&MAGIC);
        for p in [Precision::Float, Precision::Int8] {
            b[field::VERSION].copy_from_slice(&p.version().to_le_bytes());
            assert_eq!(Precision::of(&b), Ok(p));
            assert_eq!(Precision::from_version(p.version()), Some(p));
        }
        b[field::VERSION].copy_from_slice(&9u32.to_le_bytes());
        assert_eq!(
            Precision::of(&b),
            Err(Error::UnsupportedVersion {
                found: 9,
                supported: VERSION_INT8
            })
        );
        assert_eq!(Precision::of(&b[..11]), Err(Error::TooShort { len: 11 }));
        b[0] = b'X';
        assert_eq!(Precision::of(&b), Err(Error::BadMagic));
    }
}
