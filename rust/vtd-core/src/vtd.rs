//! The remapping unit: register window, global command handshakes,
//! invalidation (register-based and queued), and DMA translation.
//!
//! Conventions: every entry point runs to completion synchronously
//! (commands complete before the write returns, so busy bits such as
//! CCMD.ICC and IOTLB.IVT read back as 0). Guest memory is only touched
//! through the [`GuestMemory`] passed in; interrupts and guest-error
//! diagnostics are returned in [`Effects`] for the caller to act on after
//! releasing its lock. The architectural state that must be migrated is
//! exposed as [`VtdState`]; caches are rebuilt on demand. Interrupt
//! remapping ([`Vtd::remap_interrupt`]) is decoded in [`crate::interrupts::irq_remap`].

use iommu_core::layout::field_address;
use bilge::prelude::*;

use crate::translation::cache::{
    ContextCache, Iotlb, IotlbEntry, MappingKind, PasidCache, PasidCacheEntry, RecentTranslations,
    SmContextCache,
};
use crate::config::{
    width_mask, CapReg, Config, EcapReg,
};
use crate::effects::{Effects, Msi};
use crate::queues::invalidation::{GlobalCause, InvalidationEvent};
use crate::queues::fault::{self, Fault, FaultReason, FaultRecord};
use crate::translation::first_stage::{
    fs_walk, nested_walk, ss_output_fault, FsAccess, FsControls, FsOutput, FsWalkConfig,
};
use crate::queues::inv_queue::{
    decode_256_typed, decode_ccmd, decode_iotlb_reg, decode_typed, descriptor_type, ContextInvalidation,
    DecodeContext, IecInvalidation, InvRequest, IotlbInvalidation, PasidCacheInvalidation,
    PasidIotlbInvalidation, QueueState, DESC_NONE, CcmdReg, IotlbReg, IqIndexReg, IqaReg,
};
use crate::interrupts::irq_remap::{self, InterruptFault, InterruptRequest, IrTable, IrtaReg};
use crate::mem::GuestMemory;
use crate::translation::page_walk::{level_size, walk, walk_detailed, Perm, WalkConfig};
use crate::registers::*;
use crate::translation::root_context::{
    lookup_device_context, ContextChecks, ContextMode, DeviceContext, TranslationType,
};
use crate::translation::root_context::ContextFault;
use crate::translation::scalable::{
    effective_pasid, lookup_sm_context, read_pasid_entry, request_context, PasidConfig, PasidContext,
    PasidMode, SmCaps, SmContextEntry,
};
use crate::translation::{PasidRequest, Request, Translation};
use iommu_core::queues::ring::{Plain, Ring};

/// First address of the interrupt address range.
pub const INTERRUPT_ADDR_FIRST: u64 = 0xfee0_0000;
/// Last address of the interrupt address range.
pub const INTERRUPT_ADDR_LAST: u64 = 0xfeef_ffff;

/// Migratable architectural state (mirrors the C device's vmstate fields;
/// `root_scalable` is the C device's `root_scalable`, the `intr_*` fields
/// its interrupt remapping state). GSTS.CFIS lives in `csr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VtdState {
    /// Register byte image.
    pub csr: [u8; DMAR_REG_SIZE],
    /// Root table address latched by the last SRTP.
    pub root: u64,
    /// GSTS.TES.
    pub dmar_enabled: bool,
    /// Queued invalidation state.
    pub queue: QueueState,
    /// Index of the fault recording register the next fault goes to.
    pub next_frcd_reg: u16,
    /// The latched root table is in scalable format (RTADDR.TTM = 01b at
    /// the last SRTP); always false without `Config::scalable_mode`.
    pub root_scalable: bool,
    /// GSTS.IRES: interrupt remapping enabled.
    pub intr_enabled: bool,
    /// Interrupt remapping table address latched by the last SIRTP.
    pub intr_root: u64,
    /// Number of interrupt remapping table entries latched by the last
    /// SIRTP (0 before the first one).
    pub intr_size: u32,
    /// Extended interrupt mode latched by the last SIRTP (IRTA.EIME; with
    /// [`Config::strict_ir`] only with ECAP.EIM).
    pub intr_eime: bool,
}

/// One VT-d DMA remapping unit.
///
/// Legacy mode is complete. With [`Config::scalable_mode`] and a root
/// table latched with RTADDR.TTM = 01b, requests without PASID are
/// translated through the scalable-mode context entry's RID_PASID PASID
/// table entry, requests with PASID ([`Vtd::translate_pasid`]) through
/// their own: pass-through, second-stage, first-stage or nested.
/// Scalable-mode context entries and PASID table entries are cached (a
/// guest must invalidate them with context-cache and PASID-cache
/// invalidations), IOTLB entries are tagged with domain-id and PASID, and
/// the 256-bit invalidation queue (IQA.DW) carries the PASID-cache and
/// PASID-based IOTLB invalidations. With [`Config::intremap`], interrupt
/// requests are remapped by [`Vtd::remap_interrupt`]. Device-TLBs live in
/// the devices: with [`Config::device_tlb`] the unit answers ATS translation
/// requests ([`Vtd::translate_ats`]) and reports device-TLB invalidations to
/// the glue. Not modelled: page requests and posted interrupts.
#[derive(Clone, Debug)]
pub struct Vtd {
    cfg: Config,
    cap: u64,
    ecap: u64,
    /// What scalable-mode validation needs of CAP/ECAP (fixed, as they are).
    sm_caps: SmCaps,
    /// What legacy context validation and the page walks need of them.
    context_checks: ContextChecks,
    walk_config: WalkConfig,
    fs_walk_config: FsWalkConfig,
    regs: RegisterFile,
    root: u64,
    root_scalable: bool,
    dmar_enabled: bool,
    queue: QueueState,
    next_frcd: u16,
    context_cache: ContextCache,
    sm_context_cache: SmContextCache,
    pasid_cache: PasidCache,
    iotlb: Iotlb,
    /// Recent translations of requests without PASID, in front of the caches.
    recent: RecentTranslations,
    ir_enabled: bool,
    ir_table: IrTable,
    /// Stop queue processing at wait descriptors (see [`Effects::queue_barrier`]).
    queue_barriers: bool,
}

impl Vtd {
    /// Size of the register window (`DMAR_REG_SIZE`).
    pub const MMIO_SIZE: u64 = DMAR_REG_SIZE as u64;

    /// Create a unit in its reset state. `cfg` should have passed
    /// [`Config::validate`]; an invalid one does not panic but yields a
    /// device with whatever capabilities the values encode.
    pub fn new(cfg: Config) -> Vtd {
        let cap = cfg.cap();
        let ecap = cfg.ecap();
        let sm_caps = SmCaps { strict: cfg.strict_dma, ..SmCaps::from_regs(cap, ecap, cfg.aw_bits) };
        let (c, e) = (CapReg::from(cap), EcapReg::from(ecap));
        let context_checks = ContextChecks {
            haw_mask: cfg.haw_mask(),
            sagaw: c.sagaw().value(),
            pass_through: e.pt(),
            device_tlb: e.dt(),
        };
        let walk_config = WalkConfig {
            haw_bits: cfg.aw_bits,
            mgaw_bits: cfg.aw_bits,
            large_2m: c.sllps_2m(),
            large_1g: c.sllps_1g(),
            snoop_control: cfg.snoop_control || cfg.scalable_mode,
            tm_allowed: cfg.stale_tm && cfg.device_tlb,
        };
        let fs_walk_config = FsWalkConfig {
            haw_bits: cfg.aw_bits,
            large_1g: c.fs1gp(),
            user_checks_per_level: !cfg.strict_dma,
        };
        Vtd {
            regs: RegisterFile::new(cap, ecap),
            cfg,
            cap,
            ecap,
            sm_caps,
            context_checks,
            walk_config,
            fs_walk_config,
            root: 0,
            root_scalable: false,
            dmar_enabled: false,
            queue: QueueState::default(),
            next_frcd: 0,
            context_cache: ContextCache::default(),
            sm_context_cache: SmContextCache::default(),
            pasid_cache: PasidCache::default(),
            iotlb: Iotlb::default(),
            recent: RecentTranslations::default(),
            ir_enabled: false,
            ir_table: IrTable::default(),
            queue_barriers: false,
        }
    }

    /// Make queue processing stop in front of every invalidation wait
    /// descriptor that follows descriptors with side effects outside the
    /// model (invalidations, interrupt entry cache invalidations), setting
    /// [`Effects::queue_barrier`].  A glue with IOMMU notifiers or a host
    /// IOMMU turns this on, carries out the effects, then calls
    /// [`Vtd::resume_queue`]; without it the whole queue is processed at once
    /// and a wait may complete before the glue has acted.
    pub fn set_queue_barriers(&mut self, on: bool) {
        self.queue_barriers = on;
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// CAP register value.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// ECAP register value.
    pub fn ecap(&self) -> u64 {
        self.ecap
    }

    /// Architected reset: registers to reset values, translation and
    /// queued invalidation disabled, caches empty.
    pub fn reset(&mut self) {
        let barriers = self.queue_barriers;
        *self = Vtd::new(self.cfg.clone());
        self.queue_barriers = barriers;
    }

    /// GSTS.TES: DMA translation is enabled.
    pub fn translation_enabled(&self) -> bool {
        self.dmar_enabled
    }

    /// Root table address latched by the last SRTP.
    pub fn root_table_address(&self) -> u64 {
        self.root
    }

    /// The latched root table is a scalable-mode root table.
    pub fn root_table_scalable(&self) -> bool {
        self.root_scalable
    }

    /// GSTS.IRES: interrupt remapping is enabled.
    pub fn interrupt_remapping_enabled(&self) -> bool {
        self.ir_enabled
    }

    /// The interrupt remapping table latched by the last SIRTP.
    pub fn interrupt_table(&self) -> IrTable {
        self.ir_table
    }

    /// Queued invalidation state.
    pub fn queue(&self) -> QueueState {
        self.queue
    }

    /// Number of IOTLB entries.
    pub fn iotlb_len(&self) -> usize {
        self.iotlb.len()
    }

    /// Number of context-cache entries.
    pub fn context_cache_len(&self) -> usize {
        self.context_cache.len()
    }

    /// Number of scalable-mode context-cache entries.
    pub fn sm_context_cache_len(&self) -> usize {
        self.sm_context_cache.len()
    }

    /// Number of PASID-cache entries.
    pub fn pasid_cache_len(&self) -> usize {
        self.pasid_cache.len()
    }

    /// Decoded fault recording register `index`.
    pub fn fault_record(&self, index: u16) -> Option<FaultRecord> {
        fault::read_record(&self.regs, index)
    }

    /// The register file (masks and raw values), for inspection.
    pub fn registers(&self) -> &RegisterFile {
        &self.regs
    }

    /// Snapshot of the migratable state.
    pub fn save_state(&self) -> VtdState {
        VtdState {
            csr: *self.regs.csr(),
            root: self.root,
            dmar_enabled: self.dmar_enabled,
            queue: self.queue,
            next_frcd_reg: self.next_frcd,
            root_scalable: self.root_scalable,
            intr_enabled: self.ir_enabled,
            intr_root: self.ir_table.base,
            intr_size: self.ir_table.entries,
            intr_eime: self.ir_table.eime,
        }
    }

    /// Restore migrated state; caches are emptied. The state is checked
    /// against this unit's configuration and for internal consistency.
    pub fn load_state(&mut self, st: &VtdState) -> Result<(), String> {
        let mut probe = RegisterFile::new(0, 0);
        probe.load_csr(&st.csr);
        if probe.get64(CAP) != self.cap || probe.get64(ECAP) != self.ecap {
            return Err(format!(
                "vtd: migrated CAP/ECAP {:#x}/{:#x} do not match configured {:#x}/{:#x}",
                probe.get64(CAP),
                probe.get64(ECAP),
                self.cap,
                self.ecap
            ));
        }
        let q = st.queue;
        if q.dw && !EcapReg::from(self.ecap).smts() {
            return Err("vtd: migrated 256-bit invalidation queue without scalable mode".into());
        }
        if q.enabled {
            let min = if q.dw { 128 } else { 256 };
            if !(min..=32768).contains(&q.size) || !q.size.is_power_of_two() {
                return Err(format!("vtd: invalid migrated queue size {}", q.size));
            }
            if q.head >= q.size {
                return Err(format!(
                    "vtd: migrated queue head {} beyond size {}",
                    q.head, q.size
                ));
            }
        }
        if q.dw && q.enabled && q.size > 16384 {
            return Err(format!("vtd: invalid migrated 256-bit queue size {}", q.size));
        }
        if q.tail > 0x7fff || q.head > 0x7fff {
            return Err(format!("vtd: invalid migrated queue indexes {}/{}", q.head, q.tail));
        }
        if st.next_frcd_reg >= FRCD_REG_NR {
            return Err(format!("vtd: invalid migrated fault record index {}", st.next_frcd_reg));
        }
        if st.root_scalable && !self.cfg.scalable_mode {
            return Err("vtd: migrated scalable-mode root table without scalable mode".into());
        }
        if st.intr_enabled && !self.cfg.intremap {
            return Err("vtd: migrated interrupt remapping state without intremap".into());
        }
        if st.intr_eime && !self.cfg.eim && self.cfg.strict_ir {
            return Err("vtd: migrated extended interrupt mode without eim".into());
        }
        // Arithmetic: a power of two of at most 2^16 entries.
        let size_ok = st.intr_size.is_power_of_two() && (2..=1 << 16).contains(&st.intr_size);
        if st.intr_size != 0 && !size_ok {
            return Err(format!("vtd: invalid migrated interrupt table size {}", st.intr_size));
        }
        if st.intr_root & !(self.haw_mask() & !0xfff) != 0 {
            return Err(format!("vtd: invalid migrated interrupt table address {:#x}", st.intr_root));
        }
        self.regs.load_csr(&st.csr);
        self.root = st.root;
        self.root_scalable = st.root_scalable;
        self.dmar_enabled = st.dmar_enabled;
        self.queue = st.queue;
        self.next_frcd = st.next_frcd_reg;
        self.ir_enabled = st.intr_enabled;
        self.ir_table = IrTable { base: st.intr_root, entries: st.intr_size, eime: st.intr_eime };
        self.flush_caches();
        Ok(())
    }

    fn flush_caches(&mut self) {
        self.context_cache.invalidate_all();
        self.sm_context_cache.invalidate_all();
        self.pasid_cache.invalidate_all();
        self.iotlb.invalidate_all();
    }

    fn haw_mask(&self) -> u64 {
        width_mask(u32::from(self.cfg.aw_bits))
    }

    // ----------------------------------------------------------------
    // Register window
    // ----------------------------------------------------------------

    fn check_access(offset: u64, size: u32, what: &str, fx: &mut Effects) -> bool {
        let ok = (size == 4 || size == 8)
            && offset & (u64::from(size) - 1) == 0
            && offset
                .checked_add(u64::from(size))
                .is_some_and(|end| end <= Self::MMIO_SIZE);
        if !ok {
            fx.guest_error(format!(
                "vtd: invalid {what} access: offset={offset:#x} size={size}"
            ));
        }
        ok
    }

    /// Guest register read of `size` (4 or 8) bytes at `offset`.
    pub fn read_reg(&mut self, offset: u64, size: u32) -> u64 {
        self.read_reg_effects(offset, size).0
    }

    /// Like [`read_reg`](Self::read_reg), also returning guest-error
    /// diagnostics (reads never raise interrupts).
    pub fn read_reg_effects(&mut self, offset: u64, size: u32) -> (u64, Effects) {
        let mut fx = Effects::default();
        if !Self::check_access(offset, size, "read", &mut fx) {
            return (0, fx);
        }
        if size == 8 && Reg::at(offset).is_some_and(|r| r.width() == Width::W64) {
            return (self.regs.guest_read(offset, 8), fx);
        }
        let lo = self.read_dword(offset, &mut fx);
        let val = if size == 8 {
            // Arithmetic: a 64-bit access is two 32-bit halves.
            lo | (self.read_dword(offset + 4, &mut fx) << 32)
        } else {
            lo
        };
        (val, fx)
    }

    fn read_dword(&self, offset: u64, fx: &mut Effects) -> u64 {
        match decode_dword(offset) {
            Some(_) => self.regs.guest_read(offset, 4),
            None => {
                fx.guest_error(format!("vtd: read of reserved register offset {offset:#x}"));
                0
            }
        }
    }

    /// Guest register write of `size` (4 or 8) bytes at `offset`.
    pub fn write_reg(
        &mut self,
        offset: u64,
        size: u32,
        value: u64,
        mem: &dyn GuestMemory,
    ) -> Effects {
        let mut fx = Effects::default();
        if !Self::check_access(offset, size, "write", &mut fx) {
            return fx;
        }
        match Reg::at(offset) {
            Some(r) if size == 8 && r.width() == Width::W64 => {
                self.write_part(r, Part::Full, offset, 8, value, mem, &mut fx);
            }
            _ if size == 8 => {
                self.write_dword(offset, value as u32, mem, &mut fx);
                // Arithmetic: a 64-bit access is two 32-bit halves.
                self.write_dword(offset + 4, (value >> 32) as u32, mem, &mut fx);
            }
            _ => self.write_dword(offset, value as u32, mem, &mut fx),
        }
        fx
    }

    fn write_dword(&mut self, offset: u64, value: u32, mem: &dyn GuestMemory, fx: &mut Effects) {
        match decode_dword(offset) {
            Some((r, part)) => self.write_part(r, part, offset, 4, u64::from(value), mem, fx),
            None => fx.guest_error(format!(
                "vtd: write of {value:#x} to reserved register offset {offset:#x} ignored"
            )),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write_part(
        &mut self,
        reg: Reg,
        part: Part,
        offset: u64,
        size: usize,
        value: u64,
        mem: &dyn GuestMemory,
        fx: &mut Effects,
    ) {
        let old_fsts = self.regs.get32(FSTS);
        self.regs.guest_write(offset, size, value);
        match reg {
            Reg::Gcmd => self.gcmd_written(mem, fx),
            Reg::Ccmd if part != Part::Low => self.ccmd_written(fx),
            Reg::Iotlb if part != Part::Low => self.iotlb_written(fx),
            Reg::Fsts => self.fsts_written(old_fsts, mem, fx),
            Reg::Fectl => fault::fectl_written(&mut self.regs, fx),
            Reg::Iqt if part != Part::High => self.iqt_written(mem, fx),
            Reg::Iqa => {
                if part != Part::High && IqaReg::from(value).dw() && !EcapReg::from(self.ecap).smts() {
                    fx.guest_error(
                        "vtd: IQA.DW set but 256-bit descriptors are not supported; ignored",
                    );
                }
                if self.queue.enabled {
                    fx.guest_error(
                        "vtd: IQA written while queued invalidation is enabled; takes effect on next enable",
                    );
                }
            }
            Reg::Ics if self.regs.get32(ICS) & ICS_IWC == 0 => {
                self.regs.clear_set32(IECTL, EVT_IP, 0);
            }
            Reg::Iectl => {
                let iectl = self.regs.get32(IECTL);
                if iectl & EVT_IP != 0 && iectl & EVT_IM == 0 {
                    fx.interrupts.push(self.completion_msi());
                    self.regs.clear_set32(IECTL, EVT_IP, 0);
                }
            }
            Reg::FrcdHi(_) if part != Part::Low => {
                fault::update_ppf(&mut self.regs);
                fault::clear_ip_if_serviced(&mut self.regs);
            }
            _ => {}
        }
    }

    // ----------------------------------------------------------------
    // Global command
    // ----------------------------------------------------------------

    fn gcmd_written(&mut self, mem: &dyn GuestMemory, fx: &mut Effects) {
        let status = self.regs.get32(GSTS);
        let cmd = self.regs.get32(GCMD);
        let changed = status ^ cmd;
        if changed & GCMD_TE != 0 {
            if self.cfg.dma_translation {
                self.set_translation(cmd & GCMD_TE != 0);
                fx.invalidated(InvalidationEvent::Global(if cmd & GCMD_TE != 0 {
                    GlobalCause::TranslationEnabled
                } else {
                    GlobalCause::TranslationDisabled
                }));
            } else {
                fx.guest_error("vtd: GCMD.TE ignored: DMA translation is not available");
            }
        }
        if cmd & GCMD_SRTP != 0 {
            self.set_root_table(fx);
        }
        if cmd & GCMD_SFL != 0 {
            fx.guest_error("vtd: GCMD.SFL ignored: advanced fault logging not supported");
        }
        if cmd & GCMD_EAFL != 0 {
            fx.guest_error("vtd: GCMD.EAFL ignored: advanced fault logging not supported");
        }
        // GCMD.WBF: the write buffer flush completes immediately, WBFS
        // stays clear.
        if changed & GCMD_QIE != 0 {
            self.set_queued_invalidation(cmd & GCMD_QIE != 0, mem, fx);
        }
        if self.cfg.intremap {
            self.interrupt_remapping_command(cmd, changed, fx);
            return;
        }
        for (bit, name) in [(GCMD_IRE, "IRE"), (GCMD_SIRTP, "SIRTP"), (GCMD_CFI, "CFI")] {
            if cmd & bit != 0 {
                fx.guest_error(format!(
                    "vtd: GCMD.{name} ignored: interrupt remapping not supported (ECAP.IR=0)"
                ));
            }
        }
    }

    /// GCMD.SIRTP (one-shot: latch IRTA, set IRTPS), IRE and CFI
    /// (persistent: act on a change, mirror in IRES/CFIS). Each of them
    /// reports a global interrupt entry cache invalidation, so that state
    /// derived from remapped interrupts is refreshed.
    fn interrupt_remapping_command(&mut self, cmd: u32, changed: u32, fx: &mut Effects) {
        let mut refresh = false;
        if cmd & GCMD_SIRTP != 0 {
            let irta = self.regs.get64(IRTA);
            // The C device honours EIME whatever ECAP.EIM says; the
            // architecture makes it reserved (treated as 0) without EIM.
            if IrtaReg::from(irta).eime() && !self.cfg.eim {
                fx.guest_error(if self.cfg.strict_ir {
                    "vtd: IRTA.EIME set but extended interrupt mode is not supported (ECAP.EIM=0); treated as 0"
                } else {
                    "vtd: IRTA.EIME set but extended interrupt mode is not supported (ECAP.EIM=0); \
                     honoured as by the C device (x-strict-ir=on treats it as 0)"
                });
            }
            let eime_ok = self.cfg.eim || !self.cfg.strict_ir;
            self.ir_table = IrTable::from_irta(irta, self.haw_mask(), eime_ok);
            self.regs.clear_set32(GSTS, 0, GSTS_IRTPS);
            refresh = true;
        }
        if changed & GCMD_IRE != 0 {
            let enable = cmd & GCMD_IRE != 0;
            if enable && self.regs.get32(GSTS) & GSTS_IRTPS == 0 {
                fx.guest_error(
                    "vtd: GCMD.IRE set before the interrupt remapping table pointer (SIRTP); remappable interrupts fault",
                );
            }
            self.ir_enabled = enable;
            let (clear, set) = if enable { (0, GSTS_IRES) } else { (GSTS_IRES, 0) };
            self.regs.clear_set32(GSTS, clear, set);
            refresh = true;
        }
        if changed & GCMD_CFI != 0 {
            let (clear, set) = if cmd & GCMD_CFI != 0 { (0, GSTS_CFIS) } else { (GSTS_CFIS, 0) };
            self.regs.clear_set32(GSTS, clear, set);
            refresh = true;
        }
        if refresh {
            fx.iec_invalidations.push(IecInvalidation::Global);
        }
    }

    fn set_translation(&mut self, enable: bool) {
        self.dmar_enabled = enable;
        if enable {
            self.regs.clear_set32(GSTS, 0, GSTS_TES);
        } else {
            self.regs.clear_set32(GSTS, GSTS_TES, 0);
            self.next_frcd = 0;
        }
        self.flush_caches();
    }

    fn set_root_table(&mut self, fx: &mut Effects) {
        let rtaddr = self.regs.get64(RTADDR);
        let ttm = RtaddrReg::from(rtaddr).ttm();
        self.root_scalable = self.cfg.scalable_mode && ttm == Ttm::Scalable;
        if ttm != Ttm::Legacy && !self.root_scalable {
            let supported = if self.cfg.scalable_mode {
                "legacy (00b) and scalable (01b) only"
            } else {
                "legacy mode only"
            };
            fx.guest_error(format!(
                "vtd: RTADDR.TTM={} not supported ({supported}); using legacy tables",
                ttm as u8
            ));
        }
        self.root = field_address(RtaddrReg::from(rtaddr).rta(), 12) & self.haw_mask();
        self.regs.clear_set32(GSTS, 0, GSTS_RTPS);
        // CAP.ESRTPS: setting the root table pointer invalidates all caches.
        self.flush_caches();
        fx.invalidated(InvalidationEvent::Global(GlobalCause::RootTable));
    }

    fn set_queued_invalidation(&mut self, enable: bool, mem: &dyn GuestMemory, fx: &mut Effects) {
        if enable {
            let iqa = self.regs.get64(IQA);
            let dw = EcapReg::from(self.ecap).smts() && IqaReg::from(iqa).dw();
            self.queue.base = field_address(IqaReg::from(iqa).base(), 12) & self.haw_mask();
            self.queue.dw = dw;
            self.queue.size = QueueState::size_for(iqa, dw);
            self.queue.tail = QueueState::tail_for(self.regs.get64(IQT), dw);
            self.queue.enabled = true;
            self.regs.clear_set32(GSTS, 0, GSTS_QIES);
            if self.queue.tail != self.queue.head && self.regs.get32(FSTS) & FSTS_IQE == 0 {
                // Descriptors queued before enabling (a spec violation some
                // guests rely on) are processed right away.
                self.process_queue(mem, fx);
            }
        } else {
            if self.queue.head != self.queue.tail {
                fx.guest_error(format!(
                    "vtd: queued invalidation disabled with pending descriptors (head={}, tail={})",
                    self.queue.head, self.queue.tail
                ));
            }
            self.queue.enabled = false;
            self.queue.head = 0;
            self.regs.set64(IQH, 0);
            self.regs.clear_set32(GSTS, GSTS_QIES, 0);
        }
    }

    // ----------------------------------------------------------------
    // Invalidation
    // ----------------------------------------------------------------

    fn invalidate_context(&mut self, inv: ContextInvalidation) {
        match inv {
            ContextInvalidation::Global => {
                self.context_cache.invalidate_all();
                self.sm_context_cache.invalidate_all();
            }
            ContextInvalidation::Domain(did) => {
                self.context_cache.invalidate_domain(did);
                self.sm_context_cache.invalidate_all();
            }
            ContextInvalidation::Device { sid, fm } => {
                self.context_cache.invalidate_device(sid, fm);
                self.sm_context_cache.invalidate_device(sid, fm);
            }
        }
    }

    fn invalidate_pasid_cache(&mut self, inv: PasidCacheInvalidation) {
        match inv {
            PasidCacheInvalidation::Global => self.pasid_cache.invalidate_all(),
            PasidCacheInvalidation::Domain(did) => self.pasid_cache.invalidate_domain(did),
            PasidCacheInvalidation::Pasid { domain_id, pasid } => {
                self.pasid_cache.invalidate_pasid(domain_id, pasid)
            }
        }
    }

    fn invalidate_pasid_iotlb(&mut self, inv: PasidIotlbInvalidation) {
        match inv {
            PasidIotlbInvalidation::Pasid { domain_id, pasid } => {
                self.iotlb.invalidate_pasid(domain_id, pasid)
            }
            PasidIotlbInvalidation::Pages { domain_id, pasid, addr, am, .. } => {
                self.iotlb.invalidate_pasid_pages(domain_id, pasid, addr, am)
            }
        }
    }

    fn invalidate_iotlb(&mut self, inv: IotlbInvalidation) {
        match inv {
            IotlbInvalidation::Global => self.iotlb.invalidate_all(),
            IotlbInvalidation::Domain(did) => self.iotlb.invalidate_domain(did),
            IotlbInvalidation::Pages { domain_id, addr, am, .. } => {
                self.iotlb.invalidate_pages(domain_id, addr, am)
            }
        }
    }

    fn ccmd_written(&mut self, fx: &mut Effects) {
        let val = self.regs.get64(CCMD);
        if !CcmdReg::from(val).icc() {
            return;
        }
        let caig = if self.queue.enabled {
            fx.guest_error(
                "vtd: register-based context invalidation while queued invalidation is enabled; not performed",
            );
            0
        } else {
            match decode_ccmd(val) {
                Ok(inv) => {
                    self.invalidate_context(inv);
                    fx.invalidated(inv.into());
                    inv.granularity()
                }
                Err(e) => {
                    fx.guest_error(format!("vtd: {e}"));
                    0
                }
            }
        };
        let mut ccmd = CcmdReg::from(self.regs.get64(CCMD));
        ccmd.set_icc(false);
        ccmd.set_caig(u2::new(caig as u8));
        self.regs.set64(CCMD, ccmd.into());
    }

    fn iotlb_written(&mut self, fx: &mut Effects) {
        let val = self.regs.get64(IOTLB);
        if !IotlbReg::from(val).ivt() {
            return;
        }
        let iaig = if self.queue.enabled {
            fx.guest_error(
                "vtd: register-based IOTLB invalidation while queued invalidation is enabled; not performed",
            );
            0
        } else {
            match decode_iotlb_reg(val, self.regs.get64(IVA)) {
                Ok(inv) => {
                    self.invalidate_iotlb(inv);
                    fx.invalidated(inv.into());
                    inv.granularity()
                }
                Err(e) => {
                    fx.guest_error(format!("vtd: {e}"));
                    0
                }
            }
        };
        let mut iotlb = IotlbReg::from(self.regs.get64(IOTLB));
        iotlb.set_ivt(false);
        iotlb.set_iaig(u2::new(iaig as u8));
        self.regs.set64(IOTLB, iotlb.into());
    }

    /// Descriptor width in effect: latched while QI is enabled, else the
    /// value IQA.DW currently holds.
    fn queue_dw(&self) -> bool {
        if self.queue.enabled {
            self.queue.dw
        } else {
            EcapReg::from(self.ecap).smts() && IqaReg::from(self.regs.get64(IQA)).dw()
        }
    }

    fn iqt_written(&mut self, mem: &dyn GuestMemory, fx: &mut Effects) {
        let iqt = self.regs.get64(IQT);
        let dw = self.queue_dw();
        // With 256-bit descriptors QT counts 16-byte units of 32-byte
        // descriptors: an odd QT (bit 4) is reserved.
        if dw && IqIndexReg::from(iqt).q().value() & 1 != 0 {
            self.queue_error(
                format!("IQT {iqt:#x}: bit 4 is reserved with 256-bit descriptors"),
                fx,
            );
            return;
        }
        self.queue.tail = QueueState::tail_for(iqt, dw);
        if self.queue.enabled && self.regs.get32(FSTS) & FSTS_IQE == 0 {
            self.process_queue(mem, fx);
        }
    }

    fn fsts_written(&mut self, old_fsts: u32, mem: &dyn GuestMemory, fx: &mut Effects) {
        fault::clear_ip_if_serviced(&mut self.regs);
        let iqe_cleared = old_fsts & FSTS_IQE != 0 && self.regs.get32(FSTS) & FSTS_IQE == 0;
        if iqe_cleared && self.queue.enabled && self.queue.head != self.queue.tail {
            // Fetching resumes at IQH once software clears IQE.
            self.process_queue(mem, fx);
        }
    }

    fn queue_error(&mut self, msg: String, fx: &mut Effects) {
        fx.guest_error(format!("vtd: invalidation queue error: {msg}"));
        let pre = self.regs.get32(FSTS);
        self.regs.clear_set32(FSTS, 0, FSTS_IQE);
        fault::fault_event(&mut self.regs, pre, fx);
    }

    fn process_queue(&mut self, mem: &dyn GuestMemory, fx: &mut Effects) {
        let size = self.queue.size;
        if size == 0 {
            return;
        }
        if self.queue.tail >= size {
            let msg = format!("tail {} beyond queue size {}", self.queue.tail, size);
            self.queue_error(msg, fx);
            return;
        }
        let dw = self.queue.dw;
        let ctx = DecodeContext {
            device_tlb: EcapReg::from(self.ecap).dt(),
            scalable: self.root_scalable,
        };
        let mut budget = size;
        let ring = Ring::new(self.queue.base, size.trailing_zeros() as u8, QueueState::entry_bytes(dw) as u32);
        // Effects already carried out by the glue (before a barrier) are not
        // in `fx`; what is there from before this call is the caller's.
        let (inv_start, iec_start) = (fx.invalidations.len(), fx.iec_invalidations.len());
        while self.queue.head != self.queue.tail && budget > 0 {
            budget -= 1;
            let head = u32::from(self.queue.head);
            let addr = ring.slot(head);
            let Ok(val) = ring.read_words::<4>(mem, head) else {
                self.queue.last_desc_type = DESC_NONE;
                self.queue_error(format!("cannot read descriptor at {addr:#x}"), fx);
                return;
            };
            let ty = descriptor_type(val[0]);
            self.queue.last_desc_type = ty;
            let decoded = if dw {
                decode_256_typed(ty, val, ctx)
            } else if ctx.scalable {
                Err(format!(
                    "128-bit descriptor {:#x} {:#x} while the root table is in scalable mode (IQA.DW=0)",
                    val[1], val[0]
                ))
            } else {
                decode_typed(ty, val[0], val[1], ctx.device_tlb)
            };
            if self.queue_barriers
                && matches!(decoded, Ok(InvRequest::Wait(_)))
                && (fx.invalidations.len() > inv_start || fx.iec_invalidations.len() > iec_start)
            {
                // The wait stays at IQH, unfetched, until the glue resumes.
                fx.queue_barrier = true;
                return;
            }
            let first = fx.invalidations.len();
            let result = decoded.and_then(|req| self.execute(req, mem, fx));
            fx.attribute_invalidations(first, self.queue.head);
            if let Err(msg) = result {
                let msg = format!("descriptor {} at {addr:#x}: {msg}", self.queue.head);
                self.queue_error(msg, fx);
                return;
            }
            self.queue.head = Plain::next(head, ring.log2) as u16;
            self.regs.set64(IQH, QueueState::index_reg(self.queue.head, dw));
        }
    }

    /// Continue queued-invalidation processing after a
    /// [barrier](Effects::queue_barrier): the wait descriptor at IQH and what
    /// follows, up to the next barrier or the tail.  Does nothing when the
    /// queue is disabled, empty or stopped by an error.
    pub fn resume_queue(&mut self, mem: &dyn GuestMemory) -> Effects {
        let mut fx = Effects::default();
        if self.queue.enabled
            && self.queue.head != self.queue.tail
            && self.regs.get32(FSTS) & FSTS_IQE == 0
        {
            self.process_queue(mem, &mut fx);
        }
        fx
    }

    /// The glue could not carry out an invalidation queue descriptor's
    /// effect (a host IOMMU refused a forwarded invalidation or binding):
    /// report an invalidation queue error at that descriptor, as hardware
    /// does for a descriptor it cannot process.  IQH is moved back to it (the
    /// descriptors after it are fetched again once software clears
    /// FSTS.IQE; invalidations are idempotent) and any wait behind it stays
    /// pending.  Only logged when QI is off, the index is outside the queue
    /// or the queue already stopped at an error.
    pub fn invalidation_failed(&mut self, index: u16, msg: &str) -> Effects {
        let mut fx = Effects::default();
        if !self.queue.enabled || index >= self.queue.size {
            fx.guest_error(format!("vtd: invalidation not carried out: {msg}"));
            return fx;
        }
        if self.regs.get32(FSTS) & FSTS_IQE != 0 {
            // Already stopped at an earlier error: IQH stays there.
            fx.guest_error(format!("vtd: invalidation not carried out: descriptor {index}: {msg}"));
            return fx;
        }
        self.queue.head = index;
        self.regs.set64(IQH, QueueState::index_reg(index, self.queue.dw));
        self.queue_error(format!("descriptor {index}: {msg}"), &mut fx);
        fx
    }

    /// The glue could not make the host IOMMU translate requests of `sid`
    /// (with `pasid`, or without PASID) as the guest's tables say (a binding,
    /// or an invalidation forwarded), outside the invalidation queue (a
    /// register write, a reset, a device plugged in): there is no
    /// descriptor to stop at, so the guest learns it from a
    /// primary fault record, reason 58h (SPT.1, the hardware could not use
    /// the PASID table entry), address 0, a read. The requests are blocked
    /// meanwhile (the glue detached them); the next invalidation of the entry
    /// retries.
    pub fn host_binding_failed(&mut self, sid: u16, pasid: Option<u32>, msg: &str) -> Effects {
        let mut fx = Effects::default();
        fx.guest_error(format!("vtd: {msg}"));
        let f = match pasid {
            Some(p) => Fault::with_pasid(FaultReason::PasidEntryAccess, sid, 0, false, p, false),
            None => Fault::new(FaultReason::PasidEntryAccess, sid, 0, false),
        };
        fault::record_fault(&mut self.regs, &mut self.next_frcd, &f, &mut fx);
        fx
    }

    fn execute(
        &mut self,
        req: InvRequest,
        mem: &dyn GuestMemory,
        fx: &mut Effects,
    ) -> Result<(), String> {
        match req {
            InvRequest::Context(inv) => {
                self.invalidate_context(inv);
                fx.invalidated(inv.into());
            }
            InvRequest::Iotlb(inv) => {
                self.invalidate_iotlb(inv);
                fx.invalidated(inv.into());
            }
            InvRequest::PasidCache(inv) => {
                self.invalidate_pasid_cache(inv);
                fx.invalidated(inv.into());
            }
            InvRequest::PasidIotlb(inv) => {
                self.invalidate_pasid_iotlb(inv);
                fx.invalidated(inv.into());
            }
            // Device-TLBs live in the devices: reported to the glue only.
            InvRequest::DeviceTlb(inv) => fx.invalidated(InvalidationEvent::DeviceTlb(inv)),
            // No interrupt entry cache either, but the glue is told.
            InvRequest::InterruptEntryCache(inv) => {
                if !self.cfg.intremap {
                    return Err(
                        "interrupt entry cache invalidate descriptor without interrupt remapping support (ECAP.IR=0)"
                            .into(),
                    );
                }
                fx.iec_invalidations.push(inv);
            }
            InvRequest::Wait(w) => {
                if let Some((addr, data)) = w.status_write {
                    mem.write_u32(addr, data)
                        .map_err(|_| format!("wait descriptor status write to {addr:#x} failed"))?;
                }
                if w.interrupt {
                    self.completion_event(fx);
                }
            }
        }
        Ok(())
    }

    fn completion_msi(&self) -> Msi {
        Msi {
            // Arithmetic: IEUADDR holds the address's upper 32 bits.
            address: (u64::from(self.regs.get32(IEUADDR)) << 32)
                | u64::from(self.regs.get32(IEADDR)),
            data: self.regs.get32(IEDATA),
        }
    }

    fn completion_event(&mut self, fx: &mut Effects) {
        if self.regs.get32(ICS) & ICS_IWC != 0 {
            return;
        }
        self.regs.clear_set32(ICS, 0, ICS_IWC);
        let iectl = self.regs.clear_set32(IECTL, 0, EVT_IP);
        if iectl & EVT_IM == 0 {
            fx.interrupts.push(self.completion_msi());
            self.regs.clear_set32(IECTL, EVT_IP, 0);
        }
    }

    // ----------------------------------------------------------------
    // Translation
    // ----------------------------------------------------------------

    pub(crate) fn context_checks(&self) -> ContextChecks {
        self.context_checks
    }

    /// The first-stage walk's configuration.
    pub(crate) fn fs_walk_config(&self) -> FsWalkConfig {
        self.fs_walk_config
    }

    /// The first-stage controls of PASID entry `pe`.
    pub(crate) fn fs_controls(&self, pe: &PasidConfig) -> FsControls {
        FsControls {
            wpe: pe.wpe,
            eafe: pe.eafe,
            // The C device checks canonicality at 30 + 9 * AW bits: where
            // that is wider than the tables' (AW = 3: 57 bits for 4-level
            // tables) its leniency is the default; where narrower (AW 0, 1)
            // the architecture's width is kept.
            canonical_bits: (!self.cfg.strict_dma && pe.entry.aw() == 3).then_some(57),
        }
    }

    pub(crate) fn walk_config(&self) -> WalkConfig {
        self.walk_config
    }

    /// Translate a DMA request. With translation disabled the result is
    /// the identity 4 KiB page, read/write. On failure the fault is
    /// recorded (unless suppressed by FPD, collapsed or overflowed) and
    /// returned; the effects may contain the fault event interrupt.
    pub fn translate(
        &mut self,
        req: &Request,
        mem: &dyn GuestMemory,
    ) -> (Result<Translation, Fault>, Effects) {
        let mut fx = Effects::default();
        let r = self.translate_inner(req, mem, &mut fx, None);
        (r, fx)
    }

    /// [`Vtd::translate`] for a caller that has just found no answer in
    /// [`Vtd::lookup_cached`] (with nothing changed since): the same
    /// result, without looking in the caches a second time where that
    /// lookup already did.
    pub fn translate_miss(
        &mut self,
        req: &Request,
        miss: CacheMiss,
        mem: &dyn GuestMemory,
    ) -> (Result<Translation, Fault>, Effects) {
        let mut fx = Effects::default();
        let r = self.translate_inner(req, mem, &mut fx, Some(miss));
        (r, fx)
    }

    /// The fault recording registers and the index of the next record.
    pub(crate) fn fault_state(&mut self) -> (&mut RegisterFile, &mut u16) {
        (&mut self.regs, &mut self.next_frcd)
    }

    fn report(&mut self, reason: FaultReason, fpd: bool, req: &Request, fx: &mut Effects) -> Fault {
        let f = Fault::new(reason, req.sid, req.iova, req.write);
        if !(fpd && reason.is_qualified()) {
            fault::record_fault(&mut self.regs, &mut self.next_frcd, &f, fx);
        }
        f
    }

    fn translate_inner(
        &mut self,
        req: &Request,
        mem: &dyn GuestMemory,
        fx: &mut Effects,
        miss: Option<CacheMiss>,
    ) -> Result<Translation, Fault> {
        if !self.dmar_enabled {
            return Ok(Translation::identity_4k(req.iova, 0));
        }
        let scalable = self.root_scalable;
        if miss.is_none() {
            if let Some((t, _)) = self.recent.get(req.sid, req.iova, req.write, scalable, self.cache_epoch()) {
                return Ok(t);
            }
        }
        let probe = !miss.is_some_and(|m| m.iotlb_probed);
        let r = if scalable {
            let sreq = SmRequest { sid: req.sid, iova: req.iova, write: req.write, pasid: None };
            self.translate_sm(&sreq, mem, fx, probe)
        } else {
            self.translate_legacy_raw(req, mem, probe)
                .map_err(|cf| self.report(cf.reason, cf.fpd, req, fx))
        };
        if let Ok(t) = r {
            // Whether the context allows ATS is not looked up here (a miss
            // already paid enough): ATS requests fill in their own entries.
            self.recent.put(req.sid, req.iova, scalable, self.cache_epoch(), t, false);
        }
        r
    }

    /// The combined change count of the context caches, the PASID cache
    /// and the IOTLB: it grows whenever one of them drops or replaces an
    /// entry, so recent translations tagged with it are still what those
    /// caches would give.
    #[inline]
    fn cache_epoch(&self) -> u64 {
        self.context_cache
            .changes()
            .wrapping_add(self.sm_context_cache.changes())
            .wrapping_add(self.pasid_cache.changes())
            .wrapping_add(self.iotlb.changes())
    }

    /// The legacy context entry of `sid` through the context cache (filled
    /// on a miss).
    pub(crate) fn legacy_context(
        &mut self,
        sid: u16,
        mem: &dyn GuestMemory,
    ) -> Result<DeviceContext, ContextFault> {
        if let Some(c) = self.context_cache.lookup(sid) {
            return Ok(c);
        }
        let c = lookup_device_context(mem, self.root, sid, &self.context_checks())?;
        self.context_cache.insert(sid, c);
        Ok(c)
    }

    /// Legacy mode, context `ctx` known: the translation of `req` from the
    /// IOTLB alone (or pass-through), as the walk would give it; `None`
    /// when the tables must be read (a miss, not enough permission cached,
    /// an address the context does not allow).
    #[inline]
    fn legacy_hit_in(&self, ctx: &DeviceContext, req: &Request) -> Option<Translation> {
        match ctx.mode {
            ContextMode::PassThrough => Some(Translation::identity_4k(req.iova, ctx.domain_id)),
            ContextMode::SecondStage { agaw, .. } => {
                let limit = u32::from(agaw.min(self.cfg.aw_bits));
                if req.iova & !width_mask(limit) != 0 {
                    return None;
                }
                let e = self.iotlb.lookup(ctx.domain_id, req.iova)?;
                e.perm.allows(req.write).then(|| translation_of(&e))
            }
        }
    }

    /// Legacy-mode translation with translation enabled; a failure is
    /// returned, not recorded.
    /// `probe`: look in the IOTLB (false: the caller just did, in vain).
    pub(crate) fn translate_legacy_raw(
        &mut self,
        req: &Request,
        mem: &dyn GuestMemory,
        probe: bool,
    ) -> Result<Translation, ContextFault> {
        let ctx = self.legacy_context(req.sid, mem)?;
        if probe {
            if let Some(t) = self.legacy_hit_in(&ctx, req) {
                return Ok(t);
            }
        }
        // A miss, or not enough permission in the cached entry: walk.
        let fail = |reason| ContextFault { reason, fpd: ctx.fpd };
        let (slptptr, levels, agaw) = match ctx.mode {
            ContextMode::PassThrough => {
                return Ok(Translation::identity_4k(req.iova, ctx.domain_id))
            }
            ContextMode::SecondStage { slptptr, levels, agaw } => (slptptr, levels, agaw),
        };
        let limit = u32::from(agaw.min(self.cfg.aw_bits));
        if req.iova & !width_mask(limit) != 0 {
            return Err(fail(FaultReason::AddressBeyondMgaw));
        }
        let out = walk(mem, &self.walk_config(), slptptr, levels, agaw, req.iova, req.write)
            .map_err(fail)?;
        let size = level_size(out.level);
        let last = out.phys.saturating_add(size - 1);
        if out.phys <= INTERRUPT_ADDR_LAST && last >= INTERRUPT_ADDR_FIRST {
            return Err(fail(FaultReason::InterruptAddress));
        }
        let entry = IotlbEntry {
            domain_id: ctx.domain_id,
            iova: req.iova & !(size - 1),
            phys: out.phys,
            level: out.level,
            perm: out.perm,
        };
        self.iotlb.insert(entry);
        Ok(translation_of(&entry))
    }
}

impl Vtd {
    /// Remap an interrupt request (a DWORD write to the interrupt address
    /// range by requester `req.sid`, which the request carries: a PCI
    /// MSI). Without [`Config::intremap`] or with GSTS.IRES clear, the
    /// message passes through unchanged; otherwise see
    /// [`crate::interrupts::irq_remap`] for the formats and checks. A blocked
    /// request is dropped: its fault is recorded with the interrupt index
    /// in FRCD.FI bits 63:48 (unless the IRTE's FPD suppresses a qualified
    /// fault, or it is collapsed or overflows) and returned; the effects
    /// may contain the fault event interrupt.
    pub fn remap_interrupt(
        &mut self,
        req: &InterruptRequest,
        mem: &dyn GuestMemory,
    ) -> (Result<Msi, InterruptFault>, Effects) {
        self.remap_interrupt_from(req, true, mem)
    }

    /// [`Vtd::remap_interrupt`] for a request that carries its requester
    /// id (`explicit`) or one whose `req.sid` the platform implies (the
    /// I/O APIC's messages, plain DMA writes into the interrupt window):
    /// the latter is validated against the IRTE only with
    /// [`Config::strict_ir`], as the C device never validates it, and
    /// `req.sid` is what a fault record holds.
    pub fn remap_interrupt_from(
        &mut self,
        req: &InterruptRequest,
        explicit: bool,
        mem: &dyn GuestMemory,
    ) -> (Result<Msi, InterruptFault>, Effects) {
        let mut fx = Effects::default();
        let check_sid = explicit || self.cfg.strict_ir;
        let r = match self.remap_with_table(req, check_sid, mem) {
            Ok(msi) => Ok(msi),
            Err(e) => {
                if !(e.fpd && e.fault.reason.is_qualified()) {
                    let index = e.fault.index.unwrap_or(0) as u16;
                    let f = Fault::interrupt(e.fault.reason, req.sid, index);
                    fault::record_fault(&mut self.regs, &mut self.next_frcd, &f, &mut fx);
                }
                Err(e.fault)
            }
        };
        (r, fx)
    }
}

impl Vtd {
    /// Remap an interrupt message for an interrupt route (the KVM MSI
    /// routes of devices whose interrupts bypass the interrupt window):
    /// the same as [`Vtd::remap_interrupt`] without recording faults, and
    /// with `sid` `None` when the requester is not known (its source id is
    /// then not validated). The route is computed again after every
    /// interrupt entry cache invalidation ([`Effects::iec_invalidations`]).
    pub fn remap_interrupt_route(
        &self,
        sid: Option<u16>,
        address: u64,
        data: u32,
        mem: &dyn GuestMemory,
    ) -> Result<Msi, InterruptFault> {
        let req = InterruptRequest { sid: sid.unwrap_or(0), address, data };
        self.remap_with_table(&req, sid.is_some(), mem).map_err(|e| e.fault)
    }

    /// `req` through the interrupt remapping table when remapping is on
    /// (with source-id validation when `check_sid`), else unchanged.
    fn remap_with_table(
        &self,
        req: &InterruptRequest,
        check_sid: bool,
        mem: &dyn GuestMemory,
    ) -> Result<Msi, irq_remap::RemapFailure> {
        if !(self.cfg.intremap && self.ir_enabled) {
            return Ok(Msi { address: req.address, data: req.data });
        }
        let rules = irq_remap::Rules {
            cfis: self.regs.get32(GSTS) & GSTS_CFIS != 0,
            check_sid,
            strict: self.cfg.strict_ir,
        };
        irq_remap::remap_checked(&self.ir_table, rules, req, mem)
    }

    pub(crate) fn sm_caps(&self) -> SmCaps {
        self.sm_caps
    }

    /// Translate a DMA request with PASID. With translation disabled the
    /// result is the identity 4 KiB page, as for requests without PASID.
    /// With a legacy-mode root table the request faults with 31h
    /// (RTA.2). Faults are recorded with the PASID (FRCD.PP, PV and PRIV).
    pub fn translate_pasid(
        &mut self,
        req: &PasidRequest,
        mem: &dyn GuestMemory,
    ) -> (Result<Translation, Fault>, Effects) {
        let mut fx = Effects::default();
        let sreq = SmRequest {
            sid: req.sid,
            iova: req.iova,
            write: req.write,
            pasid: Some((req.pasid, req.privileged)),
        };
        let r = if !self.dmar_enabled {
            Ok(Translation::identity_4k(req.iova, 0))
        } else if !self.root_scalable {
            Err(self.report_sm(FaultReason::SmTtmLegacyWithPasid, false, &sreq, &mut fx))
        } else {
            self.translate_sm(&sreq, mem, &mut fx, true)
        };
        (r, fx)
    }

    pub(crate) fn report_sm(
        &mut self,
        reason: FaultReason,
        fpd: bool,
        req: &SmRequest,
        fx: &mut Effects,
    ) -> Fault {
        let f = match req.pasid {
            Some((p, pr)) => Fault::with_pasid(reason, req.sid, req.iova, req.write, p, pr),
            None => Fault::new(reason, req.sid, req.iova, req.write),
        };
        if !(fpd && reason.is_qualified()) {
            fault::record_fault(&mut self.regs, &mut self.next_frcd, &f, fx);
        }
        f
    }

    /// Resolve a request to its PASID table entry through the scalable
    /// context cache and the PASID cache, filling them from memory on a
    /// miss. Entries are cached only when the whole resolution succeeds:
    /// a request that faults leaves nothing behind.
    pub(crate) fn resolve_cached(
        &mut self,
        sid: u16,
        pasid: Option<(u32, bool)>,
        mem: &dyn GuestMemory,
    ) -> Result<PasidContext, ContextFault> {
        let caps = self.sm_caps();
        let cached_ce = self.sm_context_cache.lookup(sid);
        let ce = match cached_ce {
            Some(ce) => ce,
            None => lookup_sm_context(mem, self.root, sid, &caps)?,
        };
        let p = effective_pasid(&ce, pasid.map(|(p, _)| p), &caps)
            .map_err(|reason| ContextFault { reason, fpd: ce.fpd() })?;
        let cached_pe = self.pasid_cache.lookup(sid, p);
        let pe = match cached_pe {
            Some(e) => e,
            None => {
                let (fpd, config) = read_pasid_entry(mem, &ce, p, &caps)?;
                PasidCacheEntry { config, fpd }
            }
        };
        let pc = pasid_context(ce, p, pe, pasid, self.cfg.strict_dma)?;
        if cached_ce.is_none() {
            self.sm_context_cache.insert(sid, ce);
        }
        if cached_pe.is_none() {
            self.pasid_cache.insert(sid, p, pe);
        }
        Ok(pc)
    }

    /// [`Vtd::resolve_cached`] from the caches alone: `None` when an entry
    /// is not cached or the resolution faults.
    #[inline]
    pub(crate) fn resolve_hit(&self, sid: u16, pasid: Option<(u32, bool)>) -> Option<PasidContext> {
        let ce = self.sm_context_cache.lookup(sid)?;
        let p = effective_pasid(&ce, pasid.map(|(p, _)| p), &self.sm_caps()).ok()?;
        let pe = self.pasid_cache.lookup(sid, p)?;
        pasid_context(ce, p, pe, pasid, self.cfg.strict_dma).ok()
    }

    /// Scalable mode, PASID entry resolved: the translation of `req` from
    /// the IOTLB alone (or pass-through), as the walk would give it;
    /// `None` when the tables must be read.
    #[inline]
    fn sm_hit_in(&self, pc: &PasidContext, req: &SmRequest) -> Option<Translation> {
        let did = pc.pasid_entry.domain_id;
        match pc.pasid_entry.mode {
            PasidMode::PassThrough => return Some(Translation::identity_4k(req.iova, did)),
            PasidMode::SecondStage(ss) => {
                let limit = u32::from(ss.agaw.min(self.cfg.aw_bits));
                if req.iova & !width_mask(limit) != 0 {
                    return None;
                }
            }
            _ => {}
        }
        let e = self.iotlb.lookup_pasid(did, pc.pasid, req.iova)?;
        e.perm.allows(req.write).then(|| translation_of(&e))
    }

    /// The translation [`Vtd::translate`] gives `req` when the caches alone
    /// answer it (context and PASID caches, IOTLB; translation disabled,
    /// pass-through): no table is read, nothing is recorded, there are no
    /// effects.  `None` when the full path must run (a miss, a fault, not
    /// enough permission cached).  Takes `&self`: a glue can answer IOTLB
    /// hits without its post-processing of effects.
    #[inline]
    pub fn translate_cached(&self, req: &Request) -> Option<Translation> {
        self.lookup_cached(req).ok()
    }

    /// [`Vtd::translate_cached`], saying on a miss how far the lookup got,
    /// for [`Vtd::translate_miss`].
    #[inline]
    pub fn lookup_cached(&self, req: &Request) -> Result<Translation, CacheMiss> {
        match self.recent_hit(req) {
            Some(t) => Ok(t),
            None => self.lookup_caches(req),
        }
    }

    /// The first step of [`Vtd::lookup_cached`], small enough to inline
    /// into a glue's translate: translation disabled, or a recent
    /// translation (see [`RecentTranslations`]).  `None` sends the request
    /// on to [`Vtd::lookup_caches`].
    #[inline]
    pub fn recent_hit(&self, req: &Request) -> Option<Translation> {
        if !self.dmar_enabled {
            return Some(Translation::identity_4k(req.iova, 0));
        }
        self.recent_translation(req.sid, req.iova, req.write).map(|(t, _)| t)
    }

    /// The rest of [`Vtd::lookup_cached`] after [`Vtd::recent_hit`]: the
    /// context (or scalable-mode context and PASID) cache and the IOTLB.
    /// Out of line, so that a recent hit's code stays small.
    #[inline(never)]
    pub fn lookup_caches(&self, req: &Request) -> Result<Translation, CacheMiss> {
        const NOT_PROBED: CacheMiss = CacheMiss { iotlb_probed: false };
        const PROBED: CacheMiss = CacheMiss { iotlb_probed: true };
        let device_tlb;
        let t = if self.root_scalable {
            let pc = self.resolve_hit(req.sid, None).ok_or(NOT_PROBED)?;
            let sreq = SmRequest { sid: req.sid, iova: req.iova, write: req.write, pasid: None };
            device_tlb = pc.context.dte();
            self.sm_hit_in(&pc, &sreq).ok_or(PROBED)?
        } else {
            let ctx = self.context_cache.lookup(req.sid).ok_or(NOT_PROBED)?;
            device_tlb = ctx.entry.translation_type() == TranslationType::DeviceTlb;
            self.legacy_hit_in(&ctx, req).ok_or(PROBED)?
        };
        self.remember_translation(req.sid, req.iova, t, device_tlb);
        Ok(t)
    }

    /// The recent translation of a request without PASID (see
    /// [`RecentTranslations`]), and whether the requester may use a
    /// device-TLB.
    #[inline]
    pub(crate) fn recent_translation(&self, sid: u16, iova: u64, write: bool) -> Option<(Translation, bool)> {
        self.recent.get(sid, iova, write, self.root_scalable, self.cache_epoch())
    }

    /// Record `t`, just found in the caches for a request without PASID
    /// of `sid`, among the recent translations.
    #[inline]
    pub(crate) fn remember_translation(&self, sid: u16, iova: u64, t: Translation, device_tlb: bool) {
        self.recent.put(sid, iova, self.root_scalable, self.cache_epoch(), t, device_tlb);
    }

    /// Scalable-mode translation from the caches alone (see
    /// [`Vtd::translate_cached`]), for ATS.
    pub(crate) fn sm_hit(&self, req: &SmRequest) -> Option<(PasidContext, Translation)> {
        let pc = self.resolve_hit(req.sid, req.pasid)?;
        let t = self.sm_hit_in(&pc, req)?;
        Some((pc, t))
    }

    /// Legacy-mode translation from the caches alone (see
    /// [`Vtd::translate_cached`]), for ATS.
    pub(crate) fn legacy_hit(&self, req: &Request) -> Option<(DeviceContext, Translation)> {
        let ctx = self.context_cache.lookup(req.sid)?;
        let t = self.legacy_hit_in(&ctx, req)?;
        Some((ctx, t))
    }

    /// Scalable-mode translation. Leaf translations go to the IOTLB tagged
    /// with the PASID entry's domain id, the PASID used (RID_PASID for
    /// requests without PASID) and the PGTT; pass-through is not cached.
    fn translate_sm(
        &mut self,
        req: &SmRequest,
        mem: &dyn GuestMemory,
        fx: &mut Effects,
        probe: bool,
    ) -> Result<Translation, Fault> {
        self.translate_sm_raw(req, mem, probe)
            .map_err(|cf| self.report_sm(cf.reason, cf.fpd, req, fx))
    }

    /// Scalable-mode translation; a failure is returned, not recorded.
    /// `probe`: look in the IOTLB (false: the caller just did, in vain).
    pub(crate) fn translate_sm_raw(
        &mut self,
        req: &SmRequest,
        mem: &dyn GuestMemory,
        probe: bool,
    ) -> Result<Translation, ContextFault> {
        let pc = self.resolve_cached(req.sid, req.pasid, mem)?;
        if probe {
            if let Some(t) = self.sm_hit_in(&pc, req) {
                return Ok(t);
            }
        }
        // A miss, or not enough permission in the cached entry: walk.
        let did = pc.pasid_entry.domain_id;
        let fpd = pc.fpd;
        let fail = |reason| ContextFault { reason, fpd };
        let pasid = pc.pasid;
        if pc.pasid_entry.mode == PasidMode::PassThrough {
            return Ok(Translation::identity_4k(req.iova, did));
        }
        if let PasidMode::SecondStage(ss) = pc.pasid_entry.mode {
            let limit = u32::from(ss.agaw.min(self.cfg.aw_bits));
            if req.iova & !width_mask(limit) != 0 {
                return Err(fail(FaultReason::SmAddressBeyondAgaw));
            }
        }
        let ss_cfg = self.walk_config();
        let fs_cfg = self.fs_walk_config();
        let ctl = self.fs_controls(&pc.pasid_entry);
        let access = FsAccess { write: req.write, supervisor: pc.privileged };
        let (out, kind): (Result<FsOutput, FaultReason>, MappingKind) = match pc.pasid_entry.mode {
            PasidMode::SecondStage(ss) => (
                walk_detailed(mem, &ss_cfg, ss.root, ss.levels, ss.agaw, req.iova, req.write)
                    .map(|o| FsOutput {
                        phys: o.phys,
                        level: o.level,
                        perm: o.perm,
                        dirty: true,
                        pte: o.pte,
                    })
                    .map_err(|e| ss_output_fault(e, req.write, false)),
                MappingKind::SecondStage,
            ),
            PasidMode::FirstStage(fs) => (
                fs_walk(mem, &fs_cfg, &fs, &ctl, req.iova, access),
                MappingKind::FirstStage,
            ),
            PasidMode::Nested { fs, ss } => (
                nested_walk(mem, &fs_cfg, &ss_cfg, &fs, &ss, &ctl, req.iova, access),
                MappingKind::Nested,
            ),
            PasidMode::PassThrough => return Ok(Translation::identity_4k(req.iova, did)),
        };
        let out = out.map_err(fail)?;
        let size = level_size(out.level);
        let last = out.phys.saturating_add(size - 1);
        if out.phys <= INTERRUPT_ADDR_LAST && last >= INTERRUPT_ADDR_FIRST {
            return Err(fail(FaultReason::SmInterruptAddress));
        }
        // A page whose D flag is still clear must not satisfy a write from
        // the IOTLB: the write has to walk again to set D.
        let perm = Perm { read: out.perm.read, write: out.perm.write && out.dirty };
        let entry = IotlbEntry {
            domain_id: did,
            iova: req.iova & !(size - 1),
            phys: out.phys,
            level: out.level,
            perm,
        };
        // The IOTLB does not record privilege. Permissions found for a user
        // request are never wider than a supervisor's for the same page, so
        // only those are cached; a supervisor request that needs more than
        // a cached entry grants walks again, and its result is not cached.
        let privilege_independent = kind == MappingKind::SecondStage;
        if privilege_independent || !pc.privileged {
            self.iotlb.insert_tagged(entry, pasid, kind);
        }
        Ok(translation_of(&entry))
    }
}

/// Why [`Vtd::lookup_cached`] had no answer, for [`Vtd::translate_miss`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheMiss {
    /// The context (and PASID) entries were cached and the IOTLB had no
    /// usable entry: the full path need not look again.
    iotlb_probed: bool,
}

/// A scalable-mode request: without PASID (`pasid` None, RID_PASID and
/// RID_PRIV apply) or with PASID and privilege.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SmRequest {
    pub(crate) sid: u16,
    pub(crate) iova: u64,
    pub(crate) write: bool,
    pub(crate) pasid: Option<(u32, bool)>,
}

/// The resolution of a request to a cached or just-read context entry
/// `ce` and PASID entry `pe` (of PASID `p`): the privilege check and what
/// the translation needs ([`request_context`]).
fn pasid_context(
    ce: SmContextEntry,
    p: u32,
    pe: PasidCacheEntry,
    pasid: Option<(u32, bool)>,
    strict: bool,
) -> Result<PasidContext, ContextFault> {
    request_context(ce, p, ce.fpd() || pe.fpd, pe.config, pasid, strict)
}

fn translation_of(e: &IotlbEntry) -> Translation {
    Translation {
        iova: e.iova,
        phys: e.phys,
        page_mask: e.size() - 1,
        perm: e.perm,
        domain_id: e.domain_id,
    }
}
