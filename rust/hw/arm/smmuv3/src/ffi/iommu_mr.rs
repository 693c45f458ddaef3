// SPDX-License-Identifier: GPL-2.0-or-later

//! The IOMMU memory region type `smmuv3-iommu-memory-region`: translate
//! and notifier flag changes.

use std::{
    ffi::{c_int, c_void, CStr},
    mem::offset_of,
    ptr::addr_of_mut,
};

use crate::bindings;
// The other interfaces' items (some modules use none).
#[allow(unused_imports)]
use super::*;

pub(crate) const TYPE_SMMUV3_IOMMU_MR: &CStr = c"smmuv3-iommu-memory-region";

/// `IOMMUMemoryRegionClass::translate`: may run without the BQL.
/// # Safety
/// Called by the memory core with a region of our IOMMU type, which is the
/// first field of a live `SmmuAddressSpace`.
unsafe extern "C" fn smmu_translate(
    iommu: *mut bindings::IOMMUMemoryRegion,
    addr: bindings::hwaddr,
    flag: bindings::IOMMUAccessFlags,
    _iommu_idx: c_int,
) -> bindings::IOMMUTLBEntry {
    const _: () = assert!(offset_of!(SmmuAddressSpace, iommu) == 0);
    // SAFETY: every region of our IOMMU type is the first field of a live
    // SmmuAddressSpace; its owner outlives it.
    let space = unsafe { &*iommu.cast::<SmmuAddressSpace>() };
    // SAFETY: the owner device outlives its address spaces.
    let owner = unsafe { &*space.owner };
    let write = flag & bindings::IOMMU_WO != 0;
    let mut entry = bindings::IOMMUTLBEntry {
        target_as: addr_of_mut!(bindings::address_space_memory),
        iova: addr,
        translated_addr: addr,
        addr_mask: u64::MAX,
        perm: bindings::IOMMU_NONE,
        ..Default::default()
    };
    if let Some(t) = owner.translate(space.stream_id(), addr, write) {
        entry.iova = t.input;
        entry.translated_addr = t.output;
        entry.addr_mask = (1u64 << t.size_shift.min(63)) - 1;
        entry.perm = (if t.perm.read { bindings::IOMMU_RO } else { 0 })
            | (if t.perm.write { bindings::IOMMU_WO } else { 0 });
    }
    entry
}

/// A notifier was added or removed. As the C device: UNMAP notifiers
/// (vhost) are served; MAP notifiers (vfio's shadowing) and device-IOTLB
/// ones are refused.
/// # Safety
/// Called by the memory core (under the BQL) with a region of our IOMMU
/// type and a valid `errp`.
unsafe extern "C" fn smmu_notify_flag_changed(
    iommu: *mut bindings::IOMMUMemoryRegion,
    _old: bindings::IOMMUNotifierFlag,
    new: bindings::IOMMUNotifierFlag,
    errp: *mut *mut bindings::Error,
) -> c_int {
    // SAFETY: as in smmu_translate.
    let space = unsafe { &*iommu.cast::<SmmuAddressSpace>() };
    // SAFETY: the owner device outlives its address spaces.
    let owner = unsafe { &*space.owner };
    let why = if new & bindings::IOMMU_NOTIFIER_DEVIOTLB_UNMAP != 0 {
        Some("SMMUv3 does not support dev-iotlb yet".to_owned())
    } else if new & bindings::IOMMU_NOTIFIER_MAP != 0 {
        let bus = bus_number(space.bus);
        Some(format!(
            "device {:02x}.{:02x}.{:x} requires iommu MAP notifier which is not currently supported",
            bus,
            space.devfn >> 3,
            space.devfn & 7
        ))
    } else {
        None
    };
    if let Some(why) = why {
        // SAFETY: errp comes from memory_region_register_iommu_notifier.
        unsafe { util::Error::msg(why).propagate(errp.cast()) };
        return -EINVAL;
    }
    owner.address_spaces().set_notifier_flags(space, new);
    0
}

/// errno's EINVAL (not among the generated bindings).
const EINVAL: c_int = 22;

/// # Safety
/// Called by QOM with the class of `smmuv3-iommu-memory-region`.
unsafe extern "C" fn smmu_iommu_mr_class_init(klass: *mut bindings::ObjectClass, _data: *const c_void) {
    // SAFETY: QOM calls this with the class of our IOMMU region type, whose
    // class struct is IOMMUMemoryRegionClass.
    let imrc = unsafe { &mut *klass.cast::<bindings::IOMMUMemoryRegionClass>() };
    imrc.translate = Some(smmu_translate);
    imrc.notify_flag_changed = Some(smmu_notify_flag_changed);
}

struct SyncTypeInfo(qom::bindings::TypeInfo);
// SAFETY: constant type description (static strings and function pointers).
unsafe impl Sync for SyncTypeInfo {}

static SMMU_IOMMU_MR_INFO: SyncTypeInfo = SyncTypeInfo(qom::bindings::TypeInfo {
    name: TYPE_SMMUV3_IOMMU_MR.as_ptr(),
    parent: c"iommu-memory-region".as_ptr(),
    class_init: Some(smmu_iommu_mr_class_init),
    // SAFETY: the other TypeInfo fields are optional (zero/None).
    ..unsafe { std::mem::zeroed() }
});

// SAFETY (inside the macro's unsafe block): the TypeInfo is a static with
// static strings and a valid class_init; registered once, at QOM init.
util::module_init! {
    MODULE_INIT_QOM => unsafe {
        qom::type_register_static(&SMMU_IOMMU_MR_INFO.0);
    }
}
