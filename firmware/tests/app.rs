//! The board-independent application on the host, with mock peripherals: answers,
//! errors, resynchronisation after garbage, timeouts, and no panic or hang on any bytes.

use microconv::format::{Aligned, Model};
use microconv::init::Rng;
use microconv::net::{infer, Exec};
use microconv::qformat::QModel;
use microconv::quant::infer_i8;
use microconv_firmware::app::{Outcome, Runner, FRAME_TIMEOUT_US, POLL_US};
use microconv_firmware::finetune::{all_layers, arena_len, marks_len, plain, Buffers, FineTune};
use microconv_firmware::mock::{self, answers, frame, MockApp};
use microconv_firmware::protocol::{
    frame_capacity, kind, pack_bits, Classification, Configured, Digest, ErrorCode, Pong,
    TrainConfig, Trained, IMAGE_LEN, PONG_LEN, SCORES, VERSION,
};
use microconv_firmware::run::{Classifier, FloatClassifier, Int8Classifier};

static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!("../models/small.mcw"));
static INT8: &Aligned<[u8]> = &Aligned(*include_bytes!("../models/small-int8.mcw"));

/// The ticks the mock stopwatch reads.
const TICKS: u32 = 42;

fn image(seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    (0..IMAGE_LEN)
        .map(|i| {
            if (i / 28) % 9 < 4 {
                r.below(256) as u8
            } else {
                0
            }
        })
        .collect()
}

/// What the host computes for the same image with the same code.
fn expected(model: &Model<'_>, img: &[u8]) -> Classification {
    let arch = model.arch();
    let x: Vec<f32> = img.iter().map(|&p| p as f32 / 255.0).collect();
    let mut buf = vec![0.0; arch.inference_len(1)];
    let logits = infer(
        &arch,
        model.params(),
        &x,
        1,
        &mut buf,
        &Exec::REFERENCE,
        &mut [],
    )
    .unwrap();
    let mut scores = [0.0; SCORES];
    scores[..logits.len()].copy_from_slice(logits);
    Classification {
        digit: microconv::loss::argmax(logits) as u8,
        classes: logits.len() as u8,
        scores,
        ticks: TICKS,
    }
}

/// The float runner's arena, sized for the model.
struct Rig {
    arena: Vec<f32>,
}

impl Rig {
    fn new(model: &Model<'_>) -> Self {
        Rig {
            arena: vec![0.0; model.arch().planned_len(1)],
        }
    }
}

fn run<'m>(model: &'m Model<'m>, rig: &'m mut Rig) -> MockApp<'m, FloatClassifier<'m>> {
    let arch = model.arch();
    let clf = FloatClassifier::new(arch, model.params(), &mut rig.arena).unwrap();
    mock::app(clf, TICKS)
}

/// The buffers of a [`FineTune`] that can train every layer of the model.
struct TuneRig {
    arena: Vec<f32>,
    marks: Vec<u8>,
    buf: Vec<f32>,
    input: Vec<f32>,
}

impl TuneRig {
    fn new(model: &Model<'_>) -> Self {
        let a = model.arch();
        let all = plain(all_layers(&a), false);
        TuneRig {
            arena: vec![0.0; arena_len(&a, &all)],
            marks: vec![0; marks_len(&a, &all)],
            buf: vec![0.0; a.inference_len(1)],
            input: vec![0.0; a.input.len()],
        }
    }

    /// A learner over these buffers with learning rate `lr`.
    fn tuner<'m>(&'m mut self, model: &'m Model<'m>, lr: f32) -> FineTune<'m> {
        let bufs = Buffers {
            arena: &mut self.arena,
            marks: &mut self.marks,
            buf: &mut self.buf,
            input: &mut self.input,
        };
        FineTune::new(model.arch(), model.params(), bufs, lr).unwrap()
    }
}

/// Polls until the input is drained plus `extra` idle polls; returns the poll count.
fn drain<'m, M: Runner<'m>, const CAP: usize>(
    app: &mut MockApp<'m, M, CAP>,
    extra: usize,
) -> usize {
    let mut polls = 0;
    let mut idle = 0;
    while idle <= extra {
        let Ok(o) = app.poll();
        polls += 1;
        if o == Outcome::Idle {
            idle += 1;
        }
        assert!(polls < 10_000_000, "the app does not make progress");
    }
    polls
}

#[test]
fn classifies_like_the_host_and_blinks() {
    let model = Model::parse(&MODEL.0).unwrap();
    let mut rig = Rig::new(&model);
    let mut app = run(&model, &mut rig);
    let img = image(1);
    let mut rx = frame(kind::CLASSIFY, &img);
    rx.extend(frame(kind::CLASSIFY_PACKED, &packed(&img)));
    rx.extend(frame(kind::PING, &[]));
    app_feed(&mut app, &rx);
    drain(&mut app, 1);
    let got = answers(&app_tx(&mut app));
    let want = expected(&model, &img);
    assert_eq!(got.len(), 3);
    for (k, payload) in &got[..2] {
        assert_eq!(*k, kind::RESULT);
        // Same code, same arithmetic: bit-identical scores.
        assert_eq!(Classification::from_bytes(payload).unwrap(), want);
    }
    assert_eq!(got[2].0, kind::PONG);
    assert_eq!(got[2].1.len(), PONG_LEN);
    let pong = Pong::from_bytes(&got[2].1).unwrap();
    assert_eq!(pong.version, VERSION);
    assert_eq!(pong.params as usize, model.arch().param_count());
    assert_eq!((pong.input, pong.classes), ([28, 28, 1], 10));
    assert_eq!(pong.max_payload as usize, 5 + IMAGE_LEN + 7);
    assert_eq!(app_led(&mut app), vec![true, false, true, false]);
    assert_eq!(app.stats.classified, 2);
}

#[test]
fn errors_are_answered_and_the_app_resynchronises() {
    let model = Model::parse(&MODEL.0).unwrap();
    let mut rig = Rig::new(&model);
    let mut app = run(&model, &mut rig);
    let img = image(2);
    let mut bad_crc = frame(kind::CLASSIFY, &img);
    bad_crc[100] ^= 1;
    let mut rx = bad_crc;
    rx.extend(frame(kind::CLASSIFY, &img[..100])); // short image
    rx.extend(frame(0x55, &[])); // unknown kind
    rx.extend(frame(kind::CLASSIFY_PACKED, &[0x05, 1, 2])); // malformed PackBits
    rx.extend(frame(kind::PING, &[0])); // PING with a payload
    rx.extend([0xA5, 0x5A, 0x01, 0xFF, 0x7F]); // absurd length
    rx.extend(frame(kind::CLASSIFY, &img));
    app_feed(&mut app, &rx);
    drain(&mut app, 1);
    let got = answers(&app_tx(&mut app));
    let codes = of_kind(&got, kind::ERROR, |p| ErrorCode::from_u8(p[0]));
    assert_eq!(
        codes,
        [
            ErrorCode::BadChecksum,
            ErrorCode::InputLen,
            ErrorCode::UnknownKind,
            ErrorCode::InputLen,
            ErrorCode::BadLength,
            ErrorCode::BadLength
        ]
    );
    assert_eq!(got.last().unwrap().0, kind::RESULT);
    assert_eq!(
        Classification::from_bytes(&got.last().unwrap().1).unwrap(),
        expected(&model, &img)
    );
}

#[test]
fn a_frame_cut_short_times_out_then_the_next_is_answered() {
    let model = Model::parse(&MODEL.0).unwrap();
    let mut rig = Rig::new(&model);
    let mut app = run(&model, &mut rig);
    let img = image(3);
    let full = frame(kind::CLASSIFY, &img);
    app_feed(&mut app, &full[..300]);
    // Drain the partial frame, then idle until the timeout fires.
    let polls = drain(&mut app, (FRAME_TIMEOUT_US / POLL_US) as usize + 5);
    assert!(polls < 300 + (FRAME_TIMEOUT_US / POLL_US) as usize + 10);
    let got = answers(&app_tx(&mut app));
    assert_eq!(got, vec![(kind::ERROR, vec![ErrorCode::Timeout as u8])]);
    app_feed(&mut app, &full);
    drain(&mut app, 1);
    let got = answers(&app_tx(&mut app));
    assert_eq!(got.len(), 1);
    assert_eq!(
        Classification::from_bytes(&got[0].1).unwrap(),
        expected(&model, &img)
    );
}

#[test]
fn random_and_adversarial_streams_never_stop_valid_frames() {
    let model = Model::parse(&MODEL.0).unwrap();
    let mut rig = Rig::new(&model);
    let mut app = run(&model, &mut rig);
    let mut r = Rng::new(99);
    let mut rx = Vec::new();
    let mut wanted = Vec::new();
    for round in 0..40 {
        // Garbage: random bytes, sync bytes, and fake headers with random lengths.
        let n = r.below(3000);
        for _ in 0..n {
            rx.push(match r.below(10) {
                0 => 0xA5,
                1 => 0x5A,
                _ => r.below(256) as u8,
            });
        }
        if round % 3 == 0 {
            rx.extend([0xA5, 0x5A, kind::CLASSIFY, 0x10, 0x03]); // 784 announced, garbage follows
        }
        // A frame that a broken header before it may swallow: send a flush of
        // non-sync bytes long enough to end any pending frame (784 + 7), then the frame.
        rx.extend(std::iter::repeat_n(0u8, IMAGE_LEN + 8));
        let img = image(1000 + round);
        rx.extend(frame(kind::CLASSIFY, &img));
        wanted.push(expected(&model, &img));
    }
    app_feed(&mut app, &rx);
    drain(&mut app, 1);
    let got = of_kind(
        &answers(&app_tx(&mut app)),
        kind::RESULT,
        Classification::from_bytes,
    );
    // Every valid frame is answered, correctly (a garbage frame with a valid CRC is
    // astronomically unlikely: 2^-32 per attempt).
    for w in &wanted {
        assert!(
            got.contains(w),
            "a valid frame after garbage was not answered"
        );
    }
}

// Access to the mocks inside the app.
fn app_feed<'m, M: Runner<'m>, const CAP: usize>(app: &mut MockApp<'m, M, CAP>, bytes: &[u8]) {
    app.serial_mut().rx.extend(bytes);
}
fn app_tx<'m, M: Runner<'m>, const CAP: usize>(app: &mut MockApp<'m, M, CAP>) -> Vec<u8> {
    std::mem::take(&mut app.serial_mut().tx)
}
fn app_led<'m, M: Runner<'m>, const CAP: usize>(app: &mut MockApp<'m, M, CAP>) -> Vec<bool> {
    std::mem::take(&mut app.pin_mut().0)
}

/// The payloads of the answers of kind `k`, parsed by `parse`.
fn of_kind<T>(got: &[(u8, Vec<u8>)], k: u8, parse: impl Fn(&[u8]) -> Option<T>) -> Vec<T> {
    got.iter()
        .filter(|(kk, _)| *kk == k)
        .map(|(_, p)| parse(p).unwrap())
        .collect()
}

/// The error codes answered, in order.
fn errors(got: &[(u8, Vec<u8>)]) -> Vec<u8> {
    of_kind(got, kind::ERROR, |p| p.first().copied())
}

/// A TRAIN or EVALUATE payload: label, (learning rate,) the PackBits image.
fn labelled(label: u8, lr: Option<f32>, img: &[u8]) -> Vec<u8> {
    let mut p = vec![label];
    if let Some(lr) = lr {
        p.extend_from_slice(&lr.to_le_bytes());
    }
    p.extend_from_slice(&packed(img));
    p
}

/// `img` with PackBits.
fn packed(img: &[u8]) -> Vec<u8> {
    let mut packed = vec![0u8; 2 * IMAGE_LEN];
    let n = pack_bits(img, &mut packed).unwrap();
    packed.truncate(n);
    packed
}

/// A TRAIN frame: one step on `img` with `label` and learning rate `lr`.
fn train_frame(label: u8, lr: f32, img: &[u8]) -> Vec<u8> {
    frame(kind::TRAIN, &labelled(label, Some(lr), img))
}

/// An EVALUATE frame: classify `img` and count it against `label`.
fn evaluate_frame(label: u8, img: &[u8]) -> Vec<u8> {
    frame(kind::EVALUATE, &labelled(label, None, img))
}

#[test]
fn trains_over_frames_like_the_host_and_counts_evaluations() {
    let model = Model::parse(&MODEL.0).unwrap();
    let mut rig = TuneRig::new(&model);
    let mut app = mock::app(rig.tuner(&model, 0.01), TICKS);
    // The host's replica of the same steps.
    let mut host_rig = TuneRig::new(&model);
    let mut host = host_rig.tuner(&model, 0.01);
    let mut rx = Vec::new();
    for s in 0..6u64 {
        let (img, label) = (image(500 + s), (s % 10) as u8);
        rx.extend(train_frame(label, 0.02, &img));
        host.set_lr(0.02).unwrap();
        host.train(&img, label).unwrap();
    }
    for s in 0..4u64 {
        rx.extend(evaluate_frame((s % 2) as u8, &image(900 + s)));
    }
    rx.extend(frame(kind::DIGEST, &[]));
    // Out of range: label 10, a negative learning rate.
    rx.extend(train_frame(10, 0.01, &image(1)));
    rx.extend(train_frame(1, -0.01, &image(1)));
    rx.extend(frame(kind::DIGEST, &[]));
    app_feed(&mut app, &rx);
    drain(&mut app, 1);
    let got = answers(&app_tx(&mut app));
    let trained = of_kind(&got, kind::TRAINED, Trained::from_bytes);
    assert_eq!(
        trained.iter().map(|t| t.steps).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    assert!(trained.iter().all(|t| t.loss.is_finite() && t.loss >= 0.0));
    let digests = of_kind(&got, kind::DIGEST_RESULT, Digest::from_bytes);
    assert_eq!(digests.len(), 2);
    assert_eq!(digests[0].steps, 6);
    assert_eq!(
        digests[0].crc,
        host.digest(),
        "device and host weights differ"
    );
    assert_eq!(digests[0].total, 4);
    assert_eq!(
        (digests[1].total, digests[1].steps),
        (0, 6),
        "counts reset, no step taken"
    );
    assert_eq!(errors(&got), [ErrorCode::BadValue as u8; 2]);
    // A classify-only firmware refuses to train.
    let mut rig = Rig::new(&model);
    let mut app = run(&model, &mut rig);
    app_feed(&mut app, &train_frame(1, 0.01, &image(1)));
    app_feed(&mut app, &frame(kind::DIGEST, &[]));
    drain(&mut app, 1);
    let got = answers(&app_tx(&mut app));
    assert_eq!(
        got,
        vec![(kind::ERROR, vec![ErrorCode::Unsupported as u8]); 2]
    );
}

#[test]
fn configure_selects_layers_over_frames_and_bad_values_change_nothing() {
    use microconv_firmware::finetune::{last_layers, ram_bytes};
    let model = Model::parse(&MODEL.0).unwrap();
    let a = model.arch();
    let all = plain(all_layers(&a), false);
    let mut rig = TuneRig::new(&model);
    let mut app = mock::app(rig.tuner(&model, 0.01), TICKS);
    let mut host_rig = TuneRig::new(&model);
    let mut host = host_rig.tuner(&model, 0.01);
    let good = TrainConfig {
        momentum: 0.5,
        accumulate: 2,
        ..plain(last_layers(&a, 1), false)
    };
    let mut rx = Vec::new();
    // One step of the default (last layer), then a configuration: it starts over.
    rx.extend(train_frame(3, 0.02, &image(7)));
    rx.extend(frame(kind::CONFIGURE, &good.to_bytes()));
    host.configure(good).unwrap();
    for s in 0..4u64 {
        let (img, label) = (image(600 + s), (s % 10) as u8);
        rx.extend(train_frame(label, 0.01, &img));
        host.train(&img, label).unwrap();
    }
    rx.extend(frame(kind::DIGEST, &[]));
    // Bad values: a ReLU (layer 1), layer 11 (there are 11), momentum NaN and 1,
    // 0 samples per update, an unknown flag, a short frame; all layers with momentum
    // does not fit these buffers.
    let with = |f: &dyn Fn(&mut [u8; 10])| {
        let mut p = good.to_bytes();
        f(&mut p);
        frame(kind::CONFIGURE, &p)
    };
    rx.extend(with(&|p| p[..4].copy_from_slice(&2u32.to_le_bytes())));
    rx.extend(with(&|p| {
        p[..4].copy_from_slice(&(1u32 << 11).to_le_bytes())
    }));
    rx.extend(with(&|p| p[5..9].copy_from_slice(&f32::NAN.to_le_bytes())));
    rx.extend(with(&|p| p[5..9].copy_from_slice(&1.0f32.to_le_bytes())));
    rx.extend(with(&|p| p[9] = 0));
    rx.extend(with(&|p| p[4] = 0x80));
    rx.extend(frame(kind::CONFIGURE, &good.to_bytes()[..9]));
    let too_big = TrainConfig {
        momentum: 0.9,
        ..all
    };
    rx.extend(frame(kind::CONFIGURE, &too_big.to_bytes()));
    rx.extend(frame(kind::DIGEST, &[]));
    app_feed(&mut app, &rx);
    drain(&mut app, 1);
    let got = answers(&app_tx(&mut app));
    let configured = of_kind(&got, kind::CONFIGURED, Configured::from_bytes);
    assert_eq!(configured.len(), 1);
    assert_eq!(configured[0].trainable, 5_130);
    assert_eq!(configured[0].ram, ram_bytes(&a, &good) as u32);
    assert_eq!(configured[0].capacity, ram_bytes(&a, &all) as u32);
    let steps: Vec<u32> = of_kind(&got, kind::TRAINED, Trained::from_bytes)
        .iter()
        .map(|t| t.steps)
        .collect();
    assert_eq!(steps, [1, 1, 2, 3, 4]);
    let digests = of_kind(&got, kind::DIGEST_RESULT, Digest::from_bytes);
    assert_eq!(digests.len(), 2);
    assert_eq!((digests[0].steps, digests[0].crc), (4, host.digest()));
    assert_eq!(
        (digests[1].steps, digests[1].crc),
        (4, host.digest()),
        "a refused CONFIGURE changed the device"
    );
    let bv = ErrorCode::BadValue as u8;
    assert_eq!(
        errors(&got),
        [
            bv,
            bv,
            bv,
            bv,
            bv,
            bv,
            ErrorCode::BadLength as u8,
            ErrorCode::NoMemory as u8
        ]
    );
    // A classify-only firmware refuses to configure.
    let mut rig = Rig::new(&model);
    let mut app = run(&model, &mut rig);
    app_feed(&mut app, &frame(kind::CONFIGURE, &good.to_bytes()));
    drain(&mut app, 1);
    assert_eq!(
        answers(&app_tx(&mut app)),
        vec![(kind::ERROR, vec![ErrorCode::Unsupported as u8])]
    );
}

#[test]
fn the_int8_runner_answers_the_cores_dequantized_logits() {
    let m = QModel::parse(&INT8.0).unwrap();
    let net = m.net();
    let a = m.arch();
    let mut arena = vec![0i8; a.planned_len(1)];
    let mut app = mock::app(Int8Classifier::new(m.net(), &mut arena).unwrap(), TICKS);
    let mut arena2 = vec![0i8; a.planned_len(1)];
    let mut either = Classifier::new_int8(m.net(), &mut arena2).unwrap();
    assert!(either.is_int8());
    let mut rx = Vec::new();
    let mut wanted = Vec::new();
    for s in 0..5 {
        let img = image(70 + s);
        rx.extend(frame(kind::CLASSIFY_PACKED, &packed(&img)));
        // The core directly: pixels - 128, int8 inference, the last layer's dequantization.
        let x: Vec<i8> = img.iter().map(|&p| (p as i32 - 128) as i8).collect();
        let mut b = vec![0i8; a.inference_len(1)];
        let q = infer_i8(&net, &x, 1, &mut b).unwrap();
        let out = net.layers.last().unwrap().output;
        let mut scores = [0.0f32; SCORES];
        for (s, &l) in scores.iter_mut().zip(q) {
            *s = out.dequantize(l);
        }
        let digit = microconv::quant::argmax_i8(q) as u8;
        assert_eq!(either.classify(&img).unwrap(), (digit, scores));
        wanted.push(Classification {
            digit,
            classes: 10,
            scores,
            ticks: TICKS,
        });
    }
    app_feed(&mut app, &rx);
    drain(&mut app, 1);
    let got = of_kind(
        &answers(&app_tx(&mut app)),
        kind::RESULT,
        Classification::from_bytes,
    );
    assert_eq!(got, wanted);
}

#[test]
fn runners_take_their_sizes_from_the_model() {
    use microconv::layers::Dense;
    use microconv::{Arch, Layer, Shape};
    // Three classes: a RESULT carries their 3 scores (20 bytes), the count says 3.
    let layers = [Layer::Flatten, Layer::Dense(Dense::new(3))];
    let arch = Arch::new(Shape::new(28, 28, 1), &layers);
    let mut r = Rng::new(5);
    let params: Vec<f32> = (0..arch.param_count())
        .map(|_| r.below(1000) as f32 / 1000.0 - 0.5)
        .collect();
    let mut arena = vec![0.0; arch.planned_len(1)];
    let clf = FloatClassifier::new(arch, &params, &mut arena).unwrap();
    let mut app = mock::app(clf, TICKS);
    let img = image(11);
    app_feed(&mut app, &frame(kind::CLASSIFY, &img));
    drain(&mut app, 1);
    let sent = answers(&app_tx(&mut app));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.len(), 8 + 4 * 3);
    let got = Classification::from_bytes(&sent[0].1).unwrap();
    let x: Vec<f32> = img.iter().map(|&p| p as f32 / 255.0).collect();
    let mut b = vec![0.0; arch.inference_len(1)];
    let logits = infer(&arch, &params, &x, 1, &mut b, &Exec::REFERENCE, &mut []).unwrap();
    assert_eq!(got.logits(), logits);
    assert_eq!(got.classes, 3);
    assert_eq!(got.digit as usize, microconv::loss::argmax(logits));
    // Buffers of the wrong size are refused when the runner is built.
    let small = Arch::new(Shape::new(8, 8, 1), &layers);
    let params = vec![0.01; small.param_count()];
    let mut arena = vec![0.0; small.inference_len(1)];
    assert!(FloatClassifier::new(small, &params, &mut arena).is_err());
    // More classes than a RESULT carries: an error answer, not a panic.
    let wide = [Layer::Flatten, Layer::Dense(Dense::new(SCORES + 1))];
    let wide = Arch::new(Shape::new(8, 8, 1), &wide);
    let params = vec![0.01; wide.param_count()];
    let mut arena = vec![0.0; wide.planned_len(1)];
    let mut clf = FloatClassifier::new(wide, &params, &mut arena).unwrap();
    assert!(clf.classify(&[0; 64]).is_err(), "33 classes, 32 scores");
    let mut app = mock::app(clf, TICKS);
    app_feed(&mut app, &frame(kind::CLASSIFY, &[0; 64]));
    drain(&mut app, 1);
    assert_eq!(
        answers(&app_tx(&mut app)),
        vec![(kind::ERROR, vec![ErrorCode::Model as u8])]
    );
}

/// An 8x8x3 model with 3 classes (conv, pool, dense), random parameters.
fn colour_model(layers: &[microconv::Layer]) -> (microconv::Arch<'_>, Vec<f32>) {
    let arch = microconv::Arch::new(microconv::Shape::new(8, 8, 3), layers);
    let mut r = Rng::new(77);
    let params = (0..arch.param_count())
        .map(|_| r.below(1000) as f32 / 1000.0 - 0.5)
        .collect();
    (arch, params)
}

fn colour_layers() -> [microconv::Layer; 5] {
    use microconv::layers::{Conv2d, Dense, MaxPool};
    use microconv::{Layer, Padding};
    [
        Layer::Conv2d(Conv2d::new(3, 4)),
        Layer::Relu,
        Layer::MaxPool(MaxPool::new(2, 2, Padding::Valid)),
        Layer::Flatten,
        Layer::Dense(Dense::new(3)),
    ]
}

#[test]
fn a_model_of_another_shape_is_served_with_its_own_buffers() {
    const CAP: usize = frame_capacity(8 * 8 * 3);
    let layers = colour_layers();
    let (arch, params) = colour_model(&layers);
    let mut arena = vec![0.0; arch.planned_len(1)];
    let clf = FloatClassifier::new(arch, &params, &mut arena).unwrap();
    let mut app = mock::app_sized::<_, CAP>(clf, TICKS);
    let mut r = Rng::new(3);
    let imgs: Vec<Vec<u8>> = (0..4)
        .map(|_| (0..192).map(|_| r.below(256) as u8).collect())
        .collect();
    let mut rx = frame(kind::PING, &[]);
    for img in &imgs {
        rx.extend(frame(kind::CLASSIFY, img));
        rx.extend(frame(kind::CLASSIFY_PACKED, &packed(img)));
    }
    rx.extend(frame(kind::CLASSIFY, &imgs[0][..191])); // a byte short
    rx.extend(frame(kind::CLASSIFY_PACKED, &packed(&imgs[0][..64]))); // expands short
    rx.extend(frame(kind::CLASSIFY, &image(1))); // an MNIST image: longer than any request
    rx.extend(std::iter::repeat_n(0u8, IMAGE_LEN + 8)); // (its bytes are read as garbage)
    rx.extend(frame(kind::CLASSIFY, &imgs[1]));
    app_feed(&mut app, &rx);
    drain(&mut app, 1);
    let got = answers(&app_tx(&mut app));
    let pong = Pong::from_bytes(&got[0].1).unwrap();
    assert_eq!((pong.input, pong.classes), ([8, 8, 3], 3));
    assert_eq!(pong.input_len(), 192);
    assert_eq!(pong.max_payload as usize, CAP - 7);
    let want = |img: &[u8]| {
        let x: Vec<f32> = img.iter().map(|&p| p as f32 / 255.0).collect();
        let mut b = vec![0.0; arch.inference_len(1)];
        infer(&arch, &params, &x, 1, &mut b, &Exec::REFERENCE, &mut [])
            .unwrap()
            .to_vec()
    };
    let results = of_kind(&got, kind::RESULT, Classification::from_bytes);
    assert_eq!(results.len(), 9);
    for (i, c) in results.iter().enumerate() {
        let img = if i == 8 { &imgs[1] } else { &imgs[i / 2] };
        // Bit-identical to the host's inference.
        assert_eq!(c.logits(), &want(img)[..], "answer {i}");
    }
    assert_eq!(
        errors(&got),
        [
            ErrorCode::InputLen as u8,
            ErrorCode::InputLen as u8,
            ErrorCode::BadLength as u8
        ]
    );
}

#[test]
fn labels_are_checked_against_the_models_classes() {
    const CAP: usize = frame_capacity(8 * 8 * 3);
    let layers = colour_layers();
    let (arch, params) = colour_model(&layers);
    let all = plain(all_layers(&arch), false);
    let (mut arena, mut marks) = (
        vec![0.0; arena_len(&arch, &all)],
        vec![0; marks_len(&arch, &all)],
    );
    let (mut buf, mut input) = (vec![0.0; arch.inference_len(1)], vec![0.0; 192]);
    let bufs = Buffers {
        arena: &mut arena,
        marks: &mut marks,
        buf: &mut buf,
        input: &mut input,
    };
    let tuner = FineTune::new(arch, &params, bufs, 0.01).unwrap();
    let mut app = mock::app_sized::<_, CAP>(tuner, TICKS);
    let img: Vec<u8> = (0..192).map(|i| (i * 5 % 256) as u8).collect();
    let mut rx = train_frame(2, 0.01, &img);
    rx.extend(train_frame(3, 0.01, &img)); // label 3 of 3 classes
    rx.extend(evaluate_frame(2, &img));
    rx.extend(evaluate_frame(9, &img));
    rx.extend(train_frame(1, 0.01, &img[..150])); // short image
    app_feed(&mut app, &rx);
    drain(&mut app, 1);
    let got = answers(&app_tx(&mut app));
    assert_eq!(of_kind(&got, kind::TRAINED, Trained::from_bytes).len(), 1);
    assert_eq!(
        of_kind(&got, kind::RESULT, Classification::from_bytes).len(),
        1
    );
    assert_eq!(
        errors(&got),
        [
            ErrorCode::BadValue as u8,
            ErrorCode::BadValue as u8,
            ErrorCode::InputLen as u8
        ]
    );
}
