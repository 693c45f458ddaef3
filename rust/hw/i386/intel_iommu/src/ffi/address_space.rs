// SPDX-License-Identifier: GPL-2.0-or-later

//! Per-device DMA address spaces (the IOMMU memory region and the untranslated alias each device switches between), their notifiers, and the interrupt window.

use std::{
    collections::HashMap,
    ffi::{c_void, CString},
    mem::size_of,
    ptr::{addr_of, addr_of_mut, NonNull},
    sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering},
    sync::{Mutex, MutexGuard, PoisonError},
};

use vtd_core::{Notification, NotifierFlags, Shadow};

use qom::prelude::*;

use crate::{bindings, device::IntelIommuState};
// The other interfaces' items (some modules use none).
#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------
// Per-device DMA address spaces.

/// Interrupt window of VT-d: DMA writes to 0xFEEx_xxxx are interrupt
/// requests, never translated.
const INTERRUPT_ADDR_FIRST: u64 = 0xfee0_0000;
const INTERRUPT_ADDR_SIZE: u64 = 0x10_0000;

/// One PCI function's view of memory behind the IOMMU.  `repr(C)` with the
/// IOMMU memory region first, so that the region pointer QEMU hands to
/// `translate` is also a pointer to this struct.
///
/// The root region holds the IOMMU region and `nodmar`, an alias of system
/// memory; exactly one of them is enabled: `nodmar` while the function's
/// requests are identity-mapped (translation disabled, pass-through), as
/// in the C device. The interrupt window sits above both.
#[repr(C)]
pub struct VtdAddressSpace {
    pub(crate) iommu: bindings::IOMMUMemoryRegion,
    root: bindings::MemoryRegion,
    nodmar: bindings::MemoryRegion,
    interrupts: bindings::MemoryRegion,
    address_space: bindings::AddressSpace,
    pub(crate) bus: *mut bindings::PCIBus,
    pub(crate) devfn: u8,
    /// Fixed source id of a platform pseudo-device (the I/O APIC).
    pub(crate) fixed_sid: Option<u16>,
    pub(crate) owner: *const IntelIommuState,
    /// Union of the flags of the region's notifiers (`IOMMUNotifierFlag`).
    notifier_flags: AtomicU32,
    /// `nodmar` is the enabled one.
    identity: AtomicBool,
    /// Always identity: the host IOMMU translates this function (hardware
    /// nested translation), vfio maps all of guest RAM for it.
    pinned: AtomicBool,
    /// A vfio-pci function on iommufd registered a MAP notifier before its
    /// host IOMMU device reached us (hot-plug while translation is on):
    /// nothing is shadowed for it; set_iommu_device pins the address space
    /// and vfio's listener then drops the notifier.
    pub(crate) host_pending: AtomicBool,
    /// The mappings reported to MAP notifiers (caching mode). Locked after
    /// the device's core lock, never before it.
    shadow: Mutex<Shadow>,
}

// SAFETY: the raw pointers are to QOM objects that outlive the address
// space; the C regions are only changed under the BQL.
unsafe impl Send for VtdAddressSpace {}
// SAFETY: see `Send`; the Rust state is atomic or behind a mutex.
unsafe impl Sync for VtdAddressSpace {}

impl VtdAddressSpace {
    /// The requester (source) id of this function, with the bus number the
    /// guest has assigned by now.
    pub fn source_id(&self) -> u16 {
        if let Some(sid) = self.fixed_sid {
            return sid;
        }
        // SAFETY: the bus is a live PCIBus (buses are not freed while the
        // machine runs).
        let bus = unsafe { bindings::pci_bus_num(self.bus) };
        ((bus as u16 & 0xff) << 8) | u16::from(self.devfn)
    }

    /// The kinds of notifier registered on the region.
    pub fn notifier_flags(&self) -> NotifierFlags {
        let f = self.notifier_flags.load(Ordering::Acquire);
        NotifierFlags {
            map: f & bindings::IOMMU_NOTIFIER_MAP != 0 && !self.host_pending.load(Ordering::Acquire),
            unmap: f & bindings::IOMMU_NOTIFIER_UNMAP != 0,
            device_iotlb: f & bindings::IOMMU_NOTIFIER_DEVIOTLB_UNMAP != 0,
        }
    }

    /// The shadow of the MAP notifiers' mappings.
    pub fn shadow(&self) -> MutexGuard<'_, Shadow> {
        self.shadow.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Route DMA to plain memory (`identity`) or through the IOMMU region.
    /// Under the BQL.
    pub fn set_identity(&self, identity: bool) {
        if !identity && self.pinned.load(Ordering::Acquire) {
            return;
        }
        if self.identity.swap(identity, Ordering::AcqRel) == identity {
            return;
        }
        // SAFETY: both regions are initialised members of the root region;
        // changing their state is a memory transaction, done under the BQL
        // (the caller's contract).
        unsafe {
            bindings::memory_region_transaction_begin();
            bindings::memory_region_set_enabled(addr_of!(self.iommu.parent_obj).cast_mut(), !identity);
            bindings::memory_region_set_enabled(addr_of!(self.nodmar).cast_mut(), identity);
            bindings::memory_region_transaction_commit();
        }
    }

    /// Keep DMA of this function untranslated for good (under the BQL).
    pub fn pin_identity(&self) {
        self.pinned.store(true, Ordering::Release);
        self.set_identity(true);
    }

    /// Undo `pin_identity`: DMA follows the guest's tables again
    /// (`identity` says what they say now). Under the BQL.
    pub fn unpin_identity(&self, identity: bool) {
        self.pinned.store(false, Ordering::Release);
        self.set_identity(identity);
    }

    /// Deliver `note` to the notifiers that want it (only to `only` when
    /// given), cut to each notifier's range in naturally aligned pieces:
    /// a notifier never sees an entry that crosses its range's bounds
    /// (QEMU asserts that), e.g. a guest mapping across the interrupt
    /// window. Under the BQL.
    pub fn deliver(&self, note: &Notification, only: Option<*mut bindings::IOMMUNotifier>) {
        let (kind, first, last, phys, perm) = match *note {
            Notification::Map { iova, size, phys, perm } => (
                bindings::IOMMU_NOTIFIER_MAP,
                iova,
                iova.saturating_add(size - 1),
                phys,
                (if perm.read { bindings::IOMMU_RO } else { 0 })
                    | (if perm.write { bindings::IOMMU_WO } else { 0 }),
            ),
            Notification::Unmap { first, last } => {
                (bindings::IOMMU_NOTIFIER_UNMAP, first, last, 0, bindings::IOMMU_NONE)
            }
            Notification::DeviceIotlbUnmap { iova, mask } => (
                bindings::IOMMU_NOTIFIER_DEVIOTLB_UNMAP,
                iova,
                iova.saturating_add(mask),
                0,
                bindings::IOMMU_NONE,
            ),
        };
        let mut n = self.iommu.iommu_notify.lh_first;
        while !n.is_null() {
            // SAFETY: n is on the region's notifier list, which only changes
            // under the BQL that the caller holds; notifiers stay valid while
            // registered.
            let (flags, start, end, next) =
                unsafe { ((*n).notifier_flags, (*n).start, (*n).end, (*n).node.le_next) };
            if flags & kind != 0 && only.is_none_or(|o| o == n) && start <= last && first <= end {
                for (iova, size) in vtd_core::nesting::notify::aligned_pieces(first.max(start), last.min(end)) {
                    let event = bindings::IOMMUTLBEvent {
                        type_: kind,
                        entry: bindings::IOMMUTLBEntry {
                            // SAFETY: only the address of the global is taken.
                            target_as: addr_of_mut!(bindings::address_space_memory),
                            iova,
                            translated_addr: if perm == bindings::IOMMU_NONE { 0 } else { phys.wrapping_add(iova - first) },
                            addr_mask: size - 1,
                            perm,
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
pub struct AddressSpaces(Mutex<HashMap<(usize, u8), Box<VtdAddressSpace>>>, AtomicUsize);

/// A reference to a boxed address space, which lives as long as the device.
#[derive(Clone, Copy)]
pub struct SpaceRef(NonNull<VtdAddressSpace>);

// SAFETY: address spaces are never freed while the device exists and are
// `Sync` themselves.
unsafe impl Send for SpaceRef {}

impl std::ops::Deref for SpaceRef {
    type Target = VtdAddressSpace;
    fn deref(&self) -> &VtdAddressSpace {
        // SAFETY: see the type's comment.
        unsafe { self.0.as_ref() }
    }
}

impl AddressSpaces {
    /// Whether some address space has notifiers (vfio, vhost, a device's
    /// mirror): without any, invalidations that leave every space's mode
    /// alone need no per-space work.
    pub fn any_notified(&self) -> bool {
        self.1.load(Ordering::Acquire) != 0
    }

    /// Record the new notifier flags of `vas`.
    pub(crate) fn set_notifier_flags(&self, vas: &VtdAddressSpace, new: bindings::IOMMUNotifierFlag) {
        let old = vas.notifier_flags.swap(new, Ordering::AcqRel);
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

    /// The address spaces of PCI functions (not of pseudo-devices).
    pub fn pci_functions(&self) -> Vec<SpaceRef> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.values()
            .filter(|vas| vas.fixed_sid.is_none())
            .map(|vas| SpaceRef(NonNull::from(&**vas)))
            .collect()
    }

    pub(crate) fn get_or_create(
        &self,
        owner: &IntelIommuState,
        bus: *mut bindings::PCIBus,
        devfn: u8,
        fixed_sid: Option<u16>,
    ) -> *mut bindings::AddressSpace {
        let space = self.space(owner, bus, devfn, fixed_sid);
        addr_of!(space.address_space).cast_mut()
    }

    /// The address space of (`bus`, `devfn`), created on first use.
    pub(crate) fn space(
        &self,
        owner: &IntelIommuState,
        bus: *mut bindings::PCIBus,
        devfn: u8,
        fixed_sid: Option<u16>,
    ) -> SpaceRef {
        // Decided before the map is locked: the core lock comes first.
        let identity = fixed_sid.is_none() && owner.is_identity(sid_of(bus, devfn));
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Pseudo-devices get keys of their own (bus pointer 0).
        let key = if fixed_sid.is_some() { (0, devfn) } else { (bus as usize, devfn) };
        let entry = map.entry(key).or_insert_with(|| {
            // SAFETY: every field is a C struct or raw pointer for which all
            // zeroes is the state before its C initialiser runs.
            let mut vas: Box<VtdAddressSpace> = unsafe { Box::new_zeroed().assume_init() };
            vas.bus = bus;
            vas.devfn = devfn;
            vas.fixed_sid = fixed_sid;
            vas.owner = owner;
            // SAFETY: the Rust fields are zeroed memory, written without
            // dropping the old bytes.
            unsafe {
                addr_of_mut!(vas.notifier_flags).write(AtomicU32::new(0));
                addr_of_mut!(vas.identity).write(AtomicBool::new(false));
                addr_of_mut!(vas.pinned).write(AtomicBool::new(false));
                addr_of_mut!(vas.host_pending).write(AtomicBool::new(false));
                addr_of_mut!(vas.shadow).write(Mutex::new(Shadow::new()));
            }
            init_address_space(&mut vas, owner);
            // Pseudo-devices only send interrupts: always through the IOMMU.
            if identity {
                vas.set_identity(true);
            }
            vas
        });
        SpaceRef(NonNull::from(&**entry))
    }
}

fn init_address_space(vas: &mut VtdAddressSpace, owner: &IntelIommuState) {
    // SAFETY: owner is realized; bus is live.
    let busnum = unsafe { bindings::pci_bus_num(vas.bus) };
    let name = CString::new(format!(
        "intel_iommu_devfn_{}_{:02x}.{}",
        busnum,
        vas.devfn >> 3,
        vas.devfn & 7
    ))
    .unwrap();
    let obj: *mut bindings::Object = owner.as_mut_ptr::<IntelIommuState>().cast();
    let opaque: *mut c_void = addr_of_mut!(*vas).cast();
    // SAFETY: all regions are zeroed fields of a boxed struct that is never
    // moved or freed; memory_region_* copy the name.
    unsafe {
        bindings::memory_region_init_iommu(
            addr_of_mut!(vas.iommu).cast(),
            size_of::<bindings::IOMMUMemoryRegion>(),
            TYPE_VTD_IOMMU_MR.as_ptr(),
            obj,
            name.as_ptr(),
            u64::MAX,
        );
        bindings::memory_region_init(addr_of_mut!(vas.root), obj, name.as_ptr(), u64::MAX);
        bindings::memory_region_add_subregion_overlap(
            addr_of_mut!(vas.root),
            0,
            addr_of_mut!(vas.iommu.parent_obj),
            0,
        );
        let sysmem = bindings::get_system_memory();
        bindings::memory_region_init_alias(
            addr_of_mut!(vas.nodmar),
            obj,
            c"vtd-nodmar".as_ptr(),
            sysmem,
            0,
            bindings::memory_region_size(sysmem),
        );
        bindings::memory_region_set_enabled(addr_of_mut!(vas.nodmar), false);
        bindings::memory_region_add_subregion_overlap(
            addr_of_mut!(vas.root),
            0,
            addr_of_mut!(vas.nodmar),
            0,
        );
        bindings::memory_region_init_io(
            addr_of_mut!(vas.interrupts),
            obj,
            addr_of!(INTERRUPT_WINDOW_OPS.0),
            opaque,
            c"vtd-ir".as_ptr(),
            INTERRUPT_ADDR_SIZE,
        );
        bindings::memory_region_add_subregion_overlap(
            addr_of_mut!(vas.root),
            INTERRUPT_ADDR_FIRST,
            addr_of_mut!(vas.interrupts),
            1,
        );
        bindings::address_space_init(
            addr_of_mut!(vas.address_space),
            addr_of_mut!(vas.root),
            name.as_ptr(),
        );
    }
}

/// Writes into the interrupt window are interrupt requests: remapped (or
/// passed through) by the core, then delivered to the interrupt controller
/// tagged with the requester id; blocked ones are dropped.
/// # Safety
/// Called by the memory core with the `VtdAddressSpace` the region was created with.
unsafe extern "C" fn interrupt_window_write(
    opaque: *mut c_void,
    addr: bindings::hwaddr,
    value: u64,
    _size: u32,
    attrs: bindings::MemTxAttrs,
) -> bindings::MemTxResult {
    // SAFETY: opaque is the VtdAddressSpace registered with this region.
    let vas = unsafe { &*opaque.cast::<VtdAddressSpace>() };
    // SAFETY: the owner outlives its address spaces.
    let owner = unsafe { &*vas.owner };
    // An explicit requester id wins (PCI MSIs carry theirs); otherwise the
    // id of the function (or pseudo-device: the I/O APIC) this address
    // space belongs to is implied, validated only with x-strict-ir.
    let explicit = !attrs.unspecified;
    let sid = if explicit { attrs.requester_id() as u16 } else { vas.source_id() };
    // The ops' impl sizes (4..4) make the memory core split or widen every
    // access to 32 bits before it reaches us: `value` holds one DWORD.
    let Some(msi) = owner.remap_interrupt(sid, explicit, INTERRUPT_ADDR_FIRST + addr, value as u32) else {
        return bindings::MEMTX_ERROR;
    };
    // As the C device: the APIC bus takes the whole address (x2APIC
    // destinations above 255 are in bits 63:40).
    if !send_msi(msi.address, msi.data) {
        return bindings::MEMTX_ERROR;
    }
    bindings::MEMTX_OK
}

/// # Safety
/// Called by the memory core with a valid `data` slot.
unsafe extern "C" fn interrupt_window_read(
    _opaque: *mut c_void,
    _addr: bindings::hwaddr,
    data: *mut u64,
    _size: u32,
    _attrs: bindings::MemTxAttrs,
) -> bindings::MemTxResult {
    // SAFETY: data points to the caller's result slot.
    unsafe { *data = 0 };
    bindings::MEMTX_OK
}

struct SyncOps(bindings::MemoryRegionOps);
// SAFETY: constant vtable of function pointers.
unsafe impl Sync for SyncOps {}

static INTERRUPT_WINDOW_OPS: SyncOps = SyncOps(bindings::MemoryRegionOps {
    read_with_attrs: Some(interrupt_window_read),
    write_with_attrs: Some(interrupt_window_write),
    endianness: bindings::DEVICE_LITTLE_ENDIAN,
    valid: bindings::MemoryRegionOps__bindgen_ty_1 {
        min_access_size: 1,
        max_access_size: 8,
        unaligned: false,
        accepts: None,
    },
    impl_: bindings::MemoryRegionOps__bindgen_ty_2 {
        min_access_size: 4,
        max_access_size: 4,
        unaligned: false,
    },
    // SAFETY: the remaining fields are optional callbacks (None).
    ..unsafe { std::mem::zeroed() }
});
