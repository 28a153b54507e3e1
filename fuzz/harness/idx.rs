// Harness `idx`: MNIST's IDX readers (`parse_idx` on bytes, `read_idx` streaming) and the checks
// `load_pair` makes on an image file and a label file together (`pair_from_bytes`).
//
// The first byte picks the mode: 0 labels (ndims 1), 1 images (ndims 3), 2 a pair (the
// next two bytes, little-endian, are the length of the image file; the label file is
// the rest). No input may panic; whatever parses must be consistent.

use host_trainer::data::{pair_from_bytes, parse_idx, read_idx};

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => idx(rest, 1),
        1 => idx(rest, 3),
        _ => pair(rest),
    }
}

fn idx(bytes: &[u8], ndims: usize) {
    let parsed = parse_idx(bytes, ndims, "fuzz");
    if let Ok((dims, pixels)) = &parsed {
        assert_eq!(dims.len(), ndims);
        assert_eq!(dims.iter().product::<usize>(), pixels.len());
    }
    // The streaming reader the loader uses (bounded by the header) agrees with it.
    let streamed = read_idx((std::io::Cursor::new(bytes), false), ndims, "fuzz", None);
    match (parsed, streamed) {
        (Ok((d1, p1)), Ok((d2, p2))) => assert!(d1 == d2 && p1 == &p2[..]),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("parse_idx {:?} but read_idx {:?}", a.is_ok(), b.is_ok()),
    }
}

fn pair(rest: &[u8]) {
    if rest.len() < 2 {
        return;
    }
    let split = (u16::from_le_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
    let (images, labels) = rest[2..].split_at(split);
    if let Ok(d) = pair_from_bytes(images, labels, "images", "labels") {
        assert!(d.rows > 0 && d.cols > 0);
        assert_eq!(d.images.len(), d.len() * d.pixels());
        assert!(d.check_labels(d.classes()).is_ok());
        assert!(d.channels > 0);
        if !d.is_empty() {
            assert_eq!(d.image(d.len() - 1).len(), d.pixels());
            let mut out = vec![0.0; d.pixels()];
            d.fill(&[d.len() - 1], &mut out);
            assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
        }
    }
}
