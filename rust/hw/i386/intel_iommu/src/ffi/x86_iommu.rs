// SPDX-License-Identifier: GPL-2.0-or-later

//! The parent type `x86-iommu` (X86IOMMUState/X86IOMMUClass): its properties, class initialisation, realize, and the interrupt-remapping hooks it calls (`int_remap`, IEC notifiers).

use std::{
    ffi::{c_int, CStr},
    ptr::NonNull,
    sync::OnceLock,
};

use common::Opaque;
use hwcore::{DeviceState, SysBusDevice};
use qom::{prelude::*, qom_isa, ObjectType};

use crate::{bindings, device::IntelIommuState};
// The other interfaces' items (some modules use none).
#[allow(unused_imports)]
use super::*;

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
    iommu_glue::qom::describe_properties(&mut dc.parent_class, crate::device::PROPERTY_HELP);
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

extern "C" {
    /// hw/i386/x86-iommu.c (patches/0001): with a split irqchip, enable
    /// KVM's x2APIC API; false when KVM lacks it.
    fn x86_iommu_kvm_x2apic_for_eim() -> bool;
}

/// With a split irqchip, KVM's x2APIC API (32-bit destinations), which
/// interrupt remapping in x2APIC mode needs: false when KVM lacks it.
pub fn kvm_x2apic_for_eim() -> bool {
    // SAFETY: no arguments; callable at realize (KVM is initialised by then).
    unsafe { x86_iommu_kvm_x2apic_for_eim() }
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
