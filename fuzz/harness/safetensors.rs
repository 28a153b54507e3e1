// Harness `safetensors`: `host_trainer::interop::from_bytes`, the reader behind every
// command that accepts a `.safetensors` parameter file. Whatever it accepts must write
// itself back (`to_bytes`) and read back to the same parameters.

pub fn run(data: &[u8]) {
    let Ok((arch, params)) = host_trainer::interop::from_bytes(data, "fuzz") else {
        return;
    };
    assert!(params.iter().all(|v| v.is_finite()));
    let again = host_trainer::interop::to_bytes(arch, &params).expect("accepted parameters write");
    let back = host_trainer::interop::from_bytes(&again, "fuzz").expect("written parameters read");
    assert_eq!(back.0, arch);
    assert!(back
        .1
        .iter()
        .zip(&params)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}
