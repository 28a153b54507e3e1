//! A network's architecture: the shape of one input sample and the layer list
//! ([`Arch`]), and every size that follows from them as a `const fn` (parameters, each
//! layer's shapes, every buffer of [`crate::net`]'s passes and of int8 inference). The
//! passes themselves are in [`crate::net`] and [`crate::quant`]; what one layer kind
//! does is in its file under [`crate::layers`].

use core::ops::Range;

use crate::error::{Error, ShapeError};
use crate::layers::Layer;
use crate::shape::Shape;

/// A network architecture: the shape of one input sample and the layer list. Build it
/// in a `const` and size every buffer with its `const fn`s:
///
/// ```
/// use microconv::archs::SMALL;
/// static mut PARAMS: [f32; SMALL.param_count()] = [0.0; SMALL.param_count()];
/// const _: () = assert!(SMALL.is_valid());
/// assert_eq!(SMALL.classes(), 10);
/// ```
///
/// The size functions never panic: for an invalid architecture (see [`Arch::validate`])
/// they return 0, and every runtime entry point reports the error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Arch<'a> {
    /// Shape of one input sample.
    pub input: Shape,
    /// The layers, first to last. The last must output a flat vector of class scores.
    pub layers: &'a [Layer],
}

const fn shape_err(layer: usize, reason: ShapeError) -> Error {
    Error::Shape { layer, reason }
}

impl<'a> Arch<'a> {
    /// An architecture taking samples of shape `input` through `layers`.
    pub const fn new(input: Shape, layers: &'a [Layer]) -> Self {
        Arch { input, layers }
    }

    /// Input and output shapes of layer `i`.
    pub const fn layer_io(&self, i: usize) -> Result<(Shape, Shape), Error> {
        if i >= self.layers.len() {
            return Err(shape_err(i, ShapeError::NoLayers));
        }
        if self.input.is_empty() {
            return Err(shape_err(0, ShapeError::Zero));
        }
        if self.input.checked_len().is_none() {
            return Err(shape_err(0, ShapeError::Overflow));
        }
        let mut s = self.input;
        let mut j = 0;
        loop {
            let out = match self.layers[j].output_shape(s) {
                Ok(o) => o,
                Err(e) => return Err(shape_err(j, e)),
            };
            if out.checked_len().is_none() {
                return Err(shape_err(j, ShapeError::Overflow));
            }
            if let Err(e) = self.layers[j].validate() {
                return Err(e);
            }
            if j == i {
                return Ok((s, out));
            }
            s = out;
            j += 1;
        }
    }

    /// Checks the whole architecture: every layer accepts its input, sizes fit in
    /// `usize`, hyper-parameters are in range, and the last layer is flat.
    pub const fn validate(&self) -> Result<(), Error> {
        if self.layers.is_empty() {
            return Err(shape_err(0, ShapeError::NoLayers));
        }
        let last = self.layers.len() - 1;
        let mut total: usize = 0;
        let mut i = 0;
        while i < self.layers.len() {
            let (ins, outs) = match self.layer_io(i) {
                Ok(io) => io,
                Err(e) => return Err(e),
            };
            let p = self.layers[i].param_len(ins);
            total = match total.checked_add(p) {
                Some(t) if p != usize::MAX => t,
                _ => return Err(shape_err(i, ShapeError::Overflow)),
            };
            if i == last && !outs.is_flat() {
                return Err(shape_err(i, ShapeError::OutputNotFlat));
            }
            i += 1;
        }
        Ok(())
    }

    /// `validate().is_ok()`, usable in `const _: () = assert!(ARCH.is_valid());`.
    pub const fn is_valid(&self) -> bool {
        self.validate().is_ok()
    }

    /// Output shape of the whole network (`(1, 1, classes)`).
    pub const fn output(&self) -> Shape {
        if !self.is_valid() {
            return Shape::new(0, 0, 0);
        }
        match self.layer_io(self.layers.len() - 1) {
            Ok((_, o)) => o,
            Err(_) => Shape::new(0, 0, 0),
        }
    }

    /// Number of classes (the last layer's width).
    pub const fn classes(&self) -> usize {
        self.output().c
    }

    /// Offset of layer `i`'s parameters in the parameter buffer (or the total when
    /// `i == layers.len()`).
    pub const fn param_offset(&self, i: usize) -> usize {
        if !self.is_valid() {
            return 0;
        }
        let mut off = 0;
        let mut j = 0;
        while j < i && j < self.layers.len() {
            if let Ok((ins, _)) = self.layer_io(j) {
                off += self.layers[j].param_len(ins);
            }
            j += 1;
        }
        off
    }

    /// Total number of parameters (weights and biases).
    pub const fn param_count(&self) -> usize {
        self.param_offset(self.layers.len())
    }

    /// The range of layer `i`'s parameters (weights then biases) in the parameter buffer.
    pub fn param_range(&self, i: usize) -> Result<Range<usize>, Error> {
        self.validate()?;
        let start = self.param_offset(i);
        Ok(start..self.param_offset(i + 1))
    }

    /// Index of the last layer with parameters, if any.
    pub fn last_param_layer(&self) -> Option<usize> {
        (0..self.layers.len())
            .rev()
            .find(|&i| self.layers[i].has_params())
    }

    /// Largest per-sample length among the input and every layer's output.
    pub const fn max_len(&self) -> usize {
        if !self.is_valid() {
            return 0;
        }
        let mut m = self.input.len();
        let mut i = 0;
        while i < self.layers.len() {
            if let Ok((_, o)) = self.layer_io(i) {
                if o.len() > m {
                    m = o.len();
                }
            }
            i += 1;
        }
        m
    }

    /// Per-sample length of every layer output, summed.
    const fn outputs_len(&self) -> usize {
        if !self.is_valid() {
            return 0;
        }
        let mut s: usize = 0;
        let mut i = 0;
        while i < self.layers.len() {
            if let Ok((_, o)) = self.layer_io(i) {
                s = s.saturating_add(o.len());
            }
            i += 1;
        }
        s
    }

    /// Elements of `Workspace::acts` for a batch of `batch`: every layer's output is
    /// kept for the backward pass.
    pub const fn activations_len(&self, batch: usize) -> usize {
        self.outputs_len().saturating_mul(batch)
    }

    /// Elements of `Workspace::grad` for a batch of `batch`: two ping-pong buffers of
    /// [`Arch::max_len`] per sample, then one row of scratch for the loss.
    pub const fn grad_buffer_len(&self, batch: usize) -> usize {
        self.max_len()
            .saturating_mul(batch)
            .saturating_mul(2)
            .saturating_add(self.classes())
    }

    /// Elements of the buffer [`crate::net::infer`] needs for a batch of `batch`: two ping-pong
    /// buffers (only the live activations, not every layer's).
    pub const fn inference_len(&self, batch: usize) -> usize {
        self.max_len().saturating_mul(batch).saturating_mul(2)
    }

    /// Elements of scratch for [`crate::layers::ConvAlgo::Im2col`] to process `images` images per
    /// matrix product in every conv layer (at least 1 image's worth is required).
    pub const fn im2col_len(&self, images: usize) -> usize {
        if !self.is_valid() {
            return 0;
        }
        let mut m = 0;
        let mut i = 0;
        while i < self.layers.len() {
            if let Ok((ins, _)) = self.layer_io(i) {
                let l = self.layers[i].im2col_len(ins);
                if l > m {
                    m = l;
                }
            }
            i += 1;
        }
        m.saturating_mul(images)
    }

    /// Per-sample length of layer `i`'s output.
    pub(crate) fn out_len(&self, i: usize) -> Result<usize, Error> {
        Ok(self.layer_io(i)?.1.len())
    }
}
