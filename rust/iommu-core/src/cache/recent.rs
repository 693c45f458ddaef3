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

/// What a slot is filled for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Key {
    /// `epoch + 1` when filled; 0: empty.
    tag: u64,
    /// 4 KiB page number of the request.
    page: u64,
    requester: u32,
    /// What else the model keys the entry by (a table format, a stream
    /// configuration kind...).
    flags: u8,
}

/// A 64-slot direct-mapped cache of recent translations. Keys and values
/// are kept apart so that a miss compares the key only.
#[derive(Clone, Debug)]
pub struct Recent<T: Copy> {
    keys: Box<[Cell<Key>; SLOTS]>,
    values: Box<[Cell<Option<T>>; SLOTS]>,
}

impl<T: Copy> Default for Recent<T> {
    fn default() -> Self {
        Recent {
            keys: Box::new(std::array::from_fn(|_| Cell::new(Key::default()))),
            values: Box::new(std::array::from_fn(|_| Cell::new(None))),
        }
    }
}

impl<T: Copy> Recent<T> {
    #[inline]
    fn slot(requester: u32, page: u64) -> usize {
        (page ^ u64::from(requester).wrapping_mul(0x9e37_79b9)) as usize % SLOTS
    }

    /// The value recorded for (`requester`, `addr`'s page, `flags`) at
    /// `epoch`.
    #[inline]
    pub fn get(&self, requester: u32, addr: u64, flags: u8, epoch: u64) -> Option<T> {
        let page = addr >> 12;
        let i = Self::slot(requester, page);
        if self.keys[i].get() != (Key { tag: epoch.wrapping_add(1), page, requester, flags }) {
            return None;
        }
        self.values[i].get()
    }

    /// Record `value` for (`requester`, `addr`'s page, `flags`) at `epoch`.
    #[inline]
    pub fn put(&self, requester: u32, addr: u64, flags: u8, epoch: u64, value: T) {
        let page = addr >> 12;
        let i = Self::slot(requester, page);
        self.keys[i].set(Key { tag: epoch.wrapping_add(1), page, requester, flags });
        self.values[i].set(Some(value));
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
