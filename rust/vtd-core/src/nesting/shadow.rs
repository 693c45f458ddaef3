//! Shadow synchronization for IOMMU notifiers (caching mode: vfio, vhost).
//!
//! Conventions: a *notified address space* is a PCI function (source-id
//! `sid`) plus an optional PASID (`None`: requests without PASID, i.e.
//! RID_PASID in scalable mode). The glue keeps one [`Shadow`] per notified
//! address space: the mappings last reported to its MAP notifiers, as
//! non-overlapping, naturally aligned power-of-two ranges of input
//! addresses. For every [`InvalidationEvent`] in [`Effects`] it calls
//! [`Vtd::sync_shadow`], which
//!
//! 1. resolves the address space's context / PASID entry *from guest
//!    memory* (never from the caches the event may just have flushed) and
//!    decides whether the event concerns it (domain id, PASID, source-id,
//!    or a change of domain / translation type since the last sync);
//! 2. walks the guest's page tables over the affected input range without
//!    touching the caches, the fault registers or accessed/dirty flags (a
//!    notifier walk is not DMA); a table that cannot be read, or an entry
//!    with reserved bits set, makes its range unmapped;
//! 3. returns the [`NotifierEvent`]s that bring the shadow to the new state
//!    and updates the shadow: an UNMAP for every range no longer mapped or
//!    mapped differently, a MAP for every new or changed range (a changed
//!    range is unmapped before it is mapped again), nothing for unchanged
//!    ranges, so a consumer never sees a duplicate MAP.
//!
//! Every event has a naturally aligned power-of-two `size` (the page size
//! of the leaf, or for nested translation the smaller of the two stages'
//! page sizes). Events are ordered by address, with the UNMAPs that
//! overlap a MAP before it.
//!
//! Identity address spaces (translation disabled, pass-through) and blocked
//! ones (context or PASID entry not present or invalid) have no mappings:
//! the shadow is emptied (UNMAP events) and [`SyncOutcome::mode`] tells the
//! glue to switch the address space to untranslated memory
//! ([`AddressSpaceMode::is_identity`]) as the C device does.
//!
//! First-stage mappings are reported with the permissions of the requests
//! the address space carries: supervisor for requests without PASID when
//! RID_PRIV is set, user otherwise (requests with PASID are assumed to be
//! user requests: the narrower permissions). Write permission of a
//! first-stage page is reported whether or not its D flag is set: the
//! consumer's writes do not set it.
//!
//! Work cap: one call reads at most [`Shadow::walk_limit`] paging-structure
//! entries ([`DEFAULT_WALK_LIMIT`] unless set with
//! [`Shadow::with_walk_limit`]); a walk that reaches the cap stops, the
//! part of the range not walked counts as unmapped, and
//! [`SyncOutcome::truncated`] is set (the glue should log a guest error).
//! This bounds hostile tables (a table that points to itself multiplies
//! the work by 512 per level) while a full-range walk over sparse tables
//! reads only the present entries' tables.

use iommu_core::layout::field_address;
use std::collections::BTreeMap;

use crate::config::width_mask;
use crate::translation::first_stage::{
    fs_bits, fs_reserved_mask, FsControls, FsPte, FsTable, FsWalkConfig, SsTable,
};
use crate::queues::invalidation::InvalidationEvent;
use crate::mem::GuestMemory;
use crate::translation::page_walk::{
    level_shift, level_size, reserved_mask, walk_detailed, Perm, SsPte, WalkConfig,
};
use crate::translation::root_context::{lookup_device_context, ContextMode};
use crate::translation::scalable::{resolve, PasidMode};
use crate::vtd::{Vtd, INTERRUPT_ADDR_FIRST, INTERRUPT_ADDR_LAST};

#[cfg(doc)]
use crate::Effects;

/// Default cap on the paging-structure entries one sync call reads
/// (4 Mi entries: a full replay of 16 GiB mapped with 4 KiB pages).
pub const DEFAULT_WALK_LIMIT: u64 = 1 << 22;

/// MAP or UNMAP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotifierKind {
    /// A new mapping.
    Map,
    /// A mapping is gone.
    Unmap,
}

/// One notification for the address space's MAP/UNMAP notifiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NotifierEvent {
    /// MAP or UNMAP.
    pub kind: NotifierKind,
    /// First input address (aligned to `size`).
    pub iova: u64,
    /// Size in bytes: a power of two, at least 4 KiB.
    pub size: u64,
    /// Output address of `iova` (for an UNMAP: of the mapping removed).
    pub phys: u64,
    /// Permissions (none for an UNMAP).
    pub perm: Perm,
}

/// One shadowed mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShadowEntry {
    /// Size in bytes (power of two; the key is aligned to it).
    pub size: u64,
    /// Output address.
    pub phys: u64,
    /// Permissions (never both false).
    pub perm: Perm,
}

/// The kind of translation an address space uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TranslationKind {
    /// Second-stage tables (legacy mode, or PGTT second-stage).
    SecondStage,
    /// First-stage tables.
    FirstStage,
    /// First-stage tables whose addresses go through the second stage.
    Nested,
}

/// What DMA of an address space currently does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressSpaceMode {
    /// GSTS.TES = 0: DMA is not translated.
    Disabled,
    /// Pass-through (legacy TT = 10b or PGTT pass-through): DMA is not
    /// translated.
    PassThrough {
        /// Domain id of the context / PASID entry.
        did: u16,
    },
    /// DMA is translated by guest page tables.
    Translated {
        /// Domain id.
        did: u16,
        /// PASID used in scalable mode (the address space's, or
        /// RID_PASID); `None` in legacy mode.
        pasid: Option<u32>,
        /// Kind of translation.
        kind: TranslationKind,
    },
    /// The context or PASID entry is not present or invalid: every
    /// request faults.
    Blocked,
}

impl AddressSpaceMode {
    /// DMA of the address space is untranslated (identity): the glue
    /// should route it to plain memory instead of the IOMMU region.
    pub fn is_identity(&self) -> bool {
        matches!(self, AddressSpaceMode::Disabled | AddressSpaceMode::PassThrough { .. })
    }
}

/// Result of a sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Notifications to deliver, in order.
    pub events: Vec<NotifierEvent>,
    /// The address space's current mode.
    pub mode: AddressSpaceMode,
    /// The walk hit the work cap; the rest of the range was treated as
    /// unmapped.
    pub truncated: bool,
}

/// Domain, PASID and kind an address space was translated with at the
/// last sync: an event for the old domain still concerns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Identity {
    did: u16,
    pasid: Option<u32>,
    kind: TranslationKind,
}

/// The mappings last reported to the notifiers of one address space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shadow {
    map: BTreeMap<u64, ShadowEntry>,
    last: Option<Identity>,
    walk_limit: u64,
}

impl Default for Shadow {
    fn default() -> Self {
        Shadow::new()
    }
}

impl Shadow {
    /// An empty shadow with the default work cap.
    pub fn new() -> Shadow {
        Shadow::with_walk_limit(DEFAULT_WALK_LIMIT)
    }

    /// An empty shadow whose syncs read at most `limit` paging-structure
    /// entries per call.
    pub fn with_walk_limit(limit: u64) -> Shadow {
        Shadow { map: BTreeMap::new(), last: None, walk_limit: limit }
    }

    /// The work cap of one sync call, in paging-structure entries read.
    pub fn walk_limit(&self) -> u64 {
        self.walk_limit
    }

    /// Number of shadowed mappings.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The mappings in address order, as (input address, entry).
    pub fn iter(&self) -> impl Iterator<Item = (u64, ShadowEntry)> + '_ {
        self.map.iter().map(|(k, v)| (*k, *v))
    }

    /// The mapping that contains `addr`, as (input address, entry).
    pub fn lookup(&self, addr: u64) -> Option<(u64, ShadowEntry)> {
        let (k, e) = self.map.range(..=addr).next_back()?;
        (addr - k < e.size).then_some((*k, *e))
    }

    /// Forget every mapping, returning the UNMAP events for them (for a
    /// notifier that goes away, or an address space switched to identity).
    pub fn unmap_all(&mut self) -> Vec<NotifierEvent> {
        self.last = None;
        std::mem::take(&mut self.map).into_iter().map(|(k, e)| unmap_event(k, &e)).collect()
    }

    /// Shadow entries that intersect [first, last], as a sorted list.
    fn overlapping(&self, first: u64, last: u64) -> Vec<(u64, ShadowEntry)> {
        let mut out = Vec::new();
        if let Some((k, e)) = self.map.range(..first).next_back() {
            if k.saturating_add(e.size - 1) >= first {
                out.push((*k, *e));
            }
        }
        out.extend(self.map.range(first..=last).map(|(k, e)| (*k, *e)));
        out
    }
}

fn unmap_event(iova: u64, e: &ShadowEntry) -> NotifierEvent {
    NotifierEvent {
        kind: NotifierKind::Unmap,
        iova,
        size: e.size,
        phys: e.phys,
        perm: Perm::default(),
    }
}

/// A leaf found by a range walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Leaf {
    iova: u64,
    size: u64,
    phys: u64,
    perm: Perm,
}

impl Leaf {
    fn last(&self) -> u64 {
        self.iova.saturating_add(self.size - 1)
    }

    fn hits_interrupt_range(&self) -> bool {
        self.phys <= INTERRUPT_ADDR_LAST
            && self.phys.saturating_add(self.size - 1) >= INTERRUPT_ADDR_FIRST
    }
}

/// How an address space resolves right now.
#[derive(Clone, Copy, Debug)]
enum Resolved {
    Disabled,
    Blocked,
    PassThrough { did: u16 },
    Second { id: Identity, ss: SsTable },
    First { id: Identity, fs: FsTable, ctl: FsControls, supervisor: bool },
    Nested { id: Identity, fs: FsTable, ss: SsTable, ctl: FsControls, supervisor: bool },
}

impl Resolved {
    fn identity(&self) -> Option<Identity> {
        match self {
            Resolved::Second { id, .. } | Resolved::First { id, .. } | Resolved::Nested { id, .. } => {
                Some(*id)
            }
            _ => None,
        }
    }

    fn mode(&self) -> AddressSpaceMode {
        match self {
            Resolved::Disabled => AddressSpaceMode::Disabled,
            Resolved::Blocked => AddressSpaceMode::Blocked,
            Resolved::PassThrough { did } => AddressSpaceMode::PassThrough { did: *did },
            Resolved::Second { id, .. } | Resolved::First { id, .. } | Resolved::Nested { id, .. } => {
                AddressSpaceMode::Translated { did: id.did, pasid: id.pasid, kind: id.kind }
            }
        }
    }
}

/// The part of the address space an event affects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Nothing,
    All,
    Range(u64, u64),
}

fn scope_of(
    event: &InvalidationEvent,
    sid: u16,
    scalable: bool,
    ids: &[Identity],
) -> Scope {
    let did_hit = |d: u16| ids.iter().any(|i| i.did == d);
    let pasid_hit = |d: u16, p: u32| ids.iter().any(|i| i.did == d && i.pasid == Some(p));
    let first_stage = ids.iter().any(|i| i.kind != TranslationKind::SecondStage);
    let range = |addr: u64, size: u64| Scope::Range(addr, addr.saturating_add(size.max(1) - 1));
    let all_if = |hit: bool| if hit { Scope::All } else { Scope::Nothing };
    match *event {
        InvalidationEvent::Global(_)
        | InvalidationEvent::ContextGlobal
        | InvalidationEvent::IotlbGlobal
        | InvalidationEvent::PasidCacheGlobal => Scope::All,
        // Scalable-mode context entries carry no domain id.
        InvalidationEvent::ContextDomain { did } => all_if(scalable || did_hit(did)),
        InvalidationEvent::ContextDevice { sid: s, fm } => {
            all_if(InvalidationEvent::context_device_covers(s, fm, sid))
        }
        InvalidationEvent::IotlbDomain { did } | InvalidationEvent::PasidCacheDomain { did } => {
            all_if(did_hit(did))
        }
        // In scalable mode a page-selective IOTLB invalidation also drops
        // every first-stage mapping of the domain.
        InvalidationEvent::IotlbPages { did, addr, size, .. } if did_hit(did) => {
            if first_stage {
                Scope::All
            } else {
                range(addr, size)
            }
        }
        InvalidationEvent::IotlbPages { .. } => Scope::Nothing,
        InvalidationEvent::PasidCachePasid { did, pasid }
        | InvalidationEvent::PasidIotlb { did, pasid } => all_if(pasid_hit(did, pasid)),
        InvalidationEvent::PasidIotlbPages { did, pasid, addr, size, .. } => {
            if pasid_hit(did, pasid) {
                range(addr, size)
            } else {
                Scope::Nothing
            }
        }
        InvalidationEvent::DeviceTlb(_) => Scope::Nothing,
    }
}

/// The input range `event` invalidates for address space (`sid`,
/// `pasid`), from its current context / PASID entry; `None`: not concerned.
pub(crate) fn scope_range(
    vtd: &Vtd,
    sid: u16,
    pasid: Option<u32>,
    event: &InvalidationEvent,
    mem: &dyn GuestMemory,
) -> Option<(u64, u64)> {
    let ids: Vec<Identity> = vtd.resolve_space(sid, pasid, mem).identity().into_iter().collect();
    match scope_of(event, sid, vtd.root_table_scalable(), &ids) {
        Scope::Nothing => None,
        Scope::All => Some((0, u64::MAX)),
        Scope::Range(first, last) => Some((first, last)),
    }
}

impl Vtd {
    /// Resolve address space (`sid`, `pasid`) from guest memory, without
    /// caches or fault reporting.
    fn resolve_space(&self, sid: u16, pasid: Option<u32>, mem: &dyn GuestMemory) -> Resolved {
        if !self.translation_enabled() {
            return Resolved::Disabled;
        }
        let root = self.root_table_address();
        if !self.root_table_scalable() {
            if pasid.is_some() {
                return Resolved::Blocked;
            }
            return match lookup_device_context(mem, root, sid, &self.context_checks()) {
                Err(_) => Resolved::Blocked,
                Ok(c) => match c.mode {
                    ContextMode::PassThrough => Resolved::PassThrough { did: c.domain_id },
                    ContextMode::SecondStage { slptptr, levels, agaw } => Resolved::Second {
                        id: Identity { did: c.domain_id, pasid: None, kind: TranslationKind::SecondStage },
                        ss: SsTable { root: slptptr, levels, agaw },
                    },
                },
            };
        }
        let pc = match resolve(mem, root, sid, pasid.map(|p| (p, false)), &self.sm_caps()) {
            Ok(pc) => pc,
            Err(_) => return Resolved::Blocked,
        };
        let did = pc.pasid_entry.domain_id;
        let id = |kind| Identity { did, pasid: Some(pc.pasid), kind };
        let ctl = self.fs_controls(&pc.pasid_entry);
        let supervisor = pc.privileged;
        match pc.pasid_entry.mode {
            PasidMode::PassThrough => Resolved::PassThrough { did },
            PasidMode::SecondStage(ss) => Resolved::Second { id: id(TranslationKind::SecondStage), ss },
            PasidMode::FirstStage(fs) => {
                Resolved::First { id: id(TranslationKind::FirstStage), fs, ctl, supervisor }
            }
            PasidMode::Nested { fs, ss } => {
                Resolved::Nested { id: id(TranslationKind::Nested), fs, ss, ctl, supervisor }
            }
        }
    }

    /// What DMA of address space (`sid`, `pasid`) currently does, from the
    /// guest's tables in memory (not from caches). The glue uses it to
    /// decide between the IOMMU region and untranslated memory.
    pub fn address_space_mode(
        &self,
        sid: u16,
        pasid: Option<u32>,
        mem: &dyn GuestMemory,
    ) -> AddressSpaceMode {
        self.resolve_space(sid, pasid, mem).mode()
    }

    /// Bring `shadow`, the mappings reported so far to the MAP/UNMAP
    /// notifiers of address space (`sid`, `pasid`), up to date after
    /// `event`, returning the notifications to deliver (see the module
    /// documentation). An event that does not concern the address space
    /// yields no notifications.
    pub fn sync_shadow(
        &self,
        sid: u16,
        pasid: Option<u32>,
        event: &InvalidationEvent,
        shadow: &mut Shadow,
        mem: &dyn GuestMemory,
    ) -> SyncOutcome {
        let resolved = self.resolve_space(sid, pasid, mem);
        let current = resolved.identity();
        let ids: Vec<Identity> = current.iter().chain(shadow.last.iter()).copied().collect();
        let mut scope = scope_of(event, sid, self.root_table_scalable(), &ids);
        if scope != Scope::Nothing && !shadow.is_empty() && current != shadow.last {
            // Another domain, PASID or translation kind: nothing of the
            // old shadow can be trusted.
            scope = Scope::All;
        }
        self.sync_scope(resolved, scope, shadow, mem)
    }

    /// Full-range sync of address space (`sid`, `pasid`): what a new MAP
    /// notifier needs (from an empty shadow: a MAP for every mapping) and
    /// what `replay` does (from an existing shadow: only the differences).
    pub fn replay_shadow(
        &self,
        sid: u16,
        pasid: Option<u32>,
        shadow: &mut Shadow,
        mem: &dyn GuestMemory,
    ) -> SyncOutcome {
        let resolved = self.resolve_space(sid, pasid, mem);
        self.sync_scope(resolved, Scope::All, shadow, mem)
    }

    fn sync_scope(
        &self,
        resolved: Resolved,
        scope: Scope,
        shadow: &mut Shadow,
        mem: &dyn GuestMemory,
    ) -> SyncOutcome {
        let mode = resolved.mode();
        let (first, last) = match scope {
            Scope::Nothing => return SyncOutcome { events: Vec::new(), mode, truncated: false },
            Scope::All => (0, u64::MAX),
            Scope::Range(f, l) => (f, l),
        };
        let Some(id) = resolved.identity() else {
            return SyncOutcome { events: shadow.unmap_all(), mode, truncated: false };
        };
        // Widen the range to whole shadow entries, walk it, and widen it to
        // whole leaves found (leaves and shadow entries are naturally
        // aligned, so nothing intersects the result only partially).
        let mut f = first;
        let mut l = last;
        for (k, e) in shadow.overlapping(first, last) {
            f = f.min(k);
            l = l.max(k.saturating_add(e.size - 1));
        }
        let mut w = RangeWalk { mem, budget: shadow.walk_limit, truncated: false, leaves: Vec::new() };
        self.walk_resolved(&resolved, f, l, &mut w);
        let leaves = w.leaves;
        if let (Some(a), Some(b)) = (leaves.first(), leaves.last()) {
            f = f.min(a.iova);
            l = l.max(b.last());
        }
        let old = shadow.overlapping(f, l);
        let (unmaps, maps) = diff(&old, &leaves);
        for (k, _) in &unmaps {
            shadow.map.remove(k);
        }
        for m in &maps {
            shadow.map.insert(m.iova, ShadowEntry { size: m.size, phys: m.phys, perm: m.perm });
        }
        shadow.last = if shadow.map.is_empty() { None } else { Some(id) };
        SyncOutcome { events: order_events(&unmaps, &maps), mode, truncated: w.truncated }
    }

    fn walk_resolved(&self, r: &Resolved, first: u64, last: u64, w: &mut RangeWalk<'_>) {
        let ss_cfg = self.walk_config();
        let fs_cfg = self.fs_walk_config();
        match *r {
            Resolved::Second { ss, .. } => {
                let limit = width_mask(u32::from(ss.agaw.min(self.config().aw_bits)));
                if first > limit || !(1..=4).contains(&ss.levels) {
                    return;
                }
                let table = ss.root & width_mask(u32::from(ss_cfg.haw_bits)) & !0xfff;
                let mut out = Vec::new();
                w.ss_range(&ss_cfg, table, ss.levels, first, last.min(limit), Perm::RW, &mut out);
                w.leaves.extend(out.into_iter().filter(|l| !l.hits_interrupt_range()));
            }
            Resolved::First { fs, ctl, supervisor, .. } => {
                let fw = FsWalk { cfg: fs_cfg, ss_cfg, ss: None, ctl, supervisor };
                w.fs_walk(&fw, &fs, first, last);
            }
            Resolved::Nested { fs, ss, ctl, supervisor, .. } => {
                let fw = FsWalk { cfg: fs_cfg, ss_cfg, ss: Some(ss), ctl, supervisor };
                w.fs_walk(&fw, &fs, first, last);
            }
            Resolved::Disabled | Resolved::Blocked | Resolved::PassThrough { .. } => {}
        }
    }
}

/// Compare the old shadow entries with the leaves found (both sorted and
/// non-overlapping): (entries to unmap, leaves to map).
fn diff(old: &[(u64, ShadowEntry)], new: &[Leaf]) -> (Vec<(u64, ShadowEntry)>, Vec<Leaf>) {
    let (mut i, mut j) = (0, 0);
    let (mut unmaps, mut maps) = (Vec::new(), Vec::new());
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(&(k, e)), Some(n)) if k == n.iova => {
                if (e.size, e.phys, e.perm) != (n.size, n.phys, n.perm) {
                    unmaps.push((k, e));
                    maps.push(*n);
                }
                i += 1;
                j += 1;
            }
            (Some(&(k, e)), Some(n)) if k < n.iova => {
                unmaps.push((k, e));
                i += 1;
            }
            (Some(_), Some(n)) => {
                maps.push(*n);
                j += 1;
            }
            (Some(&(k, e)), None) => {
                unmaps.push((k, e));
                i += 1;
            }
            (None, Some(n)) => {
                maps.push(*n);
                j += 1;
            }
            (None, None) => break,
        }
    }
    (unmaps, maps)
}

/// Address order, with every UNMAP that starts before the end of a MAP
/// delivered before that MAP (so overlapping old mappings are gone first).
fn order_events(unmaps: &[(u64, ShadowEntry)], maps: &[Leaf]) -> Vec<NotifierEvent> {
    let mut out = Vec::with_capacity(unmaps.len() + maps.len());
    let mut u = unmaps.iter().peekable();
    for m in maps {
        while let Some((k, e)) = u.next_if(|(k, _)| *k <= m.last()) {
            out.push(unmap_event(*k, e));
        }
        out.push(NotifierEvent {
            kind: NotifierKind::Map,
            iova: m.iova,
            size: m.size,
            phys: m.phys,
            perm: m.perm,
        });
    }
    out.extend(u.map(|(k, e)| unmap_event(*k, e)));
    out
}

/// Parameters of a first-stage range walk.
struct FsWalk {
    cfg: FsWalkConfig,
    ss_cfg: WalkConfig,
    /// Second-stage tables for nested translation.
    ss: Option<SsTable>,
    ctl: FsControls,
    supervisor: bool,
}

/// Permissions and flags accumulated down a first-stage walk.
#[derive(Clone, Copy)]
struct FsAcc {
    rw: bool,
    us: bool,
}

/// State of one bounded range walk.
struct RangeWalk<'a> {
    mem: &'a dyn GuestMemory,
    budget: u64,
    truncated: bool,
    leaves: Vec<Leaf>,
}

impl RangeWalk<'_> {
    /// Charge `n` entry reads; false (and `truncated`) once the cap is hit.
    fn charge(&mut self, n: u64) -> bool {
        if self.budget < n {
            self.budget = 0;
            self.truncated = true;
            return false;
        }
        self.budget -= n;
        true
    }

    fn read(&mut self, addr: u64) -> Option<u64> {
        if !self.charge(1) {
            return None;
        }
        self.mem.read_u64(addr).ok()
    }

    /// Second-stage leaves of the table at `table` (level `level`) that
    /// intersect [first, last], with permissions stacked on `perm`.
    #[allow(clippy::too_many_arguments)]
    fn ss_range(
        &mut self,
        cfg: &WalkConfig,
        table: u64,
        level: u8,
        first: u64,
        last: u64,
        perm: Perm,
        out: &mut Vec<Leaf>,
    ) {
        let haw = width_mask(u32::from(cfg.haw_bits));
        let size = level_size(level);
        let mut va = first;
        loop {
            if self.truncated {
                return;
            }
            let base = va & !(size - 1);
            let end = base.saturating_add(size - 1);
            // Arithmetic: the 9-bit table index of va at this level.
            let index = (va >> level_shift(level)) & 0x1ff;
            if let Some(pte) = self.read(table.wrapping_add(index * 8)) {
                let e = SsPte::from(pte);
                let large = (level == 2 || level == 3) && e.ps();
                let large_ok = match level {
                    2 => cfg.large_2m,
                    3 => cfg.large_1g,
                    _ => true,
                };
                let p = Perm { read: perm.read && e.r(), write: perm.write && e.w() };
                let valid = (e.r() || e.w())
                    && pte & reserved_mask(cfg, level, large) == 0
                    && (!large || large_ok)
                    && (p.read || p.write);
                // The address field within the host address width.
                let addr = field_address(e.addr(), 12) & haw;
                if valid {
                    if level == 1 || large {
                        out.push(Leaf { iova: base, size, phys: addr & !(size - 1), perm: p });
                    } else {
                        self.ss_range(cfg, addr, level - 1, va, end.min(last), p, out);
                    }
                }
            }
            if end >= last {
                return;
            }
            va = end + 1;
        }
    }

    /// First-stage (or nested) leaves over the input range [first, last]
    /// (canonical addresses: the upper half is sign-extended).
    fn fs_walk(&mut self, fw: &FsWalk, fs: &FsTable, first: u64, last: u64) {
        if !(4..=5).contains(&fs.levels) {
            return;
        }
        let bits = 12 + 9 * u32::from(fs.levels);
        // Arithmetic: the lower half of a canonical address space.
        let half = 1u64 << (bits - 1);
        let upper_start = !(half - 1); // sign-extended start of the upper half
        let va_mask = width_mask(bits);
        let root = fs.root & width_mask(u32::from(fw.cfg.haw_bits)) & !0xfff;
        let acc = FsAcc { rw: true, us: true };
        // Lower half: [0, half - 1].
        if first < half {
            self.fs_range(fw, root, fs.levels, first, last.min(half - 1), acc, 0);
        }
        // Upper half: va [half, 2^bits - 1] seen as [upper_start, u64::MAX].
        if last >= upper_start {
            let f = first.max(upper_start) & va_mask;
            self.fs_range(fw, root, fs.levels, f, last & va_mask, acc, upper_start & !va_mask);
        }
    }

    /// Where the first-stage table at `gpa` is, and whether accessed/dirty
    /// updates could be written there (nested: second-stage write
    /// permission).
    fn locate_table(&mut self, fw: &FsWalk, gpa: u64) -> Option<(u64, bool)> {
        match fw.ss {
            None => Some((gpa, true)),
            Some(ss) => {
                if !self.charge(u64::from(ss.levels)) {
                    return None;
                }
                let o = walk_detailed(self.mem, &fw.ss_cfg, ss.root, ss.levels, ss.agaw, gpa, false)
                    .ok()?;
                let offset = gpa & (level_size(o.level) - 1);
                Some((o.phys | offset, o.perm.write))
            }
        }
    }

    /// First-stage walk of the table at guest address `table` (level
    /// `level`) over va range [first, last]; `sign` is OR-ed into every
    /// va to form the input address.
    #[allow(clippy::too_many_arguments)]
    fn fs_range(
        &mut self,
        fw: &FsWalk,
        table: u64,
        level: u8,
        first: u64,
        last: u64,
        acc: FsAcc,
        sign: u64,
    ) {
        let Some((host_table, writable)) = self.locate_table(fw, table) else { return };
        let haw_bits = fw.cfg.haw_bits;
        let haw = width_mask(u32::from(haw_bits));
        let size = level_size(level);
        let set_flags = fs_bits(|e| {
            e.set_a(true);
            e.set_ea(fw.ctl.eafe);
        });
        let mut va = first;
        loop {
            if self.truncated {
                return;
            }
            let base = va & !(size - 1);
            let end = base.saturating_add(size - 1);
            // Arithmetic: the 9-bit table index of va at this level.
            let index = (va >> level_shift(level)) & 0x1ff;
            if let Some(pte) = self.read(host_table.wrapping_add(index * 8)) {
                let e = FsPte::from(pte);
                let large = (level == 2 || level == 3) && e.ps();
                let valid = e.p()
                    && pte & fs_reserved_mask(haw_bits, level, large) == 0
                    && !(large && level == 3 && !fw.cfg.large_1g)
                    // The accessed flag could not be set: every access faults.
                    && (pte & set_flags == set_flags || writable);
                let a = FsAcc { rw: acc.rw && e.rw(), us: acc.us && e.us() };
                // The address field within the host address width.
                let addr = field_address(e.addr(), 12) & haw;
                if valid && (a.us || fw.supervisor) {
                    if level == 1 || large {
                        let write_ok = (a.rw || (fw.supervisor && !fw.ctl.wpe))
                            && (e.d() || writable);
                        let leaf = Leaf {
                            iova: base | sign,
                            size,
                            phys: addr & !(size - 1),
                            perm: Perm { read: true, write: write_ok },
                        };
                        self.fs_output(fw, leaf);
                    } else {
                        self.fs_range(fw, addr, level - 1, va, end.min(last), a, sign);
                    }
                }
            }
            if end >= last {
                return;
            }
            va = end + 1;
        }
    }

    /// Record a first-stage leaf; nested: through the second stage, split
    /// where its pages are smaller.
    fn fs_output(&mut self, fw: &FsWalk, leaf: Leaf) {
        let Some(ss) = fw.ss else {
            if !leaf.hits_interrupt_range() {
                self.leaves.push(leaf);
            }
            return;
        };
        let gpa = leaf.phys;
        let limit = width_mask(u32::from(ss.agaw.min(fw.ss_cfg.mgaw_bits)));
        if gpa > limit || !(1..=4).contains(&ss.levels) {
            return;
        }
        let gpa_last = gpa.saturating_add(leaf.size - 1).min(limit);
        let table = ss.root & width_mask(u32::from(fw.ss_cfg.haw_bits)) & !0xfff;
        let mut pieces = Vec::new();
        self.ss_range(&fw.ss_cfg, table, ss.levels, gpa, gpa_last, Perm::RW, &mut pieces);
        for p in pieces {
            let piece = if p.size >= leaf.size {
                Leaf {
                    iova: leaf.iova,
                    size: leaf.size,
                    phys: p.phys + (gpa - p.iova),
                    perm: p.perm,
                }
            } else {
                Leaf { iova: leaf.iova + (p.iova - gpa), size: p.size, phys: p.phys, perm: p.perm }
            };
            let perm = Perm { read: piece.perm.read, write: piece.perm.write && leaf.perm.write };
            let piece = Leaf { perm, ..piece };
            if (perm.read || perm.write) && !piece.hits_interrupt_range() {
                self.leaves.push(piece);
            }
        }
    }
}
