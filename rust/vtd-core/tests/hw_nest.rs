//! Hardware nested translation decisions from real guest tables: what the
//! host must attach for a device's requests without PASID and for each of
//! its PASIDs.

mod common;
mod sm_common;

use common::{sid, Env};
use sm_common::*;
use vtd_core::registers::GCMD_TE;
use vtd_core::nesting::hw_nest::{pasid_rebind, MAX_HOST_PASIDS};
use vtd_core::{Config, HostBinding, InvalidationEvent, PasidRebind, S1Flags};

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

#[test]
fn pasid_bindings_follow_their_own_entries() {
    let mut e = Env::with(modern());
    let s = sid(0, 2, 0);
    let dir = sm_setup_context(&mut e, s, 1, 0, PASIDE, 0);
    let mut alloc = Alloc(0x100_0000);
    let (fs0, fs5) = (alloc.page(), alloc.page());
    set_pasid_entry(&mut e, dir, 0, pe(PGTT_FS, 7, 0, 2, fs0, 0));
    set_pasid_entry(&mut e, dir, 5, pe(PGTT_FS, 9, 0, 2, fs5, SRE));
    set_pasid_entry(&mut e, dir, 200, pe(PGTT_PT, 9, 0, 2, 0, 0));
    // Translation off: requests with PASID are blocked, none enumerated.
    assert_eq!(e.vtd.host_binding_pasid(s, 5, &e.mem), HostBinding::Blocked);
    assert_eq!(e.vtd.present_pasids(s, &e.mem, 16), (vec![], false));
    sm_enable(&mut e);
    // RID_PASID (0) is the binding without PASID, not enumerated.
    assert_eq!(e.vtd.present_pasids(s, &e.mem, 16), (vec![5, 200], false));
    assert_eq!(e.vtd.present_pasids(s, &e.mem, 1), (vec![5], true));
    assert_eq!(
        e.vtd.host_binding_pasid(s, 5, &e.mem),
        HostBinding::Nested {
            did: 9,
            pasid: 5,
            pgtbl: fs5,
            addr_width: 48,
            flags: S1Flags { sre: true, eafe: false, wpe: false },
        }
    );
    assert_eq!(e.vtd.host_binding_pasid(s, 200, &e.mem), HostBinding::Parent);
    // A table entry that is not present, in a present table; a directory
    // entry that is not present.
    assert_eq!(e.vtd.host_binding_pasid(s, 6, &e.mem), HostBinding::Blocked);
    assert_eq!(e.vtd.host_binding_pasid(s, 64 * 100, &e.mem), HostBinding::Blocked);
    // PASIDs disabled in the context entry: none.
    let ce = sm_context_addr(&mut e, s);
    e.mem.w64(ce, e.mem.r64(ce) & !PASIDE);
    assert_eq!(e.vtd.present_pasids(s, &e.mem, 16), (vec![], false));
    assert_eq!(e.vtd.host_binding_pasid(s, 5, &e.mem), HostBinding::Blocked);
    e.mem.w64(ce, e.mem.r64(ce) | PASIDE);
    // PASID directory size: PDTS 1 is 256 entries (16384 PASIDs); an entry
    // beyond it is not seen.
    let far: u32 = 256 * 64 + 3;
    let de_addr = dir + u64::from(far >> 6) * 8;
    let table = alloc.page();
    e.mem.w64(de_addr, table | 1);
    e.mem.w64(table + 3 * 64, PGTT_PT | 1);
    assert_eq!(e.vtd.present_pasids(s, &e.mem, 16), (vec![5, 200], false));
    // Legacy root table: blocked, none.
    e.gcmd(0, GCMD_TE);
    assert_eq!(e.vtd.present_pasids(s, &e.mem, 16), (vec![], false));
}

#[test]
fn pasid_enumeration_is_bounded_and_survives_unreadable_directories() {
    let mut e = Env::with(modern());
    let s = sid(0, 4, 0);
    let dir = sm_setup_context(&mut e, s, 7, 0, PASIDE, 0);
    for p in 1..=(MAX_HOST_PASIDS as u32 + 10) {
        set_pasid_entry(&mut e, dir, p * 3, pe(PGTT_PT, 1, 0, 2, 0, 0));
    }
    sm_enable(&mut e);
    let (all, more) = e.vtd.present_pasids(s, &e.mem, MAX_HOST_PASIDS);
    assert!(more);
    assert_eq!(all.len(), MAX_HOST_PASIDS);
    assert_eq!(all[..3], [3, 6, 9]);
    // Part of the directory unreadable (a hole in guest memory): the rest
    // is still read, entry by entry.
    e.mem.unmap(dir, 8);
    let (some, _) = e.vtd.present_pasids(s, &e.mem, 4096);
    assert_eq!(some.first(), Some(&66));
    assert_eq!(some.len(), MAX_HOST_PASIDS + 10 - 21);
}

#[test]
fn which_invalidations_rebind_pasids() {
    use InvalidationEvent as E;
    assert_eq!(pasid_rebind(&E::PasidCachePasid { did: 1, pasid: 9 }), PasidRebind::Pasids(vec![9]));
    assert_eq!(pasid_rebind(&E::PasidCacheDomain { did: 1 }), PasidRebind::All);
    assert_eq!(pasid_rebind(&E::ContextDevice { sid: 3, fm: 0 }), PasidRebind::All);
    assert_eq!(pasid_rebind(&E::PasidIotlb { did: 1, pasid: 9 }), PasidRebind::Nothing);
    let one = PasidRebind::Pasids(vec![9]);
    assert_eq!(one.clone().union(PasidRebind::Pasids(vec![9, 4])), PasidRebind::Pasids(vec![9, 4]));
    assert_eq!(PasidRebind::Nothing.union(one.clone()), one);
    assert_eq!(one.union(PasidRebind::All), PasidRebind::All);
}
