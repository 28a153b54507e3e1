//! `host-trainer predict`: classify image files a user has (PNG, JPEG, PGM/PPM), brought to
//! MNIST's convention first.
//!
//! MNIST digits are white ink on black, the ink's bounding box scaled to fit 20x20 pixels
//! (aspect kept), placed in a 28x28 image so that the ink's centre of mass is at the centre
//! (LeCun et al.). [`to_mnist`] does the same to any picture:
//! 1. grey levels (ITU-R 601 luma); transparent pixels are laid over white paper;
//! 2. polarity: MNIST's ink is bright; with [`Polarity::Auto`] the picture is inverted when
//!    its border (the outermost rows and columns) is brighter than mid-grey, as on paper;
//! 3. background removed: levels at or below the border's median become 0, the rest are
//!    stretched so that the brightest ink is 255;
//! 4. the bounding box of the ink (levels above 10% of 255) is scaled (area-averaging
//!    filter) so that its longer side is 20 pixels;
//! 5. placed in 28x28 by its centre of mass, as MNIST did; values scaled to `[0, 1]`.

use std::io::Cursor;
use std::panic::AssertUnwindSafe;
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, ImageError, ImageReader, Limits, Luma};

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

/// Decodes an image file (format from its content, not its name), within [`limits`].
pub fn load(path: &Path) -> Result<DynamicImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
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

/// The picture as MNIST would have it: 28x28 values in `[0, 1]`, row-major (see the
/// module doc for every step). `what` names the file in errors.
pub fn to_mnist(img: &DynamicImage, polarity: Polarity, what: &str) -> Result<Vec<f32>> {
    if img.width() == 0 || img.height() == 0 {
        bail!("{what}: the image is empty");
    }
    let mut g = grey(img);
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
    let background = if invert { 255 - median } else { median };
    let peak = g.pixels().map(|p| p.0[0]).max().unwrap_or(0);
    if peak <= background.saturating_add(25) {
        bail!("{what}: no digit found (the image has no ink that stands out from its background)");
    }
    let span = (peak - background) as f32;
    for p in g.pixels_mut() {
        p.0[0] = ((p.0[0].saturating_sub(background)) as f32 * 255.0 / span).round() as u8;
    }
    // Bounding box of the ink.
    let ink = |v: u8| v > 25;
    let (w, h) = g.dimensions();
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for (x, y, p) in g.enumerate_pixels() {
        if ink(p.0[0]) {
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
    }
    let (bw, bh) = (x1 - x0 + 1, y1 - y0 + 1);
    let crop = image::imageops::crop_imm(&g, x0, y0, bw, bh).to_image();
    let scale = INK_BOX as f32 / bw.max(bh) as f32;
    let (nw, nh) = (
        ((bw as f32 * scale).round() as u32).clamp(1, INK_BOX),
        ((bh as f32 * scale).round() as u32).clamp(1, INK_BOX),
    );
    let small = image::imageops::resize(&crop, nw, nh, FilterType::Triangle);
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
    Ok(out)
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
