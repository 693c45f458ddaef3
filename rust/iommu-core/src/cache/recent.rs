//! The last translations, in a small direct-mapped cache indexed by
//! requester and 4 KiB page: the first-level TLB in front of a model's
//! configuration caches and IOTLB.
//!
//! It holds only what those caches gave, tagged with their combined change
//! count (`epoch`, the sum of their `changes()`): an entry is used only
//! while none of them has dropped or replaced anything since, so it never
//! answers differently from them. Interior mutability lets a lookup through
//! a shared reference fill it.

use std::cell::Cell;

/// Slots of [`Recent`].
const SLOTS: usize = 64;

#[derive(Clone, Copy, Debug)]
struct Slot<T> {
    /// `epoch + 1` when filled; 0: empty.
    tag: u64,
    requester: u32,
    /// 4 KiB page number of the request.
    page: u64,
    /// What else the model keys the entry by (a table format, a stream
    /// configuration kind...).
    flags: u8,
    value: Option<T>,
}

/// A 64-slot direct-mapped cache of recent translations.
#[derive(Clone, Debug)]
pub struct Recent<T: Copy> {
    slots: Box<[Cell<Slot<T>>; SLOTS]>,
}

impl<T: Copy> Default for Recent<T> {
    fn default() -> Self {
        let empty = Slot { tag: 0, requester: 0, page: 0, flags: 0, value: None };
        Recent { slots: Box::new(std::array::from_fn(|_| Cell::new(empty))) }
    }
}

impl<T: Copy> Recent<T> {
    #[inline]
    fn slot(&self, requester: u32, page: u64) -> &Cell<Slot<T>> {
        let i = (page ^ u64::from(requester).wrapping_mul(0x9e37_79b9)) as usize % SLOTS;
        &self.slots[i]
    }

    /// The value recorded for (`requester`, `addr`'s page, `flags`) at
    /// `epoch`.
    #[inline]
    pub fn get(&self, requester: u32, addr: u64, flags: u8, epoch: u64) -> Option<T> {
        let page = addr >> 12;
        let e = self.slot(requester, page).get();
        if e.tag != epoch.wrapping_add(1) || e.requester != requester || e.page != page || e.flags != flags {
            return None;
        }
        e.value
    }

    /// Record `value` for (`requester`, `addr`'s page, `flags`) at `epoch`.
    #[inline]
    pub fn put(&self, requester: u32, addr: u64, flags: u8, epoch: u64, value: T) {
        let page = addr >> 12;
        let tag = epoch.wrapping_add(1);
        self.slot(requester, page).set(Slot { tag, requester, page, flags, value: Some(value) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_for_the_same_key_and_epoch() {
        let r: Recent<u32> = Recent::default();
        assert_eq!(r.get(1, 0x1000, 0, 0), None);
        r.put(1, 0x1234, 0, 5, 7);
        assert_eq!(r.get(1, 0x1fff, 0, 5), Some(7));
        assert_eq!(r.get(1, 0x1000, 0, 6), None);
        assert_eq!(r.get(1, 0x1000, 1, 5), None);
        assert_eq!(r.get(2, 0x1000, 0, 5), None);
        assert_eq!(r.get(1, 0x2000, 0, 5), None);
        // u64::MAX epochs do not alias the empty tag.
        assert_eq!(r.get(0, 0, 0, u64::MAX), None);
    }
}
