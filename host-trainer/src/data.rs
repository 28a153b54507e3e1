//! IDX files (gzip-compressed or raw), MNIST's and any other shape: read, check, scale
//! pixels to [0, 1].
//!
//! IDX: a big-endian header `0x00 0x00 <type> <ndims>` (type `0x08` = unsigned byte),
//! then `ndims` big-endian `u32` sizes, then the data. Images are `ndims = 3`
//! (`count, rows, cols`, one channel, MNIST's) or `ndims = 4` (`count, rows, cols,
//! channels`, channels fastest), labels `ndims = 1` (`0..K`: the number of classes `K`
//! is the largest label plus one, [`Dataset::classes`]).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use flate2::read::GzDecoder;

/// A labelled image set: the IDX file's 8-bit pixels (row-major, channels fastest), kept as
/// bytes (a quarter of the memory of floats) and scaled to [0, 1] (`p / 255`) batch by
/// batch with [`Dataset::fill`].
#[derive(Clone, Debug)]
pub struct Dataset {
    /// `count * rows * cols * channels` values, 0-255.
    pub images: Vec<u8>,
    /// `count` labels.
    pub labels: Vec<u8>,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// Channels per pixel (1 for an idx3 file).
    pub channels: usize,
    /// The label file (an image folder's directory), for errors about labels.
    pub labels_file: String,
    /// The class names, label 0 first: an image folder's subfolders ([`crate::folder`]);
    /// empty for IDX files, whose classes are numbers.
    pub class_names: Vec<String>,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// True if there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Values of one image (`rows * cols * channels`).
    pub fn pixels(&self) -> usize {
        self.rows * self.cols * self.channels
    }
    /// The shape of one image.
    pub fn shape(&self) -> microconv::Shape {
        microconv::Shape::new(self.rows, self.cols, self.channels)
    }
    /// The number of classes: an image folder's class count, else what the labels show,
    /// the largest label plus one (0 if empty).
    pub fn classes(&self) -> usize {
        if !self.class_names.is_empty() {
            return self.class_names.len();
        }
        self.labels.iter().max().map_or(0, |&l| l as usize + 1)
    }
    /// Every label must be below `classes` (the network's): the error names the label
    /// file, the label and its index.
    pub fn check_labels(&self, classes: usize) -> Result<()> {
        if let Some((i, &l)) = self
            .labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= classes)
        {
            bail!(
                "{}: label {l} at index {i} is out of range: the network has {classes} classes (labels 0 to {})",
                self.labels_file,
                classes.saturating_sub(1)
            );
        }
        Ok(())
    }
    /// Image `i`'s 8-bit pixels.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * self.pixels()..(i + 1) * self.pixels()]
    }
    /// Writes the images `idx` (in that order) into `out` (`[idx.len(), pixels]`), scaled
    /// to [0, 1].
    ///
    /// # Panics
    /// If `out` is not `idx.len() * pixels` long or an index is out of range (both are
    /// the caller's bug, not bad input).
    pub fn fill(&self, idx: &[usize], out: &mut [f32]) {
        assert_eq!(out.len(), idx.len() * self.pixels(), "batch buffer size");
        for (&i, dst) in idx.iter().zip(out.chunks_exact_mut(self.pixels())) {
            scale(self.image(i), dst);
        }
    }
    /// All images scaled to [0, 1] (`[len, pixels]`).
    pub fn to_f32(&self) -> Vec<f32> {
        let mut v = vec![0.0; self.images.len()];
        scale(&self.images, &mut v);
        v
    }
    /// The images `range` as a new dataset.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Dataset {
        Dataset {
            images: self.images[range.start * self.pixels()..range.end * self.pixels()].to_vec(),
            labels: self.labels[range].to_vec(),
            rows: self.rows,
            cols: self.cols,
            channels: self.channels,
            labels_file: self.labels_file.clone(),
            class_names: self.class_names.clone(),
        }
    }
    /// The images `idx` (in that order) as a new dataset.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let mut images = Vec::with_capacity(idx.len() * self.pixels());
        for &i in idx {
            images.extend_from_slice(self.image(i));
        }
        Dataset {
            images,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            class_names: self.class_names.clone(),
            labels_file: self.labels_file.clone(),
            ..*self
        }
    }
    /// The name of class `k`: the folder's, or the number.
    pub fn class_name(&self, k: usize) -> String {
        self.class_names
            .get(k)
            .cloned()
            .unwrap_or_else(|| k.to_string())
    }
}

/// Scales 8-bit pixels to [0, 1].
pub fn scale(src: &[u8], dst: &mut [f32]) {
    for (d, &p) in dst.iter_mut().zip(src) {
        *d = p as f32 / 255.0;
    }
}

/// Opens an IDX file, gunzipping it as it is read if it starts with gzip's magic bytes.
/// Returns the reader and whether the file is gzip-compressed.
fn open_maybe_gz(path: &Path) -> Result<(Box<dyn Read>, bool)> {
    let f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut r = BufReader::new(f);
    let magic = r
        .fill_buf()
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(if magic.starts_with(&[0x1f, 0x8b]) {
        (Box::new(GzDecoder::new(r)), true)
    } else {
        (Box::new(r), false)
    })
}

/// Memory this machine has available (`MemAvailable` of `/proc/meminfo`), if known.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Reads an IDX file of unsigned bytes with `ndims` dimensions from `r` (the file's
/// bytes, already gunzipped if it was compressed), `what` naming it in errors, and
/// returns its sizes and data. The data is read up to the size its header promises and
/// one byte more, never further: a file with more data than its header says (a
/// compressed "bomb", for one) is refused after reading that much. With `count`, the
/// first size must be `count` (the number of labels that go with the images), checked
/// before any data is read; a header promising more bytes than the machine's available
/// memory is refused before reading too. `gzipped` says whether `r` inflates a gzip
/// stream (for the message of a read error).
pub fn read_idx(
    (mut r, gzipped): (impl Read, bool),
    ndims: usize,
    what: &str,
    count: Option<(usize, &str)>,
) -> Result<(Vec<usize>, Vec<u8>)> {
    let gz = |e| read_error(what, gzipped, e);
    let mut header = Vec::with_capacity(4 + 4 * ndims);
    (&mut r)
        .take(4 + 4 * ndims as u64)
        .read_to_end(&mut header)
        .map_err(gz)?;
    let (dims, expected) = parse_idx_header(&header, ndims, what)?;
    if let Some((n, labels)) = count {
        let images = dims.first().copied().unwrap_or(0);
        if images != n {
            return Err(count_mismatch(what, images, labels, n));
        }
    }
    if let Some(avail) = available_memory() {
        if expected as u64 > avail {
            bail!(
                "{what}: header says {dims:?} = {expected} bytes of data, more than this machine's available memory ({avail} bytes)"
            );
        }
    }
    let mut data = Vec::with_capacity(expected.min(1 << 28));
    r.take(expected as u64 + 1)
        .read_to_end(&mut data)
        .map_err(gz)?;
    if data.len() > expected {
        bail!("{what}: header says {dims:?} = {expected} bytes of data but the file has more (corrupt file, or not MNIST's IDX; reading stopped there)");
    }
    check_data_len(what, &dims, expected, data.len())?;
    Ok((dims, data))
}

/// The error for a failed read of `what`: a corrupt gzip stream if it was one.
fn read_error(what: &str, gzipped: bool, e: std::io::Error) -> anyhow::Error {
    if gzipped {
        anyhow::anyhow!("{what}: corrupt gzip data (re-download or re-copy the file): {e}")
    } else {
        anyhow::anyhow!("{what}: cannot read: {e}")
    }
}

/// The number of dimensions of an image file with IDX magic `magic`: 4 if its fourth
/// byte says so (idx4, `N x H x W x C`), else 3 (idx3; the header check reports any
/// other value).
fn image_ndims(magic: &[u8]) -> usize {
    if magic.get(3) == Some(&4) {
        4
    } else {
        3
    }
}

/// The data after an IDX header must be exactly the `expected` bytes its sizes promise.
fn check_data_len(what: &str, dims: &[usize], expected: usize, got: usize) -> Result<()> {
    if got != expected {
        bail!("{what}: header says {dims:?} = {expected} bytes of data but the file has {got} (truncated or corrupt file)");
    }
    Ok(())
}

/// The error for an image file and a label file of different lengths.
fn count_mismatch(images: &str, n_images: usize, labels: &str, n_labels: usize) -> anyhow::Error {
    anyhow::anyhow!("{images} has {n_images} images but {labels} has {n_labels} labels")
}

/// Checks an IDX header (`00 00 08 ndims`, then `ndims` big-endian `u32` sizes) at the
/// start of `bytes`; returns the sizes and the number of data bytes they promise.
fn parse_idx_header(bytes: &[u8], ndims: usize, what: &str) -> Result<(Vec<usize>, usize)> {
    if bytes.len() < 4 {
        bail!(
            "{what}: {} bytes is too short for an IDX header",
            bytes.len()
        );
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 || bytes[3] as usize != ndims {
        bail!(
            "{what}: bad IDX magic {:02x} {:02x} {:02x} {:02x}, expected 00 00 08 {ndims:02x} (unsigned bytes, {ndims} dimensions)",
            bytes[0],
            bytes[1],
            bytes[2],
            bytes[3]
        );
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        bail!(
            "{what}: truncated IDX header ({} bytes, need {header})",
            bytes.len()
        );
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .context("IDX sizes overflow")?;
    Ok((dims, expected))
}

/// Parses an IDX byte buffer of unsigned bytes with `ndims` dimensions; returns the
/// sizes and the data.
pub fn parse_idx<'b>(bytes: &'b [u8], ndims: usize, what: &str) -> Result<(Vec<usize>, &'b [u8])> {
    let (dims, expected) = parse_idx_header(bytes, ndims, what)?;
    let data = &bytes[4 + 4 * ndims..];
    check_data_len(what, &dims, expected, data.len())?;
    Ok((dims, data))
}

/// [`image_ndims`] of the image file `images`, read errors reported as [`read_idx`]
/// reports them.
fn file_image_ndims(images: &Path) -> Result<usize> {
    let (r, gzipped) = open_maybe_gz(images)?;
    let mut magic = Vec::with_capacity(4);
    r.take(4)
        .read_to_end(&mut magic)
        .map_err(|e| read_error(&images.display().to_string(), gzipped, e))?;
    Ok(image_ndims(&magic))
}

/// Loads an image file (idx3 or idx4) and a label file and checks that they agree. The
/// labels are read first, and the images' header is checked against their count before
/// any pixel is read; neither file is read past the size its header promises
/// ([`read_idx`]).
pub fn load_pair(images: &Path, labels: &Path) -> Result<Dataset> {
    let (iname, lname) = (images.display().to_string(), labels.display().to_string());
    let (ldims, lab) = read_idx(open_maybe_gz(labels)?, 1, &lname, None)?;
    let (idims, pixels) = read_idx(
        open_maybe_gz(images)?,
        file_image_ndims(images)?,
        &iname,
        Some((ldims[0], lname.as_str())),
    )?;
    check_pair(&idims, &ldims, &iname, &lname)?;
    Ok(dataset(&idims, pixels, lab, &lname))
}

/// The dataset of images of sizes `idims` (`[n, h, w]` or `[n, h, w, c]`).
fn dataset(idims: &[usize], images: Vec<u8>, labels: Vec<u8>, labels_file: &str) -> Dataset {
    Dataset {
        images,
        labels,
        rows: idims[1],
        cols: idims[2],
        channels: idims.get(3).copied().unwrap_or(1),
        labels_file: labels_file.to_string(),
        class_names: Vec::new(),
    }
}

/// The checks on an image file's and a label file's sizes (the labels are checked
/// against the network's classes where a network meets the data:
/// [`Dataset::check_labels`]).
fn check_pair(idims: &[usize], ldims: &[usize], images: &str, labels: &str) -> Result<()> {
    if idims[0] != ldims[0] {
        return Err(count_mismatch(images, idims[0], labels, ldims[0]));
    }
    if idims[1..].contains(&0) {
        let dims: Vec<String> = idims[1..].iter().map(|d| d.to_string()).collect();
        bail!("{images}: images of size {}", dims.join("x"));
    }
    Ok(())
}

/// The checks of [`load_pair`] on the (already decompressed) bytes of an image file
/// (idx3, or idx4 if its fourth byte says 4) and a label file, named `images` and
/// `labels` in errors.
pub fn pair_from_bytes(ib: &[u8], lb: &[u8], images: &str, labels: &str) -> Result<Dataset> {
    let (idims, ipix) = parse_idx(ib, image_ndims(ib), images)?;
    let (ldims, lab) = parse_idx(lb, 1, labels)?;
    check_pair(&idims, &ldims, images, labels)?;
    Ok(dataset(&idims, ipix.to_vec(), lab.to_vec(), labels))
}

/// Finds the first of `stems` (each plain or `.gz`) in `dir`.
fn find(dir: &Path, stems: &[&str]) -> Result<PathBuf> {
    for stem in stems {
        for name in [format!("{stem}.gz"), stem.to_string()] {
            let p = dir.join(&name);
            if p.exists() {
                return Ok(p);
            }
        }
    }
    bail!("{}: no {}.gz or {} (expected MNIST-named IDX files, or an image folder with one subfolder per class: docs/data.md; the repo vendors MNIST's in data/mnist)", dir.display(), stems[0], stems.join(" or "))
}

/// The training and test sets from `dir`: MNIST's four file names (images may be
/// `*-images-idx4-ubyte` instead, for images with channels).
pub fn load_mnist(dir: &Path) -> Result<(Dataset, Dataset)> {
    let train = load_pair(
        &find(dir, &["train-images-idx3-ubyte", "train-images-idx4-ubyte"])?,
        &find(dir, &["train-labels-idx1-ubyte"])?,
    )?;
    let test = load_pair(
        &find(dir, &["t10k-images-idx3-ubyte", "t10k-images-idx4-ubyte"])?,
        &find(dir, &["t10k-labels-idx1-ubyte"])?,
    )?;
    if train.shape() != test.shape() {
        let s = |d: &Dataset| format!("{}x{}x{}", d.rows, d.cols, d.channels);
        bail!(
            "{}: training images are {} but test images are {}",
            dir.display(),
            s(&train),
            s(&test)
        );
    }
    Ok((train, test))
}

/// The number of classes of a training and a test set: the largest label of either
/// plus one.
pub fn classes(train: &Dataset, test: &Dataset) -> usize {
    train.classes().max(test.classes())
}

/// The default data directory: `data/mnist` of this repository.
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(ndims: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, ndims];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn parses_and_rejects() {
        let ok = idx(3, &[2, 2, 2], &[0; 8]);
        assert_eq!(parse_idx(&ok, 3, "x").unwrap().0, vec![2, 2, 2]);
        let e = |b: &[u8], n| parse_idx(b, n, "f").unwrap_err().to_string();
        assert!(e(&ok[..10], 3).contains("truncated IDX header"));
        assert!(e(&ok[..18], 3).contains("truncated or corrupt"));
        assert!(e(&ok, 1).contains("bad IDX magic"));
        assert!(e(&[1, 2], 1).contains("too short"));
        assert!(
            e(&idx(3, &[u32::MAX, u32::MAX, u32::MAX], &[]), 3).contains("overflow")
                || cfg!(target_pointer_width = "64")
        );
    }
}
