// SPDX-License-Identifier: GPL-2.0-or-later

//! PCIe ATS through `PCIIOMMUOps`: Translation Requests from devices
//! (with a PASID: a SubstreamID) and their ATC (device-IOTLB) notifiers,
//! which CMD_ATC_INV reaches. The notifier list and the page loop are
//! `iommu_glue::ats`'s, shared with `intel-iommu`.

use std::ffi::{c_int, c_void};

use iommu_glue::ats::{pasid_of, AtsPage};
use smmu_core::ats::{AtsRequest, AtsResponse, STU_SHIFT};

use crate::{bindings, device::SmmuV3State};

/// # Safety
/// Called by the PCI core with our device as opaque and valid out pointers.
pub(crate) unsafe extern "C" fn smmu_get_iotlb_info(opaque: *mut c_void, addr_width: *mut u8, min_page_size: *mut u32) {
    // SAFETY: see the function's contract.
    unsafe {
        let owner = &*opaque.cast::<SmmuV3State>();
        *addr_width = owner.input_bits();
        *min_page_size = 1 << STU_SHIFT;
    }
}

/// # Safety
/// Called by the PCI core with a notifier to initialise.
pub(crate) unsafe extern "C" fn smmu_init_iotlb_notifier(
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
pub(crate) unsafe extern "C" fn smmu_register_iotlb_notifier(
    bus: *mut bindings::PCIBus,
    opaque: *mut c_void,
    devfn: c_int,
    pasid: u32,
    n: *mut bindings::IOMMUNotifier,
) {
    // SAFETY: opaque is our device; bus and n per the PCI core's contract
    // (live until unregistered).
    unsafe {
        let owner = &*opaque.cast::<SmmuV3State>();
        owner.ats_notifiers().register(bus.cast(), devfn as u8, pasid, n.cast());
    }
}

/// # Safety
/// Called by the PCI core with our device as opaque.
pub(crate) unsafe extern "C" fn smmu_unregister_iotlb_notifier(
    _bus: *mut bindings::PCIBus,
    opaque: *mut c_void,
    _devfn: c_int,
    _pasid: u32,
    n: *mut bindings::IOMMUNotifier,
) {
    // SAFETY: opaque is our device.
    let owner = unsafe { &*opaque.cast::<SmmuV3State>() };
    owner.ats_notifiers().unregister(n.cast());
}

/// `PCIIOMMUOps::ats_request_translation`: the core's answer page by page
/// (StreamID = requester id, SubstreamID = PASID).
/// # Safety
/// Called by the PCI core with our device as opaque, `result` valid for
/// `result_length` entries and a valid `err_count`.
pub(crate) unsafe extern "C" fn smmu_ats_request_translation(
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
    // SAFETY: opaque is our device; bus is a live PCI bus.
    let (owner, sid) = unsafe { (&*opaque.cast::<SmmuV3State>(), iommu_glue::ats::requester_id(bus.cast(), devfn as u8)) };
    let stus = (length as u64).div_ceil(1 << STU_SHIFT).clamp(1, u64::from(u16::MAX));
    let page = |iova: u64| {
        let req = AtsRequest {
            sid: u32::from(sid),
            ssid: pasid_of(pasid),
            addr: iova,
            privileged: priv_req,
            exec: exec_req,
            no_write,
            span: stus as u16,
        };
        match owner.translate_ats(&req) {
            AtsResponse::Success(t) => AtsPage::Success {
                iova: t.input,
                phys: t.output,
                mask: (1u64 << t.size_shift.min(63)) - 1,
                read: t.perm.read,
                write: t.perm.write,
            },
            AtsResponse::UnsupportedRequest => AtsPage::UnsupportedRequest,
            AtsResponse::CompleterAbort => AtsPage::CompleterAbort,
        }
    };
    // SAFETY: result and err_count per the contract.
    unsafe { iommu_glue::ats::request_translation(addr, length, result.cast(), result_length, err_count, page) }
}
