//! Translation caches: the context cache, the scalable-mode context cache,
//! the PASID cache and the IOTLB.
//!
//! Conventions: the context cache maps a requester id (source-id) to the
//! validated context entry (legacy or scalable format, in separate maps);
//! the PASID cache maps (source-id, PASID) to the validated PASID table
//! entry, and is invalidated by the domain-id that entry carries; the IOTLB
//! maps (domain-id, PASID, page-aligned input address, page level) to a
//! leaf translation and the kind of mapping (legacy entries use
//! [`LEGACY_PASID`] and count as second-stage), so devices that share a
//! domain (and PASID) share IOTLB entries, as architected. Only successful
//! translations are cached; pass-through contexts never create IOTLB
//! entries. Both caches are bounded and are flushed completely when an
//! insertion would exceed the bound (as the C device does for its IOTLB).
//! Cached data is used until explicitly invalidated. Caches are not part of
//! the migrated state.

use std::{collections::HashMap, hash::Hash, ops::Deref};

use crate::page_walk::{level_shift, level_size, Perm};
use crate::root_context::DeviceContext;
use crate::scalable::{PasidConfig, SmContextEntry};

/// PASID tag of IOTLB entries created in legacy mode (outside the 20-bit
/// PASID space, so never hit by PASID-based invalidations).
pub const LEGACY_PASID: u32 = u32::MAX;
/// Maximum number of PASID-cache entries before a full flush.
pub const PASID_CACHE_MAX: usize = 1024;

/// Maximum number of context-cache entries before a full flush.
pub const CONTEXT_CACHE_MAX: usize = 1024;
/// Maximum number of IOTLB entries before a full flush (`VTD_IOTLB_MAX_SIZE`).
pub const IOTLB_MAX: usize = 1024;

/// A cache map bounded to `MAX` entries.  Inserting a new key into a full
/// map empties it first: the replacement policy of QEMU's C device.  Caches
/// only have to be bounded (the guest cannot grow host memory without
/// limit) and never return a wrong entry; they need no cleverer eviction.
/// Reads go through `Deref` to the `HashMap`.
#[derive(Clone, Debug)]
pub struct BoundedMap<K, V, const MAX: usize> {
    map: HashMap<K, V>,
}

impl<K, V, const MAX: usize> Default for BoundedMap<K, V, MAX> {
    fn default() -> Self {
        BoundedMap { map: HashMap::new() }
    }
}

impl<K: Eq + Hash, V, const MAX: usize> BoundedMap<K, V, MAX> {
    /// Insert or replace `k`, emptying the map first if `k` is new and the
    /// map is full.
    pub fn insert(&mut self, k: K, v: V) {
        if self.map.len() >= MAX && !self.map.contains_key(&k) {
            self.map.clear();
        }
        self.map.insert(k, v);
    }

    /// Remove every entry.
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Keep only the entries for which `keep` returns true.
    pub fn retain(&mut self, keep: impl FnMut(&K, &mut V) -> bool) {
        self.map.retain(keep);
    }
}

impl<K, V, const MAX: usize> Deref for BoundedMap<K, V, MAX> {
    type Target = HashMap<K, V>;
    fn deref(&self) -> &HashMap<K, V> {
        &self.map
    }
}

/// Context cache, keyed by source-id.
#[derive(Clone, Debug, Default)]
pub struct ContextCache {
    map: BoundedMap<u16, DeviceContext, CONTEXT_CACHE_MAX>,
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
    pasid: u32,
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

/// The kind of mapping an IOTLB entry caches (the PGTT of the PASID
/// entry it came from; legacy-mode entries are second-stage).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MappingKind {
    /// Second-stage only (and every legacy-mode entry).
    SecondStage,
    /// First-stage only.
    FirstStage,
    /// Nested.
    Nested,
    /// Pass-through.
    PassThrough,
}

impl MappingKind {
    /// First-stage or nested: the mappings PASID-based page-selective
    /// invalidations target.
    pub fn has_first_stage(self) -> bool {
        matches!(self, MappingKind::FirstStage | MappingKind::Nested)
    }
}

/// The IOTLB, keyed by domain-id, PASID and input page.
#[derive(Clone, Debug, Default)]
pub struct Iotlb {
    map: BoundedMap<IotlbKey, (IotlbEntry, MappingKind), IOTLB_MAX>,
}

fn key(domain_id: u16, pasid: u32, iova: u64, level: u8) -> IotlbKey {
    IotlbKey {
        domain_id,
        pasid,
        gfn: (iova >> level_shift(level)) << (level_shift(level) - 12),
        level,
    }
}

/// Naturally aligned range of 2^`am` 4 KiB pages containing `addr`, as
/// inclusive page frame numbers.
fn page_range(addr: u64, am: u8) -> (u64, u64) {
    let shift = 12 + u32::from(am.min(51));
    let first = (addr >> shift) << (shift - 12);
    let count = 1u64 << (shift - 12);
    (first, first.saturating_add(count - 1))
}

fn overlaps(k: &IotlbKey, e: &IotlbEntry, (first, last): (u64, u64)) -> bool {
    let e_first = k.gfn;
    let e_last = e_first.saturating_add((e.size() >> 12).saturating_sub(1));
    !(e_last < first || e_first > last)
}

impl Iotlb {
    /// Cached legacy-mode translation covering `iova` in `domain_id`.
    pub fn lookup(&self, domain_id: u16, iova: u64) -> Option<IotlbEntry> {
        self.lookup_pasid(domain_id, LEGACY_PASID, iova)
    }

    /// Cached translation covering `iova` for (`domain_id`, `pasid`).
    pub fn lookup_pasid(&self, domain_id: u16, pasid: u32, iova: u64) -> Option<IotlbEntry> {
        (1..=3).find_map(|level| self.map.get(&key(domain_id, pasid, iova, level)).map(|v| v.0))
    }

    /// Cache a legacy-mode translation.
    pub fn insert(&mut self, entry: IotlbEntry) {
        self.insert_tagged(entry, LEGACY_PASID, MappingKind::SecondStage);
    }

    /// Cache a translation for `pasid` of the given kind.
    pub fn insert_tagged(&mut self, entry: IotlbEntry, pasid: u32, kind: MappingKind) {
        let k = key(entry.domain_id, pasid, entry.iova, entry.level);
        self.map.insert(k, (entry, kind));
    }

    /// PASID-selective-within-domain invalidation (PASID-based IOTLB
    /// invalidation, G = 10b): every entry of (`domain_id`, `pasid`).
    pub fn invalidate_pasid(&mut self, domain_id: u16, pasid: u32) {
        self.map.retain(|k, _| !(k.domain_id == domain_id && k.pasid == pasid));
    }

    /// Page-selective-within-PASID invalidation (G = 11b): first-stage and
    /// nested entries of (`domain_id`, `pasid`) overlapping the naturally
    /// aligned 2^`am` pages at `addr`. Second-stage and pass-through
    /// entries are not affected (the spec leaves them to the legacy IOTLB
    /// invalidations).
    pub fn invalidate_pasid_pages(&mut self, domain_id: u16, pasid: u32, addr: u64, am: u8) {
        let range = page_range(addr, am);
        self.map.retain(|k, (e, kind)| {
            !(k.domain_id == domain_id
                && k.pasid == pasid
                && kind.has_first_stage()
                && overlaps(k, e, range))
        });
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
    ///
    /// In scalable mode this is the legacy page-selective-within-domain
    /// invalidation: second-stage (and pass-through) entries of every PASID
    /// are removed by address, and every first-stage or nested entry of the
    /// domain is removed whatever its address (as the spec and the C device
    /// specify).
    pub fn invalidate_pages(&mut self, domain_id: u16, addr: u64, am: u8) {
        let range = page_range(addr, am);
        self.map.retain(|k, (e, kind)| {
            if k.domain_id != domain_id {
                return true;
            }
            !(kind.has_first_stage() || overlaps(k, e, range))
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

/// Scalable-mode context cache: validated scalable context entries by
/// source-id. Scalable context entries carry no domain-id, so a
/// domain-selective context-cache invalidation flushes all of them (a
/// permitted over-invalidation).
#[derive(Clone, Debug, Default)]
pub struct SmContextCache {
    map: BoundedMap<u16, SmContextEntry, CONTEXT_CACHE_MAX>,
}

impl SmContextCache {
    /// Cached entry for `sid`.
    pub fn lookup(&self, sid: u16) -> Option<SmContextEntry> {
        self.map.get(&sid).copied()
    }

    /// Cache `ce` for `sid`.
    pub fn insert(&mut self, sid: u16, ce: SmContextEntry) {
        self.map.insert(sid, ce);
    }

    /// Global (or domain-selective) invalidation.
    pub fn invalidate_all(&mut self) {
        self.map.clear();
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

/// One PASID-cache entry: a validated PASID table entry and whether the
/// PASID directory or table entry had FPD set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasidCacheEntry {
    /// The validated PASID table entry (its domain-id tags the entry).
    pub config: PasidConfig,
    /// FPD of the directory entry or of the PASID table entry.
    pub fpd: bool,
}

/// PASID cache, keyed by (source-id, PASID).
#[derive(Clone, Debug, Default)]
pub struct PasidCache {
    map: BoundedMap<(u16, u32), PasidCacheEntry, PASID_CACHE_MAX>,
}

impl PasidCache {
    /// Cached entry for (`sid`, `pasid`).
    pub fn lookup(&self, sid: u16, pasid: u32) -> Option<PasidCacheEntry> {
        self.map.get(&(sid, pasid)).copied()
    }

    /// Cache an entry.
    pub fn insert(&mut self, sid: u16, pasid: u32, entry: PasidCacheEntry) {
        let k = (sid, pasid);
        self.map.insert(k, entry);
    }

    /// Global invalidation.
    pub fn invalidate_all(&mut self) {
        self.map.clear();
    }

    /// Domain-selective invalidation: entries whose cached domain-id is
    /// `domain_id`.
    pub fn invalidate_domain(&mut self, domain_id: u16) {
        self.map.retain(|_, e| e.config.domain_id != domain_id);
    }

    /// PASID-selective-within-domain invalidation.
    pub fn invalidate_pasid(&mut self, domain_id: u16, pasid: u32) {
        self.map
            .retain(|(_, p), e| !(e.config.domain_id == domain_id && *p == pasid));
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
