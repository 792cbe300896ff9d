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

/// A seeded, well-mixed hash of an id: ordering ids by it is a seeded shuffle in which a
/// larger prefix holds a smaller one, and an id keeps its place when others are added.
pub fn seeded(seed: u64, id: &str) -> u64 {
    mix(fnv1a([&seed.to_le_bytes()[..], id.as_bytes()]))
}

/// A 64-bit finaliser (splitmix64's): every input bit moves every output bit, so ordering by
/// `mix(fnv1a(..))` does not keep ids that differ in their last byte next to each other, as
/// ordering by the FNV value itself does.
pub fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
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
