//! The matrix-multiply backends: the core's [`Gemm`] trait over the `gemm` and
//! `matrixmultiply` crates' packed, cache-blocked kernels.

use microconv::gemm::{check_dims, Gemm, MatMut, MatRef};

/// The `gemm` crate's packed, cache-blocked kernels (AVX-512, AVX2/FMA or SSE, picked
/// at run time from what the CPU has), run on the calling thread: the engine
/// parallelises over the batch, not inside a matrix product.
#[derive(Clone, Copy, Debug, Default)]
pub struct GemmCrate;

impl Gemm for GemmCrate {
    fn gemm(
        &self,
        a: MatRef<'_>,
        b: MatRef<'_>,
        mut c: MatMut<'_>,
        accumulate: bool,
    ) -> Result<(), microconv::Error> {
        check_dims(&a, &b, &c)?;
        let (m, k, n) = (a.rows(), a.cols(), b.cols());
        let (rsc, csc) = (c.rs() as isize, c.cs() as isize);
        // SAFETY: `MatRef::new`/`MatMut::new` checked that every element
        // `(i, j) -> i * rs + j * cs` of each view lies inside its slice, strides fit in
        // isize because the extent fits in a slice length, and `check_dims` checked that
        // the dimensions agree; `c` is borrowed mutably and cannot alias `a` or `b`.
        // With `read_dst = false`, `gemm` does not read `c`. Exercised by
        // `fast_gemms_match_portable`.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.data().as_mut_ptr(),
                csc,
                rsc,
                accumulate,
                a.data().as_ptr(),
                a.cs() as isize,
                a.rs() as isize,
                b.data().as_ptr(),
                b.cs() as isize,
                b.rs() as isize,
                1.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        Ok(())
    }
}

/// `matrixmultiply`'s packed, cache-blocked kernel (AVX2/FMA picked at run time; no
/// AVX-512). Kept as a second backend so the benchmark can compare them.
#[derive(Clone, Copy, Debug, Default)]
pub struct MatrixMultiply;

impl Gemm for MatrixMultiply {
    fn gemm(
        &self,
        a: MatRef<'_>,
        b: MatRef<'_>,
        mut c: MatMut<'_>,
        accumulate: bool,
    ) -> Result<(), microconv::Error> {
        check_dims(&a, &b, &c)?;
        let (m, k, n) = (a.rows(), a.cols(), b.cols());
        let (rsc, csc) = (c.rs() as isize, c.cs() as isize);
        let beta = if accumulate { 1.0 } else { 0.0 };
        // SAFETY: as for `GemmCrate` (bounds checked by the views and `check_dims`, `c`
        // is exclusive); with beta = 0, sgemm does not read `c`. Exercised by
        // `fast_gemms_match_portable`.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.data().as_ptr(),
                a.rs() as isize,
                a.cs() as isize,
                b.data().as_ptr(),
                b.rs() as isize,
                b.cs() as isize,
                beta,
                c.data().as_mut_ptr(),
                rsc,
                csc,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use microconv::gemm::PortableGemm;

    #[test]
    fn fast_gemms_match_portable() {
        let (m, k, n) = (37, 53, 29);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
            .collect();
        for (ta, tb, acc) in [
            (false, false, false),
            (true, false, true),
            (false, true, false),
            (true, true, true),
        ] {
            let av = if ta {
                MatRef::row_major(&a, k, m).unwrap().t()
            } else {
                MatRef::row_major(&a, m, k).unwrap()
            };
            let bv = if tb {
                MatRef::row_major(&b, n, k).unwrap().t()
            } else {
                MatRef::row_major(&b, k, n).unwrap()
            };
            let mut c2 = vec![1.0f32; m * n];
            PortableGemm
                .gemm(av, bv, MatMut::row_major(&mut c2, m, n).unwrap(), acc)
                .unwrap();
            for fast in [&GemmCrate as &dyn Gemm, &MatrixMultiply] {
                let mut c1 = vec![1.0f32; m * n];
                fast.gemm(av, bv, MatMut::row_major(&mut c1, m, n).unwrap(), acc)
                    .unwrap();
                for (x, y) in c1.iter().zip(&c2) {
                    assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
                }
            }
        }
        // Mismatched dimensions are an error, not undefined behaviour.
        let mut c = vec![0.0f32; 4];
        let r = GemmCrate.gemm(
            MatRef::row_major(&a, 2, 3).unwrap(),
            MatRef::row_major(&b, 2, 2).unwrap(),
            MatMut::row_major(&mut c, 2, 2).unwrap(),
            false,
        );
        assert!(r.is_err());
    }
}
