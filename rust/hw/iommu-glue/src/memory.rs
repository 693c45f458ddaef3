// SPDX-License-Identifier: GPL-2.0-or-later

//! The memory API: the IOMMU's own accesses to guest memory
//! (`address_space_*` on system memory), MSI stores, and the register
//! window created at realize.

use std::{ffi::c_void, ptr::addr_of_mut};

use iommu_core::memory::{GuestMemory, MemError};

use crate::bindings;

/// System memory as seen by an IOMMU's table walks and writes.
pub struct SystemMemory;

#[inline]
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
    #[inline]
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        // buf is exclusively borrowed for the call: C may write to it.
        system_memory_rw(addr, buf.as_mut_ptr().cast(), buf.len(), false)
    }

    /// Table entries are read one quadword at a time: the memory core's
    /// load helper is about half the cost of `address_space_rw`. Only
    /// aligned quadwords (always within one page, so within one region)
    /// take it.
    #[inline]
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

    #[inline]
    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemError> {
        // With is_write, C only reads the buffer.
        system_memory_rw(addr, buf.as_ptr().cast_mut().cast(), buf.len(), true)
    }
}

/// Deliver an MSI to the interrupt controller: a 32-bit little-endian
/// store of `data` at `address` in system memory. Callable without the
/// BQL (the store is a memory transaction like a device's DMA).
pub fn store_msi(address: u64, data: u32) -> Result<(), MemError> {
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
    if result == bindings::MEMTX_OK {
        Ok(())
    } else {
        Err(MemError)
    }
}

/// Initialise `iomem`, a field of the device `owner` left zeroed by QOM, as
/// an I/O region named `name` of `size` bytes whose callbacks `ops` get the
/// device: what the Rust wrapper's `MemoryRegion::init_io` does at instance
/// init, for a device that creates its register window at realize as the
/// C devices do (so that QOM shows no child region before).
///
/// # Safety
/// `owner` is the live device (a QOM object of type `T`) that holds
/// `iomem`; `iomem` has not been initialised yet.
pub unsafe fn init_register_window<T>(
    owner: *mut c_void,
    iomem: &system::MemoryRegion,
    ops: &'static system::MemoryRegionOps<T>,
    name: &std::ffi::CStr,
    size: u64,
) {
    // The wrapper is the C ops struct and a zero-sized marker: equal sizes
    // put the C struct at offset 0, so a pointer to it is one to the ops.
    const {
        assert!(std::mem::size_of::<system::MemoryRegionOps<T>>() == std::mem::size_of::<bindings::MemoryRegionOps>());
    }
    // SAFETY: per the contract; ops is static and its callbacks take the
    // owner as opaque, as the wrapper's init_io passes it; the memory API
    // copies the name.
    unsafe {
        bindings::memory_region_init_io(
            iomem.as_mut_ptr().cast(),
            owner.cast(),
            std::ptr::from_ref(ops).cast(),
            owner,
            name.as_ptr(),
            size,
        );
    }
}
