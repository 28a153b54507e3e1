//! `host-trainer export`: parameters from `train` to the weights file firmware embeds
//! (`docs/weights-format.md`).

use std::path::Path;

use anyhow::{bail, Context, Result};
use microconv::format::{file_len, write, Model};

use crate::params_file;

/// Reads a parameter file and writes the weights file; returns its size in bytes.
pub fn export(params: &Path, out: &Path) -> Result<usize> {
    let (name, p) = params_file::load_model(params)?;
    let arch = name.arch();
    if let Some(i) = p.iter().position(|v| !v.is_finite()) {
        bail!(
            "{}: parameter {i} is {} (a diverged run?); refusing to export",
            params.display(),
            p[i]
        );
    }
    let mut bytes = vec![0u8; file_len(&arch)];
    let n = write(&arch, &p, &mut bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Check what we wrote with the reader the firmware uses (from an aligned copy).
    let words: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let check = Model::parse(&bytemuck::cast_slice::<u32, u8>(&words)[..n])
        .map_err(|e| anyhow::anyhow!("exported file does not parse: {e}"))?;
    if check.params() != &p[..] {
        bail!("exported file does not round-trip");
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(n)
}
