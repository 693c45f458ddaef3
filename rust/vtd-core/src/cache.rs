//! Translation caches: the context cache and the IOTLB.
//!
//! Conventions: the context cache maps a requester id (source-id) to the
//! validated context entry; the IOTLB maps (domain-id, page-aligned input
//! address, page level) to a leaf translation, so devices that share a
//! domain share IOTLB entries, as architected. Only successful
//! translations are cached; pass-through contexts never create IOTLB
//! entries. Both caches are bounded and are flushed completely when an
//! insertion would exceed the bound (as the C device does for its IOTLB).
//! Cached data is used until explicitly invalidated. Caches are not part of
//! the migrated state.

use std::collections::HashMap;

use crate::page_walk::{level_shift, level_size, Perm};
use crate::root_context::DeviceContext;

/// Maximum number of context-cache entries before a full flush.
pub const CONTEXT_CACHE_MAX: usize = 1024;
/// Maximum number of IOTLB entries before a full flush (`VTD_IOTLB_MAX_SIZE`).
pub const IOTLB_MAX: usize = 1024;

/// Context cache, keyed by source-id.
#[derive(Clone, Debug, Default)]
pub struct ContextCache {
    map: HashMap<u16, DeviceContext>,
}

/// Mask of source-id bits compared by a device-selective invalidation with
/// function mask `fm` (0: all bits, 1: ignore bit 2, 2: bits 2:1, 3: bits
/// 2:0).
pub fn function_mask(fm: u8) -> u16 {
    match fm & 3 {
        0 => 0xffff,
        1 => !0x4,
        2 => !0x6,
        _ => !0x7,
    }
}

impl ContextCache {
    /// Cached context for `sid`.
    pub fn lookup(&self, sid: u16) -> Option<DeviceContext> {
        self.map.get(&sid).copied()
    }

    /// Cache `ctx` for `sid`.
    pub fn insert(&mut self, sid: u16, ctx: DeviceContext) {
        if self.map.len() >= CONTEXT_CACHE_MAX && !self.map.contains_key(&sid) {
            self.map.clear();
        }
        self.map.insert(sid, ctx);
    }

    /// Global invalidation.
    pub fn invalidate_all(&mut self) {
        self.map.clear();
    }

    /// Domain-selective invalidation.
    pub fn invalidate_domain(&mut self, domain_id: u16) {
        self.map.retain(|_, c| c.domain_id != domain_id);
    }

    /// Device-selective invalidation with function mask `fm`.
    pub fn invalidate_device(&mut self, sid: u16, fm: u8) {
        let mask = function_mask(fm);
        self.map.retain(|s, _| (s & mask) != (sid & mask));
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct IotlbKey {
    domain_id: u16,
    /// Input page frame number (4 KiB units) aligned to the level.
    gfn: u64,
    level: u8,
}

/// One cached leaf translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IotlbEntry {
    /// Domain id.
    pub domain_id: u16,
    /// Input address of the page (aligned to the page size).
    pub iova: u64,
    /// Output address of the page.
    pub phys: u64,
    /// Leaf level (1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB).
    pub level: u8,
    /// Effective permissions.
    pub perm: Perm,
}

impl IotlbEntry {
    /// Size of the page in bytes.
    pub fn size(&self) -> u64 {
        level_size(self.level)
    }
}

/// The IOTLB, keyed by domain-id and input page.
#[derive(Clone, Debug, Default)]
pub struct Iotlb {
    map: HashMap<IotlbKey, IotlbEntry>,
}

fn key(domain_id: u16, iova: u64, level: u8) -> IotlbKey {
    IotlbKey {
        domain_id,
        gfn: (iova >> level_shift(level)) << (level_shift(level) - 12),
        level,
    }
}

impl Iotlb {
    /// Cached translation covering `iova` in `domain_id`.
    pub fn lookup(&self, domain_id: u16, iova: u64) -> Option<IotlbEntry> {
        (1..=3).find_map(|level| self.map.get(&key(domain_id, iova, level)).copied())
    }

    /// Cache a translation.
    pub fn insert(&mut self, entry: IotlbEntry) {
        let k = key(entry.domain_id, entry.iova, entry.level);
        if self.map.len() >= IOTLB_MAX && !self.map.contains_key(&k) {
            self.map.clear();
        }
        self.map.insert(k, entry);
    }

    /// Global invalidation.
    pub fn invalidate_all(&mut self) {
        self.map.clear();
    }

    /// Domain-selective invalidation.
    pub fn invalidate_domain(&mut self, domain_id: u16) {
        self.map.retain(|k, _| k.domain_id != domain_id);
    }

    /// Page-selective invalidation of the naturally aligned range of
    /// 2^`am` 4 KiB pages containing `addr` in `domain_id`: every entry
    /// overlapping the range is removed.
    pub fn invalidate_pages(&mut self, domain_id: u16, addr: u64, am: u8) {
        let shift = 12 + u32::from(am.min(51));
        let first = (addr >> shift) << (shift - 12);
        let count = 1u64 << (shift - 12);
        let last = first.saturating_add(count - 1);
        self.map.retain(|k, e| {
            if k.domain_id != domain_id {
                return true;
            }
            let e_first = k.gfn;
            let e_last = e_first.saturating_add((e.size() >> 12).saturating_sub(1));
            e_last < first || e_first > last
        });
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(did: u16, iova: u64, level: u8) -> IotlbEntry {
        IotlbEntry { domain_id: did, iova, phys: 0, level, perm: Perm::RW }
    }

    #[test]
    fn iotlb_lookup_finds_superpage_from_any_offset() {
        let mut t = Iotlb::default();
        t.insert(entry(1, 0x4000_0000, 3));
        assert!(t.lookup(1, 0x7fff_ffff).is_some());
        assert!(t.lookup(1, 0x8000_0000).is_none());
        assert!(t.lookup(2, 0x4000_0000).is_none());
    }

    #[test]
    fn psi_inside_superpage_removes_it() {
        let mut t = Iotlb::default();
        t.insert(entry(1, 0x20_0000, 2));
        t.invalidate_pages(1, 0x2f_f000, 0);
        assert!(t.is_empty());
    }

    #[test]
    fn psi_range_bounds() {
        let mut t = Iotlb::default();
        for p in 0..8u64 {
            t.insert(entry(1, p << 12, 1));
        }
        // am = 2: pages 4..7 when addr is inside that block.
        t.invalidate_pages(1, 0x5000, 2);
        assert_eq!(t.len(), 4);
        assert!(t.lookup(1, 0x3000).is_some());
        assert!(t.lookup(1, 0x4000).is_none());
        t.invalidate_pages(2, 0x0, 18);
        assert_eq!(t.len(), 4);
        t.invalidate_pages(1, 0x0, 63);
        assert!(t.is_empty());
    }

    #[test]
    fn iotlb_full_flush_when_bound_reached() {
        let mut t = Iotlb::default();
        for p in 0..IOTLB_MAX as u64 {
            t.insert(entry(1, p << 12, 1));
        }
        assert_eq!(t.len(), IOTLB_MAX);
        t.insert(entry(1, (IOTLB_MAX as u64) << 12, 1));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn device_selective_function_masks() {
        assert_eq!(function_mask(0), 0xffff);
        assert_eq!(function_mask(1) & 7, 3);
        assert_eq!(function_mask(2) & 7, 1);
        assert_eq!(function_mask(3) & 7, 0);
    }
}
