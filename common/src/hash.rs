//! Hashes whose values are part of veriflow's behaviour: they decide which
//! partition an in-process record goes to, which A/B arm a verification is in
//! and which exploration draw it gets. They must give the same numbers in every
//! build, on every platform, forever — so they are written out here rather
//! than taken from a hasher whose algorithm may change.

/// FNV-1a, 64 bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// FNV-1a, then MurmurHash3's 64-bit finalizer: FNV's high bits barely move
/// between inputs that differ only at the end (ids with a counter), and the
/// finalizer spreads every input bit over the whole word.
pub fn mixed64(bytes: &[u8]) -> u64 {
    let mut h = fnv1a64(bytes);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// [`mixed64`] as a number in [0, 1), uniform to 53 bits.
pub fn unit_interval(bytes: &[u8]) -> f64 {
    (mixed64(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// The partition of `key` among `partitions` for in-process sources (the
/// demo, replays, the bench, the in-memory broker). Kafka producers use their
/// own partitioner; what matters is that one key always lands in one partition.
pub fn partition_of(key: &[u8], partitions: u32) -> i32 {
    (fnv1a64(key) % u64::from(partitions.max(1))) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_fixed_forever() {
        // Changing these changes A/B arms, exploration and partitions of
        // existing deployments: never.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(partition_of(b"acme", 4), (fnv1a64(b"acme") % 4) as i32);
        assert_eq!(partition_of(b"acme", 0), 0);
    }

    #[test]
    fn the_unit_interval_is_uniform_enough() {
        let below = (0..10_000)
            .filter(|i| unit_interval(format!("v1-{i:09}").as_bytes()) < 0.5)
            .count();
        assert!((4_500..5_500).contains(&below), "{below}");
    }
}
