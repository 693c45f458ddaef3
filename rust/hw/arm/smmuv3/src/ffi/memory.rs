// SPDX-License-Identifier: GPL-2.0-or-later

//! The memory API: the register window, created at realize as the C device
//! creates it (before that, `-device arm-smmuv3,help` and QOM see no child
//! region). Guest memory and MSIs are `iommu_glue`'s.

use qom::prelude::*;

use crate::{bindings, device::SmmuV3State};

// The Rust wrapper's ops are its C struct and a zero-sized marker, so
// (equal sizes) the C struct is at offset 0: a pointer to the wrapper is a
// pointer to the C ops.
const _: () = assert!(
    std::mem::size_of::<system::MemoryRegionOps<SmmuV3State>>() == std::mem::size_of::<bindings::MemoryRegionOps>()
);

/// Initialise `iomem` (the device's field) as the `arm-smmuv3` I/O region
/// of `size` bytes owned by `owner`, whose callbacks `ops` get the device.
pub fn init_register_window(
    owner: &SmmuV3State,
    iomem: &system::MemoryRegion,
    ops: &'static system::MemoryRegionOps<SmmuV3State>,
    size: u64,
) {
    let owner_obj: *mut bindings::Object = owner.as_mut_ptr::<SmmuV3State>().cast();
    // SAFETY: iomem is the device's field, zeroed by QOM and initialised
    // here once (realize runs once); it lives with the device. ops is
    // static and a C MemoryRegionOps at offset 0 (asserted above) whose
    // callbacks take the owner as opaque, as the wrapper's init_io passes
    // it; the name is copied by the memory API.
    unsafe {
        bindings::memory_region_init_io(
            iomem.as_mut_ptr().cast(),
            owner_obj,
            std::ptr::from_ref(ops).cast(),
            owner_obj.cast(),
            c"arm-smmuv3".as_ptr(),
            size,
        );
    }
}
