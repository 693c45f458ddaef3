// SPDX-License-Identifier: GPL-2.0-or-later

//! Per-function DMA address spaces (an IOMMU memory region each, as the C
//! device) and their notifiers.

use std::{
    collections::HashMap,
    ffi::CString,
    mem::size_of,
    ptr::{addr_of, addr_of_mut, NonNull},
    sync::atomic::{AtomicU32, AtomicUsize, Ordering},
    sync::{Mutex, PoisonError},
};

use iommu_core::nesting::notify::aligned_pieces;
use qom::prelude::*;

use crate::{bindings, device::SmmuV3State};
// The other interfaces' items (some modules use none).
#[allow(unused_imports)]
use super::*;

/// One PCI function's view of memory behind the SMMU. `repr(C)` with the
/// IOMMU memory region first, so that the region pointer QEMU hands to
/// `translate` is also a pointer to this struct.
#[repr(C)]
pub struct SmmuAddressSpace {
    pub(crate) iommu: bindings::IOMMUMemoryRegion,
    address_space: bindings::AddressSpace,
    pub(crate) bus: *mut bindings::PCIBus,
    pub(crate) devfn: u8,
    pub(crate) owner: *const SmmuV3State,
    /// Union of the flags of the region's notifiers (`IOMMUNotifierFlag`).
    notifier_flags: AtomicU32,
}

// SAFETY: the raw pointers are to QOM objects that outlive the address
// space; the C regions are only changed under the BQL.
unsafe impl Send for SmmuAddressSpace {}
// SAFETY: see `Send`; the Rust state is atomic.
unsafe impl Sync for SmmuAddressSpace {}

impl SmmuAddressSpace {
    /// The StreamID of this function: its requester ID, with the bus
    /// number the guest has assigned by now (as the C device).
    pub fn stream_id(&self) -> u32 {
        u32::from(bus_number(self.bus)) << 8 | u32::from(self.devfn)
    }

    /// Tell the UNMAP notifiers that `[first, last]` (everything: `None`)
    /// was invalidated, cut to each notifier's range in naturally aligned
    /// pieces (a notifier never sees an entry beyond its range: QEMU
    /// asserts that). Under the BQL.
    pub fn unmap(&self, range: Option<(u64, u64)>) {
        let (first, last) = range.unwrap_or((0, u64::MAX));
        let mut n = self.iommu.iommu_notify.lh_first;
        while !n.is_null() {
            // SAFETY: n is on the region's notifier list, which only changes
            // under the BQL that the caller holds; notifiers stay valid while
            // registered.
            let (flags, start, end, next) =
                unsafe { ((*n).notifier_flags, (*n).start, (*n).end, (*n).node.le_next) };
            if flags & bindings::IOMMU_NOTIFIER_UNMAP != 0 && start <= last && first <= end {
                for (iova, size) in aligned_pieces(first.max(start), last.min(end)) {
                    let event = bindings::IOMMUTLBEvent {
                        type_: bindings::IOMMU_NOTIFIER_UNMAP,
                        entry: bindings::IOMMUTLBEntry {
                            target_as: addr_of_mut!(bindings::address_space_memory),
                            iova,
                            translated_addr: 0,
                            addr_mask: size - 1,
                            perm: bindings::IOMMU_NONE,
                            ..Default::default()
                        },
                    };
                    // SAFETY: n is registered (see above); the event lies in
                    // its range.
                    unsafe { bindings::memory_region_notify_iommu_one(n, &event) };
                }
            }
            n = next;
        }
    }
}

/// Address spaces by (bus, devfn), owned by the device, and how many of
/// them have notifiers.
#[derive(Default)]
pub struct AddressSpaces(Mutex<HashMap<(usize, u8), Box<SmmuAddressSpace>>>, AtomicUsize);

impl AddressSpaces {
    /// Whether some address space has notifiers.
    pub fn any_notified(&self) -> bool {
        self.1.load(Ordering::Acquire) != 0
    }

    /// Record the new notifier flags of `space`.
    pub(crate) fn set_notifier_flags(&self, space: &SmmuAddressSpace, new: bindings::IOMMUNotifierFlag) {
        let old = space.notifier_flags.swap(new, Ordering::AcqRel);
        match (old != 0, new != 0) {
            (false, true) => {
                self.1.fetch_add(1, Ordering::AcqRel);
            }
            (true, false) => {
                self.1.fetch_sub(1, Ordering::AcqRel);
            }
            _ => {}
        }
    }

    /// The address spaces that have notifiers.
    pub fn notified(&self) -> Vec<NonNull<SmmuAddressSpace>> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.values()
            .filter(|s| s.notifier_flags.load(Ordering::Acquire) != 0)
            .map(|s| NonNull::from(&**s))
            .collect()
    }

    /// The address space of (`bus`, `devfn`), created on first use.
    pub(crate) fn get_or_create(
        &self,
        owner: &SmmuV3State,
        bus: *mut bindings::PCIBus,
        devfn: u8,
    ) -> *mut bindings::AddressSpace {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let space = map.entry((bus as usize, devfn)).or_insert_with(|| {
            // SAFETY: every field is a C struct or raw pointer for which all
            // zeroes is the state before its C initialiser runs.
            let mut space: Box<SmmuAddressSpace> = unsafe { Box::new_zeroed().assume_init() };
            space.bus = bus;
            space.devfn = devfn;
            space.owner = owner;
            // SAFETY: the Rust field is zeroed memory, written without
            // dropping the old bytes.
            unsafe { addr_of_mut!(space.notifier_flags).write(AtomicU32::new(0)) };
            init_address_space(&mut space, owner);
            space
        });
        addr_of!(space.address_space).cast_mut()
    }
}

/// Region and address space names as the C device gives them:
/// `smmuv3-iommu-memory-region-<devfn>-<n>`, n counting every function
/// of every SMMU.
fn init_address_space(space: &mut SmmuAddressSpace, owner: &SmmuV3State) {
    static INDEX: AtomicUsize = AtomicUsize::new(0);
    let index = INDEX.fetch_add(1, Ordering::Relaxed);
    let name = CString::new(format!("{}-{}-{}", TYPE_SMMUV3_IOMMU_MR.to_str().unwrap(), space.devfn, index))
        .unwrap();
    let obj: *mut bindings::Object = owner.as_mut_ptr::<SmmuV3State>().cast();
    // SAFETY: the region and address space are zeroed fields of a boxed
    // struct that is never moved or freed; the C functions copy the name.
    unsafe {
        bindings::memory_region_init_iommu(
            addr_of_mut!(space.iommu).cast(),
            size_of::<bindings::IOMMUMemoryRegion>(),
            TYPE_SMMUV3_IOMMU_MR.as_ptr(),
            obj,
            name.as_ptr(),
            u64::MAX,
        );
        bindings::address_space_init(
            addr_of_mut!(space.address_space),
            addr_of_mut!(space.iommu.parent_obj),
            name.as_ptr(),
        );
    }
}
