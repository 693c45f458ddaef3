// SPDX-License-Identifier: GPL-2.0-or-later

//! PCI ATS: translation requests from devices and device-TLB invalidation notifiers.

use std::{
    ffi::{c_int, c_void},
    ptr::addr_of_mut,
    sync::{Mutex, PoisonError},
};


use crate::{bindings, device::IntelIommuState};
// The other interfaces' items (some modules use none).
#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------
// ATS: translation requests and device-TLB invalidation notifiers.

/// PCI_NO_PASID of hw/pci/pci_bus.h.
const PCI_NO_PASID: u32 = u32::MAX;

/// A registered device-TLB notifier: the function it belongs to (bus and
/// devfn, the bus number is read when an invalidation comes), its PASID.
struct AtsNotifier {
    bus: *mut bindings::PCIBus,
    devfn: u8,
    pasid: Option<u32>,
    notifier: *mut bindings::IOMMUNotifier,
}

/// The device-TLB notifiers registered through `PCIIOMMUOps`.
#[derive(Default)]
pub struct AtsNotifiers(Mutex<Vec<AtsNotifier>>);

// SAFETY: the raw pointers are to PCI buses and notifiers that their
// owners keep alive while registered; only used under the BQL.
unsafe impl Send for AtsNotifiers {}
// SAFETY: see `Send`; the list itself is behind a mutex.
unsafe impl Sync for AtsNotifiers {}

fn pasid_of(pasid: u32) -> Option<u32> {
    (pasid != PCI_NO_PASID).then_some(pasid)
}

pub(crate) fn sid_of(bus: *mut bindings::PCIBus, devfn: u8) -> u16 {
    // SAFETY: bus is a live PCI bus.
    let num = unsafe { bindings::pci_bus_num(bus) };
    ((num as u16 & 0xff) << 8) | u16::from(devfn)
}

impl AtsNotifiers {
    /// No device has a device-TLB notifier.
    pub fn is_empty(&self) -> bool {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }

    /// Fire the device-TLB notifiers a device-TLB invalidation targets.
    pub fn notify_device_tlb(&self, event: &vtd_core::InvalidationEvent) {
        if !matches!(event, vtd_core::InvalidationEvent::DeviceTlb(_)) {
            return;
        }
        let targets: Vec<_> = {
            let list = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            list.iter()
                .filter_map(|n| {
                    event
                        .device_tlb_range(sid_of(n.bus, n.devfn), n.pasid)
                        .map(|range| (n.notifier, range))
                })
                .collect()
        };
        for (n, (base, mask)) in targets {
            let mut entry = bindings::IOMMUTLBEntry {
                // SAFETY: only the address of the global is taken.
                target_as: addr_of_mut!(bindings::address_space_memory),
                iova: base,
                translated_addr: 0,
                addr_mask: mask,
                perm: bindings::IOMMU_NONE,
                ..Default::default()
            };
            // SAFETY: n was registered and not yet unregistered (the list is
            // only changed under the BQL, which the invalidation holds).
            unsafe {
                if let Some(f) = (*n).notify {
                    f(n, &mut entry);
                }
            }
        }
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
    // SAFETY: n is the caller's notifier (iommu_notifier_init is inline C).
    unsafe {
        (*n).notify = func;
        (*n).notifier_flags = bindings::IOMMU_NOTIFIER_DEVIOTLB_UNMAP;
        (*n).start = 0;
        (*n).end = u64::MAX;
        (*n).iommu_idx = 0;
        (*n).opaque = user_opaque;
    }
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
    // SAFETY: opaque is our device.
    let owner = unsafe { &*opaque.cast::<IntelIommuState>() };
    let mut list = owner.ats_notifiers().0.lock().unwrap_or_else(PoisonError::into_inner);
    list.push(AtsNotifier { bus, devfn: devfn as u8, pasid: pasid_of(pasid), notifier: n });
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
    let mut list = owner.ats_notifiers().0.lock().unwrap_or_else(PoisonError::into_inner);
    list.retain(|e| e.notifier != n);
}

/// errno values (not among the generated bindings).
const ENOMEM: isize = 12;
const EPERM: isize = 1;
const EFAULT: isize = 14;

/// `PCIIOMMUOps::ats_request_translation`: translate `[addr, addr + length)`
/// page by page into `result`. Pages the IOMMU answers without permission
/// (not present, not permitted) are entries with `IOMMU_NONE` counted in
/// `err_count`; a request the IOMMU refuses (Unsupported Request, e.g. no
/// device-TLB support, or Completer Abort) ends the translation: the pages
/// before it are returned, or `-EPERM` / `-EFAULT` when it was the first.
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
    // SAFETY: opaque is our device; result/err_count per the contract.
    let (owner, out, errs) = unsafe {
        (
            &*opaque.cast::<IntelIommuState>(),
            std::slice::from_raw_parts_mut(result, result_length),
            &mut *err_count,
        )
    };
    *errs = 0;
    let sid = sid_of(bus, devfn as u8);
    let end = addr.saturating_add(length.max(1) as u64);
    let mut iova = addr;
    let mut count = 0usize;
    while iova < end {
        let Some(slot) = out.get_mut(count) else { return -ENOMEM };
        let req = vtd_core::AtsRequest {
            sid,
            pasid: pasid_of(pasid),
            privileged: priv_req,
            exec: exec_req,
            iova,
            no_write,
        };
        let mut entry = bindings::IOMMUTLBEntry {
            // SAFETY: only the address of the global is taken.
            target_as: addr_of_mut!(bindings::address_space_memory),
            iova: iova & !0xfff,
            translated_addr: 0,
            addr_mask: 0xfff,
            perm: bindings::IOMMU_NONE,
            ..Default::default()
        };
        match owner.translate_ats(&req) {
            Some(vtd_core::AtsResult::Success(t)) => {
                entry.iova = t.iova;
                entry.translated_addr = t.phys;
                entry.addr_mask = t.page_mask;
                entry.perm = (if t.perm.read { bindings::IOMMU_RO } else { 0 })
                    | (if t.perm.write { bindings::IOMMU_WO } else { 0 });
                if entry.perm == bindings::IOMMU_NONE {
                    *errs += 1;
                }
            }
            // Unsupported Request / Completer Abort: the request as a whole
            // failed; report the pages translated so far, or the failure.
            Some(vtd_core::AtsResult::UnsupportedRequest { .. }) | None => {
                return if count > 0 { count as isize } else { -EPERM };
            }
            Some(vtd_core::AtsResult::CompleterAbort { .. }) => {
                return if count > 0 { count as isize } else { -EFAULT };
            }
        }
        *slot = entry;
        count += 1;
        iova = (entry.iova | entry.addr_mask).saturating_add(1);
        if iova == 0 {
            break;
        }
    }
    count as isize
}
