//! Shapes (NHWC without the N) and the padding arithmetic shared by conv2d and max-pool.

use crate::error::ShapeError;

/// The shape of one sample: height, width, channels. A batch of `n` samples is laid
/// out NHWC: `[n, h, w, c]`, channels fastest. A flat vector of `k` values is `(1, 1, k)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Height (rows).
    pub h: usize,
    /// Width (columns).
    pub w: usize,
    /// Channels.
    pub c: usize,
}

impl Shape {
    /// A shape of `h` rows, `w` columns and `c` channels.
    pub const fn new(h: usize, w: usize, c: usize) -> Self {
        Shape { h, w, c }
    }

    /// A flat vector of `len` values: `(1, 1, len)`.
    pub const fn flat(len: usize) -> Self {
        Shape { h: 1, w: 1, c: len }
    }

    /// Number of values in one sample (`h * w * c`), or `None` on overflow.
    pub const fn checked_len(&self) -> Option<usize> {
        match self.h.checked_mul(self.w) {
            Some(hw) => hw.checked_mul(self.c),
            None => None,
        }
    }

    /// Number of values in one sample, `h * w * c` (saturating at `usize::MAX`).
    pub const fn len(&self) -> usize {
        match self.checked_len() {
            Some(n) => n,
            None => usize::MAX,
        }
    }

    /// True if any dimension is zero.
    pub const fn is_empty(&self) -> bool {
        self.h == 0 || self.w == 0 || self.c == 0
    }

    /// True for a flat vector `(1, 1, c)`.
    pub const fn is_flat(&self) -> bool {
        self.h == 1 && self.w == 1
    }
}

/// How a window (convolution kernel or pooling window) treats the borders, with
/// TensorFlow's definitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Output size `ceil(in / stride)`; the input is padded (zeros for conv2d, ignored
    /// positions for max-pool) with `total = max((out - 1) * stride + k - in, 0)`,
    /// `total / 2` before and the rest after.
    Same,
    /// No padding: output size `floor((in - k) / stride) + 1`; requires `k <= in`.
    Valid,
}

impl Padding {
    /// The padding's code in the weights file: 0 SAME, 1 VALID.
    pub const fn code(self) -> u8 {
        match self {
            Padding::Same => 0,
            Padding::Valid => 1,
        }
    }

    /// The padding of a weights-file code, if it is one.
    pub const fn from_code(code: u8) -> Option<Padding> {
        match code {
            0 => Some(Padding::Same),
            1 => Some(Padding::Valid),
            _ => None,
        }
    }

    /// The Rust path of this padding from the crate root (for generated code).
    pub const fn rust_path(self) -> &'static str {
        match self {
            Padding::Same => "microconv::Padding::Same",
            Padding::Valid => "microconv::Padding::Valid",
        }
    }
}

/// Output length and padding-before along one axis for a window of size `k`.
///
/// Returns `(out, pad_before)`.
pub const fn window_axis(
    input: usize,
    k: usize,
    stride: usize,
    padding: Padding,
) -> Result<(usize, usize), ShapeError> {
    if input == 0 || k == 0 || stride == 0 {
        return Err(ShapeError::Zero);
    }
    match padding {
        Padding::Same => {
            let out = input.div_ceil(stride);
            // (out - 1) * stride + k cannot overflow by more than k: out*stride < input + stride.
            let span = match (out - 1).checked_mul(stride) {
                Some(s) => match s.checked_add(k) {
                    Some(s) => s,
                    None => return Err(ShapeError::Overflow),
                },
                None => return Err(ShapeError::Overflow),
            };
            let total = span.saturating_sub(input);
            Ok((out, total / 2))
        }
        Padding::Valid => {
            if k > input {
                return Err(ShapeError::WindowLargerThanInput);
            }
            Ok(((input - k) / stride + 1, 0))
        }
    }
}

/// Output shape of a `k x k` window with `stride` over `input`, keeping `channels`.
pub const fn window_output(
    input: Shape,
    k: usize,
    stride: usize,
    padding: Padding,
    channels: usize,
) -> Result<Shape, ShapeError> {
    if input.is_empty() || channels == 0 {
        return Err(ShapeError::Zero);
    }
    let h = match window_axis(input.h, k, stride, padding) {
        Ok((o, _)) => o,
        Err(e) => return Err(e),
    };
    let w = match window_axis(input.w, k, stride, padding) {
        Ok((o, _)) => o,
        Err(e) => return Err(e),
    };
    let out = Shape::new(h, w, channels);
    match out.checked_len() {
        Some(_) => Ok(out),
        None => Err(ShapeError::Overflow),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_matches_tensorflow() {
        // TF: out = ceil(in/stride); pad_total = max((out-1)*s + k - in, 0); before = total/2.
        assert_eq!(window_axis(28, 5, 1, Padding::Same), Ok((28, 2)));
        assert_eq!(window_axis(28, 2, 2, Padding::Same), Ok((14, 0)));
        assert_eq!(window_axis(7, 3, 2, Padding::Same), Ok((4, 1)));
        assert_eq!(window_axis(4, 3, 2, Padding::Same), Ok((2, 0)));
        assert_eq!(window_axis(7, 2, 2, Padding::Same), Ok((4, 0)));
    }

    #[test]
    fn valid_and_errors() {
        assert_eq!(window_axis(28, 5, 1, Padding::Valid), Ok((24, 0)));
        assert_eq!(window_axis(7, 2, 2, Padding::Valid), Ok((3, 0)));
        assert_eq!(
            window_axis(3, 5, 1, Padding::Valid),
            Err(ShapeError::WindowLargerThanInput)
        );
        assert_eq!(window_axis(3, 1, 0, Padding::Same), Err(ShapeError::Zero));
        assert_eq!(
            window_axis(usize::MAX, usize::MAX, 1, Padding::Same),
            Err(ShapeError::Overflow)
        );
        assert_eq!(
            window_output(
                Shape::new(usize::MAX, usize::MAX, 1),
                1,
                1,
                Padding::Valid,
                2
            ),
            Err(ShapeError::Overflow)
        );
    }
}
