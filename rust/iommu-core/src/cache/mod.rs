//! Translation caches shared by the IOMMU models.
//!
//! * [`FastMap`]: the hash map of every cache, with a cheap seeded hasher
//!   for small integer keys;
//! * [`BoundedMap`]: a map bounded to a number of entries that empties
//!   itself when a new key would exceed the bound (QEMU's C IOMMUs flush
//!   their caches the same way), with a change count;
//! * [`pages::PageCache`]: the IOTLB shape, cached leaf translations in
//!   buckets by tag (domain/VMID and PASID/ASID) with selective
//!   invalidation by bucket, by outer tag and by address range;
//! * [`recent::Recent`]: a small direct-mapped cache of the last
//!   translations, valid while the caches it was filled from are unchanged.
//!
//! Conventions: caches hold only what a successful walk or a validated
//! table entry gave; their entries are used until invalidated; a change
//! count grows on any removal or replacement (never on a pure addition),
//! so that what was read from a cache stays valid while the count does.

pub mod pages;
pub mod recent;

use std::{
    collections::hash_map::{HashMap, RandomState},
    hash::{BuildHasher, Hash, Hasher},
    ops::Deref,
};

/// The hasher of the caches: keys are a few integers (source-ids, domain
/// ids, PASIDs, page numbers), looked up on every DMA.  Each integer is
/// folded in with a multiply, and the result gets a 64-bit finaliser so
/// that keys differing only in high bits (a domain id above a PASID) still
/// spread over the table.  The state starts from a per-map random seed, so
/// a guest cannot precompute colliding keys (and a cache holds at most a
/// bounded number of entries anyway).  Several times cheaper than the
/// standard library's SipHash for such keys.
#[derive(Clone, Copy, Debug)]
pub struct FastHasher(u64);

const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

impl FastHasher {
    #[inline]
    fn add(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(23) ^ v).wrapping_mul(MIX);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(b));
        }
    }

    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.add(u64::from(v));
    }

    #[inline]
    fn write_u16(&mut self, v: u16) {
        self.add(u64::from(v));
    }

    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.add(u64::from(v));
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }

    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.add(v as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // murmur3's fmix64
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        // (mixing arithmetic, not a layout)
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// Builds [`FastHasher`]s from a seed drawn once per map.
#[derive(Clone, Copy, Debug)]
pub struct FastState(u64);

impl Default for FastState {
    fn default() -> Self {
        // RandomState carries the process's random keys; one SipHash per
        // map creation turns them into a seed.
        let mut h = RandomState::new().build_hasher();
        h.write_u64(MIX);
        FastState(h.finish())
    }
}

impl BuildHasher for FastState {
    type Hasher = FastHasher;

    #[inline]
    fn build_hasher(&self) -> FastHasher {
        FastHasher(self.0)
    }
}

/// A hash map with the caches' hasher.
pub type FastMap<K, V> = HashMap<K, V, FastState>;

/// A cache map bounded to `MAX` entries.  Inserting a new key into a full
/// map empties it first: the replacement policy of QEMU's C device.  Caches
/// only have to be bounded (the guest cannot grow host memory without
/// limit) and never return a wrong entry; they need no cleverer eviction.
/// Reads go through `Deref` to the `HashMap`.
#[derive(Clone, Debug)]
pub struct BoundedMap<K, V, const MAX: usize> {
    map: FastMap<K, V>,
    changes: u64,
}

impl<K, V, const MAX: usize> Default for BoundedMap<K, V, MAX> {
    fn default() -> Self {
        BoundedMap { map: FastMap::default(), changes: 0 }
    }
}

impl<K: Eq + Hash, V, const MAX: usize> BoundedMap<K, V, MAX> {
    /// Insert or replace `k`, emptying the map first if `k` is new and the
    /// map is full.
    pub fn insert(&mut self, k: K, v: V) {
        if self.map.len() >= MAX && !self.map.contains_key(&k) {
            self.clear();
        }
        if self.map.insert(k, v).is_some() {
            self.changes += 1;
        }
    }

    /// Remove every entry.
    pub fn clear(&mut self) {
        self.map.clear();
        self.changes += 1;
    }

    /// Keep only the entries for which `keep` returns true.
    pub fn retain(&mut self, keep: impl FnMut(&K, &mut V) -> bool) {
        self.map.retain(keep);
        self.changes += 1;
    }

    /// A count that grows whenever an entry is removed or replaced (never
    /// when one is only added): what was read from the map stays valid
    /// while it is unchanged.
    pub fn changes(&self) -> u64 {
        self.changes
    }
}

impl<K, V, const MAX: usize> Deref for BoundedMap<K, V, MAX> {
    type Target = FastMap<K, V>;
    fn deref(&self) -> &FastMap<K, V> {
        &self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hasher_spreads_high_bit_keys() {
        // Keys that differ only above bit 32 (domain ids over a PASID) must
        // not share their low hash bits, or a table would chain them.
        let s = FastState::default();
        let mut low = std::collections::HashSet::new();
        for did in 0..256u64 {
            low.insert(s.hash_one(did << 32) & 0xff);
        }
        assert!(low.len() > 128, "{} distinct low bytes", low.len());
    }

    #[test]
    fn bounded_map_counts_changes_not_additions() {
        let mut m: BoundedMap<u32, u32, 2> = BoundedMap::default();
        m.insert(1, 1);
        m.insert(2, 2);
        assert_eq!(m.changes(), 0);
        m.insert(2, 3);
        assert_eq!(m.changes(), 1);
        m.insert(3, 3);
        assert_eq!((m.len(), m.changes()), (1, 2));
        m.retain(|_, _| true);
        assert_eq!(m.changes(), 3);
    }
}
