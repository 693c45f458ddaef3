//! Builders for scalable-mode structures (root/context entries, PASID
//! directory and table) and first-/second-stage page tables, on top of the
//! shared `common` harness.
#![allow(dead_code)]

use crate::common::{Env, TestMem, ROOT};
use bilge::prelude::*;
use vtd_core::queues::inv_queue::{InvAddr, IqIndexReg, IqaReg, PasidDescQ0};
use vtd_core::registers::*;
use vtd_core::translation::scalable::{
    PasidDirEntry, PasidEntry, PasidQ0, PasidQ1, PasidQ2, SmContextEntry, SmContextQ0, SmContextQ1,
    SmRootEntry, SmRootHalf,
};

// First-stage entry flags.
pub const P: u64 = 1;
pub const RW: u64 = 1 << 1;
pub const US: u64 = 1 << 2;
pub const A: u64 = 1 << 5;
pub const D: u64 = 1 << 6;
pub const PS: u64 = 1 << 7;
pub const EA: u64 = 1 << 10;
/// Flags of a fully permissive intermediate first-stage entry.
pub const TABLE: u64 = P | RW | US;

/// PGTT encodings in place (PASID entry quadword 0).
pub const PGTT_FS: u64 = 1 << 6;
pub const PGTT_SS: u64 = 2 << 6;
pub const PGTT_NESTED: u64 = 3 << 6;
pub const PGTT_PT: u64 = 4 << 6;

/// Bump allocator of 4 KiB pages.
pub struct Alloc(pub u64);

impl Alloc {
    pub fn page(&mut self) -> u64 {
        let p = self.0;
        self.0 += 0x1000;
        p
    }
}

fn index(iova: u64, level: u8) -> u64 {
    (iova >> (12 + 9 * (u32::from(level) - 1))) & 0x1ff
}

/// Map `iova` to `phys` in first-stage tables rooted at `root`, with a leaf
/// at `leaf_level` carrying `leaf_flags` (PS added for large leaves).
/// Intermediate entries are created with `table_flags`; existing ones are
/// followed. `xlate` maps a table's (guest) address to where it is stored.
#[allow(clippy::too_many_arguments)]
pub fn fs_map_x(
    mem: &TestMem,
    alloc: &mut Alloc,
    xlate: &dyn Fn(u64) -> u64,
    root: u64,
    levels: u8,
    iova: u64,
    phys: u64,
    leaf_level: u8,
    leaf_flags: u64,
    table_flags: u64,
) {
    let mut table = root;
    let mut l = levels;
    loop {
        let a = xlate(table + index(iova, l) * 8);
        if l == leaf_level {
            let ps = if l > 1 { PS } else { 0 };
            mem.w64(a, phys | leaf_flags | ps);
            return;
        }
        let e = mem.r64(a);
        if e & P == 0 {
            let t = alloc.page();
            mem.w64(a, t | table_flags);
            table = t;
        } else {
            table = e & 0x000f_ffff_ffff_f000;
        }
        l -= 1;
    }
}

/// [`fs_map_x`] for tables stored at their own address.
#[allow(clippy::too_many_arguments)]
pub fn fs_map(
    mem: &TestMem,
    alloc: &mut Alloc,
    root: u64,
    levels: u8,
    iova: u64,
    phys: u64,
    leaf_level: u8,
    leaf_flags: u64,
) {
    fs_map_x(mem, alloc, &|a| a, root, levels, iova, phys, leaf_level, leaf_flags, TABLE);
}

/// Address of the first-stage entry for `iova` at `level` (tables must
/// exist down to that level).
pub fn fs_entry(mem: &TestMem, xlate: &dyn Fn(u64) -> u64, root: u64, levels: u8, iova: u64, level: u8) -> u64 {
    let mut table = root;
    let mut l = levels;
    loop {
        let a = xlate(table + index(iova, l) * 8);
        if l == level {
            return a;
        }
        table = mem.r64(a) & 0x000f_ffff_ffff_f000;
        l -= 1;
    }
}

/// Map `gpa` to `hpa` in second-stage tables rooted at `root` with a leaf
/// at `leaf_level` and permission `perm` (R = 1, W = 2); intermediate
/// entries are R|W.
#[allow(clippy::too_many_arguments)]
pub fn ss_map(mem: &TestMem, alloc: &mut Alloc, root: u64, levels: u8, gpa: u64, hpa: u64, leaf_level: u8, perm: u64) {
    let mut table = root;
    let mut l = levels;
    loop {
        let a = table + index(gpa, l) * 8;
        if l == leaf_level {
            let ps = if l > 1 { PS } else { 0 };
            mem.w64(a, hpa | perm | ps);
            return;
        }
        let e = mem.r64(a);
        if e & 3 == 0 {
            let t = alloc.page();
            mem.w64(a, t | 3);
            table = t;
        } else {
            table = e & 0x000f_ffff_ffff_f000;
        }
        l -= 1;
    }
}

// ---- scalable-mode structures on an Env ------------------------------

/// Latch ROOT as a scalable-mode root table and enable translation.
pub fn sm_enable(e: &mut Env) {
    e.w64(RTADDR, ROOT | (1 << 10));
    let fx = e.gcmd(GCMD_SRTP, 0);
    assert!(fx.guest_errors.is_empty(), "{fx:?}");
    assert!(e.vtd.root_table_scalable());
    e.gcmd(GCMD_TE, 0);
    assert!(e.vtd.translation_enabled());
}

/// Address of the 32-byte scalable context entry of `sid`, creating the
/// root-entry half (LP or UP) and its context table if needed.
pub fn sm_context_addr(e: &mut Env, sid: u16) -> u64 {
    let bus = u64::from(sid >> 8);
    let devfn = u64::from(sid & 0xff);
    let half = ROOT + bus * 16 + if devfn >= 128 { 8 } else { 0 };
    let mut re = SmRootEntry { lo: e.mem.r64(half), hi: 0 };
    if !re.lower_present() {
        let t = e.alloc_page();
        re = SmRootEntry::from_halves(SmRootHalf::new(true, u52::new(t >> 12)), SmRootHalf::from(0u64));
        e.mem.w64(half, re.lo);
    }
    re.lower_context_table() + (devfn & 0x7f) * 32
}

pub fn sm_set_context(e: &mut Env, sid: u16, val: [u64; 4]) {
    let a = sm_context_addr(e, sid);
    for (i, v) in val.iter().enumerate() {
        e.mem.w64(a + 8 * i as u64, *v);
    }
}

/// A present context entry with a fresh PASID directory (PDTS `pdts`) and
/// RID_PASID `rid_pasid`; `lo`/`hi` add flags. Returns the directory.
pub fn sm_setup_context(e: &mut Env, sid: u16, pdts: u64, rid_pasid: u64, lo: u64, hi: u64) -> u64 {
    let dir = e.alloc_page();
    for _ in 1..(1u64 << (pdts + 7)) * 8 / 4096 {
        e.alloc_page();
    }
    let ce = SmContextEntry::from_words(
        SmContextQ0::new(true, false, false, false, false, u3::new(pdts as u8), u52::new(dir >> 12)),
        SmContextQ1::new(u20::new(rid_pasid as u32), false),
    );
    sm_set_context(e, sid, [ce.val[0] | lo, ce.val[1] | hi, 0, 0]);
    dir
}

/// Address of the PASID table entry for `pasid` under directory `dir`,
/// creating a present directory entry and table if needed.
pub fn pasid_entry_addr(e: &mut Env, dir: u64, pasid: u32) -> u64 {
    let de_addr = dir + u64::from(pasid >> 6) * 8;
    let mut de = PasidDirEntry(e.mem.r64(de_addr));
    if !de.present() {
        let t = e.alloc_page();
        de = PasidDirEntry(vtd_core::translation::scalable::PasidDirWord::new(true, false, u52::new(t >> 12)).into());
        e.mem.w64(de_addr, de.0);
    }
    de.pasid_table() + u64::from(pasid & 0x3f) * 64
}

pub fn set_pasid_entry(e: &mut Env, dir: u64, pasid: u32, val: [u64; 8]) {
    let a = pasid_entry_addr(e, dir, pasid);
    for (i, v) in val.iter().enumerate() {
        e.mem.w64(a + 8 * i as u64, *v);
    }
}

/// PASID entry quadwords for the given PGTT (one of the `PGTT_*` values, in
/// place), DID, second-stage root/AW and first-stage root/flags (quadword 2
/// extra bits in `q2`), built from the crate's layouts.
pub fn pe(pgtt: u64, did: u16, ss_root: u64, aw: u64, fs_root: u64, q2: u64) -> [u64; 8] {
    let pgtt = PasidQ0::from(pgtt).pgtt();
    let mut q0 = PasidQ0::from(0u64);
    q0.set_present(true);
    q0.set_aw(u3::new(aw as u8));
    q0.set_pgtt(pgtt);
    q0.set_ssptptr(u52::new(ss_root >> 12));
    let mut q1 = PasidQ1::from(0u64);
    q1.set_did(did);
    let mut q2w = PasidQ2::from(q2);
    q2w.set_fsptptr(u52::new(fs_root >> 12));
    PasidEntry::from_words(q0, q1, q2w).val
}

// ---- 256-bit queued invalidation ----------------------------------------

/// Enable QI with 256-bit descriptors and a queue of 2^qs pages
/// (2^(qs+7) entries).
pub fn enable_qi256(e: &mut Env, qs: u64) {
    let base = e.alloc_page();
    for _ in 1..(1u64 << qs) {
        e.alloc_page();
    }
    e.iq_base = base;
    let fx = e.w64(IQA, IqaReg::new(u3::new(qs as u8), true, u52::new(base >> 12)).into());
    assert!(fx.is_empty(), "{fx:?}");
    e.w32(IQT, 0);
    let fx = e.gcmd(GCMD_QIE, 0);
    assert!(fx.is_empty(), "{fx:?}");
    assert_ne!(e.gsts() & GSTS_QIES, 0);
}

/// Write 256-bit descriptors at the current tail and move the tail.
pub fn submit256(e: &mut Env, descs: &[[u64; 4]]) -> vtd_core::Effects {
    let size = 1u64 << (IqaReg::from(e.rd64(IQA)).qs().value() + 7);
    // QT counts 16-byte units: a 256-bit descriptor is two.
    let mut tail = u64::from(IqIndexReg::from(e.rd64(IQT)).q().value() >> 1);
    for d in descs {
        for (i, q) in d.iter().enumerate() {
            e.mem.w64(e.iq_base + tail * 32 + 8 * i as u64, *q);
        }
        tail = (tail + 1) % size;
    }
    e.w32(IQT, u64::from(IqIndexReg::new(u15::new((tail << 1) as u16))) as u32)
}

/// IQH.QH with 256-bit descriptors.
pub fn iq_head256(e: &mut Env) -> u64 {
    u64::from(IqIndexReg::from(e.rd64(IQH)).q().value() >> 1)
}

/// A legacy descriptor in 256-bit form.
pub fn wide((lo, hi): (u64, u64)) -> [u64; 4] {
    [lo, hi, 0, 0]
}

/// Quadword 0 of a PASID-cache (type 7) or PASID-based IOTLB (type 6)
/// invalidate descriptor, from the crate's layout.
fn pasid_desc(ty: u8, g: u8, did: u16, pasid: u32) -> u64 {
    PasidDescQ0::new(u4::new(ty), u2::new(g), u3::new(0), did, u20::new(pasid)).into()
}

/// PASID-cache invalidate, domain-selective.
pub fn d_pc_domain(did: u16) -> [u64; 4] {
    [pasid_desc(7, 0, did, 0), 0, 0, 0]
}

/// PASID-cache invalidate, PASID-selective within domain.
pub fn d_pc_pasid(did: u16, pasid: u32) -> [u64; 4] {
    [pasid_desc(7, 1, did, pasid), 0, 0, 0]
}

/// PASID-cache invalidate, global.
pub fn d_pc_global() -> [u64; 4] {
    [pasid_desc(7, 3, 0, 0), 0, 0, 0]
}

/// PASID-based IOTLB invalidate, PASID-selective within domain.
pub fn d_piotlb_pasid(did: u16, pasid: u32) -> [u64; 4] {
    [pasid_desc(6, 2, did, pasid), 0, 0, 0]
}

/// PASID-based IOTLB invalidate, page-selective within PASID.
pub fn d_piotlb_pages(did: u16, pasid: u32, addr: u64, am: u64, ih: bool) -> [u64; 4] {
    let mut a = InvAddr::from(addr);
    a.set_am(u6::new(am as u8));
    a.set_ih(ih);
    [pasid_desc(6, 3, did, pasid), a.into(), 0, 0]
}
