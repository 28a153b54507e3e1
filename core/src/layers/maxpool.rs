//! Max-pooling with SAME/VALID padding.
//!
//! ```text
//! x  [n, h,  w,  c]
//! y  [n, oh, ow, c]     y[n,oy,ox,c] = max over the window's in-bounds positions of x[n, oy*s+ky-pt, ox*s+kx-pl, c]
//! ```
//! Padding positions are ignored (as TensorFlow does), never treated as zeros. The
//! backward pass sends each `dy` to the **first** maximum of its window in row-major
//! order (TensorFlow and PyTorch do the same); it recomputes that position from `x`
//! instead of storing indices, so training needs no extra buffer.

use core::fmt;

use super::{Record, Site};
use crate::error::{check_len, Error, ShapeError};
use crate::shape::{window_axis, window_output, Padding, Shape};

/// The kind code of max-pooling in the weights file; its record is `(padding, a = size,
/// b = stride)`, `c` 0.
pub const KIND: u8 = 2;

/// Channels whose running maxima are kept on the stack at once.
const CHANNEL_BLOCK: usize = 64;

/// A max-pool layer's configuration: a square `size x size` window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool {
    /// Window height and width.
    pub size: usize,
    /// Stride along both axes.
    pub stride: usize,
    /// Border handling.
    pub padding: Padding,
}

impl MaxPool {
    /// This layer's record in the weights file.
    pub(crate) fn record(&self) -> Record {
        Record {
            kind: KIND,
            padding: self.padding.code(),
            a: self.size as u32,
            b: self.stride as u32,
            c: 0,
        }
    }

    /// The layer a record of [`KIND`] describes.
    pub(crate) fn from_record(r: &Record) -> Result<Self, &'static str> {
        Record::unused_zero(&[r.c])?;
        Ok(MaxPool::new(r.a as usize, r.b as usize, r.padding()?))
    }

    /// The Rust expression that builds this layer.
    pub(crate) fn write_rust(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "microconv::Layer::MaxPool(microconv::layers::MaxPool::new({}, {}, {}))",
            self.size,
            self.stride,
            self.padding.rust_path()
        )
    }

    /// Int8 forward pass: the largest `q` of each window (padding ignored; the same
    /// scale and zero point in and out).
    pub(crate) fn forward_i8(&self, site: &Site, x: &[i8], y: &mut [i8]) -> Result<(), Error> {
        let (ins, outs) = (site.input, site.output);
        let xs = x.chunks_exact(ins.len()).take(site.n);
        for (xi, yi) in xs.zip(y.chunks_exact_mut(outs.len())) {
            self.pool_image_i8(ins, outs, xi, yi);
        }
        Ok(())
    }

    /// Int8 max-pool of one image.
    fn pool_image_i8(&self, input: Shape, output: Shape, x: &[i8], y: &mut [i8]) {
        let (pt, pl) = self.pads(input);
        let row = output.w * output.c;
        for (oy, yr) in y.chunks_exact_mut(row).enumerate().take(output.h) {
            self.pool_row_i8(input, output, (pt, pl), oy, (x, 0), yr);
        }
    }

    /// Padding before the input's rows and columns (the same windows as the float
    /// max-pool's, `window_axis`; 0 for a shape the caller has not checked).
    fn pads(&self, input: Shape) -> (usize, usize) {
        let before =
            |len| window_axis(len, self.size, self.stride, self.padding).map_or(0, |(_, p)| p);
        (before(input.h), before(input.w))
    }

    /// The input rows `[y0, y1)` that output row `oy`'s windows read (clipped to the
    /// input): what a row-band pass must have computed before pooling row `oy`.
    pub(crate) fn input_rows(&self, input: Shape, oy: usize) -> core::ops::Range<usize> {
        let (pt, _) = self.pads(input);
        let y0 = (oy * self.stride).saturating_sub(pt).min(input.h);
        let y1 = (oy * self.stride + self.size)
            .saturating_sub(pt)
            .min(input.h);
        y0..y1.max(y0)
    }

    /// Int8 output row `oy` into `y` (`ow * c` bytes) from `x`, which holds the input
    /// rows from `first` on (at least [`MaxPool::input_rows`] of `oy`).
    fn pool_row_i8(
        &self,
        input: Shape,
        output: Shape,
        (pt, pl): (usize, usize),
        oy: usize,
        (x, first): (&[i8], usize),
        y: &mut [i8],
    ) {
        let pool = self;
        let c = input.c;
        let y0 = (oy * pool.stride).saturating_sub(pt);
        let y1 = (oy * pool.stride + pool.size)
            .saturating_sub(pt)
            .min(input.h);
        for ox in 0..output.w {
            let x0 = (ox * pool.stride).saturating_sub(pl);
            let x1 = (ox * pool.stride + pool.size)
                .saturating_sub(pl)
                .min(input.w);
            let out = &mut y[ox * c..][..c];
            out.fill(i8::MIN);
            for iy in y0..y1 {
                for ix in x0..x1 {
                    let at = ((iy - first) * input.w + ix) * c;
                    for (o, &v) in out.iter_mut().zip(&x[at..][..c]) {
                        *o = (*o).max(v);
                    }
                }
            }
        }
    }

    /// The checks of one output row `oy` computed from `band` into `y` (float or int8):
    /// the output shape, the padding before (rows, columns) and the band's first input row.
    fn row_site<T>(
        &self,
        input: Shape,
        oy: usize,
        band: &[T],
        y: &[T],
    ) -> Result<(Shape, (usize, usize), usize), Error> {
        let (output, pt, pl) = self.geom(input)?;
        let rows = self.input_rows(input, oy);
        check_len("maxpool row band", band, rows.len() * input.w * input.c)?;
        check_len("maxpool output row", y, output.w * output.c)?;
        if oy >= output.h {
            return Err(Error::InvalidParameter {
                name: "maxpool row (past the last output row)",
            });
        }
        Ok((output, (pt, pl), rows.start))
    }

    /// Int8 output row `oy` (`ow * c` bytes into `y`) from `band`, the input rows
    /// [`MaxPool::input_rows`] of `oy`: the values [`MaxPool::forward_i8`] gives that row.
    pub(crate) fn forward_row_i8(
        &self,
        input: Shape,
        oy: usize,
        band: &[i8],
        y: &mut [i8],
    ) -> Result<(), Error> {
        let (output, pads, first) = self.row_site(input, oy, band, y)?;
        self.pool_row_i8(input, output, pads, oy, (band, first), y);
        Ok(())
    }

    /// Float output row `oy` (`ow * c` values into `y`) from `band`, the input rows
    /// [`MaxPool::input_rows`] of `oy`: the values [`MaxPool::forward`] gives that row.
    pub(crate) fn forward_row(
        &self,
        input: Shape,
        oy: usize,
        band: &[f32],
        y: &mut [f32],
    ) -> Result<(), Error> {
        let (output, pads, first) = self.row_site(input, oy, band, y)?;
        self.max_row(input, output, pads, oy, (band, first), y);
        Ok(())
    }

    /// A `size x size` window with the given stride and padding.
    pub const fn new(size: usize, stride: usize, padding: Padding) -> Self {
        MaxPool {
            size,
            stride,
            padding,
        }
    }

    /// Output shape for `input`.
    pub const fn output_shape(&self, input: Shape) -> Result<Shape, ShapeError> {
        window_output(input, self.size, self.stride, self.padding, input.c)
    }

    /// Calls `f(out_index, in_index_of_first_max)` for every output value of one image.
    ///
    /// Channels are the innermost loop (contiguous in NHWC), processed in blocks of
    /// [`CHANNEL_BLOCK`] with the running maxima on the stack.
    fn each_argmax(
        &self,
        input: Shape,
        output: Shape,
        pt: usize,
        pl: usize,
        x: &[f32],
        mut f: impl FnMut(usize, usize),
    ) {
        let c = input.c;
        let mut best_v = [0.0f32; CHANNEL_BLOCK];
        let mut best_i = [0usize; CHANNEL_BLOCK];
        for oy in 0..output.h {
            for ox in 0..output.w {
                let (y0, y1, x0, x1) = self.window(input, pt, pl, oy, ox);
                let out = (oy * output.w + ox) * c;
                let mut c0 = 0;
                while c0 < c {
                    let cb = CHANNEL_BLOCK.min(c - c0);
                    // SAME windows always hold at least one in-bounds position: start there.
                    let first = (y0 * input.w + x0) * c + c0;
                    best_v[..cb].copy_from_slice(&x[first..first + cb]);
                    for (k, bi) in best_i[..cb].iter_mut().enumerate() {
                        *bi = first + k;
                    }
                    for iy in y0..y1 {
                        for ix in x0..x1 {
                            let at = (iy * input.w + ix) * c + c0;
                            // `>` keeps the first maximum in row-major order; a NaN never
                            // wins, except that a NaN in first place stays (and propagates).
                            for (k, (bv, bi)) in best_v[..cb]
                                .iter_mut()
                                .zip(best_i[..cb].iter_mut())
                                .enumerate()
                            {
                                let v = x[at + k];
                                if v > *bv {
                                    *bv = v;
                                    *bi = at + k;
                                }
                            }
                        }
                    }
                    for (k, &bi) in best_i[..cb].iter().enumerate() {
                        f(out + c0 + k, bi);
                    }
                    c0 += cb;
                }
            }
        }
    }

    fn geom(&self, input: Shape) -> Result<(Shape, usize, usize), Error> {
        let e = |reason| Error::Shape {
            layer: usize::MAX,
            reason,
        };
        let output = self.output_shape(input).map_err(e)?;
        let (_, pt) = window_axis(input.h, self.size, self.stride, self.padding).map_err(e)?;
        let (_, pl) = window_axis(input.w, self.size, self.stride, self.padding).map_err(e)?;
        Ok((output, pt, pl))
    }

    /// Checks the buffers of a forward pass and runs `f` on every image (the fast and the
    /// reference passes share this).
    #[allow(clippy::type_complexity)]
    fn per_image_forward(
        &self,
        input: Shape,
        n: usize,
        x: &[f32],
        y: &mut [f32],
        f: impl Fn(&Self, Shape, Shape, usize, usize, &[f32], &mut [f32]),
    ) -> Result<(), Error> {
        let (output, pt, pl) = self.geom(input)?;
        check_len("maxpool input", x, n.saturating_mul(input.len()))?;
        check_len("maxpool output", y, n.saturating_mul(output.len()))?;
        for (xi, yi) in x
            .chunks_exact(input.len())
            .zip(y.chunks_exact_mut(output.len()))
        {
            f(self, input, output, pt, pl, xi, yi);
        }
        Ok(())
    }

    /// Checks the buffers of a backward pass, zeroes `dx` and runs `f` on every image.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn per_image_backward(
        &self,
        input: Shape,
        n: usize,
        x: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        f: impl Fn(&Self, Shape, Shape, usize, usize, &[f32], &[f32], &mut [f32]),
    ) -> Result<(), Error> {
        let (output, pt, pl) = self.geom(input)?;
        check_len("maxpool input", x, n.saturating_mul(input.len()))?;
        check_len(
            "maxpool output gradient",
            dy,
            n.saturating_mul(output.len()),
        )?;
        check_len("maxpool input gradient", dx, n.saturating_mul(input.len()))?;
        dx.fill(0.0);
        for ((xi, dyi), dxi) in x
            .chunks_exact(input.len())
            .zip(dy.chunks_exact(output.len()))
            .zip(dx.chunks_exact_mut(input.len()))
        {
            f(self, input, output, pt, pl, xi, dyi, dxi);
        }
        Ok(())
    }

    /// Forward pass over a batch of `n` samples.
    pub fn forward(&self, input: Shape, n: usize, x: &[f32], y: &mut [f32]) -> Result<(), Error> {
        self.per_image_forward(input, n, x, y, Self::max_image)
    }

    /// The forward pass with the reference loop (`each_argmax`, which also
    /// finds each maximum's position); [`MaxPool::forward`] must equal it exactly.
    pub fn forward_reference(
        &self,
        input: Shape,
        n: usize,
        x: &[f32],
        y: &mut [f32],
    ) -> Result<(), Error> {
        self.per_image_forward(input, n, x, y, |p, i, o, pt, pl, xi, yi| {
            p.each_argmax(i, o, pt, pl, xi, |a, b| yi[a] = xi[b])
        })
    }

    /// The window `[y0, y1) x [x0, x1)` of output `(oy, ox)`, clipped to the input.
    fn window(
        &self,
        input: Shape,
        pt: usize,
        pl: usize,
        oy: usize,
        ox: usize,
    ) -> (usize, usize, usize, usize) {
        let y0 = (oy * self.stride).saturating_sub(pt);
        let y1 = (oy * self.stride + self.size)
            .saturating_sub(pt)
            .min(input.h);
        let x0 = (ox * self.stride).saturating_sub(pl);
        let x1 = (ox * self.stride + self.size)
            .saturating_sub(pl)
            .min(input.w);
        (y0, y1, x0, x1)
    }

    /// One image's forward pass, one output row after the other ([`MaxPool::max_row`]).
    fn max_image(
        &self,
        input: Shape,
        output: Shape,
        pt: usize,
        pl: usize,
        x: &[f32],
        y: &mut [f32],
    ) {
        let row = output.w * output.c;
        for (oy, yr) in y.chunks_exact_mut(row).enumerate().take(output.h) {
            self.max_row(input, output, (pt, pl), oy, (x, 0), yr);
        }
    }

    /// Output row `oy` into `y` (`ow * c` values) from `x`, which holds the input rows
    /// from `first` on. Channels innermost so that the comparisons run on whole vectors:
    /// each output starts as the window's first pixel and takes every later value that is
    /// `>` (the same first-maximum and NaN rules as [`MaxPool::each_argmax`]).
    #[inline]
    fn max_row(
        &self,
        input: Shape,
        output: Shape,
        (pt, pl): (usize, usize),
        oy: usize,
        (x, first): (&[f32], usize),
        y: &mut [f32],
    ) {
        let c = input.c;
        for ox in 0..output.w {
            let (y0, y1, x0, x1) = self.window(input, pt, pl, oy, ox);
            let (y0, y1) = (y0 - first, y1 - first);
            let out = &mut y[ox * c..][..c];
            if y1 - y0 == 2 && x1 - x0 == 2 {
                // The common whole 2x2 window: branch-free selects (see `route_image`).
                let top = (y0 * input.w + x0) * c;
                let (v0, v1) = x[top..][..2 * c].split_at(c);
                let (v2, v3) = x[top + input.w * c..][..2 * c].split_at(c);
                let vals = v0.iter().zip(v1).zip(v2.iter().zip(v3));
                for (o, ((&a, &b), (&c2, &e))) in out.iter_mut().zip(vals) {
                    let m = if b > a { b } else { a };
                    let m = if c2 > m { c2 } else { m };
                    *o = if e > m { e } else { m };
                }
                continue;
            }
            let first = &x[(y0 * input.w + x0) * c..][..c];
            // The first two positions combine into `out` with one select per value
            // (a copy of `first` would be a `memcpy` call per output pixel).
            let mut seen = 0;
            for iy in y0..y1 {
                for ix in x0..x1 {
                    let v = &x[(iy * input.w + ix) * c..][..c];
                    if seen == 1 {
                        for ((b, &a), &v) in out.iter_mut().zip(first).zip(v) {
                            *b = if v > a { v } else { a };
                        }
                    } else if seen > 1 {
                        for (b, &v) in out.iter_mut().zip(v) {
                            if v > *b {
                                *b = v;
                            }
                        }
                    }
                    seen += 1;
                }
            }
            if seen == 1 {
                out.copy_from_slice(first);
            }
        }
    }

    /// One image's backward pass, vectorised over channels: per block of channels the
    /// window position of each first maximum (as in [`MaxPool::each_argmax`]), then
    /// one pass over the window adding `dy` where the position matches.
    #[allow(clippy::too_many_arguments)]
    fn route_image(
        &self,
        input: Shape,
        output: Shape,
        pt: usize,
        pl: usize,
        x: &[f32],
        dy: &[f32],
        dx: &mut [f32],
    ) {
        let c = input.c;
        let mut best = [0.0f32; CHANNEL_BLOCK];
        let mut at = [0u32; CHANNEL_BLOCK];
        for oy in 0..output.h {
            for ox in 0..output.w {
                let (y0, y1, x0, x1) = self.window(input, pt, pl, oy, ox);
                let o = (oy * output.w + ox) * c;
                if self.size == 2 && self.stride >= 2 && y1 - y0 == 2 && x1 - x0 == 2 {
                    // The common 2x2 window, whole and not overlapping its neighbours:
                    // branch-free selects over the channels, which the compiler
                    // vectorises. Same rule: the first strict maximum wins.
                    let top = (y0 * input.w + x0) * c;
                    let bottom = top + input.w * c;
                    let (xt, xb) = (&x[top..][..2 * c], &x[bottom..][..2 * c]);
                    let (v0, v1) = xt.split_at(c);
                    let (v2, v3) = xb.split_at(c);
                    let (dt, rest) = dx[top..].split_at_mut(2 * c);
                    let (d0, d1) = dt.split_at_mut(c);
                    let (d2, d3) = rest[bottom - top - 2 * c..][..2 * c].split_at_mut(c);
                    let g = &dy[o..][..c];
                    let (d1, d2, d3) = (&mut d1[..c], &mut d2[..c], &mut d3[..c]);
                    let (v1, v2, v3) = (&v1[..c], &v2[..c], &v3[..c]);
                    for ch in 0..c {
                        let (a, b, c2, e, gv) = (v0[ch], v1[ch], v2[ch], v3[ch], g[ch]);
                        let gt1 = b > a;
                        let m = if gt1 { b } else { a };
                        let gt2 = c2 > m;
                        let m = if gt2 { c2 } else { m };
                        let gt3 = e > m;
                        // The gradient goes where the mask is all ones: bitwise selects,
                        // straight-line code the compiler vectorises (no branch per channel),
                        // exact for any `dy` (non-winners get +0.0).
                        let mask = |win: bool| (win as u32).wrapping_neg();
                        let g = gv.to_bits();
                        d3[ch] = f32::from_bits(g & mask(gt3));
                        d2[ch] = f32::from_bits(g & mask(gt2 & !gt3));
                        d1[ch] = f32::from_bits(g & mask(gt1 & !gt2 & !gt3));
                        d0[ch] = f32::from_bits(g & mask(!gt1 & !gt2 & !gt3));
                    }
                    continue;
                }
                let mut c0 = 0;
                while c0 < c {
                    let cb = CHANNEL_BLOCK.min(c - c0);
                    let (best, at) = (&mut best[..cb], &mut at[..cb]);
                    let first = &x[(y0 * input.w + x0) * c + c0..][..cb];
                    // As in `max_image`: the window's first position only through a
                    // select, the rest with `>` (the first maximum wins).
                    for ((b, a), &v) in best.iter_mut().zip(at.iter_mut()).zip(first) {
                        *b = v;
                        *a = 0;
                    }
                    let mut pos = 0u32;
                    for iy in y0..y1 {
                        for ix in x0..x1 {
                            if pos > 0 {
                                let v = &x[(iy * input.w + ix) * c + c0..][..cb];
                                for ((b, a), &v) in best.iter_mut().zip(at.iter_mut()).zip(v) {
                                    let gt = v > *b;
                                    *b = if gt { v } else { *b };
                                    *a = if gt { pos } else { *a };
                                }
                            }
                            pos += 1;
                        }
                    }
                    let g = &dy[o + c0..][..cb];
                    let mut pos = 0u32;
                    for iy in y0..y1 {
                        for ix in x0..x1 {
                            let d = &mut dx[(iy * input.w + ix) * c + c0..][..cb];
                            for ((d, &a), &g) in d.iter_mut().zip(at.iter()).zip(g) {
                                *d += if a == pos { g } else { 0.0 };
                            }
                            pos += 1;
                        }
                    }
                    c0 += cb;
                }
            }
        }
    }

    /// Backward pass: overwrites `dx` with `dL/dx`.
    pub fn backward(
        &self,
        input: Shape,
        n: usize,
        x: &[f32],
        dy: &[f32],
        dx: &mut [f32],
    ) -> Result<(), Error> {
        self.per_image_backward(input, n, x, dy, dx, Self::route_image)
    }

    /// The backward pass with the reference loop; [`MaxPool::backward`] must equal it
    /// (up to the sign of zero gradients).
    pub fn backward_reference(
        &self,
        input: Shape,
        n: usize,
        x: &[f32],
        dy: &[f32],
        dx: &mut [f32],
    ) -> Result<(), Error> {
        self.per_image_backward(input, n, x, dy, dx, |p, i, o, pt, pl, xi, dyi, dxi| {
            p.each_argmax(i, o, pt, pl, xi, |a, b| dxi[b] += dyi[a])
        })
    }

    /// The forward pass (equal to [`MaxPool::forward`]) that also records, for each
    /// output value, where its window's first maximum was: `at[o] = dy * size + dx`,
    /// the row and column within the window counted from its first in-bounds
    /// position. One byte per output instead of the input that [`MaxPool::backward`]
    /// needs (a quarter of the input's bytes / 16 for a 2x2 pool). Windows larger than
    /// 16 x 16 are an error.
    pub fn forward_argmax(
        &self,
        input: Shape,
        n: usize,
        x: &[f32],
        y: &mut [f32],
        at: &mut [u8],
    ) -> Result<(), Error> {
        let (output, pt, pl) = self.geom(input)?;
        self.check_positions(n, output, at.len())?;
        check_len("maxpool input", x, n.saturating_mul(input.len()))?;
        check_len("maxpool output", y, n.saturating_mul(output.len()))?;
        let (w, c) = (input.w, input.c);
        for ((xi, yi), ai) in x
            .chunks_exact(input.len())
            .zip(y.chunks_exact_mut(output.len()))
            .zip(at.chunks_exact_mut(output.len()))
        {
            self.each_argmax(input, output, pt, pl, xi, |a, b| {
                yi[a] = xi[b];
                let pixel = a / c;
                let (oy, ox) = (pixel / output.w, pixel % output.w);
                let (y0, _, x0, _) = self.window(input, pt, pl, oy, ox);
                let (iy, ix) = ((b / c) / w, (b / c) % w);
                ai[a] = ((iy - y0) * self.size + (ix - x0)) as u8;
            });
        }
        Ok(())
    }

    /// Backward pass from the positions [`MaxPool::forward_argmax`] recorded:
    /// overwrites `dx` with `dL/dx`, equal to [`MaxPool::backward_reference`] bit for
    /// bit. A position outside its window is an error.
    pub fn backward_argmax(
        &self,
        input: Shape,
        n: usize,
        at: &[u8],
        dy: &[f32],
        dx: &mut [f32],
    ) -> Result<(), Error> {
        let (output, pt, pl) = self.geom(input)?;
        self.check_positions(n, output, at.len())?;
        check_len(
            "maxpool output gradient",
            dy,
            n.saturating_mul(output.len()),
        )?;
        check_len("maxpool input gradient", dx, n.saturating_mul(input.len()))?;
        dx.fill(0.0);
        let c = input.c;
        for ((ai, dyi), dxi) in at
            .chunks_exact(output.len())
            .zip(dy.chunks_exact(output.len()))
            .zip(dx.chunks_exact_mut(input.len()))
        {
            for oy in 0..output.h {
                for ox in 0..output.w {
                    let (y0, y1, x0, x1) = self.window(input, pt, pl, oy, ox);
                    let o = (oy * output.w + ox) * c;
                    for ch in 0..c {
                        let pos = ai[o + ch] as usize;
                        let (iy, ix) = (y0 + pos / self.size, x0 + pos % self.size);
                        if iy >= y1 || ix >= x1 {
                            return Err(Error::InvalidParameter {
                                name: "maxpool position outside its window",
                            });
                        }
                        dxi[(iy * input.w + ix) * c + ch] += dyi[o + ch];
                    }
                }
            }
        }
        Ok(())
    }

    fn check_positions(&self, n: usize, output: Shape, at: usize) -> Result<(), Error> {
        if self.size.saturating_mul(self.size) > 256 {
            return Err(Error::InvalidParameter {
                name: "maxpool window larger than 16 x 16 (positions are bytes)",
            });
        }
        Error::expect_len("maxpool positions", n.saturating_mul(output.len()), at)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::testutil::{check_grad, dot, rand_vec};
    use std::vec;

    #[test]
    fn forward_picks_max_and_ignores_padding() {
        // 3x3 input, 2x2 window stride 2 SAME -> 2x2; pad after only.
        let x = [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0, -9.0];
        let mut y = [0.0; 4];
        MaxPool::new(2, 2, Padding::Same)
            .forward(Shape::new(3, 3, 1), 1, &x, &mut y)
            .unwrap();
        // Padding is ignored, not zero: the corner window holds only -9.
        assert_eq!(y, [-1.0, -3.0, -7.0, -9.0]);
    }

    /// Window 2 stride 2, an overlapping window 3 stride 2, and stride 1 without padding.
    const POOLS: [MaxPool; 3] = [
        MaxPool::new(2, 2, Padding::Same),
        MaxPool::new(3, 2, Padding::Same),
        MaxPool::new(2, 1, Padding::Valid),
    ];

    #[test]
    fn recorded_positions_give_the_reference_backward() {
        for (i, pool) in POOLS.iter().enumerate() {
            let input = Shape::new(7, 5, 3);
            let out = pool.output_shape(input).unwrap();
            let n = 2;
            let mut x = rand_vec(30 + i as u64, n * input.len(), 1.0);
            // Ties: the first maximum must win in both.
            x[4] = x[1];
            x[7] = 0.0;
            x[10] = 0.0;
            let dy = rand_vec(40, n * out.len(), 1.0);
            let (mut y, mut y2) = (vec![0.0; n * out.len()], vec![1.0; n * out.len()]);
            let mut at = vec![0u8; n * out.len()];
            pool.forward(input, n, &x, &mut y).unwrap();
            pool.forward_argmax(input, n, &x, &mut y2, &mut at).unwrap();
            assert_eq!(y, y2, "pool {i}: forward");
            let (mut dx, mut dx2) = (vec![0.0; x.len()], vec![3.0; x.len()]);
            pool.backward_reference(input, n, &x, &dy, &mut dx).unwrap();
            pool.backward_argmax(input, n, &at, &dy, &mut dx2).unwrap();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<std::vec::Vec<_>>();
            assert_eq!(bits(&dx), bits(&dx2), "pool {i}: backward");
            at[0] = 200;
            assert!(pool.backward_argmax(input, n, &at, &dy, &mut dx2).is_err());
            assert!(pool
                .forward_argmax(input, n, &x, &mut y2, &mut at[1..])
                .is_err());
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        for (i, pool) in POOLS.iter().enumerate() {
            let input = Shape::new(5, 5, 2);
            let out = pool.output_shape(input).unwrap();
            let n = 2;
            let x = rand_vec(10 + i as u64, n * input.len(), 1.0);
            let r = rand_vec(20, n * out.len(), 1.0);
            let mut dx = vec![0.0; x.len()];
            pool.backward(input, n, &x, &r, &mut dx).unwrap();
            check_grad(&std::format!("maxpool{i} dx"), &x, &dx, 1e-4, 1e-2, |x| {
                let mut y = vec![0.0; n * out.len()];
                pool.forward(input, n, x, &mut y).unwrap();
                dot(&y, &r)
            });
        }
    }

    #[test]
    fn vectorised_passes_equal_the_reference() {
        use crate::rng::Rng;
        let mut rng = Rng::new(3);
        for (pool, input) in [
            (MaxPool::new(2, 2, Padding::Same), Shape::new(7, 7, 16)),
            (MaxPool::new(2, 2, Padding::Valid), Shape::new(28, 28, 8)),
            (MaxPool::new(3, 2, Padding::Same), Shape::new(9, 6, 70)),
            (MaxPool::new(3, 1, Padding::Valid), Shape::new(5, 5, 3)),
        ] {
            let out = pool.output_shape(input).unwrap();
            let n = 3;
            // Values from a small set, so ties are common; some NaNs and infinities.
            let mut x: vec::Vec<f32> = (0..n * input.len())
                .map(|_| rng.below(5) as f32 - 2.0)
                .collect();
            for k in 0..x.len() / 50 {
                x[k * 50] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][k % 3];
            }
            let mut dy = rand_vec(7, n * out.len(), 1.0);
            for k in 0..dy.len() / 40 {
                dy[k * 40 + 3] = [f32::INFINITY, f32::NAN][k % 2];
            }
            let (mut y1, mut y2) = (vec![0.0; n * out.len()], vec![0.0; n * out.len()]);
            pool.forward(input, n, &x, &mut y1).unwrap();
            pool.forward_reference(input, n, &x, &mut y2).unwrap();
            assert!(y1.iter().zip(&y2).all(|(a, b)| a.to_bits() == b.to_bits()));
            let (mut d1, mut d2) = (vec![0.0; x.len()], vec![0.0; x.len()]);
            pool.backward(input, n, &x, &dy, &mut d1).unwrap();
            pool.backward_reference(input, n, &x, &dy, &mut d2).unwrap();
            // Equal values, or NaN in both (a NaN gradient reaches the same place).
            let bad = d1
                .iter()
                .zip(&d2)
                .position(|(a, b)| !(a == b || (a.is_nan() && b.is_nan())));
            assert!(
                bad.is_none(),
                "maxpool {pool:?} on {input:?}: backward differs from the reference at {bad:?}"
            );
        }
    }

    #[test]
    fn ties_go_to_the_first_maximum() {
        let x = [0.0, 0.0, 0.0, 0.0];
        let mut dx = [9.0; 4];
        MaxPool::new(2, 2, Padding::Valid)
            .backward(Shape::new(2, 2, 1), 1, &x, &[1.0], &mut dx)
            .unwrap();
        assert_eq!(dx, [1.0, 0.0, 0.0, 0.0]);
    }
}
