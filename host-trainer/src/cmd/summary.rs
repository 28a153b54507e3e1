//! `host-trainer summary`: a network's layers (output shape, parameters, multiply-adds,
//! like Keras' `model.summary()`) and what a firmware needs for it: static RAM for the
//! activation buffers and flash for the weights, float and int8, from the core's own
//! size functions (`Arch::planned_len`, the weights files' `file_len`).

use std::path::PathBuf;

use anyhow::Result;
use microconv::Arch;

use crate::config::ArchArg;

// The command's options (no doc comment: the subcommand's help is its variant's).
#[derive(clap::Args)]
pub struct Args {
    /// Architecture: `small`, `seed`, or a network description file (TOML,
    /// docs/network-description.md)
    #[arg(long, default_value = "small")]
    pub arch: String,
    /// Directory with the IDX files, for a description that leaves the input shape or
    /// the number of classes to the data
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// One layer's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// `conv2d 5x5x8`, ...
    pub layer: String,
    /// Output shape of one sample.
    pub output: microconv::Shape,
    /// Parameters.
    pub params: usize,
    /// Multiply-adds per sample.
    pub macs: usize,
}

/// Everything the summary prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The layers.
    pub rows: Vec<Row>,
    /// Total parameters.
    pub params: usize,
    /// Total multiply-adds per sample.
    pub macs: usize,
    /// Firmware static RAM in bytes for float inference of one sample: the arena of
    /// planned inference, input included (`F32_ARENA_LEN` f32s, `microconv::plan`).
    pub ram_f32: usize,
    /// The same for int8 (`I8_ARENA_LEN` bytes).
    pub ram_i8: usize,
    /// Flash for the float weights file, bytes.
    pub flash_f32: usize,
    /// Flash for the int8 weights file, bytes.
    pub flash_i8: usize,
}

/// A layer's short description.
fn describe(l: &microconv::Layer) -> String {
    use microconv::Layer;
    let pad = |p: microconv::Padding| match p {
        microconv::Padding::Same => "same",
        microconv::Padding::Valid => "valid",
    };
    match l {
        Layer::Conv2d(c) => format!(
            "conv2d {0}x{0}, {1} filters, stride {2}, {3}",
            c.kernel,
            c.filters,
            c.stride,
            pad(c.padding)
        ),
        Layer::MaxPool(p) => format!(
            "maxpool {0}x{0}, stride {1}, {2}",
            p.size,
            p.stride,
            pad(p.padding)
        ),
        Layer::DepthwiseConv2d(d) => format!(
            "depthwise {0}x{0}, x{1}, stride {2}, {3}",
            d.kernel,
            d.multiplier,
            d.stride,
            pad(d.padding)
        ),
        Layer::AvgPool(p) => format!(
            "avgpool {0}x{0}, stride {1}, {2}",
            p.size,
            p.stride,
            pad(p.padding)
        ),
        Layer::Dense(d) => format!("dense {}", d.units),
        Layer::Dropout(d) => format!("dropout keep {}", d.keep),
        Layer::BatchNorm(b) => format!("batchnorm, momentum {} (folded)", b.momentum),
        l => l.name().to_string(),
    }
}

/// The summary of a valid architecture.
pub fn summary(arch: &Arch<'_>) -> Result<Summary> {
    arch.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut rows = Vec::with_capacity(arch.layers.len());
    for (i, l) in arch.layers.iter().enumerate() {
        let (ins, outs) = arch.layer_io(i).map_err(|e| anyhow::anyhow!("{e}"))?;
        rows.push(Row {
            layer: describe(l),
            output: outs,
            params: l.param_len(ins),
            // Every weight is used once per output position; batchnorm is folded into
            // the layer before it at export and costs nothing.
            macs: match l {
                microconv::Layer::BatchNorm(_) => 0,
                l => l.weight_len(ins).saturating_mul(outs.h * outs.w),
            },
        });
    }
    // The firmware's network: batchnorm folded away (the parameters do not matter here).
    let params = arch.param_count();
    let (arch, _) = crate::fold::fold_batchnorm(arch, &vec![0.0; params])?;
    let arch = &arch;
    let arena = arch.planned_len(1);
    Ok(Summary {
        params,
        macs: rows.iter().map(|r| r.macs).sum(),
        rows,
        ram_f32: arena * 4,
        ram_i8: arena,
        flash_f32: microconv::weights::float::file_len(arch),
        flash_i8: microconv::weights::int8::file_len(arch).map_err(|e| anyhow::anyhow!("{e}"))?,
    })
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The printed table.
pub fn table(name: &str, arch: &Arch<'_>, s: &Summary) -> String {
    let i = arch.input;
    let mut t = format!(
        "network `{name}`: input {}x{}x{}, {} classes\n\n{:>3}  {:<42} {:>12} {:>12} {:>14}\n",
        i.h,
        i.w,
        i.c,
        arch.classes(),
        "#",
        "layer",
        "output",
        "params",
        "multiply-adds"
    );
    for (k, r) in s.rows.iter().enumerate() {
        let o = r.output;
        t.push_str(&format!(
            "{k:>3}  {:<42} {:>12} {:>12} {:>14}\n",
            r.layer,
            format!("{}x{}x{}", o.h, o.w, o.c),
            thousands(r.params),
            thousands(r.macs)
        ));
    }
    t.push_str(&format!(
        "     {:<42} {:>12} {:>12} {:>14}\n\n",
        "total",
        "",
        thousands(s.params),
        thousands(s.macs)
    ));
    let kib = |b: usize| b as f64 / 1024.0;
    t.push_str(&format!(
        "firmware, one sample:      float32           int8\n\
         static RAM (activations)  {:>9} B ({:.1} KiB)  {:>9} B ({:.1} KiB)\n\
         weights flash             {:>9} B ({:.1} KiB)  {:>9} B ({:.1} KiB)\n",
        thousands(s.ram_f32),
        kib(s.ram_f32),
        thousands(s.ram_i8),
        kib(s.ram_i8),
        thousands(s.flash_f32),
        kib(s.flash_f32),
        thousands(s.flash_i8),
        kib(s.flash_i8),
    ));
    t.push_str("(RAM: the arena of planned inference `Arch::planned_len(1)`, input included, as microconv-build's F32_ARENA_LEN / I8_ARENA_LEN; flash: the weights file's size)\n");
    t
}

/// Prints the summary.
pub fn run(args: Args) -> Result<()> {
    let arch = ArchArg::parse(&args.arch)?;
    let data = match &args.data {
        Some(dir) => {
            // An image folder is read as `train` reads it: converted to a stated input.
            let input = match &arch {
                ArchArg::Builtin(a) => Some(a.arch().input),
                ArchArg::File(d) => d.input,
            };
            let (tr, te) = crate::folder::load_dir(dir, input)?;
            Some((tr.shape(), crate::data::classes(&tr, &te)))
        }
        None => None,
    };
    let spec = arch.resolve(data)?;
    let arch = spec.arch();
    print!("{}", table(spec.name(), &arch, &summary(&arch)?));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_has_13194_parameters_and_about_a_million_multiply_adds() {
        let s = summary(&microconv::archs::SMALL).unwrap();
        assert_eq!(s.params, 13_194);
        assert_eq!(s.macs, 156_800 + 627_200 + 225_792 + 5_120);
        assert_eq!(s.rows[0].output, microconv::Shape::new(28, 28, 8));
        assert_eq!(s.rows[0].params, 5 * 5 * 8 + 8);
        // The firmware's arena: 784 input + 448 row band + 1,568 pooled values.
        assert_eq!(s.ram_f32, 2_800 * 4);
        assert_eq!(s.ram_i8, 2_800);
        assert!(s.flash_f32 > 4 * 13_194 && s.flash_i8 > 13_194 && s.flash_i8 < s.flash_f32);
        assert_eq!(thousands(1_014_912), "1,014,912");
        assert_eq!(thousands(999), "999");
    }
}
