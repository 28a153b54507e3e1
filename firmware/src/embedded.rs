//! The model embedded at build time as the runner of its precision ([`float`] or
//! [`int8`]), from what microconv-build generated for it (`$OUT_DIR/model.rs`): its
//! parameters as typed statics (the weights file was parsed and its CRC-32 checked at
//! build time, so the device parses nothing), its inference function with the plan
//! worked out by the compiler, and storage the board binary declares `static` (sized
//! by the core's `const fn`s). A binary calls the one its model needs, so it links that
//! precision's kernels only, and of those only its layers'.

use microconv::quant::QNet;
use microconv::Arch;

use crate::run::{CompiledF32, CompiledI8, FloatClassifier, InferF32Fn, InferI8Fn, Int8Classifier};

/// Why the embedded model cannot run.
#[derive(Debug)]
pub enum EmbeddedError {
    /// The buffers or the model do not fit the classifier.
    Classifier(microconv::Error),
}

/// The embedded float model's classifier: `arch` and `params` (`ARCH`, `PARAMS`), run
/// by `infer` (`infer_f32`, with `PARAM_COUNT` and `CLASSES`) in `arena`
/// ([`Arch::planned_len`]`(1)`).
#[inline(always)]
pub fn float(
    arch: Arch<'static>,
    params: &'static [f32],
    arena: &'static mut [f32],
    infer: InferF32Fn,
    sizes: Sizes,
) -> Result<FloatClassifier<'static, CompiledF32>, EmbeddedError> {
    let c = CompiledF32 {
        infer,
        param_count: sizes.params,
        classes: sizes.classes,
    };
    Ok(FloatClassifier::compiled(arch, params, arena, c))
}

/// The sizes the compiled runners answer PING with: the model's parameters and classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    /// `PARAM_COUNT`.
    pub params: usize,
    /// `CLASSES`.
    pub classes: usize,
}

/// The embedded int8 model's classifier: `net` (`QNET`), run by `infer` (`infer_i8`) in
/// `arena` ([`Arch::planned_len`]`(1)` bytes) with `scratch` (`I8_SCRATCH_LEN` words).
#[inline(always)]
pub fn int8(
    net: &'static QNet<'static>,
    arena: &'static mut [i8],
    scratch: &'static mut [u32],
    infer: InferI8Fn,
    sizes: Sizes,
) -> Result<Int8Classifier<'static, CompiledI8<'static>>, EmbeddedError> {
    let c = CompiledI8 {
        infer,
        scratch,
        param_count: sizes.params,
        classes: sizes.classes,
    };
    Int8Classifier::compiled(*net, arena, c).map_err(EmbeddedError::Classifier)
}
