// SPDX-License-Identifier: GPL-2.0-or-later

//! The string-valued `x-scalable-mode` / `scalable-mode` qdev property type (QEMU's Rust qdev properties cover bool and integers only).

use std::{
    ffi::{c_char, c_void},
    mem::size_of,
};


use crate::bindings;
// The other interfaces' items (some modules use none).
#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------
// The property type of `x-scalable-mode` and `scalable-mode`: a string
// (off, on, legacy, modern and the boolean spellings) that, like the C
// device's boolean `x-scalable-mode`, also takes a JSON boolean (-device
// JSON syntax, device_add): false is "off", true "on". The field is a
// `char *` as with qdev's string properties, NULL while unset. Both read
// back the mode in effect (`off` by default), as a string.

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
    // SAFETY: obj is our device (the property is only on intel-iommu);
    // name is the property's NUL-terminated name; the field is NULL or a
    // string; output visitors only read the value.
    unsafe {
        let owner = &*obj.cast::<crate::device::IntelIommuState>();
        let new_name = std::ffi::CStr::from_ptr(name) == c"scalable-mode";
        let mut s: *mut c_char = match owner.scalable_mode_name(new_name) {
            // The mode in effect, whichever property set it.
            Some(mode) => mode.as_ptr().cast_mut(),
            // Invalid or contradictory values: what was written.
            None => {
                let field = string_field(obj, opaque);
                if (*field).is_null() { c"".as_ptr().cast_mut() } else { *field }
            }
        };
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
