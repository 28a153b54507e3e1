//! The embedded model, as every board binary sees it: `$OUT_DIR/model.rs` (LAYERS, ARCH,
//! MODEL, INT8, written by build.rs with microconv-build) and the sizes taken from it.
//! The one place in the firmware that derives the input and output sizes from the
//! architecture: a generator that emits them as constants replaces the two lines below.
//! (Not a Cargo target: only `src/bin/*.rs` and `src/bin/*/main.rs` are.)

use microconv_firmware::protocol::{IMAGE_LEN, SCORES};

include!(concat!(env!("OUT_DIR"), "/model.rs"));

/// Values of one input (pixels of one image).
pub const INPUT_LEN: usize = ARCH.input.len();
/// Scores the model produces (its classes).
pub const CLASSES: usize = ARCH.classes();

// The serial protocol carries IMAGE_LEN-pixel images and SCORES scores per RESULT.
const _: () = assert!(
    INPUT_LEN == IMAGE_LEN && CLASSES <= SCORES,
    "the embedded model's input or classes do not fit the serial protocol's frames"
);

/// Buffer sizes: the float pair for a float model, the int8 pair for an int8 one (the
/// other pair is empty).
pub const F32_BUF: usize = if INT8 { 0 } else { ARCH.inference_len(1) };
/// The float model's input, or nothing.
pub const F32_IN: usize = if INT8 { 0 } else { INPUT_LEN };
/// The int8 model's inference buffer, or nothing.
pub const I8_BUF: usize = if INT8 { ARCH.inference_len(1) } else { 0 };
/// The int8 model's input, or nothing.
pub const I8_IN: usize = if INT8 { INPUT_LEN } else { 0 };
