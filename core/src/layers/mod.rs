//! The layers, one file each: a layer kind's hyper-parameters, shape and size rules, float
//! forward and backward passes, int8 forward pass, its record in the weights file and its
//! tests. The float passes work over flat `f32` slices:
//!
//! - `forward(x) -> y`, and
//! - `backward(x, y, dy) -> dx` (plus `dw`, `db` for layers with parameters, which are
//!   **accumulated** with `+=` so that gradients of several batches can be summed;
//!   `dx` is overwritten).
//!
//! Data is NHWC (`[n, h, w, c]`, channels fastest); conv weights are HWIO
//! (`[kh, kw, c_in, c_out]`) and dense weights `[in, out]`, as in TensorFlow and CMSIS-NN,
//! so parameters can be compared with TensorFlow's directly. The int8 passes store weights
//! output channel first (see [`crate::quant`]).
//!
//! This file is the one place that dispatches over [`Layer`] (`impl Layer` below): a new
//! layer kind is its own file plus one variant and one arm in each of those `match`es
//! (the recipe is in `docs/ARCHITECTURE.md`).

use core::fmt;

use crate::error::{Error, ShapeError};
use crate::gemm::{Gemm, PortableGemm};
use crate::quant::QLayer;
use crate::shape::{Padding, Shape};

pub mod avgpool;
pub mod batchnorm;
pub mod conv2d;
pub mod dense;
pub mod depthwise;
pub mod dropout;
pub mod flatten;
pub mod global_avgpool;
pub mod maxpool;
pub mod relu;
pub mod relu6;

pub use avgpool::AvgPool;
pub use batchnorm::BatchNorm;
pub use conv2d::{Conv2d, ConvAlgo, ConvKernels};
pub use dense::Dense;
pub use depthwise::DepthwiseConv2d;
pub use dropout::Dropout;
pub use maxpool::MaxPool;

/// One layer of a network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Layer {
    /// 2-D convolution with bias ([`crate::layers::conv2d`]).
    Conv2d(Conv2d),
    /// Max-pooling ([`crate::layers::maxpool`]).
    MaxPool(MaxPool),
    /// Fully connected layer with bias ([`crate::layers::dense`]).
    Dense(Dense),
    /// ReLU ([`crate::layers::relu`]).
    Relu,
    /// Inverted dropout, identity outside training ([`crate::layers::dropout`]).
    Dropout(Dropout),
    /// `[h, w, c] -> [h*w*c]` ([`crate::layers::flatten`]).
    Flatten,
    /// Depthwise 2-D convolution with bias ([`crate::layers::depthwise`]).
    DepthwiseConv2d(DepthwiseConv2d),
    /// Average pooling ([`crate::layers::avgpool`]).
    AvgPool(AvgPool),
    /// `[h, w, c] -> [c]`, the mean of each channel ([`crate::layers::global_avgpool`]).
    GlobalAvgPool,
    /// `min(max(x, 0), 6)` ([`crate::layers::relu6`]).
    Relu6,
    /// Batch normalization, folded away before inference ([`crate::layers::batchnorm`]).
    BatchNorm(BatchNorm),
}

/// A layer's record in the weights file (`docs/weights-format.md`): its kind code and
/// three hyper-parameters whose meaning is the kind's (each layer's file says which).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// The kind code (`KIND` in each layer's file: conv2d 1, maxpool 2, dense 3, relu 4,
    /// dropout 5, flatten 6, depthwise conv2d 7,
    /// average pool 8, global average pool 9, ReLU6 10, batch normalization 11).
    pub kind: u8,
    /// The padding code ([`Padding::code`]), 0 for kinds without padding.
    pub padding: u8,
    /// First hyper-parameter.
    pub a: u32,
    /// Second hyper-parameter.
    pub b: u32,
    /// Third hyper-parameter.
    pub c: u32,
}

impl Record {
    /// A record of `kind` with every field zero.
    pub(crate) const fn of(kind: u8) -> Record {
        Record {
            kind,
            padding: 0,
            a: 0,
            b: 0,
            c: 0,
        }
    }

    /// The padding the record names.
    pub(crate) fn padding(&self) -> Result<Padding, &'static str> {
        Padding::from_code(self.padding).ok_or("unknown padding code")
    }

    /// `Ok` if every field in `fields` is zero (the fields a kind does not use).
    pub(crate) fn unused_zero(fields: &[u32]) -> Result<(), &'static str> {
        if fields.iter().all(|&v| v == 0) {
            Ok(())
        } else {
            Err("unused fields are not zero")
        }
    }
}

/// The parameter tensors of a layer that has parameters (conv2d, dense), for the
/// initialisers and the weights files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamShapes {
    /// Rank and dimensions of the float weights (HWIO or `[in, out]`; unused dimensions 0).
    pub weights: (u8, [usize; 4]),
    /// Rank and dimensions of the int8 weights, output channel first (`[cout, k, k, cin]`
    /// or `[out, in]`).
    pub weights_i8: (u8, [usize; 4]),
    /// Number of biases: the output channels.
    pub bias: usize,
    /// Inputs that reach one output (for He/Glorot).
    pub fan_in: usize,
    /// Outputs one input reaches (for Glorot).
    pub fan_out: usize,
}

/// A run of layers that planned inference ([`crate::plan`]) computes as one step, row
/// band by row band: a convolution, optionally a ReLU, then a max-pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fusion {
    /// The convolution.
    pub conv: Conv2d,
    /// Whether a ReLU follows the convolution.
    pub relu: bool,
    /// The max-pool that ends the run.
    pub pool: MaxPool,
    /// Layers in the run: 2 (conv, pool) or 3 (conv, ReLU, pool).
    pub len: usize,
}

/// How planned inference ([`crate::plan`]) runs the layer(s) starting at an index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// conv2d [+ ReLU] + max-pool, row band by row band: the convolution's whole output
    /// never exists.
    Fused(Fusion),
    /// A layer whose inference output is its input, unchanged (flatten, dropout): it
    /// runs in place, taking no memory and no time.
    Alias,
    /// One layer, from an input buffer into an output buffer.
    Single,
}

/// How the layers compute: which matrix-multiply kernel, which convolution algorithm.
#[derive(Clone, Copy)]
pub struct Exec<'g> {
    /// Matrix multiply used by dense layers and im2col convolutions.
    pub gemm: &'g dyn Gemm,
    /// Convolution algorithm.
    pub conv: ConvAlgo,
    /// Platform convolution kernels tried first (see [`ConvKernels`]); `None` runs
    /// the core's own.
    pub kernels: Option<&'g dyn ConvKernels>,
}

impl Exec<'static> {
    /// The readable reference: [`PortableGemm`] and direct convolution; needs no scratch.
    pub const REFERENCE: Exec<'static> = Exec {
        gemm: &PortableGemm,
        conv: ConvAlgo::Direct,
        kernels: None,
    };
}

/// Training or inference (only dropout cares).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Inference: dropout is the identity.
    Eval,
    /// Training: dropout draws its masks from `seed` (one per step); `first_sample` is
    /// the index of this call's first sample within the whole batch, so that a batch
    /// split across threads draws the same masks as a single pass.
    Train {
        /// Per-step seed.
        seed: u64,
        /// Index of the first sample of this call within the batch.
        first_sample: u64,
    },
}

/// Where a layer runs: its index in the network, its input and output shapes (per
/// sample) and the number of samples. What the dispatch of [`Layer`] passes to a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Site {
    /// Index of the layer in the architecture.
    pub index: usize,
    /// Shape of one input sample.
    pub input: Shape,
    /// Shape of one output sample.
    pub output: Shape,
    /// Number of samples.
    pub n: usize,
}

impl Site {
    /// A shape error of the layer's own, placed at this layer.
    fn at(&self) -> impl Fn(Error) -> Error {
        let i = self.index;
        move |e: Error| match e {
            Error::Shape { reason, .. } => Error::Shape { layer: i, reason },
            e => e,
        }
    }
}

/// The Rust expression that builds a [`Layer`] (from [`Layer::rust_code`]).
pub struct RustCode<'l>(&'l Layer);

impl fmt::Display for RustCode<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Layer::Conv2d(c) => c.write_rust(f),
            Layer::MaxPool(p) => p.write_rust(f),
            Layer::Dense(d) => d.write_rust(f),
            Layer::Relu => f.write_str(relu::RUST),
            Layer::Dropout(d) => d.write_rust(f),
            Layer::Flatten => f.write_str(flatten::RUST),
            Layer::DepthwiseConv2d(d) => d.write_rust(f),
            Layer::AvgPool(p) => p.write_rust(f),
            Layer::GlobalAvgPool => f.write_str(global_avgpool::RUST),
            Layer::Relu6 => f.write_str(relu6::RUST),
            Layer::BatchNorm(b) => b.write_rust(f),
        }
    }
}

impl Layer {
    /// Output shape of this layer for `input`.
    pub const fn output_shape(&self, input: Shape) -> Result<Shape, ShapeError> {
        if input.is_empty() {
            return Err(ShapeError::Zero);
        }
        match self {
            Layer::Conv2d(c) => c.output_shape(input),
            Layer::MaxPool(p) => p.output_shape(input),
            Layer::Dense(d) => d.output_shape(input),
            Layer::Relu | Layer::Relu6 | Layer::Dropout(_) => Ok(input),
            Layer::Flatten => Ok(Shape::flat(input.len())),
            Layer::DepthwiseConv2d(d) => d.output_shape(input),
            Layer::AvgPool(p) => p.output_shape(input),
            Layer::GlobalAvgPool => global_avgpool::output_shape(input),
            Layer::BatchNorm(b) => b.output_shape(input),
        }
    }

    /// Checks the hyper-parameters that do not depend on the input (dropout's keep,
    /// batchnorm's momentum and epsilon).
    pub const fn validate(&self) -> Result<(), Error> {
        match self {
            Layer::Dropout(d) => d.validate(),
            Layer::BatchNorm(b) => b.validate(),
            _ => Ok(()),
        }
    }

    /// Whether this layer has parameters (weights then biases).
    pub const fn has_params(&self) -> bool {
        matches!(
            self,
            Layer::Conv2d(_) | Layer::Dense(_) | Layer::DepthwiseConv2d(_) | Layer::BatchNorm(_)
        )
    }

    /// Number of parameters this layer owns for `input`.
    pub const fn param_len(&self, input: Shape) -> usize {
        match self {
            Layer::Conv2d(c) => c.param_len(input),
            Layer::Dense(d) => d.param_len(input),
            Layer::DepthwiseConv2d(d) => d.param_len(input),
            Layer::BatchNorm(b) => b.param_len(input),
            _ => 0,
        }
    }

    /// Number of weights (the parameters before the biases) for `input`.
    pub const fn weight_len(&self, input: Shape) -> usize {
        match self {
            Layer::Conv2d(c) => c.weight_len(input),
            Layer::Dense(d) => d.weight_len(input),
            Layer::DepthwiseConv2d(d) => d.weight_len(input),
            Layer::BatchNorm(b) => b.weight_len(input),
            _ => 0,
        }
    }

    /// The shapes of this layer's parameter tensors for `input` (`None` without parameters).
    pub const fn param_shapes(&self, input: Shape) -> Option<ParamShapes> {
        match self {
            Layer::Conv2d(c) => Some(c.param_shapes(input)),
            Layer::Dense(d) => Some(d.param_shapes(input)),
            Layer::DepthwiseConv2d(d) => Some(d.param_shapes(input)),
            Layer::BatchNorm(b) => Some(b.param_shapes(input)),
            _ => None,
        }
    }

    /// Elements of im2col scratch this layer needs per image for `input` (0 but for conv2d).
    pub const fn im2col_len(&self, input: Shape) -> usize {
        match self {
            Layer::Conv2d(c) => c.im2col_len(input),
            _ => 0,
        }
    }

    /// Short lower-case name (`"conv2d"`, `"maxpool"`, ...).
    pub const fn name(&self) -> &'static str {
        match self {
            Layer::Conv2d(_) => "conv2d",
            Layer::MaxPool(_) => "maxpool",
            Layer::Dense(_) => "dense",
            Layer::Relu => "relu",
            Layer::Dropout(_) => "dropout",
            Layer::Flatten => "flatten",
            Layer::DepthwiseConv2d(_) => "depthwise",
            Layer::AvgPool(_) => "avgpool",
            Layer::GlobalAvgPool => "global_avgpool",
            Layer::Relu6 => "relu6",
            Layer::BatchNorm(_) => "batchnorm",
        }
    }

    /// This layer's record in the weights file.
    pub fn record(&self) -> Record {
        match self {
            Layer::Conv2d(c) => c.record(),
            Layer::MaxPool(p) => p.record(),
            Layer::Dense(d) => d.record(),
            Layer::Relu => Record::of(relu::KIND),
            Layer::Dropout(d) => d.record(),
            Layer::Flatten => Record::of(flatten::KIND),
            Layer::DepthwiseConv2d(d) => d.record(),
            Layer::AvgPool(p) => p.record(),
            Layer::GlobalAvgPool => Record::of(global_avgpool::KIND),
            Layer::Relu6 => Record::of(relu6::KIND),
            Layer::BatchNorm(b) => b.record(),
        }
    }

    /// The layer a weights-file record describes, or what is wrong with the record.
    pub fn from_record(r: &Record) -> Result<Layer, &'static str> {
        Ok(match r.kind {
            conv2d::KIND => Layer::Conv2d(Conv2d::from_record(r)?),
            maxpool::KIND => Layer::MaxPool(MaxPool::from_record(r)?),
            dense::KIND => Layer::Dense(Dense::from_record(r)?),
            relu::KIND => {
                relu::from_record(r)?;
                Layer::Relu
            }
            dropout::KIND => Layer::Dropout(Dropout::from_record(r)?),
            flatten::KIND => {
                flatten::from_record(r)?;
                Layer::Flatten
            }
            depthwise::KIND => Layer::DepthwiseConv2d(DepthwiseConv2d::from_record(r)?),
            avgpool::KIND => Layer::AvgPool(AvgPool::from_record(r)?),
            global_avgpool::KIND => {
                global_avgpool::from_record(r)?;
                Layer::GlobalAvgPool
            }
            relu6::KIND => {
                relu6::from_record(r)?;
                Layer::Relu6
            }
            batchnorm::KIND => Layer::BatchNorm(BatchNorm::from_record(r)?),
            _ => return Err("unknown layer kind"),
        })
    }

    /// The Rust expression that builds this layer, with paths from the crate root
    /// (`microconv::Layer::Dense(microconv::layers::Dense::new(10))`): what
    /// `microconv-build` writes into a firmware's generated `model.rs`.
    pub fn rust_code(&self) -> RustCode<'_> {
        RustCode(self)
    }

    /// Float forward pass of this layer at `site` (weights `w`, biases `b`). Inlined, so
    /// that a firmware whose layer is known at compile time ([`crate::plan::step_f32`])
    /// links only that kind's kernel.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(crate) fn forward(
        &self,
        site: &Site,
        x: &[f32],
        (w, b): (&[f32], &[f32]),
        y: &mut [f32],
        mode: Mode,
        exec: &Exec<'_>,
        scratch: &mut [f32],
    ) -> Result<(), Error> {
        let at = site.at();
        let (ins, n) = (site.input, site.n);
        match *self {
            Layer::Conv2d(c) => match exec.kernels {
                Some(k) if k.forward(&c, ins, n, x, w, b, y, scratch).map_err(&at)? => Ok(()),
                _ => c.forward(ins, n, x, w, b, y, exec.conv, scratch, exec.gemm),
            },
            Layer::MaxPool(p) => p.forward(ins, n, x, y),
            Layer::Dense(d) => d.forward(ins, n, x, w, b, y, exec.gemm),
            Layer::Relu => relu::forward(x, y),
            Layer::Flatten => flatten::forward(x, y),
            Layer::Dropout(d) => d.forward_pass(mode, site, x, y),
            Layer::DepthwiseConv2d(d) => d.forward(ins, n, x, w, b, y),
            Layer::AvgPool(p) => p.forward(ins, n, x, y),
            Layer::GlobalAvgPool => global_avgpool::forward(ins, n, x, y),
            Layer::Relu6 => relu6::forward(x, y),
            Layer::BatchNorm(bn) => {
                bn.forward(ins, n, x, w, b, y, matches!(mode, Mode::Train { .. }))
            }
        }
        .map_err(at)
    }

    /// Float backward pass of this layer at `site` (weights `w`, biases `b`): accumulates
    /// into `dw`, `db`; writes `dx` if given.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward(
        &self,
        site: &Site,
        (x, y, dy): (&[f32], &[f32], &[f32]),
        (w, b): (&[f32], &[f32]),
        dx: Option<&mut [f32]>,
        (dw, db): (&mut [f32], &mut [f32]),
        mode: Mode,
        exec: &Exec<'_>,
        scratch: &mut [f32],
    ) -> Result<(), Error> {
        let at = site.at();
        let (ins, outs, n) = (site.input, site.output, site.n);
        match (*self, dx) {
            (Layer::Conv2d(c), mut dx) => {
                let done = match exec.kernels {
                    Some(k) => {
                        crate::error::check_len("conv2d output gradient", dy, n * outs.len())?;
                        crate::error::check_len("conv2d input", x, n * ins.len())?;
                        crate::error::check_len("conv2d weight gradient", dw, w.len())?;
                        if let Some(d) = &dx {
                            crate::error::check_len("conv2d input gradient", d, n * ins.len())?;
                        }
                        k.backward(&c, ins, n, x, w, dy, dx.as_deref_mut(), dw, db, scratch)
                            .map_err(&at)?
                    }
                    None => false,
                };
                if done {
                    Ok(())
                } else {
                    c.backward(ins, n, x, w, dy, dx, dw, db, exec.conv, scratch, exec.gemm)
                }
            }
            (Layer::Dense(d), dx) => d.backward(ins, n, x, w, dy, dx, dw, db, exec.gemm),
            (Layer::DepthwiseConv2d(d), dx) => d.backward(ins, n, x, w, dy, dx, dw, db),
            (Layer::BatchNorm(bn), dx) => {
                let train = matches!(mode, Mode::Train { .. });
                bn.backward(ins, n, x, (w, b), dy, dx, (dw, db), train)
            }
            (_, None) => Ok(()),
            (Layer::MaxPool(p), Some(dx)) => p.backward(ins, n, x, dy, dx),
            (Layer::Relu, Some(dx)) => relu::backward(y, dy, dx),
            (Layer::Flatten, Some(dx)) => flatten::backward(dy, dx),
            (Layer::Dropout(d), Some(dx)) => d.backward_pass(mode, site, dy, dx),
            (Layer::AvgPool(p), Some(dx)) => p.backward(ins, n, dy, dx),
            (Layer::GlobalAvgPool, Some(dx)) => global_avgpool::backward(ins, n, dy, dx),
            (Layer::Relu6, Some(dx)) => relu6::backward(y, dy, dx),
        }
        .map_err(at)
    }

    /// Int8 forward pass of this layer at `site`: `l` its int8 record, `z_in` the zero
    /// point of its input. Inlined, as [`Layer::forward`] is.
    #[inline(always)]
    pub(crate) fn forward_i8(
        &self,
        site: &Site,
        l: &QLayer<'_>,
        z_in: i32,
        x: &[i8],
        y: &mut [i8],
    ) -> Result<(), Error> {
        match self {
            Layer::Conv2d(c) => conv2d::int8::forward(c, site, l, z_in, x, y),
            Layer::Dense(d) => d.forward_i8(site, l, z_in, x, y),
            Layer::DepthwiseConv2d(d) => d.forward_i8(site, l, z_in, x, y),
            Layer::AvgPool(p) => p.forward_i8(site, l, x, y),
            Layer::GlobalAvgPool => global_avgpool::forward_i8(site, l, x, y),
            Layer::Relu6 => relu6::forward_i8(site, l, x, y),
            Layer::MaxPool(p) => p.forward_i8(site, x, y),
            Layer::Relu => relu::forward_i8(site, z_in, x, y),
            Layer::Flatten | Layer::Dropout(_) => flatten::forward_i8(site, x, y),
            // Folded into the layer before it by the host before quantization.
            Layer::BatchNorm(_) => Err(Error::BadLayer {
                index: site.index,
                reason: "batchnorm has no int8 pass: fold it into the layer before (host-trainer quantize does)",
            }),
        }
    }

    /// How planned inference runs `layers[i..]`'s first step (see [`Step`]); `Single`
    /// past the end.
    pub const fn step_at(layers: &[Layer], i: usize) -> Step {
        if i >= layers.len() {
            return Step::Single;
        }
        match layers[i] {
            Layer::Flatten | Layer::Dropout(_) => Step::Alias,
            Layer::Conv2d(conv) => {
                let relu = i + 1 < layers.len() && matches!(layers[i + 1], Layer::Relu);
                let p = i + 1 + relu as usize;
                match if p < layers.len() {
                    Some(layers[p])
                } else {
                    None
                } {
                    Some(Layer::MaxPool(pool)) => Step::Fused(Fusion {
                        conv,
                        relu,
                        pool,
                        len: 2 + relu as usize,
                    }),
                    _ => Step::Single,
                }
            }
            _ => Step::Single,
        }
    }

    /// Whether the int8 pass of this layer changes no value, so that int8 inference can
    /// leave the previous output where it is: copies (flatten, dropout), and a ReLU after
    /// a layer whose clamp already did it (`prev_clamped`: the previous layer's `act_min`
    /// is at least its zero point).
    pub(crate) const fn int8_identity(&self, prev_clamped: bool) -> bool {
        match self {
            Layer::Flatten | Layer::Dropout(_) => true,
            Layer::Relu => prev_clamped,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    const EVERY_KIND: [Layer; 11] = [
        Layer::Conv2d(Conv2d::with(5, 2, Padding::Valid, 8)),
        Layer::MaxPool(MaxPool::new(2, 2, Padding::Same)),
        Layer::Dense(Dense::new(10)),
        Layer::Relu,
        Layer::Dropout(Dropout::new(0.75)),
        Layer::Flatten,
        Layer::DepthwiseConv2d(DepthwiseConv2d::new(3, 2, Padding::Valid, 2)),
        Layer::AvgPool(AvgPool::new(3, 2, Padding::Same)),
        Layer::GlobalAvgPool,
        Layer::Relu6,
        Layer::BatchNorm(BatchNorm::new(0.99, 1e-3)),
    ];

    #[test]
    fn records_round_trip_and_bad_ones_say_why() {
        for l in EVERY_KIND {
            assert_eq!(Layer::from_record(&l.record()), Ok(l), "{}", l.name());
        }
        let bad = |r: Record| Layer::from_record(&r).unwrap_err();
        assert_eq!(bad(Record::of(0)), "unknown layer kind");
        assert_eq!(
            bad(Record {
                c: 1,
                ..Record::of(relu::KIND)
            }),
            "unused fields are not zero"
        );
        let conv = EVERY_KIND[0].record();
        assert_eq!(bad(Record { padding: 2, ..conv }), "unknown padding code");
    }

    #[test]
    fn rust_code_is_the_constructor() {
        let code: std::vec::Vec<_> = EVERY_KIND
            .iter()
            .map(|l| l.rust_code().to_string())
            .collect();
        assert_eq!(
            code,
            [
                "microconv::Layer::Conv2d(microconv::layers::Conv2d::with(5, 2, microconv::Padding::Valid, 8))",
                "microconv::Layer::MaxPool(microconv::layers::MaxPool::new(2, 2, microconv::Padding::Same))",
                "microconv::Layer::Dense(microconv::layers::Dense::new(10))",
                "microconv::Layer::Relu",
                "microconv::Layer::Dropout(microconv::layers::Dropout::new(f32::from_bits(0x3f400000)))",
                "microconv::Layer::Flatten",
                "microconv::Layer::DepthwiseConv2d(microconv::layers::DepthwiseConv2d::new(3, 2, microconv::Padding::Valid, 2))",
                "microconv::Layer::AvgPool(microconv::layers::AvgPool::new(3, 2, microconv::Padding::Same))",
                "microconv::Layer::GlobalAvgPool",
                "microconv::Layer::Relu6",
                "microconv::Layer::BatchNorm(microconv::layers::BatchNorm::new(f32::from_bits(0x3f7d70a4), f32::from_bits(0x3a83126f)))",
            ]
        );
    }
}
