//! A deterministic hash (FNV-1a, 64 bits): the same in every process, every
//! run and every mode, unlike std's randomly seeded `RandomState`.

/// FNV-1a of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Which of `n` buckets `key` falls in; 0 when `n` is 0.
pub fn bucket(key: &str, n: usize) -> usize {
    if n == 0 {
        0
    } else {
        (fnv1a(key.as_bytes()) % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(bucket("anything", 0), 0);
        assert!(bucket("word", 3) < 3);
    }
}
