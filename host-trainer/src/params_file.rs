//! A plain parameter file: what `train` saves and `eval` loads.
//!
//! Little-endian: `b"MCPARAMS"`, `u32` version, `u32` length of the architecture name,
//! the name (UTF-8), in version 2 only a `u32` length and the network's canonical
//! description (UTF-8 TOML, [`crate::network::canonical`]), then `u64` parameter count,
//! the parameters as `f32`, then a `u32` CRC-32 (IEEE) of everything before it.
//!
//! Version 3 is version 2 (the description may be empty: a built-in architecture, by
//! its name) followed, before the parameter count, by the class names: a `u32` count,
//! then each name as a `u32` length and UTF-8 (an image folder's subfolders,
//! [`crate::folder`]).
//!
//! A built-in architecture (`small`, `seed`) is written as version 1, byte for byte what
//! earlier builds wrote; a described network as version 2, so that the file says what
//! network it is; either, trained on data with class names, as version 3. All three
//! versions are read.

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
/// Files with class names: the name, the description (empty for a built-in) and the
/// class names.
const VERSION_CLASSES: u32 = 3;
/// Most class names a file may hold (labels are bytes).
pub const MAX_CLASS_NAMES: usize = 256;

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
    crate::bytes::write_atomic(path, &bytes_of(arch, None, &[], params))
}

/// The bytes of a parameter file holding `params` for `arch`.
pub fn to_bytes(arch: &ArchSpec, params: &[f32]) -> Vec<u8> {
    to_bytes_named(arch, &[], params)
}

/// [`to_bytes`] with the class names of the data it was trained on (none: the file is
/// version 1 or 2, as before class names existed).
pub fn to_bytes_named(arch: &ArchSpec, classes: &[String], params: &[f32]) -> Vec<u8> {
    match arch {
        ArchSpec::Builtin(a) => bytes_of(a.name(), None, classes, params),
        ArchSpec::Described(d) => bytes_of(&d.0.name, Some(&d.0.text), classes, params),
    }
}

fn bytes_of(name: &str, text: Option<&str>, classes: &[String], params: &[f32]) -> Vec<u8> {
    let extra = text.map_or(0, |t| 4 + t.len());
    let names: usize = classes.iter().map(|c| 4 + c.len()).sum();
    let mut b = Vec::with_capacity(36 + name.len() + extra + names + params.len() * 4);
    b.extend_from_slice(MAGIC);
    let version = match (text, classes.is_empty()) {
        (_, false) => VERSION_CLASSES,
        (None, true) => VERSION_NAMED,
        (Some(_), true) => VERSION_DESCRIBED,
    };
    let string = |b: &mut Vec<u8>, s: &str| {
        b.extend_from_slice(&(s.len() as u32).to_le_bytes());
        b.extend_from_slice(s.as_bytes());
    };
    b.extend_from_slice(&version.to_le_bytes());
    string(&mut b, name);
    if version != VERSION_NAMED {
        string(&mut b, text.unwrap_or(""));
    }
    if version == VERSION_CLASSES {
        b.extend_from_slice(&(classes.len() as u32).to_le_bytes());
        for c in classes {
            string(&mut b, c);
        }
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
    load_named(path).map(|(s, _, p)| (s, p))
}

/// [`load`] with the class names the file holds (none before version 3).
pub fn load_named(path: &Path) -> Result<(Stored, Vec<String>, Vec<f32>)> {
    let b = crate::bytes::read_at_most(path, MAX_BYTES, "parameter file")?;
    let what = path.display().to_string();
    let p = &what;
    if b.len() < 28 || !b.starts_with(MAGIC) {
        bail!("{p}: not a microconv parameter file (bad magic or too short)");
    }
    let body = crate::bytes::check_crc(&b, p)?;
    let mut r = Reader::new(body, MAGIC.len(), p);
    let version = r.u32()?;
    if !(VERSION_NAMED..=VERSION_CLASSES).contains(&version) {
        bail!("{p}: parameter file version {version}, this build reads versions {VERSION_NAMED} to {VERSION_CLASSES}");
    }
    let string = |r: &mut Reader, what: &str| -> Result<String> {
        let len = r.u32()? as usize;
        String::from_utf8(r.take(len)?.to_vec())
            .with_context(|| format!("{p}: {what} is not UTF-8"))
    };
    let name = string(&mut r, "architecture name")?;
    let text = match version {
        VERSION_NAMED => String::new(),
        _ => string(&mut r, "network description")?,
    };
    // Version 3 of a built-in architecture has an empty description.
    let stored = if version != VERSION_DESCRIBED && text.is_empty() {
        Stored::Name(name)
    } else {
        Stored::Described { text, name }
    };
    let mut classes = Vec::new();
    if version == VERSION_CLASSES {
        let n = r.u32()? as usize;
        if n > MAX_CLASS_NAMES {
            bail!("{p}: {n} class names, more than {MAX_CLASS_NAMES}");
        }
        for _ in 0..n {
            classes.push(string(&mut r, "a class name")?);
        }
    }
    let count = r.u64()?;
    if Some(r.remaining() as u64) != count.checked_mul(4) {
        bail!(
            "{p}: header says {count} parameters but {} bytes follow",
            r.remaining()
        );
    }
    let params = r.f32s(r.remaining() / 4)?;
    Ok((stored, classes, params))
}

/// Reads a parameter file and checks it against the architecture it names or describes.
pub fn load_model(path: &Path) -> Result<(ArchSpec, Vec<f32>)> {
    load_model_named(path).map(|(a, _, p)| (a, p))
}

/// [`load_model`] with the class names the file holds (none before version 3); a file
/// with names for another number of classes than its network's is refused.
pub fn load_model_named(path: &Path) -> Result<(ArchSpec, Vec<String>, Vec<f32>)> {
    let what = path.display().to_string();
    let (stored, classes, p) = load_named(path)?;
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
    let k = arch.arch().classes();
    if !classes.is_empty() && classes.len() != k {
        bail!(
            "{what}: {} class names but architecture `{}` has {k} classes",
            classes.len(),
            arch.name()
        );
    }
    Ok((arch, classes, p))
}

/// The class-names file written beside a model that has them: `<model stem>.labels.txt`,
/// one name a line, label 0 first (TensorFlow Lite's `labels.txt` convention). Weights
/// files (`.mcw`, the core's format) hold no class names; this file goes with them.
pub fn labels_path(model: &Path) -> std::path::PathBuf {
    model.with_extension("labels.txt")
}

/// Writes `classes` to [`labels_path`] of `model` (nothing if there are none).
pub fn save_labels(model: &Path, classes: &[String]) -> Result<()> {
    if classes.is_empty() {
        return Ok(());
    }
    let mut text = classes.join("\n");
    text.push('\n');
    crate::bytes::write_atomic(&labels_path(model), text.as_bytes())
}

/// The class names of [`labels_path`] of `model`, if that file exists (empty if not),
/// checked to be `classes` of them.
pub fn load_labels(model: &Path, classes: usize) -> Result<Vec<String>> {
    let path = labels_path(model);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let b = crate::bytes::read_at_most(&path, 1 << 20, "labels file")?;
    let what = path.display();
    let text = String::from_utf8(b).map_err(|_| anyhow::anyhow!("{what}: not UTF-8 text"))?;
    let names: Vec<String> = text.lines().map(str::to_string).collect();
    if names.len() != classes {
        bail!(
            "{what}: {} class names (one a line) but the model beside it has {classes} classes",
            names.len()
        );
    }
    Ok(names)
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
        // Class names: version 3, read back; none: version 1, as before.
        let arch = ArchSpec::Builtin(ArchName::Small);
        let names: Vec<String> = ["cat", "dog"].map(String::from).to_vec();
        let b = to_bytes_named(&arch, &names, &[0.5]);
        assert_eq!(b[8], 3);
        fs::write(&path, &b).unwrap();
        assert_eq!(
            load_named(&path).unwrap(),
            (Stored::Name("small".into()), names, vec![0.5])
        );
        assert_eq!(
            to_bytes_named(&arch, &[], &[0.5]),
            bytes_of("small", None, &[], &[0.5])
        );
        assert_eq!(to_bytes_named(&arch, &[], &[0.5])[8], 1);
        fs::remove_dir_all(dir).unwrap();
    }
}
