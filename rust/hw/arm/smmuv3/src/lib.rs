// SPDX-License-Identifier: GPL-2.0-or-later

//! QEMU glue for the Rust `arm-smmuv3` (Arm SMMUv3) device.
//!
//! The architecture lives in the QEMU-free `smmu_core` crate; this crate
//! only connects it to QEMU: the QOM types (`arm-smmuv3` under the abstract
//! `arm-smmu`, as the C device), their qdev properties, the register MMIO
//! window and wired interrupts, per-PCI-function DMA address spaces behind
//! an IOMMU memory region, and migration in the C device's format.
//! Every raw FFI call is in [`ffi`].

mod bindings;
pub mod device;
mod ffi;
mod vmstate;

pub const TYPE_ARM_SMMU: &::std::ffi::CStr = c"arm-smmu";
pub const TYPE_ARM_SMMUV3: &::std::ffi::CStr = c"arm-smmuv3";
