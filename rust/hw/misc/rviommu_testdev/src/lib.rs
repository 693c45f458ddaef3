// SPDX-License-Identifier: GPL-2.0-or-later

//! QEMU glue for `rviommu-testdev`, a PCIe DMA test device with PASID and
//! ATS capabilities (register map: docs/rviommu/testdev.rst). The device
//! logic is the QEMU-free `testdev_core` crate; every raw FFI call is in
//! [`ffi`].

mod bindings;
mod ffi;

pub const TYPE_RVIOMMU_TESTDEV: &::std::ffi::CStr = c"rviommu-testdev";
