//! The page-table walk engine shared by every format.
//!
//! A walk descends from a root table to a leaf, one table per level. The
//! engine owns what every format has in common: the geometry (granule,
//! index bits per level, a root table that may be larger than a granule,
//! as concatenated stage-2 tables are), reading each entry through a
//! `locate` hook (identity for a single stage, a stage-2 translation of
//! the table address for nested walks), telling a failed read of the root
//! table from one below it, and the hardware updates of flags in the
//! entries used (accessed/dirty), which are performed only after the
//! caller has accepted the whole translation ([`commit`]).
//!
//! A [`Format`] owns the meaning of an entry: [`Format::step`] decodes one
//! entry at one height, checks its reserved bits and permissions in the
//! order its architecture gives, accumulates the attributes the levels
//! combine, and says whether the entry points to a table or maps the
//! output. Heights count up from the leaf tables (height 0 maps granules,
//! height 1 blocks of `granule << stride`, ...), so that x86 level `n` is
//! height `n - 1` and VMSA level `n` is height `3 - n`.

use crate::memory::GuestMemory;

/// Where a table entry lives, as found by the `locate` hook of a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Located {
    /// Address to read the entry from (output address of the stage that
    /// holds the tables).
    pub addr: u64,
    /// A hardware flag update may be written there (nested walks: the
    /// stage-2 mapping of the table's page allows writes).
    pub writable: bool,
}

impl Located {
    /// The entry is at `addr` itself and may be updated.
    #[inline]
    pub fn identity(addr: u64) -> Located {
        Located { addr, writable: true }
    }
}

/// The shape of a walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// log2 of the granule (12, 14 or 16).
    pub granule_shift: u32,
    /// Index bits per table below the root (9, 11 or 13).
    pub stride: u32,
    /// Height of the root table.
    pub start_height: u32,
    /// Index bits of the root table: fewer than `stride` when the input
    /// range is smaller than a full table, more when tables are
    /// concatenated.
    pub root_bits: u32,
}

impl Geometry {
    /// Address bit where the index of a table at `height` starts.
    #[inline]
    pub fn shift(&self, height: u32) -> u32 {
        self.granule_shift + self.stride * height
    }

    /// Size in bytes mapped by one entry at `height` (0 if it does not
    /// fit in 64 bits).
    #[inline]
    pub fn entry_size(&self, height: u32) -> u64 {
        1u64.checked_shl(self.shift(height)).unwrap_or(0)
    }

    /// Index of `input` in the table at `height`. Shifts wrap at 64 bits
    /// (a format never builds a geometry that needs more; a broken one
    /// indexes wrongly but cannot panic).
    #[inline]
    fn index(&self, height: u32, input: u64) -> u64 {
        let bits = if height == self.start_height { self.root_bits } else { self.stride };
        let mask = 1u64.wrapping_shl(bits).wrapping_sub(1) | if bits >= 64 { u64::MAX } else { 0 };
        input.wrapping_shr(self.shift(height)) & mask
    }
}

/// What an entry does, as decoded by [`Format::step`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Descend into the table at this address (already masked).
    Table(u64),
    /// The walk ends: the page or block starts at this output address
    /// (aligned to the entry's size).
    Leaf(u64),
}

/// One decoded entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Where the walk goes.
    pub next: Next,
    /// Flags the hardware sets in this entry once the translation is
    /// accepted (0: none).
    pub set: u64,
}

/// A page-table format: the meaning of one entry.
pub trait Format {
    /// What the format accumulates over the levels of one walk.
    type State: Default;
    /// How a walk in this format fails.
    type Error;

    /// The geometry of walks in this format.
    fn geometry(&self) -> Geometry;

    /// Decode the entry `raw` read at `height` for `input`.
    fn step(&self, state: &mut Self::State, height: u32, raw: u64) -> Result<Step, Self::Error>;

    /// The error for a table that could not be read at `height` (`root`:
    /// the root table).
    fn read_failed(&self, height: u32, root: bool, addr: u64) -> Self::Error;
}

/// A hardware flag update a walk still has to make.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// Where the entry was read.
    pub addr: u64,
    /// The entry as read.
    pub seen: u64,
    /// The flags to set.
    pub set: u64,
    /// The update is needed but the entry is not writable.
    pub blocked: bool,
}

/// Most levels any format walks (x86 5-level paging, VMSA level -1..3).
pub const MAX_LEVELS: usize = 5;

/// The flag updates of a successful walk, in walk order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    updates: [Update; MAX_LEVELS],
    len: usize,
}

impl Pending {
    /// The updates.
    pub fn updates(&self) -> &[Update] {
        &self.updates[..self.len]
    }

    /// Some needed update cannot be written.
    pub fn blocked(&self) -> bool {
        self.updates().iter().any(|u| u.blocked)
    }
}

/// A walk that reached a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walked<S> {
    /// Output address of the page or block (aligned to its size).
    pub out: u64,
    /// Height of the leaf.
    pub height: u32,
    /// log2 of the leaf's size.
    pub size_shift: u32,
    /// The leaf entry as read.
    pub leaf: u64,
    /// What the format accumulated.
    pub state: S,
}

impl<S> Walked<S> {
    /// Size in bytes of the leaf.
    pub fn size(&self) -> u64 {
        1u64.checked_shl(self.size_shift).unwrap_or(0)
    }

    /// The output address of `input` (inside the leaf).
    pub fn output(&self, input: u64) -> u64 {
        self.out | (input & self.size().wrapping_sub(1))
    }
}

/// Walk `fmt`'s tables rooted at `root` for `input`. `locate` gives the
/// address of each entry (and says whether it may be updated); it is
/// called with the entry's address in the tables' address space and
/// whether it is in the root table. The flag updates the entries ask for
/// are recorded in `pending` (when given) for the caller to [`commit`]
/// once it accepts the translation; formats without updates pass `None`
/// and pay nothing for them.
#[inline]
pub fn walk<F: Format, L: FnMut(u64, bool) -> Result<Located, F::Error>>(
    mem: &dyn GuestMemory,
    fmt: &F,
    root: u64,
    input: u64,
    mut locate: L,
    mut pending: Option<&mut Pending>,
) -> Result<Walked<F::State>, F::Error> {
    let g = fmt.geometry();
    let mut state = F::State::default();
    let mut table = root;
    let mut height = g.start_height;
    loop {
        let is_root = height == g.start_height;
        let entry_addr = table.wrapping_add(g.index(height, input) * 8);
        let loc = locate(entry_addr, is_root)?;
        let raw = mem.read_u64(loc.addr).map_err(|_| fmt.read_failed(height, is_root, loc.addr))?;
        let step = fmt.step(&mut state, height, raw)?;
        if step.set != 0 {
            if let Some(p) = pending.as_deref_mut() {
                if let Some(u) = p.updates.get_mut(p.len) {
                    let blocked = raw & step.set != step.set && !loc.writable;
                    *u = Update { addr: loc.addr, seen: raw, set: step.set, blocked };
                    p.len += 1;
                }
            }
        }
        match step.next {
            Next::Leaf(out) => {
                return Ok(Walked {
                    out,
                    height,
                    size_shift: g.shift(height),
                    leaf: raw,
                    state,
                })
            }
            // A format never descends below height 0; stop a broken one.
            Next::Table(_) if height == 0 => return Err(fmt.read_failed(0, false, 0)),
            Next::Table(next) => {
                table = next;
                height -= 1;
            }
        }
    }
}

/// A walk whose tables are addressed directly (no stage below).
#[inline]
pub fn walk_single<F: Format>(
    mem: &dyn GuestMemory,
    fmt: &F,
    root: u64,
    input: u64,
    pending: Option<&mut Pending>,
) -> Result<Walked<F::State>, F::Error> {
    walk(mem, fmt, root, input, |addr, _| Ok(Located::identity(addr)), pending)
}

/// Perform the flag updates of an accepted walk. `flags` are every bit a
/// format's hardware updates may set: an entry is rewritten only if it
/// still reads as seen apart from those (an entry the guest changed in
/// between is left alone, like a failed locked update not retried).
/// Returns `Err` if an entry could not be read or written.
pub fn commit(mem: &dyn GuestMemory, pending: &Pending, flags: u64) -> Result<(), crate::memory::MemError> {
    for u in pending.updates() {
        if u.seen & u.set == u.set {
            continue;
        }
        let now = mem.read_u64(u.addr)?;
        if now & !flags != u.seen & !flags {
            continue;
        }
        mem.write_u64(u.addr, now | u.set)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_indexes_root_with_its_own_width() {
        // A 4K-granule stage-2 with two concatenated level-1 tables
        // (10 index bits at the root, height 2).
        let g = Geometry { granule_shift: 12, stride: 9, start_height: 2, root_bits: 10 };
        assert_eq!(g.shift(2), 30);
        assert_eq!(g.index(2, 0x3_c000_0000), 0xf);
        assert_eq!(g.index(2, 1 << 39), 0x200);
        assert_eq!(g.index(1, 1 << 39), 0);
        // Shifts past 63 do not panic.
        let wide = Geometry { granule_shift: 16, stride: 13, start_height: 4, root_bits: 64 };
        assert_eq!(wide.entry_size(4), 0);
        let _ = wide.index(4, u64::MAX);
    }
}
