//! # microconv-build
//!
//! Embeds a trained [microconv](https://docs.rs/microconv) weights file in a firmware
//! crate, checked at compile time. Call it from the crate's `build.rs`:
//!
//! ```no_run
//! // build.rs
//! fn main() {
//!     // `model.mcw` sits next to Cargo.toml: written by `host-trainer export` (float)
//!     // or `host-trainer quantize --out` (int8).
//!     microconv_build::Embed::new("model.mcw").run();
//! }
//! ```
//!
//! and include what it generates, once, in the crate:
//!
//! ```ignore
//! include!(concat!(env!("OUT_DIR"), "/model.rs"));
//! ```
//!
//! which declares, read from the file:
//!
//! - `LAYERS: [microconv::Layer; N]` and `ARCH: microconv::Arch<'static>`: the
//!   architecture, as `const`s, so every buffer can be a `static` sized by the core's
//!   `const fn`s (`ARCH.inference_len(1)`, `ARCH.param_count()`, ...);
//! - `MODEL: &microconv::weights::Aligned<[u8]>`: the file itself, 16-byte aligned in
//!   flash, for `microconv::weights::float::Model::parse` (float) or
//!   `microconv::weights::int8::QModel::parse` (int8) to read in place;
//! - `INT8: bool`: whether it is an int8 (version 2) file;
//! - `INPUT_LEN: usize` (values in one input sample) and `CLASSES: usize` (scores out);
//! - `F32_BUF_LEN`, `F32_INPUT_LEN`, `I8_BUF_LEN`, `I8_INPUT_LEN: usize`: the inference and
//!   input buffers of one sample for the model's precision (0 for the other one), so
//!   that a firmware declares both kinds as `static`s and only one takes memory;
//! - `F32_ARENA_LEN`, `I8_ARENA_LEN: usize`: the one arena of planned inference
//!   (`ARCH.planned_len(1)`, input included; `microconv::plan`), far smaller than the
//!   buffers above, for the model's precision (0 for the other one);
//! - in the module `compiled`, the model compiled for a firmware that should parse
//!   nothing and link only the kernels its layers use: `PARAMS: [f32; N]` (float) or
//!   `QNET` (int8, its tensors as typed statics), the file's values to the bit; `PLAN`,
//!   every step of planned
//!   inference worked out by the compiler (`ARCH.plan`), `PLAN_OUTPUT` and
//!   `I8_SCRATCH_LEN` (words of patch scratch for the int8 convolutions); and
//!   `infer_f32(params, arena)` / `infer_i8(arena, scratch)`, one
//!   `microconv::plan::step_*` call per step, each with its constant step. The other
//!   precision's items are stand-ins that take no memory and return
//!   `Error::WrongPrecision`. `WEIGHTS_BYTES` is the flash the typed parameters take.
//!
//! Each layer's line is the core's own description of it (`microconv::Layer::rust_code`),
//! so a new layer kind needs nothing here.
//!
//! The generated code refers to the core as `microconv::...`: depend on it under that
//! name (`microconv = { version = "0.1", features = ["dsp"] }` on a Cortex-M4/M7/M33).
//!
//! The file is parsed here with the core's own parser (which checks its CRC-32), so a
//! corrupt, truncated or incompatible file fails the build with the file's path, the
//! reason and what to do, instead of failing on the device; a firmware that runs the
//! compiled items has nothing left to check there. A relative path is relative to the
//! crate's directory (`CARGO_MANIFEST_DIR`), and cargo rebuilds when the file changes.
//!
//! For tests and other tools, [`render`] turns the bytes of a file into that code without
//! touching the file system or cargo's environment.
#![deny(missing_docs)]
#![deny(unsafe_code)]
// The build.rs example above is a whole file, `fn main` included.
#![allow(clippy::needless_doctest_main)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::{env, fs, io, process};

use microconv::weights::{AnyModel, FormatError};

/// The core's shape type, for [`Embed::expect_input`] (re-exported so that a build
/// script needs no other dependency).
pub use microconv::Shape;

/// The precision of a weights file: the core's own ([`Precision::of`] reads it from a
/// file), re-exported for [`Embed::expect_precision`].
pub use microconv::weights::Precision;

/// What a weights file holds, as [`render`] and [`Embed::write`] found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// Float or int8.
    pub precision: Precision,
    /// The input shape (height, width, channels).
    pub input: Shape,
    /// The number of classes (the last layer's outputs).
    pub classes: usize,
    /// The number of layers.
    pub layers: usize,
    /// The number of parameters (weights and biases).
    pub params: usize,
    /// The size of the file in bytes (what it costs in flash).
    pub file_len: usize,
}

/// Why a weights file cannot be embedded. Its `Display` names the file, says what is
/// wrong and what to do.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The file cannot be read.
    Read {
        /// The file, as resolved.
        path: PathBuf,
        /// The environment variable that chose it, if one did.
        env: Option<String>,
        /// Why.
        source: io::Error,
    },
    /// The file does not parse: it is corrupt, truncated, or not a microconv weights file.
    Format {
        /// The file.
        path: PathBuf,
        /// What the parser found.
        source: FormatError,
    },
    /// The file parses but its model does not fit what [`Embed`] was told to expect.
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What was expected, in words.
        expected: String,
        /// What the file holds, in words.
        found: String,
    },
    /// A cargo build-script variable (`CARGO_MANIFEST_DIR`, `OUT_DIR`) is missing:
    /// [`Embed::write`] runs only inside a build script.
    NotInBuildScript {
        /// The variable.
        var: &'static str,
    },
    /// The generated files cannot be written.
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Read { path, env, source } => {
                write!(f, "cannot read weights file {}: {source} (write one with `host-trainer export` or `host-trainer quantize --out`", path.display())?;
                if let Some(var) = env {
                    write!(f, ", or set {var} to one")?;
                }
                f.write_str("; a relative path is relative to the crate's directory, where its Cargo.toml is)")
            }
            Error::Format { path, source } => write!(
                f,
                "weights file {} is not usable: {source} (write it again with `host-trainer export` or `host-trainer quantize --out`)",
                path.display()
            ),
            Error::Mismatch { path, expected, found } => write!(
                f,
                "weights file {} holds a model with {found}, and this crate expects {expected}: embed a model trained for it",
                path.display()
            ),
            Error::NotInBuildScript { var } => write!(
                f,
                "{var} is not set: microconv_build::Embed::write runs in a build script (build.rs), where cargo sets it"
            ),
            Error::Write { path, source } => {
                write!(f, "cannot write {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Read { source, .. } | Error::Write { source, .. } => Some(source),
            Error::Format { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What [`Embed::write`] embedded.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Embedded {
    /// The weights file, as resolved.
    pub path: PathBuf,
    /// The generated Rust file, for `include!`.
    pub rust_file: PathBuf,
    /// What the file holds.
    pub summary: Summary,
}

/// A weights file to embed, and what the crate expects of it. See the [crate] docs.
#[derive(Clone, Debug)]
pub struct Embed {
    path: PathBuf,
    env: Option<String>,
    out: String,
    input: Option<Shape>,
    classes: Option<usize>,
    precision: Option<Precision>,
}

impl Embed {
    /// Embeds the weights file at `path` (relative to the crate's directory unless
    /// absolute). The generated file is `$OUT_DIR/model.rs`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Embed {
            path: path.into(),
            env: None,
            out: "model.rs".into(),
            input: None,
            classes: None,
            precision: None,
        }
    }

    /// Lets the environment variable `var`, when set and not empty, name the file
    /// instead (for example `MICROCONV_WEIGHTS=model-int8.mcw cargo build`); cargo
    /// rebuilds when it changes.
    pub fn env_override(mut self, var: &str) -> Self {
        self.env = Some(var.into());
        self
    }

    /// The name of the generated file in `OUT_DIR` (default `model.rs`), for a crate that
    /// embeds more than one model.
    pub fn out_file(mut self, name: &str) -> Self {
        self.out = name.into();
        self
    }

    /// Fails the build unless the model's input is `input` (for example
    /// `Shape::new(28, 28, 1)`).
    pub fn expect_input(mut self, input: Shape) -> Self {
        self.input = Some(input);
        self
    }

    /// Fails the build unless the model has `classes` outputs.
    pub fn expect_classes(mut self, classes: usize) -> Self {
        self.classes = Some(classes);
        self
    }

    /// Fails the build unless the file is of this precision (by default both are taken,
    /// and the generated `INT8` says which it is).
    pub fn expect_precision(mut self, precision: Precision) -> Self {
        self.precision = Some(precision);
        self
    }

    /// The file this would embed: the environment override if set, else the path given
    /// to [`Embed::new`], relative to `manifest_dir` unless absolute.
    pub fn resolve(&self, manifest_dir: &Path) -> PathBuf {
        let chosen = self
            .env
            .as_deref()
            .and_then(env::var_os)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| self.path.clone());
        manifest_dir.join(chosen)
    }

    /// Checks the model against what was expected.
    fn check(&self, path: &Path, s: &Summary) -> Result<(), Error> {
        let mismatch = |expected: String, found: String| Error::Mismatch {
            path: path.into(),
            expected,
            found,
        };
        if let Some(i) = self.input {
            if i != s.input {
                return Err(mismatch(
                    format!("{}x{}x{} inputs", i.h, i.w, i.c),
                    format!("{}x{}x{} inputs", s.input.h, s.input.w, s.input.c),
                ));
            }
        }
        if let Some(c) = self.classes {
            if c != s.classes {
                return Err(mismatch(
                    format!("{c} classes"),
                    format!("{} classes", s.classes),
                ));
            }
        }
        if let Some(p) = self.precision {
            if p != s.precision {
                return Err(mismatch(
                    format!("a {p} model"),
                    format!("{} weights", s.precision),
                ));
            }
        }
        Ok(())
    }

    /// In a build script: reads and checks the file, copies it to `OUT_DIR` and writes
    /// the Rust file there; tells cargo to rebuild when the file (or the environment
    /// override) changes.
    pub fn write(&self) -> Result<Embedded, Error> {
        let var = |var: &'static str| {
            env::var_os(var)
                .map(PathBuf::from)
                .ok_or(Error::NotInBuildScript { var })
        };
        let dir = var("CARGO_MANIFEST_DIR")?;
        let out = var("OUT_DIR")?;
        if let Some(v) = &self.env {
            println!("cargo:rerun-if-env-changed={v}");
        }
        let path = self.resolve(&dir);
        println!("cargo:rerun-if-changed={}", path.display());
        let bytes = fs::read(&path).map_err(|source| Error::Read {
            path: path.clone(),
            env: self.env.clone(),
            source,
        })?;
        let stem = Path::new(&self.out)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        let copy = out.join(format!("{stem}.mcw"));
        let (code, summary) = render(
            &bytes,
            &path.display().to_string(),
            &copy.display().to_string(),
        )
        .map_err(|source| Error::Format {
            path: path.clone(),
            source,
        })?;
        self.check(&path, &summary)?;
        fs::write(&copy, &bytes).map_err(|source| Error::Write {
            path: copy.clone(),
            source,
        })?;
        let rust_file = out.join(&self.out);
        fs::write(&rust_file, code).map_err(|source| Error::Write {
            path: rust_file.clone(),
            source,
        })?;
        Ok(Embedded {
            path,
            rust_file,
            summary,
        })
    }

    /// [`Embed::write`], and on error stops the build with its message (printed for
    /// cargo as `cargo::error`, and to stderr).
    pub fn run(&self) -> Embedded {
        match self.write() {
            Ok(e) => e,
            Err(e) => fail(&e),
        }
    }
}

/// Stops a build script with `e`'s message: the build fails and cargo shows why.
pub fn fail(e: &dyn fmt::Display) -> ! {
    eprintln!("\nerror: {e}\n");
    println!("cargo::error={e}");
    process::exit(1)
}

/// Parses the weights file `bytes` (float or int8) and returns the Rust code that
/// declares `LAYERS`, `ARCH`, `MODEL`, `INT8` and the sizes (see the [crate] docs), with `MODEL`
/// reading the file from `include_path` through `include_bytes!`; `source` names the
/// file in the code's header comment.
///
/// ```
/// // A float file: a 2x2 input, one dense layer of 2 units.
/// use microconv::{Arch, Layer, Shape, layers::Dense};
/// const ARCH: Arch = Arch::new(Shape::flat(2), &[Layer::Dense(Dense::new(2))]);
/// let params = [0.5f32; ARCH.param_count()];
/// let mut file = [0u8; 512];
/// let len = microconv::format::write(&ARCH, &params, &mut file).unwrap();
///
/// let (code, summary) = microconv_build::render(&file[..len], "tiny.mcw", "/out/tiny.mcw").unwrap();
/// assert!(code.contains("pub const ARCH: microconv::Arch<'static>"));
/// assert_eq!((summary.classes, summary.params), (2, 6));
///
/// // One flipped byte: the CRC-32 no longer matches.
/// file[len - 1] ^= 1;
/// let err = microconv_build::render(&file[..len], "tiny.mcw", "/out/tiny.mcw").unwrap_err();
/// assert!(err.to_string().contains("checksum mismatch"));
/// ```
pub fn render(
    bytes: &[u8],
    source: &str,
    include_path: &str,
) -> Result<(String, Summary), FormatError> {
    // The parsers read in place and need 4-byte alignment: parse from u32 storage.
    let words: Vec<u32> = bytes
        .chunks(4)
        .map(|c| c.iter().rev().fold(0u32, |a, &b| (a << 8) | b as u32))
        .collect();
    let aligned: &[u8] = bytemuck::cast_slice(&words)
        .get(..bytes.len())
        .unwrap_or_default();
    let model = AnyModel::parse(aligned)?;
    let (precision, arch) = (model.precision(), model.arch());
    let int8 = precision == Precision::Int8;
    let summary = Summary {
        precision,
        input: arch.input,
        classes: arch.classes(),
        layers: arch.layers.len(),
        params: arch.param_count(),
        file_len: bytes.len(),
    };
    let mut code = format!("// Generated by microconv-build from {source}: do not edit.\n");
    let _ = writeln!(
        code,
        "/// The layers of the embedded model.\npub const LAYERS: [microconv::Layer; {}] = [",
        arch.layers.len()
    );
    // Each layer writes its own constructor (`Layer::rust_code`, in its file in the core).
    for l in arch.layers {
        let _ = writeln!(code, "    {},", l.rust_code());
    }
    let _ = writeln!(code, "];");
    let _ = writeln!(
        code,
        "/// The architecture of the embedded model.\npub const ARCH: microconv::Arch<'static> = microconv::Arch::new(microconv::Shape::new({}, {}, {}), &LAYERS);",
        arch.input.h, arch.input.w, arch.input.c
    );
    let _ = writeln!(
        code,
        "/// The weights file, 16-byte aligned in flash.\n#[allow(dead_code)] // a firmware that runs `infer_f32` / `infer_i8` reads the typed statics instead\npub static MODEL: &microconv::weights::Aligned<[u8]> = &microconv::weights::Aligned(*include_bytes!({include_path:?}));",
    );
    let _ = writeln!(
        code,
        "/// Whether the embedded model is int8 (a version 2 file) rather than float.\npub const INT8: bool = {int8};"
    );
    let (input_len, classes, buf) = (arch.input.len(), arch.classes(), arch.inference_len(1));
    let arena = arch.planned_len(1);
    let _ = write!(
        code,
        "\
/// Values in one input sample ({h}x{w}x{c} = {input_len}).
#[allow(dead_code)] // offered to every firmware; not every one needs each
pub const INPUT_LEN: usize = ARCH.input.len();
/// Class scores the model outputs ({classes}).
#[allow(dead_code)] // offered to every firmware; not every one needs each
pub const CLASSES: usize = ARCH.classes();
/// Elements of the float inference buffer for one sample (`ARCH.inference_len(1)`, {buf}), 0 for an int8 model.
#[allow(dead_code)] // offered to every firmware; not every one needs each
pub const F32_BUF_LEN: usize = if INT8 {{ 0 }} else {{ ARCH.inference_len(1) }};
/// Elements of the float input buffer (`INPUT_LEN`), 0 for an int8 model.
#[allow(dead_code)] // offered to every firmware; not every one needs each
pub const F32_INPUT_LEN: usize = if INT8 {{ 0 }} else {{ INPUT_LEN }};
/// Bytes of the int8 inference buffer for one sample (`ARCH.inference_len(1)`, {buf}), 0 for a float model.
#[allow(dead_code)] // offered to every firmware; not every one needs each
pub const I8_BUF_LEN: usize = if INT8 {{ ARCH.inference_len(1) }} else {{ 0 }};
/// Bytes of the int8 input buffer (`INPUT_LEN`), 0 for a float model.
#[allow(dead_code)] // offered to every firmware; not every one needs each
pub const I8_INPUT_LEN: usize = if INT8 {{ INPUT_LEN }} else {{ 0 }};
/// Elements of the float arena of planned inference for one sample, input included
/// (`ARCH.planned_len(1)`, {arena}; `microconv::plan::infer_planned`), 0 for an int8 model.
#[allow(dead_code)] // offered to every firmware; not every one needs each
pub const F32_ARENA_LEN: usize = if INT8 {{ 0 }} else {{ ARCH.planned_len(1) }};
/// Bytes of the int8 arena of planned inference for one sample, input included
/// (`ARCH.planned_len(1)`, {arena}; `microconv::plan::infer_planned_i8`), 0 for a float model.
#[allow(dead_code)] // offered to every firmware; not every one needs each
pub const I8_ARENA_LEN: usize = if INT8 {{ ARCH.planned_len(1) }} else {{ 0 }};
",
        h = arch.input.h,
        w = arch.input.w,
        c = arch.input.c,
    );
    code.push_str(&compiled(&model));
    Ok((code, summary))
}

/// Rust literals of `values`, 16 a line.
fn list<T>(values: impl IntoIterator<Item = T>, lit: impl Fn(T) -> String) -> String {
    let items: Vec<String> = values.into_iter().map(lit).collect();
    let lines: Vec<String> = items.chunks(16).map(|c| c.join(", ")).collect();
    lines.join(",\n    ")
}

/// An `f32` as a Rust expression with the same bits: its shortest decimal form (which
/// Rust reads back exactly), `f32::from_bits` for what has none (NaN, infinities).
fn f32_lit(v: f32) -> String {
    if v.is_finite() {
        format!("{v:?}")
    } else {
        format!("f32::from_bits({:#010x})", v.to_bits())
    }
}

/// The part of the generated code that runs the model with nothing left to do on the
/// device: its parameters as typed statics (checked here, with the file's CRC-32, so the
/// device parses nothing), its plan worked out by the compiler (`PLAN`), and
/// `infer_f32` / `infer_i8`, one call per step, so that only the kernels of the model's
/// layers are linked. The precision the file is not gets stand-ins that take no memory
/// and answer `WrongPrecision`.
fn compiled(model: &AnyModel<'_>) -> String {
    let mut code = String::from(
        "\
/// The embedded model compiled for a firmware: its parameters as typed statics, its plan
/// worked out by the compiler and its inference, one call per step (a module of its own,
/// so that its names do not clash with the crate's, such as `microconv::quant::infer_i8`).
#[allow(dead_code)] // offered to every firmware; not every one needs each
pub mod compiled {
use super::{ARCH, INT8};
/// Steps of the embedded model's planned inference (`ARCH.plan_len(1)`).
#[allow(dead_code)] // offered to every firmware; not every one needs each
pub const STEPS: usize = ARCH.plan_len(1);
/// The embedded model's plan for one sample, worked out by the compiler.
#[allow(dead_code)] // offered to every firmware; not every one needs each
pub const PLAN: [microconv::plan::Planned; STEPS] = match ARCH.plan::<STEPS>(1) {
    Some(p) => p,
    None => panic!(\"the embedded model has no memory plan\"),
};
/// Words of scratch int8 inference needs for its convolutions' patches
/// (`ARCH.planned_scratch_i8()`), 0 for a float model.
#[allow(dead_code)] // offered to every firmware; not every one needs each
pub const I8_SCRATCH_LEN: usize = if INT8 { ARCH.planned_scratch_i8() } else { 0 };
/// Where the logits are in the arena after the last step (`ARCH.planned_output(1)`).
#[allow(dead_code)] // offered to every firmware; not every one needs each
pub const PLAN_OUTPUT: microconv::plan::Region = ARCH.planned_output(1);
",
    );
    // One call per step, each with its constant step, so that the compiler inlines the
    // step's dispatch down to its own kernel.
    let steps = |call: &str| -> String {
        let n = model.arch().plan_len(1);
        (0..n)
            .map(|k| format!("    {}?;\n", call.replace("{k}", &k.to_string())))
            .collect()
    };
    match model {
        AnyModel::Float(m) => {
            let params = m.params();
            let _ = write!(
                code,
                "\
/// Bytes of flash the model's parameters take as typed statics (`PARAMS`).
#[allow(dead_code)] // offered to every firmware; not every one needs each
pub const WEIGHTS_BYTES: usize = {bytes};
/// The float parameters ({n}), read from the weights file at build time.
#[allow(dead_code)] // offered to every firmware; not every one needs each
pub static PARAMS: [f32; {n}] = [
    {list}
];
",
                n = params.len(),
                bytes = 4 * params.len(),
                list = list(params.iter().copied(), f32_lit),
            );
            let steps = steps("microconv::plan::step_f32(params, &PLAN[{k}], arena)");
            let _ = write!(
                code,
                "\
/// Float inference of the embedded model with parameters `params` (`PARAMS`, or a copy
/// of them) in `arena` (`F32_ARENA_LEN` elements, the image first): the logits.
#[allow(dead_code)] // offered to every firmware; not every one needs each
pub fn infer_f32<'b>(params: &[f32], arena: &'b mut [f32]) -> Result<&'b [f32], microconv::Error> {{
    microconv::Error::expect_len(\"params\", PARAMS.len(), params.len())?;
{steps}    microconv::plan::region(arena, PLAN_OUTPUT)
}}
",
                steps = steps,
            );
            code.push_str(I8_STANDIN);
        }
        AnyModel::Int8(q) => {
            let net = q.net();
            let bytes: usize = net
                .layers
                .iter()
                .filter_map(|l| l.params)
                .map(|t| t.weights.len() + 4 * (t.bias.len() + t.multiplier.len() + t.shift.len()))
                .sum();
            let _ = write!(
                code,
                "\
/// Bytes of flash the model's int8 tensors take as typed statics (weights, biases,
/// multipliers, shifts; `QLAYERS` adds a few bytes per layer).
#[allow(dead_code)] // offered to every firmware; not every one needs each
pub const WEIGHTS_BYTES: usize = {bytes};
"
            );
            code.push_str(&int8_statics(&net));
            let _ = writeln!(
                code,
                "/// The int8 layers, read from the weights file at build time.\n#[allow(dead_code)] // offered to every firmware; not every one needs each\npub static QLAYERS: [microconv::quant::QLayer<'static>; {}] = [",
                net.layers.len()
            );
            for (i, l) in net.layers.iter().enumerate() {
                let params = match l.params {
                    Some(_) => format!("Some(microconv::quant::QTensors {{ weights: &Q{i}_W, bias: &Q{i}_B, multiplier: &Q{i}_M, shift: &Q{i}_S }})"),
                    None => "None".into(),
                };
                let _ = writeln!(
                    code,
                    "    microconv::quant::QLayer {{ params: {params}, output: {}, act_min: {}, act_max: {} }},",
                    qp(&l.output),
                    l.act_min,
                    l.act_max
                );
            }
            let _ = write!(
                code,
                "\
];
/// The embedded int8 network.
#[allow(dead_code)] // offered to every firmware; not every one needs each
pub static QNET: microconv::quant::QNet<'static> = microconv::quant::QNet {{
    arch: ARCH,
    input: {input},
    layers: &QLAYERS,
}};
/// Int8 inference of the embedded model in `arena` (`I8_ARENA_LEN` bytes, the quantized
/// image first), its convolutions' patches in `scratch` (`I8_SCRATCH_LEN` words): the
/// int8 logits.
#[allow(dead_code)] // offered to every firmware; not every one needs each
pub fn infer_i8<'b>(arena: &'b mut [i8], scratch: &mut [u32]) -> Result<&'b [i8], microconv::Error> {{
{steps}    microconv::plan::region(arena, PLAN_OUTPUT)
}}
",
                input = qp(&net.input),
                steps = steps("microconv::plan::step_i8(&QNET, &PLAN[{k}], arena, scratch)"),
            );
            code.push_str(F32_STANDIN);
        }
    }
    code.push_str("}\n");
    code
}

/// The int8 tensors of every layer with parameters, as private statics `Q{i}_W`,
/// `Q{i}_B`, `Q{i}_M`, `Q{i}_S` (weights, biases, multipliers, shifts) that `QLAYERS`
/// points to.
fn int8_statics(net: &microconv::quant::QNet<'_>) -> String {
    let mut code = String::new();
    for (i, l) in net.layers.iter().enumerate() {
        if let Some(t) = &l.params {
            let _ = write!(
                code,
                "static Q{i}_W: [i8; {}] = [\n    {}\n];\n",
                t.weights.len(),
                list(t.weights.iter(), |v| v.to_string())
            );
            for (name, v) in [("B", t.bias), ("M", t.multiplier), ("S", t.shift)] {
                let _ = write!(
                    code,
                    "static Q{i}_{name}: [i32; {}] = [\n    {}\n];\n",
                    v.len(),
                    list(v.iter(), |v| v.to_string())
                );
            }
        }
    }
    code
}

/// A quantization record as the Rust expression that builds it.
fn qp(p: &microconv::quant::QParams) -> String {
    format!(
        "microconv::quant::QParams {{ scale: {}, zero: {} }}",
        f32_lit(p.scale),
        p.zero
    )
}

/// What an int8 model's generated code has of the float items: nothing that takes memory.
const F32_STANDIN: &str = "\
/// No float parameters: the embedded model is int8.
#[allow(dead_code)] // offered to every firmware; not every one needs each
pub static PARAMS: [f32; 0] = [];
/// The embedded model is int8: always `WrongPrecision`.
#[allow(dead_code)] // offered to every firmware; not every one needs each
pub fn infer_f32<'b>(_: &[f32], _: &'b mut [f32]) -> Result<&'b [f32], microconv::Error> {
    Err(microconv::Error::WrongPrecision { found: 2 })
}
";

/// What a float model's generated code has of the int8 items: nothing that takes memory.
const I8_STANDIN: &str = "\
/// No int8 layers: the embedded model is float.
#[allow(dead_code)] // offered to every firmware; not every one needs each
pub static QNET: microconv::quant::QNet<'static> = microconv::quant::QNet {
    arch: ARCH,
    input: microconv::quant::QParams { scale: 1.0, zero: 0 },
    layers: &[],
};
/// The embedded model is float: always `WrongPrecision`.
#[allow(dead_code)] // offered to every firmware; not every one needs each
pub fn infer_i8<'b>(_: &'b mut [i8], _: &mut [u32]) -> Result<&'b [i8], microconv::Error> {
    Err(microconv::Error::WrongPrecision { found: 1 })
}
";

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> Vec<u8> {
        fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../firmware/models")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn float_and_int8_files_render_their_architecture() {
        for (name, precision) in [
            ("small.mcw", Precision::Float),
            ("small-int8.mcw", Precision::Int8),
        ] {
            let bytes = file(name);
            let (code, s) = render(&bytes, name, "/o/model.mcw").unwrap();
            assert_eq!(s.precision, precision, "{name}");
            assert_eq!((s.input, s.classes), (Shape::new(28, 28, 1), 10));
            assert_eq!(s.file_len, bytes.len());
            assert!(code.contains(&format!(
                "pub const INT8: bool = {};",
                precision == Precision::Int8
            )));
            assert!(code.contains("include_bytes!(\"/o/model.mcw\")"));
            assert!(code.contains(&format!(
                "pub const LAYERS: [microconv::Layer; {}]",
                s.layers
            )));
        }
    }

    #[test]
    fn the_architecture_code_matches_the_file() {
        // The generated layer list, parsed back with the core, is the file's.
        let bytes = file("small.mcw");
        let (code, _) = render(&bytes, "small.mcw", "x").unwrap();
        let words: Vec<u32> = bytes
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let m = microconv::weights::float::Model::parse(bytemuck::cast_slice(&words)).unwrap();
        let expected: Vec<String> = m
            .arch()
            .layers
            .iter()
            .map(|l| l.rust_code().to_string())
            .collect();
        let got: Vec<&str> = code
            .lines()
            .skip_while(|l| !l.starts_with("pub const LAYERS"))
            .skip(1)
            .take_while(|l| *l != "];")
            .filter_map(|l| l.strip_prefix("    ")?.strip_suffix(','))
            .collect();
        assert_eq!(got, expected);
        assert!(code.contains("microconv::Shape::new(28, 28, 1)"));
        assert!(code.contains("pub const INPUT_LEN: usize = ARCH.input.len();"));
        assert!(code.contains("pub const CLASSES: usize = ARCH.classes();"));
        assert!(code.contains("(28x28x1 = 784)"));
        let names = ["F32_BUF_LEN", "F32_INPUT_LEN", "I8_BUF_LEN", "I8_INPUT_LEN"];
        for name in names.into_iter().chain(["F32_ARENA_LEN", "I8_ARENA_LEN"]) {
            assert!(
                code.contains(&format!("pub const {name}: usize = if INT8")),
                "{name}"
            );
        }
    }

    /// The values of the generated static `name` (a list of literals).
    fn static_values(code: &str, name: &str) -> Vec<String> {
        let start = format!("pub static {name}: [");
        let body: String = code
            .lines()
            .skip_while(|l| !l.starts_with(&start) && !l.starts_with(&start[4..]))
            .skip(1)
            .take_while(|l| *l != "];")
            .collect::<Vec<_>>()
            .join(" ");
        body.split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    }

    #[test]
    fn the_parameters_are_the_files_to_the_bit() {
        // Float: every parameter, read back from its literal, has the file's bits.
        let bytes = file("small.mcw");
        let (code, s) = render(&bytes, "small.mcw", "x").unwrap();
        let words: Vec<u32> = bytes
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let m = microconv::weights::float::Model::parse(bytemuck::cast_slice(&words)).unwrap();
        let got: Vec<u32> = static_values(&code, "PARAMS")
            .iter()
            .map(|v| v.parse::<f32>().unwrap().to_bits())
            .collect();
        let want: Vec<u32> = m.params().iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want);
        assert_eq!(got.len(), s.params);
        assert!(code.contains(&format!(
            "pub const WEIGHTS_BYTES: usize = {};",
            4 * s.params
        )));
        // The plan: one call per step, the stand-in for the other precision.
        let calls = code
            .matches("microconv::plan::step_f32(params, &PLAN[")
            .count();
        assert_eq!(calls, microconv::archs::SMALL.plan_len(1));
        assert!(code.contains("Err(microconv::Error::WrongPrecision { found: 1 })"));

        // Int8: the tensors of every layer with parameters.
        let bytes = file("small-int8.mcw");
        let (code, _) = render(&bytes, "small-int8.mcw", "x").unwrap();
        let words: Vec<u32> = bytes
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let q = microconv::weights::int8::QModel::parse(bytemuck::cast_slice(&words)).unwrap();
        let net = q.net();
        let mut with_params = 0;
        for (i, l) in net.layers.iter().enumerate() {
            let Some(t) = l.params else { continue };
            with_params += 1;
            let ints = |name: &str| -> Vec<i32> {
                static_values(&code, &format!("Q{i}_{name}"))
                    .iter()
                    .map(|v| v.parse().unwrap())
                    .collect()
            };
            let w: Vec<i32> = t.weights.iter().map(|&v| v as i32).collect();
            assert_eq!(ints("W"), w, "layer {i}");
            assert_eq!(ints("B"), t.bias, "layer {i}");
            assert_eq!(ints("M"), t.multiplier, "layer {i}");
            assert_eq!(ints("S"), t.shift, "layer {i}");
        }
        assert_eq!(with_params, 4);
        assert_eq!(
            code.matches("microconv::quant::QLayer {").count(),
            net.layers.len()
        );
        let calls = code
            .matches("microconv::plan::step_i8(&QNET, &PLAN[")
            .count();
        assert_eq!(calls, microconv::archs::SMALL.plan_len(1));
        assert!(code.contains("pub static PARAMS: [f32; 0] = [];"));
    }

    #[test]
    fn non_finite_floats_keep_their_bits() {
        for v in [f32::NAN, f32::INFINITY, -f32::INFINITY] {
            assert_eq!(f32_lit(v), format!("f32::from_bits({:#010x})", v.to_bits()));
        }
        for v in [0.0f32, -0.0, 1e-45, 3.4028235e38, 0.1] {
            assert_eq!(f32_lit(v).parse::<f32>().unwrap().to_bits(), v.to_bits());
        }
    }

    #[test]
    fn bad_files_are_errors_that_say_why() {
        let good = file("small.mcw");
        let mut corrupt = good.clone();
        corrupt[1000] ^= 0xff;
        let cases: [(&[u8], &str); 5] = [
            (&corrupt, "checksum mismatch"),
            (&good[..good.len() - 7], "truncated"),
            (&good[..10], "too short"),
            (&[0u8; 4096], "bad magic"),
            (b"", "too short"),
        ];
        for (bytes, why) in cases {
            let e = render(bytes, "f", "f").unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        }
        let mut v9 = good.clone();
        v9[8..12].copy_from_slice(&9u32.to_le_bytes());
        let e = render(&v9, "f", "f").unwrap_err();
        assert!(
            matches!(e, FormatError::UnsupportedVersion { found: 9, .. }),
            "{e}"
        );
    }

    #[test]
    fn expectations_are_checked() {
        let (_, s) = render(&file("small-int8.mcw"), "f", "f").unwrap();
        let p = Path::new("m.mcw");
        let ok = Embed::new(p)
            .expect_input(Shape::new(28, 28, 1))
            .expect_classes(10)
            .expect_precision(Precision::Int8);
        assert!(ok.check(p, &s).is_ok());
        let e = Embed::new(p).expect_classes(3).check(p, &s).unwrap_err();
        assert!(
            e.to_string()
                .contains("10 classes, and this crate expects 3 classes"),
            "{e}"
        );
        let e = Embed::new(p)
            .expect_input(Shape::new(32, 32, 3))
            .check(p, &s)
            .unwrap_err();
        assert!(e.to_string().contains("28x28x1 inputs"), "{e}");
        let e = Embed::new(p)
            .expect_precision(Precision::Float)
            .check(p, &s)
            .unwrap_err();
        assert!(e.to_string().contains("expects a float"), "{e}");
    }

    #[test]
    fn relative_paths_are_relative_to_the_crate() {
        let e = Embed::new("models/x.mcw");
        assert_eq!(
            e.resolve(Path::new("/crate")),
            Path::new("/crate/models/x.mcw")
        );
        let e = Embed::new("/abs/x.mcw");
        assert_eq!(e.resolve(Path::new("/crate")), Path::new("/abs/x.mcw"));
    }

    #[test]
    fn outside_a_build_script_write_says_so() {
        // Tests run without OUT_DIR (cargo sets it for build scripts only).
        if env::var_os("OUT_DIR").is_none() {
            let e = Embed::new("x.mcw").write().unwrap_err();
            assert!(e.to_string().contains("build script"), "{e}");
        }
    }
}
