// The stable side of the fuzz targets: `replay` runs a target's harness over every file
// of its corpus (fuzz/corpus/<target>/) and of its regression inputs
// (fuzz/regressions/<target>/), and fails naming each file that panicked. Included by
// the `fuzz_corpora` tests of the workspace's crates, so `cargo test --workspace`
// checks every input the fuzzer kept, without a nightly toolchain or libFuzzer.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Runs `run` on every corpus and regression file of `target`; returns how many.
pub fn replay(target: &str, run: impl Fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let files = |dir: &str| -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(root.join(dir).join(target)) else {
            return Vec::new();
        };
        let mut v: Vec<PathBuf> = entries
            .map(|e| e.expect("a readable directory entry").path())
            .filter(|p| p.is_file())
            .collect();
        v.sort();
        v
    };
    let corpus = files("corpus");
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target}/ is empty or missing: the replay would test nothing"
    );
    let all: Vec<PathBuf> = corpus.into_iter().chain(files("regressions")).collect();
    let failed: Vec<String> = all
        .iter()
        .filter(|p| {
            let bytes = fs::read(p).expect("a readable corpus file");
            catch_unwind(AssertUnwindSafe(|| run(&bytes))).is_err()
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs panicked: {failed:#?}",
        failed.len(),
        all.len()
    );
    all.len()
}
