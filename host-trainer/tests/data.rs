//! Data a user has (docs/data.md): an image folder (one subfolder per class) trained on,
//! evaluated and predicted with its class names; a validation split held out of the
//! training images; bad data of every kind refused with one line naming the file and
//! the problem.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_host-trainer"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mc-data-{name}-{}", std::process::id()));
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

fn run(args: &[&str]) -> String {
    let o = bin().args(args).output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{args:?}: {out}\n{err}");
    out
}

/// The classes of the generated folders: each image is mostly this colour.
const COLOURS: [(&str, [u8; 3]); 3] = [
    ("red", [200, 30, 30]),
    ("green", [30, 200, 30]),
    ("blue", [30, 30, 200]),
];

/// Writes `n` `w`x`h` colour PNGs per class into `dir/<class>/`, each its class's
/// colour plus noise (seeded by `seed`).
fn colour_folder(dir: &Path, n: usize, (w, h): (u32, u32), seed: u64) {
    let mut s = seed;
    let mut rnd = move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as u8 % 50
    };
    for (name, rgb) in COLOURS {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..n {
            let img = image::RgbImage::from_fn(w, h, |_, _| image::Rgb(rgb.map(|v| v + rnd())));
            img.save(d.join(format!("{i:03}.png"))).unwrap();
        }
    }
}

/// A small network for 3 classes; the input comes from the data unless `input` states it.
fn net(dir: &Path, input: Option<&str>) -> PathBuf {
    let path = dir.join("colours.toml");
    let head = input.map_or(String::new(), |i| format!("input = {i}\n"));
    std::fs::write(
        &path,
        format!(
            "{head}[[layer]]\nkind = \"conv2d\"\nkernel = 3\nfilters = 4\n[[layer]]\nkind = \"relu\"\n\
             [[layer]]\nkind = \"maxpool\"\nsize = 2\n[[layer]]\nkind = \"flatten\"\n[[layer]]\nkind = \"dense\"\n"
        ),
    )
    .unwrap();
    path
}

/// The number after the last space of the line starting with `prefix`.
fn figure(out: &str, prefix: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` in {out}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn an_image_folder_trains_evaluates_and_predicts_with_its_class_names() {
    let dir = tmp("e2e");
    let data = dir.join("colours");
    colour_folder(&data, 10, (8, 8), 1);
    let n = net(&dir, None);
    let (d, n) = (data.to_str().unwrap(), n.to_str().unwrap());
    let run_dir = dir.join("run/");
    let s = run(&["summary", "--arch", n, "--data", d]);
    assert!(s.contains("input 8x8x3, 3 classes"), "{s}");
    let t = run(&[
        "train",
        "--arch",
        n,
        "--data",
        d,
        "--steps",
        "120",
        "--batch",
        "8",
        "--threads",
        "1",
        "--validation",
        "6",
        "--eval-every",
        "100",
        "--augment",
        "false",
        "--out",
        run_dir.to_str().unwrap(),
    ]);
    assert!(t.contains("classes: blue, green, red"), "{t}");
    // 10 images a class: 2 are test images, 8 train; 6 of the 24 are validation.
    let val = figure(&t, "validation accuracy: ");
    let acc = figure(&t, "test accuracy: ");
    assert!(val >= 5.0 / 6.0 && acc >= 5.0 / 6.0, "{t}");
    let params = dir.join("run/colours.params");
    assert_eq!(std::fs::read(&params).unwrap()[8], 3, "a version 3 file");
    // The metrics: validation accuracy at step 100 and at the end, test at the end only.
    let m = std::fs::read_to_string(dir.join("run/colours.metrics.csv")).unwrap();
    let header = m.lines().next().unwrap();
    assert!(
        header.contains(",test_accuracy,validation_accuracy,"),
        "{m}"
    );
    let row100 = m.lines().find(|l| l.starts_with("100,")).unwrap();
    let f: Vec<&str> = row100.split(',').collect();
    assert!(f[3].is_empty() && !f[4].is_empty(), "{m}");
    let last: Vec<&str> = m.lines().last().unwrap().split(',').collect();
    assert!(!last[3].is_empty() && !last[4].is_empty(), "{m}");

    let e = run(&[
        "eval",
        "--params",
        params.to_str().unwrap(),
        "--data",
        d,
        "--no-plots",
    ]);
    assert!(e.contains("  0 blue: ") && e.contains("  2 red: "), "{e}");
    assert_eq!(figure(&e, "test accuracy: "), acc, "{e}");
    // The per-class counts are the split's: 2 test images a class.
    assert!(e.contains("(2/2)") || e.contains("(1/2)"), "{e}");

    // predict converts a picture as the folder's images were, and names the class.
    let img = data.join("red/000.png");
    let p = run(&[
        "predict",
        "--params",
        params.to_str().unwrap(),
        "--top",
        "1",
        img.to_str().unwrap(),
    ]);
    assert!(p.contains(": 2 red ("), "{p}");

    // A weights file has no class names: the labels file beside it gives them.
    let mcw = dir.join("colours.mcw");
    run(&[
        "export",
        "--params",
        params.to_str().unwrap(),
        "--out",
        mcw.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(dir.join("colours.labels.txt")).unwrap(),
        "blue\ngreen\nred\n"
    );
    let e2 = run(&[
        "eval",
        "--params",
        mcw.to_str().unwrap(),
        "--data",
        d,
        "--no-plots",
    ]);
    assert!(e2.contains("  1 green: "), "{e2}");
    assert_eq!(figure(&e2, "test accuracy: "), acc, "{e2}");

    // quantize reads the folder as train did and writes the names beside its file too.
    let q = dir.join("colours-int8.mcw");
    let qo = run(&[
        "quantize",
        "--params",
        params.to_str().unwrap(),
        "--data",
        d,
        "--calibration",
        "20",
        "--out",
        q.to_str().unwrap(),
    ]);
    assert!(qo.contains("agree on"), "{qo}");
    assert_eq!(
        std::fs::read_to_string(dir.join("colours-int8.labels.txt")).unwrap(),
        "blue\ngreen\nred\n"
    );

    // Resumed, the run finds its validation split in the checkpoint.
    let r = bin()
        .args([
            "train",
            "--resume",
            dir.join("run/colours.ckpt").to_str().unwrap(),
            "--data",
            d,
            "--no-plots",
        ])
        .output()
        .unwrap();
    let (out, err) = text(&r);
    assert!(r.status.success(), "{out}{err}");
    assert!(out.contains("validation accuracy: "), "{out}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn train_and_test_subfolders_are_used_and_images_resized_to_a_stated_input() {
    let dir = tmp("split");
    let data = dir.join("colours");
    colour_folder(&data.join("train"), 12, (8, 8), 2);
    // Test images of another size: resized to the stated input, as the training ones.
    colour_folder(&data.join("test"), 3, (10, 6), 3);
    let n = net(&dir, Some("[6, 6, 1]"));
    let out = dir.join("run/");
    let t = run(&[
        "train",
        "--arch",
        n.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--steps",
        "60",
        "--batch",
        "8",
        "--threads",
        "1",
        "--no-plots",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(t.contains("classes: blue, green, red"), "{t}");
    let params = dir.join("run/colours.params");
    let e = run(&[
        "eval",
        "--params",
        params.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--no-plots",
    ]);
    // Every test image of test/ and only those: 3 a class.
    let counted: usize = e
        .lines()
        .filter_map(|l| l.split_once(" (")?.1.split_once('/')?.1.strip_suffix(')'))
        .map(|n| n.parse::<usize>().unwrap())
        .sum();
    assert_eq!(counted, 9, "{e}");
    assert_eq!(figure(&e, "test accuracy: "), figure(&t, "test accuracy: "));
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

#[test]
fn bad_data_gets_one_line_naming_the_file_and_the_problem() {
    let dir = tmp("bad");
    let d = |name: &str| dir.join(name);
    let s = |p: &Path| p.display().to_string();
    let n = net(&dir, None);
    colour_folder(&d("mixed"), 4, (8, 8), 1);
    image::RgbImage::new(9, 8)
        .save(d("mixed/green/zz.png"))
        .unwrap();
    colour_folder(&d("unreadable"), 4, (8, 8), 1);
    std::fs::write(d("unreadable/red/002.png"), "not a picture").unwrap();
    colour_folder(&d("empty"), 4, (8, 8), 1);
    std::fs::create_dir_all(d("empty/violet")).unwrap();
    std::fs::write(d("empty/violet/notes.txt"), "no images here").unwrap();
    colour_folder(&d("ok"), 4, (8, 8), 1);
    colour_folder(&d("few"), 2, (8, 8), 1);
    colour_folder(&d("sets/train"), 4, (8, 8), 1);
    colour_folder(&d("sets/test"), 2, (8, 8), 1);
    std::fs::rename(d("sets/test/blue"), d("sets/test/cyan")).unwrap();
    colour_folder(&d("half/train"), 4, (8, 8), 1);
    colour_folder(&d("renamed"), 4, (8, 8), 1);
    std::fs::rename(d("renamed/blue"), d("renamed/navy")).unwrap();
    // IDX with a training label the network does not have.
    std::fs::create_dir_all(d("label")).unwrap();
    for (name, bytes) in [
        ("train-images-idx3-ubyte", idx(&[4, 28, 28], &[0; 4 * 784])),
        ("train-labels-idx1-ubyte", idx(&[4], &[1, 2, 10, 3])),
        ("t10k-images-idx3-ubyte", idx(&[2, 28, 28], &[0; 2 * 784])),
        ("t10k-labels-idx1-ubyte", idx(&[2], &[1, 2])),
    ] {
        std::fs::write(d("label").join(name), bytes).unwrap();
    }
    // A model trained on `ok`, to evaluate on a folder of other classes.
    run(&[
        "train",
        "--arch",
        &s(&n),
        "--data",
        &s(&d("ok")),
        "--steps",
        "2",
        "--batch",
        "4",
        "--threads",
        "1",
        "--no-plots",
        "--out",
        &s(&d("model/")),
    ]);
    let train = |data: &str, extra: &[&str]| {
        let mut v: Vec<String> = [
            "train",
            "--arch",
            &s(&n),
            "--steps",
            "1",
            "--no-plots",
            "--out",
            &s(&d("out/")),
            "--data",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        v.push(s(&d(data)));
        v.extend(extra.iter().map(|a| a.to_string()));
        v
    };
    let small = |data: &str| -> Vec<String> {
        [
            "train",
            "--steps",
            "1",
            "--no-plots",
            "--out",
            &s(&d("out/")),
            "--data",
            &s(&d(data)),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    // (arguments, what the message must contain, the file it must name)
    let cases: Vec<(Vec<String>, &str, String)> = vec![
        (
            train("mixed", &[]),
            "9x8 pixels, but",
            s(&d("mixed/green/zz.png")),
        ),
        (
            train("unreadable", &[]),
            "not an image this build can read",
            s(&d("unreadable/red/002.png")),
        ),
        (
            train("empty", &[]),
            "empty class folder: no images",
            s(&d("empty/violet")),
        ),
        (
            small("ok"),
            "3 classes (blue, green, red) but architecture `small` has 10",
            s(&d("ok")),
        ),
        (
            small("label"),
            "label 10 at index 2 is out of range: the network has 10 classes",
            s(&d("label/train-labels-idx1-ubyte")),
        ),
        (
            train("few", &[]),
            "too few images for a test set",
            s(&d("few")),
        ),
        (train("sets", &[]), "are not", s(&d("sets/test"))),
        (train("half", &[]), "has train/ but no test/", s(&d("half"))),
        (
            train("ok", &["--validation", "9"]),
            "--validation 9 leaves no training images out of 9",
            String::new(),
        ),
        (
            vec![
                "eval".into(),
                "--no-plots".into(),
                "--params".into(),
                s(&d("model/colours.params")),
                "--data".into(),
                s(&d("renamed")),
            ],
            "the model's classes are blue, green, red but",
            s(&d("renamed")),
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
            "{args:?}: want `{want}`: {err}"
        );
        assert!(
            line.contains(&file),
            "{args:?}: the message does not name {file}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
#[cfg_attr(
    not(feature = "test-hooks"),
    ignore = "uses train's fault-injection options: cargo test --workspace (or --features test-hooks)"
)]
fn a_run_with_validation_stopped_and_resumed_ends_as_an_uninterrupted_one() {
    let dir = tmp("resume");
    let data = dir.join("colours");
    colour_folder(&data, 10, (8, 8), 4);
    let n = net(&dir, None);
    let train = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--arch",
            n.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--steps",
            "90",
            "--batch",
            "4",
            "--threads",
            "1",
            "--validation",
            "5",
            "--checkpoint-every",
            "20",
            "--eval-every",
            "30",
            "--no-plots",
            "--out",
            out,
        ];
        args.extend(extra);
        run(&args)
    };
    let (a, b) = (dir.join("a/"), dir.join("b/"));
    train(a.to_str().unwrap(), &[]);
    let out = train(b.to_str().unwrap(), &["--stop-after", "50"]);
    assert!(out.contains("stopped before step 50"), "{out}");
    let ckpt = dir.join("b/colours.ckpt");
    let header = String::from_utf8_lossy(&std::fs::read(&ckpt).unwrap()).into_owned();
    assert!(
        header.contains("\"validation\":5"),
        "the checkpoint records the split"
    );
    let r = run(&[
        "train",
        "--resume",
        ckpt.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--no-plots",
    ]);
    assert!(r.contains("validation accuracy: "), "{r}");
    assert_eq!(
        std::fs::read(dir.join("a/colours.params")).unwrap(),
        std::fs::read(dir.join("b/colours.params")).unwrap(),
        "resumed parameters differ from an uninterrupted run's"
    );
    // The metrics too, but for the seconds (the last column).
    let rows = |p: PathBuf| -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect()
    };
    assert_eq!(
        rows(dir.join("a/colours.metrics.csv")),
        rows(dir.join("b/colours.metrics.csv"))
    );
    std::fs::remove_dir_all(dir).unwrap();
}
