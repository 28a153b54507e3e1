//! On-device fine-tuning, on the host: the same logits as inference, a step equal to the
//! core's whole-network backward pass restricted to the last layer plus SGD, and errors
//! for bad input.

use microconv::format::{Aligned, Model};
use microconv::init::Rng;
use microconv::loss::{Loss, Reduction};
use microconv::net::{forward_backward, infer, Exec, Mode, Workspace};
use microconv_firmware::finetune::{features_len, head_len, ram_bytes, Buffers, FineTune};
use microconv_firmware::protocol::IMAGE_LEN;

static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!("../models/small.mcw"));

fn image(seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    (0..IMAGE_LEN).map(|_| r.below(256) as u8).collect()
}

struct Bufs {
    head: Vec<f32>,
    grad: Vec<f32>,
    buf: Vec<f32>,
    input: Vec<f32>,
    features: Vec<f32>,
}

fn bufs(model: &Model<'_>) -> Bufs {
    let a = model.arch();
    Bufs {
        head: vec![0.0; head_len(&a)],
        grad: vec![0.0; head_len(&a)],
        buf: vec![0.0; a.inference_len(1)],
        input: vec![0.0; IMAGE_LEN],
        features: vec![0.0; features_len(&a)],
    }
}

fn tuner<'m>(model: &'m Model<'m>, b: &'m mut Bufs, lr: f32) -> FineTune<'m> {
    FineTune::new(model.arch(), model.params(), b.view(), lr).unwrap()
}

impl Bufs {
    fn view(&mut self) -> Buffers<'_> {
        Buffers {
            head: &mut self.head,
            grad: &mut self.grad,
            buf: &mut self.buf,
            input: &mut self.input,
            features: &mut self.features,
        }
    }
}

#[test]
fn sizes_come_from_the_architecture() {
    let model = Model::parse(&MODEL.0).unwrap();
    let a = model.arch();
    assert_eq!(head_len(&a), 512 * 10 + 10);
    assert_eq!(features_len(&a), 512);
    // Trainable copy and gradient 2 x 20,520 B, inference 50,176 B, input 3,136 B,
    // features 2,048 B.
    assert_eq!(ram_bytes(&a), 96_400);
}

#[test]
fn logits_equal_inference_and_a_step_equals_the_core_backward_pass_plus_sgd() {
    let model = Model::parse(&MODEL.0).unwrap();
    let arch = model.arch();
    let mut b = bufs(&model);
    let lr = 0.003;
    let mut ft = tuner(&model, &mut b, lr);
    // The reference: the whole network in the core, every parameter in RAM.
    let mut params = model.params().to_vec();
    let start = arch.param_offset(arch.layers.len() - 1);
    for s in 0..5u64 {
        let img = image(s);
        let x: Vec<f32> = img.iter().map(|&p| p as f32 / 255.0).collect();
        let mut buf = vec![0.0; arch.inference_len(1)];
        let want = infer(&arch, &params, &x, 1, &mut buf, &Exec::REFERENCE, &mut [])
            .unwrap()
            .to_vec();
        let (digit, got) = ft.classify(&img).unwrap();
        assert_eq!(&got[..], &want[..], "logits before step {s}");
        assert_eq!(digit as usize, microconv::loss::argmax(&want));
        let label = (s * 3 % 10) as u8;
        let mut grads = vec![0.0; params.len()];
        let mut acts = vec![0.0; arch.activations_len(1)];
        let mut gbuf = vec![0.0; arch.grad_buffer_len(1)];
        let mut ws = Workspace {
            acts: &mut acts,
            grad: &mut gbuf,
            scratch: &mut [],
        };
        let l = forward_backward(
            &arch,
            &params,
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
        for (p, g) in params[start..].iter_mut().zip(&grads[start..]) {
            *p -= lr * g;
        }
        let (loss, before) = ft.train(&img, label).unwrap();
        assert_eq!(before, digit);
        assert_eq!(loss, l.value, "loss of step {s}");
        assert!(
            ft.head() == &params[start..],
            "weights after step {s} differ"
        );
    }
    assert_eq!(ft.steps, 5);
    // The frozen layers did not move; the digest follows the weights' bits.
    assert_eq!(&params[..start], &model.params()[..start]);
    let d = ft.digest();
    ft.train(&image(9), 1).unwrap();
    assert_ne!(ft.digest(), d);
}

#[test]
fn bad_input_is_an_error() {
    let model = Model::parse(&MODEL.0).unwrap();
    let mut b = bufs(&model);
    let mut ft = tuner(&model, &mut b, 0.01);
    assert!(ft.train(&image(1), 10).is_err());
    assert!(ft.train(&image(1)[..100], 1).is_err());
    assert!(ft.classify(&[0u8; 3]).is_err());
    assert_eq!(ft.steps, 0);
    let a = model.arch();
    let mut b = bufs(&model);
    b.head.pop();
    assert!(FineTune::new(a, model.params(), b.view(), 0.1).is_err());
    let mut b = bufs(&model);
    assert!(FineTune::new(a, model.params(), b.view(), f32::NAN).is_err());
    let mut b = bufs(&model);
    b.features.push(0.0);
    assert!(FineTune::new(a, model.params(), b.view(), 0.1).is_err());
}
