//! Image folders: one subfolder per class, the layout of Keras's
//! `image_dataset_from_directory` and torchvision's `ImageFolder` (docs/data.md); and
//! [`load_dir`], which tells such a folder from a directory of IDX files.
//!
//! ```text
//! DIR/cat/001.png  DIR/cat/002.jpg  DIR/dog/a.pgm ...          (split here, seeded)
//! DIR/train/cat/...  DIR/train/dog/...  DIR/test/cat/...  ...  (split by the user)
//! ```
//!
//! - Classes are the subfolders' names sorted (byte order, as `sorted()` in Python):
//!   label 0 is the first. Hidden entries (names starting with `.`) are skipped.
//! - Images are the files ending `.png`, `.jpg`, `.jpeg`, `.pgm`, `.ppm` or `.pnm`
//!   (any case), read in name order; other files are skipped. The format is told
//!   by content, through the `image` crate ([`crate::predict::decode`], with its limits).
//! - Pixels stay 8-bit, 0-255, like an IDX file's (16-bit images are scaled to 8 bits
//!   by the `image` crate), and are scaled to [0, 1] batch by batch as IDX data is.
//! - Size and channels: when the network states its input (`small`, `seed`, or a
//!   description with `input`), every image is converted to it: 1 channel is the
//!   `image` crate's luma (0.2126 R + 0.7152 G + 0.0722 B), 3 channels RGB (a grey
//!   image repeated in each), alpha dropped; an image of another size is resized to it
//!   (bilinear, `FilterType::Triangle`, aspect ratio not kept: what Keras does by
//!   default). When it does not, the data decides: all images must be one size, and
//!   have 1 channel if every image is grey, else 3.
//! - Without `train/` and `test/`, each class's images are split with a fixed seed
//!   ([`SPLIT_SEED`], not `--seed`, so that `train`, `eval` and `quantize` see the same
//!   test images): [`TEST_PERCENT`] percent of them (rounded, at least one image left
//!   for training) are the test set.
//! - Both sets are then put in a fixed shuffled order (the same seed), so that their
//!   first images are of every class.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::imageops::FilterType;
use image::DynamicImage;
use microconv::init::{mix64, Rng};
use microconv::Shape;

use crate::data::Dataset;

/// The share of each class's images that is the test set, in percent, when the folder
/// has no `train/` and `test/` subfolders.
pub const TEST_PERCENT: usize = 20;

/// The seed of that split (fixed, independent of `--seed`).
pub const SPLIT_SEED: u64 = 0x4D43_464F_4C44_4552;

/// The file name endings read as images (compared without regard to case).
pub const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "pgm", "ppm", "pnm"];

/// Most classes a folder may have: labels are bytes.
pub const MAX_CLASSES: usize = 256;

/// The MNIST file names of [`crate::data::load_mnist`], any of which makes a directory an IDX one.
const IDX_STEMS: [&str; 5] = [
    "train-images-idx3-ubyte",
    "train-images-idx4-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// The training and test sets of `dir`, whichever layout it has: MNIST-named IDX files
/// ([`crate::data::load_mnist`]) if any is there, else an image folder (this module) if it
/// has subfolders, its images converted to `target` (the network's input) if given.
/// IDX data is never converted (a shape that is not the network's is an error where
/// they meet, [`crate::train::check_data`]).
pub fn load_dir(dir: &Path, target: Option<Shape>) -> Result<(Dataset, Dataset)> {
    let idx = IDX_STEMS
        .iter()
        .any(|s| dir.join(s).exists() || dir.join(format!("{s}.gz")).exists());
    if !idx && looks_like(dir) {
        return load(dir, target);
    }
    crate::data::load_mnist(dir)
}

/// True if `dir` looks like an image folder: it has at least one subfolder.
pub fn looks_like(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut it| {
        it.any(|e| {
            e.is_ok_and(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
        })
    })
}

/// The training and test sets of the image folder `dir`, converted to `target` if
/// given (see the module doc).
pub fn load(dir: &Path, target: Option<Shape>) -> Result<(Dataset, Dataset)> {
    let (train_dir, test_dir) = (dir.join("train"), dir.join("test"));
    if train_dir.is_dir() && test_dir.is_dir() {
        let train = classes(&train_dir)?;
        let test = classes(&test_dir)?;
        let names = |c: &[Class]| c.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        if names(&train) != names(&test) {
            bail!(
                "{}: its classes ({}) are not {}'s ({}): train/ and test/ need the same class subfolders",
                test_dir.display(),
                names(&test).join(", "),
                train_dir.display(),
                names(&train).join(", ")
            );
        }
        let all: Vec<Vec<PathBuf>> = train.iter().map(|c| c.files.clone()).collect();
        let tests: Vec<Vec<PathBuf>> = test.iter().map(|c| c.files.clone()).collect();
        let (tr, shape) = read_set(&all, target, true, &train_dir)?;
        let (te, _) = read_set(&tests, Some(shape), target.is_some(), &test_dir)?;
        return Ok(named(tr, te, names(&train)));
    }
    if train_dir.is_dir() != test_dir.is_dir() {
        let (has, lacks) = if train_dir.is_dir() {
            ("train", "test")
        } else {
            ("test", "train")
        };
        bail!(
            "{}: has {has}/ but no {lacks}/: give both (each with the class subfolders), or neither (then {TEST_PERCENT}% of each class is the test set)",
            dir.display()
        );
    }
    let cls = classes(dir)?;
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (k, c) in cls.iter().enumerate() {
        let (tr, te) = split(&c.files, k);
        train.push(tr);
        test.push(te);
    }
    if test.iter().all(|t| t.is_empty()) {
        bail!(
            "{}: too few images for a test set ({TEST_PERCENT}% of each class, rounded; a class needs 3 images to give one): add images, or give train/ and test/ subfolders",
            dir.display()
        );
    }
    let names: Vec<String> = cls.iter().map(|c| c.name.clone()).collect();
    let (tr, shape) = read_set(&train, target, true, dir)?;
    let (te, _) = read_set(&test, Some(shape), target.is_some(), dir)?;
    Ok(named(tr, te, names))
}

/// The two sets with the class names, each in a fixed shuffled order (read class by
/// class, the first images of a set would all be of class 0: `quantize` calibrates on
/// the first training images, `board --images N` sends the first test images).
fn named(tr: Dataset, te: Dataset, names: Vec<String>) -> (Dataset, Dataset) {
    let shuffled = |d: Dataset, salt: u64| {
        let mut order: Vec<usize> = (0..d.len()).collect();
        Rng::new(mix64(SPLIT_SEED ^ salt)).shuffle(&mut order);
        Dataset {
            class_names: names.clone(),
            ..d.subset(&order)
        }
    };
    (
        shuffled(tr, 0x5452_4149_4E00),
        shuffled(te, 0x5445_5354_0000),
    )
}

/// The number of test images of a class of `n` images: [`TEST_PERCENT`] percent,
/// rounded, leaving at least one for training.
pub fn test_count(n: usize) -> usize {
    ((n * TEST_PERCENT + 50) / 100).min(n.saturating_sub(1))
}

/// Splits class `k`'s files (in name order) into training and test files, both kept in
/// name order; which are test files is decided by [`SPLIT_SEED`] and `k` only.
fn split(files: &[PathBuf], k: usize) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut order: Vec<usize> = (0..files.len()).collect();
    Rng::new(mix64(SPLIT_SEED ^ k as u64)).shuffle(&mut order);
    let mut is_test = vec![false; files.len()];
    for &i in &order[..test_count(files.len())] {
        is_test[i] = true;
    }
    let pick = |t: bool| {
        files
            .iter()
            .zip(&is_test)
            .filter(|(_, &x)| x == t)
            .map(|(f, _)| f.clone())
            .collect()
    };
    (pick(false), pick(true))
}

/// A class subfolder: its name and its image files in name order.
struct Class {
    name: String,
    files: Vec<PathBuf>,
}

/// The entries of `dir` that `keep` accepts, sorted by name, hidden ones skipped.
fn entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut v = Vec::new();
    for e in rd {
        let e = e.with_context(|| format!("cannot read {}", dir.display()))?;
        let p = e.path();
        if !e.file_name().to_string_lossy().starts_with('.') && keep(&p) {
            v.push(p);
        }
    }
    v.sort();
    Ok(v)
}

/// True if `p`'s name ends in one of [`EXTENSIONS`].
fn is_image_name(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// The class subfolders of `dir`, each with at least one image.
fn classes(dir: &Path) -> Result<Vec<Class>> {
    let subdirs = entries(dir, |p| p.is_dir())?;
    if subdirs.is_empty() {
        bail!(
            "{}: no class subfolders (an image folder has one subfolder of images per class, docs/data.md)",
            dir.display()
        );
    }
    if subdirs.len() > MAX_CLASSES {
        bail!(
            "{}: {} class subfolders, more than the {MAX_CLASSES} classes labels can tell apart",
            dir.display(),
            subdirs.len()
        );
    }
    let mut out = Vec::with_capacity(subdirs.len());
    for d in subdirs {
        let Some(name) = d.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            bail!(
                "{}: the class folder's name is not UTF-8 (class names are stored as text)",
                d.display()
            );
        };
        if name.contains(['\n', '\r']) {
            bail!(
                "{}: the class folder's name has a line break (class names are stored one a line)",
                d.display()
            );
        }
        let files = entries(&d, |p| p.is_file() && is_image_name(p))?;
        if files.is_empty() {
            bail!(
                "{}: empty class folder: no images (files ending .{})",
                d.display(),
                EXTENSIONS.join(", .")
            );
        }
        out.push(Class { name, files });
    }
    Ok(out)
}

/// Reads the images `files[k]` of every class `k` into one dataset, converted to
/// `target` or, without one, to the shape the images have (which must be one). With a
/// target and `resize` false (the test images of a folder whose training images
/// decided the shape), an image of another size is an error too, not resized.
fn read_set(
    files: &[Vec<PathBuf>],
    target: Option<Shape>,
    resize: bool,
    dir: &Path,
) -> Result<(Dataset, Shape)> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    // Without a target: every image as RGB, the first one's size, and whether any has
    // colour (if none does, the set is grey: every third byte).
    let mut first: Option<(String, u32, u32)> = None;
    let mut colour = false;
    for (k, class) in files.iter().enumerate() {
        for f in class {
            let img = read(f)?;
            let what = f.display().to_string();
            labels.push(k as u8);
            let (w, h) = (img.width(), img.height());
            match target {
                Some(t) if !resize && (w as usize, h as usize) != (t.w, t.h) => bail!(
                    "{what}: {w}x{h} pixels, but the training images are {}x{}: the images of a folder must be one size, or the network must state its `input` (then every image is resized to it)",
                    t.w,
                    t.h
                ),
                Some(t) => images.extend(convert(&img, t, &what)?),
                None => {
                    match &first {
                        None => first = Some((what, w, h)),
                        Some((p, w0, h0)) if (w, h) != (*w0, *h0) => bail!(
                            "{what}: {w}x{h} pixels, but {p} is {w0}x{h0}: the images of a folder must be one size, or the network must state its `input` (then every image is resized to it)"
                        ),
                        Some(_) => {}
                    }
                    colour |= img.color().has_color();
                    images.extend_from_slice(img.to_rgb8().as_raw());
                }
            }
        }
    }
    let shape = match (target, &first) {
        (Some(t), _) => t,
        (None, Some((_, w, h))) => Shape::new(*h as usize, *w as usize, if colour { 3 } else { 1 }),
        (None, None) => bail!("{}: no images", dir.display()),
    };
    if target.is_none() && !colour {
        images = images.iter().step_by(3).copied().collect();
    }
    let ds = Dataset {
        images,
        labels,
        rows: shape.h,
        cols: shape.w,
        channels: shape.c,
        labels_file: dir.display().to_string(),
        class_names: Vec::new(),
    };
    Ok((ds, shape))
}

/// Decodes one image file (within [`crate::predict::limits`]).
pub fn read(path: &Path) -> Result<DynamicImage> {
    crate::predict::load(path)
}

/// `img` as a network input of shape `t`: 8-bit values, row-major, channels fastest
/// (see the module doc for how). `what` names the image in errors.
pub fn convert(img: &DynamicImage, t: Shape, what: &str) -> Result<Vec<u8>> {
    let (w, h) = (t.w as u32, t.h as u32);
    if img.width() == 0 || img.height() == 0 {
        bail!("{what}: the image is empty");
    }
    let resize = img.width() != w || img.height() != h;
    Ok(match t.c {
        1 => {
            let g = img.to_luma8();
            if resize {
                image::imageops::resize(&g, w, h, FilterType::Triangle).into_raw()
            } else {
                g.into_raw()
            }
        }
        3 => {
            let c = img.to_rgb8();
            if resize {
                image::imageops::resize(&c, w, h, FilterType::Triangle).into_raw()
            } else {
                c.into_raw()
            }
        }
        c => bail!(
            "{what}: the network takes {c} channels per pixel; images convert to 1 (grey) or 3 (RGB)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_fixed_and_leaves_training_images() {
        assert_eq!(
            (0..7).map(test_count).collect::<Vec<_>>(),
            [0, 0, 0, 1, 1, 1, 1]
        );
        assert_eq!(test_count(10), 2);
        assert_eq!(test_count(100), 20);
        let files: Vec<PathBuf> = (0..10).map(|i| PathBuf::from(format!("{i}.png"))).collect();
        let (a, b) = split(&files, 3);
        assert_eq!((a.len(), b.len()), (8, 2));
        assert_eq!(split(&files, 3), (a.clone(), b.clone()));
        // Another class is split otherwise (the seed mixes in the class).
        let others: Vec<_> = (0..8).map(|k| split(&files, k).1).collect();
        assert!(others.iter().any(|o| o != &b), "{others:?}");
        let mut all = [a, b].concat();
        all.sort();
        assert_eq!(all, files);
    }

    #[test]
    fn grey_pngs_read_back_as_the_bytes_written() {
        // An MNIST-like folder of grey PNGs gives the bytes an IDX file would, with a
        // stated 4x3x1 input and with the shape left to the data.
        let dir = std::env::temp_dir().join(format!("mc-folder-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut written = Vec::new();
        for (k, class) in ["a", "b"].iter().enumerate() {
            std::fs::create_dir_all(dir.join(class)).unwrap();
            for i in 0..5u8 {
                let px: Vec<u8> = (0..12u8).map(|j| j * 20 + i + k as u8 * 7).collect();
                let img = image::GrayImage::from_raw(3, 4, px.clone()).unwrap();
                img.save(dir.join(class).join(format!("{i}.png"))).unwrap();
                written.push((k as u8, px));
            }
        }
        for target in [None, Some(Shape::new(4, 3, 1))] {
            let (tr, te) = load(&dir, target).unwrap();
            assert_eq!(
                (tr.shape(), tr.len(), te.len()),
                (Shape::new(4, 3, 1), 8, 2)
            );
            assert_eq!(tr.class_names, ["a", "b"]);
            for d in [&tr, &te] {
                for i in 0..d.len() {
                    let want = (d.labels[i], d.image(i).to_vec());
                    assert!(written.contains(&want), "{want:?}");
                }
            }
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn conversion_to_grey_and_to_another_size() {
        let rgb =
            DynamicImage::ImageRgb8(image::RgbImage::from_pixel(4, 2, image::Rgb([255, 0, 0])));
        // Luma of pure red: 0.2126 * 255 = 54.2.
        let g = convert(&rgb, Shape::new(2, 4, 1), "r").unwrap();
        assert_eq!(g, vec![54; 8]);
        let c = convert(&rgb, Shape::new(3, 3, 3), "r").unwrap();
        assert_eq!(c.len(), 27);
        assert_eq!(&c[..3], &[255, 0, 0]);
        let e = convert(&rgb, Shape::new(3, 3, 2), "r.png").unwrap_err();
        assert!(e
            .to_string()
            .starts_with("r.png: the network takes 2 channels"));
    }
}
