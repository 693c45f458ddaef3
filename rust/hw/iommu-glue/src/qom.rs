// SPDX-License-Identifier: GPL-2.0-or-later

//! QOM: property help texts (`-device <type>,help`) for a class whose
//! properties come from it and from its parents.

use std::ffi::CStr;

use crate::bindings;

/// The class among `oc` and its ancestors that registered property `name`,
/// or null.
fn property_owner(oc: *mut bindings::ObjectClass, name: &CStr) -> *mut bindings::ObjectClass {
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

/// Give each `(property, text)` its description, on whichever class of
/// `oc`'s ancestry registered the property (QOM only looks at the class
/// itself); unknown names are skipped.
pub fn describe_properties(oc: *mut qom::bindings::ObjectClass, help: &[(&CStr, &CStr)]) {
    let oc: *mut bindings::ObjectClass = oc.cast();
    for (name, text) in help {
        let owner = property_owner(oc, name);
        if !owner.is_null() {
            // SAFETY: `owner` is a class whose own table holds `name` (the
            // C function dereferences the lookup unchecked); the strings
            // are 'static and copied.
            unsafe { bindings::object_class_property_set_description(owner, name.as_ptr(), text.as_ptr()) };
        }
    }
}
