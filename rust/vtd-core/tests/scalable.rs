//! Scalable-mode translation through `Vtd::translate`: root/context/PASID
//! structure faults, the four PGTT modes with RID_PASID, FPD, the IOTLB and
//! the TTM latch.

mod common;
mod sm_common;

use common::{Env, FRCD_F, ROOT, sid};
use sm_common::*;
use vtd_core::config::EcapReg;
use vtd_core::queues::fault::FaultReason as F;
use vtd_core::registers::*;
use vtd_core::translation::scalable::{resolve, SmCaps};
use vtd_core::Config;

fn cfg() -> Config {
    Config { scalable_mode: true, first_stage: true, pasid_bits: 20, strict_dma: true, ..Config::default() }
}

fn env() -> Env {
    Env::with(cfg())
}

/// A device whose RID_PASID (0) entry is `entry`; returns the directory.
fn device(e: &mut Env, s: u16, entry: [u64; 8]) -> u64 {
    let dir = sm_setup_context(e, s, 0, 0, 0, 0);
    set_pasid_entry(e, dir, 0, entry);
    dir
}

fn code(e: &mut Env, s: u16, iova: u64, write: bool) -> u8 {
    e.fault_code(s, iova, write)
}

// ---- TTM latch --------------------------------------------------------

#[test]
fn ttm_scalable_latched_only_with_scalable_mode() {
    let mut e = env();
    e.w64(RTADDR, ROOT | (1 << 10));
    assert!(e.gcmd(GCMD_SRTP, 0).guest_errors.is_empty());
    assert!(e.vtd.root_table_scalable());
    e.w64(RTADDR, ROOT);
    e.gcmd(GCMD_SRTP, 0);
    assert!(!e.vtd.root_table_scalable());
    for ttm in [2u64, 3] {
        e.w64(RTADDR, ROOT | (ttm << 10));
        assert_eq!(e.gcmd(GCMD_SRTP, 0).guest_errors.len(), 1);
        assert!(!e.vtd.root_table_scalable());
    }
    let mut legacy = Env::new();
    legacy.w64(RTADDR, ROOT | (1 << 10));
    assert_eq!(legacy.gcmd(GCMD_SRTP, 0).guest_errors.len(), 1);
    assert!(!legacy.vtd.root_table_scalable());
}

#[test]
fn scalable_config_advertises_smts_and_legacy_tables_still_work() {
    let mut e = env();
    assert!(EcapReg::from(e.rd64(ECAP)).smts());
    // TTM = 00b: legacy tables, legacy fault codes.
    let s = sid(0, 1, 0);
    let pgd = e.setup_device(s, 1, 4);
    e.map(pgd, 4, 0x1000, 0xa000, 1, common::RW);
    e.enable();
    assert_eq!(e.phys(s, 0x1234), 0xa234);
    assert_eq!(code(&mut e, s, 0x5000, false), 0x6);
}

#[test]
fn srtp_switch_between_formats_flushes_iotlb() {
    let mut e = env();
    let s = sid(0, 2, 0);
    let ss = e.alloc_page();
    device(&mut e, s, pe(PGTT_SS, 5, ss, 2, 0, 0));
    let mut a = Alloc(0x80_0000);
    ss_map(&e.mem, &mut a, ss, 4, 0x1000, 0xb000, 1, 3);
    sm_enable(&mut e);
    assert_eq!(e.phys(s, 0x1000), 0xb000);
    assert_eq!(e.vtd.iotlb_len(), 1);
    e.gcmd(GCMD_SRTP, 0);
    assert_eq!(e.vtd.iotlb_len(), 0);
}

// ---- root / context faults ------------------------------------------------

#[test]
fn root_entry_lower_and_upper_halves() {
    let mut e = env();
    let lo = sid(3, 0x0f, 7); // devfn 0x7f
    let hi = sid(3, 0x10, 0); // devfn 0x80
    device(&mut e, lo, pe(PGTT_PT, 1, 0, 0, 0, 0));
    sm_enable(&mut e);
    assert!(e.tr(lo, 0x1000, false).0.is_ok());
    // Upper half not present while the lower one is: 39h.
    assert_eq!(code(&mut e, hi, 0x1000, false), 0x39);
    device(&mut e, hi, pe(PGTT_PT, 2, 0, 0, 0, 0));
    let t = e.tr(hi, 0x1000, false).0.unwrap();
    assert_eq!((t.phys, t.domain_id), (0x1000, 2));
    // The two halves use different context tables.
    let root = e.mem.r64(ROOT + 3 * 16);
    let root_hi = e.mem.r64(ROOT + 3 * 16 + 8);
    assert_ne!(root & !0xfff, root_hi & !0xfff);
}

#[test]
fn root_entry_faults_38h_39h_3ah() {
    let mut e = env();
    sm_enable(&mut e);
    assert_eq!(code(&mut e, sid(1, 0, 0), 0, false), 0x39);
    e.mem.w64(ROOT + 16, 0x5000 | 1 | 0x10);
    e.w32(FSTS, FSTS_PFO);
    e.w64(FRCD_REG_OFFSET + 8, FRCD_F);
    assert_eq!(code(&mut e, sid(1, 0, 0), 0, false), 0x3a);
    e.mem.unmap(ROOT + 2 * 16, 16);
    assert_eq!(code(&mut e, sid(2, 0, 0), 0, false), 0x38);
}

#[test]
fn context_entry_faults_40h_41h_42h() {
    let mut e = env();
    let s = sid(0, 3, 0);
    let a = sm_context_addr(&mut e, s);
    sm_enable(&mut e);
    assert_eq!(code(&mut e, s, 0, false), 0x41);
    e.mem.w64(a, 0x9000 | 1 | 0x20);
    assert_eq!(code(&mut e, s, 0, false), 0x42);
    e.mem.w64(a, 0x9000 | 1);
    e.mem.w64(a + 16, 1);
    assert_eq!(code(&mut e, s, 0, false), 0x42, "quadword 2 is reserved");
    e.mem.unmap(a, 32);
    assert_eq!(code(&mut e, s, 0, false), 0x40);
}

#[test]
fn rid_pasid_beyond_pasid_directory_is_48h() {
    let mut e = env();
    let s = sid(0, 4, 0);
    // PDTS 0: 128 directory entries, PASIDs below 8192.
    let dir = sm_setup_context(&mut e, s, 0, 8192, 0, 0);
    set_pasid_entry(&mut e, dir, 0, pe(PGTT_PT, 1, 0, 0, 0, 0));
    sm_enable(&mut e);
    assert_eq!(code(&mut e, s, 0, false), 0x48);
    // PDTS 1 covers it; the directory entry for it is not present: 51h.
    let dir = sm_setup_context(&mut e, s, 1, 8192, 0, 0);
    assert_eq!(code(&mut e, s, 0, false), 0x51);
    set_pasid_entry(&mut e, dir, 8192, pe(PGTT_PT, 7, 0, 0, 0, 0));
    assert_eq!(e.tr(s, 0x3000, true).0.unwrap().domain_id, 7);
}

// ---- PASID directory / table faults -----------------------------------

#[test]
fn pasid_directory_faults_50h_51h_52h() {
    let mut e = env();
    let s = sid(0, 5, 0);
    let dir = sm_setup_context(&mut e, s, 0, 0, 0, 0);
    sm_enable(&mut e);
    assert_eq!(code(&mut e, s, 0, false), 0x51);
    e.mem.w64(dir, 0x7000 | 1 | 0x4);
    assert_eq!(code(&mut e, s, 0, false), 0x52);
    e.mem.unmap(dir, 8);
    assert_eq!(code(&mut e, s, 0, false), 0x50);
}

#[test]
fn pasid_entry_faults_58h_59h_5ah_5bh() {
    let mut e = env();
    let s = sid(0, 6, 0);
    let dir = device(&mut e, s, [0; 8]);
    let a = pasid_entry_addr(&mut e, dir, 0);
    sm_enable(&mut e);
    assert_eq!(code(&mut e, s, 0, false), 0x59);
    e.mem.w64(a, PGTT_PT | 1 | 0x800);
    assert_eq!(code(&mut e, s, 0, false), 0x5a);
    e.mem.w64(a, (6 << 6) | 1);
    assert_eq!(code(&mut e, s, 0, false), 0x5b);
    // Second stage with AW = 3 (5-level) is not in SAGAW.
    e.mem.w64(a, PGTT_SS | (3 << 2) | 1);
    assert_eq!(code(&mut e, s, 0, false), 0x5b);
    e.mem.unmap(a + 32, 8);
    assert_eq!(code(&mut e, s, 0, false), 0x58);
}

#[test]
fn first_stage_pgtt_invalid_without_flts() {
    let c = Config { scalable_mode: true, strict_dma: true, ..Config::default() };
    let mut e = Env::with(c);
    let s = sid(0, 7, 0);
    device(&mut e, s, pe(PGTT_FS, 1, 0, 0, 0x9000, 0));
    sm_enable(&mut e);
    assert_eq!(code(&mut e, s, 0, false), 0x5b);
    let mut e = Env::with(Config { scalable_mode: true, strict_dma: true, ..Config::default() });
    device(&mut e, s, pe(PGTT_NESTED, 1, 0x8000, 2, 0x9000, 0));
    sm_enable(&mut e);
    assert_eq!(code(&mut e, s, 0, false), 0x5b);
}

#[test]
fn pass_through_pgtt_needs_ecap_pt() {
    let mut e = Env::with(Config { pass_through: false, ..cfg() });
    let s = sid(0, 8, 0);
    device(&mut e, s, pe(PGTT_PT, 1, 0, 0, 0, 0));
    sm_enable(&mut e);
    assert_eq!(code(&mut e, s, 0, false), 0x5b);
}

#[test]
fn rid_priv_supervisor_request_needs_sre_5dh() {
    let mut e = env();
    let s = sid(0, 9, 0);
    let dir = sm_setup_context(&mut e, s, 0, 0, 0, 1 << 20);
    let fs = e.alloc_page();
    set_pasid_entry(&mut e, dir, 0, pe(PGTT_FS, 3, 0, 0, fs, 0));
    let mut a = Alloc(0x80_0000);
    // Supervisor-only page (U/S clear).
    fs_map_x(&e.mem, &mut a, &|x| x, fs, 4, 0x1000, 0xc000, 1, P | RW, P | RW);
    sm_enable(&mut e);
    assert_eq!(code(&mut e, s, 0x1000, false), 0x5d);
    set_pasid_entry(&mut e, dir, 0, pe(PGTT_FS, 3, 0, 0, fs, 1));
    assert_eq!(e.phys(s, 0x1000), 0xc000);
    // Supervisor translations are not cached: a user (RID_PRIV clear)
    // requester in the same domain walks and faults with 81h.
    assert_eq!(e.vtd.iotlb_len(), 0);
    let u = sid(0, 10, 0);
    device(&mut e, u, pe(PGTT_FS, 3, 0, 0, fs, 1));
    assert_eq!(code(&mut e, u, 0x1000, false), 0x81);
}

#[test]
fn supervisor_write_without_wpe_not_cached_for_user_requester() {
    let mut e = env();
    let sup = sid(0, 20, 0);
    let usr = sid(0, 21, 0);
    let fs = e.alloc_page();
    let dir = sm_setup_context(&mut e, sup, 0, 0, 0, 1 << 20);
    set_pasid_entry(&mut e, dir, 0, pe(PGTT_FS, 3, 0, 0, fs, 1));
    device(&mut e, usr, pe(PGTT_FS, 3, 0, 0, fs, 1));
    let mut a = Alloc(0x80_0000);
    // A read-only user page.
    fs_map(&e.mem, &mut a, fs, 4, 0x1000, 0xc000, 1, P | US);
    sm_enable(&mut e);
    // The user read is cached (read-only).
    assert!(!e.tr(usr, 0x1000, false).0.unwrap().perm.write);
    assert_eq!(e.vtd.iotlb_len(), 1);
    // The supervisor may write (WPE clear): walks again, result not cached.
    assert!(e.tr(sup, 0x1000, true).0.unwrap().perm.write);
    // The user write still faults.
    assert_eq!(code(&mut e, usr, 0x1000, true), 0x85);
}

// ---- translation modes ------------------------------------------------------

#[test]
fn second_stage_translation_with_sm_fault_codes() {
    let mut e = env();
    let s = sid(0, 11, 0);
    let ss = e.alloc_page();
    device(&mut e, s, pe(PGTT_SS, 4, ss, 1, 0, 0)); // AW 1: 3 levels, 39 bits
    let mut a = Alloc(0x80_0000);
    ss_map(&e.mem, &mut a, ss, 3, 0x1000, 0xb000, 1, 1);
    ss_map(&e.mem, &mut a, ss, 3, 0x4020_0000, 0x60_0000, 2, 3);
    ss_map(&e.mem, &mut a, ss, 3, 0x3000, 0xfee0_0000, 1, 3);
    sm_enable(&mut e);
    let t = e.tr(s, 0x1234, false).0.unwrap();
    assert_eq!((t.phys, t.page_mask, t.domain_id), (0xb000, 0xfff, 4));
    assert!(!t.perm.write);
    assert_eq!(e.phys(s, 0x4021_0000), 0x61_0000);
    let next = |e: &mut Env, iova, w, want: u8| {
        e.w64(FRCD_REG_OFFSET + 8, FRCD_F);
        assert_eq!(code(e, s, iova, w), want, "{iova:#x}");
    };
    next(&mut e, 0x1000, true, 0x85);
    next(&mut e, 0x2000, false, 0x79);
    next(&mut e, 1 << 39, false, 0x83);
    next(&mut e, 0x3000, false, 0x87);
    assert_eq!(e.vtd.fault_record(0).unwrap().reason_code, 0x87);
}

#[test]
fn first_stage_translation_sets_flags_and_caches_by_domain() {
    let mut e = env();
    let s = sid(0, 12, 0);
    let fs = e.alloc_page();
    device(&mut e, s, pe(PGTT_FS, 9, 0, 2, fs, 0));
    let mut a = Alloc(0x80_0000);
    fs_map(&e.mem, &mut a, fs, 4, 0x7fff_ffff_f000, 0xd000, 1, P | RW | US);
    sm_enable(&mut e);
    let t = e.tr(s, 0x7fff_ffff_f010, false).0.unwrap();
    assert_eq!((t.phys, t.domain_id), (0xd000, 9));
    assert!(!t.perm.write, "read of a clean page is not writable yet");
    let leaf = fs_entry(&e.mem, &|x| x, fs, 4, 0x7fff_ffff_f000, 1);
    assert_eq!(e.mem.r64(leaf) & (A | D), A);
    assert_eq!(e.vtd.iotlb_len(), 1);
    // The write misses the read-only cached entry, walks and sets D.
    let t = e.tr(s, 0x7fff_ffff_f010, true).0.unwrap();
    assert!(t.perm.write);
    assert_eq!(e.mem.r64(leaf) & (A | D), A | D);
    // Cached now: a changed table is not seen until invalidation.
    e.mem.w64(leaf, 0);
    assert_eq!(e.phys(s, 0x7fff_ffff_f000), 0xd000);
    e.iotlb_domain(9);
    assert_eq!(code(&mut e, s, 0x7fff_ffff_f000, false), 0x71);
    assert_eq!(code(&mut e, s, 0x8000_0000_0000, false), 0x80);
}

#[test]
fn nested_translation_through_vtd() {
    let mut e = env();
    let s = sid(0, 13, 0);
    let ss = e.alloc_page();
    let fs_gpa = 0x1_0000;
    device(&mut e, s, pe(PGTT_NESTED, 6, ss, 2, fs_gpa, 0));
    let mut sa = Alloc(0x80_0000);
    let mut fa = Alloc(0x2_0000);
    let off = 0x4000_0000;
    fs_map_x(&e.mem, &mut fa, &|g| g + off, fs_gpa, 4, 0x5000, 0x9000, 1, P | RW | US, TABLE);
    let mut g = fs_gpa;
    while g < fa.0 {
        ss_map(&e.mem, &mut sa, ss, 4, g, g + off, 1, 3);
        g += 0x1000;
    }
    ss_map(&e.mem, &mut sa, ss, 4, 0x9000, 0x7_7777_7000, 1, 3);
    sm_enable(&mut e);
    let t = e.tr(s, 0x5008, true).0.unwrap();
    assert_eq!((t.phys, t.domain_id), (0x7_7777_7000, 6));
    assert!(t.perm.write);
    ss_map(&e.mem, &mut sa, ss, 4, fs_gpa, fs_gpa + off, 1, 2);
    e.iotlb_global();
    assert_eq!(code(&mut e, s, 0x5000, false), 0x75);
}

#[test]
fn pass_through_translation_is_identity() {
    let mut e = env();
    let s = sid(0, 14, 0);
    device(&mut e, s, pe(PGTT_PT, 3, 0, 2, 0, 0));
    sm_enable(&mut e);
    let t = e.tr(s, 0xdead_beef, true).0.unwrap();
    assert_eq!((t.phys, t.domain_id), (0xdead_b000, 3));
    assert_eq!(e.vtd.iotlb_len(), 0);
}

// ---- FPD -------------------------------------------------------------------

#[test]
fn fpd_in_context_directory_or_pasid_entry_suppresses_qualified_faults() {
    for which in 0..3 {
        let mut e = env();
        let s = sid(0, 15, 0);
        let ctx_fpd = if which == 0 { 2 } else { 0 };
        let dir = sm_setup_context(&mut e, s, 0, 0, ctx_fpd, 0);
        let pe_fpd = if which == 2 { 2 } else { 0 };
        set_pasid_entry(&mut e, dir, 0, [pe_fpd, 0, 0, 0, 0, 0, 0, 0]);
        if which == 1 {
            e.mem.w64(dir, e.mem.r64(dir) | 2);
        }
        sm_enable(&mut e);
        let (r, fx) = e.tr(s, 0, false);
        assert_eq!(r.unwrap_err().reason, F::PasidEntryNotPresent, "case {which}");
        assert!(fx.interrupts.is_empty(), "case {which}");
        assert_eq!(e.fsts() & FSTS_PPF, 0, "case {which}: not recorded");
    }
}

#[test]
fn fpd_does_not_suppress_unqualified_faults() {
    let mut e = env();
    let s = sid(0, 16, 0);
    let dir = sm_setup_context(&mut e, s, 0, 0, 2, 0);
    e.mem.unmap(dir, 8);
    sm_enable(&mut e);
    assert_eq!(code(&mut e, s, 0, false), 0x50);
    assert_ne!(e.fsts() & FSTS_PPF, 0, "PASID directory access error is recorded");
}

// ---- direct use of the resolver ---------------------------------------------

#[test]
fn resolve_reports_pasid_and_privilege() {
    let mut e = env();
    let s = sid(2, 1, 0);
    let dir = sm_setup_context(&mut e, s, 2, 300, 8, 0);
    set_pasid_entry(&mut e, dir, 300, pe(PGTT_PT, 1, 0, 0, 0, 1));
    set_pasid_entry(&mut e, dir, 77, pe(PGTT_PT, 2, 0, 0, 0, 0));
    let c = cfg();
    let caps = SmCaps::from_regs(c.cap(), c.ecap(), c.aw_bits);
    let pc = resolve(&e.mem, ROOT, s, None, &caps).unwrap();
    assert_eq!((pc.pasid, pc.privileged, pc.fpd), (300, false, false));
    assert_eq!(pc.pasid_entry.domain_id, 1);
    let pc = resolve(&e.mem, ROOT, s, Some((77, false)), &caps).unwrap();
    assert_eq!((pc.pasid, pc.pasid_entry.domain_id), (77, 2));
    let f = resolve(&e.mem, ROOT, s, Some((77, true)), &caps).unwrap_err();
    assert_eq!(f.reason, F::PasidEntrySreClear);
    // PASIDE clear: requests with PASID are rejected (45h).
    sm_setup_context(&mut e, s, 2, 300, 0, 0);
    let f = resolve(&e.mem, ROOT, s, Some((77, false)), &caps).unwrap_err();
    assert_eq!(f.reason.code(), 0x45);
}
