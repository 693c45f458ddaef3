//! First-stage page walk (x86-64 paging format, 4 or 5 levels) and the
//! nested walk that runs every first-stage address through the
//! second stage.
//!
//! Conventions: levels are numbered as in [`crate::page_walk`] (1 = 4 KiB
//! leaves, 2 = 2 MiB with PS, 3 = 1 GiB with PS, 4 = PML4, 5 = PML5).
//! Entries are little-endian 8-byte words with P (bit 0), R/W (1), U/S
//! (2), A (5), D (6, leaves only), PS (7), EA (10, extended accessed) and
//! the address in bits 51:12; bits 63:52 (including XD: execute requests
//! are not modelled) are ignored. Reserved bits follow the C device:
//! address bits at or above the host address width, PS at levels 4 and 5,
//! and address bits 20:13 / 29:13 of 2 MiB / 1 GiB leaves (bit 12 is PAT).
//! A 1 GiB leaf without CAP.FS1GP is a reserved-bit fault.
//!
//! Permissions: a present entry always grants read. A user request needs
//! U/S set on every level (else SGN.2); a write needs R/W set on every
//! level, except that a supervisor request may write read-only pages when
//! WPE is clear. Supervisor requests may access user pages.
//!
//! Accessed/dirty updates: only after the whole walk (and, for nested, the
//! final second-stage translation) has succeeded, A (and EA with EAFE) is
//! set in every entry used and D in the leaf for writes. `GuestMemory`
//! has no compare-and-exchange, so each update is a read-modify-write: the
//! entry is read again and written only if it is unchanged apart from the
//! A/D/EA flags. An entry the guest rewrote concurrently is left alone
//! (like a failed locked update that is not retried); a concurrent flag
//! update by a CPU between the re-read and the write can still be lost
//! with racing writers, which is the documented limitation. A memory error
//! during the update is SFS.10 (91h).
//!
//! Translation output: [`FsOutput::perm`] is the permission of the page;
//! [`FsOutput::dirty`] tells whether the leaf's D flag is set after the
//! walk. Callers that cache the translation must not let a cached
//! read-only-dirty-clear entry satisfy a later write (it must walk again
//! so that D gets set).

use crate::config::width_mask;
use crate::fault::FaultReason;
use crate::mem::GuestMemory;
use crate::page_walk::{level_shift, level_size, walk_detailed, Perm, SsError, WalkConfig};

/// Present.
pub const FS_P: u64 = 1;
/// Read/write.
pub const FS_RW: u64 = 1 << 1;
/// User/supervisor.
pub const FS_US: u64 = 1 << 2;
/// Accessed.
pub const FS_A: u64 = 1 << 5;
/// Dirty.
pub const FS_D: u64 = 1 << 6;
/// Page size.
pub const FS_PS: u64 = 1 << 7;
/// Extended accessed.
pub const FS_EA: u64 = 1 << 10;
/// Bits ignored in every first-stage entry (63:52).
pub const FS_IGNORED: u64 = 0xfff0_0000_0000_0000;

/// First-stage tables named by a PASID table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FsTable {
    /// FSPTPTR (a guest physical address under nested translation).
    pub root: u64,
    /// Number of levels (4 or 5).
    pub levels: u8,
}

/// Second-stage tables named by a PASID table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SsTable {
    /// SSPTPTR.
    pub root: u64,
    /// Number of levels (3 or 4).
    pub levels: u8,
    /// Adjusted guest address width in bits.
    pub agaw: u8,
}

/// Hardware capabilities the first-stage walk depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsWalkConfig {
    /// Host address width in bits.
    pub haw_bits: u8,
    /// CAP.FS1GP: 1 GiB leaves allowed.
    pub large_1g: bool,
}

/// PASID-entry controls of the first-stage walk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FsControls {
    /// WPE: supervisor writes honour R/W.
    pub wpe: bool,
    /// EAFE: set EA along with A.
    pub eafe: bool,
}

/// The kind of access being translated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FsAccess {
    /// Write (else read).
    pub write: bool,
    /// Supervisor request (else user).
    pub supervisor: bool,
}

/// A successful first-stage (or nested) translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FsOutput {
    /// Output address of the page (aligned to the page size).
    pub phys: u64,
    /// Leaf level (1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB).
    pub level: u8,
    /// Permissions of the page for this kind of request (privilege).
    pub perm: Perm,
    /// The leaf's D flag is set after this walk.
    pub dirty: bool,
    /// The leaf entry as read.
    pub pte: u64,
}

/// Reserved bits of a first-stage entry at `level` (`large` when PS is set
/// at level 2 or 3).
pub fn fs_reserved_mask(haw_bits: u8, level: u8, large: bool) -> u64 {
    let outside = !(width_mask(u32::from(haw_bits)) | FS_IGNORED);
    match (level, large) {
        (1, _) | (2, false) | (3, false) => outside,
        (2, true) => outside | 0x1f_e000,
        (3, true) => outside | 0x3fff_e000,
        (4, _) | (5, _) => outside | FS_PS,
        _ => u64::MAX,
    }
}

/// Whether `iova` is canonical for `levels`-level first-stage tables
/// (bits 63..(12 + 9 * levels - 1) all equal).
pub fn is_canonical(iova: u64, levels: u8) -> bool {
    let va_bits = 12 + 9 * u32::from(levels.clamp(1, 5));
    let top = iova >> (va_bits - 1);
    top == 0 || top == u64::MAX >> (va_bits - 1)
}

/// Where a first-stage table entry lives: host address, and whether an
/// accessed/dirty update may be written there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Located {
    addr: u64,
    writable: bool,
}

/// A first-stage entry used by a walk, with the flags to set in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Update {
    addr: u64,
    seen: u64,
    set: u64,
    /// The update is needed but the entry is not writable.
    blocked: bool,
}

/// Accessed/dirty updates a successful walk still has to perform.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Pending {
    updates: [Update; 5],
    len: usize,
}

/// Walk the first-stage tables; `locate` maps the (guest) address of each
/// entry to the address to read. No accessed/dirty update is done yet.
fn fs_walk_core(
    mem: &dyn GuestMemory,
    cfg: &FsWalkConfig,
    table: &FsTable,
    ctl: &FsControls,
    iova: u64,
    access: FsAccess,
    locate: &mut dyn FnMut(u64, bool) -> Result<Located, FaultReason>,
) -> Result<(FsOutput, Pending), FaultReason> {
    let levels = table.levels;
    if !(4..=5).contains(&levels) {
        return Err(FaultReason::PasidEntryInvalid);
    }
    if !is_canonical(iova, levels) {
        return Err(FaultReason::NonCanonical);
    }
    let haw = width_mask(u32::from(cfg.haw_bits));
    let mut table_addr = table.root & haw & !0xfff;
    let mut pending = Pending::default();
    let (mut rw, mut us) = (true, true);
    let mut level = levels;
    let (leaf, leaf_level) = loop {
        let index = (iova >> level_shift(level)) & 0x1ff;
        let root = level == levels;
        let loc = locate(table_addr.wrapping_add(index * 8), root)?;
        let pte = match mem.read_u64(loc.addr) {
            Ok(v) => v,
            Err(_) if root => return Err(FaultReason::FsRootAccess),
            Err(_) => return Err(FaultReason::FsEntryAccess),
        };
        if pte & FS_P == 0 {
            return Err(FaultReason::FsEntryNotPresent);
        }
        let large = (level == 2 || level == 3) && pte & FS_PS != 0;
        if pte & fs_reserved_mask(cfg.haw_bits, level, large) != 0
            || (large && level == 3 && !cfg.large_1g)
        {
            return Err(FaultReason::FsEntryReserved);
        }
        rw &= pte & FS_RW != 0;
        us &= pte & FS_US != 0;
        let mut set = FS_A;
        // (EA and D are added below when they apply.)
        if ctl.eafe {
            set |= FS_EA;
        }
        let is_leaf = level == 1 || large;
        if is_leaf && access.write {
            set |= FS_D;
        }
        let blocked = pte & set != set && !loc.writable;
        if let Some(u) = pending.updates.get_mut(pending.len) {
            *u = Update { addr: loc.addr, seen: pte, set, blocked };
            pending.len += 1;
        }
        if is_leaf {
            break (pte, level);
        }
        table_addr = pte & haw & !0xfff;
        level -= 1;
    };
    if !access.supervisor && !us {
        return Err(FaultReason::FsPrivilege);
    }
    let write_ok = rw || (access.supervisor && !ctl.wpe);
    if access.write && !write_ok {
        return Err(FaultReason::SmWrite);
    }
    // Accessed/dirty updates to entries that the second stage maps
    // read-only (nested) cannot be performed.
    if pending.updates[..pending.len].iter().any(|u| u.blocked) {
        return Err(FaultReason::FsEntrySsWriteDenied);
    }
    let size = level_size(leaf_level);
    let out = FsOutput {
        phys: leaf & haw & !size.wrapping_sub(1),
        level: leaf_level,
        perm: Perm { read: true, write: write_ok },
        dirty: leaf & FS_D != 0 || access.write,
        pte: leaf,
    };
    Ok((out, pending))
}

/// Perform the accessed/dirty updates of a successful walk.
fn commit(mem: &dyn GuestMemory, pending: &Pending) -> Result<(), FaultReason> {
    const FLAGS: u64 = FS_A | FS_D | FS_EA;
    for u in &pending.updates[..pending.len] {
        if u.seen & u.set == u.set {
            continue;
        }
        let now = mem.read_u64(u.addr).map_err(|_| FaultReason::FsAdUpdateFailed)?;
        if now & !FLAGS != u.seen & !FLAGS {
            continue;
        }
        mem.write_u64(u.addr, now | u.set)
            .map_err(|_| FaultReason::FsAdUpdateFailed)?;
    }
    Ok(())
}

/// Translate `iova` through first-stage tables whose addresses are host
/// (output) addresses, updating accessed/dirty flags on success.
pub fn fs_walk(
    mem: &dyn GuestMemory,
    cfg: &FsWalkConfig,
    table: &FsTable,
    ctl: &FsControls,
    iova: u64,
    access: FsAccess,
) -> Result<FsOutput, FaultReason> {
    let mut identity = |addr: u64, _root: bool| Ok(Located { addr, writable: true });
    let (out, pending) = fs_walk_core(mem, cfg, table, ctl, iova, access, &mut identity)?;
    commit(mem, &pending)?;
    Ok(out)
}

/// Scalable-mode fault for a second-stage failure on the final output
/// address of a request (second-stage-only or nested translation).
pub fn ss_output_fault(e: SsError, write: bool, nested: bool) -> FaultReason {
    match e {
        SsError::BadLevels => FaultReason::SsRootInvalid,
        SsError::BeyondAgaw if nested => FaultReason::SmNestedOutputBeyondAgaw,
        SsError::BeyondAgaw => FaultReason::SmAddressBeyondAgaw,
        SsError::RootAccess | SsError::EntryAccess => FaultReason::SsEntryAccess,
        SsError::NotPresent => FaultReason::SsEntryNotPresent,
        SsError::Reserved => FaultReason::SsEntryReserved,
        SsError::Permission if write => FaultReason::SmWrite,
        SsError::Permission => FaultReason::SmRead,
    }
}

/// Scalable-mode fault for a second-stage failure while translating the
/// address of a first-stage table entry (`root`: the first-stage root).
fn ss_table_fault(e: SsError, root: bool) -> FaultReason {
    match e {
        SsError::BadLevels => FaultReason::SsRootInvalid,
        SsError::BeyondAgaw => FaultReason::FsTableBeyondSsAgaw,
        SsError::RootAccess | SsError::EntryAccess => FaultReason::SsEntryAccess,
        SsError::NotPresent => FaultReason::SsEntryNotPresent,
        SsError::Reserved => FaultReason::SsEntryReserved,
        SsError::Permission if root => FaultReason::FsRootSsReadDenied,
        SsError::Permission => FaultReason::FsEntrySsReadDenied,
    }
}

/// Nested translation: the first-stage tables at `fs` hold guest physical
/// addresses; every table entry address and the final output address are
/// translated by the second-stage tables at `ss`. A failure reports the
/// fault of the stage that failed. Accessed/dirty updates of first-stage
/// entries happen only once the whole translation succeeded, and need
/// second-stage write permission on the page holding the entry (SFS.8).
#[allow(clippy::too_many_arguments)]
pub fn nested_walk(
    mem: &dyn GuestMemory,
    fs_cfg: &FsWalkConfig,
    ss_cfg: &WalkConfig,
    fs: &FsTable,
    ss: &SsTable,
    ctl: &FsControls,
    iova: u64,
    access: FsAccess,
) -> Result<FsOutput, FaultReason> {
    let mut locate = |gpa: u64, root: bool| {
        let o = walk_detailed(mem, ss_cfg, ss.root, ss.levels, ss.agaw, gpa, false)
            .map_err(|e| ss_table_fault(e, root))?;
        let offset = gpa & level_size(o.level).wrapping_sub(1);
        Ok(Located { addr: o.phys | offset, writable: o.perm.write })
    };
    let (f, pending) = fs_walk_core(mem, fs_cfg, fs, ctl, iova, access, &mut locate)?;
    let fs_size = level_size(f.level);
    let gpa = f.phys | (iova & fs_size.wrapping_sub(1));
    let s = walk_detailed(mem, ss_cfg, ss.root, ss.levels, ss.agaw, gpa, access.write)
        .map_err(|e| ss_output_fault(e, access.write, true))?;
    commit(mem, &pending)?;
    let level = f.level.min(s.level);
    let size = level_size(level);
    let hpa = s.phys | (gpa & level_size(s.level).wrapping_sub(1));
    Ok(FsOutput {
        phys: hpa & !size.wrapping_sub(1),
        level,
        perm: Perm { read: s.perm.read, write: f.perm.write && s.perm.write },
        dirty: f.dirty,
        pte: f.pte,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_boundaries_4_and_5_level() {
        assert!(is_canonical(0, 4));
        assert!(is_canonical(0x0000_7fff_ffff_ffff, 4));
        assert!(!is_canonical(0x0000_8000_0000_0000, 4));
        assert!(is_canonical(0xffff_8000_0000_0000, 4));
        assert!(!is_canonical(0xfffe_8000_0000_0000, 4));
        assert!(is_canonical(u64::MAX, 4));
        assert!(is_canonical(0x00ff_ffff_ffff_ffff, 5));
        assert!(!is_canonical(0x0100_0000_0000_0000, 5));
        assert!(is_canonical(0xff00_0000_0000_0000, 5));
        // Out-of-range level counts do not panic.
        let _ = (is_canonical(1, 0), is_canonical(1, 255));
    }

    #[test]
    fn reserved_masks_match_c_device_for_aw48() {
        let hi = 0x000f_0000_0000_0000;
        assert_eq!(fs_reserved_mask(48, 1, false), hi);
        assert_eq!(fs_reserved_mask(48, 2, false), hi);
        assert_eq!(fs_reserved_mask(48, 3, false), hi);
        assert_eq!(fs_reserved_mask(48, 4, false), hi | 0x80);
        assert_eq!(fs_reserved_mask(48, 5, false), hi | 0x80);
        assert_eq!(fs_reserved_mask(48, 2, true), hi | 0x1f_e000);
        assert_eq!(fs_reserved_mask(48, 3, true), hi | 0x3fff_e000);
        assert_eq!(fs_reserved_mask(48, 0, false), u64::MAX);
        assert_eq!(fs_reserved_mask(39, 1, false), 0x000f_ff80_0000_0000);
    }

    #[test]
    fn ss_fault_mapping_distinguishes_stage_and_position() {
        assert_eq!(ss_output_fault(SsError::BeyondAgaw, false, false), FaultReason::SmAddressBeyondAgaw);
        assert_eq!(ss_output_fault(SsError::BeyondAgaw, false, true), FaultReason::SmNestedOutputBeyondAgaw);
        assert_eq!(ss_output_fault(SsError::Permission, true, false), FaultReason::SmWrite);
        assert_eq!(ss_output_fault(SsError::Permission, false, false), FaultReason::SmRead);
        assert_eq!(ss_output_fault(SsError::NotPresent, true, false), FaultReason::SsEntryNotPresent);
        assert_eq!(ss_table_fault(SsError::Permission, true), FaultReason::FsRootSsReadDenied);
        assert_eq!(ss_table_fault(SsError::Permission, false), FaultReason::FsEntrySsReadDenied);
        assert_eq!(ss_table_fault(SsError::BeyondAgaw, false), FaultReason::FsTableBeyondSsAgaw);
        assert_eq!(ss_table_fault(SsError::RootAccess, true), FaultReason::SsEntryAccess);
    }
}
