// SPDX-License-Identifier: GPL-2.0-or-later

//! The local APICs' message bus: `APICCommonClass::send_msi`
//! (hw/i386/apic_internal.h), through which the C device delivers remapped
//! interrupts. Unlike a store to the APIC's 32-bit MSI window it takes the
//! whole 64-bit message address, so an x2APIC destination above 255
//! (IRTE destination bits 31:8 in address bits 63:40) reaches its CPU,
//! and an xAPIC CPU sees destination bits 7:0 only, as with the C device;
//! under KVM the class is `kvm-apic`, whose `send_msi` injects through KVM.
//!
//! `apic_internal.h` includes the target's `cpu.h`, which this crate's
//! bindgen cannot read, so the class's layout is declared here: QEMU
//! 10.2.2's `APICCommonClass` is a `DeviceClass` followed by twelve
//! function pointers, `send_msi` the last. [`send_msi`] checks at run time
//! that the class it gets is an `apic-common` class.

use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::OnceLock;

use crate::bindings;

/// The head of QEMU 10.2.2's `APICCommonClass` up to `send_msi`.
#[repr(C)]
struct ApicCommonClassHead {
    parent_class: bindings::DeviceClass,
    /// realize, unrealize, set_base, set_tpr, get_tpr,
    /// enable_tpr_reporting, vapic_base_update, external_nmi, pre_save,
    /// post_load, reset.
    _hooks: [*const c_void; 11],
    send_msi: Option<SendMsi>,
}

extern "C" {
    /// hw/intc/apic_common.c: the APIC class of the accelerator in use.
    fn apic_get_class(errp: *mut *mut bindings::Error) -> *mut ApicCommonClassHead;
}

type SendMsi = unsafe extern "C" fn(msi: *mut bindings::MSIMessage);

/// The accelerator's `send_msi`, once looked up (`None`: no APIC class).
static SEND_MSI: OnceLock<Option<SendMsi>> = OnceLock::new();

fn lookup() -> Option<SendMsi> {
    // SAFETY: apic_get_class only reads the accelerator's state and QOM's
    // type table; with a null errp it reports nothing.
    let klass = unsafe { apic_get_class(null_mut()) };
    if klass.is_null() {
        return None;
    }
    // SAFETY: `klass` is a live ObjectClass (QOM classes are never freed);
    // the cast check only reads its type.
    let is_apic = unsafe {
        !bindings::object_class_dynamic_cast(klass.cast(), c"apic-common".as_ptr()).is_null()
    };
    if !is_apic {
        return None;
    }
    // SAFETY: an apic-common class has the layout of ApicCommonClassHead
    // (see the module documentation); the field is set in class_init.
    unsafe { (*klass).send_msi }
}

/// Deliver an interrupt message to the local APICs as the C device does;
/// false if there is no APIC bus to deliver on.
pub(crate) fn send_msi(address: u64, data: u32) -> bool {
    let Some(f) = *SEND_MSI.get_or_init(lookup) else {
        return false;
    };
    let mut msg = bindings::MSIMessage { address, data };
    // SAFETY: `f` is the APIC class's send_msi; it reads the message during
    // the call. Our callers run where the C device calls it (the interrupt
    // window's write handler).
    unsafe { f(&mut msg) };
    true
}
