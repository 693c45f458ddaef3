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

use std::{
    cell::Cell,
    collections::hash_map::{Entry, HashMap, RandomState},
    hash::{BuildHasher, Hash, Hasher},
    ops::Deref,
};

use crate::page_walk::{level_shift, level_size, Perm};
use crate::root_context::DeviceContext;
use crate::scalable::{PasidConfig, SmContextEntry};
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

/// Leaf levels the IOTLB holds (4 KiB, 2 MiB, 1 GiB pages).
const LEVELS: std::ops::RangeInclusive<u8> = 1..=3;

/// Key of a page inside a bucket: its page frame number (4 KiB units)
/// aligned to its level, and the level.
fn page_key(iova: u64, level: u8) -> u64 {
    let gfn = (iova >> level_shift(level)) << (level_shift(level) - 12);
    (gfn << 2) | u64::from(level)
}

/// Key of a bucket: (domain id, PASID).
fn bucket_key(domain_id: u16, pasid: u32) -> u64 {
    (u64::from(domain_id) << 32) | u64::from(pasid)
}

/// The cached translations of one (domain id, PASID).
#[derive(Clone, Debug, Default)]
struct Bucket {
    pages: FastMap<u64, (IotlbEntry, MappingKind)>,
    /// How many of `pages` are first-stage or nested.
    first_stage: usize,
    /// How many of `pages` are at level 1, 2, 3: a lookup skips the levels
    /// with none.
    per_level: [u32; 3],
}

impl Bucket {
    fn count(&mut self, e: &IotlbEntry, kind: MappingKind, add: bool) {
        let slot = &mut self.per_level[usize::from(e.level - 1)];
        let fs = kind.has_first_stage();
        if add {
            *slot += 1;
            self.first_stage += usize::from(fs);
        } else {
            *slot -= 1;
            self.first_stage -= usize::from(fs);
        }
    }

    fn remove_key(&mut self, key: u64) -> bool {
        match self.pages.remove(&key) {
            Some((e, kind)) => {
                self.count(&e, kind, false);
                true
            }
            None => false,
        }
    }

    #[inline]
    fn lookup(&self, iova: u64) -> Option<IotlbEntry> {
        LEVELS
            .into_iter()
            .filter(|&l| self.per_level[usize::from(l - 1)] != 0)
            .find_map(|level| self.pages.get(&page_key(iova, level)).map(|v| v.0))
    }

    /// Remove the entries overlapping the pages `first..=last` (4 KiB
    /// units) for which `pick` holds, and every entry for which `all`
    /// holds; returns how many went.  Looks the candidate keys up when
    /// they are fewer than the entries, else scans the bucket: the cost is
    /// bounded by the smaller of the range and the bucket.
    fn remove_range(
        &mut self,
        (first, last): (u64, u64),
        pick: impl Fn(MappingKind) -> bool,
        all: impl Fn(MappingKind) -> bool,
    ) -> usize {
        let before = self.pages.len();
        let scan_all = self.first_stage > 0 && all(MappingKind::FirstStage);
        let candidates: u64 = LEVELS
            .map(|l| {
                let span_shift = level_shift(l) - 12;
                (last >> span_shift) - (first >> span_shift) + 1
            })
            .fold(0u64, u64::saturating_add);
        if scan_all || candidates > self.pages.len() as u64 {
            let (per_level, first_stage) = (&mut self.per_level, &mut self.first_stage);
            self.pages.retain(|k, (e, kind)| {
                let hit = all(*kind) || (pick(*kind) && overlaps(*k >> 2, e, (first, last)));
                if hit {
                    per_level[usize::from(e.level - 1)] -= 1;
                    *first_stage -= usize::from(kind.has_first_stage());
                }
                !hit
            });
        } else {
            for l in LEVELS {
                let span_shift = level_shift(l) - 12;
                for g in (first >> span_shift)..=(last >> span_shift) {
                    let key = ((g << span_shift) << 2) | u64::from(l);
                    if let Some(&(_, kind)) = self.pages.get(&key) {
                        if pick(kind) || all(kind) {
                            self.remove_key(key);
                        }
                    }
                }
            }
        }
        before - self.pages.len()
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

fn overlaps(gfn: u64, e: &IotlbEntry, (first, last): (u64, u64)) -> bool {
    let e_last = gfn.saturating_add((e.size() >> 12).saturating_sub(1));
    !(e_last < first || gfn > last)
}

/// The IOTLB, keyed by domain-id, PASID and input page.
///
/// Entries live in one bucket per (domain id, PASID), with an index of the
/// PASIDs each domain has buckets for, so that every invalidation touches
/// only what it may remove: a domain- or PASID-selective invalidation
/// drops whole buckets, a page-selective one looks up the few keys its
/// range can hold (or scans the one bucket when that is smaller).  Entries
/// of other domains and PASIDs never cost anything.
#[derive(Clone, Debug, Default)]
pub struct Iotlb {
    buckets: FastMap<u64, Bucket>,
    /// Domain id -> the PASIDs with a bucket in that domain.
    pasids: FastMap<u16, Vec<u32>>,
    len: usize,
    /// See [`Iotlb::changes`].
    changes: u64,
}

impl Iotlb {
    /// Cached legacy-mode translation covering `iova` in `domain_id`.
    pub fn lookup(&self, domain_id: u16, iova: u64) -> Option<IotlbEntry> {
        self.lookup_pasid(domain_id, LEGACY_PASID, iova)
    }

    /// Cached translation covering `iova` for (`domain_id`, `pasid`).
    #[inline]
    pub fn lookup_pasid(&self, domain_id: u16, pasid: u32, iova: u64) -> Option<IotlbEntry> {
        self.buckets.get(&bucket_key(domain_id, pasid))?.lookup(iova)
    }

    /// Cache a legacy-mode translation.
    pub fn insert(&mut self, entry: IotlbEntry) {
        self.insert_tagged(entry, LEGACY_PASID, MappingKind::SecondStage);
    }

    /// Cache a translation for `pasid` of the given kind.  Only 4 KiB,
    /// 2 MiB and 1 GiB pages are cached (no other leaf exists).
    pub fn insert_tagged(&mut self, entry: IotlbEntry, pasid: u32, kind: MappingKind) {
        if !LEVELS.contains(&entry.level) {
            return;
        }
        let bkey = bucket_key(entry.domain_id, pasid);
        let key = page_key(entry.iova, entry.level);
        if self.len >= IOTLB_MAX
            && !self.buckets.get(&bkey).is_some_and(|b| b.pages.contains_key(&key))
        {
            self.invalidate_all();
        }
        let bucket = match self.buckets.entry(bkey) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                self.pasids.entry(entry.domain_id).or_default().push(pasid);
                v.insert(Bucket::default())
            }
        };
        if let Some((old, old_kind)) = bucket.pages.insert(key, (entry, kind)) {
            bucket.count(&old, old_kind, false);
            self.changes += 1;
        } else {
            self.len += 1;
        }
        bucket.count(&entry, kind, true);
    }

    /// Forget the bucket of (`domain_id`, `pasid`) if it is empty.
    fn drop_if_empty(&mut self, domain_id: u16, pasid: u32) {
        let bkey = bucket_key(domain_id, pasid);
        if self.buckets.get(&bkey).is_some_and(|b| b.pages.is_empty()) {
            self.buckets.remove(&bkey);
            self.unindex(domain_id, pasid);
        }
    }

    fn unindex(&mut self, domain_id: u16, pasid: u32) {
        if let Some(list) = self.pasids.get_mut(&domain_id) {
            list.retain(|&p| p != pasid);
            if list.is_empty() {
                self.pasids.remove(&domain_id);
            }
        }
    }

    /// PASID-selective-within-domain invalidation (PASID-based IOTLB
    /// invalidation, G = 10b): every entry of (`domain_id`, `pasid`).
    pub fn invalidate_pasid(&mut self, domain_id: u16, pasid: u32) {
        self.changes += 1;
        if let Some(b) = self.buckets.remove(&bucket_key(domain_id, pasid)) {
            self.len -= b.pages.len();
            self.unindex(domain_id, pasid);
        }
    }

    /// Page-selective-within-PASID invalidation (G = 11b): first-stage and
    /// nested entries of (`domain_id`, `pasid`) overlapping the naturally
    /// aligned 2^`am` pages at `addr`. Second-stage and pass-through
    /// entries are not affected (the spec leaves them to the legacy IOTLB
    /// invalidations).
    pub fn invalidate_pasid_pages(&mut self, domain_id: u16, pasid: u32, addr: u64, am: u8) {
        self.changes += 1;
        let range = page_range(addr, am);
        let Some(b) = self.buckets.get_mut(&bucket_key(domain_id, pasid)) else { return };
        if b.first_stage == 0 {
            return;
        }
        self.len -= b.remove_range(range, MappingKind::has_first_stage, |_| false);
        self.drop_if_empty(domain_id, pasid);
    }

    /// Global invalidation.
    pub fn invalidate_all(&mut self) {
        self.buckets.clear();
        self.pasids.clear();
        self.len = 0;
        self.changes += 1;
    }

    /// Domain-selective invalidation.
    pub fn invalidate_domain(&mut self, domain_id: u16) {
        self.changes += 1;
        for pasid in self.pasids.remove(&domain_id).unwrap_or_default() {
            if let Some(b) = self.buckets.remove(&bucket_key(domain_id, pasid)) {
                self.len -= b.pages.len();
            }
        }
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
        self.changes += 1;
        let range = page_range(addr, am);
        let Some(mut pasids) = self.pasids.remove(&domain_id) else { return };
        pasids.retain(|&pasid| {
            let bkey = bucket_key(domain_id, pasid);
            let Some(b) = self.buckets.get_mut(&bkey) else { return false };
            self.len -= b.remove_range(range, |_| true, MappingKind::has_first_stage);
            if b.pages.is_empty() {
                self.buckets.remove(&bkey);
                return false;
            }
            true
        });
        if !pasids.is_empty() {
            self.pasids.insert(domain_id, pasids);
        }
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// A count that grows whenever an entry is removed or replaced (by an
    /// invalidation, by the flush when full, by a new translation of a
    /// cached page), never when one is only added.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Slots of [`RecentTranslations`].
const RECENT_SLOTS: usize = 64;

#[derive(Clone, Copy, Debug, Default)]
struct RecentSlot {
    /// [`RecentTranslations::get`]'s `epoch` + 1 when filled; 0: empty.
    tag: u64,
    sid: u16,
    /// 4 KiB page number of the request.
    page: u64,
    scalable: bool,
    /// The requester's context lets it use a device-TLB (ATS).
    device_tlb: bool,
    t: Option<Translation>,
}

/// The last successful translations of requests without PASID, one per
/// slot, indexed by requester and 4 KiB page: a small direct-mapped cache
/// in front of the context caches and the IOTLB, like the first-level TLB
/// of a real IOMMU.  It holds only what those caches gave, tagged with
/// their combined change count (`epoch`): an entry is used only while
/// none of them has dropped or replaced anything since, so it never
/// answers differently from them.  Interior mutability lets a lookup
/// through `&Vtd` fill it.
#[derive(Clone, Debug)]
pub struct RecentTranslations {
    slots: Box<[Cell<RecentSlot>; RECENT_SLOTS]>,
}

impl Default for RecentTranslations {
    fn default() -> Self {
        RecentTranslations { slots: Box::new([const { Cell::new(RecentSlot { tag: 0, sid: 0, page: 0, scalable: false, device_tlb: false, t: None }) }; RECENT_SLOTS]) }
    }
}

impl RecentTranslations {
    #[inline]
    fn slot(&self, sid: u16, page: u64) -> &Cell<RecentSlot> {
        let i = (page ^ u64::from(sid).wrapping_mul(0x9e37_79b9)) as usize % RECENT_SLOTS;
        &self.slots[i]
    }

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
        let page = iova >> 12;
        let e = self.slot(sid, page).get();
        if e.tag != epoch.wrapping_add(1) || e.sid != sid || e.page != page || e.scalable != scalable {
            return None;
        }
        e.t.filter(|t| t.perm.allows(write)).map(|t| (t, e.device_tlb))
    }

    /// Record the translation of (`sid`, `iova`) at `epoch`.
    #[inline]
    pub fn put(&self, sid: u16, iova: u64, scalable: bool, epoch: u64, t: Translation, device_tlb: bool) {
        let page = iova >> 12;
        let tag = epoch.wrapping_add(1);
        self.slot(sid, page).set(RecentSlot { tag, sid, page, scalable, device_tlb, t: Some(t) });
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
    fn device_selective_function_masks() {
        assert_eq!(function_mask(0), 0xffff);
        assert_eq!(function_mask(1) & 7, 3);
        assert_eq!(function_mask(2) & 7, 1);
        assert_eq!(function_mask(3) & 7, 0);
    }
}
