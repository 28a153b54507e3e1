//! 2-D convolution with bias, stride and SAME/VALID padding.
//!
//! ```text
//! x  [n, h,  w,  cin ]      input, NHWC
//! w  [k, k, cin, cout]      weights, HWIO
//! b  [cout]                 bias
//! y  [n, oh, ow, cout]      y[n,oy,ox,co] = b[co] + sum_{ky,kx,ci} x[n, oy*s+ky-pt, ox*s+kx-pl, ci] * w[ky,kx,ci,co]
//!                           (positions outside x are zeros; oh, ow, pt, pl from `Padding`)
//! ```
//! Two algorithms compute the same thing: [`ConvAlgo::Direct`], the readable reference
//! that needs no scratch memory (what a microcontroller runs), and [`ConvAlgo::Im2col`],
//! which copies patches into a scratch matrix and calls a [`Gemm`] (fast on the host).

use core::fmt;

use super::{ParamShapes, Record};
use crate::error::{check_len, Error, ShapeError};
use crate::gemm::{add_bias, Gemm, MatMut, MatRef};
use crate::shape::{window_axis, window_output, Padding, Shape};

pub(crate) mod int8;
pub use int8::MAX_PATCH;

/// The kind code of conv2d in the weights file; its record is `(padding, a = kernel,
/// b = stride, c = filters)`.
pub const KIND: u8 = 1;

/// A convolution layer's configuration: a square `kernel x kernel` window, `filters`
/// output channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    /// Kernel height and width.
    pub kernel: usize,
    /// Stride along both axes.
    pub stride: usize,
    /// Border handling.
    pub padding: Padding,
    /// Output channels.
    pub filters: usize,
}

/// Which convolution algorithm to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvAlgo {
    /// Direct loops, no scratch: the reference.
    Direct,
    /// Patches copied to scratch, then one matrix product per group of images.
    Im2col,
}

/// Faster convolution kernels a platform can plug in (through
/// [`Exec::kernels`](crate::net::Exec)), for example SIMD code on a host. Each method
/// either handles the call completely and returns `Ok(true)`, or returns `Ok(false)`
/// without having written anything, and the layer runs its own algorithm. Shapes and
/// buffers are those of [`Conv2d::forward`] and [`Conv2d::backward`], already checked
/// by the caller; `scratch` is the layer's im2col scratch, free to use.
pub trait ConvKernels: Sync {
    /// [`Conv2d::forward`]: `y = conv(x, w) + b`.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        conv: &Conv2d,
        input: Shape,
        n: usize,
        x: &[f32],
        w: &[f32],
        b: &[f32],
        y: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<bool, Error>;

    /// [`Conv2d::backward`]: accumulates `dw`, `db`; overwrites `dx` if given.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        conv: &Conv2d,
        input: Shape,
        n: usize,
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        dx: Option<&mut [f32]>,
        dw: &mut [f32],
        db: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<bool, Error>;
}

/// Geometry of one convolution, derived once.
#[derive(Clone, Copy, Debug)]
struct Geom {
    input: Shape,
    output: Shape,
    k: usize,
    s: usize,
    pt: usize,
    pl: usize,
}

impl Conv2d {
    /// This layer's record in the weights file.
    pub(crate) fn record(&self) -> Record {
        Record {
            kind: KIND,
            padding: self.padding.code(),
            a: self.kernel as u32,
            b: self.stride as u32,
            c: self.filters as u32,
        }
    }

    /// The layer a record of [`KIND`] describes.
    pub(crate) fn from_record(r: &Record) -> Result<Self, &'static str> {
        let padding = r.padding()?;
        Ok(Conv2d::with(
            r.a as usize,
            r.b as usize,
            padding,
            r.c as usize,
        ))
    }

    /// The Rust expression that builds this layer.
    pub(crate) fn write_rust(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "microconv::Layer::Conv2d(microconv::layers::Conv2d::with({}, {}, {}, {}))",
            self.kernel,
            self.stride,
            self.padding.rust_path(),
            self.filters
        )
    }

    /// The weights' and biases' shapes for `input`: HWIO weights (`[cout, k, k, cin]` in
    /// int8), `filters` biases.
    pub const fn param_shapes(&self, input: Shape) -> ParamShapes {
        let (k, cin, cout) = (self.kernel, input.c, self.filters);
        ParamShapes {
            weights: (4, [k, k, cin, cout]),
            weights_i8: (4, [cout, k, k, cin]),
            bias: cout,
            fan_in: k * k * cin,
            fan_out: k * k * cout,
        }
    }

    /// A `kernel x kernel` convolution with `filters` outputs, stride 1, SAME padding.
    pub const fn new(kernel: usize, filters: usize) -> Self {
        Conv2d {
            kernel,
            stride: 1,
            padding: Padding::Same,
            filters,
        }
    }

    /// Same with a given stride and padding.
    pub const fn with(kernel: usize, stride: usize, padding: Padding, filters: usize) -> Self {
        Conv2d {
            kernel,
            stride,
            padding,
            filters,
        }
    }

    /// Output shape for `input`.
    pub const fn output_shape(&self, input: Shape) -> Result<Shape, ShapeError> {
        window_output(input, self.kernel, self.stride, self.padding, self.filters)
    }

    /// Number of weights, `k * k * cin * cout` (saturating).
    pub const fn weight_len(&self, input: Shape) -> usize {
        self.kernel
            .saturating_mul(self.kernel)
            .saturating_mul(input.c)
            .saturating_mul(self.filters)
    }

    /// Number of parameters: weights then biases.
    pub const fn param_len(&self, input: Shape) -> usize {
        self.weight_len(input).saturating_add(self.filters)
    }

    /// Zero rows above and zero columns left of the input that the window sees
    /// (`(0, 0)` for VALID; TensorFlow's split for SAME).
    pub fn padding_before(&self, input: Shape) -> Result<(usize, usize), Error> {
        let g = self.geom(input)?;
        Ok((g.pt, g.pl))
    }

    /// Scratch elements that [`ConvAlgo::Im2col`] needs per image: `oh * ow * k * k * cin`.
    pub const fn im2col_len(&self, input: Shape) -> usize {
        match self.output_shape(input) {
            Ok(o) => (o.h * o.w)
                .saturating_mul(self.kernel)
                .saturating_mul(self.kernel)
                .saturating_mul(input.c),
            Err(_) => 0,
        }
    }

    fn geom(&self, input: Shape) -> Result<Geom, Error> {
        let shape_err = |reason| Error::Shape {
            layer: usize::MAX,
            reason,
        };
        let output = self.output_shape(input).map_err(shape_err)?;
        let (_, pt) =
            window_axis(input.h, self.kernel, self.stride, self.padding).map_err(shape_err)?;
        let (_, pl) =
            window_axis(input.w, self.kernel, self.stride, self.padding).map_err(shape_err)?;
        Ok(Geom {
            input,
            output,
            k: self.kernel,
            s: self.stride,
            pt,
            pl,
        })
    }

    fn check(
        &self,
        g: &Geom,
        n: usize,
        x: usize,
        w: usize,
        b: usize,
        y: usize,
    ) -> Result<(), Error> {
        Error::expect_len("conv2d input", n.saturating_mul(g.input.len()), x)?;
        Error::expect_len("conv2d weights", self.weight_len(g.input), w)?;
        Error::expect_len("conv2d bias", self.filters, b)?;
        Error::expect_len("conv2d output", n.saturating_mul(g.output.len()), y)
    }

    /// Forward pass over a batch of `n` images. See the module doc for shapes.
    /// `scratch` is unused by [`ConvAlgo::Direct`] (pass `&mut []`); [`ConvAlgo::Im2col`]
    /// needs at least [`Conv2d::im2col_len`] elements and processes as many images per
    /// matrix product as fit.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        input: Shape,
        n: usize,
        x: &[f32],
        w: &[f32],
        b: &[f32],
        y: &mut [f32],
        algo: ConvAlgo,
        scratch: &mut [f32],
        gemm: &dyn Gemm,
    ) -> Result<(), Error> {
        let g = self.geom(input)?;
        self.check(&g, n, x.len(), w.len(), b.len(), y.len())?;
        match algo {
            ConvAlgo::Direct => {
                forward_direct(&g, x, w, b, y);
                Ok(())
            }
            ConvAlgo::Im2col => forward_im2col(&g, n, x, w, b, y, scratch, gemm),
        }
    }

    /// Output rows `rows` of one image `x` (`input`) with the direct kernel (the same
    /// values as [`Conv2d::forward`] with [`ConvAlgo::Direct`]) into `band`
    /// (`rows.len() * ow * cout` values, row `rows.start` first). For the row-band
    /// inference of [`crate::plan`]; the caller checked the shapes and lengths.
    pub(crate) fn forward_rows(
        &self,
        input: Shape,
        x: &[f32],
        (w, b): (&[f32], &[f32]),
        rows: core::ops::Range<usize>,
        band: &mut [f32],
    ) -> Result<(), Error> {
        let g = self.geom(input)?;
        self.check(&g, 1, x.len(), w.len(), b.len(), g.output.len())?;
        if rows.end > g.output.h {
            return Err(Error::InvalidParameter {
                name: "conv2d rows (past the last output row)",
            });
        }
        let row = g.output.w * g.output.c;
        check_len("conv2d row band", band, rows.len().saturating_mul(row))?;
        for (oy, yr) in rows.zip(band.chunks_exact_mut(row)) {
            direct_row(&g, x, w, b, oy, yr);
        }
        Ok(())
    }

    /// Backward pass: accumulates `dw += dL/dw`, `db += dL/db`, and, if `dx` is given,
    /// overwrites it with `dL/dx` (the first layer of a network does not need it).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        input: Shape,
        n: usize,
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        dx: Option<&mut [f32]>,
        dw: &mut [f32],
        db: &mut [f32],
        algo: ConvAlgo,
        scratch: &mut [f32],
        gemm: &dyn Gemm,
    ) -> Result<(), Error> {
        let g = self.geom(input)?;
        self.check(&g, n, x.len(), w.len(), db.len(), dy.len())?;
        check_len("conv2d weight gradient", dw, w.len())?;
        if let Some(dx) = &dx {
            check_len("conv2d input gradient", dx, x.len())?;
        }
        match algo {
            ConvAlgo::Direct => {
                backward_direct(&g, x, w, dy, dx, dw, db);
                Ok(())
            }
            ConvAlgo::Im2col => backward_im2col(&g, n, x, w, dy, dx, dw, db, scratch, gemm),
        }
    }

    /// The input gradient alone: overwrites `dx` with `dL/dx`, with exactly the
    /// operations (and their order) of [`Conv2d::backward`] with [`ConvAlgo::Direct`],
    /// and no weight gradient. With [`Conv2d::each_param_gradient`] it lets a trainer
    /// update a layer's parameters as soon as their gradients are known, with no
    /// gradient buffer (what on-device training does).
    pub fn backward_input(
        &self,
        input: Shape,
        n: usize,
        w: &[f32],
        dy: &[f32],
        dx: &mut [f32],
    ) -> Result<(), Error> {
        let g = self.geom(input)?;
        Error::expect_len("conv2d weights", self.weight_len(input), w.len())?;
        Error::expect_len(
            "conv2d output gradient",
            n.saturating_mul(g.output.len()),
            dy.len(),
        )?;
        Error::expect_len(
            "conv2d input gradient",
            n.saturating_mul(g.input.len()),
            dx.len(),
        )?;
        let (cin, cout) = (g.input.c, g.output.c);
        let (in_img, out_img) = (g.input.len(), g.output.len());
        dx.fill(0.0);
        for (ni, dyi) in dy.chunks_exact(out_img).enumerate() {
            let dxi = &mut dx[ni * in_img..(ni + 1) * in_img];
            for oy in 0..g.output.h {
                for ox in 0..g.output.w {
                    let d = &dyi[(oy * g.output.w + ox) * cout..][..cout];
                    for ky in 0..g.k {
                        let Some(iy) = src(oy, ky, g.s, g.pt, g.input.h) else {
                            continue;
                        };
                        for kx in 0..g.k {
                            let Some(ix) = src(ox, kx, g.s, g.pl, g.input.w) else {
                                continue;
                            };
                            let at = (iy * g.input.w + ix) * cin;
                            let wo = (ky * g.k + kx) * cin * cout;
                            for ci in 0..cin {
                                let wrow = &w[wo + ci * cout..][..cout];
                                let mut acc = 0.0;
                                for (wv, dv) in wrow.iter().zip(d) {
                                    acc += wv * dv;
                                }
                                dxi[at + ci] += acc;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Calls `f(j, g)` for every parameter `j` (weights `[k, k, cin, cout]`, then the
    /// biases), in that order, with its whole gradient `g` over the `n` samples: the
    /// value [`Conv2d::backward`] with [`ConvAlgo::Direct`] accumulates into a zeroed
    /// gradient, bit for bit (each sum taken in the same order). Each gradient is
    /// complete when `f` sees it, so `f` can update the parameter in place.
    pub fn each_param_gradient(
        &self,
        input: Shape,
        n: usize,
        x: &[f32],
        dy: &[f32],
        mut f: impl FnMut(usize, f32),
    ) -> Result<(), Error> {
        let g = self.geom(input)?;
        Error::expect_len("conv2d input", n.saturating_mul(g.input.len()), x.len())?;
        Error::expect_len(
            "conv2d output gradient",
            n.saturating_mul(g.output.len()),
            dy.len(),
        )?;
        let (cin, cout) = (g.input.c, g.output.c);
        let (in_img, out_img) = (g.input.len(), g.output.len());
        let mut j = 0;
        for ky in 0..g.k {
            let (oy0, oy1) = valid_range(ky, g.s, g.pt, g.input.h, g.output.h);
            for kx in 0..g.k {
                let (ox0, ox1) = valid_range(kx, g.s, g.pl, g.input.w, g.output.w);
                for ci in 0..cin {
                    // Blocks of CO_BLOCK output channels summed together: each sum still
                    // runs over the samples and output positions in order.
                    let mut co0 = 0;
                    while co0 < cout {
                        let cb = CO_BLOCK.min(cout - co0);
                        let mut acc = [0.0f32; CO_BLOCK];
                        for ni in 0..n {
                            let xi = &x[ni * in_img..(ni + 1) * in_img];
                            let dyi = &dy[ni * out_img..(ni + 1) * out_img];
                            for oy in oy0..oy1 {
                                let iy = oy * g.s + ky - g.pt;
                                for ox in ox0..ox1 {
                                    let ix = ox * g.s + kx - g.pl;
                                    let xv = xi[(iy * g.input.w + ix) * cin + ci];
                                    let d = &dyi[(oy * g.output.w + ox) * cout + co0..][..cb];
                                    for (a, dv) in acc.iter_mut().zip(d) {
                                        *a += xv * dv;
                                    }
                                }
                            }
                        }
                        for &a in &acc[..cb] {
                            f(j, a);
                            j += 1;
                        }
                        co0 += cb;
                    }
                }
            }
        }
        for co in 0..cout {
            let mut acc = 0.0f32;
            for d in dy.chunks_exact(cout) {
                acc += d[co];
            }
            f(j, acc);
            j += 1;
        }
        Ok(())
    }
}

/// Input row/column for output position `o` and kernel offset `kk`, or `None` in the padding.
#[inline]
fn src(o: usize, kk: usize, s: usize, pad: usize, len: usize) -> Option<usize> {
    let i = (o * s + kk).checked_sub(pad)?;
    (i < len).then_some(i)
}

/// Output positions `[lo, hi)` along one axis whose input position
/// `o * s + kk - pad` is inside `[0, len)` (where [`src`] is `Some`).
fn valid_range(kk: usize, s: usize, pad: usize, len: usize, out: usize) -> (usize, usize) {
    // o * s + kk >= pad  <=>  o >= ceil((pad - kk) / s)
    let lo = pad.saturating_sub(kk).div_ceil(s).min(out);
    // o * s + kk - pad < len  <=>  o * s < len + pad - kk
    let hi = match (len + pad).checked_sub(kk) {
        Some(lim) => lim.div_ceil(s).min(out),
        None => 0,
    };
    (lo, hi.max(lo))
}

/// Output channels accumulated together in registers by the direct kernel.
const CO_BLOCK: usize = 8;

fn forward_direct(g: &Geom, x: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) {
    let in_img = g.input.len();
    let row = g.output.w * g.output.c;
    for (yi, yo) in y.chunks_exact_mut(g.output.len()).enumerate() {
        let xi = &x[yi * in_img..(yi + 1) * in_img];
        for (oy, yr) in yo.chunks_exact_mut(row).enumerate() {
            direct_row(g, xi, w, b, oy, yr);
        }
    }
}

/// Output row `oy` of one image `xi` with the direct kernel into `yr` (`ow * cout`
/// values): what [`forward_direct`] runs for every row, and the fused inference of
/// [`crate::plan`] for the rows a pooled row needs.
#[inline]
fn direct_row(g: &Geom, xi: &[f32], w: &[f32], b: &[f32], oy: usize, yr: &mut [f32]) {
    let (cin, cout) = (g.input.c, g.output.c);
    for ox in 0..g.output.w {
        let out = &mut yr[ox * cout..][..cout];
        // Blocks of CO_BLOCK output channels, each summed in registers in the
        // order bias, then (ky, kx, ci): the same order for every block size,
        // so results do not depend on the blocking.
        let mut co0 = 0;
        while co0 < cout {
            let cb = CO_BLOCK.min(cout - co0);
            let mut acc = [0.0f32; CO_BLOCK];
            acc[..cb].copy_from_slice(&b[co0..co0 + cb]);
            for ky in 0..g.k {
                let Some(iy) = src(oy, ky, g.s, g.pt, g.input.h) else {
                    continue;
                };
                for kx in 0..g.k {
                    let Some(ix) = src(ox, kx, g.s, g.pl, g.input.w) else {
                        continue;
                    };
                    let xs = &xi[(iy * g.input.w + ix) * cin..][..cin];
                    let wk = &w[(ky * g.k + kx) * cin * cout..][..cin * cout];
                    for (xv, wrow) in xs.iter().zip(wk.chunks_exact(cout)) {
                        let wb = &wrow[co0..co0 + cb];
                        if let (Ok(a), Ok(wv)) = (
                            <&mut [f32; CO_BLOCK]>::try_from(&mut acc[..]),
                            <&[f32; CO_BLOCK]>::try_from(wb),
                        ) {
                            // Full block: fixed trip count, unrolled, accumulators in registers.
                            for j in 0..CO_BLOCK {
                                a[j] += xv * wv[j];
                            }
                        } else {
                            for (a, wv) in acc.iter_mut().zip(wb) {
                                *a += xv * wv;
                            }
                        }
                    }
                }
            }
            out[co0..co0 + cb].copy_from_slice(&acc[..cb]);
            co0 += cb;
        }
    }
}

fn backward_direct(
    g: &Geom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    mut dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: &mut [f32],
) {
    let (cin, cout) = (g.input.c, g.output.c);
    let (in_img, out_img) = (g.input.len(), g.output.len());
    if let Some(dx) = dx.as_deref_mut() {
        dx.fill(0.0);
    }
    for (ni, dyi) in dy.chunks_exact(out_img).enumerate() {
        let xi = &x[ni * in_img..(ni + 1) * in_img];
        for oy in 0..g.output.h {
            for ox in 0..g.output.w {
                let d = &dyi[(oy * g.output.w + ox) * cout..][..cout];
                for (acc, dv) in db.iter_mut().zip(d) {
                    *acc += dv;
                }
                for ky in 0..g.k {
                    let Some(iy) = src(oy, ky, g.s, g.pt, g.input.h) else {
                        continue;
                    };
                    for kx in 0..g.k {
                        let Some(ix) = src(ox, kx, g.s, g.pl, g.input.w) else {
                            continue;
                        };
                        let at = (iy * g.input.w + ix) * cin;
                        let wo = (ky * g.k + kx) * cin * cout;
                        for ci in 0..cin {
                            let xv = xi[at + ci];
                            let wrow = &w[wo + ci * cout..][..cout];
                            let dwrow = &mut dw[wo + ci * cout..][..cout];
                            let mut acc = 0.0;
                            for ((dwv, wv), dv) in dwrow.iter_mut().zip(wrow).zip(d) {
                                *dwv += xv * dv;
                                acc += wv * dv;
                            }
                            if let Some(dx) = dx.as_deref_mut() {
                                dx[ni * in_img + at + ci] += acc;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Copies the patches of `images` consecutive images starting at `x` into `col`,
/// one row per output position: `col[(img*oh*ow + oy*ow + ox), (ky, kx, ci)]`.
fn im2col(g: &Geom, x: &[f32], col: &mut [f32]) {
    let cin = g.input.c;
    let kk = g.k * g.k * cin;
    let in_img = g.input.len();
    let mut row = 0;
    for xi in x.chunks_exact(in_img) {
        for oy in 0..g.output.h {
            for ox in 0..g.output.w {
                let r = &mut col[row * kk..(row + 1) * kk];
                row += 1;
                // Columns ix0..ix0+k, when all inside the input, are one contiguous run.
                let ix0 = (ox * g.s)
                    .checked_sub(g.pl)
                    .filter(|&i| i + g.k <= g.input.w);
                for ky in 0..g.k {
                    let seg = &mut r[ky * g.k * cin..(ky + 1) * g.k * cin];
                    let Some(iy) = src(oy, ky, g.s, g.pt, g.input.h) else {
                        seg.fill(0.0);
                        continue;
                    };
                    if let Some(ix0) = ix0 {
                        seg.copy_from_slice(&xi[(iy * g.input.w + ix0) * cin..][..g.k * cin]);
                        continue;
                    }
                    for kx in 0..g.k {
                        let dst = &mut seg[kx * cin..(kx + 1) * cin];
                        match src(ox, kx, g.s, g.pl, g.input.w) {
                            Some(ix) => {
                                dst.copy_from_slice(&xi[(iy * g.input.w + ix) * cin..][..cin])
                            }
                            None => dst.fill(0.0),
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds each patch row of `col` back into `dx`.
fn col2im(g: &Geom, col: &[f32], dx: &mut [f32]) {
    let cin = g.input.c;
    let kk = g.k * g.k * cin;
    let in_img = g.input.len();
    let mut row = 0;
    for dxi in dx.chunks_exact_mut(in_img) {
        for oy in 0..g.output.h {
            for ox in 0..g.output.w {
                let r = &col[row * kk..(row + 1) * kk];
                row += 1;
                for ky in 0..g.k {
                    let Some(iy) = src(oy, ky, g.s, g.pt, g.input.h) else {
                        continue;
                    };
                    for kx in 0..g.k {
                        let Some(ix) = src(ox, kx, g.s, g.pl, g.input.w) else {
                            continue;
                        };
                        let d = &mut dxi[(iy * g.input.w + ix) * cin..][..cin];
                        for (a, v) in d.iter_mut().zip(&r[(ky * g.k + kx) * cin..][..cin]) {
                            *a += v;
                        }
                    }
                }
            }
        }
    }
}

/// Whether the im2col matrix is built transposed (`col_t[(ky, kx, ci), row]`): for a
/// one-channel input with stride 1, where a row of the normal layout holds only `k`
/// contiguous values (one short copy per kernel row) but a row of the transposed
/// layout is a whole run of input pixels (one long copy per output row).
fn transposed(g: &Geom) -> bool {
    g.input.c == 1 && g.s == 1
}

/// Output columns `[lo, hi)` whose input column `ox + kx - pl` is inside the image
/// (stride 1).
fn valid_cols(g: &Geom, kx: usize) -> (usize, usize) {
    let lo = g.pl.saturating_sub(kx).min(g.output.w);
    let hi = (g.input.w + g.pl)
        .saturating_sub(kx)
        .min(g.output.w)
        .max(lo);
    (lo, hi)
}

/// [`im2col`] for [`transposed`] geometries: `col_t[kk, rows]` with
/// `col_t[(ky*k + kx), img*oh*ow + oy*ow + ox] = x[img, oy+ky-pt, ox+kx-pl]`.
fn im2col_t(g: &Geom, x: &[f32], images: usize, col_t: &mut [f32]) {
    let p = g.output.h * g.output.w;
    let rows = images * p;
    col_t.fill(0.0);
    for ky in 0..g.k {
        for kx in 0..g.k {
            let (lo, hi) = valid_cols(g, kx);
            let r = &mut col_t[(ky * g.k + kx) * rows..][..rows];
            for (img, xi) in x.chunks_exact(g.input.len()).enumerate() {
                for oy in 0..g.output.h {
                    let Some(iy) = src(oy, ky, 1, g.pt, g.input.h) else {
                        continue;
                    };
                    let d = &mut r[img * p + oy * g.output.w..][lo..hi];
                    d.copy_from_slice(&xi[iy * g.input.w + lo + kx - g.pl..][..hi - lo]);
                }
            }
        }
    }
}

/// The adjoint of [`im2col_t`]: adds `col_t` back into `dx`.
fn col2im_t(g: &Geom, col_t: &[f32], images: usize, dx: &mut [f32]) {
    let p = g.output.h * g.output.w;
    let rows = images * p;
    for ky in 0..g.k {
        for kx in 0..g.k {
            let (lo, hi) = valid_cols(g, kx);
            let r = &col_t[(ky * g.k + kx) * rows..][..rows];
            for (img, dxi) in dx.chunks_exact_mut(g.input.len()).enumerate() {
                for oy in 0..g.output.h {
                    let Some(iy) = src(oy, ky, 1, g.pt, g.input.h) else {
                        continue;
                    };
                    let d = &mut dxi[iy * g.input.w + lo + kx - g.pl..][..hi - lo];
                    for (a, v) in d.iter_mut().zip(&r[img * p + oy * g.output.w..][lo..hi]) {
                        *a += v;
                    }
                }
            }
        }
    }
}

/// The im2col matrix of `images` images as a `[rows, kk]` view, in whichever layout
/// [`transposed`] picks.
fn col_view<'c>(g: &Geom, col: &'c [f32], rows: usize) -> Result<MatRef<'c>, Error> {
    let kk = g.k * g.k * g.input.c;
    if transposed(g) {
        Ok(MatRef::row_major(col, kk, rows)?.t())
    } else {
        MatRef::row_major(col, rows, kk)
    }
}

/// Builds the im2col matrix of `images` images in `col`.
fn build_col(g: &Geom, x: &[f32], images: usize, col: &mut [f32]) {
    if transposed(g) {
        im2col_t(g, x, images, col);
    } else {
        im2col(g, x, col);
    }
}

/// Images per matrix product that fit in `scratch`.
fn group(g: &Geom, scratch: usize) -> Result<usize, Error> {
    let per = (g.output.h * g.output.w)
        .saturating_mul(g.k * g.k)
        .saturating_mul(g.input.c);
    if scratch < per {
        return Err(Error::BufferLen {
            buffer: "conv2d im2col scratch",
            expected: per,
            actual: scratch,
        });
    }
    Ok(scratch / per)
}

#[allow(clippy::too_many_arguments)]
fn forward_im2col(
    g: &Geom,
    n: usize,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    y: &mut [f32],
    scratch: &mut [f32],
    gemm: &dyn Gemm,
) -> Result<(), Error> {
    let per_img = group(g, scratch.len())?;
    let kk = g.k * g.k * g.input.c;
    let p = g.output.h * g.output.w;
    let wm = MatRef::row_major(w, kk, g.output.c)?;
    let mut start = 0;
    while start < n {
        let cnt = per_img.min(n - start);
        let col = &mut scratch[..cnt * p * kk];
        build_col(
            g,
            &x[start * g.input.len()..(start + cnt) * g.input.len()],
            cnt,
            col,
        );
        let yo = &mut y[start * g.output.len()..(start + cnt) * g.output.len()];
        gemm.gemm(
            col_view(g, col, cnt * p)?,
            wm,
            MatMut::row_major(yo, cnt * p, g.output.c)?,
            false,
        )?;
        add_bias(yo, b);
        start += cnt;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn backward_im2col(
    g: &Geom,
    n: usize,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    mut dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: &mut [f32],
    scratch: &mut [f32],
    gemm: &dyn Gemm,
) -> Result<(), Error> {
    let per_img = group(g, scratch.len())?;
    let (kk, cout) = (g.k * g.k * g.input.c, g.output.c);
    let p = g.output.h * g.output.w;
    for row in dy.chunks_exact(cout) {
        for (a, v) in db.iter_mut().zip(row) {
            *a += v;
        }
    }
    let mut start = 0;
    while start < n {
        let cnt = per_img.min(n - start);
        let rows = cnt * p;
        let col = &mut scratch[..rows * kk];
        let dyg = MatRef::row_major(
            &dy[start * g.output.len()..(start + cnt) * g.output.len()],
            rows,
            cout,
        )?;
        build_col(
            g,
            &x[start * g.input.len()..(start + cnt) * g.input.len()],
            cnt,
            col,
        );
        // dw[kk, cout] += col^T[kk, rows] · dy[rows, cout]
        gemm.gemm(
            col_view(g, col, rows)?.t(),
            dyg,
            MatMut::row_major(dw, kk, cout)?,
            true,
        )?;
        if let Some(dx) = dx.as_deref_mut() {
            // dcol[rows, kk] = dy[rows, cout] · w^T[cout, kk], then scattered back.
            let wt = MatRef::row_major(w, kk, cout)?.t();
            let dxg = &mut dx[start * g.input.len()..(start + cnt) * g.input.len()];
            dxg.fill(0.0);
            if transposed(g) {
                // dcol_t[kk, rows] = w[kk, cout] · dy^T[cout, rows]
                let wm = MatRef::row_major(w, kk, cout)?;
                gemm.gemm(wm, dyg.t(), MatMut::row_major(col, kk, rows)?, false)?;
                col2im_t(g, col, cnt, dxg);
            } else {
                gemm.gemm(dyg, wt, MatMut::row_major(col, rows, kk)?, false)?;
                col2im(g, col, dxg);
            }
        }
        start += cnt;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::gemm::PortableGemm;
    use crate::testutil::{check_grad, dot, rand_vec};
    use std::vec;

    const CASES: [(usize, usize, usize, usize, Padding); 9] = [
        // (h=w, cin, k, stride, padding); cout = 3. One-channel stride-1 cases take the
        // transposed im2col layout.
        (6, 1, 3, 1, Padding::Same),
        (5, 1, 2, 1, Padding::Same),
        (7, 1, 3, 1, Padding::Valid),
        (4, 1, 5, 1, Padding::Same),
        (5, 2, 3, 1, Padding::Same),
        (6, 1, 3, 2, Padding::Same),
        (7, 2, 2, 2, Padding::Same),
        (5, 2, 3, 1, Padding::Valid),
        (7, 3, 3, 2, Padding::Valid),
    ];

    #[test]
    fn gradients_match_finite_differences() {
        for (ci, &(hw, cin, k, s, pad)) in CASES.iter().enumerate() {
            let conv = Conv2d::with(k, s, pad, 3);
            let input = Shape::new(hw, hw, cin);
            let out = conv.output_shape(input).unwrap();
            let n = 2;
            let x = rand_vec(1, n * input.len(), 1.0);
            let w = rand_vec(2, conv.weight_len(input), 0.5);
            let b = rand_vec(3, 3, 0.5);
            let r = rand_vec(4, n * out.len(), 1.0);
            let loss = |x: &[f32], w: &[f32], b: &[f32]| {
                let mut y = vec![0.0; n * out.len()];
                conv.forward(
                    input,
                    n,
                    x,
                    w,
                    b,
                    &mut y,
                    ConvAlgo::Direct,
                    &mut [],
                    &PortableGemm,
                )
                .unwrap();
                dot(&y, &r)
            };
            let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; 3]);
            conv.backward(
                input,
                n,
                &x,
                &w,
                &r,
                Some(&mut dx),
                &mut dw,
                &mut db,
                ConvAlgo::Direct,
                &mut [],
                &PortableGemm,
            )
            .unwrap();
            check_grad(&std::format!("conv{ci} dx"), &x, &dx, 1e-2, 2e-3, |x| {
                loss(x, &w, &b)
            });
            check_grad(&std::format!("conv{ci} dw"), &w, &dw, 1e-2, 2e-3, |w| {
                loss(&x, w, &b)
            });
            check_grad(&std::format!("conv{ci} db"), &b, &db, 1e-2, 2e-3, |b| {
                loss(&x, &w, b)
            });
        }
    }

    #[test]
    fn split_backward_equals_direct_backward() {
        for (i, (conv, input)) in [
            (Conv2d::new(5, 4), Shape::new(7, 6, 3)),
            (Conv2d::with(3, 2, Padding::Valid, 5), Shape::new(8, 9, 2)),
            (Conv2d::with(3, 2, Padding::Same, 2), Shape::new(5, 5, 1)),
        ]
        .into_iter()
        .enumerate()
        {
            let out = conv.output_shape(input).unwrap();
            let n = 2;
            let s = 40 + 10 * i as u64;
            let x = rand_vec(s, n * input.len(), 1.0);
            let w = rand_vec(s + 1, conv.weight_len(input), 0.5);
            let dy = rand_vec(s + 2, n * out.len(), 1.0);
            let (mut dx, mut dw, mut db) = (
                vec![0.0; x.len()],
                vec![0.0; w.len()],
                vec![0.0; conv.filters],
            );
            conv.backward(
                input,
                n,
                &x,
                &w,
                &dy,
                Some(&mut dx),
                &mut dw,
                &mut db,
                ConvAlgo::Direct,
                &mut [],
                &PortableGemm,
            )
            .unwrap();
            let mut dx2 = vec![7.0; x.len()];
            conv.backward_input(input, n, &w, &dy, &mut dx2).unwrap();
            assert_eq!(dx, dx2, "case {i}: input gradient");
            let mut all = vec![f32::NAN; w.len() + conv.filters];
            let mut next = 0;
            conv.each_param_gradient(input, n, &x, &dy, |j, g| {
                assert_eq!(j, next);
                next += 1;
                all[j] = g;
            })
            .unwrap();
            assert_eq!(next, all.len());
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<std::vec::Vec<_>>();
            assert_eq!(
                bits(&all[..w.len()]),
                bits(&dw),
                "case {i}: weight gradient"
            );
            assert_eq!(bits(&all[w.len()..]), bits(&db), "case {i}: bias gradient");
            assert!(conv
                .backward_input(input, n, &w, &dy, &mut dx2[1..])
                .is_err());
            assert!(conv
                .each_param_gradient(input, n, &x[1..], &dy, |_, _| {})
                .is_err());
        }
    }

    #[test]
    fn im2col_equals_direct() {
        for &(hw, cin, k, s, pad) in CASES.iter() {
            let conv = Conv2d::with(k, s, pad, 3);
            let input = Shape::new(hw, hw, cin);
            let out = conv.output_shape(input).unwrap();
            let n = 3;
            let x = rand_vec(5, n * input.len(), 1.0);
            let w = rand_vec(6, conv.weight_len(input), 0.5);
            let b = rand_vec(7, 3, 0.5);
            let dy = rand_vec(8, n * out.len(), 1.0);
            let mut y_ref = vec![0.0; n * out.len()];
            conv.forward(
                input,
                n,
                &x,
                &w,
                &b,
                &mut y_ref,
                ConvAlgo::Direct,
                &mut [],
                &PortableGemm,
            )
            .unwrap();
            let (mut dx_ref, mut dw_ref, mut db_ref) =
                (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; 3]);
            conv.backward(
                input,
                n,
                &x,
                &w,
                &dy,
                Some(&mut dx_ref),
                &mut dw_ref,
                &mut db_ref,
                ConvAlgo::Direct,
                &mut [],
                &PortableGemm,
            )
            .unwrap();
            // One image per product, two, and the whole batch at once.
            for images in [1, 2, 3] {
                let mut scratch = vec![0.0; conv.im2col_len(input) * images];
                let mut y = vec![0.0; n * out.len()];
                conv.forward(
                    input,
                    n,
                    &x,
                    &w,
                    &b,
                    &mut y,
                    ConvAlgo::Im2col,
                    &mut scratch,
                    &PortableGemm,
                )
                .unwrap();
                let (mut dx, mut dw, mut db) =
                    (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; 3]);
                conv.backward(
                    input,
                    n,
                    &x,
                    &w,
                    &dy,
                    Some(&mut dx),
                    &mut dw,
                    &mut db,
                    ConvAlgo::Im2col,
                    &mut scratch,
                    &PortableGemm,
                )
                .unwrap();
                for (a, b) in y
                    .iter()
                    .zip(&y_ref)
                    .chain(dx.iter().zip(&dx_ref))
                    .chain(dw.iter().zip(&dw_ref))
                    .chain(db.iter().zip(&db_ref))
                {
                    assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn bad_buffers_are_errors() {
        let conv = Conv2d::new(3, 2);
        let input = Shape::new(4, 4, 1);
        let x = [0.0; 16];
        let w = [0.0; 18];
        let mut y = [0.0; 32];
        let g = &PortableGemm;
        assert!(conv
            .forward(
                input,
                1,
                &x,
                &w,
                &[0.0; 2],
                &mut y,
                ConvAlgo::Direct,
                &mut [],
                g
            )
            .is_ok());
        assert!(matches!(
            conv.forward(
                input,
                1,
                &x,
                &w[..17],
                &[0.0; 2],
                &mut y,
                ConvAlgo::Direct,
                &mut [],
                g
            ),
            Err(Error::BufferLen {
                buffer: "conv2d weights",
                expected: 18,
                actual: 17
            })
        ));
        assert!(conv
            .forward(
                input,
                2,
                &x,
                &w,
                &[0.0; 2],
                &mut y,
                ConvAlgo::Direct,
                &mut [],
                g
            )
            .is_err());
        assert!(conv
            .forward(
                input,
                1,
                &x,
                &w,
                &[0.0; 2],
                &mut y,
                ConvAlgo::Im2col,
                &mut [0.0; 10],
                g
            )
            .is_err());
        let big = Conv2d::with(5, 1, Padding::Valid, 2);
        assert!(matches!(
            big.forward(
                input,
                1,
                &x,
                &[0.0; 50],
                &[0.0; 2],
                &mut y,
                ConvAlgo::Direct,
                &mut [],
                g
            ),
            Err(Error::Shape {
                reason: ShapeError::WindowLargerThanInput,
                ..
            })
        ));
    }
}
