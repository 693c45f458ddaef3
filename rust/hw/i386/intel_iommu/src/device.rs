// SPDX-License-Identifier: GPL-2.0-or-later

//! The `intel-iommu` QOM type: properties, configuration checks, the
//! register window and translation, on top of `vtd_core`.
//!
//! Locking: the architectural state (`vtd_core::Vtd`) sits behind a mutex
//! of its own, because IOMMU `translate` runs without the BQL.  Effects that
//! reach other devices (interrupts, log lines) are carried out after the
//! mutex is released.  A thread-local flag refuses re-entry: a guest that
//! points a table at a region whose access would come back into this device
//! gets an error instead of a deadlock.

use std::{
    cell::Cell,
    sync::{Mutex, MutexGuard, PoisonError},
};

use common::uninit_field_mut;
use hwcore::{DeviceImpl, ResetType, ResettablePhasesImpl, SysBusDeviceImpl};
use bql::BqlRefCell;
use migration::VMStateDescription;
use qom::{prelude::*, ObjectImpl, ParentField, ParentInit};
use system::{hwaddr, MemoryRegion, MemoryRegionOps, MemoryRegionOpsBuilder};
use util::{
    log::Log,
    log_mask_ln, Error, Result,
};
use vtd_core::{
    AtsRequest, AtsResult, Config, Effects, InterruptRequest, Msi, Notification, NotifierFlags, Request,
    SpaceUpdate, Translation, Vtd,
};

use crate::vmstate::{VtdMigration, VMSTATE_VTD};
use crate::ffi::{
    self, AddressSpaces, HostFailure, NestedPlan, SpaceRef, SystemMemory, VtdAddressSpace,
    X86IommuState,
};

/// qdev's `OnOffAuto` property type (0 auto, 1 on, 2 off).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OnOffAuto(pub u32);

// SAFETY: qdev_prop_on_off_auto stores a C enum (int-sized), as this type.
unsafe impl hwcore::QDevProp for OnOffAuto {
    const BASE_INFO: *const hwcore::bindings::PropertyInfo =
        std::ptr::addr_of!(hwcore::bindings::qdev_prop_on_off_auto);
}

/// The field of `x-scalable-mode` / `scalable-mode`: a string property that
/// also takes a JSON boolean, as the C device's boolean `x-scalable-mode`
/// (see `ffi::SCALABLE_MODE_PROP`). A C string owned by the instance (freed
/// by the property's release hook), NULL when the property was not set.
#[repr(transparent)]
#[derive(Debug)]
pub struct ScalableModeString(*mut std::ffi::c_char);

// SAFETY: the property's functions store a `char *` in the field, as this type.
unsafe impl hwcore::QDevProp for ScalableModeString {
    const BASE_INFO: *const hwcore::bindings::PropertyInfo = std::ptr::addr_of!(ffi::SCALABLE_MODE_PROP.0);
}

// SAFETY: the pointer is written by qdev under the BQL before realize and
// only read afterwards.
unsafe impl Send for ScalableModeString {}
// SAFETY: see `Send`.
unsafe impl Sync for ScalableModeString {}

impl ScalableModeString {
    /// The property value, `None` when unset.
    fn get(&self) -> Option<String> {
        if self.0.is_null() {
            return None;
        }
        // SAFETY: a non-NULL value is a NUL-terminated string that the
        // property's setter allocated; it lives as long as the device.
        let s = unsafe { std::ffi::CStr::from_ptr(self.0) };
        Some(s.to_string_lossy().into_owned())
    }
}

/// The translation modes `x-scalable-mode` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalableMode {
    /// Legacy (root/context) translation only.
    Off,
    /// Scalable mode with second-stage translation for requests without
    /// PASID: the 10.2.2 C device's `x-scalable-mode=on`.
    Legacy,
    /// Scalable mode with first-stage, second-stage and nested translation
    /// and PASID support.
    Modern,
}

impl ScalableMode {
    /// Parse a property value; the boolean spellings of the 10.2.2 property
    /// stay accepted.
    fn parse(name: &str, value: &str) -> Result<ScalableMode> {
        match value {
            "off" | "false" | "no" => Ok(ScalableMode::Off),
            "on" | "true" | "yes" | "legacy" => Ok(ScalableMode::Legacy),
            "modern" => Ok(ScalableMode::Modern),
            _ => Err(Error::format(format_args!(
                "intel-iommu: invalid {name}={value:?}: expected off, on, legacy or modern"
            ))),
        }
    }
}

/// PASID width of `x-pasid-mode=on`: ECAP.PSS = 7, as the 10.2.2 C device
/// (whose limit is MemTxAttrs' 8-bit PASID), so that guests see the same
/// capabilities on both builds.
const PASID_MODE_BITS: u8 = 8;

/// `-device intel-iommu,help` text of each property (the C device has
/// none). The last four are x86-iommu's, shared with amd-iommu, so their
/// text holds for both.
pub(crate) const PROPERTY_HELP: &[(&std::ffi::CStr, &std::ffi::CStr)] = &[
    (c"version", c"unused; accepted for command-line compatibility"),
    (c"eim", c"x2APIC destinations in interrupt remapping (ECAP.EIM); \
      auto: on with an in-kernel irqchip or x-buggy-eim"),
    (c"x-buggy-eim", c"let eim=auto choose x2APIC mode and eim=on skip KVM's X2APIC_API check"),
    (c"aw-bits", c"address width in bits: 39 or 48 (48 with first-stage translation)"),
    (c"caching-mode", c"caching mode (CAP.CM): the guest also invalidates after mapping, \
      which vfio and vhost need"),
    (c"x-scalable-mode", c"off; on or legacy: scalable-mode tables with second-stage \
      translation (x-flts=on: first stage instead), as the C device; modern: first and \
      second stage, nested translation, 20-bit PASIDs"),
    (c"scalable-mode", c"upstream's newer spelling of x-scalable-mode"),
    (c"x-flts", c"first-stage translation (ECAP.FLTS, CAP.FS1GP with fs1gp); with \
      x-scalable-mode=on the only translation type, as the C device"),
    (c"fsts", c"upstream's newer spelling of x-flts"),
    (c"snoop-control", c"snoop control (ECAP.SC): SNP allowed in second-stage leaf entries"),
    (c"x-pasid-mode", c"PASID support with 8-bit PASIDs (ECAP.PASID, PSS=7)"),
    (c"pasid-bits", c"PASID width, 1-20 bits; 0: 8 with x-pasid-mode=on, 20 in modern \
      mode, else no PASIDs"),
    (c"dma-drain", c"read and write draining (CAP.DRD/DWD); required in scalable mode"),
    (c"stale-tm", c"accept the TM bit in second-stage leaf entries (with device-iotlb=on)"),
    (c"x-strict-ir", c"interrupt remapping by the architecture's rules: validate the I/O APIC's \
      requester id, block compatibility format while CFIS is clear, every reserved field \
      (default: the C device's rules)"),
    (c"x-strict", c"every check by the architecture's rules (x-strict-ir, and the scalable-mode \
      root, context and PASID structures' reserved fields, RID_PASID range and RID_PRIV; \
      default: the C device's rules)"),
    (c"fs1gp", c"1 GiB pages in first-stage tables (CAP.FS1GP)"),
    (c"intremap", c"interrupt remapping; auto: on unless the whole irqchip is in KVM"),
    (c"device-iotlb", c"device-TLB / ATS support (ECAP.DT)"),
    (c"pt", c"pass-through translation (ECAP.PT)"),
    (c"dma-translation", c"DMA translation; off: no page tables (CAP.SAGAW=0), \
      translation enable is ignored, only interrupt remapping remains"),
];

/// What `with_core` does after one round.
enum Step {
    /// Continue the invalidation queue after a barrier.
    Resume,
    /// The host IOMMU did not carry out the invalidation or binding asked
    /// for by this queue descriptor.
    Failed(u16, String),
    /// The host IOMMU did not carry out a binding of this function (and
    /// PASID) asked for outside the queue; then resume the queue if it
    /// stopped at a barrier.
    Unbound(u16, Option<u32>, String, bool),
}

thread_local! {
    static IN_VTD: Cell<bool> = const { Cell::new(false) };
}

#[repr(C)]
#[derive(qom::Object, hwcore::Device)]
pub struct IntelIommuState {
    parent_obj: ParentField<X86IommuState>,
    iomem: MemoryRegion,

    /// Kept for command-line compatibility; unused, as in the C device.
    #[property(rename = "version", default = 0)]
    version: u32,
    /// x2APIC (extended interrupt mode); only meaningful with intremap.
    #[property(rename = "eim", default = 0)]
    eim: OnOffAuto,
    #[property(rename = "x-buggy-eim", default = false)]
    buggy_eim: bool,
    #[property(rename = "aw-bits", default = 48)]
    aw_bits: u8,
    #[property(rename = "caching-mode", default = false)]
    caching_mode: bool,
    /// off | on/legacy | modern (the 10.2.2 boolean spellings too).
    #[property(rename = "x-scalable-mode")]
    scalable_mode: ScalableModeString,
    /// Upstream's newer spelling of `x-scalable-mode`.
    #[property(rename = "scalable-mode")]
    scalable_mode_new: ScalableModeString,
    #[property(rename = "x-flts", default = false)]
    flts: bool,
    /// Upstream's newer spelling of `x-flts`.
    #[property(rename = "fsts", default = false)]
    fsts: bool,
    #[property(rename = "snoop-control", default = false)]
    snoop_control: bool,
    #[property(rename = "x-pasid-mode", default = false)]
    pasid: bool,
    /// PASID width in bits (upstream's newer knob); 0 means the mode's
    /// default: none, 8 with `x-pasid-mode=on`, 20 in `modern` mode.
    #[property(rename = "pasid-bits", default = 0)]
    pasid_bits: u8,
    #[property(rename = "dma-drain", default = true)]
    dma_drain: bool,
    #[property(rename = "stale-tm", default = false)]
    stale_tm: bool,
    #[property(rename = "fs1gp", default = true)]
    fs1gp: bool,
    /// Interrupt remapping by the architecture's rules instead of the C
    /// device's (see `vtd_core::interrupts::irq_remap`).
    #[property(rename = "x-strict-ir", default = false)]
    strict_ir: bool,
    /// Every check by the architecture's rules (implies `x-strict-ir`).
    #[property(rename = "x-strict", default = false)]
    strict: bool,

    core: Mutex<Option<Vtd>>,
    /// The migrated fields, filled from `core` before saving and loaded
    /// into it after loading (see `vmstate`).
    pub(crate) migration: BqlRefCell<VtdMigration>,
    spaces: AddressSpaces,
    ats: ffi::AtsNotifiers,
    nested: ffi::NestedDevices,
}

qom_isa!(IntelIommuState: X86IommuState, hwcore::SysBusDevice, hwcore::DeviceState, Object);

// SAFETY: the type name is the C device's, and the class struct is that of
// its parent (the device declares no class struct of its own).
unsafe impl ObjectType for IntelIommuState {
    type Class = <X86IommuState as ObjectType>::Class;
    const TYPE_NAME: &'static std::ffi::CStr = crate::TYPE_INTEL_IOMMU;
}

impl ObjectImpl for IntelIommuState {
    type ParentType = X86IommuState;
    const INSTANCE_INIT: Option<unsafe fn(ParentInit<Self>)> = Some(Self::init);
    const CLASS_INIT: fn(&mut Self::Class) = ffi::class_init;
}

impl DeviceImpl for IntelIommuState {
    // Realize is wired through x86-iommu (see ffi::class_init).
    const VMSTATE: Option<VMStateDescription<Self>> = Some(VMSTATE_VTD);
}

impl ResettablePhasesImpl for IntelIommuState {
    // As the C device: reset in the exit phase, once DMA has quiesced.
    const EXIT: Option<fn(&Self, ResetType)> = Some(Self::reset_exit);
}

impl SysBusDeviceImpl for IntelIommuState {}

static VTD_MMIO_OPS: MemoryRegionOps<IntelIommuState> =
    MemoryRegionOpsBuilder::<IntelIommuState>::new()
        .read(&IntelIommuState::mmio_read)
        .write(&IntelIommuState::mmio_write)
        .little_endian()
        .valid_sizes(4, 8)
        .impl_sizes(4, 8)
        .build();

impl IntelIommuState {
    /// # Safety
    /// Called by QOM (through `ParentInit`) on the uninitialised instance,
    /// once, before any other use of it; every field not set by the parent
    /// classes is written here.
    unsafe fn init(mut this: ParentInit<Self>) {
        // iomem (zeroed by QOM) is initialised at realize, as in C.
        uninit_field_mut!(*this, core).write(Mutex::new(None));
        uninit_field_mut!(*this, migration).write(BqlRefCell::new(VtdMigration::default()));
        uninit_field_mut!(*this, spaces).write(AddressSpaces::default());
        uninit_field_mut!(*this, ats).write(ffi::AtsNotifiers::default());
        uninit_field_mut!(*this, nested).write(ffi::NestedDevices::default());
    }

    pub(crate) fn address_spaces(&self) -> &AddressSpaces {
        &self.spaces
    }

    /// The scalable mode chosen by `x-scalable-mode` / `scalable-mode`.
    fn scalable_mode(&self) -> Result<ScalableMode> {
        let old = self.scalable_mode.get();
        let new = self.scalable_mode_new.get();
        let parse = |name, v: &Option<String>| {
            v.as_deref().map(|v| ScalableMode::parse(name, v)).transpose()
        };
        match (parse("x-scalable-mode", &old)?, parse("scalable-mode", &new)?) {
            (Some(a), Some(b)) if a != b => Err(Error::format(format_args!(
                "intel-iommu: x-scalable-mode={} and scalable-mode={} contradict each other",
                old.unwrap_or_default(),
                new.unwrap_or_default()
            ))),
            (Some(m), _) | (None, Some(m)) => Ok(m),
            (None, None) => Ok(ScalableMode::Off),
        }
    }

    /// What `x-scalable-mode` (`scalable_mode_new`: `scalable-mode`) reads
    /// back: the mode in effect, named in that property's vocabulary
    /// (`off`, `on` or `legacy`, `modern`), whichever of the two set it;
    /// `None` when the values are invalid or contradict each other (the
    /// property then reads what was written; realize refuses it).
    pub(crate) fn scalable_mode_name(&self, scalable_mode_new: bool) -> Option<&'static std::ffi::CStr> {
        Some(match self.scalable_mode().ok()? {
            ScalableMode::Off => c"off",
            ScalableMode::Legacy if scalable_mode_new => c"legacy",
            ScalableMode::Legacy => c"on",
            ScalableMode::Modern => c"modern",
        })
    }

    /// The architectural configuration implied by the properties, or a
    /// clear error for what the user asked and this device cannot do.
    fn decide_config(&self) -> Result<Config> {
        let x86 = self.x86_props();
        // x86-iommu's realize has resolved intremap=auto by now.
        let intremap = x86.intremap == ffi::ON_OFF_AUTO_ON;
        if self.eim.0 == ffi::ON_OFF_AUTO_ON && !intremap {
            return Err(Error::msg("eim=on cannot be selected without intremap=on"));
        }
        // As the C device: eim=auto is on only with an in-kernel irqchip
        // (which needs x2APIC destinations) or x-buggy-eim.
        let eim = match self.eim.0 {
            ffi::ON_OFF_AUTO_AUTO => intremap && (ffi::kvm_irqchip_in_kernel() || self.buggy_eim),
            ffi::ON_OFF_AUTO_ON => true,
            _ => false,
        };
        // As the C device: x2APIC destinations through a split irqchip need
        // KVM's x2APIC API (32-bit ids, no broadcast quirk).
        if eim && !self.buggy_eim && !ffi::kvm_x2apic_for_eim() {
            return Err(Error::msg(
                "eim=on requires support on the KVM side(X2APIC_API, first shipped in v4.7)",
            ));
        }
        let mode = self.scalable_mode()?;
        let scalable = mode != ScalableMode::Off;
        let flts = self.flts || self.fsts || mode == ScalableMode::Modern;
        if !scalable && flts {
            return Err(Error::msg("x-flts is only available in scalable mode"));
        }
        if (self.pasid || self.pasid_bits != 0) && !scalable {
            return Err(Error::msg("Need to set scalable mode for PASID"));
        }
        if self.pasid_bits > vtd_core::config::MAX_PASID_BITS {
            return Err(Error::format(format_args!(
                "intel-iommu: pasid-bits={} exceeds the architectural maximum of {}",
                self.pasid_bits,
                vtd_core::config::MAX_PASID_BITS
            )));
        }
        if flts && self.aw_bits != 48 {
            return Err(Error::msg(
                "Scalable mode(flts=on): supported value for aw-bits is: 48",
            ));
        }
        if self.aw_bits != 39 && self.aw_bits != 48 {
            // The C device's message, word for word.
            return Err(Error::format(format_args!(
                "{}: supported values for aw-bits are: 39, 48",
                if scalable { "Scalable mode(flts=off)" } else { "Legacy mode" },
            )));
        }
        if scalable && !self.dma_drain {
            return Err(Error::msg("Need to set dma_drain for scalable mode"));
        }
        let pasid_bits = match (self.pasid_bits, self.pasid, mode) {
            (0, true, _) => PASID_MODE_BITS,
            (0, false, ScalableMode::Modern) => vtd_core::config::MAX_PASID_BITS,
            (bits, _, _) => bits,
        };
        let cfg = Config {
            aw_bits: self.aw_bits,
            pass_through: x86.pt,
            snoop_control: self.snoop_control,
            dma_drain: self.dma_drain,
            caching_mode: self.caching_mode,
            scalable_mode: scalable,
            first_stage: flts,
            // x-flts=on / fsts=on in "on" mode is the C device's first stage
            // only; "modern" offers both stages and nesting.
            second_stage: !flts || mode == ScalableMode::Modern,
            pasid_bits,
            fs1gp: self.fs1gp,
            intremap,
            eim,
            device_tlb: x86.device_iotlb,
            dma_translation: x86.dma_translation,
            stale_tm: self.stale_tm,
            strict_ir: self.strict_ir || self.strict,
            strict_dma: self.strict,
        };
        cfg.validate().map_err(|e| Error::format(format_args!("intel-iommu: {e}")))?;
        Ok(cfg)
    }

    pub(crate) fn realize(&self) -> Result<()> {
        let cfg = self.decide_config()?;
        let mut vtd = Vtd::new(cfg);
        // Wait descriptors complete only after notifiers and the host IOMMU
        // have carried out what precedes them (see with_core); register
        // writes lift this while nothing consumes those effects.
        vtd.set_queue_barriers(true);
        *self.core.lock().unwrap_or_else(PoisonError::into_inner) = Some(vtd);
        ffi::init_and_map_registers(self, &self.iomem, &VTD_MMIO_OPS, Vtd::MMIO_SIZE);
        ffi::setup_pci_iommu(self)?;
        Ok(())
    }

    fn reset_exit(&self, _type: ResetType) {
        let _ = self.with_core(|vtd| ((), vtd.reset_effects()));
    }

    /// Migration: the core's state as the C device's fields.
    pub(crate) fn pre_save(&self) -> std::result::Result<(), migration::Infallible> {
        let guard = self.core.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(vtd) = guard.as_ref() {
            let c = vtd_core::migration::CVmState::from_state(&vtd.save_state());
            *self.migration.borrow_mut() = (&c).into();
        }
        Ok(())
    }

    /// Migration: load the C device's fields into the core (checked against
    /// this device's configuration), then bring every address space,
    /// shadow and host binding in line with the loaded tables, as after a
    /// reset.
    pub(crate) fn post_load(&self, _version: u8) -> std::result::Result<(), migration::vmstate::InvalidError> {
        let c = vtd_core::migration::CVmState::from(&*self.migration.borrow());
        let loaded = self.with_core(|vtd| {
            let st = c.to_state(vtd.config());
            match vtd.load_state(&st) {
                Ok(()) => (Ok(()), vtd.loaded_effects()),
                Err(e) => (Err(e), Effects::default()),
            }
        });
        match loaded {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => {
                ffi::error_report(&format!("intel-iommu: {e}"));
                Err(migration::vmstate::InvalidError)
            }
            None => Err(migration::vmstate::InvalidError),
        }
    }

    /// Run `f` on the architectural state, then carry out its effects with
    /// the lock released.  `None` when re-entered from our own memory access.
    ///
    /// When queue processing stopped at a wait descriptor (a barrier), the
    /// effects of the descriptors before it are carried out first (IOMMU
    /// notifiers, device-TLBs, forwarded host invalidations), then the queue
    /// resumes: the guest sees its wait complete only after they took
    /// effect.  A host IOMMU failure becomes an invalidation queue error at
    /// the descriptor it came from, and the wait stays pending.
    fn with_core<R>(&self, f: impl FnOnce(&mut Vtd) -> (R, Effects)) -> Option<R> {
        let guard = self.lock_core()?;
        self.drive(self.core_step(guard, f))
    }

    /// `with_core`, first asking `hit` under the same lock: what the
    /// core's caches alone answer (no guest memory read, no effects, so
    /// nothing can re-enter and nothing is left to carry out).  When it
    /// does not answer, `miss` runs with what `hit` found, as `with_core`
    /// runs its closure.
    #[inline]
    fn with_core_or_hit<H, R>(
        &self,
        hit: impl FnOnce(&Vtd) -> std::result::Result<R, H>,
        miss: impl FnOnce(&mut Vtd, H) -> (R, Effects),
    ) -> Option<R> {
        let guard = self.lock_core()?;
        let found = match hit(guard.as_ref()?) {
            Ok(r) => return Some(r),
            Err(found) => found,
        };
        self.after_miss(guard, found, miss)
    }

    /// The rest of `with_core_or_hit` when `hit` did not answer: out of
    /// line, so that the hit path stays small.
    #[inline(never)]
    fn after_miss<H, R>(
        &self,
        guard: MutexGuard<'_, Option<Vtd>>,
        found: H,
        miss: impl FnOnce(&mut Vtd, H) -> (R, Effects),
    ) -> Option<R> {
        self.drive(self.core_step(guard, |vtd| miss(vtd, found)))
    }

    /// The core's lock, unless this thread holds it already: an access
    /// that comes back into the device while the core reads guest memory
    /// is refused (logged), not deadlocked.
    #[inline]
    fn lock_core(&self) -> Option<MutexGuard<'_, Option<Vtd>>> {
        #[cold]
        fn refused() {
            log_mask_ln!(
                Log::GuestError,
                "intel-iommu: re-entrant access (a table or descriptor address points \
                 back into the IOMMU) refused"
            );
        }
        if IN_VTD.with(Cell::get) {
            refused();
            return None;
        }
        Some(self.core.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Carry out the rounds a core step asks for (queue resumption after
    /// a barrier, host failures); the first round's result.
    fn drive<R>(&self, first: Option<(R, Option<Step>)>) -> Option<R> {
        let (r, mut step) = first?;
        while let Some(next) = step {
            let round = match next {
                Step::Resume => self.lock_core().and_then(|g| {
                    self.core_step(g, |vtd| ((), vtd.resume_queue(&SystemMemory)))
                }),
                Step::Failed(index, msg) => self.lock_core().and_then(|g| {
                    self.core_step(g, |vtd| ((), vtd.invalidation_failed(index, &msg)))
                }),
                Step::Unbound(sid, pasid, msg, resume) => self
                    .lock_core()
                    .and_then(|g| self.core_step(g, |vtd| ((), vtd.host_binding_failed(sid, pasid, &msg))))
                    .map(|(r, next)| (r, next.or(resume.then_some(Step::Resume)))),
            };
            // The first round has run: its result stands even if a later
            // round cannot.
            step = round.and_then(|(_, next)| next);
        }
        Some(r)
    }

    /// One round: `f` under the lock `guard`, its effects after, and what
    /// to do next.
    fn core_step<R>(
        &self,
        mut guard: MutexGuard<'_, Option<Vtd>>,
        f: impl FnOnce(&mut Vtd) -> (R, Effects),
    ) -> Option<(R, Option<Step>)> {
        // From here on the core may read guest memory (see lock_core).
        IN_VTD.with(|c| c.set(true));
        let out = guard.as_mut().map(|vtd| {
            let (r, effects) = f(vtd);
            // Plans only when the guest invalidated something.
            let plans = (!effects.invalidations.is_empty()).then(|| {
                (self.plan_space_updates(vtd, &effects), self.plan_nested(vtd, &effects))
            });
            (r, effects, plans)
        });
        drop(guard);
        IN_VTD.with(|c| c.set(false));
        let (r, effects, plans) = out?;
        if effects.is_empty() {
            return Some((r, None));
        }
        let (updates, nested) = plans.unwrap_or_default();
        for msg in &effects.guest_errors {
            log_mask_ln!(Log::GuestError, "intel-iommu: {msg}");
        }
        for msi in &effects.interrupts {
            ffi::send_event_msi(msi.address, msi.data);
        }
        if bql::is_locked() {
            for inv in &effects.iec_invalidations {
                self.iec_notify(inv);
            }
        }
        for event in &effects.invalidations {
            ffi::notify_device_tlb(&self.ats, event);
        }
        Self::apply_space_updates(updates);
        let failure = if nested.is_empty() { None } else { self.nested.apply(&nested) };
        // A failure of a descriptor's request stops the queue there; one
        // outside the queue (register write, reset) is a fault record.
        let next = match failure {
            Some(HostFailure { source: Some(index), msg, .. }) => Some(Step::Failed(index, msg)),
            Some(HostFailure { source: None, sid, pasid, msg }) => {
                Some(Step::Unbound(sid, pasid, msg, effects.queue_barrier))
            }
            None => effects.queue_barrier.then_some(Step::Resume),
        };
        Some((r, next))
    }

    /// With the core locked: the host bindings and invalidations of the
    /// host-IOMMU-backed functions after the invalidations in `effects`.
    fn plan_nested(&self, vtd: &Vtd, effects: &Effects) -> Vec<NestedPlan> {
        use vtd_core::nesting::hw_nest::pasid_rebind;
        use vtd_core::{HostBinding, PasidRebind};
        if effects.invalidations.is_empty() {
            return Vec::new();
        }
        // The last invalidation that may change bindings names the
        // descriptor a failed binding is reported at.
        let rebinding = effects
            .invalidations
            .iter()
            .rposition(vtd_core::nesting::hw_nest::rebinds)
            .map(|i| effects.invalidation_source(i));
        let mut scope = PasidRebind::Nothing;
        let mut pasid_source = None;
        for (i, ev) in effects.invalidations.iter().enumerate() {
            let r = pasid_rebind(ev);
            if r != PasidRebind::Nothing {
                pasid_source = effects.invalidation_source(i);
                scope = scope.union(r);
            }
        }
        let mut out = Vec::new();
        for st in self.nested.snapshot() {
            let sid = st.sid;
            let (bindings, truncated) = Self::function_bindings(vtd, &st, rebinding, &scope, pasid_source);
            // The nested HWPTs after the new bindings, and the guest
            // (DID, PASID) each stands for.
            let mut targets = st.nested;
            for (key, b, _) in &bindings {
                targets.retain(|(k, _)| k != key);
                if let HostBinding::Nested { did, pasid, .. } = *b {
                    targets.push((*key, (did, pasid)));
                }
            }
            let mut invalidations = Vec::new();
            for (i, ev) in effects.invalidations.iter().enumerate() {
                for &(key, (did, pasid)) in &targets {
                    if let Some(inv) = vtd_core::nesting::hw_nest::host_invalidation(ev, did, pasid) {
                        invalidations.push((key, inv, effects.invalidation_source(i)));
                    }
                }
            }
            if !bindings.is_empty() || !invalidations.is_empty() || truncated {
                out.push(NestedPlan { sid, bindings, invalidations, pasids_truncated: truncated });
            }
        }
        out
    }

    /// Hardware nested translation is offered: modern scalable mode (first
    /// stage) with caching mode.
    pub(crate) fn hw_nested(&self) -> bool {
        self.caching_mode && self.first_stage_advertised()
    }

    /// Whether a host VT-d can carry this configuration nested.
    pub(crate) fn check_host(&self, host: &vtd_core::HostVtd) -> std::result::Result<(), String> {
        let guard = self.core.lock().unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            Some(vtd) => vtd_core::nesting::hw_nest::check_host(vtd.config(), host),
            None => Err("intel-iommu is not realized".into()),
        }
    }

    pub(crate) fn nested_devices(&self) -> &ffi::NestedDevices {
        &self.nested
    }

    /// With the core locked: the bindings of one host-IOMMU-backed function
    /// for a rebinding event: requests without PASID when `rid_source` is
    /// given (the descriptor to report a failure at), and the PASIDs in
    /// `scope` (all: those with present entries, at most MAX_HOST_PASIDS,
    /// and those bound now) unless they stay blocked and unbound. Also
    /// whether the present PASIDs were more than the bound.
    fn function_bindings(
        vtd: &Vtd,
        st: &ffi::NestedState,
        rid_source: Option<Option<u16>>,
        scope: &vtd_core::PasidRebind,
        pasid_source: Option<u16>,
    ) -> (Vec<(Option<u32>, vtd_core::HostBinding, Option<u16>)>, bool) {
        use vtd_core::nesting::hw_nest::MAX_HOST_PASIDS;
        use vtd_core::{HostBinding, PasidRebind};
        let sid = st.sid;
        let mut bindings = Vec::new();
        if let Some(source) = rid_source {
            bindings.push((None, vtd.host_binding(sid, &SystemMemory), source));
        }
        let mut truncated = false;
        if st.pasid_capable {
            let pasids = match scope {
                PasidRebind::Nothing => Vec::new(),
                PasidRebind::Pasids(list) => list.clone(),
                PasidRebind::All => {
                    let (mut present, more) = vtd.present_pasids(sid, &SystemMemory, MAX_HOST_PASIDS);
                    truncated = more;
                    present.extend(st.bound_pasids.iter().filter(|p| !present.contains(p)).collect::<Vec<_>>());
                    present
                }
            };
            // PASID 0 is RID_PASID: the binding without PASID.
            for p in pasids.into_iter().filter(|&p| p != 0) {
                let b = vtd.host_binding_pasid(sid, p, &SystemMemory);
                if b != HostBinding::Blocked || st.bound_pasids.contains(&p) {
                    bindings.push((Some(p), b, pasid_source));
                }
            }
        }
        (bindings, truncated)
    }

    /// Bind function `sid` (requests without PASID and every PASID with a
    /// present entry) as the guest's tables say now.
    pub(crate) fn rebind_nested(&self, sid: u16) {
        let Some(st) = self.nested.snapshot().into_iter().find(|st| st.sid == sid) else {
            return;
        };
        let plan = self.with_core(|vtd| {
            let (bindings, pasids_truncated) =
                Self::function_bindings(vtd, &st, Some(None), &vtd_core::PasidRebind::All, None);
            let plan = NestedPlan { sid, bindings, invalidations: Vec::new(), pasids_truncated };
            (vec![plan], Effects::default())
        });
        let failure = plan.and_then(|plan| self.nested.apply(&plan));
        if let Some(HostFailure { sid, pasid, msg, .. }) = failure {
            // A fault record, as for a failure at a register write.
            self.drive(Some(((), Some(Step::Unbound(sid, pasid, msg, false)))));
        }
    }

    /// With the core locked: what each PCI function's address space needs
    /// after the invalidations in `effects` (notifications, identity switch).
    fn plan_space_updates(&self, vtd: &Vtd, effects: &Effects) -> Vec<(SpaceRef, SpaceUpdate)> {
        if effects.invalidations.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        // Without notifiers, a space only cares about invalidations that
        // may switch it between translated and identity-mapped.
        let mode_may_change = effects.invalidations.iter().any(vtd_core::nesting::notify::changes_mode);
        if !mode_may_change && !self.spaces.any_notified() {
            return out;
        }
        for space in self.spaces.pci_functions() {
            let flags = space.notifier_flags();
            if !mode_may_change && flags == NotifierFlags::default() {
                continue;
            }
            let mut shadow = flags.map.then(|| space.shadow());
            let up = vtd.update_notified_space(
                space.source_id(),
                flags,
                shadow.as_deref_mut(),
                &effects.invalidations,
                &SystemMemory,
            );
            if !up.notifications.is_empty() || up.identity.is_some() || up.truncated {
                out.push((space, up));
            }
        }
        out
    }

    /// Deliver planned notifications and switch address spaces between the
    /// IOMMU region and untranslated memory. Invalidations come from
    /// register writes and resets, which hold the BQL that both need.
    fn apply_space_updates(updates: Vec<(SpaceRef, SpaceUpdate)>) {
        if updates.is_empty() {
            return;
        }
        if !bql::is_locked() {
            log_mask_ln!(
                Log::Unimp,
                "intel-iommu: invalidation outside the BQL: notifiers not updated"
            );
            return;
        }
        for (space, up) in updates {
            if up.truncated {
                log_mask_ln!(
                    Log::GuestError,
                    "intel-iommu: page tables of {:04x} too large or cyclic to shadow; \
                     the rest of the range is reported unmapped",
                    space.source_id()
                );
            }
            for note in &up.notifications {
                space.deliver(note, None);
            }
            if let Some(identity) = up.identity {
                space.set_identity(identity);
            }
        }
    }

    /// Whether DMA of function `sid` (requests without PASID) is
    /// currently identity-mapped, as the guest's tables say.
    pub(crate) fn is_identity(&self, sid: u16) -> bool {
        self.with_core(|vtd| {
            (vtd.address_space_mode(sid, None, &SystemMemory).is_identity(), Effects::default())
        })
        .unwrap_or(false)
    }

    /// Why a notifier with `flags` cannot be served, if it cannot.
    pub(crate) fn check_notifier(&self, flags: u32) -> std::result::Result<(), &'static str> {
        use crate::bindings::{IOMMU_NOTIFIER_DEVIOTLB_UNMAP, IOMMU_NOTIFIER_MAP, IOMMU_NOTIFIER_NONE};
        if flags == IOMMU_NOTIFIER_NONE {
            Ok(())
        } else if self.snoop_control {
            Err("cannot be assigned or used with vhost: snoop-control=on is not supported with IOMMU notifiers")
        } else if flags & IOMMU_NOTIFIER_MAP != 0 && !self.caching_mode {
            Err("requires caching mode (intel-iommu,caching-mode=on) for its MAP notifier (vfio)")
        } else if flags & IOMMU_NOTIFIER_MAP != 0 && self.first_stage_advertised() {
            // Caching mode only obliges software to invalidate new
            // second-stage entries: Linux does not invalidate new
            // first-stage mappings, so they cannot be shadowed (the C
            // device refuses host devices with x-flts for the same reason).
            Err("cannot be shadowed for vfio with first-stage translation (x-flts, fsts or \
                 x-scalable-mode=modern): guests need not invalidate new first-stage \
                 mappings; assign devices with vfio's iommufd backend (-object iommufd,id=X \
                 -device vfio-pci,...,iommufd=X) for hardware nested translation, or use \
                 x-scalable-mode=on")
        } else if flags & IOMMU_NOTIFIER_DEVIOTLB_UNMAP != 0 && !self.x86_props().device_iotlb {
            Err("requires device IOTLB mode (intel-iommu,device-iotlb=on)")
        } else {
            Ok(())
        }
    }

    /// First-stage translation is among the capabilities (ECAP.FLTS).
    pub(crate) fn first_stage_advertised(&self) -> bool {
        self.core
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|vtd| vtd.config().first_stage)
    }

    /// Full resync of `space`'s shadow for a replay: the notifications that
    /// bring the existing MAP notifiers up to date, and a MAP for every
    /// current mapping.
    pub(crate) fn replay_shadow(&self, space: &VtdAddressSpace) -> Option<(Vec<Notification>, Vec<Notification>)> {
        let sid = space.source_id();
        self.with_core(|vtd| {
            let mut shadow = space.shadow();
            let outcome = vtd.replay_shadow(sid, None, &mut shadow, &SystemMemory);
            let catch_up = outcome.events.iter().map(Notification::from).collect();
            let current = shadow
                .iter()
                .map(|(iova, e)| Notification::Map { iova, size: e.size, phys: e.phys, perm: e.perm })
                .collect();
            ((catch_up, current), Effects::default())
        })
    }

    fn mmio_read(&self, addr: hwaddr, size: u32) -> u64 {
        self.with_core(|vtd| (vtd.read_reg(addr, size), Effects::default()))
            .unwrap_or(0)
    }

    fn mmio_write(&self, addr: hwaddr, value: u64, size: u32) {
        // Wait descriptors complete only after the consumers of what
        // precedes them (notifiers, device-TLBs, the host IOMMU, KVM's
        // interrupt routes) have carried it out (see with_core).  With no
        // consumer there is nothing to wait for: the queue runs through.
        // Consumers come and go under the BQL, which register writes hold.
        let barriers = self.spaces.any_notified()
            || !self.ats.is_empty()
            || !self.nested.is_empty()
            || self.has_iec_listeners();
        let _ = self.with_core(|vtd| {
            vtd.set_queue_barriers(barriers);
            let effects = vtd.write_reg(addr, size, value, &SystemMemory);
            vtd.set_queue_barriers(true);
            ((), effects)
        });
    }

    pub(crate) fn ats_notifiers(&self) -> &ffi::AtsNotifiers {
        &self.ats
    }

    pub(crate) fn aw_bits(&self) -> u8 {
        self.aw_bits
    }

    /// Remap an interrupt request (a DWORD write to the interrupt window by
    /// `sid`, carried by the request when `explicit`, else implied by the
    /// address space); `None`: blocked (the fault is recorded as
    /// architected).
    pub(crate) fn remap_interrupt(&self, sid: u16, explicit: bool, address: u64, data: u32) -> Option<Msi> {
        let req = InterruptRequest { sid, address, data };
        self.with_core(|vtd| {
            let (result, effects) = vtd.remap_interrupt_from(&req, explicit, &SystemMemory);
            (result.ok(), effects)
        })
        .flatten()
    }

    /// Remap an interrupt message for an interrupt route (`int_remap`):
    /// `None` when blocked; nothing is recorded.
    pub(crate) fn remap_interrupt_route(&self, sid: Option<u16>, address: u64, data: u32) -> Option<Msi> {
        self.with_core(|vtd| {
            (vtd.remap_interrupt_route(sid, address, data, &SystemMemory).ok(), Effects::default())
        })
        .flatten()
    }

    /// Answer an ATS translation request (from the caches alone when
    /// they can).
    pub(crate) fn translate_ats(&self, req: &AtsRequest) -> Option<AtsResult> {
        self.with_core_or_hit(
            |vtd| vtd.translate_ats_cached(req).map(AtsResult::Success).ok_or(()),
            |vtd, ()| vtd.translate_ats(req, &SystemMemory),
        )
    }

    /// Translate a DMA request of source id `sid`; `None` means the access
    /// faults (the fault is recorded by the core as architected).
    pub(crate) fn translate(&self, sid: u16, iova: u64, write: bool) -> Option<Translation> {
        let req = Request { sid, iova, write };
        // Cache hits: no effects to carry out, no re-entrancy guard to set.
        // The recent translations are probed inline, the other caches and
        // the full path out of line.
        let guard = self.lock_core()?;
        let vtd = guard.as_ref()?;
        if let Some(t) = vtd.recent_hit(&req) {
            return Some(t);
        }
        let miss = match vtd.lookup_caches(&req) {
            Ok(t) => return Some(t),
            Err(miss) => miss,
        };
        self.after_miss(guard, miss, |vtd, miss| {
            let (result, effects) = vtd.translate_miss(&req, miss, &SystemMemory);
            (result.ok(), effects)
        })
        .flatten()
    }
}
