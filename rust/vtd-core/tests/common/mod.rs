//! Shared test harness: a sparse fake guest memory, table builders and a
//! thin driver around `Vtd`.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::HashMap;

use bilge::prelude::*;
use vtd_core::queues::inv_queue::{CcmdReg, InvAddr, IotlbReg};
use vtd_core::registers::*;
use vtd_core::translation::page_walk::SsPte;
use vtd_core::translation::root_context::{ContextEntry, ContextHi, ContextLo, RootEntry, TranslationType};
use vtd_core::{Config, Effects, Fault, GuestMemory, MemError, Request, Translation, Vtd};

/// Sparse little-endian guest memory with optional unmapped ranges.
#[derive(Default)]
pub struct TestMem {
    pages: RefCell<HashMap<u64, Box<[u8; 4096]>>>,
    holes: RefCell<Vec<(u64, u64)>>,
}

impl TestMem {
    pub fn new() -> Self {
        Self::default()
    }

    /// Make [start, start+len) fail every access.
    pub fn unmap(&self, start: u64, len: u64) {
        self.holes.borrow_mut().push((start, start + len));
    }

    fn hole(&self, a: u64) -> bool {
        self.holes.borrow().iter().any(|&(s, e)| a >= s && a < e)
    }

    pub fn w64(&self, addr: u64, v: u64) {
        self.write(addr, &v.to_le_bytes()).expect("test write");
    }

    pub fn r64(&self, addr: u64) -> u64 {
        self.read_u64(addr).expect("test read")
    }

    pub fn r32(&self, addr: u64) -> u32 {
        self.read_u32(addr).expect("test read")
    }
}

impl GuestMemory for TestMem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let pages = self.pages.borrow();
        for (i, b) in buf.iter_mut().enumerate() {
            let a = addr.checked_add(i as u64).ok_or(MemError)?;
            if self.hole(a) {
                return Err(MemError);
            }
            *b = pages.get(&(a >> 12)).map_or(0, |p| p[(a & 0xfff) as usize]);
        }
        Ok(())
    }

    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemError> {
        let mut pages = self.pages.borrow_mut();
        for (i, b) in buf.iter().enumerate() {
            let a = addr.checked_add(i as u64).ok_or(MemError)?;
            if self.hole(a) {
                return Err(MemError);
            }
            pages.entry(a >> 12).or_insert_with(|| Box::new([0; 4096]))[(a & 0xfff) as usize] = *b;
        }
        Ok(())
    }
}

// Register bits as the specification numbers them, independent of the
// crate's layouts (the tests check the layouts against them).
pub const CCMD_ICC: u64 = 1 << 63;
pub const CCMD_CAIG_MASK: u64 = 3 << 59;
pub const IOTLB_IVT: u64 = 1 << 63;
pub const IOTLB_IAIG_MASK: u64 = 3 << 57;
pub const IQA_DW: u64 = 1 << 11;
/// FRCD bit 127 (F), in the record's high quadword.
pub const FRCD_F: u64 = 1 << 63;
/// FRCD bit 126 (T: 1 = read), in the record's high quadword.
pub const FRCD_T: u64 = 1 << 62;

pub const ROOT: u64 = 0x10_0000;
pub const R: u64 = 1;
pub const W: u64 = 2;
pub const RW: u64 = 3;
pub const PS: u64 = 1 << 7;

/// Test driver: a `Vtd` plus its memory and a page allocator.
pub struct Env {
    pub vtd: Vtd,
    pub mem: TestMem,
    next_page: u64,
    pub iq_base: u64,
}

/// A legacy context entry built from the crate's layouts: present,
/// `levels`-level second-stage tables at `pgd`, domain `did`.
pub fn legacy_context(pgd: u64, tt: TranslationType, levels: u8, did: u16) -> ContextEntry {
    ContextEntry::from_words(
        ContextLo::new(true, false, tt, u52::new(pgd >> 12)),
        ContextHi::new(u3::new(levels - 2), u4::new(0), did),
    )
}

/// A second-stage paging entry built from the layout: `addr` (4 KiB
/// aligned; other bits it carries, such as ignored ones a test sets, stay)
/// with R, W, and PS for a superpage leaf.
pub fn ss_pte(addr: u64, r: bool, w: bool, ps: bool) -> u64 {
    let mut e = SsPte::from(addr);
    e.set_r(r);
    e.set_w(w);
    e.set_ps(ps);
    e.into()
}

pub fn sid(bus: u8, dev: u8, func: u8) -> u16 {
    (u16::from(bus) << 8) | (u16::from(dev) << 3) | u16::from(func)
}

impl Env {
    pub fn new() -> Env {
        Env::with(Config::default())
    }

    pub fn with(cfg: Config) -> Env {
        cfg.validate().unwrap();
        Env { vtd: Vtd::new(cfg), mem: TestMem::new(), next_page: 0x20_0000, iq_base: 0 }
    }

    pub fn alloc_page(&mut self) -> u64 {
        let p = self.next_page;
        self.next_page += 0x1000;
        p
    }

    // ---- registers --------------------------------------------------

    pub fn wr(&mut self, off: u64, size: u32, val: u64) -> Effects {
        self.vtd.write_reg(off, size, val, &self.mem)
    }

    pub fn w32(&mut self, off: u64, val: u32) -> Effects {
        self.wr(off, 4, u64::from(val))
    }

    pub fn w64(&mut self, off: u64, val: u64) -> Effects {
        self.wr(off, 8, val)
    }

    pub fn rd32(&mut self, off: u64) -> u32 {
        self.vtd.read_reg(off, 4) as u32
    }

    pub fn rd64(&mut self, off: u64) -> u64 {
        self.vtd.read_reg(off, 8)
    }

    pub fn gsts(&mut self) -> u32 {
        self.rd32(GSTS)
    }

    pub fn fsts(&mut self) -> u32 {
        self.rd32(FSTS)
    }

    /// Issue a GCMD write the way Linux does: current status plus `bits`
    /// minus `clear`.
    pub fn gcmd(&mut self, set: u32, clear: u32) -> Effects {
        let sts = self.gsts() & (GSTS_TES | GSTS_QIES | GSTS_IRES);
        self.w32(GCMD, (sts | set) & !clear)
    }

    /// Program the root table pointer and enable translation.
    pub fn enable(&mut self) {
        self.w64(RTADDR, ROOT);
        assert!(self.gcmd(GCMD_SRTP, 0).guest_errors.is_empty());
        assert!(self.gcmd(GCMD_TE, 0).guest_errors.is_empty());
        assert_ne!(self.gsts() & GSTS_TES, 0);
    }

    // ---- tables -----------------------------------------------------

    pub fn set_root_entry(&mut self, bus: u8, lo: u64, hi: u64) {
        self.mem.w64(ROOT + u64::from(bus) * 16, lo);
        self.mem.w64(ROOT + u64::from(bus) * 16 + 8, hi);
    }

    /// Context table of `bus`, creating a present root entry if needed.
    pub fn context_table(&mut self, bus: u8) -> u64 {
        let re = RootEntry { lo: self.mem.r64(ROOT + u64::from(bus) * 16), hi: 0 };
        if re.present() {
            return re.context_table();
        }
        let t = self.alloc_page();
        let re = RootEntry::new(true, t);
        self.set_root_entry(bus, re.lo, re.hi);
        t
    }

    pub fn context_entry_addr(&mut self, sid: u16) -> u64 {
        let t = self.context_table((sid >> 8) as u8);
        t + u64::from(sid & 0xff) * 16
    }

    pub fn set_context(&mut self, sid: u16, lo: u64, hi: u64) {
        let a = self.context_entry_addr(sid);
        self.mem.w64(a, lo);
        self.mem.w64(a + 8, hi);
    }

    pub fn new_pgd(&mut self) -> u64 {
        self.alloc_page()
    }

    /// Context entry for second-stage translation with `levels` levels.
    pub fn setup_device(&mut self, sid: u16, did: u16, levels: u8) -> u64 {
        let pgd = self.new_pgd();
        let ce = legacy_context(pgd, TranslationType::SecondStage, levels, did);
        self.set_context(sid, ce.lo, ce.hi);
        pgd
    }

    /// Address of the entry for `iova` at `level`, creating intermediate
    /// tables (R|W) as needed.
    pub fn pte_addr(&mut self, pgd: u64, levels: u8, iova: u64, level: u8) -> u64 {
        let mut table = pgd;
        let mut l = levels;
        loop {
            let idx = (iova >> (12 + 9 * (u32::from(l) - 1))) & 0x1ff;
            let a = table + idx * 8;
            if l == level {
                return a;
            }
            let e = SsPte::from(self.mem.r64(a));
            if !e.r() && !e.w() {
                let t = self.alloc_page();
                self.mem.w64(a, ss_pte(t, true, true, false));
                table = t;
            } else {
                table = e.addr().value() << 12;
            }
            l -= 1;
        }
    }

    /// Map `iova` to `phys` with a leaf at `level` (1 = 4K, 2 = 2M, 3 = 1G);
    /// `perm` is R, W or RW.
    pub fn map(&mut self, pgd: u64, levels: u8, iova: u64, phys: u64, level: u8, perm: u64) {
        let a = self.pte_addr(pgd, levels, iova, level);
        self.mem.w64(a, ss_pte(phys, perm & R != 0, perm & W != 0, level > 1));
    }

    pub fn tr(&mut self, sid: u16, iova: u64, write: bool) -> (Result<Translation, Fault>, Effects) {
        let req = Request { sid, iova, write };
        self.vtd.translate(&req, &self.mem)
    }

    pub fn phys(&mut self, sid: u16, iova: u64) -> u64 {
        let t = self.tr(sid, iova, false).0.expect("translation");
        t.output(iova)
    }

    pub fn fault_code(&mut self, sid: u16, iova: u64, write: bool) -> u8 {
        self.tr(sid, iova, write).0.expect_err("fault").reason.code()
    }

    // ---- register-based invalidation -----------------------------------

    /// Returns the CCMD value read back after the command.
    pub fn ccmd(&mut self, val: u64) -> u64 {
        let mut r = CcmdReg::from(val);
        r.set_icc(true);
        self.w64(CCMD, r.into());
        self.rd64(CCMD)
    }

    fn ccmd_with(&mut self, cirg: u8, did: u16, sid: u16, fm: u8) -> u64 {
        let mut r = CcmdReg::from(0u64);
        r.set_cirg(u2::new(cirg));
        r.set_did(did);
        r.set_sid(sid);
        r.set_fm(u2::new(fm));
        self.ccmd(r.into())
    }

    pub fn cc_global(&mut self) -> u64 {
        self.ccmd_with(1, 0, 0, 0)
    }

    pub fn cc_domain(&mut self, did: u16) -> u64 {
        self.ccmd_with(2, did, 0, 0)
    }

    pub fn cc_device(&mut self, sid: u16, fm: u64) -> u64 {
        self.ccmd_with(3, 0, sid, fm as u8)
    }

    /// Returns the IOTLB register read back after the command.
    pub fn iotlb_reg(&mut self, val: u64, iva: u64) -> u64 {
        self.w64(IVA, iva);
        let mut r = IotlbReg::from(val);
        r.set_ivt(true);
        self.w64(IOTLB, r.into());
        self.rd64(IOTLB)
    }

    fn iotlb_with(&mut self, iirg: u8, did: u16, iva: u64) -> u64 {
        let mut r = IotlbReg::from(0u64);
        r.set_iirg(u2::new(iirg));
        r.set_did(did);
        self.iotlb_reg(r.into(), iva)
    }

    pub fn iotlb_global(&mut self) -> u64 {
        self.iotlb_with(1, 0, 0)
    }

    pub fn iotlb_domain(&mut self, did: u16) -> u64 {
        self.iotlb_with(2, did, 0)
    }

    /// `addr` page aligned, `am` the address mask (IVA's AM field).
    pub fn iotlb_pages(&mut self, did: u16, addr: u64, am: u64) -> u64 {
        let mut iva = InvAddr::from(addr);
        iva.set_am(u6::new(am as u8));
        self.iotlb_with(3, did, iva.into())
    }

    // ---- queued invalidation -------------------------------------------

    /// Enable QI with a queue of 2^(qs+8) entries.
    pub fn enable_qi(&mut self, qs: u64) {
        let pages = 1u64 << (qs + 8) >> 8;
        let base = self.alloc_page();
        for _ in 1..pages {
            self.alloc_page();
        }
        self.iq_base = base;
        self.w64(IQA, base | qs);
        self.w32(IQT, 0);
        let fx = self.gcmd(GCMD_QIE, 0);
        assert!(fx.is_empty(), "{fx:?}");
        assert_ne!(self.gsts() & GSTS_QIES, 0);
    }

    /// Write descriptors at the current tail and move the tail.
    pub fn submit(&mut self, descs: &[(u64, u64)]) -> Effects {
        let size = 1u64 << ((self.rd64(IQA) & 7) + 8);
        let mut tail = (self.rd64(IQT) >> 4) & 0x7fff;
        for &(lo, hi) in descs {
            self.mem.w64(self.iq_base + tail * 16, lo);
            self.mem.w64(self.iq_base + tail * 16 + 8, hi);
            tail = (tail + 1) % size;
        }
        self.w32(IQT, (tail << 4) as u32)
    }

    pub fn iq_head(&mut self) -> u64 {
        self.rd64(IQH) >> 4
    }
}

// Descriptor builders (legacy 128-bit).
pub fn d_cc_global() -> (u64, u64) {
    (0x1 | (1 << 4), 0)
}
pub fn d_cc_domain(did: u16) -> (u64, u64) {
    (0x1 | (2 << 4) | (u64::from(did) << 16), 0)
}
pub fn d_cc_device(sid: u16, fm: u64) -> (u64, u64) {
    (0x1 | (3 << 4) | (u64::from(sid) << 32) | (fm << 48), 0)
}
pub fn d_iotlb_global() -> (u64, u64) {
    (0x2 | (1 << 4), 0)
}
pub fn d_iotlb_domain(did: u16) -> (u64, u64) {
    (0x2 | (2 << 4) | (u64::from(did) << 16), 0)
}
pub fn d_iotlb_pages(did: u16, addr: u64, am: u64, ih: bool) -> (u64, u64) {
    (0x2 | (3 << 4) | (u64::from(did) << 16), addr | am | (u64::from(ih) << 6))
}
pub fn d_wait(sw: bool, intr: bool, fence: bool, data: u32, addr: u64) -> (u64, u64) {
    (
        0x5 | (u64::from(intr) << 4) | (u64::from(sw) << 5) | (u64::from(fence) << 6)
            | (u64::from(data) << 32),
        addr,
    )
}
pub fn d_iec_global() -> (u64, u64) {
    (0x4, 0)
}

/// Tiny xorshift64* PRNG for randomized tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

// ---- notified address spaces (randomized tests) -----------------------------

use std::collections::BTreeMap;
use vtd_core::{NotifierEvent, NotifierKind, Shadow, SyncOutcome};

/// A notified address space as the glue keeps it, plus a mirror of what a
/// vfio-like consumer holds after applying the events it was sent.
pub struct Notified {
    pub sid: u16,
    pub pasid: Option<u32>,
    pub shadow: Shadow,
    /// iova -> (size, phys, perm) as applied by the consumer.
    pub mirror: BTreeMap<u64, (u64, u64, vtd_core::Perm)>,
}

impl Notified {
    pub fn new(sid: u16, pasid: Option<u32>, walk_limit: u64) -> Notified {
        Notified { sid, pasid, shadow: Shadow::with_walk_limit(walk_limit), mirror: BTreeMap::new() }
    }

    /// Apply sync output like vfio would: a MAP must not overlap anything
    /// mapped, an UNMAP must remove exactly one whole mapping. Then the
    /// mirror must equal the shadow.
    pub fn apply(&mut self, out: &SyncOutcome) {
        for ev in &out.events {
            check_event(ev);
            match ev.kind {
                NotifierKind::Map => {
                    let last = ev.iova + (ev.size - 1);
                    let overlap = self
                        .mirror
                        .range(..=last)
                        .next_back()
                        .is_some_and(|(k, (s, _, _))| k + (s - 1) >= ev.iova);
                    assert!(!overlap, "MAP over an existing mapping: {ev:?}");
                    assert!(ev.perm.read || ev.perm.write, "MAP without permission: {ev:?}");
                    self.mirror.insert(ev.iova, (ev.size, ev.phys, ev.perm));
                }
                NotifierKind::Unmap => {
                    let old = self.mirror.remove(&ev.iova);
                    assert_eq!(old.map(|(s, p, _)| (s, p)), Some((ev.size, ev.phys)), "UNMAP of nothing: {ev:?}");
                }
            }
        }
        if out.events.is_empty() && self.shadow.len() == self.mirror.len() {
            return;
        }
        let shadow: Vec<_> = self.shadow.iter().map(|(k, e)| (k, (e.size, e.phys, e.perm))).collect();
        let mirror: Vec<_> = self.mirror.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(shadow, mirror, "shadow and consumer disagree");
        if out.mode.is_identity() {
            assert!(self.shadow.is_empty());
        }
    }
}

/// Events are naturally aligned power-of-two ranges of at least 4 KiB.
pub fn check_event(ev: &NotifierEvent) {
    assert!(ev.size.is_power_of_two() && ev.size >= 0x1000, "{ev:?}");
    assert_eq!(ev.iova & (ev.size - 1), 0, "{ev:?}");
    assert_eq!(ev.phys & (ev.size - 1), 0, "{ev:?}");
}

/// Feed the invalidations of `fx` to every notified address space.
pub fn notify_all(vtd: &Vtd, mem: &dyn GuestMemory, fx: &Effects, spaces: &mut [Notified]) {
    for ev in &fx.invalidations {
        for n in spaces.iter_mut() {
            let out = vtd.sync_shadow(n.sid, n.pasid, ev, &mut n.shadow, mem);
            n.apply(&out);
        }
    }
}

/// `vtd.translate(req)`, checking the cache-only answer against it: when
/// `translate_cached` answers, the full path must give the same
/// translation, and no effects.
#[allow(dead_code)]
pub fn translate_checked(
    vtd: &mut vtd_core::Vtd,
    req: &vtd_core::Request,
    mem: &dyn vtd_core::GuestMemory,
) -> (Result<vtd_core::Translation, vtd_core::Fault>, vtd_core::Effects) {
    let lookup = vtd.lookup_cached(req);
    let cached = lookup.ok();
    assert_eq!(cached, vtd.translate_cached(req));
    // Without a cached answer, the path that skips what the lookup already
    // did must give what the full path gives (on a copy: both record faults).
    let uncached = lookup.err().map(|miss| vtd.clone().translate_miss(req, miss, mem));
    let (r, fx) = vtd.translate(req, mem);
    if let Some(u) = uncached {
        assert_eq!(u, (r, fx.clone()), "translate_miss disagrees for {req:?}");
    }
    if let Some(t) = cached {
        assert_eq!(r, Ok(t), "translate_cached disagrees with translate for {req:?}");
        assert!(fx.is_empty(), "a cached translation of {req:?} had effects {fx:?}");
    }
    (r, fx)
}

/// `vtd.translate_ats(req)`, checking `translate_ats_cached` the same way.
#[allow(dead_code)]
pub fn translate_ats_checked(
    vtd: &mut vtd_core::Vtd,
    req: &vtd_core::AtsRequest,
    mem: &dyn vtd_core::GuestMemory,
) -> (vtd_core::AtsResult, vtd_core::Effects) {
    let cached = vtd.translate_ats_cached(req);
    let (r, fx) = vtd.translate_ats(req, mem);
    if let Some(t) = cached {
        assert_eq!(r, vtd_core::AtsResult::Success(t), "translate_ats_cached disagrees for {req:?}");
        assert!(fx.is_empty(), "a cached ATS translation of {req:?} had effects {fx:?}");
    }
    (r, fx)
}
