//! The compute kernels under the host engine ([`crate::engine`]): the matrix-multiply
//! backends ([`gemm`]) and the AVX-512 direct convolutions ([`avx512`]), and the choice
//! between them ([`Backend`]). The engine decides how a batch is split across threads;
//! these decide how one thread's matrix products and convolutions run.

use microconv::layers::{ConvAlgo, ConvKernels};
use microconv::net::Exec;

pub mod avx512;
pub mod gemm;

pub use avx512::Avx512Conv;
pub use gemm::{GemmCrate, MatrixMultiply};

/// The matrix-product backends the host can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Backend {
    /// The `gemm` crate (AVX-512 when the CPU has it) and, on AVX-512 CPUs, direct
    /// SIMD convolutions: the fastest here.
    #[default]
    Gemm,
    /// The `gemm` crate with im2col convolutions only (no direct SIMD kernels).
    Im2col,
    /// The `matrixmultiply` crate (AVX2/FMA).
    Matrixmultiply,
    /// The core's portable reference kernels (direct convolution, plain loops).
    Reference,
}

impl Backend {
    /// How this backend runs the core's layers.
    pub fn exec(self) -> Exec<'static> {
        match self {
            Backend::Gemm => fast(),
            Backend::Im2col => Exec {
                gemm: &GemmCrate,
                conv: ConvAlgo::Im2col,
                kernels: None,
            },
            Backend::Matrixmultiply => Exec {
                gemm: &MatrixMultiply,
                conv: ConvAlgo::Im2col,
                kernels: None,
            },
            Backend::Reference => Exec::REFERENCE,
        }
    }
}

/// The fast execution: the AVX-512 direct convolutions where the CPU has them and the
/// layer fits ([`Avx512Conv`]), otherwise im2col; [`GemmCrate`] for every matrix product.
pub fn fast() -> Exec<'static> {
    Exec {
        gemm: &GemmCrate,
        conv: ConvAlgo::Im2col,
        kernels: Avx512Conv::detect().map(|k| k as &dyn ConvKernels),
    }
}
