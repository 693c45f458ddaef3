// SPDX-License-Identifier: GPL-2.0-or-later

//! PCI: the checks of the primary bus, `PCIIOMMUOps` (an address space per
//! function) and `pci_setup_iommu` / `pci_setup_iommu_per_bus`.

use std::ffi::{c_int, c_void};

use qom::prelude::*;

use crate::{bindings, device::SmmuV3State};

/// # Safety
/// Called by the PCI core with the opaque given to `pci_setup_iommu`: our
/// device.
unsafe extern "C" fn smmu_get_address_space(
    bus: *mut bindings::PCIBus,
    opaque: *mut c_void,
    devfn: c_int,
) -> *mut bindings::AddressSpace {
    // SAFETY: opaque is the device registered in setup_pci_iommu.
    let owner = unsafe { &*opaque.cast::<SmmuV3State>() };
    owner.address_spaces().get_or_create(owner, bus, devfn as u8)
}

struct SyncPciOps(bindings::PCIIOMMUOps);
// SAFETY: constant vtable of function pointers.
unsafe impl Sync for SyncPciOps {}

static SMMU_PCI_OPS: SyncPciOps = SyncPciOps(bindings::PCIIOMMUOps {
    get_address_space: Some(smmu_get_address_space),
    get_iotlb_info: Some(super::get_iotlb_info),
    init_iotlb_notifier: Some(super::init_iotlb_notifier),
    register_iotlb_notifier: Some(super::register_iotlb_notifier),
    unregister_iotlb_notifier: Some(super::unregister_iotlb_notifier),
    ats_request_translation: Some(super::ats_request_translation),
    // SAFETY: the other callbacks are optional (None).
    ..unsafe { std::mem::zeroed() }
});

/// Whether `obj` is an instance of QOM type `name` (or of a subtype).
fn is_a(obj: *mut bindings::Object, name: &std::ffi::CStr) -> bool {
    // SAFETY: obj is null or a live QOM object; the cast only reads it.
    !obj.is_null() && unsafe { !bindings::object_dynamic_cast(obj, name.as_ptr()).is_null() }
}

/// The C device's rule: an SMMU serves the root bus of the default PCIe
/// host bridge (`pcie.0`) or of a `pxb-pcie` (not `pxb-cxl`).
pub fn check_primary_bus(bus: *mut bindings::PCIBus) -> util::Result<()> {
    if bus.is_null() {
        return Err(util::Error::msg("SMMU is not attached to any PCI bus!"));
    }
    // SAFETY: bus came from a link property of type PCI, so it is a live
    // PCIBus (under the BQL during realize); the reads are of its fields.
    let ok = unsafe {
        let obj: *mut bindings::Object = bus.cast();
        bindings::pci_bus_is_express(bus)
            && (*bus).flags & bindings::PCI_BUS_IS_ROOT != 0
            && is_a((*obj).parent, c"pci-host-bridge")
            && ((*bus).parent_dev.is_null() || is_a(obj, c"pxb-pcie-bus"))
    };
    if ok {
        Ok(())
    } else {
        Err(util::Error::msg(
            "SMMU should be attached to a default PCIe root complex(pcie.0) or a pxb-pcie based root complex",
        ))
    }
}

/// Put the functions of `bus` (with `per_bus`, of that bus alone; else of
/// the buses below it too) behind `owner`.
pub fn setup_pci_iommu(owner: &SmmuV3State, bus: *mut bindings::PCIBus, per_bus: bool) {
    let opaque: *mut c_void = owner.as_mut_ptr::<SmmuV3State>().cast();
    // SAFETY: the ops are static; opaque is the device, which outlives the
    // bus setup (an SMMU cannot be unplugged); bus passed check_primary_bus.
    unsafe {
        if per_bus {
            bindings::pci_setup_iommu_per_bus(bus, &SMMU_PCI_OPS.0, opaque);
        } else {
            bindings::pci_setup_iommu(bus, &SMMU_PCI_OPS.0, opaque);
        }
    }
}

/// The bus number the guest gave `bus` (0 until it enumerated it).
pub fn bus_number(bus: *mut bindings::PCIBus) -> u8 {
    // SAFETY: bus is a live PCIBus (buses are not freed while the machine
    // runs); pci_bus_num only reads it.
    (unsafe { bindings::pci_bus_num(bus) } & 0xff) as u8
}
