//! Builders for scalable-mode structures (root/context entries, PASID
//! directory and table) and first-/second-stage page tables, on top of the
//! shared `common` harness.
#![allow(dead_code)]

use crate::common::{Env, TestMem, ROOT};
use vtd_core::registers::*;

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
    let mut re = e.mem.r64(half);
    if re & 1 == 0 {
        re = e.alloc_page() | 1;
        e.mem.w64(half, re);
    }
    (re & !0xfff) + (devfn & 0x7f) * 32
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
    sm_set_context(e, sid, [dir | (pdts << 9) | 1 | lo, rid_pasid | hi, 0, 0]);
    dir
}

/// Address of the PASID table entry for `pasid` under directory `dir`,
/// creating a present directory entry and table if needed.
pub fn pasid_entry_addr(e: &mut Env, dir: u64, pasid: u32) -> u64 {
    let de_addr = dir + u64::from(pasid >> 6) * 8;
    let mut de = e.mem.r64(de_addr);
    if de & 1 == 0 {
        de = e.alloc_page() | 1;
        e.mem.w64(de_addr, de);
    }
    (de & !0xfff) + u64::from(pasid & 0x3f) * 64
}

pub fn set_pasid_entry(e: &mut Env, dir: u64, pasid: u32, val: [u64; 8]) {
    let a = pasid_entry_addr(e, dir, pasid);
    for (i, v) in val.iter().enumerate() {
        e.mem.w64(a + 8 * i as u64, *v);
    }
}

/// PASID entry quadwords for the given PGTT, DID, second-stage root/AW and
/// first-stage root/flags (quadword 2 extra bits in `q2`).
pub fn pe(pgtt: u64, did: u16, ss_root: u64, aw: u64, fs_root: u64, q2: u64) -> [u64; 8] {
    [ss_root | pgtt | (aw << 2) | 1, u64::from(did), fs_root | q2, 0, 0, 0, 0, 0]
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
    let fx = e.w64(IQA, base | IQA_DW | qs);
    assert!(fx.is_empty(), "{fx:?}");
    e.w32(IQT, 0);
    let fx = e.gcmd(GCMD_QIE, 0);
    assert!(fx.is_empty(), "{fx:?}");
    assert_ne!(e.gsts() & GSTS_QIES, 0);
}

/// Write 256-bit descriptors at the current tail and move the tail.
pub fn submit256(e: &mut Env, descs: &[[u64; 4]]) -> vtd_core::Effects {
    let size = 1u64 << ((e.rd64(IQA) & 7) + 7);
    let mut tail = (e.rd64(IQT) >> 5) & 0x3fff;
    for d in descs {
        for (i, q) in d.iter().enumerate() {
            e.mem.w64(e.iq_base + tail * 32 + 8 * i as u64, *q);
        }
        tail = (tail + 1) % size;
    }
    e.w32(IQT, (tail << 5) as u32)
}

/// IQH.QH with 256-bit descriptors.
pub fn iq_head256(e: &mut Env) -> u64 {
    e.rd64(IQH) >> 5
}

/// A legacy descriptor in 256-bit form.
pub fn wide((lo, hi): (u64, u64)) -> [u64; 4] {
    [lo, hi, 0, 0]
}

/// PASID-cache invalidate, domain-selective.
pub fn d_pc_domain(did: u16) -> [u64; 4] {
    [0x7 | (u64::from(did) << 16), 0, 0, 0]
}

/// PASID-cache invalidate, PASID-selective within domain.
pub fn d_pc_pasid(did: u16, pasid: u32) -> [u64; 4] {
    [0x7 | (1 << 4) | (u64::from(did) << 16) | (u64::from(pasid) << 32), 0, 0, 0]
}

/// PASID-cache invalidate, global.
pub fn d_pc_global() -> [u64; 4] {
    [0x7 | (3 << 4), 0, 0, 0]
}

/// PASID-based IOTLB invalidate, PASID-selective within domain.
pub fn d_piotlb_pasid(did: u16, pasid: u32) -> [u64; 4] {
    [0x6 | (2 << 4) | (u64::from(did) << 16) | (u64::from(pasid) << 32), 0, 0, 0]
}

/// PASID-based IOTLB invalidate, page-selective within PASID.
pub fn d_piotlb_pages(did: u16, pasid: u32, addr: u64, am: u64, ih: bool) -> [u64; 4] {
    [
        0x6 | (3 << 4) | (u64::from(did) << 16) | (u64::from(pasid) << 32),
        addr | am | (u64::from(ih) << 6),
        0,
        0,
    ]
}
