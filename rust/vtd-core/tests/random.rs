//! Randomized robustness: random register traffic, random guest memory
//! (root/context/page tables and descriptors all come from the PRNG) and
//! random DMA must never panic (tests run with overflow checks).

mod common;
use common::{notify_all, Notified, Rng};
use std::cell::RefCell;
use std::collections::HashMap;
use vtd_core::registers::*;
use vtd_core::{Config, GuestMemory, MemError, Request, Vtd, VtdState};

/// Memory whose every 8-byte word is derived from a hash of its address,
/// biased towards values that look like table entries pointing inside a
/// small window, with some unmapped pages. Writes go to an overlay.
struct RandomMem {
    seed: u64,
    overlay: RefCell<HashMap<u64, u8>>,
}

const WINDOW_PAGES: u64 = 48;

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

impl RandomMem {
    fn word(&self, waddr: u64) -> u64 {
        // Low bits that make plausible root/context/paging entries.
        const FLAGS: [u64; 8] = [1, 3, 1 | (2 << 2), 2, 1 | 2, 1 | (1 << 2), 0x803, 3 | (1 << 11)];
        let h = mix(waddr ^ self.seed);
        let g = mix(h);
        let page = (g % WINDOW_PAGES) << 12;
        match h % 12 {
            0 => 0,
            1 => g,
            2 => page | (g >> 52),
            3 => ((g % 4) << 21) | 0x83,
            4 => ((g % 4 + 4) << 30) | 0x83,
            // Odd words are the upper halves of root/context entries.
            _ if waddr & 1 == 1 => [0, 0, 1, 2][(g % 4) as usize] | ((g >> 8 & 3) << 8),
            _ => page | FLAGS[((g >> 50) % 8) as usize],
        }
    }

    fn unmapped(&self, addr: u64) -> bool {
        mix((addr >> 12) ^ self.seed ^ 0x5555) % 13 == 0
    }

    fn byte(&self, a: u64) -> Result<u8, MemError> {
        if self.unmapped(a) {
            return Err(MemError);
        }
        if let Some(b) = self.overlay.borrow().get(&a) {
            return Ok(*b);
        }
        Ok((self.word(a >> 3) >> ((a & 7) * 8)) as u8)
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
        let mut o = self.overlay.borrow_mut();
        for (i, b) in buf.iter().enumerate() {
            let a = addr.wrapping_add(i as u64);
            if self.unmapped(a) {
                return Err(MemError);
            }
            o.insert(a, *b);
        }
        Ok(())
    }
}

const INTERESTING: [u64; 24] = [
    GCMD, RTADDR, CCMD, CCMD + 4, FSTS, FECTL, FEDATA, FEADDR, IQT, IQA, ICS, IECTL, IVA,
    IOTLB, IOTLB + 4, FRCD_REG_OFFSET + 8, FRCD_REG_OFFSET + 12, IRTA, GSTS, IQH, 0x30, 0x100,
    FEUADDR, PMEN,
];

fn random_value(rng: &mut Rng, off: u64) -> u64 {
    match rng.below(6) {
        0 => rng.next(),
        1 => 0,
        2 => u64::MAX,
        3 => (rng.below(WINDOW_PAGES) << 12) | rng.below(8),
        4 if off == GCMD => {
            let bits = [GCMD_TE, GCMD_SRTP, GCMD_QIE, GCMD_WBF, GCMD_IRE, GCMD_SFL];
            u64::from(bits[rng.below(6) as usize] | (rng.next() as u32 & GCMD_TE))
        }
        _ => rng.below(0x8_0000) << rng.below(48),
    }
}


/// Write a 64-bit word, occasionally with one random bit flipped.
fn put(mem: &RandomMem, rng: &mut Rng, addr: u64, val: u64) {
    let v = if rng.chance(12) { val ^ (1 << rng.below(64)) } else { val };
    let _ = mem.write_u64(addr, v);
}

/// Build a mostly valid root table → context tables → page tables for
/// source-ids 0..8 and a handful of input addresses; returns the root.
fn build_tables(mem: &RandomMem, rng: &mut Rng, iovas: &mut Vec<u64>) -> u64 {
    let mut next = 0x100_0000 + (rng.below(64) << 24);
    let mut alloc = || {
        next += 0x1000;
        next
    };
    let root = alloc();
    let ctx = alloc();
    put(mem, rng, root, ctx | 1);
    put(mem, rng, root + 8, 0);
    for devfn in 0..8u64 {
        let pgd = alloc();
        let tt = [0u64, 0, 0, 2, 1, 3][rng.below(6) as usize];
        let aw = [2u64, 2, 1, 1, 0, 3][rng.below(6) as usize];
        let fpd = u64::from(rng.chance(4)) << 1;
        put(mem, rng, ctx + devfn * 16, pgd | 1 | fpd | (tt << 2));
        let did = rng.below(4) + 1;
        put(mem, rng, ctx + devfn * 16 + 8, aw | (did << 8));
        let levels = aw as u32 + 2;
        for _ in 0..4 {
            let iova = rng.below(1 << (30 + 9 * aw.min(2))) & !0xfff;
            iovas.push(iova);
            let leaf = [1u32, 1, 2, 3][rng.below(4) as usize];
            let mut table = pgd;
            let mut l = levels;
            while l >= 1 {
                let idx = (iova >> (12 + 9 * (l - 1))) & 0x1ff;
                let perm = [3u64, 3, 1, 2, 0][rng.below(5) as usize];
                if l == leaf || l == 1 {
                    let size_shift = 12 + 9 * (l - 1);
                    let phys = (rng.below(1 << 20) << size_shift) & ((1 << 48) - 1);
                    let ps = if l > 1 { 0x80 } else { 0 };
                    put(mem, rng, table + idx * 8, phys | perm | ps);
                    break;
                }
                let t = alloc();
                put(mem, rng, table + idx * 8, t | perm);
                table = t;
                l -= 1;
            }
        }
    }
    root
}

/// Fill a queue with plausible descriptors; returns (IQA value, tail).
fn build_queue(mem: &RandomMem, rng: &mut Rng) -> (u64, u64) {
    let base = 0x800_0000 + (rng.below(64) << 16);
    let qs = rng.below(2);
    let n = rng.below(24);
    for i in 0..n {
        let did = rng.below(5) << 16;
        let (lo, hi) = match rng.below(9) {
            0 => (0x11, 0),
            1 => (0x21 | did, 0),
            2 => (0x31 | (rng.below(8) << 32) | (rng.below(4) << 48), 0),
            3 => (0x12, 0),
            4 => (0x22 | did, 0),
            5 => (0x32 | did | (rng.below(4) << 6), (rng.below(1 << 36) << 12) | rng.below(20) | (rng.below(2) << 6)),
            6 if rng.chance(2) => (0x4 | (rng.below(2) << 4), 0),
            // Device-TLB invalidation (valid with ECAP.DT), random S/address.
            6 => (0x3 | (rng.below(8) << 32) | (rng.below(32) << 16) | (rng.below(2) << 12), rng.next() & !0xffe),
            7 => (0x5 | (rng.below(8) << 4) | (rng.next() << 32), 0x900_0000 + rng.below(0x1000) * 4),
            _ => (rng.next(), rng.next()),
        };
        put(mem, rng, base + i * 16, lo);
        put(mem, rng, base + i * 16 + 8, hi);
    }
    (base | qs, n)
}

#[derive(Default, Debug)]
struct Stats {
    translated: u32,
    superpages: u32,
    fault_codes: [u32; 16],
    interrupts: u32,
    guest_errors: u32,
    invalidations: u32,
    replays: u32,
    shadowed: u32,
    ats_ok: u32,
}

fn run(seed: u64, iterations: u32, cfg: Config) -> Stats {
    let mut st = Stats::default();
    let mut rng = Rng(seed | 1);
    let mem = RandomMem { seed: mix(seed), overlay: RefCell::new(HashMap::new()) };
    let mut vtd = Vtd::new(cfg);
    let mut iovas: Vec<u64> = Vec::new();
    // Notified address spaces with a small work cap (tables here are
    // random and may loop).
    let mut spaces: Vec<Notified> = (0..2u16).map(|s| Notified::new(s * 3, None, 300)).collect();
    spaces.push(Notified::new(1, Some(1), 300));
    for _ in 0..iterations {
        match rng.below(12) {
            9 => {
                let n = &mut spaces[rng.below(3) as usize];
                let out = vtd.replay_shadow(n.sid, n.pasid, &mut n.shadow, &mem);
                n.apply(&out);
                st.replays += 1;
                st.shadowed += n.shadow.len() as u32;
                continue;
            }
            10 => {
                let req = vtd_core::AtsRequest {
                    sid: rng.below(9) as u16,
                    pasid: rng.chance(8).then(|| rng.below(4) as u32),
                    privileged: rng.chance(2),
                    exec: rng.chance(4),
                    iova: if rng.chance(2) && !iovas.is_empty() {
                        iovas[rng.below(iovas.len() as u64) as usize] | rng.below(0x20_0000)
                    } else {
                        rng.next() >> rng.below(64)
                    },
                    no_write: rng.chance(2),
                };
                let (r, fx) = common::translate_ats_checked(&mut vtd, &req, &mem);
                st.interrupts += fx.interrupts.len() as u32;
                if let vtd_core::AtsResult::Success(t) = r {
                    st.ats_ok += 1;
                    assert_eq!(t.iova & t.page_mask, 0);
                    assert_eq!(t.phys & t.page_mask, 0);
                    assert_eq!(t.iova, req.iova & !t.page_mask);
                    assert!(!(req.no_write && t.perm.write) || t.untranslated_only);
                }
                continue;
            }
            _ => {}
        }
        match rng.below(10) {
            0..=3 => {
                let off = if rng.chance(4) {
                    rng.below(Vtd::MMIO_SIZE + 16) & !3
                } else if rng.chance(20) {
                    rng.next()
                } else {
                    INTERESTING[rng.below(INTERESTING.len() as u64) as usize]
                };
                let size = [4u32, 8, 4, 8, 1, 2, 16, 0][rng.below(8) as usize];
                let val = random_value(&mut rng, off);
                let fx = vtd.write_reg(off, size, val, &mem);
                st.interrupts += fx.interrupts.len() as u32;
                st.guest_errors += fx.guest_errors.len() as u32;
                st.invalidations += fx.invalidations.len() as u32;
                notify_all(&vtd, &mem, &fx, &mut spaces);
            }
            4 => {
                let off = rng.below(Vtd::MMIO_SIZE + 16);
                let size = [4u32, 8, 3][rng.below(3) as usize];
                let _ = vtd.read_reg_effects(off, size);
            }
            5..=8 => {
                let sid = if rng.chance(5) { rng.next() as u16 } else { rng.below(8) as u16 };
                let iova = match rng.below(5) {
                    0 => rng.next(),
                    4 if !iovas.is_empty() => {
                        iovas[rng.below(iovas.len() as u64) as usize] | rng.below(0x20_0000)
                    }
                    1 => rng.below(1 << 39),
                    2 => rng.below(1 << 48),
                    _ => rng.below(WINDOW_PAGES << 12),
                };
                let req = Request { sid, iova, write: rng.chance(2) };
                let (r, fx) = common::translate_checked(&mut vtd, &req, &mem);
                st.interrupts += fx.interrupts.len() as u32;
                if let Err(f) = &r {
                    st.fault_codes[usize::from(f.reason.code() & 0xf)] += 1;
                }
                if let Ok(t) = r {
                    if vtd.translation_enabled() {
                        st.translated += 1;
                        st.superpages += u32::from(t.page_mask != 0xfff);
                    }
                    assert_eq!(t.iova & t.page_mask, 0);
                    assert_eq!(t.phys & t.page_mask, 0);
                    assert!(t.page_mask == 0xfff || t.page_mask == 0x1f_ffff || t.page_mask == 0x3fff_ffff);
                    assert_eq!(t.iova, iova & !t.page_mask);
                }
            }
            _ => {
                if rng.chance(50) {
                    let fx = vtd.reset_effects();
                    notify_all(&vtd, &mem, &fx, &mut spaces);
                } else if rng.chance(2) {
                    iovas.clear();
                    let root = build_tables(&mem, &mut rng, &mut iovas);
                    let _ = vtd.write_reg(RTADDR, 8, root, &mem);
                    let fx = vtd.write_reg(GCMD, 4, u64::from(GCMD_SRTP | GCMD_TE), &mem);
                    notify_all(&vtd, &mem, &fx, &mut spaces);
                } else {
                    let (iqa, tail) = build_queue(&mem, &mut rng);
                    let _ = vtd.write_reg(FSTS, 4, u64::from(FSTS_IQE), &mem);
                    let gsts = vtd.read_reg(GSTS, 4) as u32 & GSTS_TES;
                    let _ = vtd.write_reg(GCMD, 4, u64::from(gsts), &mem);
                    let _ = vtd.write_reg(IQA, 8, iqa, &mem);
                    let _ = vtd.write_reg(IQT, 4, 0, &mem);
                    let _ = vtd.write_reg(GCMD, 4, u64::from(gsts | GCMD_QIE), &mem);
                    let fx = vtd.write_reg(IQT, 4, tail << 4, &mem);
                    st.interrupts += fx.interrupts.len() as u32;
                    st.invalidations += fx.invalidations.len() as u32;
                    notify_all(&vtd, &mem, &fx, &mut spaces);
                }
            }
        }
        assert!(vtd.iotlb_len() <= vtd_core::translation::cache::IOTLB_MAX);
        assert!(vtd.context_cache_len() <= vtd_core::translation::cache::CONTEXT_CACHE_MAX);
    }
    st
}

fn check_coverage(all: &[Stats]) {
    let sum = |f: &dyn Fn(&Stats) -> u32| all.iter().map(f).sum::<u32>();
    let translated = sum(&|s| s.translated);
    let superpages = sum(&|s| s.superpages);
    let interrupts = sum(&|s| s.interrupts);
    let codes: Vec<usize> = (1..16).filter(|&c| sum(&|s| s.fault_codes[c]) > 0).collect();
    let invalidations = sum(&|s| s.invalidations);
    let shadowed = sum(&|s| s.shadowed);
    let ats_ok = sum(&|s| s.ats_ok);
    eprintln!("translated={translated} superpages={superpages} interrupts={interrupts} fault codes seen={codes:x?}");
    eprintln!("invalidations={invalidations} shadowed={shadowed} ats_ok={ats_ok}");
    assert!(translated > 0 && superpages > 0 && interrupts > 0);
    assert!(invalidations > 0 && shadowed > 0);
    assert!(codes.len() >= 8, "random tables should reach most fault reasons: {codes:?}");
}

#[test]
fn random_register_writes_and_memory_never_panic_aw48() {
    let stats: Vec<Stats> = (1..=12u64)
        .map(|seed| {
            let cfg = Config { device_tlb: seed % 2 == 0, ..Config::default() };
            run(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), 4000, cfg)
        })
        .collect();
    check_coverage(&stats);
}

#[test]
fn random_register_writes_and_memory_never_panic_aw39_snoop_nopt() {
    let cfg = Config {
        aw_bits: 39,
        snoop_control: true,
        pass_through: false,
        caching_mode: true,
        dma_drain: false,
        device_tlb: true,
        ..Config::default()
    };
    let stats: Vec<Stats> = (100..=108u64).map(|seed| run(mix(seed), 4000, cfg.clone())).collect();
    check_coverage(&stats);
}

#[test]
fn random_register_writes_and_memory_never_panic_with_intremap() {
    // The same DMA traffic with interrupt remapping configured: GCMD.IRE,
    // SIRTP and CFI and the IEC descriptors of the random queues now act.
    let cfg = Config { intremap: true, eim: true, ..Config::default() };
    let stats: Vec<Stats> = (200..=205u64).map(|seed| run(mix(seed), 4000, cfg.clone())).collect();
    check_coverage(&stats);
}

#[test]
fn random_invalid_configs_never_panic() {
    for aw in [0u8, 1, 63, 64, 65, 200, 255] {
        let cfg = Config { aw_bits: aw, ..Config::default() };
        assert!(cfg.validate().is_err());
        run(u64::from(aw) + 7, 500, cfg);
    }
}

#[test]
fn random_migration_state_never_panics() {
    let mut rng = Rng(0x1234_5678);
    let mem = RandomMem { seed: 3, overlay: RefCell::new(HashMap::new()) };
    let base = Vtd::new(Config::default()).save_state();
    for _ in 0..2000 {
        let mut st: VtdState = base.clone();
        for _ in 0..rng.below(20) {
            let i = rng.below(DMAR_REG_SIZE as u64) as usize;
            st.csr[i] = rng.next() as u8;
        }
        st.root = rng.next();
        st.dmar_enabled = rng.chance(2);
        st.queue.enabled = rng.chance(2);
        st.queue.size = [0u16, 256, 512, 300, 32768, u16::MAX][rng.below(6) as usize];
        st.queue.head = rng.next() as u16 % 600;
        st.queue.tail = rng.next() as u16 % 600;
        st.queue.base = rng.next();
        st.next_frcd_reg = rng.below(3) as u16;
        let mut vtd = Vtd::new(Config::default());
        let _ = vtd.load_state(&st);
        for _ in 0..20 {
            let _ = vtd.write_reg(INTERESTING[rng.below(24) as usize], 4, rng.next(), &mem);
            let _ = common::translate_checked(&mut vtd, &Request::read(rng.below(4) as u16, rng.below(1 << 20)), &mem);
        }
    }
}

/// Queue barriers change when a wait completes, nothing else: a random queue
/// processed at once and one processed barrier by barrier (resumed after
/// every stop, as the glue does) give the same invalidations, interrupts,
/// errors, memory writes and registers; and every stop is in front of a
/// wait descriptor that follows invalidations.
#[test]
fn random_queues_with_barriers_match_queues_without() {
    let cfg = Config { device_tlb: true, intremap: true, ..Config::default() };
    let mut stops = 0;
    for seed in 0..1000u64 {
        let mems: Vec<RandomMem> = (0..2)
            .map(|_| RandomMem { seed: mix(seed), overlay: RefCell::new(HashMap::new()) })
            .collect();
        let mut outs = Vec::new();
        for (i, mem) in mems.iter().enumerate() {
            let mut rng = Rng(seed | 1);
            let (iqa, tail) = build_queue(mem, &mut rng);
            let mut vtd = Vtd::new(cfg.clone());
            vtd.set_queue_barriers(i == 1);
            let mut all = vtd.write_reg(IQA, 8, iqa, mem);
            all.extend(vtd.write_reg(GCMD, 4, u64::from(GCMD_QIE), mem));
            let mut fx = vtd.write_reg(IQT, 4, tail << 4, mem);
            loop {
                let barrier = fx.queue_barrier;
                assert!(i == 1 || !barrier, "a barrier without barriers enabled");
                if barrier {
                    stops += 1;
                    assert!(!fx.invalidations.is_empty() || !fx.iec_invalidations.is_empty());
                    let q = vtd.queue();
                    let lo = mem.read_u64(q.base + u64::from(q.head) * 16).unwrap();
                    assert_eq!(lo & 0xf, 0x5, "seed {seed}: stopped in front of a non-wait");
                }
                all.extend(fx);
                if !barrier {
                    break;
                }
                fx = vtd.resume_queue(mem);
            }
            let regs: Vec<u64> = [FSTS, IQH, ICS, IECTL, GSTS].iter().map(|&r| vtd.read_reg(r, 4)).collect();
            let mut writes: Vec<(u64, u8)> = mem.overlay.borrow().iter().map(|(a, b)| (*a, *b)).collect();
            writes.sort_unstable();
            all.queue_barrier = false;
            outs.push((all, regs, writes));
        }
        assert_eq!(outs[0], outs[1], "seed {seed}");
    }
    assert!(stops > 150, "barriers taken only {stops} times");
}
