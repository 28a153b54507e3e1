//! `host-trainer export`: parameters from `train` to the weights file firmware embeds
//! (`docs/weights-format.md`).

use std::path::Path;

use anyhow::{bail, Context, Result};
use microconv::format::{file_len, write, Model};

use crate::train::ArchName;

/// The largest weights file (float or int8) this build reads: the parameters a parameter
/// file may hold ([`crate::params_file::MAX_PARAMS`]) and 1 MiB of headers and tables.
pub const MAX_BYTES: u64 = crate::params_file::MAX_BYTES + (1 << 20);

/// Writes the weights file of `p` (architecture `name`, read from `from`) to `out`;
/// returns its size in bytes.
pub fn export(name: ArchName, p: &[f32], from: &Path, out: &Path) -> Result<usize> {
    let arch = name.arch();
    if let Some(i) = p.iter().position(|v| !v.is_finite()) {
        bail!(
            "{}: parameter {i} is {} (a diverged run?); refusing to export",
            from.display(),
            p[i]
        );
    }
    let mut bytes = vec![0u8; file_len(&arch)];
    let n = write(&arch, p, &mut bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Check what we wrote with the reader the firmware uses.
    let check = WeightsFile::from_bytes(&bytes[..n]);
    let model = check
        .model()
        .map_err(|e| anyhow::anyhow!("exported file does not parse: {e}"))?;
    if model.params() != p {
        bail!("exported file does not round-trip");
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(n)
}

/// A weights file in 4-byte aligned storage, so that the core's parser can read the
/// parameters in place.
pub struct WeightsFile {
    words: Vec<u32>,
    len: usize,
}

impl WeightsFile {
    /// An aligned copy of `bytes` (not checked yet: see [`WeightsFile::model`]).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut words = vec![0u32; bytes.len().div_ceil(4)];
        bytemuck::cast_slice_mut::<u32, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        WeightsFile {
            words,
            len: bytes.len(),
        }
    }

    /// Reads `path` (at most [`MAX_BYTES`]) and checks it with the reader its version calls for (float or int8).
    pub fn read_any(path: &Path) -> Result<Self> {
        let bytes = crate::bytes::read_at_most(path, MAX_BYTES, "weights file")?;
        let file = Self::from_bytes(&bytes);
        crate::board::HostModel::parse(file.bytes())
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(file)
    }

    /// Reads `path` and checks it with the core's parser.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = crate::bytes::read_at_most(path, MAX_BYTES, "weights file")?;
        let file = Self::from_bytes(&bytes);
        file.model()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(file)
    }

    /// The file's bytes, 4-byte aligned.
    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }

    /// The parsed model, borrowing the parameters in place.
    pub fn model(&self) -> Result<Model<'_>, microconv::format::FormatError> {
        Model::parse(&bytemuck::cast_slice(&self.words)[..self.len])
    }
}
