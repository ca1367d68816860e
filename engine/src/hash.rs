//! The routing hash: which substore (and so which core) holds a key. It is on disk in
//! effect, so it must never change: xxh3-64 with a fixed seed, specified in
//! `engine/FORMAT.md` with test vectors. (ahash is for in-memory maps only.)

use crate::format::SubstoreId;

/// Seed of the routing hash: the ASCII bytes "ringkv" as a little-endian integer.
pub const ROUTING_SEED: u64 = 0x0000_766b_676e_6972;

/// The routing hash of a key.
pub fn routing_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(key, ROUTING_SEED)
}

/// The 4-bit child index of `hash` below a substore with `prefix_bits` fixed bits.
pub fn child_nibble(hash: u64, prefix_bits: u8) -> u8 {
    assert!(prefix_bits < 64 && prefix_bits % 4 == 0);
    ((hash >> (60 - u32::from(prefix_bits))) & 0xf) as u8
}

/// The identity of child `nibble` (0..16) of `parent`, with id `child_id`.
pub fn child_id(parent: &SubstoreId, nibble: u8, child_id: u64) -> SubstoreId {
    assert!(nibble < 16 && parent.prefix_bits < 64);
    let shift = 60 - u32::from(parent.prefix_bits);
    SubstoreId {
        id: child_id,
        hash_prefix: parent.hash_prefix | (u64::from(nibble) << shift),
        prefix_bits: parent.prefix_bits + 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test vectors, cross-checked against the reference implementation
    /// (`python3 -c "import xxhash; print(hex(xxhash.xxh3_64_intdigest(b'...', seed=0x766b676e6972)))"`).
    pub(crate) const VECTORS: &[(&[u8], u64)] = &[
        (b"", 0x50a7_0909_7da6_c6f8),
        (b"a", 0xba75_659e_b3df_eb75),
        (b"ringkv", 0xb207_51f4_cbcd_c969),
        (b"user:1000", 0x11f0_5f58_06d7_5399),
        (b"0123456789abcdef0123456789abcdef0", 0xace9_e34d_9e86_d9fa),
        // 300 bytes of 'x': exercises the long-input path of xxh3.
        (&[b'x'; 300], 0x5243_a848_1dbb_b65f),
    ];

    #[test]
    fn routing_hash_matches_test_vectors() {
        for (key, expected) in VECTORS {
            assert_eq!(
                routing_hash(key),
                *expected,
                "key {:?}",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn children_partition_the_parent() {
        let root = SubstoreId::root(0);
        for key in [&b"a"[..], b"b", b"user:1", b""] {
            let h = routing_hash(key);
            let n = child_nibble(h, 0);
            let child = child_id(&root, n, 1);
            assert!(child.covers(h));
            let grandchild = child_id(&child, child_nibble(h, 4), 2);
            assert!(grandchild.covers(h));
            for other in (0..16).filter(|&o| o != n) {
                assert!(!child_id(&root, other, 1).covers(h));
            }
        }
    }
}
