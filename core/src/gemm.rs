//! The matrix-multiply hook.
//!
//! Dense layers and the im2col convolution reduce to `C (+)= A · B` on row-major
//! strided matrices. [`PortableGemm`] is the readable reference kernel that runs
//! everywhere (including the Cortex-M4); the host plugs a faster implementation in
//! through the [`Gemm`] trait and tests it equal to this one.

use crate::error::Error;

/// A read-only strided matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
///
/// Constructed only through [`MatRef::new`], which checks that every element lies in
/// `data`, so kernels may rely on that.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

/// A mutable strided matrix view, checked like [`MatRef`].
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

/// Index one past the last element a `rows x cols` view with strides `rs`, `cs` touches.
fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<usize> {
    if rows == 0 || cols == 0 {
        return Some(0);
    }
    (rows - 1)
        .checked_mul(rs)?
        .checked_add((cols - 1).checked_mul(cs)?)?
        .checked_add(1)
}

impl<'a> MatRef<'a> {
    /// A `rows x cols` view of `data` with row stride `rs` and column stride `cs`.
    pub fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Result<Self, Error> {
        let need = extent(rows, cols, rs, cs).unwrap_or(usize::MAX);
        if need > data.len() {
            return Err(Error::BufferLen {
                buffer: "matrix",
                expected: need,
                actual: data.len(),
            });
        }
        Ok(MatRef {
            data,
            rows,
            cols,
            rs,
            cs,
        })
    }
    /// A contiguous row-major `rows x cols` view.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Result<Self, Error> {
        Self::new(data, rows, cols, cols, 1)
    }
    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }
    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Row stride.
    pub fn rs(&self) -> usize {
        self.rs
    }
    /// Column stride.
    pub fn cs(&self) -> usize {
        self.cs
    }
    /// The underlying slice (every element of the view is inside it).
    pub fn data(&self) -> &'a [f32] {
        self.data
    }
}

impl<'a> MatMut<'a> {
    /// A `rows x cols` mutable view of `data` with row stride `rs` and column stride `cs`.
    pub fn new(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Result<Self, Error> {
        let need = extent(rows, cols, rs, cs).unwrap_or(usize::MAX);
        if need > data.len() {
            return Err(Error::BufferLen {
                buffer: "matrix",
                expected: need,
                actual: data.len(),
            });
        }
        Ok(MatMut {
            data,
            rows,
            cols,
            rs,
            cs,
        })
    }
    /// A contiguous row-major `rows x cols` view.
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Result<Self, Error> {
        Self::new(data, rows, cols, cols, 1)
    }
    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Row stride.
    pub fn rs(&self) -> usize {
        self.rs
    }
    /// Column stride.
    pub fn cs(&self) -> usize {
        self.cs
    }
    /// The underlying slice (every element of the view is inside it).
    pub fn data(&mut self) -> &mut [f32] {
        self.data
    }
}

/// `C = A · B` (or `C += A · B` with `accumulate`), for views whose dimensions agree.
pub trait Gemm: Sync {
    /// Computes the product. Implementations may assume the views are in bounds
    /// (guaranteed by their constructors) but must check that the dimensions agree.
    fn gemm(
        &self,
        a: MatRef<'_>,
        b: MatRef<'_>,
        c: MatMut<'_>,
        accumulate: bool,
    ) -> Result<(), Error>;
}

/// Checks `a: m x k`, `b: k x n`, `c: m x n`.
pub fn check_dims(a: &MatRef<'_>, b: &MatRef<'_>, c: &MatMut<'_>) -> Result<(), Error> {
    if a.cols != b.rows {
        return Err(Error::BufferLen {
            buffer: "gemm B rows",
            expected: a.cols,
            actual: b.rows,
        });
    }
    if c.rows != a.rows || c.cols != b.cols {
        return Err(Error::BufferLen {
            buffer: "gemm C",
            expected: a.rows.saturating_mul(b.cols),
            actual: c.rows.saturating_mul(c.cols),
        });
    }
    Ok(())
}

/// The reference kernel: a plain triple loop (`i`, `p`, `j` order, so the inner loop
/// runs along a row of `B` and `C`, contiguous in the usual case).
#[derive(Clone, Copy, Debug, Default)]
pub struct PortableGemm;

impl Gemm for PortableGemm {
    fn gemm(
        &self,
        a: MatRef<'_>,
        b: MatRef<'_>,
        c: MatMut<'_>,
        accumulate: bool,
    ) -> Result<(), Error> {
        check_dims(&a, &b, &c)?;
        let (m, k, n) = (a.rows, a.cols, b.cols);
        for i in 0..m {
            let crow = i * c.rs;
            if !accumulate {
                for j in 0..n {
                    c.data[crow + j * c.cs] = 0.0;
                }
            }
            for p in 0..k {
                let av = a.data[i * a.rs + p * a.cs];
                if av == 0.0 {
                    // Sparse activations after ReLU: skipping is exact unless B holds
                    // non-finite values, which training checks for separately.
                    continue;
                }
                let brow = p * b.rs;
                if b.cs == 1 && c.cs == 1 {
                    let bs = &b.data[brow..brow + n];
                    let cs = &mut c.data[crow..crow + n];
                    for (cv, bv) in cs.iter_mut().zip(bs) {
                        *cv += av * bv;
                    }
                } else {
                    for j in 0..n {
                        c.data[crow + j * c.cs] += av * b.data[brow + j * b.cs];
                    }
                }
            }
        }
        Ok(())
    }
}

/// Adds the bias `b` to every row of `y` (`[rows, b.len()]`). A loop the compiler
/// vectorises, where copying `b` into each row first would be one `memcpy` call per row.
pub fn add_bias(y: &mut [f32], b: &[f32]) {
    if b.is_empty() {
        return;
    }
    for row in y.chunks_exact_mut(b.len()) {
        for (a, &v) in row.iter_mut().zip(b) {
            *a += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_product_and_transpose() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2x3
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]; // 3x2
        let mut c = [9.0f32; 4];
        PortableGemm
            .gemm(
                MatRef::row_major(&a, 2, 3).unwrap(),
                MatRef::row_major(&b, 3, 2).unwrap(),
                MatMut::row_major(&mut c, 2, 2).unwrap(),
                false,
            )
            .unwrap();
        assert_eq!(c, [4.0, 5.0, 10.0, 11.0]);
        // (A^T)^T · B, accumulate.
        let at = MatRef::row_major(&a, 2, 3).unwrap().t().t();
        PortableGemm
            .gemm(
                at,
                MatRef::row_major(&b, 3, 2).unwrap(),
                MatMut::row_major(&mut c, 2, 2).unwrap(),
                true,
            )
            .unwrap();
        assert_eq!(c, [8.0, 10.0, 20.0, 22.0]);
    }

    #[test]
    fn views_are_checked() {
        let a = [0.0f32; 5];
        assert!(MatRef::row_major(&a, 2, 3).is_err());
        assert!(MatRef::new(&a, 2, 2, usize::MAX, 1).is_err());
        let b = [0.0f32; 6];
        let mut c = [0.0f32; 4];
        let r = PortableGemm.gemm(
            MatRef::row_major(&b, 2, 3).unwrap(),
            MatRef::row_major(&b, 2, 3).unwrap(),
            MatMut::row_major(&mut c, 2, 2).unwrap(),
            false,
        );
        assert!(r.is_err());
    }
}
