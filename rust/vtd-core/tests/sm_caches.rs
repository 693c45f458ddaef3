//! Scalable-mode caching: the scalable context cache, the PASID cache and
//! the PASID-tagged IOTLB, and which invalidation reaches which entries.
//! Every test shows the stale behaviour before the right invalidation and
//! the new behaviour after it.

mod common;
mod sm_common;

use common::*;
use sm_common::*;
use vtd_core::Config;

fn cfg() -> Config {
    Config { scalable_mode: true, first_stage: true, pasid_bits: 20, strict_dma: true, ..Config::default() }
}

fn sm_qi() -> Env {
    let mut e = Env::with(cfg());
    sm_enable(&mut e);
    enable_qi256(&mut e, 0);
    e
}

fn inv(e: &mut Env, d: [u64; 4]) {
    let fx = submit256(e, &[d]);
    assert!(fx.interrupts.is_empty() && fx.guest_errors.is_empty(), "{fx:?}");
    assert_eq!(fx.invalidations.len(), 1, "{fx:?}");
}

/// Device `s` whose RID_PASID is `rid_pasid`, with a first-stage PASID
/// entry (DID `did`) mapping `iova` to `phys`; returns the first-stage
/// root.
fn fs_device(e: &mut Env, s: u16, rid_pasid: u32, did: u16, iova: u64, phys: u64) -> u64 {
    let dir = sm_setup_context(e, s, 0, u64::from(rid_pasid), 0, 0);
    let fs = e.alloc_page();
    set_pasid_entry(e, dir, rid_pasid, pe(PGTT_FS, did, 0, 2, fs, 0));
    let mut a = Alloc(0x100_0000 + (u64::from(s) << 16));
    fs_map(&e.mem, &mut a, fs, 4, iova, phys, 1, P | sm_common::RW | US | A | D);
    fs
}

fn fs_remap(e: &mut Env, fs: u64, iova: u64, phys: u64) {
    let leaf = fs_entry(&e.mem, &|x| x, fs, 4, iova, 1);
    e.mem.w64(leaf, phys | P | sm_common::RW | US | A | D);
}

#[test]
fn pasid_entry_change_is_ignored_until_pasid_cache_invalidation() {
    let mut e = sm_qi();
    let s = sid(0, 1, 0);
    let dir = sm_setup_context(&mut e, s, 0, 0, 0, 0);
    set_pasid_entry(&mut e, dir, 0, pe(PGTT_PT, 1, 0, 0, 0, 0));
    assert_eq!(e.phys(s, 0x1234), 0x1234);
    assert_eq!((e.vtd.pasid_cache_len(), e.vtd.sm_context_cache_len()), (1, 1));
    // The guest switches the entry to second-stage (same DID).
    let ss = e.alloc_page();
    let mut a = Alloc(0x80_0000);
    ss_map(&e.mem, &mut a, ss, 4, 0x1000, 0xb000, 1, 3);
    set_pasid_entry(&mut e, dir, 0, pe(PGTT_SS, 1, ss, 2, 0, 0));
    assert_eq!(e.phys(s, 0x1234), 0x1234, "no invalidation: old entry");
    inv(&mut e, wide(d_iotlb_global()));
    inv(&mut e, wide(d_cc_global()));
    assert_eq!(e.phys(s, 0x1234), 0x1234, "IOTLB/context flush does not reach the PASID cache");
    inv(&mut e, d_pc_pasid(2, 0));
    inv(&mut e, d_pc_pasid(1, 1));
    assert_eq!(e.phys(s, 0x1234), 0x1234, "wrong DID or PASID: no effect");
    inv(&mut e, d_pc_pasid(1, 0));
    assert_eq!(e.phys(s, 0x1234), 0xb234);
}

#[test]
fn pasid_cache_domain_selective_matches_the_cached_did() {
    let mut e = sm_qi();
    let s = sid(0, 2, 0);
    let dir = sm_setup_context(&mut e, s, 0, 0, 0, 0);
    set_pasid_entry(&mut e, dir, 0, pe(PGTT_PT, 1, 0, 0, 0, 0));
    assert_eq!(e.tr(s, 0, false).0.unwrap().domain_id, 1);
    set_pasid_entry(&mut e, dir, 0, pe(PGTT_PT, 2, 0, 0, 0, 0));
    inv(&mut e, d_pc_domain(2));
    assert_eq!(e.tr(s, 0, false).0.unwrap().domain_id, 1, "the cached entry is tagged DID 1");
    inv(&mut e, d_pc_domain(1));
    assert_eq!(e.tr(s, 0, false).0.unwrap().domain_id, 2);
}

#[test]
fn pasid_cache_global_invalidation_flushes_every_entry() {
    let mut e = sm_qi();
    let (s1, s2) = (sid(0, 3, 0), sid(1, 3, 0));
    let d1 = sm_setup_context(&mut e, s1, 0, 0, 0, 0);
    let d2 = sm_setup_context(&mut e, s2, 0, 9, 0, 0);
    set_pasid_entry(&mut e, d1, 0, pe(PGTT_PT, 1, 0, 0, 0, 0));
    set_pasid_entry(&mut e, d2, 9, pe(PGTT_PT, 2, 0, 0, 0, 0));
    e.tr(s1, 0, false).0.unwrap();
    e.tr(s2, 0, false).0.unwrap();
    assert_eq!(e.vtd.pasid_cache_len(), 2);
    set_pasid_entry(&mut e, d1, 0, [0; 8]);
    set_pasid_entry(&mut e, d2, 9, [0; 8]);
    assert!(e.tr(s1, 0, false).0.is_ok(), "stale until invalidated");
    inv(&mut e, d_pc_global());
    assert_eq!(e.vtd.pasid_cache_len(), 0);
    assert_eq!(e.fault_code(s1, 0, false), 0x59);
}

#[test]
fn context_entry_change_is_ignored_until_context_cache_invalidation() {
    let mut e = sm_qi();
    let s = sid(0, 4, 0);
    let dir = sm_setup_context(&mut e, s, 0, 0, 0, 0);
    set_pasid_entry(&mut e, dir, 0, pe(PGTT_PT, 1, 0, 0, 0, 0));
    e.tr(s, 0, false).0.unwrap();
    // Context entry cleared: cached context (and PASID entry) still used.
    sm_set_context(&mut e, s, [0; 4]);
    assert!(e.tr(s, 0, false).0.is_ok());
    inv(&mut e, wide(d_cc_device(s ^ 1, 2)));
    assert!(e.tr(s, 0, false).0.is_ok(), "function 1 with FM 2: not this device");
    inv(&mut e, wide(d_cc_device(s ^ 1, 3)));
    assert_eq!(e.fault_code(s, 0, false), 0x41, "function mask covers it");
}

#[test]
fn context_cache_invalidation_does_not_flush_the_pasid_cache() {
    let mut e = sm_qi();
    let s = sid(0, 5, 0);
    let dir = sm_setup_context(&mut e, s, 0, 0, 0, 0);
    set_pasid_entry(&mut e, dir, 0, pe(PGTT_PT, 1, 0, 0, 0, 0));
    e.tr(s, 0, false).0.unwrap();
    // A new PASID directory with a different entry for PASID 0.
    let dir2 = sm_setup_context(&mut e, s, 0, 0, 0, 0);
    set_pasid_entry(&mut e, dir2, 0, pe(PGTT_PT, 4, 0, 0, 0, 0));
    inv(&mut e, wide(d_cc_global()));
    assert_eq!(e.tr(s, 0, false).0.unwrap().domain_id, 1);
    inv(&mut e, d_pc_domain(1));
    assert_eq!(e.tr(s, 0, false).0.unwrap().domain_id, 4);
}

#[test]
fn faulting_requests_leave_no_context_or_pasid_cache_entries() {
    let mut e = sm_qi();
    let s = sid(0, 6, 0);
    let dir = sm_setup_context(&mut e, s, 0, 0, 0, 0);
    assert_eq!(e.fault_code(s, 0, false), 0x51);
    set_pasid_entry(&mut e, dir, 0, [1 | (6 << 6), 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(e.fault_code(s, 0, false), 0x5b);
    assert_eq!((e.vtd.pasid_cache_len(), e.vtd.sm_context_cache_len()), (0, 0));
    // Fixed without invalidation: seen at once since nothing was cached.
    set_pasid_entry(&mut e, dir, 0, pe(PGTT_PT, 1, 0, 0, 0, 0));
    assert!(e.tr(s, 0, false).0.is_ok());
}

#[test]
fn iotlb_entries_are_not_shared_between_pasids_of_a_domain() {
    let mut e = sm_qi();
    let (a, b) = (sid(0, 7, 0), sid(0, 8, 0));
    fs_device(&mut e, a, 5, 3, 0x1000, 0xa000);
    fs_device(&mut e, b, 6, 3, 0x1000, 0xb000);
    assert_eq!(e.phys(a, 0x1000), 0xa000);
    assert_eq!(e.phys(b, 0x1000), 0xb000);
    assert_eq!(e.vtd.iotlb_len(), 2);
}

#[test]
fn pasid_selective_piotlb_flushes_only_that_pasid_and_domain_wide_flushes_all() {
    let mut e = sm_qi();
    let (a, b) = (sid(0, 9, 0), sid(0, 10, 0));
    let fa = fs_device(&mut e, a, 5, 3, 0x1000, 0xa000);
    let fb = fs_device(&mut e, b, 6, 3, 0x1000, 0xb000);
    e.phys(a, 0x1000);
    e.phys(b, 0x1000);
    fs_remap(&mut e, fa, 0x1000, 0xc000);
    fs_remap(&mut e, fb, 0x1000, 0xd000);
    inv(&mut e, d_piotlb_pasid(4, 5));
    assert_eq!(e.phys(a, 0x1000), 0xa000, "other domain: no effect");
    inv(&mut e, d_piotlb_pasid(3, 5));
    assert_eq!(e.phys(a, 0x1000), 0xc000);
    assert_eq!(e.phys(b, 0x1000), 0xb000, "PASID 6 untouched");
    inv(&mut e, wide(d_iotlb_domain(3)));
    assert_eq!(e.phys(b, 0x1000), 0xd000);
}

#[test]
fn page_selective_piotlb_hits_only_its_range_and_not_second_stage() {
    let mut e = sm_qi();
    let a = sid(0, 11, 0);
    let fa = fs_device(&mut e, a, 5, 3, 0x1000, 0xa000);
    let mut al = Alloc(0x300_0000);
    fs_map(&e.mem, &mut al, fa, 4, 0x5000, 0x15000, 1, P | sm_common::RW | US | A | D);
    e.phys(a, 0x1000);
    e.phys(a, 0x5000);
    fs_remap(&mut e, fa, 0x1000, 0xc000);
    fs_remap(&mut e, fa, 0x5000, 0x1c000);
    // 2^2 pages at 0x4000: 0x4000..0x7fff.
    inv(&mut e, d_piotlb_pages(3, 5, 0x4000, 2, false));
    assert_eq!(e.phys(a, 0x1000), 0xa000);
    assert_eq!(e.phys(a, 0x5000), 0x1c000);
    // Second-stage mappings of a PASID are not reached by PASID-based
    // page-selective invalidation, only by the legacy one.
    let s = sid(0, 12, 0);
    let dir = sm_setup_context(&mut e, s, 0, 7, 0, 0);
    let ss = e.alloc_page();
    set_pasid_entry(&mut e, dir, 7, pe(PGTT_SS, 4, ss, 2, 0, 0));
    let mut al = Alloc(0x380_0000);
    ss_map(&e.mem, &mut al, ss, 4, 0x2000, 0x22000, 1, 3);
    assert_eq!(e.phys(s, 0x2000), 0x22000);
    ss_map(&e.mem, &mut al, ss, 4, 0x2000, 0x33000, 1, 3);
    inv(&mut e, d_piotlb_pages(4, 7, 0x2000, 0, false));
    assert_eq!(e.phys(s, 0x2000), 0x22000);
    inv(&mut e, wide(d_iotlb_pages(4, 0x2000, 0, false)));
    assert_eq!(e.phys(s, 0x2000), 0x33000);
}

#[test]
fn legacy_page_selective_iotlb_flushes_all_first_stage_entries_of_the_domain() {
    let mut e = sm_qi();
    let a = sid(0, 13, 0);
    let fa = fs_device(&mut e, a, 0, 3, 0x1000, 0xa000);
    let mut al = Alloc(0x300_0000);
    fs_map(&e.mem, &mut al, fa, 4, 0x90_0000, 0x9000, 1, P | sm_common::RW | US | A | D);
    // A second-stage device in the same domain (RID_PASID 1).
    let s = sid(0, 14, 0);
    let dir = sm_setup_context(&mut e, s, 0, 1, 0, 0);
    let ss = e.alloc_page();
    set_pasid_entry(&mut e, dir, 1, pe(PGTT_SS, 3, ss, 2, 0, 0));
    let mut al2 = Alloc(0x380_0000);
    ss_map(&e.mem, &mut al2, ss, 4, 0x1000, 0x41000, 1, 3);
    ss_map(&e.mem, &mut al2, ss, 4, 0x90_0000, 0x49000, 1, 3);
    for (d, iova) in [(a, 0x1000), (a, 0x90_0000), (s, 0x1000), (s, 0x90_0000)] {
        e.phys(d, iova);
    }
    assert_eq!(e.vtd.iotlb_len(), 4);
    inv(&mut e, wide(d_iotlb_pages(3, 0x1000, 0, false)));
    // Both first-stage entries and the second-stage one at 0x1000 go; the
    // second-stage one at 0x900000 stays.
    assert_eq!(e.vtd.iotlb_len(), 1);
    fs_remap(&mut e, fa, 0x90_0000, 0x19000);
    assert_eq!(e.phys(a, 0x90_0000), 0x19000);
}

#[test]
fn register_based_invalidations_reach_scalable_caches() {
    let mut e = Env::with(cfg());
    sm_enable(&mut e);
    let s = sid(0, 15, 0);
    let dir = sm_setup_context(&mut e, s, 0, 0, 0, 0);
    set_pasid_entry(&mut e, dir, 0, pe(PGTT_PT, 1, 0, 0, 0, 0));
    e.tr(s, 0, false).0.unwrap();
    assert_eq!(e.vtd.sm_context_cache_len(), 1);
    e.cc_device(s, 0);
    assert_eq!(e.vtd.sm_context_cache_len(), 0);
    e.tr(s, 0, false).0.unwrap();
    e.cc_domain(77);
    assert_eq!(e.vtd.sm_context_cache_len(), 0, "domain-selective flushes scalable contexts");
    // SRTP and TE flush everything.
    e.tr(s, 0, false).0.unwrap();
    e.gcmd(vtd_core::registers::GCMD_SRTP, 0);
    assert_eq!((e.vtd.sm_context_cache_len(), e.vtd.pasid_cache_len()), (0, 0));
}

