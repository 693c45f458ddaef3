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

pub use iommu_core::cache::{BoundedMap, FastHasher, FastMap, FastState};
use iommu_core::cache::pages::{Classes, PageCache};
use iommu_core::cache::recent::Recent;

use crate::translation::page_walk::{level_shift, level_size, Perm};
use crate::translation::root_context::DeviceContext;
use crate::translation::scalable::{PasidConfig, SmContextEntry};
use crate::translation::Translation;

/// PASID tag of IOTLB entries created in legacy mode (outside the 20-bit
/// PASID space, so never hit by PASID-based invalidations).
pub const LEGACY_PASID: u32 = u32::MAX;
/// Maximum number of PASID-cache entries before a full flush.
pub const PASID_CACHE_MAX: usize = 1024;

/// Maximum number of context-cache entries before a full flush.
pub const CONTEXT_CACHE_MAX: usize = 1024;
/// Maximum number of IOTLB entries before a full flush (`VTD_IOTLB_MAX_SIZE`).
pub const IOTLB_MAX: usize = 1024;

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
    /// See [`BoundedMap::changes`].
    pub fn changes(&self) -> u64 {
        self.map.changes()
    }

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

impl MappingKind {
    /// The page cache class of entries of this kind.
    fn class(self) -> u8 {
        self as u8
    }
}

/// First-stage and nested entries.
const FIRST_STAGE: Classes = Classes(1 << MappingKind::FirstStage as u8 | 1 << MappingKind::Nested as u8);

/// Naturally aligned range of 2^`am` 4 KiB pages containing `addr`, as
/// inclusive byte addresses.
fn page_range(addr: u64, am: u8) -> (u64, u64) {
    let shift = 12 + u32::from(am.min(51));
    let first = (addr >> shift) << shift;
    // Arithmetic: the 2^shift-aligned block holding addr.
    (first, first | ((1u64 << shift) - 1))
}

/// The IOTLB, keyed by domain-id, PASID and input page: a
/// [`PageCache`] whose outer tag is the domain id and inner tag the PASID
/// ([`LEGACY_PASID`] in legacy mode), classed by [`MappingKind`], so that
/// every invalidation touches only what it may remove.
#[derive(Clone, Debug, Default)]
pub struct Iotlb {
    pages: PageCache<IotlbEntry, IOTLB_MAX>,
}

impl Iotlb {
    /// Cached legacy-mode translation covering `iova` in `domain_id`.
    pub fn lookup(&self, domain_id: u16, iova: u64) -> Option<IotlbEntry> {
        self.lookup_pasid(domain_id, LEGACY_PASID, iova)
    }

    /// Cached translation covering `iova` for (`domain_id`, `pasid`).
    #[inline]
    pub fn lookup_pasid(&self, domain_id: u16, pasid: u32, iova: u64) -> Option<IotlbEntry> {
        self.pages.lookup(u32::from(domain_id), pasid, iova).map(|(e, _)| e)
    }

    /// Cache a legacy-mode translation.
    pub fn insert(&mut self, entry: IotlbEntry) {
        self.insert_tagged(entry, LEGACY_PASID, MappingKind::SecondStage);
    }

    /// Cache a translation for `pasid` of the given kind.  Only 4 KiB,
    /// 2 MiB and 1 GiB pages are cached (no other leaf exists).
    pub fn insert_tagged(&mut self, entry: IotlbEntry, pasid: u32, kind: MappingKind) {
        if !(1..=3).contains(&entry.level) {
            return;
        }
        let shift = level_shift(entry.level);
        self.pages.insert(u32::from(entry.domain_id), pasid, entry.iova, shift, kind.class(), entry);
    }

    /// PASID-selective-within-domain invalidation (PASID-based IOTLB
    /// invalidation, G = 10b): every entry of (`domain_id`, `pasid`).
    pub fn invalidate_pasid(&mut self, domain_id: u16, pasid: u32) {
        self.pages.invalidate_bucket(u32::from(domain_id), pasid);
    }

    /// Page-selective-within-PASID invalidation (G = 11b): first-stage and
    /// nested entries of (`domain_id`, `pasid`) overlapping the naturally
    /// aligned 2^`am` pages at `addr`. Second-stage and pass-through
    /// entries are not affected (the spec leaves them to the legacy IOTLB
    /// invalidations).
    pub fn invalidate_pasid_pages(&mut self, domain_id: u16, pasid: u32, addr: u64, am: u8) {
        let (first, last) = page_range(addr, am);
        self.pages.invalidate_range(u32::from(domain_id), pasid, first, last, FIRST_STAGE, Classes::NONE);
    }

    /// Global invalidation.
    pub fn invalidate_all(&mut self) {
        self.pages.invalidate_all();
    }

    /// Domain-selective invalidation.
    pub fn invalidate_domain(&mut self, domain_id: u16) {
        self.pages.invalidate_outer(u32::from(domain_id));
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
        let (first, last) = page_range(addr, am);
        self.pages.invalidate_range_outer(u32::from(domain_id), first, last, Classes::ALL, FIRST_STAGE);
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// A count that grows whenever an entry is removed or replaced (by an
    /// invalidation, by the flush when full, by a new translation of a
    /// cached page), never when one is only added.
    pub fn changes(&self) -> u64 {
        self.pages.changes()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }
}

/// The last successful translations of requests without PASID: a
/// [`Recent`] cache keyed by source-id, 4 KiB page and root table format,
/// holding the translation and whether the requester may use a device-TLB
/// (ATS). Valid while the caches' combined change count (`epoch`) is
/// unchanged, so it never answers differently from them.
#[derive(Clone, Debug, Default)]
pub struct RecentTranslations {
    slots: Recent<(Translation, bool)>,
}

impl RecentTranslations {
    /// The translation of (`sid`, `iova`) recorded at `epoch` in the same
    /// root table format, if it grants the access, and whether the
    /// requester may use a device-TLB.
    #[inline]
    pub fn get(
        &self,
        sid: u16,
        iova: u64,
        write: bool,
        scalable: bool,
        epoch: u64,
    ) -> Option<(Translation, bool)> {
        self.slots
            .get(u32::from(sid), iova, u8::from(scalable), epoch)
            .filter(|(t, _)| t.perm.allows(write))
    }

    /// Record the translation of (`sid`, `iova`) at `epoch`.
    #[inline]
    pub fn put(&self, sid: u16, iova: u64, scalable: bool, epoch: u64, t: Translation, device_tlb: bool) {
        self.slots.put(u32::from(sid), iova, u8::from(scalable), epoch, (t, device_tlb));
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
    /// See [`BoundedMap::changes`].
    pub fn changes(&self) -> u64 {
        self.map.changes()
    }

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
    /// See [`BoundedMap::changes`].
    pub fn changes(&self) -> u64 {
        self.map.changes()
    }

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

    /// Whether the entry at 4 KiB page `gfn` overlaps the inclusive byte
    /// range.
    fn overlaps(gfn: u64, e: &IotlbEntry, (first, last): (u64, u64)) -> bool {
        let start = gfn << 12;
        let end = start + (e.size() - 1);
        !(end < first || start > last)
    }

    /// The IOTLB against a plain list with the architected rules, under a
    /// long random sequence of inserts, lookups and every invalidation.
    #[test]
    fn iotlb_matches_a_naive_model() {
        #[derive(Clone, Copy)]
        struct Item {
            did: u16,
            pasid: u32,
            gfn: u64,
            e: IotlbEntry,
            kind: MappingKind,
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let kinds = [
            MappingKind::SecondStage,
            MappingKind::FirstStage,
            MappingKind::Nested,
            MappingKind::PassThrough,
        ];
        let pasids = [0, 1, 7, LEGACY_PASID];
        let mut t = Iotlb::default();
        let mut model: Vec<Item> = Vec::new();
        for step in 0..200_000 {
            let did = rnd(3) as u16;
            let pasid = pasids[rnd(4) as usize];
            // addresses in 8 MiB around two 1 GiB boundaries, so that all levels overlap
            let iova = (rnd(2) << 30) + (rnd(2048) << 12);
            match rnd(10) {
                0..=5 => {
                    let level = 1 + rnd(3) as u8;
                    let shift = level_shift(level);
                    let e = IotlbEntry {
                        domain_id: did,
                        iova: (iova >> shift) << shift,
                        phys: rnd(1 << 20) << 12,
                        level,
                        perm: Perm::RW,
                    };
                    let kind = kinds[rnd(4) as usize];
                    let gfn = e.iova >> 12;
                    let same = |i: &Item| {
                        i.did == did && i.pasid == pasid && i.gfn == gfn && i.e.level == level
                    };
                    if !model.iter().any(same) && model.len() >= IOTLB_MAX {
                        model.clear();
                    }
                    model.retain(|i| !same(i));
                    model.push(Item { did, pasid, gfn, e, kind });
                    t.insert_tagged(e, pasid, kind);
                }
                6 => {
                    let am = [0u8, 0, 1, 9, 10, 18, 30][rnd(7) as usize];
                    let range = page_range(iova, am);
                    if rnd(2) == 0 {
                        t.invalidate_pages(did, iova, am);
                        model.retain(|i| {
                            !(i.did == did
                                && (i.kind.has_first_stage() || overlaps(i.gfn, &i.e, range)))
                        });
                    } else {
                        t.invalidate_pasid_pages(did, pasid, iova, am);
                        model.retain(|i| {
                            !(i.did == did
                                && i.pasid == pasid
                                && i.kind.has_first_stage()
                                && overlaps(i.gfn, &i.e, range))
                        });
                    }
                }
                7 => match rnd(20) {
                    0 => {
                        t.invalidate_all();
                        model.clear();
                    }
                    1..=9 => {
                        t.invalidate_domain(did);
                        model.retain(|i| i.did != did);
                    }
                    _ => {
                        t.invalidate_pasid(did, pasid);
                        model.retain(|i| !(i.did == did && i.pasid == pasid));
                    }
                },
                _ => {
                    let want = (1..=3u8).find_map(|level| {
                        let shift = level_shift(level);
                        let gfn = ((iova >> shift) << shift) >> 12;
                        model
                            .iter()
                            .find(|i| {
                                i.did == did && i.pasid == pasid && i.gfn == gfn && i.e.level == level
                            })
                            .map(|i| i.e)
                    });
                    assert_eq!(t.lookup_pasid(did, pasid, iova), want, "step {step}");
                }
            }
            assert_eq!(t.len(), model.len(), "step {step}");
        }
    }

    #[test]
    fn invalidations_leave_other_domains_and_pasids() {
        let mut t = Iotlb::default();
        for p in 0..100u64 {
            t.insert(entry(1, p << 12, 1));
        }
        t.insert_tagged(entry(2, 0, 1), 5, MappingKind::FirstStage);
        t.invalidate_domain(3);
        t.invalidate_pasid(1, 5);
        t.invalidate_pages(1, 200 << 12, 0);
        t.invalidate_pasid_pages(2, 5, 0x1000, 0);
        assert_eq!(t.len(), 101);
        t.invalidate_pasid_pages(2, 5, 0, 0);
        assert_eq!(t.len(), 100);
        t.invalidate_domain(1);
        assert!(t.is_empty());
        assert!(t.lookup(1, 0).is_none());
    }

    #[test]
    fn device_selective_function_masks() {
        assert_eq!(function_mask(0), 0xffff);
        assert_eq!(function_mask(1) & 7, 3);
        assert_eq!(function_mask(2) & 7, 1);
        assert_eq!(function_mask(3) & 7, 0);
    }
}
