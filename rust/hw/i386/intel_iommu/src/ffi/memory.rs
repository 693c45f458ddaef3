// SPDX-License-Identifier: GPL-2.0-or-later

//! The memory API: guest memory for the IOMMU's own DMA and MSIs (both `iommu_glue`'s, shared with the SMMU), and creating and mapping the register window.

pub use iommu_glue::SystemMemory;

use qom::prelude::*;

use crate::bindings;
// The other interfaces' items (some modules use none).
#[allow(unused_imports)]
use super::*;

/// Deliver an MSI (fault event, invalidation event) as the C device does:
/// on the APIC bus (the whole FEUADDR:FEADDR address), under the BQL.
/// Without the BQL (a fault recorded by a translation off the main loop)
/// it is a 32-bit write to the MSI address in system memory, which takes
/// the BQL to reach the APIC's window.
pub fn send_event_msi(address: u64, data: u32) {
    if bql::is_locked() && send_msi(address, data) {
        return;
    }
    if iommu_glue::store_msi(address, data).is_err() {
        util::log_mask_ln!(
            util::log::Log::GuestError,
            "intel-iommu: interrupt write to {address:#x} (data {data:#x}) failed"
        );
    }
}

// ---------------------------------------------------------------------------
// Register window.

/// hw/pci-host/q35.h's Q35_HOST_BRIDGE_IOMMU_ADDR (a macro bindgen skips).
const Q35_HOST_BRIDGE_IOMMU_ADDR: u64 = 0xfed9_0000;

/// Create the register window (`intel_iommu`, owned by the device, as the
/// C device does at realize: before that `-device intel-iommu,help` and
/// QOM see no child region) and map it at the address the q35 machine
/// reserves for the DMA remapping unit (also what the DMAR table tells the
/// guest).
pub fn init_and_map_registers(
    owner: &crate::device::IntelIommuState,
    iomem: &system::MemoryRegion,
    ops: &'static system::MemoryRegionOps<crate::device::IntelIommuState>,
    size: u64,
) {
    // SAFETY: owner is the device holding iomem, which realize (once)
    // initialises here and which lives with the device;
    // get_system_memory() is the global root region.
    unsafe {
        iommu_glue::memory::init_register_window(
            owner.as_mut_ptr::<crate::device::IntelIommuState>().cast(),
            iomem,
            ops,
            c"intel_iommu",
            size,
        );
        bindings::memory_region_add_subregion(
            bindings::get_system_memory(),
            Q35_HOST_BRIDGE_IOMMU_ADDR,
            iomem.as_mut_ptr(),
        );
    }
}
