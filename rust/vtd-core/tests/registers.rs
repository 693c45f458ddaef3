//! Register window: reset values, access masks, access sizes.

mod common;
use common::*;
use vtd_core::registers::*;
use vtd_core::{Config, Vtd};

const CAP_48: u64 = 0x80d2_008c_222f_0606;
const ECAP_DEFAULT: u64 = 0xf42;

fn reset_value(r: Reg) -> u64 {
    match r {
        Reg::Ver => 0x10,
        Reg::Cap => CAP_48,
        Reg::Ecap => ECAP_DEFAULT,
        Reg::Fectl | Reg::Iectl => 0x8000_0000,
        _ => 0,
    }
}

#[test]
fn reset_values_of_every_register() {
    let mut e = Env::new();
    for r in Reg::all() {
        let off = r.offset();
        let want = reset_value(r);
        match r.width() {
            Width::W32 => assert_eq!(u64::from(e.rd32(off)), want, "{}", r.name()),
            Width::W64 => {
                assert_eq!(e.rd64(off), want, "{}", r.name());
                assert_eq!(u64::from(e.rd32(off)), want & 0xffff_ffff, "{} lo", r.name());
                assert_eq!(u64::from(e.rd32(off + 4)), want >> 32, "{} hi", r.name());
            }
        }
    }
    assert_eq!(Vtd::MMIO_SIZE, 0x230);
}

#[test]
fn reset_values_aw39_cap() {
    let mut e = Env::with(Config { aw_bits: 39, ..Config::default() });
    assert_eq!(e.rd64(CAP), 0x80d2_008c_2226_0206);
    assert_eq!(e.rd64(ECAP), ECAP_DEFAULT);
}

#[test]
fn reset_restores_whole_window_after_writes() {
    let mut e = Env::new();
    let fresh: Vec<u32> = (0..Vtd::MMIO_SIZE / 4).map(|i| e.rd32(i * 4)).collect();
    e.enable();
    e.enable_qi(0);
    for off in (0..Vtd::MMIO_SIZE).step_by(4) {
        if off != GCMD && off != IQT && off != CCMD + 4 && off != IOTLB + 4 {
            e.w32(off, 0xffff_ffff);
        }
    }
    e.vtd.reset();
    let after: Vec<u32> = (0..Vtd::MMIO_SIZE / 4).map(|i| e.rd32(i * 4)).collect();
    assert_eq!(fresh, after);
    assert!(!e.vtd.translation_enabled());
    assert!(!e.vtd.queue().enabled);
    assert_eq!(e.vtd.root_table_address(), 0);
}

#[test]
fn rw_masks_match_c_device() {
    let mut e = Env::new();
    // (offset, width, value read back after writing all ones)
    let cases: [(u64, u32, u64); 16] = [
        (RTADDR, 8, 0xffff_ffff_ffff_fc00),
        (FEDATA, 4, 0xffff),
        (FEADDR, 4, 0xffff_fffc),
        (FEUADDR, 4, 0),
        (IEDATA, 4, 0xffff_ffff),
        (IEADDR, 4, 0xffff_fffc),
        (IEUADDR, 4, 0),
        (IRTA, 8, 0xffff_ffff_ffff_f80f),
        (IQA, 8, 0xffff_ffff_ffff_f007),
        (PMEN, 4, 0),
        (PLMBASE, 4, 0),
        (PLMLIMIT, 4, 0),
        (PHMBASE, 8, 0),
        (PHMLIMIT, 8, 0),
        (AFLOG, 8, 0),
        (IVA, 8, 0),
    ];
    for (off, size, want) in cases {
        e.wr(off, size, u64::MAX);
        assert_eq!(e.vtd.read_reg(off, size), want, "offset {off:#x}");
    }
    let rf = e.vtd.registers();
    assert_eq!(rf.wmask(GCMD, 4), 0xff80_0000);
    assert_eq!(rf.wmask(CCMD, 8), 0xe000_0003_ffff_ffff);
    assert_eq!(rf.womask(CCMD, 8), 0x3_ffff_0000);
    assert_eq!(rf.wmask(IOTLB, 8), 0xb003_ffff_0000_0000);
    assert_eq!(rf.wmask(IQT, 8), 0x7fff0);
    assert_eq!(rf.w1cmask(FSTS, 4), 0x71);
    assert_eq!(rf.w1cmask(ICS, 4), 0x1);
    assert_eq!(rf.wmask(FECTL, 4), 0x8000_0000);
    assert_eq!(rf.wmask(IECTL, 4), 0x8000_0000);
    assert_eq!(rf.w1cmask(FRCD_REG_OFFSET + 8, 8), FRCD_F);
    assert_eq!(rf.wmask(FRCD_REG_OFFSET, 8), 0);
}

#[test]
fn write_only_fields_read_as_zero() {
    let mut e = Env::new();
    e.w32(GCMD, GCMD_SRTP);
    assert_eq!(e.rd32(GCMD), 0);
    e.w64(IVA, 0x1234_5000 | 0x45);
    assert_eq!(e.rd64(IVA), 0);
    // CCMD: SID and FM are write-only, DID reads back.
    e.w64(CCMD, (3 << 32) | (0xabcd << 16) | 0x42);
    assert_eq!(e.rd64(CCMD), 0x42);
}

#[test]
fn read_only_registers_ignore_writes() {
    let mut e = Env::new();
    for off in [VER, CAP, ECAP, GSTS, IQH, FRCD_REG_OFFSET, FRCD_REG_OFFSET + 8] {
        let before = e.rd64(off & !7);
        let fx = e.wr(off, 4, 0xffff_ffff);
        assert!(fx.is_empty(), "RO write is not a guest error: {fx:?}");
        assert_eq!(e.rd64(off & !7), before, "offset {off:#x}");
    }
    e.w64(CAP, 0);
    assert_eq!(e.rd64(CAP), CAP_48);
}

#[test]
fn unknown_offsets_read_zero_ignore_writes_and_log() {
    let mut e = Env::new();
    for off in [0x4u64, 0x30, 0x48, 0x4c, 0x50, 0x60, 0x98, 0xb0, 0xc0, 0xe0, 0x100, 0x200, 0x21c] {
        let fx = e.wr(off, 4, 0xffff_ffff);
        assert_eq!(fx.guest_errors.len(), 1, "offset {off:#x}");
        let (v, fx) = e.vtd.read_reg_effects(off, 4);
        assert_eq!(v, 0);
        assert_eq!(fx.guest_errors.len(), 1);
    }
}

#[test]
fn invalid_access_sizes_and_alignment_are_guest_errors() {
    let mut e = Env::new();
    for (off, size) in [
        (FECTL, 1u32),
        (FECTL, 2),
        (FECTL, 16),
        (FECTL, 0),
        (FECTL + 1, 4),
        (GSTS, 8),
        (FRCD_REG_OFFSET + 4, 8),
        (Vtd::MMIO_SIZE, 4),
        (Vtd::MMIO_SIZE - 4, 8),
        (u64::MAX - 3, 4),
        (!7, 8),
    ] {
        let fx = e.wr(off, size, u64::MAX);
        assert_eq!(fx.guest_errors.len(), 1, "write {off:#x}/{size}");
        let (v, fx) = e.vtd.read_reg_effects(off, size);
        assert_eq!((v, fx.guest_errors.len()), (0, 1), "read {off:#x}/{size}");
    }
    assert_eq!(e.rd32(FECTL), 0x8000_0000);
}

#[test]
fn halves_of_64bit_registers_via_4byte_accesses() {
    let mut e = Env::new();
    e.w32(RTADDR, 0x1234_5fff);
    e.w32(RTADDR + 4, 0xabcd);
    assert_eq!(e.rd64(RTADDR), 0xabcd_1234_5c00);
    assert_eq!(e.rd32(RTADDR), 0x1234_5c00);
    assert_eq!(e.rd32(RTADDR + 4), 0xabcd);
    e.w32(IRTA + 4, 0x1);
    e.w32(IRTA, 0x2000_000f);
    assert_eq!(e.rd64(IRTA), 0x1_2000_000f);
    assert_eq!(e.rd32(CAP + 4), (CAP_48 >> 32) as u32);
    assert_eq!(e.rd32(ECAP), ECAP_DEFAULT as u32);
}

#[test]
fn eight_byte_access_to_32bit_register_pairs() {
    let mut e = Env::new();
    // Some guests (Xen) program FEADDR with a 64-bit write; FEUADDR is RsvdZ.
    let fx = e.w64(FEADDR, 0xdead_beef_fee0_0004);
    assert!(fx.is_empty());
    assert_eq!(e.rd32(FEADDR), 0xfee0_0004);
    assert_eq!(e.rd32(FEUADDR), 0);
    e.w32(FEDATA, 0x41);
    assert_eq!(e.rd64(FECTL), (0x41 << 32) | 0x8000_0000);
    assert_eq!(e.rd64(GCMD), 0, "GCMD reads 0, GSTS 0 after reset");
}

#[test]
fn fsts_ppf_not_writable_and_rw1c_bits_clear_only() {
    let mut e = Env::new();
    e.w32(FSTS, 0xffff_ffff);
    assert_eq!(e.fsts(), 0);
}

#[test]
fn ccmd_low_half_write_does_not_trigger_high_half_does() {
    let mut e = Env::new();
    e.w32(CCMD, 0x5);
    assert_eq!(e.rd64(CCMD), 0x5);
    e.w32(CCMD + 4, ((CCMD_ICC | (1 << 61)) >> 32) as u32);
    // Global invalidation done: ICC clear, CAIG = global.
    assert_eq!(e.rd64(CCMD) >> 59, 0b0101);
}

#[test]
fn iotlb_low_half_write_does_not_trigger_high_half_does() {
    let mut e = Env::new();
    e.w32(IOTLB, 0);
    assert_eq!(e.rd64(IOTLB), 0);
    e.w32(IOTLB + 4, ((IOTLB_IVT | (1 << 60) | (7 << 32)) >> 32) as u32);
    let v = e.rd64(IOTLB);
    assert_eq!(v & IOTLB_IVT, 0);
    assert_eq!((v >> 57) & 3, 1, "IAIG global");
    assert_eq!((v >> 32) & 0xffff, 7);
}

#[test]
fn save_and_load_state_roundtrip() {
    let mut e = Env::new();
    e.enable();
    e.enable_qi(1);
    e.w32(FEDATA, 0x55);
    let st = e.vtd.save_state();
    let mut v2 = Vtd::new(Config::default());
    v2.load_state(&st).unwrap();
    assert_eq!(v2.save_state(), st);
    assert!(v2.translation_enabled());
    assert_eq!(v2.read_reg(FEDATA, 4), 0x55);
    let mut v39 = Vtd::new(Config { aw_bits: 39, ..Config::default() });
    assert!(v39.load_state(&st).unwrap_err().contains("CAP"));
    let mut bad = st.clone();
    bad.queue.head = bad.queue.size;
    assert!(v2.load_state(&bad).is_err());
    let mut bad = st;
    bad.next_frcd_reg = FRCD_REG_NR;
    assert!(v2.load_state(&bad).is_err());
}
