//! The one error type of the core: small, `Copy`, and printable without `alloc`.

use core::fmt;

/// Everything that can go wrong in the core. Each variant says what was wrong and,
/// where it helps, where; nothing in the core panics on bad input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

/// Why a shape is not accepted by a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
