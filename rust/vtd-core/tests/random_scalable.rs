//! Randomized robustness of scalable mode: random (and randomly corrupted)
//! scalable root/context entries, PASID directories and tables, first- and
//! second-stage tables, random register traffic and random DMA must never
//! panic (tests run with overflow checks), and successful translations
//! stay well formed.

mod common;
use common::{notify_all, Notified, Rng, FRCD_F, IQA_DW};
use std::cell::RefCell;
use std::collections::HashMap;
use vtd_core::translation::first_stage::{fs_walk, nested_walk, FsAccess, FsControls, FsTable, FsWalkConfig, SsTable};
use vtd_core::translation::page_walk::WalkConfig;
use vtd_core::registers::*;
use vtd_core::{AtsRequest, AtsResult, Config, Effects, GuestMemory, MemError, PasidRequest, Request, Vtd};

const WINDOW_PAGES: u64 = 64;
const BASE: u64 = 0x100_0000;

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Every 8-byte word is derived from its address: mostly values that look
/// like present entries pointing inside a small window of pages, with
/// plausible low flag bits for every structure type; some pages unmapped.
/// Writes go to an overlay of whole words.
struct RandomMem {
    seed: u64,
    overlay: RefCell<HashMap<u64, u64>>,
}

impl RandomMem {
    fn new(seed: u64) -> RandomMem {
        RandomMem { seed: mix(seed), overlay: RefCell::new(HashMap::new()) }
    }

    fn word(&self, waddr: u64) -> u64 {
        let h = mix(waddr ^ self.seed);
        let g = mix(h);
        let page = BASE + ((g % WINDOW_PAGES) << 12);
        // Flags: first-stage P|RW|US (+A/D/PS), second-stage R/W, PASID
        // entry PGTT 1..4 with AW 1/2, context PDTS, ...
        const FLAGS: [u64; 12] = [
            0x7, 0x27, 0x67, 0x87, 0x3, 0x1, 0x2, 0x1 | (1 << 6), 0x1 | (2 << 6) | (2 << 2),
            0x1 | (3 << 6) | (2 << 2), 0x1 | (4 << 6), 0x1 | (1 << 9),
        ];
        match h % 16 {
            0 => 0,
            1 => g,
            2 => page | (g >> 54),
            3 => ((g % 8) << 21) | 0x87,
            4 => ((g % 8) << 30) | 0x87,
            5 => g % 4,
            6 => (g % 64) | (g & (1 << 20)),
            _ => page | FLAGS[((g >> 40) % FLAGS.len() as u64) as usize],
        }
    }

    fn unmapped(&self, addr: u64) -> bool {
        mix((addr >> 12) ^ self.seed ^ 0x5a5a) % 17 == 0
    }

    fn current(&self, waddr: u64) -> u64 {
        match self.overlay.borrow().get(&waddr) {
            Some(w) => *w,
            None => self.word(waddr),
        }
    }

    fn byte(&self, a: u64) -> Result<u8, MemError> {
        if self.unmapped(a) {
            return Err(MemError);
        }
        Ok((self.current(a >> 3) >> ((a & 7) * 8)) as u8)
    }
}

impl GuestMemory for RandomMem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.byte(addr.wrapping_add(i as u64))?;
        }
        Ok(())
    }

    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemError> {
        if addr & 7 == 0 && buf.len() == 8 {
            if self.unmapped(addr) {
                return Err(MemError);
            }
            let mut w = [0u8; 8];
            w.copy_from_slice(buf);
            self.overlay.borrow_mut().insert(addr >> 3, u64::from_le_bytes(w));
            return Ok(());
        }
        for (i, b) in buf.iter().enumerate() {
            let a = addr.wrapping_add(i as u64);
            if self.unmapped(a) {
                return Err(MemError);
            }
            let shift = (a & 7) * 8;
            let w = (self.current(a >> 3) & !(0xff << shift)) | (u64::from(*b) << shift);
            self.overlay.borrow_mut().insert(a >> 3, w);
        }
        Ok(())
    }
}

fn put(mem: &RandomMem, rng: &mut Rng, addr: u64, val: u64) {
    let v = if rng.chance(10) { val ^ (1 << rng.below(64)) } else { val };
    let _ = mem.write_u64(addr, v);
}

/// Build a mostly valid scalable root table for bus 0 with PASID
/// structures for RID_PASIDs of devfn 0..8 and 0x80..0x88, and
/// first-/second-stage tables for a few addresses; returns the root.
fn build(mem: &RandomMem, rng: &mut Rng, iovas: &mut Vec<u64>) -> u64 {
    mem.overlay.borrow_mut().clear();
    let mut next = 0x400_0000 + (rng.below(64) << 24);
    let mut alloc = || {
        next += 0x1000;
        next
    };
    let root = alloc();
    let (lo_ctx, hi_ctx) = (alloc(), alloc());
    put(mem, rng, root, lo_ctx | 1);
    let up = u64::from(!rng.chance(4));
    put(mem, rng, root + 8, hi_ctx | up);
    for devfn in (0..8u64).chain(0x80..0x88) {
        let ctx = if devfn & 0x80 != 0 { hi_ctx } else { lo_ctx };
        let ce = ctx + (devfn & 0x7f) * 32;
        let dir = alloc();
        let pdts = rng.below(8);
        let rid_pasid = [0u64, 0, 1, 63, 64, 8191, 8192, rng.below(1 << 20)][rng.below(8) as usize];
        let fpd = u64::from(rng.chance(6)) << 1;
        let rid_priv = u64::from(rng.chance(4)) << 20;
        let paside = rng.below(2) << 3;
        put(mem, rng, ce, dir | (pdts << 9) | fpd | 1 | paside);
        put(mem, rng, ce + 8, rid_pasid | rid_priv);
        put(mem, rng, ce + 16, 0);
        put(mem, rng, ce + 24, 0);
        let table = alloc();
        let dir_fpd = u64::from(rng.chance(8)) << 1;
        put(mem, rng, dir + (rid_pasid >> 6) * 8, table | 1 | dir_fpd);
        let pe = table + (rid_pasid & 0x3f) * 64;
        let pgtt = [1u64, 1, 2, 2, 3, 3, 4, 0, 5][rng.below(9) as usize];
        let aw = [2u64, 2, 1, 3][rng.below(4) as usize];
        let (fs, ss) = (alloc(), alloc());
        put(mem, rng, pe, ss | (pgtt << 6) | (aw << 2) | 1);
        let did = rng.below(4) + 1;
        put(mem, rng, pe + 8, did);
        let q2 = rng.below(2) | (rng.below(2) << 4) | if rng.chance(8) { 1 << 2 } else { 0 };
        put(mem, rng, pe + 16, fs | q2);
        for q in 3..8 {
            put(mem, rng, pe + 8 * q, 0);
        }
        // First-stage tables: 4 levels, flags mostly permissive.
        for _ in 0..3 {
            let iova = (rng.below(1 << 36) << 12) & 0x7fff_ffff_ffff;
            let iova = if rng.chance(4) { iova | 0xffff_8000_0000_0000 } else { iova };
            iovas.push(iova);
            let leaf = [1u32, 1, 2, 3][rng.below(4) as usize];
            let mut t = fs;
            for l in (1..=4u32).rev() {
                let idx = (iova >> (12 + 9 * (l - 1))) & 0x1ff;
                let flags = [0x7u64, 0x7, 0x27, 0x5, 0x3, 0x6][rng.below(6) as usize];
                if l == leaf {
                    let phys = rng.below(1 << 20) << (12 + 9 * (l - 1));
                    let ps = if l > 1 { 0x80 } else { 0 };
                    put(mem, rng, t + idx * 8, (phys & 0xffff_ffff_f000) | flags | ps);
                    break;
                }
                let n = alloc();
                put(mem, rng, t + idx * 8, n | flags);
                t = n;
            }
            // Second-stage identity-ish tables for the same address.
            let levels = aw as u32 + 2;
            let mut t = ss;
            for l in (1..=levels.min(4)).rev() {
                let idx = (iova >> (12 + 9 * (l - 1))) & 0x1ff;
                let perm = [3u64, 3, 1, 2, 0][rng.below(5) as usize];
                if l == 1 || rng.chance(6) {
                    let ps = if l > 1 { 0x80 } else { 0 };
                    let phys = rng.below(1 << 20) << (12 + 9 * (l - 1));
                    put(mem, rng, t + idx * 8, (phys & 0xffff_ffff_f000) | perm | ps);
                    break;
                }
                let n = alloc();
                put(mem, rng, t + idx * 8, n | perm);
                t = n;
            }
        }
    }
    root
}

struct Stats {
    ok: u32,
    codes: Vec<u32>,
}

fn run(seed: u64, iterations: u32, cfg: Config) -> Stats {
    let mut st = Stats { ok: 0, codes: vec![0; 256] };
    let mut rng = Rng(seed | 1);
    let mem = RandomMem::new(seed);
    let mut vtd = Vtd::new(cfg);
    let mut iovas = Vec::new();
    for _ in 0..iterations {
        match rng.below(10) {
            0 | 1 => {
                let off = [GCMD, RTADDR, FSTS, FECTL, IOTLB, IVA, FRCD_REG_OFFSET + 8, CCMD]
                    [rng.below(8) as usize];
                let val = match rng.below(4) {
                    0 => rng.next(),
                    1 => u64::from(GCMD_SRTP | GCMD_TE),
                    2 => (rng.below(WINDOW_PAGES) << 12) | BASE | (rng.below(4) << 10),
                    _ => u64::from(FSTS_PFO) | FRCD_F,
                };
                let _ = vtd.write_reg(off, [4, 8][rng.below(2) as usize], val, &mem);
            }
            2..=7 => {
                let sid = if rng.chance(2) { rng.below(8) as u16 } else { 0x80 + rng.below(8) as u16 };
                let sid = if rng.chance(10) { rng.next() as u16 } else { sid };
                let iova = match rng.below(4) {
                    0 if !iovas.is_empty() => iovas[rng.below(iovas.len() as u64) as usize] | rng.below(0x20_0000),
                    1 => rng.next(),
                    2 => rng.below(1 << 48),
                    _ => BASE + rng.below(WINDOW_PAGES << 12),
                };
                let req = Request { sid, iova, write: rng.chance(2) };
                let (r, _fx) = common::translate_checked(&mut vtd, &req, &mem);
                match r {
                    Ok(t) => {
                        if vtd.translation_enabled() {
                            st.ok += 1;
                        }
                        assert_eq!(t.iova & t.page_mask, 0);
                        assert_eq!(t.phys & t.page_mask, 0);
                        assert!([0xfff, 0x1f_ffff, 0x3fff_ffff].contains(&t.page_mask));
                        assert_eq!(t.iova, iova & !t.page_mask);
                        assert!(t.perm.read || t.perm.write);
                    }
                    Err(f) => st.codes[usize::from(f.reason.code())] += 1,
                }
            }
            _ => {
                if rng.chance(40) {
                    vtd.reset();
                }
                iovas.clear();
                let root = build(&mem, &mut rng, &mut iovas);
                let ttm = if rng.chance(8) { rng.below(4) } else { 1 };
                let _ = vtd.write_reg(RTADDR, 8, root | (ttm << 10), &mem);
                let _ = vtd.write_reg(GCMD, 4, u64::from(GCMD_SRTP | GCMD_TE), &mem);
                let _ = vtd.write_reg(FSTS, 4, u64::from(FSTS_PFO), &mem);
                let _ = vtd.write_reg(FRCD_REG_OFFSET + 8, 8, FRCD_F, &mem);
            }
        }
        assert!(vtd.iotlb_len() <= vtd_core::translation::cache::IOTLB_MAX);
    }
    st
}

fn sm_cfg() -> Config {
    Config { scalable_mode: true, first_stage: true, pasid_bits: 20, ..Config::default() }
}

#[test]
fn random_scalable_tables_never_panic_and_reach_many_fault_codes() {
    let all: Vec<Stats> = (1..=10u64).map(|s| run(mix(s), 3000, sm_cfg())).collect();
    let ok: u32 = all.iter().map(|s| s.ok).sum();
    let codes: Vec<usize> = (0x30..256).filter(|&c| all.iter().any(|s| s.codes[c] > 0)).collect();
    eprintln!("translated={ok} sm fault codes seen={codes:x?}");
    assert!(ok > 0);
    assert!(codes.len() >= 15, "random SM tables should reach many fault reasons: {codes:x?}");
}

#[test]
fn random_scalable_configs_never_panic() {
    let cfgs = [
        Config { scalable_mode: true, ..Config::default() },
        Config { scalable_mode: true, aw_bits: 39, pass_through: false, snoop_control: true, ..Config::default() },
        Config { first_stage: true, fs1gp: false, pasid_bits: 8, ..sm_cfg() },
        // Invalid configurations must not panic either.
        Config { scalable_mode: false, first_stage: true, pasid_bits: 255, ..Config::default() },
        Config { first_stage: true, aw_bits: 39, ..sm_cfg() },
        Config { aw_bits: 64, ..sm_cfg() },
    ];
    for (i, c) in cfgs.into_iter().enumerate() {
        run(mix(i as u64 + 77), 1500, c);
    }
}

#[test]
fn random_first_stage_and_nested_walks_never_panic() {
    let mut rng = Rng(0xfeed_f00d);
    let mut ok = 0;
    for round in 0..20u64 {
        let mem = RandomMem::new(round);
        for _ in 0..300 {
            let root = (BASE + (rng.below(WINDOW_PAGES) << 12)) | if rng.chance(8) { rng.next() } else { 0 };
            let levels = [4u8, 4, 4, 5, 3, 0, 255][rng.below(7) as usize];
            let fs = FsTable { root, levels };
            let haw = [48u8, 39, 57, 0, 64, 200][rng.below(6) as usize];
            let cfg = FsWalkConfig { haw_bits: haw, large_1g: rng.chance(2), user_checks_per_level: rng.chance(2) };
            let ctl = FsControls { wpe: rng.chance(2), eafe: rng.chance(2), canonical_bits: None };
            let acc = FsAccess { write: rng.chance(2), supervisor: rng.chance(2) };
            let iova = match rng.below(3) {
                0 => rng.next(),
                1 => rng.below(1 << 47),
                _ => 0xffff_8000_0000_0000 | rng.next(),
            };
            if let Ok(o) = fs_walk(&mem, &cfg, &fs, &ctl, iova, acc) {
                ok += 1;
                assert!((1..=3).contains(&o.level));
                assert!(o.perm.read);
            }
            let ss = SsTable {
                root: BASE + (rng.below(WINDOW_PAGES) << 12),
                levels: [4u8, 3, 2, 0, 9][rng.below(5) as usize],
                agaw: [48u8, 39, 30, 0, 255][rng.below(5) as usize],
            };
            let ss_cfg = WalkConfig {
                haw_bits: haw,
                mgaw_bits: haw,
                large_2m: rng.chance(2),
                large_1g: rng.chance(2),
                snoop_control: rng.chance(2),
                tm_allowed: rng.chance(2),
            };
            if let Ok(o) = nested_walk(&mem, &cfg, &ss_cfg, &fs, &ss, &ctl, iova, acc) {
                ok += 1;
                assert_eq!(o.phys & ((1u64 << (12 + 9 * (u32::from(o.level) - 1))) - 1), 0);
            }
        }
    }
    eprintln!("successful random walks: {ok}");
}

#[test]
fn random_migration_with_scalable_root_never_panics() {
    let mut rng = Rng(0x5ca1_ab1e);
    let mem = RandomMem::new(9);
    for (i, cfg) in [sm_cfg(), Config::default()].into_iter().enumerate() {
        let base = Vtd::new(cfg.clone()).save_state();
        for _ in 0..300 {
            let mut st = base.clone();
            st.root = (BASE + (rng.below(WINDOW_PAGES) << 12)) | if rng.chance(4) { rng.next() } else { 0 };
            st.root_scalable = rng.chance(2);
            st.dmar_enabled = rng.chance(2);
            let mut vtd = Vtd::new(cfg.clone());
            let loaded = vtd.load_state(&st);
            if i == 1 && st.root_scalable {
                assert!(loaded.is_err(), "scalable root needs scalable mode");
            }
            assert_eq!(vtd.root_table_scalable(), loaded.is_ok() && st.root_scalable);
            for _ in 0..20 {
                let req = Request { sid: rng.below(0x90) as u16, iova: rng.next() >> rng.below(64), write: rng.chance(2) };
                let _ = common::translate_checked(&mut vtd, &req, &mem);
            }
        }
    }
}

/// A plausible or corrupted 256-bit descriptor of any type.
fn random_desc(rng: &mut Rng) -> [u64; 4] {
    let ty = [1u64, 2, 3, 4, 5, 6, 7, 7, 6, 8, 9, 0][rng.below(12) as usize];
    let g = rng.below(4) << 4;
    let did = rng.below(6) << 16;
    let pasid = [0u64, 1, 63, 64, 8191, rng.below(1 << 20)][rng.below(6) as usize] << 32;
    let mut d = match ty {
        5 => [5 | (rng.below(8) << 4) | (rng.next() << 32), BASE + (rng.below(WINDOW_PAGES << 10) << 2), 0, 0],
        2 => [2 | g | did, (rng.below(1 << 36) << 12) | rng.below(20) | (rng.below(2) << 6), 0, 0],
        6 => [6 | g | did | pasid, (rng.below(1 << 36) << 12) | rng.below(20) | (rng.below(2) << 6), 0, 0],
        3 => [3 | (rng.below(0x90) << 32) | (rng.below(32) << 16), rng.next() & !0xffe, 0, 0],
        8 => [8 | (rng.below(0x90) << 16) | pasid | (rng.below(32) << 4), rng.next() & !0x7fe, 0, 0],
        _ => [ty | g | did | pasid & if ty == 7 { u64::MAX } else { 0 }, 0, 0, 0],
    };
    if rng.chance(6) {
        let q = rng.below(4) as usize;
        d[q] ^= 1 << rng.below(64);
    }
    d
}

/// Random register traffic (including 256-bit queue setup), random
/// descriptors, random requests with and without PASID: nothing panics
/// and the architectural invariants hold.
fn run_qi_pasid(seed: u64, iterations: u32, cfg: Config) -> (u32, u32) {
    let mut rng = Rng(seed | 1);
    let mem = RandomMem::new(seed);
    let mut vtd = Vtd::new(cfg);
    let mut iovas = Vec::new();
    let (mut ok, mut pasid_faults, mut shadowed) = (0, 0, 0u32);
    let mut spaces = vec![
        Notified::new(0, None, 300),
        Notified::new(0x81, None, 300),
        Notified::new(1, Some(0), 300),
        Notified::new(2, Some(1), 300),
    ];
    for _ in 0..iterations {
        match rng.below(14) {
            12 => {
                let n = &mut spaces[rng.below(4) as usize];
                let out = vtd.replay_shadow(n.sid, n.pasid, &mut n.shadow, &mem);
                n.apply(&out);
                shadowed += n.shadow.len() as u32;
                continue;
            }
            13 => {
                let req = AtsRequest {
                    sid: if rng.chance(2) { rng.below(8) as u16 } else { 0x80 + rng.below(8) as u16 },
                    pasid: rng.chance(2).then(|| [0u32, 1, 63, 64, 0xf_ffff, rng.next() as u32][rng.below(6) as usize]),
                    privileged: rng.chance(2),
                    exec: rng.chance(4),
                    iova: if rng.chance(2) && !iovas.is_empty() {
                        iovas[rng.below(iovas.len() as u64) as usize] | rng.below(0x1000)
                    } else {
                        rng.next() >> rng.below(64)
                    },
                    no_write: rng.chance(2),
                };
                let (r, _fx) = common::translate_ats_checked(&mut vtd, &req, &mem);
                if let AtsResult::Success(t) = r {
                    assert_eq!(t.iova, req.iova & !t.page_mask);
                    assert_eq!(t.phys & t.page_mask, 0);
                    assert!(!(req.no_write && t.perm.write) || t.untranslated_only);
                    assert!(!t.exec && !t.global);
                }
                continue;
            }
            _ => {}
        }
        let mut fx = Effects::default();
        match rng.below(12) {
            0 => {
                let dw = if rng.chance(4) { 0 } else { IQA_DW };
                let iqa = (BASE + (rng.below(WINDOW_PAGES) << 12)) | dw | rng.below(8);
                let iqa = if rng.chance(10) { rng.next() } else { iqa };
                fx.extend(vtd.write_reg(IQA, 8, iqa, &mem));
                fx.extend(vtd.write_reg(IQT, 8, 0, &mem));
                fx.extend(vtd.write_reg(GCMD, 4, u64::from(GCMD_TE | GCMD_QIE), &mem));
            }
            1 => {
                // Queue some descriptors at the tail and move it.
                let q = vtd.queue();
                let stride = if q.dw { 32 } else { 16 };
                let mut tail = u64::from(q.tail);
                for _ in 0..=rng.below(4) {
                    let d = random_desc(&mut rng);
                    for (i, v) in d.iter().enumerate().take(stride as usize / 8) {
                        let _ = mem.write_u64(q.base.wrapping_add(tail * stride + 8 * i as u64), *v);
                    }
                    tail = (tail + 1) % u64::from(q.size.max(1));
                }
                let iqt = if rng.chance(10) { rng.next() } else { tail * stride };
                fx.extend(vtd.write_reg(IQT, [4, 8][rng.below(2) as usize], iqt, &mem));
            }
            2 => {
                let off = [FSTS, GCMD, ICS, IECTL, CCMD, IOTLB, IVA][rng.below(7) as usize];
                let val = match rng.below(3) {
                    0 => rng.next(),
                    1 => u64::from(FSTS_IQE | FSTS_PFO),
                    _ => u64::from(GCMD_TE | GCMD_QIE | GCMD_SRTP),
                };
                fx.extend(vtd.write_reg(off, [4, 8][rng.below(2) as usize], val, &mem));
            }
            3..=9 => {
                let sid = if rng.chance(2) { rng.below(8) as u16 } else { 0x80 + rng.below(8) as u16 };
                let iova = match rng.below(3) {
                    0 if !iovas.is_empty() => iovas[rng.below(iovas.len() as u64) as usize] | rng.below(0x1000),
                    1 => rng.next(),
                    _ => rng.below(1 << 48),
                };
                let write = rng.chance(2);
                let (r, _fx) = if rng.chance(2) {
                    let pasid = [0u32, 1, 63, 64, 8191, 8192, 0xf_ffff, 1 << 20, u32::MAX, rng.next() as u32]
                        [rng.below(10) as usize];
                    let req = PasidRequest { sid, pasid, privileged: rng.chance(3), iova, write };
                    vtd.translate_pasid(&req, &mem)
                } else {
                    common::translate_checked(&mut vtd, &Request { sid, iova, write }, &mem)
                };
                match r {
                    Ok(t) => {
                        ok += 1;
                        assert_eq!(t.iova, iova & !t.page_mask);
                        assert_eq!(t.phys & t.page_mask, 0);
                        assert!(t.perm.read || t.perm.write);
                    }
                    Err(f) => {
                        if f.pasid.is_some() {
                            pasid_faults += 1;
                        }
                        let rec = vtd.fault_record(0).unwrap();
                        if let (true, Some(p)) = (rec.pending, rec.pasid) {
                            assert!(p <= 0xf_ffff);
                        }
                    }
                }
            }
            _ => {
                if rng.chance(30) {
                    fx.extend(vtd.reset_effects());
                }
                iovas.clear();
                let root = build(&mem, &mut rng, &mut iovas);
                let _ = vtd.write_reg(RTADDR, 8, root | (1 << 10), &mem);
                fx.extend(vtd.write_reg(GCMD, 4, u64::from(GCMD_SRTP | GCMD_TE), &mem));
                let _ = vtd.write_reg(FSTS, 4, u64::from(FSTS_PFO | FSTS_IQE), &mem);
                let _ = vtd.write_reg(FRCD_REG_OFFSET + 8, 8, FRCD_F, &mem);
            }
        }
        notify_all(&vtd, &mem, &fx, &mut spaces);
        let q = vtd.queue();
        if q.enabled {
            assert!(q.head < q.size);
            assert_eq!(vtd.registers().get64(IQH), vtd_core::queues::inv_queue::QueueState::index_reg(q.head, q.dw));
        }
        assert!(vtd.iotlb_len() <= vtd_core::translation::cache::IOTLB_MAX);
        assert!(vtd.pasid_cache_len() <= vtd_core::translation::cache::PASID_CACHE_MAX);
        assert!(vtd.sm_context_cache_len() <= vtd_core::translation::cache::CONTEXT_CACHE_MAX);
    }
    if shadowed > 0 {
        eprintln!("seed {seed:#x}: {shadowed} shadowed mappings seen by replays");
    }
    (ok, pasid_faults)
}

#[test]
fn random_256_bit_queue_and_pasid_requests_never_panic() {
    let mut totals = (0, 0);
    for s in 1..=8u64 {
        let cfg = Config { device_tlb: s % 2 == 0, caching_mode: true, ..sm_cfg() };
        let (ok, pf) = run_qi_pasid(mix(s ^ 0xd00d), 2500, cfg);
        totals = (totals.0 + ok, totals.1 + pf);
    }
    for (i, c) in [
        Config { pasid_bits: 0, ..sm_cfg() },
        Config { pasid_bits: 8, first_stage: false, ..sm_cfg() },
        Config::default(),
    ]
    .into_iter()
    .enumerate()
    {
        run_qi_pasid(mix(i as u64 + 999), 1500, c);
    }
    eprintln!("translated={} faults with PASID={}", totals.0, totals.1);
    assert!(totals.0 > 0 && totals.1 > 0);
}
