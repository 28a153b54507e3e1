//! The weights file: a trained network in one little-endian byte string that firmware
//! reads in place from flash, without copying. The full specification, precise enough to
//! write a reader in another language, is `docs/weights-format.md`; in short:
//!
//! ```text
//! 0    8   magic "MCONVNET"
//! 8    4   version (u32, = 1)
//! 12   4   file length in bytes, including the trailing CRC (u32)
//! 16   12  input shape h, w, c (u32 each)
//! 28   4   layer count L (u32, 1..=MAX_LAYERS)
//! 32   16L layer records: kind u8, padding u8, reserved u16, a u32, b u32, c u32
//! ..   4   tensor count T (u32)
//! ..   32T tensor records: layer u32, role u8, dtype u8, rank u8, reserved u8,
//!          dims [u32; 4], offset u32, byte length u32
//! ..       zero padding to a multiple of 16
//! ..       tensor data, f32 little-endian, back to back in record order
//! end-4 4  CRC-32 (IEEE) of every byte before it
//! ```
//!
//! [`Model::parse`] checks everything (magic, version, length, checksum, every layer,
//! the architecture, every tensor's layer, role, type, shape, offset and length) and
//! returns the parameters as one `&[f32]` borrowed from the input, in exactly the layout
//! [`crate::net`] uses. That needs the bytes to start at a 4-byte aligned address: wrap
//! an `include_bytes!` in [`Aligned`]; misaligned input is an error, never a copy or UB.

use core::fmt;

use crate::crc32::crc32;
use crate::error::Error;
use crate::layers::{Conv2d, Dense, Dropout, MaxPool};
use crate::net::{Arch, Layer};
use crate::shape::{Padding, Shape};

/// The first 8 bytes of every weights file.
pub const MAGIC: [u8; 8] = *b"MCONVNET";
/// The version this build writes and reads.
pub const VERSION: u32 = 1;
/// Most layers a file may describe (the parser keeps them in a fixed-size list).
pub const MAX_LAYERS: usize = 32;

pub(crate) const HEADER: usize = 32;
pub(crate) const LAYER_RECORD: usize = 16;
pub(crate) const TENSOR_RECORD: usize = 32;
pub(crate) const DATA_ALIGN: usize = 16;

/// Layer kinds in the file.
mod kind {
    pub const CONV2D: u8 = 1;
    pub const MAXPOOL: u8 = 2;
    pub const DENSE: u8 = 3;
    pub const RELU: u8 = 4;
    pub const DROPOUT: u8 = 5;
    pub const FLATTEN: u8 = 6;
}
/// Tensor roles.
const ROLE_WEIGHTS: u8 = 0;
const ROLE_BIAS: u8 = 1;
/// Tensor data types.
const DTYPE_F32: u8 = 1;

/// Bytes aligned to 16, for embedding a weights file so it can be read in place:
/// `static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!("model.mcw"));`
#[repr(C, align(16))]
pub struct Aligned<T: ?Sized>(pub T);

/// What is wrong with a weights file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    /// Fewer bytes than the smallest possible file.
    TooShort {
        /// Bytes given.
        len: usize,
    },
    /// The first 8 bytes are not [`MAGIC`].
    BadMagic,
    /// A version this build does not read.
    UnsupportedVersion {
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// The length in the header differs from the bytes given (truncated or padded file).
    LengthMismatch {
        /// Length the header states.
        header: usize,
        /// Bytes given.
        actual: usize,
    },
    /// The CRC-32 does not match: the file is corrupt.
    ChecksumMismatch {
        /// CRC stored in the file.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// More layers than [`MAX_LAYERS`].
    TooManyLayers {
        /// Layers in the file.
        count: usize,
    },
    /// A layer record is not valid.
    BadLayer {
        /// Layer index.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The layers do not form a valid network.
    Arch(Error),
    /// The tensor table does not have one weights and one bias tensor per conv/dense layer.
    TensorCount {
        /// Tensors the architecture needs.
        expected: usize,
        /// Tensors in the file.
        found: usize,
    },
    /// A tensor record disagrees with the architecture.
    BadTensor {
        /// Tensor index.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The bytes do not start at a 4-byte aligned address, so the parameters cannot be
    /// read in place.
    Misaligned,
    /// This build runs on a big-endian target; the file is little-endian.
    BigEndianTarget,
    /// The output buffer of [`write()`] is too small.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        actual: usize,
    },
    /// The file holds an int8 model (version 2) where a float one was expected, or the
    /// other way round.
    WrongPrecision {
        /// Version in the file: 1 float, 2 int8.
        found: u32,
    },
    /// [`write()`] got a parameter slice of the wrong length.
    ParamCount {
        /// Parameters the architecture has.
        expected: usize,
        /// Parameters given.
        actual: usize,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FormatError::TooShort { len } => write!(f, "only {len} bytes: too short for a microconv weights file"),
            FormatError::BadMagic => f.write_str("not a microconv weights file (bad magic; expected \"MCONVNET\")"),
            FormatError::UnsupportedVersion { found, supported } => {
                write!(f, "weights file version {found}, this build reads version {supported} (re-export it with this host-trainer)")
            }
            FormatError::LengthMismatch { header, actual } => {
                write!(f, "header says {header} bytes but there are {actual} (truncated or padded file)")
            }
            FormatError::ChecksumMismatch { stored, computed } => {
                write!(f, "checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the file is corrupt")
            }
            FormatError::TooManyLayers { count } => write!(f, "{count} layers, at most {MAX_LAYERS} are supported"),
            FormatError::BadLayer { index, reason } => write!(f, "layer {index}: {reason}"),
            FormatError::Arch(e) => write!(f, "invalid architecture: {e}"),
            FormatError::TensorCount { expected, found } => write!(f, "{found} tensors, the architecture needs {expected}"),
            FormatError::BadTensor { index, reason } => write!(f, "tensor {index}: {reason}"),
            FormatError::Misaligned => {
                f.write_str("the weights are not 4-byte aligned in memory (embed them in microconv::format::Aligned)")
            }
            FormatError::BigEndianTarget => f.write_str("weights files are little-endian and this target is big-endian"),
            FormatError::BufferTooSmall { needed, actual } => write!(f, "output buffer of {actual} bytes, {needed} needed"),
            FormatError::ParamCount { expected, actual } => write!(f, "{actual} parameters given, the architecture has {expected}"),
            FormatError::WrongPrecision { found: 2 } => f.write_str("this is an int8 weights file (version 2) and a float one (version 1) was expected: use the float file, or the int8 reader and firmware"),
            FormatError::WrongPrecision { found } => write!(f, "weights file version {found} is a float file and an int8 one (version 2) was expected: export it with `host-trainer quantize --out`"),
        }
    }
}

impl core::error::Error for FormatError {}

/// A parsed weights file: the architecture and the parameters, borrowed from the bytes.
#[derive(Clone, Debug)]
pub struct Model<'a> {
    input: Shape,
    layers: heapless::Vec<Layer, MAX_LAYERS>,
    params: &'a [f32],
}

pub(crate) fn u32_at(b: &[u8], off: usize) -> Result<u32, FormatError> {
    match b.get(off..off.saturating_add(4)) {
        Some(s) => Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]])),
        None => Err(FormatError::TooShort { len: b.len() }),
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

/// Number of tensors of `arch`: weights and bias for every conv2d and dense layer.
pub const fn tensor_count(arch: &Arch<'_>) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < arch.layers.len() {
        if matches!(arch.layers[i], Layer::Conv2d(_) | Layer::Dense(_)) {
            n += 2;
        }
        i += 1;
    }
    n
}

/// Size in bytes of the weights file of `arch` (0 for an invalid architecture, or one
/// whose file would not fit in `usize`).
pub const fn file_len(arch: &Arch<'_>) -> usize {
    if !arch.is_valid() {
        return 0;
    }
    let header = header_len(arch.layers.len(), tensor_count(arch)) + 4;
    match arch.param_count().checked_mul(4) {
        Some(data) => match data.checked_add(header) {
            Some(len) => len,
            None => 0,
        },
        None => 0,
    }
}

fn padding_code(p: Padding) -> u8 {
    match p {
        Padding::Same => 0,
        Padding::Valid => 1,
    }
}

fn parse_padding(code: u8, index: usize) -> Result<Padding, FormatError> {
    match code {
        0 => Ok(Padding::Same),
        1 => Ok(Padding::Valid),
        _ => Err(FormatError::BadLayer {
            index,
            reason: "unknown padding code",
        }),
    }
}

/// The record of one layer: (kind, padding, a, b, c).
pub(crate) fn layer_record(l: &Layer) -> (u8, u8, u32, u32, u32) {
    match *l {
        Layer::Conv2d(c) => (
            kind::CONV2D,
            padding_code(c.padding),
            c.kernel as u32,
            c.stride as u32,
            c.filters as u32,
        ),
        Layer::MaxPool(p) => (
            kind::MAXPOOL,
            padding_code(p.padding),
            p.size as u32,
            p.stride as u32,
            0,
        ),
        Layer::Dense(d) => (kind::DENSE, 0, d.units as u32, 0, 0),
        Layer::Relu => (kind::RELU, 0, 0, 0, 0),
        Layer::Dropout(d) => (kind::DROPOUT, 0, d.keep.to_bits(), 0, 0),
        Layer::Flatten => (kind::FLATTEN, 0, 0, 0, 0),
    }
}

pub(crate) fn parse_layer(r: &[u8], index: usize) -> Result<Layer, FormatError> {
    let (k, pad) = (r[0], r[1]);
    let (a, b, c) = (
        u32_at(r, 4)? as usize,
        u32_at(r, 8)? as usize,
        u32_at(r, 12)? as usize,
    );
    let bad = |reason| FormatError::BadLayer { index, reason };
    if r[2] != 0 || r[3] != 0 {
        return Err(bad("reserved bytes are not zero"));
    }
    let unused_zero = |fields: &[usize]| {
        if fields.iter().all(|&v| v == 0) {
            Ok(())
        } else {
            Err(bad("unused fields are not zero"))
        }
    };
    Ok(match k {
        kind::CONV2D => Layer::Conv2d(Conv2d::with(a, b, parse_padding(pad, index)?, c)),
        kind::MAXPOOL => {
            unused_zero(&[c])?;
            Layer::MaxPool(MaxPool::new(a, b, parse_padding(pad, index)?))
        }
        kind::DENSE => {
            unused_zero(&[pad as usize, b, c])?;
            Layer::Dense(Dense::new(a))
        }
        kind::RELU | kind::FLATTEN => {
            unused_zero(&[pad as usize, a, b, c])?;
            if k == kind::RELU {
                Layer::Relu
            } else {
                Layer::Flatten
            }
        }
        kind::DROPOUT => {
            unused_zero(&[pad as usize, b, c])?;
            Layer::Dropout(Dropout::new(f32::from_bits(a as u32)))
        }
        _ => return Err(bad("unknown layer kind")),
    })
}

/// The expected dims (rank, [d0..d3]) of tensor `role` of layer `i`.
fn expected_dims(arch: &Arch<'_>, i: usize, role: u8) -> Result<(u8, [u32; 4]), Error> {
    let (ins, _) = arch.layer_io(i)?;
    Ok(match (arch.layers[i], role) {
        (Layer::Conv2d(c), ROLE_WEIGHTS) => (
            4,
            [
                c.kernel as u32,
                c.kernel as u32,
                ins.c as u32,
                c.filters as u32,
            ],
        ),
        (Layer::Conv2d(c), _) => (1, [c.filters as u32, 0, 0, 0]),
        (Layer::Dense(d), ROLE_WEIGHTS) => (2, [ins.len() as u32, d.units as u32, 0, 0]),
        (Layer::Dense(d), _) => (1, [d.units as u32, 0, 0, 0]),
        _ => (0, [0; 4]),
    })
}

/// The (layer, role) of every tensor, in file order.
fn tensor_slots<'x>(arch: &'x Arch<'_>) -> impl Iterator<Item = (usize, u8)> + 'x {
    arch.layers
        .iter()
        .enumerate()
        .filter(|(_, l)| matches!(l, Layer::Conv2d(_) | Layer::Dense(_)))
        .flat_map(|(i, _)| [(i, ROLE_WEIGHTS), (i, ROLE_BIAS)])
}

/// The checks and fields every version shares: magic, version (`want`), length, CRC,
/// input shape, layer records. Returns the bytes before the CRC, the input shape and the
/// layers (already checked to form a valid network).
pub(crate) fn parse_header(
    bytes: &[u8],
    want: u32,
) -> Result<(&[u8], Shape, heapless::Vec<Layer, MAX_LAYERS>), FormatError> {
    if cfg!(target_endian = "big") {
        return Err(FormatError::BigEndianTarget);
    }
    let min = header_len(1, 0) + 4;
    if bytes.len() < min {
        return Err(FormatError::TooShort { len: bytes.len() });
    }
    if bytes[..8] != MAGIC {
        return Err(FormatError::BadMagic);
    }
    let version = u32_at(bytes, 8)?;
    if version != want {
        if version == VERSION || version == crate::qformat::VERSION_INT8 {
            return Err(FormatError::WrongPrecision { found: version });
        }
        return Err(FormatError::UnsupportedVersion {
            found: version,
            supported: want,
        });
    }
    let len = u32_at(bytes, 12)? as usize;
    if len != bytes.len() {
        return Err(FormatError::LengthMismatch {
            header: len,
            actual: bytes.len(),
        });
    }
    let (body, tail) = bytes.split_at(len - 4);
    let stored = u32_at(tail, 0)?;
    let computed = crc32(body);
    if stored != computed {
        return Err(FormatError::ChecksumMismatch { stored, computed });
    }
    let input = Shape::new(
        u32_at(body, 16)? as usize,
        u32_at(body, 20)? as usize,
        u32_at(body, 24)? as usize,
    );
    let count = u32_at(body, 28)? as usize;
    if count > MAX_LAYERS {
        return Err(FormatError::TooManyLayers { count });
    }
    let mut layers = heapless::Vec::new();
    for i in 0..count {
        let off = HEADER + i * LAYER_RECORD;
        let rec = body
            .get(off..off + LAYER_RECORD)
            .ok_or(FormatError::TooShort { len: bytes.len() })?;
        // Cannot fail: count <= MAX_LAYERS was checked above.
        let _ = layers.push(parse_layer(rec, i)?);
    }
    let arch = Arch::new(input, &layers);
    arch.validate().map_err(FormatError::Arch)?;
    Ok((body, input, layers))
}

impl<'a> Model<'a> {
    /// Parses and checks a weights file, borrowing the parameters from `bytes` (which
    /// must be 4-byte aligned: in firmware, embed the file in [`Aligned`], or let
    /// `microconv-build` do it).
    ///
    /// ```
    /// use microconv::format::{self, Aligned, Model};
    /// use microconv::{Arch, Layer, Shape, layers::Dense};
    ///
    /// const ARCH: Arch = Arch::new(Shape::flat(4), &[Layer::Dense(Dense::new(3))]);
    /// let params = [0.25f32; ARCH.param_count()];
    /// let mut file = Aligned([0u8; 256]);
    /// let len = format::write(&ARCH, &params, &mut file.0).unwrap();
    ///
    /// let model = Model::parse(&file.0[..len]).unwrap();
    /// assert!(model.arch() == ARCH);
    /// assert_eq!(model.params(), &params[..]);
    ///
    /// // Truncated: an error that says so.
    /// let e = Model::parse(&file.0[..len - 4]).unwrap_err();
    /// assert!(e.to_string().contains("truncated"));
    /// ```
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let (body, input, layers) = parse_header(bytes, VERSION)?;
        let count = layers.len();
        let arch = Arch::new(input, &layers);
        let toff = HEADER + count * LAYER_RECORD;
        let tensors = u32_at(body, toff)? as usize;
        let expected = tensor_count(&arch);
        if tensors != expected {
            return Err(FormatError::TensorCount {
                expected,
                found: tensors,
            });
        }
        let data_start = header_len(count, tensors);
        // A valid architecture's parameter count fits in usize, but four bytes per
        // parameter (and the header, and the CRC) may not: then no file can hold them.
        let data_end = arch
            .param_count()
            .checked_mul(4)
            .and_then(|n| n.checked_add(data_start + 4))
            .ok_or(FormatError::Arch(SIZE_OVERFLOW))?;
        if data_end - 4 != body.len() {
            return Err(FormatError::LengthMismatch {
                header: data_end,
                actual: bytes.len(),
            });
        }
        if body[toff + 4 + TENSOR_RECORD * tensors..data_start]
            .iter()
            .any(|&b| b != 0)
        {
            return Err(FormatError::BadTensor {
                index: tensors,
                reason: "padding before the data is not zero",
            });
        }
        let mut at = data_start;
        for (t, (layer, role)) in tensor_slots(&arch).enumerate() {
            let r = &body[toff + 4 + t * TENSOR_RECORD..toff + 4 + (t + 1) * TENSOR_RECORD];
            let bad = |reason| FormatError::BadTensor { index: t, reason };
            if u32_at(r, 0)? as usize != layer || r[4] != role {
                return Err(bad(
                    "tensors are not in layer order (weights, then bias, per conv2d/dense layer)",
                ));
            }
            if r[5] != DTYPE_F32 {
                return Err(bad("data type is not f32 (code 1)"));
            }
            let (rank, dims) = expected_dims(&arch, layer, role).map_err(FormatError::Arch)?;
            let file_dims = [
                u32_at(r, 8)?,
                u32_at(r, 12)?,
                u32_at(r, 16)?,
                u32_at(r, 20)?,
            ];
            if r[6] != rank || file_dims != dims || r[7] != 0 {
                return Err(bad("shape does not match the architecture"));
            }
            let elems: usize = dims[..rank as usize].iter().map(|&d| d as usize).product();
            if u32_at(r, 24)? as usize != at || u32_at(r, 28)? as usize != 4 * elems {
                return Err(bad("offset or length is not where the layout puts it"));
            }
            at += 4 * elems;
        }
        let params: &[f32] =
            bytemuck::try_cast_slice(&body[data_start..]).map_err(|_| FormatError::Misaligned)?;
        Ok(Model {
            input,
            layers,
            params,
        })
    }

    /// The architecture described by the file.
    pub fn arch(&self) -> Arch<'_> {
        Arch::new(self.input, &self.layers)
    }

    /// The parameters, in [`crate::net`]'s layout, read in place from the file's bytes.
    pub fn params(&self) -> &'a [f32] {
        self.params
    }
}

/// Writes `v` little-endian at `off`.
pub(crate) fn put_u32(out: &mut [u8], off: usize, v: u32) {
    out[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// What every version writes first (the mirror of [`parse_header`]): zeroes `out[..len]`,
/// then magic, `version`, length, input shape, layer records and the tensor count.
/// Returns `out[..len]`.
pub(crate) fn write_header<'o>(
    arch: &Arch<'_>,
    version: u32,
    len: usize,
    tensors: usize,
    out: &'o mut [u8],
) -> Result<&'o mut [u8], FormatError> {
    if out.len() < len {
        return Err(FormatError::BufferTooSmall {
            needed: len,
            actual: out.len(),
        });
    }
    let out = &mut out[..len];
    out.fill(0);
    out[..8].copy_from_slice(&MAGIC);
    put_u32(out, 8, version);
    put_u32(out, 12, len as u32);
    put_u32(out, 16, arch.input.h as u32);
    put_u32(out, 20, arch.input.w as u32);
    put_u32(out, 24, arch.input.c as u32);
    put_u32(out, 28, arch.layers.len() as u32);
    for (i, l) in arch.layers.iter().enumerate() {
        let off = HEADER + i * LAYER_RECORD;
        let (k, pad, a, b, c) = layer_record(l);
        out[off] = k;
        out[off + 1] = pad;
        put_u32(out, off + 4, a);
        put_u32(out, off + 8, b);
        put_u32(out, off + 12, c);
    }
    put_u32(
        out,
        HEADER + arch.layers.len() * LAYER_RECORD,
        tensors as u32,
    );
    Ok(out)
}

/// Writes the weights file of `arch` with `params` into `out` (at least
/// [`file_len`]`(arch)` bytes); returns the number of bytes written.
pub fn write(arch: &Arch<'_>, params: &[f32], out: &mut [u8]) -> Result<usize, FormatError> {
    arch.validate().map_err(FormatError::Arch)?;
    if arch.layers.len() > MAX_LAYERS {
        return Err(FormatError::TooManyLayers {
            count: arch.layers.len(),
        });
    }
    if params.len() != arch.param_count() {
        return Err(FormatError::ParamCount {
            expected: arch.param_count(),
            actual: params.len(),
        });
    }
    let len = file_len(arch);
    if len == 0 || len > u32::MAX as usize {
        return Err(FormatError::Arch(SIZE_OVERFLOW));
    }
    let tensors = tensor_count(arch);
    let out = write_header(arch, VERSION, len, tensors, out)?;
    let put = put_u32;
    let toff = HEADER + arch.layers.len() * LAYER_RECORD;
    let mut at = header_len(arch.layers.len(), tensors);
    for (t, (layer, role)) in tensor_slots(arch).enumerate() {
        let r = toff + 4 + t * TENSOR_RECORD;
        let (rank, dims) = expected_dims(arch, layer, role).map_err(FormatError::Arch)?;
        let elems: usize = dims[..rank as usize].iter().map(|&d| d as usize).product();
        put(out, r, layer as u32);
        out[r + 4] = role;
        out[r + 5] = DTYPE_F32;
        out[r + 6] = rank;
        for (k, d) in dims.iter().enumerate() {
            put(out, r + 8 + 4 * k, *d);
        }
        put(out, r + 24, at as u32);
        put(out, r + 28, 4 * elems as u32);
        at += 4 * elems;
    }
    let data_start = header_len(arch.layers.len(), tensors);
    for (i, p) in params.iter().enumerate() {
        out[data_start + 4 * i..data_start + 4 * i + 4].copy_from_slice(&p.to_le_bytes());
    }
    let crc = crc32(&out[..len - 4]);
    put(out, len - 4, crc);
    Ok(len)
}

#[cfg(test)]
pub(crate) mod tests {
    extern crate std;
    use super::*;
    use crate::archs::{SEED, SMALL};
    use crate::testutil::rand_vec;
    use std::vec;
    use std::vec::Vec;

    /// A weights file in a 16-aligned buffer (Vec<u128> storage), as bytes.
    struct File {
        store: Vec<u128>,
        len: usize,
    }
    impl File {
        fn new(arch: &Arch<'_>, params: &[f32]) -> Self {
            let len = file_len(arch);
            let mut store = vec![0u128; len.div_ceil(16)];
            let n = write(
                arch,
                params,
                &mut bytemuck::cast_slice_mut(&mut store)[..len],
            )
            .unwrap();
            assert_eq!(n, len);
            File { store, len }
        }
        fn bytes(&self) -> &[u8] {
            &bytemuck::cast_slice(&self.store)[..self.len]
        }
        fn bytes_mut(&mut self) -> &mut [u8] {
            &mut bytemuck::cast_slice_mut(&mut self.store)[..self.len]
        }
        /// Edits the bytes, then fixes the CRC so that the structural checks are reached.
        fn edit(&mut self, f: impl FnOnce(&mut [u8])) {
            let b = self.bytes_mut();
            f(b);
            let n = b.len();
            let crc = crc32(&b[..n - 4]);
            b[n - 4..].copy_from_slice(&crc.to_le_bytes());
        }
    }

    fn small() -> (Vec<f32>, File) {
        let p = rand_vec(1, SMALL.param_count(), 1.0);
        let f = File::new(&SMALL, &p);
        (p, f)
    }

    #[test]
    fn round_trip_in_place() {
        let (p, f) = small();
        let m = Model::parse(f.bytes()).unwrap();
        assert_eq!(m.arch(), SMALL);
        assert_eq!(m.params(), &p[..]);
        // Zero copy: the parameters point into the file's bytes.
        let range = f.bytes().as_ptr_range();
        assert!(range.contains(&(m.params().as_ptr() as *const u8)));
        let p = rand_vec(2, SEED.param_count(), 1.0);
        let f = File::new(&SEED, &p);
        let m = Model::parse(f.bytes()).unwrap();
        assert_eq!((m.arch(), m.params()), (SEED, &p[..]));
        assert_eq!(f.bytes().len(), file_len(&SEED));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let (_, f) = small();
        let b = f.bytes();
        for n in 0..b.len() {
            assert!(
                Model::parse(&b[..n]).is_err(),
                "prefix of {n} bytes accepted"
            );
        }
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let (_, f) = small();
        let b = f.bytes();
        let mut copy = File {
            store: f.store.clone(),
            len: f.len,
        };
        // Every bit of the header and tensor table, and a sample of the data.
        let header = header_len(SMALL.layers.len(), tensor_count(&SMALL));
        for byte in (0..header).chain((header..b.len()).step_by(97)) {
            for bit in 0..8 {
                copy.bytes_mut()[byte] ^= 1 << bit;
                assert!(
                    Model::parse(copy.bytes()).is_err(),
                    "flip of byte {byte} bit {bit} accepted"
                );
                copy.bytes_mut()[byte] ^= 1 << bit;
            }
        }
        assert!(Model::parse(copy.bytes()).is_ok());
    }

    #[test]
    fn each_failure_has_its_variant() {
        let (_, f) = small();
        let base = || File {
            store: f.store.clone(),
            len: f.len,
        };
        let parse = |g: &File| Model::parse(g.bytes()).map(|_| ()).unwrap_err();

        let mut g = base();
        g.bytes_mut()[0] = b'X';
        assert_eq!(parse(&g), FormatError::BadMagic);
        let mut g = base();
        g.edit(|b| b[8] = 2);
        assert_eq!(parse(&g), FormatError::WrongPrecision { found: 2 });
        let mut g = base();
        g.edit(|b| b[8] = 3);
        assert_eq!(
            parse(&g),
            FormatError::UnsupportedVersion {
                found: 3,
                supported: 1
            }
        );
        let mut g = base();
        g.bytes_mut()[100] ^= 4;
        assert!(matches!(parse(&g), FormatError::ChecksumMismatch { .. }));
        let mut g = base();
        g.edit(|b| b[HEADER] = 99);
        assert_eq!(
            parse(&g),
            FormatError::BadLayer {
                index: 0,
                reason: "unknown layer kind"
            }
        );
        let mut g = base();
        g.edit(|b| b[28] = 33);
        assert_eq!(parse(&g), FormatError::TooManyLayers { count: 33 });
        // Conv filters 8 -> 9: the architecture no longer matches the tensors.
        let mut g = base();
        g.edit(|b| b[HEADER + 12] = 9);
        assert!(matches!(
            parse(&g),
            FormatError::TensorCount { .. }
                | FormatError::LengthMismatch { .. }
                | FormatError::BadTensor { .. }
        ));
        // A tensor's shape edited alone.
        let toff = HEADER + SMALL.layers.len() * LAYER_RECORD + 4;
        let mut g = base();
        g.edit(|b| b[toff + 8] = 3);
        assert_eq!(
            parse(&g),
            FormatError::BadTensor {
                index: 0,
                reason: "shape does not match the architecture"
            }
        );
        let mut g = base();
        g.edit(|b| b[toff + 5] = 2);
        assert_eq!(
            parse(&g),
            FormatError::BadTensor {
                index: 0,
                reason: "data type is not f32 (code 1)"
            }
        );
        let mut g = base();
        g.edit(|b| b[toff + 24] ^= 16);
        assert!(matches!(parse(&g), FormatError::BadTensor { index: 0, .. }));
        // Input shape that the layers cannot take.
        let mut g = base();
        g.edit(|b| b[16] = 0);
        assert!(matches!(parse(&g), FormatError::Arch(_)));
        // Misaligned bytes.
        let bytes = f.bytes();
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(bytes);
        let r = Model::parse(&shifted[1..]).map(|_| ()).unwrap_err();
        assert_eq!(r, FormatError::Misaligned);
    }

    /// A file of only a header and zeroed tensor records for `arch`, with the right
    /// length and CRC, in 16-aligned storage.
    pub(crate) fn header_only(arch: &Arch<'_>, version: u32, tensors: usize) -> Vec<u128> {
        let len = header_len(arch.layers.len(), tensors) + 4;
        let mut store = vec![0u128; len.div_ceil(16)];
        let b = &mut bytemuck::cast_slice_mut::<u128, u8>(&mut store)[..len];
        write_header(arch, version, len, tensors, b).unwrap();
        let crc = crc32(&b[..len - 4]);
        b[len - 4..].copy_from_slice(&crc.to_le_bytes());
        store
    }

    #[test]
    fn a_model_too_large_for_any_file_is_an_error_not_an_overflow() {
        // 2^62 parameters: valid, and countable in usize, but not their 2^64 bytes.
        let layers = [Layer::Dense(Dense::new(1 << 31))];
        let arch = Arch::new(Shape::flat(1 << 31), &layers);
        assert!(arch.is_valid());
        assert_eq!(file_len(&arch), 0);
        let store = header_only(&arch, VERSION, 2);
        let len = header_len(1, 2) + 4;
        let r = Model::parse(&bytemuck::cast_slice(&store)[..len]).map(|_| ());
        assert_eq!(r, Err(FormatError::Arch(SIZE_OVERFLOW)));
    }

    #[test]
    fn write_checks_its_inputs() {
        let p = rand_vec(1, SMALL.param_count(), 1.0);
        let mut out = vec![0u8; file_len(&SMALL) - 1];
        assert!(matches!(
            write(&SMALL, &p, &mut out),
            Err(FormatError::BufferTooSmall { .. })
        ));
        let mut out = vec![0u8; file_len(&SMALL)];
        assert!(matches!(
            write(&SMALL, &p[1..], &mut out),
            Err(FormatError::ParamCount { .. })
        ));
    }
}
