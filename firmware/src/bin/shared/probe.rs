//! What the boards run under a debug probe (probe-rs with defmt over RTT) share: their
//! failure paths. The panic handler logs the panic's location through defmt, then runs
//! `udf`, the permanently undefined instruction, whose HardFault probe-rs reports and stops
//! on (what `panic-probe` does). Only the location is logged: formatting the message
//! through `core::fmt` would link its machinery (about 13 KB of flash) for a path the
//! library's no-panic rule keeps unreachable, and `defmt::panic!` has already logged its
//! own message.
//! (Not a Cargo target: only `src/bin/*.rs` and `src/bin/*/main.rs` are.)

use microconv_firmware::embedded::EmbeddedError;

/// A `singleton!` buffer was taken a second time.
pub fn taken() -> ! {
    defmt::panic!("buffers taken twice")
}

/// The embedded model cannot run: says why, then panics.
pub fn embedded_failed(e: EmbeddedError) -> ! {
    match e {
        EmbeddedError::Classifier(_) => defmt::panic!("model does not fit the classifier"),
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    match info.location() {
        Some(at) => defmt::error!("panic at {=str}:{=u32}", at.file(), at.line()),
        None => defmt::error!("panic"),
    }
    cortex_m::asm::udf()
}
