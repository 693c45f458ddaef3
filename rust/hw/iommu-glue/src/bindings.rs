// SPDX-License-Identifier: GPL-2.0-or-later
#![allow(
    dead_code,
    improper_ctypes_definitions,
    improper_ctypes,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    unnecessary_transmutes,
    unsafe_op_in_unsafe_fn,
    unused_imports,
    clippy::pedantic,
    clippy::restriction,
    clippy::style,
    clippy::missing_const_for_fn,
    clippy::ptr_offset_with_cast,
    clippy::useless_transmute,
    clippy::missing_safety_doc,
    clippy::too_many_arguments
)]

//! `bindgen`-generated declarations for the memory API and PCI.
//! Only `memory.rs` and `ats.rs` use them.

pub use chardev::bindings::Chardev;
use glib_sys::{
    gboolean, guint, GArray, GByteArray, GHashTable, GHashTableIter, GIOCondition, GList,
    GMainContext, GMappedFile, GPollFD, GPtrArray, GSList, GSource, GSourceFunc, GString,
};
pub use hwcore::bindings::{DeviceClass, DeviceState, SysBusDevice, SysBusDeviceClass};
pub use migration::bindings::VMStateDescription;
pub use qom::bindings::{Object, ObjectClass, TypeInfo};
pub use system::bindings::MemoryRegion;
pub use util::bindings::Error;

#[cfg(MESON)]
include!("bindings.inc.rs");

#[cfg(not(MESON))]
include!(concat!(env!("OUT_DIR"), "/bindings.inc.rs"));
