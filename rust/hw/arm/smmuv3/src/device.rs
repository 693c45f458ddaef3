// SPDX-License-Identifier: GPL-2.0-or-later

//! The QOM types `arm-smmu` (abstract) and `arm-smmuv3`: properties,
//! configuration checks, the register window, wired interrupts and
//! translation, on top of `smmu_core`.
//!
//! Locking: the architectural state (`smmu_core::smmu::Smmu`) sits behind
//! a mutex of its own, because IOMMU `translate` runs without the BQL.
//! Effects that reach other devices (interrupts, notifiers, log lines) are
//! carried out after the mutex is released. A thread-local flag refuses
//! re-entry: a guest that points a table or queue at a region whose access
//! would come back into this device gets an error instead of a deadlock.

use std::{
    cell::Cell,
    ffi::{c_char, CStr},
    sync::atomic::{AtomicU8, Ordering},
    sync::{Mutex, MutexGuard, PoisonError},
};

use bql::BqlRefCell;
use common::uninit_field_mut;
use hwcore::{
    DeviceImpl, InterruptSource, ResetType, ResettablePhasesImpl, SysBusDevice, SysBusDeviceImpl,
    SysBusDeviceMethods,
};
use iommu_core::translation::vmsa::Access;
use iommu_glue::{ats::AtsNotifiers, SystemMemory};
use migration::VMStateDescription;
use qom::{prelude::*, ObjectImpl, ParentField, ParentInit};
use smmu_core::{
    config::{Config, Stage},
    registers::MMIO_SIZE,
    ats::{AtsRequest, AtsResponse},
    smmu::{Effects, Irq, Request, Smmu, Translation},
};
use system::{hwaddr, MemoryRegion, MemoryRegionOps, MemoryRegionOpsBuilder};
use util::{log::Log, log_mask_ln, Error, Result};

use crate::ffi::{self, AddressSpaces, PrimaryBus};
use crate::vmstate::{GbpaMigration, SmmuMigration, VMSTATE_SMMUV3};

// ---------------------------------------------------------------------------
// arm-smmu: the abstract parent, with the properties the C device's
// smmu-common.c declares.

#[repr(C)]
#[derive(qom::Object, hwcore::Device)]
pub struct ArmSmmuState {
    parent_obj: ParentField<SysBusDevice>,
    /// Unused, as in the C device (kept for command-line compatibility).
    #[property(rename = "bus_num", default = 0)]
    bus_num: u8,
    /// Serve the primary bus alone, not the buses below its bridges too
    /// (set by `-M virt` for user-created SMMUs).
    #[property(rename = "smmu_per_bus", default = false)]
    smmu_per_bus: bool,
    /// `primary-bus`: a qdev link added by hand (see `ffi::arm_smmu`).
    pub(crate) primary_bus: PrimaryBus,
}

qom_isa!(ArmSmmuState: SysBusDevice, hwcore::DeviceState, Object);

// SAFETY: the type name is the C device's abstract parent; its class struct
// is SysBusDeviceClass (the C SMMUBaseClass only adds a saved realize).
unsafe impl ObjectType for ArmSmmuState {
    type Class = <SysBusDevice as ObjectType>::Class;
    const TYPE_NAME: &'static CStr = crate::TYPE_ARM_SMMU;
}

impl ObjectImpl for ArmSmmuState {
    type ParentType = SysBusDevice;
    const ABSTRACT: bool = true;
    const INSTANCE_INIT: Option<unsafe fn(ParentInit<Self>)> = Some(Self::init);
    const CLASS_INIT: fn(&mut Self::Class) = |klass| {
        klass.class_init::<ArmSmmuState>();
        ffi::add_primary_bus_property(std::ptr::from_mut(klass).cast());
    };
}

impl DeviceImpl for ArmSmmuState {}
impl ResettablePhasesImpl for ArmSmmuState {}
impl SysBusDeviceImpl for ArmSmmuState {}

impl ArmSmmuState {
    /// # Safety
    /// Called by QOM on the uninitialised instance, once.
    unsafe fn init(mut this: ParentInit<Self>) {
        uninit_field_mut!(*this, primary_bus).write(PrimaryBus::default());
    }
}

// ---------------------------------------------------------------------------
// arm-smmuv3

/// A qdev string property's field (`DEFINE_PROP_STRING`): a C string owned
/// by the instance (freed by qdev), NULL when unset.
#[repr(transparent)]
#[derive(Debug)]
pub struct StringProperty(*mut c_char);

// SAFETY: qdev_prop_string stores a `char *` in the field, as this type.
unsafe impl hwcore::QDevProp for StringProperty {
    const BASE_INFO: *const hwcore::bindings::PropertyInfo = std::ptr::addr_of!(hwcore::bindings::qdev_prop_string);
}

// SAFETY: written by qdev under the BQL before realize, only read after.
unsafe impl Send for StringProperty {}
// SAFETY: see `Send`.
unsafe impl Sync for StringProperty {}

impl StringProperty {
    fn get(&self) -> Option<String> {
        if self.0.is_null() {
            return None;
        }
        // SAFETY: a non-NULL value is a NUL-terminated string that the
        // property's setter allocated; it lives as long as the device.
        Some(unsafe { CStr::from_ptr(self.0) }.to_string_lossy().into_owned())
    }
}

/// `-device arm-smmuv3,help` text of each property.
const PROPERTY_HELP: &[(&CStr, &CStr)] = &[
    (c"stage", c"translation stages advertised: 1 (default), 2 or nested; \
      any other value is stage 1, as the C device reads it"),
    (c"ssidsize", c"SubstreamID bits, 0-20 (IDR1.SSIDSIZE); 0: no substreams"),
    (c"ats", c"PCIe ATS (IDR0.ATS): translation requests from devices (with PASIDs: SubstreamIDs) \
      and CMD_ATC_INV to their ATCs"),
    (c"ril", c"advertise range invalidation (IDR3.RIL)"),
    (c"oas", c"output address size in bits, 44 or 48 (IDR5.OAS)"),
    (c"x-msi", c"advertise MSIs (IDR0.MSI): event queue, GERROR and CMD_SYNC completion by MSI \
      where their address is set (the C device has wired interrupts only)"),
    (c"x-strict", c"the architecture's checks where the C device is lenient: ILLEGAL STE \
      fields, the stage property's spelling, stage-1 EL0 permission (AP[1]) of requests"),
    (c"bus_num", c"unused; accepted for command-line compatibility"),
    (c"smmu_per_bus", c"serve the primary bus only, not the buses behind its bridges"),
    (c"primary-bus", c"the PCIe root bus (pcie.0 or a pxb-pcie bus) whose devices the SMMU serves"),
];

thread_local! {
    static IN_SMMU: Cell<bool> = const { Cell::new(false) };
}

#[repr(C)]
#[derive(qom::Object, hwcore::Device)]
pub struct SmmuV3State {
    parent_obj: ParentField<ArmSmmuState>,
    iomem: MemoryRegion,
    /// Event queue, PRI queue, CMD_SYNC, GERROR (the C device's order).
    interrupts: [InterruptSource; 4],

    /// Stages advertised: "1", "2" or "nested" (anything else: stage 1).
    #[property(rename = "stage")]
    stage: StringProperty,
    /// Upstream's newer knobs, with upstream's defaults.
    #[property(rename = "ssidsize", default = 0)]
    ssidsize: u8,
    #[property(rename = "ats", default = false)]
    ats: bool,
    #[property(rename = "ril", default = true)]
    ril: bool,
    #[property(rename = "oas", default = 44)]
    oas: u8,
    /// Advertise MSIs (ours; the C device has wired interrupts only).
    #[property(rename = "x-msi", default = false)]
    msi: bool,
    /// The architecture's checks where the C device is lenient.
    #[property(rename = "x-strict", default = false)]
    strict: bool,

    core: Mutex<Option<Smmu>>,
    /// The migrated fields, filled from `core` before saving and loaded
    /// into it after loading (see `vmstate`).
    pub(crate) migration: BqlRefCell<SmmuMigration>,
    pub(crate) gbpa: BqlRefCell<GbpaMigration>,
    spaces: AddressSpaces,
    /// Device-IOTLB (ATC) notifiers of ATS-capable functions.
    ats_notifiers: AtsNotifiers,
    /// Interrupt lines (bit per `Irq`) to pulse from the main loop.
    pending_irqs: AtomicU8,
}

qom_isa!(SmmuV3State: ArmSmmuState, SysBusDevice, hwcore::DeviceState, Object);

// SAFETY: the type name is the C device's; the class struct is its
// parent's (the device declares no class struct of its own).
unsafe impl ObjectType for SmmuV3State {
    type Class = <ArmSmmuState as ObjectType>::Class;
    const TYPE_NAME: &'static CStr = crate::TYPE_ARM_SMMUV3;
}

impl ObjectImpl for SmmuV3State {
    type ParentType = ArmSmmuState;
    const INSTANCE_INIT: Option<unsafe fn(ParentInit<Self>)> = Some(Self::init);
    const CLASS_INIT: fn(&mut Self::Class) = |klass| {
        klass.class_init::<SmmuV3State>();
        let dc = &mut klass.parent_class;
        dc.hotpluggable = false;
        dc.user_creatable = true;
        dc.desc = c"Arm SMMUv3 (Rust)".as_ptr();
        iommu_glue::qom::describe_properties(&mut dc.parent_class, PROPERTY_HELP);
    };
}

impl DeviceImpl for SmmuV3State {
    const REALIZE: Option<fn(&Self) -> Result<()>> = Some(Self::realize);
    const VMSTATE: Option<VMStateDescription<Self>> = Some(VMSTATE_SMMUV3);
}

impl ResettablePhasesImpl for SmmuV3State {
    // As the C device: reset in the exit phase, once DMA has quiesced.
    const EXIT: Option<fn(&Self, ResetType)> = Some(Self::reset_exit);
}

impl SysBusDeviceImpl for SmmuV3State {}

static SMMU_MMIO_OPS: MemoryRegionOps<SmmuV3State> = MemoryRegionOpsBuilder::<SmmuV3State>::new()
    .read(&SmmuV3State::mmio_read)
    .write(&SmmuV3State::mmio_write)
    .little_endian()
    .valid_sizes(4, 8)
    .impl_sizes(4, 8)
    .build();

impl SmmuV3State {
    /// # Safety
    /// Called by QOM (through `ParentInit`) on the uninitialised instance,
    /// once, before any other use of it; every field not set by the parent
    /// classes is written here.
    unsafe fn init(mut this: ParentInit<Self>) {
        // iomem (zeroed by QOM) and the interrupts are set up at realize,
        // as in C: before that QOM shows no child region or IRQ links.
        uninit_field_mut!(*this, core).write(Mutex::new(None));
        uninit_field_mut!(*this, migration).write(BqlRefCell::new(SmmuMigration::default()));
        uninit_field_mut!(*this, gbpa).write(BqlRefCell::new(GbpaMigration::default()));
        uninit_field_mut!(*this, spaces).write(AddressSpaces::default());
        uninit_field_mut!(*this, ats_notifiers).write(AtsNotifiers::default());
        uninit_field_mut!(*this, pending_irqs).write(AtomicU8::new(0));
    }

    fn base(&self) -> &ArmSmmuState {
        &self.parent_obj
    }

    pub(crate) fn address_spaces(&self) -> &AddressSpaces {
        &self.spaces
    }

    pub(crate) fn ats_notifiers(&self) -> &AtsNotifiers {
        &self.ats_notifiers
    }

    /// The widest input address a device may ask to translate (stage-1
    /// VAs are 48 bits without VAX; a stage-2-only SMMU's IPAs the OAS).
    pub(crate) fn input_bits(&self) -> u8 {
        let guard = self.core.lock().unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref().map(|smmu| smmu.config().stage) {
            Some(Stage::S2) => self.oas,
            _ => 48,
        }
    }

    /// The configuration the properties ask for, or a clear error for what
    /// this device cannot do.
    fn decide_config(&self) -> Result<Config> {
        let stage = match (self.strict, self.stage.get()) {
            (true, Some(s)) => Stage::parse_strict(&s).map_err(|e| Error::format(format_args!("arm-smmuv3: {e}")))?,
            (_, s) => Stage::from_property(s.as_deref()),
        };
        let cfg = Config { stage, oas: self.oas, ssidsize: self.ssidsize, ats: self.ats, ril: self.ril, msi: self.msi, strict: self.strict };
        cfg.validate().map_err(|e| Error::format(format_args!("arm-smmuv3: {e}")))?;
        Ok(cfg)
    }

    fn realize(&self) -> Result<()> {
        let bus = self.base().primary_bus.get();
        ffi::check_primary_bus(bus)?;
        let cfg = self.decide_config()?;
        let smmu = Smmu::new(cfg).map_err(|e| Error::format(format_args!("arm-smmuv3: {e}")))?;
        ffi::init_register_window(self, &self.iomem, &SMMU_MMIO_OPS, MMIO_SIZE);
        self.init_mmio(&self.iomem);
        for irq in &self.interrupts {
            self.init_irq(irq);
        }
        *self.core.lock().unwrap_or_else(PoisonError::into_inner) = Some(smmu);
        ffi::setup_pci_iommu(self, bus, self.base().smmu_per_bus);
        Ok(())
    }

    fn reset_exit(&self, _type: ResetType) {
        let _ = self.with_core(|smmu| {
            smmu.reset();
            ((), Effects::default())
        });
    }

    /// Migration: the core's registers as the C device's fields.
    pub(crate) fn pre_save(&self) -> std::result::Result<(), migration::Infallible> {
        let guard = self.core.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(smmu) = guard.as_ref() {
            let c = smmu_core::migration::CVmState::from_registers(smmu.registers());
            *self.migration.borrow_mut() = SmmuMigration::from(&c);
            self.gbpa.borrow_mut().gbpa = c.gbpa;
        }
        Ok(())
    }

    /// Migration: GBPA keeps its reset value unless the subsection comes.
    pub(crate) fn pre_load(&self) -> std::result::Result<(), migration::Infallible> {
        self.gbpa.borrow_mut().gbpa = smmu_core::migration::CVmState::GBPA_RESET;
        Ok(())
    }

    pub(crate) fn gbpa_needed(&self) -> bool {
        self.gbpa.borrow().gbpa != smmu_core::migration::CVmState::GBPA_RESET
    }

    /// Migration: the C device's fields into the core; caches start empty
    /// and notifiers hear that everything was invalidated.
    pub(crate) fn post_load(&self, _version: u8) -> std::result::Result<(), migration::Infallible> {
        let mut c = self.migration.borrow().to_c();
        c.gbpa = self.gbpa.borrow().gbpa;
        let _ = self.with_core(|smmu| {
            let mut regs = smmu.registers().clone();
            c.load_into(&mut regs);
            smmu.load_registers(regs);
            ((), Effects { unmaps: vec![None], ..Effects::default() })
        });
        Ok(())
    }

    // ------------------------------------------------------------------
    // Register window and translation.

    fn mmio_read(&self, addr: hwaddr, size: u32) -> u64 {
        self.with_core(|smmu| smmu.read_reg(addr, size)).unwrap_or(0)
    }

    fn mmio_write(&self, addr: hwaddr, value: u64, size: u32) {
        let _ = self.with_core(|smmu| ((), smmu.write_reg(addr, size, value, &SystemMemory)));
    }

    /// Translate a request of function `sid` without SubstreamID (QEMU's
    /// IOMMU memory regions carry none): the page around `addr`, or `None`
    /// when the request is terminated.
    pub(crate) fn translate(&self, sid: u32, addr: u64, write: bool) -> Option<Translation> {
        // PCIe requests without a PASID prefix are unprivileged (the core
        // checks AP[1] for them only with x-strict: the C device never does).
        let req = Request { sid, ssid: None, addr, access: Access { write, privileged: false, instruction: false } };
        self.with_core(|smmu| smmu.translate(&req, &SystemMemory)).and_then(|r| r.ok())
    }

    /// Answer an ATS Translation Request for one page.
    pub(crate) fn translate_ats(&self, req: &AtsRequest) -> AtsResponse {
        self.with_core(|smmu| smmu.translate_ats(req, &SystemMemory)).unwrap_or(AtsResponse::CompleterAbort)
    }

    // ------------------------------------------------------------------
    // The core, and what its operations ask for.

    /// The core's lock, unless this thread holds it already: an access
    /// that comes back into the device while the core reads or writes
    /// guest memory is refused (logged), not deadlocked.
    fn lock_core(&self) -> Option<MutexGuard<'_, Option<Smmu>>> {
        if IN_SMMU.with(Cell::get) {
            log_mask_ln!(
                Log::GuestError,
                "arm-smmuv3: re-entrant access (a table or queue address points back into the SMMU) refused"
            );
            return None;
        }
        Some(self.core.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Run `f` on the core, then carry out its effects with the lock
    /// released. `None` when re-entered or before realize.
    fn with_core<R>(&self, f: impl FnOnce(&mut Smmu) -> (R, Effects)) -> Option<R> {
        let mut guard = self.lock_core()?;
        IN_SMMU.with(|c| c.set(true));
        let out = guard.as_mut().map(f);
        drop(guard);
        IN_SMMU.with(|c| c.set(false));
        let (r, fx) = out?;
        self.apply(fx);
        Some(r)
    }

    fn apply(&self, fx: Effects) {
        if fx.is_none() {
            // The common case (a TLB hit): nothing allocated, so forgetting
            // the value skips five list drops (about 70 instructions of a
            // hit's 1,100) and leaks nothing.
            std::mem::forget(fx);
            return;
        }
        for line in &fx.log {
            log_mask_ln!(Log::GuestError, "{line}");
        }
        if !fx.unmaps.is_empty() && self.spaces.any_notified() {
            // Notifiers change under the BQL only; invalidations come from
            // register writes (MMIO, under the BQL) or a load.
            for space in self.spaces.notified() {
                // SAFETY: address spaces live as long as the device.
                let space = unsafe { space.as_ref() };
                for range in &fx.unmaps {
                    space.unmap(*range);
                }
            }
        }
        // ATC invalidations (from CMD_ATC_INV, under the BQL) to the ATCs
        // of the functions they name.
        for inv in &fx.atc {
            self.ats_notifiers.notify(|rid, pasid| {
                inv.covers(u32::from(rid), pasid).then(|| (inv.first, inv.last - inv.first))
            });
        }
        // MSIs (x-msi): 32-bit stores, without the core's lock; a failed
        // one is GERROR.MSI_*_ABT_ERR.
        for msi in &fx.msis {
            if iommu_glue::store_msi(msi.addr, msi.data).is_err() {
                let _ = self.with_core(|smmu| ((), smmu.msi_aborted(*msi)));
            }
        }
        if fx.irqs.is_empty() {
            return;
        }
        let bits = fx.irqs.iter().fold(0u8, |b, irq| b | 1 << *irq as u8);
        self.pending_irqs.fetch_or(bits, Ordering::AcqRel);
        if bql::is_locked() {
            self.pulse_pending_irqs();
        } else {
            // A translation on an I/O thread recorded an event: interrupt
            // controllers expect the BQL, which the main loop holds.
            ffi::schedule_irq_bottom_half(self);
        }
    }

    /// Pulse the interrupt lines that effects asked for (under the BQL).
    pub(crate) fn pulse_pending_irqs(&self) {
        let bits = self.pending_irqs.swap(0, Ordering::AcqRel);
        for irq in [Irq::Eventq, Irq::Priq, Irq::CmdSync, Irq::Gerror] {
            if bits & 1 << irq as u8 != 0 {
                self.interrupts[irq as usize].pulse();
            }
        }
    }
}
