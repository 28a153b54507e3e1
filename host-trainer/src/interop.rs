//! Parameters as safetensors, for PyTorch, NumPy and the rest of the ecosystem
//! (`docs/safetensors.md` has the names, layouts and a PyTorch loader).
//!
//! One `F32` tensor per weight and bias, named by layer kind and its count among layers of
//! that kind: `conv1.weight` `[kh, kw, cin, cout]` (HWIO), `conv1.bias` `[cout]`, ...,
//! `dense1.weight` `[in, out]`, `dense1.bias` `[out]`; the input of a dense layer after a
//! convolution is the NHWC activation flattened (height, width, channel). The header's
//! metadata says `"format": "microconv"`, the architecture and the layouts.

#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use microconv::{Arch, Layer};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::train::ArchName;

/// One named tensor of an architecture's flat parameter vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tensor {
    /// Its name in the file.
    pub name: String,
    /// Its shape (row-major).
    pub shape: Vec<usize>,
    /// Where it is in the flat parameters.
    pub range: Range<usize>,
}

/// The tensors of `arch`, in parameter order.
pub fn tensors(arch: &Arch<'_>) -> Result<Vec<Tensor>> {
    let (mut convs, mut depthwise, mut denses) = (0, 0, 0);
    let mut out = Vec::new();
    for (i, layer) in arch.layers.iter().enumerate() {
        let (ins, outs) = arch.layer_io(i).map_err(|e| anyhow!("{e}"))?;
        let r = arch.param_range(i).map_err(|e| anyhow!("{e}"))?;
        let (name, w_shape, units) = match layer {
            Layer::Conv2d(c) => {
                convs += 1;
                let shape = vec![c.kernel, c.kernel, ins.c, outs.c];
                (format!("conv{convs}"), shape, outs.c)
            }
            Layer::DepthwiseConv2d(d) => {
                depthwise += 1;
                let shape = vec![d.kernel, d.kernel, ins.c, d.multiplier];
                (format!("depthwise{depthwise}"), shape, outs.c)
            }
            Layer::Dense(d) => {
                denses += 1;
                (format!("dense{denses}"), vec![ins.len(), d.units], d.units)
            }
            _ => continue,
        };
        let split = r.end - units;
        out.push(Tensor {
            name: format!("{name}.weight"),
            shape: w_shape,
            range: r.start..split,
        });
        out.push(Tensor {
            name: format!("{name}.bias"),
            shape: vec![units],
            range: split..r.end,
        });
    }
    Ok(out)
}

/// The safetensors file of `params` for architecture `arch`.
pub fn to_bytes(arch: ArchName, params: &[f32]) -> Result<Vec<u8>> {
    let a = arch.arch();
    if params.len() != a.param_count() {
        bail!(
            "{} parameters for `{}`, which has {}",
            params.len(),
            arch.name(),
            a.param_count()
        );
    }
    let list = tensors(&a)?;
    let bytes: Vec<Vec<u8>> = list
        .iter()
        .map(|t| {
            params
                .get(t.range.clone())
                .unwrap_or_default()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect()
        })
        .collect();
    let views = list
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            Ok((
                t.name.clone(),
                TensorView::new(Dtype::F32, t.shape.clone(), b)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let meta = HashMap::from([
        ("format".to_string(), "microconv".to_string()),
        ("arch".to_string(), arch.name().to_string()),
        (
            "layout".to_string(),
            "conv weights [kh, kw, cin, cout] (HWIO), dense weights [in, out], activations NHWC"
                .to_string(),
        ),
    ]);
    Ok(safetensors::serialize(views, Some(meta))?)
}

/// Parameters from a safetensors file: the architecture whose tensor names and shapes
/// the file has (`__metadata__.arch` is not needed, so files written elsewhere load
/// too), every tensor `F32` and finite. `what` names the file in errors.
pub fn from_bytes(bytes: &[u8], what: &str) -> Result<(ArchName, Vec<f32>)> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| anyhow!("{what}: not a readable safetensors file: {e}"))?;
    let mut names: Vec<&str> = st.names();
    names.sort_unstable();
    for arch in [ArchName::Small, ArchName::Seed] {
        let list = tensors(&arch.arch())?;
        let mut expected: Vec<&str> = list.iter().map(|t| t.name.as_str()).collect();
        expected.sort_unstable();
        if expected != names {
            continue;
        }
        let mut params = vec![0.0f32; arch.arch().param_count()];
        for t in &list {
            let v = st.tensor(&t.name).map_err(|e| anyhow!("{what}: {e}"))?;
            if v.dtype() != Dtype::F32 {
                bail!(
                    "{what}: tensor {} is {:?}; microconv reads F32 (convert with .float())",
                    t.name,
                    v.dtype()
                );
            }
            if v.shape() != t.shape.as_slice() {
                bail!(
                    "{what}: tensor {} has shape {:?}, architecture `{}` needs {:?} (layouts: docs/safetensors.md)",
                    t.name,
                    v.shape(),
                    arch.name(),
                    t.shape
                );
            }
            let Some(dst) = params.get_mut(t.range.clone()) else {
                bail!("{what}: tensor {} does not fit the parameters", t.name);
            };
            for (d, v) in dst.iter_mut().zip(crate::bytes::f32s(v.data())) {
                *d = v;
            }
            if let Some((i, x)) = dst.iter().enumerate().find(|(_, x)| !x.is_finite()) {
                bail!("{what}: tensor {} element {i} is {x}", t.name);
            }
        }
        return Ok((arch, params));
    }
    bail!(
        "{what}: its tensors ({}) are not those of a known architecture (small, seed; names in docs/safetensors.md)",
        names.join(", ")
    )
}

/// Whether `head` (a file's first bytes) looks like safetensors: a little-endian header
/// length, then `{`.
pub fn looks_like(head: &[u8]) -> bool {
    head.get(8) == Some(&b'{')
}

/// Writes `params` as a safetensors file.
pub fn save(path: &Path, arch: ArchName, params: &[f32]) -> Result<()> {
    crate::bytes::write_atomic(path, &to_bytes(arch, params)?)
}

/// The largest safetensors file this build reads: a JSON header of up to 100 MB (the
/// `safetensors` crate's own limit) and the largest parameter count a parameter file
/// may hold.
pub const MAX_BYTES: u64 = 8 + 100_000_000 + crate::params_file::MAX_BYTES;

/// Reads a safetensors file (at most [`MAX_BYTES`]).
pub fn load(path: &Path) -> Result<(ArchName, Vec<f32>)> {
    let b = crate::bytes::read_at_most(path, MAX_BYTES, "safetensors file")?;
    from_bytes(&b, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_shapes_and_ranges_cover_the_parameters() {
        let t = tensors(&ArchName::Small.arch()).unwrap();
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "conv1.weight",
                "conv1.bias",
                "conv2.weight",
                "conv2.bias",
                "conv3.weight",
                "conv3.bias",
                "dense1.weight",
                "dense1.bias"
            ]
        );
        assert_eq!(t[0].shape, [5, 5, 1, 8]);
        // 4 x 4 x 32 after three SAME pools.
        assert_eq!(t[6].shape, [512, 10]);
        // Contiguous, in order, covering everything.
        assert_eq!(t[0].range.start, 0);
        for w in t.windows(2) {
            assert_eq!(w[0].range.end, w[1].range.start);
        }
        assert_eq!(t.last().unwrap().range.end, 13_194);
        for x in &t {
            assert_eq!(
                x.range.len(),
                x.shape.iter().product::<usize>(),
                "{}",
                x.name
            );
        }
    }

    #[test]
    fn round_trip_and_clear_refusals() {
        let n = ArchName::Small.arch().param_count();
        let p: Vec<f32> = (0..n).map(|i| i as f32 * 0.001 - 3.0).collect();
        let b = to_bytes(ArchName::Small, &p).unwrap();
        assert!(looks_like(&b));
        assert_eq!(from_bytes(&b, "f").unwrap(), (ArchName::Small, p.clone()));
        // Truncated anywhere: an error naming the file, never a panic.
        for cut in (0..b.len()).step_by(97) {
            let e = from_bytes(&b[..cut], "f").unwrap_err().to_string();
            assert!(e.starts_with("f: "), "{e}");
        }
        // A non-finite value is refused with the tensor and index.
        let mut q = p.clone();
        q[13_190] = f32::NAN;
        let e = from_bytes(&to_bytes(ArchName::Small, &q).unwrap(), "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tensor dense1.bias element 6 is NaN"), "{e}");
        // Another network's tensors: named, with the known architectures.
        let one = [1.0f32; 4]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>();
        let other = safetensors::serialize(
            [(
                "fc.weight",
                TensorView::new(Dtype::F32, vec![2, 2], &one).unwrap(),
            )],
            None,
        )
        .unwrap();
        let e = from_bytes(&other, "f").unwrap_err().to_string();
        assert!(
            e.contains("fc.weight") && e.contains("not those of a known"),
            "{e}"
        );
        // Right names, a PyTorch layout: the shape problem is named.
        let list = tensors(&ArchName::Small.arch()).unwrap();
        let data: Vec<Vec<u8>> = list.iter().map(|t| vec![0u8; 4 * t.range.len()]).collect();
        let views = list.iter().zip(&data).map(|(t, d)| {
            let mut shape = t.shape.clone();
            shape.reverse();
            (
                t.name.clone(),
                TensorView::new(Dtype::F32, shape, d).unwrap(),
            )
        });
        let torch = safetensors::serialize(views, None).unwrap();
        let e = from_bytes(&torch, "f").unwrap_err().to_string();
        assert!(e.contains("conv1.weight has shape [8, 1, 5, 5]"), "{e}");
    }
}
