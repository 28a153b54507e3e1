//! On-device training, on the host: the same logits as inference, steps equal bit for
//! bit to the core's whole-network backward pass plus SGD (for every kind of
//! selection, with momentum and with accumulation), buffer plans, and errors for bad
//! input that change nothing.

use microconv::format::{Aligned, Model};
use microconv::init::Rng;
use microconv::loss::{Loss, Reduction};
use microconv::net::{forward_backward, infer, Exec, Mode, Workspace};
use microconv::Arch;
use microconv_firmware::finetune::{
    all_layers, arena_len, last_layer, last_layers, marks_len, plain, ram_bytes, trainable_len,
    Buffers, FineTune, TrainConfig,
};
use microconv_firmware::protocol::IMAGE_LEN;

static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!("../models/small.mcw"));

fn image(seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    (0..IMAGE_LEN).map(|_| r.below(256) as u8).collect()
}

struct Bufs {
    arena: Vec<f32>,
    marks: Vec<u8>,
    buf: Vec<f32>,
    input: Vec<f32>,
}

/// Buffers for every selection without momentum (all layers is the largest).
fn bufs(a: &Arch<'_>) -> Bufs {
    let all = plain(all_layers(a), false);
    Bufs {
        arena: vec![0.0; arena_len(a, &all)],
        marks: vec![0; marks_len(a, &all)],
        buf: vec![0.0; a.inference_len(1)],
        input: vec![0.0; IMAGE_LEN],
    }
}

impl Bufs {
    fn view(&mut self) -> Buffers<'_> {
        Buffers {
            arena: &mut self.arena,
            marks: &mut self.marks,
            buf: &mut self.buf,
            input: &mut self.input,
        }
    }
}

#[test]
fn buffers_are_planned_from_the_architecture() {
    let model = Model::parse(&MODEL.0).unwrap();
    let a = model.arch();
    // Layers: 0 conv, 3 conv, 6 conv, 10 dense.
    assert_eq!(all_layers(&a), 1 << 0 | 1 << 3 | 1 << 6 | 1 << 10);
    assert_eq!(last_layers(&a, 2), 1 << 6 | 1 << 10);
    let last = last_layer(&a);
    assert_eq!(trainable_len(&a, &last), 512 * 10 + 10);
    // The last layer: its copy and its input (512 floats); no marks.
    assert_eq!(arena_len(&a, &last), 5_130 + 512);
    assert_eq!(marks_len(&a, &last), 0);
    let all = plain(all_layers(&a), false);
    assert_eq!(trainable_len(&a, &all), 13_194);
    // Saved inputs of conv2, conv3 and dense: 14x14x8 + 7x7x16 + 512.
    assert_eq!(arena_len(&a, &all), 13_194 + 1_568 + 784 + 512);
    // ReLU signs (6,272 + 3,136 + 1,568 bits) and pool positions (1,568 + 784 + 512).
    assert_eq!(marks_len(&a, &all), 784 + 392 + 196 + 1_568 + 784 + 512);
    assert_eq!(ram_bytes(&a, &all), 4 * (16_058 + 12_544 + 784) + 4_236);
    let biases = plain(all_layers(&a), true);
    assert_eq!(trainable_len(&a, &biases), 8 + 16 + 32 + 10);
    assert_eq!(arena_len(&a, &biases), 66);
    // Momentum and accumulation: one more copy each.
    let m = TrainConfig {
        momentum: 0.9,
        accumulate: 4,
        ..last
    };
    assert_eq!(arena_len(&a, &m), 3 * 5_130 + 512);
}

/// The reference: every parameter in RAM, the core's whole-network forward and
/// backward pass, then SGD (momentum, accumulation) on the selected parameters.
struct Reference<'a> {
    arch: Arch<'a>,
    params: Vec<f32>,
    /// Indices of the learning parameters, in the trainable copy's order.
    sel: Vec<usize>,
    mom: Vec<f32>,
    acc: Vec<f32>,
    pending: u8,
}

impl<'a> Reference<'a> {
    fn new(model: &'a Model<'a>, c: &TrainConfig) -> Self {
        let arch = model.arch();
        let mut sel = Vec::new();
        for i in 0..arch.layers.len() {
            if c.layers >> i & 1 == 1 {
                let r = arch.param_range(i).unwrap();
                let nb = arch.layer_io(i).unwrap().1.c;
                let start = if c.biases_only { r.end - nb } else { r.start };
                sel.extend(start..r.end);
            }
        }
        Reference {
            arch,
            params: model.params().to_vec(),
            mom: vec![0.0; sel.len()],
            acc: vec![0.0; sel.len()],
            sel,
            pending: 0,
        }
    }

    fn step(&mut self, img: &[u8], label: u8, lr: f32, c: &TrainConfig) -> f32 {
        let arch = self.arch;
        let x: Vec<f32> = img.iter().map(|&p| p as f32 / 255.0).collect();
        let mut grads = vec![0.0; self.params.len()];
        let mut acts = vec![0.0; arch.activations_len(1)];
        let mut gbuf = vec![0.0; arch.grad_buffer_len(1)];
        let mut ws = Workspace {
            acts: &mut acts,
            grad: &mut gbuf,
            scratch: &mut [],
        };
        let l = forward_backward(
            &arch,
            &self.params,
            &mut grads,
            &mut ws,
            &x,
            &[label],
            Loss::Fused,
            Reduction::Mean,
            1,
            Mode::Eval,
            &Exec::REFERENCE,
        )
        .unwrap();
        let update = self.pending + 1 >= c.accumulate;
        let inv = 1.0 / c.accumulate as f32;
        for (k, &j) in self.sel.iter().enumerate() {
            let mut g = grads[j];
            if c.accumulate > 1 {
                if !update {
                    self.acc[k] += g;
                    continue;
                }
                g = (self.acc[k] + g) * inv;
                self.acc[k] = 0.0;
            }
            if c.momentum != 0.0 {
                self.mom[k] = c.momentum * self.mom[k] + g;
                self.params[j] -= lr * self.mom[k];
            } else {
                self.params[j] -= lr * g;
            }
        }
        self.pending = if update { 0 } else { self.pending + 1 };
        l.value
    }

    fn trainable(&self) -> Vec<u32> {
        self.sel.iter().map(|&j| self.params[j].to_bits()).collect()
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

fn check_against_reference(c: TrainConfig, lr: f32, steps: u64) {
    let model = Model::parse(&MODEL.0).unwrap();
    let arch = model.arch();
    let mut b = bufs(&arch);
    if arena_len(&arch, &c) > b.arena.len() {
        b.arena.resize(arena_len(&arch, &c), 0.0);
    }
    let mut ft = FineTune::new(arch, model.params(), b.view(), lr).unwrap();
    ft.configure(c).unwrap();
    let mut r = Reference::new(&model, &c);
    assert_eq!(bits(ft.trainable()), r.trainable(), "{c:?}: initial copy");
    for s in 0..steps {
        let img = image(s);
        // Logits equal the core's inference with the current parameters.
        let x: Vec<f32> = img.iter().map(|&p| p as f32 / 255.0).collect();
        let mut buf = vec![0.0; arch.inference_len(1)];
        let want = infer(&arch, &r.params, &x, 1, &mut buf, &Exec::REFERENCE, &mut [])
            .unwrap()
            .to_vec();
        let (digit, got) = ft.classify(&img).unwrap();
        assert_eq!(
            bits(&got[..want.len()]),
            bits(&want),
            "{c:?}: logits before step {s}"
        );
        assert!(
            got[want.len()..].iter().all(|&z| z == 0.0),
            "{c:?}: zeros after the logits"
        );
        let label = (s * 3 % 10) as u8;
        let want_loss = r.step(&img, label, lr, &c);
        let (loss, before) = ft.train(&img, label).unwrap();
        assert_eq!(before, digit);
        assert_eq!(
            loss.to_bits(),
            want_loss.to_bits(),
            "{c:?}: loss of step {s}"
        );
        assert!(
            bits(ft.trainable()) == r.trainable(),
            "{c:?}: weights after step {s} differ from the core's"
        );
    }
    assert_eq!(ft.steps as u64, steps);
    // The frozen parameters did not move (the reference only changes selected ones).
    let moved = r
        .params
        .iter()
        .zip(model.params())
        .filter(|(a, b)| a != b)
        .count();
    assert!(moved > 0 && moved <= r.sel.len(), "{c:?}: {moved} moved");
}

#[test]
fn the_last_layer_step_equals_the_core_backward_pass_plus_sgd() {
    let model = Model::parse(&MODEL.0).unwrap();
    check_against_reference(last_layer(&model.arch()), 0.003, 5);
}

#[test]
fn every_layer_learns_as_the_core_backward_pass_says() {
    let model = Model::parse(&MODEL.0).unwrap();
    check_against_reference(plain(all_layers(&model.arch()), false), 0.01, 4);
}

#[test]
fn last_k_biases_and_lists_learn_as_the_core_says() {
    let model = Model::parse(&MODEL.0).unwrap();
    let a = model.arch();
    check_against_reference(plain(last_layers(&a, 2), false), 0.01, 3);
    check_against_reference(plain(all_layers(&a), true), 0.05, 3);
    // A list: the first convolution and the dense layer.
    check_against_reference(plain(1 | 1 << 10, false), 0.01, 3);
    // Only a middle layer: backward stops there.
    check_against_reference(plain(1 << 3, false), 0.01, 3);
}

#[test]
fn momentum_and_accumulation_follow_the_reference() {
    let model = Model::parse(&MODEL.0).unwrap();
    let a = model.arch();
    let c = TrainConfig {
        momentum: 0.9,
        ..last_layer(&a)
    };
    check_against_reference(c, 0.003, 4);
    let c = TrainConfig {
        accumulate: 3,
        ..plain(last_layers(&a, 2), false)
    };
    check_against_reference(c, 0.01, 7);
    let c = TrainConfig {
        momentum: 0.5,
        accumulate: 2,
        ..plain(all_layers(&a), true)
    };
    check_against_reference(c, 0.05, 5);
}

#[test]
fn bad_input_is_an_error_and_changes_nothing() {
    let model = Model::parse(&MODEL.0).unwrap();
    let a = model.arch();
    let mut b = bufs(&a);
    let mut ft = FineTune::new(a, model.params(), b.view(), 0.01).unwrap();
    ft.configure(plain(all_layers(&a), false)).unwrap();
    ft.train(&image(3), 4).unwrap();
    let (d, cfg) = (ft.digest(), *ft.config());
    assert!(ft.train(&image(1), 10).is_err());
    assert!(ft.train(&image(1)[..100], 1).is_err());
    assert!(ft.classify(&[0u8; 3]).is_err());
    assert!(ft.set_lr(f32::NAN).is_err());
    assert!(ft.set_lr(0.0).is_err());
    let bad = [
        plain(0, false),           // no layer
        plain(1 << 1, false),      // a ReLU: no parameters
        plain(1 << 11, false),     // past the last layer
        plain(1 << 31 | 1, false), // far past it
        TrainConfig {
            momentum: f32::NAN,
            ..last_layer(&a)
        },
        TrainConfig {
            momentum: 1.0,
            ..last_layer(&a)
        },
        TrainConfig {
            accumulate: 0,
            ..last_layer(&a)
        },
        TrainConfig {
            accumulate: 65,
            ..last_layer(&a)
        },
        // Does not fit: all layers with momentum needs a second copy of 13,194.
        TrainConfig {
            momentum: 0.9,
            ..plain(all_layers(&a), false)
        },
    ];
    for c in bad {
        assert!(ft.configure(c).is_err(), "{c:?} accepted");
        assert_eq!((ft.digest(), *ft.config(), ft.steps), (d, cfg, 1), "{c:?}");
    }
    // Configuring restores the weights from flash.
    ft.configure(plain(all_layers(&a), false)).unwrap();
    assert_eq!(ft.steps, 0);
    assert_eq!(bits(ft.trainable()), bits(model.params()));
    let mut b = bufs(&a);
    b.buf.pop();
    assert!(FineTune::new(a, model.params(), b.view(), 0.1).is_err());
    let mut b = bufs(&a);
    assert!(FineTune::new(a, model.params(), b.view(), f32::NAN).is_err());
    // Too small an arena for even the last layer.
    let mut b = bufs(&a);
    b.arena.truncate(100);
    assert!(FineTune::new(a, model.params(), b.view(), 0.1).is_err());
}
