//! The classifier of the model embedded at build time, float or int8, from storage the
//! board binary declares `static` (sized by the core's `const fn`s; the pair of buffers
//! the model does not use is empty).

use microconv::format::{FormatError, Model};
use microconv::qformat::QModel;
use microconv::Arch;

use crate::app::Classifier;

/// Static storage for [`classifier`].
pub struct Storage {
    /// Float inference buffer ([`Arch::inference_len`]`(1)`, or empty for int8).
    pub f32_buf: &'static mut [f32],
    /// Float input image (784, or empty for int8).
    pub f32_input: &'static mut [f32],
    /// Int8 inference buffer ([`Arch::inference_len`]`(1)` bytes, or empty for float).
    pub i8_buf: &'static mut [i8],
    /// Int8 input image (784, or empty for float).
    pub i8_input: &'static mut [i8],
    /// Where the parsed int8 model lives.
    pub qmodel: &'static mut Option<QModel<'static>>,
}

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

/// Parses the embedded weights file (`bytes`, 16-byte aligned in flash), checks it
/// against the compiled `arch` and builds its classifier. Inlined so that a build for
/// one precision does not carry the other's file reader.
#[inline(always)]
pub fn classifier(
    bytes: &'static [u8],
    arch: Arch<'static>,
    int8: bool,
    s: Storage,
) -> Result<Classifier<'static>, EmbeddedError> {
    if int8 {
        let m = s
            .qmodel
            .insert(QModel::parse(bytes).map_err(EmbeddedError::Format)?);
        if m.arch() != arch {
            return Err(EmbeddedError::ArchMismatch);
        }
        Classifier::new_int8(m.net(), s.i8_buf, s.i8_input).map_err(EmbeddedError::Classifier)
    } else {
        let m = Model::parse(bytes).map_err(EmbeddedError::Format)?;
        if m.arch() != arch {
            return Err(EmbeddedError::ArchMismatch);
        }
        Classifier::new(arch, m.params(), s.f32_buf, s.f32_input).map_err(EmbeddedError::Classifier)
    }
}
