//! `host-trainer predict`: classify image files a user has (PNG, JPEG, PGM/PPM), brought to
//! MNIST's convention first.
//!
//! MNIST digits are white ink on black, the ink's bounding box scaled to fit 20x20 pixels
//! (aspect kept), placed in a 28x28 image so that the ink's centre of mass is at the centre
//! (LeCun et al.). [`to_mnist`] does the same to any picture, photos of paper included
//! (uneven light, specks, blur, margins); [`prepare`] also says when the picture looks
//! unlike a single digit:
//! 1. grey levels (ITU-R 601 luma); transparent pixels are laid over white paper; pictures
//!    longer than 256 pixels are scaled down to 256 (area-averaging filter);
//! 2. polarity: MNIST's ink is bright; with [`Polarity::Auto`] the picture is inverted when
//!    its border (the outermost rows and columns) is brighter than mid-grey, as on paper;
//! 3. background estimated locally, so that light falling off across the page is not
//!    taken for ink: the lower of a flat opening (square of a quarter of the shorter side:
//!    strokes and specks removed) and a median (half the shorter side: the thick parts of
//!    a bold digit removed), on the picture with its edge pixels repeated outwards;
//!    subtracted, and for dark ink on paper divided by the paper's local brightness;
//! 4. ink: levels above Otsu's threshold (at least 20% of the brightest), in 8-connected
//!    components; the digit is the heaviest component with the pieces of some weight
//!    close to it; specks and smudges are dropped. No component, or only one smaller than
//!    a tenth of the shorter side, is "no digit found"; another large mark beside the digit
//!    or ink touching the picture's edge is a warning;
//! 5. the digit's pixels (and a one-pixel rim) stretched so that its 90th percentile is
//!    white, its bounding box scaled (area-averaging filter) so that its longer side is 20
//!    pixels;
//! 6. placed in 28x28 by its centre of mass, as MNIST did; values scaled to `[0, 1]`.

use std::io::Cursor;
use std::panic::AssertUnwindSafe;
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, ImageBuffer, ImageError, ImageReader, Limits, Luma};

/// Which way round the picture's ink is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Polarity {
    /// Decide from the border: a light border means dark ink on light paper.
    Auto,
    /// Dark ink on a light background (invert it).
    DarkInk,
    /// Light ink on a dark background, like MNIST (keep it).
    LightInk,
}

/// Size of MNIST images.
pub const SIDE: usize = 28;
/// Size of the box the ink is scaled into.
const INK_BOX: u32 = 20;

/// Largest width or height [`load`] accepts: larger pictures are refused with a clear
/// error instead of being decoded (a 48-megapixel phone photo, 8064x6048, still fits).
pub const MAX_SIDE: u32 = 8192;
/// Most bytes [`load`] lets the decoder allocate (256 MiB).
pub const MAX_ALLOC: u64 = 256 << 20;

/// The decoding limits of [`load`]: [`MAX_SIDE`] and [`MAX_ALLOC`].
pub fn limits() -> Limits {
    let mut l = Limits::default();
    l.max_image_width = Some(MAX_SIDE);
    l.max_image_height = Some(MAX_SIDE);
    l.max_alloc = Some(MAX_ALLOC);
    l
}

/// Largest picture file [`load`] reads (its compressed bytes; the decoded pixels are
/// bounded by [`limits`]): 256 MiB, far above any photo.
pub const MAX_FILE: u64 = 256 << 20;

/// Decodes an image file (format from its content, not its name), within [`limits`].
pub fn load(path: &Path) -> Result<DynamicImage> {
    let bytes = crate::bytes::read_at_most(path, MAX_FILE, "picture file")?;
    decode(&bytes, limits(), &path.display().to_string())
}

/// Decodes the bytes of an image file (format from its content) within `limits`; `what`
/// names the file in errors. A picture over the limits is refused before its pixels are
/// decoded, so a small file announcing a huge picture cannot exhaust the memory.
pub fn decode(bytes: &[u8], limits: Limits, what: &str) -> Result<DynamicImage> {
    let reader = || {
        ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .with_context(|| format!("cannot read {what}"))
    };
    let unreadable =
        |e| anyhow::anyhow!("{what}: not an image this build can read (PNG, JPEG, PGM/PPM): {e}");
    let (w, h) = reader()?.into_dimensions().map_err(unreadable)?;
    let (max_w, max_h) = (
        limits.max_image_width.unwrap_or(u32::MAX),
        limits.max_image_height.unwrap_or(u32::MAX),
    );
    if w > max_w || h > max_h {
        bail!("{what}: the picture is {w}x{h} pixels, more than the {max_w}x{max_h} this command reads (scale it down first)");
    }
    if let Some(len) = bad_png_palette(bytes) {
        bail!("{what}: not a valid PNG (its palette chunk is {len} bytes, not whole RGB entries)");
    }
    let mut reader = reader()?;
    reader.limits(limits);
    // A decoder's bug on a malformed file is that file's error, not the end of the
    // command (which may have other files to classify).
    let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| reader.decode()))
        .map_err(|_| anyhow::anyhow!("{what}: the image decoder failed on this file (corrupt?)"))?;
    decoded.map_err(|e| match e {
        ImageError::Limits(_) => anyhow::anyhow!(
            "{what}: the {w}x{h} picture needs more memory to decode than this command allows (scale it down first): {e}"
        ),
        e => unreadable(e),
    })
}

/// The length of a PNG's palette chunk (PLTE) if it is not a multiple of 3 bytes.
///
/// png 0.18.1 panics on such a palette (image-rs/image-png issue 694, fixed upstream
/// after that release), so [`decode`] refuses it first; remove this check once a fixed
/// png is in Cargo.lock.
fn bad_png_palette(bytes: &[u8]) -> Option<usize> {
    let mut rest = bytes.strip_prefix(b"\x89PNG\r\n\x1a\n")?;
    // Chunks: length (u32 BE), type, data, CRC; the palette comes before the pixels.
    while rest.len() >= 8 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        match &rest[4..8] {
            b"PLTE" if !len.is_multiple_of(3) => return Some(len),
            b"IDAT" | b"IEND" => return None,
            _ => {}
        }
        rest = rest.get(len.saturating_add(12)..)?;
    }
    None
}

/// Grey levels with transparency laid over white.
fn grey(img: &DynamicImage) -> GrayImage {
    let rgba = img.to_rgba8();
    let mut g = GrayImage::new(rgba.width(), rgba.height());
    for (d, s) in g.pixels_mut().zip(rgba.pixels()) {
        let [r, gr, b, a] = s.0.map(|v| v as f32);
        let luma = 0.299 * r + 0.587 * gr + 0.114 * b;
        let a = a / 255.0;
        *d = Luma([(luma * a + 255.0 * (1.0 - a)).round() as u8]);
    }
    g
}

/// The levels of the outermost rows and columns.
fn border(g: &GrayImage) -> Vec<u8> {
    let (w, h) = g.dimensions();
    let mut v = Vec::with_capacity(2 * (w + h) as usize);
    for x in 0..w {
        v.push(g.get_pixel(x, 0).0[0]);
        v.push(g.get_pixel(x, h - 1).0[0]);
    }
    for y in 0..h {
        v.push(g.get_pixel(0, y).0[0]);
        v.push(g.get_pixel(w - 1, y).0[0]);
    }
    v.sort_unstable();
    v
}

/// Longest side the picture is worked on at: larger pictures are scaled down first (the
/// digit ends up 20 pixels tall; a 4000x3000 photo need not be filtered at full size).
const WORK_SIDE: u32 = 256;

/// What [`prepare`] made of a picture.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    /// 28x28 values in `[0, 1]`, row-major: what the network is given.
    pub x: Vec<f32>,
    /// Why the picture looks unlike a single digit, one line each (empty when it does).
    pub warnings: Vec<String>,
}

/// The picture as MNIST would have it: 28x28 values in `[0, 1]`, row-major (see the
/// module doc for every step). `what` names the file in errors.
pub fn to_mnist(img: &DynamicImage, polarity: Polarity, what: &str) -> Result<Vec<f32>> {
    prepare(img, polarity, what).map(|p| p.x)
}

/// Flat square opening (erosion then dilation) of side `2 * r + 1`, done as a row and a
/// column pass each: bright features narrower than the square are removed, the rest kept.
fn open_square(g: &GrayImage, r: u8) -> GrayImage {
    use imageproc::morphology::{grayscale_dilate, grayscale_erode, Mask};
    let side = 2 * u32::from(r) + 1;
    let row = Mask::from_image(&GrayImage::from_pixel(side, 1, Luma([255])), r, 0);
    let col = Mask::from_image(&GrayImage::from_pixel(1, side, Luma([255])), 0, r);
    let e = grayscale_erode(&grayscale_erode(g, &row), &col);
    grayscale_dilate(&grayscale_dilate(&e, &row), &col)
}

/// One connected component of the thresholded ink.
#[derive(Clone, Copy, Debug)]
struct Component {
    /// Sum of the ink levels of its pixels.
    mass: f64,
    x0: u32,
    y0: u32,
    x1: u32,
    y1: u32,
}

impl Component {
    /// Gap between two boxes along their farther-apart axis, in pixels (0 if they overlap).
    fn gap(&self, o: &Component) -> u32 {
        let gx =
            o.x0.saturating_sub(self.x1)
                .max(self.x0.saturating_sub(o.x1));
        let gy =
            o.y0.saturating_sub(self.y1)
                .max(self.y0.saturating_sub(o.y1));
        gx.max(gy)
    }
    fn longer_side(&self) -> u32 {
        (self.x1 - self.x0 + 1).max(self.y1 - self.y0 + 1)
    }
}

/// [`to_mnist`] with the warnings: the picture as MNIST would have it, and why it may
/// not hold a single digit (no ink standing out is an error).
pub fn prepare(img: &DynamicImage, polarity: Polarity, what: &str) -> Result<Prepared> {
    if img.width() == 0 || img.height() == 0 {
        bail!("{what}: the image is empty");
    }
    let mut g = working_grey(img);
    let b = border(&g);
    let median = b[b.len() / 2];
    let invert = match polarity {
        Polarity::Auto => median > 127,
        Polarity::DarkInk => true,
        Polarity::LightInk => false,
    };
    if invert {
        image::imageops::invert(&mut g);
    }
    let ink = Ink::find(ink_levels(&g, invert, what)?);
    let (keep, others) = ink.digit(what)?;
    let mut warnings = Vec::new();
    if others > 0 {
        warnings.push(format!(
            "it looks like several digits ({} large mark{} besides the one classified): crop the picture to one",
            others,
            if others == 1 { "" } else { "s" }
        ));
    }
    let (w, h) = ink.levels.dimensions();
    let (x0, y0, x1, y1) = ink.kept_box(&keep);
    if x0 == 0 || y0 == 0 || x1 == w - 1 || y1 == h - 1 {
        warnings.push(
            "the ink touches the picture's edge: the digit may be cut off (leave a margin)"
                .to_string(),
        );
    }
    Ok(Prepared {
        x: place(&ink.crop(&keep, (x0, y0, x1, y1))),
        warnings,
    })
}

/// The picture in grey, scaled down to at most [`WORK_SIDE`] on its longer side.
fn working_grey(img: &DynamicImage) -> GrayImage {
    let mut g = grey(img);
    let (w0, h0) = g.dimensions();
    if w0.max(h0) > WORK_SIDE {
        let s = WORK_SIDE as f64 / w0.max(h0) as f64;
        let (w, h) = (
            ((w0 as f64 * s).round() as u32).max(1),
            ((h0 as f64 * s).round() as u32).max(1),
        );
        g = image::imageops::resize(&g, w, h, FilterType::Triangle);
    }
    g
}

/// How far each pixel of `g` (light ink on dark, `invert`ed if it was dark ink) stands
/// out from its local background, scaled so that the most ink is 255. No ink standing
/// out is an error.
fn ink_levels(g: &GrayImage, invert: bool, what: &str) -> Result<GrayImage> {
    let (w, h) = g.dimensions();
    // The background, estimated locally: what is left once the strokes are taken out.
    // An opening removes bright features narrower than its square (strokes, specks); a
    // median over a larger square removes what covers less than half of it (the thick
    // parts of a bold digit). The lower of the two is kept.
    let side = w.min(h);
    let r_open = (side / 8).clamp(2, 120);
    let r_median = (side / 4).clamp(3, 200);
    // Both filters see the picture with its edge pixels repeated outwards, so that light
    // growing towards an edge is followed up to the edge rather than cut off short.
    let pad = r_median.max(2 * r_open);
    let padded = GrayImage::from_fn(w + 2 * pad, h + 2 * pad, |x, y| {
        *g.get_pixel(
            x.saturating_sub(pad).min(w - 1),
            y.saturating_sub(pad).min(h - 1),
        )
    });
    let opened = open_square(&padded, r_open as u8);
    let med = imageproc::filter::median_filter(&padded, r_median, r_median);
    let background = |x: u32, y: u32| {
        let (x, y) = (x + pad, y + pad);
        opened.get_pixel(x, y).0[0].min(med.get_pixel(x, y).0[0])
    };
    let mut ink = vec![0f32; (w * h) as usize];
    for (i, (x, y, v)) in g.enumerate_pixels().enumerate() {
        let bg = background(x, y) as f32;
        let d = (v.0[0] as f32 - bg).max(0.0);
        // Dark ink on paper: the light falling on the paper scales the ink's contrast
        // too, so divide by the paper's local brightness (255 - bg once inverted).
        ink[i] = if invert {
            d * 255.0 / (255.0 - bg).max(32.0)
        } else {
            d
        };
    }
    let peak = ink.iter().cloned().fold(0.0f32, f32::max);
    if peak <= 25.0 {
        bail!("{what}: no digit found (the image has no ink that stands out from its background)");
    }
    Ok(GrayImage::from_fn(w, h, |x, y| {
        Luma([(ink[(y * w + x) as usize] * 255.0 / peak)
            .round()
            .min(255.0) as u8])
    }))
}

/// The thresholded ink of a picture and its connected components.
struct Ink {
    /// [`ink_levels`]' output.
    levels: GrayImage,
    /// Otsu's threshold of `levels`.
    t: u8,
    /// 255 where `levels` is above `t`.
    mask: GrayImage,
    /// The component of each pixel of `mask` (0: none, else index + 1 in `comps`).
    labels: ImageBuffer<Luma<u32>, Vec<u32>>,
    comps: Vec<Component>,
    /// The heaviest component (0 when there is none: [`Ink::digit`] says so).
    main: usize,
}

impl Ink {
    /// Ink is what Otsu's threshold says is brighter than the background (at least 20%
    /// of the brightest), in 8-connected components.
    fn find(levels: GrayImage) -> Ink {
        use imageproc::region_labelling::{connected_components, Connectivity};
        let (w, h) = levels.dimensions();
        let t = imageproc::contrast::otsu_level(&levels).max(51);
        let mask = GrayImage::from_fn(w, h, |x, y| {
            Luma([if levels.get_pixel(x, y).0[0] > t {
                255
            } else {
                0
            }])
        });
        let labels = connected_components(&mask, Connectivity::Eight, Luma([0u8]));
        let mut comps: Vec<Component> = Vec::new();
        for (x, y, l) in labels.enumerate_pixels() {
            let l = l.0[0] as usize;
            if l == 0 {
                continue;
            }
            if comps.len() < l {
                comps.resize(
                    l,
                    Component {
                        mass: 0.0,
                        x0: u32::MAX,
                        y0: u32::MAX,
                        x1: 0,
                        y1: 0,
                    },
                );
            }
            let c = &mut comps[l - 1];
            c.mass += levels.get_pixel(x, y).0[0] as f64;
            (c.x0, c.y0, c.x1, c.y1) = (c.x0.min(x), c.y0.min(y), c.x1.max(x), c.y1.max(y));
        }
        let main = (0..comps.len())
            .max_by(|&a, &b| comps[a].mass.total_cmp(&comps[b].mass))
            .unwrap_or(0);
        Ink {
            levels,
            t,
            mask,
            labels,
            comps,
            main,
        }
    }

    /// Which components make the digit: the largest component, with the parts of some
    /// weight close to it (a stroke the threshold cut off, the bar of a 5); a mark as
    /// heavy as a third of it and beside it rather than above or below is another digit.
    /// Everything else (specks, smudges) is dropped. Returns which components are kept
    /// and how many large ones (other digits, likely) are not. No component, or specks
    /// and dust alone, is an error.
    fn digit(&self, what: &str) -> Result<(Vec<bool>, usize)> {
        let no_digit = || {
            anyhow::anyhow!(
                "{what}: no digit found (the image has no ink that stands out from its background)"
            )
        };
        let comps = &self.comps;
        let main = self.main;
        let m = *comps.get(main).ok_or_else(no_digit)?;
        // Specks and dust alone: the largest mark is too small to be a digit.
        let (w, h) = self.levels.dimensions();
        if m.longer_side() < (w.min(h) / 10).max(3) {
            return Err(no_digit());
        }
        let near = (m.longer_side() / 4).max(2);
        let beside = |c: &Component| {
            let overlap = (c.x1.min(m.x1) + 1).saturating_sub(c.x0.max(m.x0));
            let narrower = (c.x1 - c.x0 + 1).min(m.x1 - m.x0 + 1);
            10 * overlap < 3 * narrower
        };
        let large = |c: &Component| c.mass >= 0.3 * m.mass;
        let keep: Vec<bool> = comps
            .iter()
            .enumerate()
            .map(|(i, c)| {
                i == main
                    || (c.mass >= 0.05 * m.mass && c.gap(&m) <= near && !(large(c) && beside(c)))
            })
            .collect();
        let others = comps
            .iter()
            .zip(&keep)
            .filter(|&(c, &k)| !k && large(c))
            .count();
        Ok((keep, others))
    }

    /// The bounding box `(x0, y0, x1, y1)` (inclusive) of the kept components.
    fn kept_box(&self, keep: &[bool]) -> (u32, u32, u32, u32) {
        let (w, h) = self.levels.dimensions();
        let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
        for (c, _) in self.comps.iter().zip(keep).filter(|(_, &k)| k) {
            (x0, y0, x1, y1) = (x0.min(c.x0), y0.min(c.y0), x1.max(c.x1), y1.max(c.y1));
        }
        (x0, y0, x1, y1)
    }

    /// The kept ink with its anti-aliased rim (one pixel around), from the threshold's
    /// half up, stretched so that the ink's 90th percentile is white, cropped to `bbox`
    /// and a pixel around it.
    fn crop(&self, keep: &[bool], (x0, y0, x1, y1): (u32, u32, u32, u32)) -> GrayImage {
        let (w, h) = self.levels.dimensions();
        let (levels, labels) = (&self.levels, &self.labels);
        let kept = GrayImage::from_fn(w, h, |x, y| {
            let l = labels.get_pixel(x, y).0[0] as usize;
            Luma([if l > 0 && keep[l - 1] { 255 } else { 0 }])
        });
        let kept =
            imageproc::morphology::dilate(&kept, imageproc::distance_transform::Norm::LInf, 1);
        let mut core: Vec<u8> = levels
            .pixels()
            .zip(kept.pixels())
            .zip(self.mask.pixels())
            .filter(|((_, k), m)| k.0[0] > 0 && m.0[0] > 0)
            .map(|((v, _), _)| v.0[0])
            .collect();
        core.sort_unstable();
        let hi = core.get(core.len() * 9 / 10).copied().unwrap_or(255) as f32;
        let lo = self.t as f32 / 2.0;
        let (x0, y0) = (x0.saturating_sub(1), y0.saturating_sub(1));
        let (x1, y1) = ((x1 + 1).min(w - 1), (y1 + 1).min(h - 1));
        let (bw, bh) = (x1 - x0 + 1, y1 - y0 + 1);
        GrayImage::from_fn(bw, bh, |x, y| {
            let (x, y) = (x + x0, y + y0);
            if kept.get_pixel(x, y).0[0] == 0 {
                return Luma([0]);
            }
            let v = (levels.get_pixel(x, y).0[0] as f32 - lo) / (hi - lo).max(1.0);
            Luma([(v.clamp(0.0, 1.0) * 255.0).round() as u8])
        })
    }
}

/// The ink (a crop of its bounding box) scaled so that its longer side is 20 pixels and
/// placed in 28x28 by its centre of mass, values in `[0, 1]`.
fn place(crop: &GrayImage) -> Vec<f32> {
    let (bw, bh) = crop.dimensions();
    let scale = INK_BOX as f32 / bw.max(bh) as f32;
    let (nw, nh) = (
        ((bw as f32 * scale).round() as u32).clamp(1, INK_BOX),
        ((bh as f32 * scale).round() as u32).clamp(1, INK_BOX),
    );
    let small = image::imageops::resize(crop, nw, nh, FilterType::Triangle);
    // Centre of mass of the scaled ink, placed at the centre of 28x28.
    let (mut m, mut mx, mut my) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y, p) in small.enumerate_pixels() {
        let v = p.0[0] as f64;
        m += v;
        mx += v * (x as f64 + 0.5);
        my += v * (y as f64 + 0.5);
    }
    let (cx, cy) = if m > 0.0 {
        (mx / m, my / m)
    } else {
        (nw as f64 / 2.0, nh as f64 / 2.0)
    };
    let half = SIDE as f64 / 2.0;
    let (ox, oy) = ((half - cx).round() as i64, (half - cy).round() as i64);
    let mut out = vec![0.0f32; SIDE * SIDE];
    for (x, y, p) in small.enumerate_pixels() {
        let (tx, ty) = (x as i64 + ox, y as i64 + oy);
        if (0..SIDE as i64).contains(&tx) && (0..SIDE as i64).contains(&ty) {
            out[ty as usize * SIDE + tx as usize] = p.0[0] as f32 / 255.0;
        }
    }
    out
}

/// Saves 28x28 values in `[0, 1]` as an 8-bit grey PNG (what the network saw).
pub fn save_png(x: &[f32], path: &Path) -> Result<()> {
    let img = GrayImage::from_fn(SIDE as u32, SIDE as u32, |c, r| {
        Luma([(x[r as usize * SIDE + c as usize] * 255.0).round() as u8])
    });
    img.save(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Softmax probabilities of one row of logits.
pub fn probabilities(logits: &[f32]) -> Vec<f32> {
    let lse = microconv::loss::log_sum_exp(logits);
    logits.iter().map(|&l| (l - lse).exp()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thick bar (a "1") drawn dark on light paper, off-centre in a 60x90 picture.
    fn dark_bar() -> DynamicImage {
        let mut g = GrayImage::from_pixel(60, 90, Luma([230]));
        for y in 10..50 {
            for x in 8..14 {
                g.put_pixel(x, y, Luma([20]));
            }
        }
        DynamicImage::ImageLuma8(g)
    }

    #[test]
    fn any_picture_becomes_an_mnist_digit() {
        let x = to_mnist(&dark_bar(), Polarity::Auto, "bar").unwrap();
        assert_eq!(x.len(), SIDE * SIDE);
        // Inverted (bright ink), background 0, the ink 20 pixels tall and centred.
        let rows: Vec<usize> = (0..SIDE)
            .filter(|&r| x[r * SIDE..][..SIDE].iter().any(|&v| v > 0.5))
            .collect();
        assert_eq!(rows.len(), 20, "{rows:?}");
        assert_eq!((rows[0] + rows[19]) / 2, 13, "{rows:?}");
        let cols: Vec<usize> = (0..SIDE)
            .filter(|&c| (0..SIDE).any(|r| x[r * SIDE + c] > 0.5))
            .collect();
        let mid = (cols[0] + cols[cols.len() - 1]) as f64 / 2.0;
        assert!((mid - 13.5).abs() <= 1.0, "{cols:?}");
        assert_eq!(x[0], 0.0);
        assert!(x.iter().cloned().fold(0.0, f32::max) > 0.99);
        // Told the ink is light, nothing is brighter than the paper: an error, no guess.
        assert!(to_mnist(&dark_bar(), Polarity::LightInk, "bar").is_err());
        assert_eq!(to_mnist(&dark_bar(), Polarity::DarkInk, "bar").unwrap(), x);
        // Nothing on it: a clear error, not a guess.
        let blank = DynamicImage::ImageLuma8(GrayImage::from_pixel(10, 10, Luma([200])));
        let e = to_mnist(&blank, Polarity::Auto, "blank.png")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("blank.png: no digit found"), "{e}");
    }

    /// Dark bars on paper lit from the left and falling to a third on the right, with
    /// dark specks: `bars` are (x0, x1, y0, y1).
    fn shaded(bars: &[(u32, u32, u32, u32)]) -> DynamicImage {
        let (w, h) = (120, 90);
        let g = GrayImage::from_fn(w, h, |x, y| {
            let light = 1.0 - 0.65 * x as f32 / w as f32;
            let ink = bars
                .iter()
                .any(|&(x0, x1, y0, y1)| (x0..x1).contains(&x) && (y0..y1).contains(&y));
            let speck = (x * 7 + y * 13) % 97 == 0;
            let paper = if ink || speck { 30.0 } else { 235.0 };
            Luma([(paper * light) as u8])
        });
        DynamicImage::ImageLuma8(g)
    }

    #[test]
    fn uneven_light_and_specks_are_not_ink_and_odd_pictures_are_warned_about() {
        let one = prepare(&shaded(&[(50, 58, 20, 70)]), Polarity::Auto, "one").unwrap();
        assert_eq!(one.warnings, Vec::<String>::new());
        // Only the bar: 20 rows tall, a few columns wide, nothing of the dark side.
        let cols = (0..SIDE)
            .filter(|&c| (0..SIDE).any(|r| one.x[r * SIDE + c] > 0.5))
            .count();
        let rows = (0..SIDE)
            .filter(|&r| one.x[r * SIDE..][..SIDE].iter().any(|&v| v > 0.5))
            .count();
        assert!((2..=5).contains(&cols) && rows == 20, "{cols} {rows}");
        let two = prepare(
            &shaded(&[(30, 38, 20, 70), (70, 78, 20, 70)]),
            Polarity::Auto,
            "two",
        )
        .unwrap();
        assert_eq!(two.warnings.len(), 1, "{:?}", two.warnings);
        assert!(two.warnings[0].starts_with("it looks like several digits (1 large mark"));
        let edge = prepare(&shaded(&[(110, 120, 20, 70)]), Polarity::Auto, "edge").unwrap();
        assert!(
            edge.warnings
                .iter()
                .any(|w| w.starts_with("the ink touches the picture's edge")),
            "{:?}",
            edge.warnings
        );
        // Specks alone are no digit.
        let e = prepare(&shaded(&[]), Polarity::Auto, "specks.png")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("specks.png: no digit found"), "{e}");
    }

    /// A PNG announcing `w`x`h` pixels, with (almost) no pixel data.
    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend(w.to_be_bytes());
        ihdr.extend(h.to_be_bytes());
        ihdr.extend([8, 0, 0, 0, 0]); // 8-bit grey, no interlace
                                      // An empty zlib stream stands for the pixels.
        let chunks: [(&[u8], &[u8]); 3] = [
            (b"IHDR", &ihdr),
            (b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]),
            (b"IEND", &[]),
        ];
        for (kind, data) in chunks {
            png.extend((data.len() as u32).to_be_bytes());
            let typed = [kind, data].concat();
            png.extend(&typed);
            png.extend(crc32fast::hash(&typed).to_be_bytes());
        }
        png
    }

    #[test]
    fn oversized_pictures_are_refused_with_a_clear_error() {
        // 65 bytes announcing 100,000 x 100,000 pixels: refused before any decoding.
        let e = decode(&png_header(100_000, 100_000), limits(), "huge.png")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("huge.png: the picture is 100000x100000 pixels, more than the 8192x8192"),
            "{e}"
        );
        // Within the sides but over the memory limit.
        let mut png = Vec::new();
        GrayImage::from_pixel(64, 64, Luma([9]))
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let mut tight = limits();
        tight.max_alloc = Some(1000);
        let e = decode(&png, tight, "big.png").unwrap_err().to_string();
        assert!(
            e.starts_with("big.png: the 64x64 picture needs more memory"),
            "{e}"
        );
        assert_eq!(decode(&png, limits(), "ok.png").unwrap().width(), 64);
    }

    #[test]
    fn a_palette_of_partial_entries_is_an_error_not_a_panic() {
        // The image fuzz target's find (fuzz/regressions/image/): a PNG whose PLTE chunk
        // is 28 bytes, which png 0.18.1 panics on.
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/regressions/image/png-plte-length-not-multiple-of-3.png");
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(bad_png_palette(&bytes), Some(28));
        let e = decode(&bytes, limits(), "p.png").unwrap_err().to_string();
        assert_eq!(
            e,
            "p.png: not a valid PNG (its palette chunk is 28 bytes, not whole RGB entries)"
        );
    }

    #[test]
    fn probabilities_sum_to_one() {
        let p = probabilities(&[1.0, 2.0, 1000.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[2] > 0.999);
    }
}
