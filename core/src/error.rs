//! The one error type of the core: small, `Copy`, and printable without `alloc`. It
//! covers computation (buffers, shapes, labels, logits, hyper-parameters) and weights
//! files (the variants from [`Error::TooShort`] on); [`ShapeError`] is the reason of a
//! [`Error::Shape`].

use core::fmt;

/// Everything that can go wrong in the core. Each variant says what was wrong and,
/// where it helps, where; nothing in the core panics on bad input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// A caller-provided buffer has the wrong length.
    BufferLen {
        /// Which buffer (for example `"params"` or `"conv2d weights"`).
        buffer: &'static str,
        /// The length the operation needs.
        expected: usize,
        /// The length that was given.
        actual: usize,
    },
    /// A layer cannot take the shape that reaches it.
    Shape {
        /// Index of the layer in the architecture (`usize::MAX` when not in a network).
        layer: usize,
        /// What is wrong, in a few words.
        reason: ShapeError,
    },
    /// A batch of zero samples was given where at least one is needed.
    EmptyBatch,
    /// A label is not a valid class index.
    LabelOutOfRange {
        /// Sample index in the batch.
        sample: usize,
        /// The label found.
        label: usize,
        /// Number of classes.
        classes: usize,
    },
    /// A logit is NaN or +infinity, or all logits of a sample are -infinity, so the
    /// loss is undefined (see [`crate::loss`] for the rules).
    NonFiniteLogits {
        /// Sample index in the batch.
        sample: usize,
    },
    /// A hyper-parameter is out of its valid range (for example dropout keep not in (0, 1]).
    InvalidParameter {
        /// Which parameter.
        name: &'static str,
    },
    // Weights files (crate::weights).
    /// Fewer bytes than the smallest possible file.
    TooShort {
        /// Bytes given.
        len: usize,
    },
    /// The first 8 bytes are not [`crate::weights::MAGIC`].
    BadMagic,
    /// A version this build does not read.
    UnsupportedVersion {
        /// Version in the file.
        found: u32,
        /// The version the parser that was called reads (for [`crate::weights::Precision::of`],
        /// the newest this build reads).
        supported: u32,
    },
    /// The length in the header differs from the bytes given (truncated or padded file).
    LengthMismatch {
        /// Length the header states.
        header: usize,
        /// Bytes given.
        actual: usize,
    },
    /// The CRC-32 does not match: the file is corrupt.
    ChecksumMismatch {
        /// CRC stored in the file.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// More layers than a weights file may hold ([`crate::weights::MAX_LAYERS`]).
    TooManyLayers {
        /// Layers in the file.
        count: usize,
        /// Most layers a file may hold.
        max: usize,
    },
    /// A layer record is not valid.
    BadLayer {
        /// Layer index.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The tensor table does not have one weights and one bias tensor per conv/dense layer.
    TensorCount {
        /// Tensors the architecture needs.
        expected: usize,
        /// Tensors in the file.
        found: usize,
    },
    /// A tensor record disagrees with the architecture.
    BadTensor {
        /// Tensor index.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The bytes do not start at a 4-byte aligned address, so the parameters cannot be
    /// read in place.
    Misaligned,
    /// This build runs on a big-endian target; the file is little-endian.
    BigEndianTarget,
    /// The output buffer of [`crate::weights::float::write`] is too small.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        actual: usize,
    },
    /// The file holds an int8 model (version 2) where a float one was expected, or the
    /// other way round.
    WrongPrecision {
        /// Version in the file: 1 float, 2 int8.
        found: u32,
    },
    /// [`crate::weights::float::write`] got a parameter slice of the wrong length.
    ParamCount {
        /// Parameters the architecture has.
        expected: usize,
        /// Parameters given.
        actual: usize,
    },
}

/// Why a shape is not accepted by a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ShapeError {
    /// A dimension, kernel, stride or unit count is zero.
    Zero,
    /// A VALID-padded window is larger than its input.
    WindowLargerThanInput,
    /// A dense layer needs a flat input: put a `Flatten` before it.
    NeedsFlatInput,
    /// A size computation would overflow `usize`.
    Overflow,
    /// The network's last layer must produce a flat vector of class scores.
    OutputNotFlat,
    /// A network needs at least one layer.
    NoLayers,
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShapeError::Zero => "a dimension, kernel size, stride or unit count is zero",
            ShapeError::WindowLargerThanInput => {
                "the window is larger than its input with VALID padding (use SAME or a smaller kernel)"
            }
            ShapeError::NeedsFlatInput => "dense layer needs a flat input: add a Flatten layer before it",
            ShapeError::Overflow => "a buffer size overflows usize",
            ShapeError::OutputNotFlat => "the last layer must output a flat vector of class scores",
            ShapeError::NoLayers => "the architecture has no layers",
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::BufferLen { buffer, expected, actual } => write!(
                f,
                "buffer `{buffer}` has {actual} elements but {expected} are needed (size it with the Arch's const fns)"
            ),
            Error::Shape { layer, reason } if layer == usize::MAX => write!(f, "bad shape: {reason}"),
            Error::Shape { layer, reason } => write!(f, "bad shape at layer {layer}: {reason}"),
            Error::EmptyBatch => f.write_str("empty batch: at least one sample is needed"),
            Error::LabelOutOfRange { sample, label, classes } => write!(
                f,
                "label {label} of sample {sample} is out of range: there are {classes} classes (0..={})",
                classes.saturating_sub(1)
            ),
            Error::NonFiniteLogits { sample } => write!(
                f,
                "logits of sample {sample} are NaN, +inf or all -inf: the loss is undefined (diverged training?)"
            ),
            Error::InvalidParameter { name } => write!(f, "invalid value for parameter `{name}`"),
            Error::TooShort { len } => write!(f, "only {len} bytes: too short for a microconv weights file"),
            Error::BadMagic => f.write_str("not a microconv weights file (bad magic; expected \"MCONVNET\")"),
            Error::UnsupportedVersion { found, .. } => {
                write!(f, "weights file version {found}, this build reads versions 1 (float) and 2 (int8) (re-export it with this host-trainer)")
            }
            Error::LengthMismatch { header, actual } => {
                write!(f, "header says {header} bytes but there are {actual} (truncated or padded file)")
            }
            Error::ChecksumMismatch { stored, computed } => {
                write!(f, "checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the file is corrupt")
            }
            Error::TooManyLayers { count, max } => write!(f, "{count} layers, at most {max} are supported"),
            Error::BadLayer { index, reason } => write!(f, "layer {index}: {reason}"),
            Error::TensorCount { expected, found } => write!(f, "{found} tensors, the architecture needs {expected}"),
            Error::BadTensor { index, reason } => write!(f, "tensor {index}: {reason}"),
            Error::Misaligned => {
                f.write_str("the weights are not 4-byte aligned in memory (embed them in microconv::weights::Aligned)")
            }
            Error::BigEndianTarget => f.write_str("weights files are little-endian and this target is big-endian"),
            Error::BufferTooSmall { needed, actual } => write!(f, "output buffer of {actual} bytes, {needed} needed"),
            Error::ParamCount { expected, actual } => write!(f, "{actual} parameters given, the architecture has {expected}"),
            Error::WrongPrecision { found: 2 } => f.write_str("this is an int8 weights file (version 2) and a float one (version 1) was expected: use the float file, or the int8 reader and firmware"),
            Error::WrongPrecision { found } => write!(f, "weights file version {found} is a float file and an int8 one (version 2) was expected: export it with `host-trainer quantize --out`"),
        }
    }
}

impl Error {
    /// `Ok` if `actual == expected`, else [`Error::BufferLen`] naming `buffer`.
    pub const fn expect_len(
        buffer: &'static str,
        expected: usize,
        actual: usize,
    ) -> Result<(), Error> {
        if actual == expected {
            Ok(())
        } else {
            Err(Error::BufferLen {
                buffer,
                expected,
                actual,
            })
        }
    }
}

/// Checks that `buf` has exactly `expected` elements.
pub(crate) fn check_len<T>(buffer: &'static str, buf: &[T], expected: usize) -> Result<(), Error> {
    Error::expect_len(buffer, expected, buf.len())
}

impl core::error::Error for Error {}
