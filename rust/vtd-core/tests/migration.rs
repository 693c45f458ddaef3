//! The C device's migration fields (QEMU 10.2.2 `vtd_vmstate`) carry our
//! whole architectural state: state -> C fields -> state is the identity,
//! in legacy and scalable mode, with the queue and interrupt remapping on.

mod common;
mod sm_common;

use common::Env;
use sm_common::*;
use vtd_core::migration::CVmState;
use vtd_core::registers::{GCMD_IRE, GCMD_SIRTP, IRTA};
use vtd_core::{Config, Vtd};

fn roundtrip(e: &Env, cfg: &Config) {
    let st = e.vtd.save_state();
    let c = CVmState::from_state(&st);
    assert_eq!(c.to_state(cfg), st);
    let mut v = Vtd::new(cfg.clone());
    v.load_state(&c.to_state(cfg)).unwrap();
    assert_eq!(v.save_state(), st);
}

#[test]
fn scalable_mode_with_256_bit_queue_and_interrupt_remapping() {
    let cfg = Config {
        scalable_mode: true,
        first_stage: true,
        pasid_bits: 20,
        intremap: true,
        eim: true,
        ..Config::default()
    };
    let mut e = Env::with(cfg.clone());
    roundtrip(&e, &cfg);
    sm_enable(&mut e);
    enable_qi256(&mut e, 1);
    submit256(&mut e, &[d_pc_global(), d_piotlb_pasid(3, 5)]);
    e.w64(IRTA, 0x40_0000 | 7 | (1 << 11));
    e.gcmd(GCMD_SIRTP, 0);
    e.gcmd(GCMD_IRE, 0);
    let st = e.vtd.save_state();
    assert!(st.root_scalable && st.queue.dw && st.queue.enabled && st.intr_enabled && st.intr_eime);
    assert_eq!((st.queue.head, st.queue.tail, st.intr_size), (2, 2, 256));
    roundtrip(&e, &cfg);
    // The C fields of a scalable unit do not load into a legacy one.
    let c = CVmState::from_state(&st);
    assert!(Vtd::new(Config::default()).load_state(&c.to_state(&Config::default())).is_err());
}

#[test]
fn legacy_mode() {
    let cfg = Config::default();
    let mut e = Env::with(cfg.clone());
    e.setup_device(common::sid(0, 3, 0), 5, 4);
    e.enable();
    let st = e.vtd.save_state();
    assert!(st.dmar_enabled && !st.root_scalable);
    roundtrip(&e, &cfg);
}
