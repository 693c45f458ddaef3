// SPDX-License-Identifier: GPL-2.0-or-later

//! QEMU glue for the Rust `intel-iommu` (Intel VT-d) device.
//!
//! The architecture lives in the QEMU-free `vtd_core` crate; this crate
//! only connects it to QEMU: the QOM type (a subclass of `x86-iommu`), its
//! qdev properties, the register MMIO window, per-PCI-device DMA address
//! spaces behind an IOMMU memory region, and interrupt delivery.
//! Every raw FFI call is in [`ffi`].

mod bindings;
pub mod device;
mod ffi;
mod vmstate;

::trace::include_trace!("hw_i386");

pub const TYPE_INTEL_IOMMU: &::std::ffi::CStr = c"intel-iommu";
