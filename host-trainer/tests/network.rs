//! Networks a user describes (TOML) and data of other shapes: the shipped example
//! descriptions are the built-in networks, bad descriptions get one line naming the
//! file and the problem, and a described network on synthetic 8x8x3 IDX data goes
//! through train, eval, summary, export and quantize.

use std::path::{Path, PathBuf};
use std::process::Command;

use host_trainer::network::Description;
use microconv::archs::{SEED, SMALL};
use microconv::Shape;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_host-trainer"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mc-net-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn the_example_descriptions_are_the_built_in_networks() {
    let mnist = Some((Shape::new(28, 28, 1), 10));
    for (file, arch) in [("small.toml", SMALL), ("seed.toml", SEED)] {
        let d = Description::read(&repo().join("examples/networks").join(file)).unwrap();
        let n = d.resolve(mnist).unwrap();
        assert_eq!(n.arch.input, arch.input, "{file}");
        assert_eq!(n.arch.layers, arch.layers, "{file}");
    }
    // small.toml states input and classes: it needs no data, and refuses other data.
    let small = Description::read(&repo().join("examples/networks/small.toml")).unwrap();
    assert_eq!(small.resolve(None).unwrap().arch.layers, SMALL.layers);
    let e = small
        .resolve(Some((Shape::new(32, 32, 3), 10)))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("input is 28x28x1 but the data's samples are 32x32x3"),
        "{e}"
    );
    let e = small
        .resolve(Some((Shape::new(28, 28, 1), 5)))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("10 classes but the data's labels are 0 to 4"),
        "{e}"
    );
}

/// Every shipped example resolves for MNIST; the depthwise-separable ones need fewer
/// multiply-adds than `small` (the bar), and batchnorm costs none.
#[test]
fn the_ds_cnn_examples_are_cheaper_than_small() {
    use host_trainer::cmd::summary::summary;
    let mnist = Some((Shape::new(28, 28, 1), 10));
    let small = summary(&SMALL).unwrap().macs;
    let mut macs = Vec::new();
    for file in ["tiny.toml", "ds-cnn.toml", "ds-cnn-bn.toml"] {
        let d = Description::read(&repo().join("examples/networks").join(file)).unwrap();
        let n = d.resolve(mnist).unwrap();
        macs.push(summary(&n.arch).unwrap().macs);
    }
    assert_eq!(macs[0], 9_016, "tiny.toml's comment");
    assert!(macs[1] < small, "{} vs {small}", macs[1]);
    assert_eq!(macs[1], macs[2]);
}

const HEAD: &str = "input = [8, 8, 1]\nclasses = 3\n";

#[test]
fn bad_descriptions_get_one_line_naming_the_file_and_the_problem() {
    let dir = tmp("bad");
    let conv = "[[layer]]\nkind = \"conv2d\"\nkernel = 3\nfilters = 2\n";
    let tail = "[[layer]]\nkind = \"flatten\"\n[[layer]]\nkind = \"dense\"\n";
    let cases: &[(&str, String, &str)] = &[
        ("syntax", "input = [8, 8\n".into(), "not valid TOML (line"),
        ("top-key", format!("{HEAD}colour = 1\n{tail}"), "unknown key `colour` at the top level"),
        ("no-layers", HEAD.into(), "no layers"),
        ("kind", format!("{HEAD}[[layer]]\nkind = \"lstm\"\n{tail}"), "layer 0: unknown layer kind `lstm` (known: conv2d,"),
        ("no-kind", format!("{HEAD}[[layer]]\nunits = 3\n"), "layer 0: no `kind`"),
        ("key", format!("{HEAD}{conv}size = 2\n{tail}"), "layer 0 (conv2d): unknown key `size` (known: kernel, filters, stride, padding)"),
        ("relu-key", format!("{HEAD}[[layer]]\nkind = \"relu\"\nunits = 1\n{tail}"), "layer 0 (relu): unknown key `units`"),
        ("missing", format!("{HEAD}[[layer]]\nkind = \"conv2d\"\nkernel = 3\n{tail}"), "layer 0 (conv2d): missing key `filters`"),
        ("zero", format!("{HEAD}[[layer]]\nkind = \"conv2d\"\nkernel = 0\nfilters = 2\n{tail}"), "layer 0 (conv2d): kernel = 0 is out of range"),
        ("huge", format!("{HEAD}[[layer]]\nkind = \"conv2d\"\nkernel = 3\nfilters = 5000000000\n{tail}"), "filters = 5000000000 is out of range: it must be 1 to 4294967295 (the weights file records it as a u32)"),
        ("type", format!("{HEAD}[[layer]]\nkind = \"conv2d\"\nkernel = \"3\"\nfilters = 2\n{tail}"), "layer 0 (conv2d): `kernel` must be a whole number, got string"),
        ("padding", format!("{HEAD}{conv}padding = \"full\"\n{tail}"), "layer 0 (conv2d): padding = \"full\" is not one of"),
        ("keep", format!("{HEAD}{conv}[[layer]]\nkind = \"dropout\"\nkeep = 1.5\n{tail}"), "layer 1 (dropout): keep = 1.5 is out of range"),
        ("pool", format!("{HEAD}[[layer]]\nkind = \"maxpool\"\nsize = 9\npadding = \"valid\"\n{tail}"), "layer 0 (maxpool) (its input is 8x8x1): the window is larger than its input"),
        ("flat", format!("{HEAD}{conv}[[layer]]\nkind = \"dense\"\nunits = 3\n"), "layer 1 (dense) (its input is 8x8x2): dense layer needs a flat input: add a Flatten layer"),
        ("classes", format!("{HEAD}{conv}[[layer]]\nkind = \"flatten\"\n[[layer]]\nkind = \"dense\"\nunits = 4\n"), "classes = 3 but the last layer (layer 2, dense) has 4 units"),
        ("not-flat", format!("{HEAD}{conv}"), "layer 0 (conv2d) (its input is 8x8x1): the last layer must output a flat vector"),
        ("too-big", "input = [4096, 4096, 1]\nclasses = 3\n[[layer]]\nkind = \"flatten\"\n[[layer]]\nkind = \"dense\"\nunits = 8\n[[layer]]\nkind = \"dense\"\n".to_string(), "parameters, more than this build's 67108864 (layer 1 (dense) has the most)"),
        ("too-many", format!("{HEAD}{}{tail}", "[[layer]]\nkind = \"relu\"\n".repeat(40)), "42 layers, more than the weights file's 32"),
        ("input", format!("input = [8, 0, 1]\nclasses = 3\n{tail}"), "input = [8, 0, 1] must be [height, width, channels]"),
        ("no-input", format!("classes = 3\n{tail}"), "no `input = [height, width, channels]` and no data"),
        ("dw-filters", format!("{HEAD}{conv}[[layer]]\nkind = \"depthwise\"\nkernel = 3\nfilters = 4\n{tail}"), "layer 1 (depthwise) (its input is 8x8x2): filters = 4 does not match: a depthwise layer outputs its input's 2 channels times the multiplier, 2"),
        ("dw-multiplier", format!("{HEAD}[[layer]]\nkind = \"depthwise\"\nkernel = 3\nmultiplier = 0\n{tail}"), "layer 0 (depthwise): multiplier = 0 is out of range"),
        ("dw-kernel", format!("{HEAD}[[layer]]\nkind = \"depthwise\"\nstride = 2\n{tail}"), "layer 0 (depthwise): missing key `kernel`"),
        ("dw-key", format!("{HEAD}[[layer]]\nkind = \"depthwise\"\nkernel = 3\nunits = 2\n{tail}"), "layer 0 (depthwise): unknown key `units` (known: kernel, stride, padding, multiplier, filters)"),
        ("dw-valid", format!("{HEAD}[[layer]]\nkind = \"depthwise\"\nkernel = 9\npadding = \"valid\"\n{tail}"), "layer 0 (depthwise) (its input is 8x8x1): the window is larger than its input"),
        ("avgpool", format!("{HEAD}{}{tail}", "[[layer]]\nkind = \"avgpool\"\nsize = 2\npadding = \"valid\"\n".repeat(4)), "layer 3 (avgpool) (its input is 1x1x1): the window is larger than its input"),
        ("avgpool-size", format!("{HEAD}[[layer]]\nkind = \"avgpool\"\nstride = 2\n{tail}"), "layer 0 (avgpool): missing key `size`"),
        ("gap-key", format!("{HEAD}[[layer]]\nkind = \"global_avgpool\"\nsize = 2\n[[layer]]\nkind = \"dense\"\n"), "layer 0 (global_avgpool): unknown key `size` (global_avgpool has no keys besides `kind`)"),
        ("bn-after-relu", format!("{HEAD}{conv}[[layer]]\nkind = \"relu\"\n[[layer]]\nkind = \"batchnorm\"\n{tail}"), "layer 2 (batchnorm) follows relu: it must come directly after a conv2d, depthwise or dense layer, into which export folds it"),
        ("bn-first", format!("{HEAD}[[layer]]\nkind = \"batchnorm\"\n{tail}"), "layer 0 (batchnorm) follows the input"),
        ("bn-momentum", format!("{HEAD}{conv}[[layer]]\nkind = \"batchnorm\"\nmomentum = 1\n{tail}"), "layer 1 (batchnorm): momentum = 1 is out of range: it is the weight of the old running average, in [0, 1)"),
        ("bn-epsilon", format!("{HEAD}{conv}[[layer]]\nkind = \"batchnorm\"\nepsilon = \"small\"\n{tail}"), "layer 1 (batchnorm): `epsilon` must be a number, got string"),
        ("relu6-key", format!("{HEAD}[[layer]]\nkind = \"relu6\"\nmax = 6\n{tail}"), "layer 0 (relu6): unknown key `max`"),
    ];
    for (name, text, want) in cases {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let o = bin()
            .args(["summary", "--arch"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{name}: {err}");
        assert!(
            lines[0].contains(&path.display().to_string()),
            "{name}: {err}"
        );
        assert!(lines[0].contains(want), "{name}: want `{want}` in {err}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// An IDX file of unsigned bytes.
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

/// `n` 8x8x3 images of 3 classes: class k is bright in channel k (plus noise).
fn synthetic(dir: &Path, prefix: &str, n: usize, seed: u64) {
    let mut s = seed;
    let mut rnd = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as u8
    };
    let (mut px, mut lab) = (Vec::new(), Vec::new());
    for i in 0..n {
        let k = (i % 3) as u8;
        lab.push(k);
        for _ in 0..64 {
            for c in 0..3u8 {
                px.push(if c == k { 160 + rnd() / 4 } else { rnd() / 3 });
            }
        }
    }
    let n = n as u32;
    std::fs::write(
        dir.join(format!("{prefix}-images-idx4-ubyte")),
        idx(&[n, 8, 8, 3], &px),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{prefix}-labels-idx1-ubyte")),
        idx(&[n], &lab),
    )
    .unwrap();
}

fn run(args: &[&str]) -> String {
    let o = bin().args(args).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{args:?}: {out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

#[test]
fn a_described_network_trains_on_8x8x3_data_and_every_command_finds_it() {
    let dir = tmp("e2e");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    synthetic(&data, "train", 300, 1);
    synthetic(&data, "t10k", 90, 2);
    let net = dir.join("rgb.toml");
    std::fs::write(
        &net,
        "[[layer]]\nkind = \"conv2d\"\nkernel = 3\nfilters = 4\n[[layer]]\nkind = \"relu\"\n\
         [[layer]]\nkind = \"maxpool\"\nsize = 2\n[[layer]]\nkind = \"flatten\"\n[[layer]]\nkind = \"dense\"\n",
    )
    .unwrap();
    let (d, n, out) = (
        data.to_str().unwrap(),
        net.to_str().unwrap(),
        dir.join("run/"),
    );
    let out = out.to_str().unwrap();
    let s = run(&["summary", "--arch", n, "--data", d]);
    // conv 3*3*3*4 + 4 = 112, dense 4*4*4*3 + 3 = 195.
    assert!(
        s.contains("input 8x8x3, 3 classes") && s.contains("307"),
        "{s}"
    );
    let t = run(&[
        "train",
        "--arch",
        n,
        "--data",
        d,
        "--steps",
        "150",
        "--batch",
        "16",
        "--threads",
        "1",
        "--eval-every",
        "0",
        "--no-plots",
        "--augment",
        "false",
        "--out",
        out,
    ]);
    assert!(t.contains("training `rgb` (307 parameters)"), "{t}");
    let acc: f64 = t
        .lines()
        .last()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(acc > 0.9, "{t}");
    let params = dir.join("run/rgb.params");
    let e = run(&["eval", "--params", params.to_str().unwrap(), "--data", d]);
    assert!(e.contains(&format!("{acc:.4}")), "{e}");
    let mcw = dir.join("rgb.mcw");
    run(&[
        "export",
        "--params",
        params.to_str().unwrap(),
        "--out",
        mcw.to_str().unwrap(),
    ]);
    let e2 = run(&["eval", "--params", mcw.to_str().unwrap(), "--data", d]);
    assert!(e2.contains(&format!("{acc:.4}")), "{e2}");
    let q = dir.join("rgb-int8.mcw");
    run(&[
        "quantize",
        "--params",
        params.to_str().unwrap(),
        "--data",
        d,
        "--calibration",
        "50",
        "--out",
        q.to_str().unwrap(),
    ]);
    assert!(q.exists());
    // The resumed run finds the network in its checkpoint.
    let r = bin()
        .args([
            "train",
            "--resume",
            dir.join("run/rgb.ckpt").to_str().unwrap(),
            "--data",
            d,
            "--no-plots",
        ])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    // The same network on MNIST-shaped data is an error naming both shapes.
    let mnist = repo().join("data/mnist");
    let small = repo().join("examples/networks/small.toml");
    let o = bin()
        .args([
            "train",
            "--steps",
            "1",
            "--arch",
            small.to_str().unwrap(),
            "--data",
            d,
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("input is 28x28x1 but the data's samples are 8x8x3"),
        "{err}"
    );
    let o = bin()
        .args([
            "eval",
            "--params",
            params.to_str().unwrap(),
            "--data",
            mnist.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("architecture `rgb` takes 8x8x3 images, the data has 28x28x1"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A network of every newer kind (relu6, depthwise with a multiplier, avgpool, global
/// average pooling) on 8x8x3 data: summary counts its parameters and multiply-adds,
/// training on two threads is deterministic (the same parameter file twice), and eval,
/// export (the exported file gives the same accuracy) and quantize work.
#[test]
fn the_mobilenet_kinds_train_deterministically_on_two_threads_and_export() {
    let bn = "[[layer]]\nkind = \"batchnorm\"\nmomentum = 0.9\n";
    // conv 3*3*3*4 + 4 = 112, depthwise 3*3*8 + 8 = 80, dense 8*3 + 3 = 27; with
    // batchnorm 4 * 4 + 4 * 8 more. MACs: conv 108 * 64, depthwise 72 * 64, dense 24,
    // batchnorm none.
    mobile("mobile", "", "219");
    mobile("mobile-bn", bn, "267");
}

fn mobile(name: &str, bn: &str, params: &str) {
    let dir = tmp(name);
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    synthetic(&data, "train", 300, 1);
    synthetic(&data, "t10k", 90, 2);
    let net = dir.join("mobile.toml");
    std::fs::write(
        &net,
        format!("[[layer]]\nkind = \"conv2d\"\nkernel = 3\nfilters = 4\n{bn}[[layer]]\nkind = \"relu6\"\n\
         [[layer]]\nkind = \"depthwise\"\nkernel = 3\nmultiplier = 2\nfilters = 8\n{bn}[[layer]]\nkind = \"relu\"\n\
         [[layer]]\nkind = \"avgpool\"\nsize = 2\n[[layer]]\nkind = \"global_avgpool\"\n[[layer]]\nkind = \"dense\"\n"),
    )
    .unwrap();
    let (d, n) = (data.to_str().unwrap(), net.to_str().unwrap());
    let s = run(&["summary", "--arch", n, "--data", d]);
    assert!(s.contains(params) && s.contains("11,544"), "{s}");
    assert!(s.contains("depthwise 3x3, x2, stride 1, same"), "{s}");
    assert_eq!(
        s.contains("batchnorm, momentum 0.9 (folded)"),
        !bn.is_empty(),
        "{s}"
    );
    let train = |out: &str| {
        run(&[
            "train",
            "--arch",
            n,
            "--data",
            d,
            "--steps",
            "150",
            "--batch",
            "16",
            "--threads",
            "2",
            "--eval-every",
            "0",
            "--no-plots",
            "--out",
            out,
        ])
    };
    let (a, b) = (dir.join("a/"), dir.join("b/"));
    let t = train(a.to_str().unwrap());
    train(b.to_str().unwrap());
    let pa = std::fs::read(a.join("mobile.params")).unwrap();
    assert_eq!(pa, std::fs::read(b.join("mobile.params")).unwrap());
    let acc: f64 = t
        .lines()
        .last()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(acc > 0.9, "{t}");
    let params = a.join("mobile.params");
    let params = params.to_str().unwrap();
    let e = run(&["eval", "--params", params, "--data", d]);
    assert!(e.contains(&format!("{acc:.4}")), "{e}");
    let mcw = dir.join("mobile.mcw");
    run(&["export", "--params", params, "--out", mcw.to_str().unwrap()]);
    let e2 = run(&["eval", "--params", mcw.to_str().unwrap(), "--data", d]);
    assert!(e2.contains(&format!("{acc:.4}")), "{e2}");
    // The exported file holds no batchnorm: folded into the layer before.
    let wf = host_trainer::weights::WeightsFile::from_bytes(&std::fs::read(&mcw).unwrap());
    let layers = wf.model().unwrap().arch().layers.to_vec();
    assert_eq!(layers.len(), 7, "{name}: {layers:?}");
    let q = dir.join("mobile-int8.mcw");
    let qo = run(&[
        "quantize",
        "--params",
        params,
        "--data",
        d,
        "--calibration",
        "50",
        "--out",
        q.to_str().unwrap(),
    ]);
    assert!(q.exists(), "{qo}");
    std::fs::remove_dir_all(dir).unwrap();
}
