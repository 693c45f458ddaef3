//! The SMMU as a whole: the register file, the command queue consumer,
//! the configuration caches and the TLB, translation of requests through
//! the stream table, context descriptors and page tables, and the event
//! queue. What the glue must do next (pulse an interrupt line, log a guest
//! error, tell ATS or IOMMU notifiers) comes back as [`Effects`]; nothing
//! here touches QEMU.
//!
//! Conventions:
//! * Caches: stream configurations by StreamID and context descriptors by
//!   (StreamID, CD index) hold only what decoded successfully, until a
//!   CFGI command (or a full flush when a bound is reached, as QEMU's C
//!   device does). The TLB is an [`iommu_core::cache::pages::PageCache`]:
//!   outer tag the VMID (0 when the SMMU has no stage 2), inner tag the
//!   ASID, [`S2_ONLY`] for stage-2-only streams and, with the strict rules,
//!   [`GLOBAL`] for stage-1 entries with nG = 0 (compatible rules keep them
//!   under their ASID, as the C device does); its class is the kind of
//!   translation ([`Kind`]).
//! * A request that faults is terminated; the fault is recorded as an
//!   event when the architecture says so (configuration errors always;
//!   translation faults when CD.R / STE.S2R is set), in the architected
//!   layout, when the event queue is enabled.
//! * Interrupts are the C device's four wired lines ([`Irq`]): each is
//!   pulsed (an edge), for the event queue only when a record was written
//!   and IRQ_CTRL.EVENTQ_IRQEN is set, for GERROR when a new error is
//!   raised and IRQ_CTRL.GERROR_IRQEN is set, and for CMD_SYNC with CS=IRQ
//!   always (as the C device does). With `x-msi` ([`Config::msi`]) the
//!   event queue and GERROR signal by MSI when their IRQ_CFG0 address is
//!   set, and CMD_SYNC with CS = SIG_IRQ by its MSIAddress ([`Msi`]).
//! * ATS Translation Requests are [`crate::ats`]'s.

use iommu_core::layout::field_address;
use iommu_core::cache::pages::{Classes, PageCache};
use iommu_core::cache::BoundedMap;
use iommu_core::memory::GuestMemory;
use iommu_core::translation::vmsa::{self, Access, Class, Fault, VmsaError};
use iommu_core::translation::Perm;

use crate::cd::{self, CdFetch, ContextConfig};
use crate::command::{self, Command, CommandCaps, CommandError, SyncSignal, TlbiAddr};
use crate::config::{Config, ConfigError};
use crate::event::{AccessAttrs, Event, EventQueue, FaultClass, FetchAbort, OnFull, Pushed, TranslationFault, WalkAbort};
use crate::registers::{Gerror, Registers};
use crate::ste::{self, SteCaps, StreamConfig, Translate};
use crate::stream::ConfigEvent;

/// Stream configurations cached before a full flush.
pub const STREAM_CACHE_MAX: usize = 256;
/// Context descriptors cached before a full flush.
pub const CONTEXT_CACHE_MAX: usize = 256;
/// TLB entries before a full flush (the C device's `SMMU_IOTLB_MAX_SIZE`).
pub const TLB_MAX: usize = 256;
/// TLB inner tag of stage-2-only translations (beyond 16-bit ASIDs).
pub const S2_ONLY: u32 = 1 << 16;
/// TLB inner tag of global (nG = 0) stage-1 translations.
pub const GLOBAL: u32 = 1 << 17;

/// The SMMU's wired interrupts, in the C device's order of lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Irq {
    /// Line 0: an event was written to the event queue.
    Eventq = 0,
    /// Line 1: the PRI queue (never pulsed: PRI is not advertised).
    Priq = 1,
    /// Line 2: a CMD_SYNC with CS = IRQ completed.
    CmdSync = 2,
    /// Line 3: a global error was raised.
    Gerror = 3,
}

/// An ATC invalidation the glue forwards to the devices' ATS caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AtcInvalidation {
    /// StreamID.
    pub sid: u32,
    /// SubstreamID (None: requests without one, or all when `global`).
    pub ssid: Option<u32>,
    /// Every SubstreamID too.
    pub global: bool,
    /// First address.
    pub first: u64,
    /// Last address (inclusive).
    pub last: u64,
}

/// An MSI the glue must send: a 32-bit store of `data` at `addr`. If the
/// store fails, the glue reports it with [`Smmu::msi_aborted`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Msi {
    /// Physical address (52 bits, 4-byte aligned).
    pub addr: u64,
    /// Payload.
    pub data: u32,
    /// What it signals (never [`Irq::Priq`]).
    pub source: Irq,
}

/// What the glue must do after an operation, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Interrupt lines to pulse.
    pub irqs: Vec<Irq>,
    /// MSIs to send (with `x-msi`, instead of the lines).
    pub msis: Vec<Msi>,
    /// Guest errors to log.
    pub log: Vec<String>,
    /// ATC invalidations to forward.
    pub atc: Vec<AtcInvalidation>,
    /// TLB invalidations that notifiers of translated address spaces must
    /// see (`None`: everything).
    pub unmaps: Vec<Option<(u64, u64)>>,
}

impl Effects {
    /// Nothing to do, and nothing was ever queued (no list has allocated):
    /// the glue may skip the lists' drops.
    #[inline]
    pub fn is_none(&self) -> bool {
        self.irqs.capacity() == 0
            && self.msis.capacity() == 0
            && self.log.capacity() == 0
            && self.atc.capacity() == 0
            && self.unmaps.capacity() == 0
    }
}

/// The kind of translation a TLB entry holds (its page-cache class).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Stage 1 only.
    Stage1 = 0,
    /// Stage 2 only.
    Stage2 = 1,
    /// Both stages.
    Nested = 2,
}

// Sets of cached-entry kinds, one bit per Kind (bookkeeping, not a layout).
const STAGE1_CLASSES: Classes = Classes(1 << Kind::Stage1 as u8 | 1 << Kind::Nested as u8);
const STAGE2_ONLY: Classes = Classes(1 << Kind::Stage2 as u8);
const NESTED: Classes = Classes(1 << Kind::Nested as u8);

/// A DMA request from a device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Request {
    /// StreamID.
    pub sid: u32,
    /// SubstreamID (PASID), if the request has one.
    pub ssid: Option<u32>,
    /// Input address.
    pub addr: u64,
    /// Read/write, privilege, instruction fetch.
    pub access: Access,
}

/// A successful translation: the whole page around the input address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Translation {
    /// Input address of the page (aligned to its size).
    pub input: u64,
    /// Output address of the page.
    pub output: u64,
    /// log2 of the page size.
    pub size_shift: u32,
    /// What the page allows for this request's privilege.
    pub perm: Perm,
}

impl Translation {
    /// The output address of `addr` (inside the page).
    pub fn output_of(&self, addr: u64) -> u64 {
        self.output | (addr - page_base(addr, self.size_shift))
    }

    fn identity(addr: u64) -> Translation {
        let page = page_base(addr, 12);
        Translation { input: page, output: page, size_shift: 12, perm: Perm::RW }
    }
}

/// `addr` aligned down to a page of 2^`shift` bytes (`shift` capped at 63).
fn page_base(addr: u64, shift: u32) -> u64 {
    addr & !((1u64 << shift.min(63)) - 1)
}

/// A cached TLB entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TlbEntry {
    output: u64,
    /// Stage-1 permissions for privileged and unprivileged requests.
    perm: [Perm; 2],
}

/// The resolved configuration of a request (a transient value: the size
/// of its translating variant does not matter).
#[derive(Clone, Copy, Debug)]
#[allow(clippy::large_enum_variant)]
enum Resolved {
    Abort,
    Bypass,
    Translate { t: Translate, cd: Option<ContextConfig> },
}

/// An Arm SMMUv3.
#[derive(Clone, Debug)]
pub struct Smmu {
    cfg: Config,
    regs: Registers,
    caps: SteCaps,
    cmd_caps: CommandCaps,
    on_full: OnFull,
    streams: BoundedMap<u32, StreamConfig, STREAM_CACHE_MAX>,
    contexts: BoundedMap<(u32, u32), ContextConfig, CONTEXT_CACHE_MAX>,
    tlb: PageCache<TlbEntry, TLB_MAX>,
}

impl Smmu {
    /// An SMMU configured by `cfg`, after reset.
    pub fn new(cfg: Config) -> Result<Smmu, ConfigError> {
        cfg.validate()?;
        Ok(Smmu {
            regs: Registers::new(cfg.id_registers()),
            caps: cfg.ste_caps(),
            cmd_caps: cfg.command_caps(),
            on_full: OnFull::default(),
            streams: BoundedMap::default(),
            contexts: BoundedMap::default(),
            tlb: PageCache::default(),
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The register file (for migration).
    pub fn registers(&self) -> &Registers {
        &self.regs
    }

    /// Replace the register file (incoming migration); every cache is
    /// dropped.
    pub fn load_registers(&mut self, regs: Registers) {
        self.regs = regs;
        self.flush_all();
    }

    /// Device reset: registers as the C device resets them, caches empty.
    pub fn reset(&mut self) {
        self.regs.reset();
        self.flush_all();
    }

    fn flush_all(&mut self) {
        self.streams.clear();
        self.contexts.clear();
        self.tlb.invalidate_all();
    }

    /// A register read of `size` bytes at `offset` in the MMIO window.
    pub fn read_reg(&self, offset: u64, size: u32) -> (u64, Effects) {
        let r = self.regs.read_checked(offset, size);
        let mut fx = Effects::default();
        if let Some(d) = r.diagnostic {
            fx.log.push(d.to_string());
        }
        (r.value, fx)
    }

    /// A register write; runs the command queue when the write asks for it.
    pub fn write_reg(&mut self, offset: u64, size: u32, value: u64, mem: &dyn GuestMemory) -> Effects {
        let mut fx = Effects::default();
        let w = self.regs.write(offset, size, value);
        if let Some(d) = w.diagnostic {
            fx.log.push(d.to_string());
        }
        if w.consume_cmdq {
            self.consume_commands(mem, &mut fx);
        }
        fx
    }

    // ------------------------------------------------------------ commands

    fn command_error(&mut self, error: CommandError, fx: &mut Effects) {
        self.regs.set_cmdq_error(error.code());
        if self.regs.raise_gerror(Gerror::from(1u32)) {
            self.signal(Irq::Gerror, fx);
        }
    }

    /// Run the command queue until it is empty, disabled, or an error
    /// stops it (CMDQ_CONS.ERR set, GERROR.CMDQ_ERR raised, CONS left on
    /// the command).
    fn consume_commands(&mut self, mem: &dyn GuestMemory, fx: &mut Effects) {
        let mut budget = 1u64 << self.regs.cmdq.log2size.min(31);
        while self.regs.cmdq_enabled() && !self.regs.gerror_active().cmdq_err() && !self.regs.cmdq.is_empty() {
            if budget == 0 {
                break;
            }
            budget -= 1;
            let q = self.regs.cmdq;
            let index = q.cons().index(q.log2size);
            let words = match q.ring().read_words::<2>(mem, index) {
                Ok(w) => w,
                Err(_) => {
                    fx.log.push(format!("smmuv3: cannot read command {index} at {:#x}", q.ring().slot(index)));
                    self.command_error(CommandError::FetchAbort, fx);
                    return;
                }
            };
            match command::decode(words, &self.cmd_caps) {
                Ok(cmd) => self.execute(cmd, fx),
                Err(e) => {
                    fx.log.push(format!("smmuv3: illegal command {:#x} {:#x}: {e:?}", words[0], words[1]));
                    self.command_error(e, fx);
                    return;
                }
            }
            self.regs.cmdq.advance_cons();
        }
    }

    fn execute(&mut self, cmd: Command, fx: &mut Effects) {
        match cmd {
            Command::CfgiSte { sid, .. } => self.invalidate_streams(sid, 0),
            Command::CfgiSteRange { sid, range } => {
                // Arithmetic: the 2^(Range + 1) StreamIDs around `sid`.
                let mask = if range >= 31 { u32::MAX } else { (2u32 << range) - 1 };
                self.invalidate_streams(sid & !mask, mask);
            }
            Command::CfgiCd { sid, ssid, .. } => {
                if self.contexts.contains_key(&(sid, ssid)) {
                    self.contexts.retain(|k, _| *k != (sid, ssid));
                }
            }
            Command::CfgiCdAll { sid } => self.contexts.retain(|k, _| k.0 != sid),
            Command::TlbiNhAll { vmid } => self.tlb_range_outer(vmid, 0, u64::MAX, STAGE1_CLASSES, Classes::NONE, fx),
            Command::TlbiNhAsid { vmid, asid } => {
                self.tlb.invalidate_bucket(u32::from(vmid), u32::from(asid));
                fx.unmaps.push(None);
            }
            Command::TlbiNhVa { vmid, asid, va } => {
                let (first, last) = va.scope().covering();
                for inner in [u32::from(asid), GLOBAL] {
                    self.tlb.invalidate_range(u32::from(vmid), inner, first, last, STAGE1_CLASSES, Classes::NONE);
                }
                fx.unmaps.push(Some((first, last)));
            }
            Command::TlbiNhVaa { vmid, va } => {
                let (first, last) = va.scope().covering();
                self.tlb_range_outer(vmid, first, last, STAGE1_CLASSES, Classes::NONE, fx);
            }
            Command::TlbiS12Vmall { vmid } => {
                self.tlb.invalidate_outer(u32::from(vmid));
                fx.unmaps.push(None);
            }
            Command::TlbiS2Ipa { vmid, ipa } => self.tlbi_s2_ipa(vmid, &ipa, fx),
            // EL2/EL3 translations are never created (no HYP, no secure
            // side): their invalidations flush everything, a permitted
            // over-approximation.
            Command::TlbiNsnhAll
            | Command::TlbiEl2All
            | Command::TlbiEl3All
            | Command::TlbiEl2Asid { .. }
            | Command::TlbiEl2Va { .. }
            | Command::TlbiEl2Vaa { .. }
            | Command::TlbiEl3Va { .. } => {
                self.tlb.invalidate_all();
                fx.unmaps.push(None);
            }
            Command::AtcInv { sid, ssid, global, addr, size } => {
                // Without ATS (accepted as by the C device) no device has
                // an ATC: nothing to invalidate.
                if self.cfg.ats {
                    let (first, last) = atc_span(addr, size);
                    fx.atc.push(AtcInvalidation { sid, ssid, global, first, last });
                }
            }
            Command::Sync(sync) => {
                // SIG_IRQ: an MSI to MSIAddress, or the C device's CMD_SYNC
                // line.
                if sync.signal == SyncSignal::Irq {
                    self.signal_to(Irq::CmdSync, sync.msi_addr, sync.msi_data, fx);
                }
            }
            // Nothing is prefetched, no transaction stalls and PRI is not
            // advertised: these complete without effect (the C device
            // accepts them the same way).
            Command::PrefetchConfig { .. }
            | Command::PrefetchAddr { .. }
            | Command::CfgiVmsPidm { .. }
            | Command::PriResp { .. }
            | Command::Resume { .. }
            | Command::StallTerm { .. } => {}
        }
    }

    fn invalidate_streams(&mut self, base: u32, mask: u32) {
        let hit = |sid: u32| sid & !mask == base & !mask;
        self.streams.retain(|sid, _| !hit(*sid));
        self.contexts.retain(|k, _| !hit(k.0));
    }

    fn tlb_range_outer(&mut self, vmid: u16, first: u64, last: u64, pick: Classes, all: Classes, fx: &mut Effects) {
        self.tlb.invalidate_range_outer(u32::from(vmid), first, last, pick, all);
        fx.unmaps.push(if first == 0 && last == u64::MAX { None } else { Some((first, last)) });
    }

    /// TLBI_S2_IPA: stage-2-only entries by IPA, and every nested entry of
    /// the VMID (they are tagged by input address, not IPA).
    fn tlbi_s2_ipa(&mut self, vmid: u16, ipa: &TlbiAddr, fx: &mut Effects) {
        let (first, last) = ipa.scope().covering();
        self.tlb.invalidate_range_outer(u32::from(vmid), first, last, STAGE2_ONLY, NESTED);
        fx.unmaps.push(None);
    }

    // ------------------------------------------------------------ events

    /// Write `event` to the event queue (if enabled), raising the event
    /// queue interrupt or GERROR.EVENTQ_ABT_ERR.
    pub fn record_event(&mut self, event: Event, mem: &dyn GuestMemory, fx: &mut Effects) {
        if !self.regs.eventq_enabled() {
            return;
        }
        let q = self.regs.eventq;
        let mut eq = EventQueue { ring: q.ring(), prod: q.prod, cons: q.cons, on_full: self.on_full };
        let abort_pending = self.regs.gerror_active().eventq_abt_err();
        let pushed = eq.push(mem, event.encode(), abort_pending);
        self.regs.eventq.prod = eq.prod;
        match pushed {
            Pushed::Written if self.regs.eventq_irq_enabled() => self.signal(Irq::Eventq, fx),
            Pushed::Written | Pushed::Overflowed | Pushed::Discarded => {}
            Pushed::Aborted => {
                fx.log.push(format!("smmuv3: event {} lost: event queue full or unwritable", event.event_type().name()));
                let mut g = Gerror::from(0u32);
                g.set_eventq_abt_err(true);
                if self.regs.raise_gerror(g) {
                    self.signal(Irq::Gerror, fx);
                }
            }
        }
    }

    // ------------------------------------------------------------ interrupts

    /// Signal the event queue or GERROR interrupt, with the MSI its
    /// IRQ_CFG0/1 registers configure.
    fn signal(&self, irq: Irq, fx: &mut Effects) {
        let (cfg0, data) = match irq {
            Irq::Eventq => (self.regs.eventq_irq_cfg0, self.regs.eventq_irq_cfg1),
            Irq::Gerror => (self.regs.gerror_irq_cfg0, self.regs.gerror_irq_cfg1),
            Irq::Priq | Irq::CmdSync => (Default::default(), 0),
        };
        self.signal_to(irq, field_address(cfg0.addr(), 2), data, fx);
    }

    /// Signal `irq`: an MSI of `data` to `addr` when MSIs are advertised
    /// and `addr` is non-zero (0 means no MSI, SMMUv3 6.3.x), else the
    /// wired line.
    fn signal_to(&self, irq: Irq, addr: u64, data: u32, fx: &mut Effects) {
        if self.cfg.msi && addr != 0 {
            fx.msis.push(Msi { addr, data, source: irq });
        } else {
            fx.irqs.push(irq);
        }
    }

    /// The glue could not write `msi`: raise GERROR.MSI_*_ABT_ERR for its
    /// source (and signal GERROR, unless that is what failed and is still
    /// active).
    pub fn msi_aborted(&mut self, msi: Msi) -> Effects {
        let mut fx = Effects::default();
        fx.log.push(format!("smmuv3: MSI write of {:#x} to {:#x} aborted", msi.data, msi.addr));
        let mut g = Gerror::from(0u32);
        match msi.source {
            Irq::CmdSync => g.set_msi_cmdq_abt_err(true),
            Irq::Eventq => g.set_msi_eventq_abt_err(true),
            Irq::Priq => g.set_msi_priq_abt_err(true),
            Irq::Gerror => g.set_msi_gerror_abt_err(true),
        }
        if self.regs.raise_gerror(g) {
            self.signal(Irq::Gerror, &mut fx);
        }
        fx
    }

    // ------------------------------------------------------------ translation

    /// The stream's configuration, from the cache or the stream table.
    pub(crate) fn stream_config(&mut self, sid: u32, mem: &dyn GuestMemory) -> Result<StreamConfig, ConfigEvent> {
        if let Some(c) = self.streams.get(&sid) {
            return Ok(*c);
        }
        let table = self.regs.stream_table(&self.caps);
        let words = table.fetch(mem, sid, &self.caps).map_err(|e| e.event())?;
        let c = ste::decode(words, &self.caps).map_err(|e| e.event())?;
        self.streams.insert(sid, c);
        Ok(c)
    }

    /// The context descriptor of a request on a stream with stage 1
    /// (`None`: stage 1 bypassed through S1DSS).
    pub(crate) fn context(&mut self, sid: u32, ssid: Option<u32>, t: &Translate, mem: &dyn GuestMemory) -> Result<Option<ContextConfig>, ConfigEvent> {
        let Some(s1) = t.s1 else { return Ok(None) };
        let s2 = t.s2.as_ref().map(|s| &s.tables);
        if let Ok(cd::CdSelection::Cd(index)) = cd::select(&s1, ssid, &self.caps) {
            if let Some(c) = self.contexts.get(&(sid, index)) {
                return Ok(Some(*c));
            }
        }
        match cd::fetch(mem, &s1, ssid, s2, &self.caps).map_err(|e| e.event())? {
            CdFetch::BypassStage1 => Ok(None),
            CdFetch::Cd { index, words, .. } => {
                let c = cd::decode(words, &s1, &self.caps).map_err(|e| e.event())?;
                self.contexts.insert((sid, index), c);
                Ok(Some(c))
            }
        }
    }

    /// The request's configuration; a failure is the configuration event
    /// and the stream's S2R (for stage-2 faults of a CD fetch).
    fn resolve(&mut self, req: &Request, mem: &dyn GuestMemory) -> Result<Resolved, (ConfigEvent, bool)> {
        match self.stream_config(req.sid, mem).map_err(|e| (e, true))? {
            StreamConfig::Abort => Ok(Resolved::Abort),
            StreamConfig::Bypass(_) => Ok(Resolved::Bypass),
            StreamConfig::Translate(t) => {
                let s2_record = t.s2.as_ref().is_some_and(|s| s.record);
                let cd = self.context(req.sid, req.ssid, &t, mem).map_err(|e| (e, s2_record))?;
                if t.s2.is_none() && cd.is_none() {
                    return Ok(Resolved::Bypass);
                }
                Ok(Resolved::Translate { t, cd })
            }
        }
    }

    /// Translate `req`. `Err(())`: the request is terminated (aborted);
    /// any event has been recorded in `fx`'s wake.
    pub fn translate(&mut self, req: &Request, mem: &dyn GuestMemory) -> (Result<Translation, ()>, Effects) {
        let mut fx = Effects::default();
        let r = self.translate_inner(req, mem, &mut fx);
        (r, fx)
    }

    fn translate_inner(&mut self, req: &Request, mem: &dyn GuestMemory, fx: &mut Effects) -> Result<Translation, ()> {
        if !self.regs.smmu_enabled() {
            return if self.regs.gbpa_abort() { Err(()) } else { Ok(Translation::identity(req.addr)) };
        }
        let resolved = match self.resolve(req, mem) {
            Ok(r) => r,
            Err((e, s2_record)) => {
                let (ev, record) = config_event(e, req, s2_record);
                fx.log.push(format!("smmuv3: stream {:#x}: {}", req.sid, ev.event_type().name()));
                if record {
                    self.record_event(ev, mem, fx);
                }
                return Err(());
            }
        };
        let (t, cd) = match resolved {
            Resolved::Abort => return Err(()),
            Resolved::Bypass => return Ok(Translation::identity(req.addr)),
            Resolved::Translate { t, cd } => (t, cd),
        };
        let access = self.effective_access(req.access);
        self.walk_resolved(req.addr, &t, cd.as_ref(), access, mem).map_err(|e| {
            let s1_record = cd.as_ref().is_some_and(|c| c.record);
            let s2_record = t.s2.as_ref().is_some_and(|s| s.record);
            if let Some(ev) = walk_event(e, req, s1_record, s2_record) {
                self.record_event(ev, mem, fx);
            }
        })
    }

    /// The access the page tables are checked for. Compatible rules:
    /// permissions as for a privileged request (the C device checks AP[2]
    /// only); event records keep the request's own PnU.
    pub(crate) fn effective_access(&self, access: Access) -> Access {
        if self.cfg.strict {
            access
        } else {
            Access { privileged: true, ..access }
        }
    }

    /// Translate `addr` through a resolved translating configuration: a
    /// TLB hit, or a walk whose result is cached. The translation's `perm`
    /// is the page's for `access`'s privilege; a failed walk records
    /// nothing (the caller decides).
    pub(crate) fn walk_resolved(
        &mut self,
        addr: u64,
        t: &Translate,
        cd: Option<&ContextConfig>,
        access: Access,
        mem: &dyn GuestMemory,
    ) -> Result<Translation, VmsaError> {
        let vmid = u32::from(t.vmid.unwrap_or(0));
        let privileged = usize::from(access.privileged);
        // The TLB first.
        let tags: [Option<u32>; 2] = match cd {
            Some(c) => [Some(u32::from(c.asid)), Some(GLOBAL)],
            None => [Some(S2_ONLY), None],
        };
        // Instruction fetches always walk: the TLB keeps data permissions.
        let tags = if access.instruction { [None, None] } else { tags };
        for inner in tags.into_iter().flatten() {
            if let Some((e, shift)) = self.tlb.lookup(vmid, inner, addr) {
                let perm = e.perm[privileged];
                if perm.allows(access.write) {
                    return Ok(Translation { input: page_base(addr, shift), output: e.output, size_shift: shift, perm });
                }
            }
        }
        let (output, shift, perm, global, kind) = match (cd, &t.s2) {
            (Some(c), Some(s2)) => vmsa::nested_translate(mem, &c.tables, &s2.tables, addr, access).map(|o| {
                let perm = [o.perm(false), o.perm(true)];
                (o.out, o.size_shift, perm, o.s1.global, Kind::Nested)
            }),
            (Some(c), None) => c.tables.translate(mem, addr, access).map(|o| {
                let perm = [o.perms.perm(false), o.perms.perm(true)];
                (o.out, o.size_shift, perm, o.global, Kind::Stage1)
            }),
            (None, Some(s2)) => s2
                .tables
                .translate(mem, addr, access)
                .map(|o| (o.out, o.size_shift, [o.perms.perm(); 2], false, Kind::Stage2))
                .map_err(|fault| VmsaError::Stage2 { fault, ipa: addr, class: Class::In }),
            (None, None) => return Ok(Translation::identity(addr)),
        }?;
        // Compatible rules: every stage-1 entry belongs to its ASID, as the
        // C device keeps them (it ignores nG), so that invalidations by
        // ASID reach global entries too.
        let inner = match (cd, global && self.cfg.strict) {
            (None, _) => S2_ONLY,
            (Some(_), true) => GLOBAL,
            (Some(c), false) => u32::from(c.asid),
        };
        self.tlb.insert(vmid, inner, addr, shift, kind as u8, TlbEntry { output, perm });
        Ok(Translation { input: page_base(addr, shift), output, size_shift: shift, perm: perm[privileged] })
    }
}

/// The span of an ATC_INV: 4 KiB << Size bytes, naturally aligned around
/// `addr` (Size 52 and above: everything).
fn atc_span(addr: u64, size: u8) -> (u64, u64) {
    if size >= 52 {
        return (0, u64::MAX);
    }
    // Arithmetic: the span in bytes.
    let span = 1u64 << (12 + u32::from(size));
    let first = addr & !(span - 1);
    (first, first | (span - 1))
}

fn attrs(access: Access) -> AccessAttrs {
    AccessAttrs { read: !access.write, instruction: access.instruction, privileged: access.privileged }
}

/// The event of a configuration error, if it is recorded: always, except
/// translation-related stage-2 faults of a CD fetch without STE.S2R.
pub(crate) fn config_event(e: ConfigEvent, req: &Request, s2_record: bool) -> (Event, bool) {
    let (sid, ssid) = (req.sid, req.ssid);
    let fetch = |fetch_addr| FetchAbort { sid, ssid, fetch_addr, reason: 0, gpcf: false };
    match e {
        ConfigEvent::BadStreamId => (Event::BadStreamId { sid, ssid }, true),
        ConfigEvent::SteFetch { fetch_addr } => (Event::SteFetch(fetch(fetch_addr)), true),
        ConfigEvent::BadSte => (Event::BadSte { sid, ssid }, true),
        ConfigEvent::StreamDisabled { .. } => (Event::StreamDisabled { sid }, true),
        ConfigEvent::BadSubstreamId { ssid } => (Event::BadSubstreamId { sid, ssid }, true),
        ConfigEvent::CdFetch { fetch_addr } => (Event::CdFetch(fetch(fetch_addr)), true),
        ConfigEvent::BadCd => (Event::BadCd { sid, ssid }, true),
        ConfigEvent::CdStage2 { fault, ipa } => {
            let abort = matches!(fault, Fault::TableAbort { .. });
            (stage_fault(fault, req, true, FaultClass::Cd, ipa), abort || s2_record)
        }
    }
}

fn stage_fault(fault: Fault, req: &Request, s2: bool, class: FaultClass, ipa: u64) -> Event {
    let tf = TranslationFault {
        sid: req.sid,
        ssid: req.ssid,
        stag: None,
        access: attrs(req.access),
        nsipa: false,
        s2,
        class,
        // Meaningful for CLASS = TT only (a descriptor read faulted).
        ttrnw: class == FaultClass::Tt,
        input_addr: req.addr,
        ipa: if s2 { ipa } else { 0 },
    };
    match fault {
        Fault::Translation { .. } => Event::Translation(tf),
        Fault::AddressSize { .. } => Event::AddrSize(tf),
        Fault::AccessFlag { .. } => Event::Access(tf),
        Fault::Permission { .. } => Event::Permission(tf),
        Fault::TableAbort { addr, .. } => Event::WalkEabt(WalkAbort {
            sid: req.sid,
            ssid: req.ssid,
            access: attrs(req.access),
            s2,
            class,
            input_addr: req.addr,
            fetch_addr: addr,
            reason: 0,
            gpcf: false,
        }),
    }
}

/// The event of a failed walk, if it is recorded: external aborts always,
/// translation-related faults when the failing stage's R bit is set.
pub(crate) fn walk_event(e: VmsaError, req: &Request, s1_record: bool, s2_record: bool) -> Option<Event> {
    let (fault, s2, class, ipa, record) = match e {
        VmsaError::Config(_) => return Some(Event::BadCd { sid: req.sid, ssid: req.ssid }),
        // A stage-1 walk abort is CLASS = TT (the descriptor fetch failed);
        // other stage-1 faults are CLASS = IN (SMMUv3 7.3, F_WALK_EABT).
        VmsaError::Stage1(f @ Fault::TableAbort { .. }) => (f, false, FaultClass::Tt, 0, s1_record),
        VmsaError::Stage1(f) => (f, false, FaultClass::In, 0, s1_record),
        VmsaError::Stage2 { fault, ipa, class } => (fault, true, FaultClass::from(class), ipa, s2_record),
    };
    let abort = matches!(fault, Fault::TableAbort { .. });
    (abort || record).then(|| stage_fault(fault, req, s2, class, ipa))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testutil::{Mem, Rng};

    pub(crate) const STRTAB: u64 = 0x10_0000;
    pub(crate) const CMDQ: u64 = 0x20_0000;
    pub(crate) const EVENTQ: u64 = 0x30_0000;
    pub(crate) const CD: u64 = 0x40_0000;
    pub(crate) const TABLES: u64 = 0x50_0000;
    pub(crate) const RAM: u64 = 0x100_0000;
    pub(crate) const SID: u32 = 0x10;
    pub(crate) const ASID: u16 = 7;

    pub(crate) struct Rig {
        pub(crate) smmu: Smmu,
        pub(crate) mem: Mem,
        cmd_prod: u32,
        next_table: u64,
    }

    /// A linear stream table of 256 STEs, 16-entry command and event
    /// queues, SMMUEN with both queues and both interrupts enabled.
    pub(crate) fn rig(cfg: Config) -> Rig {
        let mem = Mem::default();
        for (base, len) in [(STRTAB, 0x4000), (CMDQ, 0x1000), (EVENTQ, 0x1000), (CD, 0x1000), (TABLES, 0x10_0000), (RAM, 0x10_0000)] {
            mem.map(base, len);
        }
        let mut smmu = Smmu::new(cfg).unwrap();
        let w = |s: &mut Smmu, off, size, v| {
            let fx = s.write_reg(off, size, v, &mem);
            assert!(fx.log.is_empty(), "{:?}", fx.log);
        };
        w(&mut smmu, 0x80, 8, STRTAB);
        w(&mut smmu, 0x88, 4, 8);
        w(&mut smmu, 0x90, 8, CMDQ | 4);
        w(&mut smmu, 0xA0, 8, EVENTQ | 4);
        w(&mut smmu, 0x50, 4, 0b101);
        w(&mut smmu, 0x20, 4, 0b1101);
        Rig { smmu, mem, cmd_prod: 0, next_table: TABLES + 0x1000 }
    }

    impl Rig {
        /// A stage-1 STE for `sid` whose single CD (4K granule, 48-bit VA,
        /// ASID 7, R set) uses the table at TABLES.
        pub(crate) fn s1_stream(&self, sid: u32) {
            let ste0 = 1 | (0b101 << 1) | CD;
            self.mem.put(STRTAB + 64 * u64::from(sid), &[ste0, 0, 0, 0, 0, 0, 0, 0]);
            let cd0 = 16 | (1 << 30) | (1 << 31) | (0b101 << 32) | (1 << 41) | (1 << 45) | (1 << 46) | (u64::from(ASID) << 48);
            self.mem.put(CD, &[cd0, TABLES, 0, 0, 0, 0, 0, 0]);
        }

        /// Map the 4 KiB page at `va` to `pa` (RW at both privileges, AF
        /// set) in the stage-1 tables at TABLES.
        pub(crate) fn map(&mut self, va: u64, pa: u64) {
            let mut table = TABLES;
            for level in 0..3 {
                let shift = 39 - 9 * level;
                let slot = table + ((va >> shift) & 0x1ff) * 8;
                let mut bytes = [0u8; 8];
                self.mem.read(slot, &mut bytes).unwrap();
                let d = u64::from_le_bytes(bytes);
                table = if d & 1 != 0 {
                    d & 0x0000_ffff_ffff_f000
                } else {
                    let t = self.next_table;
                    self.next_table += 0x1000;
                    self.mem.put(slot, &[t | 0b11]);
                    t
                };
            }
            let leaf = pa | 0b11 | (1 << 10) | (0b01 << 6);
            self.mem.put(table + ((va >> 12) & 0x1ff) * 8, &[leaf]);
        }

        pub(crate) fn command(&mut self, words: [u64; 2]) -> Effects {
            self.mem.put(CMDQ + 16 * u64::from(self.cmd_prod & 15), &words);
            self.cmd_prod = (self.cmd_prod + 1) & 31;
            self.smmu.write_reg(0x98, 4, u64::from(self.cmd_prod), &self.mem)
        }

        pub(crate) fn events(&self) -> Vec<Event> {
            let prod = self.smmu.regs.eventq.prod & 31;
            (0..prod.min(16))
                .map(|i| {
                    let mut b = [0u8; 32];
                    self.mem.read(EVENTQ + 32 * u64::from(i), &mut b).unwrap();
                    let w = |j: usize| u64::from_le_bytes(b[8 * j..8 * j + 8].try_into().unwrap());
                    Event::decode([w(0), w(1), w(2), w(3)]).unwrap()
                })
                .collect()
        }
    }

    fn translate(r: &mut Rig, va: u64, write: bool) -> (Result<Translation, ()>, Effects) {
        let access = Access { write, privileged: false, instruction: false };
        r.smmu.translate(&Request { sid: SID, ssid: None, addr: va, access }, &r.mem)
    }

    #[test]
    fn stage1_translation_is_cached_until_a_tlbi_by_va() {
        let mut r = rig(Config::default());
        r.s1_stream(SID);
        r.map(0x8000_1000, RAM + 0x5000);
        let (t, fx) = translate(&mut r, 0x8000_1234, true);
        let t = t.unwrap();
        assert_eq!((t.output_of(0x8000_1234), t.size_shift, t.perm), (RAM + 0x5234, 12, Perm::RW));
        assert!(fx.irqs.is_empty() && fx.log.is_empty());
        // Remap the page: the TLB still answers with the old output.
        r.map(0x8000_1000, RAM + 0x9000);
        assert_eq!(translate(&mut r, 0x8000_1000, false).0.unwrap().output, RAM + 0x5000);
        // TLBI_NH_VA (opcode 0x12) for ASID 7 and the page: the new one.
        let fx = r.command([0x12 | (u64::from(ASID) << 48), 0x8000_1000]);
        assert!(fx.unmaps.contains(&Some((0x8000_1000, 0x8000_1fff))), "{fx:?}");
        assert_eq!(translate(&mut r, 0x8000_1000, false).0.unwrap().output, RAM + 0x9000);
        assert_eq!(r.smmu.regs.cmdq.cons & 31, 1);
    }

    #[test]
    fn stage1_walk_abort_is_class_tt_with_the_fetch_address() {
        // The level-0 table (48-bit VA) points at a level-1 table outside
        // memory.
        let mut r = rig(Config::default());
        r.s1_stream(SID);
        let (l1, va) = (0x7000_0000u64, 0x8000_1000u64);
        r.mem.put(TABLES + 8 * ((va >> 39) & 0x1ff), &[l1 | 0b11]);
        let (t, fx) = translate(&mut r, 0x8000_1000, false);
        assert!(t.is_err());
        assert_eq!(fx.irqs, vec![Irq::Eventq]);
        match r.events().as_slice() {
            [Event::WalkEabt(w)] => {
                assert_eq!((w.s2, w.class), (false, FaultClass::Tt), "SMMUv3 7.3: S2 = 0, CLASS = TT");
                assert_eq!((w.input_addr, w.fetch_addr), (0x8000_1000, l1 + 8 * ((0x8000_1000 >> 30) & 0x1ff)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn translation_fault_is_recorded_with_the_event_interrupt() {
        let mut r = rig(Config::default());
        r.s1_stream(SID);
        let (t, fx) = translate(&mut r, 0x1234_5000, false);
        assert!(t.is_err());
        assert_eq!(fx.irqs, vec![Irq::Eventq]);
        match r.events().as_slice() {
            [Event::Translation(f)] => {
                assert_eq!((f.sid, f.input_addr, f.s2, f.access.read), (SID, 0x1234_5000, false, true));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn global_entries_follow_their_asid_unless_strict() {
        for strict in [false, true] {
            let mut r = rig(Config { strict, ..Config::default() });
            r.s1_stream(SID);
            // Rig::map writes nG = 0: a global entry.
            r.map(0x8000_1000, RAM + 0x5000);
            assert!(translate(&mut r, 0x8000_1000, false).0.is_ok());
            r.map(0x8000_1000, RAM + 0x9000);
            // TLBI_NH_ASID (0x11) of the CD's ASID.
            r.command([0x11 | (u64::from(ASID) << 48), 0]);
            let out = translate(&mut r, 0x8000_1000, false).0.unwrap().output;
            // Architecturally a global entry survives; the C device drops it.
            assert_eq!(out, if strict { RAM + 0x5000 } else { RAM + 0x9000 }, "strict {strict}");
            // TLBI_NH_VA of another ASID reaches global entries (strict only).
            r.map(0x8000_1000, RAM + 0xa000);
            r.command([0x12 | (u64::from(ASID + 1) << 48), 0x8000_1000]);
            let out = translate(&mut r, 0x8000_1000, false).0.unwrap().output;
            let before = if strict { RAM + 0x5000 } else { RAM + 0x9000 };
            assert_eq!(out, if strict { RAM + 0xa000 } else { before }, "strict {strict}");
        }
    }

    #[test]
    fn privileged_only_pages_serve_unprivileged_requests_unless_strict() {
        for strict in [false, true] {
            let mut r = rig(Config { strict, ..Config::default() });
            r.s1_stream(SID);
            r.map(0x8000_1000, RAM + 0x5000);
            // AP[2:1] = 0b00: read/write at EL1, no access at EL0.
            let leaf = (RAM + 0x5000) | 0b11 | (1 << 10);
            let mut table = TABLES;
            for level in 0..3 {
                let mut b = [0u8; 8];
                r.mem.read(table + ((0x8000_1000u64 >> (39 - 9 * level)) & 0x1ff) * 8, &mut b).unwrap();
                table = u64::from_le_bytes(b) & 0x0000_ffff_ffff_f000;
            }
            r.mem.put(table + 8, &[leaf]);
            let (t, _) = translate(&mut r, 0x8000_1010, true);
            if strict {
                assert!(t.is_err());
                match r.events().as_slice() {
                    [Event::Permission(f)] => assert!(!f.access.privileged && !f.ttrnw, "{f:?}"),
                    other => panic!("{other:?}"),
                }
            } else {
                // The C device checks AP[2] only: the write is served.
                assert_eq!(t.unwrap().output_of(0x8000_1010), RAM + 0x5010);
                assert!(r.events().is_empty());
            }
        }
    }

    #[test]
    fn bad_ste_is_recorded_and_cached_configurations_follow_cfgi() {
        let mut r = rig(Config::default());
        // STE.V = 0: C_BAD_STE, every time (nothing is cached).
        for _ in 0..2 {
            assert!(translate(&mut r, 0x1000, false).0.is_err());
        }
        assert!(matches!(r.events().as_slice(), [Event::BadSte { sid: SID, .. }, Event::BadSte { .. }]));
        // A bypass STE (Config 0b100), announced by CFGI_STE (0x03).
        r.mem.put(STRTAB + 64 * u64::from(SID), &[1 | (0b100 << 1), 0, 0, 0, 0, 0, 0, 0]);
        r.command([0x03 | (u64::from(SID) << 32), 0]);
        assert_eq!(translate(&mut r, 0xabc_d123, false).0.unwrap().output_of(0xabc_d123), 0xabc_d123);
        // Without CFGI the cached bypass stays, although the STE changed.
        r.mem.put(STRTAB + 64 * u64::from(SID), &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert!(translate(&mut r, 0x1000, false).0.is_ok());
        // CFGI_ALL (CFGI_STE_RANGE with Range 31): abort, no event.
        r.command([0x04, 31]);
        let before = r.events().len();
        assert!(translate(&mut r, 0x1000, false).0.is_err());
        assert_eq!(r.events().len(), before);
    }

    #[test]
    fn atc_inv_without_ats_is_accepted_and_invalidates_nothing() {
        // CMD_ATC_INV (0x40) for SID 5, global: the C device accepts it
        // without IDR0.ATS; no ATC exists, so there is nothing to do.
        let mut r = rig(Config::default());
        let fx = r.command([0x40 | (5 << 32) | (1 << 9), 0]);
        assert!(fx.atc.is_empty() && fx.irqs.is_empty(), "{fx:?}");
        assert_eq!(r.smmu.regs.cmdq.cons & 31, 1);
        assert!(!r.smmu.regs.gerror_active().cmdq_err());
        // Strict: the architecture's CERROR_ILL.
        let mut r = rig(Config { strict: true, ..Config::default() });
        let fx = r.command([0x40 | (5 << 32), 0]);
        assert_eq!(fx.irqs, vec![Irq::Gerror]);
        assert_eq!((r.smmu.regs.cmdq.cons >> 24) & 0x7f, 1);
    }

    #[test]
    fn msis_replace_the_lines_when_advertised_and_addressed() {
        // CMD_SYNC, CS = SIG_IRQ (bits 13:12 = 0b01), MSIData 0xabcd, MSIAddress.
        let sync = [0x46 | (1 << 12) | (0xabcd << 32), RAM + 0x40];
        for msi in [false, true] {
            let mut r = rig(Config { msi, ..Config::default() });
            let fx = r.command(sync);
            if msi {
                assert_eq!(fx.msis, vec![Msi { addr: RAM + 0x40, data: 0xabcd, source: Irq::CmdSync }]);
                assert!(fx.irqs.is_empty());
            } else {
                assert_eq!((fx.msis.as_slice(), fx.irqs.as_slice()), (&[][..], &[Irq::CmdSync][..]));
            }
            // MSIAddress 0: the line.
            let fx = r.command([0x46 | (1 << 12), 0]);
            assert_eq!(fx.irqs, vec![Irq::CmdSync]);
            // An event (C_BAD_STE) with EVENTQ_IRQ_CFG0/1 set: an MSI when
            // advertised, else the line as before.
            r.smmu.write_reg(0xb0, 8, 0x0800_0040, &r.mem);
            r.smmu.write_reg(0xb8, 4, 0x77, &r.mem);
            let (_, fx) = translate(&mut r, 0x1000, false);
            if msi {
                assert_eq!(fx.msis, vec![Msi { addr: 0x0800_0040, data: 0x77, source: Irq::Eventq }]);
            } else {
                assert_eq!((fx.msis.len(), fx.irqs.as_slice()), (0, &[Irq::Eventq][..]));
            }
        }
    }

    #[test]
    fn an_aborted_msi_raises_its_gerror_bit_once() {
        let mut r = rig(Config { msi: true, ..Config::default() });
        r.smmu.write_reg(0x68, 8, 0x0800_0080, &r.mem);
        let sync = Msi { addr: RAM, data: 0, source: Irq::CmdSync };
        let fx = r.smmu.msi_aborted(sync);
        let gerror_msi = Msi { addr: 0x0800_0080, data: 0, source: Irq::Gerror };
        assert_eq!(fx.msis, vec![gerror_msi]);
        assert!(r.smmu.regs.gerror_active().msi_cmdq_abt_err());
        // The GERROR MSI fails too: its bit, once; then nothing more.
        let fx = r.smmu.msi_aborted(gerror_msi);
        assert_eq!(fx.msis, vec![gerror_msi]);
        assert!(r.smmu.regs.gerror_active().msi_gerror_abt_err());
        assert!(r.smmu.msi_aborted(gerror_msi).msis.is_empty());
    }

    #[test]
    fn illegal_command_stops_the_queue_until_gerror_is_acknowledged() {
        let mut r = rig(Config::default());
        let fx = r.command([0x07, 0]);
        assert_eq!(fx.irqs, vec![Irq::Gerror]);
        let cons = r.smmu.regs.cmdq.cons;
        assert_eq!((cons & 31, (cons >> 24) & 0x7f), (0, 1), "CONS stays, ERR = CERROR_ILL");
        assert!(r.smmu.regs.gerror_active().cmdq_err());
        // A CMD_SYNC behind it waits.
        let fx = r.command([0x46 | (1 << 12), 0]);
        assert!(fx.irqs.is_empty());
        // Skip the bad command and acknowledge: the sync completes.
        r.smmu.regs.cmdq.advance_cons();
        let gerror = r.smmu.read_reg(0x60, 4).0;
        let fx = r.smmu.write_reg(0x64, 4, gerror, &r.mem);
        assert_eq!(fx.irqs, vec![Irq::CmdSync]);
        assert_eq!(r.smmu.regs.cmdq.cons & 31, 2);
    }

    #[test]
    fn disabled_smmu_follows_gbpa_and_full_event_queue_raises_gerror() {
        let mut r = rig(Config::default());
        r.smmu.write_reg(0x20, 4, 0b1100, &r.mem);
        assert_eq!(translate(&mut r, 0x4321, false).0.unwrap().output_of(0x4321), 0x4321);
        r.smmu.write_reg(0x44, 4, (1 << 31) | (1 << 20), &r.mem);
        assert!(translate(&mut r, 0x4321, false).0.is_err());
        // Back on with bad STEs: 16 records fill the queue, the 17th is an
        // EVENTQ_ABT_ERR (the C device's behaviour).
        r.smmu.write_reg(0x20, 4, 0b1101, &r.mem);
        let mut gerror_irqs = 0;
        for _ in 0..17 {
            let (_, fx) = translate(&mut r, 0, false);
            gerror_irqs += fx.irqs.iter().filter(|&&i| i == Irq::Gerror).count();
        }
        assert_eq!(gerror_irqs, 1);
        assert!(r.smmu.regs.gerror_active().eventq_abt_err());
    }

    #[test]
    fn random_programming_never_panics() {
        let mut rng = Rng(0x5eed_0000_5117);
        for round in 0..200 {
            let mut r = rig(Config::default());
            r.s1_stream(SID);
            r.map(0x8000_0000, RAM);
            for _ in 0..50 {
                match rng.next() % 5 {
                    0 => {
                        let off = (rng.next() % 0x200) & !3;
                        let _ = r.smmu.write_reg(off, if rng.next() & 1 == 0 { 4 } else { 8 }, rng.next(), &r.mem);
                    }
                    1 => {
                        let _ = r.command([rng.next() & 0xffff_ffff_ffff_ff7f, rng.next()]);
                    }
                    2 => {
                        let addr = STRTAB + ((rng.next() % 0x4000) & !7);
                        r.mem.put(addr, &[rng.next()]);
                    }
                    3 => {
                        let addr = TABLES + ((rng.next() % 0x8000) & !7);
                        r.mem.put(addr, &[rng.next()]);
                    }
                    _ => {
                        let va = if rng.next() & 1 == 0 { 0x8000_0000 + rng.next() % 0x2000 } else { rng.next() };
                        let ssid = (rng.next() & 3 == 0).then(|| (rng.next() % 0x10_0000) as u32);
                        let access = Access { write: rng.next() & 1 == 0, privileged: rng.next() & 1 == 0, instruction: rng.next() & 7 == 0 };
                        let _ = r.smmu.translate(&Request { sid: (rng.next() % 300) as u32, ssid, addr: va, access }, &r.mem);
                    }
                }
            }
            // The model is still consistent: a mapped read either
            // translates or is refused, and the registers read back.
            let _ = translate(&mut r, 0x8000_0000, false);
            let _ = (round, r.smmu.read_reg(0x9c, 4));
        }
    }
}
