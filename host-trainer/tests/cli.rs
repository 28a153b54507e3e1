//! The binary as a user runs it: a short training run, evaluation of what it saved, and
//! clear one-line errors with a non-zero exit code for bad input.

use std::path::PathBuf;
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_host-trainer"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mc-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn train_then_eval_agree() {
    let dir = tmp("train");
    let params = dir.join("small.params");
    let o = bin()
        .args(["train", "--steps", "150", "--threads", "2", "--out"])
        .arg(&params)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("step 100, training accuracy"), "{out}");
    let last = out.lines().last().unwrap();
    let acc: f64 = last
        .strip_prefix("test accuracy: ")
        .expect(last)
        .parse()
        .unwrap();
    assert!(acc > 0.8, "150 steps of the small CNN gave {acc}");
    let o = bin()
        .args(["eval", "--params"])
        .arg(&params)
        .output()
        .unwrap();
    let (out2, err2) = text(&o);
    assert!(o.status.success(), "{err2}");
    assert_eq!(
        out2.trim().lines().last().unwrap(),
        last,
        "eval of the saved parameters must give the same accuracy"
    );
    // Per-class lines that add up, the pictures of the run and of its confusions.
    let right: usize = out2
        .lines()
        .filter_map(|l| l.split_once(" (")?.1.split_once('/'))
        .map(|(r, _)| r.parse::<usize>().unwrap())
        .sum();
    assert_eq!(format!("test accuracy: {:.4}", right as f64 / 1e4), last);
    for f in [
        "small.curves.png",
        "small.curves.svg",
        "small.confusion.png",
        "small.metrics.csv",
        "small.ckpt",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_input_gives_one_line_errors() {
    let dir = tmp("bad");
    let garbage = dir.join("garbage.params");
    std::fs::write(&garbage, b"not a parameter file at all, just text").unwrap();
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["train".into(), "--data".into(), empty.display().to_string()],
            "no train-images-idx3-ubyte.gz",
        ),
        (
            vec![
                "eval".into(),
                "--params".into(),
                garbage.display().to_string(),
            ],
            "not a microconv parameter file",
        ),
        (
            vec![
                "eval".into(),
                "--params".into(),
                dir.join("missing").display().to_string(),
            ],
            "cannot read",
        ),
        (
            vec!["train".into(), "--batch".into(), "0".into()],
            "--batch and --steps must be at least 1",
        ),
        (
            vec![
                "train".into(),
                "--lr=-1".into(),
                "--steps".into(),
                "1".into(),
            ],
            "learning rate",
        ),
    ];
    for (args, want) in cases {
        let o = bin().args(&args).output().unwrap();
        let (_, err) = text(&o);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{args:?}: not one line: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn same_seed_and_threads_give_bit_identical_parameters() {
    let dir = tmp("determinism");
    let run = |name: &str| {
        let out = dir.join(name);
        let o = bin()
            .args([
                "train",
                "--steps",
                "60",
                "--threads",
                "2",
                "--seed",
                "7",
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read(out).unwrap()
    };
    let (a, b) = (run("a.params"), run("b.params"));
    assert_eq!(a, b, "two runs with the same seed and thread count differ");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "uses train's fault-injection options: cargo test --workspace (or --features test-hooks)"
)]
fn a_resumed_run_ends_with_the_same_parameters_and_metrics() {
    let dir = tmp("resume");
    let train = |out: &std::path::Path, extra: &[&str]| {
        let o = bin()
            .args(["train", "--steps", "300", "--batch", "32", "--threads", "2"])
            .args([
                "--seed",
                "5",
                "--checkpoint-every",
                "100",
                "--eval-every",
                "100",
            ])
            .args(["--no-plots", "--out"])
            .arg(out)
            .args(extra)
            .output()
            .unwrap();
        let (out, err) = text(&o);
        assert!(o.status.success(), "{out}{err}");
        out
    };
    let (a, b) = (dir.join("a/small.params"), dir.join("b/small.params"));
    train(&a, &[]);
    // Interrupted before step 150 (after the checkpoint of step 100 and one at 150)...
    let out = train(&b, &["--stop-after", "150"]);
    assert!(out.contains("stopped before step 150"), "{out}");
    assert!(!b.exists());
    // ...and continued from the checkpoint, whose configuration is the run's.
    let ckpt = dir.join("b/small.ckpt");
    let resume = |extra: &[&str]| {
        let o = bin()
            .args([
                "train",
                "--no-plots",
                "--checkpoint-every",
                "100",
                "--eval-every",
                "100",
            ])
            .arg("--resume")
            .arg(&ckpt)
            .arg("--out")
            .arg(&b)
            .args(extra)
            .output()
            .unwrap();
        let (out, err) = text(&o);
        (o.status.success(), out + &err)
    };
    let (ok, out) = resume(&["--steps", "5"]);
    assert!(!ok && out.contains("cannot be used with"), "{out}");
    let (ok, out) = resume(&[]);
    assert!(ok && out.contains("resuming at step 150 of 300"), "{out}");
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // The metrics agree row for row except the wall time (last column).
    let rows = |p: std::path::PathBuf| -> Vec<String> {
        let t = std::fs::read_to_string(p).unwrap();
        t.lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect()
    };
    let (ma, mb) = (
        rows(dir.join("a/small.metrics.csv")),
        rows(dir.join("b/small.metrics.csv")),
    );
    assert_eq!(ma.len(), 1 + 4, "{ma:?}");
    assert_eq!(ma, mb);
    // A damaged checkpoint is refused with the reason, never used.
    let mut bytes = std::fs::read(&ckpt).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&ckpt, &bytes).unwrap();
    let o = bin()
        .args(["train", "--resume"])
        .arg(&ckpt)
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("checksum mismatch"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bench_measures_each_case_in_its_own_process() {
    // Two timed steps per case: this checks the plumbing (child processes, JSON, peak
    // memory), not the speed; speed figures come from `host-trainer bench` itself.
    let o = bin()
        .args([
            "bench",
            "--archs",
            "small",
            "--threads",
            "1,2",
            "--steps",
            "2",
            "--warmup",
            "0",
            "--no-infer",
            "--json",
        ])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let records: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect(l))
        .collect();
    assert_eq!(records.len(), 2, "{out}");
    for (r, threads) in records.iter().zip([1, 2]) {
        assert_eq!(r["arch"], "small");
        assert_eq!(r["threads"], threads);
        assert!(r["step_ms"].as_f64().unwrap() > 0.0, "{r}");
        // The process held at least the 47 MB of training images.
        assert!(r["peak_rss_mib"].as_f64().unwrap() > 40.0, "{r}");
    }
    // The per-layer profile lists every layer of the network.
    let o = bin()
        .args([
            "bench", "--layers", "--archs", "small", "--batch", "4", "--steps", "1",
        ])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert_eq!(
        out.lines().filter(|l| l.contains(" -> ")).count(),
        11,
        "{out}"
    );
    assert!(out.contains("total"), "{out}");
    // Bad arguments are one-line errors.
    let o = bin().args(["bench", "--threads", "0"]).output().unwrap();
    let (_, err) = text(&o);
    assert!(
        !o.status.success() && err.trim().lines().count() == 1,
        "{err}"
    );
}

#[test]
fn quantize_writes_an_int8_file_the_firmware_reader_accepts() {
    let dir = tmp("quantize");
    let out = dir.join("small-int8.mcw");
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../firmware/models/small.mcw");
    let o = bin()
        .args([
            "quantize",
            "--params",
            shipped,
            "--calibration",
            "200",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let (text_out, err) = text(&o);
    assert!(o.status.success(), "{text_out}{err}");
    // "test accuracy: f32 0.9943, int8 0.99xx (...)": at most 0.2 points lost.
    let line = text_out
        .lines()
        .find(|l| l.starts_with("test accuracy: f32 "))
        .expect(&text_out);
    let nums: Vec<f64> = line
        .split([' ', ','])
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(nums.len() >= 2 && nums[1] >= nums[0] - 0.002, "{line}");
    let bytes = std::fs::read(&out).unwrap();
    let file = host_trainer::export::WeightsFile::from_bytes(&bytes);
    let m = microconv::qformat::QModel::parse(file.bytes()).unwrap();
    assert_eq!(m.arch(), microconv::archs::SMALL);
    // The float reader refuses it with a clear message; eval on it is a one-line error.
    let e = microconv::format::Model::parse(file.bytes()).unwrap_err();
    assert!(e.to_string().contains("int8 weights file"), "{e}");
    // Quantizing an int8 file is refused in one line.
    let o = bin()
        .args(["quantize", "--params"])
        .arg(&out)
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(
        !o.status.success() && err.trim().lines().count() == 1,
        "{err}"
    );
}

#[test]
fn predict_reads_the_sample_pictures_and_names_a_bad_one() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let images = repo.join("host-trainer/tests/images");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 5);
    let dir = tmp("predict");
    let bad = dir.join("not-an-image.png");
    std::fs::write(&bad, b"hello").unwrap();
    let o = bin()
        .args(["predict", "--params"])
        .arg(repo.join("firmware/models/small.mcw"))
        .args(&files)
        .arg(&bad)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(!o.status.success());
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy();
        let digit = &name[..1];
        let line = out
            .lines()
            .find(|l| l.contains(&*name))
            .unwrap_or_else(|| panic!("no line for {name}: {out}"));
        let predicted = line.rsplit_once(": ").unwrap().1;
        assert!(predicted.starts_with(&format!("{digit} (")), "{line}");
    }
    assert!(err.contains("not-an-image.png: not an image"), "{err}");
    assert!(
        err.contains("1 of 6 images could not be classified"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn eval_runs_an_int8_model_with_the_firmware_classifier() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let o = bin()
        .args(["eval", "--no-plots", "--params"])
        .arg(repo.join("firmware/models/small-int8.mcw"))
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    // The figure README gives for the shipped int8 model.
    assert_eq!(out.lines().last(), Some("test accuracy: 0.9941"), "{out}");
}

#[test]
fn safetensors_export_reads_back_everywhere() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let shipped = repo.join("firmware/models/small.mcw");
    let dir = tmp("safetensors");
    let st = dir.join("small.safetensors");
    let run = |args: &[&std::ffi::OsStr]| {
        let o = bin().args(args).output().unwrap();
        let (out, err) = text(&o);
        assert!(o.status.success(), "{out}{err}");
        out
    };
    let out = run(&[
        "export".as_ref(),
        "--params".as_ref(),
        shipped.as_os_str(),
        "--out".as_ref(),
        st.as_os_str(),
    ]);
    assert!(out.contains("safetensors"), "{out}");
    // Back to a firmware file: byte for byte the shipped one.
    let back = dir.join("back.mcw");
    run(&[
        "export".as_ref(),
        "--params".as_ref(),
        st.as_os_str(),
        "--out".as_ref(),
        back.as_os_str(),
    ]);
    assert_eq!(
        std::fs::read(&back).unwrap(),
        std::fs::read(&shipped).unwrap()
    );
    // The same accuracy from either file.
    let acc = |p: &std::path::Path| {
        let out = run(&[
            "eval".as_ref(),
            "--no-plots".as_ref(),
            "--params".as_ref(),
            p.as_os_str(),
        ]);
        out.lines().last().unwrap().to_string()
    };
    assert_eq!(acc(&st), acc(&shipped));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::io::{BufRead, BufReader};
    let dir = tmp("pipe");
    let mut child = bin()
        .args(["train", "--steps", "400", "--no-plots", "--out"])
        .arg(dir.join("p.params"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("training `small`"), "{first}");
    // The reader is gone (`| head -1`); the next line hits a closed pipe.
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(141), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "uses train's fault-injection options: cargo test --workspace (or --features test-hooks)"
)]
fn a_nan_stops_training_naming_step_and_layer_and_the_checkpoint_resumes() {
    let dir = tmp("nan");
    let (clean, faulty) = (
        dir.join("clean/small.params"),
        dir.join("faulty/small.params"),
    );
    let train = |out: &std::path::Path, extra: &[&str]| {
        bin()
            .args(["train", "--steps", "300", "--batch", "32", "--threads", "2"])
            .args(["--checkpoint-every", "100", "--no-plots", "--out"])
            .arg(out)
            .args(extra)
            .output()
            .unwrap()
    };
    assert!(train(&clean, &[]).status.success());
    // Parameter 300 is in the second convolution (the first has 208).
    let o = train(&faulty, &["--inject-nan", "150:300"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("training stopped at step 150"), "{err}");
    assert!(err.contains("layer 3 (conv2d 5x5, 16 filters)"), "{err}");
    assert!(err.contains("last good checkpoint"), "{err}");
    assert!(
        !faulty.exists(),
        "no parameters are saved from a diverged run"
    );
    // The checkpoint of step 100 is intact; resuming from it ends where the clean run did.
    let o = bin()
        .args([
            "train",
            "--no-plots",
            "--checkpoint-every",
            "100",
            "--resume",
        ])
        .arg(faulty.with_extension("ckpt"))
        .arg("--out")
        .arg(&faulty)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("resuming at step 100 of 300"), "{out}");
    assert_eq!(
        std::fs::read(&clean).unwrap(),
        std::fs::read(&faulty).unwrap()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "uses train's fault-injection options: cargo test --workspace (or --features test-hooks)"
)]
fn killed_anywhere_loses_at_most_the_steps_since_the_last_checkpoint() {
    use std::time::{Duration, Instant};
    let dir = tmp("kill");
    let args = [
        "train",
        "--steps",
        "400",
        "--batch",
        "32",
        "--threads",
        "2",
        "--seed",
        "3",
        "--checkpoint-every",
        "50",
        "--eval-every",
        "0",
        "--no-plots",
        "--out",
    ];
    let wait_for = |what: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !what() {
            assert!(t.elapsed() < Duration::from_secs(120), "timed out");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let resume = |out: &std::path::Path| {
        let mut c = bin();
        c.args([
            "train",
            "--no-plots",
            "--checkpoint-every",
            "50",
            "--eval-every",
            "0",
        ])
        .arg("--resume")
        .arg(out.with_extension("ckpt"))
        .arg("--out")
        .arg(out);
        c
    };
    let clean = dir.join("clean/small.params");
    assert!(bin().args(args).arg(&clean).status().unwrap().success());

    // 1. SIGKILL in the middle of writing a checkpoint (the second one: the first is
    //    complete, the temporary file of the next is half written).
    let b = dir.join("b/small.params");
    let (ckpt, part) = (b.with_extension("ckpt"), dir.join("b/small.ckpt.tmp"));
    let mut child = bin()
        .args(args)
        .arg(&b)
        .args(["--slow-checkpoint-ms", "3000"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&|| ckpt.exists() && part.exists());
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(part.exists(), "the killed write left its temporary file");
    let o = resume(&b).output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("resuming at step 50 of 400"), "{out}");
    assert_eq!(std::fs::read(&clean).unwrap(), std::fs::read(&b).unwrap());

    // 2. SIGKILL at arbitrary moments of training, again and again, each time resumed.
    let c = dir.join("c/small.params");
    let mut child = bin()
        .args(args)
        .arg(&c)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ckpt = c.with_extension("ckpt");
    wait_for(&|| ckpt.exists());
    let mut last_step = 0;
    for delay_ms in [170, 60, 230, 10, 120] {
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        let saved = std::fs::read(&ckpt).unwrap();
        // Never a corrupt checkpoint: it loads (resume prints its step), never goes back.
        child = resume(&c)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut first,
        )
        .unwrap();
        let step: usize = first
            .strip_prefix("resuming at step ")
            .and_then(|r| r.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{first} ({} checkpoint bytes)", saved.len()));
        assert!(
            step >= last_step && step.is_multiple_of(50),
            "{step} after {last_step}"
        );
        last_step = step;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let o = resume(&c).output().unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    assert_eq!(std::fs::read(&clean).unwrap(), std::fs::read(&c).unwrap());
    std::fs::remove_dir_all(dir).unwrap();
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

/// A tiny MNIST-like data directory (20 training and 10 test images of `side`x`side`),
/// with `edit` applied to its files (name -> bytes) before they are written.
fn dataset(dir: &std::path::Path, side: u32, edit: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) {
    let px = (side * side) as usize;
    let mut files = vec![
        (
            "train-images-idx3-ubyte".to_string(),
            idx(&[20, side, side], &vec![7; 20 * px]),
        ),
        ("train-labels-idx1-ubyte".to_string(), idx(&[20], &[3; 20])),
        (
            "t10k-images-idx3-ubyte".to_string(),
            idx(&[10, side, side], &vec![7; 10 * px]),
        ),
        ("t10k-labels-idx1-ubyte".to_string(), idx(&[10], &[3; 10])),
    ];
    edit(&mut files);
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
fn every_bad_input_names_the_file_and_the_problem() {
    let dir = tmp("table");
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let d = |name: &str| dir.join(name);
    dataset(&d("magic"), 28, |f| f[1].1[2] = 9);
    dataset(&d("truncated"), 28, |f| {
        let n = f[0].1.len() - 100;
        f[0].1.truncate(n)
    });
    dataset(&d("mismatch"), 28, |f| f[1].1 = idx(&[19], &[3; 19]));
    dataset(&d("gzip"), 28, |f| {
        f[0] = (
            "train-images-idx3-ubyte.gz".into(),
            vec![0x1f, 0x8b, 8, 0, 1, 2, 3],
        )
    });
    dataset(&d("label"), 28, |f| {
        f[3].1 = idx(&[10], &[3, 3, 12, 3, 3, 3, 3, 3, 3, 3])
    });
    dataset(&d("missing"), 28, |f| {
        f.pop();
    });
    dataset(&d("small-images"), 16, |_| {});
    let n = 13_194;
    host_trainer::params_file::save(&d("tiny.params"), "tiny", &[0.0; 4]).unwrap();
    host_trainer::params_file::save(&d("short.params"), "small", &vec![0.0; n - 1]).unwrap();
    let mut nan = vec![0.0; n];
    nan[77] = f32::NAN;
    host_trainer::params_file::save(&d("nan.params"), "small", &nan).unwrap();
    std::fs::write(d("note.txt"), "a text file").unwrap();
    std::fs::write(d("garbage.ckpt"), "not a checkpoint").unwrap();
    let s = |p: PathBuf| p.display().to_string();
    let int8 = s(repo.join("firmware/models/small-int8.mcw"));
    let data = |name: &str| vec!["--data".to_string(), s(d(name))];
    // (arguments, what the message must contain besides the file's name, the file's name)
    let cases: Vec<(Vec<String>, &str, String)> = vec![
        (
            [vec!["train".into()], data("magic")].concat(),
            "bad IDX magic",
            "train-labels-idx1-ubyte".into(),
        ),
        (
            [vec!["train".into()], data("truncated")].concat(),
            "truncated or corrupt file",
            "train-images-idx3-ubyte".into(),
        ),
        (
            [vec!["train".into()], data("mismatch")].concat(),
            "has 20 images but",
            "train-labels-idx1-ubyte".into(),
        ),
        (
            [vec!["train".into()], data("gzip")].concat(),
            "corrupt gzip data",
            "train-images-idx3-ubyte.gz".into(),
        ),
        (
            [
                vec![
                    "eval".into(),
                    "--params".into(),
                    s(repo.join("firmware/models/small.mcw")),
                ],
                data("label"),
            ]
            .concat(),
            "is out of range: the network has 10 classes",
            "t10k-labels-idx1-ubyte".into(),
        ),
        (
            [vec!["train".into()], data("missing")].concat(),
            "no t10k-labels-idx1-ubyte.gz",
            "missing".into(),
        ),
        (
            [
                vec!["train".into(), "--steps".into(), "1".into()],
                data("small-images"),
            ]
            .concat(),
            "takes 28x28x1 images, the data has 16x16x1",
            "".into(),
        ),
        (
            vec!["eval".into(), "--params".into(), s(d("tiny.params"))],
            "unknown architecture `tiny`",
            "tiny.params".into(),
        ),
        (
            vec!["eval".into(), "--params".into(), s(d("short.params"))],
            "architecture `small` has 13194",
            "short.params".into(),
        ),
        (
            vec!["quantize".into(), "--params".into(), int8.clone()],
            "int8",
            "small-int8.mcw".into(),
        ),
        (
            vec![
                "eval".into(),
                "--params".into(),
                s(d("nothing-here.params")),
            ],
            "cannot read",
            "nothing-here.params".into(),
        ),
        (
            vec![
                "export".into(),
                "--params".into(),
                s(d("nan.params")),
                "--out".into(),
                s(d("x.mcw")),
            ],
            "parameter 77 is NaN",
            "nan.params".into(),
        ),
        (
            vec![
                "export".into(),
                "--params".into(),
                s(repo.join("firmware/models/small.mcw")),
                "--out".into(),
                "/proc/no/such/dir/x.mcw".into(),
            ],
            "cannot",
            "/proc/no/such/dir".into(),
        ),
        (
            vec![
                "predict".into(),
                "--params".into(),
                s(repo.join("firmware/models/small.mcw")),
                s(d("note.txt")),
            ],
            "not an image",
            "note.txt".into(),
        ),
        (
            vec![
                "predict".into(),
                "--params".into(),
                s(repo.join("firmware/models/small.mcw")),
                s(dir.clone()),
            ],
            "cannot read",
            "".into(),
        ),
        (
            vec!["train".into(), "--resume".into(), s(d("garbage.ckpt"))],
            "not a microconv checkpoint",
            "garbage.ckpt".into(),
        ),
        (
            vec![
                "board".into(),
                "--port".into(),
                "/dev/no-such-serial-port".into(),
                "--images".into(),
                "1".into(),
                "--weights".into(),
                s(repo.join("firmware/models/small.mcw")),
            ],
            "cannot open serial port",
            "/dev/no-such-serial-port".into(),
        ),
        (
            vec![
                "board".into(),
                "--qemu".into(),
                s(d("no-such.elf")),
                "--images".into(),
                "1".into(),
                "--weights".into(),
                s(repo.join("firmware/models/small.mcw")),
            ],
            "",
            "no-such.elf".into(),
        ),
    ];
    for (args, want, file) in cases {
        let o = bin().args(&args).output().unwrap();
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {out}{err}");
        let line = err.trim();
        assert_eq!(line.lines().count(), 1, "{args:?}: not one line: {err}");
        assert!(
            line.starts_with("error: ") && line.contains(want),
            "{args:?}: {err}"
        );
        assert!(
            line.contains(&file),
            "{args:?}: the message does not name {file}: {err}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{err}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[cfg(unix)]
#[test]
fn a_serial_port_that_disappears_is_a_one_line_error() {
    use serialport::SerialPort;
    // A pseudo-terminal pair: `board` opens the subordinate side as its serial port, the
    // test holds the controlling side (the "board") and then lets go of it (unplugged).
    let (board, port) = serialport::TTYPort::pair().expect("a pseudo-terminal pair");
    let path = port.name().expect("the pty's name");
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = bin();
    cmd.args(["board", "--images", "3", "--port", &path, "--weights"])
        .arg(repo.join("firmware/models/small.mcw"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // The controlling side's descriptor is inheritable; in the child it would keep the
    // line up after the test lets go of it.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&board);
    // SAFETY: runs in the forked child before exec; it only closes a descriptor the
    // child does not use (`close` is async-signal-safe, nothing is allocated).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            drop(<std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd));
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    // Wait for its first request (it loads MNIST first, which can take seconds on a busy
    // machine), so that the line goes away while it is in use, not before.
    let mut board = board;
    board
        .set_timeout(std::time::Duration::from_millis(100))
        .unwrap();
    let start = std::time::Instant::now();
    let mut first = [0u8; 16];
    loop {
        match std::io::Read::read(&mut board, &mut first) {
            Ok(n) if n > 0 => break,
            _ => assert!(
                start.elapsed() < std::time::Duration::from_secs(120),
                "board never wrote to the port"
            ),
        }
    }
    drop(board);
    drop(port);
    let o = child.wait_with_output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    let line = err.trim();
    assert_eq!(line.lines().count(), 1, "{err}");
    assert!(line.starts_with("error: ") && line.contains(&path), "{err}");
    // Reading or writing notices first, depending on timing: either says what happened.
    assert!(
        line.contains("the connection closed") || line.contains("did the board disappear"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
