//! Guest physical memory as seen by an IOMMU.
//!
//! Conventions: every structure the hardware reads or writes in guest
//! memory (stream/root/context tables, paging entries, queue entries,
//! status writes) is little-endian. Addresses are guest
//! physical addresses. A failed access is reported as [`MemError`] and is
//! turned by the caller into the architected fault or queue error; it is
//! never a panic.

use std::fmt;

/// A guest memory access did not complete (unmapped address, MMIO that
/// rejected the access, ...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MemError;

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("guest memory access failed")
    }
}

impl std::error::Error for MemError {}

/// DMA access to guest memory on behalf of the IOMMU itself.
///
/// Implementors only provide [`read`](GuestMemory::read) and
/// [`write`](GuestMemory::write); the fixed-width helpers are little-endian.
pub trait GuestMemory {
    /// Fill `buf` from guest physical address `addr`.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError>;
    /// Store `buf` at guest physical address `addr`.
    fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemError>;

    /// Read a little-endian `u32`.
    fn read_u32(&self, addr: u64) -> Result<u32, MemError> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Read a little-endian `u64`.
    fn read_u64(&self, addr: u64) -> Result<u64, MemError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Read a 128-bit structure as its (low, high) little-endian quadwords.
    fn read_u128_pair(&self, addr: u64) -> Result<(u64, u64), MemError> {
        let mut b = [0u8; 16];
        self.read(addr, &mut b)?;
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        lo.copy_from_slice(&b[..8]);
        hi.copy_from_slice(&b[8..]);
        Ok((u64::from_le_bytes(lo), u64::from_le_bytes(hi)))
    }

    /// Write a little-endian `u32`.
    fn write_u32(&self, addr: u64, val: u32) -> Result<(), MemError> {
        self.write(addr, &val.to_le_bytes())
    }

    /// Write a little-endian `u64`.
    fn write_u64(&self, addr: u64, val: u64) -> Result<(), MemError> {
        self.write(addr, &val.to_le_bytes())
    }
}
