// Harness `checkpoint`: `host_trainer::checkpoint::Checkpoint::from_bytes`, then what
// `train --resume` reads first (`Checkpoint::config`).
//
// A checkpoint ends with a CRC-32 of everything before it, so almost every mutated input
// stops at the checksum. Each input is therefore tried twice: as it is, and with its last
// four bytes replaced by the right CRC, which lets the fuzzer reach the header, JSON and
// array checks behind it. Whatever parses must write itself back and read back the same.

use host_trainer::checkpoint::Checkpoint;

pub fn run(data: &[u8]) {
    check(data);
    if data.len() >= 4 {
        let mut fixed = data.to_vec();
        let n = fixed.len() - 4;
        let crc = crc32fast::hash(&fixed[..n]);
        fixed[n..].copy_from_slice(&crc.to_le_bytes());
        check(&fixed);
    }
}

fn check(bytes: &[u8]) {
    let Ok(c) = Checkpoint::from_bytes(bytes, "fuzz") else {
        return;
    };
    let _ = c.config(1);
    let again = c.to_bytes().expect("a parsed checkpoint writes");
    let back = Checkpoint::from_bytes(&again, "fuzz").expect("a written checkpoint reads back");
    assert_eq!(back.to_bytes().expect("writes again"), again);
}
