// SPDX-License-Identifier: GPL-2.0-or-later

//! Migration: the C device's section ("iommu-intel", version 1, the same
//! fields in the same order), so that a VM moves between the C device of
//! QEMU 10.2.2 and ours either way. The fields and what they mean are
//! `vtd_core::migration::CVmState`; this module only lays them out for
//! QEMU's vmstate machinery.

use migration::{
    impl_vmstate_struct, vmstate_fields, vmstate_of, vmstate_unused, MigrationPriority,
    VMStateDescription, VMStateDescriptionBuilder,
};
use vtd_core::{migration::CVmState, registers::DMAR_REG_SIZE};

use crate::device::IntelIommuState;

/// `CVmState` laid out for `vmstate_of!`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct VtdMigration {
    root: u64,
    intr_root: u64,
    iq: u64,
    intr_size: u32,
    iq_head: u16,
    iq_tail: u16,
    iq_size: u16,
    next_frcd_reg: u16,
    csr: [u8; DMAR_REG_SIZE],
    iq_last_desc_type: u8,
    dmar_enabled: bool,
    qi_enabled: bool,
    intr_enabled: bool,
    intr_eime: bool,
}

impl From<&CVmState> for VtdMigration {
    fn from(c: &CVmState) -> Self {
        VtdMigration {
            root: c.root,
            intr_root: c.intr_root,
            iq: c.iq,
            intr_size: c.intr_size,
            iq_head: c.iq_head,
            iq_tail: c.iq_tail,
            iq_size: c.iq_size,
            next_frcd_reg: c.next_frcd_reg,
            csr: c.csr,
            iq_last_desc_type: c.iq_last_desc_type,
            dmar_enabled: c.dmar_enabled,
            qi_enabled: c.qi_enabled,
            intr_enabled: c.intr_enabled,
            intr_eime: c.intr_eime,
        }
    }
}

impl From<&VtdMigration> for CVmState {
    fn from(m: &VtdMigration) -> Self {
        CVmState {
            root: m.root,
            intr_root: m.intr_root,
            iq: m.iq,
            intr_size: m.intr_size,
            iq_head: m.iq_head,
            iq_tail: m.iq_tail,
            iq_size: m.iq_size,
            next_frcd_reg: m.next_frcd_reg,
            csr: m.csr,
            iq_last_desc_type: m.iq_last_desc_type,
            dmar_enabled: m.dmar_enabled,
            qi_enabled: m.qi_enabled,
            intr_enabled: m.intr_enabled,
            intr_eime: m.intr_eime,
        }
    }
}

impl Default for VtdMigration {
    fn default() -> Self {
        (&CVmState::default()).into()
    }
}

const VMSTATE_VTD_FIELDS: VMStateDescription<VtdMigration> =
    VMStateDescriptionBuilder::<VtdMigration>::new()
        .name(c"iommu-intel/fields")
        .version_id(1)
        .minimum_version_id(1)
        .fields(vmstate_fields! {
            vmstate_of!(VtdMigration, root),
            vmstate_of!(VtdMigration, intr_root),
            vmstate_of!(VtdMigration, iq),
            vmstate_of!(VtdMigration, intr_size),
            vmstate_of!(VtdMigration, iq_head),
            vmstate_of!(VtdMigration, iq_tail),
            vmstate_of!(VtdMigration, iq_size),
            vmstate_of!(VtdMigration, next_frcd_reg),
            vmstate_of!(VtdMigration, csr),
            vmstate_of!(VtdMigration, iq_last_desc_type),
            vmstate_unused!(1), // the C device's obsolete root_extended
            vmstate_of!(VtdMigration, dmar_enabled),
            vmstate_of!(VtdMigration, qi_enabled),
            vmstate_of!(VtdMigration, intr_enabled),
            vmstate_of!(VtdMigration, intr_eime),
        })
        .build();

// SAFETY (of the `unsafe impl VMState` this expands to): VMSTATE_VTD_FIELDS
// describes every field of the `#[repr(C)]` VtdMigration, by `vmstate_of!`
// offsets and types (the unused byte has no field behind it).
impl_vmstate_struct!(VtdMigration, VMSTATE_VTD_FIELDS);

/// The device's section: the C fields (inline on the wire: a VMS_STRUCT
/// adds no framing), saved from and loaded into the core around migration.
pub const VMSTATE_VTD: VMStateDescription<IntelIommuState> =
    VMStateDescriptionBuilder::<IntelIommuState>::new()
        .name(c"iommu-intel")
        .version_id(vtd_core::migration::C_VMSTATE_VERSION)
        .minimum_version_id(vtd_core::migration::C_VMSTATE_VERSION)
        .priority(MigrationPriority::MIG_PRI_IOMMU)
        .pre_save(&IntelIommuState::pre_save)
        .post_load(&IntelIommuState::post_load)
        .fields(vmstate_fields! {
            vmstate_of!(IntelIommuState, migration),
        })
        .build();
