//! Property tests (proptest, fixed seed so CI is reproducible): shape arithmetic never
//! panics or overflows and agrees with a direct computation in 128-bit integers; the loss
//! is finite and shift-invariant for finite logits of any magnitude; every layer's
//! backward pass agrees with finite differences on random small shapes.
extern crate std;
use std::vec;
use std::vec::Vec;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use crate::error::ShapeError;
use crate::gemm::PortableGemm;
use crate::layers::{Conv2d, ConvAlgo, Dense, MaxPool};
use crate::loss::{cross_entropy_with_logits, log_softmax_cross_entropy, log_sum_exp};
use crate::shape::{window_axis, Padding, Shape};
use crate::testutil::{check_grad, dot, rand_vec};

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x6d63_6f6e_7601),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Sizes from 0 to `usize::MAX`, crowded at the small and the huge ends.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..40,
        any::<usize>(),
        (0usize..64).prop_map(|d| usize::MAX - d),
        (1usize..64).prop_map(|p| 1usize << (p % usize::BITS as usize)),
    ]
}

fn padding() -> impl Strategy<Value = Padding> {
    prop_oneof![Just(Padding::Same), Just(Padding::Valid)]
}

/// `window_axis` computed in `u128`, where nothing can overflow.
fn axis_direct(input: usize, k: usize, s: usize, p: Padding) -> Result<(usize, usize), ShapeError> {
    if input == 0 || k == 0 || s == 0 {
        return Err(ShapeError::Zero);
    }
    let (i, k, s) = (input as u128, k as u128, s as u128);
    match p {
        Padding::Same => {
            let out = i.div_ceil(s);
            let span = (out - 1) * s + k;
            if span > usize::MAX as u128 {
                return Err(ShapeError::Overflow);
            }
            Ok((out as usize, (span.saturating_sub(i) / 2) as usize))
        }
        Padding::Valid if k > i => Err(ShapeError::WindowLargerThanInput),
        Padding::Valid => Ok((((i - k) / s + 1) as usize, 0)),
    }
}

/// A layer's output shape computed directly: the window along both axes, then the
/// element count must fit `usize`.
fn window_shape_direct(
    input: Shape,
    k: usize,
    s: usize,
    p: Padding,
    c: usize,
) -> Result<Shape, ShapeError> {
    if input.h == 0 || input.w == 0 || input.c == 0 || c == 0 {
        return Err(ShapeError::Zero);
    }
    let (h, _) = axis_direct(input.h, k, s, p)?;
    let (w, _) = axis_direct(input.w, k, s, p)?;
    let n = (h as u128 * w as u128).checked_mul(c as u128);
    if n.is_none_or(|n| n > usize::MAX as u128) {
        return Err(ShapeError::Overflow);
    }
    Ok(Shape::new(h, w, c))
}

proptest! {
    #![proptest_config(config(4096))]

    #[test]
    fn window_axis_agrees_with_128_bit_arithmetic(input in size(), k in size(), s in size(), p in padding()) {
        prop_assert_eq!(window_axis(input, k, s, p), axis_direct(input, k, s, p));
    }

    #[test]
    fn conv_and_pool_shapes_agree_with_a_direct_computation(
        h in size(), w in size(), c in size(), k in size(), s in size(), f in size(), p in padding()
    ) {
        let input = Shape::new(h, w, c);
        let conv = Conv2d::with(k, s, p, f);
        prop_assert_eq!(conv.output_shape(input), window_shape_direct(input, k, s, p, f));
        let pool = MaxPool::new(k, s, p);
        prop_assert_eq!(pool.output_shape(input), window_shape_direct(input, k, s, p, c));
        // Sizes derived from a shape saturate instead of overflowing.
        let _ = (conv.weight_len(input), conv.param_len(input), conv.im2col_len(input));
        if let Ok(o) = conv.output_shape(input) {
            prop_assert!(o.checked_len().is_some());
        }
    }

    #[test]
    fn dense_shapes_need_a_flat_input_and_never_overflow(h in size(), w in size(), c in size(), units in size()) {
        let input = Shape::new(h, w, c);
        let d = Dense::new(units);
        let direct = if h == 0 || w == 0 || c == 0 || units == 0 {
            Err(ShapeError::Zero)
        } else if h != 1 || w != 1 {
            Err(ShapeError::NeedsFlatInput)
        } else {
            Ok(Shape::new(1, 1, units))
        };
        // The order of the checks may differ: both must be errors or equal shapes.
        match (d.output_shape(input), direct) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            (a, b) => prop_assert!(false, "{:?} vs {:?}", a, b),
        }
    }
}

/// Finite logits up to half of `f32::MAX` in magnitude (beyond, `x[max] - x[label]`
/// itself is not representable), at every scale.
fn logits() -> impl Strategy<Value = Vec<f32>> {
    let one = prop_oneof![
        -10.0f32..10.0,
        -1e4f32..1e4,
        -1e30f32..1e30,
        (-1.0f32..1.0).prop_map(|v| v * f32::MAX / 2.0),
        Just(0.0f32),
    ];
    prop::collection::vec(one, 1..16)
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn the_loss_is_finite_and_non_negative_for_finite_logits(x in logits(), t in any::<prop::sample::Index>()) {
        let label = t.index(x.len());
        let mut dx = vec![0.0; x.len()];
        let l = cross_entropy_with_logits(&x, label, 1.0, Some(&mut dx)).unwrap();
        prop_assert!(l.is_finite() && l >= 0.0, "loss {l}");
        prop_assert!(dx.iter().all(|d| d.is_finite() && d.abs() <= 1.0), "{dx:?}");
        // The gradient of softmax cross-entropy sums to zero.
        let sum: f64 = dx.iter().map(|&d| d as f64).sum();
        prop_assert!(sum.abs() <= 1e-5, "{sum}");
        let mut tmp = vec![0.0; x.len()];
        let l2 = log_softmax_cross_entropy(&x, label, 1.0, None, &mut tmp).unwrap();
        prop_assert!(l2.is_finite() && l2 >= 0.0, "log-softmax loss {l2}");
        let m = x.iter().cloned().fold(f32::MIN, f32::max);
        let lse = log_sum_exp(&x);
        prop_assert!(lse.is_finite() && lse >= m, "{lse} < {m}");
    }

    #[test]
    fn the_loss_ignores_an_exact_shift(
        x in prop::collection::vec(-1000i32..1000, 1..16),
        c in -(1i32 << 20)..(1 << 20),
        t in any::<prop::sample::Index>(),
    ) {
        // Integer logits below 2^24 are exact in f32, and so are their shifts.
        let label = t.index(x.len());
        let a: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let b: Vec<f32> = x.iter().map(|&v| (v + c) as f32).collect();
        let (mut da, mut db) = (vec![0.0; a.len()], vec![0.0; b.len()]);
        let la = cross_entropy_with_logits(&a, label, 1.0, Some(&mut da)).unwrap();
        let lb = cross_entropy_with_logits(&b, label, 1.0, Some(&mut db)).unwrap();
        prop_assert_eq!(la, lb);
        prop_assert_eq!(da, db);
    }

    #[test]
    fn the_loss_shifts_within_rounding(x in logits(), c in -1e6f32..1e6, t in any::<prop::sample::Index>()) {
        let label = t.index(x.len());
        let y: Vec<f32> = x.iter().map(|&v| v + c).collect();
        let la = cross_entropy_with_logits(&x, label, 1.0, None).unwrap() as f64;
        let lb = cross_entropy_with_logits(&y, label, 1.0, None).unwrap() as f64;
        // Adding c rounds each logit by at most half an ulp of the larger magnitude.
        let big = x.iter().fold(c.abs(), |m, v| m.max(v.abs()).max((v + c).abs())) as f64;
        let tol = 4.0 * big * f32::EPSILON as f64 + 1e-5 * (1.0 + la.abs());
        prop_assert!((la - lb).abs() <= tol, "{la} vs {lb} (tolerance {tol})");
    }
}

/// A small random layer case: `(h, w, cin, k, stride, padding, cout, n, seed)`.
fn small_case() -> impl Strategy<
    Value = (
        usize,
        usize,
        usize,
        usize,
        usize,
        Padding,
        usize,
        usize,
        u64,
    ),
> {
    (
        2usize..8,
        2usize..8,
        1usize..4,
        1usize..4,
        1usize..3,
        padding(),
        1usize..4,
        1usize..3,
        any::<u64>(),
    )
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn conv_backward_agrees_with_finite_differences(case in small_case()) {
        let (h, w, cin, k, s, p, cout, n, seed) = case;
        let conv = Conv2d::with(k, s, p, cout);
        let input = Shape::new(h, w, cin);
        let Ok(out) = conv.output_shape(input) else { return Ok(()) };
        let x = rand_vec(seed, n * input.len(), 1.0);
        let wt = rand_vec(seed ^ 1, conv.weight_len(input), 0.5);
        let b = rand_vec(seed ^ 2, cout, 0.5);
        let r = rand_vec(seed ^ 3, n * out.len(), 1.0);
        for algo in [ConvAlgo::Direct, ConvAlgo::Im2col] {
            let mut scratch = vec![0.0; conv.im2col_len(input) * n];
            let mut loss = |x: &[f32], wt: &[f32], b: &[f32]| {
                let mut y = vec![0.0; n * out.len()];
                conv.forward(input, n, x, wt, b, &mut y, algo, &mut scratch, &PortableGemm).unwrap();
                dot(&y, &r)
            };
            let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; wt.len()], vec![0.0; cout]);
            let mut s2 = vec![0.0; conv.im2col_len(input) * n];
            conv.backward(input, n, &x, &wt, &r, Some(&mut dx), &mut dw, &mut db, algo, &mut s2, &PortableGemm).unwrap();
            check_grad("conv dx", &x, &dx, 1e-2, 3e-3, |x| loss(x, &wt, &b));
            check_grad("conv dw", &wt, &dw, 1e-2, 3e-3, |v| loss(&x, v, &b));
            check_grad("conv db", &b, &db, 1e-2, 3e-3, |v| loss(&x, &wt, v));
        }
    }

    #[test]
    fn dense_backward_agrees_with_finite_differences(k in 1usize..24, units in 1usize..6, n in 1usize..4, seed in any::<u64>()) {
        let d = Dense::new(units);
        let input = Shape::new(1, 1, k);
        let x = rand_vec(seed, n * k, 1.0);
        let wt = rand_vec(seed ^ 1, k * units, 0.5);
        let b = rand_vec(seed ^ 2, units, 0.5);
        let r = rand_vec(seed ^ 3, n * units, 1.0);
        let loss = |x: &[f32], wt: &[f32], b: &[f32]| {
            let mut y = vec![0.0; n * units];
            d.forward(input, n, x, wt, b, &mut y, &PortableGemm).unwrap();
            dot(&y, &r)
        };
        let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; wt.len()], vec![0.0; units]);
        d.backward(input, n, &x, &wt, &r, Some(&mut dx), &mut dw, &mut db, &PortableGemm).unwrap();
        check_grad("dense dx", &x, &dx, 1e-2, 3e-3, |x| loss(x, &wt, &b));
        check_grad("dense dw", &wt, &dw, 1e-2, 3e-3, |v| loss(&x, v, &b));
        check_grad("dense db", &b, &db, 1e-2, 3e-3, |v| loss(&x, &wt, v));
    }

    #[test]
    fn maxpool_backward_agrees_with_finite_differences(case in small_case()) {
        let (h, w, c, k, s, p, _, n, seed) = case;
        let pool = MaxPool::new(k, s, p);
        let input = Shape::new(h, w, c);
        let Ok(out) = pool.output_shape(input) else { return Ok(()) };
        // Distinct values 0.05 apart: a step of 1e-2 never changes which one is largest.
        let len = n * input.len();
        let mut x: Vec<f32> = (0..len).map(|i| i as f32 * 0.05).collect();
        let mut rng = crate::rng::Rng::new(seed);
        rng.shuffle(&mut x);
        let r = rand_vec(seed ^ 3, n * out.len(), 1.0);
        let loss = |x: &[f32]| {
            let mut y = vec![0.0; n * out.len()];
            pool.forward(input, n, x, &mut y).unwrap();
            dot(&y, &r)
        };
        let mut dx = vec![0.0; len];
        pool.backward(input, n, &x, &r, &mut dx).unwrap();
        check_grad("maxpool dx", &x, &dx, 1e-2, 3e-3, loss);
    }
}
