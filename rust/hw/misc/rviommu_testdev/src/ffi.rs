// SPDX-License-Identifier: GPL-2.0-or-later

//! The QOM type `rviommu-testdev` and every raw call into QEMU it makes.
//!
//! The type is registered by hand (a `TypeInfo` with the PCIe interface),
//! since QEMU 10.2.2's Rust QOM bindings cannot declare interfaces. The
//! instance is `#[repr(C)]` with the C `PCIDevice` first; the Rust fields
//! after it are written in `instance_init` and dropped in
//! `instance_finalize`.
//!
//! Locking: MMIO and configuration accesses run under the BQL. The device
//! state still sits in a `Mutex` because the IOMMU's notifier callbacks
//! (device-TLB invalidations, MAP/UNMAP) can arrive while a register write
//! of this device is in progress (a replay the write asked for, or a DMA
//! write aimed at the IOMMU's own registers): such events are queued and
//! applied in order when the write has finished, instead of deadlocking.

use std::{
    ffi::c_void,
    mem::{offset_of, size_of},
    ptr::{addr_of, addr_of_mut, null, null_mut},
    sync::{Mutex, MutexGuard, PoisonError},
};

use testdev_core::{
    AccessFailed, AtsEntry, AtsFailed, CapState, DmaPort, NotifierError, NotifierKind, TestDev,
    BAR_SIZE,
};

use crate::bindings;

/// The instance: the C PCI device, its BAR, and the Rust state.
#[repr(C)]
pub struct RvIommuTestDev {
    parent: bindings::PCIDevice,
    bar: bindings::MemoryRegion,
    state: Mutex<TestDev>,
    /// IOMMU events that arrived while `state` was busy.
    pending: Mutex<Vec<Event>>,
    /// Device-TLB invalidation subscriptions, one per PASID used with ATS.
    watches: Mutex<Vec<Box<AtcWatch>>>,
    /// The MAP/UNMAP or UNMAP-only notifier feeding the mirror.
    mirror: Mutex<Option<Box<MirrorNotifier>>>,
}

/// An event from one of the IOMMU's notifiers.
enum Event {
    /// Device-TLB invalidation: PASID, address, mask.
    Atc(Option<u32>, u64, u64),
    /// MAP: address, mask, output address, read, write.
    Map(u64, u64, u64, bool, bool),
    /// UNMAP: address, mask.
    Unmap(u64, u64),
}

/// The notifier on the IOMMU region of our DMA address space; `repr(C)`
/// with the notifier first so the callback can find its context.
#[repr(C)]
struct MirrorNotifier {
    notifier: bindings::IOMMUNotifier,
    dev: *const RvIommuTestDev,
    /// The IOMMU region it is registered on (a reference is held).
    region: *mut bindings::MemoryRegion,
}

/// An IOMMU notifier for device-TLB invalidations of one PASID; `repr(C)`
/// with the notifier first so the callback can find its context.
#[repr(C)]
struct AtcWatch {
    notifier: bindings::IOMMUNotifier,
    dev: *const RvIommuTestDev,
    pasid: Option<u32>,
}

/// PCI_NO_PASID of hw/pci/pci_bus.h.
const PCI_NO_PASID: u32 = u32::MAX;
/// Configuration-space offsets of our capabilities.
const EXP_CAP_OFFSET: u8 = 0x80;
const ATS_CAP_OFFSET: u16 = 0x100;
const PASID_CAP_OFFSET: u16 = 0x120;
/// PASID width the capability advertises.
const PASID_WIDTH: u8 = 20;
/// PASID control register bits (PCIe PASID capability, offset 6).
const PASID_CTRL: u16 = 6;
const PASID_CTRL_EXEC: u16 = 1 << 1;
const PASID_CTRL_PRIV: u16 = 1 << 2;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RvIommuTestDev {
    fn pci(&self) -> *mut bindings::PCIDevice {
        addr_of!(self.parent).cast_mut()
    }

    /// The capability state the driver has programmed.
    fn caps(&self) -> CapState {
        let dev = self.pci();
        // SAFETY: dev is this realized device; config is its configuration
        // space (4 KiB for PCIe), read under the BQL.
        unsafe {
            let ctrl_ptr = (*dev).config.add(usize::from(PASID_CAP_OFFSET + PASID_CTRL));
            let ctrl = u16::from_le_bytes([*ctrl_ptr, *ctrl_ptr.add(1)]);
            CapState {
                ats: bindings::pcie_ats_enabled(dev),
                pasid: bindings::pcie_pasid_enabled(dev),
                pasid_priv: ctrl & PASID_CTRL_PRIV != 0,
                pasid_exec: ctrl & PASID_CTRL_EXEC != 0,
                pasid_width: PASID_WIDTH,
            }
        }
    }

    fn apply_pending(&self, state: &mut TestDev) {
        for ev in lock(&self.pending).drain(..) {
            apply(state, ev);
        }
    }

    /// Apply an IOMMU event now, or after the register write in progress.
    fn event(&self, ev: Event) {
        match self.state.try_lock() {
            Ok(mut state) => apply(&mut state, ev),
            Err(_) => lock(&self.pending).push(ev),
        }
    }

    /// Unregister the mirror's notifier, if any.
    fn detach_mirror(&self) {
        let Some(mut m) = lock(&self.mirror).take() else { return };
        // SAFETY: the notifier was registered on this region in
        // attach_mirror, which also took the reference dropped here.
        unsafe {
            bindings::memory_region_unregister_iommu_notifier(m.region, addr_of_mut!(m.notifier));
            bindings::memory_region_unref(m.region);
        }
    }

    /// Register a notifier of `kind` on the IOMMU region our DMA goes
    /// through (as vfio/vhost do), replaying the mappings for MAP.
    fn attach_mirror(&self, kind: NotifierKind) -> Result<(), NotifierError> {
        self.detach_mirror();
        let flags = match kind {
            NotifierKind::None => return Ok(()),
            NotifierKind::Map => bindings::IOMMU_NOTIFIER_MAP | bindings::IOMMU_NOTIFIER_UNMAP,
            NotifierKind::UnmapOnly => bindings::IOMMU_NOTIFIER_UNMAP,
        };
        // SAFETY: the PCI core gives every device an address space; its
        // root region is live. memory_region_find takes a reference on the
        // region it returns, kept while the notifier is registered.
        let region = unsafe {
            let as_ = bindings::pci_device_iommu_address_space(self.pci());
            let section = bindings::memory_region_find((*as_).root, 0, 1);
            let mr = section.mr;
            if mr.is_null() {
                return Err(NotifierError::NoIommu);
            }
            if bindings::object_dynamic_cast(mr.cast(), c"iommu-memory-region".as_ptr()).is_null() {
                bindings::memory_region_unref(mr);
                return Err(NotifierError::NoIommu);
            }
            mr
        };
        let mut m = Box::new(MirrorNotifier {
            // SAFETY: all-zero is a valid not-yet-registered notifier.
            notifier: unsafe { std::mem::zeroed() },
            dev: self,
            region,
        });
        m.notifier.notify = Some(mirror_notify);
        m.notifier.notifier_flags = flags;
        m.notifier.start = 0;
        m.notifier.end = u64::MAX;
        m.notifier.iommu_idx = 0;
        let n = addr_of_mut!(m.notifier);
        let mut err: *mut bindings::Error = null_mut();
        // SAFETY: the notifier lives in a Box kept in `mirror` until it is
        // unregistered; err receives an error we report and free.
        let rc = unsafe { bindings::memory_region_register_iommu_notifier(region, n, &mut err) };
        if rc != 0 {
            // SAFETY: a failed registration set err (reported and freed
            // here); the region reference is dropped.
            unsafe {
                if !err.is_null() {
                    bindings::error_report_err(err);
                }
                bindings::memory_region_unref(region);
            }
            return Err(NotifierError::Refused);
        }
        *lock(&self.mirror) = Some(m);
        if kind == NotifierKind::Map {
            self.replay_mirror();
        }
        Ok(())
    }

    /// Ask the IOMMU to replay its mappings to our MAP notifier.
    fn replay_mirror(&self) {
        let target = lock(&self.mirror)
            .as_mut()
            .map(|m| (m.region, addr_of_mut!(m.notifier)));
        if let Some((region, n)) = target {
            // SAFETY: n is registered on region, an IOMMU region (checked
            // at attach); the Box stays in `mirror` during the call (only
            // this device, under the BQL, changes it).
            unsafe { bindings::memory_region_iommu_replay(region.cast(), n) };
        }
    }

    fn mmio_read(&self, offset: u64, size: u32) -> u64 {
        lock(&self.state).read(offset, size)
    }

    fn mmio_write(&self, offset: u64, size: u32, value: u64) {
        let caps = self.caps();
        let mut port = Port { dev: self };
        let Ok(mut state) = self.state.try_lock() else {
            util::log_mask_ln!(
                util::log::Log::GuestError,
                "rviommu-testdev: register write from the device's own DMA ignored"
            );
            return;
        };
        self.apply_pending(&mut state);
        state.write(offset, size, value, caps, &mut port);
        self.apply_pending(&mut state);
    }


    /// Subscribe to device-TLB invalidations of `pasid`.
    fn watch(&self, pasid: Option<u32>) {
        let mut watch = Box::new(AtcWatch {
            // SAFETY: all-zero is a valid not-yet-initialised notifier.
            notifier: unsafe { std::mem::zeroed() },
            dev: self,
            pasid,
        });
        let n = addr_of_mut!(watch.notifier);
        // SAFETY: the notifier lives in a Box kept in `watches` until the
        // device is unrealized (when it is unregistered).
        let ok = unsafe {
            bindings::pci_iommu_init_iotlb_notifier(self.pci(), n, Some(atc_invalidate), null_mut())
                == 0
                && bindings::pci_iommu_register_iotlb_notifier(
                    self.pci(),
                    pasid.unwrap_or(PCI_NO_PASID),
                    n,
                ) == 0
        };
        if ok {
            lock(&self.watches).push(watch);
        } else {
            util::log_mask_ln!(
                util::log::Log::Unimp,
                "rviommu-testdev: the IOMMU offers no device-TLB invalidation notifier \
                 for PASID {pasid:?}; cached translations are only dropped by ATC_CTRL"
            );
        }
    }
}

/// The host side of the DMA engine, during one command.
struct Port<'a> {
    dev: &'a RvIommuTestDev,
}

fn access(as_: *mut bindings::AddressSpace, addr: u64, buf: &mut [u8], write: bool) -> Result<(), AccessFailed> {
    let attrs = bindings::MemTxAttrs { unspecified: true, ..Default::default() };
    // SAFETY: `as_` is a live address space (the device's bus-master space
    // or system memory); buf is exclusively borrowed for the call.
    let r = unsafe {
        bindings::address_space_rw(as_, addr, attrs, buf.as_mut_ptr().cast(), buf.len() as u64, write)
    };
    if r == bindings::MEMTX_OK {
        Ok(())
    } else {
        Err(AccessFailed)
    }
}

impl DmaPort for Port<'_> {
    fn dma(&mut self, iova: u64, buf: &mut [u8], write: bool) -> Result<(), AccessFailed> {
        // SAFETY: bus_master_as is initialised by the PCI core at realize.
        let as_ = unsafe { addr_of_mut!((*self.dev.pci()).bus_master_as) };
        access(as_, iova, buf, write)
    }

    fn ats_translate(
        &mut self,
        pasid: Option<u32>,
        privileged: bool,
        exec: bool,
        iova: u64,
        no_write: bool,
    ) -> Result<AtsEntry, AtsFailed> {
        let mut entry = bindings::IOMMUTLBEntry::default();
        let mut err_count: u32 = 0;
        // SAFETY: one result slot, valid for the call.
        let n = unsafe {
            bindings::pci_ats_request_translation(
                self.dev.pci(),
                pasid.unwrap_or(PCI_NO_PASID),
                privileged,
                exec,
                iova & !0xfff,
                0x1000,
                no_write,
                &mut entry,
                1,
                &mut err_count,
            )
        };
        if n < 1 {
            return Err(AtsFailed);
        }
        Ok(AtsEntry {
            iova: entry.iova,
            phys: entry.translated_addr,
            mask: entry.addr_mask,
            read: entry.perm & bindings::IOMMU_RO != 0,
            write: entry.perm & bindings::IOMMU_WO != 0,
        })
    }

    fn phys(&mut self, addr: u64, buf: &mut [u8], write: bool) -> Result<(), AccessFailed> {
        // SAFETY: only the address of QEMU's global system address space.
        access(addr_of_mut!(bindings::address_space_memory), addr, buf, write)
    }

    fn watch(&mut self, pasid: Option<u32>) {
        self.dev.watch(pasid);
    }

    fn attach_notifier(&mut self, kind: NotifierKind) -> Result<(), NotifierError> {
        self.dev.attach_mirror(kind)
    }

    fn replay(&mut self) {
        self.dev.replay_mirror();
    }

    fn iommu_translate(&mut self, iova: u64, write: bool) -> Option<AtsEntry> {
        let attrs = bindings::MemTxAttrs { unspecified: true, ..Default::default() };
        // SAFETY: bus_master_as is initialised by the PCI core at realize;
        // the lookup only reads the memory map and the IOMMU's translate.
        let e = unsafe {
            bindings::address_space_get_iotlb_entry(
                addr_of_mut!((*self.dev.pci()).bus_master_as),
                iova,
                write,
                attrs,
            )
        };
        let (read, writable) = (e.perm & bindings::IOMMU_RO != 0, e.perm & bindings::IOMMU_WO != 0);
        (read || writable).then_some(AtsEntry {
            iova: e.iova,
            phys: e.translated_addr,
            mask: e.addr_mask,
            read,
            write: writable,
        })
    }
}

fn apply(state: &mut TestDev, ev: Event) {
    match ev {
        Event::Atc(pasid, iova, mask) => state.invalidate_atc(pasid, iova, mask),
        Event::Map(iova, mask, phys, r, w) => state.notify_map(iova, mask, phys, r, w),
        Event::Unmap(iova, mask) => state.notify_unmap(iova, mask),
    }
}

// ---------------------------------------------------------------------------
// Callbacks.

/// `IOMMUNotify` for device-TLB invalidations.
/// # Safety
/// Called by the IOMMU with a notifier registered in `watch` (the first
/// field of a live `AtcWatch`) and a valid entry.
unsafe extern "C" fn atc_invalidate(n: *mut bindings::IOMMUNotifier, entry: *mut bindings::IOMMUTLBEntry) {
    const _: () = assert!(offset_of!(AtcWatch, notifier) == 0);
    // SAFETY: see the function's contract.
    let (watch, entry) = unsafe { (&*n.cast::<AtcWatch>(), &*entry) };
    // SAFETY: the device outlives its registered notifiers.
    let dev = unsafe { &*watch.dev };
    dev.event(Event::Atc(watch.pasid, entry.iova, entry.addr_mask));
}

/// `IOMMUNotify` for the mirror's MAP/UNMAP events.
/// # Safety
/// Called by the IOMMU with the notifier registered in `attach_mirror`
/// (the first field of a live `MirrorNotifier`) and a valid entry.
unsafe extern "C" fn mirror_notify(n: *mut bindings::IOMMUNotifier, entry: *mut bindings::IOMMUTLBEntry) {
    const _: () = assert!(offset_of!(MirrorNotifier, notifier) == 0);
    // SAFETY: see the function's contract.
    let (m, e) = unsafe { (&*n.cast::<MirrorNotifier>(), &*entry) };
    // SAFETY: the device outlives its registered notifier.
    let dev = unsafe { &*m.dev };
    let (r, w) = (e.perm & bindings::IOMMU_RO != 0, e.perm & bindings::IOMMU_WO != 0);
    dev.event(if r || w {
        Event::Map(e.iova, e.addr_mask, e.translated_addr, r, w)
    } else {
        Event::Unmap(e.iova, e.addr_mask)
    });
}

/// # Safety
/// Called by the memory core with the device the BAR was created for.
unsafe extern "C" fn bar_read(opaque: *mut c_void, addr: bindings::hwaddr, size: u32) -> u64 {
    // SAFETY: opaque is our device (see realize).
    unsafe { &*opaque.cast::<RvIommuTestDev>() }.mmio_read(addr, size)
}

/// # Safety
/// Called by the memory core with the device the BAR was created for.
unsafe extern "C" fn bar_write(opaque: *mut c_void, addr: bindings::hwaddr, value: u64, size: u32) {
    // SAFETY: opaque is our device (see realize).
    unsafe { &*opaque.cast::<RvIommuTestDev>() }.mmio_write(addr, size, value);
}

struct SyncOps(bindings::MemoryRegionOps);
// SAFETY: constant vtable of function pointers.
unsafe impl Sync for SyncOps {}

static BAR_OPS: SyncOps = SyncOps(bindings::MemoryRegionOps {
    read: Some(bar_read),
    write: Some(bar_write),
    endianness: bindings::DEVICE_LITTLE_ENDIAN,
    valid: bindings::MemoryRegionOps__bindgen_ty_1 {
        min_access_size: 1,
        max_access_size: 8,
        unaligned: false,
        accepts: None,
    },
    impl_: bindings::MemoryRegionOps__bindgen_ty_2 {
        min_access_size: 1,
        max_access_size: 8,
        unaligned: false,
    },
    // SAFETY: the remaining fields are optional callbacks (None).
    ..unsafe { std::mem::zeroed() }
});

/// # Safety
/// Called by QOM on a zeroed instance of our type, once.
unsafe extern "C" fn instance_init(obj: *mut bindings::Object) {
    let dev = obj.cast::<RvIommuTestDev>();
    // SAFETY: the Rust fields are uninitialised (zeroed) memory of this
    // instance; write them without reading or dropping the old bytes.
    unsafe {
        addr_of_mut!((*dev).state).write(Mutex::new(TestDev::new()));
        addr_of_mut!((*dev).pending).write(Mutex::new(Vec::new()));
        addr_of_mut!((*dev).watches).write(Mutex::new(Vec::new()));
        addr_of_mut!((*dev).mirror).write(Mutex::new(None));
    }
}

/// # Safety
/// Called by QOM once, when the last reference goes; after unrealize.
unsafe extern "C" fn instance_finalize(obj: *mut bindings::Object) {
    let dev = obj.cast::<RvIommuTestDev>();
    // SAFETY: the fields were written in instance_init and are dropped
    // exactly once here.
    unsafe {
        std::ptr::drop_in_place(addr_of_mut!((*dev).state));
        std::ptr::drop_in_place(addr_of_mut!((*dev).pending));
        std::ptr::drop_in_place(addr_of_mut!((*dev).watches));
        std::ptr::drop_in_place(addr_of_mut!((*dev).mirror));
    }
}

/// `PCIDeviceClass::realize`.
/// # Safety
/// Called by the PCI core with an instance of our type and a valid `errp`.
unsafe extern "C" fn realize(pci: *mut bindings::PCIDevice, errp: *mut *mut bindings::Error) {
    let dev = pci.cast::<RvIommuTestDev>();
    // SAFETY: pci is a live instance; capability setup and BAR registration
    // run under the BQL during realize.
    unsafe {
        if (*pci).cap_present & bindings::QEMU_PCI_CAP_EXPRESS == 0 {
            let err = util::Error::msg(
                "rviommu-testdev: needs a PCI Express bus (e.g. pcie.0 of the q35 machine)",
            );
            err.propagate(errp.cast());
            return;
        }
        if bindings::pcie_endpoint_cap_init(pci, EXP_CAP_OFFSET) < 0 {
            util::Error::msg("rviommu-testdev: cannot add the PCI Express capability")
                .propagate(errp.cast());
            return;
        }
        bindings::pcie_ats_init(pci, ATS_CAP_OFFSET, true);
        bindings::pcie_pasid_init(pci, PASID_CAP_OFFSET, PASID_WIDTH, true, true);
        bindings::memory_region_init_io(
            addr_of_mut!((*dev).bar),
            pci.cast(),
            &BAR_OPS.0,
            dev.cast(),
            c"rviommu-testdev-mmio".as_ptr(),
            BAR_SIZE,
        );
        bindings::pci_register_bar(
            pci,
            0,
            bindings::PCI_BASE_ADDRESS_SPACE_MEMORY as u8,
            addr_of_mut!((*dev).bar),
        );
    }
}

/// `PCIDeviceClass::exit`: drop the device-TLB subscriptions.
/// # Safety
/// Called by the PCI core with a realized instance of our type.
unsafe extern "C" fn exit(pci: *mut bindings::PCIDevice) {
    // SAFETY: pci is a live instance of our type.
    let dev = unsafe { &*pci.cast::<RvIommuTestDev>() };
    dev.detach_mirror();
    for mut watch in lock(&dev.watches).drain(..) {
        // SAFETY: the notifier was registered with this PASID in `watch`.
        unsafe {
            bindings::pci_iommu_unregister_iotlb_notifier(
                pci,
                watch.pasid.unwrap_or(PCI_NO_PASID),
                addr_of_mut!(watch.notifier),
            );
        }
    }
    // SAFETY: removes the capability added in realize.
    unsafe { bindings::pcie_cap_exit(pci) };
}

/// Legacy reset.
/// # Safety
/// Called by qdev with an instance of our type.
unsafe extern "C" fn reset(d: *mut bindings::DeviceState) {
    // SAFETY: d is an instance of our type.
    let dev = unsafe { &*d.cast::<RvIommuTestDev>() };
    dev.detach_mirror();
    lock(&dev.state).reset();
    lock(&dev.pending).clear();
}

/// # Safety
/// Called by QOM with our class (a `PCIDeviceClass`).
unsafe extern "C" fn class_init(klass: *mut bindings::ObjectClass, _data: *const c_void) {
    // SAFETY: the class struct of a PCI device type is PCIDeviceClass.
    let k = unsafe { &mut *klass.cast::<bindings::PCIDeviceClass>() };
    k.realize = Some(realize);
    k.exit = Some(exit);
    k.vendor_id = 0x1234; // QEMU's test-device vendor id, as edu
    k.device_id = 0x11f0;
    k.revision = 1;
    k.class_id = 0x00ff; // PCI_CLASS_OTHERS
    let dc = &mut k.parent_class;
    dc.desc = c"rviommu DMA test device with PASID and ATS (Rust)".as_ptr();
    // SAFETY: dc is the class being initialised.
    unsafe { bindings::device_class_set_legacy_reset(dc, Some(reset)) };
}

struct SyncTypeInfo(bindings::TypeInfo);
// SAFETY: constant type description (static strings and function pointers).
unsafe impl Sync for SyncTypeInfo {}
struct SyncInterfaces([bindings::InterfaceInfo; 2]);
// SAFETY: constant table of static strings.
unsafe impl Sync for SyncInterfaces {}

static INTERFACES: SyncInterfaces = SyncInterfaces([
    bindings::InterfaceInfo { type_: c"pci-express-device".as_ptr() },
    bindings::InterfaceInfo { type_: null() },
]);

static TYPE_INFO: SyncTypeInfo = SyncTypeInfo(bindings::TypeInfo {
    name: crate::TYPE_RVIOMMU_TESTDEV.as_ptr(),
    parent: c"pci-device".as_ptr(),
    instance_size: size_of::<RvIommuTestDev>(),
    instance_init: Some(instance_init),
    instance_finalize: Some(instance_finalize),
    class_init: Some(class_init),
    interfaces: INTERFACES.0.as_ptr(),
    // SAFETY: the other TypeInfo fields are optional (zero/None).
    ..unsafe { std::mem::zeroed() }
});

// SAFETY (inside the macro's unsafe block): a static TypeInfo with static
// strings and valid callbacks, registered once at QOM init.
util::module_init! {
    MODULE_INIT_QOM => unsafe {
        qom::type_register_static(&TYPE_INFO.0);
    }
}

