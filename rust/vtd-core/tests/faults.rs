//! Primary fault logging and the fault event interrupt.

mod common;
use common::*;
use vtd_core::registers::*;
use vtd_core::Msi;

const S: u16 = 0x0108;
const S2: u16 = 0x0210;
const MSI: Msi = Msi { address: 0xfee0_0000 | (3 << 12), data: 0x4055 };

/// Translation on, S mapped (page 0x1000 only), S2 has no context.
fn env() -> Env {
    let mut e = Env::new();
    let pgd = e.setup_device(S, 1, 4);
    e.map(pgd, 4, 0x1000, 0x2000, 1, R);
    e.enable();
    e.w32(FEDATA, MSI.data);
    e.w32(FEADDR, MSI.address as u32);
    e
}

fn frcd_hi(e: &mut Env) -> u64 {
    e.rd64(FRCD_REG_OFFSET + 8)
}

#[test]
fn fault_recorded_with_ppf_fri_and_fault_event_msi() {
    let mut e = env();
    e.w32(FECTL, 0);
    let (r, fx) = e.tr(S, 0x5abc, true);
    assert_eq!(r.unwrap_err().reason.code(), 0x5);
    assert_eq!(fx.interrupts, vec![MSI]);
    assert_eq!(e.fsts(), FSTS_PPF, "PPF set, FRI = 0");
    assert_eq!(e.rd32(FECTL), 0, "IP clear after sending");
    assert_eq!(e.rd64(FRCD_REG_OFFSET), 0x5000, "FI is page aligned");
    let hi = frcd_hi(&mut e);
    assert_eq!(hi, FRCD_F | (0x5 << 32) | u64::from(S), "write: T clear");
    let rec = e.vtd.fault_record(0).unwrap();
    assert!(rec.pending && rec.write);
    assert_eq!((rec.sid, rec.reason_code, rec.address), (S, 5, 0x5000));
    // Linux reads the top dword of the record.
    assert_eq!(e.rd32(FRCD_REG_OFFSET + 12), (hi >> 32) as u32);
}

#[test]
fn read_fault_sets_type_bit() {
    let mut e = env();
    let _ = e.tr(S, 0x9000, false);
    assert_eq!(frcd_hi(&mut e), FRCD_F | FRCD_T | (0x6 << 32) | u64::from(S));
}

#[test]
fn clearing_f_bit_with_rw1c_clears_ppf() {
    let mut e = env();
    let _ = e.tr(S, 0x9000, false);
    // Writing 0 does not clear; writing 1 to F (top dword, as Linux) does.
    e.w32(FRCD_REG_OFFSET + 12, 0);
    assert_eq!(e.fsts(), FSTS_PPF);
    e.w32(FRCD_REG_OFFSET + 12, 1 << 31);
    assert_eq!(e.fsts(), 0);
    assert_eq!(frcd_hi(&mut e) & FRCD_F, 0);
    // 64-bit write of the high quadword works too.
    let _ = e.tr(S, 0x9000, false);
    assert_eq!(e.fsts(), FSTS_PPF);
    e.w64(FRCD_REG_OFFSET + 8, FRCD_F);
    assert_eq!(e.fsts(), 0);
}

#[test]
fn other_record_fields_are_read_only() {
    let mut e = env();
    let _ = e.tr(S, 0x9000, false);
    let lo = e.rd64(FRCD_REG_OFFSET);
    e.w64(FRCD_REG_OFFSET, 0);
    e.w64(FRCD_REG_OFFSET + 8, 0x0000_00ff_0000_ffff);
    assert_eq!(e.rd64(FRCD_REG_OFFSET), lo);
    assert_eq!(frcd_hi(&mut e), FRCD_F | FRCD_T | (0x6 << 32) | u64::from(S));
}

#[test]
fn second_fault_from_same_source_collapsed() {
    let mut e = env();
    let _ = e.tr(S, 0x9000, false);
    let _ = e.tr(S, 0xa000, true);
    assert_eq!(e.fsts(), FSTS_PPF, "no overflow");
    assert_eq!(e.vtd.fault_record(0).unwrap().address, 0x9000, "first fault kept");
}

#[test]
fn overflow_sets_pfo_when_all_records_pending() {
    let mut e = env();
    e.w32(FECTL, 0);
    assert_eq!(e.tr(S, 0x9000, false).1.interrupts.len(), 1);
    let (r, fx) = e.tr(S2, 0x1000, false);
    assert_eq!(r.unwrap_err().reason.code(), 0x1);
    assert!(fx.interrupts.is_empty(), "no new event while PPF pending");
    assert_eq!(e.fsts(), FSTS_PPF | FSTS_PFO);
    assert_eq!(e.vtd.fault_record(0).unwrap().sid, S, "record not overwritten");
}

#[test]
fn pfo_blocks_recording_until_cleared() {
    let mut e = env();
    let _ = e.tr(S, 0x9000, false);
    let _ = e.tr(S2, 0x1000, false);
    e.w32(FRCD_REG_OFFSET + 12, 1 << 31);
    assert_eq!(e.fsts(), FSTS_PFO);
    let _ = e.tr(S2, 0x1000, false);
    assert!(!e.vtd.fault_record(0).unwrap().pending, "PFO set: new fault dropped");
    e.w32(FSTS, FSTS_PFO);
    assert_eq!(e.fsts(), 0);
    let _ = e.tr(S2, 0x1000, false);
    let rec = e.vtd.fault_record(0).unwrap();
    assert!(rec.pending);
    assert_eq!((rec.sid, rec.reason_code), (S2, 0x1));
}

#[test]
fn masked_fault_event_sets_ip_and_unmask_fires() {
    let mut e = env();
    let fx = e.tr(S, 0x9000, false).1;
    assert!(fx.interrupts.is_empty());
    assert_eq!(e.rd32(FECTL), EVT_IM | EVT_IP);
    let fx = e.w32(FECTL, 0);
    assert_eq!(fx.interrupts, vec![MSI]);
    assert_eq!(e.rd32(FECTL), 0);
    assert!(e.w32(FECTL, 0).interrupts.is_empty(), "sent only once");
}

#[test]
fn ip_cleared_when_software_services_all_status() {
    let mut e = env();
    let _ = e.tr(S, 0x9000, false);
    let _ = e.tr(S2, 0x1000, false);
    assert_eq!(e.rd32(FECTL), EVT_IM | EVT_IP);
    e.w32(FRCD_REG_OFFSET + 12, 1 << 31);
    assert_eq!(e.rd32(FECTL), EVT_IM | EVT_IP, "PFO still set");
    e.w32(FSTS, FSTS_PFO);
    assert_eq!(e.rd32(FECTL), EVT_IM);
    assert!(e.w32(FECTL, 0).interrupts.is_empty());
}

#[test]
fn new_fault_after_service_raises_new_event() {
    let mut e = env();
    e.w32(FECTL, 0);
    let _ = e.tr(S, 0x9000, false);
    e.w32(FRCD_REG_OFFSET + 12, 1 << 31);
    let fx = e.tr(S, 0x9000, false).1;
    assert_eq!(fx.interrupts, vec![MSI]);
}

#[test]
fn fpd_suppresses_qualified_faults() {
    let mut e = Env::new();
    let pgd = e.new_pgd();
    e.set_context(S, pgd | 1 | 2, 2 | (1 << 8)); // FPD set
    e.enable();
    e.w32(FECTL, 0);
    for (iova, w, code) in [(0x1000u64, false, 0x6u8), (0x1000, true, 0x5), (1 << 50, false, 0x4)] {
        let (r, fx) = e.tr(S, iova, w);
        assert_eq!(r.unwrap_err().reason.code(), code, "fault still returned to caller");
        assert!(fx.is_empty());
    }
    assert_eq!(e.fsts(), 0);
    assert!(!e.vtd.fault_record(0).unwrap().pending);
}

#[test]
fn fpd_in_not_present_context_entry_suppresses() {
    let mut e = Env::new();
    e.set_context(S, 2, 0);
    e.enable();
    assert_eq!(e.fault_code(S, 0x1000, false), 0x2);
    assert_eq!(e.fsts(), 0);
}

#[test]
fn fpd_does_not_suppress_reserved_context_entry_fault() {
    let mut e = Env::new();
    let pgd = e.new_pgd();
    e.set_context(S, pgd | 1 | 2 | 0x10, 2);
    e.enable();
    assert_eq!(e.fault_code(S, 0x1000, false), 0xb);
    assert_eq!(e.fsts(), FSTS_PPF);
}

#[test]
fn pending_iqe_holds_off_fault_event() {
    let mut e = env();
    e.w32(FECTL, 0);
    e.enable_qi(0);
    assert_eq!(e.submit(&[(0xf, 0)]).interrupts.len(), 1);
    let fx = e.tr(S, 0x9000, false).1;
    assert!(fx.interrupts.is_empty());
    assert_eq!(e.fsts(), FSTS_PPF | FSTS_IQE);
}

#[test]
fn fault_event_upper_address_is_reserved_zero() {
    let mut e = env();
    e.w32(FEUADDR, 0xffff_ffff);
    e.w32(FECTL, 0);
    let fx = e.tr(S, 0x9000, false).1;
    assert_eq!(fx.interrupts, vec![MSI]);
}

#[test]
fn no_faults_recorded_with_translation_disabled() {
    let mut e = Env::new();
    assert!(e.tr(S, 0x1000, true).0.is_ok());
    assert_eq!(e.fsts(), 0);
}
