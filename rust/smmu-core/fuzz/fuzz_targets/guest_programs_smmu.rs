//! The fuzzer plays a hostile guest of the SMMU: its input is a program of
//! register accesses, writes to guest memory (stream tables, CDs, page
//! tables, commands) and DMA requests with or without a SubstreamID, under
//! a configuration it picks. Nothing it does may panic the model; a
//! successful translation must be well formed (a naturally aligned page
//! holding the input address, permissions that allow the access); the
//! queue indices the registers show stay inside their queues; and a
//! translation the model answers from its TLB must be what a fresh device
//! (empty caches, same registers and memory) answers, unless the guest
//! changed memory without invalidating.
#![no_main]

use std::{cell::RefCell, collections::HashMap};

use iommu_core::memory::{GuestMemory, MemError};
use iommu_core::translation::vmsa::Access;
use libfuzzer_sys::fuzz_target;
use smmu_core::{
    config::{Config, Stage},
    ats::{AtsRequest, AtsResponse},
    smmu::{Request, Smmu},
};

/// Sparse guest memory: 1 MiB of RAM at 0 plus whatever the program writes
/// elsewhere (4 KiB pages); other reads fail like unmapped addresses.
#[derive(Default, Clone)]
struct Mem {
    pages: RefCell<HashMap<u64, Box<[u8; 4096]>>>,
}

impl Mem {
    fn page_mut<R>(&self, addr: u64, create: bool, f: impl FnOnce(Option<&mut [u8; 4096]>) -> R) -> R {
        let key = addr >> 12;
        let mut pages = self.pages.borrow_mut();
        if create || key < 256 {
            let p = pages.entry(key).or_insert_with(|| Box::new([0; 4096]));
            f(Some(p))
        } else {
            f(pages.get_mut(&key).map(|b| &mut **b))
        }
    }
}

impl GuestMemory for Mem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        for (i, b) in buf.iter_mut().enumerate() {
            let a = addr.wrapping_add(i as u64);
            *b = self.page_mut(a, false, |p| p.map(|p| p[(a & 0xfff) as usize])).ok_or(MemError)?;
        }
        Ok(())
    }

    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemError> {
        for (i, b) in buf.iter().enumerate() {
            let a = addr.wrapping_add(i as u64);
            self.page_mut(a, false, |p| p.map(|p| p[(a & 0xfff) as usize] = *b)).ok_or(MemError)?;
        }
        Ok(())
    }
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn u64(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..8 {
            v |= u64::from(self.byte()?) << (8 * i);
        }
        Some(v)
    }
}

/// Addresses the program aims at: mostly the RAM the tables live in.
fn addr(inp: &mut Input, raw: u64) -> u64 {
    match inp.byte().unwrap_or(0) & 3 {
        0 => raw,
        _ => raw & 0xf_fff8,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let Some(sel) = inp.byte() else { return };
    let cfg = Config {
        stage: [Stage::S1, Stage::S2, Stage::Nested][usize::from(sel % 3)],
        oas: if sel & 4 != 0 { 48 } else { 44 },
        ssidsize: if sel & 8 != 0 { 20 } else { (sel >> 4) & 7 },
        ats: sel & 0x80 != 0,
        ril: sel & 0x40 == 0,
        msi: sel & 0x18 == 0x18,
        strict: sel & 0x20 != 0,
    };
    let Ok(mut smmu) = Smmu::new(cfg) else { return };
    let mem = Mem::default();
    // Whether memory or registers changed since the last invalidation of
    // everything (then cached answers may legitimately be stale): the
    // program's writes, and the SMMU's own event records (a hostile guest
    // may point the event queue at its tables).
    let mut dirty = false;
    while let Some(op) = inp.byte() {
        let events_before = smmu.registers().eventq.prod;
        match op % 6 {
            0 | 1 => {
                // Register write (4 or 8 bytes) anywhere in the window.
                let (Some(off), Some(val)) = (inp.u64(), inp.u64()) else { return };
                let size = if op & 0x10 != 0 { 8 } else { 4 };
                let _ = smmu.write_reg(off & 0x1_fffc, size, val, &mem);
                dirty = true;
            }
            2 => {
                let Some(off) = inp.u64() else { return };
                let _ = smmu.read_reg(off & 0x1_fffc, if op & 0x10 != 0 { 8 } else { 4 });
            }
            3 => {
                // Guest memory: one quadword.
                let (Some(a), Some(v)) = (inp.u64(), inp.u64()) else { return };
                let a = addr(&mut inp, a);
                let _ = mem.write(a, &v.to_le_bytes());
                dirty = true;
            }
            4 => {
                // Invalidate everything (CFGI_ALL, TLBI_NSNH_ALL, SYNC) at
                // the producer index the guest set up, as a driver would.
                let r = smmu.registers();
                let log2 = r.cmdq.log2size;
                let base = u64::from(r.cmdq.base) & 0x000f_ffff_ffff_ffe0;
                let prod = r.cmdq.prod & ((2 << log2) - 1);
                let mut p = prod;
                for cmd in [[0x04u64, 31], [0x30, 0], [0x46, 0]] {
                    let slot = base + 16 * u64::from(p & ((1 << log2) - 1));
                    let _ = mem.write(slot, &cmd[0].to_le_bytes());
                    let _ = mem.write(slot + 8, &cmd[1].to_le_bytes());
                    p = (p + 1) & ((2 << log2) - 1);
                }
                let _ = smmu.write_reg(0x98, 4, u64::from(p), &mem);
                // Only if the queue really consumed them (it may be
                // disabled, stopped by an error, or overwritten by events).
                let r = smmu.registers();
                let cons = r.cmdq.cons & ((2 << log2) - 1);
                if r.cr0.cmdqen() && log2 >= 2 && cons == p && !r.gerror_active().cmdq_err() {
                    dirty = false;
                }
            }
            _ => {
                let (Some(sid), Some(a)) = (inp.byte(), inp.u64()) else { return };
                let ssid = (op & 0x20 != 0).then(|| u32::from(op >> 6));
                let access = Access { write: op & 0x08 != 0, privileged: op & 0x10 != 0, instruction: false };
                if op & 0x80 != 0 {
                    // An ATS Translation Request: a success is a whole
                    // aligned page granting at most what was asked for.
                    let req = AtsRequest {
                        sid: u32::from(sid),
                        ssid,
                        addr: a,
                        privileged: access.privileged,
                        exec: op & 0x40 != 0,
                        no_write: !access.write,
                        span: 1,
                    };
                    if let (AtsResponse::Success(t), _) = smmu.translate_ats(&req, &mem) {
                        assert!(t.size_shift >= 12 && t.size_shift <= 52, "{t:?}");
                        assert_eq!(t.input, a & !((1u64 << t.size_shift) - 1), "{t:?}");
                        assert!(!t.perm.write || access.write, "{t:?} for {req:?}");
                    }
                    // Its F_BAD_ATS_TREQ records may land in the tables.
                    dirty |= smmu.registers().eventq.prod != events_before;
                    continue;
                }
                let req = Request { sid: u32::from(sid), ssid, addr: a, access };
                let fresh = (!dirty).then(|| {
                    let mut f = Smmu::new(cfg).unwrap();
                    f.load_registers(smmu.registers().clone());
                    f
                });
                let (r, _) = smmu.translate(&req, &mem);
                if let Ok(t) = r {
                    assert!(t.size_shift >= 12 && t.size_shift <= 52, "{t:?}");
                    let mask = (1u64 << t.size_shift) - 1;
                    assert_eq!(t.input & mask, 0, "{t:?}");
                    assert_eq!(t.input, a & !mask, "{t:?}");
                    assert!(t.perm.allows(access.write), "{t:?} for {access:?}");
                    if let Some(mut f) = fresh {
                        // The fresh device's memory writes (event records,
                        // flags) go to a copy, not the program's memory.
                        let copy = mem.clone();
                        let (rf, _) = f.translate(&req, &copy);
                        assert_eq!(rf.map(|x| (x.input, x.output_of(a))), Ok((t.input, t.output_of(a))));
                    }
                }
            }
        }
        let r = smmu.registers();
        assert!(r.cmdq.log2size <= 19 && r.eventq.log2size <= 19);
        dirty |= r.eventq.prod != events_before;
    }
});
