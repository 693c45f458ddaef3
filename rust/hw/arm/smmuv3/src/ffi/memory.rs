// SPDX-License-Identifier: GPL-2.0-or-later

//! The memory API: the register window, created at realize as the C device
//! creates it (before that, `-device arm-smmuv3,help` and QOM see no child
//! region). Guest memory and MSIs are `iommu_glue`'s.

use qom::prelude::*;

use crate::device::SmmuV3State;

/// Initialise `iomem` (the device's field) as the `arm-smmuv3` I/O region
/// of `size` bytes owned by `owner`, whose callbacks `ops` get the device.
pub fn init_register_window(
    owner: &SmmuV3State,
    iomem: &system::MemoryRegion,
    ops: &'static system::MemoryRegionOps<SmmuV3State>,
    size: u64,
) {
    // SAFETY: owner is the device holding iomem, which realize (once)
    // initialises here.
    unsafe {
        iommu_glue::memory::init_register_window(
            owner.as_mut_ptr::<SmmuV3State>().cast(),
            iomem,
            ops,
            c"arm-smmuv3",
            size,
        );
    }
}
