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

// The Rust wrapper's ops are its C struct and a zero-sized marker, so
// (equal sizes) the C struct is at offset 0: a pointer to the wrapper is a
// pointer to the C ops.
const _: () = assert!(
    std::mem::size_of::<system::MemoryRegionOps<crate::device::IntelIommuState>>()
        == std::mem::size_of::<bindings::MemoryRegionOps>()
);

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
    let owner_obj: *mut bindings::Object = owner.as_mut_ptr::<crate::device::IntelIommuState>().cast();
    // SAFETY: iomem is the device's field, zeroed by QOM and initialised
    // here once (realize runs once); it lives with the device. ops is
    // static and a C MemoryRegionOps at offset 0 (asserted above) whose
    // callbacks take the owner as opaque, as the wrapper's init_io passes
    // it; the name is copied by the memory API. get_system_memory() is
    // the global root region.
    unsafe {
        bindings::memory_region_init_io(
            iomem.as_mut_ptr().cast(),
            owner_obj,
            std::ptr::from_ref(ops).cast(),
            owner_obj.cast(),
            c"intel_iommu".as_ptr(),
            size,
        );
        bindings::memory_region_add_subregion(
            bindings::get_system_memory(),
            Q35_HOST_BRIDGE_IOMMU_ADDR,
            iomem.as_mut_ptr(),
        );
    }
}
