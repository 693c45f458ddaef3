//! Second-stage (legacy "second-level") page table walk.
//!
//! Conventions: levels are numbered as in the spec, 1 = page table (4 KiB
//! leaves), 2 = page directory (2 MiB leaves with PS), 3 = PDPT (1 GiB
//! leaves with PS), 4 = PML4. Each table is 512 little-endian 8-byte
//! entries. An entry with R = W = 0 is not present. Effective permissions
//! are the AND of R/W over all levels walked. Reserved-bit masks follow the
//! C device: the host address width (`aw_bits`) bounds every address field,
//! bits 52..61 and 63 are ignored, bit 62 (TM, unless `stale-tm`) and bit
//! 11 (SNP, unless snoop control or scalable mode) are reserved in leaves,
//! SNP in non-leaf entries, PS at level 4, and address bits below the page
//! size of a superpage.

use crate::config::width_mask;
use crate::fault::FaultReason;
use crate::mem::GuestMemory;

/// Read permission.
pub const SL_R: u64 = 1;
/// Write permission.
pub const SL_W: u64 = 1 << 1;
/// Page size (superpage) bit.
pub const SL_PS: u64 = 1 << 7;
/// Snoop behaviour bit.
pub const SL_SNP: u64 = 1 << 11;
/// Bits ignored by hardware in every second-stage entry.
pub const SL_IGNORED: u64 = 0xbff0_0000_0000_0000;
/// Transient-mapping bit of leaf entries (reserved unless `stale-tm`).
pub const SL_TM: u64 = 1 << 62;

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
    /// Whether this permits an access of the given kind.
    pub fn allows(&self, write: bool) -> bool {
        if write {
            self.write
        } else {
            self.read
        }
    }
}

/// Hardware capabilities the walk depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkConfig {
    /// Host address width in bits (bounds output and table addresses).
    pub haw_bits: u8,
    /// Maximum guest address width in bits (CAP.MGAW + 1).
    pub mgaw_bits: u8,
    /// CAP.SLLPS 2 MiB support.
    pub large_2m: bool,
    /// CAP.SLLPS 1 GiB support.
    pub large_1g: bool,
    /// SNP bit allowed in leaf entries: with ECAP.SC and, as in the C
    /// device, in every scalable-mode configuration.
    pub snoop_control: bool,
    /// TM bit allowed in leaf entries (`stale-tm` with device-TLB support,
    /// as in the C device).
    pub tm_allowed: bool,
}

/// Successful walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WalkOutput {
    /// Output address of the page (aligned to the page size).
    pub phys: u64,
    /// Level of the leaf entry (1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB).
    pub level: u8,
    /// Effective permissions.
    pub perm: Perm,
    /// The leaf entry.
    pub pte: u64,
}

/// Address bit where the index for `level` starts.
pub fn level_shift(level: u8) -> u32 {
    12 + 9 * u32::from(level.saturating_sub(1))
}

/// Size in bytes of the region mapped by one entry at `level`.
pub fn level_size(level: u8) -> u64 {
    1u64.checked_shl(level_shift(level)).unwrap_or(0)
}

/// Reserved bits for an entry at `level`; `large` when PS is set at level
/// 2 or 3.
pub fn reserved_mask(cfg: &WalkConfig, level: u8, large: bool) -> u64 {
    let outside = !(width_mask(u32::from(cfg.haw_bits)) | SL_IGNORED);
    let snp = if cfg.snoop_control { 0 } else { SL_SNP };
    let leaf = outside & !if cfg.tm_allowed { SL_TM } else { 0 };
    match (level, large) {
        (1, _) => leaf | snp,
        (2, true) => leaf | snp | 0x1f_f000,
        (3, true) => leaf | snp | 0x3fff_f000,
        (2, false) | (3, false) => outside | SL_SNP,
        (4, _) => outside | SL_SNP | SL_PS,
        _ => u64::MAX,
    }
}

/// Why a second-stage walk failed, in more detail than the legacy fault
/// reasons distinguish (scalable mode reports these separately).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SsError {
    /// `levels` is not in 1..=4.
    BadLevels,
    /// The input address is above the adjusted guest address width.
    BeyondAgaw,
    /// The root-level table could not be read.
    RootAccess,
    /// A table below the root level could not be read.
    EntryAccess,
    /// An entry has R = W = 0.
    NotPresent,
    /// A present entry has a reserved bit set (or an unsupported PS).
    Reserved,
    /// The effective permission does not allow the access.
    Permission,
}

impl SsError {
    /// The legacy-mode fault reason for this error (read/write faults
    /// depend on the request type).
    pub fn legacy_reason(self, write: bool) -> FaultReason {
        match self {
            SsError::BadLevels | SsError::RootAccess => FaultReason::ContextEntryInvalid,
            SsError::BeyondAgaw => FaultReason::AddressBeyondMgaw,
            SsError::EntryAccess => FaultReason::PagingEntryInvalid,
            SsError::Reserved => FaultReason::PagingEntryReserved,
            SsError::NotPresent | SsError::Permission if write => FaultReason::Write,
            SsError::NotPresent | SsError::Permission => FaultReason::Read,
        }
    }
}

/// Translate `iova` through the second-stage tables rooted at `root`
/// (`levels` deep, `agaw` bits of input address).
pub fn walk(
    mem: &dyn GuestMemory,
    cfg: &WalkConfig,
    root: u64,
    levels: u8,
    agaw: u8,
    iova: u64,
    write: bool,
) -> Result<WalkOutput, FaultReason> {
    walk_detailed(mem, cfg, root, levels, agaw, iova, write).map_err(|e| e.legacy_reason(write))
}

/// [`walk`] with the failure reported as an [`SsError`].
pub fn walk_detailed(
    mem: &dyn GuestMemory,
    cfg: &WalkConfig,
    root: u64,
    levels: u8,
    agaw: u8,
    iova: u64,
    write: bool,
) -> Result<WalkOutput, SsError> {
    if !(1..=4).contains(&levels) {
        return Err(SsError::BadLevels);
    }
    let limit_bits = u32::from(agaw.min(cfg.mgaw_bits));
    if iova & !width_mask(limit_bits) != 0 {
        return Err(SsError::BeyondAgaw);
    }
    let haw = width_mask(u32::from(cfg.haw_bits));
    let mut table = root & haw & !0xfff;
    let mut perm = Perm::RW;
    let mut level = levels;
    loop {
        let index = (iova >> level_shift(level)) & 0x1ff;
        let pte = match mem.read_u64(table.wrapping_add(index * 8)) {
            Ok(v) => v,
            Err(_) if level == levels => return Err(SsError::RootAccess),
            Err(_) => return Err(SsError::EntryAccess),
        };
        if pte & (SL_R | SL_W) == 0 {
            return Err(SsError::NotPresent);
        }
        let large = (level == 2 || level == 3) && pte & SL_PS != 0;
        let large_ok = match level {
            2 => cfg.large_2m,
            3 => cfg.large_1g,
            _ => true,
        };
        if pte & reserved_mask(cfg, level, large) != 0 || (large && !large_ok) {
            return Err(SsError::Reserved);
        }
        perm.read &= pte & SL_R != 0;
        perm.write &= pte & SL_W != 0;
        if !perm.allows(write) {
            return Err(SsError::Permission);
        }
        if level == 1 || large {
            let size = level_size(level);
            return Ok(WalkOutput {
                phys: pte & haw & !size.wrapping_sub(1),
                level,
                perm,
                pte,
            });
        }
        table = pte & haw & !0xfff;
        level -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(haw: u8) -> WalkConfig {
        WalkConfig {
            haw_bits: haw,
            mgaw_bits: haw,
            large_2m: true,
            large_1g: true,
            snoop_control: false,
            tm_allowed: false,
        }
    }

    #[test]
    fn reserved_masks_match_c_device_for_aw48() {
        let c = cfg(48);
        let hi = !(width_mask(48) | SL_IGNORED);
        assert_eq!(hi, 0x400f_0000_0000_0000);
        assert_eq!(reserved_mask(&c, 1, false), hi | 0x800);
        assert_eq!(reserved_mask(&c, 2, false), hi | 0x800);
        assert_eq!(reserved_mask(&c, 3, false), hi | 0x800);
        assert_eq!(reserved_mask(&c, 4, false), hi | 0x880);
        assert_eq!(reserved_mask(&c, 2, true), hi | 0x1ff800);
        assert_eq!(reserved_mask(&c, 3, true), hi | 0x3fff_f800);
    }

    #[test]
    fn stale_tm_unreserves_tm_only_in_leaves() {
        let strict = cfg(48);
        let c = WalkConfig { tm_allowed: true, ..cfg(48) };
        for (level, large) in [(1, false), (2, true), (3, true)] {
            assert_ne!(reserved_mask(&strict, level, large) & SL_TM, 0);
            assert_eq!(reserved_mask(&c, level, large) & SL_TM, 0);
        }
        for (level, large) in [(2, false), (3, false), (4, false)] {
            assert_ne!(reserved_mask(&c, level, large) & SL_TM, 0);
        }
    }

    #[test]
    fn snoop_control_unreserves_snp_only_in_leaves() {
        let c = WalkConfig { snoop_control: true, ..cfg(48) };
        assert_eq!(reserved_mask(&c, 1, false) & SL_SNP, 0);
        assert_eq!(reserved_mask(&c, 2, true) & SL_SNP, 0);
        assert_eq!(reserved_mask(&c, 3, true) & SL_SNP, 0);
        assert_ne!(reserved_mask(&c, 2, false) & SL_SNP, 0);
        assert_ne!(reserved_mask(&c, 4, false) & SL_SNP, 0);
    }

    #[test]
    fn level_geometry() {
        assert_eq!(level_size(1), 4096);
        assert_eq!(level_size(2), 2 << 20);
        assert_eq!(level_size(3), 1 << 30);
        assert_eq!(level_shift(4), 39);
    }
}
