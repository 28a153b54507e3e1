//! Nothing trained is lost to an output path, and no input can take unbounded memory:
//! `--out` as a directory, missing and unwritable directories refused before the first
//! step, a failed final save rescued to a named file, a resumed run writing where it
//! wrote (after a SIGKILL, from another working directory), and gzip bombs refused with
//! bounded peak memory (measured).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_host-trainer"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mc-out-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// An IDX file of unsigned bytes.
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

/// A small MNIST-like data directory: 200 training and 50 test images of 28x28 with
/// labels 0-9, the pixels a function of the label so that training learns something.
fn dataset(dir: &Path) {
    let img = |n: usize| -> (Vec<u8>, Vec<u8>) {
        let labels: Vec<u8> = (0..n).map(|i| (i * 7 % 10) as u8).collect();
        let mut px = vec![0u8; n * 784];
        for (i, &l) in labels.iter().enumerate() {
            for k in 0..784 {
                px[i * 784 + k] = if (k / 28 + k % 28 + i) % 10 == l as usize {
                    255
                } else {
                    (k * 31 + i) as u8 & 0x1f
                };
            }
        }
        (px, labels)
    };
    std::fs::create_dir_all(dir).unwrap();
    for (stem, n) in [("train", 200), ("t10k", 50)] {
        let (px, labels) = img(n);
        std::fs::write(
            dir.join(format!("{stem}-images-idx3-ubyte")),
            idx(&[n as u32, 28, 28], &px),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{stem}-labels-idx1-ubyte")),
            idx(&[n as u32], &labels),
        )
        .unwrap();
    }
}

/// `train` on `data` with a short, deterministic configuration and then `extra`.
fn train(data: &Path, steps: &str, extra: &[&str]) -> Command {
    let mut c = bin();
    c.args(["train", "--steps", steps, "--batch", "16", "--threads", "2"])
        .args(["--seed", "5", "--eval-every", "0", "--data"])
        .arg(data)
        .args(extra);
    c
}

/// Runs `c` with its working directory `cwd`.
fn run_in(mut c: Command, cwd: &Path) -> Output {
    c.current_dir(cwd).output().unwrap()
}

#[test]
fn an_existing_directory_as_out_holds_the_run_and_a_missing_one_is_created() {
    let dir = tmp("dir");
    let data = dir.join("data");
    dataset(&data);
    let run1 = dir.join("out/run1");
    std::fs::create_dir_all(&run1).unwrap();
    let o = run_in(train(&data, "30", &["--out", "out/run1"]), &dir);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(
        out.contains("parameters saved to out/run1/small.params"),
        "{out}"
    );
    for f in [
        "small.params",
        "small.ckpt",
        "small.metrics.csv",
        "small.curves.png",
    ] {
        assert!(run1.join(f).is_file(), "{f}: {out}");
    }
    assert!(!dir.join("out/run1.tmp").exists());
    // A trailing slash means a directory even when it does not exist yet; it is created.
    let o = run_in(
        train(&data, "5", &["--no-plots", "--out", "new/deep/"]),
        &dir,
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("created directory new/deep"), "{out}");
    assert!(dir.join("new/deep/small.params").is_file());
    // Training again into the same place says what it replaces.
    let o = run_in(
        train(&data, "5", &["--no-plots", "--out", "new/deep/"]),
        &dir,
    );
    let (out, _) = text(&o);
    assert!(
        out.contains("note: replacing the files of an earlier run: new/deep/small.params"),
        "{out}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Makes `dir` unwritable, even for root (CI runs as root, for whom permission bits do
/// not count): the immutable attribute where the filesystem has it, else mode 0555.
/// Undone when dropped.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn new(dir: &Path) -> Self {
        let immutable = Command::new("chattr")
            .arg("+i")
            .arg(dir)
            .output()
            .is_ok_and(|o| o.status.success());
        if !immutable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        }
        let probe = dir.join("probe");
        assert!(
            std::fs::write(&probe, b"x").is_err(),
            "could not make {} read-only (neither chattr +i nor chmod worked)",
            dir.display()
        );
        ReadOnly(dir.to_path_buf())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = Command::new("chattr").arg("-i").arg(&self.0).output();
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
    }
}

#[test]
fn bad_outputs_are_refused_before_the_first_step() {
    let dir = tmp("bad");
    let data = dir.join("data");
    dataset(&data);
    let ro = dir.join("read-only");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::create_dir_all(dir.join("taken/small.ckpt")).unwrap();
    std::fs::write(dir.join("a-file"), b"x").unwrap();
    let _guard = ReadOnly::new(&ro);
    let s = |p: PathBuf| p.display().to_string();
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../firmware/models/small.mcw");
    // (command, what the one-line message must contain)
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec!["--out".into(), s(ro.join("run.params"))],
            format!(
                "{}: cannot write the parameters in this directory",
                ro.display()
            ),
        ),
        (
            vec!["--out".into(), s(ro.clone())],
            format!("{}: cannot write the parameters", ro.display()),
        ),
        (
            vec!["--out".into(), s(ro.join("sub/run.params"))],
            format!("{}: cannot create the directory", ro.join("sub").display()),
        ),
        (
            vec!["--out".into(), s(dir.join("taken/small.params"))],
            format!("{}: is a directory", dir.join("taken/small.ckpt").display()),
        ),
        (
            vec!["--out".into(), s(dir.join("a-file/run.params"))],
            "a-file".to_string(),
        ),
    ];
    for (args, want) in cases {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run_in(train(&data, "50", &argv), &dir);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {out}{err}");
        assert!(
            err.starts_with("error: ") && err.lines().count() == 1,
            "{args:?}: {err}"
        );
        assert!(err.contains(&want), "{args:?}: {err}");
        assert!(!out.contains("step 0"), "{args:?} trained first: {out}");
    }
    // The other commands that write: refused before their work, too.
    let others: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "quantize".into(),
                "--params".into(),
                s(model.clone()),
                "--out".into(),
                s(ro.join("q.mcw")),
            ],
            "cannot write the int8 weights file",
        ),
        (
            vec![
                "export".into(),
                "--params".into(),
                s(model.clone()),
                "--out".into(),
                s(ro.clone()),
            ],
            "cannot write the weights file",
        ),
        (
            vec![
                "reproduce".into(),
                "--steps".into(),
                "1".into(),
                "--out".into(),
                s(ro.join("chart")),
            ],
            "cannot write the chart",
        ),
        (
            vec![
                "eval".into(),
                "--params".into(),
                s(model),
                "--out".into(),
                s(ro.join("c")),
            ],
            "cannot write the confusion matrix picture",
        ),
    ];
    for (args, want) in others {
        let o = run_in(
            {
                let mut c = bin();
                c.args(&args);
                if args[0] != "export" {
                    c.arg("--data").arg(&data);
                }
                c
            },
            &dir,
        );
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {out}{err}");
        assert!(
            err.contains(want) && err.contains(&s(ro.clone())),
            "{args:?}: {err}"
        );
        assert!(
            !out.contains("test accuracy"),
            "{args:?} did the work first: {out}"
        );
    }
    drop(_guard);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn parameters_that_cannot_be_saved_at_the_end_are_rescued() {
    let dir = tmp("rescue");
    let data = dir.join("data");
    dataset(&data);
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    // A full disk, for the parameter file only: its temporary file is /dev/full, whose
    // every write fails with ENOSPC.
    std::os::unix::fs::symlink("/dev/full", run.join("small.params.tmp")).unwrap();
    let o = run_in(train(&data, "20", &["--no-plots", "--out", "run/"]), &dir);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(err.contains("No space left on device"), "{err}");
    let rescued = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains(".rescued-"))
        .unwrap_or_else(|| panic!("no rescued file: {err}"));
    assert!(
        err.contains(&format!("they are saved in {} instead", rescued.display())),
        "{err}"
    );
    assert!(!run.join("small.params").exists());
    // The rescued file is the run's result: it evaluates like any parameter file.
    let o = bin()
        .args(["eval", "--no-plots", "--params"])
        .arg(&rescued)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    let (out2, err2) = text(&o);
    assert!(o.status.success(), "{out2}{err2}");
    let acc = |s: &str| s.lines().last().unwrap().to_string();
    assert_eq!(acc(&out2), acc(&out), "{out}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_killed_run_resumed_from_elsewhere_writes_where_it_wrote() {
    let dir = tmp("resume");
    let data = dir.join("data");
    dataset(&data);
    let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
    for d in [&a, &b, &c] {
        std::fs::create_dir_all(d).unwrap();
    }
    let steps = "600";
    let args = [
        "--checkpoint-every",
        "50",
        "--no-plots",
        "--out",
        "exp/run.params",
    ];
    // The reference: the same run, never interrupted.
    let o = run_in(train(&data, steps, &args), &c);
    assert!(o.status.success(), "{}", text(&o).1);
    // Killed (SIGKILL) once a checkpoint exists, then resumed from another directory.
    let ckpt = a.join("exp/run.ckpt");
    let mut child = train(&data, steps, &args)
        .current_dir(&a)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !ckpt.exists() {
        assert!(t.elapsed() < Duration::from_secs(120), "no checkpoint");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let mut r = bin();
    r.args(["train", "--resume"])
        .arg(&ckpt)
        .arg("--data")
        .arg(&data);
    let o = run_in(r, &b);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("resuming at step"), "{out}");
    assert!(!b.join("runs").exists(), "wrote into the working directory");
    assert_eq!(
        std::fs::read(a.join("exp/run.params")).unwrap(),
        std::fs::read(c.join("exp/run.params")).unwrap(),
        "resumed parameters differ from an uninterrupted run's"
    );
    let rows = |p: &Path| -> Vec<String> {
        // The seconds column differs between runs; everything else must not.
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| l.rsplit_once(',').map_or(l, |(h, _)| h).to_string())
            .collect()
    };
    assert_eq!(
        rows(&a.join("exp/run.metrics.csv")),
        rows(&c.join("exp/run.metrics.csv"))
    );
    // `--out` with `--resume` moves the run on purpose, its metrics history with it.
    let mut r = bin();
    r.args(["train", "--resume"])
        .arg(c.join("exp/run.ckpt"))
        .args(["--data"])
        .arg(&data)
        .args(["--no-plots", "--out", "moved/"]);
    let o = run_in(r, &b);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(b.join("moved/small.params").is_file(), "{out}");
    assert_eq!(
        rows(&b.join("moved/small.metrics.csv")),
        rows(&c.join("exp/run.metrics.csv"))
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Writes a gzip file that inflates to `header` followed by zeros, `total` bytes in
/// all, without ever holding more than a MiB: a deflate segment of 1 MiB of zeros ending
/// in a full flush (no back-reference crosses it) is repeated.
fn gzip_bomb(path: &Path, header: &[u8], total: u64) {
    use flate2::{Compress, Compression, FlushCompress};
    const MIB: usize = 1 << 20;
    let mut c = Compress::new(Compression::best(), false);
    let mut seg = |input: &[u8], flush| {
        let mut out = Vec::with_capacity(input.len() / 64 + 4096);
        let before = c.total_in();
        c.compress_vec(input, &mut out, flush).unwrap();
        assert_eq!(c.total_in() - before, input.len() as u64);
        assert!(out.len() < out.capacity());
        out
    };
    let mut first = header.to_vec();
    first.resize(MIB, 0);
    let a = seg(&first, FlushCompress::Full);
    let zeros = seg(&[0; MIB], FlushCompress::Full);
    let end = seg(&[], FlushCompress::Finish);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])
        .unwrap();
    f.write_all(&a).unwrap();
    for _ in 1..total / MIB as u64 {
        f.write_all(&zeros).unwrap();
    }
    f.write_all(&end).unwrap();
    // CRC-32 and size of the inflated data: never reached by a bounded reader.
    f.write_all(&[0; 8]).unwrap();
    f.flush().unwrap();
}

/// Runs `c` and returns its output and peak resident memory in bytes (the kernel's
/// `ru_maxrss` for that one child, from `wait4`).
fn peak_rss(mut c: Command) -> (Output, u64) {
    use std::os::unix::process::ExitStatusExt;
    // Waited for below with `wait4`, which std's `Child::wait` cannot do.
    #[allow(clippy::zombie_processes)]
    let child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    // Drain the pipes on threads so that the child never blocks on a full one.
    let mut so = child.stdout.unwrap();
    let mut se = child.stderr.unwrap();
    let t1 = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut so, &mut v).unwrap();
        v
    });
    let t2 = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut se, &mut v).unwrap();
        v
    });
    let mut status = 0;
    // SAFETY: `rusage` is plain data for which all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for (std's `Child` was consumed
    // above without waiting), and both pointers are to live, writable locals.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let out = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    };
    // Linux reports ru_maxrss in KiB.
    (out, usage.ru_maxrss as u64 * 1024)
}

#[test]
fn gzip_bombs_are_refused_with_bounded_memory() {
    let dir = tmp("bomb");
    let data = dir.join("data");
    dataset(&data);
    // MNIST's real header: 60,000 images of 28x28 (47,040,000 bytes promised), with
    // labels to match.
    std::fs::write(
        data.join("train-labels-idx1-ubyte"),
        idx(&[60_000], &vec![3; 60_000]),
    )
    .unwrap();
    std::fs::remove_file(data.join("train-images-idx3-ubyte")).unwrap();
    let header = idx(&[60_000, 28, 28], &[]);
    let bomb = data.join("train-images-idx3-ubyte.gz");
    for gib in [2u64, 20] {
        gzip_bomb(&bomb, &header, gib << 30);
        let size = std::fs::metadata(&bomb).unwrap().len();
        let mut c = bin();
        c.args(["train", "--steps", "1", "--no-plots", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(dir.join("x.params"));
        let (o, rss) = peak_rss(c);
        let (out, err) = text(&o);
        println!(
            "{gib} GiB bomb ({size} bytes of gzip): peak RSS {:.1} MB, {}",
            rss as f64 / 1e6,
            err.trim()
        );
        assert_eq!(o.status.code(), Some(1), "{out}{err}");
        assert!(
            err.contains(&bomb.display().to_string())
                && err.contains("47040000 bytes of data but the file has more"),
            "{err}"
        );
        assert!(
            rss < 300_000_000,
            "peak RSS {rss} bytes for a {gib} GiB bomb"
        );
    }
    // A file of any other kind that is larger than this build ever writes is refused
    // without being read: a sparse 5 GB "checkpoint".
    let huge = dir.join("huge.ckpt");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(5_000_000_000)
        .unwrap();
    let mut c = bin();
    c.args(["train", "--resume"])
        .arg(&huge)
        .arg("--data")
        .arg(&data);
    let (o, rss) = peak_rss(c);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("larger than any checkpoint"), "{err}");
    assert!(rss < 300_000_000, "peak RSS {rss}");
    std::fs::remove_dir_all(dir).unwrap();
}
