// SPDX-License-Identifier: GPL-2.0-or-later

//! Every raw call into QEMU's C API made by the Rust `arm-smmuv3` (guest
//! memory and MSIs are `iommu_glue`'s, shared with `intel-iommu`).
//!
//! The rest of the crate is safe code.  Conventions:
//! * pointers handed to C (`AddressSpace`, `IOMMUMemoryRegion`, the
//!   device itself) point into allocations that live as long as the
//!   device: per-function address spaces are boxed and never freed, like
//!   the C device's (an SMMU is not hot-unpluggable);
//! * C callbacks recover their Rust context from the pointer they get
//!   (`opaque`, or a `#[repr(C)]` container whose first field is the C
//!   object), never from globals.
//!
//! One module per QEMU interface: [`arm_smmu`] (the `primary-bus` link
//! property of the abstract parent), [`pci`] (`PCIIOMMUOps`, the checks of
//! the primary bus, `pci_setup_iommu`), [`address_space`] (per-function
//! address spaces and their notifiers), [`iommu_mr`] (the IOMMU memory
//! region type), [`ats`] (PCIe ATS: translation requests and ATC
//! notifiers), [`memory`] (the register window) and [`main_loop`]
//! (interrupts raised outside the BQL).

mod address_space;
mod arm_smmu;
mod ats;
mod iommu_mr;
mod main_loop;
mod memory;
mod pci;

pub(crate) use address_space::*;
pub(crate) use arm_smmu::*;
pub(crate) use ats::*;
pub(crate) use iommu_mr::*;
pub(crate) use main_loop::*;
pub(crate) use memory::*;
pub(crate) use pci::*;
