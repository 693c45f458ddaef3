//! Shadow synchronization for MAP/UNMAP notifiers (caching mode): the
//! events reported for each invalidation, exact MAP/UNMAP lists, identity
//! and blocked address spaces, robustness of the range walk.

mod common;
mod sm_common;

use common::*;
use vtd_core::registers::*;
use vtd_core::{
    AddressSpaceMode, Config, Effects, GlobalCause, InvalidationEvent, NotifierEvent, NotifierKind,
    Perm, Shadow, TranslationKind,
};

const RO: Perm = Perm { read: true, write: false };
const WO: Perm = Perm { read: false, write: true };
const DID: u16 = 5;
const K4: u64 = 0x1000;
const M2: u64 = 0x20_0000;
const G1: u64 = 0x4000_0000;

fn cm() -> Config {
    Config { caching_mode: true, ..Config::default() }
}

fn map(iova: u64, size: u64, phys: u64, perm: Perm) -> NotifierEvent {
    NotifierEvent { kind: NotifierKind::Map, iova, size, phys, perm }
}

fn unmap(iova: u64, size: u64, phys: u64) -> NotifierEvent {
    NotifierEvent { kind: NotifierKind::Unmap, iova, size, phys, perm: Perm::default() }
}

/// Feed every invalidation of `fx` to the shadow of (`s`, no PASID).
fn sync(e: &Env, s: u16, fx: &Effects, sh: &mut Shadow) -> Vec<NotifierEvent> {
    let mut out = Vec::new();
    assert!(!fx.invalidations.is_empty(), "no invalidation reported: {fx:?}");
    for ev in &fx.invalidations {
        let o = e.vtd.sync_shadow(s, None, ev, sh, &e.mem);
        assert!(!o.truncated);
        out.extend(o.events);
    }
    out
}

/// Legacy device `s` in domain DID with 4-level tables and three mappings
/// (4 KiB RW, 2 MiB RO, 1 GiB RW); translation enabled.
fn setup() -> (Env, u16, u64) {
    let mut e = Env::with(cm());
    let s = sid(0, 3, 0);
    let pgd = e.setup_device(s, DID, 4);
    e.map(pgd, 4, 0x1000, 0xa000, 1, RW);
    e.map(pgd, 4, 0x20_0000, 0x4000_0000, 2, R);
    e.map(pgd, 4, 0x80_0000_0000, 0x1_0000_0000, 3, RW);
    e.enable();
    (e, s, pgd)
}

fn replay(e: &Env, s: u16, sh: &mut Shadow) -> Vec<NotifierEvent> {
    let o = e.vtd.replay_shadow(s, None, sh, &e.mem);
    assert!(!o.truncated);
    o.events
}

#[test]
fn replay_from_empty_maps_every_leaf_once() {
    let (e, s, _) = setup();
    let mut sh = Shadow::new();
    assert_eq!(
        replay(&e, s, &mut sh),
        vec![
            map(0x1000, K4, 0xa000, Perm::RW),
            map(0x20_0000, M2, 0x4000_0000, RO),
            map(0x80_0000_0000, G1, 0x1_0000_0000, Perm::RW),
        ]
    );
    assert_eq!(sh.len(), 3);
    assert_eq!(sh.lookup(0x20_1234).map(|(k, en)| (k, en.size)), Some((0x20_0000, M2)));
    assert_eq!(sh.lookup(0x40_0000), None);
    // Nothing changed: a second replay and a global invalidation report nothing.
    assert!(replay(&e, s, &mut sh).is_empty());
    let o = e.vtd.sync_shadow(s, None, &InvalidationEvent::IotlbGlobal, &mut sh, &e.mem);
    assert!(o.events.is_empty());
    assert_eq!(o.mode, AddressSpaceMode::Translated { did: DID, pasid: None, kind: TranslationKind::SecondStage });
    assert!(!o.mode.is_identity());
}

#[test]
fn page_selective_invalidation_maps_new_unmaps_removed_and_remaps_changed() {
    let (mut e, s, pgd) = setup();
    let mut sh = Shadow::new();
    replay(&e, s, &mut sh);
    // New page.
    e.map(pgd, 4, 0x3000, 0xb000, 1, RW);
    e.iotlb_pages(DID, 0x3000, 0);
    let fx = e.w64(IOTLB, (3 << 60) | (u64::from(DID) << 32) | IOTLB_IVT);
    assert_eq!(
        fx.invalidations,
        vec![InvalidationEvent::IotlbPages { did: DID, addr: 0x3000, size: K4, leaf_only: false }]
    );
    assert_eq!(sync(&e, s, &fx, &mut sh), vec![map(0x3000, K4, 0xb000, Perm::RW)]);
    // Same invalidation again: unchanged, no duplicate MAP.
    assert!(sync(&e, s, &fx, &mut sh).is_empty());
    // Changed output and permission: UNMAP then MAP.
    e.map(pgd, 4, 0x3000, 0xc000, 1, R);
    assert_eq!(
        sync(&e, s, &fx, &mut sh),
        vec![unmap(0x3000, K4, 0xb000), map(0x3000, K4, 0xc000, RO)]
    );
    // Removed (queued invalidation this time, 2 pages covering 0x2000..0x3fff).
    let a = e.pte_addr(pgd, 4, 0x3000, 1);
    e.mem.w64(a, 0);
    e.enable_qi(0);
    let fx = e.submit(&[d_iotlb_pages(DID, 0x2000, 1, true)]);
    assert_eq!(
        fx.invalidations,
        vec![InvalidationEvent::IotlbPages { did: DID, addr: 0x2000, size: 2 * K4, leaf_only: true }]
    );
    assert_eq!(sync(&e, s, &fx, &mut sh), vec![unmap(0x3000, K4, 0xc000)]);
    assert_eq!(sh.len(), 3);
}

#[test]
fn page_selective_range_is_exact() {
    let (mut e, s, pgd) = setup();
    let mut sh = Shadow::new();
    replay(&e, s, &mut sh);
    // Two new pages; only the invalidated one appears.
    e.map(pgd, 4, 0x5000, 0x15000, 1, RW);
    e.map(pgd, 4, 0x6000, 0x16000, 1, RW);
    let ev = InvalidationEvent::IotlbPages { did: DID, addr: 0x6000, size: K4, leaf_only: false };
    let o = e.vtd.sync_shadow(s, None, &ev, &mut sh, &e.mem);
    assert_eq!(o.events, vec![map(0x6000, K4, 0x16000, Perm::RW)]);
    // A domain-selective one finds the other.
    let o = e.vtd.sync_shadow(s, None, &InvalidationEvent::IotlbDomain { did: DID }, &mut sh, &e.mem);
    assert_eq!(o.events, vec![map(0x5000, K4, 0x15000, Perm::RW)]);
}

#[test]
fn other_domains_are_not_affected() {
    let (mut e, s, pgd) = setup();
    let s2 = sid(0, 4, 0);
    let pgd2 = e.setup_device(s2, DID + 1, 4);
    e.map(pgd2, 4, 0x1000, 0xd000, 1, RW);
    e.cc_global();
    let (mut sh, mut sh2) = (Shadow::new(), Shadow::new());
    replay(&e, s, &mut sh);
    assert_eq!(replay(&e, s2, &mut sh2), vec![map(0x1000, K4, 0xd000, Perm::RW)]);
    // Both tables change; only DID's invalidations are performed.
    e.map(pgd, 4, 0x1000, 0xe000, 1, RW);
    e.map(pgd2, 4, 0x1000, 0xf000, 1, RW);
    for ev in [
        InvalidationEvent::IotlbDomain { did: DID },
        InvalidationEvent::IotlbPages { did: DID, addr: 0x1000, size: K4, leaf_only: false },
        InvalidationEvent::ContextDomain { did: DID },
        InvalidationEvent::PasidIotlb { did: DID + 1, pasid: 0 },
    ] {
        assert!(e.vtd.sync_shadow(s2, None, &ev, &mut sh2, &e.mem).events.is_empty(), "{ev:?}");
    }
    let fx_ev = InvalidationEvent::IotlbDomain { did: DID };
    assert_eq!(
        e.vtd.sync_shadow(s, None, &fx_ev, &mut sh, &e.mem).events,
        vec![unmap(0x1000, K4, 0xa000), map(0x1000, K4, 0xe000, Perm::RW)]
    );
    // Device-selective context invalidation of s2 (and the function mask).
    let dev = InvalidationEvent::ContextDevice { sid: s2 | 7, fm: 3 };
    assert!(e.vtd.sync_shadow(s, None, &dev, &mut sh, &e.mem).events.is_empty());
    assert_eq!(
        e.vtd.sync_shadow(s2, None, &dev, &mut sh2, &e.mem).events,
        vec![unmap(0x1000, K4, 0xd000), map(0x1000, K4, 0xf000, Perm::RW)]
    );
}

#[test]
fn context_invalidation_re_resolves_domain_and_tables() {
    let (mut e, s, _) = setup();
    let mut sh = Shadow::new();
    replay(&e, s, &mut sh);
    // Move the device to domain 9 with other tables.
    let pgd9 = e.new_pgd();
    e.map(pgd9, 4, 0x1000, 0x9000, 1, R);
    e.set_context(s, pgd9 | 1, 2 | (9 << 8));
    e.cc_device(s, 0);
    let fx = e.w64(CCMD, (3 << 61) | (u64::from(s) << 16) | CCMD_ICC);
    assert_eq!(fx.invalidations, vec![InvalidationEvent::ContextDevice { sid: s, fm: 0 }]);
    let ev = sync(&e, s, &fx, &mut sh);
    assert_eq!(
        ev,
        vec![
            unmap(0x1000, K4, 0xa000),
            map(0x1000, K4, 0x9000, RO),
            unmap(0x20_0000, M2, 0x4000_0000),
            unmap(0x80_0000_0000, G1, 0x1_0000_0000),
        ]
    );
    // A later invalidation of the old domain still concerns nothing of the new.
    let old = InvalidationEvent::IotlbDomain { did: DID };
    assert!(e.vtd.sync_shadow(s, None, &old, &mut sh, &e.mem).events.is_empty());
    // A page-selective invalidation of the new domain, after a move back to
    // DID, resyncs everything (the identity changed).
    let pgd = e.new_pgd();
    e.map(pgd, 4, 0x7000, 0x7000, 1, RW);
    e.set_context(s, pgd | 1, 2 | (u64::from(DID) << 8));
    let psi = InvalidationEvent::IotlbPages { did: DID, addr: 0x7000, size: K4, leaf_only: false };
    assert_eq!(
        e.vtd.sync_shadow(s, None, &psi, &mut sh, &e.mem).events,
        vec![unmap(0x1000, K4, 0x9000), map(0x7000, K4, 0x7000, Perm::RW)]
    );
}

#[test]
fn context_not_present_unmaps_everything_and_blocks() {
    let (mut e, s, _) = setup();
    let mut sh = Shadow::new();
    replay(&e, s, &mut sh);
    e.set_context(s, 0, 0);
    let o = e.vtd.sync_shadow(s, None, &InvalidationEvent::ContextGlobal, &mut sh, &e.mem);
    assert_eq!(o.mode, AddressSpaceMode::Blocked);
    assert_eq!(o.events.len(), 3);
    assert!(o.events.iter().all(|ev| ev.kind == NotifierKind::Unmap));
    assert!(sh.is_empty());
    assert!(replay(&e, s, &mut sh).is_empty());
}

#[test]
fn pass_through_is_reported_as_identity_with_empty_shadow() {
    let (mut e, s, _) = setup();
    let mut sh = Shadow::new();
    replay(&e, s, &mut sh);
    e.set_context(s, 1 | (2 << 2), 2 | (3 << 8));
    let o = e.vtd.sync_shadow(s, None, &InvalidationEvent::ContextDevice { sid: s, fm: 0 }, &mut sh, &e.mem);
    assert_eq!(o.mode, AddressSpaceMode::PassThrough { did: 3 });
    assert!(o.mode.is_identity());
    assert_eq!(o.events.len(), 3);
    assert!(sh.is_empty());
    assert_eq!(e.vtd.address_space_mode(s, None, &e.mem), AddressSpaceMode::PassThrough { did: 3 });
}

#[test]
fn translation_disable_and_enable_are_global_events() {
    let (mut e, s, _) = setup();
    let mut sh = Shadow::new();
    replay(&e, s, &mut sh);
    let fx = e.gcmd(0, GCMD_TE);
    assert_eq!(fx.invalidations, vec![InvalidationEvent::Global(GlobalCause::TranslationDisabled)]);
    let o = e.vtd.sync_shadow(s, None, &fx.invalidations[0], &mut sh, &e.mem);
    assert_eq!((o.mode, o.events.len()), (AddressSpaceMode::Disabled, 3));
    assert!(sh.is_empty());
    let fx = e.gcmd(GCMD_TE, 0);
    assert_eq!(fx.invalidations, vec![InvalidationEvent::Global(GlobalCause::TranslationEnabled)]);
    assert_eq!(sync(&e, s, &fx, &mut sh).len(), 3);
    let fx = e.gcmd(GCMD_SRTP, 0);
    assert_eq!(fx.invalidations, vec![InvalidationEvent::Global(GlobalCause::RootTable)]);
    assert!(sync(&e, s, &fx, &mut sh).is_empty());
    let fx = e.vtd.reset_effects();
    assert_eq!(fx.invalidations, vec![InvalidationEvent::Global(GlobalCause::Reset)]);
    let o = e.vtd.sync_shadow(s, None, &fx.invalidations[0], &mut sh, &e.mem);
    assert_eq!((o.mode, o.events.len()), (AddressSpaceMode::Disabled, 3));
}

#[test]
fn register_and_queued_invalidations_are_all_reported() {
    let (mut e, _, _) = setup();
    let fx = e.w64(CCMD, (1 << 61) | CCMD_ICC);
    assert_eq!(fx.invalidations, vec![InvalidationEvent::ContextGlobal]);
    let fx = e.w64(CCMD, (2 << 61) | 7 | CCMD_ICC);
    assert_eq!(fx.invalidations, vec![InvalidationEvent::ContextDomain { did: 7 }]);
    let fx = e.w64(IOTLB, (1 << 60) | IOTLB_IVT);
    assert_eq!(fx.invalidations, vec![InvalidationEvent::IotlbGlobal]);
    let fx = e.w64(IOTLB, (2 << 60) | (7 << 32) | IOTLB_IVT);
    assert_eq!(fx.invalidations, vec![InvalidationEvent::IotlbDomain { did: 7 }]);
    // Invalid granularity: no event.
    assert!(e.w64(CCMD, CCMD_ICC).invalidations.is_empty());
    e.enable_qi(0);
    let fx = e.submit(&[
        d_cc_global(),
        d_cc_domain(3),
        d_cc_device(0x108, 2),
        d_iotlb_global(),
        d_iotlb_domain(4),
        d_iotlb_pages(4, 0x12_3000, 2, false),
        d_wait(false, false, true, 0, 0),
        d_iec_global(),
    ]);
    assert_eq!(
        fx.invalidations,
        vec![
            InvalidationEvent::ContextGlobal,
            InvalidationEvent::ContextDomain { did: 3 },
            InvalidationEvent::ContextDevice { sid: 0x108, fm: 2 },
            InvalidationEvent::IotlbGlobal,
            InvalidationEvent::IotlbDomain { did: 4 },
            InvalidationEvent::IotlbPages { did: 4, addr: 0x12_0000, size: 4 * K4, leaf_only: false },
        ]
    );
    assert!(fx.invalidations.iter().all(|ev| ev.device_tlb_range(0x108, None).is_none()));
}

#[test]
fn superpage_split_by_the_guest_unmaps_the_superpage_first() {
    let (mut e, s, pgd) = setup();
    let mut sh = Shadow::new();
    replay(&e, s, &mut sh);
    // Replace the 2 MiB page at 0x20_0000 by a table with two 4 KiB pages;
    // the guest invalidates only one of them.
    let t = e.alloc_page();
    e.mem.w64(t + 8, 0x5000_1000 | RW);
    e.mem.w64(t + 16, 0x5000_2000 | RW);
    let a = e.pte_addr(pgd, 4, 0x20_0000, 2);
    e.mem.w64(a, t | RW);
    let psi = InvalidationEvent::IotlbPages { did: DID, addr: 0x20_1000, size: K4, leaf_only: false };
    assert_eq!(
        e.vtd.sync_shadow(s, None, &psi, &mut sh, &e.mem).events,
        vec![
            unmap(0x20_0000, M2, 0x4000_0000),
            map(0x20_1000, K4, 0x5000_1000, Perm::RW),
            map(0x20_2000, K4, 0x5000_2000, Perm::RW),
        ]
    );
    // And back: the 2 MiB leaf replaces both small pages.
    e.mem.w64(a, 0x6000_0000 | RW | PS);
    assert_eq!(
        e.vtd.sync_shadow(s, None, &psi, &mut sh, &e.mem).events,
        vec![
            unmap(0x20_1000, K4, 0x5000_1000),
            unmap(0x20_2000, K4, 0x5000_2000),
            map(0x20_0000, M2, 0x6000_0000, Perm::RW),
        ]
    );
}

#[test]
fn write_only_pages_interrupt_range_and_bad_entries() {
    let mut e = Env::with(cm());
    let s = sid(1, 0, 0);
    let pgd = e.setup_device(s, DID, 3);
    e.map(pgd, 3, 0x1000, 0x11000, 1, W);
    // Output in the interrupt range: a DMA would fault, so not mapped.
    e.map(pgd, 3, 0x2000, 0xfee0_0000, 1, RW);
    // Reserved bit (TM, bit 62): not mapped.
    let a = e.pte_addr(pgd, 3, 0x3000, 1);
    e.mem.w64(a, 0x13000 | RW | (1 << 62));
    // A page table that cannot be read: its range is unmapped.
    e.map(pgd, 3, 0x40_0000, 0x14000, 1, RW);
    let pde = e.pte_addr(pgd, 3, 0x40_0000, 2);
    let pt = e.mem.r64(pde) & !0xfff;
    e.map(pgd, 3, 0x60_0000, 0x15000, 1, RW);
    e.enable();
    let mut sh = Shadow::new();
    assert_eq!(
        replay(&e, s, &mut sh),
        vec![
            map(0x1000, K4, 0x11000, WO),
            map(0x40_0000, K4, 0x14000, Perm::RW),
            map(0x60_0000, K4, 0x15000, Perm::RW),
        ]
    );
    e.mem.unmap(pt, 0x1000);
    let o = e.vtd.replay_shadow(s, None, &mut sh, &e.mem);
    assert_eq!(o.events, vec![unmap(0x40_0000, K4, 0x14000)]);
    // No fault was recorded by any of this.
    assert_eq!(e.fsts(), 0);
}

#[test]
fn sparse_full_range_walk_reads_only_present_tables() {
    let mut e = Env::with(cm());
    let s = sid(0, 1, 0);
    let pgd = e.setup_device(s, DID, 4);
    e.map(pgd, 4, 0, 0x10000, 1, RW);
    e.map(pgd, 4, 0xffff_ffff_f000, 0x20000, 1, RW);
    e.enable();
    // Two paths of 3 tables below the root: 7 tables of 512 entries.
    let mut sh = Shadow::with_walk_limit(7 * 512);
    let o = e.vtd.replay_shadow(s, None, &mut sh, &e.mem);
    assert!(!o.truncated);
    assert_eq!(o.events, vec![map(0, K4, 0x10000, Perm::RW), map(0xffff_ffff_f000, K4, 0x20000, Perm::RW)]);
    let mut small = Shadow::with_walk_limit(7 * 512 - 1);
    let o = e.vtd.replay_shadow(s, None, &mut small, &e.mem);
    assert!(o.truncated);
    assert_eq!(o.events, vec![map(0, K4, 0x10000, Perm::RW)]);
}

#[test]
fn self_referencing_tables_hit_the_cap_without_panic() {
    let mut e = Env::with(cm());
    let s = sid(0, 1, 0);
    let pgd = e.setup_device(s, DID, 4);
    // Every entry of every level points to the root table itself; at level
    // 1 that is a 4 KiB leaf mapping the root page.
    for i in 0..512 {
        e.mem.w64(pgd + i * 8, pgd | RW);
    }
    e.enable();
    let mut sh = Shadow::with_walk_limit(20_000);
    let o = e.vtd.replay_shadow(s, None, &mut sh, &e.mem);
    assert!(o.truncated);
    assert!(o.events.len() < 20_000);
    assert!(o.events.iter().all(|ev| ev.kind == NotifierKind::Map && ev.phys == pgd));
    assert_eq!(sh.len(), o.events.len());
    // A larger limit: still bounded and consistent.
    let mut sh = Shadow::with_walk_limit(200_000);
    let o = e.vtd.replay_shadow(s, None, &mut sh, &e.mem);
    assert!(o.truncated);
    assert_eq!(sh.len(), o.events.len());
    assert!(sh.iter().all(|(_, en)| en.size == K4));
}

#[test]
fn unmap_all_empties_the_shadow() {
    let (e, s, _) = setup();
    let mut sh = Shadow::new();
    replay(&e, s, &mut sh);
    let ev = sh.unmap_all();
    assert_eq!(
        ev,
        vec![
            unmap(0x1000, K4, 0xa000),
            unmap(0x20_0000, M2, 0x4000_0000),
            unmap(0x80_0000_0000, G1, 0x1_0000_0000),
        ]
    );
    assert!(sh.is_empty());
    assert_eq!(replay(&e, s, &mut sh).len(), 3);
}

// ---------------------------------------------------------------------------
// update_notified_space: every kind of notifier, and identity decisions.

use vtd_core::{Notification, NotifierFlags};

const MAP_FLAGS: NotifierFlags = NotifierFlags { map: true, unmap: true, device_iotlb: false };
const UNMAP_ONLY: NotifierFlags = NotifierFlags { map: false, unmap: true, device_iotlb: false };
const DEV_IOTLB: NotifierFlags = NotifierFlags { map: false, unmap: false, device_iotlb: true };
/// The whole input space of aw-bits 48.
const TOP48: u64 = (1 << 48) - 1;

#[test]
fn map_notifiers_get_the_shadow_differences() {
    let (mut e, s, pgd) = setup();
    let mut sh = Shadow::new();
    replay(&e, s, &mut sh);
    e.map(pgd, 4, 0x3000, 0xb000, 1, R);
    let psi = InvalidationEvent::IotlbPages { did: DID, addr: 0x3000, size: K4, leaf_only: true };
    let up = e.vtd.update_notified_space(s, MAP_FLAGS, Some(&mut sh), &[psi], &e.mem);
    assert_eq!(
        up.notifications,
        vec![Notification::Map { iova: 0x3000, size: K4, phys: 0xb000, perm: RO }]
    );
    assert_eq!(up.identity, None, "a page invalidation cannot change the mode");
    // Removed again: an UNMAP of exactly the page.
    let a = e.pte_addr(pgd, 4, 0x3000, 1);
    e.mem.w64(a, 0);
    let up = e.vtd.update_notified_space(s, MAP_FLAGS, Some(&mut sh), &[psi], &e.mem);
    assert_eq!(up.notifications, vec![Notification::Unmap { first: 0x3000, last: 0x3fff }]);
}

#[test]
fn unmap_only_notifiers_get_the_invalidated_range_without_a_walk() {
    let (e, s, _) = setup();
    let psi = InvalidationEvent::IotlbPages { did: DID, addr: 0x4000, size: 4 * K4, leaf_only: false };
    let events = [
        psi,
        InvalidationEvent::IotlbPages { did: DID + 1, addr: 0x4000, size: K4, leaf_only: false },
        InvalidationEvent::IotlbDomain { did: DID },
        InvalidationEvent::IotlbDomain { did: DID + 1 },
        InvalidationEvent::ContextDevice { sid: s + 1, fm: 0 },
        InvalidationEvent::ContextDevice { sid: s, fm: 0 },
        InvalidationEvent::IotlbGlobal,
    ];
    let up = e.vtd.update_notified_space(s, UNMAP_ONLY, None, &events, &e.mem);
    assert_eq!(
        up.notifications,
        vec![
            Notification::Unmap { first: 0x4000, last: 0x7fff },
            Notification::Unmap { first: 0, last: TOP48 },
            Notification::Unmap { first: 0, last: TOP48 },
            Notification::Unmap { first: 0, last: TOP48 },
        ]
    );
    // The context invalidations re-evaluate the mode: translated, not identity.
    assert_eq!(up.identity, Some(false));
    // Nothing for a notifier that wants no UNMAPs.
    let up = e.vtd.update_notified_space(s, NotifierFlags::default(), None, &events, &e.mem);
    assert!(up.notifications.is_empty());
}

#[test]
fn device_iotlb_notifiers_get_device_tlb_invalidations_of_their_function() {
    let mut e = Env::with(Config { caching_mode: true, device_tlb: true, ..Config::default() });
    let s = sid(0, 3, 0);
    let pgd = e.setup_device(s, DID, 4);
    e.map(pgd, 4, 0x1000, 0xa000, 1, RW);
    e.enable();
    e.enable_qi(0);
    // Device-TLB invalidation descriptor (type 3): SID, 2 pages at 0x2000 (S=1).
    let d = |sid: u16| (3 | (u64::from(sid) << 32), 0x2000 | 1);
    let fx = e.submit(&[d(s), d(s + 1)]);
    assert_eq!(fx.invalidations.len(), 2, "{fx:?}");
    let up = e.vtd.update_notified_space(s, DEV_IOTLB, None, &fx.invalidations, &e.mem);
    assert_eq!(up.notifications, vec![Notification::DeviceIotlbUnmap { iova: 0x2000, mask: 0x1fff }]);
    // An UNMAP-only notifier hears nothing of the device-TLB.
    let up = e.vtd.update_notified_space(s, UNMAP_ONLY, None, &fx.invalidations, &e.mem);
    assert!(up.notifications.is_empty());
}

#[test]
fn identity_follows_translation_enable_and_pass_through() {
    let (mut e, s, _) = setup();
    let mut sh = Shadow::new();
    replay(&e, s, &mut sh);
    let fx = e.gcmd(0, GCMD_TE);
    let up = e.vtd.update_notified_space(s, MAP_FLAGS, Some(&mut sh), &fx.invalidations, &e.mem);
    assert_eq!(up.identity, Some(true));
    assert_eq!(up.notifications.len(), 3);
    assert!(up.notifications.iter().all(|n| matches!(n, Notification::Unmap { .. })));
    let fx = e.gcmd(GCMD_TE, 0);
    let up = e.vtd.update_notified_space(s, NotifierFlags::default(), None, &fx.invalidations, &e.mem);
    assert_eq!(up, vtd_core::SpaceUpdate { identity: Some(false), ..Default::default() });
    // Pass-through context entry (TT=10b), seen at the context invalidation.
    e.set_context(s, 1 | (2 << 2), 2 | (u64::from(DID) << 8));
    let cc = [InvalidationEvent::ContextDevice { sid: s, fm: 0 }];
    let up = e.vtd.update_notified_space(s, UNMAP_ONLY, None, &cc, &e.mem);
    assert_eq!(up.identity, Some(true));
    assert_eq!(up.notifications, vec![Notification::Unmap { first: 0, last: TOP48 }]);
}

#[test]
fn random_events_never_panic_and_map_notifiers_stay_consistent() {
    let (mut e, s, pgd) = setup();
    let mut rng = Rng(0x5eed_1234);
    let mut sh = Shadow::new();
    for _ in 0..300 {
        let iova = rng.below(1 << 20) & !0xfff;
        if rng.chance(2) {
            e.map(pgd, 4, iova, rng.below(1 << 30) & !0xfff, 1, 1 + rng.below(3));
        } else {
            let a = e.pte_addr(pgd, 4, iova, 1);
            e.mem.w64(a, rng.next());
        }
        let ev = match rng.below(4) {
            0 => InvalidationEvent::IotlbPages { did: DID, addr: iova, size: K4, leaf_only: true },
            1 => InvalidationEvent::IotlbDomain { did: DID },
            2 => InvalidationEvent::ContextDevice { sid: s, fm: 0 },
            _ => InvalidationEvent::IotlbGlobal,
        };
        let flags = NotifierFlags { map: true, unmap: true, device_iotlb: rng.chance(2) };
        let up = e.vtd.update_notified_space(s, flags, Some(&mut sh), &[ev], &e.mem);
        for n in &up.notifications {
            if let Notification::Map { iova, size, .. } = *n {
                assert!(size.is_power_of_two() && iova % size == 0);
            }
        }
    }
    // The shadow is exactly what a replay from scratch finds.
    let mut fresh = Shadow::new();
    replay(&e, s, &mut fresh);
    let ev = InvalidationEvent::IotlbGlobal;
    e.vtd.update_notified_space(s, MAP_FLAGS, Some(&mut sh), &[ev], &e.mem);
    assert_eq!(sh.iter().collect::<Vec<_>>(), fresh.iter().collect::<Vec<_>>());
}
