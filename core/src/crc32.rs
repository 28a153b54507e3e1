//! CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320, init and final XOR 0xFFFFFFFF):
//! the checksum of zip, gzip and PNG, so any language's standard library can check it.
//!
//! Four bits at a time from a 16-entry table (64 bytes): a firmware checks every serial
//! frame with it, where the usual 256-entry table would take 1 KB of flash, and two
//! look-ups per byte are still fast enough for the host's files.

const fn make_table() -> [u32; 16] {
    let mut t = [0u32; 16];
    let mut i = 0;
    while i < 16 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 4 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static TABLE: [u32; 16] = make_table();

/// CRC-32 of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(bytes);
    c.finish()
}

/// A CRC-32 computed piece by piece: `update` with each part, then `finish`.
#[derive(Clone, Copy, Debug)]
pub struct Crc32 {
    state: u32,
}

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32 {
    /// The CRC of nothing yet.
    pub const fn new() -> Self {
        Crc32 { state: 0xFFFF_FFFF }
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        let mut c = self.state;
        for &b in bytes {
            c ^= b as u32;
            c = TABLE[(c & 0xF) as usize] ^ (c >> 4);
            c = TABLE[(c & 0xF) as usize] ^ (c >> 4);
        }
        self.state = c;
    }

    /// The CRC of everything added.
    pub const fn finish(&self) -> u32 {
        !self.state
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn check_value() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(super::crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(super::crc32(b""), 0);
        let mut c = super::Crc32::new();
        c.update(b"1234");
        c.update(b"56789");
        assert_eq!(c.finish(), 0xCBF4_3926);
        // Every byte value, against the bit-at-a-time definition.
        let all: [u8; 256] = core::array::from_fn(|i| i as u8);
        let mut want = 0xFFFF_FFFFu32;
        for &b in &all {
            want ^= b as u32;
            for _ in 0..8 {
                want = if want & 1 != 0 {
                    0xEDB8_8320 ^ (want >> 1)
                } else {
                    want >> 1
                };
            }
        }
        assert_eq!(super::crc32(&all), !want);
    }
}
