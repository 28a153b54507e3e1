//! A plain parameter file: what `train` saves and `eval` loads.
//!
//! Little-endian: `b"MCPARAMS"`, `u32` version, `u32` length of the architecture name,
//! the name (UTF-8), in version 2 only a `u32` length and the network's canonical
//! description (UTF-8 TOML, [`crate::network::canonical`]), then `u64` parameter count,
//! the parameters as `f32`, then a `u32` CRC-32 (IEEE) of everything before it.
//!
//! A built-in architecture (`small`, `seed`) is written as version 1, byte for byte what
//! earlier builds wrote; a described network as version 2, so that the file says what
//! network it is. Both versions are read.

#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::bytes::Reader;
use crate::config::{ArchName, ArchSpec, Described};

const MAGIC: &[u8; 8] = b"MCPARAMS";
/// Files of built-in architectures: the name only.
const VERSION_NAMED: u32 = 1;
/// Files of described networks: the name and the description.
const VERSION_DESCRIBED: u32 = 2;

/// The most parameters a file this build reads may hold ([`crate::network::MAX_PARAMS`]).
pub use crate::network::MAX_PARAMS;

/// The largest parameter file this build reads (parameters and a description of up to
/// 1 MiB).
pub const MAX_BYTES: u64 = 4 * MAX_PARAMS as u64 + 4096 + (1 << 20);

/// What a parameter file says its architecture is.
#[derive(Clone, Debug, PartialEq)]
pub enum Stored {
    /// A name (version 1).
    Name(String),
    /// A name and a canonical description (version 2).
    Described {
        /// The name.
        name: String,
        /// The description.
        text: String,
    },
}

/// Writes `params` for architecture `arch` to `path` (atomically: temp file, fsync, rename).
pub fn save(path: &Path, arch: &str, params: &[f32]) -> Result<()> {
    crate::bytes::write_atomic(path, &bytes_of(arch, None, params))
}

/// The bytes of a parameter file holding `params` for `arch`.
pub fn to_bytes(arch: &ArchSpec, params: &[f32]) -> Vec<u8> {
    match arch {
        ArchSpec::Builtin(a) => bytes_of(a.name(), None, params),
        ArchSpec::Described(d) => bytes_of(&d.0.name, Some(&d.0.text), params),
    }
}

fn bytes_of(name: &str, text: Option<&str>, params: &[f32]) -> Vec<u8> {
    let extra = text.map_or(0, |t| 4 + t.len());
    let mut b = Vec::with_capacity(32 + name.len() + extra + params.len() * 4);
    b.extend_from_slice(MAGIC);
    let version = match text {
        None => VERSION_NAMED,
        Some(_) => VERSION_DESCRIBED,
    };
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&(name.len() as u32).to_le_bytes());
    b.extend_from_slice(name.as_bytes());
    if let Some(t) = text {
        b.extend_from_slice(&(t.len() as u32).to_le_bytes());
        b.extend_from_slice(t.as_bytes());
    }
    b.extend_from_slice(&(params.len() as u64).to_le_bytes());
    for p in params {
        b.extend_from_slice(&p.to_le_bytes());
    }
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Reads a parameter file; returns what it says the architecture is and the parameters.
pub fn load(path: &Path) -> Result<(Stored, Vec<f32>)> {
    let b = crate::bytes::read_at_most(path, MAX_BYTES, "parameter file")?;
    let what = path.display().to_string();
    let p = &what;
    if b.len() < 28 || !b.starts_with(MAGIC) {
        bail!("{p}: not a microconv parameter file (bad magic or too short)");
    }
    let body = crate::bytes::check_crc(&b, p)?;
    let mut r = Reader::new(body, MAGIC.len(), p);
    let version = r.u32()?;
    if version != VERSION_NAMED && version != VERSION_DESCRIBED {
        bail!("{p}: parameter file version {version}, this build reads versions {VERSION_NAMED} and {VERSION_DESCRIBED}");
    }
    let mut string = |what: &str| -> Result<String> {
        let len = r.u32()? as usize;
        String::from_utf8(r.take(len)?.to_vec())
            .with_context(|| format!("{p}: {what} is not UTF-8"))
    };
    let name = string("architecture name")?;
    let stored = if version == VERSION_DESCRIBED {
        Stored::Described {
            text: string("network description")?,
            name,
        }
    } else {
        Stored::Name(name)
    };
    let count = r.u64()?;
    if Some(r.remaining() as u64) != count.checked_mul(4) {
        bail!(
            "{p}: header says {count} parameters but {} bytes follow",
            r.remaining()
        );
    }
    let params = r.f32s(r.remaining() / 4)?;
    Ok((stored, params))
}

/// Reads a parameter file and checks it against the architecture it names or describes.
pub fn load_model(path: &Path) -> Result<(ArchSpec, Vec<f32>)> {
    let what = path.display().to_string();
    let (stored, p) = load(path)?;
    let arch = match stored {
        Stored::Name(name) => {
            ArchSpec::Builtin(ArchName::from_name(&name).with_context(|| what.clone())?)
        }
        Stored::Described { name, text } => {
            let n = crate::network::from_text(&text, &what)?;
            if n.name != name {
                bail!(
                    "{what}: named `{name}` but its description names `{}`",
                    n.name
                );
            }
            ArchSpec::Described(Described(n))
        }
    };
    let expected = arch.arch().param_count();
    if p.len() != expected {
        bail!(
            "{what}: {} parameters but architecture `{}` has {expected}",
            p.len(),
            arch.name()
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
            (Stored::Name("small".to_string()), vec![1.0, -2.5, 3.25])
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
