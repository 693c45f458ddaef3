//! Requests with PASID (`Vtd::translate_pasid`): translation through the
//! request's own PASID table entry, the architected faults (31h, 43h,
//! 45h, 46h, 5Dh) and fault records carrying the PASID.

mod common;
mod sm_common;

use common::*;
use sm_common::*;
use vtd_core::queues::fault::FaultReason as F;
use vtd_core::registers::*;
use vtd_core::{Config, Effects, Fault, PasidRequest, Translation};

fn cfg() -> Config {
    Config { scalable_mode: true, first_stage: true, pasid_bits: 20, strict_dma: true, ..Config::default() }
}

const PASIDE: u64 = 1 << 3;

fn trp(e: &mut Env, s: u16, pasid: u32, privileged: bool, iova: u64, write: bool) -> (Result<Translation, Fault>, Effects) {
    let req = PasidRequest { sid: s, pasid, privileged, iova, write };
    e.vtd.translate_pasid(&req, &e.mem)
}

fn code(e: &mut Env, s: u16, pasid: u32, privileged: bool) -> u8 {
    trp(e, s, pasid, privileged, 0x1000, false).0.unwrap_err().reason.code()
}

fn clear_fault(e: &mut Env) {
    e.w64(FRCD_REG_OFFSET + 8, FRCD_F);
}

/// Device with PASIDE, RID_PASID 0 pass-through (DID 1) and PASID 5
/// first-stage (DID 2) mapping 0x1000 -> 0xa000 for user and supervisor.
fn setup(e: &mut Env, s: u16, ctx_lo: u64) -> (u64, u64) {
    let dir = sm_setup_context(e, s, 0, 0, ctx_lo, 0);
    set_pasid_entry(e, dir, 0, pe(PGTT_PT, 1, 0, 0, 0, 0));
    let fs = e.alloc_page();
    set_pasid_entry(e, dir, 5, pe(PGTT_FS, 2, 0, 2, fs, 1));
    let mut a = Alloc(0x100_0000);
    fs_map(&e.mem, &mut a, fs, 4, 0x1000, 0xa000, 1, P | sm_common::RW | US | A | D);
    (dir, fs)
}

#[test]
fn pasid_request_uses_its_own_pasid_entry_not_rid_pasid() {
    let mut e = Env::with(cfg());
    let s = sid(0, 1, 0);
    setup(&mut e, s, PASIDE);
    sm_enable(&mut e);
    let t = trp(&mut e, s, 5, false, 0x1234, true).0.unwrap();
    assert_eq!((t.output(0x1234), t.domain_id), (0xa234, 2));
    let t = e.tr(s, 0x1234, false).0.unwrap();
    assert_eq!((t.phys, t.domain_id), (0x1000, 1), "request without PASID: RID_PASID");
    assert_eq!(e.vtd.pasid_cache_len(), 2);
}

#[test]
fn pasid_request_with_paside_clear_is_45h_and_record_has_pp_and_pv() {
    let mut e = Env::with(cfg());
    let s = sid(0, 2, 0);
    setup(&mut e, s, 0);
    sm_enable(&mut e);
    assert!(e.tr(s, 0x1000, false).0.is_ok(), "requests without PASID still work");
    let (r, _) = trp(&mut e, s, 5, false, 0x1abc, true);
    let f = r.unwrap_err();
    assert_eq!((f.reason, f.pasid, f.privileged), (F::SmContextPasidDisabled, Some(5), false));
    let rec = e.vtd.fault_record(0).unwrap();
    assert!(rec.pending && rec.write);
    assert_eq!((rec.reason_code, rec.sid, rec.address, rec.pasid), (0x45, s, 0x1000, Some(5)));
    let hi = e.rd64(FRCD_REG_OFFSET + 8);
    assert_ne!(hi & (1 << 31), 0, "PP");
    assert_eq!((hi >> 40) & 0xf_ffff, 5, "PV");
}

#[test]
fn pasid_beyond_supported_width_or_directory_is_46h() {
    let mut e = Env::with(Config { pasid_bits: 8, ..cfg() });
    let s = sid(0, 3, 0);
    let dir = sm_setup_context(&mut e, s, 7, 0, PASIDE, 0);
    set_pasid_entry(&mut e, dir, 255, pe(PGTT_PT, 1, 0, 0, 0, 0));
    sm_enable(&mut e);
    assert!(trp(&mut e, s, 255, false, 0, false).0.is_ok());
    assert_eq!(code(&mut e, s, 256, false), 0x46, "beyond ECAP.PSS");
    clear_fault(&mut e);
    assert_eq!(code(&mut e, s, u32::MAX, false), 0x46);
    // Within the width but beyond a PDTS-0 directory (PASIDs below 8192).
    let mut e = Env::with(cfg());
    sm_setup_context(&mut e, s, 0, 0, PASIDE, 0);
    sm_enable(&mut e);
    assert_eq!(code(&mut e, s, 8192, false), 0x46);
    assert_eq!(e.vtd.fault_record(0).unwrap().pasid, Some(8192));
}

#[test]
fn pasid_request_with_legacy_root_table_is_31h() {
    let mut e = Env::with(cfg());
    let s = sid(0, 4, 0);
    let pgd = e.setup_device(s, 1, 4);
    e.map(pgd, 4, 0x1000, 0xa000, 1, common::RW);
    e.enable();
    assert_eq!(code(&mut e, s, 5, true), 0x31);
    let rec = e.vtd.fault_record(0).unwrap();
    assert_eq!((rec.pasid, rec.privileged), (Some(5), true));
    assert_eq!(e.phys(s, 0x1000), 0xa000);
}

#[test]
fn pasid_request_without_pasid_support_is_43h() {
    let mut e = Env::with(Config { pasid_bits: 0, ..cfg() });
    let s = sid(0, 5, 0);
    setup(&mut e, s, PASIDE);
    sm_enable(&mut e);
    assert_eq!(code(&mut e, s, 5, false), 0x43);
}

#[test]
fn pasid_request_with_translation_disabled_is_identity() {
    let mut e = Env::with(cfg());
    let t = trp(&mut e, sid(0, 6, 0), 5, true, 0xdead_beef, true).0.unwrap();
    assert_eq!((t.phys, t.domain_id), (0xdead_b000, 0));
}

#[test]
fn privileged_pasid_request_needs_sre_5dh_and_record_has_priv() {
    let mut e = Env::with(cfg());
    let s = sid(0, 7, 0);
    let (dir, fs) = setup(&mut e, s, PASIDE);
    set_pasid_entry(&mut e, dir, 6, pe(PGTT_FS, 2, 0, 2, fs, 0));
    sm_enable(&mut e);
    assert_eq!(code(&mut e, s, 6, true), 0x5d);
    let rec = e.vtd.fault_record(0).unwrap();
    assert_eq!((rec.pasid, rec.privileged), (Some(6), true));
    // PASID 5 has SRE: supervisor request succeeds.
    assert_eq!(trp(&mut e, s, 5, true, 0x1000, false).0.unwrap().phys, 0xa000);
    assert!(trp(&mut e, s, 6, false, 0x1000, false).0.is_ok(), "user request on SRE-clear entry");
}

#[test]
fn fault_of_request_without_pasid_has_no_pp_even_with_rid_pasid() {
    let mut e = Env::with(cfg());
    let s = sid(0, 8, 0);
    sm_setup_context(&mut e, s, 0, 77, PASIDE, 0);
    sm_enable(&mut e);
    assert_eq!(e.fault_code(s, 0x1000, false), 0x51);
    let rec = e.vtd.fault_record(0).unwrap();
    assert_eq!((rec.pasid, rec.privileged), (None, false));
    assert_eq!(e.rd64(FRCD_REG_OFFSET + 8) & (1 << 31), 0);
}

#[test]
fn pasid_request_faults_honour_fpd_of_its_pasid_entry() {
    let mut e = Env::with(cfg());
    let s = sid(0, 9, 0);
    let dir = sm_setup_context(&mut e, s, 0, 0, PASIDE, 0);
    set_pasid_entry(&mut e, dir, 9, [2, 0, 0, 0, 0, 0, 0, 0]);
    sm_enable(&mut e);
    let (r, fx) = trp(&mut e, s, 9, false, 0, false);
    assert_eq!(r.unwrap_err().reason, F::PasidEntryNotPresent);
    assert!(fx.is_empty());
    assert_eq!(e.fsts() & FSTS_PPF, 0);
}

#[test]
fn pasid_request_iotlb_entries_follow_pasid_based_invalidation() {
    let mut e = Env::with(cfg());
    let s = sid(0, 10, 0);
    let (_, fs) = setup(&mut e, s, PASIDE);
    sm_enable(&mut e);
    enable_qi256(&mut e, 0);
    assert_eq!(trp(&mut e, s, 5, false, 0x1000, false).0.unwrap().phys, 0xa000);
    let leaf = fs_entry(&e.mem, &|x| x, fs, 4, 0x1000, 1);
    e.mem.w64(leaf, 0xb000 | P | sm_common::RW | US | A | D);
    assert_eq!(trp(&mut e, s, 5, false, 0x1000, false).0.unwrap().phys, 0xa000, "cached");
    submit256(&mut e, &[d_piotlb_pages(2, 5, 0x1000, 0, true)]);
    assert_eq!(trp(&mut e, s, 5, false, 0x1000, false).0.unwrap().phys, 0xb000);
}
