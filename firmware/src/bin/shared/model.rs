//! The embedded model, as every board binary sees it: `$OUT_DIR/model.rs`, written by
//! build.rs with microconv-build (LAYERS, ARCH, MODEL, INT8 and the sizes taken from the
//! architecture: INPUT_LEN, CLASSES, F32_BUF_LEN, F32_INPUT_LEN, I8_BUF_LEN, I8_INPUT_LEN,
//! F32_ARENA_LEN, I8_ARENA_LEN),
//! the app's frame buffer sized from the model's input (FRAME_CAP), and the
//! compile-time check that the model's classes fit a RESULT frame (build.rs says it
//! first, in words). (Not a Cargo target: only `src/bin/*.rs` and `src/bin/*/main.rs` are.)

use microconv_firmware::protocol::{frame_capacity, SCORES};

include!(concat!(env!("OUT_DIR"), "/model.rs"));

#[allow(unused_imports)] // each binary uses its precision's
pub use compiled::{
    infer_f32, infer_i8, I8_SCRATCH_LEN, PARAMS, PLAN_OUTPUT, QNET, STEPS, WEIGHTS_BYTES,
};

/// The app's frame and image buffers (`App`'s `CAP`): a TRAIN frame of the model's input.
pub const FRAME_CAP: usize = frame_capacity(INPUT_LEN);

// A RESULT frame carries at most SCORES scores.
const _: () = assert!(
    CLASSES <= SCORES,
    "the embedded model has more classes than a RESULT frame carries (protocol::SCORES)"
);

/// The model's parameter count (worked out by the compiler, not on the device).
pub const PARAM_COUNT: usize = ARCH.param_count();

/// What the compiled runner answers PING with.
pub const SIZES: microconv_firmware::embedded::Sizes = microconv_firmware::embedded::Sizes {
    params: PARAM_COUNT,
    classes: CLASSES,
};
