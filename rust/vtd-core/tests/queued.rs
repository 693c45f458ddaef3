//! Queued invalidation: wait descriptors, completion events and queue
//! errors.

mod common;
use common::*;
use vtd_core::registers::*;
use vtd_core::Msi;

fn qi_env() -> Env {
    let mut e = Env::new();
    e.enable_qi(0);
    e
}

fn unmask_completion(e: &mut Env) {
    e.w32(IEADDR, 0xfee0_1000);
    e.w32(IEDATA, 0x4021);
    e.w32(IECTL, 0);
}

fn unmask_faults(e: &mut Env) {
    e.w32(FEADDR, 0xfee0_2000);
    e.w32(FEDATA, 0x4022);
    e.w32(FECTL, 0);
}

#[test]
fn wait_descriptor_status_write() {
    let mut e = qi_env();
    let st = e.alloc_page() + 0x10;
    let fx = e.submit(&[d_wait(true, false, false, 0xcafe_f00d, st)]);
    assert!(fx.is_empty());
    assert_eq!(e.mem.r32(st), 0xcafe_f00d);
    assert_eq!(e.mem.r32(st + 4), 0, "only 32 bits written");
    assert_eq!(e.iq_head(), 1);
    assert_eq!(e.rd32(ICS), 0, "no IF: IWC stays clear");
}

#[test]
fn wait_descriptor_interrupt_sets_iwc_and_sends_msi() {
    let mut e = qi_env();
    unmask_completion(&mut e);
    let fx = e.submit(&[d_wait(false, true, false, 0, 0)]);
    assert_eq!(fx.interrupts, vec![Msi { address: 0xfee0_1000, data: 0x4021 }]);
    assert_eq!(e.rd32(ICS), ICS_IWC);
    assert_eq!(e.rd32(IECTL), 0, "IP clear after sending");
}

#[test]
fn wait_interrupt_while_iwc_set_is_not_sent_again() {
    let mut e = qi_env();
    unmask_completion(&mut e);
    assert_eq!(e.submit(&[d_wait(false, true, false, 0, 0)]).interrupts.len(), 1);
    assert!(e.submit(&[d_wait(false, true, false, 0, 0)]).interrupts.is_empty());
    e.w32(ICS, ICS_IWC);
    assert_eq!(e.rd32(ICS), 0);
    assert_eq!(e.submit(&[d_wait(false, true, false, 0, 0)]).interrupts.len(), 1);
}

#[test]
fn wait_interrupt_masked_sets_ip_then_unmask_fires() {
    let mut e = qi_env();
    e.w32(IEADDR, 0xfee0_1000);
    e.w32(IEDATA, 0x4021);
    let fx = e.submit(&[d_wait(false, true, false, 0, 0)]);
    assert!(fx.interrupts.is_empty());
    assert_eq!(e.rd32(IECTL), EVT_IM | EVT_IP);
    let fx = e.w32(IECTL, 0);
    assert_eq!(fx.interrupts, vec![Msi { address: 0xfee0_1000, data: 0x4021 }]);
    assert_eq!(e.rd32(IECTL), 0);
}

#[test]
fn clearing_iwc_clears_pending_completion_ip() {
    let mut e = qi_env();
    e.submit(&[d_wait(false, true, false, 0, 0)]);
    assert_eq!(e.rd32(IECTL), EVT_IM | EVT_IP);
    e.w32(ICS, ICS_IWC);
    assert_eq!(e.rd32(IECTL), EVT_IM);
    assert!(e.w32(IECTL, 0).interrupts.is_empty());
}

#[test]
fn wait_fence_only_is_valid_and_empty_wait_is_not() {
    let mut e = qi_env();
    assert!(e.submit(&[d_wait(false, false, true, 0, 0)]).is_empty());
    assert_eq!(e.fsts() & FSTS_IQE, 0);
    let fx = e.submit(&[d_wait(false, false, false, 0, 0)]);
    assert_eq!(fx.guest_errors.len(), 1);
    assert_ne!(e.fsts() & FSTS_IQE, 0);
}

#[test]
fn bad_descriptor_type_sets_iqe_and_head_stays_on_it() {
    let mut e = qi_env();
    let st = e.alloc_page();
    let fx = e.submit(&[
        d_wait(true, false, false, 1, st),
        (0x7, 0), // PASID-cache invalidate: not valid in legacy mode
        d_wait(true, false, false, 2, st),
    ]);
    assert_eq!(fx.guest_errors.len(), 1);
    assert_ne!(e.fsts() & FSTS_IQE, 0);
    assert_eq!(e.iq_head(), 1, "IQH points at the bad descriptor");
    assert_eq!(e.mem.r32(st), 1, "descriptors after the bad one are not processed");
}

#[test]
fn unknown_and_reserved_types_set_iqe() {
    for lo in [0x0u64, 0x6, 0x8, 0x9, 0xf, 0x201] {
        let mut e = qi_env();
        e.submit(&[(lo, 0)]);
        assert_ne!(e.fsts() & FSTS_IQE, 0, "type lo={lo:#x}");
        assert_eq!(e.iq_head(), 0);
    }
}

#[test]
fn reserved_bits_in_descriptors_set_iqe() {
    let cases: [(u64, u64); 8] = [
        (d_cc_global().0 | (1 << 6), 0),
        (d_cc_global().0, 1),
        (d_iotlb_global().0 | (1 << 8), 0),
        (d_iotlb_global().0, 1 << 7),
        (d_iotlb_global().0 | (1 << 40), 0),
        (d_iec_global().0 | (1 << 5), 0),
        (d_iec_global().0, 1),
        (d_wait(false, false, true, 0, 0).0 | (1 << 8), 0),
    ];
    for (lo, hi) in cases {
        let mut e = qi_env();
        let fx = e.submit(&[(lo, hi)]);
        assert_eq!(fx.guest_errors.len(), 1, "lo={lo:#x} hi={hi:#x}");
        assert_ne!(e.fsts() & FSTS_IQE, 0);
        assert_eq!(e.iq_head(), 0);
    }
}

#[test]
fn granularity_zero_descriptors_set_iqe() {
    for d in [(0x1u64, 0u64), (0x2, 0)] {
        let mut e = qi_env();
        e.submit(&[d]);
        assert_ne!(e.fsts() & FSTS_IQE, 0);
    }
}

#[test]
fn iotlb_descriptor_am_above_mamv_sets_iqe() {
    let mut e = qi_env();
    e.submit(&[d_iotlb_pages(1, 0, 19, false)]);
    assert_ne!(e.fsts() & FSTS_IQE, 0);
}

#[test]
fn descriptor_in_unmapped_memory_sets_iqe() {
    let mut e = qi_env();
    e.mem.unmap(e.iq_base, 0x1000);
    e.w32(IQT, 1 << 4);
    assert_ne!(e.fsts() & FSTS_IQE, 0);
    assert_eq!(e.iq_head(), 0);
}

#[test]
fn wait_status_write_to_unmapped_memory_sets_iqe() {
    let mut e = qi_env();
    e.mem.unmap(0x9000_0000, 0x1000);
    e.submit(&[d_wait(true, false, false, 1, 0x9000_0000)]);
    assert_ne!(e.fsts() & FSTS_IQE, 0);
    assert_eq!(e.iq_head(), 0);
}

#[test]
fn device_tlb_descriptor_without_dt_sets_iqe() {
    let mut e = qi_env();
    let fx = e.submit(&[(0x3 | (0x0108 << 32), 0x1000)]);
    assert_eq!(fx.guest_errors.len(), 1);
    assert_ne!(e.fsts() & FSTS_IQE, 0);
}

#[test]
fn interrupt_entry_cache_descriptor_refused_without_intremap() {
    // Valid only with interrupt remapping (ECAP.IR); accepted descriptors
    // are covered in tests/interrupt_remapping.rs.
    let mut e = qi_env();
    let fx = e.submit(&[d_iec_global(), (0x4 | 0x10 | (0x5 << 27) | (0x20 << 32), 0)]);
    assert_eq!(fx.guest_errors.len(), 1, "{fx:?}");
    assert!(fx.iec_invalidations.is_empty());
    assert_ne!(e.fsts() & FSTS_IQE, 0);
    assert_eq!(e.iq_head(), 0);
}

#[test]
fn iqe_raises_fault_event() {
    let mut e = qi_env();
    unmask_faults(&mut e);
    let fx = e.submit(&[(0xf, 0)]);
    assert_eq!(fx.interrupts, vec![Msi { address: 0xfee0_2000, data: 0x4022 }]);
    assert_eq!(e.rd32(FECTL), 0);
    // Software fixes the descriptor and clears IQE: processing resumes.
    let w = d_wait(false, false, true, 0, 0);
    e.mem.w64(e.iq_base, w.0);
    let fx = e.w32(FSTS, FSTS_IQE);
    assert!(fx.is_empty());
    assert_eq!(e.iq_head(), 1);
    // A new error after service raises a new event.
    let fx = e.submit(&[(0xf, 0)]);
    assert_eq!(fx.interrupts.len(), 1);
}

#[test]
fn iqe_masked_sets_ip_and_clearing_iqe_clears_ip() {
    let mut e = qi_env();
    e.submit(&[(0xf, 0)]);
    assert_eq!(e.rd32(FECTL), EVT_IM | EVT_IP);
    // Fix the descriptor in place before clearing IQE.
    let w = d_wait(false, false, true, 0, 0);
    e.mem.w64(e.iq_base, w.0);
    e.w32(FSTS, FSTS_IQE);
    assert_eq!(e.fsts(), 0);
    assert_eq!(e.rd32(FECTL), EVT_IM);
}

#[test]
fn tail_writes_ignored_while_iqe_and_processing_resumes_when_cleared() {
    let mut e = qi_env();
    let st = e.alloc_page();
    e.submit(&[(0xf, 0)]);
    e.submit(&[d_wait(true, false, false, 5, st)]);
    assert_eq!(e.iq_head(), 0);
    assert_eq!(e.mem.r32(st), 0, "no fetch while IQE is set");
    // Software replaces the bad descriptor (as Linux does) and clears IQE.
    let w = d_wait(true, false, false, 4, st + 8);
    e.mem.w64(e.iq_base, w.0);
    e.mem.w64(e.iq_base + 8, w.1);
    e.w32(FSTS, FSTS_IQE);
    assert_eq!(e.iq_head(), 2);
    assert_eq!((e.mem.r32(st + 8), e.mem.r32(st)), (4, 5));
}

#[test]
fn tail_beyond_queue_size_sets_iqe() {
    let mut e = qi_env(); // 256 entries
    let fx = e.w32(IQT, 256 << 4);
    assert_eq!(fx.guest_errors.len(), 1);
    assert_ne!(e.fsts() & FSTS_IQE, 0);
    assert_eq!(e.iq_head(), 0);
}

#[test]
fn queue_wraps_around() {
    let mut e = qi_env();
    let st = e.alloc_page();
    for i in 0..300u32 {
        e.submit(&[d_wait(true, false, false, i, st)]);
        assert_eq!(e.mem.r32(st), i);
    }
    assert_eq!(e.iq_head(), 300 % 256);
    assert_eq!(e.fsts(), 0);
}

#[test]
fn iqh_register_reflects_head_and_is_read_only() {
    let mut e = qi_env();
    e.submit(&[d_wait(false, false, true, 0, 0); 3]);
    assert_eq!(e.rd64(IQH), 3 << 4);
    e.w64(IQH, 0);
    assert_eq!(e.rd64(IQH), 3 << 4);
    assert_eq!(e.rd64(IQT), 3 << 4);
}

#[test]
fn descriptors_not_processed_while_qi_disabled() {
    let mut e = Env::new();
    let base = e.alloc_page();
    let st = e.alloc_page();
    let w = d_wait(true, false, false, 9, st);
    e.mem.w64(base, w.0);
    e.mem.w64(base + 8, w.1);
    e.w64(IQA, base);
    e.w32(IQT, 1 << 4);
    assert_eq!(e.mem.r32(st), 0);
    assert_eq!(e.rd64(IQH), 0);
}

#[test]
fn iqa_dw_bit_is_reserved_in_legacy_mode() {
    let mut e = Env::new();
    let fx = e.w64(IQA, 0x8000 | IQA_DW);
    assert_eq!(fx.guest_errors.len(), 1);
    assert_eq!(e.rd64(IQA), 0x8000);
}

// ---- barriers: waits complete after the glue carried out what precedes them

fn barrier_env() -> Env {
    let mut e = qi_env();
    e.vtd.set_queue_barriers(true);
    e
}

#[test]
fn barrier_stops_in_front_of_a_wait_that_follows_invalidations() {
    let mut e = barrier_env();
    unmask_completion(&mut e);
    let st = e.alloc_page();
    let fx = e.submit(&[
        d_iotlb_domain(3),
        d_cc_global(),
        d_wait(true, true, false, 1, st),
        d_iotlb_global(),
        d_wait(true, false, false, 2, st + 8),
    ]);
    assert!(fx.queue_barrier);
    assert_eq!(fx.invalidations.len(), 2);
    assert_eq!(fx.invalidation_sources, vec![Some(0), Some(1)]);
    assert!(fx.interrupts.is_empty(), "{fx:?}");
    assert_eq!(e.mem.r32(st), 0, "wait not completed before the glue resumes");
    assert_eq!(e.iq_head(), 2, "IQH at the wait");

    let fx = e.vtd.resume_queue(&e.mem);
    assert_eq!(e.mem.r32(st), 1);
    assert_eq!(fx.interrupts.len(), 1, "completion interrupt of the first wait");
    assert!(fx.queue_barrier, "second wait follows another invalidation");
    assert_eq!(fx.invalidation_sources, vec![Some(3)]);
    assert_eq!(e.mem.r32(st + 8), 0);
    assert_eq!(e.iq_head(), 4);

    let fx = e.vtd.resume_queue(&e.mem);
    assert!(!fx.queue_barrier);
    assert!(fx.invalidations.is_empty());
    assert_eq!(e.mem.r32(st + 8), 2);
    assert_eq!(e.iq_head(), 5);
    assert!(e.vtd.resume_queue(&e.mem).is_empty(), "nothing left");
}

#[test]
fn barrier_not_taken_for_waits_alone_or_without_barriers() {
    let mut e = barrier_env();
    let st = e.alloc_page();
    let fx = e.submit(&[d_wait(true, false, false, 1, st), d_wait(true, false, false, 2, st + 4)]);
    assert!(!fx.queue_barrier);
    assert_eq!((e.mem.r32(st), e.mem.r32(st + 4)), (1, 2));

    let mut e = qi_env();
    let fx = e.submit(&[d_iotlb_global(), d_wait(true, false, false, 3, st)]);
    assert!(!fx.queue_barrier, "barriers are off by default");
    assert_eq!(e.mem.r32(st), 3);
    assert_eq!(fx.invalidation_sources, vec![Some(0)]);
}

#[test]
fn barrier_after_interrupt_entry_cache_invalidation() {
    let mut e = Env::with(vtd_core::Config { intremap: true, ..vtd_core::Config::default() });
    e.enable_qi(0);
    e.vtd.set_queue_barriers(true);
    let st = e.alloc_page();
    let fx = e.submit(&[d_iec_global(), d_wait(true, false, false, 7, st)]);
    assert!(fx.queue_barrier);
    assert_eq!(fx.iec_invalidations.len(), 1);
    assert_eq!(e.mem.r32(st), 0);
    e.vtd.resume_queue(&e.mem);
    assert_eq!(e.mem.r32(st), 7);
}

#[test]
fn tail_write_while_stopped_at_a_barrier_continues_from_the_wait() {
    // A glue that did not resume (or a second tail write in between) loses nothing.
    let mut e = barrier_env();
    let st = e.alloc_page();
    assert!(e.submit(&[d_iotlb_global(), d_wait(true, false, false, 1, st)]).queue_barrier);
    let fx = e.submit(&[d_wait(true, false, false, 2, st + 4)]);
    assert!(!fx.queue_barrier);
    assert_eq!((e.mem.r32(st), e.mem.r32(st + 4)), (1, 2));
    assert_eq!(e.iq_head(), 3);
}

#[test]
fn failed_invalidation_is_an_iqe_at_its_descriptor_and_the_wait_stays_pending() {
    let mut e = barrier_env();
    unmask_completion(&mut e);
    unmask_faults(&mut e);
    let st = e.alloc_page();
    let fx = e.submit(&[
        d_iotlb_domain(1),
        d_iotlb_domain(2),
        d_wait(true, true, false, 1, st),
    ]);
    assert!(fx.queue_barrier);
    let failed = fx.invalidation_source(1).unwrap();
    let fx = e.vtd.invalidation_failed(failed, "host refused");
    assert_eq!(fx.interrupts, vec![Msi { address: 0xfee0_2000, data: 0x4022 }]);
    assert!(fx.guest_errors.iter().any(|m| m.contains("host refused")), "{fx:?}");
    assert_ne!(e.fsts() & FSTS_IQE, 0);
    assert_eq!(e.iq_head(), 1, "IQH at the failed descriptor");
    assert!(e.vtd.resume_queue(&e.mem).is_empty(), "stopped while IQE is set");
    assert_eq!(e.mem.r32(st), 0, "wait not completed");

    // A second failure while IQE is set leaves IQH alone.
    let fx = e.vtd.invalidation_failed(0, "again");
    assert!(fx.interrupts.is_empty());
    assert_eq!(e.iq_head(), 1);

    // Software (as Linux) replaces the bad descriptor by the wait and clears IQE.
    let (lo, hi) = d_wait(true, false, false, 9, st + 4);
    let base = e.iq_base;
    e.mem.w64(base + 16, lo);
    e.mem.w64(base + 24, hi);
    let fx = e.w32(FSTS, FSTS_IQE);
    assert!(!fx.queue_barrier);
    assert_eq!(e.mem.r32(st + 4), 9);
    assert_eq!(e.mem.r32(st), 1, "the original wait runs after it");
    assert_eq!(e.iq_head(), 3);
}

#[test]
fn failed_invalidation_outside_the_queue_is_only_logged() {
    let mut e = barrier_env();
    let fx = e.vtd.invalidation_failed(4096, "out of range");
    assert!(fx.interrupts.is_empty());
    assert_eq!(fx.guest_errors.len(), 1);
    assert_eq!(e.fsts() & FSTS_IQE, 0);
    let mut e = Env::new();
    let fx = e.vtd.invalidation_failed(0, "no queue");
    assert_eq!(fx.guest_errors.len(), 1);
    assert_eq!(e.fsts() & FSTS_IQE, 0);
}

#[test]
fn host_binding_failure_outside_the_queue_is_a_primary_fault() {
    let mut e = barrier_env();
    unmask_faults(&mut e);
    let fx = e.vtd.host_binding_failed(0x0100, Some(5), "host refused the binding");
    assert_eq!(fx.interrupts, vec![Msi { address: 0xfee0_2000, data: 0x4022 }]);
    assert!(fx.guest_errors.iter().any(|m| m.contains("host refused")), "{fx:?}");
    assert_ne!(e.fsts() & FSTS_PPF, 0);
    assert_eq!(e.fsts() & FSTS_IQE, 0, "no queue error: no descriptor asked");
    let rec = e.vtd.fault_record(0).unwrap();
    assert_eq!((rec.reason_code, rec.sid, rec.address, rec.write, rec.pasid), (0x58, 0x0100, 0, false, Some(5)));
    // Requests without PASID: no PASID in the record (once software has
    // read and cleared the one fault recording register).
    e.w32(FRCD_REG_OFFSET + 12, 1 << 31);
    e.vtd.host_binding_failed(0x0200, None, "again");
    let rec = e.vtd.fault_record(0).unwrap();
    assert_eq!((rec.reason_code, rec.sid, rec.pasid), (0x58, 0x0200, None));
}

#[test]
fn barriers_survive_reset() {
    let mut e = barrier_env();
    e.vtd.reset();
    e.enable_qi(0);
    let st = e.alloc_page();
    assert!(e.submit(&[d_iotlb_global(), d_wait(true, false, false, 1, st)]).queue_barrier);
}
