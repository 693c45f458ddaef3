//! Context-cache and IOTLB staleness: cached translations stay in use
//! until an invalidation of the right granularity, register-based and
//! queued.

mod common;
use common::*;
use vtd_core::InvalidationEvent;

const S: u16 = 0x0108;
const DID: u16 = 5;

/// Device S in domain DID with 16 4K pages 0x10000.. mapped to 0x100000..
fn setup() -> (Env, u64) {
    let mut e = Env::new();
    let pgd = e.setup_device(S, DID, 4);
    for p in 0..16u64 {
        e.map(pgd, 4, 0x10000 + p * 0x1000, 0x10_0000 + p * 0x1000, 1, RW);
    }
    e.enable();
    for p in 0..16u64 {
        e.phys(S, 0x10000 + p * 0x1000);
    }
    assert_eq!(e.vtd.iotlb_len(), 16);
    (e, pgd)
}

/// Remap every page to 0x200000.. without invalidating.
fn remap_all(e: &mut Env, pgd: u64) {
    for p in 0..16u64 {
        e.map(pgd, 4, 0x10000 + p * 0x1000, 0x20_0000 + p * 0x1000, 1, RW);
    }
}

fn is_new(e: &mut Env, page: u64) -> bool {
    let out = e.phys(S, 0x10000 + page * 0x1000);
    match out - page * 0x1000 {
        0x10_0000 => false,
        0x20_0000 => true,
        other => panic!("unexpected output {other:#x}"),
    }
}

fn new_pages(e: &mut Env) -> Vec<u64> {
    (0..16).filter(|&p| is_new(e, p)).collect()
}

#[test]
fn stale_pte_used_until_iotlb_invalidated() {
    let (mut e, pgd) = setup();
    remap_all(&mut e, pgd);
    assert!(new_pages(&mut e).is_empty(), "missing invalidation must be observable");
    let v = e.iotlb_global();
    assert_eq!((v & IOTLB_IVT, (v >> 57) & 3), (0, 1));
    assert_eq!(new_pages(&mut e).len(), 16);
}

#[test]
fn stale_permission_used_until_invalidated() {
    let (mut e, pgd) = setup();
    e.map(pgd, 4, 0x10000, 0x10_0000, 1, R);
    assert!(e.tr(S, 0x10000, true).0.is_ok(), "cached RW entry still allows writes");
    e.iotlb_pages(DID, 0x10000, 0);
    assert_eq!(e.fault_code(S, 0x10000, true), 0x5);
}

#[test]
fn cached_read_only_entry_is_rewalked_for_write() {
    let mut e = Env::new();
    let pgd = e.setup_device(S, DID, 4);
    e.map(pgd, 4, 0x1000, 0x5000, 1, R);
    e.enable();
    assert!(!e.tr(S, 0x1000, false).0.unwrap().perm.write);
    e.map(pgd, 4, 0x1000, 0x5000, 1, RW);
    let t = e.tr(S, 0x1000, true).0.unwrap();
    assert!(t.perm.write);
}

#[test]
fn register_domain_selective_flushes_only_that_domain() {
    let (mut e, pgd) = setup();
    remap_all(&mut e, pgd);
    let v = e.iotlb_domain(DID + 1);
    assert_eq!((v >> 57) & 3, 2, "IAIG domain");
    assert!(new_pages(&mut e).is_empty(), "wrong domain does not flush");
    e.iotlb_domain(DID);
    assert_eq!(new_pages(&mut e).len(), 16);
}

#[test]
fn register_page_selective_am0_flushes_one_page() {
    let (mut e, pgd) = setup();
    remap_all(&mut e, pgd);
    let v = e.iotlb_pages(DID, 0x13000, 0);
    assert_eq!((v >> 57) & 3, 3, "IAIG page");
    assert_eq!(new_pages(&mut e), vec![3]);
}

#[test]
fn register_page_selective_am_range() {
    let (mut e, pgd) = setup();
    remap_all(&mut e, pgd);
    // AM=2 covers the 16K-aligned block of 4 pages containing 0x15000:
    // iova 0x14000..0x17fff = pages 4..7.
    e.iotlb_pages(DID, 0x14000, 2);
    assert_eq!(new_pages(&mut e), vec![4, 5, 6, 7]);
    // AM=3: 0x18000..0x1ffff = pages 8..15.
    e.iotlb_pages(DID, 0x18000, 3);
    assert_eq!(new_pages(&mut e), (4..16).collect::<Vec<_>>());
}

#[test]
fn register_page_selective_wrong_domain_does_not_flush() {
    let (mut e, pgd) = setup();
    remap_all(&mut e, pgd);
    e.iotlb_pages(DID + 1, 0x10000, 4);
    assert!(new_pages(&mut e).is_empty());
}

#[test]
fn register_page_selective_am_above_mamv_not_performed() {
    let (mut e, pgd) = setup();
    remap_all(&mut e, pgd);
    let v = e.iotlb_pages(DID, 0, 19);
    assert_eq!((v & IOTLB_IVT, (v >> 57) & 3), (0, 0), "IAIG=0: not performed");
    assert!(new_pages(&mut e).is_empty());
}

#[test]
fn register_invalid_iotlb_granularity_reports_iaig_0() {
    let (mut e, _) = setup();
    let v = e.iotlb_reg(0, 0);
    assert_eq!((v & IOTLB_IVT, (v >> 57) & 3), (0, 0));
    assert_eq!(e.vtd.iotlb_len(), 16);
}

#[test]
fn page_selective_inside_superpage_flushes_it() {
    let mut e = Env::new();
    let pgd = e.setup_device(S, DID, 4);
    e.map(pgd, 4, 0x20_0000, 0x4000_0000, 2, RW);
    e.enable();
    assert_eq!(e.phys(S, 0x20_0000), 0x4000_0000);
    e.map(pgd, 4, 0x20_0000, 0x6000_0000, 2, RW);
    e.iotlb_pages(DID, 0x2f_f000, 0);
    assert_eq!(e.phys(S, 0x20_0000), 0x6000_0000);
}

#[test]
fn iotlb_shared_by_devices_in_same_domain() {
    let mut e = Env::new();
    let s2 = S + 1;
    let pgd = e.setup_device(S, DID, 4);
    e.set_context(s2, pgd | 1, 2 | (u64::from(DID) << 8));
    e.map(pgd, 4, 0x1000, 0x5000, 1, RW);
    e.enable();
    assert_eq!(e.phys(S, 0x1000), 0x5000);
    e.map(pgd, 4, 0x1000, 0x6000, 1, RW);
    assert_eq!(e.phys(s2, 0x1000), 0x5000, "IOTLB is tagged by domain, not source-id");
}

#[test]
fn context_cache_stale_until_device_invalidation() {
    let (mut e, _) = setup();
    // Move the device to another domain with different tables.
    let pgd2 = e.new_pgd();
    e.map(pgd2, 4, 0x10000, 0x30_0000, 1, RW);
    e.set_context(S, pgd2 | 1, 2 | (7 << 8));
    assert_eq!(e.phys(S, 0x10000), 0x10_0000, "stale context entry");
    assert_eq!(e.tr(S, 0x10000, false).0.unwrap().domain_id, DID);
    let v = e.cc_device(S + 1, 0);
    assert_eq!((v & CCMD_ICC, (v >> 59) & 3), (0, 3), "CAIG device");
    assert_eq!(e.phys(S, 0x10000), 0x10_0000, "other device invalidated only");
    e.cc_device(S, 0);
    let t = e.tr(S, 0x10000, false).0.unwrap();
    assert_eq!((t.phys, t.domain_id), (0x30_0000, 7));
}

#[test]
fn context_device_invalidation_function_mask() {
    let mut e = Env::new();
    let base = sid(0, 2, 0);
    for f in 0..8u8 {
        e.setup_device(base | u16::from(f), 1, 4);
    }
    e.enable();
    for f in 0..8u16 {
        assert_eq!(e.fault_code(base | f, 0x1000, false), 0x6);
    }
    assert_eq!(e.vtd.context_cache_len(), 8);
    e.cc_device(base | 5, 1); // ignore bit 2: functions 1 and 5
    assert_eq!(e.vtd.context_cache_len(), 6);
    e.cc_device(base | 2, 2); // ignore bits 2:1: functions 0, 2, 4, 6
    assert_eq!(e.vtd.context_cache_len(), 2);
    e.cc_device(base, 3); // whole device
    assert_eq!(e.vtd.context_cache_len(), 0);
}

#[test]
fn context_domain_invalidation_only_matching_domain() {
    let mut e = Env::new();
    e.setup_device(0x0108, 1, 4);
    e.setup_device(0x0110, 2, 4);
    e.enable();
    let _ = e.fault_code(0x0108, 0x1000, false);
    let _ = e.fault_code(0x0110, 0x1000, false);
    assert_eq!(e.vtd.context_cache_len(), 2);
    let v = e.cc_domain(3);
    assert_eq!((v >> 59) & 3, 2, "CAIG domain");
    assert_eq!(e.vtd.context_cache_len(), 2);
    e.cc_domain(2);
    assert_eq!(e.vtd.context_cache_len(), 1);
    let v = e.cc_global();
    assert_eq!((v >> 59) & 3, 1, "CAIG global");
    assert_eq!(e.vtd.context_cache_len(), 0);
}

#[test]
fn context_invalid_granularity_reports_caig_0() {
    let (mut e, _) = setup();
    let v = e.ccmd(0);
    assert_eq!((v & CCMD_ICC, (v >> 59) & 3), (0, 0));
    assert_eq!(e.vtd.context_cache_len(), 1);
}

#[test]
fn context_invalidation_does_not_flush_iotlb() {
    let (mut e, pgd) = setup();
    remap_all(&mut e, pgd);
    e.cc_global();
    assert!(new_pages(&mut e).is_empty());
}

#[test]
fn iotlb_bounded_with_full_flush() {
    let mut e = Env::new();
    let pgd = e.setup_device(S, DID, 4);
    e.enable();
    for p in 0..1025u64 {
        e.map(pgd, 4, p << 12, 0x100_0000 + (p << 12), 1, RW);
        e.phys(S, p << 12);
    }
    assert_eq!(e.vtd.iotlb_len(), 1);
}

// ---- queued invalidation -------------------------------------------------

fn setup_qi() -> (Env, u64) {
    let (mut e, pgd) = setup();
    e.enable_qi(0);
    (e, pgd)
}

#[test]
fn queued_iotlb_global() {
    let (mut e, pgd) = setup_qi();
    remap_all(&mut e, pgd);
    assert!(new_pages(&mut e).is_empty());
    let fx = e.submit(&[d_iotlb_global()]);
    assert!(fx.interrupts.is_empty() && fx.guest_errors.is_empty(), "{fx:?}");
    assert_eq!(fx.invalidations, vec![InvalidationEvent::IotlbGlobal]);
    assert_eq!(new_pages(&mut e).len(), 16);
}

#[test]
fn queued_iotlb_domain_wrong_domain_does_not_flush() {
    let (mut e, pgd) = setup_qi();
    remap_all(&mut e, pgd);
    e.submit(&[d_iotlb_domain(DID + 1)]);
    assert!(new_pages(&mut e).is_empty());
    e.submit(&[d_iotlb_domain(DID)]);
    assert_eq!(new_pages(&mut e).len(), 16);
}

#[test]
fn queued_iotlb_page_selective_with_am_and_ih() {
    let (mut e, pgd) = setup_qi();
    remap_all(&mut e, pgd);
    e.submit(&[d_iotlb_pages(DID, 0x12000, 1, true)]);
    assert_eq!(new_pages(&mut e), vec![2, 3]);
    e.submit(&[d_iotlb_pages(DID + 1, 0x10000, 4, false)]);
    assert_eq!(new_pages(&mut e), vec![2, 3]);
    e.submit(&[d_iotlb_pages(DID, 0x10000, 4, false)]);
    assert_eq!(new_pages(&mut e).len(), 16);
}

#[test]
fn queued_iotlb_drain_bits_accepted() {
    let (mut e, pgd) = setup_qi();
    remap_all(&mut e, pgd);
    let (lo, hi) = d_iotlb_global();
    let fx = e.submit(&[(lo | (3 << 6), hi)]);
    assert!(fx.interrupts.is_empty() && fx.guest_errors.is_empty(), "{fx:?}");
    assert_eq!(fx.invalidations, vec![InvalidationEvent::IotlbGlobal]);
    assert_eq!(new_pages(&mut e).len(), 16);
}

#[test]
fn queued_context_invalidations() {
    let (mut e, _) = setup_qi();
    let pgd2 = e.new_pgd();
    e.map(pgd2, 4, 0x10000, 0x30_0000, 1, RW);
    e.set_context(S, pgd2 | 1, 2 | (7 << 8));
    e.submit(&[d_cc_domain(DID + 1), d_cc_device(S + 1, 0)]);
    assert_eq!(e.phys(S, 0x10000), 0x10_0000, "stale");
    e.submit(&[d_cc_device(S | 7, 3)]);
    assert_eq!(e.phys(S, 0x10000), 0x30_0000);
    // Domain-selective and global.
    e.set_context(S, pgd2 | 1, 2 | (8 << 8));
    e.submit(&[d_cc_domain(7)]);
    assert_eq!(e.tr(S, 0x10000, false).0.unwrap().domain_id, 8);
    e.set_context(S, pgd2 | 1, 2 | (9 << 8));
    e.submit(&[d_cc_global()]);
    assert_eq!(e.tr(S, 0x10000, false).0.unwrap().domain_id, 9);
}
