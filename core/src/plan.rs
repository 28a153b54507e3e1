//! Planned inference: every activation in one arena, placed by a `const fn` memory plan,
//! and conv2d [+ ReLU] + max-pool computed row band by row band, so that a convolution's
//! whole output (the largest tensor of a typical CNN) never exists. The idea of
//! MCUNetV2's patch-based inference, here along rows only.
//!
//! The plan walks the layers in steps ([`Step`]): a fused run, an alias (flatten and
//! dropout, in place) or a single layer. The network's input is at the start of the
//! arena; each step that computes writes its output at the other end of the arena from
//! its input, and a fused step's row band (the convolution rows one pooled row needs:
//! `pool size x ow x cout` values) sits right after whichever of the two is at the start.
//! Everything older is dead by then. The arena is the largest `input + band + output`
//! of any step ([`Arch::planned_len`]); for the shipped `SMALL` model that is 2,800
//! values (the first step: 784 input, 448 band, 1,568 pooled output) where the two
//! ping-pong buffers of [`crate::net::infer`] take 12,544.
//!
//! The results are bit-identical to [`crate::net::infer`] with [`Exec::REFERENCE`] and
//! to [`crate::quant::infer_i8`]: every output value is computed by the same code in the
//! same summation order (the row functions the whole-image passes are made of); only
//! where the values live changes (tested below against the layer-at-a-time passes on
//! random networks).

use crate::arch::Arch;
use crate::error::{check_len, Error};
use crate::layers::conv2d::int8::{self as conv2d_i8, MAX_PATCH};
use crate::layers::{relu, Exec, Fusion, Layer, Mode, Site, Step};
use crate::quant::{QLayer, QNet};
use crate::shape::Shape;

/// One region of the arena: `len` elements from `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First element.
    pub start: usize,
    /// Number of elements.
    pub len: usize,
}

impl Region {
    const fn new(start: usize, len: usize) -> Self {
        Region { start, len }
    }

    /// The element after the last.
    pub const fn end(&self) -> usize {
        self.start + self.len
    }
}

/// Where one step of planned inference reads and writes (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// How the step runs.
    pub step: Step,
    /// Index of the step's first layer.
    pub first: usize,
    /// Number of layers the step covers.
    pub layers: usize,
    /// The step's input (`batch` samples).
    pub input: Region,
    /// The step's output (`batch` samples); the input itself for an alias.
    pub output: Region,
    /// The row band of a fused step (empty otherwise).
    pub band: Region,
}

/// Values of a fused step's row band: the convolution rows one pooled row reads.
const fn band_len(f: &Fusion, conv_out: Shape) -> usize {
    let rows = if f.pool.size < conv_out.h {
        f.pool.size
    } else {
        conv_out.h
    };
    rows.saturating_mul(conv_out.w).saturating_mul(conv_out.c)
}

impl<'a> Arch<'a> {
    /// Number of layers step `step` at layer `i` covers.
    const fn step_layers(step: Step) -> usize {
        match step {
            Step::Fused(f) => f.len,
            _ => 1,
        }
    }

    /// Input length, output length (for `batch` samples) and band length of the step at
    /// layer `i`, or `None` if the architecture is invalid.
    const fn step_sizes(&self, batch: usize, i: usize) -> Option<(Step, usize, usize, usize)> {
        let step = Layer::step_at(self.layers, i);
        let last = i + Self::step_layers(step) - 1;
        let (ins, conv_out) = match self.layer_io(i) {
            Ok(io) => io,
            Err(_) => return None,
        };
        let outs = match self.layer_io(last) {
            Ok((_, o)) => o,
            Err(_) => return None,
        };
        let band = match step {
            Step::Fused(f) => band_len(&f, conv_out),
            _ => 0,
        };
        Some((
            step,
            ins.len().saturating_mul(batch),
            outs.len().saturating_mul(batch),
            band,
        ))
    }

    /// Elements of the arena of planned inference ([`crate::plan::infer_planned`],
    /// [`crate::plan::infer_planned_i8`]) for `batch` samples, input included: the
    /// largest `input + row band + output` of any step (0 for an invalid architecture).
    pub const fn planned_len(&self, batch: usize) -> usize {
        if !self.is_valid() {
            return 0;
        }
        let mut m = self.input.len().saturating_mul(batch);
        let mut i = 0;
        while i < self.layers.len() {
            let Some((step, ins, outs, band)) = self.step_sizes(batch, i) else {
                return 0;
            };
            if !matches!(step, Step::Alias) {
                let need = ins.saturating_add(band).saturating_add(outs);
                if need > m {
                    m = need;
                }
            }
            i += Self::step_layers(step);
        }
        m
    }

    /// Where the step that starts at layer `i` reads and writes in the arena of
    /// [`Arch::planned_len`]`(batch)` elements; `None` if no step starts at `i` (it is
    /// inside a fused run, or past the end) or the architecture is invalid.
    pub const fn placement(&self, batch: usize, i: usize) -> Option<Placement> {
        let arena = self.planned_len(batch);
        if arena == 0 {
            return None;
        }
        // The input is at the start; `low` says whether the live tensor is there.
        let mut cur = Region::new(0, self.input.len().saturating_mul(batch));
        let mut low = true;
        let mut j = 0;
        while j < self.layers.len() {
            let Some((step, ins, outs, band)) = self.step_sizes(batch, j) else {
                return None;
            };
            let input = Region::new(cur.start, ins);
            let (output, band) = match step {
                Step::Alias => (Region::new(cur.start, outs), Region::new(cur.start, 0)),
                _ if low => (Region::new(arena - outs, outs), Region::new(ins, band)),
                _ => (Region::new(0, outs), Region::new(outs, band)),
            };
            let layers = Self::step_layers(step);
            if j == i {
                return Some(Placement {
                    step,
                    first: j,
                    layers,
                    input,
                    output,
                    band,
                });
            }
            if !matches!(step, Step::Alias) {
                low = !low;
            }
            cur = output;
            j += layers;
        }
        None
    }

    /// Elements at the start of the planned arena that receive the input batch
    /// (`batch * input.len()`).
    pub const fn planned_input_len(&self, batch: usize) -> usize {
        self.input.len().saturating_mul(batch)
    }
}

/// The input (read), band and output (written) of one step.
type Parts<'b, T> = (&'b [T], &'b mut [T], &'b mut [T]);

/// The arena's regions `x` (read), `band` and `y` (written), which the plan keeps
/// disjoint; an error (not a panic) if they were not.
fn split<'b, T>(
    arena: &'b mut [T],
    x: Region,
    band: Region,
    y: Region,
) -> Result<Parts<'b, T>, Error> {
    let mut order = [(x, 0usize), (band, 1), (y, 2)];
    // An empty band sorts before a region that starts where it does.
    order.sort_unstable_by_key(|(r, _)| (r.start, r.end()));
    let mut parts: [&'b mut [T]; 3] = [&mut [], &mut [], &mut []];
    let mut rest = arena;
    let mut at = 0;
    let bad = Error::InvalidParameter {
        name: "planned arena (regions overlap or pass its end)",
    };
    for (r, k) in order {
        let skip = r.start.checked_sub(at).ok_or(bad)?;
        let (_, tail) = core::mem::take(&mut rest)
            .split_at_mut_checked(skip)
            .ok_or(bad)?;
        let (part, tail) = tail.split_at_mut_checked(r.len).ok_or(bad)?;
        if let Some(slot) = parts.get_mut(k) {
            *slot = part;
        }
        rest = tail;
        at = r.end();
    }
    let [px, pb, py] = parts;
    Ok((px, pb, py))
}

/// Checks what both planned passes need and returns the arena length.
fn check_planned(arch: &Arch<'_>, n: usize, arena: usize) -> Result<(), Error> {
    arch.validate()?;
    if n == 0 {
        return Err(Error::EmptyBatch);
    }
    Error::expect_len("planned inference arena", arch.planned_len(n), arena)
}

/// One step of planned inference with everything it needs worked out: its placement,
/// its first layer, its shapes and (float) where its parameters are. [`Arch::plan`]
/// computes a whole network's at compile time, so that a firmware runs its steps
/// ([`step_f32`], [`step_i8`]) with constants: no plan, shape or offset is computed on
/// the device, and only the kernels its layers use are linked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Planned {
    /// Where the step reads and writes.
    pub place: Placement,
    /// The step's first layer (the convolution of a fused step).
    pub layer: Layer,
    /// Shape of one input sample of the step.
    pub in_shape: Shape,
    /// Shape of one output sample of the first layer (the convolution's, before the
    /// pool, for a fused step).
    pub mid_shape: Shape,
    /// Shape of one output sample of the step.
    pub out_shape: Shape,
    /// The first layer's float weights in the parameter buffer (empty without any).
    pub weights: Region,
    /// The first layer's float biases in the parameter buffer.
    pub bias: Region,
    /// Samples per pass.
    pub batch: usize,
}

/// A placeholder (a ReLU on nothing) that [`Arch::plan`] overwrites.
const NO_STEP: Planned = Planned {
    place: Placement {
        step: Step::Single,
        first: 0,
        layers: 0,
        input: Region::new(0, 0),
        output: Region::new(0, 0),
        band: Region::new(0, 0),
    },
    layer: Layer::Relu,
    in_shape: Shape::new(0, 0, 0),
    mid_shape: Shape::new(0, 0, 0),
    out_shape: Shape::new(0, 0, 0),
    weights: Region::new(0, 0),
    bias: Region::new(0, 0),
    batch: 0,
};

impl<'a> Arch<'a> {
    /// The step that starts at layer `i` for `batch` samples, worked out; `None` where
    /// [`Arch::placement`] has none.
    pub const fn planned_step(&self, batch: usize, i: usize) -> Option<Planned> {
        let Some(place) = self.placement(batch, i) else {
            return None;
        };
        let (Ok((in_shape, mid_shape)), Ok((_, out_shape))) =
            (self.layer_io(i), self.layer_io(i + place.layers - 1))
        else {
            return None;
        };
        let layer = self.layers[i];
        let start = self.param_offset(i);
        let wl = layer.weight_len(in_shape);
        let pl = layer.param_len(in_shape);
        Some(Planned {
            place,
            layer,
            in_shape,
            mid_shape,
            out_shape,
            weights: Region::new(start, wl),
            bias: Region::new(start + wl, pl - wl),
            batch,
        })
    }

    /// Steps of planned inference that compute (aliases, which only rename, are left
    /// out): the length of [`Arch::plan`]'s array (0 for an invalid architecture).
    pub const fn plan_len(&self, batch: usize) -> usize {
        if self.planned_len(batch) == 0 {
            return 0;
        }
        let (mut i, mut n) = (0, 0);
        while i < self.layers.len() {
            let step = Layer::step_at(self.layers, i);
            if !matches!(step, Step::Alias) {
                n += 1;
            }
            i += Self::step_layers(step);
        }
        n
    }

    /// Every step that computes, in order, for `batch` samples: `N` must be
    /// [`Arch::plan_len`]`(batch)` (`None` otherwise, or for an invalid architecture).
    /// Meant for a `const`, so that the whole plan is worked out by the compiler:
    ///
    /// ```
    /// use microconv::archs::SMALL;
    /// use microconv::plan::Planned;
    ///
    /// const STEPS: usize = SMALL.plan_len(1);
    /// const PLAN: [Planned; STEPS] = SMALL.plan::<STEPS>(1).unwrap();
    /// assert_eq!(STEPS, 4); // three conv + ReLU + pool runs, the dense layer
    /// assert_eq!(PLAN[3].place.first, 10);
    /// ```
    pub const fn plan<const N: usize>(&self, batch: usize) -> Option<[Planned; N]> {
        if self.plan_len(batch) != N || N == 0 {
            return None;
        }
        let mut out = [NO_STEP; N];
        let (mut i, mut k) = (0, 0);
        while i < self.layers.len() {
            let step = Layer::step_at(self.layers, i);
            if !matches!(step, Step::Alias) {
                match self.planned_step(batch, i) {
                    Some(p) => out[k] = p,
                    None => return None,
                }
                k += 1;
            }
            i += Self::step_layers(step);
        }
        Some(out)
    }

    /// Where the logits are in the arena after planned inference of `batch` samples.
    pub const fn planned_output(&self, batch: usize) -> Region {
        let mut out = Region::new(0, self.planned_input_len(batch));
        let mut i = 0;
        while i < self.layers.len() {
            match self.placement(batch, i) {
                Some(p) => {
                    out = p.output;
                    i += p.layers;
                }
                None => return Region::new(0, 0),
            }
        }
        out
    }

    /// Words of scratch the int8 convolutions of planned inference need ([`step_i8`]):
    /// the largest of their patches (0 without convolutions).
    pub const fn planned_scratch_i8(&self) -> usize {
        let mut m = 0;
        let mut i = 0;
        while i < self.layers.len() {
            if let (Layer::Conv2d(c), Ok((ins, _))) = (self.layers[i], self.layer_io(i)) {
                let w = conv2d_i8::scratch_words(c.kernel * c.kernel * ins.c);
                if w > m {
                    m = w;
                }
            }
            i += 1;
        }
        m
    }
}

/// The first layer's float weights and biases of step `p` in `params`.
fn step_params<'p>(params: &'p [f32], p: &Planned) -> Result<(&'p [f32], &'p [f32]), Error> {
    let get = |r: Region| {
        params.get(r.start..r.end()).ok_or(Error::BufferLen {
            buffer: "params",
            expected: r.end(),
            actual: params.len(),
        })
    };
    Ok((get(p.weights)?, get(p.bias)?))
}

/// The [`Site`] of step `p`'s first layer.
const fn site(p: &Planned) -> Site {
    Site {
        index: p.place.first,
        input: p.in_shape,
        output: p.mid_shape,
        n: p.batch,
    }
}

/// Runs one planned float step (from [`Arch::plan`] or [`Arch::planned_step`]) in
/// `arena` with the network's parameters `params`. Inlined, so that a step known at
/// compile time calls only its own kernel.
#[inline(always)]
pub fn step_f32(params: &[f32], p: &Planned, arena: &mut [f32]) -> Result<(), Error> {
    if p.place.step == Step::Alias {
        return Ok(());
    }
    let (x, band, y) = split(arena, p.place.input, p.place.band, p.place.output)?;
    let wb = step_params(params, p)?;
    match p.place.step {
        Step::Fused(f) => fused(p, &f, wb, x, band, y),
        _ => p
            .layer
            .forward(&site(p), x, wb, y, Mode::Eval, &Exec::REFERENCE, &mut []),
    }
}

/// Runs one planned int8 step of `net` in `arena` (the plan's regions), the convolution
/// patches in `scratch` ([`Arch::planned_scratch_i8`] words). The fast convolution
/// kernel only: a `scratch` too short for it is an error. Inlined, so that a step known
/// at compile time calls only its own kernel.
#[inline(always)]
pub fn step_i8(
    net: &QNet<'_>,
    p: &Planned,
    arena: &mut [i8],
    scratch: &mut [u32],
) -> Result<(), Error> {
    step_i8_with::<false>(net, p, arena, scratch)
}

/// [`step_i8`]; with `FALLBACK`, a convolution whose patches do not fit `scratch` runs
/// the reference kernel instead (what [`infer_planned_i8`] needs, whose scratch has a
/// fixed size); without, it is an error, so that the reference is not linked.
#[inline(always)]
fn step_i8_with<const FALLBACK: bool>(
    net: &QNet<'_>,
    p: &Planned,
    arena: &mut [i8],
    scratch: &mut [u32],
) -> Result<(), Error> {
    let first = p.place.first;
    if p.place.step == Step::Alias {
        return Ok(());
    }
    let layer_q = |i: usize| {
        net.layers.get(i).ok_or(Error::BufferLen {
            buffer: "int8 layers",
            expected: i + 1,
            actual: net.layers.len(),
        })
    };
    let l = layer_q(first)?;
    let z_in = match first.checked_sub(1) {
        None => net.input.zero,
        Some(prev) => layer_q(prev)?.output.zero,
    };
    let (x, band, y) = split(arena, p.place.input, p.place.band, p.place.output)?;
    match (p.place.step, p.layer) {
        (Step::Fused(f), _) => fused_i8::<FALLBACK>(p, &f, l, z_in, x, band, y, scratch),
        (_, Layer::Conv2d(c)) => {
            let io = (p.in_shape, p.mid_shape);
            let xs = x.chunks_exact(io.0.len().max(1)).take(p.batch);
            for (xi, yi) in xs.zip(y.chunks_exact_mut(io.1.len().max(1))) {
                conv_rows_i8::<FALLBACK>(&c, io, l, z_in, xi, 0..io.1.h, yi, scratch)?;
            }
            Ok(())
        }
        _ => {
            // As in `infer_i8`: a ReLU after a layer whose clamp already did it changes
            // no value (here it still moves to its planned place).
            let prev_clamped = match first.checked_sub(1) {
                Some(prev) => {
                    let q = layer_q(prev)?;
                    q.act_min as i32 >= q.output.zero
                }
                None => false,
            };
            if first > 0 && p.layer.int8_identity(prev_clamped) {
                check_len("int8 step output", y, x.len())?;
                y.copy_from_slice(x);
                Ok(())
            } else {
                p.layer.forward_i8(&site(p), l, z_in, x, y)
            }
        }
    }
}

/// Rows of one image's int8 convolution: the fast kernel, or with `FALLBACK` the
/// reference where the fast one cannot run.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn conv_rows_i8<const FALLBACK: bool>(
    c: &crate::layers::Conv2d,
    io: (Shape, Shape),
    l: &QLayer<'_>,
    z_in: i32,
    x: &[i8],
    rows: core::ops::Range<usize>,
    band: &mut [i8],
    scratch: &mut [u32],
) -> Result<(), Error> {
    if FALLBACK {
        conv2d_i8::forward_rows(c, io, l, z_in, x, rows, band, scratch)
    } else {
        conv2d_i8::forward_rows_fast(c, io, l, z_in, x, rows, band, scratch)
    }
}

/// The arena's region `r` (the logits, after the last step): an error, not a panic, if
/// it is not inside.
pub fn region<T>(arena: &[T], r: Region) -> Result<&[T], Error> {
    arena.get(r.start..r.end()).ok_or(Error::BufferLen {
        buffer: "planned inference arena",
        expected: r.end(),
        actual: arena.len(),
    })
}

/// The worked-out step at layer `i` (an error if the plan has none).
fn planned(arch: &Arch<'_>, n: usize, i: usize) -> Result<Planned, Error> {
    arch.planned_step(n, i).ok_or(Error::InvalidParameter {
        name: "memory plan (no step starts at this layer)",
    })
}

/// Float inference over `n` samples in one arena ([`Arch::planned_len`]`(n)` elements)
/// whose first [`Arch::planned_input_len`]`(n)` elements hold the input batch (`[n,
/// input]`; overwritten as the pass goes); returns the logits `[n, classes]`, a part of
/// the arena. The same values as [`crate::net::infer`] with [`Exec::REFERENCE`]. The
/// plan is worked out as the pass goes ([`Arch::planned_step`]); a firmware runs its
/// model's, worked out at compile time, with [`step_f32`].
///
/// ```
/// use microconv::archs::SMALL;
/// use microconv::plan::infer_planned;
///
/// let params = vec![0.01f32; SMALL.param_count()];
/// let mut arena = [0.0f32; SMALL.planned_len(1)];
/// assert!(SMALL.planned_len(1) < SMALL.inference_len(1) / 4);
/// arena[..SMALL.planned_input_len(1)].fill(0.5); // the image
/// let logits = infer_planned(&SMALL, &params, 1, &mut arena).unwrap();
/// assert_eq!(logits.len(), 10);
/// ```
pub fn infer_planned<'b>(
    arch: &Arch<'_>,
    params: &[f32],
    n: usize,
    arena: &'b mut [f32],
) -> Result<&'b [f32], Error> {
    check_planned(arch, n, arena.len())?;
    check_len("params", params, arch.param_count())?;
    let mut i = 0;
    while i < arch.layers.len() {
        let p = planned(arch, n, i)?;
        step_f32(params, &p, arena)?;
        i += p.place.layers;
    }
    region(arena, arch.planned_output(n))
}

/// A fused float step `p`: for every image and pooled row, the convolution rows that
/// row reads into `band`, the ReLU on them, then the pooled row.
fn fused(
    p: &Planned,
    f: &Fusion,
    wb: (&[f32], &[f32]),
    x: &[f32],
    band: &mut [f32],
    y: &mut [f32],
) -> Result<(), Error> {
    let (ins, conv_out, outs) = (p.in_shape, p.mid_shape, p.out_shape);
    let (row, prow) = (conv_out.w * conv_out.c, outs.w * outs.c);
    for (xi, yi) in x
        .chunks_exact(ins.len().max(1))
        .zip(y.chunks_exact_mut(outs.len().max(1)))
        .take(p.batch)
    {
        for (oy, yr) in yi.chunks_exact_mut(prow.max(1)).enumerate() {
            let rows = f.pool.input_rows(conv_out, oy);
            let b = band_rows(band, rows.len() * row)?;
            f.conv.forward_rows(ins, xi, wb, rows, b)?;
            if f.relu {
                relu::forward_in_place(b);
            }
            f.pool.forward_row(conv_out, oy, b, yr)?;
        }
    }
    Ok(())
}

/// The first `len` elements of the row band (an error if it is shorter).
fn band_rows<T>(band: &mut [T], len: usize) -> Result<&mut [T], Error> {
    let have = band.len();
    band.get_mut(..len).ok_or(Error::BufferLen {
        buffer: "row band",
        expected: len,
        actual: have,
    })
}

/// Int8 inference over `n` samples in one arena ([`Arch::planned_len`]`(n)` bytes)
/// whose first [`Arch::planned_input_len`]`(n)` bytes hold the input batch, already
/// quantized with `net.input`; returns the int8 logits, a part of the arena. The same
/// values as [`crate::quant::infer_i8`]. The convolutions' patches are on the stack
/// (4.6 KB; a receptive field larger than [`MAX_PATCH`] runs the reference kernel); a
/// firmware runs its model's plan, worked out at compile time, with [`step_i8`] and
/// scratch sized for the model instead.
pub fn infer_planned_i8<'b>(
    net: &QNet<'_>,
    n: usize,
    arena: &'b mut [i8],
) -> Result<&'b [i8], Error> {
    let arch = &net.arch;
    check_planned(arch, n, arena.len())?;
    check_len("int8 layers", net.layers, arch.layers.len())?;
    let mut scratch = [0u32; conv2d_i8::scratch_words(MAX_PATCH)];
    let mut i = 0;
    while i < arch.layers.len() {
        let p = planned(arch, n, i)?;
        step_i8_with::<true>(net, &p, arena, &mut scratch)?;
        i += p.place.layers;
    }
    region(arena, arch.planned_output(n))
}

/// A fused int8 step `p` (see [`fused`]); the ReLU only where the convolution's clamp
/// has not already done it, as in [`crate::quant::infer_i8`].
#[allow(clippy::too_many_arguments)]
fn fused_i8<const FALLBACK: bool>(
    p: &Planned,
    f: &Fusion,
    conv: &QLayer<'_>,
    z_in: i32,
    x: &[i8],
    band: &mut [i8],
    y: &mut [i8],
    scratch: &mut [u32],
) -> Result<(), Error> {
    let (ins, conv_out, outs) = (p.in_shape, p.mid_shape, p.out_shape);
    let relu_z = conv.output.zero;
    let relu = f.relu && (conv.act_min as i32) < relu_z;
    let (row, prow) = (conv_out.w * conv_out.c, outs.w * outs.c);
    for (xi, yi) in x
        .chunks_exact(ins.len().max(1))
        .zip(y.chunks_exact_mut(outs.len().max(1)))
        .take(p.batch)
    {
        for (oy, yr) in yi.chunks_exact_mut(prow.max(1)).enumerate() {
            let rows = f.pool.input_rows(conv_out, oy);
            let b = band_rows(band, rows.len() * row)?;
            let io = (ins, conv_out);
            conv_rows_i8::<FALLBACK>(&f.conv, io, conv, z_in, xi, rows, b, scratch)?;
            if relu {
                relu::forward_in_place_i8(relu_z, b);
            }
            f.pool.forward_row_i8(conv_out, oy, b, yr)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::archs::SMALL;
    use crate::layers::{Conv2d, Dense, Dropout, MaxPool};
    use crate::quant::{infer_i8, QLayer, QParams, QTensors};
    use crate::rng::Rng;
    use crate::shape::Padding;
    use crate::testutil::rand_vec;
    use std::vec::Vec;

    fn pad(r: &mut Rng) -> Padding {
        if r.below(2) == 0 {
            Padding::Same
        } else {
            Padding::Valid
        }
    }

    /// A random layer list: blocks of conv [+ ReLU] [+ pool], lone ReLUs, pools and
    /// dropouts, then flatten, dense [+ ReLU] and a dense head.
    fn random_layers(r: &mut Rng) -> Vec<Layer> {
        let mut v = Vec::new();
        for _ in 0..1 + r.below(4) {
            match r.below(6) {
                0 => v.push(Layer::Relu),
                1 => v.push(Layer::MaxPool(MaxPool::new(
                    1 + r.below(3),
                    1 + r.below(3),
                    pad(r),
                ))),
                2 => v.push(Layer::Dropout(Dropout::new(0.5))),
                _ => {
                    let (k, s) = (1 + r.below(4), 1 + r.below(2));
                    v.push(Layer::Conv2d(Conv2d::with(k, s, pad(r), 1 + r.below(6))));
                    if r.below(3) > 0 {
                        v.push(Layer::Relu);
                    }
                    if r.below(4) > 0 {
                        let size = 1 + r.below(3);
                        let stride = 1 + r.below(size + 1);
                        v.push(Layer::MaxPool(MaxPool::new(size, stride, pad(r))));
                    }
                }
            }
        }
        v.push(Layer::Flatten);
        if r.below(2) == 0 {
            v.push(Layer::Dense(Dense::new(1 + r.below(8))));
            v.push(Layer::Relu);
        }
        v.push(Layer::Dense(Dense::new(1 + r.below(5))));
        v
    }

    /// Random valid architectures (with their layer lists) and a batch size each.
    fn random_archs(seed: u64, count: usize) -> Vec<(Vec<Layer>, Shape, usize)> {
        let mut r = Rng::new(seed);
        let mut out = Vec::new();
        while out.len() < count {
            let layers = random_layers(&mut r);
            let input = Shape::new(2 + r.below(11), 2 + r.below(11), 1 + r.below(3));
            if Arch::new(input, &layers).is_valid() {
                out.push((layers, input, 1 + r.below(3)));
            }
        }
        out
    }

    #[test]
    fn small_needs_a_quarter_of_the_ping_pong_buffers() {
        // 784 input + 2 x 28 x 8 band + 14 x 14 x 8 pooled output.
        assert_eq!(SMALL.planned_len(1), 784 + 448 + 1568);
        assert_eq!(SMALL.inference_len(1), 2 * 28 * 28 * 8);
        let p = SMALL.placement(1, 0).unwrap();
        assert!(matches!(p.step, Step::Fused(f) if f.relu && f.len == 3));
        assert_eq!(
            (p.input, p.band),
            (Region::new(0, 784), Region::new(784, 448))
        );
        assert_eq!(p.output, Region::new(2800 - 1568, 1568));
        // Layer 1 is inside the fused run; the second run reads what the first wrote.
        assert_eq!(SMALL.placement(1, 1), None);
        let q = SMALL.placement(1, 3).unwrap();
        assert_eq!((q.input, q.output), (p.output, Region::new(0, 784)));
        assert_eq!(q.band, Region::new(784, 2 * 14 * 16));
        const _: () = assert!(SMALL.planned_len(4) < SMALL.inference_len(4));
    }

    #[test]
    fn every_step_fits_the_arena_without_overlap() {
        for (layers, input, n) in random_archs(11, 300) {
            let arch = Arch::new(input, &layers);
            let len = arch.planned_len(n);
            let mut i = 0;
            while i < layers.len() {
                let p = arch.placement(n, i).unwrap();
                for r in [p.input, p.band, p.output] {
                    assert!(r.end() <= len, "{layers:?}");
                }
                if p.step != Step::Alias {
                    let mut arena = std::vec![0u8; len];
                    assert!(split(&mut arena, p.input, p.band, p.output).is_ok());
                }
                i += p.layers;
            }
        }
    }

    #[test]
    fn float_planned_inference_is_bit_identical_to_infer() {
        let mut fused_seen = 0;
        for (t, (layers, input, n)) in random_archs(5, 300).into_iter().enumerate() {
            let arch = Arch::new(input, &layers);
            fused_seen += (0..layers.len())
                .filter(|&i| matches!(Layer::step_at(&layers, i), Step::Fused(_)))
                .count();
            let params = rand_vec(t as u64, arch.param_count(), 0.5);
            let x = rand_vec(1000 + t as u64, n * input.len(), 1.0);
            let mut buf = std::vec![0.0; arch.inference_len(n)];
            let want =
                crate::net::infer(&arch, &params, &x, n, &mut buf, &Exec::REFERENCE, &mut [])
                    .unwrap()
                    .to_vec();
            let mut arena = std::vec![f32::NAN; arch.planned_len(n)];
            arena[..x.len()].copy_from_slice(&x);
            let got = infer_planned(&arch, &params, n, &mut arena).unwrap();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(got), bits(&want), "{layers:?} on {input:?} x {n}");
        }
        assert!(fused_seen > 200, "{fused_seen} fused runs");
    }

    /// Random int8 parameters for every layer of `arch` (outputs of layers without
    /// parameters keep their input's quantization, as the quantizer writes them).
    struct QStore {
        w: Vec<Vec<i8>>,
        b: Vec<Vec<i32>>,
        m: Vec<Vec<i32>>,
        s: Vec<Vec<i32>>,
        out: Vec<(QParams, i8)>,
    }

    fn random_qstore(arch: &Arch<'_>, r: &mut Rng) -> QStore {
        let mut st = QStore {
            w: Vec::new(),
            b: Vec::new(),
            m: Vec::new(),
            s: Vec::new(),
            out: Vec::new(),
        };
        let mut q = QParams {
            scale: 1.0 / 255.0,
            zero: -128,
        };
        for (i, l) in arch.layers.iter().enumerate() {
            let (ins, outs) = arch.layer_io(i).unwrap();
            let mut act_min = -128i8;
            if l.has_params() {
                let cout = outs.c;
                let wl = l.weight_len(ins);
                st.w.push((0..wl).map(|_| (r.below(255) as i32 - 127) as i8).collect());
                st.b.push((0..cout).map(|_| r.below(4001) as i32 - 2000).collect());
                st.m.push(
                    (0..cout)
                        .map(|_| (1 << 30) + r.below(1 << 30) as i32)
                        .collect(),
                );
                st.s.push((0..cout).map(|_| -(6 + r.below(5) as i32)).collect());
                q = QParams {
                    scale: 0.05,
                    zero: r.below(41) as i32 - 20,
                };
                // Half the layers clamp at their zero point (a fused ReLU), half do not.
                if r.below(2) == 0 {
                    act_min = q.zero as i8;
                }
            } else {
                st.w.push(Vec::new());
                st.b.push(Vec::new());
                st.m.push(Vec::new());
                st.s.push(Vec::new());
            }
            st.out.push((q, act_min));
        }
        st
    }

    fn qlayers<'s>(arch: &Arch<'_>, st: &'s QStore) -> Vec<QLayer<'s>> {
        (0..arch.layers.len())
            .map(|i| QLayer {
                params: arch.layers[i].has_params().then(|| QTensors {
                    weights: &st.w[i],
                    bias: &st.b[i],
                    multiplier: &st.m[i],
                    shift: &st.s[i],
                }),
                output: st.out[i].0,
                act_min: st.out[i].1,
                act_max: 127,
            })
            .collect()
    }

    #[test]
    fn int8_planned_inference_is_bit_identical_to_infer_i8() {
        let mut r = Rng::new(77);
        let mut archs = random_archs(9, 300);
        archs.push((SMALL.layers.to_vec(), SMALL.input, 2));
        for (layers, input, n) in archs {
            let arch = Arch::new(input, &layers);
            let st = random_qstore(&arch, &mut r);
            let ql = qlayers(&arch, &st);
            let net = QNet {
                arch,
                input: QParams {
                    scale: 1.0 / 255.0,
                    zero: -128,
                },
                layers: &ql,
            };
            let x: Vec<i8> = (0..n * input.len())
                .map(|_| (r.below(256) as i32 - 128) as i8)
                .collect();
            let mut buf = std::vec![0i8; arch.inference_len(n)];
            let want = infer_i8(&net, &x, n, &mut buf).unwrap().to_vec();
            let mut arena = std::vec![0x55i8; arch.planned_len(n)];
            arena[..x.len()].copy_from_slice(&x);
            let got = infer_planned_i8(&net, n, &mut arena).unwrap();
            assert_eq!(got, &want[..], "{layers:?} on {input:?} x {n}");
        }
    }

    #[test]
    fn bad_arenas_are_errors() {
        let params = std::vec![0.0f32; SMALL.param_count()];
        let mut short = std::vec![0.0f32; SMALL.planned_len(1) - 1];
        let e = infer_planned(&SMALL, &params, 1, &mut short).unwrap_err();
        assert!(matches!(
            e,
            Error::BufferLen {
                buffer: "planned inference arena",
                ..
            }
        ));
        let mut arena = std::vec![0.0f32; SMALL.planned_len(1)];
        assert_eq!(
            infer_planned(&SMALL, &params, 0, &mut arena),
            Err(Error::EmptyBatch)
        );
        assert!(infer_planned(&SMALL, &params[1..], 1, &mut arena).is_err());
        let mut arena = [0u8; 10];
        let r = Region::new(0, 4);
        assert!(split(&mut arena, r, Region::new(3, 2), Region::new(6, 2)).is_err());
        assert!(split(&mut arena, r, Region::new(4, 2), Region::new(8, 3)).is_err());
        assert!(split(&mut arena, r, Region::new(4, 2), Region::new(6, 4)).is_ok());
    }
}
