//! Hardware nested translation decisions from real guest tables: what the
//! host must attach for a device's requests without PASID.

mod common;
mod sm_common;

use common::{sid, Env};
use sm_common::*;
use vtd_core::registers::GCMD_TE;
use vtd_core::{Config, HostBinding, S1Flags};

const PASIDE: u64 = 1 << 3;
const SRE: u64 = 1;
const WPE: u64 = 1 << 4;

fn modern() -> Config {
    Config { scalable_mode: true, first_stage: true, pasid_bits: 20, caching_mode: true, ..Config::default() }
}

#[test]
fn bindings_follow_the_rid_pasid_entry() {
    let mut e = Env::with(modern());
    let s = sid(0, 2, 0);
    let dir = sm_setup_context(&mut e, s, 0, 0, PASIDE, 0);
    let mut alloc = Alloc(0x100_0000);
    let fs = alloc.page();
    // Translation still off: the parent (guest physical addresses).
    assert_eq!(e.vtd.host_binding(s, &e.mem), HostBinding::Parent);
    set_pasid_entry(&mut e, dir, 0, pe(PGTT_FS, 7, 0, 2, fs, SRE | WPE));
    sm_enable(&mut e);
    assert_eq!(
        e.vtd.host_binding(s, &e.mem),
        HostBinding::Nested {
            did: 7,
            pasid: 0,
            pgtbl: fs,
            addr_width: 48,
            flags: S1Flags { sre: true, eafe: false, wpe: true },
        }
    );
    set_pasid_entry(&mut e, dir, 0, pe(PGTT_PT, 7, 0, 2, 0, 0));
    assert_eq!(e.vtd.host_binding(s, &e.mem), HostBinding::Parent);
    let ss = alloc.page();
    set_pasid_entry(&mut e, dir, 0, pe(PGTT_SS, 7, ss, 2, 0, 0));
    assert_eq!(e.vtd.host_binding(s, &e.mem), HostBinding::Unsupported);
    set_pasid_entry(&mut e, dir, 0, pe(PGTT_NESTED, 7, ss, 2, fs, 0));
    assert_eq!(e.vtd.host_binding(s, &e.mem), HostBinding::Unsupported);
    set_pasid_entry(&mut e, dir, 0, [0; 8]);
    assert_eq!(e.vtd.host_binding(s, &e.mem), HostBinding::Blocked);
    // Another function without a context entry.
    assert_eq!(e.vtd.host_binding(sid(0, 3, 0), &e.mem), HostBinding::Blocked);
    e.gcmd(0, GCMD_TE);
    assert_eq!(e.vtd.host_binding(s, &e.mem), HostBinding::Parent);
}

#[test]
fn legacy_tables_cannot_be_nested() {
    let mut e = Env::with(modern());
    let s = sid(0, 3, 0);
    e.setup_device(s, 5, 4);
    e.enable();
    assert_eq!(e.vtd.host_binding(s, &e.mem), HostBinding::Unsupported);
}
