//! microconv firmware: the board-independent part.
//!
//! - [`protocol`]: the framed serial protocol (also used by `host-trainer` on the PC side);
//! - [`app`]: the application loop, generic over embedded-hal 1.0 and embedded-io traits
//!   and over the [`run::Runner`] that answers;
//! - [`run`]: one runner per precision (float, int8), sized by the model's architecture;
//! - [`embedded`]: the runner of the model embedded at build time;
//! - [`finetune`]: training on the device from labelled samples: any selection of layers
//!   (all, the last k, biases only, a list), SGD with optional momentum and accumulation.
//!
//! One binary per target in `src/bin/` adds only the board: `mps2_an386.rs` (QEMU's
//! Cortex-M4F machine, used by CI), `stm32f411.rs` (a "Black Pill" board), `mps2_an500.rs`
//! (Cortex-M7) and `mps2_an505.rs` (Cortex-M33) under QEMU, `microbit.rs` (Cortex-M0,
//! QEMU's micro:bit), `riscv_virt.rs` (RISC-V, QEMU's virt machine) and `rp_pico.rs` (a
//! Raspberry Pi Pico); `bin/shared/` holds the embedded model's sizes (`model.rs`, every
//! binary) and what the QEMU Cortex-M binaries share (`cortex_m_qemu.rs`).
//!
//! Feature `mock` (host only, needs `std`) adds the module `mock`: mock peripherals and
//! frame helpers for the tests and the fuzz harnesses.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
// Nothing a serial line sends can panic the firmware: no unwrap/expect/panic! outside
// tests (the frame decoder is also fuzzed; see fuzz/).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

// `std` for the mocks (a test build has it already).
#[cfg(all(feature = "mock", not(test)))]
extern crate std;

pub mod app;
pub mod embedded;
pub mod finetune;
#[cfg(feature = "mock")]
pub mod mock;
pub mod protocol;
pub mod run;
