// SPDX-License-Identifier: GPL-2.0-or-later

//! Every raw call into QEMU's C API made by the Rust `intel-iommu`.
//!
//! The rest of the crate is safe code.  Conventions:
//! * pointers handed to C (`AddressSpace`, `IOMMUMemoryRegion`, the
//!   device itself) point into allocations that live as long as the
//!   device: per-device address spaces are boxed and never freed, exactly
//!   like the C device's (a vIOMMU is not hot-unpluggable);
//! * C callbacks recover their Rust context from the pointer they get
//!   (`opaque`, or a `#[repr(C)]` container whose first field is the C
//!   object), never from globals.
//!
//! One module per QEMU interface: [`x86_iommu`] (the parent type, realize,
//! interrupt-remapping hooks), [`properties`] (the string scalable-mode
//! property), [`memory`] (guest memory, MSIs, the register window),
//! [`address_space`] (per-device address spaces, notifiers, the interrupt
//! window), [`apic`] (delivery of remapped interrupts), [`iommu_mr`] (the IOMMU memory region type), [`pci`]
//! (`PCIIOMMUOps`), [`ats`] (ATS requests, device-TLB notifiers) and
//! [`iommufd`] (hardware nesting).

mod address_space;
mod apic;
mod ats;
mod iommu_mr;
mod iommufd;
mod memory;
mod pci;
mod properties;
mod x86_iommu;

pub(crate) use address_space::*;
pub(crate) use apic::*;
pub(crate) use ats::*;
pub(crate) use iommu_mr::*;
pub(crate) use iommufd::*;
pub(crate) use memory::*;
pub(crate) use pci::*;
pub(crate) use properties::*;
pub(crate) use x86_iommu::*;
