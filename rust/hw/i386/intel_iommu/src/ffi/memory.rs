// SPDX-License-Identifier: GPL-2.0-or-later

//! The memory API: guest memory for the IOMMU's own DMA (`address_space_*` on system memory), MSIs, and mapping the register window.

use std::{
    ffi::c_void,
    ptr::addr_of_mut,
};

use vtd_core::{GuestMemory, MemError};

use crate::bindings;
// The other interfaces' items (some modules use none).
#[allow(unused_imports)]
use super::*;

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
