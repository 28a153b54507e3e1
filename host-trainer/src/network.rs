//! Network description files: a network a user writes in TOML (the keys are documented
//! in `docs/network-description.md`), read into the core's [`Layer`]s, checked with the
//! core's own shape rules, and written back as one canonical text that parameter files
//! and checkpoints store so that they describe themselves.
//!
//! Every error names the file, and where it is about one layer, the layer's index and
//! kind: `net.toml: layer 3 (dense): ...`. Nothing is fixed silently.
//!
//! The layer kinds are one table, [`KINDS`]: a kind the core gains is one entry there
//! (its name, its keys, how to build it and how to write it back).

use anyhow::{anyhow, bail, Result};
use microconv::layers::{
    AvgPool, BatchNorm, Conv2d, Dense, DepthwiseConv2d, Dropout, Layer, MaxPool,
};
use microconv::{Arch, Padding, Shape};
use toml::{Table, Value};

/// The most layers a network may have: what the weights file records
/// (`microconv::weights::MAX_LAYERS`).
pub const MAX_LAYERS: usize = microconv::weights::MAX_LAYERS;

/// The most parameters a network may have, and a parameter file this build reads may
/// hold: the largest built-in network's, with room to spare (64 M). Files are checked
/// against it before they are read, so that a huge file is refused instead of filling
/// the memory.
pub const MAX_PARAMS: usize = 64 << 20;

/// The largest hyper-parameter the weights file records (a `u32`).
const MAX_FIELD: i64 = u32::MAX as i64;

/// A description as read: what the file states. `input` and `classes` may be left to
/// the data ([`Description::resolve`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Description {
    /// The file, for errors.
    pub file: String,
    /// `name`, or the file's stem.
    pub name: String,
    /// `input = [h, w, c]`, if stated.
    pub input: Option<Shape>,
    /// `classes`, if stated.
    pub classes: Option<usize>,
    /// The layers. A last `dense` without `units` has `units = 0` here until resolved.
    pub layers: Vec<Layer>,
    /// `(layer index, filters)` of the depthwise layers that state `filters`: checked
    /// against their input's channels times the multiplier once the shapes are known.
    pub depthwise_filters: Vec<(usize, usize)>,
}

/// A resolved network: its name, the architecture (layers leaked once for the
/// process's life, so that it is an `Arch<'static>` like the built-in ones) and its
/// canonical description text.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    /// The name.
    pub name: String,
    /// The architecture, checked by [`Arch::validate`].
    pub arch: Arch<'static>,
    /// The canonical TOML text ([`canonical`]): every key explicit, input and classes
    /// stated.
    pub text: String,
}

/// One layer kind of the description format.
pub struct Kind {
    /// The `kind = "..."` name (the core's [`Layer::name`]).
    pub name: &'static str,
    /// Its keys besides `kind`, with what each means (for the docs and errors).
    pub keys: &'static [&'static str],
    /// Builds the layer from its table (`last`: whether it is the network's last layer).
    build: fn(&Keys<'_>, bool) -> Result<Layer, String>,
    /// Writes the layer's keys back (`key = value` lines), the inverse of `build`.
    write: fn(&Layer) -> String,
}

/// Every layer kind a description may use. A new kind is one entry.
pub const KINDS: &[Kind] = &[
    Kind {
        name: "conv2d",
        keys: &["kernel", "filters", "stride", "padding"],
        build: |k, _| {
            Ok(Layer::Conv2d(Conv2d::with(
                k.int("kernel", None)?,
                k.int("stride", Some(1))?,
                k.padding()?,
                k.int("filters", None)?,
            )))
        },
        write: |l| match l {
            Layer::Conv2d(c) => format!(
                "kernel = {}\nfilters = {}\nstride = {}\npadding = \"{}\"\n",
                c.kernel,
                c.filters,
                c.stride,
                padding_name(c.padding)
            ),
            _ => String::new(),
        },
    },
    Kind {
        name: "maxpool",
        keys: &["size", "stride", "padding"],
        build: |k, _| {
            let size = k.int("size", None)?;
            Ok(Layer::MaxPool(MaxPool::new(
                size,
                k.int("stride", Some(size))?,
                k.padding()?,
            )))
        },
        write: |l| match l {
            Layer::MaxPool(p) => format!(
                "size = {}\nstride = {}\npadding = \"{}\"\n",
                p.size,
                p.stride,
                padding_name(p.padding)
            ),
            _ => String::new(),
        },
    },
    Kind {
        name: "dense",
        keys: &["units"],
        // The last layer's units may be left to the number of classes (0 until resolved).
        build: |k, last| Ok(Layer::Dense(Dense::new(k.int("units", last.then_some(0))?))),
        write: |l| match l {
            Layer::Dense(d) => format!("units = {}\n", d.units),
            _ => String::new(),
        },
    },
    Kind {
        name: "relu",
        keys: &[],
        build: |_, _| Ok(Layer::Relu),
        write: |_| String::new(),
    },
    Kind {
        name: "dropout",
        keys: &["keep"],
        build: |k, _| {
            let keep = k.float("keep")?;
            if !(keep > 0.0 && keep <= 1.0) {
                return Err(format!("keep = {keep} is out of range: it is the probability of keeping a unit, in (0, 1]"));
            }
            Ok(Layer::Dropout(Dropout::new(keep)))
        },
        write: |l| match l {
            Layer::Dropout(d) => format!("keep = {:?}\n", d.keep),
            _ => String::new(),
        },
    },
    Kind {
        name: "flatten",
        keys: &[],
        build: |_, _| Ok(Layer::Flatten),
        write: |_| String::new(),
    },
    Kind {
        name: "depthwise",
        // `filters`, if stated, is checked against the input's channels times the
        // multiplier when the shapes are known ([`Description::resolve`]).
        keys: &["kernel", "stride", "padding", "multiplier", "filters"],
        build: |k, _| {
            Ok(Layer::DepthwiseConv2d(DepthwiseConv2d::new(
                k.int("kernel", None)?,
                k.int("stride", Some(1))?,
                k.padding()?,
                k.int("multiplier", Some(1))?,
            )))
        },
        write: |l| match l {
            Layer::DepthwiseConv2d(d) => format!(
                "kernel = {}\nstride = {}\npadding = \"{}\"\nmultiplier = {}\n",
                d.kernel,
                d.stride,
                padding_name(d.padding),
                d.multiplier
            ),
            _ => String::new(),
        },
    },
    Kind {
        name: "avgpool",
        keys: &["size", "stride", "padding"],
        build: |k, _| {
            let size = k.int("size", None)?;
            Ok(Layer::AvgPool(AvgPool::new(
                size,
                k.int("stride", Some(size))?,
                k.padding()?,
            )))
        },
        write: |l| match l {
            Layer::AvgPool(p) => format!(
                "size = {}\nstride = {}\npadding = \"{}\"\n",
                p.size,
                p.stride,
                padding_name(p.padding)
            ),
            _ => String::new(),
        },
    },
    Kind {
        name: "global_avgpool",
        keys: &[],
        build: |_, _| Ok(Layer::GlobalAvgPool),
        write: |_| String::new(),
    },
    Kind {
        name: "relu6",
        keys: &[],
        build: |_, _| Ok(Layer::Relu6),
        write: |_| String::new(),
    },
    Kind {
        name: "batchnorm",
        keys: &["momentum", "epsilon"],
        build: |k, _| {
            let momentum = k.float_or("momentum", 0.99)?;
            if !(0.0..1.0).contains(&momentum) {
                return Err(format!("momentum = {momentum} is out of range: it is the weight of the old running average, in [0, 1)"));
            }
            let epsilon = k.float_or("epsilon", 0.001)?;
            if !(epsilon > 0.0 && epsilon.is_finite()) {
                return Err(format!(
                    "epsilon = {epsilon} is out of range: it is added to the variance, more than 0"
                ));
            }
            Ok(Layer::BatchNorm(BatchNorm::new(momentum, epsilon)))
        },
        write: |l| match l {
            Layer::BatchNorm(b) => {
                format!("momentum = {:?}\nepsilon = {:?}\n", b.momentum, b.epsilon)
            }
            _ => String::new(),
        },
    },
];

/// The keys of the description's top level.
const TOP_KEYS: &[&str] = &["name", "input", "classes", "layer"];

fn padding_name(p: Padding) -> &'static str {
    match p {
        Padding::Same => "same",
        Padding::Valid => "valid",
    }
}

/// One layer's table, for the kind's `build`.
struct Keys<'t> {
    table: &'t Table,
}

impl Keys<'_> {
    /// Integer key `key` in `1..=u32::MAX`, or `default` when absent (`None`: required).
    fn int(&self, key: &str, default: Option<usize>) -> Result<usize, String> {
        let v = match (self.table.get(key), default) {
            (None, Some(d)) => return Ok(d),
            (None, None) => return Err(format!("missing key `{key}`")),
            (Some(v), _) => v,
        };
        let Some(i) = v.as_integer() else {
            return Err(format!(
                "`{key}` must be a whole number, got {}",
                v.type_str()
            ));
        };
        if !(1..=MAX_FIELD).contains(&i) {
            return Err(format!(
                "{key} = {i} is out of range: it must be 1 to {MAX_FIELD} (the weights file records it as a u32)"
            ));
        }
        usize::try_from(i).map_err(|_| format!("{key} = {i} does not fit this machine's usize"))
    }

    /// Number key `key` (integer or float), required.
    fn float(&self, key: &str) -> Result<f32, String> {
        match self.table.get(key) {
            None => Err(format!("missing key `{key}`")),
            Some(Value::Float(f)) => Ok(*f as f32),
            Some(Value::Integer(i)) => Ok(*i as f32),
            Some(v) => Err(format!("`{key}` must be a number, got {}", v.type_str())),
        }
    }

    /// Number key `key`, or `default` when absent.
    fn float_or(&self, key: &str, default: f32) -> Result<f32, String> {
        match self.table.get(key) {
            None => Ok(default),
            Some(_) => self.float(key),
        }
    }

    /// `padding = "same" | "valid"`, default `same`.
    fn padding(&self) -> Result<Padding, String> {
        match self.table.get("padding") {
            None => Ok(Padding::Same),
            Some(Value::String(s)) if s == "same" => Ok(Padding::Same),
            Some(Value::String(s)) if s == "valid" => Ok(Padding::Valid),
            Some(v) => Err(format!("padding = {v} is not one of \"same\", \"valid\"")),
        }
    }
}

/// The kind a layer is.
fn kind_of(l: &Layer) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == l.name())
}

/// A positive whole number from the top level.
fn top_int(v: &Value, key: &str) -> Result<usize, String> {
    match v.as_integer() {
        Some(i) if (1..=MAX_FIELD).contains(&i) => {
            usize::try_from(i).map_err(|_| format!("`{key}` does not fit usize"))
        }
        Some(i) => Err(format!(
            "{key} = {i} is out of range: it must be 1 to {MAX_FIELD}"
        )),
        None => Err(format!(
            "`{key}` must be a whole number, got {}",
            v.type_str()
        )),
    }
}

impl Description {
    /// Reads the description file at `path`.
    pub fn read(path: &std::path::Path) -> Result<Self> {
        let file = path.display().to_string();
        let b = crate::bytes::read_at_most(path, 1 << 20, "network description")?;
        let text = String::from_utf8(b).map_err(|_| anyhow!("{file}: not UTF-8 text"))?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "custom".into());
        Self::parse(&text, &file, &stem)
    }

    /// Parses description `text`; `file` names it in errors, `stem` is the name when the
    /// text states none.
    pub fn parse(text: &str, file: &str, stem: &str) -> Result<Self> {
        let top: Table = text.parse().map_err(|e: toml::de::Error| {
            // toml's message spans several lines (a caret under the spot): keep the first
            // and the position.
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            let msg = e.message().lines().next().unwrap_or("").to_string();
            anyhow!("{file}: not valid TOML{at}: {msg}")
        })?;
        let err = |m: String| anyhow!("{file}: {m}");
        if let Some(k) = top.keys().find(|k| !TOP_KEYS.contains(&k.as_str())) {
            bail!(
                "{file}: unknown key `{k}` at the top level (known: {})",
                TOP_KEYS.join(", ")
            );
        }
        let name = match top.get("name") {
            None => stem.to_string(),
            Some(Value::String(s)) if valid_name(s) => s.clone(),
            Some(v) => bail!("{file}: name = {v} must be a non-empty string of letters, digits, `-`, `_` or `.`, at most 64 long"),
        };
        let input = match top.get("input") {
            None => None,
            Some(v) => Some(input_shape(v).map_err(err)?),
        };
        let classes = match top.get("classes") {
            None => None,
            Some(v) => Some(top_int(v, "classes").map_err(err)?),
        };
        let tables = match top.get("layer") {
            None => {
                bail!("{file}: no layers: add `[[layer]]` tables (docs/network-description.md)")
            }
            Some(Value::Array(a)) => a,
            Some(v) => bail!(
                "{file}: `layer` must be an array of tables (`[[layer]]`), got {}",
                v.type_str()
            ),
        };
        if tables.len() > MAX_LAYERS {
            bail!(
                "{file}: {} layers, more than the weights file's {MAX_LAYERS}",
                tables.len()
            );
        }
        let mut layers = Vec::with_capacity(tables.len());
        let mut depthwise_filters = Vec::new();
        for (i, t) in tables.iter().enumerate() {
            let (l, filters) =
                layer(t, i, i + 1 == tables.len()).map_err(|m| anyhow!("{file}: {m}"))?;
            layers.push(l);
            depthwise_filters.extend(filters.map(|f| (i, f)));
        }
        Ok(Description {
            file: file.to_string(),
            name,
            input,
            classes,
            layers,
            depthwise_filters,
        })
    }

    /// The network for data whose samples have shape `data.0` and whose labels are
    /// `0..data.1` (`None`: no data, the description must state both). Input and classes
    /// come from the data unless the description states them; a mismatch is an error.
    pub fn resolve(&self, data: Option<(Shape, usize)>) -> Result<Network> {
        let file = &self.file;
        let input = match (self.input, data) {
            (Some(s), Some((d, _))) if s != d => bail!(
                "{file}: the network's input is {} but the data's samples are {} (change `input` or use other data)",
                fmt_shape(s),
                fmt_shape(d)
            ),
            (Some(s), _) => s,
            (None, Some((d, _))) => d,
            (None, None) => bail!("{file}: no `input = [height, width, channels]` and no data to take it from (state it, or give --data)"),
        };
        let mut layers = self.layers.clone();
        let last_units = match layers.last() {
            Some(Layer::Dense(d)) if d.units > 0 => Some(d.units),
            _ => None,
        };
        let classes = match (self.classes, last_units, data) {
            (Some(c), Some(u), _) if c != u => bail!(
                "{file}: classes = {c} but the last layer (layer {}, dense) has {u} units",
                layers.len() - 1
            ),
            (Some(c), _, Some((_, k))) | (None, Some(c), Some((_, k))) if c != k => bail!(
                "{file}: the network has {c} classes but the data's labels are 0 to {} ({k} classes)",
                k.saturating_sub(1)
            ),
            (Some(c), _, _) | (None, Some(c), _) => c,
            (None, None, Some((_, k))) => k,
            (None, None, None) => bail!("{file}: the number of classes is not stated (`classes`, or `units` of the last dense layer) and there is no data to take it from"),
        };
        if let Some(Layer::Dense(d)) = layers.last_mut() {
            d.units = classes;
        }
        let arch = Arch::new(input, &layers);
        for &(i, filters) in &self.depthwise_filters {
            // Layers before `i` that do not fit are `check`'s to report.
            if let Ok((ins, outs)) = arch.layer_io(i) {
                if outs.c != filters {
                    bail!(
                        "{file}: layer {i} (depthwise) (its input is {}): filters = {filters} does not match: a depthwise layer outputs its input's {} channels times the multiplier, {} (change `multiplier`, or use a 1x1 conv2d to change the channel count)",
                        fmt_shape(ins),
                        ins.c,
                        outs.c
                    );
                }
            }
        }
        check(&arch, file)?;
        if arch.classes() != classes {
            let i = layers.len() - 1;
            bail!(
                "{file}: layer {i} ({}): the network outputs {} values but has {classes} classes (end with a dense layer of `units = {classes}`, or leave its units out)",
                layers[i].name(),
                arch.classes()
            );
        }
        let text = canonical(&self.name, &arch);
        let layers: &'static [Layer] = Box::leak(layers.into_boxed_slice());
        Ok(Network {
            name: self.name.clone(),
            arch: Arch::new(input, layers),
            text,
        })
    }
}

/// Whether `s` may be a network's name (it becomes part of file names).
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn fmt_shape(s: Shape) -> String {
    format!("{}x{}x{}", s.h, s.w, s.c)
}

/// `input = [h, w, c]`.
fn input_shape(v: &Value) -> Result<Shape, String> {
    let bad = || {
        format!("input = {v} must be [height, width, channels], three whole numbers of at least 1")
    };
    let a = v.as_array().filter(|a| a.len() == 3).ok_or_else(bad)?;
    let d: Vec<usize> = a
        .iter()
        .map(|x| top_int(x, "input").map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let s = Shape::new(d[0], d[1], d[2]);
    if s.checked_len().is_none_or(|n| n > MAX_FIELD as usize) {
        return Err(format!(
            "input = {v} is too large: more than {MAX_FIELD} values per sample"
        ));
    }
    Ok(s)
}

/// Layer `i` from its table, and the `filters` it states if it is a depthwise layer.
fn layer(t: &Value, i: usize, last: bool) -> Result<(Layer, Option<usize>), String> {
    let Some(table) = t.as_table() else {
        return Err(format!("layer {i}: not a table"));
    };
    let kind = match table.get("kind") {
        Some(Value::String(s)) => s.as_str(),
        Some(v) => return Err(format!("layer {i}: kind = {v} must be a string")),
        None => return Err(format!("layer {i}: no `kind` (one of {})", kind_names())),
    };
    let Some(k) = KINDS.iter().find(|k| k.name == kind) else {
        return Err(format!(
            "layer {i}: unknown layer kind `{kind}` (known: {})",
            kind_names()
        ));
    };
    let at = |m: String| format!("layer {i} ({kind}): {m}");
    if let Some(key) = table
        .keys()
        .find(|key| key.as_str() != "kind" && !k.keys.contains(&key.as_str()))
    {
        return Err(at(if k.keys.is_empty() {
            format!("unknown key `{key}` ({kind} has no keys besides `kind`)")
        } else {
            format!("unknown key `{key}` (known: {})", k.keys.join(", "))
        }));
    }
    let keys = Keys { table };
    let l = (k.build)(&keys, last).map_err(at)?;
    let filters = match l {
        Layer::DepthwiseConv2d(_) if table.contains_key("filters") => {
            Some(keys.int("filters", None).map_err(at)?)
        }
        _ => None,
    };
    Ok((l, filters))
}

fn kind_names() -> String {
    KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

/// The core's checks of `arch` and the size limits of this build and of the weights
/// file, as errors naming `file` and the layer.
pub fn check(arch: &Arch<'_>, file: &str) -> Result<()> {
    if arch.layers.len() > MAX_LAYERS {
        bail!(
            "{file}: {} layers, more than the weights file's {MAX_LAYERS}",
            arch.layers.len()
        );
    }
    if let Err(e) = arch.validate() {
        return Err(match e {
            microconv::Error::Shape { layer, reason } if layer < arch.layers.len() => {
                let input = match layer {
                    0 => Some(arch.input),
                    _ => arch.layer_io(layer - 1).ok().map(|(_, o)| o),
                };
                let reaches = input
                    .map(|s| format!(" (its input is {})", fmt_shape(s)))
                    .unwrap_or_default();
                anyhow!(
                    "{file}: layer {layer} ({}){reaches}: {reason}",
                    arch.layers[layer].name()
                )
            }
            e => anyhow!("{file}: {e}"),
        });
    }
    if let Some(i) = (0..arch.layers.len()).find(|&i| {
        matches!(arch.layers[i], Layer::BatchNorm(_))
            && !crate::fold::foldable_into(i.checked_sub(1).map(|j| &arch.layers[j]))
    }) {
        bail!(
            "{file}: layer {i} (batchnorm) follows {}: it must come directly after a conv2d, depthwise or dense layer, into which export folds it",
            i.checked_sub(1).map_or("the input", |j| arch.layers[j].name())
        );
    }
    let params = arch.param_count();
    if params > MAX_PARAMS {
        let big = (0..arch.layers.len())
            .max_by_key(|&i| arch.param_range(i).map_or(0, |r| r.len()))
            .unwrap_or(0);
        bail!(
            "{file}: {params} parameters, more than this build's {} (layer {big} ({}) has the most)",
            MAX_PARAMS,
            arch.layers[big].name()
        );
    }
    if microconv::weights::float::file_len(arch) == 0 {
        bail!("{file}: too large for the weights file format");
    }
    Ok(())
}

/// The canonical description of `arch` named `name`: every key explicit, in [`KINDS`]'
/// order, input and classes stated. [`Description::parse`] reads it back to `arch`.
pub fn canonical(name: &str, arch: &Arch<'_>) -> String {
    let s = arch.input;
    let mut t = format!(
        "name = \"{name}\"\ninput = [{}, {}, {}]\nclasses = {}\n",
        s.h,
        s.w,
        s.c,
        arch.classes()
    );
    for l in arch.layers {
        t.push_str(&format!("\n[[layer]]\nkind = \"{}\"\n", l.name()));
        if let Some(k) = kind_of(l) {
            t.push_str(&(k.write)(l));
        }
    }
    t
}

/// A network from a canonical text (as stored in a parameter file or checkpoint);
/// `what` names the file it came from.
pub fn from_text(text: &str, what: &str) -> Result<Network> {
    let d = Description::parse(text, &format!("{what}: stored description"), "custom")?;
    let n = d.resolve(None)?;
    if n.text != text {
        bail!("{what}: the stored network description is not in canonical form");
    }
    Ok(n)
}

/// The network an architecture read from a weights file is (named `name`).
pub fn from_arch(name: &str, arch: &Arch<'_>, what: &str) -> Result<Network> {
    from_text(&canonical(name, arch), what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use microconv::archs::{SEED, SMALL};

    #[test]
    fn canonical_text_round_trips_the_shipped_networks() {
        const MOBILE: &[Layer] = &[
            Layer::DepthwiseConv2d(DepthwiseConv2d::new(3, 2, Padding::Valid, 2)),
            Layer::Relu6,
            Layer::AvgPool(AvgPool::new(2, 1, Padding::Same)),
            Layer::Conv2d(Conv2d::with(1, 1, Padding::Same, 5)),
            Layer::BatchNorm(BatchNorm::new(0.9, 1e-5)),
            Layer::GlobalAvgPool,
            Layer::Dense(Dense::new(4)),
        ];
        let mobile = Arch::new(Shape::new(12, 10, 3), MOBILE);
        for (name, arch) in [("small", SMALL), ("seed", SEED), ("mobile", mobile)] {
            let n = from_text(&canonical(name, &arch), "t").unwrap();
            assert_eq!(n.arch, arch, "{name}");
            assert_eq!(n.name, name);
        }
    }

    #[test]
    fn every_kind_of_the_core_is_in_the_table() {
        for l in [
            Layer::Conv2d(Conv2d::new(3, 4)),
            Layer::MaxPool(MaxPool::new(2, 2, Padding::Valid)),
            Layer::Dense(Dense::new(3)),
            Layer::Relu,
            Layer::Dropout(Dropout::new(0.3)),
            Layer::Flatten,
            Layer::DepthwiseConv2d(DepthwiseConv2d::new(3, 2, Padding::Valid, 2)),
            Layer::AvgPool(AvgPool::new(3, 2, Padding::Same)),
            Layer::GlobalAvgPool,
            Layer::Relu6,
            Layer::BatchNorm(BatchNorm::new(0.9, 1e-5)),
        ] {
            assert!(kind_of(&l).is_some(), "{}", l.name());
        }
    }
}
