//! FNV-1a 64: a small, stable hash for ids that end up in stored data (prompt versions,
//! per-user seeds, input fingerprints). Not for security.

/// FNV-1a 64 of the concatenation of `parts`.
pub fn fnv1a<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_values() {
        // reference values of FNV-1a 64
        assert_eq!(super::fnv1a([&b""[..]]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::fnv1a([&b"a"[..]]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(super::fnv1a([&b"fo"[..], b"obar"]), 0x8594_4171_f739_67e8);
    }
}
