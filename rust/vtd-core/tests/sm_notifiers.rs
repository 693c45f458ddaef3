//! Shadow synchronization in scalable mode: second-stage through RID_PASID,
//! first-stage (privilege, canonical upper half), nested (pages split to
//! the smaller stage), pass-through, and the PASID-granular events.

mod common;
mod sm_common;

use common::{sid, Env};
use sm_common::*;
use vtd_core::{
    AddressSpaceMode, Config, InvalidationEvent, NotifierEvent, NotifierKind, Perm, Shadow,
    TranslationKind,
};

const PASIDE: u64 = 1 << 3;
const RID_PRIV: u64 = 1 << 20;
const SRE: u64 = 1;
const K4: u64 = 0x1000;
const RO: Perm = Perm { read: true, write: false };

fn cfg() -> Config {
    Config {
        scalable_mode: true,
        first_stage: true,
        pasid_bits: 20,
        caching_mode: true,
        strict_dma: true,
        ..Config::default()
    }
}

fn map(iova: u64, size: u64, phys: u64, perm: Perm) -> NotifierEvent {
    NotifierEvent { kind: NotifierKind::Map, iova, size, phys, perm }
}

fn unmap(iova: u64, size: u64, phys: u64) -> NotifierEvent {
    NotifierEvent { kind: NotifierKind::Unmap, iova, size, phys, perm: Perm::default() }
}

fn sync(e: &Env, s: u16, pasid: Option<u32>, ev: InvalidationEvent, sh: &mut Shadow) -> Vec<NotifierEvent> {
    let o = e.vtd.sync_shadow(s, pasid, &ev, sh, &e.mem);
    assert!(!o.truncated);
    o.events
}

fn replay(e: &Env, s: u16, pasid: Option<u32>, sh: &mut Shadow) -> Vec<NotifierEvent> {
    let o = e.vtd.replay_shadow(s, pasid, sh, &e.mem);
    assert!(!o.truncated);
    o.events
}

struct Dev {
    e: Env,
    s: u16,
    dir: u64,
    alloc: Alloc,
}

/// Device with PASIDE and RID_PASID 0; `ctx_hi` adds RID_PRIV.
fn dev(ctx_hi: u64) -> Dev {
    let mut e = Env::with(cfg());
    let s = sid(0, 2, 0);
    let dir = sm_setup_context(&mut e, s, 0, 0, PASIDE, ctx_hi);
    Dev { e, s, dir, alloc: Alloc(0x100_0000) }
}

#[test]
fn second_stage_through_rid_pasid() {
    let mut d = dev(0);
    let ss = d.alloc.page();
    set_pasid_entry(&mut d.e, d.dir, 0, pe(PGTT_SS, 3, ss, 2, 0, 0));
    ss_map(&d.e.mem, &mut d.alloc, ss, 4, 0x1000, 0xa000, 1, 3);
    sm_enable(&mut d.e);
    let (e, s) = (&d.e, d.s);
    let mut sh = Shadow::new();
    assert_eq!(replay(e, s, None, &mut sh), vec![map(0x1000, K4, 0xa000, Perm::RW)]);
    assert_eq!(
        e.vtd.address_space_mode(s, None, &e.mem),
        AddressSpaceMode::Translated { did: 3, pasid: Some(0), kind: TranslationKind::SecondStage }
    );
    ss_map(&d.e.mem, &mut d.alloc, ss, 4, 0x2000, 0xb000, 1, 1);
    let (e, s) = (&d.e, d.s);
    // Legacy page-selective invalidation of the domain, and the PASID-based
    // one for RID_PASID, both reach it; other PASIDs and domains do not.
    assert!(sync(e, s, None, InvalidationEvent::PasidIotlb { did: 3, pasid: 1 }, &mut sh).is_empty());
    assert!(sync(e, s, None, InvalidationEvent::IotlbDomain { did: 4 }, &mut sh).is_empty());
    let psi = InvalidationEvent::IotlbPages { did: 3, addr: 0x2000, size: K4, leaf_only: false };
    assert_eq!(sync(e, s, None, psi, &mut sh), vec![map(0x2000, K4, 0xb000, RO)]);
    ss_map(&d.e.mem, &mut d.alloc, ss, 4, 0x2000, 0xc000, 1, 3);
    let (e, s) = (&d.e, d.s);
    let ppsi = InvalidationEvent::PasidIotlbPages { did: 3, pasid: 0, addr: 0x2000, size: K4, leaf_only: true };
    assert_eq!(
        sync(e, s, None, ppsi, &mut sh),
        vec![unmap(0x2000, K4, 0xb000), map(0x2000, K4, 0xc000, Perm::RW)]
    );
    // The PASID address space 0 is the same tables (a request with PASID 0).
    let mut sh0 = Shadow::new();
    assert_eq!(replay(e, s, Some(0), &mut sh0).len(), 2);
}

/// First-stage PASID 5 (DID 2): user RW page, supervisor-only page, user
/// read-only page and a page in the canonical upper half.
fn fs_dev(ctx_hi: u64, q2: u64) -> (Dev, u64) {
    let mut d = dev(ctx_hi);
    let fs = d.alloc.page();
    set_pasid_entry(&mut d.e, d.dir, 5, pe(PGTT_FS, 2, 0, 2, fs, q2));
    set_pasid_entry(&mut d.e, d.dir, 0, pe(PGTT_FS, 2, 0, 2, fs, q2));
    fs_map(&d.e.mem, &mut d.alloc, fs, 4, 0x1000, 0xa000, 1, P | RW | US);
    fs_map(&d.e.mem, &mut d.alloc, fs, 4, 0x2000, 0xb000, 1, P | RW);
    fs_map(&d.e.mem, &mut d.alloc, fs, 4, 0x3000, 0xc000, 1, P | US);
    fs_map(&d.e.mem, &mut d.alloc, fs, 4, 0xffff_8000_0020_0000, 0x4000_0000, 2, P | RW | US);
    sm_enable(&mut d.e);
    (d, fs)
}

#[test]
fn first_stage_user_view_and_upper_half() {
    let (d, fs) = fs_dev(0, 0);
    let mut sh = Shadow::new();
    assert_eq!(
        replay(&d.e, d.s, Some(5), &mut sh),
        vec![
            map(0x1000, K4, 0xa000, Perm::RW),
            map(0x3000, K4, 0xc000, RO),
            map(0xffff_8000_0020_0000, 0x20_0000, 0x4000_0000, Perm::RW),
        ]
    );
    // The walk set no accessed flag.
    assert_eq!(d.e.mem.r64(fs_entry(&d.e.mem, &|a| a, fs, 4, 0x1000, 1)) & A, 0);
    // The supervisor page becomes a user page: PASID-selective page
    // invalidation of PASID 5 finds it, one of PASID 6 does not.
    let a2 = fs_entry(&d.e.mem, &|a| a, fs, 4, 0x2000, 1);
    d.e.mem.w64(a2, 0xb000 | P | RW | US);
    let e = &d.e;
    let ev6 = InvalidationEvent::PasidIotlbPages { did: 2, pasid: 6, addr: 0x2000, size: K4, leaf_only: false };
    assert!(sync(e, d.s, Some(5), ev6, &mut sh).is_empty());
    let ev5 = InvalidationEvent::PasidIotlbPages { did: 2, pasid: 5, addr: 0x2000, size: K4, leaf_only: false };
    assert_eq!(sync(e, d.s, Some(5), ev5, &mut sh), vec![map(0x2000, K4, 0xb000, Perm::RW)]);
    // A legacy page-selective invalidation covers every first-stage
    // mapping of the domain, whatever its address.
    let a3 = fs_entry(&d.e.mem, &|a| a, fs, 4, 0x3000, 1);
    d.e.mem.w64(a3, 0);
    let e = &d.e;
    let psi = InvalidationEvent::IotlbPages { did: 2, addr: 0x7000_0000, size: K4, leaf_only: false };
    assert_eq!(sync(e, d.s, Some(5), psi, &mut sh), vec![unmap(0x3000, K4, 0xc000)]);
    assert_eq!(
        e.vtd.address_space_mode(d.s, Some(5), &e.mem),
        AddressSpaceMode::Translated { did: 2, pasid: Some(5), kind: TranslationKind::FirstStage }
    );
}

#[test]
fn first_stage_supervisor_view_for_rid_priv() {
    let (d, _) = fs_dev(RID_PRIV, SRE);
    let mut sh = Shadow::new();
    let ev = replay(&d.e, d.s, None, &mut sh);
    assert_eq!(ev.len(), 4, "{ev:?}");
    assert_eq!(ev[1], map(0x2000, K4, 0xb000, Perm::RW));
    // Supervisor writes to read-only pages are allowed without WPE.
    assert_eq!(ev[2], map(0x3000, K4, 0xc000, Perm::RW));
    // PASID 5 is still seen as user.
    assert_eq!(replay(&d.e, d.s, Some(5), &mut Shadow::new()).len(), 3);
}

#[test]
fn nested_pages_split_to_the_smaller_stage() {
    let mut d = dev(0);
    let ss = d.alloc.page();
    let fs = d.alloc.page();
    set_pasid_entry(&mut d.e, d.dir, 5, pe(PGTT_NESTED, 4, ss, 2, fs, 0));
    // Second stage: identity 1 GiB at 0 (holds the first-stage tables),
    // two 4 KiB pages at GPA 2 GiB (one read-only), and 2 MiB at GPA 3 GiB.
    ss_map(&d.e.mem, &mut d.alloc, ss, 4, 0, 0, 3, 3);
    ss_map(&d.e.mem, &mut d.alloc, ss, 4, 0x8000_0000, 0x1_0000_0000, 1, 3);
    ss_map(&d.e.mem, &mut d.alloc, ss, 4, 0x8000_1000, 0x1_0000_5000, 1, 1);
    ss_map(&d.e.mem, &mut d.alloc, ss, 4, 0xc000_0000, 0x2_0000_0000, 2, 3);
    // First stage: a 2 MiB page onto GPA 2 GiB (split into the two second
    // stage pages present), a 4 KiB page inside the second stage's 2 MiB
    // page, and a 4 KiB page into the identity region.
    fs_map(&d.e.mem, &mut d.alloc, fs, 4, 0x4000_0000, 0x8000_0000, 2, P | RW | US);
    fs_map(&d.e.mem, &mut d.alloc, fs, 4, 0x1000, 0xc000_3000, 1, P | RW | US);
    fs_map(&d.e.mem, &mut d.alloc, fs, 4, 0x2000, 0x20_0000, 1, P | US);
    sm_enable(&mut d.e);
    let mut sh = Shadow::new();
    assert_eq!(
        replay(&d.e, d.s, Some(5), &mut sh),
        vec![
            map(0x1000, K4, 0x2_0000_3000, Perm::RW),
            map(0x2000, K4, 0x20_0000, RO),
            map(0x4000_0000, K4, 0x1_0000_0000, Perm::RW),
            map(0x4000_1000, K4, 0x1_0000_5000, RO),
        ]
    );
    assert_eq!(
        d.e.vtd.address_space_mode(d.s, Some(5), &d.e.mem),
        AddressSpaceMode::Translated { did: 4, pasid: Some(5), kind: TranslationKind::Nested }
    );
    // The second stage changes: an IOTLB invalidation of the domain resyncs.
    ss_map(&d.e.mem, &mut d.alloc, ss, 4, 0x8000_1000, 0x1_0000_6000, 1, 3);
    let ev = sync(&d.e, d.s, Some(5), InvalidationEvent::IotlbDomain { did: 4 }, &mut sh);
    assert_eq!(ev, vec![unmap(0x4000_1000, K4, 0x1_0000_5000), map(0x4000_1000, K4, 0x1_0000_6000, Perm::RW)]);
}

#[test]
fn pass_through_pasid_and_pasid_cache_re_resolution() {
    let (mut d, _) = fs_dev(0, 0);
    set_pasid_entry(&mut d.e, d.dir, 7, pe(PGTT_PT, 8, 0, 0, 0, 0));
    let mut sh7 = Shadow::new();
    let o = d.e.vtd.replay_shadow(d.s, Some(7), &mut sh7, &d.e.mem);
    assert_eq!(o.mode, AddressSpaceMode::PassThrough { did: 8 });
    assert!(o.mode.is_identity() && o.events.is_empty());
    // PASID 5 becomes second-stage in domain 9.
    let mut sh = Shadow::new();
    assert_eq!(replay(&d.e, d.s, Some(5), &mut sh).len(), 3);
    let ss = d.alloc.page();
    ss_map(&d.e.mem, &mut d.alloc, ss, 4, 0x5000, 0xf000, 1, 3);
    set_pasid_entry(&mut d.e, d.dir, 5, pe(PGTT_SS, 9, ss, 2, 0, 0));
    let e = &d.e;
    // An invalidation of the new domain's other PASID does not concern it.
    assert!(sync(e, d.s, Some(5), InvalidationEvent::PasidCachePasid { did: 9, pasid: 4 }, &mut sh).is_empty());
    // The PASID-cache invalidation names the old domain.
    let ev = sync(e, d.s, Some(5), InvalidationEvent::PasidCachePasid { did: 2, pasid: 5 }, &mut sh);
    assert_eq!(
        ev,
        vec![
            unmap(0x1000, K4, 0xa000),
            unmap(0x3000, K4, 0xc000),
            map(0x5000, K4, 0xf000, Perm::RW),
            unmap(0xffff_8000_0020_0000, 0x20_0000, 0x4000_0000),
        ]
    );
    // PASID entry removed: blocked, everything unmapped.
    set_pasid_entry(&mut d.e, d.dir, 5, [0; 8]);
    let o = d.e.vtd.sync_shadow(d.s, Some(5), &InvalidationEvent::PasidCacheDomain { did: 9 }, &mut sh, &d.e.mem);
    assert_eq!((o.mode, o.events), (AddressSpaceMode::Blocked, vec![unmap(0x5000, K4, 0xf000)]));
}

#[test]
fn requests_with_pasid_in_legacy_mode_are_blocked() {
    let mut e = Env::with(Config { caching_mode: true, ..Config::default() });
    let s = sid(0, 1, 0);
    e.setup_device(s, 1, 4);
    e.enable();
    assert_eq!(e.vtd.address_space_mode(s, Some(1), &e.mem), AddressSpaceMode::Blocked);
    assert!(replay(&e, s, Some(1), &mut Shadow::new()).is_empty());
}
