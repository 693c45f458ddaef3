//! Global command / status handshakes.

mod common;
use common::*;
use vtd_core::registers::*;
use vtd_core::Config;

#[test]
fn srtp_latches_rtaddr_and_sets_rtps() {
    let mut e = Env::new();
    e.w64(RTADDR, 0x5000);
    assert_eq!(e.vtd.root_table_address(), 0, "not latched before SRTP");
    assert_eq!(e.gsts() & GSTS_RTPS, 0);
    e.gcmd(GCMD_SRTP, 0);
    assert_eq!(e.gsts(), GSTS_RTPS);
    assert_eq!(e.vtd.root_table_address(), 0x5000);
    e.w64(RTADDR, 0x9000);
    assert_eq!(e.vtd.root_table_address(), 0x5000, "RTADDR write alone does not switch");
    e.gcmd(GCMD_SRTP, 0);
    assert_eq!(e.vtd.root_table_address(), 0x9000);
    assert_eq!(e.rd32(GCMD), 0, "one-shot SRTP reads back 0");
}

#[test]
fn srtp_masks_root_pointer_to_host_address_width() {
    let mut e = Env::with(Config { aw_bits: 39, ..Config::default() });
    e.w64(RTADDR, (1 << 45) | 0x7000);
    e.gcmd(GCMD_SRTP, 0);
    assert_eq!(e.vtd.root_table_address(), 0x7000);
}

#[test]
fn srtp_with_ttm_set_is_guest_error_and_treated_as_legacy() {
    let mut e = Env::new();
    e.w64(RTADDR, ROOT | (1 << 10));
    let fx = e.gcmd(GCMD_SRTP, 0);
    assert_eq!(fx.guest_errors.len(), 1);
    assert_eq!(e.vtd.root_table_address(), ROOT);
}

#[test]
fn srtp_flushes_context_cache_and_iotlb() {
    let mut e = Env::new();
    let s = sid(0, 1, 0);
    let pgd = e.setup_device(s, 1, 4);
    e.map(pgd, 4, 0x1000, 0xa000, 1, RW);
    e.enable();
    e.phys(s, 0x1000);
    assert_eq!((e.vtd.context_cache_len(), e.vtd.iotlb_len()), (1, 1));
    e.gcmd(GCMD_SRTP, 0);
    assert_eq!((e.vtd.context_cache_len(), e.vtd.iotlb_len()), (0, 0));
}

#[test]
fn te_enable_and_disable_reflected_in_gsts() {
    let mut e = Env::new();
    assert!(!e.vtd.translation_enabled());
    e.gcmd(GCMD_TE, 0);
    assert_eq!(e.gsts() & GSTS_TES, GSTS_TES);
    assert!(e.vtd.translation_enabled());
    // Re-writing TE=1 together with another command keeps TE on.
    e.gcmd(GCMD_SRTP, 0);
    assert_eq!(e.gsts(), GSTS_TES | GSTS_RTPS);
    e.gcmd(0, GCMD_TE);
    assert_eq!(e.gsts(), GSTS_RTPS);
    assert!(!e.vtd.translation_enabled());
}

#[test]
fn te_toggle_flushes_caches() {
    let mut e = Env::new();
    let s = sid(0, 1, 0);
    let pgd = e.setup_device(s, 1, 4);
    e.map(pgd, 4, 0x1000, 0xa000, 1, RW);
    e.enable();
    e.phys(s, 0x1000);
    e.gcmd(0, GCMD_TE);
    assert_eq!((e.vtd.context_cache_len(), e.vtd.iotlb_len()), (0, 0));
}

#[test]
fn te_ignored_when_dma_translation_off() {
    let mut e = Env::with(Config { dma_translation: false, ..Config::default() });
    let fx = e.gcmd(GCMD_TE, 0);
    assert_eq!(fx.guest_errors.len(), 1);
    assert_eq!(e.gsts() & GSTS_TES, 0);
    assert!(!e.vtd.translation_enabled());
}

#[test]
fn qie_enable_latches_iqa_and_sets_qies() {
    let mut e = Env::new();
    e.w64(IQA, 0x8_0000 | 2);
    e.gcmd(GCMD_QIE, 0);
    assert_eq!(e.gsts() & GSTS_QIES, GSTS_QIES);
    let q = e.vtd.queue();
    assert!(q.enabled);
    assert_eq!((q.base, q.size, q.head), (0x8_0000, 1024, 0));
    // IQA changes while enabled are only latched on the next enable.
    let fx = e.w64(IQA, 0x9_0000);
    assert_eq!(fx.guest_errors.len(), 1);
    assert_eq!(e.vtd.queue().base, 0x8_0000);
}

#[test]
fn qie_disable_clears_qies_and_resets_iqh() {
    let mut e = Env::new();
    e.enable_qi(0);
    e.submit(&[d_wait(false, false, true, 0, 0), d_wait(false, false, true, 0, 0)]);
    assert_eq!(e.iq_head(), 2);
    let fx = e.gcmd(0, GCMD_QIE);
    assert!(fx.is_empty());
    assert_eq!(e.gsts() & GSTS_QIES, 0);
    assert_eq!(e.rd64(IQH), 0);
    assert!(!e.vtd.queue().enabled);
}

#[test]
fn qie_disable_with_pending_descriptors_is_guest_error() {
    let mut e = Env::new();
    e.enable_qi(0);
    e.submit(&[(0xf, 0)]); // invalid: IQE, head stays at 0, tail 1
    assert_ne!(e.fsts() & FSTS_IQE, 0);
    let fx = e.gcmd(0, GCMD_QIE);
    assert_eq!(fx.guest_errors.len(), 1);
    assert_eq!(e.gsts() & GSTS_QIES, 0);
    assert_eq!(e.rd64(IQH), 0);
}

#[test]
fn qie_enable_with_nonzero_tail_processes_queue_immediately() {
    let mut e = Env::new();
    let base = e.alloc_page();
    let status = e.alloc_page();
    e.mem.w64(base, d_wait(true, false, false, 0x77, status).0);
    e.mem.w64(base + 8, status);
    e.w64(IQA, base);
    e.w32(IQT, 1 << 4);
    assert_eq!(e.mem.r32(status), 0, "not processed while QI disabled");
    e.iq_base = base;
    e.gcmd(GCMD_QIE, 0);
    assert_eq!(e.mem.r32(status), 0x77);
    assert_eq!(e.iq_head(), 1);
}

#[test]
fn register_invalidation_rejected_while_qi_enabled() {
    let mut e = Env::new();
    let s = sid(0, 1, 0);
    let pgd = e.setup_device(s, 1, 4);
    e.map(pgd, 4, 0x1000, 0xa000, 1, RW);
    e.enable();
    e.enable_qi(0);
    e.phys(s, 0x1000);
    let fx = e.w64(CCMD, CCMD_ICC | (1 << 61));
    assert_eq!(fx.guest_errors.len(), 1);
    let v = e.rd64(CCMD);
    assert_eq!(v & (CCMD_ICC | CCMD_CAIG_MASK), 0, "completes with CAIG=0");
    e.w64(IOTLB, IOTLB_IVT | (1 << 60));
    assert_eq!(e.rd64(IOTLB) & (IOTLB_IVT | IOTLB_IAIG_MASK), 0);
    assert_eq!((e.vtd.context_cache_len(), e.vtd.iotlb_len()), (1, 1), "nothing flushed");
}

#[test]
fn ire_sirtp_cfi_sfl_eafl_ignored_with_guest_errors() {
    let mut e = Env::new();
    for bit in [GCMD_IRE, GCMD_SIRTP, GCMD_CFI, GCMD_SFL, GCMD_EAFL] {
        let fx = e.w32(GCMD, bit);
        assert_eq!(fx.guest_errors.len(), 1, "{bit:#x}");
        assert_eq!(e.gsts(), 0);
    }
}

#[test]
fn wbf_completes_immediately() {
    let mut e = Env::new();
    let fx = e.w32(GCMD, GCMD_WBF);
    assert!(fx.is_empty());
    assert_eq!(e.gsts() & GSTS_WBFS, 0);
}
