//! What the golden-value tests share: reading a tensor of the JSON files that
//! `tools/golden/` writes, and the scaled comparison against it.

use serde_json::Value;

pub fn data(v: &Value) -> Vec<f32> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = 0.0f32;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs() / (1.0 + w.abs());
        worst = worst.max(err);
        assert!(err <= tol, "{what}[{i}]: microconv {g} vs TensorFlow {w}");
    }
    eprintln!(
        "{what}: {} values, worst scaled error {worst:.1e}",
        got.len()
    );
}
