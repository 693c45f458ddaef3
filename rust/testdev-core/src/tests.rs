//! Unit tests over a fake host: a flat "physical" memory, an IOVA map that
//! plays the IOMMU for both paths, and a log of ATS requests.

use super::*;
use std::collections::HashMap;

#[derive(Default)]
struct FakeHost {
    mem: Vec<u8>,
    /// (pasid key, page iova) -> (phys page, writable)
    map: HashMap<(u32, u64), (u64, bool)>,
    ats_requests: Vec<(Option<u32>, bool, u64, bool)>,
    watched: Vec<Option<u32>>,
    ats_broken: bool,
    attached: Vec<NotifierKind>,
    refuse_map: bool,
    replays: u32,
}

impl FakeHost {
    fn new() -> Self {
        FakeHost { mem: vec![0; 0x10000], ..Default::default() }
    }
    fn lookup(&self, pasid: Option<u32>, iova: u64) -> Option<(u64, bool)> {
        self.map.get(&(key_pasid(pasid), iova & !0xfff)).copied()
    }
}

impl DmaPort for FakeHost {
    fn dma(&mut self, iova: u64, buf: &mut [u8], write: bool) -> Result<(), AccessFailed> {
        for (i, b) in buf.iter_mut().enumerate() {
            let a = iova + i as u64;
            let (page, w) = self.lookup(None, a).ok_or(AccessFailed)?;
            if write && !w {
                return Err(AccessFailed);
            }
            let pa = (page + (a & 0xfff)) as usize;
            if write { self.mem[pa] = *b } else { *b = self.mem[pa] }
        }
        Ok(())
    }
    fn ats_translate(&mut self, pasid: Option<u32>, privileged: bool, _exec: bool, iova: u64, no_write: bool) -> Result<AtsEntry, AtsFailed> {
        self.ats_requests.push((pasid, privileged, iova, no_write));
        if self.ats_broken {
            return Err(AtsFailed);
        }
        Ok(match self.lookup(pasid, iova) {
            Some((page, w)) => AtsEntry { iova: iova & !0xfff, phys: page, mask: 0xfff, read: true, write: w },
            None => AtsEntry { iova: iova & !0xfff, phys: 0, mask: 0xfff, read: false, write: false },
        })
    }
    fn phys(&mut self, addr: u64, buf: &mut [u8], write: bool) -> Result<(), AccessFailed> {
        let a = addr as usize;
        let slot = self.mem.get_mut(a..a + buf.len()).ok_or(AccessFailed)?;
        if write { slot.copy_from_slice(buf) } else { buf.copy_from_slice(slot) }
        Ok(())
    }
    fn watch(&mut self, pasid: Option<u32>) {
        self.watched.push(pasid);
    }
    fn attach_notifier(&mut self, kind: NotifierKind) -> Result<(), NotifierError> {
        if kind == NotifierKind::Map && self.refuse_map {
            return Err(NotifierError::Refused);
        }
        self.attached.push(kind);
        Ok(())
    }
    fn replay(&mut self) {
        self.replays += 1;
    }
    fn iommu_translate(&mut self, iova: u64, write: bool) -> Option<AtsEntry> {
        let (page, w) = self.lookup(None, iova)?;
        (w || !write).then_some(AtsEntry { iova: iova & !0xfff, phys: page, mask: 0xfff, read: true, write: w })
    }
}

const ALL_CAPS: CapState = CapState { ats: true, pasid: true, pasid_priv: true, pasid_exec: true, pasid_width: 20 };

fn status(d: &TestDev) -> Status {
    match d.read(reg::STATUS, 4) & 0xff {
        1 => Status::Ok, 2 => Status::DmaError, 3 => Status::AtsDenied, 4 => Status::AtsError,
        5 => Status::Mismatch, 6 => Status::BadLength, 7 => Status::PasidUnavailable,
        8 => Status::AtsDisabled, 9 => Status::BadCommand, 10 => Status::MirrorFault,
        _ => Status::Idle,
    }
}

fn run(d: &mut TestDev, h: &mut FakeHost, iova: u64, len: u32, pasid: u32, cmd: u32, caps: CapState) -> Status {
    d.write(reg::IOVA, 8, iova, caps, h);
    d.write(reg::LEN, 4, u64::from(len), caps, h);
    d.write(reg::PASID, 4, u64::from(pasid), caps, h);
    d.write(reg::CMD, 4, u64::from(cmd), caps, h);
    status(d)
}

fn fill_buffer(d: &mut TestDev, h: &mut FakeHost, byte: u8) {
    for off in (0..BUFFER_SIZE as u64).step_by(8) {
        d.write(reg::BUFFER + off, 8, u64::from_le_bytes([byte; 8]), ALL_CAPS, h);
    }
}

#[test]
fn identification_and_reset_values() {
    let d = TestDev::new();
    assert_eq!(d.read(reg::ID, 4), u64::from(ID_VALUE));
    assert_eq!(d.read(reg::VERSION, 4), u64::from(VERSION));
    assert_eq!(d.read(reg::STATUS, 4), 0);
    assert_eq!(d.read(0xff8, 8), 0, "unknown registers read as zero");
}

#[test]
fn untranslated_read_write_compare() {
    let (mut d, mut h) = (TestDev::new(), FakeHost::new());
    h.map.insert((u32::MAX, 0x5000), (0x2000, true));
    h.mem[0x2010..0x2020].copy_from_slice(&[7; 16]);
    assert_eq!(run(&mut d, &mut h, 0x5010, 16, 0, OP_READ, ALL_CAPS), Status::Ok);
    assert_eq!(&d.buffer()[..16], &[7; 16]);
    fill_buffer(&mut d, &mut h, 0xab);
    assert_eq!(run(&mut d, &mut h, 0x5100, 32, 0, OP_WRITE, ALL_CAPS), Status::Ok);
    assert_eq!(&h.mem[0x2100..0x2120], &[0xab; 32]);
    assert_eq!(run(&mut d, &mut h, 0x5100, 32, 0, OP_COMPARE, ALL_CAPS), Status::Ok);
    assert_eq!(d.read(reg::RESULT, 4), 0xffff_ffff);
    h.mem[0x2105] = 0;
    assert_eq!(run(&mut d, &mut h, 0x5100, 32, 0, OP_COMPARE, ALL_CAPS), Status::Mismatch);
    assert_eq!(d.read(reg::RESULT, 4), 5);
    assert!(h.ats_requests.is_empty(), "untranslated DMA does not use ATS");
    assert_eq!(d.read(reg::STATUS, 4) >> 16, 4, "command counter");
}

#[test]
fn untranslated_fault_is_reported() {
    let (mut d, mut h) = (TestDev::new(), FakeHost::new());
    assert_eq!(run(&mut d, &mut h, 0x9000, 8, 0, OP_READ, ALL_CAPS), Status::DmaError);
    h.map.insert((u32::MAX, 0x9000), (0x1000, false));
    assert_eq!(run(&mut d, &mut h, 0x9000, 8, 0, OP_WRITE, ALL_CAPS), Status::DmaError);
}

#[test]
fn bad_length_and_command() {
    let (mut d, mut h) = (TestDev::new(), FakeHost::new());
    assert_eq!(run(&mut d, &mut h, 0, 0, 0, OP_READ, ALL_CAPS), Status::BadLength);
    assert_eq!(run(&mut d, &mut h, 0, 4097, 0, OP_READ, ALL_CAPS), Status::BadLength);
    assert_eq!(run(&mut d, &mut h, 0, 8, 0, 0, ALL_CAPS), Status::BadCommand);
}

#[test]
fn pasid_needs_ats_and_enabled_capability() {
    let (mut d, mut h) = (TestDev::new(), FakeHost::new());
    let p = PASID_VALID | 5;
    assert_eq!(run(&mut d, &mut h, 0, 8, p, OP_READ, ALL_CAPS), Status::PasidUnavailable);
    let no_pasid = CapState { pasid: false, ..ALL_CAPS };
    assert_eq!(run(&mut d, &mut h, 0, 8, p, OP_READ | CMD_ATS, no_pasid), Status::PasidUnavailable);
    let narrow = CapState { pasid_width: 2, ..ALL_CAPS };
    assert_eq!(run(&mut d, &mut h, 0, 8, p, OP_READ | CMD_ATS, narrow), Status::PasidUnavailable);
    let no_priv = CapState { pasid_priv: false, ..ALL_CAPS };
    assert_eq!(run(&mut d, &mut h, 0, 8, p | PASID_PRIV, OP_READ | CMD_ATS, no_priv), Status::PasidUnavailable);
    let no_ats = CapState { ats: false, ..ALL_CAPS };
    assert_eq!(run(&mut d, &mut h, 0, 8, 0, OP_READ | CMD_ATS, no_ats), Status::AtsDisabled);
    assert!(h.ats_requests.is_empty());
}

#[test]
fn ats_with_pasid_crosses_pages_and_caches() {
    let (mut d, mut h) = (TestDev::new(), FakeHost::new());
    h.map.insert((9, 0x7000), (0x3000, true));
    h.map.insert((9, 0x8000), (0x1000, true));
    fill_buffer(&mut d, &mut h, 0x5a);
    let p = PASID_VALID | PASID_PRIV | 9;
    assert_eq!(run(&mut d, &mut h, 0x7ff0, 32, p, OP_WRITE | CMD_ATS, ALL_CAPS), Status::Ok);
    assert_eq!(&h.mem[0x3ff0..0x4000], &[0x5a; 16]);
    assert_eq!(&h.mem[0x1000..0x1010], &[0x5a; 16]);
    assert_eq!(d.read(reg::XLATE, 8), 0x3ff0);
    assert_eq!(d.read(reg::RESULT, 4), 2, "two translation requests");
    assert_eq!(h.ats_requests, vec![(Some(9), true, 0x7ff0, false), (Some(9), true, 0x8000, false)]);
    assert_eq!(h.watched, vec![Some(9)]);
    // Cached: no new requests, even after the "IOMMU" mapping changed.
    h.map.insert((9, 0x7000), (0x5000, true));
    assert_eq!(run(&mut d, &mut h, 0x7ff0, 16, p, OP_COMPARE | CMD_ATS, ALL_CAPS), Status::Ok);
    assert_eq!(h.ats_requests.len(), 2);
    assert_eq!(d.read(reg::ATC_HITS, 4), 1);
    // Invalidation of another PASID changes nothing; of this one, refetches.
    d.invalidate_atc(Some(8), 0x7000, 0xfff);
    assert_eq!(d.atc_len(), 2);
    d.invalidate_atc(Some(9), 0x7000, 0xfff);
    assert_eq!(d.atc_len(), 1);
    assert_eq!(d.read(reg::ATC_INVALIDATIONS, 4), 2);
    assert_eq!(run(&mut d, &mut h, 0x7ff0, 16, p, OP_COMPARE | CMD_ATS, ALL_CAPS), Status::Mismatch);
    assert_eq!(d.read(reg::XLATE, 8), 0x5ff0);
}

#[test]
fn ats_denials_and_errors() {
    let (mut d, mut h) = (TestDev::new(), FakeHost::new());
    assert_eq!(run(&mut d, &mut h, 0x7000, 8, 0, OP_READ | CMD_ATS, ALL_CAPS), Status::AtsDenied);
    assert_eq!(d.atc_len(), 0, "denied translations are not cached");
    h.map.insert((u32::MAX, 0x7000), (0x1000, false));
    assert_eq!(run(&mut d, &mut h, 0x7000, 8, 0, OP_WRITE | CMD_ATS, ALL_CAPS), Status::AtsDenied);
    assert_eq!(h.ats_requests.last(), Some(&(None, false, 0x7000, false)));
    assert_eq!(run(&mut d, &mut h, 0x7000, 8, 0, OP_READ | CMD_ATS, ALL_CAPS), Status::Ok);
    h.ats_broken = true;
    d.write(reg::ATC_CTRL, 4, 1, ALL_CAPS, &mut h);
    assert_eq!(d.atc_len(), 0);
    assert_eq!(run(&mut d, &mut h, 0x7000, 8, 0, OP_READ | CMD_ATS, ALL_CAPS), Status::AtsError);
}

/// A misbehaving IOMMU answer (unaligned or not covering the address) is
/// an error, not a panic or an endless loop.
#[test]
fn malformed_translation_is_an_error() {
    struct Liar;
    impl DmaPort for Liar {
        fn dma(&mut self, _: u64, _: &mut [u8], _: bool) -> Result<(), AccessFailed> { Ok(()) }
        fn ats_translate(&mut self, _: Option<u32>, _: bool, _: bool, _: u64, _: bool) -> Result<AtsEntry, AtsFailed> {
            Ok(AtsEntry { iova: 0x123, phys: 0, mask: 0xfff, read: true, write: true })
        }
        fn phys(&mut self, _: u64, _: &mut [u8], _: bool) -> Result<(), AccessFailed> { Ok(()) }
        fn watch(&mut self, _: Option<u32>) {}
        fn attach_notifier(&mut self, _: NotifierKind) -> Result<(), NotifierError> { Ok(()) }
        fn replay(&mut self) {}
        fn iommu_translate(&mut self, _: u64, _: bool) -> Option<AtsEntry> {
            Some(AtsEntry { iova: 0x123, phys: 0, mask: 0xfff, read: true, write: true })
        }
    }
    let mut d = TestDev::new();
    d.write(reg::LEN, 4, 8, ALL_CAPS, &mut Liar);
    d.write(reg::CMD, 4, u64::from(OP_READ | CMD_ATS), ALL_CAPS, &mut Liar);
    assert_eq!(status(&d), Status::AtsError);
    d.write(reg::NOTIFIER, 4, 2, ALL_CAPS, &mut Liar);
    d.write(reg::CMD, 4, u64::from(OP_READ | CMD_MIRROR), ALL_CAPS, &mut Liar);
    assert_eq!(status(&d), Status::MirrorFault);
}

const MIRROR: u32 = CMD_MIRROR;

fn counters(d: &TestDev) -> (u64, u64, u64, u64) {
    let maps = d.read(reg::MIRROR_MAPS, 8);
    let len = d.read(reg::MIRROR_LEN, 8);
    (maps & 0xffff_ffff, maps >> 32, len & 0xffff_ffff, len >> 32)
}

#[test]
fn mirror_uses_only_what_map_notifications_reported() {
    let (mut d, mut h) = (TestDev::new(), FakeHost::new());
    // The IOMMU's own map says 0x5000 -> 0x3000; the mirror will say 0x2000.
    h.map.insert((u32::MAX, 0x5000), (0x3000, true));
    h.mem[0x2010] = 0x11;
    h.mem[0x3010] = 0x33;
    assert_eq!(run(&mut d, &mut h, 0x5010, 1, 0, OP_READ | MIRROR, ALL_CAPS), Status::MirrorFault, "no notifier");
    d.write(reg::NOTIFIER, 4, 1, ALL_CAPS, &mut h);
    assert_eq!((d.read(reg::NOTIFIER, 4), d.notifier()), (1, NotifierKind::Map));
    assert_eq!(h.attached, vec![NotifierKind::Map]);
    assert_eq!(run(&mut d, &mut h, 0x5010, 1, 0, OP_READ | MIRROR, ALL_CAPS), Status::MirrorFault, "never reported");
    d.notify_map(0x4000, 0x1fff, 0x1000, true, false);
    assert_eq!(run(&mut d, &mut h, 0x5010, 1, 0, OP_READ | MIRROR, ALL_CAPS), Status::Ok);
    assert_eq!((d.buffer()[0], d.read(reg::XLATE, 8)), (0x11, 0x2010));
    assert_eq!(run(&mut d, &mut h, 0x5010, 1, 0, OP_WRITE | MIRROR, ALL_CAPS), Status::MirrorFault, "read-only");
    // A MAP over an existing entry is a conflict; UNMAP removes.
    d.notify_map(0x5000, 0xfff, 0x3000, true, true);
    assert_eq!(counters(&d), (2, 0, 1, 1));
    assert_eq!(run(&mut d, &mut h, 0x5010, 1, 0, OP_READ | MIRROR, ALL_CAPS), Status::Ok);
    assert_eq!(d.buffer()[0], 0x33);
    d.notify_unmap(0x0, 0xffff);
    assert_eq!(counters(&d), (2, 1, 0, 1));
    assert_eq!(run(&mut d, &mut h, 0x5010, 1, 0, OP_READ | MIRROR, ALL_CAPS), Status::MirrorFault);
    // Replay goes to the host side; mirror with ATS or a PASID is refused.
    d.write(reg::NOTIFIER, 4, 3, ALL_CAPS, &mut h);
    assert_eq!(h.replays, 1);
    assert_eq!(run(&mut d, &mut h, 0x5010, 1, 0, OP_READ | MIRROR | CMD_ATS, ALL_CAPS), Status::BadCommand);
    assert_eq!(run(&mut d, &mut h, 0x5010, 1, PASID_VALID | 3, OP_READ | MIRROR, ALL_CAPS), Status::BadCommand);
}

#[test]
fn mirror_spans_entries_and_unmap_removes_overlaps_only() {
    let (mut d, mut h) = (TestDev::new(), FakeHost::new());
    d.write(reg::NOTIFIER, 4, 1, ALL_CAPS, &mut h);
    d.notify_map(0x1000, 0xfff, 0x8000, true, true);
    d.notify_map(0x2000, 0xfff, 0x4000, true, true);
    d.notify_map(0x4000, 0x3fff, 0xc000, true, true);
    h.mem[0x8ffe..0x9000].copy_from_slice(&[1, 2]);
    h.mem[0x4000..0x4002].copy_from_slice(&[3, 4]);
    assert_eq!(run(&mut d, &mut h, 0x1ffe, 4, 0, OP_READ | MIRROR, ALL_CAPS), Status::Ok);
    assert_eq!(&d.buffer()[..4], &[1, 2, 3, 4]);
    d.notify_unmap(0x2000, 0x1fff);
    assert_eq!(d.mirror_len(), 2);
    assert_eq!(run(&mut d, &mut h, 0x1ffe, 4, 0, OP_READ | MIRROR, ALL_CAPS), Status::MirrorFault);
    // Re-attaching starts from an empty mirror.
    d.write(reg::NOTIFIER, 4, 1, ALL_CAPS, &mut h);
    assert_eq!(d.mirror_len(), 0);
}

#[test]
fn unmap_only_notifier_caches_misses_until_unmapped() {
    let (mut d, mut h) = (TestDev::new(), FakeHost::new());
    h.map.insert((u32::MAX, 0x5000), (0x2000, true));
    h.mem[0x2000] = 0x22;
    h.mem[0x3000] = 0x33;
    d.write(reg::NOTIFIER, 4, 2, ALL_CAPS, &mut h);
    assert_eq!(d.read(reg::NOTIFIER, 4), 2);
    assert_eq!(run(&mut d, &mut h, 0x5000, 1, 0, OP_READ | MIRROR, ALL_CAPS), Status::Ok);
    assert_eq!(d.buffer()[0], 0x22);
    // The IOMMU's mapping changes: the cached one stays until an UNMAP.
    h.map.insert((u32::MAX, 0x5000), (0x3000, true));
    assert_eq!(run(&mut d, &mut h, 0x5000, 1, 0, OP_READ | MIRROR, ALL_CAPS), Status::Ok);
    assert_eq!(d.buffer()[0], 0x22, "stale until invalidated");
    d.notify_unmap(0x5000, 0xfff);
    assert_eq!(run(&mut d, &mut h, 0x5000, 1, 0, OP_READ | MIRROR, ALL_CAPS), Status::Ok);
    assert_eq!(d.buffer()[0], 0x33);
    h.map.clear();
    d.notify_unmap(0, u64::MAX);
    assert_eq!(run(&mut d, &mut h, 0x5000, 1, 0, OP_READ | MIRROR, ALL_CAPS), Status::MirrorFault);
}

#[test]
fn refused_notifier_is_reported() {
    let (mut d, mut h) = (TestDev::new(), FakeHost::new());
    h.refuse_map = true;
    d.write(reg::NOTIFIER, 4, 1, ALL_CAPS, &mut h);
    assert_eq!(d.read(reg::NOTIFIER, 4), (NotifierError::Refused as u64) << 8);
    d.notify_map(0x1000, 0xfff, 0, true, true);
    assert_eq!(d.mirror_len(), 0, "MAPs without an attached notifier are ignored");
    assert_eq!(run(&mut d, &mut h, 0x1000, 1, 0, OP_READ | MIRROR, ALL_CAPS), Status::MirrorFault);
    d.write(reg::NOTIFIER, 4, 2, ALL_CAPS, &mut h);
    assert_eq!(d.read(reg::NOTIFIER, 4), 2);
}

#[test]
fn reset_keeps_watches_only() {
    let (mut d, mut h) = (TestDev::new(), FakeHost::new());
    h.map.insert((u32::MAX, 0), (0, true));
    assert_eq!(run(&mut d, &mut h, 0, 8, 0, OP_READ | CMD_ATS, ALL_CAPS), Status::Ok);
    d.reset();
    assert_eq!(d.atc_len(), 0);
    assert_eq!(d.read(reg::STATUS, 4), 0);
    assert_eq!(run(&mut d, &mut h, 0, 8, 0, OP_READ | CMD_ATS, ALL_CAPS), Status::Ok);
    assert_eq!(h.watched, vec![None], "subscribed once");
}

#[test]
fn random_register_traffic_never_panics() {
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut next = || { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x };
    let (mut d, mut h) = (TestDev::new(), FakeHost::new());
    for i in 0..64u64 {
        h.map.insert((if i % 3 == 0 { u32::MAX } else { (i % 5) as u32 }, (i * 0x1000) & 0xffff), ((i * 0x3000) & 0xf000, i % 2 == 0));
    }
    for _ in 0..200_000 {
        let off = next() % (BAR_SIZE + 16);
        let size = [1, 2, 4, 8][(next() % 4) as usize];
        let caps = CapState { ats: next() % 4 != 0, pasid: next() % 3 != 0, pasid_priv: true, pasid_exec: false, pasid_width: (next() % 22) as u8 };
        if next() % 2 == 0 {
            let v = next();
            let v = if off & !7 == reg::LEN { v & 0x8000_000f_0000_1fff } else { v };
            d.write(off, size, v, caps, &mut h);
        } else {
            let _ = d.read(off, size);
        }
        if next() % 50 == 0 {
            d.invalidate_atc(Some((next() % 5) as u32), next(), next());
        }
        match next() % 40 {
            0 => d.write(reg::NOTIFIER, 4, next() % 5, caps, &mut h),
            1 => { let (a, m) = (next(), (1u64 << (next() % 64)).wrapping_sub(1)); d.notify_map(a & !m, m, next(), next() % 2 == 0, next() % 2 == 0) }
            2 => d.notify_unmap(next(), next()),
            3 => d.write(reg::CMD, 4, u64::from(1 + (next() % 3) as u32) | u64::from(CMD_MIRROR), caps, &mut h),
            _ => {}
        }
    }
}
