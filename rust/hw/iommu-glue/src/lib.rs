// SPDX-License-Identifier: GPL-2.0-or-later

//! QEMU glue shared by the Rust vIOMMUs (`intel-iommu`, `arm-smmuv3`).
//!
//! The architectures live in QEMU-free crates; what both devices do the
//! same way through QEMU's C API is here, once: the IOMMU's own accesses
//! to guest memory (table walks, queue reads, record writes) and MSI
//! stores, the register window created at realize, PCIe ATS
//! (device-IOTLB notifiers and their `PCIIOMMUOps` callbacks, translation
//! requests), property help texts. Every raw call is in one module per QEMU interface.

pub mod ats;
mod bindings;
pub mod memory;
pub mod qom;

pub use memory::{store_msi, SystemMemory};
