//! The model embedded at build time as the runner of its precision ([`float`] or
//! [`int8`]), from storage the board binary declares `static` (sized by the core's
//! `const fn`s). A binary calls the one its model needs, so it links that precision's
//! file reader and kernels only.

use microconv::format::{FormatError, Model};
use microconv::qformat::QModel;
use microconv::Arch;

use crate::run::{FloatClassifier, Int8Classifier};

/// Why the embedded model cannot run.
#[derive(Debug)]
pub enum EmbeddedError {
    /// The file does not parse.
    Format(FormatError),
    /// The file's architecture differs from the one compiled in.
    ArchMismatch,
    /// The buffers or the model do not fit the classifier.
    Classifier(microconv::Error),
}

/// Parses the embedded float weights file (`bytes`, 16-byte aligned in flash), checks
/// it against the compiled `arch` and builds its classifier over `arena`
/// ([`Arch::planned_len`]`(1)`).
#[inline(always)]
pub fn float(
    bytes: &'static [u8],
    arch: Arch<'static>,
    arena: &'static mut [f32],
) -> Result<FloatClassifier<'static>, EmbeddedError> {
    let m = Model::parse(bytes).map_err(EmbeddedError::Format)?;
    if m.arch() != arch {
        return Err(EmbeddedError::ArchMismatch);
    }
    FloatClassifier::new(arch, m.params(), arena).map_err(EmbeddedError::Classifier)
}

/// Parses the embedded int8 weights file into `model` (where the parsed layer table
/// lives), checks it against the compiled `arch` and builds its classifier over `arena`
/// ([`Arch::planned_len`]`(1)` bytes).
#[inline(always)]
pub fn int8(
    bytes: &'static [u8],
    arch: Arch<'static>,
    model: &'static mut Option<QModel<'static>>,
    arena: &'static mut [i8],
) -> Result<Int8Classifier<'static>, EmbeddedError> {
    let m = model.insert(QModel::parse(bytes).map_err(EmbeddedError::Format)?);
    if m.arch() != arch {
        return Err(EmbeddedError::ArchMismatch);
    }
    Int8Classifier::new(m.net(), arena).map_err(EmbeddedError::Classifier)
}
