//! A plain parameter file: what `train` saves and `eval` loads.
//!
//! Little-endian: `b"MCPARAMS"`, `u32` version (1), `u32` length of the architecture
//! name, the name (UTF-8), `u64` parameter count, the parameters as `f32`, then a
//! `u32` CRC-32 (IEEE) of everything before it.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

const MAGIC: &[u8; 8] = b"MCPARAMS";
const VERSION: u32 = 1;

/// Writes `params` for architecture `arch` to `path` (atomically: temp file, fsync, rename).
pub fn save(path: &Path, arch: &str, params: &[f32]) -> Result<()> {
    let mut b = Vec::with_capacity(32 + arch.len() + params.len() * 4);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&(arch.len() as u32).to_le_bytes());
    b.extend_from_slice(arch.as_bytes());
    b.extend_from_slice(&(params.len() as u64).to_le_bytes());
    for p in params {
        b.extend_from_slice(&p.to_le_bytes());
    }
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    crate::checkpoint::write_atomic(path, &b)
}

/// Reads a parameter file; returns the architecture name and the parameters.
pub fn load(path: &Path) -> Result<(String, Vec<f32>)> {
    let b = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let p = path.display();
    if b.len() < 28 || &b[..8] != MAGIC {
        bail!("{p}: not a microconv parameter file (bad magic or too short)");
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        bail!("{p}: checksum mismatch (the file is corrupt or truncated)");
    }
    let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let version = u32_at(8);
    if version != VERSION {
        bail!("{p}: parameter file version {version}, this build reads version {VERSION}");
    }
    let name_len = u32_at(12) as usize;
    let name_end = 16 + name_len;
    if body.len() < name_end + 8 {
        bail!("{p}: truncated header");
    }
    let name = String::from_utf8(b[16..name_end].to_vec())
        .with_context(|| format!("{p}: architecture name is not UTF-8"))?;
    let mut count = [0u8; 8];
    count.copy_from_slice(&b[name_end..name_end + 8]);
    let count = u64::from_le_bytes(count) as usize;
    let data = &body[name_end + 8..];
    if Some(data.len()) != count.checked_mul(4) {
        bail!(
            "{p}: header says {count} parameters but {} bytes follow",
            data.len()
        );
    }
    Ok((
        name,
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    ))
}

/// Reads a parameter file and checks it against the architecture it names.
pub fn load_model(path: &Path) -> Result<(crate::train::ArchName, Vec<f32>)> {
    let (name, p) = load(path)?;
    let arch =
        crate::train::ArchName::from_name(&name).with_context(|| path.display().to_string())?;
    let expected = arch.arch().param_count();
    if p.len() != expected {
        bail!(
            "{}: {} parameters but architecture `{name}` has {expected}",
            path.display(),
            p.len()
        );
    }
    Ok((arch, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = std::env::temp_dir().join(format!("mc-params-{}", std::process::id()));
        let path = dir.join("p.bin");
        save(&path, "small", &[1.0, -2.5, 3.25]).unwrap();
        assert_eq!(
            load(&path).unwrap(),
            ("small".to_string(), vec![1.0, -2.5, 3.25])
        );
        let mut b = fs::read(&path).unwrap();
        b[30] ^= 1;
        fs::write(&path, &b).unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("checksum"));
        fs::write(&path, &b[..20]).unwrap();
        assert!(load(&path).is_err());
        fs::remove_dir_all(dir).unwrap();
    }
}
