// Harness `image`: what `host-trainer predict` does with a picture file: decode it
// (PNG, JPEG, PGM/PPM; `host_trainer::predict::decode`) and bring it to MNIST's
// convention (`host_trainer::predict::to_mnist`) with each polarity; and what an image
// folder's reader does with it (`host_trainer::folder::convert`: grey or RGB, resized
// or not).
//
// The decoder runs within limits smaller than `predict`'s (1024x1024 pixels, 64 MiB),
// so that the fuzzer spends its time on many inputs rather than on a few huge pictures;
// `predict`'s own limits are the same code with larger numbers.

use host_trainer::predict::{decode, to_mnist, Polarity, SIDE};
use image::Limits;

pub fn run(data: &[u8]) {
    let mut limits = Limits::default();
    limits.max_image_width = Some(1024);
    limits.max_image_height = Some(1024);
    limits.max_alloc = Some(64 << 20);
    let Ok(img) = decode(data, limits, "fuzz") else {
        return;
    };
    assert!(img.width() <= 1024 && img.height() <= 1024);
    let native = microconv::Shape::new(img.height() as usize, img.width() as usize, 3);
    for shape in [
        microconv::Shape::new(8, 8, 1),
        microconv::Shape::new(5, 7, 3),
        native,
    ] {
        if let Ok(x) = host_trainer::folder::convert(&img, shape, "fuzz") {
            assert_eq!(x.len(), shape.len());
        }
    }
    for polarity in [Polarity::Auto, Polarity::DarkInk, Polarity::LightInk] {
        if let Ok(x) = to_mnist(&img, polarity, "fuzz") {
            assert_eq!(x.len(), SIDE * SIDE);
            assert!(x.iter().all(|v| (0.0..=1.0).contains(v)), "{x:?}");
        }
    }
}
