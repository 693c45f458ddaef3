// SPDX-License-Identifier: GPL-2.0-or-later

//! Every raw call into QEMU's C API made by the Rust `intel-iommu`.
//!
//! The rest of the crate is safe code.  Conventions:
//! * pointers handed to C (`AddressSpace`, `IOMMUMemoryRegion`, the
//!   device itself) point into allocations that live as long as the
//!   device: per-device address spaces are boxed and never freed, exactly
//!   like the C device's (a vIOMMU is not hot-unpluggable);
//! * C callbacks recover their Rust context from the pointer they get
//!   (`opaque`, or a `#[repr(C)]` container whose first field is the C
//!   object), never from globals.

use std::{
    collections::{BTreeMap, HashMap},
    ffi::{c_char, c_int, c_void, CStr, CString},
    mem::{offset_of, size_of},
    ptr::{addr_of, addr_of_mut, null_mut, NonNull},
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering},
        Mutex, MutexGuard, OnceLock, PoisonError,
    },
};

use common::Opaque;
use hwcore::{DeviceState, SysBusDevice};
use qom::{prelude::*, qom_isa, ObjectType};
use vtd_core::{GuestMemory, MemError, Notification, NotifierFlags, Shadow};

use crate::{bindings, device::IntelIommuState};

// ---------------------------------------------------------------------------
// The abstract parent type, `x86-iommu`, seen from Rust.

/// `X86IOMMUState`, the C parent of `intel-iommu` (also of `amd-iommu`).
#[repr(transparent)]
#[derive(Debug, common::Wrapper)]
pub struct X86IommuState(Opaque<bindings::X86IOMMUState>);

// SAFETY: like `SysBusDevice`, a QOM object whose C fields are only touched
// under the BQL (properties, realize).
unsafe impl Send for X86IommuState {}
// SAFETY: see `Send`.
unsafe impl Sync for X86IommuState {}

// SAFETY: the name and class struct are those of hw/i386/x86-iommu.c, and the
// wrapper is `repr(transparent)` over the C instance struct.
unsafe impl ObjectType for X86IommuState {
    type Class = bindings::X86IOMMUClass;
    const TYPE_NAME: &'static CStr = c"x86-iommu";
}

qom_isa!(X86IommuState: SysBusDevice, DeviceState, Object);

/// The `x86-iommu` properties that the subclass must honour.
#[derive(Clone, Copy, Debug)]
pub struct X86IommuProps {
    /// `intremap`: `OnOffAuto` (0 auto, 1 on, 2 off)
    pub intremap: u32,
    /// `device-iotlb`
    pub device_iotlb: bool,
    /// `pt`
    pub pt: bool,
    /// `dma-translation`
    pub dma_translation: bool,
}

pub const ON_OFF_AUTO_AUTO: u32 = bindings::ON_OFF_AUTO_AUTO as u32;
pub const ON_OFF_AUTO_ON: u32 = bindings::ON_OFF_AUTO_ON as u32;

fn x86_props_raw(dev: *mut bindings::X86IOMMUState) -> X86IommuProps {
    // SAFETY: `dev` is a live x86-iommu instance (callers get it from QOM);
    // its qdev properties are plain fields set before realize.
    unsafe {
        X86IommuProps {
            intremap: (*dev).intr_supported as u32,
            device_iotlb: (*dev).dt_supported,
            pt: (*dev).pt_supported,
            dma_translation: (*dev).dma_translation,
        }
    }
}

impl IntelIommuState {
    fn x86_ptr(&self) -> *mut bindings::X86IOMMUState {
        // The device struct starts with its `x86-iommu` parent.
        self.as_mut_ptr::<IntelIommuState>().cast()
    }

    /// The properties inherited from `x86-iommu`.
    pub fn x86_props(&self) -> X86IommuProps {
        x86_props_raw(self.x86_ptr())
    }
}

// ---------------------------------------------------------------------------
// Class initialisation: realize goes through x86-iommu's realize (which sets
// the machine's default IOMMU and resolves `intremap=auto`) and then through
// `X86IOMMUClass::realize`, as for the C device.

/// qdev's `DeviceRealize`: an instance of the class and a valid `errp`.
type RealizeFn = unsafe extern "C" fn(*mut bindings::DeviceState, *mut *mut bindings::Error);
static PARENT_REALIZE: OnceLock<Option<RealizeFn>> = OnceLock::new();

/// Fill in the class: the generic device/sysbus parts come from QEMU's Rust
/// `DeviceImpl` machinery; the realize chain is wired by hand.
pub fn class_init(klass: &mut bindings::X86IOMMUClass) {
    klass.parent.class_init::<IntelIommuState>();
    let dc = &mut klass.parent.parent_class;
    let _ = PARENT_REALIZE.set(dc.realize);
    dc.realize = Some(vtd_realize_outer);
    dc.hotpluggable = false;
    dc.desc = c"Intel IOMMU (VT-d) DMA Remapping device (Rust)".as_ptr();
    klass.realize = Some(vtd_realize_inner);
    klass.int_remap = Some(vtd_int_remap);
    let oc: *mut bindings::ObjectClass = &mut dc.parent_class;
    for (name, text) in crate::device::PROPERTY_HELP {
        let owner = property_owner(oc, name);
        if !owner.is_null() {
            // SAFETY: `owner` is a class whose own table holds `name` (the
            // C function dereferences the lookup unchecked); the strings
            // are 'static and copied.
            unsafe {
                bindings::object_class_property_set_description(owner, name.as_ptr(), text.as_ptr())
            };
        }
    }
}

/// The class among `oc` and its ancestors that registered property `name`,
/// or null.
fn property_owner(oc: *mut bindings::ObjectClass, name: &std::ffi::CStr) -> *mut bindings::ObjectClass {
    // SAFETY (both calls): `oc` and its ancestors are initialised classes
    // (parents are initialised before their children); `name` is a valid
    // C string; the find function searches a class and its ancestors.
    let find = |k| unsafe { !bindings::object_class_property_find(k, name.as_ptr()).is_null() };
    let parent = |k| unsafe { bindings::object_class_get_parent(k) };
    if !find(oc) {
        return std::ptr::null_mut();
    }
    let mut k = oc;
    loop {
        let p = parent(k);
        if p.is_null() || !find(p) {
            return k;
        }
        k = p;
    }
}

// ---------------------------------------------------------------------------
// The property type of `x-scalable-mode` and `scalable-mode`: a string
// (off, on, legacy, modern and the boolean spellings) that, like the C
// device's boolean `x-scalable-mode`, also takes a JSON boolean (-device
// JSON syntax, device_add): false is "off", true "on". The field is a
// `char *` as with qdev's string properties, NULL while unset.

/// A `PropertyInfo` in a static (its pointers make it neither Send nor Sync
/// by itself; it is never written after compilation).
pub struct StaticPropertyInfo(pub hwcore::bindings::PropertyInfo);
// SAFETY: immutable data and function pointers only.
unsafe impl Sync for StaticPropertyInfo {}

pub static SCALABLE_MODE_PROP: StaticPropertyInfo = StaticPropertyInfo(hwcore::bindings::PropertyInfo {
    type_: c"str".as_ptr(),
    description: c"off, on, legacy or modern (or a boolean)".as_ptr(),
    enum_table: std::ptr::null(),
    realized_set_allowed: false,
    print: None,
    set_default_value: None,
    create: None,
    get: Some(scalable_mode_get),
    set: Some(scalable_mode_set),
    release: Some(scalable_mode_release),
});

/// The `char *` field of property `opaque` (a `Property`) in `obj`.
/// # Safety
/// `obj` is an instance holding the property, `opaque` its `Property`.
unsafe fn string_field(obj: *mut hwcore::bindings::Object, opaque: *mut c_void) -> *mut *mut c_char {
    // SAFETY: the caller's contract; the field is a `char *` (ScalableModeString).
    unsafe { hwcore::bindings::object_field_prop_ptr(obj, opaque.cast()).cast() }
}

/// # Safety
/// Called by QOM with an instance, a live input visitor, the property's
/// name and `Property`, and a valid errp.
unsafe extern "C" fn scalable_mode_set(
    obj: *mut hwcore::bindings::Object,
    v: *mut hwcore::bindings::Visitor,
    name: *const c_char,
    opaque: *mut c_void,
    errp: *mut *mut bindings::Error,
) {
    let v: *mut bindings::Visitor = v.cast();
    let mut value: *mut c_char = std::ptr::null_mut();
    // SAFETY (this block): `v` is a live visitor; an alternate is only
    // started where the visitor implements it (the JSON and keyval input
    // visitors do; the string input visitor of -global does not, and its
    // input is a string anyway); `alt` is allocated by the visitor and
    // freed here, as generated QAPI visitors do.
    let ok = unsafe {
        if (*v).start_alternate.is_some() {
            let mut alt: *mut bindings::GenericAlternate = std::ptr::null_mut();
            if !bindings::visit_start_alternate(v, name, &mut alt, size_of::<bindings::GenericAlternate>(), errp) {
                return;
            }
            let ok = if (*alt).type_ == bindings::QTYPE_QBOOL {
                let mut b = false;
                let ok = bindings::visit_type_bool(v, name, &mut b, errp);
                if ok {
                    value = glib_sys::g_strdup(if b { c"on" } else { c"off" }.as_ptr());
                }
                ok
            } else {
                bindings::visit_type_str(v, name, &mut value, errp)
            };
            bindings::visit_end_alternate(v, std::ptr::addr_of_mut!(alt).cast());
            glib_sys::g_free(alt.cast());
            ok
        } else {
            bindings::visit_type_str(v, name, &mut value, errp)
        }
    };
    if !ok {
        return;
    }
    // SAFETY: the field holds NULL or a string from an earlier set.
    unsafe {
        let field = string_field(obj, opaque);
        glib_sys::g_free((*field).cast());
        *field = value;
    }
}

/// # Safety
/// As `scalable_mode_set`, with an output visitor.
unsafe extern "C" fn scalable_mode_get(
    obj: *mut hwcore::bindings::Object,
    v: *mut hwcore::bindings::Visitor,
    name: *const c_char,
    opaque: *mut c_void,
    errp: *mut *mut bindings::Error,
) {
    // SAFETY: the field is NULL (unset: "", as qdev's string properties)
    // or a string; output visitors only read it.
    unsafe {
        let field = string_field(obj, opaque);
        let mut s: *mut c_char = if (*field).is_null() { c"".as_ptr().cast_mut() } else { *field };
        bindings::visit_type_str(v.cast(), name, &mut s, errp);
    }
}

/// # Safety
/// Called by QOM when the instance is finalized.
unsafe extern "C" fn scalable_mode_release(obj: *mut hwcore::bindings::Object, _name: *const c_char, opaque: *mut c_void) {
    // SAFETY: the field is NULL or a g_malloc'ed string owned by the instance.
    unsafe {
        let field = string_field(obj, opaque);
        glib_sys::g_free((*field).cast());
        *field = std::ptr::null_mut();
    }
}

/// `X86IOMMUClass::int_remap`: remap an interrupt message for an
/// accelerator's interrupt route (KVM's MSI routes with a split irqchip:
/// vfio's and vhost's irqfds, the I/O APIC's pins), without fault records;
/// `sid` is X86_IOMMU_SID_INVALID when the route has no requester. Non-zero:
/// the message is blocked.
/// # Safety
/// Called by the accelerator under the BQL with an instance of
/// `intel-iommu` and valid messages.
unsafe extern "C" fn vtd_int_remap(
    iommu: *mut bindings::X86IOMMUState,
    src: *mut bindings::MSIMessage,
    dst: *mut bindings::MSIMessage,
    sid: u16,
) -> c_int {
    // SAFETY: only our instances have this class method; the device struct
    // starts with its x86-iommu parent.
    let state = unsafe { &*iommu.cast::<IntelIommuState>() };
    // SAFETY: `src` is valid for reading (caller's contract).
    let (address, data) = unsafe { ((*src).address, (*src).data) };
    let sid = (u32::from(sid) != bindings::X86_IOMMU_SID_INVALID).then_some(sid);
    match state.remap_interrupt_route(sid, address, data) {
        Some(msi) => {
            // SAFETY: `dst` is valid for writing (caller's contract).
            unsafe { *dst = bindings::MSIMessage { address: msi.address, data: msi.data } };
            0
        }
        None => -EINVAL,
    }
}

impl IntelIommuState {
    /// Whether something (KVM's interrupt routes) listens to interrupt
    /// entry cache invalidations.
    pub(crate) fn has_iec_listeners(&self) -> bool {
        // SAFETY: our own live x86-iommu; its list changes under the BQL
        // that our callers (register writes) hold.
        unsafe { !(*self.x86_ptr()).iec_notifiers.lh_first.is_null() }
    }

    /// Tell x86-iommu's interrupt entry cache listeners (KVM's MSI routes)
    /// that remapped interrupts may have changed.
    pub(crate) fn iec_notify(&self, inv: &vtd_core::IecInvalidation) {
        let (global, index, mask) = match *inv {
            vtd_core::IecInvalidation::Global => (true, 0, 0),
            vtd_core::IecInvalidation::Index { index, mask } => (false, u32::from(index), u32::from(mask)),
        };
        // SAFETY: our own live x86-iommu; the listeners run under the BQL
        // that our callers (register writes) hold.
        unsafe { bindings::x86_iommu_iec_notify_all(self.x86_ptr(), global, index, mask) };
    }
}

/// `DeviceClass::realize`: x86-iommu's realize (which resolves
/// `intremap=auto` and makes this the machine's IOMMU), which then calls
/// `X86IOMMUClass::realize`.
/// # Safety
/// Called by qdev with an instance of `intel-iommu` and a valid `errp`.
unsafe extern "C" fn vtd_realize_outer(
    dev: *mut bindings::DeviceState,
    errp: *mut *mut bindings::Error,
) {
    if let Some(Some(parent)) = PARENT_REALIZE.get() {
        // SAFETY: the parent's realize (x86_iommu_realize) with our arguments.
        unsafe { parent(dev, errp) };
    }
}

extern "C" {
    /// accel/kvm's (or its stub's) "the irqchip is in the kernel".
    static kvm_kernel_irqchip: bool;
}

/// `kvm_irqchip_in_kernel()`, a macro in C.
pub fn kvm_irqchip_in_kernel() -> bool {
    // SAFETY: a plain global bool, written once at accelerator init.
    unsafe { kvm_kernel_irqchip }
}

/// `X86IOMMUClass::realize`.
/// # Safety
/// Called by `x86_iommu_realize` with an instance of `intel-iommu` and a valid `errp`.
unsafe extern "C" fn vtd_realize_inner(
    dev: *mut bindings::DeviceState,
    errp: *mut *mut bindings::Error,
) {
    // SAFETY: QOM calls this only for instances of our type.
    let state = unsafe { NonNull::new(dev).unwrap().cast::<IntelIommuState>().as_ref() };
    let result = state.realize();
    // SAFETY: errp comes from qdev's realize.
    unsafe { util::Error::ok_or_propagate(result, errp.cast()) };
}

// ---------------------------------------------------------------------------
// Guest memory (for root/context/page tables, descriptors, status writes).

/// System memory as seen by the IOMMU's own table walks and writes.
pub struct SystemMemory;

fn unspecified_attrs() -> bindings::MemTxAttrs {
    let mut attrs = bindings::MemTxAttrs::default();
    attrs.unspecified = true;
    attrs
}

/// One access to system memory; `buf` must be valid for `len` bytes (and
/// writable when `!is_write`).
fn system_memory_rw(addr: u64, buf: *mut c_void, len: usize, is_write: bool) -> Result<(), MemError> {
    // SAFETY: address_space_memory is QEMU's global system address space;
    // the callers pass a buffer borrowed for the call (see below).
    let r = unsafe {
        bindings::address_space_rw(
            addr_of_mut!(bindings::address_space_memory),
            addr,
            unspecified_attrs(),
            buf,
            len as u64,
            is_write,
        )
    };
    if r == bindings::MEMTX_OK {
        Ok(())
    } else {
        Err(MemError)
    }
}

impl GuestMemory for SystemMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        // buf is exclusively borrowed for the call: C may write to it.
        system_memory_rw(addr, buf.as_mut_ptr().cast(), buf.len(), false)
    }

    /// Page-table entries are read one quadword at a time: the memory
    /// core's load helper is about half the cost of `address_space_rw`.
    /// Only aligned quadwords (always within one page, so within one
    /// region) take it.
    fn read_u64(&self, addr: u64) -> Result<u64, MemError> {
        if addr & 7 != 0 {
            let mut b = [0u8; 8];
            self.read(addr, &mut b)?;
            return Ok(u64::from_le_bytes(b));
        }
        let mut result: bindings::MemTxResult = bindings::MEMTX_OK;
        // SAFETY: a load through QEMU's global system address space;
        // result is a valid slot for the call.
        let v = unsafe {
            bindings::address_space_ldq_le(
                addr_of_mut!(bindings::address_space_memory),
                addr,
                unspecified_attrs(),
                &mut result,
            )
        };
        if result == bindings::MEMTX_OK {
            Ok(v)
        } else {
            Err(MemError)
        }
    }

    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemError> {
        // With is_write, C only reads the buffer.
        system_memory_rw(addr, buf.as_ptr().cast_mut().cast(), buf.len(), true)
    }
}

/// Deliver an MSI (fault event, invalidation event) to the interrupt
/// controller, as a 32-bit write to the MSI address in system memory.
pub fn send_msi(address: u64, data: u32) {
    let mut result: bindings::MemTxResult = bindings::MEMTX_OK;
    // SAFETY: a plain store through QEMU's global system address space.
    unsafe {
        bindings::address_space_stl_le(
            addr_of_mut!(bindings::address_space_memory),
            address,
            data,
            unspecified_attrs(),
            &mut result,
        );
    }
    if result != bindings::MEMTX_OK {
        util::log_mask_ln!(
            util::log::Log::GuestError,
            "intel-iommu: interrupt write to {address:#x} (data {data:#x}) failed"
        );
    }
}

// ---------------------------------------------------------------------------
// Register window.

/// hw/pci-host/q35.h's Q35_HOST_BRIDGE_IOMMU_ADDR (a macro bindgen skips).
const Q35_HOST_BRIDGE_IOMMU_ADDR: u64 = 0xfed9_0000;

/// Map the register window at the address the q35 machine reserves for the
/// DMA remapping unit (also what the DMAR table tells the guest).
pub fn map_registers(iomem: &system::MemoryRegion) {
    // SAFETY: iomem is initialised in instance_init and lives with the
    // device; get_system_memory() is the global root region.
    unsafe {
        bindings::memory_region_add_subregion(
            bindings::get_system_memory(),
            Q35_HOST_BRIDGE_IOMMU_ADDR,
            iomem.as_mut_ptr(),
        );
    }
}

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
    iommu: bindings::IOMMUMemoryRegion,
    root: bindings::MemoryRegion,
    nodmar: bindings::MemoryRegion,
    interrupts: bindings::MemoryRegion,
    address_space: bindings::AddressSpace,
    bus: *mut bindings::PCIBus,
    devfn: u8,
    /// Fixed source id of a platform pseudo-device (the I/O APIC).
    fixed_sid: Option<u16>,
    owner: *const IntelIommuState,
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
    host_pending: AtomicBool,
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
    fn set_notifier_flags(&self, vas: &VtdAddressSpace, new: bindings::IOMMUNotifierFlag) {
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

    fn get_or_create(
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
    fn space(
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
    // id of the function (or pseudo-device) this address space belongs to.
    let sid = if attrs.unspecified { vas.source_id() } else { attrs.requester_id() as u16 };
    // The ops' impl sizes (4..4) make the memory core split or widen every
    // access to 32 bits before it reaches us: `value` holds one DWORD.
    let Some(msi) = owner.remap_interrupt(sid, INTERRUPT_ADDR_FIRST + addr, value as u32) else {
        return bindings::MEMTX_ERROR;
    };
    if msi.address >> 32 != 0 {
        // The APIC's MSI window only sees the low 32 address bits.
        util::log_mask_ln!(
            util::log::Log::Unimp,
            "intel-iommu: x2APIC destination {:#x} above 255 cannot be delivered",
            (msi.address >> 32) | ((msi.address >> 12) & 0xff)
        );
        return bindings::MEMTX_ERROR;
    }
    let mut out_attrs = bindings::MemTxAttrs::default();
    out_attrs.set_requester_id(u32::from(sid));
    let mut result: bindings::MemTxResult = bindings::MEMTX_OK;
    // SAFETY: a plain store to the interrupt controller in system memory.
    unsafe {
        bindings::address_space_stl_le(
            addr_of_mut!(bindings::address_space_memory),
            msi.address,
            msi.data,
            out_attrs,
            &mut result,
        );
    }
    result
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

// ---------------------------------------------------------------------------
// The IOMMU memory region type and its translate callback.

const TYPE_VTD_IOMMU_MR: &CStr = c"intel-iommu-iommu-memory-region";

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
const EINVAL: c_int = 22;

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

// ---------------------------------------------------------------------------
// PCI: the host bridge's bus asks us for each function's address space.

/// # Safety
/// Called by the PCI core with the opaque given to `pci_setup_iommu`: our device.
unsafe extern "C" fn vtd_get_address_space(
    bus: *mut bindings::PCIBus,
    opaque: *mut c_void,
    devfn: c_int,
) -> *mut bindings::AddressSpace {
    // SAFETY: opaque is the device registered in pci_setup_iommu.
    let owner = unsafe { &*opaque.cast::<IntelIommuState>() };
    owner.address_spaces().get_or_create(owner, bus, devfn as u8, None)
}

struct SyncPciOps(bindings::PCIIOMMUOps);
// SAFETY: constant vtable of function pointers.
unsafe impl Sync for SyncPciOps {}

static VTD_PCI_OPS: SyncPciOps = SyncPciOps(bindings::PCIIOMMUOps {
    get_address_space: Some(vtd_get_address_space),
    get_iotlb_info: Some(vtd_get_iotlb_info),
    init_iotlb_notifier: Some(vtd_init_iotlb_notifier),
    register_iotlb_notifier: Some(vtd_register_iotlb_notifier),
    unregister_iotlb_notifier: Some(vtd_unregister_iotlb_notifier),
    ats_request_translation: Some(vtd_ats_request_translation),
    get_viommu_cap: Some(vtd_get_viommu_cap),
    set_iommu_device: Some(vtd_set_iommu_device),
    unset_iommu_device: Some(vtd_unset_iommu_device),
    // SAFETY: the other callbacks are optional (None).
    ..unsafe { std::mem::zeroed() }
});

/// Put every device of the machine's root PCI bus (and the buses below it)
/// behind this IOMMU.
pub fn setup_pci_iommu(owner: &IntelIommuState) -> util::Result<()> {
    // The root bus of the machine's main host bridge, which the PC machines
    // add as a QOM child "q35" (or "i440fx") of /machine.
    let bus = [c"/machine/q35/pcie.0", c"/machine/i440fx/pci.0"]
        .iter()
        .map(|path| {
            // SAFETY: object_resolve_path_type only reads the QOM tree (under
            // the BQL, which realize holds) and checks the type.
            unsafe {
                bindings::object_resolve_path_type(path.as_ptr(), c"PCI".as_ptr(), null_mut())
                    .cast::<bindings::PCIBus>()
            }
        })
        .find(|bus| !bus.is_null())
        .unwrap_or(null_mut());
    if bus.is_null() {
        return Err(util::Error::msg("intel-iommu: the machine has no PCI root bus"));
    }
    // SAFETY: the ops are static; opaque is the device, which outlives the bus
    // setup (the vIOMMU cannot be unplugged).
    unsafe {
        bindings::pci_setup_iommu(
            bus,
            &VTD_PCI_OPS.0,
            owner.as_mut_ptr::<IntelIommuState>().cast(),
        );
    }
    // The I/O APIC sends its interrupts through an address space of ours,
    // as the source id the DMAR table gives it (bus 0xff, devfn 0).
    let ioapic_as = owner.address_spaces().get_or_create(owner, bus, Q35_PSEUDO_DEVFN_IOAPIC, Some(IOAPIC_SID));
    // SAFETY: qdev_get_machine returns the machine object; the dynamic cast
    // checks that it is an x86 machine before its ioapic_as field is set
    // (under the BQL, during realize, as the C device does).
    unsafe {
        let machine = bindings::object_dynamic_cast(bindings::qdev_get_machine(), c"x86-machine".as_ptr());
        if !machine.is_null() {
            (*machine.cast::<bindings::X86MachineState>()).ioapic_as = ioapic_as;
        }
    }
    Ok(())
}

/// hw/pci-host/q35.h: the I/O APIC's pseudo bus and devfn.
const Q35_PSEUDO_BUS_PLATFORM: u16 = 0xff;
const Q35_PSEUDO_DEVFN_IOAPIC: u8 = 0;
const IOAPIC_SID: u16 = (Q35_PSEUDO_BUS_PLATFORM << 8) | Q35_PSEUDO_DEVFN_IOAPIC as u16;

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

fn sid_of(bus: *mut bindings::PCIBus, devfn: u8) -> u16 {
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
unsafe extern "C" fn vtd_get_iotlb_info(opaque: *mut c_void, addr_width: *mut u8, min_page_size: *mut u32) {
    // SAFETY: see the function's contract.
    unsafe {
        let owner = &*opaque.cast::<IntelIommuState>();
        *addr_width = owner.aw_bits();
        *min_page_size = 4096;
    }
}

/// # Safety
/// Called by the PCI core with a notifier to initialise.
unsafe extern "C" fn vtd_init_iotlb_notifier(
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
unsafe extern "C" fn vtd_register_iotlb_notifier(
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
unsafe extern "C" fn vtd_unregister_iotlb_notifier(
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
unsafe extern "C" fn vtd_ats_request_translation(
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

// ---------------------------------------------------------------------------
// Hardware nested translation: functions whose DMA the host IOMMU translates
// (vfio with iommufd). vfio made their default HWPT a nesting parent (guest
// RAM); we attach a nested HWPT over the guest's first-stage table, the
// parent, or nothing, and forward the guest's first-stage invalidations.

/// What is attached for one kind of request of a nested function: its
/// requests without PASID, or those with one PASID.
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// The nested HWPT we allocated and attached, with what it binds.
    nested: Option<(u32, vtd_core::HostBinding)>,
    /// Attached now: the parent, the nested HWPT, or nothing (blocked).
    attached: Attached,
}

/// A function backed by a host IOMMU device of the iommufd backend, and
/// what is attached for it now.
pub struct NestedDevice {
    bus: *mut bindings::PCIBus,
    devfn: u8,
    idev: *mut bindings::HostIOMMUDeviceIOMMUFD,
    /// vfio's default HWPT: the nesting parent.
    parent: u32,
    /// Width of the PASIDs the host enabled for the function (0: none).
    pasid_bits: u8,
    /// Requests without PASID.
    rid: Slot,
    /// Requests with a PASID, for each PASID bound (not blocked).
    pasids: BTreeMap<u32, Slot>,
}

/// What a nested device is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    Parent,
    Nested,
    Nothing,
}

/// The host-IOMMU-backed functions, under the BQL (a mutex for `Sync`).
#[derive(Default)]
pub struct NestedDevices(Mutex<Vec<NestedDevice>>);

// SAFETY: the raw pointers are to the PCI bus and to the host IOMMU device,
// which its vfio device keeps (we hold a reference) until unset_iommu_device.
unsafe impl Send for NestedDevices {}
// SAFETY: see `Send`; the list is behind a mutex.
unsafe impl Sync for NestedDevices {}

/// include/hw/iommu.h.
const VIOMMU_CAP_HW_NESTED: u64 = bindings::VIOMMU_CAP_HW_NESTED as u64;

/// Print `msg` as QEMU's `error_report` does (to the monitor or stderr).
pub fn error_report(msg: &str) {
    let text = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    // SAFETY: a "%s" format with one NUL-terminated string argument.
    unsafe { bindings::error_report(c"%s".as_ptr(), text.as_ptr()) };
}

/// Text of a QEMU error, which is freed.
fn take_error(err: *mut bindings::Error) -> String {
    if err.is_null() {
        return "unknown error".into();
    }
    // SAFETY: err is a live Error returned by a failed call; its message is
    // a NUL-terminated string copied before the error is freed.
    unsafe {
        let msg = CStr::from_ptr(bindings::error_get_pretty(err)).to_string_lossy().into_owned();
        bindings::error_free(err);
        msg
    }
}

/// The iommufd host device and the host VT-d's registers of `hiod`.
fn host_vtd(hiod: *mut bindings::HostIOMMUDevice) -> Result<(*mut bindings::HostIOMMUDeviceIOMMUFD, vtd_core::HostVtd), String> {
    // SAFETY: hiod is the live host IOMMU device vfio passes; the cast is
    // checked by QOM.
    let idev = unsafe {
        bindings::object_dynamic_cast(hiod.cast(), c"host-iommu-device-iommufd".as_ptr())
    };
    if idev.is_null() {
        return Err("hardware nested translation needs vfio's iommufd backend \
                    (-object iommufd,id=X -device vfio-pci,...,iommufd=X)"
            .into());
    }
    // SAFETY: an iommufd host device filled its caps at realize.
    let caps = unsafe { &(*hiod).caps };
    if caps.type_ != bindings::IOMMU_HW_INFO_TYPE_INTEL_VTD {
        return Err(format!("the host IOMMU is not a VT-d (iommufd hw_info type {})", caps.type_));
    }
    // SAFETY: the type says the vendor data is the VT-d variant.
    let vtd = unsafe { caps.vendor_caps.vtd };
    Ok((idev.cast(), vtd_core::HostVtd { cap: vtd.cap_reg, ecap: vtd.ecap_reg }))
}

impl NestedDevice {
    fn slot(&self, pasid: Option<u32>) -> Option<&Slot> {
        match pasid {
            None => Some(&self.rid),
            Some(p) => self.pasids.get(&p),
        }
    }

    fn slot_mut(&mut self, pasid: Option<u32>) -> &mut Slot {
        match pasid {
            None => &mut self.rid,
            Some(p) => self.pasids.entry(p).or_insert(Slot { nested: None, attached: Attached::Nothing }),
        }
    }

    /// Attach `hwpt` for requests without PASID or with `pasid` (replacing
    /// what is attached).
    fn attach(&mut self, pasid: Option<u32>, hwpt: u32, what: Attached) -> Result<(), String> {
        let mut err: *mut bindings::Error = null_mut();
        // SAFETY: idev is live while registered; err receives an error.
        let ok = unsafe {
            match pasid {
                None => bindings::host_iommu_device_iommufd_attach_hwpt(self.idev, hwpt, &mut err),
                Some(p) => bindings::host_iommu_device_iommufd_attach_hwpt_pasid(self.idev, p, hwpt, &mut err),
            }
        };
        if ok {
            self.slot_mut(pasid).attached = what;
            Ok(())
        } else {
            Err(take_error(err))
        }
    }

    fn detach(&mut self, pasid: Option<u32>) -> Result<(), String> {
        if pasid.is_some() && self.slot(pasid).is_none_or(|s| s.attached == Attached::Nothing) {
            return Ok(());
        }
        let mut err: *mut bindings::Error = null_mut();
        // SAFETY: as in attach.
        let ok = unsafe {
            match pasid {
                None => bindings::host_iommu_device_iommufd_detach_hwpt(self.idev, &mut err),
                Some(p) => bindings::host_iommu_device_iommufd_detach_hwpt_pasid(self.idev, p, &mut err),
            }
        };
        if ok {
            self.slot_mut(pasid).attached = Attached::Nothing;
            Ok(())
        } else {
            Err(take_error(err))
        }
    }

    /// Free a nested HWPT we allocated on this device's backend (attached
    /// to nothing).
    fn free_hwpt(&self, id: u32) {
        // SAFETY: idev is live while registered; id is a HWPT we allocated
        // on its backend.
        unsafe { bindings::iommufd_backend_free_id((*self.idev).iommufd, id) };
    }

    /// Free the slot's nested HWPT (not attached any more).
    fn free_nested(&mut self, pasid: Option<u32>) {
        if let Some((id, _)) = self.slot_mut(pasid).nested.take() {
            self.free_hwpt(id);
        }
    }

    /// Whether requests without PASID, or with `pasid`, are translated as
    /// `binding` says already.
    fn bound_as(&self, pasid: Option<u32>, binding: vtd_core::HostBinding) -> bool {
        use vtd_core::HostBinding as B;
        let Some(slot) = self.slot(pasid) else {
            return matches!(binding, B::Blocked | B::Unsupported);
        };
        match binding {
            B::Parent => slot.attached == Attached::Parent && slot.nested.is_none(),
            B::Nested { .. } => slot.attached == Attached::Nested && matches!(slot.nested, Some((_, b)) if b == binding),
            B::Blocked | B::Unsupported => slot.attached == Attached::Nothing && slot.nested.is_none(),
        }
    }

    /// Make the host translate requests without PASID, or with `pasid`, as
    /// `binding` says (nothing to do, and no trace, when they are already).
    /// On failure they are left blocked (detached): neither the old first
    /// stage nor guest RAM untranslated.
    fn bind(&mut self, pasid: Option<u32>, binding: vtd_core::HostBinding) -> Result<(), String> {
        if self.bound_as(pasid, binding) {
            return Ok(());
        }
        let result = self.bind_inner(pasid, binding);
        if result.is_err() {
            let _ = self.detach(pasid);
            self.free_nested(pasid);
        }
        // What is attached now, after a failure too.
        let slot = *self.slot_mut(pasid);
        let (what, hwpt) = match slot.attached {
            Attached::Parent => (c"parent", self.parent),
            Attached::Nested => (c"nested", slot.nested.map_or(0, |(id, _)| id)),
            Attached::Nothing => (c"blocked", 0),
        };
        if let Some(p) = pasid {
            if slot.attached == Attached::Nothing && slot.nested.is_none() {
                self.pasids.remove(&p);
            }
        }
        crate::trace::trace_vtd_hw_nested_bind(
            self.source_id(),
            pasid.unwrap_or(0),
            what,
            hwpt,
            if result.is_ok() { 0 } else { -1 },
        );
        result
    }

    fn bind_inner(&mut self, pasid: Option<u32>, binding: vtd_core::HostBinding) -> Result<(), String> {
        use vtd_core::HostBinding as B;
        match binding {
            B::Parent => {
                self.attach(pasid, self.parent, Attached::Parent)?;
                self.free_nested(pasid);
            }
            B::Nested { pgtbl, addr_width, flags, .. } => {
                let mut data = bindings::iommu_hwpt_vtd_s1 {
                    flags: flags.bits(),
                    pgtbl_addr: pgtbl,
                    addr_width: u32::from(addr_width),
                    __reserved: 0,
                };
                // Every HWPT of a function that has PASID attachments must
                // be PASID-compatible (vfio made the parent so).
                let alloc_flags = if self.pasid_bits > 0 { bindings::IOMMU_HWPT_ALLOC_PASID } else { 0 };
                let mut id = 0u32;
                let mut err: *mut bindings::Error = null_mut();
                // SAFETY: idev is live; data is a valid VTD_S1 block for the
                // call; id and err receive the results.
                let ok = unsafe {
                    bindings::iommufd_backend_alloc_hwpt(
                        (*self.idev).iommufd,
                        (*self.idev).devid,
                        self.parent,
                        alloc_flags,
                        bindings::IOMMU_HWPT_DATA_VTD_S1,
                        size_of::<bindings::iommu_hwpt_vtd_s1>() as u32,
                        addr_of_mut!(data).cast(),
                        &mut id,
                        &mut err,
                    )
                };
                if !ok {
                    return Err(take_error(err));
                }
                if let Err(e) = self.attach(pasid, id, Attached::Nested) {
                    self.free_hwpt(id);
                    return Err(e);
                }
                self.free_nested(pasid);
                self.slot_mut(pasid).nested = Some((id, binding));
            }
            B::Blocked | B::Unsupported => {
                self.detach(pasid)?;
                self.free_nested(pasid);
            }
        }
        Ok(())
    }

    /// Forward first-stage invalidations to the nested HWPT attached for
    /// requests without PASID or with `pasid`, in one call when the kernel
    /// takes them all. On failure: the index of the first entry the host
    /// did not carry out, and why.
    fn invalidate(&self, pasid: Option<u32>, invs: &[vtd_core::S1Invalidation]) -> Result<(), (usize, String)> {
        let Some(&Slot { nested: Some((id, _)), attached: Attached::Nested }) = self.slot(pasid) else {
            return Ok(());
        };
        if invs.is_empty() {
            return Ok(());
        }
        let mut entries: Vec<bindings::iommu_hwpt_vtd_s1_invalidate> = invs
            .iter()
            .map(|i| bindings::iommu_hwpt_vtd_s1_invalidate {
                addr: i.addr,
                npages: i.npages,
                flags: if i.leaf { bindings::IOMMU_VTD_INV_FLAGS_LEAF } else { 0 },
                __reserved: 0,
            })
            .collect();
        let mut done = 0usize;
        let mut calls = 0u32;
        let mut result = Ok(());
        while done < entries.len() {
            let mut num = u32::try_from(entries.len() - done).unwrap_or(u32::MAX);
            calls += 1;
            let mut err: *mut bindings::Error = null_mut();
            // SAFETY: the entries are valid VTD_S1 invalidation records;
            // num and err receive the results.
            let ok = unsafe {
                bindings::iommufd_backend_invalidate_cache(
                    (*self.idev).iommufd,
                    id,
                    bindings::IOMMU_HWPT_INVALIDATE_DATA_VTD_S1,
                    size_of::<bindings::iommu_hwpt_vtd_s1_invalidate>() as u32,
                    &mut num,
                    entries[done..].as_mut_ptr().cast(),
                    &mut err,
                )
            };
            if !ok {
                // num: the entries the host carried out before the failure.
                let failed = (done + num as usize).min(entries.len() - 1);
                result = Err((failed, take_error(err)));
                break;
            }
            if num == 0 {
                result = Err((done, "the host accepted no invalidation".into()));
                break;
            }
            done += num as usize;
        }
        crate::trace::trace_vtd_hw_nested_invalidate(
            self.source_id(),
            pasid.unwrap_or(0),
            id,
            u32::try_from(invs.len()).unwrap_or(u32::MAX),
            calls,
            if result.is_ok() { 0 } else { -1 },
        );
        result
    }

    /// Back to the parent for requests without PASID, every PASID
    /// detached, our HWPTs freed (before the function goes away).
    fn release(&mut self) {
        let pasids: Vec<u32> = self.pasids.keys().copied().collect();
        for p in pasids {
            let _ = self.detach(Some(p));
            self.free_nested(Some(p));
        }
        self.pasids.clear();
        let _ = self.attach(None, self.parent, Attached::Parent);
        self.free_nested(None);
    }

    pub fn source_id(&self) -> u16 {
        sid_of(self.bus, self.devfn)
    }
}

/// What the planner needs to know of one nested function.
pub struct NestedState {
    pub sid: u16,
    /// The host enabled PASIDs for it.
    pub pasid_capable: bool,
    /// The (DID, PASID) of the guest entry each nested HWPT binds: `None`
    /// for requests without PASID.
    pub nested: Vec<(Option<u32>, (u16, u32))>,
    /// The PASIDs bound now (not blocked).
    pub bound_pasids: Vec<u32>,
}

impl NestedDevices {
    /// No function is translated by the host IOMMU.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<NestedDevice>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What each nested device has bound.
    pub fn snapshot(&self) -> Vec<NestedState> {
        self.lock()
            .iter()
            .map(|d| {
                let slots = std::iter::once((None, &d.rid)).chain(d.pasids.iter().map(|(p, s)| (Some(*p), s)));
                let nested = slots
                    .filter_map(|(key, s)| match s.nested {
                        Some((_, vtd_core::HostBinding::Nested { did, pasid, .. })) if s.attached == Attached::Nested => {
                            Some((key, (did, pasid)))
                        }
                        _ => None,
                    })
                    .collect();
                NestedState {
                    sid: d.source_id(),
                    pasid_capable: d.pasid_bits > 0,
                    nested,
                    bound_pasids: d.pasids.keys().copied().collect(),
                }
            })
            .collect()
    }

    /// Apply the planned binding changes and invalidations (under the BQL).
    /// Every failure is logged; the first one is returned, for the guest to
    /// see as an error of the descriptor it came from.
    pub fn apply(&self, plan: &[NestedPlan]) -> Option<HostFailure> {
        let mut list = self.lock();
        let mut first: Option<HostFailure> = None;
        let mut failed = |source: Option<u16>, msg: String| {
            util::log_mask_ln!(util::log::Log::GuestError, "intel-iommu: {msg}");
            if first.is_none() {
                first = Some(HostFailure { source, msg });
            }
        };
        for p in plan {
            let sid = p.sid;
            let Some(d) = list.iter_mut().find(|d| d.source_id() == sid) else { continue };
            if p.pasids_truncated {
                util::log_mask_ln!(
                    util::log::Log::GuestError,
                    "intel-iommu: {sid:04x} has more than {} PASID entries; the host binds the \
                     first ones, requests with the others are blocked",
                    vtd_core::nesting::hw_nest::MAX_HOST_PASIDS
                );
            }
            for &(pasid, b, source) in &p.bindings {
                let what = match pasid {
                    None => format!("{sid:04x}"),
                    Some(n) => format!("{sid:04x} PASID {n}"),
                };
                if b == vtd_core::HostBinding::Unsupported {
                    util::log_mask_ln!(
                        util::log::Log::GuestError,
                        "intel-iommu: {what} is translated by the host IOMMU, which can only \
                         nest a first-stage table: its second-stage or nested PASID entry blocks DMA"
                    );
                }
                if let Err(e) = d.bind(pasid, b) {
                    failed(source, format!("host binding of {what} failed (DMA blocked): {e}"));
                }
            }
            // One call per HWPT: the invalidations grouped by what they are
            // for, in order.
            let mut keys: Vec<Option<u32>> = Vec::new();
            for (key, _, _) in &p.invalidations {
                if !keys.contains(key) {
                    keys.push(*key);
                }
            }
            for key in keys {
                let mine: Vec<_> = p.invalidations.iter().filter(|(k, _, _)| *k == key).collect();
                let invs: Vec<_> = mine.iter().map(|(_, inv, _)| *inv).collect();
                if let Err((index, e)) = d.invalidate(key, &invs) {
                    let source = mine.get(index).and_then(|(_, _, s)| *s);
                    failed(source, format!("host invalidation for {sid:04x} failed: {e}"));
                }
            }
        }
        first
    }
}

/// What one host-IOMMU-backed function needs after a batch of guest
/// invalidations (planned with the core locked, applied after).
pub struct NestedPlan {
    pub sid: u16,
    /// New bindings for requests without PASID (`None`) or with a PASID,
    /// each with the queue descriptor whose invalidation asked for it
    /// (`None`: a register write, reset, or attach).
    pub bindings: Vec<(Option<u32>, vtd_core::HostBinding, Option<u16>)>,
    /// First-stage invalidations to forward to the HWPT of requests
    /// without PASID or with a PASID, each with its queue descriptor.
    pub invalidations: Vec<(Option<u32>, vtd_core::S1Invalidation, Option<u16>)>,
    /// More PASID entries are present than the host binds.
    pub pasids_truncated: bool,
}

/// A binding or invalidation the host IOMMU did not carry out.
pub struct HostFailure {
    /// The invalidation queue descriptor it came from, if any.
    pub source: Option<u16>,
    pub msg: String,
}

/// # Safety
/// Called by the PCI core with our device as opaque.
unsafe extern "C" fn vtd_get_viommu_cap(opaque: *mut c_void) -> u64 {
    // SAFETY: opaque is the device registered in pci_setup_iommu.
    let owner = unsafe { &*opaque.cast::<IntelIommuState>() };
    if owner.hw_nested() {
        VIOMMU_CAP_HW_NESTED
    } else {
        0
    }
}

/// The check every mode makes (as the C device): the host IOMMU must take
/// the guest's IOVAs, `aw-bits` wide.
fn check_host_address_width(owner: &IntelIommuState, hiod: *mut bindings::HostIOMMUDevice) -> Result<(), String> {
    // SAFETY: hiod is a live host IOMMU device; its class is a
    // HostIOMMUDeviceClass (QOM type hierarchy).
    let get_cap = unsafe {
        let klass = bindings::object_get_class(hiod.cast()).cast::<bindings::HostIOMMUDeviceClass>();
        (*klass).get_cap
    };
    let Some(get_cap) = get_cap else {
        return Err(".get_cap() not implemented".into());
    };
    let mut err: *mut bindings::Error = null_mut();
    // SAFETY: hiod is live; err receives an error.
    let host = unsafe { get_cap(hiod, bindings::HOST_IOMMU_DEVICE_CAP_AW_BITS as c_int, &mut err) };
    if host < 0 {
        return Err(take_error(err));
    }
    let guest = i32::from(owner.aw_bits());
    if guest > host {
        return Err(format!("aw-bits {guest} > host aw-bits {host}"));
    }
    Ok(())
}

/// Take `hiod` (a live host IOMMU device) for function (bus, devfn):
/// check the host, keep the function's DMA in guest RAM (vfio's nesting
/// parent) and bind it as the guest's tables say.
fn bind_host_device(
    owner: &IntelIommuState,
    bus: *mut bindings::PCIBus,
    devfn: u8,
    hiod: *mut bindings::HostIOMMUDevice,
) -> Result<(), String> {
    let (idev, host) = host_vtd(hiod)?;
    check_host_address_width(owner, hiod)?;
    owner.check_host(&host)?;
    owner.address_spaces().space(owner, bus, devfn, None).pin_identity();
    // SAFETY: hiod is live; the reference is dropped in unset.
    unsafe { bindings::object_ref(hiod.cast()) };
    // SAFETY: idev is the iommufd host device; hwpt_id is vfio's default;
    // the caps were filled at its realize.
    let (parent, pasid_bits) = unsafe { ((*idev).hwpt_id, (*hiod).caps.max_pasid_log2) };
    owner.nested_devices().lock().push(NestedDevice {
        bus,
        devfn,
        idev,
        parent,
        pasid_bits,
        rid: Slot { nested: None, attached: Attached::Parent },
        pasids: BTreeMap::new(),
    });
    owner.rebind_nested(sid_of(bus, devfn));
    Ok(())
}

/// # Safety
/// Called by the PCI core (under the BQL) with our device as opaque, a live
/// host IOMMU device and a valid errp.
unsafe extern "C" fn vtd_set_iommu_device(
    bus: *mut bindings::PCIBus,
    opaque: *mut c_void,
    devfn: c_int,
    hiod: *mut bindings::HostIOMMUDevice,
    errp: *mut *mut bindings::Error,
) -> bool {
    // SAFETY: opaque is the device registered in pci_setup_iommu.
    let owner = unsafe { &*opaque.cast::<IntelIommuState>() };
    let devfn = devfn as u8;
    let result = if owner.hw_nested() {
        bind_host_device(owner, bus, devfn, hiod)
    } else if owner.first_stage_advertised() {
        // Neither shadowing (first-stage tables) nor nesting (no caching mode).
        Err("with first-stage translation (x-scalable-mode=modern, x-flts or fsts) a host \
             device can only be assigned through hardware nested translation, which needs \
             caching-mode=on"
            .to_string())
    } else {
        check_host_address_width(owner, hiod)
    };
    match result {
        Ok(()) => true,
        Err(why) => {
            // SAFETY: the bus is live.
            let num = unsafe { bindings::pci_bus_num(bus) };
            let err = util::Error::format(format_args!(
                "intel-iommu: device {:02x}:{:02x}.{:x}: {why}",
                num,
                devfn >> 3,
                devfn & 7
            ));
            // SAFETY: errp comes from pci_device_set_iommu_device.
            unsafe { err.propagate(errp.cast()) };
            false
        }
    }
}

/// # Safety
/// Called by the PCI core (under the BQL) with our device as opaque.
unsafe extern "C" fn vtd_unset_iommu_device(bus: *mut bindings::PCIBus, opaque: *mut c_void, devfn: c_int) {
    // SAFETY: opaque is the device registered in pci_setup_iommu.
    let owner = unsafe { &*opaque.cast::<IntelIommuState>() };
    let devfn = devfn as u8;
    let removed = {
        let mut list = owner.nested_devices().lock();
        list.iter().position(|d| d.bus == bus && d.devfn == devfn).map(|i| list.remove(i))
    };
    let Some(mut d) = removed else { return };
    // Back to the parent (vfio detaches from it), then drop our HWPTs.
    d.release();
    // SAFETY: the reference taken in vtd_set_iommu_device.
    unsafe { bindings::object_unref(d.idev.cast()) };
    // A function plugged here later is translated as the tables say (the
    // nested lock is released: the core lock comes first).
    let identity = owner.is_identity(sid_of(bus, devfn));
    owner.address_spaces().space(owner, bus, devfn, None).unpin_identity(identity);
}
