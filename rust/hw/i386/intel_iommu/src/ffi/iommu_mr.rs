// SPDX-License-Identifier: GPL-2.0-or-later

//! The IOMMU memory region type `intel-iommu-iommu-memory-region`: translate, notifier flag changes, replay.

use std::{
    ffi::{c_int, c_void, CStr},
    mem::offset_of,
    ptr::{addr_of_mut, null_mut},
    sync::atomic::Ordering,
};

use vtd_core::Shadow;

use crate::bindings;
// The other interfaces' items (some modules use none).
#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------
// The IOMMU memory region type and its translate callback.

pub(crate) const TYPE_VTD_IOMMU_MR: &CStr = c"intel-iommu-iommu-memory-region";

/// `IOMMUMemoryRegionClass::translate`: may run without the BQL.
/// # Safety
/// Called by the memory core with a region of our IOMMU type, which is the
/// first field of a live `VtdAddressSpace`.
unsafe extern "C" fn vtd_translate(
    iommu: *mut bindings::IOMMUMemoryRegion,
    addr: bindings::hwaddr,
    flag: bindings::IOMMUAccessFlags,
    _iommu_idx: c_int,
) -> bindings::IOMMUTLBEntry {
    const _: () = assert!(offset_of!(VtdAddressSpace, iommu) == 0);
    // SAFETY: every region of our IOMMU type is the first field of a live
    // VtdAddressSpace; its owner outlives it.
    let vas = unsafe { &*iommu.cast::<VtdAddressSpace>() };
    // SAFETY: the owner device outlives its address spaces.
    let owner = unsafe { &*vas.owner };
    let write = flag & bindings::IOMMU_WO != 0;
    let mut entry = bindings::IOMMUTLBEntry {
        // SAFETY: only the address of the global is taken.
        target_as: addr_of_mut!(bindings::address_space_memory),
        iova: addr & !0xfff,
        translated_addr: 0,
        addr_mask: 0xfff,
        perm: bindings::IOMMU_NONE,
        ..Default::default()
    };
    if let Some(t) = owner.translate(vas.source_id(), addr, write) {
        entry.iova = t.iova;
        entry.translated_addr = t.phys;
        entry.addr_mask = t.page_mask;
        entry.perm = (if t.perm.read { bindings::IOMMU_RO } else { 0 })
            | (if t.perm.write { bindings::IOMMU_WO } else { 0 });
    }
    entry
}

/// Whether function (bus, devfn) is a vfio-pci device on the iommufd
/// backend (its `iommufd` link is set): during its realize the device sits
/// in the bus's slot before vfio registers its notifiers.
fn is_iommufd_vfio(bus: *mut bindings::PCIBus, devfn: u8) -> bool {
    // SAFETY: the bus is a live PCIBus (under the BQL); a non-NULL slot is
    // a PCI device being realized or realized.
    let dev = unsafe { (*bus).devices[usize::from(devfn)] };
    if dev.is_null() {
        return false;
    }
    // SAFETY: dev is a live QOM object; the cast and the property lookup
    // only read it.
    unsafe {
        let obj: *mut bindings::Object = dev.cast();
        !bindings::object_dynamic_cast(obj, c"vfio-pci".as_ptr()).is_null()
            && !bindings::object_property_get_link(obj, c"iommufd".as_ptr(), null_mut()).is_null()
    }
}

/// A notifier was added or removed: check that this configuration can
/// serve it (as the C device: MAP notifiers need caching mode, device-IOTLB
/// ones need device-iotlb, none work with snoop control), remember the
/// region's flags, and start or drop the MAP shadow.  In hardware-nested
/// mode a vfio-pci function on iommufd may register a MAP notifier when it
/// is hot-plugged while translation is on: accepted without shadowing (its
/// host IOMMU device follows and pins the address space).
/// # Safety
/// Called by the memory core (under the BQL) with a region of our IOMMU
/// type and a valid `errp`.
unsafe extern "C" fn vtd_notify_flag_changed(
    iommu: *mut bindings::IOMMUMemoryRegion,
    old: bindings::IOMMUNotifierFlag,
    new: bindings::IOMMUNotifierFlag,
    errp: *mut *mut bindings::Error,
) -> c_int {
    // SAFETY: every region of our IOMMU type is the first field of a live
    // VtdAddressSpace; its owner outlives it.
    let vas = unsafe { &*iommu.cast::<VtdAddressSpace>() };
    // SAFETY: the owner device outlives its address spaces.
    let owner = unsafe { &*vas.owner };
    let pending = new & bindings::IOMMU_NOTIFIER_MAP != 0
        && owner.hw_nested()
        && vas.fixed_sid.is_none()
        && is_iommufd_vfio(vas.bus, vas.devfn);
    vas.host_pending.store(pending, Ordering::Release);
    if pending {
        owner.address_spaces().set_notifier_flags(vas, new);
        return 0;
    }
    if let Err(why) = owner.check_notifier(new) {
        // SAFETY: the bus is live.
        let bus = unsafe { bindings::pci_bus_num(vas.bus) };
        let err = util::Error::format(format_args!(
            "intel-iommu: device {:02x}:{:02x}.{:x} {why}",
            bus,
            vas.devfn >> 3,
            vas.devfn & 7
        ));
        // SAFETY: errp comes from memory_region_register_iommu_notifier.
        unsafe { err.propagate(errp.cast()) };
        return -ENOTSUP;
    }
    owner.address_spaces().set_notifier_flags(vas, new);
    if (old ^ new) & bindings::IOMMU_NOTIFIER_MAP != 0 {
        // A new MAP notifier starts from nothing (replay fills it); the
        // last one gone, the shadow is forgotten.
        *vas.shadow() = Shadow::new();
    }
    0
}

/// `IOMMUMemoryRegionClass::replay`: report every current mapping to `n`
/// (MAP notifiers only, as the C device).
/// # Safety
/// Called by the memory core (under the BQL) with a region of our IOMMU
/// type and one of its registered notifiers.
unsafe extern "C" fn vtd_replay(iommu: *mut bindings::IOMMUMemoryRegion, n: *mut bindings::IOMMUNotifier) {
    // SAFETY: as in vtd_notify_flag_changed; n is valid for the call.
    let (vas, flags) = unsafe { (&*iommu.cast::<VtdAddressSpace>(), (*n).notifier_flags) };
    if flags & bindings::IOMMU_NOTIFIER_MAP == 0
        || vas.fixed_sid.is_some()
        || vas.host_pending.load(Ordering::Acquire)
    {
        return;
    }
    // SAFETY: the owner outlives its address spaces.
    let owner = unsafe { &*vas.owner };
    let Some((catch_up, current)) = owner.replay_shadow(vas) else { return };
    // The other MAP notifiers catch up with what changed since the last
    // invalidation; `n` gets every mapping.
    for note in &catch_up {
        let mut m = vas.iommu.iommu_notify.lh_first;
        while !m.is_null() {
            if m != n {
                vas.deliver(note, Some(m));
            }
            // SAFETY: m is on the region's list (BQL held).
            m = unsafe { (*m).node.le_next };
        }
    }
    for note in &current {
        vas.deliver(note, Some(n));
    }
}

/// errno's ENOTSUP and EINVAL (not among the generated bindings).
const ENOTSUP: c_int = 95;
pub(crate) const EINVAL: c_int = 22;

/// # Safety
/// Called by QOM with the class of `intel-iommu-iommu-memory-region`.
unsafe extern "C" fn vtd_iommu_mr_class_init(klass: *mut bindings::ObjectClass, _data: *const c_void) {
    // SAFETY: QOM calls this with the class of our IOMMU region type, whose
    // class struct is IOMMUMemoryRegionClass.
    let imrc = unsafe { &mut *klass.cast::<bindings::IOMMUMemoryRegionClass>() };
    imrc.translate = Some(vtd_translate);
    imrc.notify_flag_changed = Some(vtd_notify_flag_changed);
    imrc.replay = Some(vtd_replay);
}

struct SyncTypeInfo(qom::bindings::TypeInfo);
// SAFETY: constant type description (static strings and function pointers).
unsafe impl Sync for SyncTypeInfo {}

static VTD_IOMMU_MR_INFO: SyncTypeInfo = SyncTypeInfo(qom::bindings::TypeInfo {
    name: TYPE_VTD_IOMMU_MR.as_ptr(),
    parent: c"iommu-memory-region".as_ptr(),
    class_init: Some(vtd_iommu_mr_class_init),
    // SAFETY: the other TypeInfo fields are optional (zero/None).
    ..unsafe { std::mem::zeroed() }
});

// SAFETY (inside the macro's unsafe block): the TypeInfo is a static with
// static strings and a valid class_init; registered once, at QOM init.
util::module_init! {
    MODULE_INIT_QOM => unsafe {
        qom::type_register_static(&VTD_IOMMU_MR_INFO.0);
    }
}
