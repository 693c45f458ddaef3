//! Address translation: the permissions of a mapping, the page-table walk
//! engine ([`walk`]) and the page-table formats the IOMMUs walk ([`x86`]
//! for Intel VT-d, [`vmsa`] for the Arm SMMUv3's VMSAv8-64 stages).

pub mod vmsa;
pub mod walk;
pub mod x86;

/// Access permissions of a translation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Perm {
    /// Reads allowed.
    pub read: bool,
    /// Writes allowed.
    pub write: bool,
}

impl Perm {
    /// Read and write.
    pub const RW: Perm = Perm { read: true, write: true };
    /// Read only.
    pub const RO: Perm = Perm { read: true, write: false };
    /// Nothing.
    pub const NONE: Perm = Perm { read: false, write: false };

    /// Whether this permits an access of the given kind.
    #[inline]
    pub fn allows(&self, write: bool) -> bool {
        if write {
            self.write
        } else {
            self.read
        }
    }
}

/// A mask of the low `bits` bits (all 64 for 64 or more).
#[inline]
pub fn width_mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        // Arithmetic, not a layout: the low `bits` ones.
        (1u64 << bits) - 1
    }
}
