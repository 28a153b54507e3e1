//! What answers the app's requests: the [`Runner`] trait the app is generic over, one
//! runner per precision ([`float::FloatClassifier`], [`int8::Int8Classifier`]), and
//! [`Classifier`], either of them chosen at run time.
//!
//! Each runner is generic over how it runs its network: [`AnyArch`], the core's planned
//! inference of any architecture (the plan worked out as the pass goes), or the embedded
//! model's inference generated at build time ([`float::CompiledF32`],
//! [`int8::CompiledI8`]), whose plan is constants and which links only its layers'
//! kernels. A board binary builds the compiled runner of its model's precision;
//! [`Classifier`] is for the host (`host-trainer board` replays the board with it, for
//! float and int8 files alike). The runners take their sizes from the model: an image
//! of `arch.input.len()` pixels, `arch.classes()` scores.

pub mod float;
pub mod int8;

use microconv::{Arch, Error};

use crate::protocol::{Configured, ErrorCode, TrainConfig, SCORES};

pub use float::{CompiledF32, FloatClassifier, InferF32, InferF32Fn};
pub use int8::{CompiledI8, InferI8, InferI8Fn, Int8Classifier};

/// Runs any architecture with the core's planned inference, working out the plan as the
/// pass goes (`microconv::plan::infer_planned`, `infer_planned_i8`): what the host uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct AnyArch;

/// What answers the requests: a classifier of either precision, or a
/// [`FineTune`](crate::finetune::FineTune) that also learns. The app is generic over it,
/// so a firmware that only classifies links no training code.
pub trait Runner<'m> {
    /// The layers.
    fn arch(&self) -> &Arch<'m>;
    /// Classifies one image of `arch().input.len()` 8-bit pixels: the class with the
    /// highest score, and the scores as a RESULT frame carries them (the model's
    /// `arch().classes()` first, zeros after; a model with more classes fails).
    fn classify(&mut self, pixels: &[u8]) -> Result<(u8, [f32; SCORES]), Error>;
    /// Parameters of the model (PING's answer): `arch().param_count()`, unless the
    /// runner has it as a constant (the compiled runners: no shape arithmetic linked).
    fn param_count(&self) -> usize {
        self.arch().param_count()
    }
    /// Classes the model scores (PING's answer, the labels' bound): `arch().classes()`, unless the runner
    /// has it as a constant.
    fn classes(&self) -> usize {
        self.arch().classes()
    }
    /// One training step with learning rate `lr`: the loss and the digit predicted
    /// before it; `None` if this model does not learn.
    fn train(&mut self, _pixels: &[u8], _label: u8, _lr: f32) -> Option<Result<(f32, u8), Error>> {
        None
    }
    /// Steps taken and the CRC-32 of the trainable parameters; `None` if it does not learn.
    fn digest(&self) -> Option<(u32, u32)> {
        None
    }
    /// Trains the selection `c` from the weights in flash on: the answer, or why not
    /// (nothing changed then); `None` if this model does not learn.
    fn configure(&mut self, _c: &TrainConfig) -> Option<Result<Configured, ErrorCode>> {
        None
    }
}

/// The start of `scores` that receives `n` scores, or why it cannot.
pub(crate) fn scores_for(scores: &mut [f32], n: usize) -> Result<&mut [f32], Error> {
    let len = scores.len();
    scores.get_mut(..n).ok_or(Error::BufferLen {
        buffer: "scores",
        expected: n,
        actual: len,
    })
}

/// A classifier of either precision, chosen at run time (float or int8 weights file).
pub enum Classifier<'m> {
    /// Float inference.
    Float(FloatClassifier<'m>),
    /// Int8 inference.
    Int8(Int8Classifier<'m>),
}

impl<'m> Classifier<'m> {
    /// A float classifier: see [`FloatClassifier::new`].
    pub fn new(arch: Arch<'m>, params: &'m [f32], arena: &'m mut [f32]) -> Result<Self, Error> {
        FloatClassifier::new(arch, params, arena).map(Classifier::Float)
    }

    /// An int8 classifier: see [`Int8Classifier::new`].
    pub fn new_int8(net: microconv::quant::QNet<'m>, arena: &'m mut [i8]) -> Result<Self, Error> {
        Int8Classifier::new(net, arena).map(Classifier::Int8)
    }

    /// Whether this classifier runs int8.
    pub fn is_int8(&self) -> bool {
        matches!(self, Classifier::Int8(_))
    }

    /// Classifies one image: see [`Runner::classify`].
    pub fn classify(&mut self, pixels: &[u8]) -> Result<(u8, [f32; SCORES]), Error> {
        Runner::classify(self, pixels)
    }
}

impl<'m> Runner<'m> for Classifier<'m> {
    fn arch(&self) -> &Arch<'m> {
        match self {
            Classifier::Float(c) => c.arch(),
            Classifier::Int8(c) => c.arch(),
        }
    }
    fn classify(&mut self, pixels: &[u8]) -> Result<(u8, [f32; SCORES]), Error> {
        match self {
            Classifier::Float(c) => c.classify(pixels),
            Classifier::Int8(c) => c.classify(pixels),
        }
    }
}
