// SPDX-License-Identifier: GPL-2.0-or-later

//! The abstract parent `arm-smmu`: its `primary-bus` link property (a qdev
//! link, which QEMU's Rust property derive does not declare).

use std::{cell::UnsafeCell, mem::offset_of, ptr::null_mut};

use crate::{bindings, device::ArmSmmuState};

/// The `primary-bus` link: a strong reference to the PCI bus, set by QOM
/// through the field's offset (before realize, under the BQL).
#[repr(transparent)]
pub struct PrimaryBus(UnsafeCell<*mut bindings::PCIBus>);

// SAFETY: written by QOM's link setter under the BQL before realize, only
// read afterwards.
unsafe impl Send for PrimaryBus {}
// SAFETY: see `Send`.
unsafe impl Sync for PrimaryBus {}

impl Default for PrimaryBus {
    fn default() -> Self {
        PrimaryBus(UnsafeCell::new(null_mut()))
    }
}

impl PrimaryBus {
    /// The bus, or null when the property was not set.
    pub fn get(&self) -> *mut bindings::PCIBus {
        // SAFETY: a plain read of the pointer QOM stored (see the type).
        unsafe { *self.0.get() }
    }
}

/// Add `primary-bus` to the class of `arm-smmu`, as qdev's
/// `DEFINE_PROP_LINK("primary-bus", ..., TYPE_PCI_BUS, PCIBus *)` does:
/// settable until realize, holding a strong reference.
pub fn add_primary_bus_property(klass: *mut bindings::ObjectClass) {
    const { assert!(size_of::<PrimaryBus>() == size_of::<*mut bindings::PCIBus>()) };
    // SAFETY: `klass` is the class being initialised; the offset is that
    // of a pointer-sized field of every instance; the strings are static.
    unsafe {
        bindings::object_class_property_add_link(
            klass,
            c"primary-bus".as_ptr(),
            c"PCI".as_ptr(),
            offset_of!(ArmSmmuState, primary_bus) as isize,
            Some(bindings::qdev_prop_allow_set_link_before_realize),
            bindings::OBJ_PROP_LINK_STRONG,
        );
    }
}
