//! The `rviommu-testdev` PCIe DMA test device, without QEMU.
//!
//! A test (qtest or guest driver) programs an IOVA, a length, an optional
//! PASID with privilege/execute bits and rings a doorbell; the device then
//! copies between its 4 KiB buffer and memory (read, write) or compares
//! memory with the buffer, synchronously, and reports the outcome in a
//! status register. The register map is documented in
//! `docs/rviommu/testdev.rst`; the offsets below are its source of truth.
//!
//! Two DMA paths, chosen per command:
//! * untranslated requests (no PASID): through the device's bus-master
//!   address space, i.e. the IOMMU's DMA translation ([`DmaPort::dma`]);
//! * ATS (`CMD_ATS`, required for PASID-tagged DMA): the device asks the
//!   IOMMU for translations ([`DmaPort::ats_translate`]), keeps them in its
//!   own address translation cache (the device-TLB), and issues translated
//!   requests to the physical addresses ([`DmaPort::phys`]). Cached
//!   translations are used until the IOMMU's device-TLB invalidation reaches
//!   [`TestDev::invalidate_atc`], so a test can observe a missing
//!   invalidation.
//! * Mirror (`CMD_MIRROR`): the device translates with a table of its own
//!   that only the IOMMU's notifiers fill, as a device assigned with vfio
//!   behind a host IOMMU (MAP/UNMAP notifier, filled by MAP events and
//!   replay) or a vhost backend (UNMAP-only notifier: misses are asked of
//!   the IOMMU with [`DmaPort::iommu_translate`], UNMAP events evict). This
//!   is how caching mode and notifier replay are tested without vfio.
//!
//! Conventions: all ranges are `[start, start + len)`; nothing a driver
//! writes can make this code panic (lengths and offsets are checked, the
//! arithmetic cannot overflow); the host side is reached only through
//! [`DmaPort`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::BTreeMap;

/// Register offsets in BAR0.
pub mod reg {
    /// Identification, read-only: [`super::ID_VALUE`].
    pub const ID: u64 = 0x00;
    /// Interface version, read-only.
    pub const VERSION: u64 = 0x04;
    /// DMA address (IOVA), 64 bits.
    pub const IOVA: u64 = 0x08;
    /// DMA length in bytes, 1..=4096.
    pub const LEN: u64 = 0x10;
    /// PASID control: bits 19:0 PASID, 29 execute, 30 privileged, 31 valid.
    pub const PASID: u64 = 0x14;
    /// Doorbell: writing a command runs it to completion.
    pub const CMD: u64 = 0x18;
    /// Outcome of the last command (read-only).
    pub const STATUS: u64 = 0x1c;
    /// Command-specific result (read-only): offset of the first differing
    /// byte for COMPARE (0xffffffff when equal), number of ATS translation
    /// requests issued otherwise.
    pub const RESULT: u64 = 0x20;
    /// Translated address of the first byte (ATS commands), 64 bits, RO.
    pub const XLATE: u64 = 0x28;
    /// Device-TLB hits (RO, 32 bits).
    pub const ATC_HITS: u64 = 0x30;
    /// Device-TLB invalidations received from the IOMMU (RO, 32 bits).
    pub const ATC_INVALIDATIONS: u64 = 0x34;
    /// Device-TLB entries currently cached (RO); writing 1 flushes the cache.
    pub const ATC_CTRL: u64 = 0x38;
    /// IOMMU notifier control. Write: 0 detach, 1 attach a MAP/UNMAP
    /// notifier and replay, 2 attach an UNMAP-only notifier, 3 replay
    /// again. Read: bits 1:0 attached kind, bits 15:8 last attach error
    /// ([`super::NotifierError`]).
    pub const NOTIFIER: u64 = 0x40;
    /// MAP events received (RO, 32 bits).
    pub const MIRROR_MAPS: u64 = 0x48;
    /// UNMAP events received (RO, 32 bits).
    pub const MIRROR_UNMAPS: u64 = 0x4c;
    /// Mirror entries (RO, 32 bits).
    pub const MIRROR_LEN: u64 = 0x50;
    /// MAP events that overlapped an existing entry (RO, 32 bits): a
    /// consumer like vfio would have failed them.
    pub const MIRROR_CONFLICTS: u64 = 0x54;
    /// Start of the 4 KiB data buffer.
    pub const BUFFER: u64 = 0x1000;
}

/// Value of the ID register: "RVTD".
pub const ID_VALUE: u32 = 0x4454_5652;
/// Interface version.
pub const VERSION: u32 = 1;
/// Size of the data buffer and maximum DMA length.
pub const BUFFER_SIZE: usize = 4096;
/// Size of BAR0.
pub const BAR_SIZE: u64 = 0x2000;
/// Entries the device-TLB holds before it is flushed.
pub const ATC_CAPACITY: usize = 256;

/// PASID register: PASID valid.
pub const PASID_VALID: u32 = 1 << 31;
/// PASID register: privileged (supervisor) request.
pub const PASID_PRIV: u32 = 1 << 30;
/// PASID register: execute request.
pub const PASID_EXEC: u32 = 1 << 29;
/// PASID register: the PASID value.
pub const PASID_MASK: u32 = 0xf_ffff;

/// CMD: opcode field.
pub const CMD_OP_MASK: u32 = 0x3;
/// CMD opcode: read `LEN` bytes at `IOVA` into the buffer.
pub const OP_READ: u32 = 1;
/// CMD opcode: write `LEN` bytes of the buffer to `IOVA`.
pub const OP_WRITE: u32 = 2;
/// CMD opcode: compare `LEN` bytes at `IOVA` with the buffer.
pub const OP_COMPARE: u32 = 3;
/// CMD: go through ATS (translation requests + translated accesses).
pub const CMD_ATS: u32 = 1 << 4;
/// CMD: translate with the notifier-fed mirror (no PASID, no ATS).
pub const CMD_MIRROR: u32 = 1 << 5;

/// The kind of IOMMU notifier the device has attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum NotifierKind {
    /// None.
    None = 0,
    /// MAP and UNMAP events (as vfio): the mirror holds exactly what the
    /// IOMMU reported.
    Map = 1,
    /// UNMAP events only (as vhost): the mirror caches translations asked
    /// of the IOMMU on misses.
    UnmapOnly = 2,
}

/// Why attaching a notifier failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum NotifierError {
    /// Attached fine (or never tried).
    None = 0,
    /// The IOMMU refused the notifier (e.g. MAP without caching mode).
    Refused = 1,
    /// The device's DMA is not behind an IOMMU region right now
    /// (no IOMMU, or its address space is identity-mapped).
    NoIommu = 2,
}

/// Outcome codes (STATUS bits 7:0); bits 31:16 count the commands run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// No command has run since reset.
    Idle = 0,
    /// The command completed.
    Ok = 1,
    /// An untranslated or translated memory access failed (IOMMU fault,
    /// unassigned address).
    DmaError = 2,
    /// ATS: the translation completed without the needed permission
    /// (not present, read-only, privilege).
    AtsDenied = 3,
    /// ATS: the translation request failed (unsupported request, IOMMU
    /// without ATS, device-TLB not enabled for the device).
    AtsError = 4,
    /// COMPARE found a difference (offset in RESULT).
    Mismatch = 5,
    /// LEN is 0 or larger than the buffer.
    BadLength = 6,
    /// A PASID was requested but the PASID capability is not enabled, the
    /// PASID is wider than enabled, or the command does not use ATS.
    PasidUnavailable = 7,
    /// ATS requested but the ATS capability is not enabled.
    AtsDisabled = 8,
    /// Unknown opcode.
    BadCommand = 9,
    /// Mirror: no mapping with the needed permission (for a MAP notifier:
    /// the IOMMU never reported one; UNMAP-only: the IOMMU refused the
    /// translation), or no notifier attached.
    MirrorFault = 10,
}

/// One translation returned by the IOMMU for an ATS request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AtsEntry {
    /// First address of the translated range (aligned to `mask + 1`).
    pub iova: u64,
    /// Translated address of `iova`.
    pub phys: u64,
    /// Range size minus one (a power of two minus one).
    pub mask: u64,
    /// Read permitted.
    pub read: bool,
    /// Write permitted.
    pub write: bool,
}

impl AtsEntry {
    /// The range is a naturally aligned power of two that contains `iova`
    /// (a misbehaving translation otherwise).
    pub fn covers(&self, iova: u64) -> bool {
        self.mask.checked_add(1).is_none_or(|s| s.is_power_of_two())
            && self.iova & self.mask == 0
            && self.iova <= iova
            && iova <= self.iova.saturating_add(self.mask)
    }

    /// The access (write or read) is permitted.
    pub fn allows(&self, write: bool) -> bool {
        if write { self.write } else { self.read }
    }
}

/// Failure of an ATS translation request as such (not a permission denial).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AtsFailed;

/// Failure of a memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessFailed;

/// What the device reaches on the host side.
pub trait DmaPort {
    /// Untranslated request (no PASID) through the bus-master address space.
    fn dma(&mut self, iova: u64, buf: &mut [u8], write: bool) -> Result<(), AccessFailed>;
    /// ATS translation request for the page holding `iova`.
    fn ats_translate(
        &mut self,
        pasid: Option<u32>,
        privileged: bool,
        exec: bool,
        iova: u64,
        no_write: bool,
    ) -> Result<AtsEntry, AtsFailed>;
    /// Translated request at a translated (physical) address.
    fn phys(&mut self, addr: u64, buf: &mut [u8], write: bool) -> Result<(), AccessFailed>;
    /// Called the first time a PASID (or `None`) is used with ATS, so that
    /// the host side can subscribe to device-TLB invalidations for it.
    fn watch(&mut self, pasid: Option<u32>);
    /// Attach an IOMMU notifier of `kind` (replacing any attached one);
    /// for [`NotifierKind::Map`] the IOMMU then replays its mappings, which
    /// arrive through [`TestDev::notify_map`]. [`NotifierKind::None`]
    /// detaches.
    fn attach_notifier(&mut self, kind: NotifierKind) -> Result<(), NotifierError>;
    /// Ask the IOMMU to replay its mappings to the attached MAP notifier.
    fn replay(&mut self);
    /// Translate `iova` (requests without PASID) the way an IOMMU
    /// notifier's consumer does on a miss: `None` when not permitted.
    fn iommu_translate(&mut self, iova: u64, write: bool) -> Option<AtsEntry>;
}

/// PCIe capability state the driver controls through configuration space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapState {
    /// ATS capability enabled.
    pub ats: bool,
    /// PASID capability enabled.
    pub pasid: bool,
    /// PASID privileged mode enabled.
    pub pasid_priv: bool,
    /// PASID execute permission enabled.
    pub pasid_exec: bool,
    /// Width of the PASIDs the device may use.
    pub pasid_width: u8,
}

/// Device-TLB key: PASID (`u32::MAX` for none) and page address.
type AtcKey = (u32, u64);

/// The device state.
#[derive(Clone, Debug)]
pub struct TestDev {
    iova: u64,
    len: u32,
    pasid: u32,
    status: Status,
    commands: u16,
    result: u32,
    xlate: u64,
    atc_hits: u32,
    atc_invalidations: u32,
    buffer: Vec<u8>,
    atc: BTreeMap<AtcKey, AtsEntry>,
    watched: Vec<Option<u32>>,
    notifier: NotifierKind,
    notifier_error: NotifierError,
    /// Notifier-fed translations by input address (`iova` = the key).
    mirror: BTreeMap<u64, AtsEntry>,
    mirror_maps: u32,
    mirror_unmaps: u32,
    mirror_conflicts: u32,
}

impl Default for TestDev {
    fn default() -> Self {
        TestDev {
            iova: 0,
            len: 0,
            pasid: 0,
            status: Status::Idle,
            commands: 0,
            result: 0,
            xlate: 0,
            atc_hits: 0,
            atc_invalidations: 0,
            buffer: vec![0; BUFFER_SIZE],
            atc: BTreeMap::new(),
            watched: Vec::new(),
            notifier: NotifierKind::None,
            notifier_error: NotifierError::None,
            mirror: BTreeMap::new(),
            mirror_maps: 0,
            mirror_unmaps: 0,
            mirror_conflicts: 0,
        }
    }
}

fn key_pasid(pasid: Option<u32>) -> u32 {
    pasid.unwrap_or(u32::MAX)
}

fn merge(old: u64, value: u64, shift: u32, size: u32) -> u64 {
    let mask = if size >= 8 { u64::MAX } else { (1u64 << (size * 8)) - 1 } << shift;
    (old & !mask) | ((value << shift) & mask)
}

impl TestDev {
    /// A device after reset.
    pub fn new() -> TestDev {
        TestDev::default()
    }

    /// Device reset: registers, buffer, device-TLB and mirror cleared.
    /// PASIDs already watched stay watched (the host-side subscriptions
    /// live as long as the device); the host side detaches the notifier.
    pub fn reset(&mut self) {
        let watched = std::mem::take(&mut self.watched);
        *self = TestDev { watched, ..TestDev::default() };
    }

    /// The attached notifier kind.
    pub fn notifier(&self) -> NotifierKind {
        self.notifier
    }

    /// Number of mirror entries.
    pub fn mirror_len(&self) -> usize {
        self.mirror.len()
    }

    /// A MAP event: `[iova, iova + mask]` translates to `phys`. A range that
    /// overlaps existing entries replaces them and counts as a conflict.
    pub fn notify_map(&mut self, iova: u64, mask: u64, phys: u64, read: bool, write: bool) {
        self.mirror_maps = self.mirror_maps.wrapping_add(1);
        if self.notifier == NotifierKind::None {
            return;
        }
        if self.mirror_remove(iova, mask) > 0 {
            self.mirror_conflicts = self.mirror_conflicts.wrapping_add(1);
        }
        self.mirror.insert(iova, AtsEntry { iova, phys, mask, read, write });
    }

    /// An UNMAP event: entries overlapping `[iova, iova + mask]` go.
    pub fn notify_unmap(&mut self, iova: u64, mask: u64) {
        self.mirror_unmaps = self.mirror_unmaps.wrapping_add(1);
        self.mirror_remove(iova, mask);
    }

    /// Remove the entries overlapping `[iova, iova + mask]`; how many.
    fn mirror_remove(&mut self, iova: u64, mask: u64) -> usize {
        let last = iova.saturating_add(mask);
        let doomed: Vec<u64> = self
            .mirror
            .range(..=last)
            .rev()
            // Entries never overlap: walking down from `last`, the first
            // one that ends below `iova` ends the overlapping run.
            .take_while(|(k, e)| k.saturating_add(e.mask) >= iova)
            .map(|(k, _)| *k)
            .collect();
        for k in &doomed {
            self.mirror.remove(k);
        }
        doomed.len()
    }

    fn mirror_lookup(&self, iova: u64) -> Option<AtsEntry> {
        let (k, e) = self.mirror.range(..=iova).next_back()?;
        (iova - k <= e.mask).then_some(*e)
    }

    fn set_notifier(&mut self, value: u64, port: &mut impl DmaPort) {
        let kind = match value {
            0 => NotifierKind::None,
            1 => NotifierKind::Map,
            2 => NotifierKind::UnmapOnly,
            3 => {
                if self.notifier == NotifierKind::Map {
                    port.replay();
                }
                return;
            }
            _ => return,
        };
        self.mirror.clear();
        self.notifier = NotifierKind::None;
        self.notifier_error = NotifierError::None;
        match port.attach_notifier(kind) {
            Ok(()) => self.notifier = kind,
            Err(e) => self.notifier_error = e,
        }
    }

    /// The 4 KiB data buffer.
    pub fn buffer(&self) -> &[u8] {
        &self.buffer
    }

    /// Number of cached translations.
    pub fn atc_len(&self) -> usize {
        self.atc.len()
    }

    fn reg64(&self, base: u64) -> Option<u64> {
        Some(match base {
            reg::ID => u64::from(ID_VALUE) | (u64::from(VERSION) << 32),
            reg::IOVA => self.iova,
            reg::LEN => u64::from(self.len) | (u64::from(self.pasid) << 32),
            reg::CMD => u64::from(self.status_word()) << 32,
            reg::RESULT => u64::from(self.result),
            reg::XLATE => self.xlate,
            reg::ATC_HITS => u64::from(self.atc_hits) | (u64::from(self.atc_invalidations) << 32),
            reg::ATC_CTRL => self.atc.len() as u64,
            reg::NOTIFIER => self.notifier as u64 | ((self.notifier_error as u64) << 8),
            reg::MIRROR_MAPS => u64::from(self.mirror_maps) | (u64::from(self.mirror_unmaps) << 32),
            reg::MIRROR_LEN => self.mirror.len() as u64 | (u64::from(self.mirror_conflicts) << 32),
            _ => return None,
        })
    }

    fn status_word(&self) -> u32 {
        (u32::from(self.commands) << 16) | self.status as u32
    }

    /// MMIO read of `size` (1, 2, 4 or 8) bytes at `offset` in BAR0.
    pub fn read(&self, offset: u64, size: u32) -> u64 {
        let size = size.clamp(1, 8);
        if (reg::BUFFER..reg::BUFFER + BUFFER_SIZE as u64).contains(&offset) {
            let start = (offset - reg::BUFFER) as usize;
            let end = (start + size as usize).min(BUFFER_SIZE);
            let mut bytes = [0u8; 8];
            bytes[..end - start].copy_from_slice(&self.buffer[start..end]);
            return u64::from_le_bytes(bytes);
        }
        let base = offset & !7;
        let shift = ((offset & 7) * 8) as u32;
        let Some(v) = self.reg64(base) else { return 0 };
        let v = v >> shift;
        if size >= 8 {
            v
        } else {
            v & ((1u64 << (size * 8)) - 1)
        }
    }

    /// MMIO write; a write to CMD runs the command through `port`.
    pub fn write(&mut self, offset: u64, size: u32, value: u64, caps: CapState, port: &mut impl DmaPort) {
        let size = size.clamp(1, 8);
        if (reg::BUFFER..reg::BUFFER + BUFFER_SIZE as u64).contains(&offset) {
            let start = (offset - reg::BUFFER) as usize;
            let end = (start + size as usize).min(BUFFER_SIZE);
            let bytes = value.to_le_bytes();
            self.buffer[start..end].copy_from_slice(&bytes[..end - start]);
            return;
        }
        let base = offset & !7;
        let shift = ((offset & 7) * 8) as u32;
        match base {
            reg::IOVA => self.iova = merge(self.iova, value, shift, size),
            reg::LEN => {
                let old = u64::from(self.len) | (u64::from(self.pasid) << 32);
                let new = merge(old, value, shift, size);
                self.len = new as u32;
                self.pasid = (new >> 32) as u32;
            }
            reg::CMD if shift == 0 => self.run(value as u32, caps, port),
            reg::ATC_CTRL if shift == 0 && value & 1 != 0 => self.atc.clear(),
            reg::NOTIFIER if shift == 0 => self.set_notifier(value & 0xffff_ffff, port),
            _ => {}
        }
    }

    /// A device-TLB invalidation from the IOMMU: drop the cached
    /// translations of `pasid` that overlap `[iova, iova + mask]`.
    pub fn invalidate_atc(&mut self, pasid: Option<u32>, iova: u64, mask: u64) {
        let p = key_pasid(pasid);
        let last = iova.saturating_add(mask);
        self.atc.retain(|&(kp, _), e| {
            kp != p || e.iova.saturating_add(e.mask) < iova || e.iova > last
        });
        self.atc_invalidations = self.atc_invalidations.wrapping_add(1);
    }

    fn finish(&mut self, status: Status) {
        self.status = status;
        self.commands = self.commands.wrapping_add(1);
    }

    fn run(&mut self, cmd: u32, caps: CapState, port: &mut impl DmaPort) {
        self.result = 0;
        self.xlate = 0;
        let op = cmd & CMD_OP_MASK;
        if op == 0 {
            return self.finish(Status::BadCommand);
        }
        let len = self.len as usize;
        if len == 0 || len > BUFFER_SIZE {
            return self.finish(Status::BadLength);
        }
        let ats = cmd & CMD_ATS != 0;
        let mirror = cmd & CMD_MIRROR != 0;
        if mirror && (ats || self.pasid & PASID_VALID != 0) {
            return self.finish(Status::BadCommand);
        }
        let pasid = if self.pasid & PASID_VALID != 0 {
            let value = self.pasid & PASID_MASK;
            let fits = caps.pasid_width >= 32 || value >> caps.pasid_width == 0;
            let modes_ok = (self.pasid & PASID_PRIV == 0 || caps.pasid_priv)
                && (self.pasid & PASID_EXEC == 0 || caps.pasid_exec);
            if !ats || !caps.pasid || !fits || !modes_ok {
                return self.finish(Status::PasidUnavailable);
            }
            Some(value)
        } else {
            None
        };
        if ats && !caps.ats {
            return self.finish(Status::AtsDisabled);
        }
        let mut data = vec![0u8; len];
        if op == OP_WRITE {
            data.copy_from_slice(&self.buffer[..len]);
        }
        let write = op == OP_WRITE;
        let outcome = if ats {
            self.ats_access(pasid, &mut data, write, port)
        } else if mirror {
            self.mirror_access(&mut data, write, port)
        } else {
            port.dma(self.iova, &mut data, write).map_err(|_| Status::DmaError)
        };
        if let Err(status) = outcome {
            return self.finish(status);
        }
        match op {
            OP_READ => self.buffer[..len].copy_from_slice(&data),
            OP_COMPARE => {
                if let Some(i) = data.iter().zip(&self.buffer[..len]).position(|(a, b)| a != b) {
                    self.result = i as u32;
                    return self.finish(Status::Mismatch);
                }
                self.result = u32::MAX;
            }
            _ => {}
        }
        self.finish(Status::Ok)
    }

    /// The cached or freshly requested translation covering `iova`.
    fn translation(
        &mut self,
        pasid: Option<u32>,
        iova: u64,
        write: bool,
        port: &mut impl DmaPort,
    ) -> Result<AtsEntry, Status> {
        let p = key_pasid(pasid);
        if let Some((_, e)) = self.atc.range((p, 0)..=(p, iova)).next_back() {
            if e.iova <= iova
                && iova <= e.iova.saturating_add(e.mask)
                && (e.write || !write)
            {
                self.atc_hits = self.atc_hits.wrapping_add(1);
                return Ok(*e);
            }
        }
        if !self.watched.contains(&pasid) {
            self.watched.push(pasid);
            port.watch(pasid);
        }
        let privileged = self.pasid & PASID_PRIV != 0 && pasid.is_some();
        let exec = self.pasid & PASID_EXEC != 0 && pasid.is_some();
        self.result = self.result.wrapping_add(1);
        let e = port
            .ats_translate(pasid, privileged, exec, iova, !write)
            .map_err(|_| Status::AtsError)?;
        if !e.covers(iova) {
            return Err(Status::AtsError);
        }
        if !e.read && !e.write {
            return Err(Status::AtsDenied);
        }
        if self.atc.len() >= ATC_CAPACITY {
            self.atc.clear();
        }
        self.atc.insert((p, e.iova), e);
        Ok(e)
    }

    /// The mirror's translation of `iova` for a read or write; for an
    /// UNMAP-only notifier a miss is asked of the IOMMU and kept.
    fn mirror_translation(&mut self, iova: u64, write: bool, port: &mut impl DmaPort) -> Result<AtsEntry, Status> {
        if let Some(e) = self.mirror_lookup(iova).filter(|e| e.allows(write)) {
            return Ok(e);
        }
        if self.notifier != NotifierKind::UnmapOnly {
            return Err(Status::MirrorFault);
        }
        let t = port.iommu_translate(iova, write).ok_or(Status::MirrorFault)?;
        if !t.covers(iova) || !t.allows(write) {
            return Err(Status::MirrorFault);
        }
        self.mirror_remove(t.iova, t.mask);
        self.mirror.insert(t.iova, t);
        Ok(t)
    }

    /// DMA through the mirror, page by page of its entries.
    fn mirror_access(&mut self, data: &mut [u8], write: bool, port: &mut impl DmaPort) -> Result<(), Status> {
        self.translated_access(data, write, port, |dev, port, iova| {
            dev.mirror_translation(iova, write, port)
        })
    }

    fn ats_access(
        &mut self,
        pasid: Option<u32>,
        data: &mut [u8],
        write: bool,
        port: &mut impl DmaPort,
    ) -> Result<(), Status> {
        self.translated_access(data, write, port, |dev, port, iova| {
            let e = dev.translation(pasid, iova, write, port)?;
            if e.allows(write) {
                Ok(e)
            } else {
                Err(Status::AtsDenied)
            }
        })
    }

    /// Access `data` at IOVA..IOVA+len through translations `lookup` gives
    /// (each covering the address asked, with the needed permission),
    /// one translated request per translation; XLATE gets the first
    /// translated address.
    fn translated_access<P: DmaPort>(
        &mut self,
        data: &mut [u8],
        write: bool,
        port: &mut P,
        mut lookup: impl FnMut(&mut Self, &mut P, u64) -> Result<AtsEntry, Status>,
    ) -> Result<(), Status> {
        let mut done = 0usize;
        while done < data.len() {
            let iova = self.iova.wrapping_add(done as u64);
            let e = lookup(self, port, iova)?;
            let off = iova - e.iova;
            let room = e.mask - off;
            let chunk = (data.len() - done).min(usize::try_from(room).unwrap_or(usize::MAX).saturating_add(1));
            let phys = e.phys.wrapping_add(off);
            if done == 0 {
                self.xlate = phys;
            }
            port.phys(phys, &mut data[done..done + chunk], write)
                .map_err(|_| Status::DmaError)?;
            done += chunk;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
