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
        out2.trim(),
        last,
        "eval of the saved parameters must give the same accuracy"
    );
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
