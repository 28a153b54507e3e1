//! `host-trainer board`: the PC side of the wire (protocol version 2). Sends the test
//! images of any dataset the model takes (MNIST by default, `--data` for IDX files of
//! the model's input shape) to the firmware (a QEMU process it starts, or a board on a
//! serial port), and checks every answer against the host running the same core code on
//! the same weights.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use microconv_firmware::app::Classifier;
use microconv_firmware::protocol::{
    encode, kind, pack_bits, packed_max, Classification, Decoder, ErrorCode, Event, Pong, OVERHEAD,
    SCORES,
};

use crate::data::Dataset;
use crate::engine::split;
pub use crate::weights::HostModel;
use crate::weights::{WeightsFile, MAX_BYTES};

/// Where the firmware runs.
pub enum Target {
    /// Start QEMU with this firmware ELF, on the machine the ELF names ([`machine_of`]):
    /// the serial port on a Unix socket, defmt on QEMU's stdout, `-icount shift=0` so
    /// that the firmware's timer counts instructions.
    Qemu {
        /// The firmware ELF.
        elf: PathBuf,
        /// Where to save the raw defmt stream.
        defmt_log: PathBuf,
    },
    /// A board on a serial port.
    Port {
        /// Device path, for example `/dev/ttyUSB0`.
        path: String,
        /// Baud rate.
        baud: u32,
    },
}

/// What the run measured.
#[derive(Debug, Default)]
pub struct Report {
    /// Images sent.
    pub images: usize,
    /// Board answers equal to the label.
    pub correct: usize,
    /// Host predictions equal to the label.
    pub host_correct: usize,
    /// Board digit equal to the host's.
    pub agree: usize,
    /// All the model's scores bit-identical to the host's.
    pub bit_exact: usize,
    /// Largest |board score - host score|.
    pub max_abs_diff: f32,
    /// Wall time per image (send, infer, answer), in milliseconds.
    pub ms_per_image: f64,
    /// Mean, min and max SysTick/cycle ticks per inference.
    pub ticks: (f64, u32, u32),
    /// Stack high-water mark the firmware reported at the end, in bytes.
    pub stack_bytes: u32,
    /// Parameter count the firmware reported.
    pub firmware_params: u32,
    /// Frames sent again after a Timeout or BadChecksum answer.
    pub retries: usize,
}

/// Times one image is sent again after a Timeout or BadChecksum answer.
const MAX_RETRIES: usize = 5;

pub(crate) struct Link {
    tx: Box<dyn Write + Send>,
    rx: Receiver<Vec<u8>>,
    pending: Vec<u8>,
    decoder: Decoder,
    child: Option<Child>,
    pub(crate) what: String,
}

impl Link {
    pub(crate) fn send(&mut self, k: u8, payload: &[u8]) -> Result<()> {
        let mut out = vec![0u8; OVERHEAD + payload.len()];
        let n = encode(k, payload, &mut out).ok_or_else(|| anyhow!("payload too long"))?;
        self.send_raw(&out[..n])
    }

    fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.tx
            .write_all(bytes)
            .and_then(|_| self.tx.flush())
            .with_context(|| format!("{}: cannot write (did the board disappear?)", self.what))
    }

    /// The next frame, or an error after `timeout` without one.
    pub(crate) fn recv(&mut self, timeout: Duration) -> Result<(u8, Vec<u8>)> {
        let deadline = Instant::now() + timeout;
        loop {
            while !self.pending.is_empty() {
                let b = self.pending.remove(0);
                match self.decoder.push(b) {
                    Some(Event::Frame { kind, payload }) => return Ok((kind, payload.to_vec())),
                    Some(Event::Error(e)) => bail!("{}: garbled answer ({e:?})", self.what),
                    None => {}
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(chunk) => self.pending = chunk,
                Err(RecvTimeoutError::Timeout) => bail!(
                    "{}: no answer within {:.1} s",
                    self.what,
                    timeout.as_secs_f64()
                ),
                Err(RecvTimeoutError::Disconnected) => bail!(
                    "{}: the connection closed (board unplugged or QEMU exited)",
                    self.what
                ),
            }
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Forwards everything `r` yields to a channel, until EOF or an error.
fn pump(mut r: impl Read + Send + 'static) -> Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break,
            }
        }
    });
    rx
}

/// How to start QEMU for one firmware ELF.
#[derive(Debug, PartialEq)]
pub(crate) struct Machine {
    /// QEMU's program, for example `qemu-system-arm`.
    pub program: String,
    /// The Debian package that installs it.
    pub package: &'static str,
    /// `-machine`.
    pub machine: String,
    /// `-cpu`.
    pub cpu: String,
    /// Further options, for example `-global nrf51-soc.sram-size=32768`.
    pub extra: Vec<String>,
}

/// The marker a firmware binary embeds to name its QEMU machine:
/// `microconv-qemu:PROGRAM;MACHINE;CPU;EXTRA OPTIONS;` (firmware/src/bin/).
const MACHINE_TAG: &[u8] = b"microconv-qemu:";

/// The QEMU machine for a firmware ELF: the one its `microconv-qemu:` marker names,
/// checked against the ELF's architecture (`e_machine`); an Arm ELF without a marker is
/// the mps2-an386 firmware, which predates the marker.
pub(crate) fn machine_of(elf: &[u8]) -> Result<Machine> {
    if elf.len() < 20 || &elf[..4] != b"\x7fELF" {
        bail!("not an ELF file (give the firmware binary cargo built, not a .bin or .hex)");
    }
    if elf[4] != 1 || elf[5] != 1 {
        bail!("not a 32-bit little-endian ELF: no firmware target of this project");
    }
    let (arch, program, package) = match u16::from_le_bytes([elf[18], elf[19]]) {
        40 => ("Arm", "qemu-system-arm", "qemu-system-arm"),
        243 => ("RISC-V", "qemu-system-riscv32", "qemu-system-misc"),
        other => bail!("ELF machine {other} is neither Arm (40) nor RISC-V (243)"),
    };
    let Some(at) = elf
        .windows(MACHINE_TAG.len())
        .position(|w| w == MACHINE_TAG)
    else {
        if arch == "Arm" {
            return Ok(Machine {
                program: program.into(),
                package,
                machine: "mps2-an386".into(),
                cpu: "cortex-m4".into(),
                extra: Vec::new(),
            });
        }
        bail!("a {arch} ELF without a `microconv-qemu:` marker: not a firmware of this project, or built before the marker existed");
    };
    let rest = &elf[at + MACHINE_TAG.len()..];
    // Rust strings in .rodata have no terminator: the fields end at the fourth `;`, and
    // whatever follows (up to a control byte or 256 bytes) is ignored.
    let len = rest
        .iter()
        .take(256)
        .position(|&b| b < b' ')
        .unwrap_or(rest.len().min(256));
    let text = std::str::from_utf8(&rest[..len])
        .map_err(|_| anyhow!("the `microconv-qemu:` marker is not text"))?;
    let fields: Vec<&str> = text.split(';').collect();
    let [prog, machine, cpu, extra, ..] = fields[..] else {
        bail!("the `microconv-qemu:` marker {text:?} does not have 4 fields (program;machine;cpu;options;)");
    };
    if prog != program {
        bail!("the marker names {prog}, but this is a {arch} ELF (run by {program})");
    }
    if machine.is_empty() || cpu.is_empty() {
        bail!("the `microconv-qemu:` marker {text:?} has no machine or no CPU");
    }
    Ok(Machine {
        program: program.into(),
        package,
        machine: machine.into(),
        cpu: cpu.into(),
        extra: extra.split_whitespace().map(str::to_owned).collect(),
    })
}

pub(crate) fn open(target: &Target) -> Result<Link> {
    match target {
        Target::Qemu { elf, defmt_log } => {
            if !elf.exists() {
                bail!("{}: no such firmware ELF (build it: see README, `cargo build -p microconv-firmware --target thumbv7em-none-eabihf --features mps2-an386 --release`)", elf.display());
            }
            static SESSIONS: std::sync::atomic::AtomicUsize =
                std::sync::atomic::AtomicUsize::new(0);
            let id = SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("microconv-qemu-{}-{id}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let sock = dir.join("uart.sock");
            let _ = std::fs::remove_file(&sock);
            let bytes = std::fs::read(elf)
                .with_context(|| format!("cannot read firmware ELF {}", elf.display()))?;
            let m = machine_of(&bytes).with_context(|| format!("{}", elf.display()))?;
            let mut child = Command::new(&m.program)
                .args(["-cpu", &m.cpu, "-machine", &m.machine])
                .args(["-nographic", "-monitor", "none"])
                .args(&m.extra)
                .args([
                    "-semihosting-config",
                    "enable=on,target=native",
                    "-icount",
                    "shift=0",
                ])
                .arg("-serial")
                .arg(format!("unix:{},server=on,wait=on", sock.display()))
                .arg("-kernel")
                .arg(elf)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| {
                    format!(
                        "cannot start {} (install it: apt-get install {})",
                        m.program, m.package
                    )
                })?;
            // defmt's bytes (semihosting, QEMU's stdout) go to a file as they come.
            if let Some(parent) = defmt_log.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let mut log = std::fs::File::create(defmt_log)
                .with_context(|| format!("cannot create {}", defmt_log.display()))?;
            if let Some(mut out) = child.stdout.take() {
                thread::spawn(move || std::io::copy(&mut out, &mut log));
            }
            let start = Instant::now();
            let stream = loop {
                match UnixStream::connect(&sock) {
                    Ok(s) => break s,
                    Err(_) if start.elapsed() < Duration::from_secs(10) => {
                        if let Ok(Some(status)) = child.try_wait() {
                            let mut err = String::new();
                            if let Some(mut e) = child.stderr.take() {
                                let _ = e.read_to_string(&mut err);
                            }
                            bail!("{} exited ({status}): {}", m.program, err.trim());
                        }
                        thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => bail!(
                        "cannot connect to QEMU's UART socket {}: {e}",
                        sock.display()
                    ),
                }
            };
            let rx = pump(stream.try_clone()?);
            Ok(Link {
                tx: Box::new(stream),
                rx,
                pending: Vec::new(),
                decoder: Decoder::new(),
                child: Some(child),
                what: "QEMU".into(),
            })
        }
        Target::Port { path, baud } => {
            let port = serialport::new(path, *baud)
                .timeout(Duration::from_millis(100))
                .open()
                .with_context(|| format!("cannot open serial port {path} at {baud} baud"))?;
            let rx = pump(
                port.try_clone()
                    .with_context(|| format!("{path}: cannot clone the port"))?,
            );
            Ok(Link {
                tx: Box::new(port),
                rx,
                pending: Vec::new(),
                decoder: Decoder::new(),
                child: None,
                what: path.clone(),
            })
        }
    }
}

/// The host's scores (the model's classes, then zeros) for `n` test images, with the
/// firmware's own classifier (the reference kernels, float or int8) on the same 8-bit
/// values it receives (the IDX file's own bytes).
pub fn host_scores(
    model: &HostModel<'_>,
    test: &Dataset,
    n: usize,
    threads: usize,
) -> Result<Vec<[f32; SCORES]>> {
    let arch = model.arch();
    let mut out = vec![[0.0f32; SCORES]; n];
    thread::scope(|s| -> Result<()> {
        let mut rest = &mut out[..];
        let mut handles = Vec::new();
        for r in split(n, threads) {
            let (mine, tail) = rest.split_at_mut(r.len());
            rest = tail;
            let arch = &arch;
            handles.push(s.spawn(move || -> Result<(), microconv::Error> {
                let mut arena = vec![0.0; arch.planned_len(1)];
                let mut qarena = vec![0i8; arch.planned_len(1)];
                let mut clf = match model {
                    HostModel::Float(m) => Classifier::new(*arch, m.params(), &mut arena)?,
                    HostModel::Int8(m) => Classifier::new_int8(m.net(), &mut qarena)?,
                };
                for (o, i) in mine.iter_mut().zip(r) {
                    *o = clf.classify(test.image(i))?.1;
                }
                Ok(())
            }));
        }
        for h in handles {
            h.join()
                .map_err(|_| anyhow!("a host inference thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(out)
}

/// Whether a data set (`what`: "test", "training") is what the model takes: its input
/// shape, labels below its classes, and no more classes than a RESULT frame carries.
pub fn check_data(
    arch: &microconv::Arch<'_>,
    what: &str,
    test: &Dataset,
    weights: &Path,
) -> Result<()> {
    let (want, got) = (arch.input, test.shape());
    if want != got {
        bail!(
            "the {what} images are {}x{}x{} but the model in {} takes {}x{}x{}: give --data a directory of IDX files of its input shape (the data it was trained on)",
            got.h,
            got.w,
            got.c,
            weights.display(),
            want.h,
            want.w,
            want.c
        );
    }
    if arch.classes() > SCORES {
        bail!(
            "the model in {} has {} classes; the serial protocol carries at most {SCORES} scores",
            weights.display(),
            arch.classes()
        );
    }
    test.check_labels(arch.classes())
}

/// The firmware's PONG, checked against the model in `weights`: protocol version,
/// parameters, input shape, classes.
pub(crate) fn check_pong(
    what: &str,
    payload: &[u8],
    arch: &microconv::Arch<'_>,
    weights: &Path,
) -> Result<Pong> {
    let p = Pong::from_bytes(payload).map_err(|e| anyhow!("{what}: {e}"))?;
    let a = arch;
    if p.params as usize != a.param_count() {
        bail!(
            "{what}: the firmware runs a model with {} parameters but {} has {}: flash the firmware built with these weights",
            p.params,
            weights.display(),
            a.param_count()
        );
    }
    let [h, w, c] = p.input.map(|d| d as usize);
    if (h, w, c) != (a.input.h, a.input.w, a.input.c) || p.classes as usize != a.classes() {
        bail!(
            "{what}: the firmware's model takes {h}x{w}x{c} inputs into {} classes but {} takes {}x{}x{} into {}: flash the firmware built with these weights",
            p.classes,
            weights.display(),
            a.input.h,
            a.input.w,
            a.input.c,
            a.classes()
        );
    }
    Ok(p)
}

/// How [`run`] sends its images.
pub struct Options {
    /// Test images to send (at most the test set).
    pub images: usize,
    /// PackBits-compressed frames instead of raw images (`h*w*c` bytes).
    pub packed: bool,
    /// Threads of the host's own inference.
    pub threads: usize,
    /// QEMU processes sharing the images (a serial port is always one).
    pub jobs: usize,
}

/// What every link's session shares: the weights, the host's scores, how to send.
struct Shared<'a> {
    weights: &'a Path,
    arch: microconv::Arch<'a>,
    test: &'a Dataset,
    host: &'a [[f32; SCORES]],
    packed: bool,
    log: &'a (dyn Fn(&str) + Sync),
}

/// Runs `opts.images` test images through the firmware and compares with the host. With
/// a QEMU target, `opts.jobs` QEMU processes share the images (each checks its own part).
pub fn run(
    target: &Target,
    weights: &Path,
    test: &Dataset,
    opts: &Options,
    log: &(dyn Fn(&str) + Sync),
) -> Result<Report> {
    let Options {
        images,
        packed,
        threads,
        jobs,
    } = *opts;
    let bytes = crate::bytes::read_at_most(weights, MAX_BYTES, "weights file")?;
    let file = WeightsFile::from_bytes(&bytes);
    let model =
        HostModel::parse(file.bytes()).map_err(|e| anyhow!("{}: {e}", weights.display()))?;
    let arch = model.arch();
    check_data(&arch, "test", test, weights)?;
    let n = images.min(test.len());
    let host = host_scores(&model, test, n, threads)?;
    let ranges = match target {
        Target::Qemu { .. } => split(n, jobs.max(1)),
        Target::Port { .. } => split(n, 1),
    };
    let shared = Shared {
        weights,
        arch,
        test,
        host: &host,
        packed,
        log,
    };
    let start = Instant::now();
    let parts: Vec<Result<Report>> = thread::scope(|s| {
        let handles: Vec<_> = ranges
            .iter()
            .enumerate()
            .map(|(j, r)| {
                let t = match target {
                    Target::Qemu { elf, defmt_log } if ranges.len() > 1 => Target::Qemu {
                        elf: elf.clone(),
                        defmt_log: defmt_log.with_extension(format!("{j}.bin")),
                    },
                    Target::Qemu { elf, defmt_log } => Target::Qemu {
                        elf: elf.clone(),
                        defmt_log: defmt_log.clone(),
                    },
                    Target::Port { path, baud } => Target::Port {
                        path: path.clone(),
                        baud: *baud,
                    },
                };
                let (shared, r) = (&shared, r.clone());
                s.spawn(move || session(&t, r, shared))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a board session panicked")))
            })
            .collect()
    });
    let mut total = Report::default();
    let mut ticks_sum = 0.0;
    total.ticks.1 = u32::MAX;
    for p in parts {
        let p = p?;
        total.images += p.images;
        total.correct += p.correct;
        total.host_correct += p.host_correct;
        total.agree += p.agree;
        total.bit_exact += p.bit_exact;
        total.max_abs_diff = total.max_abs_diff.max(p.max_abs_diff);
        ticks_sum += p.ticks.0 * p.images as f64;
        total.ticks.1 = total.ticks.1.min(p.ticks.1);
        total.ticks.2 = total.ticks.2.max(p.ticks.2);
        total.stack_bytes = total.stack_bytes.max(p.stack_bytes);
        total.firmware_params = p.firmware_params;
        total.retries += p.retries;
    }
    total.ticks.0 = ticks_sum / total.images.max(1) as f64;
    total.ms_per_image = start.elapsed().as_secs_f64() * 1e3 / total.images.max(1) as f64;
    Ok(total)
}

/// One link's share: images `range`, checked against `shared.host[range]`.
fn session(target: &Target, range: std::ops::Range<usize>, shared: &Shared<'_>) -> Result<Report> {
    let Shared {
        weights,
        arch,
        test,
        host,
        packed,
        log,
    } = *shared;
    let mut link = open(target)?;
    let timeout = Duration::from_secs(20);

    // Who is there, and what does it take?
    link.send(kind::PING, &[])?;
    let (k, p) = link.recv(timeout)?;
    if k != kind::PONG {
        bail!("{}: unexpected answer to PING (kind {k:#04x})", link.what);
    }
    let pong = check_pong(&link.what, &p, &arch, weights)?;
    let mut report = Report {
        firmware_params: pong.params,
        ..Report::default()
    };
    let (input_len, classes) = (arch.input.len(), arch.classes());

    // Bad frames on the wire get error answers, and the link resynchronises: a corrupted
    // frame, and an image one byte shorter than the model's input.
    let mut bad = vec![0u8; OVERHEAD];
    let bn = encode(kind::PING, &[], &mut bad).unwrap_or(0);
    bad[bn - 1] ^= 0xFF;
    link.send_raw(b"\x00garbage\xa5\x13")?;
    link.send_raw(&bad[..bn])?;
    for want in [ErrorCode::BadChecksum, ErrorCode::InputLen] {
        if want == ErrorCode::InputLen {
            link.send(kind::CLASSIFY, &vec![0u8; input_len - 1])?;
        }
        let (k, p) = link.recv(timeout)?;
        if k != kind::ERROR || p.first().copied().and_then(ErrorCode::from_u8) != Some(want) {
            bail!(
                "{}: expected an error answer {want:?}, got kind {k:#04x} {p:?}",
                link.what
            );
        }
    }
    log(&format!(
        "{}: protocol version {}, model input {}x{}x{} ({input_len} bytes), {classes} classes; bad frames answered with BadChecksum and InputLen errors, link resynchronised",
        link.what, pong.version, arch.input.h, arch.input.w, arch.input.c
    ));

    let mut ticks_sum = 0f64;
    let (mut tmin, mut tmax) = (u32::MAX, 0u32);
    let mut packed_buf = vec![0u8; packed_max(input_len)];
    for i in range.clone() {
        let want = &host[i][..classes];
        let pixels = test.image(i);
        // A frame can be refused in transit (a timeout while the emulator or the
        // line stalls, a corrupted byte): the protocol resynchronises, so send it again.
        let mut attempts = 0;
        let p = loop {
            match (packed, pack_bits(pixels, &mut packed_buf)) {
                (true, Some(m)) => link.send(kind::CLASSIFY_PACKED, &packed_buf[..m])?,
                _ => link.send(kind::CLASSIFY, pixels)?,
            }
            let (k, p) = link.recv(timeout).with_context(|| format!("image {i}"))?;
            let code = p.first().copied().and_then(ErrorCode::from_u8);
            match (k, code) {
                (kind::RESULT, _) => break p,
                (kind::ERROR, Some(ErrorCode::Timeout | ErrorCode::BadChecksum))
                    if attempts < MAX_RETRIES =>
                {
                    attempts += 1;
                    report.retries += 1;
                    log(&format!(
                        "{}: image {i}: {code:?}, sending it again",
                        link.what
                    ));
                }
                _ => bail!(
                    "{}: image {i}: answer of kind {k:#04x} {p:?} instead of a result",
                    link.what
                ),
            }
        };
        let c = Classification::from_bytes(&p)
            .filter(|c| c.classes as usize == classes)
            .ok_or_else(|| anyhow!("image {i}: malformed result (not {classes} scores): {p:?}"))?;
        let host_digit = microconv::loss::argmax(want) as u8;
        report.images += 1;
        report.correct += (c.digit == test.labels[i]) as usize;
        report.host_correct += (host_digit == test.labels[i]) as usize;
        report.agree += (c.digit == host_digit) as usize;
        report.bit_exact += c
            .logits()
            .iter()
            .zip(want)
            .all(|(a, b)| a.to_bits() == b.to_bits()) as usize;
        for (a, b) in c.logits().iter().zip(want) {
            report.max_abs_diff = report.max_abs_diff.max((a - b).abs());
        }
        ticks_sum += c.ticks as f64;
        tmin = tmin.min(c.ticks);
        tmax = tmax.max(c.ticks);
        let done = i + 1 - range.start;
        if done.is_multiple_of(1000) {
            log(&format!(
                "{}: images {}..{}: accuracy {:.4}, agreement {}/{done}",
                link.what,
                range.start,
                i + 1,
                report.correct as f64 / done as f64,
                report.agree
            ));
        }
    }
    report.ticks = (ticks_sum / report.images.max(1) as f64, tmin, tmax);
    link.send(kind::PING, &[])?;
    let (_, p) = link.recv(timeout)?;
    if let Ok(p) = Pong::from_bytes(&p) {
        report.stack_bytes = p.stack;
    }
    Ok(report)
}

/// Decodes a raw defmt stream with `defmt-print`, if it is installed.
pub fn decode_defmt(elf: &Path, raw: &Path) -> Option<String> {
    let input = std::fs::File::open(raw).ok()?;
    let out = Command::new("defmt-print")
        .arg("-e")
        .arg(elf)
        .stdin(input)
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(e_machine: u16, body: &[u8]) -> Vec<u8> {
        let mut v = b"\x7fELF\x01\x01\x01".to_vec();
        v.resize(18, 0);
        v.extend_from_slice(&e_machine.to_le_bytes());
        v.resize(64, 0);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn the_machine_comes_from_the_marker_and_the_elf() {
        let m = machine_of(&elf(40, b"xx microconv-qemu:qemu-system-arm;microbit;cortex-m0;-global nrf51-soc.sram-size=32768;panicked at")).unwrap();
        assert_eq!(m.program, "qemu-system-arm");
        assert_eq!(
            (m.machine.as_str(), m.cpu.as_str()),
            ("microbit", "cortex-m0")
        );
        assert_eq!(m.extra, ["-global", "nrf51-soc.sram-size=32768"]);
        let m = machine_of(&elf(
            243,
            b"microconv-qemu:qemu-system-riscv32;virt;rv32;-bios none;\0",
        ))
        .unwrap();
        assert_eq!(
            (m.program.as_str(), m.package),
            ("qemu-system-riscv32", "qemu-system-misc")
        );
        // The mps2-an386 firmware carries no marker.
        let m = machine_of(&elf(40, b"no marker here")).unwrap();
        assert_eq!(
            (m.machine.as_str(), m.cpu.as_str()),
            ("mps2-an386", "cortex-m4")
        );
    }

    #[test]
    fn a_wrong_or_broken_marker_is_an_error() {
        let msg = |r: Result<Machine>| format!("{:#}", r.unwrap_err());
        assert!(msg(machine_of(b"MZ not an elf at all")).contains("not an ELF"));
        assert!(msg(machine_of(&elf(62, b""))).contains("neither Arm"));
        assert!(
            msg(machine_of(&elf(243, b"nothing"))).contains("without a `microconv-qemu:` marker")
        );
        assert!(msg(machine_of(&elf(
            40,
            b"microconv-qemu:qemu-system-riscv32;virt;rv32;;"
        )))
        .contains("Arm ELF"));
        assert!(msg(machine_of(&elf(
            40,
            b"microconv-qemu:qemu-system-arm;microbit\0"
        )))
        .contains("4 fields"));
        assert!(msg(machine_of(&elf(
            40,
            b"microconv-qemu:qemu-system-arm;;cortex-m0;;"
        )))
        .contains("no machine"));
    }

    #[test]
    fn pong_and_data_are_checked_against_the_model() {
        use microconv::layers::Dense;
        use microconv::{Arch, Layer, Shape};
        use microconv_firmware::protocol::VERSION;
        static LAYERS: [Layer; 2] = [Layer::Flatten, Layer::Dense(Dense::new(3))];
        let arch = Arch::new(Shape::new(14, 14, 2), &LAYERS);
        let w = Path::new("digits.mcw");
        let pong = Pong {
            version: VERSION,
            params: arch.param_count() as u32,
            classes: 3,
            input: [14, 14, 2],
            stack: 1,
            max_payload: 400,
        };
        assert_eq!(
            check_pong("QEMU", &pong.to_bytes(), &arch, w).unwrap(),
            pong
        );
        let msg = |p: &[u8]| format!("{:#}", check_pong("QEMU", p, &arch, w).unwrap_err());
        // A version 1 firmware (24-byte PONG), a version 3 one.
        assert!(msg(&pong.to_bytes()[..24]).contains("protocol version 1"));
        let mut v3 = pong.to_bytes();
        v3[0] = 3;
        assert!(msg(&v3).contains("protocol version 3"));
        // Another model: parameters, then shape or classes.
        let other = |f: &dyn Fn(&mut Pong)| {
            let mut p = pong;
            f(&mut p);
            msg(&p.to_bytes())
        };
        assert!(other(&|p| p.params += 1).contains("parameters"));
        let m = other(&|p| p.input = [28, 28, 1]);
        assert!(m.contains("28x28x1") && m.contains("14x14x2"), "{m}");
        assert!(other(&|p| p.classes = 10).contains("10 classes"));
        // Data of another shape, labels past the classes.
        let data = |rows, cols, channels, label| Dataset {
            images: vec![0; rows * cols * channels],
            labels: vec![label],
            rows,
            cols,
            channels,
            labels_file: "labels".into(),
            class_names: Vec::new(),
        };
        assert!(check_data(&arch, "test", &data(14, 14, 2, 2), w).is_ok());
        let e = format!(
            "{:#}",
            check_data(&arch, "test", &data(28, 28, 1, 0), w).unwrap_err()
        );
        assert!(
            e.contains("test images are 28x28x1") && e.contains("takes 14x14x2"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            check_data(&arch, "test", &data(14, 14, 2, 3), w).unwrap_err()
        );
        assert!(e.contains("label 3"), "{e}");
    }
}
