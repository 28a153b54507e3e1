//! Int8 weights files (version 2 of `docs/weights-format.md`): the header and layer
//! records of version 1, then int8 weights and int32 biases, multipliers and shifts per
//! convolution and dense layer, and one quantization record per layer output plus one
//! for the input. Read in place (no copy) by [`QModel::parse`]; a float file (version 1)
//! given to it, or an int8 file given to [`crate::weights::float::Model::parse`], is a
//! [`Error::WrongPrecision`].
//!
//! Tensors, in file order (`L` layers):
//!
//! ```text
//! for each layer i:  if conv2d or dense: weights  i8  [cout, k, k, cin] or [out, in]
//!                                         bias     i32 [cout]
//!                                         multiplier i32 [cout]
//!                                         shift    i32 [cout]
//!                    quantization of i's output   i32 [4] = scale (f32 bits), zero, act_min, act_max
//! then:              quantization of the input (layer index L), same record
//! ```
//! Each tensor's data starts at the next multiple of 4 bytes after the previous one (the
//! first at the 16-aligned data offset), padding bytes zero.

use super::field::tensor as T;
use super::{
    header_len, parse_header, put_u32, u32_at, write_header, Precision, HEADER, LAYER_RECORD,
    MAX_LAYERS, SIZE_OVERFLOW, TENSOR_RECORD,
};
use crate::arch::Arch;
use crate::crc32::crc32;
use crate::error::Error;
use crate::layers::Layer;
use crate::quant::{QLayer, QNet, QParams, QTensors};
use crate::shape::Shape;

/// The version of int8 files (re-exported from [`super::VERSION_INT8`]).
pub use super::VERSION_INT8;

/// A parsed int8 weights file: the layers, borrowed int8 data and quantization records.
#[derive(Clone, Debug)]
pub struct QModel<'a> {
    input: Shape,
    layers: heapless::Vec<Layer, MAX_LAYERS>,
    q: heapless::Vec<QLayer<'a>, MAX_LAYERS>,
    input_q: QParams,
}

/// One tensor slot: (layer, role, dtype, rank, dims).
type Slot = (usize, u8, u8, u8, [u32; 4]);

/// Every tensor of `arch`'s int8 file, in order.
fn slots(arch: &Arch<'_>, mut f: impl FnMut(Slot) -> Result<(), Error>) -> Result<(), Error> {
    for (i, l) in arch.layers.iter().enumerate() {
        if let Layer::BatchNorm(_) = l {
            return Err(Error::BadLayer {
                index: i,
                reason: "batchnorm has no int8 form: fold it into the layer before (host-trainer quantize does)",
            });
        }
        let (ins, _) = arch.layer_io(i)?;
        // Every dimension is a u32 in the file: one that does not fit cannot be written,
        // and truncating it would describe fewer weights than the layer needs.
        let dim = |v: usize| {
            u32::try_from(v).map_err(|_| Error::BadLayer {
                index: i,
                reason: "a tensor dimension does not fit in 32 bits",
            })
        };
        let cout = match l.param_shapes(ins) {
            Some(p) => {
                let (rank, w) = p.weights_i8;
                let dims = [dim(w[0])?, dim(w[1])?, dim(w[2])?, dim(w[3])?];
                f((i, T::role::WEIGHTS, T::dtype::I8, rank, dims))?;
                Some(dim(p.bias)?)
            }
            None => None,
        };
        if let Some(c) = cout {
            for role in [T::role::BIAS, T::role::MULTIPLIER, T::role::SHIFT] {
                f((i, role, T::dtype::I32, 1, [c, 0, 0, 0]))?;
            }
        }
        f((i, T::role::QUANT, T::dtype::I32, 1, [4, 0, 0, 0]))?;
    }
    f((
        arch.layers.len(),
        T::role::QUANT,
        T::dtype::I32,
        1,
        [4, 0, 0, 0],
    ))
}

/// Data bytes of one tensor (without padding). Only called on slots that [`layout`]
/// has checked, so it cannot overflow.
fn slot_bytes(s: &Slot) -> usize {
    let elems: usize = s.4[..s.3 as usize].iter().map(|&d| d as usize).product();
    elems * if s.2 == T::dtype::I8 { 1 } else { 4 }
}

/// Tensor count and data bytes (with alignment padding) of `arch`'s int8 file; an error
/// if the data would not fit in `usize` bytes (no file could hold it).
fn layout(arch: &Arch<'_>) -> Result<(usize, usize), Error> {
    let (mut n, mut bytes) = (0usize, 0usize);
    let overflow = SIZE_OVERFLOW;
    slots(arch, |s| {
        let elems = s.4[..s.3 as usize]
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d as usize))
            .ok_or(overflow)?;
        let size = elems
            .checked_mul(if s.2 == T::dtype::I8 { 1 } else { 4 })
            .and_then(|b| b.checked_next_multiple_of(4))
            .ok_or(overflow)?;
        n += 1;
        bytes = bytes.checked_add(size).ok_or(overflow)?;
        Ok(())
    })?;
    Ok((n, bytes))
}

/// Size in bytes of `arch`'s int8 weights file.
pub fn file_len(arch: &Arch<'_>) -> Result<usize, Error> {
    arch.validate()?;
    let (tensors, data) = layout(arch)?;
    (header_len(arch.layers.len(), tensors) + 4)
        .checked_add(data)
        .ok_or(SIZE_OVERFLOW)
}

fn quant_words(q: QParams, lo: i8, hi: i8) -> [u32; 4] {
    [
        q.scale.to_bits(),
        q.zero as u32,
        lo as i32 as u32,
        hi as i32 as u32,
    ]
}

/// Writes `arch`'s int8 file (`layers`: one per layer of `arch`, `input`: the input's
/// quantization) into `out`; returns the bytes written ([`file_len`]).
pub fn write(
    arch: &Arch<'_>,
    input: QParams,
    layers: &[QLayer<'_>],
    out: &mut [u8],
) -> Result<usize, Error> {
    let len = file_len(arch)?;
    if len > u32::MAX as usize {
        // The header's length field is a u32.
        return Err(SIZE_OVERFLOW);
    }
    if layers.len() != arch.layers.len() {
        return Err(Error::TensorCount {
            expected: arch.layers.len(),
            found: layers.len(),
        });
    }
    let (tensors, _) = layout(arch)?;
    let out = write_header(arch, Precision::Int8, len, tensors, out)?;
    let put = put_u32;
    let toff = HEADER + arch.layers.len() * LAYER_RECORD;
    let mut at = header_len(arch.layers.len(), tensors);
    let mut t = 0;
    slots(arch, |s| {
        let (layer, role, dtype, rank, dims) = s;
        let n = slot_bytes(&s);
        let r = toff + 4 + t * TENSOR_RECORD;
        put(out, r + T::LAYER.start, layer as u32);
        out[r + T::ROLE] = role;
        out[r + T::DTYPE] = dtype;
        out[r + T::RANK] = rank;
        for (k, d) in dims.iter().enumerate() {
            put(out, r + T::DIMS.start + 4 * k, *d);
        }
        put(out, r + T::OFFSET.start, at as u32);
        put(out, r + T::BYTES.start, n as u32);
        let bad = |reason| Error::BadTensor { index: t, reason };
        let dst = &mut out[at..at + n];
        let words = |dst: &mut [u8], v: &[u32]| {
            for (d, w) in dst.chunks_exact_mut(4).zip(v) {
                d.copy_from_slice(&w.to_le_bytes());
            }
        };
        if role == T::role::QUANT {
            let w = match layers.get(layer) {
                Some(l) => quant_words(l.output, l.act_min, l.act_max),
                None => quant_words(input, i8::MIN, i8::MAX),
            };
            words(dst, &w);
        } else {
            let p = layers[layer]
                .params
                .ok_or(bad("a conv2d or dense layer has no int8 parameters"))?;
            let src: &[i32] = match role {
                T::role::WEIGHTS => {
                    if p.weights.len() != n {
                        return Err(bad("weights have the wrong length"));
                    }
                    for (d, &v) in dst.iter_mut().zip(p.weights) {
                        *d = v as u8;
                    }
                    &[]
                }
                T::role::BIAS => p.bias,
                T::role::MULTIPLIER => p.multiplier,
                _ => p.shift,
            };
            if role != T::role::WEIGHTS {
                if src.len() * 4 != n {
                    return Err(bad("biases, multipliers or shifts have the wrong length"));
                }
                for (d, &v) in dst.chunks_exact_mut(4).zip(src) {
                    d.copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        at += n.div_ceil(4) * 4;
        t += 1;
        Ok(())
    })?;
    let crc = crc32(&out[..len - 4]);
    put(out, len - 4, crc);
    Ok(len)
}

fn parse_quant(w: &[i32], index: usize) -> Result<(QParams, i8, i8), Error> {
    let bad = |reason| Error::BadTensor { index, reason };
    let scale = f32::from_bits(w[0] as u32);
    if !(scale.is_finite() && scale > 0.0) {
        return Err(bad("quantization scale is not a positive finite number"));
    }
    let range = -128..=127;
    if !range.contains(&w[1]) || !range.contains(&w[2]) || !range.contains(&w[3]) || w[2] > w[3] {
        return Err(bad(
            "zero point or clamp outside [-128, 127] (or min > max)",
        ));
    }
    Ok((QParams { scale, zero: w[1] }, w[2] as i8, w[3] as i8))
}

impl<'a> QModel<'a> {
    /// Parses and checks an int8 weights file, borrowing the data from `bytes` (which
    /// must be 4-byte aligned: embed it in [`crate::weights::Aligned`]).
    ///
    /// In firmware, `microconv-build` embeds a file from `host-trainer quantize --out` and
    /// this reads it in place (`QModel::parse(&MODEL.0)`, then [`QModel::net`] for
    /// [`crate::quant::infer_i8`]). A float file is refused with the reason:
    ///
    /// ```
    /// use microconv::weights::{float, Aligned};
    /// use microconv::Error;
    /// use microconv::weights::int8::QModel;
    /// use microconv::{Arch, Layer, Shape, layers::Dense};
    ///
    /// const ARCH: Arch = Arch::new(Shape::flat(4), &[Layer::Dense(Dense::new(3))]);
    /// let mut file = Aligned([0u8; 256]);
    /// let len = float::write(&ARCH, &[0.5; ARCH.param_count()], &mut file.0).unwrap();
    /// let e = QModel::parse(&file.0[..len]).unwrap_err();
    /// assert!(matches!(e, Error::WrongPrecision { found: 1 }));
    /// ```
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let (body, input, layers) = parse_header(bytes, Precision::Int8)?;
        let arch = Arch::new(input, &layers);
        let toff = HEADER + layers.len() * LAYER_RECORD;
        let tensors = u32_at(body, toff)? as usize;
        let (expected, data) = layout(&arch)?;
        if tensors != expected {
            return Err(Error::TensorCount {
                expected,
                found: tensors,
            });
        }
        let data_start = header_len(layers.len(), tensors);
        let data_end = (data_start + 4).checked_add(data).ok_or(SIZE_OVERFLOW)?;
        if data_end - 4 != body.len() {
            return Err(Error::LengthMismatch {
                header: data_end,
                actual: bytes.len(),
            });
        }
        let ints: &'a [i32] =
            bytemuck::try_cast_slice(&body[data_start..]).map_err(|_| Error::Misaligned)?;
        let bytes_i8: &'a [i8] = bytemuck::cast_slice(&body[data_start..]);
        let mut q: heapless::Vec<QLayer<'a>, MAX_LAYERS> = heapless::Vec::new();
        let mut input_q = QParams {
            scale: 1.0,
            zero: 0,
        };
        let mut cur: Option<QTensors<'a>> = None;
        let mut at = data_start;
        let mut t = 0;
        slots(&arch, |s| {
            let (layer, role, dtype, rank, dims) = s;
            let n = slot_bytes(&s);
            let r = &body[toff + 4 + t * TENSOR_RECORD..toff + 4 + (t + 1) * TENSOR_RECORD];
            let bad = |reason| Error::BadTensor { index: t, reason };
            let file_dims = [
                u32_at(r, T::DIMS.start)?,
                u32_at(r, T::DIMS.start + 4)?,
                u32_at(r, T::DIMS.start + 8)?,
                u32_at(r, T::DIMS.start + 12)?,
            ];
            if u32_at(r, T::LAYER.start)? as usize != layer
                || r[T::ROLE] != role
                || r[T::DTYPE] != dtype
            {
                return Err(bad(
                    "tensors are not in the int8 layout's order, roles and types",
                ));
            }
            if r[T::RANK] != rank || r[T::RESERVED] != 0 || file_dims != dims {
                return Err(bad("shape does not match the architecture"));
            }
            if u32_at(r, T::OFFSET.start)? as usize != at
                || u32_at(r, T::BYTES.start)? as usize != n
            {
                return Err(bad("offset or length is not where the layout puts it"));
            }
            let rel = at - data_start;
            if body[at + n..at + n.div_ceil(4) * 4].iter().any(|&b| b != 0) {
                return Err(bad("padding after the tensor is not zero"));
            }
            let words = &ints[rel / 4..(rel + n.div_ceil(4) * 4) / 4];
            let c = cur.get_or_insert(QTensors {
                weights: &[],
                bias: &[],
                multiplier: &[],
                shift: &[],
            });
            match role {
                T::role::WEIGHTS => c.weights = &bytes_i8[rel..rel + n],
                T::role::BIAS => c.bias = words,
                T::role::MULTIPLIER => {
                    if words.iter().any(|&m| m != 0 && m < (1 << 30)) {
                        return Err(bad("a multiplier is outside [2^30, 2^31) (and not 0)"));
                    }
                    c.multiplier = words
                }
                T::role::SHIFT => {
                    if words.iter().any(|&v| !(-31..=30).contains(&v)) {
                        return Err(bad("a shift is outside [-31, 30]"));
                    }
                    c.shift = words
                }
                _ => {
                    let (output, act_min, act_max) = parse_quant(words, t)?;
                    if layer == layers.len() {
                        input_q = output;
                    } else {
                        let has = arch.layers[layer].has_params();
                        let params = if has { cur.take() } else { None };
                        cur = None;
                        // Cannot fail: at most MAX_LAYERS layers.
                        let _ = q.push(QLayer {
                            params,
                            output,
                            act_min,
                            act_max,
                        });
                    }
                }
            }
            at += n.div_ceil(4) * 4;
            t += 1;
            Ok(())
        })?;
        Ok(QModel {
            input,
            layers,
            q,
            input_q,
        })
    }

    /// The architecture described by the file.
    pub fn arch(&self) -> Arch<'_> {
        Arch::new(self.input, &self.layers)
    }

    /// The int8 network, ready for [`crate::quant::infer_i8`].
    pub fn net(&self) -> QNet<'_> {
        QNet {
            arch: self.arch(),
            input: self.input_q,
            layers: &self.q,
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::layers::{Conv2d, Dense, MaxPool};
    use crate::weights::Aligned;
    use crate::Padding;
    use std::vec;
    use std::vec::Vec;

    const LAYERS: [Layer; 5] = [
        Layer::Conv2d(Conv2d::with(3, 1, Padding::Same, 4)),
        Layer::Relu,
        Layer::MaxPool(MaxPool::new(2, 2, Padding::Same)),
        Layer::Flatten,
        Layer::Dense(Dense::new(3)),
    ];
    const ARCH: Arch<'static> = Arch::new(Shape::new(5, 5, 2), &LAYERS);

    fn sample() -> (Vec<i8>, Vec<i32>, Vec<i8>, Vec<i32>) {
        let cw: Vec<i8> = (0..4 * 9 * 2).map(|i| (i * 7 % 255) as i8).collect();
        let cv: Vec<i32> = (0..4).map(|i| (1 << 30) + i * 1000).collect();
        let dw: Vec<i8> = (0..3 * 3 * 3 * 4).map(|i| (i * 13 % 251) as i8).collect();
        let dv: Vec<i32> = (0..3).map(|i| (1 << 30) + i * 77).collect();
        (cw, cv, dw, dv)
    }

    fn write_sample() -> Vec<u8> {
        let (cw, cv, dw, dv) = sample();
        let sh = [-7i32, -8, -9, -10];
        let conv = QTensors {
            weights: &cw,
            bias: &cv,
            multiplier: &cv,
            shift: &sh,
        };
        let dense = QTensors {
            weights: &dw,
            bias: &dv,
            multiplier: &dv,
            shift: &sh[..3],
        };
        let q = |scale: f32, zero: i32, lo: i8| QLayer {
            params: None,
            output: QParams { scale, zero },
            act_min: lo,
            act_max: 127,
        };
        let mut ls = [
            q(0.1, -128, -128),
            q(0.1, -128, -128),
            q(0.1, -128, -128),
            q(0.1, -128, -128),
            q(0.5, 3, -128),
        ];
        ls[0].params = Some(conv);
        ls[4].params = Some(dense);
        let mut out = vec![0u8; file_len(&ARCH).unwrap()];
        let n = write(
            &ARCH,
            QParams {
                scale: 1.0 / 255.0,
                zero: -128,
            },
            &ls,
            &mut out,
        )
        .unwrap();
        assert_eq!(n, out.len());
        out
    }

    fn aligned(bytes: &[u8]) -> std::boxed::Box<Aligned<[u8; 1024]>> {
        let mut b = std::boxed::Box::new(Aligned([0u8; 1024]));
        b.0[..bytes.len()].copy_from_slice(bytes);
        b
    }

    #[test]
    fn round_trip_reads_in_place() {
        let bytes = write_sample();
        let a = aligned(&bytes);
        let m = QModel::parse(&a.0[..bytes.len()]).unwrap();
        let (cw, cv, dw, dv) = sample();
        let net = m.net();
        assert_eq!(net.arch.layers, &LAYERS[..]);
        let c = net.layers[0].params.unwrap();
        assert_eq!(
            (c.weights, c.bias, c.shift),
            (&cw[..], &cv[..], &[-7, -8, -9, -10][..])
        );
        let d = net.layers[4].params.unwrap();
        assert_eq!((d.weights, d.multiplier), (&dw[..], &dv[..]));
        assert!(net.layers[1].params.is_none());
        assert_eq!(
            net.layers[4].output,
            QParams {
                scale: 0.5,
                zero: 3
            }
        );
        assert_eq!(
            net.input,
            QParams {
                scale: 1.0 / 255.0,
                zero: -128
            }
        );
        // The float reader refuses it with the right reason, and the other way round.
        assert_eq!(
            crate::weights::float::Model::parse(&a.0[..bytes.len()]).unwrap_err(),
            Error::WrongPrecision { found: 2 }
        );
    }

    #[test]
    fn every_damage_is_an_error() {
        let bytes = write_sample();
        // Every truncation, and every flipped bit of the header and tensor table.
        for len in 0..bytes.len() {
            assert!(
                QModel::parse(&aligned(&bytes[..len]).0[..len]).is_err(),
                "truncated to {len}"
            );
        }
        let header = header_len(LAYERS.len(), layout(&ARCH).unwrap().0);
        for bit in 0..header * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                QModel::parse(&aligned(&b).0[..b.len()]).is_err(),
                "bit {bit}"
            );
        }
        // A file whose checksum is right but whose multiplier is out of range.
        let a = aligned(&bytes);
        let m = QModel::parse(&a.0[..bytes.len()]).unwrap();
        let _ = m;
        let mut b = bytes.clone();
        let data = header;
        // The first multiplier follows the conv weights (72 bytes) and biases (16 bytes).
        b[data + 72 + 16..data + 72 + 20].copy_from_slice(&5i32.to_le_bytes());
        let n = b.len();
        let crc = crc32(&b[..n - 4]);
        b[n - 4..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            QModel::parse(&aligned(&b).0[..n]),
            Err(Error::BadTensor { .. })
        ));
        // Misaligned bytes are an error, not a copy.
        let mut off = std::boxed::Box::new(Aligned([0u8; 1025]));
        off.0[1..1 + bytes.len()].copy_from_slice(&bytes);
        assert_eq!(
            QModel::parse(&off.0[1..1 + bytes.len()]).unwrap_err(),
            Error::Misaligned
        );
    }

    #[test]
    fn dimensions_over_32_bits_and_oversized_files_are_errors() {
        use crate::weights::float::tests::header_only;
        // 2^32 inputs to a dense layer: the weights' dimension does not fit in the
        // file's u32 (it was truncated to 0, and a file without the layer's weights
        // was accepted).
        let layers = [Layer::Flatten, Layer::Dense(Dense::new(1))];
        let arch = Arch::new(Shape::new(1 << 16, 1 << 16, 1), &layers);
        let too_wide = Error::BadLayer {
            index: 1,
            reason: "a tensor dimension does not fit in 32 bits",
        };
        assert_eq!(file_len(&arch), Err(too_wide));
        let store = header_only(&arch, Precision::Int8, 7);
        let len = header_len(2, 7) + 4;
        let r = QModel::parse(&bytemuck::cast_slice(&store)[..len]).map(|_| ());
        assert_eq!(r, Err(too_wide));
        // Every dimension fits, but not the sum of the tensors' bytes.
        let layers = [Layer::Dense(Dense::new(u32::MAX as usize))];
        let arch = Arch::new(Shape::flat(u32::MAX as usize), &layers);
        assert!(arch.is_valid());
        assert_eq!(file_len(&arch), Err(SIZE_OVERFLOW));
    }
}
