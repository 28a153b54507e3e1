//! The board-independent application on the host, with mock peripherals: answers,
//! errors, resynchronisation after garbage, timeouts, and no panic or hang on any bytes.

use std::collections::VecDeque;
use std::convert::Infallible;

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{ErrorType as PinErrorType, OutputPin};
use embedded_io::{ErrorType, Read, ReadReady, Write};
use microconv::format::{Aligned, Model};
use microconv::init::Rng;
use microconv::net::{infer, Exec};
use microconv_firmware::app::{
    App, Classifier, Outcome, Runner, Stopwatch, FRAME_TIMEOUT_US, POLL_US,
};
use microconv_firmware::protocol::{
    encode, kind, pack_bits, Classification, ErrorCode, IMAGE_LEN, OVERHEAD,
};

static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!("../models/small.mcw"));

#[derive(Default)]
struct Serial {
    rx: VecDeque<u8>,
    tx: Vec<u8>,
}
impl ErrorType for Serial {
    type Error = Infallible;
}
impl ReadReady for Serial {
    fn read_ready(&mut self) -> Result<bool, Infallible> {
        Ok(!self.rx.is_empty())
    }
}
impl Read for Serial {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let mut n = 0;
        while n < buf.len() {
            match self.rx.pop_front() {
                Some(b) => buf[n] = b,
                None => break,
            }
            n += 1;
        }
        Ok(n)
    }
}
impl Write for Serial {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        self.tx.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

#[derive(Default)]
struct Pin(Vec<bool>);
impl PinErrorType for Pin {
    type Error = Infallible;
}
impl OutputPin for Pin {
    fn set_high(&mut self) -> Result<(), Infallible> {
        self.0.push(true);
        Ok(())
    }
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.0.push(false);
        Ok(())
    }
}

struct Delay;
impl DelayNs for Delay {
    fn delay_ns(&mut self, _: u32) {}
}

struct Watch;
impl Stopwatch for Watch {
    fn start(&mut self) {}
    fn ticks(&mut self) -> u32 {
        42
    }
}

fn frame(k: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; OVERHEAD + payload.len()];
    let n = encode(k, payload, &mut out).unwrap();
    out.truncate(n);
    out
}

/// Splits the bytes the app sent into (kind, payload) frames.
fn answers(tx: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut d = microconv_firmware::protocol::Decoder::new();
    let mut out = Vec::new();
    for &b in tx {
        if let Some(microconv_firmware::protocol::Event::Frame { kind, payload }) = d.push(b) {
            out.push((kind, payload.to_vec()));
        }
    }
    out
}

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
    let mut scores = [0.0; 10];
    scores.copy_from_slice(logits);
    Classification {
        digit: microconv::loss::argmax(&scores) as u8,
        scores,
        ticks: 42,
    }
}

/// The classifier's two buffers, sized for the model.
struct Rig {
    buf: Vec<f32>,
    input: Vec<f32>,
}

impl Rig {
    fn new(model: &Model<'_>) -> Self {
        Rig {
            buf: vec![0.0; model.arch().inference_len(1)],
            input: vec![0.0; IMAGE_LEN],
        }
    }
}

fn run<'m>(model: &'m Model<'m>, rig: &'m mut Rig) -> App<'m, Serial, Pin, Delay, Watch> {
    let arch = model.arch();
    let clf = Classifier::new(arch, model.params(), &mut rig.buf, &mut rig.input).unwrap();
    App::new(Serial::default(), Pin::default(), Delay, Watch, clf)
}

/// Polls until the input is drained plus `extra` idle polls; returns the poll count.
fn drain<'m, M: Runner<'m>>(
    app: &mut App<'m, Serial, Pin, Delay, Watch, M>,
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
    let mut packed = vec![0u8; 2 * IMAGE_LEN];
    let n = pack_bits(&img, &mut packed).unwrap();
    let mut rx = frame(kind::CLASSIFY, &img);
    rx.extend(frame(kind::CLASSIFY_PACKED, &packed[..n]));
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
    assert_eq!(
        u32::from_le_bytes(got[2].1[..4].try_into().unwrap()) as usize,
        model.arch().param_count()
    );
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
    rx.extend([0xA5, 0x5A, 0x01, 0xFF, 0x7F]); // absurd length
    rx.extend(frame(kind::CLASSIFY, &img));
    app_feed(&mut app, &rx);
    drain(&mut app, 1);
    let got = answers(&app_tx(&mut app));
    let codes: Vec<_> = got
        .iter()
        .filter(|(k, _)| *k == kind::ERROR)
        .map(|(_, p)| ErrorCode::from_u8(p[0]).unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            ErrorCode::BadChecksum,
            ErrorCode::BadLength,
            ErrorCode::UnknownKind,
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
    let got: Vec<Classification> = answers(&app_tx(&mut app))
        .into_iter()
        .filter(|(k, _)| *k == kind::RESULT)
        .map(|(_, p)| Classification::from_bytes(&p).unwrap())
        .collect();
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
fn app_feed<'m, M: Runner<'m>>(app: &mut App<'m, Serial, Pin, Delay, Watch, M>, bytes: &[u8]) {
    app.serial_mut().rx.extend(bytes);
}
fn app_tx<'m, M: Runner<'m>>(app: &mut App<'m, Serial, Pin, Delay, Watch, M>) -> Vec<u8> {
    std::mem::take(&mut app.serial_mut().tx)
}
fn app_led(app: &mut App<'_, Serial, Pin, Delay, Watch>) -> Vec<bool> {
    std::mem::take(&mut app.pin_mut().0)
}

/// A TRAIN or EVALUATE payload: label, (learning rate,) the PackBits image.
fn labelled(label: u8, lr: Option<f32>, img: &[u8]) -> Vec<u8> {
    let mut p = vec![label];
    if let Some(lr) = lr {
        p.extend_from_slice(&lr.to_le_bytes());
    }
    let mut packed = vec![0u8; 2 * IMAGE_LEN];
    let n = pack_bits(img, &mut packed).unwrap();
    p.extend_from_slice(&packed[..n]);
    p
}

#[test]
fn trains_over_frames_like_the_host_and_counts_evaluations() {
    use microconv_firmware::finetune::{
        all_layers, arena_len, marks_len, plain, Buffers, FineTune,
    };
    use microconv_firmware::protocol::{Digest, Trained};
    let model = Model::parse(&MODEL.0).unwrap();
    let a = model.arch();
    let all = plain(all_layers(&a), false);
    let new_bufs = || {
        (
            vec![0.0f32; arena_len(&a, &all)],
            vec![0u8; marks_len(&a, &all)],
            vec![0.0f32; a.inference_len(1)],
            vec![0.0f32; IMAGE_LEN],
        )
    };
    let (mut h, mut m, mut b, mut i) = new_bufs();
    let tuner = FineTune::new(
        a,
        model.params(),
        Buffers {
            arena: &mut h,
            marks: &mut m,
            buf: &mut b,
            input: &mut i,
        },
        0.01,
    )
    .unwrap();
    let mut app = App::new(Serial::default(), Pin::default(), Delay, Watch, tuner);
    // The host's replica of the same steps.
    let (mut h2, mut m2, mut b2, mut i2) = new_bufs();
    let mut host = FineTune::new(
        a,
        model.params(),
        Buffers {
            arena: &mut h2,
            marks: &mut m2,
            buf: &mut b2,
            input: &mut i2,
        },
        0.01,
    )
    .unwrap();
    let mut rx = Vec::new();
    for s in 0..6u64 {
        let (img, label) = (image(500 + s), (s % 10) as u8);
        rx.extend(frame(kind::TRAIN, &labelled(label, Some(0.02), &img)));
        host.set_lr(0.02).unwrap();
        host.train(&img, label).unwrap();
    }
    for s in 0..4u64 {
        rx.extend(frame(
            kind::EVALUATE,
            &labelled((s % 2) as u8, None, &image(900 + s)),
        ));
    }
    rx.extend(frame(kind::DIGEST, &[]));
    // Out of range: label 10, a negative learning rate.
    rx.extend(frame(kind::TRAIN, &labelled(10, Some(0.01), &image(1))));
    rx.extend(frame(kind::TRAIN, &labelled(1, Some(-0.01), &image(1))));
    rx.extend(frame(kind::DIGEST, &[]));
    app_feed(&mut app, &rx);
    drain(&mut app, 1);
    let got = answers(&app_tx(&mut app));
    let trained: Vec<Trained> = got
        .iter()
        .filter(|(k, _)| *k == kind::TRAINED)
        .map(|(_, p)| Trained::from_bytes(p).unwrap())
        .collect();
    assert_eq!(
        trained.iter().map(|t| t.steps).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    assert!(trained.iter().all(|t| t.loss.is_finite() && t.loss >= 0.0));
    let digests: Vec<Digest> = got
        .iter()
        .filter(|(k, _)| *k == kind::DIGEST_RESULT)
        .map(|(_, p)| Digest::from_bytes(p).unwrap())
        .collect();
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
    let errors: Vec<u8> = got
        .iter()
        .filter(|(k, _)| *k == kind::ERROR)
        .map(|(_, p)| p[0])
        .collect();
    assert_eq!(errors, [ErrorCode::BadValue as u8; 2]);
    // A classify-only firmware refuses to train.
    let mut rig = Rig::new(&model);
    let mut app = run(&model, &mut rig);
    app_feed(
        &mut app,
        &frame(kind::TRAIN, &labelled(1, Some(0.01), &image(1))),
    );
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
    use microconv_firmware::finetune::{
        all_layers, arena_len, last_layers, marks_len, plain, ram_bytes, Buffers, FineTune,
    };
    use microconv_firmware::protocol::{Configured, Digest, TrainConfig, Trained};
    let model = Model::parse(&MODEL.0).unwrap();
    let a = model.arch();
    let all = plain(all_layers(&a), false);
    let new_bufs = || {
        (
            vec![0.0f32; arena_len(&a, &all)],
            vec![0u8; marks_len(&a, &all)],
            vec![0.0f32; a.inference_len(1)],
            vec![0.0f32; IMAGE_LEN],
        )
    };
    let (mut h, mut m, mut b, mut i) = new_bufs();
    let bufs = Buffers {
        arena: &mut h,
        marks: &mut m,
        buf: &mut b,
        input: &mut i,
    };
    let tuner = FineTune::new(a, model.params(), bufs, 0.01).unwrap();
    let mut app = App::new(Serial::default(), Pin::default(), Delay, Watch, tuner);
    let (mut h2, mut m2, mut b2, mut i2) = new_bufs();
    let bufs = Buffers {
        arena: &mut h2,
        marks: &mut m2,
        buf: &mut b2,
        input: &mut i2,
    };
    let mut host = FineTune::new(a, model.params(), bufs, 0.01).unwrap();
    let good = TrainConfig {
        momentum: 0.5,
        accumulate: 2,
        ..plain(last_layers(&a, 1), false)
    };
    let mut rx = Vec::new();
    // One step of the default (last layer), then a configuration: it starts over.
    rx.extend(frame(kind::TRAIN, &labelled(3, Some(0.02), &image(7))));
    rx.extend(frame(kind::CONFIGURE, &good.to_bytes()));
    host.configure(good).unwrap();
    for s in 0..4u64 {
        let (img, label) = (image(600 + s), (s % 10) as u8);
        rx.extend(frame(kind::TRAIN, &labelled(label, Some(0.01), &img)));
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
    let configured: Vec<Configured> = got
        .iter()
        .filter(|(k, _)| *k == kind::CONFIGURED)
        .map(|(_, p)| Configured::from_bytes(p).unwrap())
        .collect();
    assert_eq!(configured.len(), 1);
    assert_eq!(configured[0].trainable, 5_130);
    assert_eq!(configured[0].ram, ram_bytes(&a, &good) as u32);
    assert_eq!(configured[0].capacity, ram_bytes(&a, &all) as u32);
    let steps: Vec<u32> = got
        .iter()
        .filter(|(k, _)| *k == kind::TRAINED)
        .map(|(_, p)| Trained::from_bytes(p).unwrap().steps)
        .collect();
    assert_eq!(steps, [1, 1, 2, 3, 4]);
    let digests: Vec<Digest> = got
        .iter()
        .filter(|(k, _)| *k == kind::DIGEST_RESULT)
        .map(|(_, p)| Digest::from_bytes(p).unwrap())
        .collect();
    assert_eq!(digests.len(), 2);
    assert_eq!((digests[0].steps, digests[0].crc), (4, host.digest()));
    assert_eq!(
        (digests[1].steps, digests[1].crc),
        (4, host.digest()),
        "a refused CONFIGURE changed the device"
    );
    let errors: Vec<u8> = got
        .iter()
        .filter(|(k, _)| *k == kind::ERROR)
        .map(|(_, p)| p[0])
        .collect();
    let bv = ErrorCode::BadValue as u8;
    assert_eq!(
        errors,
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
