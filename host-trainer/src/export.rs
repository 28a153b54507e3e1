//! `host-trainer export`: parameters from `train` to the weights file firmware embeds
//! (`docs/weights-format.md`).

use std::path::Path;

use anyhow::{bail, Context, Result};
use microconv::format::{file_len, write};

pub use crate::weights::{WeightsFile, MAX_BYTES};

/// Writes the weights file of `p` (architecture `arch`, read from `from`) to `out`;
/// returns its size in bytes.
pub fn export(arch: &microconv::Arch<'_>, p: &[f32], from: &Path, out: &Path) -> Result<usize> {
    let arch = *arch;
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
