//! Float weights files (version 1 of `docs/weights-format.md`): after the shared header
//! ([`crate::weights`]), one weights and one bias tensor per conv2d and dense layer, `f32`
//! little-endian, back to back in the layout [`crate::net`] uses:
//!
//! ```text
//! for each conv2d layer: weights f32 [k, k, cin, cout] (HWIO), bias f32 [cout]
//! for each dense layer:  weights f32 [in, out],                bias f32 [out]
//! ```
//!
//! [`Model::parse`] returns the parameters as one `&[f32]` borrowed from the input.

use super::field::tensor as T;
use super::{
    header_len, parse_header, put_u32, u32_at, write_header, Precision, HEADER, LAYER_RECORD,
    MAX_LAYERS, SIZE_OVERFLOW, TENSOR_RECORD,
};
use crate::arch::Arch;
use crate::crc32::crc32;
use crate::error::Error;
use crate::layers::Layer;
use crate::shape::Shape;

/// The version of float files (the same as [`super::VERSION_FLOAT`]).
pub const VERSION: u32 = super::VERSION_FLOAT;

/// A parsed weights file: the architecture and the parameters, borrowed from the bytes.
#[derive(Clone, Debug)]
pub struct Model<'a> {
    input: Shape,
    layers: heapless::Vec<Layer, MAX_LAYERS>,
    params: &'a [f32],
}

/// Number of tensors of `arch`: weights and bias for every conv2d and dense layer.
pub const fn tensor_count(arch: &Arch<'_>) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < arch.layers.len() {
        if arch.layers[i].has_params() {
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

/// The expected dims (rank, [d0..d3]) of tensor `role` of layer `i`.
fn expected_dims(arch: &Arch<'_>, i: usize, role: u8) -> Result<(u8, [u32; 4]), Error> {
    let (ins, _) = arch.layer_io(i)?;
    let d = |v: usize| v as u32;
    Ok(match arch.layers[i].param_shapes(ins) {
        Some(p) if role == T::role::WEIGHTS => {
            let (rank, w) = p.weights;
            (rank, [d(w[0]), d(w[1]), d(w[2]), d(w[3])])
        }
        Some(p) => (1, [d(p.bias), 0, 0, 0]),
        None => (0, [0; 4]),
    })
}

/// The (layer, role) of every tensor, in file order.
fn tensor_slots<'x>(arch: &'x Arch<'_>) -> impl Iterator<Item = (usize, u8)> + 'x {
    arch.layers
        .iter()
        .enumerate()
        .filter(|(_, l)| l.has_params())
        .flat_map(|(i, _)| [(i, T::role::WEIGHTS), (i, T::role::BIAS)])
}

impl<'a> Model<'a> {
    /// Parses and checks a weights file, borrowing the parameters from `bytes` (which
    /// must be 4-byte aligned: in firmware, embed the file in [`Aligned`](super::Aligned), or let
    /// `microconv-build` do it).
    ///
    /// ```
    /// use microconv::weights::{float::{self, Model}, Aligned};
    /// use microconv::{Arch, Layer, Shape, layers::Dense};
    ///
    /// const ARCH: Arch = Arch::new(Shape::flat(4), &[Layer::Dense(Dense::new(3))]);
    /// let params = [0.25f32; ARCH.param_count()];
    /// let mut file = Aligned([0u8; 256]);
    /// let len = float::write(&ARCH, &params, &mut file.0).unwrap();
    ///
    /// let model = Model::parse(&file.0[..len]).unwrap();
    /// assert!(model.arch() == ARCH);
    /// assert_eq!(model.params(), &params[..]);
    ///
    /// // Truncated: an error that says so.
    /// let e = Model::parse(&file.0[..len - 4]).unwrap_err();
    /// assert!(e.to_string().contains("truncated"));
    /// ```
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let (body, input, layers) = parse_header(bytes, Precision::Float)?;
        let count = layers.len();
        let arch = Arch::new(input, &layers);
        let toff = HEADER + count * LAYER_RECORD;
        let tensors = u32_at(body, toff)? as usize;
        let expected = tensor_count(&arch);
        if tensors != expected {
            return Err(Error::TensorCount {
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
            .ok_or(SIZE_OVERFLOW)?;
        if data_end - 4 != body.len() {
            return Err(Error::LengthMismatch {
                header: data_end,
                actual: bytes.len(),
            });
        }
        if body[toff + 4 + TENSOR_RECORD * tensors..data_start]
            .iter()
            .any(|&b| b != 0)
        {
            return Err(Error::BadTensor {
                index: tensors,
                reason: "padding before the data is not zero",
            });
        }
        let mut at = data_start;
        for (t, (layer, role)) in tensor_slots(&arch).enumerate() {
            let r = &body[toff + 4 + t * TENSOR_RECORD..toff + 4 + (t + 1) * TENSOR_RECORD];
            let bad = |reason| Error::BadTensor { index: t, reason };
            if u32_at(r, T::LAYER.start)? as usize != layer || r[T::ROLE] != role {
                return Err(bad(
                    "tensors are not in layer order (weights, then bias, per conv2d/dense layer)",
                ));
            }
            if r[T::DTYPE] != T::dtype::F32 {
                return Err(bad("data type is not f32 (code 1)"));
            }
            let (rank, dims) = expected_dims(&arch, layer, role)?;
            let file_dims = [
                u32_at(r, T::DIMS.start)?,
                u32_at(r, T::DIMS.start + 4)?,
                u32_at(r, T::DIMS.start + 8)?,
                u32_at(r, T::DIMS.start + 12)?,
            ];
            if r[T::RANK] != rank || file_dims != dims || r[T::RESERVED] != 0 {
                return Err(bad("shape does not match the architecture"));
            }
            let elems: usize = dims[..rank as usize].iter().map(|&d| d as usize).product();
            if u32_at(r, T::OFFSET.start)? as usize != at
                || u32_at(r, T::BYTES.start)? as usize != 4 * elems
            {
                return Err(bad("offset or length is not where the layout puts it"));
            }
            at += 4 * elems;
        }
        let params: &[f32] =
            bytemuck::try_cast_slice(&body[data_start..]).map_err(|_| Error::Misaligned)?;
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

/// Writes the weights file of `arch` with `params` into `out` (at least
/// [`file_len`]`(arch)` bytes); returns the number of bytes written.
pub fn write(arch: &Arch<'_>, params: &[f32], out: &mut [u8]) -> Result<usize, Error> {
    arch.validate()?;
    if arch.layers.len() > MAX_LAYERS {
        return Err(Error::TooManyLayers {
            count: arch.layers.len(),
            max: MAX_LAYERS,
        });
    }
    if params.len() != arch.param_count() {
        return Err(Error::ParamCount {
            expected: arch.param_count(),
            actual: params.len(),
        });
    }
    let len = file_len(arch);
    if len == 0 || len > u32::MAX as usize {
        return Err(SIZE_OVERFLOW);
    }
    let tensors = tensor_count(arch);
    let out = write_header(arch, Precision::Float, len, tensors, out)?;
    let put = put_u32;
    let toff = HEADER + arch.layers.len() * LAYER_RECORD;
    let mut at = header_len(arch.layers.len(), tensors);
    for (t, (layer, role)) in tensor_slots(arch).enumerate() {
        let r = toff + 4 + t * TENSOR_RECORD;
        let (rank, dims) = expected_dims(arch, layer, role)?;
        let elems: usize = dims[..rank as usize].iter().map(|&d| d as usize).product();
        put(out, r + T::LAYER.start, layer as u32);
        out[r + T::ROLE] = role;
        out[r + T::DTYPE] = T::dtype::F32;
        out[r + T::RANK] = rank;
        for (k, d) in dims.iter().enumerate() {
            put(out, r + T::DIMS.start + 4 * k, *d);
        }
        put(out, r + T::OFFSET.start, at as u32);
        put(out, r + T::BYTES.start, 4 * elems as u32);
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
        assert_eq!(parse(&g), Error::BadMagic);
        let mut g = base();
        g.edit(|b| b[8] = 2);
        assert_eq!(parse(&g), Error::WrongPrecision { found: 2 });
        let mut g = base();
        g.edit(|b| b[8] = 3);
        assert_eq!(
            parse(&g),
            Error::UnsupportedVersion {
                found: 3,
                supported: 1
            }
        );
        let mut g = base();
        g.bytes_mut()[100] ^= 4;
        assert!(matches!(parse(&g), Error::ChecksumMismatch { .. }));
        let mut g = base();
        g.edit(|b| b[HEADER] = 99);
        assert_eq!(
            parse(&g),
            Error::BadLayer {
                index: 0,
                reason: "unknown layer kind"
            }
        );
        let mut g = base();
        g.edit(|b| b[28] = 33);
        assert_eq!(parse(&g), Error::TooManyLayers { count: 33, max: 32 });
        // Conv filters 8 -> 9: the architecture no longer matches the tensors.
        let mut g = base();
        g.edit(|b| b[HEADER + 12] = 9);
        assert!(matches!(
            parse(&g),
            Error::TensorCount { .. } | Error::LengthMismatch { .. } | Error::BadTensor { .. }
        ));
        // A tensor's shape edited alone.
        let toff = HEADER + SMALL.layers.len() * LAYER_RECORD + 4;
        let mut g = base();
        g.edit(|b| b[toff + 8] = 3);
        assert_eq!(
            parse(&g),
            Error::BadTensor {
                index: 0,
                reason: "shape does not match the architecture"
            }
        );
        let mut g = base();
        g.edit(|b| b[toff + 5] = 2);
        assert_eq!(
            parse(&g),
            Error::BadTensor {
                index: 0,
                reason: "data type is not f32 (code 1)"
            }
        );
        let mut g = base();
        g.edit(|b| b[toff + 24] ^= 16);
        assert!(matches!(parse(&g), Error::BadTensor { index: 0, .. }));
        // Input shape that the layers cannot take.
        let mut g = base();
        g.edit(|b| b[16] = 0);
        assert!(matches!(parse(&g), Error::Shape { .. }));
        // Misaligned bytes.
        let bytes = f.bytes();
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(bytes);
        let r = Model::parse(&shifted[1..]).map(|_| ()).unwrap_err();
        assert_eq!(r, Error::Misaligned);
    }

    /// A file of only a header and zeroed tensor records for `arch`, with the right
    /// length and CRC, in 16-aligned storage.
    pub(crate) fn header_only(arch: &Arch<'_>, precision: Precision, tensors: usize) -> Vec<u128> {
        let len = header_len(arch.layers.len(), tensors) + 4;
        let mut store = vec![0u128; len.div_ceil(16)];
        let b = &mut bytemuck::cast_slice_mut::<u128, u8>(&mut store)[..len];
        write_header(arch, precision, len, tensors, b).unwrap();
        let crc = crc32(&b[..len - 4]);
        b[len - 4..].copy_from_slice(&crc.to_le_bytes());
        store
    }

    #[test]
    fn a_model_too_large_for_any_file_is_an_error_not_an_overflow() {
        // 2^62 parameters: valid, and countable in usize, but not their 2^64 bytes.
        let layers = [Layer::Dense(crate::layers::Dense::new(1 << 31))];
        let arch = Arch::new(Shape::flat(1 << 31), &layers);
        assert!(arch.is_valid());
        assert_eq!(file_len(&arch), 0);
        let store = header_only(&arch, Precision::Float, 2);
        let len = header_len(1, 2) + 4;
        let r = Model::parse(&bytemuck::cast_slice(&store)[..len]).map(|_| ());
        assert_eq!(r, Err(SIZE_OVERFLOW));
    }

    #[test]
    fn write_checks_its_inputs() {
        let p = rand_vec(1, SMALL.param_count(), 1.0);
        let mut out = vec![0u8; file_len(&SMALL) - 1];
        assert!(matches!(
            write(&SMALL, &p, &mut out),
            Err(Error::BufferTooSmall { .. })
        ));
        let mut out = vec![0u8; file_len(&SMALL)];
        assert!(matches!(
            write(&SMALL, &p[1..], &mut out),
            Err(Error::ParamCount { .. })
        ));
    }
}
