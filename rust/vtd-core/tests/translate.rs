//! Root/context lookup, second-stage walks and their fault reasons.

mod common;
use common::*;
use vtd_core::{Config, FaultReason, Perm};

const S: u16 = 0x0108; // 00:01.0

fn env4() -> (Env, u64) {
    let mut e = Env::new();
    let pgd = e.setup_device(S, 5, 4);
    e.enable();
    (e, pgd)
}

#[test]
fn translation_disabled_is_identity_4k_read_write() {
    let mut e = Env::new();
    let (t, fx) = e.tr(S, 0x1234_5678, true);
    let t = t.unwrap();
    assert!(fx.is_empty());
    assert_eq!((t.iova, t.phys, t.page_mask), (0x1234_5000, 0x1234_5000, 0xfff));
    assert_eq!(t.perm, Perm::RW);
}

#[test]
fn four_level_walk_4k_page() {
    let (mut e, pgd) = env4();
    e.map(pgd, 4, 0x7f_1234_5000, 0x9876_5000, 1, RW);
    let t = e.tr(S, 0x7f_1234_5abc, true).0.unwrap();
    assert_eq!((t.iova, t.phys, t.page_mask), (0x7f_1234_5000, 0x9876_5000, 0xfff));
    assert_eq!(t.domain_id, 5);
    assert_eq!(t.output(0x7f_1234_5abc), 0x9876_5abc);
}

#[test]
fn three_level_walk_4k_page() {
    let mut e = Env::new();
    let pgd = e.setup_device(S, 5, 3);
    e.enable();
    e.map(pgd, 3, 0x40_1234_5000, 0x3000, 1, RW);
    assert_eq!(e.phys(S, 0x40_1234_5010), 0x3010);
}

#[test]
fn aw39_config_supports_only_three_levels() {
    let mut e = Env::with(Config { aw_bits: 39, ..Config::default() });
    let pgd = e.setup_device(S, 5, 3);
    e.enable();
    e.map(pgd, 3, 0x5000, 0x6000, 1, RW);
    assert_eq!(e.phys(S, 0x5000), 0x6000);
    let s2 = 0x0110;
    e.setup_device(s2, 6, 4);
    assert_eq!(e.fault_code(s2, 0x5000, false), 0x3);
}

#[test]
fn two_megabyte_superpage() {
    let (mut e, pgd) = env4();
    e.map(pgd, 4, 0x4060_0000, 0x1_0000_0000 + (6 << 20), 2, RW);
    let t = e.tr(S, 0x4060_0000 + 0x1_2345, false).0.unwrap();
    assert_eq!((t.iova, t.phys, t.page_mask), (0x4060_0000, 0x1_0060_0000, 0x1f_ffff));
    assert_eq!(t.output(0x4061_2345), 0x1_0061_2345);
}

#[test]
fn one_gigabyte_superpage() {
    let (mut e, pgd) = env4();
    e.map(pgd, 4, 0x80_4000_0000, 0x2_4000_0000, 3, R);
    let t = e.tr(S, 0x80_7fff_fff8, false).0.unwrap();
    assert_eq!((t.iova, t.phys, t.page_mask), (0x80_4000_0000, 0x2_4000_0000, 0x3fff_ffff));
    assert_eq!(t.perm, Perm { read: true, write: false });
}

#[test]
fn one_gigabyte_superpage_in_three_level_table() {
    let mut e = Env::new();
    let pgd = e.setup_device(S, 5, 3);
    e.enable();
    e.map(pgd, 3, 0x4000_0000, 0x1_4000_0000, 3, RW);
    assert_eq!(e.phys(S, 0x4000_1000), 0x1_4000_1000);
}

#[test]
fn read_only_page_write_faults_with_reason_5() {
    let (mut e, pgd) = env4();
    e.map(pgd, 4, 0x1000, 0x2000, 1, R);
    let t = e.tr(S, 0x1000, false).0.unwrap();
    assert_eq!(t.perm, Perm { read: true, write: false });
    let f = e.tr(S, 0x1008, true).0.unwrap_err();
    assert_eq!((f.reason, f.reason.code(), f.sid, f.address, f.write), (FaultReason::Write, 5, S, 0x1008, true));
}

#[test]
fn write_only_page_read_faults_with_reason_6() {
    let (mut e, pgd) = env4();
    e.map(pgd, 4, 0x1000, 0x2000, 1, W);
    assert_eq!(e.fault_code(S, 0x1000, false), 0x6);
    let t = e.tr(S, 0x1000, true).0.unwrap();
    assert_eq!(t.perm, Perm { read: false, write: true });
}

#[test]
fn read_only_intermediate_entry_limits_permissions() {
    let (mut e, pgd) = env4();
    e.map(pgd, 4, 0x1000, 0x2000, 1, RW);
    let l3 = e.pte_addr(pgd, 4, 0x1000, 3);
    let v = e.mem.r64(l3);
    e.mem.w64(l3, v & !W);
    assert_eq!(e.fault_code(S, 0x1000, true), 0x5);
    assert_eq!(e.tr(S, 0x1000, false).0.unwrap().perm, Perm { read: true, write: false });
}

#[test]
fn root_entry_not_present_reason_1() {
    let mut e = Env::new();
    e.enable();
    assert_eq!(e.fault_code(S, 0x1000, false), 0x1);
}

#[test]
fn context_entry_not_present_reason_2() {
    let mut e = Env::new();
    e.set_context(S + 1, 0, 0); // creates the bus's context table
    e.enable();
    assert_eq!(e.fault_code(S, 0x1000, false), 0x2);
}

#[test]
fn pte_not_present_reason_6_for_read_5_for_write() {
    let (mut e, pgd) = env4();
    e.map(pgd, 4, 0x1000, 0x2000, 1, RW);
    assert_eq!(e.fault_code(S, 0x3000, false), 0x6, "leaf not present");
    assert_eq!(e.fault_code(S, 0x3000, true), 0x5);
    assert_eq!(e.fault_code(S, 0x40_0000_0000, false), 0x6, "top level not present");
    assert_eq!(e.fault_code(S, 0x4000_0000, true), 0x5, "mid level not present");
}

#[test]
fn root_table_unreadable_reason_8() {
    let mut e = Env::new();
    e.enable();
    e.mem.unmap(ROOT, 0x1000);
    assert_eq!(e.fault_code(S, 0x1000, false), 0x8);
}

#[test]
fn context_table_unreadable_reason_9() {
    let (mut e, _) = env4();
    let t = e.context_table(1);
    e.mem.unmap(t, 0x1000);
    assert_eq!(e.fault_code(0x0100, 0x1000, false), 0x9);
}

#[test]
fn slptptr_table_unreadable_reason_3() {
    let (mut e, pgd) = env4();
    e.mem.unmap(pgd, 0x1000);
    assert_eq!(e.fault_code(S, 0x1000, false), 0x3);
}

#[test]
fn lower_level_table_unreadable_reason_7() {
    let (mut e, pgd) = env4();
    e.map(pgd, 4, 0x1000, 0x2000, 1, RW);
    // Point the PML4 entry at an unmapped table.
    let l4 = e.pte_addr(pgd, 4, 0x1000, 4);
    e.mem.w64(l4, 0x7700_0000 | RW);
    e.mem.unmap(0x7700_0000, 0x1000);
    assert_eq!(e.fault_code(S, 0x1000, false), 0x7);
}

#[test]
fn root_entry_reserved_bits_reason_a() {
    for (lo_bits, hi) in [(1u64 << 1, 0u64), (0x800, 0), (1 << 48, 0), (0, 1)] {
        let (mut e, _) = env4();
        let re_lo = e.mem.r64(ROOT + u64::from(S >> 8) * 16);
        e.set_root_entry((S >> 8) as u8, re_lo | lo_bits, hi);
        assert_eq!(e.fault_code(S, 0x1000, false), 0xa, "lo {lo_bits:#x} hi {hi:#x}");
    }
}

#[test]
fn context_entry_reserved_bits_reason_b() {
    let cases: [(u64, u64); 6] = [(0x10, 0), (0x800, 0), (1 << 48, 0), (0, 1 << 7), (0, 1 << 24), (0, 1 << 63)];
    for (lo_bits, hi_bits) in cases {
        let mut e = Env::new();
        let pgd = e.new_pgd();
        e.set_context(S, pgd | 1 | lo_bits, 2 | (5 << 8) | hi_bits);
        e.enable();
        assert_eq!(e.fault_code(S, 0x1000, false), 0xb, "lo {lo_bits:#x} hi {hi_bits:#x}");
    }
}

#[test]
fn context_entry_available_bits_are_not_reserved() {
    let mut e = Env::new();
    let pgd = e.new_pgd();
    e.set_context(S, pgd | 1, 2 | (5 << 8) | (0xf << 3));
    e.map(pgd, 4, 0x1000, 0x2000, 1, RW);
    e.enable();
    assert_eq!(e.phys(S, 0x1000), 0x2000);
}

#[test]
fn context_entry_unsupported_aw_reason_3() {
    for aw in [0u64, 3, 4, 5, 7] {
        let mut e = Env::new();
        let pgd = e.new_pgd();
        e.set_context(S, pgd | 1, aw | (5 << 8));
        e.enable();
        assert_eq!(e.fault_code(S, 0x1000, false), 0x3, "aw {aw}");
    }
}

#[test]
fn context_entry_tt_device_tlb_without_dt_reason_3() {
    let mut e = Env::new();
    let pgd = e.new_pgd();
    e.set_context(S, pgd | 1 | (1 << 2), 2 | (5 << 8));
    e.enable();
    assert_eq!(e.fault_code(S, 0x1000, false), 0x3);
}

#[test]
fn context_entry_tt_reserved_reason_3() {
    let mut e = Env::new();
    let pgd = e.new_pgd();
    e.set_context(S, pgd | 1 | (3 << 2), 2 | (5 << 8));
    e.enable();
    assert_eq!(e.fault_code(S, 0x1000, false), 0x3);
}

#[test]
fn pass_through_tt10_with_ecap_pt_is_identity() {
    let mut e = Env::new();
    e.set_context(S, 1 | (2 << 2), 2 | (9 << 8));
    e.enable();
    let t = e.tr(S, 0x1_2345_6789, true).0.unwrap();
    assert_eq!((t.iova, t.phys, t.page_mask, t.domain_id), (0x1_2345_6000, 0x1_2345_6000, 0xfff, 9));
    assert_eq!(t.perm, Perm::RW);
    assert_eq!(e.vtd.iotlb_len(), 0, "pass-through is not cached in the IOTLB");
    assert_eq!(e.vtd.context_cache_len(), 1);
}

#[test]
fn pass_through_tt10_without_ecap_pt_reason_3() {
    let mut e = Env::with(Config { pass_through: false, ..Config::default() });
    e.set_context(S, 1 | (2 << 2), 2 | (9 << 8));
    e.enable();
    assert_eq!(e.fault_code(S, 0x1000, false), 0x3);
}

#[test]
fn pte_reserved_bits_reason_c() {
    let snp = 1u64 << 11;
    // (leaf level, extra bits, description)
    let cases: [(u8, u64, &str); 7] = [
        (1, snp, "SNP in 4K leaf without snoop control"),
        (1, 1 << 48, "address bit above host width"),
        (1, 1 << 62, "TM bit"),
        (2, 1 << 12, "address bits below 2M in superpage"),
        (3, 1 << 20, "address bits below 1G in superpage"),
        (3, snp, "SNP in 1G leaf"),
        (2, 1 << 51, "address bit 51"),
    ];
    for (level, bits, what) in cases {
        let (mut e, pgd) = env4();
        e.map(pgd, 4, 0x4000_0000, 0x8000_0000, level, RW);
        let a = e.pte_addr(pgd, 4, 0x4000_0000, level);
        let v = e.mem.r64(a);
        e.mem.w64(a, v | bits);
        assert_eq!(e.fault_code(S, 0x4000_0000, false), 0xc, "{what}");
    }
}

#[test]
fn pml4_ps_bit_and_non_leaf_snp_reserved_reason_c() {
    for (level, bits) in [(4u8, 1u64 << 7), (4, 1 << 11), (3, 1 << 11), (2, 1 << 11)] {
        let (mut e, pgd) = env4();
        e.map(pgd, 4, 0x1000, 0x2000, 1, RW);
        let a = e.pte_addr(pgd, 4, 0x1000, level);
        let v = e.mem.r64(a);
        e.mem.w64(a, v | bits);
        assert_eq!(e.fault_code(S, 0x1000, false), 0xc, "level {level} bits {bits:#x}");
    }
}

#[test]
fn snoop_control_allows_snp_in_leaf() {
    let mut e = Env::with(Config { snoop_control: true, ..Config::default() });
    let pgd = e.setup_device(S, 5, 4);
    e.enable();
    e.map(pgd, 4, 0x1000, 0x2000 | (1 << 11), 1, RW);
    assert_eq!(e.phys(S, 0x1000), 0x2000);
}

#[test]
fn ignored_high_bits_do_not_fault() {
    let (mut e, pgd) = env4();
    e.map(pgd, 4, 0x1000, 0x2000 | 0xbff0_0000_0000_0000 | (0x7 << 8), 1, RW);
    assert_eq!(e.phys(S, 0x1000), 0x2000);
}

#[test]
fn reserved_bits_ignored_in_non_present_entry() {
    let (mut e, pgd) = env4();
    let a = e.pte_addr(pgd, 4, 0x1000, 1);
    e.mem.w64(a, 1 << 11 | 1 << 48);
    assert_eq!(e.fault_code(S, 0x1000, false), 0x6);
}

#[test]
fn address_beyond_agaw_reason_4() {
    let (mut e, _) = env4();
    assert_eq!(e.fault_code(S, 1 << 48, false), 0x4);
    assert_eq!(e.fault_code(S, u64::MAX, true), 0x4);
    let mut e = Env::new();
    e.setup_device(S, 5, 3);
    e.enable();
    assert_eq!(e.fault_code(S, 1 << 39, false), 0x4);
    assert_eq!(e.fault_code(S, (1 << 39) - 1, false), 0x6, "in range, just not mapped");
}

#[test]
fn output_in_interrupt_range_reason_e() {
    let (mut e, pgd) = env4();
    e.map(pgd, 4, 0x1000, 0xfee0_0000, 1, RW);
    assert_eq!(e.fault_code(S, 0x1000, true), 0xe);
    e.map(pgd, 4, 0x4000_0000, 0xc000_0000, 3, RW);
    assert_eq!(e.fault_code(S, 0x4000_0000, false), 0xe, "1G page covering the range");
    assert_eq!(e.vtd.iotlb_len(), 0);
}

#[test]
fn faults_are_not_cached() {
    let (mut e, pgd) = env4();
    assert_eq!(e.fault_code(S, 0x1000, false), 0x6);
    e.map(pgd, 4, 0x1000, 0x2000, 1, RW);
    assert_eq!(e.phys(S, 0x1000), 0x2000);
}
