// Harness `weights`: the weights-file readers of the core, float
// (`microconv::format::Model::parse`, version 1) and int8
// (`microconv::qformat::QModel::parse`, version 2).
//
// The readers work in place and need 4-byte aligned bytes, so the input is copied into
// 16-byte aligned storage first (as firmware embeds a file in `format::Aligned`). A file
// ends with a CRC-32 of everything before it and states its length at offset 12, so
// almost every mutated input stops at those two checks: each input is tried twice, as it
// is and with the length and CRC made right, which lets the fuzzer reach the layer,
// architecture and tensor checks behind them. A model that parses is used: its
// architecture must be valid and its parameters the right length, and when it is small
// (buffers up to 1 MB, a few million multiply-adds) it runs one inference.

use microconv::format::Model;
use microconv::net::{infer, Exec};
use microconv::qformat::QModel;
use microconv::quant::infer_i8;
use microconv::{Arch, Layer};

/// Largest inference buffer, in elements, a parsed model may need to be run.
const MAX_BUFFER: usize = 1 << 18;
/// Largest estimated work (multiply-adds and comparisons) of one inference.
const MAX_WORK: usize = 4 << 20;

pub fn run(data: &[u8]) {
    check(data);
    if data.len() >= 20 {
        let mut fixed = data.to_vec();
        let n = fixed.len();
        fixed[12..16].copy_from_slice(&(n as u32).to_le_bytes());
        let crc = microconv::crc32::crc32(&fixed[..n - 4]);
        fixed[n - 4..].copy_from_slice(&crc.to_le_bytes());
        check(&fixed);
    }
}

fn check(data: &[u8]) {
    let mut store = vec![0u128; data.len().div_ceil(16)];
    bytemuck::cast_slice_mut::<u128, u8>(&mut store)[..data.len()].copy_from_slice(data);
    let bytes = &bytemuck::cast_slice::<u128, u8>(&store)[..data.len()];
    float(bytes);
    int8(bytes);
}

fn float(bytes: &[u8]) {
    let Ok(m) = Model::parse(bytes) else {
        return;
    };
    let arch = m.arch();
    assert!(arch.validate().is_ok());
    assert_eq!(m.params().len(), arch.param_count());
    if small(&arch) {
        let x: Vec<f32> = (0..arch.input.len())
            .map(|i| (i % 7) as f32 / 7.0)
            .collect();
        let mut buf = vec![0.0; arch.inference_len(1)];
        let logits = infer(
            &arch,
            m.params(),
            &x,
            1,
            &mut buf,
            &Exec::REFERENCE,
            &mut [],
        )
        .expect("a parsed model runs");
        assert_eq!(logits.len(), arch.classes());
    }
}

fn int8(bytes: &[u8]) {
    let Ok(q) = QModel::parse(bytes) else {
        return;
    };
    let net = q.net();
    assert!(net.arch.validate().is_ok());
    assert_eq!(net.layers.len(), net.arch.layers.len());
    // Every layer with weights has all of them, and a bias, multiplier and shift per output.
    for (i, (l, ql)) in net.arch.layers.iter().zip(net.layers).enumerate() {
        let (ins, _) = net.arch.layer_io(i).expect("a valid architecture");
        let sizes = match l {
            Layer::Conv2d(c) => Some((c.weight_len(ins), c.filters)),
            Layer::Dense(d) => Some((d.weight_len(ins), d.units)),
            _ => None,
        };
        match (sizes, ql.params) {
            (Some((w, out)), Some(p)) => {
                assert_eq!(p.weights.len(), w, "layer {i}: weights");
                assert_eq!(p.bias.len(), out, "layer {i}: biases");
                assert_eq!(p.multiplier.len(), out, "layer {i}: multipliers");
                assert_eq!(p.shift.len(), out, "layer {i}: shifts");
            }
            (None, None) => {}
            _ => panic!("layer {i}: parameters where none belong, or none where some do"),
        }
    }
    if small(&net.arch) {
        let x: Vec<i8> = (0..net.arch.input.len()).map(|i| (i * 37) as i8).collect();
        let mut buf = vec![0i8; net.arch.inference_len(1)];
        let logits = infer_i8(&net, &x, 1, &mut buf).expect("a parsed int8 model runs");
        assert_eq!(logits.len(), net.arch.classes());
    }
}

/// Whether one inference of `arch` is cheap enough for the fuzzer.
fn small(arch: &Arch<'_>) -> bool {
    if arch.inference_len(1) > MAX_BUFFER {
        return false;
    }
    let mut work = 0usize;
    for (i, l) in arch.layers.iter().enumerate() {
        let Ok((ins, outs)) = arch.layer_io(i) else {
            return false;
        };
        let per_output = match l {
            Layer::Conv2d(c) => c.kernel.saturating_mul(c.kernel).saturating_mul(ins.c),
            Layer::Dense(_) => ins.len(),
            Layer::MaxPool(p) => p.size.saturating_mul(p.size).min(ins.h * ins.w),
            _ => 1,
        };
        work = work.saturating_add(outs.len().saturating_mul(per_output.max(1)));
    }
    work <= MAX_WORK
}
