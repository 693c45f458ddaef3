//! Queued invalidation with 256-bit descriptors (IQA.DW) on scalable-mode
//! hardware: queue geometry, descriptor validity per mode, reserved fields
//! and granularities of the PASID-cache and PASID-based IOTLB descriptors.

mod common;
mod sm_common;

use common::*;
use sm_common::*;
use vtd_core::registers::*;
use vtd_core::{Config, InvalidationEvent, Msi, Vtd};

fn cfg() -> Config {
    Config { scalable_mode: true, first_stage: true, pasid_bits: 20, ..Config::default() }
}

/// Scalable hardware, scalable root table latched, 256-bit queue.
fn sm_qi() -> Env {
    let mut e = Env::with(cfg());
    sm_enable(&mut e);
    enable_qi256(&mut e, 0);
    e
}

fn assert_iqe_at(e: &mut Env, head: u64) {
    assert_ne!(e.fsts() & FSTS_IQE, 0, "IQE expected");
    assert_eq!(iq_head256(e), head, "IQH stays on the bad descriptor");
}

fn wait_sw(data: u32, addr: u64) -> [u64; 4] {
    wide(d_wait(true, false, false, data, addr))
}

#[test]
fn iqa_dw_is_writable_with_smts() {
    let mut e = Env::with(cfg());
    let fx = e.w64(IQA, 0x8000 | IQA_DW | 1);
    assert!(fx.is_empty(), "{fx:?}");
    assert_eq!(e.rd64(IQA), 0x8000 | IQA_DW | 1);
}

#[test]
fn iqa_dw_without_smts_still_reserved_and_queue_stays_128_bit() {
    let mut e = Env::new();
    assert_eq!(e.w64(IQA, 0x8000 | IQA_DW).guest_errors.len(), 1);
    e.gcmd(GCMD_QIE, 0);
    assert!(!e.vtd.queue().dw);
    assert_eq!(e.vtd.queue().size, 256);
}

#[test]
fn dw_queue_of_qs0_has_128_entries_and_tail_128_is_beyond_it() {
    let mut e = sm_qi();
    let q = e.vtd.queue();
    assert!(q.dw);
    assert_eq!(q.size, 128);
    let fx = e.w32(IQT, 128 << 5);
    assert_eq!(fx.guest_errors.len(), 1);
    assert_iqe_at(&mut e, 0);
    let mut e = Env::with(cfg());
    enable_qi256(&mut e, 7);
    assert_eq!(e.vtd.queue().size, 16384);
}

#[test]
fn iqh_and_iqt_use_32_byte_stride_with_dw() {
    let mut e = sm_qi();
    let st = e.alloc_page();
    let fx = submit256(&mut e, &[wait_sw(1, st), wait_sw(2, st + 4), wait_sw(3, st + 8)]);
    assert!(fx.is_empty(), "{fx:?}");
    assert_eq!(e.rd64(IQH), 3 << 5);
    assert_eq!(e.rd64(IQT), 3 << 5);
    assert_eq!((e.mem.r32(st), e.mem.r32(st + 4), e.mem.r32(st + 8)), (1, 2, 3));
    // The third descriptor was fetched from base + 2 * 32.
    assert_eq!(e.mem.r64(e.iq_base + 64 + 8), st + 8);
}

#[test]
fn dw_queue_wraps_around_at_128_entries() {
    let mut e = sm_qi();
    let st = e.alloc_page();
    for i in 0..200u32 {
        submit256(&mut e, &[wait_sw(i, st)]);
        assert_eq!(e.mem.r32(st), i);
    }
    assert_eq!(iq_head256(&mut e), 200 % 128);
    assert_eq!(e.fsts(), 0);
}

#[test]
fn iqt_bit4_reserved_with_dw_sets_iqe() {
    let mut e = sm_qi();
    let fx = e.w32(IQT, (1 << 5) | (1 << 4));
    assert_eq!(fx.guest_errors.len(), 1);
    assert_iqe_at(&mut e, 0);
}

#[test]
fn wait_descriptor_256_bit_interrupt_and_fence() {
    let mut e = sm_qi();
    e.w32(IEADDR, 0xfee0_1000);
    e.w32(IEDATA, 0x41);
    e.w32(IECTL, 0);
    let fx = submit256(&mut e, &[wide(d_wait(false, true, true, 0, 0))]);
    assert_eq!(fx.interrupts, vec![Msi { address: 0xfee0_1000, data: 0x41 }]);
    assert_eq!(e.rd32(ICS), ICS_IWC);
}

#[test]
fn legacy_descriptors_in_256_bit_form_work_with_legacy_root() {
    // Interrupt remapping on: the IEC descriptor is valid.
    let mut e = Env::with(Config { intremap: true, ..cfg() });
    let s = sid(0, 1, 0);
    let pgd = e.setup_device(s, 7, 4);
    e.map(pgd, 4, 0x1000, 0xa000, 1, common::RW);
    e.enable();
    enable_qi256(&mut e, 0);
    assert_eq!(e.phys(s, 0x1000), 0xa000);
    assert_eq!((e.vtd.iotlb_len(), e.vtd.context_cache_len()), (1, 1));
    let fx = submit256(
        &mut e,
        &[wide(d_iotlb_pages(7, 0x1000, 0, false)), wide(d_cc_device(s, 0)), wide(d_iec_global())],
    );
    assert_eq!(fx.iec_invalidations, vec![vtd_core::IecInvalidation::Global], "{fx:?}");
    assert!(fx.interrupts.is_empty() && fx.guest_errors.is_empty(), "{fx:?}");
    assert_eq!(
        fx.invalidations,
        vec![
            InvalidationEvent::IotlbPages { did: 7, addr: 0x1000, size: 0x1000, leaf_only: false },
            InvalidationEvent::ContextDevice { sid: s, fm: 0 }
        ]
    );
    assert_eq!((e.vtd.iotlb_len(), e.vtd.context_cache_len()), (0, 0));
    assert_eq!(iq_head256(&mut e), 3);
}

#[test]
fn upper_128_bits_of_legacy_descriptor_are_reserved() {
    for (q, bit) in [(2usize, 1u64), (3, 1 << 63)] {
        let mut e = sm_qi();
        let st = e.alloc_page();
        let mut bad = wide(d_cc_global());
        bad[q] = bit;
        let fx = submit256(&mut e, &[wait_sw(1, st), bad, wait_sw(2, st)]);
        assert_eq!(fx.guest_errors.len(), 1);
        assert_iqe_at(&mut e, 1);
        assert_eq!(e.mem.r32(st), 1);
    }
}

#[test]
fn pasid_descriptors_with_legacy_root_set_iqe() {
    for d in [d_pc_global(), d_piotlb_pasid(1, 1)] {
        let mut e = Env::with(cfg());
        e.enable();
        enable_qi256(&mut e, 0);
        let fx = submit256(&mut e, &[d]);
        assert_eq!(fx.guest_errors.len(), 1, "{d:x?}");
        assert_iqe_at(&mut e, 0);
    }
}

#[test]
fn descriptors_128_bit_with_scalable_root_set_iqe() {
    let mut e = Env::with(cfg());
    sm_enable(&mut e);
    e.enable_qi(0);
    let st = e.alloc_page();
    let fx = e.submit(&[d_wait(true, false, false, 1, st)]);
    assert_eq!(fx.guest_errors.len(), 1);
    assert_ne!(e.fsts() & FSTS_IQE, 0);
    assert_eq!(e.iq_head(), 0);
    assert_eq!(e.mem.r32(st), 0);
}

#[test]
fn pasid_cache_descriptor_reserved_granularity_and_bits_set_iqe() {
    let mut g2 = d_pc_global();
    g2[0] = 0x7 | (2 << 4);
    let mut lo_rsvd = d_pc_global();
    lo_rsvd[0] |= 1 << 7;
    let mut lo_rsvd_hi = d_pc_global();
    lo_rsvd_hi[0] |= 1 << 52;
    let mut q1 = d_pc_global();
    q1[1] = 1;
    let mut q3 = d_pc_global();
    q3[3] = 1 << 40;
    for bad in [g2, lo_rsvd, lo_rsvd_hi, q1, q3] {
        let mut e = sm_qi();
        let fx = submit256(&mut e, &[d_pc_global(), bad]);
        assert_eq!(fx.guest_errors.len(), 1, "{bad:x?}");
        assert_iqe_at(&mut e, 1);
    }
}

#[test]
fn piotlb_descriptor_reserved_granularity_am_and_bits_set_iqe() {
    let mut g0 = d_piotlb_pasid(1, 2);
    g0[0] &= !(3 << 4);
    let mut g1 = g0;
    g1[0] |= 1 << 4;
    let am19 = d_piotlb_pages(1, 2, 0x4000, 19, false);
    let hi_rsvd = d_piotlb_pages(1, 2, 0x4000 | 0x80, 0, false);
    let mut q2 = d_piotlb_pasid(1, 2);
    q2[2] = 4;
    let mut lo_rsvd = d_piotlb_pasid(1, 2);
    lo_rsvd[0] |= 1 << 12;
    for bad in [g0, g1, am19, hi_rsvd, q2, lo_rsvd] {
        let mut e = sm_qi();
        let fx = submit256(&mut e, &[bad]);
        assert_eq!(fx.guest_errors.len(), 1, "{bad:x?}");
        assert_iqe_at(&mut e, 0);
    }
    let mut e = sm_qi();
    let fx = submit256(&mut e, &[d_piotlb_pages(1, 0xf_ffff, 0x4000, 18, true), d_piotlb_pasid(1, 0)]);
    assert!(fx.interrupts.is_empty() && fx.guest_errors.is_empty(), "{fx:?}");
    assert_eq!(
        fx.invalidations,
        vec![
            InvalidationEvent::PasidIotlbPages { did: 1, pasid: 0xf_ffff, addr: 0, size: 1 << 30, leaf_only: true },
            InvalidationEvent::PasidIotlb { did: 1, pasid: 0 }
        ]
    );
}

#[test]
fn device_tlb_and_pasid_device_tlb_descriptors_set_iqe_without_dt() {
    for d in [[0x3 | (0x0108 << 32), 0x1000, 0, 0], [0x8 | (0x0108 << 16) | (5 << 32), 0x1000, 0, 0]] {
        let mut e = sm_qi();
        let fx = submit256(&mut e, &[d]);
        assert_eq!(fx.guest_errors.len(), 1);
        assert_iqe_at(&mut e, 0);
    }
}

#[test]
fn iqe_on_256_bit_descriptor_resumes_after_fix() {
    let mut e = sm_qi();
    let st = e.alloc_page();
    submit256(&mut e, &[[0x9, 0, 0, 0], wait_sw(5, st)]);
    assert_iqe_at(&mut e, 0);
    let w = wait_sw(4, st + 8);
    for (i, q) in w.iter().enumerate() {
        e.mem.w64(e.iq_base + 8 * i as u64, *q);
    }
    e.w32(FSTS, FSTS_IQE);
    assert_eq!(iq_head256(&mut e), 2);
    assert_eq!((e.mem.r32(st + 8), e.mem.r32(st)), (4, 5));
}

#[test]
fn migration_keeps_256_bit_queue_and_rejects_it_without_smts() {
    let mut e = sm_qi();
    let st = e.alloc_page();
    submit256(&mut e, &[wait_sw(1, st)]);
    let state = e.vtd.save_state();
    assert!(state.queue.dw);
    let mut v = Vtd::new(cfg());
    v.load_state(&state).unwrap();
    assert_eq!(v.queue(), e.vtd.queue());
    let mut legacy = Vtd::new(Config::default());
    let mut st2 = legacy.save_state();
    st2.queue.dw = true;
    assert!(legacy.load_state(&st2).is_err());
    let mut bad = state.clone();
    bad.queue.size = 32768;
    assert!(Vtd::new(cfg()).load_state(&bad).is_err());
}
