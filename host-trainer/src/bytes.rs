//! Bounds-checked little-endian reading for the file parsers (parameter files,
//! checkpoints, safetensors): every read is a `Result` naming the file, none can panic;
//! and the atomic write every saved file goes through.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Reads the file at `path` whole, refusing it if it holds more than `max` bytes (a
/// `kind` of file this build writes is never that large): checked against the file's
/// size before reading, and while reading, so that a file that grows or a device that
/// never ends cannot take the memory.
pub fn read_at_most(path: &Path, max: u64, kind: &str) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let too_big = |n: u64| {
        anyhow::anyhow!(
            "{}: {n} bytes or more, larger than any {kind} this build reads (at most {max}): not a {kind}, or a damaged one",
            path.display()
        )
    };
    if let Ok(m) = f.metadata() {
        if m.is_file() && m.len() > max {
            return Err(too_big(m.len()));
        }
    }
    let mut b = Vec::new();
    f.take(max.saturating_add(1))
        .read_to_end(&mut b)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if b.len() as u64 > max {
        return Err(too_big(b.len() as u64));
    }
    Ok(b)
}

/// The first `n` bytes of the file at `path` (fewer if it is shorter): enough to tell
/// its kind without reading it all.
pub fn head(path: &Path, n: usize) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut b = Vec::with_capacity(n);
    f.take(n as u64)
        .read_to_end(&mut b)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(b)
}

/// A cursor over a file's bytes; `what` names the file in errors.
pub struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    what: &'a str,
}

impl<'a> Reader<'a> {
    /// A reader at offset `at` of `b`.
    pub fn new(b: &'a [u8], at: usize, what: &'a str) -> Self {
        Reader { b, at, what }
    }

    /// Bytes read so far (the offset of the next read).
    pub fn offset(&self) -> usize {
        self.at
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.b.len().saturating_sub(self.at)
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let s = self
            .at
            .checked_add(n)
            .and_then(|end| self.b.get(self.at..end));
        let Some(s) = s else {
            bail!(
                "{}: truncated ({} bytes wanted at offset {}, {} left)",
                self.what,
                n,
                self.at,
                self.remaining()
            );
        };
        self.at += n;
        Ok(s)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_le_bytes)
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self) -> Result<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// A `u64` element count whose `elem`-byte elements must fit in what is left.
    pub fn count(&mut self, elem: usize) -> Result<usize> {
        let n = self.u64()?;
        match usize::try_from(n)
            .ok()
            .filter(|&n| n.saturating_mul(elem) <= self.remaining())
        {
            Some(n) => Ok(n),
            None => bail!(
                "{}: an array of {n} elements does not fit in the file",
                self.what
            ),
        }
    }

    /// `n` little-endian `f32`s.
    pub fn f32s(&mut self, n: usize) -> Result<Vec<f32>> {
        Ok(f32s(self.take(n.saturating_mul(4))?))
    }

    /// `n` little-endian `u32`s.
    pub fn u32s(&mut self, n: usize) -> Result<Vec<u32>> {
        Ok(words(self.take(n.saturating_mul(4))?)
            .map(u32::from_le_bytes)
            .collect())
    }
}

/// The 4-byte words of `b` (a partial last word is ignored).
fn words(b: &[u8]) -> impl Iterator<Item = [u8; 4]> + '_ {
    b.chunks_exact(4).map(|c| {
        let mut a = [0u8; 4];
        a.copy_from_slice(c);
        a
    })
}

/// `b` as little-endian `f32`s (a partial last word is ignored).
pub fn f32s(b: &[u8]) -> Vec<f32> {
    words(b).map(f32::from_le_bytes).collect()
}

/// Splits off a file's trailing CRC-32 and checks it; returns the body.
pub fn check_crc<'a>(b: &'a [u8], what: &str) -> Result<&'a [u8]> {
    let Some((body, crc)) = b.split_last_chunk::<4>() else {
        bail!("{what}: too short to hold a checksum");
    };
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        bail!("{what}: checksum mismatch (the file is corrupt or truncated)");
    }
    Ok(body)
}

/// Replaces `path` with `bytes` so that a crash at any moment leaves either the old file
/// or the new one, whole: write a temporary file beside it, fsync it, rename it over
/// `path`, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, bytes, None)
}

/// [`write_atomic`], pausing for `pause` halfway through writing the temporary file
/// (the crash-safety test kills the process there).
pub(crate) fn write_atomic_with(
    path: &Path,
    bytes: &[u8],
    pause: Option<std::time::Duration>,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = dir.join(name);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        let (first, second) = bytes.split_at(bytes.len() / 2);
        f.write_all(first)?;
        if let Some(p) = pause {
            f.flush()?;
            std::thread::sleep(p);
        }
        f.write_all(second)?;
        f.sync_all()
    });
    if let Err(e) = written {
        // Nothing is left behind in a temporary file that no message names.
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", tmp.display()));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()));
    }
    // The rename is durable once the directory is; not every platform can open one.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_refuses_to_read_past_the_end() {
        let b = [1u8, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x3f];
        let mut r = Reader::new(&b, 0, "f");
        assert_eq!(r.u32().unwrap(), 1);
        assert_eq!(r.u64().unwrap(), 2);
        assert_eq!(r.f32s(1).unwrap(), [1.0]);
        assert_eq!(r.remaining(), 0);
        let e = r.u32().unwrap_err().to_string();
        assert!(e.starts_with("f: truncated"), "{e}");
        let mut r = Reader::new(&b, 4, "f");
        assert!(r.take(usize::MAX).is_err());
        let mut r = Reader::new(&[9, 0, 0, 0, 0, 0, 0, 0, 1], 0, "f");
        assert!(r.count(4).is_err(), "9 words announced, 1 byte left");
        assert!(check_crc(&[1, 2], "f").is_err());
        let mut with = b"abc".to_vec();
        with.extend_from_slice(&crc32fast::hash(b"abc").to_le_bytes());
        assert_eq!(check_crc(&with, "f").unwrap(), b"abc");
    }
}
