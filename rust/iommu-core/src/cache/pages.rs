//! The page cache (IOTLB): leaf translations by tag, input address and
//! size.
//!
//! An entry is tagged with an outer tag (a VT-d domain id, an SMMU VMID)
//! and an inner tag (a PASID, an ASID), and with a class (a small number
//! the model chooses: the stage or kind of mapping it came from). Entries
//! of one (outer, inner) pair live in one bucket, keyed by the input page
//! number at the entry's size and the size's log2; an index of the inner
//! tags of each outer tag lets an invalidation touch only what it may
//! remove: a bucket-selective one drops a bucket, an outer-selective one
//! the outer tag's buckets, a range-selective one looks up the few keys
//! its range can hold at each size present in the bucket (or scans the
//! bucket when that is smaller). Entries of other tags never cost
//! anything. A lookup probes only the sizes the bucket holds, smallest
//! first.
//!
//! Conventions: addresses are bytes; ranges are inclusive (`first..=last`);
//! sizes are powers of two from 4 KiB (`shift` 12) to 2^63; an entry
//! covers `[addr & !(size - 1), + size)`. The cache holds at most `MAX`
//! entries and empties itself when a new entry would exceed that.

use std::collections::hash_map::Entry;

use super::FastMap;

/// Smallest size shift an entry can have (4 KiB).
pub const MIN_SHIFT: u32 = 12;

/// A set of entry classes (bit `c` for class `c`, classes 0..8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Classes(pub u8);

impl Classes {
    /// No class.
    pub const NONE: Classes = Classes(0);
    /// Every class.
    pub const ALL: Classes = Classes(u8::MAX);

    /// Whether `class` is in the set.
    #[inline]
    pub fn has(self, class: u8) -> bool {
        class < 8 && self.0 & (1 << class) != 0
    }
}

#[inline]
fn bucket_key(outer: u32, inner: u32) -> u64 {
    // Cache key arithmetic (not a layout): two 32-bit ids in one u64.
    (u64::from(outer) << 32) | u64::from(inner)
}

#[inline]
fn page_key(addr: u64, shift: u32) -> u64 {
    // Cache key arithmetic: the page number above the 6-bit size shift.
    ((addr >> shift) << 6) | u64::from(shift)
}

/// One cached entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot<V> {
    value: V,
    class: u8,
}

/// The entries of one (outer, inner) tag pair.
#[derive(Clone, Debug)]
struct Bucket<V> {
    pages: FastMap<u64, Slot<V>>,
    /// Bit `s` set: some entry has size shift `s`.
    sizes: u64,
    /// Entries per size shift.
    per_size: [u32; 64],
    /// Entries per class.
    per_class: [u32; 8],
    /// Bit `c` set: some entry has class `c`.
    classes: u8,
}

impl<V> Default for Bucket<V> {
    fn default() -> Self {
        Bucket { pages: FastMap::default(), sizes: 0, per_size: [0; 64], per_class: [0; 8], classes: 0 }
    }
}

impl<V: Copy> Bucket<V> {
    #[inline]
    fn count(&mut self, shift: u32, class: u8, add: bool) {
        Self::count_in(&mut self.per_size, &mut self.per_class, shift, class, add);
        self.update_masks(shift, class);
    }

    /// Count an entry in or out of the per-size and per-class counts (the
    /// masks are brought up to date by [`Self::update_masks`]).
    #[inline]
    fn count_in(per_size: &mut [u32; 64], per_class: &mut [u32; 8], shift: u32, class: u8, add: bool) {
        let (s, c) = (shift as usize & 63, usize::from(class & 7));
        if add {
            per_size[s] += 1;
            per_class[c] += 1;
        } else {
            per_size[s] -= 1;
            per_class[c] -= 1;
        }
    }

    #[inline]
    fn update_masks(&mut self, shift: u32, class: u8) {
        let (s, c) = (shift & 63, class & 7);
        // Bit sets indexed by size shift and class (bookkeeping, not a layout).
        if self.per_size[s as usize] == 0 {
            self.sizes &= !(1 << s);
        } else {
            self.sizes |= 1 << s;
        }
        if self.per_class[usize::from(c)] == 0 {
            self.classes &= !(1 << c);
        } else {
            self.classes |= 1 << c;
        }
    }

    #[inline]
    fn has_class(&self, classes: Classes) -> bool {
        self.classes & classes.0 != 0
    }

    fn rebuild_masks(&mut self) {
        // Bit sets indexed by size shift and class (bookkeeping, not a layout).
        self.sizes = self.per_size.iter().enumerate().filter(|(_, &n)| n != 0).fold(0, |m, (s, _)| m | 1 << s);
        self.classes = self.per_class.iter().enumerate().filter(|(_, &n)| n != 0).fold(0, |m, (c, _)| m | 1 << c);
    }

    #[inline]
    fn lookup(&self, addr: u64) -> Option<(V, u32)> {
        let mut sizes = self.sizes;
        while sizes != 0 {
            let shift = sizes.trailing_zeros();
            sizes &= sizes - 1;
            if let Some(slot) = self.pages.get(&page_key(addr, shift)) {
                return Some((slot.value, shift));
            }
        }
        None
    }

    /// Remove the entries overlapping `first..=last` whose class is in
    /// `pick`, and every entry whose class is in `all`; returns how many
    /// went.
    fn remove_range(&mut self, first: u64, last: u64, pick: Classes, all: Classes) -> usize {
        let before = self.pages.len();
        let mut candidates = 0u64;
        let mut sizes = self.sizes;
        while sizes != 0 {
            let shift = sizes.trailing_zeros();
            sizes &= sizes - 1;
            // Arithmetic: the number of size-aligned pages in first..=last.
            candidates = candidates.saturating_add((last >> shift) - (first >> shift) + 1);
        }
        if self.has_class(all) || candidates > self.pages.len() as u64 {
            let (per_size, per_class) = (&mut self.per_size, &mut self.per_class);
            self.pages.retain(|k, slot| {
                let shift = (*k & 63) as u32;
                // The page key's fields (see page_key): the page's first and last byte.
                let start = (*k >> 6) << shift;
                let end = start | (1u64 << shift).wrapping_sub(1);
                let hit = all.has(slot.class) || (pick.has(slot.class) && end >= first && start <= last);
                if hit {
                    Self::count_in(per_size, per_class, shift, slot.class, false);
                }
                !hit
            });
            self.rebuild_masks();
        } else {
            let mut sizes = self.sizes;
            while sizes != 0 {
                let shift = sizes.trailing_zeros();
                sizes &= sizes - 1;
                // Every page key of this size in first..=last (see page_key).
                for page in (first >> shift)..=(last >> shift) {
                    let key = (page << 6) | u64::from(shift);
                    if let Some(slot) = self.pages.get(&key) {
                        if pick.has(slot.class) {
                            let class = slot.class;
                            self.pages.remove(&key);
                            self.count(shift, class, false);
                        }
                    }
                }
            }
        }
        before - self.pages.len()
    }
}

/// Cached leaf translations by (outer, inner) tag, address and size,
/// bounded to `MAX` entries.
#[derive(Clone, Debug)]
pub struct PageCache<V, const MAX: usize> {
    buckets: FastMap<u64, Bucket<V>>,
    /// Outer tag -> the inner tags with a bucket.
    inners: FastMap<u32, Vec<u32>>,
    len: usize,
    changes: u64,
}

impl<V, const MAX: usize> Default for PageCache<V, MAX> {
    fn default() -> Self {
        PageCache { buckets: FastMap::default(), inners: FastMap::default(), len: 0, changes: 0 }
    }
}

impl<V: Copy, const MAX: usize> PageCache<V, MAX> {
    /// The entry covering `addr` for (`outer`, `inner`), with its size
    /// shift.
    #[inline]
    pub fn lookup(&self, outer: u32, inner: u32, addr: u64) -> Option<(V, u32)> {
        self.buckets.get(&bucket_key(outer, inner))?.lookup(addr)
    }

    /// Cache `value` for the page of size 2^`shift` containing `addr`
    /// (`shift` outside 12..64 is ignored: nothing is cached).
    pub fn insert(&mut self, outer: u32, inner: u32, addr: u64, shift: u32, class: u8, value: V) {
        if !(MIN_SHIFT..64).contains(&shift) || class >= 8 {
            return;
        }
        let bkey = bucket_key(outer, inner);
        let key = page_key(addr, shift);
        if self.len >= MAX && !self.buckets.get(&bkey).is_some_and(|b| b.pages.contains_key(&key)) {
            self.invalidate_all();
        }
        let bucket = match self.buckets.entry(bkey) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) => {
                self.inners.entry(outer).or_default().push(inner);
                v.insert(Bucket::default())
            }
        };
        if let Some(old) = bucket.pages.insert(key, Slot { value, class }) {
            bucket.count(shift, old.class, false);
            self.changes += 1;
        } else {
            self.len += 1;
        }
        bucket.count(shift, class, true);
    }

    fn unindex(&mut self, outer: u32, inner: u32) {
        if let Some(list) = self.inners.get_mut(&outer) {
            list.retain(|&i| i != inner);
            if list.is_empty() {
                self.inners.remove(&outer);
            }
        }
    }

    /// Remove every entry.
    pub fn invalidate_all(&mut self) {
        self.buckets.clear();
        self.inners.clear();
        self.len = 0;
        self.changes += 1;
    }

    /// Remove every entry of `outer`.
    pub fn invalidate_outer(&mut self, outer: u32) {
        self.changes += 1;
        for inner in self.inners.remove(&outer).unwrap_or_default() {
            if let Some(b) = self.buckets.remove(&bucket_key(outer, inner)) {
                self.len -= b.pages.len();
            }
        }
    }

    /// Remove every entry of (`outer`, `inner`).
    pub fn invalidate_bucket(&mut self, outer: u32, inner: u32) {
        self.changes += 1;
        if let Some(b) = self.buckets.remove(&bucket_key(outer, inner)) {
            self.len -= b.pages.len();
            self.unindex(outer, inner);
        }
    }

    /// Remove from (`outer`, `inner`) the entries of a class in `pick`
    /// that overlap `first..=last`, and every entry of a class in `all`.
    pub fn invalidate_range(&mut self, outer: u32, inner: u32, first: u64, last: u64, pick: Classes, all: Classes) {
        self.changes += 1;
        let bkey = bucket_key(outer, inner);
        let Some(b) = self.buckets.get_mut(&bkey) else { return };
        if !b.has_class(Classes(pick.0 | all.0)) {
            return;
        }
        self.len -= b.remove_range(first, last.max(first), pick, all);
        if b.pages.is_empty() {
            self.buckets.remove(&bkey);
            self.unindex(outer, inner);
        }
    }

    /// [`invalidate_range`](Self::invalidate_range) in every bucket of
    /// `outer`.
    pub fn invalidate_range_outer(&mut self, outer: u32, first: u64, last: u64, pick: Classes, all: Classes) {
        self.changes += 1;
        let Some(mut inners) = self.inners.remove(&outer) else { return };
        inners.retain(|&inner| {
            let bkey = bucket_key(outer, inner);
            let Some(b) = self.buckets.get_mut(&bkey) else { return false };
            self.len -= b.remove_range(first, last.max(first), pick, all);
            if b.pages.is_empty() {
                self.buckets.remove(&bkey);
                return false;
            }
            true
        });
        if !inners.is_empty() {
            self.inners.insert(outer, inners);
        }
    }

    /// Remove every entry for which `remove` holds (outer, inner, class,
    /// value); a full scan, for the rare invalidations no index serves.
    pub fn invalidate_where(&mut self, mut remove: impl FnMut(u32, u32, u8, &V) -> bool) {
        self.changes += 1;
        let mut emptied = Vec::new();
        for (&bkey, b) in self.buckets.iter_mut() {
            // The bucket key's two ids (see bucket_key).
            let (outer, inner) = ((bkey >> 32) as u32, bkey as u32);
            let before = b.pages.len();
            let (per_size, per_class) = (&mut b.per_size, &mut b.per_class);
            b.pages.retain(|k, slot| {
                let hit = remove(outer, inner, slot.class, &slot.value);
                if hit {
                    Bucket::<V>::count_in(per_size, per_class, (*k & 63) as u32, slot.class, false);
                }
                !hit
            });
            self.len -= before - b.pages.len();
            b.rebuild_masks();
            if b.pages.is_empty() {
                emptied.push((outer, inner));
            }
        }
        for (outer, inner) in emptied {
            self.buckets.remove(&bucket_key(outer, inner));
            self.unindex(outer, inner);
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A count that grows whenever an entry is removed or replaced (by an
    /// invalidation, the flush when full, a new value for a cached page),
    /// never when one is only added.
    pub fn changes(&self) -> u64 {
        self.changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Cache = PageCache<u64, 16>;

    #[test]
    fn lookup_finds_every_size_and_only_its_tags() {
        let mut c = Cache::default();
        c.insert(1, 2, 0x20_3000, 12, 0, 0xa000);
        c.insert(1, 2, 0x40_0000, 21, 0, 0xb0_0000);
        c.insert(1, 2, 0x1_0000_0000, 16, 1, 0xc_0000);
        assert_eq!(c.lookup(1, 2, 0x20_3fff), Some((0xa000, 12)));
        assert_eq!(c.lookup(1, 2, 0x5f_ffff), Some((0xb0_0000, 21)));
        assert_eq!(c.lookup(1, 2, 0x1_0000_ffff), Some((0xc_0000, 16)));
        assert_eq!(c.lookup(1, 2, 0x1_0001_0000), None);
        assert_eq!(c.lookup(1, 3, 0x20_3000), None);
        assert_eq!(c.lookup(2, 2, 0x20_3000), None);
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn range_invalidation_removes_overlaps_of_picked_classes() {
        let mut c = Cache::default();
        c.insert(1, 0, 0x0, 21, 0, 1); // 0..2M, class 0
        c.insert(1, 0, 0x20_0000, 12, 1, 2); // class 1
        c.insert(1, 0, 0x30_0000, 12, 0, 3);
        c.invalidate_range(1, 0, 0x1f_f000, 0x20_0fff, Classes(1), Classes::NONE);
        assert_eq!(c.lookup(1, 0, 0), None);
        assert_eq!(c.lookup(1, 0, 0x20_0000), Some((2, 12)));
        assert_eq!(c.lookup(1, 0, 0x30_0000), Some((3, 12)));
        c.invalidate_range(1, 0, 0x7000, 0x7fff, Classes::NONE, Classes(2));
        assert_eq!(c.lookup(1, 0, 0x20_0000), None);
        assert_eq!(c.len(), 1);
        let before = c.changes();
        c.invalidate_range_outer(1, 0, u64::MAX, Classes::ALL, Classes::NONE);
        assert!(c.is_empty());
        assert!(c.changes() > before);
    }

    #[test]
    fn full_cache_flushes_on_a_new_key_only() {
        let mut c = Cache::default();
        for i in 0..16u64 {
            c.insert(0, 0, i << 12, 12, 0, i);
        }
        c.insert(0, 0, 5 << 12, 12, 0, 55);
        assert_eq!(c.len(), 16);
        c.insert(0, 0, 99 << 12, 12, 0, 99);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn outer_and_bucket_invalidation_keep_the_index_consistent() {
        let mut c = Cache::default();
        c.insert(7, 1, 0x1000, 12, 0, 1);
        c.insert(7, 2, 0x1000, 12, 0, 2);
        c.insert(8, 1, 0x1000, 12, 0, 3);
        c.invalidate_bucket(7, 1);
        assert_eq!(c.lookup(7, 2, 0x1000), Some((2, 12)));
        c.invalidate_outer(7);
        assert_eq!(c.len(), 1);
        c.invalidate_where(|o, _, _, _| o == 8);
        assert!(c.is_empty());
        c.insert(7, 1, 0x1000, 12, 0, 4);
        assert_eq!(c.lookup(7, 1, 0x1000), Some((4, 12)));
        // Out-of-range sizes and classes are not cached.
        c.insert(7, 1, 0, 11, 0, 5);
        c.insert(7, 1, 0, 64, 0, 5);
        c.insert(7, 1, 0, 12, 8, 5);
        assert_eq!(c.len(), 1);
    }
}
