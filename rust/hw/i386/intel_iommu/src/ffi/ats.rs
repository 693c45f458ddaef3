// SPDX-License-Identifier: GPL-2.0-or-later

//! PCI ATS: translation requests from devices and device-TLB invalidation notifiers.

use std::ffi::{c_int, c_void};

use iommu_glue::ats::{pasid_of, AtsPage};

use crate::{bindings, device::IntelIommuState};
// The other interfaces' items (some modules use none).
#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------
// ATS: translation requests and device-TLB invalidation notifiers (the
// notifier list and the request loop are iommu-glue's).

pub use iommu_glue::ats::AtsNotifiers;

pub(crate) fn sid_of(bus: *mut bindings::PCIBus, devfn: u8) -> u16 {
    // SAFETY: bus is a live PCI bus.
    unsafe { iommu_glue::ats::requester_id(bus.cast(), devfn) }
}

/// Fire the device-TLB notifiers a device-TLB invalidation targets.
pub(crate) fn notify_device_tlb(list: &AtsNotifiers, event: &vtd_core::InvalidationEvent) {
    if matches!(event, vtd_core::InvalidationEvent::DeviceTlb(_)) {
        list.notify(|sid, pasid| event.device_tlb_range(sid, pasid));
    }
}

/// # Safety
/// Called by the PCI core with our device as opaque and valid out pointers.
pub(crate) unsafe extern "C" fn vtd_get_iotlb_info(opaque: *mut c_void, addr_width: *mut u8, min_page_size: *mut u32) {
    // SAFETY: see the function's contract.
    unsafe {
        let owner = &*opaque.cast::<IntelIommuState>();
        *addr_width = owner.aw_bits();
        *min_page_size = 4096;
    }
}

/// # Safety
/// Called by the PCI core with a notifier to initialise.
pub(crate) unsafe extern "C" fn vtd_init_iotlb_notifier(
    _bus: *mut bindings::PCIBus,
    _opaque: *mut c_void,
    _devfn: c_int,
    n: *mut bindings::IOMMUNotifier,
    func: bindings::IOMMUNotify,
    user_opaque: *mut c_void,
) {
    let func = func.map_or(std::ptr::null(), |f| f as *const c_void);
    // SAFETY: n is the caller's notifier; func is an IOMMUNotify.
    unsafe { iommu_glue::ats::init_notifier(n.cast(), func, user_opaque) }
}

/// # Safety
/// Called by the PCI core with our device as opaque and a notifier that
/// stays valid until unregistered.
pub(crate) unsafe extern "C" fn vtd_register_iotlb_notifier(
    bus: *mut bindings::PCIBus,
    opaque: *mut c_void,
    devfn: c_int,
    pasid: u32,
    n: *mut bindings::IOMMUNotifier,
) {
    // SAFETY: opaque is our device; bus and n per the PCI core's contract
    // (live until unregistered).
    unsafe {
        let owner = &*opaque.cast::<IntelIommuState>();
        owner.ats_notifiers().register(bus.cast(), devfn as u8, pasid, n.cast());
    }
}

/// # Safety
/// Called by the PCI core with our device as opaque.
pub(crate) unsafe extern "C" fn vtd_unregister_iotlb_notifier(
    _bus: *mut bindings::PCIBus,
    opaque: *mut c_void,
    _devfn: c_int,
    _pasid: u32,
    n: *mut bindings::IOMMUNotifier,
) {
    // SAFETY: opaque is our device.
    let owner = unsafe { &*opaque.cast::<IntelIommuState>() };
    owner.ats_notifiers().unregister(n.cast());
}

/// `PCIIOMMUOps::ats_request_translation`: iommu-glue's page loop over
/// the core's answers (Unsupported Request also when the IOMMU has no
/// device-TLB support).
/// # Safety
/// Called by the PCI core with our device as opaque, `result` valid for
/// `result_length` entries and a valid `err_count`.
pub(crate) unsafe extern "C" fn vtd_ats_request_translation(
    bus: *mut bindings::PCIBus,
    opaque: *mut c_void,
    devfn: c_int,
    pasid: u32,
    priv_req: bool,
    exec_req: bool,
    addr: bindings::hwaddr,
    length: usize,
    no_write: bool,
    result: *mut bindings::IOMMUTLBEntry,
    result_length: usize,
    err_count: *mut u32,
) -> isize {
    // SAFETY: opaque is our device.
    let owner = unsafe { &*opaque.cast::<IntelIommuState>() };
    let sid = sid_of(bus, devfn as u8);
    let page = |iova: u64| {
        let req = vtd_core::AtsRequest { sid, pasid: pasid_of(pasid), privileged: priv_req, exec: exec_req, iova, no_write };
        match owner.translate_ats(&req) {
            Some(vtd_core::AtsResult::Success(t)) => AtsPage::Success {
                iova: t.iova,
                phys: t.phys,
                mask: t.page_mask,
                read: t.perm.read,
                write: t.perm.write,
            },
            Some(vtd_core::AtsResult::UnsupportedRequest { .. }) | None => AtsPage::UnsupportedRequest,
            Some(vtd_core::AtsResult::CompleterAbort { .. }) => AtsPage::CompleterAbort,
        }
    };
    // SAFETY: result and err_count per the contract.
    unsafe { iommu_glue::ats::request_translation(addr, length, result.cast(), result_length, err_count, page) }
}
