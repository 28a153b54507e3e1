//! The scores `examples/classify` prints under QEMU, computed on the host with the same
//! core: the lines in `examples/classify/expected/*.txt` must be exactly what the host
//! computes (`.ci/run` checks that the firmware prints the same lines, so the two agree
//! bit for bit). Needs the repository (the example's files), so it is not packaged.

use std::fs;
use std::path::Path;

use microconv::format::{Aligned, Model};
use microconv::loss::argmax;
use microconv::net::{infer, Exec};
use microconv::qformat::QModel;
use microconv::quant::{argmax_i8, infer_i8};

static FLOAT: &Aligned<[u8]> = &Aligned(*include_bytes!("../../examples/classify/model.mcw"));
static INT8: &Aligned<[u8]> = &Aligned(*include_bytes!("../../firmware/models/small-int8.mcw"));
static DIGITS: &[u8] = include_bytes!("../../examples/classify/digits.bin");
const PIXELS: usize = 784;

fn line(i: usize, label: u8, digit: usize, scores: &[f32; 10]) -> String {
    format!("image {i}: label {label}, digit {digit}, scores {scores:?}")
}

fn expected(name: &str) -> Vec<String> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/classify/expected")
        .join(name);
    fs::read_to_string(&p)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn float_scores_are_the_hosts() {
    let m = Model::parse(&FLOAT.0).unwrap();
    let arch = m.arch();
    let mut buf = vec![0.0; arch.inference_len(1)];
    let mut got = Vec::new();
    for (i, r) in DIGITS.chunks_exact(1 + PIXELS).enumerate() {
        let x: Vec<f32> = r[1..].iter().map(|&p| p as f32 / 255.0).collect();
        let logits = infer(
            &arch,
            m.params(),
            &x,
            1,
            &mut buf,
            &Exec::REFERENCE,
            &mut [],
        )
        .unwrap();
        let scores: [f32; 10] = logits.try_into().unwrap();
        got.push(line(i, r[0], argmax(logits), &scores));
    }
    assert_eq!(got.len(), 8);
    assert_eq!(got, expected("float.txt"));
}

#[test]
fn int8_scores_are_the_hosts() {
    let m = QModel::parse(&INT8.0).unwrap();
    let net = m.net();
    let mut buf = vec![0i8; net.arch.inference_len(1)];
    let last = net.layers.last().unwrap();
    let mut got = Vec::new();
    for (i, r) in DIGITS.chunks_exact(1 + PIXELS).enumerate() {
        let x: Vec<i8> = r[1..].iter().map(|&p| (p as i32 - 128) as i8).collect();
        let logits = infer_i8(&net, &x, 1, &mut buf).unwrap();
        let mut scores = [0.0f32; 10];
        for (s, &q) in scores.iter_mut().zip(logits) {
            *s = last.output.dequantize(q);
        }
        got.push(line(i, r[0], argmax_i8(logits), &scores));
    }
    assert_eq!(got.len(), 8);
    assert_eq!(got, expected("int8.txt"));
}
