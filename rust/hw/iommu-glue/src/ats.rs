// SPDX-License-Identifier: GPL-2.0-or-later

//! PCIe ATS through `PCIIOMMUOps`, the same for every vIOMMU: the
//! device-IOTLB (ATC) notifiers devices register, and the page-by-page
//! loop that answers `ats_request_translation`.
//!
//! The devices' own bindings declare the same C types separately; their
//! callbacks pass pointers here with `.cast()` (one C type, two Rust
//! names).

use std::{
    ffi::c_void,
    ptr::addr_of_mut,
    sync::{Mutex, PoisonError},
};

use crate::bindings;

/// PCI_NO_PASID of hw/pci/pci_bus.h.
pub const PCI_NO_PASID: u32 = u32::MAX;

/// errno values (not among the generated bindings).
const ENOMEM: isize = 12;
const EPERM: isize = 1;
const EFAULT: isize = 14;

/// A PASID argument of `PCIIOMMUOps` (`PCI_NO_PASID`: none).
pub fn pasid_of(raw: u32) -> Option<u32> {
    (raw != PCI_NO_PASID).then_some(raw)
}

/// The requester id of function `devfn` on `bus`, with the bus number the
/// guest gave the bus (0 until it enumerated it).
///
/// # Safety
/// `bus` is a live `PCIBus` (of any binding's declaration).
pub unsafe fn requester_id(bus: *mut c_void, devfn: u8) -> u16 {
    // SAFETY: per the contract; pci_bus_num only reads the bus.
    let num = unsafe { bindings::pci_bus_num(bus.cast()) };
    ((num as u16 & 0xff) << 8) | u16::from(devfn)
}

/// A registered device-IOTLB notifier: its function (bus and devfn; the
/// bus number is read when an invalidation comes) and PASID.
struct AtsNotifier {
    bus: *mut c_void,
    devfn: u8,
    pasid: Option<u32>,
    notifier: *mut bindings::IOMMUNotifier,
}

/// The device-IOTLB notifiers registered through `PCIIOMMUOps`.
#[derive(Default)]
pub struct AtsNotifiers(Mutex<Vec<AtsNotifier>>);

// SAFETY: the raw pointers are to PCI buses and notifiers that their
// owners keep alive while registered; only used under the BQL.
unsafe impl Send for AtsNotifiers {}
// SAFETY: see `Send`; the list itself is behind a mutex.
unsafe impl Sync for AtsNotifiers {}

impl AtsNotifiers {
    /// No device has a device-IOTLB notifier.
    pub fn is_empty(&self) -> bool {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }

    /// `register_iotlb_notifier`: `n` of function `devfn` on `bus`, for
    /// translations of `pasid` (`PCI_NO_PASID`: without one).
    ///
    /// # Safety
    /// `bus` is a live `PCIBus` and `n` an initialised `IOMMUNotifier`,
    /// both valid until [`unregister`](Self::unregister).
    pub unsafe fn register(&self, bus: *mut c_void, devfn: u8, pasid: u32, n: *mut c_void) {
        let mut list = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        list.push(AtsNotifier { bus, devfn, pasid: pasid_of(pasid), notifier: n.cast() });
    }

    /// `unregister_iotlb_notifier`.
    pub fn unregister(&self, n: *mut c_void) {
        let mut list = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        list.retain(|e| e.notifier != n.cast());
    }

    /// Send a device-IOTLB UNMAP to every notifier for which
    /// `range_of(requester id, PASID)` names a range (`(base, mask)`).
    /// Under the BQL (the list only changes under it).
    pub fn notify(&self, range_of: impl Fn(u16, Option<u32>) -> Option<(u64, u64)>) {
        let targets: Vec<_> = {
            let list = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            list.iter()
                .filter_map(|n| {
                    // SAFETY: a registered bus is live (see `register`).
                    let rid = unsafe { requester_id(n.bus, n.devfn) };
                    range_of(rid, n.pasid).map(|range| (n.notifier, range))
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
            // only changed under the BQL, which the caller holds).
            unsafe {
                if let Some(f) = (*n).notify {
                    f(n, &mut entry);
                }
            }
        }
    }
}

/// `init_iotlb_notifier`: a device-IOTLB UNMAP notifier for every address,
/// calling `func` (an `IOMMUNotify`, as a pointer; null: none).
///
/// # Safety
/// `n` is the caller's `IOMMUNotifier`; `func` is null or a function of
/// the C type `IOMMUNotify`.
pub unsafe fn init_notifier(n: *mut c_void, func: *const c_void, user_opaque: *mut c_void) {
    let n: *mut bindings::IOMMUNotifier = n.cast();
    // SAFETY: per the contract (iommu_notifier_init is inline C); a
    // non-null func has the field's C type.
    unsafe {
        (*n).notify = if func.is_null() {
            None
        } else {
            Some(std::mem::transmute::<*const c_void, unsafe extern "C" fn(*mut bindings::IOMMUNotifier, *mut bindings::IOMMUTLBEntry)>(func))
        };
        (*n).notifier_flags = bindings::IOMMU_NOTIFIER_DEVIOTLB_UNMAP;
        (*n).start = 0;
        (*n).end = u64::MAX;
        (*n).iommu_idx = 0;
        (*n).opaque = user_opaque;
    }
}

/// One page of a Translation Request, as the PCI core passes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AtsPageRequest {
    /// The requester id (bus number as the guest set it, devfn).
    pub rid: u16,
    /// The PASID prefix, if any.
    pub pasid: Option<u32>,
    /// Privileged Mode Requested.
    pub privileged: bool,
    /// Execute Requested.
    pub exec: bool,
    /// The address whose page is asked for.
    pub iova: u64,
    /// No Write: read permission only is asked for.
    pub no_write: bool,
    /// Bytes the whole request covers.
    pub length: usize,
}

/// What a vIOMMU gives the ATS callbacks of
/// [`ats_callbacks!`](crate::ats_callbacks).
pub trait AtsOwner {
    /// The notifiers registered with this IOMMU.
    fn ats_notifiers(&self) -> &AtsNotifiers;
    /// `get_iotlb_info`: (address width in bits, smallest page size).
    fn iotlb_info(&self) -> (u8, u32);
    /// The answer to one page of a Translation Request.
    fn ats_page(&self, req: &AtsPageRequest) -> AtsPage;
}

/// Define, in the calling crate (with its bindings' spelling of the C
/// types), the `PCIIOMMUOps` ATS callbacks `get_iotlb_info`,
/// `init_iotlb_notifier`, `register_iotlb_notifier`,
/// `unregister_iotlb_notifier` and `ats_request_translation` of the vIOMMU
/// type `$owner` (the ops' opaque), which implements [`AtsOwner`].
#[macro_export]
macro_rules! ats_callbacks {
    ($owner:ty) => {
        /// `PCIIOMMUOps::ats_request_translation`: the IOMMU's answers page
        /// by page (`iommu_glue::ats::request_translation`).
        /// # Safety
        /// Called by the PCI core with our device as opaque, a live bus,
        /// `result` valid for `result_length` entries and a valid
        /// `err_count`.
        #[allow(clippy::too_many_arguments)]
        pub(crate) unsafe extern "C" fn ats_request_translation(
            bus: *mut crate::bindings::PCIBus,
            opaque: *mut ::std::ffi::c_void,
            devfn: ::std::ffi::c_int,
            pasid: u32,
            privileged: bool,
            exec: bool,
            addr: u64,
            length: usize,
            no_write: bool,
            result: *mut crate::bindings::IOMMUTLBEntry,
            result_length: usize,
            err_count: *mut u32,
        ) -> isize {
            use $crate::ats::AtsOwner;
            // SAFETY: opaque is our device; bus is a live PCI bus.
            let (owner, rid) =
                unsafe { (&*opaque.cast::<$owner>(), $crate::ats::requester_id(bus.cast(), devfn as u8)) };
            let pasid = $crate::ats::pasid_of(pasid);
            let page = |iova| {
                owner.ats_page(&$crate::ats::AtsPageRequest { rid, pasid, privileged, exec, iova, no_write, length })
            };
            // SAFETY: result and err_count per the contract.
            unsafe { $crate::ats::request_translation(addr, length, result.cast(), result_length, err_count, page) }
        }

        /// # Safety
        /// Called by the PCI core with our device as opaque and valid out
        /// pointers.
        pub(crate) unsafe extern "C" fn get_iotlb_info(
            opaque: *mut ::std::ffi::c_void,
            addr_width: *mut u8,
            min_page_size: *mut u32,
        ) {
            use $crate::ats::AtsOwner;
            // SAFETY: see the function's contract.
            unsafe {
                let (width, page) = (&*opaque.cast::<$owner>()).iotlb_info();
                *addr_width = width;
                *min_page_size = page;
            }
        }

        /// # Safety
        /// Called by the PCI core with a notifier to initialise.
        pub(crate) unsafe extern "C" fn init_iotlb_notifier(
            _bus: *mut crate::bindings::PCIBus,
            _opaque: *mut ::std::ffi::c_void,
            _devfn: ::std::ffi::c_int,
            n: *mut crate::bindings::IOMMUNotifier,
            func: crate::bindings::IOMMUNotify,
            user_opaque: *mut ::std::ffi::c_void,
        ) {
            let func = func.map_or(::std::ptr::null(), |f| f as *const ::std::ffi::c_void);
            // SAFETY: n is the caller's notifier; func is an IOMMUNotify.
            unsafe { $crate::ats::init_notifier(n.cast(), func, user_opaque) }
        }

        /// # Safety
        /// Called by the PCI core with our device as opaque and a notifier
        /// that stays valid until unregistered.
        pub(crate) unsafe extern "C" fn register_iotlb_notifier(
            bus: *mut crate::bindings::PCIBus,
            opaque: *mut ::std::ffi::c_void,
            devfn: ::std::ffi::c_int,
            pasid: u32,
            n: *mut crate::bindings::IOMMUNotifier,
        ) {
            use $crate::ats::AtsOwner;
            // SAFETY: opaque is our device; bus and n per the PCI core's
            // contract (live until unregistered).
            unsafe {
                let owner = &*opaque.cast::<$owner>();
                owner.ats_notifiers().register(bus.cast(), devfn as u8, pasid, n.cast());
            }
        }

        /// # Safety
        /// Called by the PCI core with our device as opaque.
        pub(crate) unsafe extern "C" fn unregister_iotlb_notifier(
            _bus: *mut crate::bindings::PCIBus,
            opaque: *mut ::std::ffi::c_void,
            _devfn: ::std::ffi::c_int,
            _pasid: u32,
            n: *mut crate::bindings::IOMMUNotifier,
        ) {
            use $crate::ats::AtsOwner;
            // SAFETY: opaque is our device.
            let owner = unsafe { &*opaque.cast::<$owner>() };
            owner.ats_notifiers().unregister(n.cast());
        }
    };
}

/// An IOMMU's answer to a Translation Request for one page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtsPage {
    /// Success: the page (`iova` aligned to `mask + 1`) and what it
    /// grants (possibly nothing).
    Success {
        /// Input address of the page.
        iova: u64,
        /// Its output address.
        phys: u64,
        /// Size - 1.
        mask: u64,
        /// Read granted.
        read: bool,
        /// Write granted.
        write: bool,
    },
    /// Unsupported Request (ATS not enabled for the requester).
    UnsupportedRequest,
    /// Completer Abort (a configuration error).
    CompleterAbort,
}

/// `PCIIOMMUOps::ats_request_translation`: translate `[addr, addr +
/// length)` page by page with `page(iova)` into `result`. Pages answered
/// without permission are entries with `IOMMU_NONE`, counted in
/// `err_count`; a page the IOMMU refuses (UR, CA) ends the translation:
/// the pages before it are returned, or `-EPERM` / `-EFAULT` when it was
/// the first; `-ENOMEM` when `result` is too short.
///
/// # Safety
/// `result` is valid for `result_length` entries of `IOMMUTLBEntry` and
/// `err_count` for a write.
#[inline]
pub unsafe fn request_translation(
    addr: u64,
    length: usize,
    result: *mut c_void,
    result_length: usize,
    err_count: *mut u32,
    mut page: impl FnMut(u64) -> AtsPage,
) -> isize {
    // SAFETY: per the contract.
    let (out, errs) = unsafe {
        (
            std::slice::from_raw_parts_mut(result.cast::<bindings::IOMMUTLBEntry>(), result_length),
            &mut *err_count,
        )
    };
    *errs = 0;
    let end = addr.saturating_add(length.max(1) as u64);
    let mut iova = addr;
    let mut count = 0usize;
    while iova < end {
        let Some(slot) = out.get_mut(count) else { return -ENOMEM };
        let (iova_page, phys, mask, read, write) = match page(iova) {
            AtsPage::Success { iova, phys, mask, read, write } => (iova, phys, mask, read, write),
            AtsPage::UnsupportedRequest => return if count > 0 { count as isize } else { -EPERM },
            AtsPage::CompleterAbort => return if count > 0 { count as isize } else { -EFAULT },
        };
        let perm = (if read { bindings::IOMMU_RO } else { 0 }) | (if write { bindings::IOMMU_WO } else { 0 });
        if perm == bindings::IOMMU_NONE {
            *errs += 1;
        }
        *slot = bindings::IOMMUTLBEntry {
            // SAFETY: only the address of the global is taken.
            target_as: addr_of_mut!(bindings::address_space_memory),
            iova: iova_page,
            translated_addr: phys,
            addr_mask: mask,
            perm,
            ..Default::default()
        };
        count += 1;
        // The next page; stop at the top of the address space, or if the
        // answer did not cover `iova` (no progress).
        match (iova_page | mask).checked_add(1) {
            Some(next) if next > iova => iova = next,
            _ => break,
        }
    }
    count as isize
}
