//! A plain parameter file: what `train` saves and `eval` loads.
//!
//! Little-endian: `b"MCPARAMS"`, `u32` version (1), `u32` length of the architecture
//! name, the name (UTF-8), `u64` parameter count, the parameters as `f32`, then a
//! `u32` CRC-32 (IEEE) of everything before it.

#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::bytes::Reader;

const MAGIC: &[u8; 8] = b"MCPARAMS";
const VERSION: u32 = 1;

/// The most parameters a file this build reads may hold: the largest built-in
/// network's, with room to spare (64 M). Files are checked against it before they are
/// read, so that a huge file is refused instead of filling the memory.
pub const MAX_PARAMS: usize = 64 << 20;

/// The largest parameter file this build reads.
pub const MAX_BYTES: u64 = 4 * MAX_PARAMS as u64 + 4096;

/// Writes `params` for architecture `arch` to `path` (atomically: temp file, fsync, rename).
pub fn save(path: &Path, arch: &str, params: &[f32]) -> Result<()> {
    crate::bytes::write_atomic(path, &to_bytes(arch, params))
}

/// The bytes of a parameter file holding `params` for architecture `arch`.
pub fn to_bytes(arch: &str, params: &[f32]) -> Vec<u8> {
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
    b
}

/// Reads a parameter file; returns the architecture name and the parameters.
pub fn load(path: &Path) -> Result<(String, Vec<f32>)> {
    let b = crate::bytes::read_at_most(path, MAX_BYTES, "parameter file")?;
    let what = path.display().to_string();
    let p = &what;
    if b.len() < 28 || !b.starts_with(MAGIC) {
        bail!("{p}: not a microconv parameter file (bad magic or too short)");
    }
    let body = crate::bytes::check_crc(&b, p)?;
    let mut r = Reader::new(body, MAGIC.len(), p);
    let version = r.u32()?;
    if version != VERSION {
        bail!("{p}: parameter file version {version}, this build reads version {VERSION}");
    }
    let name_len = r.u32()? as usize;
    let name = String::from_utf8(r.take(name_len)?.to_vec())
        .with_context(|| format!("{p}: architecture name is not UTF-8"))?;
    let count = r.u64()?;
    if Some(r.remaining() as u64) != count.checked_mul(4) {
        bail!(
            "{p}: header says {count} parameters but {} bytes follow",
            r.remaining()
        );
    }
    let params = r.f32s(r.remaining() / 4)?;
    Ok((name, params))
}

/// Reads a parameter file and checks it against the architecture it names.
pub fn load_model(path: &Path) -> Result<(crate::config::ArchName, Vec<f32>)> {
    let (name, p) = load(path)?;
    let arch =
        crate::config::ArchName::from_name(&name).with_context(|| path.display().to_string())?;
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
    use std::fs;

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
