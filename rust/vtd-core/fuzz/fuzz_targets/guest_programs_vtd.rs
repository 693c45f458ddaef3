//! The fuzzer plays a hostile guest: its input is a program of register
//! accesses, writes to guest memory (tables, descriptors), DMA requests, ATS
//! translation requests and notifier syncs of a few address spaces. Nothing
//! it does may panic the model, a successful translation must be well
//! formed, and the MAP/UNMAP events a notifier receives must be consistent
//! (no MAP over a live mapping, UNMAPs of whole mappings, the consumer's
//! view equal to the shadow).
#![no_main]

use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap},
};

use libfuzzer_sys::fuzz_target;
use vtd_core::{
    AtsRequest, AtsResult, Config, Effects, GuestMemory, InterruptRequest, MemError, NotifierKind, PasidRequest,
    Request, Shadow, SyncOutcome, Vtd,
};

/// A notified address space and what its consumer holds.
struct Space {
    sid: u16,
    pasid: Option<u32>,
    shadow: Shadow,
    mirror: BTreeMap<u64, (u64, u64)>,
}

impl Space {
    fn apply(&mut self, out: &SyncOutcome) {
        for ev in &out.events {
            assert!(ev.size.is_power_of_two() && ev.size >= 0x1000);
            assert_eq!(ev.iova & (ev.size - 1), 0);
            assert_eq!(ev.phys & (ev.size - 1), 0);
            match ev.kind {
                NotifierKind::Map => {
                    let last = ev.iova + (ev.size - 1);
                    let overlap = self
                        .mirror
                        .range(..=last)
                        .next_back()
                        .is_some_and(|(k, (s, _))| k + (s - 1) >= ev.iova);
                    assert!(!overlap);
                    self.mirror.insert(ev.iova, (ev.size, ev.phys));
                }
                NotifierKind::Unmap => {
                    assert_eq!(self.mirror.remove(&ev.iova), Some((ev.size, ev.phys)));
                }
            }
        }
        assert_eq!(self.mirror.len(), self.shadow.len());
        assert!(self.shadow.iter().all(|(k, e)| self.mirror.get(&k) == Some(&(e.size, e.phys))));
    }
}

fn notify(vtd: &Vtd, mem: &Mem, fx: &Effects, spaces: &mut [Space]) {
    for ev in &fx.invalidations {
        for s in spaces.iter_mut() {
            let out = vtd.sync_shadow(s.sid, s.pasid, ev, &mut s.shadow, mem);
            s.apply(&out);
        }
    }
    // UNMAP-only and device-IOTLB notifiers of the same functions.
    let flags = vtd_core::NotifierFlags { map: false, unmap: true, device_iotlb: true };
    for s in spaces.iter().filter(|s| s.pasid.is_none()) {
        let up = vtd.update_notified_space(s.sid, flags, None, &fx.invalidations, mem);
        for n in &up.notifications {
            match *n {
                vtd_core::Notification::Unmap { first, last } => assert!(first <= last),
                vtd_core::Notification::DeviceIotlbUnmap { iova, mask } => {
                    assert_eq!(iova & mask, 0)
                }
                vtd_core::Notification::Map { .. } => panic!("MAP to an UNMAP-only notifier"),
            }
        }
    }
}

/// Sparse guest memory: 64 KiB of RAM at 0 plus whatever the program writes
/// elsewhere; reads of untouched pages fail like unmapped addresses.
#[derive(Default)]
struct Mem(RefCell<HashMap<u64, [u8; 4096]>>);

impl GuestMemory for Mem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let pages = self.0.borrow();
        for (i, b) in buf.iter_mut().enumerate() {
            let a = addr.checked_add(i as u64).ok_or(MemError)?;
            match pages.get(&(a >> 12)) {
                Some(p) => *b = p[(a & 0xfff) as usize],
                None if a < 0x10000 => *b = 0,
                None => return Err(MemError),
            }
        }
        Ok(())
    }

    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemError> {
        let mut pages = self.0.borrow_mut();
        for (i, b) in buf.iter().enumerate() {
            let a = addr.checked_add(i as u64).ok_or(MemError)?;
            if a >= 0x10000 && !pages.contains_key(&(a >> 12)) {
                return Err(MemError);
            }
            pages.entry(a >> 12).or_insert([0; 4096])[(a & 0xfff) as usize] = *b;
        }
        Ok(())
    }
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let (Some(flags), Some(flags2)) = (input.u8(), input.u8()) else { return };
    let cfg = Config {
        aw_bits: if flags & 1 != 0 { 39 } else { 48 },
        pass_through: flags & 2 != 0,
        snoop_control: flags & 4 != 0,
        dma_drain: flags & 8 != 0,
        caching_mode: flags & 16 != 0,
        scalable_mode: flags & 32 != 0,
        first_stage: flags & 64 != 0,
        pasid_bits: if flags & 128 != 0 { 20 } else { 0 },
        device_tlb: flags & 16 != 0,
        intremap: flags2 & 1 != 0,
        eim: flags2 & 3 == 3,
        second_stage: flags2 & 4 == 0,
        stale_tm: flags2 & 8 != 0,
        dma_translation: flags2 & 16 == 0,
        strict_ir: flags2 & 32 != 0,
        ..Config::default()
    };
    if cfg.validate().is_err() {
        return;
    }
    let mut vtd = Vtd::new(cfg);
    // As the QEMU glue runs it: queue processing stops in front of waits
    // that follow invalidations, and resumes once they are carried out.
    vtd.set_queue_barriers(flags2 & 4 != 0);
    let mem = Mem::default();
    // Small work caps: the fuzzer's tables live in 64 KiB and loop freely.
    let mut spaces: Vec<Space> = [(0u16, None), (8, None), (0, Some(1))]
        .into_iter()
        .map(|(sid, pasid)| Space { sid, pasid, shadow: Shadow::with_walk_limit(2048), mirror: BTreeMap::new() })
        .collect();
    while let Some(op) = input.u8() {
        match op % 9 {
            0 => {
                // register write: offsets mostly inside the window
                let (Some(off), Some(v)) = (input.u16(), input.u64()) else { break };
                let size = if op & 0x80 != 0 { 8 } else { 4 };
                let mut fx = vtd.write_reg(u64::from(off) % (Vtd::MMIO_SIZE + 16), size, v, &mem);
                loop {
                    notify(&vtd, &mem, &fx, &mut spaces);
                    if !fx.queue_barrier {
                        break;
                    }
                    fx = vtd.resume_queue(&mem);
                }
            }
            1 => {
                let Some(off) = input.u16() else { break };
                let _ = vtd.read_reg(u64::from(off) % (Vtd::MMIO_SIZE + 16), 4 << (op >> 7));
            }
            2 => {
                // a table entry or descriptor: 8 bytes into low RAM
                let (Some(addr), Some(v)) = (input.u16(), input.u64()) else { break };
                let _ = mem.write(u64::from(addr) & !7, &v.to_le_bytes());
            }
            3 | 4 => {
                let (Some(sid), Some(iova)) = (input.u16(), input.u64()) else { break };
                let req = Request { sid, iova, write: op & 0x40 != 0 };
                let lookup = vtd.lookup_cached(&req);
                let (result, effects) = match lookup {
                    // the path the glue takes after a miss, with the lookup's findings
                    Err(miss) if op & 0x20 != 0 => vtd.translate_miss(&req, miss, &mem),
                    _ => vtd.translate(&req, &mem),
                };
                if let Ok(t) = lookup {
                    // a cache-only answer is the full path's, without effects
                    assert_eq!(result, Ok(t));
                    assert!(effects.is_empty());
                }
                if let Ok(t) = result {
                    // a mapping covers the request and is naturally aligned
                    assert_eq!(t.iova & t.page_mask, 0);
                    assert_eq!(t.phys & t.page_mask, 0);
                    assert_eq!(iova & !t.page_mask, t.iova);
                    assert!(!req.write || t.perm.write);
                }
            }
            5 => {
                let (Some(sid), Some(pasid), Some(iova)) = (input.u16(), input.take::<4>(), input.u64())
                else { break };
                let req = PasidRequest {
                    sid,
                    pasid: u32::from_le_bytes(pasid),
                    privileged: op & 0x80 != 0,
                    iova,
                    write: op & 0x40 != 0,
                };
                if let (Ok(t), _) = vtd.translate_pasid(&req, &mem) {
                    assert_eq!(t.iova & t.page_mask, 0);
                    assert_eq!(t.phys & t.page_mask, 0);
                    assert_eq!(iova & !t.page_mask, t.iova);
                    assert!(!req.write || t.perm.write);
                }
            }
            6 => {
                let (Some(sid), Some(pasid), Some(iova)) = (input.u16(), input.take::<4>(), input.u64())
                else { break };
                let req = AtsRequest {
                    sid,
                    pasid: (op & 0x20 != 0).then(|| u32::from_le_bytes(pasid)),
                    privileged: op & 0x80 != 0,
                    exec: op & 0x10 != 0,
                    iova,
                    no_write: op & 0x40 != 0,
                };
                let cached = vtd.translate_ats_cached(&req);
                let (answer, effects) = vtd.translate_ats(&req, &mem);
                if let Some(t) = cached {
                    assert_eq!(answer, AtsResult::Success(t));
                    assert!(effects.is_empty());
                }
                if let AtsResult::Success(t) = answer {
                    assert_eq!(t.iova & t.page_mask, 0);
                    assert_eq!(t.phys & t.page_mask, 0);
                    assert_eq!(iova & !t.page_mask, t.iova);
                }
            }
            7 => {
                let s = &mut spaces[usize::from(op >> 3) % 3];
                let out = vtd.replay_shadow(s.sid, s.pasid, &mut s.shadow, &mem);
                s.apply(&out);
                if op & 0x80 != 0 {
                    let fx = vtd.reset_effects();
                    notify(&vtd, &mem, &fx, &mut spaces);
                }
            }
            8 => {
                // an interrupt request: mostly into the interrupt window
                let (Some(sid), Some(addr), Some(data)) = (input.u16(), input.take::<4>(), input.take::<4>())
                else { break };
                let addr = u64::from(u32::from_le_bytes(addr));
                let address = if op & 0x80 != 0 { addr } else { 0xfee0_0000 | (addr & 0xf_ffff) };
                let req = InterruptRequest { sid, address, data: u32::from_le_bytes(data) };
                let remapping = vtd.interrupt_remapping_enabled();
                // bit 6: a request whose requester id is implied (the
                // I/O APIC's), not carried
                let (result, effects) = vtd.remap_interrupt_from(&req, op & 0x40 == 0, &mem);
                assert!(effects.iec_invalidations.is_empty() && effects.interrupts.len() <= 1);
                match result {
                    Ok(m) if remapping && address & 0x10 != 0 => {
                        assert_eq!(m.address & 0xfff0_0ff0, 0xfee0_0000);
                        assert_eq!(m.data & 0xffff_7800, 0x4000);
                    }
                    Ok(m) => assert_eq!((m.address, m.data), (req.address, req.data)),
                    Err(f) => assert!(remapping && f.reason.is_interrupt_remapping()),
                }
            }
            _ => unreachable!(),
        }
    }
});
