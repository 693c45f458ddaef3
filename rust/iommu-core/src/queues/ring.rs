//! Circular queues in guest memory.
//!
//! Both IOMMUs keep queues of fixed-size entries in guest memory, indexed
//! by a producer and a consumer register:
//! * the guest produces and the IOMMU consumes: the VT-d invalidation
//!   queue, the SMMUv3 command queue;
//! * the IOMMU produces and the guest consumes: the SMMUv3 event and PRI
//!   queues (a VT-d page request queue has the same shape).
//!
//! Two index conventions exist. [`Wrapped`] is the SMMUv3's: a queue of
//! 2^`log2` entries is indexed by `log2` index bits plus a wrap bit above
//! them, empty when the indices are equal and full when only the wrap bits
//! differ, so all entries are usable. [`Plain`] is VT-d's: bare indices,
//! empty when equal, and (for a queue the unit produces) full when one
//! more entry would make them equal, so one entry stays unused.
//!
//! [`Ring`] is where the entries are; [`Ring::read`] fetches the entry at
//! an index, [`Ring::write`] stores one. A queue too large for the address
//! space wraps its addresses (never panics); an access that fails is a
//! [`MemError`] the model turns into its architected error.

use crate::memory::{GuestMemory, MemError};

/// Where a queue's entries are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ring {
    /// Guest physical address of entry 0.
    pub base: u64,
    /// log2 of the number of entries (at most 31).
    pub log2: u8,
    /// Bytes per entry.
    pub entry_bytes: u32,
}

impl Ring {
    /// A ring of 2^`log2` entries of `entry_bytes` at `base` (`log2` is
    /// capped at 31).
    #[inline]
    pub fn new(base: u64, log2: u8, entry_bytes: u32) -> Ring {
        Ring { base, log2: log2.min(31), entry_bytes }
    }

    /// Number of entries.
    #[inline]
    pub fn entries(&self) -> u32 {
        1u32 << self.log2.min(31)
    }

    /// Address of the entry with index `index` (taken modulo the size).
    #[inline]
    pub fn slot(&self, index: u32) -> u64 {
        let i = u64::from(index & (self.entries() - 1));
        self.base.wrapping_add(i.wrapping_mul(u64::from(self.entry_bytes)))
    }

    /// Read the entry at `index` into `buf` (its first `entry_bytes`).
    pub fn read(&self, mem: &dyn GuestMemory, index: u32, buf: &mut [u8]) -> Result<(), MemError> {
        let n = buf.len().min(self.entry_bytes as usize);
        mem.read(self.slot(index), &mut buf[..n])
    }

    /// Read the entry at `index` as little-endian quadwords, in one
    /// access for up to four (a guest memory access costs far more than
    /// its bytes): its first `N` quadwords, or all of a shorter entry with
    /// the rest zero.
    #[inline]
    pub fn read_words<const N: usize>(&self, mem: &dyn GuestMemory, index: u32) -> Result<[u64; N], MemError> {
        const MAX: usize = 4;
        let mut words = [0u64; N];
        let count = N.min(self.entry_bytes as usize / 8);
        let base = self.slot(index);
        if count <= MAX {
            let mut b = [0u8; 8 * MAX];
            mem.read(base, &mut b[..8 * count])?;
            for (w, q) in words.iter_mut().zip(b.chunks_exact(8)).take(count) {
                let mut le = [0u8; 8];
                le.copy_from_slice(q);
                *w = u64::from_le_bytes(le);
            }
        } else {
            for (i, w) in words.iter_mut().enumerate().take(count) {
                *w = mem.read_u64(base.wrapping_add(8 * i as u64))?;
            }
        }
        Ok(words)
    }

    /// Store `data` (at most `entry_bytes` of it) as the entry at `index`.
    pub fn write(&self, mem: &dyn GuestMemory, index: u32, data: &[u8]) -> Result<(), MemError> {
        let n = data.len().min(self.entry_bytes as usize);
        mem.write(self.slot(index), &data[..n])
    }
}

/// SMMUv3-style indices: `log2` index bits and a wrap bit above them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Wrapped {
    /// The index (low `log2` bits) and wrap bit (bit `log2`); higher bits
    /// are ignored.
    pub value: u32,
}

impl Wrapped {
    #[inline]
    fn mask(log2: u8) -> u32 {
        // Arithmetic: the index with its wrap bit, 2^(log2 + 1) - 1.
        (2u32 << log2.min(31)).wrapping_sub(1)
    }

    /// The index part.
    #[inline]
    pub fn index(self, log2: u8) -> u32 {
        self.value & (Self::mask(log2) >> 1)
    }

    /// The wrap bit.
    #[inline]
    pub fn wrap(self, log2: u8) -> bool {
        self.value & (1u32 << log2.min(31)) != 0
    }

    /// The next index, toggling the wrap bit after the last entry.
    #[inline]
    pub fn next(self, log2: u8) -> Wrapped {
        Wrapped { value: self.value.wrapping_add(1) & Self::mask(log2) }
    }

    /// The queue holds no entry.
    #[inline]
    pub fn empty(prod: Wrapped, cons: Wrapped, log2: u8) -> bool {
        prod.value & Self::mask(log2) == cons.value & Self::mask(log2)
    }

    /// Every entry is in use.
    #[inline]
    pub fn full(prod: Wrapped, cons: Wrapped, log2: u8) -> bool {
        prod.index(log2) == cons.index(log2) && prod.wrap(log2) != cons.wrap(log2)
    }

    /// Entries in use.
    #[inline]
    pub fn used(prod: Wrapped, cons: Wrapped, log2: u8) -> u32 {
        let size = 1u32 << log2.min(31);
        if Self::full(prod, cons, log2) {
            size
        } else {
            prod.index(log2).wrapping_sub(cons.index(log2)) & (size - 1)
        }
    }
}

/// VT-d-style bare indices into a queue of 2^`log2` entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Plain;

impl Plain {
    /// The index after `index`.
    #[inline]
    pub fn next(index: u32, log2: u8) -> u32 {
        index.wrapping_add(1) & ((1u32 << log2.min(31)) - 1)
    }

    /// The queue holds no entry.
    #[inline]
    pub fn empty(head: u32, tail: u32) -> bool {
        head == tail
    }

    /// A queue the unit produces is full: one more entry would make it
    /// look empty.
    #[inline]
    pub fn full(head: u32, tail: u32, log2: u8) -> bool {
        Self::next(tail, log2) == head
    }
}

/// Why an entry could not be produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProduceError {
    /// No free entry: the record is lost (the model sets its overflow
    /// state).
    Full,
    /// The entry could not be written.
    Memory,
}

/// Produce `record` at `prod` of a [`Wrapped`] queue the guest consumes up
/// to `cons`; returns the new producer index.
pub fn produce(
    mem: &dyn GuestMemory,
    ring: &Ring,
    prod: Wrapped,
    cons: Wrapped,
    record: &[u8],
) -> Result<Wrapped, ProduceError> {
    if Wrapped::full(prod, cons, ring.log2) {
        return Err(ProduceError::Full);
    }
    ring.write(mem, prod.index(ring.log2), record).map_err(|_| ProduceError::Memory)?;
    Ok(prod.next(ring.log2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Mem(RefCell<HashMap<u64, u8>>, u64);

    impl GuestMemory for Mem {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
            for (i, b) in buf.iter_mut().enumerate() {
                let a = addr.wrapping_add(i as u64);
                if a >= self.1 {
                    return Err(MemError);
                }
                *b = *self.0.borrow().get(&a).unwrap_or(&0);
            }
            Ok(())
        }
        fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemError> {
            for (i, b) in buf.iter().enumerate() {
                let a = addr.wrapping_add(i as u64);
                if a >= self.1 {
                    return Err(MemError);
                }
                self.0.borrow_mut().insert(a, *b);
            }
            Ok(())
        }
    }

    #[test]
    fn wrapped_indices_use_every_entry() {
        let log2 = 2;
        let (mut prod, cons) = (Wrapped::default(), Wrapped::default());
        assert!(Wrapped::empty(prod, cons, log2));
        for n in 1..=4 {
            prod = prod.next(log2);
            assert_eq!(Wrapped::used(prod, cons, log2), n);
        }
        assert!(Wrapped::full(prod, cons, log2));
        assert_eq!((prod.index(log2), prod.wrap(log2)), (0, true));
        // Bits above the wrap bit are ignored.
        let noisy = Wrapped { value: prod.value | 0x8000_0000 };
        assert!(Wrapped::full(noisy, cons, log2));
        assert_eq!(prod.next(log2).next(log2).next(log2).next(log2), Wrapped::default());
    }

    #[test]
    fn plain_indices_keep_one_entry_free() {
        assert!(Plain::empty(3, 3));
        assert!(Plain::full(0, 3, 2));
        assert!(!Plain::full(1, 3, 2));
        assert_eq!(Plain::next(3, 2), 0);
    }

    #[test]
    fn produce_writes_until_full_and_reports_memory_errors() {
        let mem = Mem(RefCell::default(), 0x2000);
        let ring = Ring::new(0x1000, 1, 32);
        let cons = Wrapped::default();
        let p1 = produce(&mem, &ring, Wrapped::default(), cons, &[0xaa; 32]).unwrap();
        let p2 = produce(&mem, &ring, p1, cons, &[0xbb; 32]).unwrap();
        assert_eq!(produce(&mem, &ring, p2, cons, &[0xcc; 32]), Err(ProduceError::Full));
        assert_eq!(ring.read_words::<4>(&mem, 1).unwrap(), [0xbbbb_bbbb_bbbb_bbbb; 4]);
        let narrow = Ring::new(0x1000, 2, 16);
        assert_eq!(narrow.read_words::<4>(&mem, 1).unwrap(), [0xaaaa_aaaa_aaaa_aaaa, 0xaaaa_aaaa_aaaa_aaaa, 0, 0]);
        let far = Ring::new(0x1ff0, 4, 32);
        assert_eq!(produce(&mem, &far, Wrapped::default(), cons, &[1; 32]), Err(ProduceError::Memory));
        // Huge rings and odd bases wrap instead of overflowing.
        let huge = Ring::new(u64::MAX - 8, 255, u32::MAX);
        let _ = huge.slot(u32::MAX);
        assert_eq!(huge.entries(), 1 << 31);
    }
}
