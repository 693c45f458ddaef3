// SPDX-License-Identifier: GPL-2.0-or-later

//! Migration: the C device's section (`smmuv3`, version 1, the same fields
//! in the same order, the queues as `smmuv3_queue` structs) and its
//! `smmuv3/gbpa` subsection, so that a VM moves between QEMU 10.2.2's C
//! device and ours either way. What the fields mean is
//! `smmu_core::migration::CVmState`; this module only lays them out for
//! QEMU's vmstate machinery.

use migration::{
    impl_vmstate_struct, vmstate_fields, vmstate_of, vmstate_subsections, MigrationPriority,
    VMStateDescription, VMStateDescriptionBuilder,
};
use smmu_core::migration::{CQueue, CVmState, C_VMSTATE_VERSION};

use crate::device::SmmuV3State;

/// `smmuv3_queue`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct QueueMigration {
    base: u64,
    prod: u32,
    cons: u32,
    log2size: u8,
}

const VMSTATE_QUEUE: VMStateDescription<QueueMigration> = VMStateDescriptionBuilder::<QueueMigration>::new()
    .name(c"smmuv3_queue")
    .version_id(1)
    .minimum_version_id(1)
    .fields(vmstate_fields! {
        vmstate_of!(QueueMigration, base),
        vmstate_of!(QueueMigration, prod),
        vmstate_of!(QueueMigration, cons),
        vmstate_of!(QueueMigration, log2size),
    })
    .build();

// SAFETY (of the `unsafe impl VMState` this expands to): VMSTATE_QUEUE
// describes every field of the `#[repr(C)]` struct by `vmstate_of!`.
impl_vmstate_struct!(QueueMigration, VMSTATE_QUEUE);

impl From<&CQueue> for QueueMigration {
    fn from(q: &CQueue) -> Self {
        QueueMigration { base: q.base, prod: q.prod, cons: q.cons, log2size: q.log2size }
    }
}

impl From<&QueueMigration> for CQueue {
    fn from(q: &QueueMigration) -> Self {
        CQueue { base: q.base, prod: q.prod, cons: q.cons, log2size: q.log2size }
    }
}

/// The section's fields (all but GBPA) laid out for `vmstate_of!`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SmmuMigration {
    features: u32,
    sid_size: u8,
    sid_split: u8,
    cr: [u32; 3],
    cr0ack: u32,
    statusr: u32,
    irq_ctrl: u32,
    gerror: u32,
    gerrorn: u32,
    gerror_irq_cfg0: u64,
    gerror_irq_cfg1: u32,
    gerror_irq_cfg2: u32,
    strtab_base: u64,
    strtab_base_cfg: u32,
    eventq_irq_cfg0: u64,
    eventq_irq_cfg1: u32,
    eventq_irq_cfg2: u32,
    cmdq: QueueMigration,
    eventq: QueueMigration,
}

impl From<&CVmState> for SmmuMigration {
    fn from(c: &CVmState) -> Self {
        SmmuMigration {
            features: c.features,
            sid_size: c.sid_size,
            sid_split: c.sid_split,
            cr: c.cr,
            cr0ack: c.cr0ack,
            statusr: c.statusr,
            irq_ctrl: c.irq_ctrl,
            gerror: c.gerror,
            gerrorn: c.gerrorn,
            gerror_irq_cfg0: c.gerror_irq_cfg0,
            gerror_irq_cfg1: c.gerror_irq_cfg1,
            gerror_irq_cfg2: c.gerror_irq_cfg2,
            strtab_base: c.strtab_base,
            strtab_base_cfg: c.strtab_base_cfg,
            eventq_irq_cfg0: c.eventq_irq_cfg0,
            eventq_irq_cfg1: c.eventq_irq_cfg1,
            eventq_irq_cfg2: c.eventq_irq_cfg2,
            cmdq: (&c.cmdq).into(),
            eventq: (&c.eventq).into(),
        }
    }
}

impl SmmuMigration {
    /// The C fields (GBPA at its reset value: it travels apart).
    pub fn to_c(&self) -> CVmState {
        CVmState {
            features: self.features,
            sid_size: self.sid_size,
            sid_split: self.sid_split,
            cr: self.cr,
            cr0ack: self.cr0ack,
            statusr: self.statusr,
            irq_ctrl: self.irq_ctrl,
            gerror: self.gerror,
            gerrorn: self.gerrorn,
            gerror_irq_cfg0: self.gerror_irq_cfg0,
            gerror_irq_cfg1: self.gerror_irq_cfg1,
            gerror_irq_cfg2: self.gerror_irq_cfg2,
            strtab_base: self.strtab_base,
            strtab_base_cfg: self.strtab_base_cfg,
            eventq_irq_cfg0: self.eventq_irq_cfg0,
            eventq_irq_cfg1: self.eventq_irq_cfg1,
            eventq_irq_cfg2: self.eventq_irq_cfg2,
            cmdq: (&self.cmdq).into(),
            eventq: (&self.eventq).into(),
            gbpa: CVmState::GBPA_RESET,
        }
    }
}

impl Default for SmmuMigration {
    fn default() -> Self {
        (&CVmState::default()).into()
    }
}

const VMSTATE_SMMU_FIELDS: VMStateDescription<SmmuMigration> = VMStateDescriptionBuilder::<SmmuMigration>::new()
    .name(c"smmuv3/fields")
    .version_id(1)
    .minimum_version_id(1)
    .fields(vmstate_fields! {
        vmstate_of!(SmmuMigration, features),
        vmstate_of!(SmmuMigration, sid_size),
        vmstate_of!(SmmuMigration, sid_split),
        vmstate_of!(SmmuMigration, cr),
        vmstate_of!(SmmuMigration, cr0ack),
        vmstate_of!(SmmuMigration, statusr),
        vmstate_of!(SmmuMigration, irq_ctrl),
        vmstate_of!(SmmuMigration, gerror),
        vmstate_of!(SmmuMigration, gerrorn),
        vmstate_of!(SmmuMigration, gerror_irq_cfg0),
        vmstate_of!(SmmuMigration, gerror_irq_cfg1),
        vmstate_of!(SmmuMigration, gerror_irq_cfg2),
        vmstate_of!(SmmuMigration, strtab_base),
        vmstate_of!(SmmuMigration, strtab_base_cfg),
        vmstate_of!(SmmuMigration, eventq_irq_cfg0),
        vmstate_of!(SmmuMigration, eventq_irq_cfg1),
        vmstate_of!(SmmuMigration, eventq_irq_cfg2),
        vmstate_of!(SmmuMigration, cmdq),
        vmstate_of!(SmmuMigration, eventq),
    })
    .build();

// SAFETY (of the `unsafe impl VMState` this expands to): the description
// covers every field of the `#[repr(C)]` struct by `vmstate_of!`.
impl_vmstate_struct!(SmmuMigration, VMSTATE_SMMU_FIELDS);

/// The subsection's one field.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct GbpaMigration {
    pub gbpa: u32,
}

impl Default for GbpaMigration {
    fn default() -> Self {
        GbpaMigration { gbpa: CVmState::GBPA_RESET }
    }
}

const VMSTATE_GBPA_FIELDS: VMStateDescription<GbpaMigration> = VMStateDescriptionBuilder::<GbpaMigration>::new()
    .name(c"smmuv3/gbpa/fields")
    .version_id(1)
    .minimum_version_id(1)
    .fields(vmstate_fields! {
        vmstate_of!(GbpaMigration, gbpa),
    })
    .build();

// SAFETY (of the `unsafe impl VMState` this expands to): one u32 field.
impl_vmstate_struct!(GbpaMigration, VMSTATE_GBPA_FIELDS);

/// `smmuv3/gbpa`: only when GBPA is not its reset value.
const VMSTATE_GBPA: VMStateDescription<SmmuV3State> = VMStateDescriptionBuilder::<SmmuV3State>::new()
    .name(c"smmuv3/gbpa")
    .version_id(1)
    .minimum_version_id(1)
    .needed(&SmmuV3State::gbpa_needed)
    .fields(vmstate_fields! {
        vmstate_of!(SmmuV3State, gbpa),
    })
    .build();

/// The device's section: the C fields (inline on the wire: a VMS_STRUCT
/// adds no framing), saved from and loaded into the core around migration.
pub const VMSTATE_SMMUV3: VMStateDescription<SmmuV3State> = VMStateDescriptionBuilder::<SmmuV3State>::new()
    .name(c"smmuv3")
    .version_id(C_VMSTATE_VERSION)
    .minimum_version_id(C_VMSTATE_VERSION)
    .priority(MigrationPriority::MIG_PRI_IOMMU)
    .pre_save(&SmmuV3State::pre_save)
    .pre_load(&SmmuV3State::pre_load)
    .post_load(&SmmuV3State::post_load)
    .fields(vmstate_fields! {
        vmstate_of!(SmmuV3State, migration),
    })
    .subsections(vmstate_subsections! {
        VMSTATE_GBPA,
    })
    .build();
