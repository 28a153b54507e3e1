//! The host side of microconv: MNIST loading, a fast multi-threaded engine over the
//! core's layers, and the `host-trainer` commands.

// Bad input is an error with a message, never a panic: no unwrap/expect/panic! in the
// library outside tests.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod bench;
pub mod board;
pub mod bytes;
pub mod checkpoint;
pub mod cmd;
pub mod config;
pub mod data;
pub mod engine;
pub mod eval;
pub mod export;
pub mod finetune;
pub mod fold;
pub mod folder;
pub mod interop;
pub mod kernels;
pub mod network;
pub mod outputs;
pub mod params_file;
pub mod plot;
pub mod predict;
pub mod progress;
pub mod quantize;
pub mod reproduce;
pub mod train;
pub mod weights;
