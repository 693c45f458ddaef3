//! Device-TLB support: ECAP.DT, device-TLB invalidation descriptors as
//! events, and ATS translation requests (`Vtd::translate_ats`).

mod common;
mod sm_common;

use common::{Env, FRCD_F, PS, R, RW, d_wait, sid};
use sm_common::*;
use vtd_core::queues::fault::FaultReason as F;
use vtd_core::queues::inv_queue::DeviceTlbInvalidation;
use vtd_core::registers::*;
use vtd_core::{AtsRequest, AtsResult, AtsTranslation, Config, InvalidationEvent, Perm};

const TT_DEV_TLB: u64 = 1 << 2;
const DTE: u64 = 1 << 2;
const PASIDE: u64 = 1 << 3;
const NONE: Perm = Perm { read: false, write: false };
const RO: Perm = Perm { read: true, write: false };

fn dt() -> Config {
    Config { device_tlb: true, ..Config::default() }
}

fn ats(e: &mut Env, s: u16, iova: u64, no_write: bool) -> AtsResult {
    let req = AtsRequest { sid: s, iova, no_write, ..AtsRequest::default() };
    let (r, _fx) = common::translate_ats_checked(&mut e.vtd, &req, &e.mem);
    r
}

fn ok(r: AtsResult) -> AtsTranslation {
    match r {
        AtsResult::Success(t) => t,
        other => panic!("expected success, got {other:?}"),
    }
}

fn page(iova: u64, phys: u64, mask: u64, perm: Perm) -> AtsTranslation {
    AtsTranslation {
        iova,
        phys,
        page_mask: mask,
        perm,
        exec: false,
        privileged: false,
        untranslated_only: false,
        global: false,
    }
}

/// Legacy device with TT = `tt` (and `lo` flags), DID 1, a RW page at
/// 0x1000, a read-only page at 0x2000 and a RW 2 MiB page at 0x20_0000.
fn legacy(cfg: Config, lo: u64) -> (Env, u16, u64) {
    let mut e = Env::with(cfg);
    let s = sid(0, 5, 0);
    let pgd = e.new_pgd();
    e.set_context(s, pgd | 1 | lo, 2 | (1 << 8));
    e.map(pgd, 4, 0x1000, 0xa000, 1, RW);
    e.map(pgd, 4, 0x2000, 0xb000, 1, R);
    e.map(pgd, 4, 0x20_0000, 0x4000_0000, 2, RW);
    e.enable();
    (e, s, pgd)
}

#[test]
fn ecap_dt_follows_config() {
    assert_eq!(Env::with(dt()).rd64(ECAP) & 4, 4);
    assert_eq!(Env::new().rd64(ECAP) & 4, 0);
}

#[test]
fn ats_without_device_tlb_support_is_unsupported_request_without_fault() {
    let (mut e, s, _) = legacy(Config::default(), 0);
    assert_eq!(ats(&mut e, s, 0x1000, false), AtsResult::UnsupportedRequest { fault: None });
    assert_eq!(e.fsts(), 0);
}

#[test]
fn legacy_ats_translates_pages_with_their_permissions() {
    let (mut e, s, _) = legacy(dt(), TT_DEV_TLB);
    assert_eq!(ok(ats(&mut e, s, 0x1234, false)), page(0x1000, 0xa000, 0xfff, Perm::RW));
    assert_eq!(ok(ats(&mut e, s, 0x1234, true)), page(0x1000, 0xa000, 0xfff, RO), "NW: no W");
    assert_eq!(ok(ats(&mut e, s, 0x2000, false)), page(0x2000, 0xb000, 0xfff, RO));
    assert_eq!(ok(ats(&mut e, s, 0x2f_f000, false)), page(0x20_0000, 0x4000_0000, 0x1f_ffff, Perm::RW));
    // Not present, beyond the address width: R = W = 0, nothing recorded.
    assert_eq!(ok(ats(&mut e, s, 0x5000, false)), page(0x5000, 0, 0xfff, NONE));
    assert_eq!(ok(ats(&mut e, s, 1 << 50, true)), page(1 << 50, 0, 0xfff, NONE));
    assert_eq!(e.fsts(), 0);
    // Untranslated DMA through a TT = 01b context works as TT = 00b.
    assert_eq!(e.phys(s, 0x1008), 0xa008);
    // ATS fills the IOTLB only as DMA does.
    assert_eq!(e.vtd.iotlb_len(), 3);
}

#[test]
fn legacy_ats_needs_device_tlb_enabled_in_the_context() {
    let (mut e, s, _) = legacy(dt(), 0);
    let AtsResult::UnsupportedRequest { fault: Some(f) } = ats(&mut e, s, 0x1000, false) else {
        panic!("UR expected")
    };
    assert_eq!(f.reason, F::ContextEntryTranslationType);
    assert!(f.translation_request);
    let rec = e.vtd.fault_record(0).unwrap();
    assert_eq!((rec.reason_code, rec.sid, rec.address, rec.address_type), (0xd, s, 0x1000, 1));
    assert_ne!(e.fsts() & FSTS_PPF, 0);
    // Untranslated DMA is still fine.
    assert_eq!(e.phys(s, 0x1008), 0xa008);
    // With FPD the condition is not recorded.
    let (mut e, s, _) = legacy(dt(), 2);
    assert!(matches!(ats(&mut e, s, 0x1000, false), AtsResult::UnsupportedRequest { fault: Some(_) }));
    assert_eq!(e.fsts(), 0);
}

#[test]
fn legacy_ats_context_and_table_errors() {
    let (mut e, _, pgd) = legacy(dt(), TT_DEV_TLB);
    // No context entry: UR, 2h recorded.
    let AtsResult::UnsupportedRequest { fault: Some(f) } = ats(&mut e, sid(0, 6, 0), 0x1000, false) else {
        panic!()
    };
    assert_eq!(f.reason, F::ContextEntryNotPresent);
    e.w64(FRCD_REG_OFFSET + 8, FRCD_F);
    // Reserved bit in a leaf: Completer Abort, Ch recorded.
    let s = sid(0, 5, 0);
    let a = e.pte_addr(pgd, 4, 0x3000, 1);
    e.mem.w64(a, 0x3000 | RW | (1 << 62));
    let AtsResult::CompleterAbort { fault } = ats(&mut e, s, 0x3000, false) else { panic!() };
    assert_eq!(fault.reason, F::PagingEntryReserved);
    assert_eq!(e.vtd.fault_record(0).unwrap().reason_code, 0xc);
    e.w64(FRCD_REG_OFFSET + 8, FRCD_F);
    // Output in the interrupt range: Completer Abort, Eh.
    e.map(pgd, 4, 0x4000, 0xfee0_0000, 1, RW);
    let AtsResult::CompleterAbort { fault } = ats(&mut e, s, 0x4000, false) else { panic!() };
    assert_eq!(fault.reason, F::InterruptAddress);
    assert_eq!(e.vtd.fault_record(0).unwrap().reason_code, 0xe);
    // Input in the interrupt range: untranslated writes only.
    let t = ok(ats(&mut e, s, 0xfee0_0010, false));
    assert_eq!(t, AtsTranslation { untranslated_only: true, ..page(0xfee0_0000, 0xfee0_0000, 0xfff, Perm { read: false, write: true }) });
    // Requests with PASID on a legacy root table: UR, 31h.
    let req = AtsRequest { sid: s, pasid: Some(1), iova: 0x1000, ..AtsRequest::default() };
    let (r, _) = e.vtd.translate_ats(&req, &e.mem);
    let AtsResult::UnsupportedRequest { fault: Some(f) } = r else { panic!() };
    assert_eq!((f.reason, f.pasid), (F::SmTtmLegacyWithPasid, Some(1)));
}

#[test]
fn ats_with_translation_disabled_is_identity() {
    let mut e = Env::with(dt());
    let t = ok(ats(&mut e, 1, 0x1234_5678, false));
    assert_eq!(t, page(0x1234_5000, 0x1234_5000, 0xfff, Perm::RW));
}

#[test]
fn legacy_device_tlb_descriptor_is_reported() {
    let (mut e, _, _) = legacy(dt(), TT_DEV_TLB);
    e.enable_qi(0);
    let lo = 0x3 | (0x0108 << 32) | (0x9 << 12) | (0x12 << 52) | (4 << 16);
    let fx = e.submit(&[(lo, 0x7000 | 1), d_wait(false, false, true, 0, 0)]);
    assert!(fx.guest_errors.is_empty(), "{fx:?}");
    let ev = InvalidationEvent::DeviceTlb(DeviceTlbInvalidation {
        sid: 0x108,
        pfsid: 0x129,
        mip: 4,
        pasid: None,
        global: false,
        addr: 0x7000,
        size: true,
    });
    assert_eq!(fx.invalidations, vec![ev]);
    assert_eq!(ev.device_tlb_range(0x108, None), Some((0, 0xffff)));
    assert_eq!(ev.device_tlb_range(0x108, Some(0)), None);
    // Reserved bit: queue error, no event.
    let fx = e.submit(&[(lo | (1 << 21), 0)]);
    assert!(fx.invalidations.is_empty());
    assert_ne!(e.fsts() & FSTS_IQE, 0);
}

#[test]
fn legacy_device_tlb_descriptor_refused_without_dt() {
    let (mut e, _, _) = legacy(Config::default(), 0);
    e.enable_qi(0);
    let fx = e.submit(&[(0x3 | (0x0108 << 32), 0x7000)]);
    assert_eq!(fx.guest_errors.len(), 1);
    assert!(fx.invalidations.is_empty());
    assert_ne!(e.fsts() & FSTS_IQE, 0);
}

// ---- scalable mode -----------------------------------------------------

fn sm_cfg() -> Config {
    Config { scalable_mode: true, first_stage: true, pasid_bits: 20, device_tlb: true, strict_dma: true, ..Config::default() }
}

/// Scalable device with `ctx_lo` flags, RID_PASID 0 pass-through (DID 1)
/// and PASID 5 first-stage with SRE (DID 2): user RW page 0x1000 (D
/// clear), supervisor-only page 0x2000.
fn sm(ctx_lo: u64) -> (Env, u16, u64) {
    let mut e = Env::with(sm_cfg());
    let s = sid(0, 7, 0);
    let dir = sm_setup_context(&mut e, s, 0, 0, PASIDE | ctx_lo, 0);
    set_pasid_entry(&mut e, dir, 0, pe(PGTT_PT, 1, 0, 0, 0, 0));
    let fs = e.alloc_page();
    set_pasid_entry(&mut e, dir, 5, pe(PGTT_FS, 2, 0, 2, fs, 1));
    let mut a = Alloc(0x100_0000);
    fs_map(&e.mem, &mut a, fs, 4, 0x1000, 0xa000, 1, P | sm_common::RW | US);
    fs_map(&e.mem, &mut a, fs, 4, 0x2000, 0xb000, 1, P | sm_common::RW);
    sm_enable(&mut e);
    (e, s, fs)
}

fn ats_pasid(e: &mut Env, s: u16, privileged: bool, iova: u64, no_write: bool) -> AtsResult {
    let req = AtsRequest { sid: s, pasid: Some(5), privileged, iova, no_write, exec: false };
    common::translate_ats_checked(&mut e.vtd, &req, &e.mem).0
}

/// The second request for a page is answered from the caches alone (and
/// translate_ats_checked compares that answer with the full path's), in
/// legacy mode and for a request with PASID; a request needing more
/// permission than cached, or from a context without device-TLBs, is not.
#[test]
fn ats_hits_are_answered_from_the_caches() {
    let (mut e, s, _) = legacy(dt(), TT_DEV_TLB);
    let req = AtsRequest { sid: s, iova: 0x1008, ..AtsRequest::default() };
    assert_eq!(e.vtd.translate_ats_cached(&req), None, "nothing cached yet");
    let first = ok(ats(&mut e, s, 0x1008, false));
    assert_eq!(e.vtd.translate_ats_cached(&req), Some(first));
    let ro = AtsRequest { iova: 0x2000, ..req };
    ok(ats(&mut e, s, 0x2000, true));
    assert!(e.vtd.translate_ats_cached(&AtsRequest { no_write: true, ..ro }).is_some());
    assert_eq!(e.vtd.translate_ats_cached(&ro), None, "write asked, read-only cached");

    // After untranslated DMA to a page, ATS to it is answered from the
    // caches (and then from the recent translations), only for a context
    // that allows device-TLBs.
    let (mut e, s, _) = legacy(dt(), TT_DEV_TLB);
    let dma = common::translate_checked(&mut e.vtd, &vtd_core::Request::write(s, 0x20_1000), &e.mem).0;
    assert!(dma.is_ok());
    let req = AtsRequest { sid: s, iova: 0x20_1000, ..AtsRequest::default() };
    let cached = e.vtd.translate_ats_cached(&req).expect("answered from the caches");
    assert_eq!(e.vtd.translate_ats_cached(&req), Some(cached));
    assert_eq!(ok(ats(&mut e, s, 0x20_1000, false)), cached);

    let (mut e, s, _) = legacy(dt(), 0);
    let _ = ats(&mut e, s, 0x1000, false);
    assert_eq!(e.vtd.translate_ats_cached(&AtsRequest { sid: s, iova: 0x1000, ..AtsRequest::default() }), None);
    assert!(common::translate_checked(&mut e.vtd, &vtd_core::Request::read(s, 0x1000), &e.mem).0.is_ok());
    assert_eq!(e.vtd.translate_ats_cached(&AtsRequest { sid: s, iova: 0x1000, ..AtsRequest::default() }), None);

    let (mut e, s, _) = sm(DTE);
    let req = AtsRequest { sid: s, pasid: Some(5), privileged: false, iova: 0x1000, no_write: true, exec: false };
    let first = ok(ats_pasid(&mut e, s, false, 0x1000, true));
    assert_eq!(e.vtd.translate_ats_cached(&req), Some(first));
    let _ = ats_pasid(&mut e, s, false, 0x1000, true);
}

#[test]
fn scalable_ats_needs_dte() {
    let (mut e, s, _) = sm(0);
    let AtsResult::UnsupportedRequest { fault: Some(f) } = ats_pasid(&mut e, s, false, 0x1000, false) else {
        panic!()
    };
    assert_eq!((f.reason, f.pasid), (F::SmContextDteClear, Some(5)));
    let rec = e.vtd.fault_record(0).unwrap();
    assert_eq!((rec.reason_code, rec.pasid, rec.address_type), (0x44, Some(5), 1));
}

#[test]
fn scalable_ats_first_stage_privilege_and_dirty() {
    let (mut e, s, fs) = sm(DTE);
    let leaf = fs_entry(&e.mem, &|a| a, fs, 4, 0x1000, 1);
    // NW: read permission only, D stays clear.
    let t = ok(ats_pasid(&mut e, s, false, 0x1000, true));
    assert_eq!(t, page(0x1000, 0xa000, 0xfff, RO));
    assert_eq!(e.mem.r64(leaf) & (A | D), A);
    // Write permission asked for and granted: D is set.
    let t = ok(ats_pasid(&mut e, s, false, 0x1000, false));
    assert_eq!(t.perm, Perm::RW);
    assert_eq!(e.mem.r64(leaf) & (A | D), A | D);
    // A user request for a supervisor page: R = W = 0, no fault.
    assert_eq!(ok(ats_pasid(&mut e, s, false, 0x2000, false)).perm, NONE);
    assert_eq!(e.fsts(), 0);
    // A supervisor request gets it, with Priv set in the completion.
    let t = ok(ats_pasid(&mut e, s, true, 0x2000, false));
    assert_eq!(t, AtsTranslation { privileged: true, ..page(0x2000, 0xb000, 0xfff, Perm::RW) });
    // Requests without PASID: RID_PASID is pass-through.
    assert_eq!(ok(ats(&mut e, s, 0x7777_7000, false)), page(0x7777_7000, 0x7777_7000, 0xfff, Perm::RW));
    // PASID not present: UR with 59h.
    let req = AtsRequest { sid: s, pasid: Some(6), iova: 0x1000, ..AtsRequest::default() };
    let AtsResult::UnsupportedRequest { fault: Some(f) } = e.vtd.translate_ats(&req, &e.mem).0 else { panic!() };
    assert_eq!(f.reason, F::PasidEntryNotPresent);
}

#[test]
fn pasid_based_device_tlb_descriptor_is_reported() {
    let (mut e, _, _) = sm(DTE);
    enable_qi256(&mut e, 0);
    let v0 = 0x8 | (0x0038 << 16) | (5 << 32) | (2 << 4);
    let fx = submit256(&mut e, &[[v0, 0x9000, 0, 0], [v0, 0x9000 | 1 | (1 << 11), 0, 0]]);
    assert!(fx.guest_errors.is_empty(), "{fx:?}");
    let d = DeviceTlbInvalidation { sid: 0x38, pfsid: 0, mip: 2, pasid: Some(5), global: false, addr: 0x9000, size: false };
    assert_eq!(
        fx.invalidations,
        vec![
            InvalidationEvent::DeviceTlb(d),
            InvalidationEvent::DeviceTlb(DeviceTlbInvalidation { global: true, size: true, ..d }),
        ]
    );
    assert_eq!(fx.invalidations[0].device_tlb_range(0x38, Some(5)), Some((0x9000, 0xfff)));
    assert_eq!(fx.invalidations[0].device_tlb_range(0x38, Some(6)), None);
    assert_eq!(fx.invalidations[1].device_tlb_range(0x38, Some(6)), Some((0x8000, 0x3fff)));
    // Type 3 in 256-bit form is valid too.
    let fx = submit256(&mut e, &[[0x3 | (0x38 << 32), 0x5000, 0, 0]]);
    assert_eq!(fx.invalidations[0].device_tlb_range(0x38, None), Some((0x5000, 0xfff)));
}

#[test]
fn pasid_based_device_tlb_descriptor_refused_without_dt() {
    let mut e = Env::with(Config { device_tlb: false, ..sm_cfg() });
    sm_enable(&mut e);
    enable_qi256(&mut e, 0);
    let fx = submit256(&mut e, &[[0x8 | (0x38 << 16), 0x9000, 0, 0]]);
    assert_eq!(fx.guest_errors.len(), 1);
    assert!(fx.invalidations.is_empty());
    assert_ne!(e.fsts() & FSTS_IQE, 0);
}

#[test]
fn superpage_ats_reports_the_whole_page() {
    let mut e = Env::with(dt());
    let s = sid(2, 0, 0);
    let pgd = e.new_pgd();
    e.set_context(s, pgd | 1 | TT_DEV_TLB, 2 | (1 << 8));
    let a = e.pte_addr(pgd, 4, 0x4000_0000, 3);
    e.mem.w64(a, 0x8000_0000 | RW | PS);
    e.enable();
    assert_eq!(ok(ats(&mut e, s, 0x4123_4567, false)), page(0x4000_0000, 0x8000_0000, 0x3fff_ffff, Perm::RW));
}
