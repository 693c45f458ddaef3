//! Interrupt remapping: GCMD.SIRTP/IRE/CFI handshakes, remapping of
//! remappable- and compatibility-format requests, every interrupt
//! remapping fault reason with its fault record, FPD, source-id
//! validation, interrupt entry cache invalidation, reset and migration.
//! Most tests use the architecture's rules (`strict_ir`); the section
//! "the C device's rules" checks the default, where each lenient rule of
//! QEMU's C device delivers what the architecture blocks.

mod common;
use common::*;
use vtd_core::queues::fault::FrcdLoInterrupt;
use vtd_core::registers::*;
use vtd_core::{
    Config, Effects, FaultRecord, IecInvalidation, InterruptFault, InterruptRequest, Msi, Vtd,
};

const IRT: u64 = 0x4000_0000;
const EIME: u64 = 1 << 11;
const FE_ADDR: u32 = 0xfee0_f000;
const FE_DATA: u32 = 0x4099;

fn ir_cfg(eim: bool) -> Config {
    Config { intremap: true, eim, strict_ir: true, ..Config::default() }
}

/// A unit with interrupt remapping enabled by the architecture's rules:
/// table at IRT with 2^(s+1) entries, fault events unmasked.
fn ir_env(eim: bool, s: u64, eime: bool) -> Env {
    ir_env_with(Config { strict_ir: true, ..ir_cfg(eim) }, s, eime)
}

/// [`ir_env`] with the default (C device's) rules.
fn c_rules_env(eim: bool, s: u64, eime: bool) -> Env {
    ir_env_with(Config { strict_ir: false, ..ir_cfg(eim) }, s, eime)
}

fn ir_env_with(cfg: Config, s: u64, eime: bool) -> Env {
    let mut e = Env::with(cfg);
    e.w32(FEADDR, FE_ADDR);
    e.w32(FEDATA, FE_DATA);
    e.w32(FECTL, 0);
    e.w64(IRTA, IRT | s | if eime { EIME } else { 0 });
    let fx = e.gcmd(GCMD_SIRTP, 0);
    assert_eq!(fx.iec_invalidations, vec![IecInvalidation::Global]);
    let fx = e.gcmd(GCMD_IRE, 0);
    assert!(fx.guest_errors.is_empty(), "{fx:?}");
    assert_eq!(fx.iec_invalidations, vec![IecInvalidation::Global]);
    assert_eq!(e.gsts(), GSTS_IRTPS | GSTS_IRES);
    e
}

fn set_irte(e: &Env, index: u64, lo: u64, hi: u64) {
    e.mem.w64(IRT + index * 16, lo);
    e.mem.w64(IRT + index * 16 + 8, hi);
}

/// Present IRTE in xAPIC format: vector, 8-bit APIC id, no validation.
fn irte_xapic(vector: u8, apic: u8) -> u64 {
    1 | (u64::from(vector) << 16) | (u64::from(apic) << 40)
}

fn remappable(handle: u32, shv: bool) -> u64 {
    0xfee0_0000
        | (u64::from(handle & 0x7fff) << 5)
        | (u64::from((handle >> 15) & 1) << 2)
        | (1 << 4)
        | if shv { 1 << 3 } else { 0 }
}

fn remap(e: &mut Env, sid: u16, address: u64, data: u32) -> (Result<Msi, InterruptFault>, Effects) {
    let req = InterruptRequest { sid, address, data };
    e.vtd.remap_interrupt(&req, &e.mem)
}

fn fault_event() -> Msi {
    Msi { address: u64::from(FE_ADDR), data: FE_DATA }
}

/// Expect a blocked request recorded in FRCD0 with a fault event; the
/// record is then cleared.
fn expect_recorded(e: &mut Env, sid: u16, address: u64, data: u32, code: u8, index: u16) {
    let (r, fx) = remap(e, sid, address, data);
    let f = r.expect_err("blocked");
    assert_eq!((f.reason.code(), f.sid), (code, sid));
    assert_eq!(fx.interrupts, vec![fault_event()], "code {code:#x}");
    let rec = e.vtd.fault_record(0).unwrap();
    assert!(rec.pending);
    assert_eq!((rec.reason_code, rec.sid, rec.write), (code, sid, true));
    assert_eq!(rec.interrupt_index(), Some(index));
    assert_eq!(rec.address, u64::from(FrcdLoInterrupt::new(index)), "FI bits 47:12 clear");
    assert_ne!(e.fsts() & FSTS_PPF, 0);
    clear_fault(e);
}

fn clear_fault(e: &mut Env) {
    e.w32(FRCD_REG_OFFSET + 12, 0x8000_0000);
    assert_eq!(e.fsts() & FSTS_PPF, 0);
}

fn expect_silent(e: &mut Env, sid: u16, address: u64, data: u32, code: u8) {
    let (r, fx) = remap(e, sid, address, data);
    assert_eq!(r.expect_err("blocked").reason.code(), code);
    assert!(fx.is_empty(), "{fx:?}");
    assert!(!e.vtd.fault_record(0).unwrap().pending);
}

// ---- pass-through ---------------------------------------------------------

#[test]
fn passes_through_without_intremap_or_before_ire() {
    let mut e = Env::new();
    for a in [0xfee0_1000u64, remappable(5, true), 0x1234] {
        let (r, fx) = remap(&mut e, 1, a, 0xdead_beef);
        assert_eq!(r, Ok(Msi { address: a, data: 0xdead_beef }));
        assert!(fx.is_empty());
    }
    let mut e = Env::with(ir_cfg(false));
    let (r, fx) = remap(&mut e, 1, remappable(5, false), 0x41);
    assert_eq!(r, Ok(Msi { address: remappable(5, false), data: 0x41 }));
    assert!(fx.is_empty());
}

// ---- remappable format ----------------------------------------------------

#[test]
fn remappable_msi_is_remapped_through_irte() {
    let mut e = ir_env(false, 7, false);
    // Fixed delivery, physical, edge, vector 0x51 to APIC 3.
    set_irte(&e, 0x25, irte_xapic(0x51, 3), 0);
    let (r, fx) = remap(&mut e, sid(0, 3, 0), remappable(0x25, false), 0);
    assert_eq!(r, Ok(Msi { address: 0xfee0_3000, data: 0x4051 }));
    assert!(fx.is_empty());
    // Logical, redirection hint, level, lowest priority; address bits 1:0
    // of the request are kept.
    let lo = irte_xapic(0x62, 0x0f) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5);
    set_irte(&e, 0x26, lo, 0);
    let (r, _) = remap(&mut e, sid(0, 3, 0), remappable(0x26, false) | 2, 0);
    assert_eq!(r, Ok(Msi { address: 0xfee0_f00e, data: 0x62 | (1 << 8) | (1 << 14) | (1 << 15) }));
}

#[test]
fn subhandle_is_added_with_shv() {
    let mut e = ir_env(false, 7, false);
    for i in 0..8u64 {
        set_irte(&e, 0x40 + i, irte_xapic(0x30 + i as u8, 1), 0);
    }
    for sub in 0..8u32 {
        let (r, _) = remap(&mut e, 1, remappable(0x40, true), sub);
        assert_eq!(r.unwrap().data & 0xff, 0x30 + sub, "subhandle {sub}");
    }
    // Without SHV the data (e.g. an I/O APIC's vector) is not a subhandle.
    let (r, _) = remap(&mut e, 1, remappable(0x40, false), 0x37);
    assert_eq!(r.unwrap().data & 0xff, 0x30);
}

#[test]
fn handle_bit_15_comes_from_address_bit_2() {
    let mut e = ir_env(false, 15, false);
    set_irte(&e, 0x8001, irte_xapic(0x99, 2), 0);
    let (r, _) = remap(&mut e, 1, remappable(0x8001, false), 0);
    assert_eq!(r, Ok(Msi { address: 0xfee0_2000, data: 0x4099 }));
}

#[test]
fn x2apic_destination_with_eim() {
    let mut e = ir_env(true, 3, true);
    assert!(e.vtd.interrupt_table().eime);
    let dest: u64 = 0x0001_0203;
    set_irte(&e, 1, 1 | (0x44 << 16) | (dest << 32), 0);
    let (r, _) = remap(&mut e, 1, remappable(1, false), 0);
    assert_eq!(r, Ok(Msi { address: (0x0001_0200 << 32) | 0xfee0_3000, data: 0x4044 }));
    // Destinations below 256 stay in the low address.
    set_irte(&e, 2, 1 | (0x45 << 16) | (0xfe << 32), 0);
    let (r, _) = remap(&mut e, 1, remappable(2, false), 0);
    assert_eq!(r, Ok(Msi { address: 0xfeef_e000, data: 0x4045 }));
}

#[test]
fn xapic_mode_reads_dest_bits_15_8_and_reserves_the_rest() {
    let mut e = ir_env(true, 3, false);
    set_irte(&e, 1, 1 | (0x44 << 16) | (0x0000_0700 << 32), 0);
    let (r, _) = remap(&mut e, 1, remappable(1, false), 0);
    assert_eq!(r, Ok(Msi { address: 0xfee0_7000, data: 0x4044 }));
    set_irte(&e, 2, 1 | (0x44 << 16) | (0x0001_0700 << 32), 0);
    expect_recorded(&mut e, 1, remappable(2, false), 0, 0x24, 2);
    set_irte(&e, 3, 1 | (0x44 << 16) | (0x0000_0701 << 32), 0);
    expect_recorded(&mut e, 1, remappable(3, false), 0, 0x24, 3);
}

#[test]
fn eime_without_eim_is_guest_error_and_ignored() {
    let mut e = Env::with(ir_cfg(false));
    e.w64(IRTA, IRT | EIME | 3);
    let fx = e.gcmd(GCMD_SIRTP, 0);
    assert_eq!(fx.guest_errors.len(), 1);
    assert!(!e.vtd.interrupt_table().eime);
    e.gcmd(GCMD_IRE, 0);
    set_irte(&e, 1, irte_xapic(0x20, 9), 0);
    let (r, _) = remap(&mut e, 1, remappable(1, false), 0);
    assert_eq!(r, Ok(Msi { address: 0xfee0_9000, data: 0x4020 }));
}

// ---- compatibility format -------------------------------------------------

#[test]
fn compatibility_format_blocked_unless_cfi() {
    let mut e = ir_env(false, 3, false);
    let compat = 0xfee0_1000u64;
    expect_recorded(&mut e, sid(0, 2, 0), compat, 0x41, 0x25, 0);
    let fx = e.gcmd(GCMD_CFI, 0);
    assert_eq!(fx.iec_invalidations, vec![IecInvalidation::Global]);
    assert_ne!(e.gsts() & GSTS_CFIS, 0);
    let (r, fx) = remap(&mut e, sid(0, 2, 0), compat, 0x41);
    assert_eq!(r, Ok(Msi { address: compat, data: 0x41 }));
    assert!(fx.is_empty());
    // CFI is a persistent bit: a GCMD write without it clears CFIS.
    let fx = e.gcmd(0, 0);
    assert_eq!(fx.iec_invalidations, vec![IecInvalidation::Global]);
    assert_eq!(e.gsts() & GSTS_CFIS, 0);
    assert!(remap(&mut e, sid(0, 2, 0), compat, 0x41).0.is_err());
}

#[test]
fn compatibility_format_blocked_in_x2apic_mode_even_with_cfi() {
    let mut e = ir_env(true, 3, true);
    e.w32(GCMD, GCMD_IRE | GCMD_CFI);
    assert_eq!(e.gsts(), GSTS_IRTPS | GSTS_IRES | GSTS_CFIS);
    expect_recorded(&mut e, 5, 0xfee0_0000, 0x30, 0x25, 0);
}

#[test]
fn compatibility_format_passes_when_remapping_disabled() {
    let mut e = ir_env(false, 3, false);
    let fx = e.gcmd(0, GCMD_IRE);
    assert_eq!(fx.iec_invalidations, vec![IecInvalidation::Global]);
    assert_eq!(e.gsts(), GSTS_IRTPS);
    let (r, _) = remap(&mut e, 1, 0xfee0_1000, 0x41);
    assert_eq!(r, Ok(Msi { address: 0xfee0_1000, data: 0x41 }));
}

// ---- faults ---------------------------------------------------------------

#[test]
fn every_fault_reason_recorded_with_sid_and_index() {
    let mut e = ir_env(false, 3, false); // 16 entries
    let s = sid(3, 4, 1);
    // 20h: reserved data bits, with and without SHV; outside the window.
    set_irte(&e, 2, irte_xapic(0x40, 1), 0);
    expect_recorded(&mut e, s, remappable(2, true), 0x1_0001, 0x20, 3);
    expect_recorded(&mut e, s, remappable(2, false), 0x8000_0000, 0x20, 2);
    expect_recorded(&mut e, s, 0x1_fee0_0010, 0, 0x20, 0);
    // 21h: index beyond the table, also through a subhandle.
    expect_recorded(&mut e, s, remappable(16, false), 0, 0x21, 16);
    expect_recorded(&mut e, s, remappable(10, true), 6, 0x21, 16);
    // 22h: not present.
    expect_recorded(&mut e, s, remappable(3, false), 0, 0x22, 3);
    // 23h: the table cannot be read.
    e.mem.unmap(IRT + 4 * 16, 16);
    expect_recorded(&mut e, s, remappable(4, false), 0, 0x23, 4);
    // 24h: reserved bits, posted format (IM), SVT = 11b.
    set_irte(&e, 5, irte_xapic(0x40, 1) | (1 << 13), 0);
    expect_recorded(&mut e, s, remappable(5, false), 0, 0x24, 5);
    set_irte(&e, 6, irte_xapic(0x40, 1) | (1 << 15), 0);
    expect_recorded(&mut e, s, remappable(6, false), 0, 0x24, 6);
    set_irte(&e, 7, irte_xapic(0x40, 1), 3 << 18);
    expect_recorded(&mut e, s, remappable(7, false), 0, 0x24, 7);
    set_irte(&e, 8, irte_xapic(0x40, 1), 1 << 40);
    expect_recorded(&mut e, s, remappable(8, false), 0, 0x24, 8);
    // 25h: compatibility format.
    expect_recorded(&mut e, s, 0xfee0_0000, 0, 0x25, 0);
    // 26h: source-id validation.
    set_irte(&e, 9, irte_xapic(0x40, 1), u64::from(sid(3, 4, 0)) | (1 << 18));
    expect_recorded(&mut e, s, remappable(9, false), 0, 0x26, 9);
}

#[test]
fn fpd_suppresses_only_faults_found_in_the_irte() {
    let mut e = ir_env(false, 3, false);
    let fpd = 1 << 1;
    set_irte(&e, 1, fpd, 0); // not present, FPD
    expect_silent(&mut e, 1, remappable(1, false), 0, 0x22);
    set_irte(&e, 2, irte_xapic(0x40, 1) | fpd | (1 << 30), 0);
    expect_silent(&mut e, 1, remappable(2, false), 0, 0x24);
    set_irte(&e, 3, irte_xapic(0x40, 1) | fpd, 0x0200 | (1 << 18));
    expect_silent(&mut e, 1, remappable(3, false), 0, 0x26);
    // FPD set on a good entry changes nothing else.
    assert!(remap(&mut e, 0x0200, remappable(3, false), 0).0.is_ok());
    // Faults found before an IRTE is read are always recorded.
    set_irte(&e, 4, fpd, 0);
    expect_recorded(&mut e, 1, remappable(4, true), 0x1_0000, 0x20, 4);
}

#[test]
fn faults_collapse_per_source_and_overflow() {
    let mut e = ir_env(false, 3, false);
    let (r, fx) = remap(&mut e, 7, remappable(1, false), 0);
    assert!(r.is_err());
    assert_eq!(fx.interrupts.len(), 1);
    // Same source while the record is pending: collapsed, no event.
    let (r, fx) = remap(&mut e, 7, remappable(2, false), 0);
    assert!(r.is_err() && fx.is_empty());
    assert_eq!(e.vtd.fault_record(0).unwrap().interrupt_index(), Some(1));
    // Another source: the single record is full, PFO.
    let (r, fx) = remap(&mut e, 8, remappable(2, false), 0);
    assert!(r.is_err() && fx.is_empty(), "PPF was already set: no new event");
    assert_ne!(e.fsts() & FSTS_PFO, 0);
}

#[test]
fn dma_and_interrupt_faults_share_the_records() {
    let mut e = ir_env(false, 3, false);
    expect_recorded(&mut e, 1, remappable(1, false), 0, 0x22, 1);
    // A DMA fault record afterwards carries an address, not an index.
    e.enable();
    let (r, _) = e.tr(sid(0, 1, 0), 0x5000, false);
    assert_eq!(r.unwrap_err().reason.code(), 0x1);
    let rec = e.vtd.fault_record(0).unwrap();
    assert_eq!((rec.reason_code, rec.interrupt_index()), (0x1, None));
}

#[test]
fn table_size_bounds_the_index() {
    let mut e = ir_env(false, 0, false); // 2 entries
    set_irte(&e, 1, irte_xapic(0x40, 1), 0);
    set_irte(&e, 2, irte_xapic(0x40, 1), 0);
    assert!(remap(&mut e, 1, remappable(1, false), 0).0.is_ok());
    expect_recorded(&mut e, 1, remappable(2, false), 0, 0x21, 2);
    let mut e = ir_env(false, 15, false); // 65536 entries
    assert_eq!(e.vtd.interrupt_table().entries, 1 << 16);
    set_irte(&e, 0xffff, irte_xapic(0x41, 1), 0);
    assert!(remap(&mut e, 1, remappable(0xffff, false), 0).0.is_ok());
    // handle + subhandle above 0xffff does not wrap around.
    let (r, _) = remap(&mut e, 1, remappable(0xffff, true), 1);
    assert_eq!(r.unwrap_err().index, Some(0x1_0000));
    assert_eq!(e.vtd.fault_record(0).unwrap().reason_code, 0x21);
}

#[test]
fn ire_before_sirtp_faults_every_remappable_request() {
    let mut e = Env::with(ir_cfg(false));
    let fx = e.gcmd(GCMD_IRE, 0);
    assert_eq!(fx.guest_errors.len(), 1);
    assert_eq!(e.gsts(), GSTS_IRES);
    let (r, _) = remap(&mut e, 1, remappable(0, false), 0);
    assert_eq!(r.unwrap_err().reason.code(), 0x21);
}

// ---- source-id validation -------------------------------------------------

#[test]
fn source_id_qualifier_and_bus_range() {
    let mut e = ir_env(false, 3, false);
    let target = sid(2, 5, 6);
    for (sq, ok_fns, bad_fns) in [
        (0u64, vec![6u8], vec![7u8, 2, 4]),
        (1, vec![6, 2], vec![7, 4]),
        (2, vec![6, 0, 2, 4], vec![7, 1]),
        (3, vec![0, 1, 2, 3, 4, 5, 6, 7], vec![]),
    ] {
        let index = 1 + sq;
        set_irte(&e, index, irte_xapic(0x40, 1), u64::from(target) | (sq << 16) | (1 << 18));
        for f in ok_fns {
            assert!(remap(&mut e, sid(2, 5, f), remappable(index as u32, false), 0).0.is_ok(), "SQ={sq} fn {f}");
        }
        for f in bad_fns {
            expect_recorded(&mut e, sid(2, 5, f), remappable(index as u32, false), 0, 0x26, index as u16);
        }
        expect_recorded(&mut e, sid(2, 4, 6), remappable(index as u32, false), 0, 0x26, index as u16);
    }
    // SVT = 10b: bus range [start = SID[7:0], end = SID[15:8]], SQ ignored.
    set_irte(&e, 9, irte_xapic(0x40, 1), 0x0a03 | (3 << 16) | (2 << 18));
    for bus in [3u8, 7, 10] {
        assert!(remap(&mut e, sid(bus, 31, 7), remappable(9, false), 0).0.is_ok(), "bus {bus}");
    }
    expect_recorded(&mut e, sid(2, 0, 0), remappable(9, false), 0, 0x26, 9);
    expect_recorded(&mut e, sid(11, 0, 0), remappable(9, false), 0, 0x26, 9);
    // SVT = 00b: no validation.
    set_irte(&e, 10, irte_xapic(0x40, 1), 0x1234);
    assert!(remap(&mut e, 0xffff, remappable(10, false), 0).0.is_ok());
}

// ---- global commands ------------------------------------------------------

#[test]
fn sirtp_latches_irta_and_is_one_shot() {
    let mut e = Env::with(ir_cfg(true));
    e.w64(IRTA, 0x1234_5000 | EIME | 5);
    assert_eq!(e.vtd.interrupt_table().entries, 0, "not latched before SIRTP");
    let fx = e.w32(GCMD, GCMD_SIRTP);
    assert_eq!(fx.iec_invalidations, vec![IecInvalidation::Global]);
    assert!(fx.guest_errors.is_empty());
    assert_eq!(e.gsts(), GSTS_IRTPS);
    assert_eq!(e.rd32(GCMD), 0);
    let t = e.vtd.interrupt_table();
    assert_eq!((t.base, t.entries, t.eime), (0x1234_5000, 64, true));
    // IRTA alone does not switch; SIRTP again does.
    e.w64(IRTA, 0x9000);
    assert_eq!(e.vtd.interrupt_table().base, 0x1234_5000);
    e.w32(GCMD, GCMD_SIRTP);
    let t = e.vtd.interrupt_table();
    assert_eq!((t.base, t.entries, t.eime), (0x9000, 2, false));
    // The address is limited to the host address width.
    let mut e = Env::with(Config { aw_bits: 39, ..ir_cfg(false) });
    e.w64(IRTA, (1 << 45) | 0x7000);
    e.w32(GCMD, GCMD_SIRTP);
    assert_eq!(e.vtd.interrupt_table().base, 0x7000);
}

#[test]
fn ire_is_persistent_and_independent_of_te_and_qie() {
    let mut e = ir_env(false, 3, false);
    assert!(e.vtd.interrupt_remapping_enabled());
    // Linux-style writes keep IRE set: no change, no notification.
    let fx = e.gcmd(GCMD_TE, 0);
    assert!(fx.iec_invalidations.is_empty());
    assert_eq!(e.gsts(), GSTS_IRTPS | GSTS_IRES | GSTS_TES);
    e.enable_qi(0);
    assert_eq!(e.gsts() & GSTS_IRES, GSTS_IRES);
    // A write without IRE disables interrupt remapping.
    e.w32(GCMD, GCMD_TE | GCMD_QIE);
    assert!(!e.vtd.interrupt_remapping_enabled());
    assert_eq!(e.gsts(), GSTS_IRTPS | GSTS_TES | GSTS_QIES);
}

#[test]
fn ir_commands_ignored_without_intremap() {
    let mut e = Env::new();
    e.w64(IRTA, IRT | 3);
    let fx = e.w32(GCMD, GCMD_SIRTP | GCMD_IRE | GCMD_CFI);
    assert_eq!(fx.guest_errors.len(), 3);
    assert!(fx.iec_invalidations.is_empty());
    assert_eq!(e.gsts(), 0);
    assert!(!e.vtd.interrupt_remapping_enabled());
    assert_eq!(e.vtd.ecap() & (1 << 3), 0);
}

// ---- interrupt entry cache invalidation -----------------------------------

#[test]
fn iec_descriptors_accepted_and_reported() {
    let mut e = ir_env(false, 3, false);
    e.enable_qi(0);
    let st = e.alloc_page();
    let fx = e.submit(&[
        d_iec_global(),
        (0x4 | 0x10 | (2 << 27) | (0x24 << 32), 0),
        (0x4 | 0x10 | (0xffff << 32), 0),
        d_wait(true, false, false, 9, st),
    ]);
    assert_eq!(
        fx.iec_invalidations,
        vec![
            IecInvalidation::Global,
            IecInvalidation::Index { index: 0x24, mask: 2 },
            IecInvalidation::Index { index: 0xffff, mask: 0 },
        ]
    );
    assert!(fx.guest_errors.is_empty() && fx.interrupts.is_empty(), "{fx:?}");
    assert_eq!(e.mem.r32(st), 9);
    assert_eq!(e.iq_head(), 4);
    // Interrupt remapping need not be enabled.
    e.gcmd(0, GCMD_IRE);
    let fx = e.submit(&[d_iec_global()]);
    assert_eq!(fx.iec_invalidations, vec![IecInvalidation::Global]);
}

#[test]
fn iec_descriptor_reserved_fields_and_mask_limit() {
    for (lo, hi) in [
        (0x4u64 | (1 << 5), 0u64),
        (0x4 | (1 << 20), 0),
        (0x4 | (1 << 50), 0),
        (0x4, 1),
        (0x4 | 0x10 | (16 << 27), 0),
    ] {
        let mut e = ir_env(false, 3, false);
        e.enable_qi(0);
        let fx = e.submit(&[(lo, hi)]);
        assert_eq!(fx.guest_errors.len(), 1, "lo={lo:#x} hi={hi:#x}");
        assert!(fx.iec_invalidations.is_empty());
        assert_ne!(e.fsts() & FSTS_IQE, 0);
        assert_eq!(e.iq_head(), 0);
    }
}

#[test]
fn iec_descriptor_refused_without_intremap() {
    let mut e = Env::new();
    e.enable_qi(0);
    let fx = e.submit(&[d_iec_global()]);
    assert_eq!(fx.guest_errors.len(), 1);
    assert!(fx.iec_invalidations.is_empty());
    assert_ne!(e.fsts() & FSTS_IQE, 0);
}

#[test]
fn table_changes_take_effect_without_invalidation() {
    // No interrupt entry cache: an IRTE update is seen at once.
    let mut e = ir_env(false, 3, false);
    set_irte(&e, 1, irte_xapic(0x40, 1), 0);
    assert_eq!(remap(&mut e, 1, remappable(1, false), 0).0.unwrap().data & 0xff, 0x40);
    set_irte(&e, 1, irte_xapic(0x41, 1), 0);
    assert_eq!(remap(&mut e, 1, remappable(1, false), 0).0.unwrap().data & 0xff, 0x41);
}

// ---- reset and migration --------------------------------------------------

#[test]
fn reset_disables_interrupt_remapping() {
    let mut e = ir_env(true, 3, true);
    e.w32(GCMD, GCMD_IRE | GCMD_CFI);
    e.vtd.reset();
    assert_eq!(e.gsts(), 0);
    assert!(!e.vtd.interrupt_remapping_enabled());
    assert_eq!(e.vtd.interrupt_table(), vtd_core::IrTable::default());
    assert_eq!(e.rd64(IRTA), 0);
    let (r, _) = remap(&mut e, 1, remappable(1, false), 0);
    assert_eq!(r, Ok(Msi { address: remappable(1, false), data: 0 }));
}

#[test]
fn save_load_roundtrip_keeps_ir_state() {
    let mut e = ir_env(true, 4, true);
    e.w32(GCMD, GCMD_IRE | GCMD_CFI);
    let st = e.vtd.save_state();
    assert!(st.intr_enabled && st.intr_eime);
    assert_eq!((st.intr_root, st.intr_size), (IRT, 32));
    let mut v = Vtd::new(ir_cfg(true));
    v.load_state(&st).unwrap();
    assert_eq!(v.save_state(), st);
    assert!(v.interrupt_remapping_enabled());
    assert_eq!(v.read_reg(GSTS, 4) as u32, GSTS_IRTPS | GSTS_IRES | GSTS_CFIS);
    set_irte(&e, 3, 1 | (0x50 << 16) | (0x300 << 32), 0);
    let req = InterruptRequest { sid: 1, address: remappable(3, false), data: 0 };
    let (r, _) = v.remap_interrupt(&req, &e.mem);
    assert_eq!(r, Ok(Msi { address: (0x300 << 32) | 0xfee0_0000, data: 0x4050 }), "x2APIC dest 0x300");

    // State of an IR unit does not load into one without IR / EIM.
    assert!(Vtd::new(Config::default()).load_state(&st).is_err());
    assert!(Vtd::new(ir_cfg(false)).load_state(&st).is_err());
    for bad_size in [1u32, 3, 1 << 17] {
        let mut bad = st.clone();
        bad.intr_size = bad_size;
        assert!(v.load_state(&bad).is_err(), "size {bad_size}");
    }
    let mut bad = st.clone();
    bad.intr_root = IRT | 0x10;
    assert!(v.load_state(&bad).is_err());
    let mut bad = st;
    bad.intr_root = 1 << 50;
    assert!(v.load_state(&bad).is_err());
}

#[test]
fn fault_record_decoding_of_ir_faults() {
    let rec = FaultRecord::from_raw(0x1234 << 48, (1 << 63) | (0x26 << 32) | 0x0310);
    assert_eq!((rec.interrupt_index(), rec.sid, rec.reason_code), (Some(0x1234), 0x310, 0x26));
}

// ---- interrupt routes (KVM's MSI routes) ------------------------------------

#[test]
fn routes_remap_without_recording_faults() {
    let mut e = ir_env(false, 3, false);
    let target = sid(2, 5, 6);
    set_irte(&e, 1, irte_xapic(0x51, 3), u64::from(target) | (1 << 18));
    let fsts = e.fsts();
    // As the interrupt window: the same message for the right requester.
    let want = Ok(Msi { address: 0xfee0_3000, data: 0x4051 });
    assert_eq!(e.vtd.remap_interrupt_route(Some(target), remappable(1, false), 0, &e.mem), want);
    assert_eq!(remap(&mut e, target, remappable(1, false), 0).0, want);
    // An unknown requester is not validated; a wrong one is refused.
    assert_eq!(e.vtd.remap_interrupt_route(None, remappable(1, false), 0, &e.mem), want);
    let err = e.vtd.remap_interrupt_route(Some(sid(2, 5, 7)), remappable(1, false), 0, &e.mem);
    assert_eq!(err.unwrap_err().reason.code(), 0x26);
    // Not present, beyond the table, compatibility format without CFI:
    // refused, and nothing recorded.
    for (address, code) in [(remappable(2, false), 0x22), (remappable(99, false), 0x21), (0xfee0_0000, 0x25)] {
        let err = e.vtd.remap_interrupt_route(Some(target), address, 0, &e.mem).unwrap_err();
        assert_eq!(err.reason.code(), code);
    }
    assert_eq!(e.fsts(), fsts);
    assert!(!e.vtd.fault_record(0).is_some_and(|r| r.pending));
    // Remapping disabled: the message as it is.
    e.gcmd(0, GCMD_IRE);
    assert_eq!(
        e.vtd.remap_interrupt_route(None, 0xfee0_1000, 0x33, &e.mem),
        Ok(Msi { address: 0xfee0_1000, data: 0x33 })
    );
}

// ---- the C device's rules (the default) -------------------------------------

/// Remap a request whose requester id is implied by the platform (the I/O
/// APIC's, a DMA write into the interrupt window), not carried.
fn remap_implied(e: &mut Env, sid: u16, address: u64, data: u32) -> (Result<Msi, InterruptFault>, Effects) {
    let req = InterruptRequest { sid, address, data };
    e.vtd.remap_interrupt_from(&req, false, &e.mem)
}

const IOAPIC_SID: u16 = 0xff00;

#[test]
fn c_rules_implied_requester_is_not_validated() {
    // An I/O APIC pin's IRTE that names the PCI function which raised the
    // INTx line (SVT = 01b), with FPD: delivered by default, as by the C
    // device; the function's own MSI through the same entry too.
    let function = sid(0, 3, 0);
    let hi = u64::from(function) | (1 << 18);
    let mut e = c_rules_env(false, 3, false);
    set_irte(&e, 1, irte_xapic(0x61, 0) | 2, hi);
    let want = Ok(Msi { address: 0xfee0_0000, data: 0x4061 });
    assert_eq!(remap_implied(&mut e, IOAPIC_SID, remappable(1, false), 0x61).0, want);
    assert_eq!(remap(&mut e, function, remappable(1, false), 0).0, want);
    // An explicit requester that does not match is still refused, silently
    // with FPD.
    expect_silent(&mut e, sid(0, 4, 0), remappable(1, false), 0, 0x26);
    // Even the reserved SVT encoding: nothing is validated.
    set_irte(&e, 2, irte_xapic(0x62, 0), 3 << 18);
    assert!(remap_implied(&mut e, IOAPIC_SID, remappable(2, false), 0).0.is_ok());

    // The architecture's rules validate the implied id: blocked, silently
    // with FPD, recorded as 26h with the I/O APIC's id without it.
    let mut e = ir_env(false, 3, false);
    set_irte(&e, 1, irte_xapic(0x61, 0) | 2, hi);
    let (r, fx) = remap_implied(&mut e, IOAPIC_SID, remappable(1, false), 0x61);
    assert_eq!(r.unwrap_err().reason.code(), 0x26);
    assert!(fx.is_empty() && !e.vtd.fault_record(0).unwrap().pending);
    assert_eq!(remap(&mut e, function, remappable(1, false), 0).0, want);
    set_irte(&e, 1, irte_xapic(0x61, 0), hi);
    let (r, fx) = remap_implied(&mut e, IOAPIC_SID, remappable(1, false), 0x61);
    assert_eq!((r.unwrap_err().reason.code(), fx.interrupts), (0x26, vec![fault_event()]));
    let rec = e.vtd.fault_record(0).unwrap();
    assert_eq!((rec.reason_code, rec.sid, rec.interrupt_index()), (0x26, IOAPIC_SID, Some(1)));
    // An IRTE that names the I/O APIC passes.
    set_irte(&e, 2, irte_xapic(0x62, 0), u64::from(IOAPIC_SID) | (1 << 18));
    assert!(remap_implied(&mut e, IOAPIC_SID, remappable(2, false), 0).0.is_ok());
}

#[test]
fn c_rules_compatibility_format_passes_through() {
    for (eim, eime) in [(false, false), (true, true)] {
        let mut e = c_rules_env(eim, 3, eime);
        assert_eq!(e.gsts() & GSTS_CFIS, 0);
        let (r, fx) = remap(&mut e, sid(0, 2, 0), 0xfee0_1000, 0x41);
        assert_eq!(r, Ok(Msi { address: 0xfee0_1000, data: 0x41 }), "eime {eime}");
        assert!(fx.is_empty());
    }
}

#[test]
fn c_rules_request_data_and_index() {
    let mut e = c_rules_env(false, 15, false);
    set_irte(&e, 1, irte_xapic(0x31, 1), 0);
    // Data bits 31:16 without SHV are not looked at (an I/O APIC's data).
    let (r, _) = remap(&mut e, 1, remappable(1, false), 0xabcd_0031);
    assert_eq!(r, Ok(Msi { address: 0xfee0_1000, data: 0x4031 }));
    // The index wraps at 16 bits: handle 0xffff + subhandle 2 is entry 1.
    let (r, _) = remap(&mut e, 1, remappable(0xffff, true), 2);
    assert_eq!(r, Ok(Msi { address: 0xfee0_1000, data: 0x4031 }));
    // With SHV, reserved data bits are found after the IRTE (a missing
    // entry is reported first) and recorded with index 0.
    expect_recorded(&mut e, 1, remappable(1, true), 0x1_0000, 0x20, 0);
    expect_recorded(&mut e, 1, remappable(9, true), 0x1_0000, 0x22, 9);
    // The architecture's rules: reserved whatever SHV says, index kept.
    let mut e = ir_env(false, 15, false);
    set_irte(&e, 1, irte_xapic(0x31, 1), 0);
    expect_recorded(&mut e, 1, remappable(1, false), 0xabcd_0031, 0x20, 1);
    expect_recorded(&mut e, 1, remappable(9, true), 0x1_0000, 0x20, 9);
}

#[test]
fn c_rules_irte_reserved_fields() {
    let mut e = c_rules_env(true, 3, false);
    // IM (posted format) and xAPIC-mode destination bits 39:32 / 63:48
    // are not reserved for the C device: the entry is used as remapped
    // format with the APIC id in bits 47:40.
    set_irte(&e, 1, irte_xapic(0x41, 2) | (1 << 15), 0);
    set_irte(&e, 2, irte_xapic(0x42, 2) | (0x0001_0001 << 32), 0);
    for (i, v) in [(1u32, 0x41), (2, 0x42)] {
        let (r, _) = remap(&mut e, 1, remappable(i, false), 0);
        assert_eq!(r, Ok(Msi { address: 0xfee0_2000, data: 0x4000 | v }), "entry {i}");
    }
    // The reserved SVT encoding is a source-id failure (26h), as there.
    set_irte(&e, 3, irte_xapic(0x43, 2), 3 << 18);
    expect_recorded(&mut e, 1, remappable(3, false), 0, 0x26, 3);
    // Reserved bits both rule sets share.
    set_irte(&e, 3, irte_xapic(0x43, 2) | (1 << 12), 0);
    expect_recorded(&mut e, 1, remappable(3, false), 0, 0x24, 3);
    // Strict: each of the first three is 24h.
    let mut e = ir_env(true, 3, false);
    set_irte(&e, 1, irte_xapic(0x41, 2) | (1 << 15), 0);
    set_irte(&e, 2, irte_xapic(0x42, 2) | (0x0001_0001 << 32), 0);
    set_irte(&e, 3, irte_xapic(0x43, 2), 3 << 18);
    for i in 1..=3u16 {
        expect_recorded(&mut e, 1, remappable(u32::from(i), false), 0, 0x24, i);
    }
}

#[test]
fn c_rules_eime_without_eim_is_honoured() {
    // As the C device: IRTA.EIME selects 32-bit destinations even without
    // ECAP.EIM (a guest error is still logged); strict rules treat it as 0.
    // (Strict: xAPIC mode, where destination bit 33 is reserved.)
    for (strict, want) in [(false, Ok(0xfee0_2000u64)), (true, Err(0x24))] {
        let mut e = Env::with(Config { strict_ir: strict, ..ir_cfg(false) });
        e.w64(IRTA, IRT | EIME | 3);
        let fx = e.gcmd(GCMD_SIRTP, 0);
        assert_eq!(fx.guest_errors.len(), 1);
        assert_eq!(e.vtd.interrupt_table().eime, !strict);
        e.gcmd(GCMD_IRE, 0);
        set_irte(&e, 1, 1 | (0x20 << 16) | (2 << 32), 0);
        let (r, _) = remap(&mut e, 1, remappable(1, false), 0);
        let got = r.map(|m| (m.address, m.data)).map_err(|f| f.reason.code());
        assert_eq!(got, want.map(|a| (a, 0x4020)), "strict {strict}");
        // Migration carries the latched mode; only strict rules refuse it
        // without eim.
        let mut st = e.vtd.save_state();
        st.intr_eime = true;
        let mut other = Vtd::new(Config { strict_ir: strict, ..ir_cfg(false) });
        assert_eq!(other.load_state(&st).is_err(), strict);
    }
}
