//! x86 page-table formats as an Intel VT-d walks them: the second-stage
//! format (legacy "second-level" tables, R/W/PS entries) and the
//! first-stage format (x86-64 4- and 5-level paging), alone or nested
//! under a second stage.
//!
//! Conventions: levels are numbered as in the VT-d spec, 1 = page table
//! (4 KiB leaves), 2 = page directory (2 MiB leaves with PS), 3 = PDPT
//! (1 GiB leaves with PS), 4 = PML4, 5 = PML5; the walk engine's height is
//! `level - 1`. Each table is 512 little-endian 8-byte entries.
//!
//! Second stage: an entry with R = W = 0 is not present; effective
//! permissions are the AND of R/W over the levels walked, checked at each
//! level. Reserved bits follow QEMU's C VT-d: the host address width
//! bounds every address field, bits 52..61 and 63 are ignored, bit 62 (TM,
//! unless allowed) and bit 11 (SNP, unless snoop control) are reserved in
//! leaves, SNP in non-leaf entries, PS at level 4, and address bits below
//! the page size of a superpage.
//!
//! First stage: P (bit 0), R/W (1), U/S (2), A (5), D (6, leaves), PS (7),
//! EA (10, extended accessed), address in 51:12; bits 63:52 (XD included:
//! execute requests are not modelled) are ignored. Reserved: address bits
//! at or above the host address width, PS at levels 4 and 5, address bits
//! 20:13 / 29:13 of 2 MiB / 1 GiB leaves (bit 12 is PAT); a 1 GiB leaf
//! without 1 GiB support is reserved. A present entry grants read; a user
//! request needs U/S on every level; a write needs R/W on every level,
//! except that a supervisor may write read-only pages when WPE is clear.
//! Accessed/dirty flags (A, EA with EAFE, D in the leaf for writes) are set
//! only after the whole translation succeeded ([`fs_walk`],
//! [`nested_walk`]), through [`super::walk::commit`]; an update to an
//! entry that the second stage maps read-only fails the translation.

use bilge::prelude::*;

use super::walk::{self, Format, Geometry, Located, Next, Pending, Step};
use super::{width_mask, Perm};
use crate::memory::GuestMemory;

pub use layouts::{FsLargePte, FsPte, SsPte};

/// Architected bit layouts of the paging entries (VT-d 3.4 9.8 for the
/// second stage, the Intel SDM's 4- and 5-level paging for the first). A
/// module of its own because bilge's generated constructors carry no
/// documentation.
#[allow(missing_docs)]
mod layouts {
    // Every field is #[inline]: bilge copies a field's attributes onto its
    // getter and setter, which QEMU's build (debug assertions on) would
    // otherwise leave out of line (+10% instructions on a page walk).
    use bilge::prelude::*;

    /// A second-stage paging entry, any level.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct SsPte {
        /// Bit 0, R: read.
        #[inline]
        pub r: bool,
        /// Bit 1, W: write.
        #[inline]
        pub w: bool,
        /// Bit 2, X: execute (not modelled).
        #[inline]
        pub x: bool,
        /// Bits 5:3, EMT: extended memory type (leaves).
        #[inline]
        pub emt: u3,
        /// Bit 6, IPAT: ignore PAT (leaves).
        #[inline]
        pub ipat: bool,
        /// Bit 7, PS: page size (a 2 MiB / 1 GiB leaf at level 2 / 3).
        #[inline]
        pub ps: bool,
        /// Bit 8, A: accessed.
        #[inline]
        pub a: bool,
        /// Bit 9, D: dirty (leaves).
        #[inline]
        pub d: bool,
        /// Bit 10, ignored.
        #[inline]
        pub ignored_10: bool,
        /// Bit 11, SNP: snoop (leaves, with snoop control).
        #[inline]
        pub snp: bool,
        /// Bits 51:12, ADDR: the next table or the page >> 12.
        #[inline]
        pub addr: u40,
        /// Bits 61:52, ignored.
        #[inline]
        pub ignored_61_52: u10,
        /// Bit 62, TM: transient mapping (leaves).
        #[inline]
        pub tm: bool,
        /// Bit 63, ignored.
        #[inline]
        pub ignored_63: bool,
    }

    /// A first-stage (x86-64 paging) entry: a table entry or a 4 KiB leaf.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct FsPte {
        /// Bit 0, P: present.
        #[inline]
        pub p: bool,
        /// Bit 1, R/W: writes allowed.
        #[inline]
        pub rw: bool,
        /// Bit 2, U/S: user requests allowed.
        #[inline]
        pub us: bool,
        /// Bit 3, PWT.
        #[inline]
        pub pwt: bool,
        /// Bit 4, PCD.
        #[inline]
        pub pcd: bool,
        /// Bit 5, A: accessed.
        #[inline]
        pub a: bool,
        /// Bit 6, D: dirty (leaves).
        #[inline]
        pub d: bool,
        /// Bit 7, PS: page size (at level 2 / 3: a [`FsLargePte`]); PAT in a
        /// 4 KiB leaf.
        #[inline]
        pub ps: bool,
        /// Bit 8, G: global (leaves).
        #[inline]
        pub g: bool,
        /// Bit 9, ignored.
        #[inline]
        pub ignored_9: bool,
        /// Bit 10, EA: extended accessed.
        #[inline]
        pub ea: bool,
        /// Bit 11, ignored.
        #[inline]
        pub ignored_11: bool,
        /// Bits 51:12, the next table or the page >> 12.
        #[inline]
        pub addr: u40,
        /// Bits 62:52, ignored.
        #[inline]
        pub ignored_62_52: u11,
        /// Bit 63, XD: execute disable (execute requests are not modelled).
        #[inline]
        pub xd: bool,
    }

    /// A first-stage 2 MiB or 1 GiB leaf (PS = 1 at level 2 or 3).
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct FsLargePte {
        /// Bits 11:0, as in [`FsPte`] (PS set).
        #[inline]
        pub flags: u12,
        /// Bit 12, PAT.
        #[inline]
        pub pat: bool,
        /// Bits 51:13, the page >> 13 (its bits below 21 / 30 are reserved).
        #[inline]
        pub addr: u39,
        /// Bits 63:52, as in [`FsPte`].
        #[inline]
        pub high: u12,
    }
}

/// The bits of a second-stage entry that `set` sets in a zero entry (a
/// field mask; constant-folded where `set` is).
#[inline(always)]
pub fn ss_bits(set: impl FnOnce(&mut SsPte)) -> u64 {
    crate::layout::bits(set)
}

/// The bits of a first-stage entry that `set` sets in a zero entry.
#[inline(always)]
pub fn fs_bits(set: impl FnOnce(&mut FsPte)) -> u64 {
    crate::layout::bits(set)
}

/// Every flag a first-stage walk may set: A, D, EA.
#[inline(always)]
pub fn fs_update_flags() -> u64 {
    fs_bits(|e| {
        e.set_a(true);
        e.set_d(true);
        e.set_ea(true);
    })
}

/// Address bit where the index for `level` starts.
#[inline]
pub fn level_shift(level: u8) -> u32 {
    12 + 9 * u32::from(level.saturating_sub(1))
}

/// Size in bytes of the region mapped by one entry at `level`.
#[inline]
pub fn level_size(level: u8) -> u64 {
    1u64.checked_shl(level_shift(level)).unwrap_or(0)
}

fn x86_geometry(levels: u8) -> Geometry {
    Geometry { granule_shift: 12, stride: 9, start_height: u32::from(levels) - 1, root_bits: 9 }
}

// ---------------------------------------------------------------- second stage

/// Hardware capabilities a second-stage walk depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkConfig {
    /// Host address width in bits (bounds output and table addresses).
    pub haw_bits: u8,
    /// Maximum guest address width in bits (CAP.MGAW + 1).
    pub mgaw_bits: u8,
    /// 2 MiB leaves supported.
    pub large_2m: bool,
    /// 1 GiB leaves supported.
    pub large_1g: bool,
    /// SNP allowed in leaf entries.
    pub snoop_control: bool,
    /// TM allowed in leaf entries.
    pub tm_allowed: bool,
}

/// A successful second-stage walk.
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

/// Reserved bits of a second-stage entry at `level`; `large` when PS is
/// set at level 2 or 3. From the [`SsPte`] layout: address bits at or above
/// the host address width, TM (unless allowed) and SNP (unless snoop
/// control) in leaves, TM and SNP in tables, PS at level 4, and the address
/// bits below a superpage's size.
#[inline]
pub fn reserved_mask(cfg: &WalkConfig, level: u8, large: bool) -> u64 {
    let addr = ss_bits(|e| e.set_addr(<u40 as Number>::MAX));
    let above_haw = addr & !width_mask(u32::from(cfg.haw_bits));
    let tm = ss_bits(|e| e.set_tm(true));
    let snp = ss_bits(|e| e.set_snp(true));
    let leaf = above_haw | if cfg.tm_allowed { 0 } else { tm } | if cfg.snoop_control { 0 } else { snp };
    match (level, large) {
        (1, _) => leaf,
        (2, true) | (3, true) => leaf | (addr & level_size(level).wrapping_sub(1)),
        (2, false) | (3, false) => above_haw | tm | snp,
        (4, _) => above_haw | tm | snp | ss_bits(|e| e.set_ps(true)),
        _ => u64::MAX,
    }
}

/// Why a second-stage walk failed.
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

/// Permissions accumulated over a second-stage walk (all granted before
/// the root).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SsState(Perm);

impl Default for SsState {
    fn default() -> Self {
        SsState(Perm::RW)
    }
}

struct SecondStage<'a> {
    cfg: &'a WalkConfig,
    levels: u8,
    write: bool,
    /// The host address width's mask.
    haw: u64,
}

impl Format for SecondStage<'_> {
    type State = SsState;
    type Error = SsError;

    #[inline]
    fn geometry(&self) -> Geometry {
        x86_geometry(self.levels)
    }

    #[inline]
    fn step(&self, SsState(perm): &mut SsState, height: u32, pte: u64) -> Result<Step, SsError> {
        let e = SsPte::from(pte);
        if !e.r() && !e.w() {
            return Err(SsError::NotPresent);
        }
        let level = height as u8 + 1;
        let large = (level == 2 || level == 3) && e.ps();
        let large_ok = match level {
            2 => self.cfg.large_2m,
            3 => self.cfg.large_1g,
            _ => true,
        };
        // The C device's order: this entry's permission, then its reserved
        // bits (the architecture does not order the two).
        perm.read &= e.r();
        perm.write &= e.w();
        if !perm.allows(self.write) {
            return Err(SsError::Permission);
        }
        if pte & reserved_mask(self.cfg, level, large) != 0 || (large && !large_ok) {
            return Err(SsError::Reserved);
        }
        // The address field (its mask from the layout, a constant) within
        // the host address width (reserved bits above it were refused), down
        // to the page or table size.
        let addr = pte & ss_bits(|f| f.set_addr(<u40 as Number>::MAX)) & self.haw;
        let next = if level == 1 || large {
            Next::Leaf(addr & !level_size(level).wrapping_sub(1))
        } else {
            Next::Table(addr)
        };
        Ok(Step { next, set: 0 })
    }

    fn read_failed(&self, height: u32, root: bool, _addr: u64) -> SsError {
        let _ = height;
        if root {
            SsError::RootAccess
        } else {
            SsError::EntryAccess
        }
    }
}

/// Translate `iova` through the second-stage tables rooted at `root`
/// (`levels` deep, `agaw` bits of input address).
#[inline]
pub fn ss_walk(
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
    // Not limited to the host address width: a pointer beyond it fails
    // to read (structures whose checks allow such pointers, the PASID
    // entry under the C device's rules, get that from QEMU's C device too).
    let root = root & !0xfff;
    let fmt = SecondStage { cfg, levels, write, haw: width_mask(u32::from(cfg.haw_bits)) };
    let w = walk::walk_single(mem, &fmt, root, iova, None)?;
    Ok(WalkOutput { phys: w.out, level: w.height as u8 + 1, perm: w.state.0, pte: w.leaf })
}

// ---------------------------------------------------------------- first stage

/// First-stage tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FsTable {
    /// Root table address (a guest physical address under nesting).
    pub root: u64,
    /// Number of levels (4 or 5).
    pub levels: u8,
}

/// Second-stage tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SsTable {
    /// Root table address.
    pub root: u64,
    /// Number of levels (3 or 4).
    pub levels: u8,
    /// Adjusted guest address width in bits.
    pub agaw: u8,
}

/// Hardware capabilities a first-stage walk depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsWalkConfig {
    /// Host address width in bits.
    pub haw_bits: u8,
    /// 1 GiB leaves allowed.
    pub large_1g: bool,
    /// QEMU's C device's order: a user request's U/S and (for writes) R/W
    /// are checked in each entry right after P, before its reserved bits
    /// and the entries below (the result differs from checking them at
    /// the end only in which fault a walk with several problems reports).
    pub user_checks_per_level: bool,
}

/// Per-table controls of a first-stage walk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FsControls {
    /// WPE: supervisor writes honour R/W.
    pub wpe: bool,
    /// EAFE: set EA along with A.
    pub eafe: bool,
    /// Width of the canonical input address when it is not the tables'
    /// (QEMU's C device takes 30 + 9 * AW of the PASID entry); `None`: 48
    /// or 57 bits for 4- or 5-level tables.
    pub canonical_bits: Option<u8>,
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

/// Why a first-stage or nested walk failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FsError {
    /// `levels` is not 4 or 5.
    BadLevels,
    /// The input address is not canonical.
    NonCanonical,
    /// The root table could not be read.
    RootAccess,
    /// A table below the root could not be read.
    EntryAccess,
    /// An entry has P = 0.
    NotPresent,
    /// A present entry has a reserved bit set.
    Reserved,
    /// A user request to a supervisor page.
    Privilege,
    /// A write to a read-only page.
    Write,
    /// An accessed/dirty update to an entry the second stage maps
    /// read-only.
    UpdateBlocked,
    /// An accessed/dirty update could not be written.
    UpdateFailed,
    /// Nested: the second stage failed on the address of a first-stage
    /// table entry (`root`: in the root table).
    Stage2Table {
        /// The second-stage failure.
        error: SsError,
        /// The entry is in the first-stage root table.
        root: bool,
    },
    /// Nested: the second stage failed on the final output address.
    Stage2Output(SsError),
}

/// Reserved bits of a first-stage entry at `level` (`large` when PS is set
/// at level 2 or 3). From the [`FsPte`] / [`FsLargePte`] layouts: address
/// bits at or above the host address width, PS at levels 4 and 5, and a
/// large leaf's address bits below its size (above PAT).
#[inline]
pub fn fs_reserved_mask(haw_bits: u8, level: u8, large: bool) -> u64 {
    let above_haw = fs_bits(|e| e.set_addr(<u40 as Number>::MAX)) & !width_mask(u32::from(haw_bits));
    let large_addr = || {
        let mut e = FsLargePte::from(0u64);
        e.set_addr(<u39 as Number>::MAX);
        u64::from(e) & level_size(level).wrapping_sub(1)
    };
    match (level, large) {
        (1, _) | (2, false) | (3, false) => above_haw,
        (2, true) | (3, true) => above_haw | large_addr(),
        (4, _) | (5, _) => above_haw | fs_bits(|e| e.set_ps(true)),
        _ => u64::MAX,
    }
}

/// Whether `iova` is canonical for `levels`-level first-stage tables
/// (bits 63..(12 + 9 * levels - 1) all equal).
#[inline]
pub fn is_canonical(iova: u64, levels: u8) -> bool {
    is_canonical_bits(iova, 12 + 9 * levels.clamp(1, 5))
}

/// Whether `iova` is canonical for a `bits`-bit address (bits 63 down to
/// `bits - 1` all equal); every address is for 64 bits or more.
pub fn is_canonical_bits(iova: u64, bits: u8) -> bool {
    if bits >= 64 || bits == 0 {
        return true;
    }
    // Arithmetic: canonical means bits 63:bits-1 all equal (sign extension).
    let top = iova >> (bits - 1);
    top == 0 || top == u64::MAX >> (bits - 1)
}

/// R/W and U/S accumulated over a first-stage walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsState {
    rw: bool,
    us: bool,
}

impl Default for FsState {
    fn default() -> Self {
        FsState { rw: true, us: true }
    }
}

struct FirstStage<'a> {
    cfg: &'a FsWalkConfig,
    ctl: &'a FsControls,
    levels: u8,
    write: bool,
    /// A user request checked per level ([`FsWalkConfig::user_checks_per_level`]).
    user_early: bool,
    /// The host address width's mask.
    haw: u64,
}

impl Format for FirstStage<'_> {
    type State = FsState;
    type Error = FsError;

    #[inline]
    fn geometry(&self) -> Geometry {
        x86_geometry(self.levels)
    }

    #[inline(always)]
    fn step(&self, st: &mut FsState, height: u32, pte: u64) -> Result<Step, FsError> {
        let level = height as u8 + 1;
        let e = FsPte::from(pte);
        if !e.p() {
            return Err(FsError::NotPresent);
        }
        if self.user_early {
            if !e.us() {
                return Err(FsError::Privilege);
            }
            if self.write && !e.rw() {
                return Err(FsError::Write);
            }
        }
        let large = (level == 2 || level == 3) && e.ps();
        if pte & fs_reserved_mask(self.cfg.haw_bits, level, large) != 0
            || (large && level == 3 && !self.cfg.large_1g)
        {
            return Err(FsError::Reserved);
        }
        st.rw &= e.rw();
        st.us &= e.us();
        let is_leaf = level == 1 || large;
        let set = fs_bits(|f| {
            f.set_a(true);
            f.set_ea(self.ctl.eafe);
            f.set_d(is_leaf && self.write);
        });
        // The address field (its mask from the layout, a constant) within
        // the host address width, down to the page or table size (a large
        // leaf's PAT bit 12 included).
        let addr = pte & fs_bits(|f| f.set_addr(<u40 as Number>::MAX)) & self.haw;
        let next = if is_leaf {
            Next::Leaf(addr & !level_size(level).wrapping_sub(1))
        } else {
            Next::Table(addr)
        };
        Ok(Step { next, set })
    }

    fn read_failed(&self, _height: u32, root: bool, _addr: u64) -> FsError {
        if root {
            FsError::RootAccess
        } else {
            FsError::EntryAccess
        }
    }
}

/// Walk first-stage tables, checking privilege and write permission; no
/// accessed/dirty update is made yet.
fn fs_walk_core<L: FnMut(u64, bool) -> Result<Located, FsError>>(
    mem: &dyn GuestMemory,
    cfg: &FsWalkConfig,
    table: &FsTable,
    ctl: &FsControls,
    iova: u64,
    access: FsAccess,
    locate: L,
) -> Result<(FsOutput, Pending), FsError> {
    let levels = table.levels;
    if !(4..=5).contains(&levels) {
        return Err(FsError::BadLevels);
    }
    let canonical = match ctl.canonical_bits {
        Some(bits) => is_canonical_bits(iova, bits),
        None => is_canonical(iova, levels),
    };
    if !canonical {
        return Err(FsError::NonCanonical);
    }
    let haw = width_mask(u32::from(cfg.haw_bits));
    let user_early = cfg.user_checks_per_level && !access.supervisor;
    let fmt = FirstStage { cfg, ctl, levels, write: access.write, user_early, haw };
    let root = table.root & !0xfff; // as the second stage's (see ss_walk)
    let mut pending = Pending::default();
    let w = walk::walk(mem, &fmt, root, iova, locate, Some(&mut pending))?;
    if !access.supervisor && !w.state.us {
        return Err(FsError::Privilege);
    }
    let write_ok = w.state.rw || (access.supervisor && !ctl.wpe);
    if access.write && !write_ok {
        return Err(FsError::Write);
    }
    if pending.blocked() {
        return Err(FsError::UpdateBlocked);
    }
    let out = FsOutput {
        phys: w.out,
        level: w.height as u8 + 1,
        perm: Perm { read: true, write: write_ok },
        dirty: FsPte::from(w.leaf).d() || access.write,
        pte: w.leaf,
    };
    Ok((out, pending))
}

/// Translate `iova` through first-stage tables whose addresses are output
/// addresses, updating accessed/dirty flags on success.
pub fn fs_walk(
    mem: &dyn GuestMemory,
    cfg: &FsWalkConfig,
    table: &FsTable,
    ctl: &FsControls,
    iova: u64,
    access: FsAccess,
) -> Result<FsOutput, FsError> {
    let identity = |addr: u64, _root: bool| Ok(Located::identity(addr));
    let (out, pending) = fs_walk_core(mem, cfg, table, ctl, iova, access, identity)?;
    walk::commit(mem, &pending, fs_update_flags()).map_err(|_| FsError::UpdateFailed)?;
    Ok(out)
}

/// Nested translation: the first-stage tables at `fs` hold guest physical
/// addresses; every table entry address and the final output address are
/// translated by the second-stage tables at `ss`. Accessed/dirty updates
/// happen only once the whole translation succeeded, and need second-stage
/// write permission on the page holding the entry.
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
) -> Result<FsOutput, FsError> {
    let locate = |gpa: u64, root: bool| {
        let o = ss_walk(mem, ss_cfg, ss.root, ss.levels, ss.agaw, gpa, false)
            .map_err(|error| FsError::Stage2Table { error, root })?;
        let offset = gpa & level_size(o.level).wrapping_sub(1);
        Ok(Located { addr: o.phys | offset, writable: o.perm.write })
    };
    let (f, pending) = fs_walk_core(mem, fs_cfg, fs, ctl, iova, access, locate)?;
    let gpa = f.phys | (iova & level_size(f.level).wrapping_sub(1));
    let s = ss_walk(mem, ss_cfg, ss.root, ss.levels, ss.agaw, gpa, access.write)
        .map_err(FsError::Stage2Output)?;
    walk::commit(mem, &pending, fs_update_flags()).map_err(|_| FsError::UpdateFailed)?;
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

    // Raw bit positions from the specification, independent of the
    // layouts (these tests check the layouts against them).
    const SL_R: u64 = 1;
    const SL_W: u64 = 1 << 1;
    const SL_SNP: u64 = 1 << 11;
    const SL_TM: u64 = 1 << 62;
    const SL_IGNORED: u64 = 0xbff0_0000_0000_0000;

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

    /// Quadwords at fixed addresses; everything else reads as zero.
    struct Quads(std::collections::HashMap<u64, u64>);

    impl GuestMemory for Quads {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), crate::memory::MemError> {
            let q = self.0.get(&(addr & !7)).copied().unwrap_or(0).to_le_bytes();
            let at = (addr & 7) as usize;
            buf.copy_from_slice(&q[at..at + buf.len()]);
            Ok(())
        }
        fn write(&self, _addr: u64, _buf: &[u8]) -> Result<(), crate::memory::MemError> {
            Ok(())
        }
    }

    #[test]
    fn second_stage_permission_is_checked_before_reserved_bits() {
        // A 4-level walk whose level-3 entry is read-only and has a
        // reserved bit (an address bit above the 48-bit width).
        let mem = Quads(
            [(0x1000, 0x2000 | SL_R | SL_W), (0x2000, 0x3000 | SL_R | (1 << 50)), (0x3000, 0x4000 | SL_R | SL_W)]
                .into_iter()
                .collect(),
        );
        let walk = |write| ss_walk(&mem, &cfg(48), 0x1000, 4, 48, 0, write).map(|o| o.phys);
        // As the C device: the missing write permission is found first.
        assert_eq!(walk(true), Err(SsError::Permission));
        assert_eq!(walk(false), Err(SsError::Reserved));
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
        let _ = (is_canonical(1, 0), is_canonical(1, 255));
    }

    #[test]
    fn fs_reserved_masks_match_c_device_for_aw48() {
        let hi = 0x000f_0000_0000_0000;
        assert_eq!(fs_reserved_mask(48, 1, false), hi);
        assert_eq!(fs_reserved_mask(48, 4, false), hi | 0x80);
        assert_eq!(fs_reserved_mask(48, 5, false), hi | 0x80);
        assert_eq!(fs_reserved_mask(48, 2, true), hi | 0x1f_e000);
        assert_eq!(fs_reserved_mask(48, 3, true), hi | 0x3fff_e000);
        assert_eq!(fs_reserved_mask(48, 0, false), u64::MAX);
        assert_eq!(fs_reserved_mask(39, 1, false), 0x000f_ff80_0000_0000);
    }
}
