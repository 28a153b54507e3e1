// Harnesses `serial` and `app`: the firmware's serial protocol
// (`microconv_firmware::protocol`) and the application that answers it
// (`microconv_firmware::app::App`, on the host with mock peripherals).
//
// A frame ends with a CRC-32, so random bytes almost never make one. The input is
// therefore read as a script of chunks, each starting with an op byte:
// - `0`, n: the next n bytes, sent as they are (garbage, or frames the fuzzer mutated);
// - `1`, kind, len (u16 LE): a frame with a valid CRC around the next len bytes;
// - `2`, flags: a frame of a 784-pixel image made of the next 32 bytes repeated:
//   flags % 4 picks CLASSIFY, CLASSIFY_PACKED, TRAIN (label (flags / 4) % 12, so some
//   are out of range, learning rate from the 4 bytes after the seed) or EVALUATE;
// - `3`: a pause (the decoder is reset; the app sees its frame timeout expire).
//
// `run` (target `serial`) feeds the stream to a `Decoder` byte by byte and puts every
// frame's payload through the payload codecs; `run_app` (target `app`) plays it to the
// application (the first byte picks the float model, the int8 model or the float model
// learning on the device) over the firmware's mock peripherals (`microconv_firmware::mock`,
// feature `mock`) and checks that everything it sends back is a well-formed answer.

use microconv::format::{Aligned, Model};
use microconv::qformat::QModel;
use microconv_firmware::app::{Outcome, Runner, FRAME_TIMEOUT_US, POLL_US};
use microconv_firmware::finetune::{all_layers, arena_len, marks_len, plain, Buffers, FineTune};
use microconv_firmware::mock::{self, frame};
use microconv_firmware::protocol::{
    kind, pack_bits, parse_request, unpack_bits, Classification, Decoder, Digest, ErrorCode,
    Event, Pong, Trained, IMAGE_LEN, MAX_PAYLOAD, PONG_LEN,
};
use microconv_firmware::run::{FloatClassifier, Int8Classifier};

enum Chunk {
    Bytes(Vec<u8>),
    Pause,
}

/// The script in `data` as chunks of bytes and pauses.
fn script(data: &[u8]) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut i = 0;
    let take = |i: &mut usize, n: usize| {
        let s = &data[(*i).min(data.len())..(*i + n).min(data.len())];
        *i += n;
        s
    };
    while i < data.len() {
        let op = take(&mut i, 1)[0];
        match op % 4 {
            0 => {
                let n = take(&mut i, 1).first().copied().unwrap_or(0) as usize;
                chunks.push(Chunk::Bytes(take(&mut i, n).to_vec()));
            }
            1 => {
                let k = take(&mut i, 1).first().copied().unwrap_or(0);
                let len = match take(&mut i, 2) {
                    &[a, b] => u16::from_le_bytes([a, b]) as usize % (MAX_PAYLOAD + 3),
                    _ => 0,
                };
                chunks.push(Chunk::Bytes(frame(k, take(&mut i, len))));
            }
            2 => {
                let flags = take(&mut i, 1).first().copied().unwrap_or(0);
                let seed = take(&mut i, 32);
                let img: Vec<u8> = (0..IMAGE_LEN)
                    .map(|p| seed.get(p % 32).copied().unwrap_or(0))
                    .collect();
                let mut packed = vec![0u8; IMAGE_LEN + IMAGE_LEN / 128 + 1];
                let n = pack_bits(&img, &mut packed).expect("the documented bound suffices");
                let packed = &packed[..n];
                let label = (flags / 4) % 12;
                chunks.push(Chunk::Bytes(match flags % 4 {
                    0 => frame(kind::CLASSIFY, &img),
                    1 => frame(kind::CLASSIFY_PACKED, packed),
                    2 => {
                        let lr = match take(&mut i, 4) {
                            &[a, b, c, d] => [a, b, c, d],
                            _ => 0.01f32.to_le_bytes(),
                        };
                        let mut p = vec![label];
                        p.extend_from_slice(&lr);
                        p.extend_from_slice(packed);
                        frame(kind::TRAIN, &p)
                    }
                    _ => {
                        let mut p = vec![label];
                        p.extend_from_slice(packed);
                        frame(kind::EVALUATE, &p)
                    }
                }));
            }
            _ => chunks.push(Chunk::Pause),
        }
    }
    chunks
}

/// Target `serial`: the frame decoder and the payload codecs.
pub fn run(data: &[u8]) {
    let mut d: Decoder = Decoder::new();
    for chunk in script(data) {
        let Chunk::Bytes(bytes) = chunk else {
            d.reset();
            continue;
        };
        for b in bytes {
            if let Some(Event::Frame { kind, payload }) = d.push(b) {
                payload_codecs(kind, payload);
            }
        }
    }
}

fn payload_codecs(k: u8, payload: &[u8]) {
    assert!(payload.len() <= MAX_PAYLOAD);
    // Every payload parses to a request or a refusal; a parsed image is whole.
    let mut img = [0u8; IMAGE_LEN];
    if let Ok(microconv_firmware::protocol::Request::Train { label, lr }) =
        parse_request(k, payload, &mut img, 10)
    {
        assert!(label <= 9 && lr.is_finite() && lr > 0.0);
    }
    // A parsed CONFIGURE is in range and encodes back to its payload.
    if let Ok(microconv_firmware::protocol::Request::Configure(c)) =
        parse_request(k, payload, &mut img, 10)
    {
        assert!(c.is_valid());
        assert_eq!(&c.to_bytes()[..], payload);
    }
    // The frame encodes again and decodes to itself.
    let again = frame(k, payload);
    let mut d: Decoder = Decoder::new();
    let mut got = None;
    for &b in &again {
        if let Some(e) = d.push(b) {
            got = Some(match e {
                Event::Frame { kind, payload } => Ok((kind, payload.to_vec())),
                Event::Error(e) => Err(e),
            });
        }
    }
    assert_eq!(got, Some(Ok((k, payload.to_vec()))));
    // PackBits: any payload either expands to one image or is refused; whatever packs,
    // within the documented bound, unpacks to itself.
    let mut img = [0u8; IMAGE_LEN];
    if unpack_bits(payload, &mut img).is_some() {
        let mut packed = vec![0u8; IMAGE_LEN + IMAGE_LEN / 128 + 1];
        let n = pack_bits(&img, &mut packed).expect("the documented bound suffices");
        let mut back = [0u8; IMAGE_LEN];
        assert!(unpack_bits(&packed[..n], &mut back).is_some());
        assert_eq!(back, img);
    }
    let mut packed = vec![0u8; payload.len() + payload.len() / 128 + 1];
    let n = pack_bits(payload, &mut packed).expect("the documented bound suffices");
    let mut back = vec![0u8; payload.len()];
    assert!(unpack_bits(&packed[..n], &mut back).is_some());
    assert_eq!(back, payload);
    // The answers' payloads.
    if let Some(c) = Classification::from_bytes(payload) {
        assert!(c.digit < c.classes && c.logits().len() == c.classes as usize);
        let b = c.to_bytes();
        let c2 = Classification::from_bytes(&b).expect("a written result reads back");
        assert_eq!(c2.to_bytes(), b);
    }
    if let Some(code) = payload.first().copied().and_then(ErrorCode::from_u8) {
        assert_eq!(code as u8, payload[0]);
    }
}

static FLOAT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../firmware/models/small.mcw"
)));
static INT8: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../firmware/models/small-int8.mcw"
)));

/// Target `app`: the application with the float or the int8 model.
pub fn run_app(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which % 3 == 2 {
        let m = Model::parse(&FLOAT.0).expect("the shipped float model parses");
        let a = m.arch();
        let all = plain(all_layers(&a), false);
        let mut arena = vec![0.0; arena_len(&a, &all)];
        let mut marks = vec![0u8; marks_len(&a, &all)];
        let (mut buf, mut input) = (vec![0.0; a.inference_len(1)], vec![0.0; a.input.len()]);
        let b = Buffers {
            arena: &mut arena,
            marks: &mut marks,
            buf: &mut buf,
            input: &mut input,
        };
        let t = FineTune::new(a, m.params(), b, 0.01).expect("the shipped float model learns");
        play(t, rest);
    } else if which % 3 == 0 {
        let m = Model::parse(&FLOAT.0).expect("the shipped float model parses");
        let mut arena = vec![0.0; m.arch().planned_len(1)];
        let c = FloatClassifier::new(m.arch(), m.params(), &mut arena)
            .expect("the shipped float model classifies digits");
        play(c, rest);
    } else {
        let m = QModel::parse(&INT8.0).expect("the shipped int8 model parses");
        let mut arena = vec![0i8; m.arch().planned_len(1)];
        let c = Int8Classifier::new(m.net(), &mut arena)
            .expect("the shipped int8 model classifies digits");
        play(c, rest);
    }
}

fn play<'m, M: Runner<'m>>(model: M, data: &[u8]) {
    let mut app = mock::app(model, 7);
    let (mut classified, mut answered, mut refused, mut trained) = (0, 0, 0, 0);
    let mut count = |o: Outcome| match o {
        Outcome::Classified(_) => classified += 1,
        Outcome::Trained(_) => trained += 1,
        Outcome::Answered => answered += 1,
        Outcome::Refused(_) => refused += 1,
        Outcome::Idle | Outcome::Busy => {}
    };
    for chunk in script(data) {
        match chunk {
            Chunk::Bytes(bytes) => {
                app.serial_mut().rx.extend(bytes);
                // Every poll with bytes waiting consumes exactly one.
                loop {
                    let left = app.serial_mut().rx.len();
                    if left == 0 {
                        break;
                    }
                    let Ok(o) = app.poll();
                    assert_ne!(o, Outcome::Idle);
                    assert_eq!(app.serial_mut().rx.len(), left - 1);
                    count(o);
                }
            }
            Chunk::Pause => {
                for _ in 0..=FRAME_TIMEOUT_US / POLL_US {
                    let Ok(o) = app.poll();
                    count(o);
                }
            }
        }
    }
    // Everything the app sent is a well-formed answer, one per request it answered.
    let tx = std::mem::take(&mut app.serial_mut().tx);
    let mut d: Decoder = Decoder::new();
    let (mut results, mut pongs, mut errors, mut steps) = (0, 0, 0, 0);
    for b in tx {
        match d.push(b) {
            None => {}
            Some(Event::Error(e)) => panic!("the app sent a broken frame ({e:?})"),
            Some(Event::Frame { kind, payload }) => match kind {
                kind::RESULT => {
                    assert!(Classification::from_bytes(payload).is_some());
                    results += 1;
                }
                kind::PONG => {
                    assert_eq!(payload.len(), PONG_LEN);
                    let p = Pong::from_bytes(payload).expect("a version 2 PONG");
                    assert_eq!((p.input, p.classes), ([28, 28, 1], 10));
                    pongs += 1;
                }
                kind::DIGEST_RESULT => {
                    assert!(Digest::from_bytes(payload).is_some());
                    pongs += 1;
                }
                kind::CONFIGURED => {
                    let c = microconv_firmware::protocol::Configured::from_bytes(payload)
                        .expect("a CONFIGURED payload");
                    assert!(c.ram <= c.capacity && c.trainable > 0);
                    pongs += 1;
                }
                kind::TRAINED => {
                    let t = Trained::from_bytes(payload).expect("a TRAINED payload");
                    assert!(t.digit_before <= 9 && t.loss >= 0.0 && !t.loss.is_nan());
                    steps += 1;
                }
                kind::ERROR => {
                    assert_eq!(payload.len(), 1);
                    assert!(ErrorCode::from_u8(payload[0]).is_some());
                    errors += 1;
                }
                k => panic!("the app sent a frame of kind {k:#04x}"),
            },
        }
    }
    assert!(!d.in_frame(), "the app's last answer is incomplete");
    assert_eq!(
        (results, pongs, errors, steps),
        (classified, answered, refused, trained)
    );
}
