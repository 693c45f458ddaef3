// SPDX-License-Identifier: GPL-2.0-or-later

//! PCI: `PCIIOMMUOps` (address spaces per function, the iommufd hooks' table) and `pci_setup_iommu`.

use std::{
    ffi::{c_int, c_void},
    ptr::null_mut,
};


use qom::prelude::*;

use crate::{bindings, device::IntelIommuState};
// The other interfaces' items (some modules use none).
#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------
// PCI: the host bridge's bus asks us for each function's address space.

/// # Safety
/// Called by the PCI core with the opaque given to `pci_setup_iommu`: our device.
unsafe extern "C" fn vtd_get_address_space(
    bus: *mut bindings::PCIBus,
    opaque: *mut c_void,
    devfn: c_int,
) -> *mut bindings::AddressSpace {
    // SAFETY: opaque is the device registered in pci_setup_iommu.
    let owner = unsafe { &*opaque.cast::<IntelIommuState>() };
    owner.address_spaces().get_or_create(owner, bus, devfn as u8, None)
}

struct SyncPciOps(bindings::PCIIOMMUOps);
// SAFETY: constant vtable of function pointers.
unsafe impl Sync for SyncPciOps {}

static VTD_PCI_OPS: SyncPciOps = SyncPciOps(bindings::PCIIOMMUOps {
    get_address_space: Some(vtd_get_address_space),
    get_iotlb_info: Some(get_iotlb_info),
    init_iotlb_notifier: Some(init_iotlb_notifier),
    register_iotlb_notifier: Some(register_iotlb_notifier),
    unregister_iotlb_notifier: Some(unregister_iotlb_notifier),
    ats_request_translation: Some(ats_request_translation),
    get_viommu_cap: Some(vtd_get_viommu_cap),
    set_iommu_device: Some(vtd_set_iommu_device),
    unset_iommu_device: Some(vtd_unset_iommu_device),
    // SAFETY: the other callbacks are optional (None).
    ..unsafe { std::mem::zeroed() }
});

/// Put every device of the machine's root PCI bus (and the buses below it)
/// behind this IOMMU.
pub fn setup_pci_iommu(owner: &IntelIommuState) -> util::Result<()> {
    // The root bus of the machine's main host bridge, which the PC machines
    // add as a QOM child "q35" (or "i440fx") of /machine.
    let bus = [c"/machine/q35/pcie.0", c"/machine/i440fx/pci.0"]
        .iter()
        .map(|path| {
            // SAFETY: object_resolve_path_type only reads the QOM tree (under
            // the BQL, which realize holds) and checks the type.
            unsafe {
                bindings::object_resolve_path_type(path.as_ptr(), c"PCI".as_ptr(), null_mut())
                    .cast::<bindings::PCIBus>()
            }
        })
        .find(|bus| !bus.is_null())
        .unwrap_or(null_mut());
    if bus.is_null() {
        return Err(util::Error::msg("intel-iommu: the machine has no PCI root bus"));
    }
    // SAFETY: the ops are static; opaque is the device, which outlives the bus
    // setup (the vIOMMU cannot be unplugged).
    unsafe {
        bindings::pci_setup_iommu(
            bus,
            &VTD_PCI_OPS.0,
            owner.as_mut_ptr::<IntelIommuState>().cast(),
        );
    }
    // The I/O APIC sends its interrupts through an address space of ours,
    // as the source id the DMAR table gives it (bus 0xff, devfn 0).
    let ioapic_as = owner.address_spaces().get_or_create(owner, bus, Q35_PSEUDO_DEVFN_IOAPIC, Some(IOAPIC_SID));
    // SAFETY: qdev_get_machine returns the machine object; the dynamic cast
    // checks that it is an x86 machine before its ioapic_as field is set
    // (under the BQL, during realize, as the C device does).
    unsafe {
        let machine = bindings::object_dynamic_cast(bindings::qdev_get_machine(), c"x86-machine".as_ptr());
        if !machine.is_null() {
            (*machine.cast::<bindings::X86MachineState>()).ioapic_as = ioapic_as;
        }
    }
    Ok(())
}

/// hw/pci-host/q35.h: the I/O APIC's pseudo bus and devfn.
const Q35_PSEUDO_BUS_PLATFORM: u16 = 0xff;
const Q35_PSEUDO_DEVFN_IOAPIC: u8 = 0;
const IOAPIC_SID: u16 = (Q35_PSEUDO_BUS_PLATFORM << 8) | Q35_PSEUDO_DEVFN_IOAPIC as u16;
