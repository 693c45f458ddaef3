//! VMSAv8-64 translation tables as an Arm SMMUv3 walks them: stage 1 (the
//! tables of a Context Descriptor, TTB0/TTB1), stage 2 (the tables of a
//! Stream Table Entry, S2TTB) and the two nested, on top of the shared
//! walk engine ([`super::walk`]).
//!
//! # Conventions
//!
//! * Levels are numbered as in the Arm ARM: level 3 holds pages, level 0
//!   the largest tables, level -1 exists only for 52-bit inputs with the
//!   4 KiB granule and `DS` (LPA2). The walk engine counts heights from
//!   the page tables up: VMSA level `n` is engine height `3 - n`
//!   ([`height_of_level`], [`level_of_height`]); level -1 is height 4.
//! * Granules are 4, 16 or 64 KiB; each table below the root holds
//!   `granule / 8` little-endian 8-byte descriptors, i.e. resolves 9, 11 or
//!   13 bits. The root table resolves what is left of the input size, and
//!   at stage 2 it may be up to 16 concatenated tables (up to 4 more bits).
//! * Descriptor layouts are bilge types ([`TableDesc`], [`S1LeafDesc`],
//!   [`S2LeafDesc`], and [`DescOa`] for the address fields every
//!   descriptor shares). An output (or next-level table) address is bits
//!   47:granule of the descriptor, plus bits 51:48 from descriptor bits
//!   15:12 with the 64 KiB granule when the SMMU implements a 52-bit
//!   output size (FEAT_LPA), or from descriptor bits 49:48 and 9:8 with
//!   `DS` (LPA2, 4 and 16 KiB granules). Bits below the granule, and below
//!   the block size in a block, are ignored; so are the other RES0 bits of
//!   the architecture, which the SMMU does not have to check.
//! * Output sizes: the effective output size of a stage is its IPS / S2PS
//!   capped by the SMMU's OAS ([`Caps::oas_bits`]), and at 48 bits for the
//!   4 and 16 KiB granules without `DS`. A table base, next-level table
//!   address or output address with a bit at or above it is an Address
//!   size fault (level 0 for a table base, else the level of the
//!   descriptor). A table base is aligned down to the size of its root
//!   table (all the concatenated tables at stage 2). The level-0 Address
//!   size fault for a table base is the Arm ARM's rule for the PE; QEMU's
//!   C model rejects such a CD as C_BAD_CD instead, which the SMMU model
//!   can still do before walking.
//! * Stage 1 selects TTB0 or TTB1 by input bit 55; bits 63:56 are ignored
//!   when TBI is set for that half. The remaining upper bits, down to the
//!   half's input size (64 - TnSZ), must all equal bit 55, else the walk
//!   is a level-0 Translation fault; so is a walk disabled by EPDn.
//!   Stage 2 faults at level 0 for an IPA beyond 64 - S2T0SZ bits.
//! * Start levels: stage 1 starts at the highest level the input size
//!   needs; stage 2 at the level S2SL0 encodes for the granule. A TnSZ /
//!   S2T0SZ outside the range the granule and the SMMU's features allow,
//!   a reserved S2SL0, or an S2SL0 inconsistent with S2T0SZ (the start
//!   level would resolve no bit, or need more than 16 concatenated
//!   tables) is a [`ConfigError`] from [`S1Tables::new`] /
//!   [`S2Tables::new`]: the SMMU reports C_BAD_CD / C_BAD_STE, not a walk
//!   fault (for an out-of-range TnSZ the Arm ARM allows clamping instead;
//!   this follows QEMU's C model in refusing the CD). A concatenated root is indexed with all its bits, so an IPA
//!   is walked in the concatenated table its upper bits select (QEMU
//!   10.2.2's C model walks every IPA in the first one).
//! * Descriptors: bit 0 clear is invalid (Translation fault). Below level
//!   3, bit 1 set is a table and clear a block, where the granule and
//!   level allow one (4 KiB: levels 1 and 2, and 0 with `DS`; 16 KiB:
//!   level 2, and 1 with `DS`; 64 KiB: level 2, and 1 with a 52-bit OAS),
//!   else a Translation fault. At level 3 bit 1 set is a page and clear
//!   reserved (Translation fault). The contiguous hint is ignored.
//! * Checks at a leaf, in this order: Access flag (AF = 0 faults unless
//!   HA, which sets it, or AFFD), then permissions. Stage 1: AP\[2:1\] with
//!   APTable from the tables above (unless HADn), UXN/PXN with
//!   UXNTable/PXNTable, and a location writable by unprivileged accesses
//!   is privileged-execute-never. Stage 2: S2AP read/write and XN (XN\[1:0\]
//!   with FEAT_XNX). An instruction fetch is checked against execute-never
//!   only, as for the PE; a write marked as an instruction is a data write.
//!   With HD (effective only with HA) a write to a read-only leaf with DBM
//!   is allowed and makes it dirty: stage 1 clears AP\[2\], stage 2 sets
//!   S2AP\[1\].
//! * Hardware updates (AF, dirty state) are made only after the whole
//!   translation succeeded, and only if the descriptor still reads as it
//!   did apart from the updated bits. The stage-1 format reports its dirty
//!   update to the engine as bit 7 in [`walk::Step::set`], meaning "clear
//!   AP\[2\]", so this module performs the updates itself rather than with
//!   [`walk::commit`], which can only set bits. Nested, a stage-1 update
//!   is a stage-2 write to the descriptor's IPA (a stage-2 fault there is
//!   CLASS=TT), which may itself set AF/dirty in stage 2.
//! * Errors are neutral ([`Fault`], [`VmsaError`]); the SMMU model maps
//!   them to its events: Translation → F_TRANSLATION, AddressSize →
//!   F_ADDR_SIZE, AccessFlag → F_ACCESS, Permission → F_PERMISSION,
//!   TableAbort → F_WALK_EABT, and [`VmsaError::Stage2`] gives the stage
//!   (S2 = 1), the faulting IPA and the CLASS (CD, TT or IN).
//!
//! Not modelled: AArch32 tables (AA64 = 0 is a configuration error),
//! big-endian tables, memory attributes and shareability (reported only
//! in the leaf descriptor), PBHA, WXN, FEAT_HAFT (AF in table
//! descriptors), 128-bit descriptors, the S2PTW check of stage-1 walks to
//! Device memory, and level -1 at stage 2 (the STE has no SL2; 52-bit IPAs
//! use concatenated level-0 tables).

use bilge::prelude::*;

use crate::layout::field_address;
use super::walk::{self, Format, Geometry, Located, Next, Pending, Step, Walked};
use super::{width_mask, Perm};
use crate::memory::GuestMemory;

pub use layouts::{DescOa, PaSize, S1LeafDesc, S2LeafDesc, TableDesc, Tg0, Tg1};

// ---------------------------------------------------------------- layouts

/// Architected bit layouts. A module of its own only because bilge's
/// generated constructors carry no documentation; every item here is
/// documented all the same.
#[allow(missing_docs)]
mod layouts {
    use bilge::prelude::*;

    /// The address fields every VMSAv8-64 descriptor (table, block, page;
    /// either stage) has at the same place.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct DescOa {
        /// Bit 0: the descriptor is valid.
        #[inline]
        pub valid: bool,
        /// Bit 1: table (levels below 3) or page (level 3); block when
        /// clear below level 3.
        #[inline]
        pub table: bool,
        #[inline]
        reserved: u6,
        /// Bits 9:8: address bits 51:50 with `DS`.
        #[inline]
        pub oa_51_50: u2,
        #[inline]
        reserved: u2,
        /// Bits 15:12: address bits 15:12 (4 KiB), 15:14 (16 KiB) or
        /// 51:48 (64 KiB with a 52-bit output size).
        #[inline]
        pub oa_15_12: u4,
        /// Bits 47:16: address bits 47:16.
        #[inline]
        pub oa_47_16: u32,
        /// Bits 49:48: address bits 49:48 with `DS`.
        #[inline]
        pub oa_49_48: u2,
        #[inline]
        reserved: u14,
    }

    /// A table descriptor (levels -1 to 2, bits 1:0 = 0b11). Bits 63:59
    /// are the stage-1 hierarchical controls; stage 2 ignores them.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct TableDesc {
        /// Bit 0: valid.
        #[inline]
        pub valid: bool,
        /// Bit 1: set for a table descriptor.
        #[inline]
        pub table: bool,
        #[inline]
        reserved: u6,
        /// Bits 9:8: next-level table address bits 51:50 with `DS`.
        #[inline]
        pub nlta_51_50: u2,
        #[inline]
        reserved: u2,
        /// Bits 15:12: address bits 15:12, or 51:48 (64 KiB, 52-bit).
        #[inline]
        pub nlta_15_12: u4,
        /// Bits 47:16: next-level table address bits 47:16.
        #[inline]
        pub nlta_47_16: u32,
        /// Bits 49:48: next-level table address bits 49:48 with `DS`.
        #[inline]
        pub nlta_49_48: u2,
        #[inline]
        reserved: u9,
        /// Bit 59: PXNTable, privileged execute-never below.
        #[inline]
        pub pxn_table: bool,
        /// Bit 60: UXNTable (XNTable), unprivileged execute-never below.
        #[inline]
        pub uxn_table: bool,
        /// Bits 62:61: APTable; bit 61 denies unprivileged accesses
        /// below, bit 62 denies writes below.
        #[inline]
        pub ap_table: u2,
        /// Bit 63: NSTable.
        #[inline]
        pub ns_table: bool,
    }

    /// A stage-1 block or page descriptor.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct S1LeafDesc {
        /// Bit 0: valid.
        #[inline]
        pub valid: bool,
        /// Bit 1: set for a page (level 3), clear for a block.
        #[inline]
        pub page: bool,
        /// Bits 4:2: AttrIndx, index into the CD's MAIR.
        #[inline]
        pub attr_indx: u3,
        /// Bit 5: NS.
        #[inline]
        pub ns: bool,
        /// Bit 6: AP\[1\], unprivileged accesses allowed.
        #[inline]
        pub ap_unpriv: bool,
        /// Bit 7: AP\[2\], read-only.
        #[inline]
        pub ap_ro: bool,
        /// Bits 9:8: shareability, or output address bits 51:50 with `DS`.
        #[inline]
        pub oa_51_50: u2,
        /// Bit 10: AF, the access flag.
        #[inline]
        pub af: bool,
        /// Bit 11: nG, not global (tagged with the ASID).
        #[inline]
        pub ng: bool,
        /// Bits 15:12: output address bits 15:12, or 51:48 (64 KiB, 52-bit).
        #[inline]
        pub oa_15_12: u4,
        /// Bits 47:16: output address bits 47:16.
        #[inline]
        pub oa_47_16: u32,
        /// Bits 49:48: output address bits 49:48 with `DS`.
        #[inline]
        pub oa_49_48: u2,
        /// Bit 50: GP (guarded page).
        #[inline]
        pub gp: bool,
        /// Bit 51: DBM, dirty bit modifier.
        #[inline]
        pub dbm: bool,
        /// Bit 52: contiguous hint.
        #[inline]
        pub contiguous: bool,
        /// Bit 53: PXN, privileged execute-never.
        #[inline]
        pub pxn: bool,
        /// Bit 54: UXN, unprivileged execute-never.
        #[inline]
        pub uxn: bool,
        /// Bits 58:55: reserved for software.
        #[inline]
        pub software: u4,
        /// Bits 62:59: page-based hardware attributes.
        #[inline]
        pub pbha: u4,
        #[inline]
        reserved: bool,
    }

    /// A stage-2 block or page descriptor.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct S2LeafDesc {
        /// Bit 0: valid.
        #[inline]
        pub valid: bool,
        /// Bit 1: set for a page (level 3), clear for a block.
        #[inline]
        pub page: bool,
        /// Bits 5:2: MemAttr.
        #[inline]
        pub mem_attr: u4,
        /// Bit 6: S2AP\[0\], reads allowed.
        #[inline]
        pub s2ap_read: bool,
        /// Bit 7: S2AP\[1\], writes allowed.
        #[inline]
        pub s2ap_write: bool,
        /// Bits 9:8: shareability, or output address bits 51:50 with `DS`.
        #[inline]
        pub oa_51_50: u2,
        /// Bit 10: AF, the access flag.
        #[inline]
        pub af: bool,
        #[inline]
        reserved: bool,
        /// Bits 15:12: output address bits 15:12, or 51:48 (64 KiB, 52-bit).
        #[inline]
        pub oa_15_12: u4,
        /// Bits 47:16: output address bits 47:16.
        #[inline]
        pub oa_47_16: u32,
        /// Bits 49:48: output address bits 49:48 with `DS`.
        #[inline]
        pub oa_49_48: u2,
        #[inline]
        reserved: bool,
        /// Bit 51: DBM, dirty bit modifier.
        #[inline]
        pub dbm: bool,
        /// Bit 52: contiguous hint.
        #[inline]
        pub contiguous: bool,
        /// Bits 54:53: XN\[1:0\] (only XN\[1\], bit 54, without FEAT_XNX).
        #[inline]
        pub xn: u2,
        /// Bits 58:55: reserved for software.
        #[inline]
        pub software: u4,
        #[inline]
        reserved: u5,
    }

    /// The TG0 field of a Context Descriptor (and STE.S2TG, which uses the
    /// same encoding).
    #[bitsize(2)]
    #[derive(FromBits, Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Tg0 {
        /// 0b00: 4 KiB.
        Granule4K = 0,
        /// 0b01: 64 KiB.
        Granule64K = 1,
        /// 0b10: 16 KiB.
        Granule16K = 2,
        /// 0b11: reserved.
        Reserved = 3,
    }

    /// The TG1 field of a Context Descriptor (encoded unlike TG0).
    #[bitsize(2)]
    #[derive(FromBits, Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Tg1 {
        /// 0b00: reserved.
        Reserved = 0,
        /// 0b01: 16 KiB.
        Granule16K = 1,
        /// 0b10: 4 KiB.
        Granule4K = 2,
        /// 0b11: 64 KiB.
        Granule64K = 3,
    }

    /// A physical address size field (CD.IPS, STE.S2PS).
    #[bitsize(3)]
    #[derive(FromBits, Debug, Clone, Copy, PartialEq, Eq)]
    pub enum PaSize {
        /// 0b000: 32 bits.
        Bits32 = 0,
        /// 0b001: 36 bits.
        Bits36 = 1,
        /// 0b010: 40 bits.
        Bits40 = 2,
        /// 0b011: 42 bits.
        Bits42 = 3,
        /// 0b100: 44 bits.
        Bits44 = 4,
        /// 0b101: 48 bits.
        Bits48 = 5,
        /// 0b110: 52 bits.
        Bits52 = 6,
        /// 0b111: reserved (taken as the largest size, i.e. the OAS).
        Reserved = 7,
    }
}

impl PaSize {
    /// The size in bits (the reserved encoding counts as 52, which the
    /// OAS then caps).
    pub fn bits(self) -> u32 {
        match self {
            PaSize::Bits32 => 32,
            PaSize::Bits36 => 36,
            PaSize::Bits40 => 40,
            PaSize::Bits42 => 42,
            PaSize::Bits44 => 44,
            PaSize::Bits48 => 48,
            PaSize::Bits52 | PaSize::Reserved => 52,
        }
    }
}

/// The address size in bits of a raw 3-bit IPS / S2PS / OAS field (bits
/// above the field are ignored).
pub fn pa_size_bits(raw: u8) -> u32 {
    PaSize::from(u3::new(raw & 7)).bits()
}

// ---------------------------------------------------------------- levels

/// Engine height of VMSA `level` (levels below -1 or above 3 are clamped).
#[inline]
pub fn height_of_level(level: i8) -> u32 {
    (3 - level.clamp(-1, 3)) as u32
}

/// VMSA level of engine height `height` (heights above 4 are clamped).
#[inline]
pub fn level_of_height(height: u32) -> i8 {
    3 - height.min(4) as i8
}

/// A translation granule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Granule {
    /// 4 KiB pages, 9 bits per level.
    Size4K,
    /// 16 KiB pages, 11 bits per level.
    Size16K,
    /// 64 KiB pages, 13 bits per level.
    Size64K,
}

impl Granule {
    /// log2 of the page size.
    #[inline]
    pub fn shift(self) -> u32 {
        match self {
            Granule::Size4K => 12,
            Granule::Size16K => 14,
            Granule::Size64K => 16,
        }
    }

    /// Index bits of a full table.
    #[inline]
    pub fn stride(self) -> u32 {
        self.shift() - 3
    }

    /// Address bit where the index of a table at `level` starts.
    #[inline]
    pub fn level_shift(self, level: i8) -> u32 {
        self.shift() + self.stride() * height_of_level(level)
    }

    /// Decode CD.TG0 (0b00 4K, 0b01 64K, 0b10 16K; 0b11 reserved: `None`).
    pub fn from_tg0(raw: u8) -> Option<Granule> {
        match Tg0::from(u2::new(raw & 3)) {
            Tg0::Granule4K => Some(Granule::Size4K),
            Tg0::Granule16K => Some(Granule::Size16K),
            Tg0::Granule64K => Some(Granule::Size64K),
            Tg0::Reserved => None,
        }
    }

    /// Decode CD.TG1 (0b01 16K, 0b10 4K, 0b11 64K; 0b00 reserved: `None`).
    pub fn from_tg1(raw: u8) -> Option<Granule> {
        match Tg1::from(u2::new(raw & 3)) {
            Tg1::Granule4K => Some(Granule::Size4K),
            Tg1::Granule16K => Some(Granule::Size16K),
            Tg1::Granule64K => Some(Granule::Size64K),
            Tg1::Reserved => None,
        }
    }

    /// Decode STE.S2TG (encoded as TG0).
    pub fn from_s2tg(raw: u8) -> Option<Granule> {
        Granule::from_tg0(raw)
    }
}

/// The stage-2 start level S2SL0 encodes for `granule`, whatever the
/// features it may need (`None`: reserved). 4 KiB: 0b00 level 2, 0b01 level
/// 1, 0b10 level 0, 0b11 level 3 (small tables). 16 and 64 KiB: 0b00 level
/// 3, 0b01 level 2, 0b10 level 1, 0b11 level 0 (16 KiB with `DS` only).
pub fn s2_start_level(granule: Granule, sl0: u8) -> Option<i8> {
    match (granule, sl0 & 3) {
        (Granule::Size4K, 0) => Some(2),
        (Granule::Size4K, 1) => Some(1),
        (Granule::Size4K, 2) => Some(0),
        (Granule::Size4K, _) => Some(3),
        (Granule::Size16K, 3) => Some(0),
        (Granule::Size64K, 3) => None,
        (_, sl0) => Some(3 - sl0 as i8),
    }
}

// ---------------------------------------------------------------- configuration

/// What the SMMU implements, as the walks depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Caps {
    /// Output address size in bits (SMMU_IDR5.OAS: 32 to 52; other values
    /// are clamped). Also the largest stage-2 input size.
    pub oas_bits: u8,
    /// Small translation tables (SMMU_IDR3.STT): TnSZ / S2T0SZ up to 48
    /// (47 with 64 KiB) instead of 39, and S2SL0 = 0b11 with 4 KiB.
    pub small_tables: bool,
    /// 52-bit stage-1 inputs with the 64 KiB granule (SMMU_IDR5.VAX).
    pub va52: bool,
    /// Two-bit stage-2 XN (SMMU_IDR3.XNX).
    pub xnx: bool,
}

impl Default for Caps {
    /// 48-bit OAS, no optional feature.
    fn default() -> Self {
        Caps { oas_bits: 48, small_tables: false, va52: false, xnx: false }
    }
}

impl Caps {
    fn oas(&self) -> u32 {
        u32::from(self.oas_bits.clamp(32, 52))
    }

    fn max_tsz(&self, granule: Granule) -> u8 {
        match (self.small_tables, granule) {
            (false, _) => 39,
            (true, Granule::Size64K) => 47,
            (true, _) => 48,
        }
    }
}

/// One stage-1 translation table of a Context Descriptor (TTB0 or TTB1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TtConfig {
    /// TTBn: the root table address (an IPA when nested).
    pub base: u64,
    /// TnSZ: the input size is `64 - tsz` bits.
    pub tsz: u8,
    /// TGn, decoded with [`Granule::from_tg0`] / [`Granule::from_tg1`].
    pub granule: Granule,
    /// EPDn: walks of this table are disabled (the other fields are then
    /// not checked).
    pub epd: bool,
    /// TBIn: the top byte of addresses in this half is ignored.
    pub tbi: bool,
    /// HADn: the hierarchical controls (APTable, XNTable, PXNTable) of this
    /// table's table descriptors are ignored.
    pub had: bool,
}

/// Stage-1 configuration, as the SMMU model decodes it from a Context
/// Descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct S1Config {
    /// CD.AA64: must be set (AArch32 tables are not supported).
    pub aa64: bool,
    /// TTB0 (`[0]`) and TTB1 (`[1]`) with their controls.
    pub tt: [TtConfig; 2],
    /// CD.IPS, raw 3-bit encoding ([`pa_size_bits`]).
    pub ips: u8,
    /// CD.AFFD: AF = 0 is not an Access flag fault.
    pub affd: bool,
    /// CD.HA: hardware sets AF.
    pub ha: bool,
    /// CD.HD: hardware dirty state with DBM (effective only with HA).
    pub hd: bool,
    /// CD.DS: 52-bit addresses with 4 and 16 KiB granules (LPA2; the model
    /// allows it only if the SMMU implements it). Ignored with 64 KiB.
    pub ds: bool,
}

/// Stage-2 configuration, as the SMMU model decodes it from an STE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct S2Config {
    /// STE.S2AA64: must be set.
    pub aa64: bool,
    /// STE.S2TTB: the root (possibly concatenated) table address.
    pub vttb: u64,
    /// STE.S2T0SZ: the IPA size is `64 - t0sz` bits.
    pub t0sz: u8,
    /// STE.S2SL0, raw ([`s2_start_level`]).
    pub sl0: u8,
    /// STE.S2TG, decoded with [`Granule::from_s2tg`].
    pub granule: Granule,
    /// STE.S2PS, raw 3-bit encoding ([`pa_size_bits`]).
    pub ps: u8,
    /// STE.S2AFFD: AF = 0 is not an Access flag fault.
    pub affd: bool,
    /// STE.S2HA: hardware sets AF.
    pub ha: bool,
    /// STE.S2HD: hardware dirty state with DBM (effective only with HA).
    pub hd: bool,
    /// 52-bit addresses with 4 and 16 KiB granules (LPA2; only if the SMMU
    /// implements it). Ignored with 64 KiB.
    pub ds: bool,
}

/// A configuration the tables cannot be walked with; the SMMU reports it
/// as C_BAD_CD (stage 1) or C_BAD_STE (stage 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfigError {
    /// AA64 / S2AA64 is clear.
    NotAArch64,
    /// TnSZ / S2T0SZ is outside the range the granule and the SMMU's
    /// features allow.
    TszOutOfRange,
    /// S2SL0 is reserved for the granule, needs a feature the SMMU lacks
    /// or a larger OAS, or is inconsistent with S2T0SZ (no bit left for the
    /// start level, or more than 16 concatenated tables).
    BadStartLevel,
}

// ---------------------------------------------------------------- requests and results

/// The kind of access being translated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Access {
    /// A write (else a read).
    pub write: bool,
    /// A privileged access (else unprivileged).
    pub privileged: bool,
    /// An instruction fetch (only meaningful for reads).
    pub instruction: bool,
}

impl Access {
    /// Whether this is an instruction fetch (a write never is).
    #[inline]
    fn fetch(&self) -> bool {
        self.instruction && !self.write
    }

    /// The data read of a table walk.
    const TABLE_READ: Access = Access { write: false, privileged: true, instruction: false };
    /// The data write of a hardware descriptor update.
    const TABLE_WRITE: Access = Access { write: true, privileged: true, instruction: false };
}

/// Why one stage of a walk failed. `level` is the VMSA level (-1..=3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Invalid or reserved descriptor, input out of range, walk disabled.
    Translation {
        /// Level of the descriptor (0 for range and EPD faults).
        level: i8,
    },
    /// A table base, table address or output address beyond the stage's
    /// output size.
    AddressSize {
        /// Level of the descriptor (0 for the table base).
        level: i8,
    },
    /// AF = 0 without HA or AFFD.
    AccessFlag {
        /// Level of the leaf.
        level: i8,
    },
    /// The leaf's permissions refuse the access.
    Permission {
        /// Level of the leaf.
        level: i8,
    },
    /// A table could not be read, or a hardware update written (an
    /// external abort on the walk).
    TableAbort {
        /// Level of the table.
        level: i8,
        /// It is the root table.
        root: bool,
        /// Physical address of the descriptor read or written (an event's
        /// FetchAddr).
        addr: u64,
    },
}

impl Fault {
    /// The level the fault is reported at.
    pub fn level(&self) -> i8 {
        match *self {
            Fault::Translation { level }
            | Fault::AddressSize { level }
            | Fault::AccessFlag { level }
            | Fault::Permission { level }
            | Fault::TableAbort { level, .. } => level,
        }
    }
}

/// What a stage-2 translation was for (the SMMU event's CLASS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// Fetching a Context Descriptor.
    Cd,
    /// A stage-1 translation table access (fetch or hardware update).
    Tt,
    /// The input address itself (the stage-1 output, or the request's
    /// address when there is no stage 1).
    In,
}

/// Why a translation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VmsaError {
    /// The configuration is unusable (from [`S1Tables::new`] or
    /// [`S2Tables::new`], through `From`).
    Config(ConfigError),
    /// Stage 1 failed.
    Stage1(Fault),
    /// Stage 2 failed translating `ipa`.
    Stage2 {
        /// The stage-2 failure.
        fault: Fault,
        /// The IPA being translated.
        ipa: u64,
        /// What the IPA was for.
        class: Class,
    },
}

impl From<ConfigError> for VmsaError {
    fn from(e: ConfigError) -> Self {
        VmsaError::Config(e)
    }
}

/// Effective stage-1 permissions of a leaf.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct S1Perms {
    /// Unprivileged data accesses allowed (AP\[1\], no APTable\[0\] above).
    pub unprivileged: bool,
    /// Writes refused (AP\[2\] or APTable\[1\] above), as the descriptor
    /// stands after this walk's updates.
    pub read_only: bool,
    /// A write would be allowed by making the leaf dirty (DBM with HD,
    /// AP\[2\] set, no APTable\[1\]): only a walk can do it, so a cached
    /// translation must treat the page as read-only.
    pub writable_clean: bool,
    /// Unprivileged instruction fetches refused (UXN, UXNTable).
    pub uxn: bool,
    /// Privileged instruction fetches refused (PXN, PXNTable, or writable
    /// by unprivileged accesses).
    pub pxn: bool,
}

impl S1Perms {
    /// Whether `access` is allowed without a hardware update.
    #[inline]
    pub fn allows(&self, access: Access) -> bool {
        if access.fetch() {
            return if access.privileged { !self.pxn } else { !self.uxn };
        }
        if !access.privileged && !self.unprivileged {
            return false;
        }
        !access.write || !self.read_only
    }

    /// Data permissions for an access of the given privilege.
    pub fn perm(&self, privileged: bool) -> Perm {
        let read = privileged || self.unprivileged;
        Perm { read, write: read && !self.read_only }
    }
}

/// Effective stage-2 permissions of a leaf.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct S2Perms {
    /// S2AP\[0\]: reads allowed.
    pub read: bool,
    /// S2AP\[1\]: writes allowed, as the descriptor stands after this walk's
    /// updates.
    pub write: bool,
    /// A write would be allowed by making the leaf dirty (DBM with S2HD).
    pub writable_clean: bool,
    /// Privileged instruction fetches refused.
    pub xn_privileged: bool,
    /// Unprivileged instruction fetches refused.
    pub xn_unprivileged: bool,
}

impl S2Perms {
    /// Whether `access` is allowed without a hardware update.
    #[inline]
    pub fn allows(&self, access: Access) -> bool {
        if access.fetch() {
            !if access.privileged { self.xn_privileged } else { self.xn_unprivileged }
        } else if access.write {
            self.write
        } else {
            self.read
        }
    }

    /// Data permissions.
    pub fn perm(&self) -> Perm {
        Perm { read: self.read, write: self.write }
    }
}

/// A successful stage-1 translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct S1Output {
    /// Output address (IPA when nested) of the page or block, aligned to
    /// its size.
    pub out: u64,
    /// Level of the leaf.
    pub level: i8,
    /// log2 of the leaf's size.
    pub size_shift: u32,
    /// Effective permissions.
    pub perms: S1Perms,
    /// The leaf is global (nG = 0); else it belongs to the CD's ASID.
    pub global: bool,
    /// The leaf descriptor as read (before updates).
    pub desc: u64,
}

impl S1Output {
    /// Size in bytes of the leaf.
    pub fn size(&self) -> u64 {
        1u64.checked_shl(self.size_shift).unwrap_or(0)
    }

    /// The output address of `va` (which must be in the leaf).
    pub fn output(&self, va: u64) -> u64 {
        self.out | (va & self.size().wrapping_sub(1))
    }
}

/// A successful stage-2 translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct S2Output {
    /// Physical address of the page or block, aligned to its size.
    pub out: u64,
    /// Level of the leaf.
    pub level: i8,
    /// log2 of the leaf's size.
    pub size_shift: u32,
    /// Effective permissions.
    pub perms: S2Perms,
    /// The leaf descriptor as read (before updates).
    pub desc: u64,
}

impl S2Output {
    /// Size in bytes of the leaf.
    pub fn size(&self) -> u64 {
        1u64.checked_shl(self.size_shift).unwrap_or(0)
    }

    /// The physical address of `ipa` (which must be in the leaf).
    pub fn output(&self, ipa: u64) -> u64 {
        self.out | (ipa & self.size().wrapping_sub(1))
    }
}

/// A successful nested translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NestedOutput {
    /// The stage-1 result (its `out` is an IPA).
    pub s1: S1Output,
    /// The stage-2 result for the stage-1 output.
    pub s2: S2Output,
    /// Physical address of the region both leaves map, aligned to its size.
    pub out: u64,
    /// log2 of that region's size (the smaller of the two leaves).
    pub size_shift: u32,
}

impl NestedOutput {
    /// The physical address of `va` (which must be in the region).
    pub fn output(&self, va: u64) -> u64 {
        self.out | (va & width_mask(self.size_shift))
    }

    /// Whether both stages allow `access` without a hardware update.
    pub fn allows(&self, access: Access) -> bool {
        self.s1.perms.allows(access) && self.s2.perms.allows(access)
    }

    /// Data permissions of both stages for an access of the given privilege.
    pub fn perm(&self, privileged: bool) -> Perm {
        let a = self.s1.perms.perm(privileged);
        let b = self.s2.perms.perm();
        Perm { read: a.read && b.read, write: a.write && b.write }
    }
}

// ---------------------------------------------------------------- descriptor decoding

/// How a stage's descriptors hold addresses, and what they may map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    granule: Granule,
    /// Descriptor bits 15:12 are address bits 51:48 (64 KiB, 52-bit OAS).
    lpa64: bool,
    /// `DS` with 4 or 16 KiB.
    ds: bool,
    /// The SMMU implements a 52-bit output size (64 KiB level-1 blocks).
    oas52: bool,
    /// Effective output size.
    pa_bits: u32,
}

impl Layout {
    fn new(granule: Granule, ds: bool, ps: u8, caps: &Caps) -> Layout {
        let oas = caps.oas();
        let ds = ds && granule != Granule::Size64K;
        let max = if granule == Granule::Size64K || ds { oas } else { oas.min(48) };
        Layout {
            granule,
            lpa64: granule == Granule::Size64K && oas >= 52,
            ds,
            oas52: oas >= 52,
            pa_bits: pa_size_bits(ps).min(max),
        }
    }

    /// The address in descriptor `raw`, aligned to the granule.
    #[inline]
    fn address(&self, raw: u64) -> u64 {
        let d = DescOa::from(raw);
        // OA is split over DescOa's fields: bits 47:16 in place; bits 15:12
        // are OA 15:12, or OA 51:48 with 64 KiB LPA; with DS, bits 49:48
        // in place and bits 9:8 are OA 51:50.
        let b15_12 = d.oa_15_12().value();
        let mut a = field_address(d.oa_47_16(), 16) | field_address(b15_12, 12);
        a &= !width_mask(self.granule.shift());
        if self.lpa64 {
            a |= field_address(b15_12, 48);
        }
        if self.ds {
            a |= field_address(d.oa_49_48().value(), 48);
            a |= field_address(d.oa_51_50().value(), 50);
        }
        a
    }

    #[inline]
    fn out_of_range(&self, addr: u64) -> bool {
        addr.checked_shr(self.pa_bits).unwrap_or(0) != 0
    }

    /// A block descriptor is allowed at `level`.
    #[inline]
    fn block_allowed(&self, level: i8) -> bool {
        match self.granule {
            Granule::Size4K => level == 1 || level == 2 || (level == 0 && self.ds),
            Granule::Size16K => level == 2 || (level == 1 && self.ds),
            Granule::Size64K => level == 2 || (level == 1 && self.oas52),
        }
    }
}

/// The decoded kind of a descriptor read at some level.
enum Kind {
    /// Next-level table at this (granule-aligned) address.
    Table(u64),
    /// Block or page at this address (aligned to its size).
    Leaf(u64),
}

/// Decode the valid/type bits and the address of `raw` at `height`, with
/// the Translation and Address size checks both stages share.
#[inline]
fn decode(layout: &Layout, geo: &Geometry, height: u32, raw: u64) -> Result<Kind, Fault> {
    let level = level_of_height(height);
    let d = DescOa::from(raw);
    if !d.valid() {
        return Err(Fault::Translation { level });
    }
    let leaf = if level == 3 {
        if !d.table() {
            return Err(Fault::Translation { level });
        }
        true
    } else if d.table() {
        false
    } else if layout.block_allowed(level) {
        true
    } else {
        return Err(Fault::Translation { level });
    };
    let mut addr = layout.address(raw);
    if layout.out_of_range(addr) {
        return Err(Fault::AddressSize { level });
    }
    if leaf {
        addr &= !width_mask(geo.shift(height));
        Ok(Kind::Leaf(addr))
    } else {
        Ok(Kind::Table(addr))
    }
}

/// The AF bit of a leaf.
#[inline]
fn af_bit() -> u64 {
    let mut l = S1LeafDesc::from(0u64);
    l.set_af(true);
    u64::from(l)
}

/// The bit a dirty-state update changes: AP\[2\] at stage 1 (cleared),
/// S2AP\[1\] at stage 2 (set); both are bit 7.
#[inline]
fn dirty_bit() -> u64 {
    let mut l = S2LeafDesc::from(0u64);
    l.set_s2ap_write(true);
    u64::from(l)
}

/// How the Access flag of a leaf is handled.
#[inline]
fn access_flag(af: bool, ha: bool, affd: bool, level: i8) -> Result<u64, Fault> {
    if af || (!ha && affd) {
        Ok(0)
    } else if ha {
        Ok(af_bit())
    } else {
        Err(Fault::AccessFlag { level })
    }
}

// ---------------------------------------------------------------- hardware updates

/// Where a failed update is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ctx {
    S1,
    S2 { ipa: u64, class: Class },
}

/// A hardware update of one descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DescUpdate {
    addr: u64,
    seen: u64,
    set: u64,
    clear: u64,
    /// Level of the descriptor, and whether it is in the root table (for
    /// the abort reported if the update cannot be made).
    level: i8,
    root: bool,
    ctx: Ctx,
}

impl DescUpdate {
    /// The update of an engine [`walk::Update`] of the leaf at `level`
    /// (`root`: in the root table); `dirty_clears`: the dirty bit in its
    /// `set` means "clear" (stage 1). `None` if nothing changes. A failed
    /// write is an abort at the descriptor's address.
    fn from_engine(u: &walk::Update, dirty_clears: bool, level: i8, root: bool, ctx: Ctx) -> Option<DescUpdate> {
        let (set, clear) = if dirty_clears { (u.set & af_bit(), u.set & dirty_bit()) } else { (u.set, 0) };
        ((u.seen | set) & !clear != u.seen).then_some(DescUpdate {
            addr: u.addr,
            seen: u.seen,
            set,
            clear,
            level,
            root,
            ctx,
        })
    }

    /// The fault if the update cannot be made: an abort at the descriptor.
    fn fault(&self) -> Fault {
        Fault::TableAbort { level: self.level, root: self.root, addr: self.addr }
    }

    fn error(&self) -> VmsaError {
        match self.ctx {
            Ctx::S1 => VmsaError::Stage1(self.fault()),
            Ctx::S2 { ipa, class } => VmsaError::Stage2 { fault: self.fault(), ipa, class },
        }
    }
}

/// The updates one translation makes (at most one per stage-2 walk and
/// one for stage 1: a nested walk of up to 5 stage-1 levels needs 8).
#[derive(Clone, Copy, Debug, Default)]
struct Updates {
    items: [Option<DescUpdate>; 8],
    len: usize,
}

impl Updates {
    fn push(&mut self, u: Option<DescUpdate>) {
        if let (Some(u), Some(slot)) = (u, self.items.get_mut(self.len)) {
            *slot = Some(u);
            self.len += 1;
        }
    }

    /// Perform the updates in order: a descriptor the guest changed since
    /// (other than in the updated bits) is left alone. Returns the first
    /// update that could not be read back or written.
    fn apply(&self, mem: &dyn GuestMemory) -> Result<(), DescUpdate> {
        let flags = af_bit() | dirty_bit();
        for u in self.items.iter().flatten() {
            let now = mem.read_u64(u.addr).map_err(|_| *u)?;
            if now & !flags != u.seen & !flags {
                continue;
            }
            let new = (now | u.set) & !u.clear;
            if new != now {
                mem.write_u64(u.addr, new).map_err(|_| *u)?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- stage 1

/// One stage-1 table, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tt {
    root: u64,
    /// The table base is beyond the output size.
    root_out_of_range: bool,
    geo: Geometry,
    va_bits: u32,
    layout: Layout,
    tbi: bool,
    had: bool,
}

impl Tt {
    fn new(c: &TtConfig, cfg: &S1Config, caps: &Caps) -> Result<Tt, ConfigError> {
        let g = c.granule;
        let layout = Layout::new(g, cfg.ds, cfg.ips, caps);
        let min_tsz = if (g == Granule::Size64K && caps.va52) || layout.ds { 12 } else { 16 };
        if c.tsz < min_tsz || c.tsz > caps.max_tsz(g) {
            return Err(ConfigError::TszOutOfRange);
        }
        let va_bits = 64 - u32::from(c.tsz);
        // va_bits > granule shift here (tsz <= 48, or 47 with 64 KiB).
        let levels = (va_bits - g.shift()).div_ceil(g.stride());
        let start_height = levels.saturating_sub(1);
        let geo = Geometry {
            granule_shift: g.shift(),
            stride: g.stride(),
            start_height,
            root_bits: va_bits.saturating_sub(g.shift() + g.stride() * start_height),
        };
        let root = c.base & !width_mask(geo.root_bits + 3);
        Ok(Tt {
            root,
            root_out_of_range: layout.out_of_range(root),
            geo,
            va_bits,
            layout,
            tbi: c.tbi,
            had: c.had,
        })
    }
}

/// What a stage-1 walk accumulates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct S1State {
    /// APTable bits of the tables above (OR).
    ap_table: u8,
    pxn_table: bool,
    uxn_table: bool,
    /// The leaf's effective permissions.
    perms: S1Perms,
}

struct S1Walk<'a> {
    tt: &'a Tt,
    tables: &'a S1Tables,
    access: Access,
}

impl Format for S1Walk<'_> {
    type State = S1State;
    type Error = VmsaError;

    #[inline]
    fn geometry(&self) -> Geometry {
        self.tt.geo
    }

    #[inline]
    fn step(&self, st: &mut S1State, height: u32, raw: u64) -> Result<Step, VmsaError> {
        let level = level_of_height(height);
        let out = match decode(&self.tt.layout, &self.tt.geo, height, raw).map_err(VmsaError::Stage1)? {
            Kind::Table(next) => {
                if !self.tt.had {
                    let t = TableDesc::from(raw);
                    st.ap_table |= t.ap_table().value();
                    st.pxn_table |= t.pxn_table();
                    st.uxn_table |= t.uxn_table();
                }
                return Ok(Step { next: Next::Table(next), set: 0 });
            }
            Kind::Leaf(out) => out,
        };
        let t = self.tables;
        let d = S1LeafDesc::from(raw);
        let mut set = access_flag(d.af(), t.ha, t.affd, level).map_err(VmsaError::Stage1)?;
        let unprivileged = d.ap_unpriv() && st.ap_table & 1 == 0;
        let table_ro = st.ap_table & 2 != 0;
        let read_only = d.ap_ro() || table_ro;
        let mut perms = S1Perms {
            unprivileged,
            read_only,
            writable_clean: read_only && t.hd && d.dbm() && !table_ro,
            uxn: d.uxn() || st.uxn_table,
            pxn: d.pxn() || st.pxn_table || (unprivileged && !read_only),
        };
        let a = self.access;
        if !perms.allows(a) {
            let dirty_ok = a.write && perms.writable_clean && (a.privileged || perms.unprivileged);
            if !dirty_ok {
                return Err(VmsaError::Stage1(Fault::Permission { level }));
            }
            set |= dirty_bit();
            perms.read_only = false;
            perms.writable_clean = false;
            perms.pxn |= perms.unprivileged;
        }
        st.perms = perms;
        Ok(Step { next: Next::Leaf(out), set })
    }

    fn read_failed(&self, height: u32, root: bool, addr: u64) -> VmsaError {
        VmsaError::Stage1(Fault::TableAbort { level: level_of_height(height), root, addr })
    }
}

/// Stage-1 tables of a Context Descriptor, validated and ready to walk
/// (the SMMU model keeps one per cached CD).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S1Tables {
    tt: [Option<Tt>; 2],
    affd: bool,
    ha: bool,
    hd: bool,
}

impl S1Tables {
    /// Validate `cfg` against what the SMMU implements. Only the tables
    /// not disabled by EPDn are checked.
    pub fn new(cfg: &S1Config, caps: &Caps) -> Result<S1Tables, ConfigError> {
        if !cfg.aa64 {
            return Err(ConfigError::NotAArch64);
        }
        let mut tt = [None, None];
        for (slot, c) in tt.iter_mut().zip(cfg.tt.iter()) {
            if !c.epd {
                *slot = Some(Tt::new(c, cfg, caps)?);
            }
        }
        Ok(S1Tables { tt, affd: cfg.affd, ha: cfg.ha, hd: cfg.hd && cfg.ha })
    }

    /// Start level of TTB0 (`upper` false) or TTB1; `None` if disabled.
    pub fn start_level(&self, upper: bool) -> Option<i8> {
        self.tt[usize::from(upper)].map(|t| level_of_height(t.geo.start_height))
    }

    /// Input size in bits of TTB0 or TTB1; `None` if disabled.
    pub fn va_bits(&self, upper: bool) -> Option<u32> {
        self.tt[usize::from(upper)].map(|t| t.va_bits)
    }

    /// The table `va` is translated with (bit 55), or the level-0
    /// Translation fault of an address outside both ranges or in a half
    /// disabled by EPDn.
    #[inline]
    fn select(&self, va: u64) -> Result<&Tt, Fault> {
        let upper = (va >> 55) & 1 == 1;
        let Some(t) = self.tt[usize::from(upper)].as_ref() else {
            return Err(Fault::Translation { level: 0 });
        };
        let top = if t.tbi { 56 } else { 64 };
        // va_bits is 16..=52, so both shifts are in range.
        let field = (va & width_mask(top)) >> t.va_bits;
        let expect = if upper { width_mask(top - t.va_bits) } else { 0 };
        if field != expect {
            return Err(Fault::Translation { level: 0 });
        }
        if t.root_out_of_range {
            return Err(Fault::AddressSize { level: 0 });
        }
        Ok(t)
    }

    /// The stage-1 output of a walk, and its hardware update.
    fn finish(&self, tt: &Tt, w: &Walked<S1State>, pending: &Pending) -> (S1Output, Option<DescUpdate>) {
        let level = level_of_height(w.height);
        let out = S1Output {
            out: w.out,
            level,
            size_shift: w.size_shift,
            perms: w.state.perms,
            global: !S1LeafDesc::from(w.leaf).ng(),
            desc: w.leaf,
        };
        let root = w.height == tt.geo.start_height;
        let update =
            pending.updates().first().and_then(|u| DescUpdate::from_engine(u, true, level, root, Ctx::S1));
        (out, update)
    }

    /// Translate `va` through the tables (their addresses and the output
    /// are physical), then make the walk's hardware updates.
    pub fn translate(&self, mem: &dyn GuestMemory, va: u64, access: Access) -> Result<S1Output, VmsaError> {
        let tt = self.select(va).map_err(VmsaError::Stage1)?;
        let fmt = S1Walk { tt, tables: self, access };
        let mut pending = Pending::default();
        let w = walk::walk_single(mem, &fmt, tt.root, va, Some(&mut pending))?;
        let (out, update) = self.finish(tt, &w, &pending);
        let mut ups = Updates::default();
        ups.push(update);
        ups.apply(mem).map_err(|u| u.error())?;
        Ok(out)
    }
}

// ---------------------------------------------------------------- stage 2

struct S2Walk<'a> {
    t: &'a S2Tables,
    access: Access,
}

impl Format for S2Walk<'_> {
    type State = S2Perms;
    type Error = Fault;

    #[inline]
    fn geometry(&self) -> Geometry {
        self.t.geo
    }

    #[inline]
    fn step(&self, st: &mut S2Perms, height: u32, raw: u64) -> Result<Step, Fault> {
        let level = level_of_height(height);
        let out = match decode(&self.t.layout, &self.t.geo, height, raw)? {
            Kind::Table(next) => return Ok(Step { next: Next::Table(next), set: 0 }),
            Kind::Leaf(out) => out,
        };
        let t = self.t;
        let d = S2LeafDesc::from(raw);
        let mut set = access_flag(d.af(), t.ha, t.affd, level)?;
        let xn = d.xn().value();
        let (xn_privileged, xn_unprivileged) = if t.xnx {
            (xn == 0b01 || xn == 0b10, xn == 0b10 || xn == 0b11)
        } else {
            (xn & 0b10 != 0, xn & 0b10 != 0)
        };
        let mut perms = S2Perms {
            read: d.s2ap_read(),
            write: d.s2ap_write(),
            writable_clean: !d.s2ap_write() && t.hd && d.dbm(),
            xn_privileged,
            xn_unprivileged,
        };
        let a = self.access;
        if !perms.allows(a) {
            if !(a.write && perms.writable_clean) {
                return Err(Fault::Permission { level });
            }
            set |= dirty_bit();
            perms.write = true;
            perms.writable_clean = false;
        }
        *st = perms;
        Ok(Step { next: Next::Leaf(out), set })
    }

    fn read_failed(&self, height: u32, root: bool, addr: u64) -> Fault {
        Fault::TableAbort { level: level_of_height(height), root, addr }
    }
}

/// Stage-2 tables of an STE, validated and ready to walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S2Tables {
    root: u64,
    root_out_of_range: bool,
    geo: Geometry,
    ia_bits: u32,
    layout: Layout,
    affd: bool,
    ha: bool,
    hd: bool,
    xnx: bool,
}

impl S2Tables {
    /// Validate `cfg` against what the SMMU implements.
    pub fn new(cfg: &S2Config, caps: &Caps) -> Result<S2Tables, ConfigError> {
        if !cfg.aa64 {
            return Err(ConfigError::NotAArch64);
        }
        let g = cfg.granule;
        let layout = Layout::new(g, cfg.ds, cfg.ps, caps);
        let oas = caps.oas();
        let max_ia = if g == Granule::Size64K || layout.ds { oas } else { oas.min(48) };
        let min_tsz = 64 - max_ia;
        let tsz = u32::from(cfg.t0sz);
        if tsz < min_tsz || tsz > u32::from(caps.max_tsz(g)) {
            return Err(ConfigError::TszOutOfRange);
        }
        let level = s2_start_level(g, cfg.sl0).ok_or(ConfigError::BadStartLevel)?;
        let supported = match (g, level) {
            (Granule::Size4K, 0) => oas >= 44,
            (Granule::Size4K, 3) => caps.small_tables,
            (Granule::Size16K, 0) => layout.ds,
            (Granule::Size16K, 1) => oas >= 42,
            (Granule::Size64K, 1) => oas >= 44,
            _ => true,
        };
        if !supported {
            return Err(ConfigError::BadStartLevel);
        }
        let ia_bits = 64 - tsz;
        let shift = g.level_shift(level);
        let root_bits = ia_bits.saturating_sub(shift);
        if root_bits < 1 || root_bits > g.stride() + 4 {
            return Err(ConfigError::BadStartLevel);
        }
        let geo = Geometry {
            granule_shift: g.shift(),
            stride: g.stride(),
            start_height: height_of_level(level),
            root_bits,
        };
        let root = cfg.vttb & !width_mask(root_bits + 3);
        Ok(S2Tables {
            root,
            root_out_of_range: layout.out_of_range(root),
            geo,
            ia_bits,
            layout,
            affd: cfg.affd,
            ha: cfg.ha,
            hd: cfg.hd && cfg.ha,
            xnx: caps.xnx,
        })
    }

    /// The start level.
    pub fn start_level(&self) -> i8 {
        level_of_height(self.geo.start_height)
    }

    /// How many tables are concatenated at the start level (1 to 16).
    pub fn concatenated(&self) -> u32 {
        1 << self.geo.root_bits.saturating_sub(self.geo.stride).min(4)
    }

    /// IPA size in bits.
    pub fn ia_bits(&self) -> u32 {
        self.ia_bits
    }

    /// Walk for `ipa` without making the hardware update yet; the update's
    /// failure is reported with `class`.
    #[inline(always)]
    fn walk(
        &self,
        mem: &dyn GuestMemory,
        ipa: u64,
        access: Access,
        class: Class,
    ) -> Result<(S2Output, Option<DescUpdate>), Fault> {
        if ipa.checked_shr(self.ia_bits).unwrap_or(0) != 0 {
            return Err(Fault::Translation { level: 0 });
        }
        if self.root_out_of_range {
            return Err(Fault::AddressSize { level: 0 });
        }
        let mut pending = Pending::default();
        let w = walk::walk_single(mem, &S2Walk { t: self, access }, self.root, ipa, Some(&mut pending))?;
        let level = level_of_height(w.height);
        let out = S2Output { out: w.out, level, size_shift: w.size_shift, perms: w.state, desc: w.leaf };
        let root = w.height == self.geo.start_height;
        let update = pending
            .updates()
            .first()
            .and_then(|u| DescUpdate::from_engine(u, false, level, root, Ctx::S2 { ipa, class }));
        Ok((out, update))
    }

    /// Translate an arbitrary `ipa` (a stage-2-only request, or a CD fetch
    /// of a nested configuration: CLASS=CD), then make the walk's hardware
    /// updates. The caller adds the IPA and CLASS to a fault.
    pub fn translate(&self, mem: &dyn GuestMemory, ipa: u64, access: Access) -> Result<S2Output, Fault> {
        let (out, update) = self.walk(mem, ipa, access, Class::In)?;
        let mut ups = Updates::default();
        ups.push(update);
        ups.apply(mem).map_err(|u| u.fault())?;
        Ok(out)
    }
}

// ---------------------------------------------------------------- nested

/// Nested translation of `va`: the stage-1 tables `s1` hold IPAs; every
/// stage-1 descriptor address and the stage-1 output go through `s2`.
/// A stage-2 fault on a descriptor fetch, or on the write of a stage-1
/// hardware update, is CLASS=TT with the descriptor's IPA; on the output
/// it is CLASS=IN with the output IPA. Hardware updates of both stages are
/// made once the whole translation succeeded.
pub fn nested_translate(
    mem: &dyn GuestMemory,
    s1: &S1Tables,
    s2: &S2Tables,
    va: u64,
    access: Access,
) -> Result<NestedOutput, VmsaError> {
    let tt = s1.select(va).map_err(VmsaError::Stage1)?;
    let mut ups = Updates::default();
    let mut leaf_ipa = 0u64;
    let fmt = S1Walk { tt, tables: s1, access };
    let mut pending = Pending::default();
    let w = walk::walk(
        mem,
        &fmt,
        tt.root,
        va,
        |ipa, _root| {
            let (o, u) = s2
                .walk(mem, ipa, Access::TABLE_READ, Class::Tt)
                .map_err(|fault| VmsaError::Stage2 { fault, ipa, class: Class::Tt })?;
            ups.push(u);
            leaf_ipa = ipa;
            // Write permission for a stage-1 update is checked below, as a
            // stage-2 write to the leaf descriptor.
            Ok(Located { addr: o.output(ipa), writable: true })
        },
        Some(&mut pending),
    )?;
    let (s1o, s1_update) = s1.finish(tt, &w, &pending);
    if let Some(u) = s1_update {
        let (_, u2) = s2
            .walk(mem, leaf_ipa, Access::TABLE_WRITE, Class::Tt)
            .map_err(|fault| VmsaError::Stage2 { fault, ipa: leaf_ipa, class: Class::Tt })?;
        ups.push(u2);
        ups.push(Some(u));
    }
    let ipa = s1o.output(va);
    let (s2o, u3) = s2.walk(mem, ipa, access, Class::In).map_err(|fault| VmsaError::Stage2 {
        fault,
        ipa,
        class: Class::In,
    })?;
    ups.push(u3);
    ups.apply(mem).map_err(|u| u.error())?;
    let size_shift = s1o.size_shift.min(s2o.size_shift);
    let out = s2o.output(ipa) & !width_mask(size_shift);
    Ok(NestedOutput { s1: s1o, s2: s2o, out, size_shift })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemError;
    use std::cell::RefCell;
    use std::collections::HashMap;

    use Granule::{Size16K, Size4K, Size64K};

    // ------------------------------------------------------------ fixtures

    /// Guest memory: 8-byte words in a map, accessible only inside the
    /// regions added (elsewhere an access fails, as an external abort).
    #[derive(Default)]
    struct Mem {
        words: RefCell<HashMap<u64, u64>>,
        regions: RefCell<Vec<(u64, u64)>>,
    }

    impl Mem {
        fn add(&self, base: u64, len: u64) {
            self.regions.borrow_mut().push((base, len));
        }
        fn mapped(&self, a: u64) -> bool {
            self.regions.borrow().iter().any(|&(b, l)| a >= b && a - b < l)
        }
        fn get(&self, a: u64) -> u64 {
            self.words.borrow().get(&(a & !7)).copied().unwrap_or(0)
        }
        fn put(&self, a: u64, v: u64) {
            self.words.borrow_mut().insert(a & !7, v);
        }
    }

    impl GuestMemory for Mem {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
            for (i, b) in buf.iter_mut().enumerate() {
                let a = addr.wrapping_add(i as u64);
                if !self.mapped(a) {
                    return Err(MemError);
                }
                *b = (self.get(a) >> ((a & 7) * 8)) as u8;
            }
            Ok(())
        }
        fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemError> {
            for (i, b) in buf.iter().enumerate() {
                let a = addr.wrapping_add(i as u64);
                if !self.mapped(a) {
                    return Err(MemError);
                }
                let sh = (a & 7) * 8;
                self.put(a, (self.get(a) & !(0xff << sh)) | (u64::from(*b) << sh));
            }
            Ok(())
        }
    }

    /// How one stage's tables are laid out.
    #[derive(Clone, Copy, Debug)]
    struct Shape {
        granule: Granule,
        start_level: i8,
        root_bits: u32,
        lpa64: bool,
        ds: bool,
    }

    fn shape(granule: Granule, start_level: i8, root_bits: u32) -> Shape {
        Shape { granule, start_level, root_bits, lpa64: false, ds: false }
    }

    /// `raw` with its address fields set to `oa`.
    fn with_oa(raw: u64, oa: u64, s: Shape) -> u64 {
        let mut d = DescOa::from(raw);
        d.set_oa_47_16((oa >> 16) as u32);
        let lo = match (s.granule, s.lpa64) {
            (Size64K, true) => oa >> 48,
            (Size64K, false) => 0,
            _ => oa >> 12,
        };
        d.set_oa_15_12(u4::new((lo & 0xf) as u8));
        if s.ds {
            d.set_oa_49_48(u2::new(((oa >> 48) & 3) as u8));
            d.set_oa_51_50(u2::new(((oa >> 50) & 3) as u8));
        }
        u64::from(d)
    }

    fn table_desc(addr: u64, s: Shape) -> u64 {
        let mut d = TableDesc::from(0u64);
        d.set_valid(true);
        d.set_table(true);
        with_oa(u64::from(d), addr, s)
    }

    /// A valid stage-1 leaf with AF set, privileged read/write.
    fn s1_leaf(oa: u64, level: i8, s: Shape) -> S1LeafDesc {
        let mut d = S1LeafDesc::from(0u64);
        d.set_valid(true);
        d.set_page(level == 3);
        d.set_af(true);
        S1LeafDesc::from(with_oa(u64::from(d), oa, s))
    }

    /// A valid stage-2 leaf with AF set, read/write.
    fn s2_leaf(oa: u64, level: i8, s: Shape) -> S2LeafDesc {
        let mut d = S2LeafDesc::from(0u64);
        d.set_valid(true);
        d.set_page(level == 3);
        d.set_af(true);
        d.set_s2ap_read(true);
        d.set_s2ap_write(true);
        S2LeafDesc::from(with_oa(u64::from(d), oa, s))
    }

    /// Builds one stage's tables in a [`Mem`]: tables come from `next`
    /// (physical); descriptors and `root` hold physical - `offset` (IPAs
    /// when a stage 2 maps the tables at +offset).
    struct Builder<'m> {
        mem: &'m Mem,
        shape: Shape,
        next: u64,
        offset: u64,
        root: u64,
    }

    impl<'m> Builder<'m> {
        fn new(mem: &'m Mem, shape: Shape, phys: u64, offset: u64) -> Self {
            let mut b = Builder { mem, shape, next: phys, offset, root: 0 };
            b.root = b.alloc((8u64 << shape.root_bits).max(64)) - offset;
            b
        }

        fn alloc(&mut self, bytes: u64) -> u64 {
            let pa = (self.next + bytes - 1) & !(bytes - 1);
            self.next = pa + bytes;
            self.mem.add(pa, bytes);
            pa
        }

        fn layout(&self) -> Layout {
            let s = self.shape;
            Layout { granule: s.granule, lpa64: s.lpa64, ds: s.ds, oas52: true, pa_bits: 52 }
        }

        fn index(&self, level: i8, va: u64) -> u64 {
            let g = self.shape.granule;
            let bits = if level == self.shape.start_level { self.shape.root_bits } else { g.stride() };
            (va >> g.level_shift(level)) & width_mask(bits)
        }

        /// Physical address of the entry for `va` at `level`, creating the
        /// tables above it.
        fn entry(&mut self, va: u64, level: i8) -> u64 {
            let mut table = self.root;
            let mut l = self.shape.start_level;
            loop {
                let pa = table + self.offset + self.index(l, va) * 8;
                if l == level {
                    return pa;
                }
                let cur = self.mem.get(pa);
                if cur & 3 == 3 {
                    table = self.layout().address(cur);
                } else {
                    let t = self.alloc(1 << self.shape.granule.shift()) - self.offset;
                    self.mem.put(pa, table_desc(t, self.shape));
                    table = t;
                }
                l += 1;
            }
        }

        fn map(&mut self, va: u64, level: i8, desc: u64) {
            let pa = self.entry(va, level);
            self.mem.put(pa, desc);
        }

        /// Change the table descriptor at `level` on the way to `va`.
        fn edit_table(&mut self, va: u64, level: i8, f: impl FnOnce(&mut TableDesc)) {
            let pa = self.entry(va, level);
            let mut t = TableDesc::from(self.mem.get(pa));
            f(&mut t);
            self.mem.put(pa, u64::from(t));
        }
    }

    const PRIV_R: Access = Access { write: false, privileged: true, instruction: false };
    const PRIV_W: Access = Access { write: true, privileged: true, instruction: false };
    const USER_R: Access = Access { write: false, privileged: false, instruction: false };
    const USER_W: Access = Access { write: true, privileged: false, instruction: false };
    const PRIV_X: Access = Access { write: false, privileged: true, instruction: true };
    const USER_X: Access = Access { write: false, privileged: false, instruction: true };

    fn tt(base: u64, tsz: u8, granule: Granule) -> TtConfig {
        TtConfig { base, tsz, granule, epd: false, tbi: false, had: false }
    }

    fn off() -> TtConfig {
        TtConfig { epd: true, ..tt(0, 0, Size4K) }
    }

    fn s1cfg(tt0: TtConfig, tt1: TtConfig) -> S1Config {
        S1Config { aa64: true, tt: [tt0, tt1], ips: 5, affd: false, ha: false, hd: false, ds: false }
    }

    fn s2cfg(vttb: u64, t0sz: u8, sl0: u8, granule: Granule) -> S2Config {
        S2Config { aa64: true, vttb, t0sz, sl0, granule, ps: 5, affd: false, ha: false, hd: false, ds: false }
    }

    fn caps(oas_bits: u8) -> Caps {
        Caps { oas_bits, ..Caps::default() }
    }

    fn s1_err(f: Fault) -> Result<S1Output, VmsaError> {
        Err(VmsaError::Stage1(f))
    }

    /// A 4 KiB, 39-bit stage 1 (levels 1 to 3) with tables at 1 GiB.
    fn small_s1(mem: &Mem) -> (Builder<'_>, S1Config) {
        let b = Builder::new(mem, shape(Size4K, 1, 9), 0x4000_0000, 0);
        let cfg = s1cfg(tt(b.root, 25, Size4K), off());
        (b, cfg)
    }

    // ------------------------------------------------------------ decoding

    #[test]
    fn tg0_and_tg1_encode_granules_differently() {
        assert_eq!(Granule::from_tg0(0), Some(Size4K));
        assert_eq!(Granule::from_tg0(1), Some(Size64K));
        assert_eq!(Granule::from_tg0(2), Some(Size16K));
        assert_eq!(Granule::from_tg0(3), None);
        assert_eq!(Granule::from_tg1(0), None);
        assert_eq!(Granule::from_tg1(1), Some(Size16K));
        assert_eq!(Granule::from_tg1(2), Some(Size4K));
        assert_eq!(Granule::from_tg1(3), Some(Size64K));
        assert_eq!(Granule::from_s2tg(2), Some(Size16K));
        assert_eq!(Granule::from_tg0(0xfc), Some(Size4K), "bits above the field are ignored");
        let sizes: Vec<u32> = (0..8).map(pa_size_bits).collect();
        assert_eq!(sizes, [32, 36, 40, 42, 44, 48, 52, 52]);
        assert_eq!(s2_start_level(Size4K, 0), Some(2));
        assert_eq!(s2_start_level(Size4K, 2), Some(0));
        assert_eq!(s2_start_level(Size4K, 3), Some(3));
        assert_eq!(s2_start_level(Size16K, 3), Some(0));
        assert_eq!(s2_start_level(Size64K, 0), Some(3));
        assert_eq!(s2_start_level(Size64K, 3), None);
        assert_eq!(height_of_level(-1), 4);
        assert_eq!(level_of_height(0), 3);
        assert_eq!(level_of_height(99), -1);
    }

    #[test]
    fn descriptor_layouts_agree_on_the_shared_fields() {
        let raw = 0xdead_beef_f00d_cafe_u64;
        let (a, t, s1, s2) =
            (DescOa::from(raw), TableDesc::from(raw), S1LeafDesc::from(raw), S2LeafDesc::from(raw));
        assert_eq!(a.oa_47_16(), t.nlta_47_16());
        assert_eq!(a.oa_47_16(), s1.oa_47_16());
        assert_eq!(a.oa_47_16(), s2.oa_47_16());
        assert_eq!(a.oa_15_12(), s1.oa_15_12());
        assert_eq!(a.oa_49_48(), s2.oa_49_48());
        assert_eq!(a.oa_51_50(), t.nlta_51_50());
        assert_eq!(af_bit(), 1 << 10);
        assert_eq!(dirty_bit(), 1 << 7);
        let mut l = S1LeafDesc::from(0u64);
        l.set_ap_ro(true);
        assert_eq!(u64::from(l), dirty_bit(), "AP[2] and S2AP[1] are the same bit");
        let mut t = TableDesc::from(0u64);
        t.set_ap_table(u2::new(2));
        t.set_uxn_table(true);
        assert_eq!(u64::from(t), (1 << 62) | (1 << 60));
    }

    // ------------------------------------------------------------ stage 1 geometry

    #[test]
    fn each_granule_at_several_tsz() {
        // (granule, TnSZ, start level, root index bits)
        let cases = [
            (Size4K, 16, 0, 9),
            (Size4K, 25, 1, 9),
            (Size4K, 33, 1, 1),
            (Size4K, 34, 2, 9),
            (Size16K, 16, 0, 1),
            (Size16K, 17, 1, 11),
            (Size16K, 28, 2, 11),
            (Size64K, 16, 1, 6),
            (Size64K, 22, 2, 13),
            (Size64K, 39, 3, 9),
        ];
        for (g, tsz, start, root_bits) in cases {
            let mem = Mem::default();
            let sh = shape(g, start, root_bits);
            let mut b = Builder::new(&mem, sh, 0x4000_0000, 0);
            let t = S1Tables::new(&s1cfg(tt(b.root, tsz, g), off()), &Caps::default()).unwrap();
            assert_eq!(t.start_level(false), Some(start), "{g:?} tsz {tsz}");
            assert_eq!(t.start_level(true), None);
            let va_bits = 64 - u32::from(tsz);
            let page = width_mask(g.shift());
            let va = 0x0000_a5a5_5a5a_5a5a & width_mask(va_bits);
            let pa = 0x0000_8765_4321_0000 & !page;
            b.map(va, 3, u64::from(s1_leaf(pa, 3, sh)));
            let top = width_mask(va_bits) & !page;
            let pa_top = 0x1234_0000_0000;
            b.map(top, 3, u64::from(s1_leaf(pa_top, 3, sh)));
            let o = t.translate(&mem, va, PRIV_R).unwrap();
            assert_eq!((o.level, o.size_shift), (3, g.shift()));
            assert_eq!(o.output(va), pa | (va & page), "{g:?} tsz {tsz}");
            assert_eq!(t.translate(&mem, top | 8, PRIV_R).unwrap().output(top | 8), pa_top | 8);
            assert_eq!(
                t.translate(&mem, va ^ (1 << g.shift()), PRIV_R),
                s1_err(Fault::Translation { level: 3 })
            );
            assert_eq!(t.translate(&mem, 1 << va_bits, PRIV_R), s1_err(Fault::Translation { level: 0 }));
        }
    }

    #[test]
    fn tsz_out_of_range_is_a_config_error() {
        let c = Caps::default();
        let bad = |tsz, g| S1Tables::new(&s1cfg(tt(0, tsz, g), off()), &c).err();
        assert_eq!(bad(15, Size4K), Some(ConfigError::TszOutOfRange));
        assert_eq!(bad(40, Size4K), Some(ConfigError::TszOutOfRange));
        assert_eq!(bad(12, Size64K), Some(ConfigError::TszOutOfRange));
        assert_eq!(bad(39, Size64K), None);
        let stt = Caps { small_tables: true, va52: true, ..c };
        let ok = |tsz, g| S1Tables::new(&s1cfg(tt(0, tsz, g), off()), &stt).map(|t| t.start_level(false));
        assert_eq!(ok(48, Size4K), Ok(Some(3)));
        assert_eq!(ok(48, Size64K), Err(ConfigError::TszOutOfRange));
        assert_eq!(ok(47, Size64K), Ok(Some(3)));
        assert_eq!(ok(12, Size64K), Ok(Some(1)));
        assert_eq!(ok(12, Size4K), Err(ConfigError::TszOutOfRange), "52-bit 4K needs DS");
        let mut cfg = s1cfg(tt(0, 25, Size4K), off());
        cfg.aa64 = false;
        assert_eq!(S1Tables::new(&cfg, &c).err(), Some(ConfigError::NotAArch64));
        // A disabled table is not checked.
        let cfg = s1cfg(tt(0, 25, Size4K), TtConfig { tsz: 200, ..off() });
        assert!(S1Tables::new(&cfg, &c).is_ok());
    }

    #[test]
    fn ttb1_selected_by_bit_55_and_tbi_ignores_the_top_byte() {
        let mem = Mem::default();
        let sh = shape(Size4K, 0, 9);
        let mut lo = Builder::new(&mem, sh, 0x4000_0000, 0);
        let mut hi = Builder::new(&mem, sh, 0x8000_0000, 0);
        lo.map(0x1234_5000, 3, u64::from(s1_leaf(0xa000, 3, sh)));
        hi.map(0xffff_8000_1234_5000, 3, u64::from(s1_leaf(0xb000, 3, sh)));
        let mut cfg = s1cfg(tt(lo.root, 16, Size4K), tt(hi.root, 16, Size4K));
        let t = S1Tables::new(&cfg, &Caps::default()).unwrap();
        let fault0 = s1_err(Fault::Translation { level: 0 });
        assert_eq!(t.translate(&mem, 0x1234_5678, PRIV_R).unwrap().output(0x1234_5678), 0xa678);
        assert_eq!(t.translate(&mem, 0xffff_8000_1234_5678, PRIV_R).unwrap().output(0x678), 0xb678);
        // Tagged addresses fault without TBI.
        assert_eq!(t.translate(&mem, 0x5a00_0000_1234_5678, PRIV_R), fault0);
        assert_eq!(t.translate(&mem, 0x5aff_8000_1234_5678, PRIV_R), fault0);
        // Addresses in neither range.
        assert_eq!(t.translate(&mem, 0x0000_8000_0000_0000, PRIV_R), fault0);
        assert_eq!(t.translate(&mem, 0xffff_0000_0000_0000, PRIV_R), fault0);
        cfg.tt[0].tbi = true;
        cfg.tt[1].tbi = true;
        let t = S1Tables::new(&cfg, &Caps::default()).unwrap();
        assert_eq!(t.translate(&mem, 0x5a00_0000_1234_5678, PRIV_R).unwrap().output(0x678), 0xa678);
        assert_eq!(t.translate(&mem, 0x5aff_8000_1234_5678, PRIV_R).unwrap().output(0x678), 0xb678);
        // Bit 55 still selects the half: set, it is TTB1's, whose bits
        // 54:48 must then be ones.
        assert_eq!(t.translate(&mem, 0x0080_0000_1234_5678, PRIV_R), fault0);
        assert_eq!(t.translate(&mem, 0xff7f_8000_1234_5678, PRIV_R), fault0);
    }

    #[test]
    fn epd_disables_one_half() {
        let mem = Mem::default();
        let sh = shape(Size4K, 0, 9);
        let mut lo = Builder::new(&mem, sh, 0x4000_0000, 0);
        let mut hi = Builder::new(&mem, sh, 0x8000_0000, 0);
        lo.map(0x5000, 3, u64::from(s1_leaf(0xa000, 3, sh)));
        hi.map(0xffff_ffff_ffff_f000, 3, u64::from(s1_leaf(0xb000, 3, sh)));
        let mut cfg = s1cfg(tt(lo.root, 16, Size4K), tt(hi.root, 16, Size4K));
        cfg.tt[0].epd = true;
        let t = S1Tables::new(&cfg, &Caps::default()).unwrap();
        assert_eq!(t.translate(&mem, 0x5000, PRIV_R), s1_err(Fault::Translation { level: 0 }));
        assert_eq!(t.translate(&mem, u64::MAX, PRIV_R).unwrap().output(u64::MAX), 0xbfff);
        cfg.tt[0].epd = false;
        cfg.tt[1].epd = true;
        let t = S1Tables::new(&cfg, &Caps::default()).unwrap();
        assert!(t.translate(&mem, 0x5000, PRIV_R).is_ok());
        assert_eq!(t.translate(&mem, u64::MAX, PRIV_R), s1_err(Fault::Translation { level: 0 }));
    }

    #[test]
    fn blocks_where_allowed_pages_at_level_3_contiguous_ignored() {
        // (granule, TnSZ, start, root bits, block level)
        let cases =
            [(Size4K, 16, 0, 9, 1), (Size4K, 16, 0, 9, 2), (Size16K, 16, 0, 1, 2), (Size64K, 16, 1, 6, 2)];
        for (g, tsz, start, rb, level) in cases {
            let mem = Mem::default();
            let sh = shape(g, start, rb);
            let mut b = Builder::new(&mem, sh, 0x4000_0000, 0);
            let t = S1Tables::new(&s1cfg(tt(b.root, tsz, g), off()), &Caps::default()).unwrap();
            let shift = g.level_shift(level);
            let va = 3 << shift;
            let pa = 5 << shift;
            b.map(va, level, u64::from(s1_leaf(pa, level, sh)));
            let o = t.translate(&mem, va + 0x1238, PRIV_R).unwrap();
            assert_eq!((o.level, o.size_shift, o.out), (level, shift, pa), "{g:?} L{level}");
            assert_eq!(o.output(va + 0x1238), pa + 0x1238);
        }
        // Blocks where the granule does not allow one, and a level-3
        // descriptor with bit 1 clear, are Translation faults.
        let mem = Mem::default();
        let sh = shape(Size4K, 0, 9);
        let mut b = Builder::new(&mem, sh, 0x4000_0000, 0);
        let t = S1Tables::new(&s1cfg(tt(b.root, 16, Size4K), off()), &Caps::default()).unwrap();
        b.map(0, 0, u64::from(s1_leaf(0, 0, sh)));
        assert_eq!(t.translate(&mem, 0x10, PRIV_R), s1_err(Fault::Translation { level: 0 }));
        let va = 1 << 39;
        b.map(va, 3, u64::from(s1_leaf(0x7000, 2, sh)));
        assert_eq!(t.translate(&mem, va, PRIV_R), s1_err(Fault::Translation { level: 3 }));
        // The contiguous hint changes nothing.
        let mut d = s1_leaf(0x7000, 3, sh);
        d.set_contiguous(true);
        b.map(va, 3, u64::from(d));
        let o = t.translate(&mem, va + 0x10, PRIV_R).unwrap();
        assert_eq!((o.size_shift, o.output(va + 0x10)), (12, 0x7010));

        let mem = Mem::default();
        let sh = shape(Size16K, 0, 1);
        let mut b = Builder::new(&mem, sh, 0x4000_0000, 0);
        let t = S1Tables::new(&s1cfg(tt(b.root, 16, Size16K), off()), &Caps::default()).unwrap();
        b.map(1 << 36, 1, u64::from(s1_leaf(0, 1, sh)));
        assert_eq!(t.translate(&mem, 1 << 36, PRIV_R), s1_err(Fault::Translation { level: 1 }));

        // 64K level-1 blocks (4 TiB) only with a 52-bit OAS.
        for (oas, ok) in [(48, false), (52, true)] {
            let mem = Mem::default();
            let sh = Shape { lpa64: oas == 52, ..shape(Size64K, 1, 6) };
            let mut b = Builder::new(&mem, sh, 0x4000_0000, 0);
            let t = S1Tables::new(&s1cfg(tt(b.root, 16, Size64K), off()), &caps(oas)).unwrap();
            b.map(1 << 42, 1, u64::from(s1_leaf(3 << 42, 1, sh)));
            let r = t.translate(&mem, (1 << 42) + 0x99, PRIV_R);
            if ok {
                let o = r.unwrap();
                assert_eq!((o.size_shift, o.output((1 << 42) + 0x99)), (42, (3 << 42) + 0x99));
            } else {
                assert_eq!(r, s1_err(Fault::Translation { level: 1 }));
            }
        }
    }

    // ------------------------------------------------------------ stage 1 permissions

    #[test]
    fn ap_bits_and_aptable() {
        let mem = Mem::default();
        let (mut b, mut cfg) = small_s1(&mem);
        let sh = b.shape;
        // Pages with AP[2:1] = 00, 01, 10, 11 in one level-3 table.
        for ap in 0..4u64 {
            let mut d = s1_leaf(0x10_0000 + (ap << 12), 3, sh);
            d.set_ap_unpriv(ap & 1 != 0);
            d.set_ap_ro(ap & 2 != 0);
            b.map(ap << 12, 3, u64::from(d));
        }
        let perm = Err(VmsaError::Stage1(Fault::Permission { level: 3 }));
        let check = |t: &S1Tables, ap: u64, expect: [bool; 4]| {
            for (a, ok) in [PRIV_R, PRIV_W, USER_R, USER_W].into_iter().zip(expect) {
                let r = t.translate(&mem, ap << 12, a).map(|o| o.out);
                assert_eq!(r, if ok { Ok(0x10_0000 + (ap << 12)) } else { perm }, "AP {ap:02b} {a:?}");
            }
        };
        let t = S1Tables::new(&cfg, &Caps::default()).unwrap();
        check(&t, 0b00, [true, true, false, false]);
        check(&t, 0b01, [true, true, true, true]);
        check(&t, 0b10, [true, false, false, false]);
        check(&t, 0b11, [true, false, true, false]);
        let o = t.translate(&mem, 0b11 << 12, USER_R).unwrap();
        assert_eq!((o.perms.perm(false), o.perms.perm(true)), (Perm::RO, Perm::RO));

        // APTable[0] on the level-2 table descriptor: no unprivileged access below.
        b.edit_table(0, 2, |t| t.set_ap_table(u2::new(0b01)));
        let t = S1Tables::new(&cfg, &Caps::default()).unwrap();
        check(&t, 0b01, [true, true, false, false]);
        // APTable[1]: no write below.
        b.edit_table(0, 2, |t| t.set_ap_table(u2::new(0b10)));
        let t = S1Tables::new(&cfg, &Caps::default()).unwrap();
        check(&t, 0b01, [true, false, true, false]);
        check(&t, 0b00, [true, false, false, false]);
        // HAD0: the hierarchical controls are ignored.
        cfg.tt[0].had = true;
        let t = S1Tables::new(&cfg, &Caps::default()).unwrap();
        check(&t, 0b01, [true, true, true, true]);
    }

    #[test]
    fn execute_never_for_instruction_fetches() {
        let mem = Mem::default();
        let (mut b, mut cfg) = small_s1(&mem);
        let sh = b.shape;
        let page = |ap: u64, pxn: bool, uxn: bool| {
            let mut d = s1_leaf(0x20_0000, 3, sh);
            d.set_ap_unpriv(ap & 1 != 0);
            d.set_ap_ro(ap & 2 != 0);
            d.set_pxn(pxn);
            d.set_uxn(uxn);
            u64::from(d)
        };
        let va = 0x3000;
        let allowed = |b: &mut Builder, cfg: &S1Config, desc: u64| -> [bool; 3] {
            b.map(va, 3, desc);
            let t = S1Tables::new(cfg, &Caps::default()).unwrap();
            let wx = Access { instruction: true, ..USER_W };
            [PRIV_X, USER_X, wx].map(|a| t.translate(&mem, va, a).is_ok())
        };
        // Writable by unprivileged accesses: privileged execute-never. A
        // write marked as an instruction is a data write.
        assert_eq!(allowed(&mut b, &cfg, page(0b01, false, false)), [false, true, true]);
        assert_eq!(allowed(&mut b, &cfg, page(0b11, false, false)), [true, true, false]);
        assert_eq!(allowed(&mut b, &cfg, page(0b11, false, true)), [true, false, false]);
        assert_eq!(allowed(&mut b, &cfg, page(0b11, true, false)), [false, true, false]);
        // Execute-only for unprivileged fetches (AP[1] clear, UXN clear).
        assert_eq!(allowed(&mut b, &cfg, page(0b10, false, false)), [true, true, false]);
        let t = S1Tables::new(&cfg, &Caps::default()).unwrap();
        let p = t.translate(&mem, va, PRIV_R).unwrap().perms;
        assert!(!p.pxn && !p.uxn && !p.unprivileged && p.read_only);
        // PXNTable / UXNTable from the level-1 table descriptor.
        b.edit_table(va, 1, |t| t.set_pxn_table(true));
        assert_eq!(allowed(&mut b, &cfg, page(0b11, false, false)), [false, true, false]);
        b.edit_table(va, 1, |t| {
            t.set_pxn_table(false);
            t.set_uxn_table(true)
        });
        assert_eq!(allowed(&mut b, &cfg, page(0b11, false, false)), [true, false, false]);
        cfg.tt[0].had = true;
        assert_eq!(allowed(&mut b, &cfg, page(0b11, false, false)), [true, true, false]);
    }

    #[test]
    fn access_flag_fault_affd_and_hardware_update() {
        let mem = Mem::default();
        let (mut b, mut cfg) = small_s1(&mem);
        let sh = b.shape;
        let mut d = s1_leaf(0x30_0000, 3, sh);
        d.set_af(false);
        let raw = u64::from(d);
        b.map(0x4000, 3, raw);
        let entry = b.entry(0x4000, 3);
        let af = Err(VmsaError::Stage1(Fault::AccessFlag { level: 3 }));
        let t = S1Tables::new(&cfg, &Caps::default()).unwrap();
        assert_eq!(t.translate(&mem, 0x4000, PRIV_R).map(|o| o.out), af);
        // The Access flag fault comes before the permission check.
        assert_eq!(t.translate(&mem, 0x4000, USER_R).map(|o| o.out), af);
        cfg.affd = true;
        let t = S1Tables::new(&cfg, &Caps::default()).unwrap();
        assert!(t.translate(&mem, 0x4000, PRIV_R).is_ok());
        assert_eq!(mem.get(entry), raw, "AFFD does not set AF");
        cfg.affd = false;
        cfg.ha = true;
        let t = S1Tables::new(&cfg, &Caps::default()).unwrap();
        // A translation that faults makes no update.
        assert_eq!(t.translate(&mem, 0x4000, USER_R), s1_err(Fault::Permission { level: 3 }));
        assert_eq!(mem.get(entry), raw);
        let o = t.translate(&mem, 0x4000, PRIV_R).unwrap();
        assert_eq!(o.desc, raw, "the output shows the descriptor as read");
        assert_eq!(mem.get(entry), raw | af_bit());
        // Blocks too.
        let mut d = s1_leaf(0x4000_0000, 2, sh);
        d.set_af(false);
        b.map(0x4000_0000, 2, u64::from(d));
        assert_eq!(t.translate(&mem, 0x4000_1000, PRIV_W).unwrap().level, 2);
        assert!(S1LeafDesc::from(mem.get(b.entry(0x4000_0000, 2))).af());
    }

    #[test]
    fn dbm_with_hd_makes_writable_clean_pages_dirty() {
        let mem = Mem::default();
        let (mut b, mut cfg) = small_s1(&mem);
        let sh = b.shape;
        // Privileged read-only, DBM, AF clear.
        let mut d = s1_leaf(0x50_0000, 3, sh);
        d.set_ap_ro(true);
        d.set_dbm(true);
        d.set_af(false);
        let raw = u64::from(d);
        b.map(0x5000, 3, raw);
        let entry = b.entry(0x5000, 3);
        let perm = s1_err(Fault::Permission { level: 3 });
        cfg.ha = true;
        let t = S1Tables::new(&cfg, &Caps::default()).unwrap();
        assert_eq!(t.translate(&mem, 0x5000, PRIV_W), perm, "DBM without HD");
        assert_eq!(mem.get(entry), raw);
        // HD without HA is not effective.
        cfg.hd = true;
        cfg.ha = false;
        cfg.affd = true;
        let t = S1Tables::new(&cfg, &Caps::default()).unwrap();
        assert_eq!(t.translate(&mem, 0x5000, PRIV_W), perm);
        cfg.ha = true;
        cfg.affd = false;
        let t = S1Tables::new(&cfg, &Caps::default()).unwrap();
        // A read sets AF only, and says the page is writable-clean.
        let o = t.translate(&mem, 0x5000, PRIV_R).unwrap();
        assert!(o.perms.read_only && o.perms.writable_clean);
        assert_eq!(mem.get(entry), raw | af_bit());
        // A write clears AP[2].
        let o = t.translate(&mem, 0x5000, PRIV_W).unwrap();
        assert!(!o.perms.read_only && !o.perms.writable_clean);
        let now = S1LeafDesc::from(mem.get(entry));
        assert!(now.af() && !now.ap_ro() && now.dbm());
        assert_eq!(mem.get(entry), (raw | af_bit()) & !dirty_bit());
        // Unprivileged read-only page: an unprivileged write makes it dirty,
        // which makes it privileged-execute-never.
        let mut d = s1_leaf(0x60_0000, 3, sh);
        d.set_ap_ro(true);
        d.set_ap_unpriv(true);
        d.set_dbm(true);
        b.map(0x6000, 3, u64::from(d));
        assert!(t.translate(&mem, 0x6000, PRIV_X).is_ok());
        assert!(t.translate(&mem, 0x6000, USER_W).unwrap().perms.pxn);
        assert!(!S1LeafDesc::from(mem.get(b.entry(0x6000, 3))).ap_ro());
        // APTable[1] above: DBM does not help.
        let mut d = s1_leaf(0x70_0000, 3, sh);
        d.set_ap_ro(true);
        d.set_dbm(true);
        b.map(0x20_7000, 3, u64::from(d));
        b.edit_table(0x20_7000, 2, |t| t.set_ap_table(u2::new(0b10)));
        assert_eq!(t.translate(&mem, 0x20_7000, PRIV_W), perm);
    }

    // ------------------------------------------------------------ addresses

    #[test]
    fn lpa_64k_outputs_52_bit_addresses() {
        let mem = Mem::default();
        let sh = Shape { lpa64: true, ..shape(Size64K, 1, 6) };
        // Tables above 2^48 too: the next-level table addresses use bits 15:12.
        let mut b = Builder::new(&mem, sh, 0x000f_0000_0000_0000, 0);
        let pa = 0x000f_1234_5678_0000;
        b.map(0x7_0000, 3, u64::from(s1_leaf(pa, 3, sh)));
        let mut cfg = s1cfg(tt(b.root, 16, Size64K), off());
        cfg.ips = 6;
        let t = S1Tables::new(&cfg, &caps(52)).unwrap();
        assert_eq!(t.translate(&mem, 0x7_1234, PRIV_R).unwrap().output(0x1234), pa | 0x1234);
        // A 48-bit IPS: the table base is beyond it.
        cfg.ips = 5;
        let t = S1Tables::new(&cfg, &caps(52)).unwrap();
        assert_eq!(t.translate(&mem, 0x7_1234, PRIV_R), s1_err(Fault::AddressSize { level: 0 }));
        // Tables below 2^48, the output above: a level-3 address size fault.
        let mem = Mem::default();
        let mut b = Builder::new(&mem, sh, 0x4000_0000, 0);
        b.map(0x7_0000, 3, u64::from(s1_leaf(pa, 3, sh)));
        cfg.tt[0].base = b.root;
        let t = S1Tables::new(&cfg, &caps(52)).unwrap();
        assert_eq!(t.translate(&mem, 0x7_1234, PRIV_R), s1_err(Fault::AddressSize { level: 3 }));
        // Without a 52-bit OAS, bits 15:12 are not address bits.
        let t = S1Tables::new(&cfg, &caps(48)).unwrap();
        assert_eq!(t.translate(&mem, 0x7_1234, PRIV_R).unwrap().out, pa & width_mask(48));
    }

    #[test]
    fn lpa2_4k_starts_at_level_minus_1() {
        let mem = Mem::default();
        let sh = Shape { ds: true, ..shape(Size4K, -1, 4) };
        // Tables with address bits 51:50 set (descriptor bits 9:8), output
        // with bits 49:48 (descriptor bits 49:48).
        let mut b = Builder::new(&mem, sh, 0x000c_0000_0000_0000, 0);
        let va = 0x000f_8000_1234_5000;
        let pa = 0x0003_1234_5678_9000;
        b.map(va, 3, u64::from(s1_leaf(pa, 3, sh)));
        // A 512 GiB block at level 0 is allowed with DS.
        let vb = 0x0001_0000_0000_0000;
        b.map(vb, 0, u64::from(s1_leaf(0x0004_0000_0000_0000, 0, sh)));
        let mut cfg = s1cfg(tt(b.root, 12, Size4K), off());
        cfg.ds = true;
        cfg.ips = 6;
        let t = S1Tables::new(&cfg, &caps(52)).unwrap();
        assert_eq!(t.start_level(false), Some(-1));
        let o = t.translate(&mem, va | 0xabc, PRIV_R).unwrap();
        assert_eq!((o.level, o.output(va | 0xabc)), (3, pa | 0xabc));
        let o = t.translate(&mem, vb + 0x1234_5678, PRIV_R).unwrap();
        assert_eq!((o.level, o.size_shift, o.out), (0, 39, 0x0004_0000_0000_0000));
        assert_eq!(
            t.translate(&mem, 0x0008_0000_0000_0000, PRIV_R),
            s1_err(Fault::Translation { level: -1 })
        );
        // Without DS a 52-bit VA is not a 4K configuration.
        cfg.ds = false;
        assert_eq!(S1Tables::new(&cfg, &caps(52)).err(), Some(ConfigError::TszOutOfRange));
        // DS with a 48-bit VA starts at level 0.
        cfg.ds = true;
        cfg.tt[0].tsz = 16;
        assert_eq!(S1Tables::new(&cfg, &caps(52)).unwrap().start_level(false), Some(0));
    }

    #[test]
    fn output_beyond_ips_is_an_address_size_fault() {
        let mem = Mem::default();
        let (mut b, mut cfg) = small_s1(&mem);
        let sh = b.shape;
        cfg.ips = 2; // 40 bits
        b.map(0x1000, 3, u64::from(s1_leaf(1 << 40, 3, sh)));
        b.map(0x2000, 3, u64::from(s1_leaf((1 << 40) - 0x1000, 3, sh)));
        let t = S1Tables::new(&cfg, &Caps::default()).unwrap();
        assert_eq!(t.translate(&mem, 0x1000, PRIV_R), s1_err(Fault::AddressSize { level: 3 }));
        assert!(t.translate(&mem, 0x2000, PRIV_R).is_ok());
        // A next-level table beyond the output size.
        let e = b.entry(0x8000_0000, 1);
        mem.put(e, table_desc(1 << 44, sh));
        assert_eq!(t.translate(&mem, 0x8000_0000, PRIV_R), s1_err(Fault::AddressSize { level: 1 }));
        // The IPS is capped by the OAS.
        cfg.ips = 5;
        let t = S1Tables::new(&cfg, &caps(40)).unwrap();
        assert_eq!(t.translate(&mem, 0x1000, PRIV_R), s1_err(Fault::AddressSize { level: 3 }));
        // And at 48 bits for 4K without DS, whatever IPS and OAS say.
        cfg.ips = 6;
        cfg.tt[0].base = 1 << 48;
        let t = S1Tables::new(&cfg, &caps(52)).unwrap();
        assert_eq!(t.translate(&mem, 0x1000, PRIV_R), s1_err(Fault::AddressSize { level: 0 }));
    }

    #[test]
    fn unreadable_tables_are_walk_aborts() {
        let mem = Mem::default();
        let (mut b, mut cfg) = small_s1(&mem);
        let sh = b.shape;
        let e = b.entry(0x1000, 2);
        mem.put(e, table_desc(0x7000_0000, sh));
        let t = S1Tables::new(&cfg, &Caps::default()).unwrap();
        assert!(matches!(t.translate(&mem, 0x1000, PRIV_R), Err(VmsaError::Stage1(Fault::TableAbort { level: 3, root: false, .. }))));
        // FetchAddr: the descriptor in the unreadable table.
        let Err(VmsaError::Stage1(Fault::TableAbort { addr, .. })) = t.translate(&mem, 0x1000, PRIV_R) else {
            panic!()
        };
        assert_eq!(addr & !0xfff, 0x7000_0000);
        cfg.tt[0].base = 0x9000_0000;
        let t = S1Tables::new(&cfg, &Caps::default()).unwrap();
        assert!(matches!(t.translate(&mem, 0x1000, PRIV_R), Err(VmsaError::Stage1(Fault::TableAbort { level: 1, root: true, .. }))));
    }

    // ------------------------------------------------------------ stage 2

    #[test]
    fn stage2_two_concatenated_tables_walk_the_second() {
        let mem = Mem::default();
        // 40-bit IPA, start level 1: 10 root bits, two level-1 tables.
        let sh = shape(Size4K, 1, 10);
        let mut b = Builder::new(&mem, sh, 0x1_0000_0000, 0);
        let s2 = S2Tables::new(&s2cfg(b.root, 24, 1, Size4K), &Caps::default()).unwrap();
        assert_eq!((s2.start_level(), s2.concatenated(), s2.ia_bits()), (1, 2, 40));
        let ipa_hi = (1 << 39) | (5 << 30);
        let ipa_lo = 5 << 30;
        b.map(ipa_hi, 1, u64::from(s2_leaf(0x7_c000_0000, 1, sh)));
        b.map(ipa_lo, 1, u64::from(s2_leaf(0x3_4000_0000, 1, sh)));
        // The entry of the high IPA is in the second table.
        assert_eq!(b.entry(ipa_hi, 1), b.root + (512 + 5) * 8);
        let o = s2.translate(&mem, ipa_hi + 0x1234, PRIV_R).unwrap();
        assert_eq!((o.level, o.output(ipa_hi + 0x1234)), (1, 0x7_c000_1234));
        // QEMU 10.2.2's C model would have used the first table's entry.
        assert_eq!(
            s2.translate(&mem, ipa_lo + 0x1234, PRIV_R).unwrap().output(ipa_lo + 0x1234),
            0x3_4000_1234
        );
        assert_eq!(s2.translate(&mem, ipa_hi + (1 << 30), PRIV_R), Err(Fault::Translation { level: 1 }));
        assert_eq!(s2.translate(&mem, 1 << 40, PRIV_R), Err(Fault::Translation { level: 0 }));
    }

    #[test]
    fn stage2_sixteen_concatenated_tables() {
        let mem = Mem::default();
        // 43-bit IPA, start level 1: 13 root bits, sixteen level-1 tables.
        let sh = shape(Size4K, 1, 13);
        let mut b = Builder::new(&mem, sh, 0x1_0000_0000, 0);
        let s2 = S2Tables::new(&s2cfg(b.root, 21, 1, Size4K), &Caps::default()).unwrap();
        assert_eq!(s2.concatenated(), 16);
        let ipa = (15 << 39) | (3 << 30) | (7 << 21) | (9 << 12);
        b.map(ipa, 3, u64::from(s2_leaf(0x42_0000_0000, 3, sh)));
        assert_eq!(b.entry(ipa, 1), b.root + ((15 << 9) | 3) * 8);
        assert_eq!(s2.translate(&mem, ipa | 0x42, PRIV_W).unwrap().output(ipa | 0x42), 0x42_0000_0042);
        assert_eq!(s2.translate(&mem, ipa & !(15 << 39), PRIV_R), Err(Fault::Translation { level: 1 }));
        // 64K: 46-bit IPA from level 2 is 17 root bits, sixteen tables.
        let s2 = S2Tables::new(&s2cfg(0, 18, 1, Size64K), &Caps::default()).unwrap();
        assert_eq!((s2.start_level(), s2.concatenated()), (2, 16));
        // The VTTB is aligned to the concatenated size.
        let s2 = S2Tables::new(&s2cfg(0x1_0000_f000, 21, 1, Size4K), &Caps::default()).unwrap();
        assert_eq!(s2.root, 0x1_0000_0000);
    }

    #[test]
    fn invalid_stage2_start_levels_are_config_errors() {
        let c = Caps::default();
        let try_new =
            |t0sz, sl0, g, caps: &Caps| S2Tables::new(&s2cfg(0, t0sz, sl0, g), caps).map(|s| s.start_level());
        let bad = Err(ConfigError::BadStartLevel);
        // Level 1 for 48 bits would need 512 tables; 44 bits 32 tables.
        assert_eq!(try_new(16, 1, Size4K, &c), bad);
        assert_eq!(try_new(20, 1, Size4K, &c), bad);
        assert_eq!(try_new(16, 2, Size4K, &c), Ok(0));
        // Level 0 for 25 bits resolves nothing there.
        assert_eq!(try_new(39, 2, Size4K, &c), bad);
        assert_eq!(try_new(34, 0, Size4K, &c), Ok(2));
        // 4K level 3 needs small tables, level 0 a 44-bit OAS.
        assert_eq!(try_new(39, 3, Size4K, &c), bad);
        let stt = Caps { small_tables: true, ..c };
        assert_eq!(try_new(40, 3, Size4K, &stt), Ok(3));
        assert_eq!(try_new(24, 2, Size4K, &caps(40)), bad);
        // 16K level 0 needs DS, level 1 a 42-bit OAS.
        assert_eq!(try_new(16, 3, Size16K, &c), bad);
        let mut ds = s2cfg(0, 12, 3, Size16K);
        ds.ds = true;
        assert_eq!(S2Tables::new(&ds, &caps(52)).map(|s| (s.start_level(), s.concatenated())), Ok((0, 1)));
        assert_eq!(try_new(24, 2, Size16K, &caps(40)), bad);
        // 64K: SL0 = 0b11 is reserved; level 1 needs a 44-bit OAS.
        assert_eq!(try_new(22, 3, Size64K, &c), bad);
        assert_eq!(try_new(22, 2, Size64K, &caps(42)), bad);
        assert_eq!(try_new(16, 2, Size64K, &c), Ok(1));
        // S2T0SZ against the OAS and the small-tables limit.
        let tsz = Err(ConfigError::TszOutOfRange);
        assert_eq!(try_new(15, 2, Size4K, &c), tsz);
        assert_eq!(try_new(23, 1, Size4K, &caps(40)), tsz);
        assert_eq!(try_new(40, 0, Size4K, &c), tsz);
        assert_eq!(try_new(12, 2, Size64K, &caps(52)), Ok(1));
        assert_eq!(try_new(12, 1, Size64K, &caps(52)), bad, "level 2 for 52 bits: 2^23 entries");
        let mut cfg = s2cfg(0, 24, 1, Size4K);
        cfg.aa64 = false;
        assert_eq!(S2Tables::new(&cfg, &c).err(), Some(ConfigError::NotAArch64));
    }

    #[test]
    fn stage2_permissions_access_flag_xn_and_output_size() {
        let mem = Mem::default();
        let sh = shape(Size4K, 1, 9);
        let mut b = Builder::new(&mem, sh, 0x1_0000_0000, 0);
        let mut cfg = s2cfg(b.root, 25, 1, Size4K);
        let page = |ipa: u64, f: &dyn Fn(&mut S2LeafDesc)| {
            let mut d = s2_leaf(0x80_0000 + ipa, 3, sh);
            f(&mut d);
            u64::from(d)
        };
        b.map(0x1000, 3, page(0x1000, &|d| d.set_s2ap_write(false)));
        b.map(0x2000, 3, page(0x2000, &|d| d.set_s2ap_read(false)));
        b.map(0x3000, 3, page(0x3000, &|d| d.set_af(false)));
        b.map(0x4000, 3, page(0x4000, &|d| d.set_xn(u2::new(0b10))));
        b.map(0x5000, 3, page(0x5000, &|d| d.set_xn(u2::new(0b01))));
        b.map(0x6000, 3, page(0x6000, &|d| d.set_xn(u2::new(0b11))));
        b.map(
            0x7000,
            3,
            page(0x7000, &|d| {
                d.set_s2ap_write(false);
                d.set_dbm(true)
            }),
        );
        b.map(0x8000, 3, u64::from(s2_leaf(1 << 40, 3, sh)));
        let perm = Err(Fault::Permission { level: 3 });
        let s2 = S2Tables::new(&cfg, &Caps::default()).unwrap();
        let ok = |s2: &S2Tables, ipa, a| s2.translate(&mem, ipa, a).map(|o| o.out);
        assert_eq!(ok(&s2, 0x1000, PRIV_R), Ok(0x80_1000));
        assert_eq!(ok(&s2, 0x1000, USER_W), perm);
        assert_eq!(ok(&s2, 0x2000, PRIV_R), perm);
        assert_eq!(ok(&s2, 0x2000, PRIV_W), Ok(0x80_2000));
        assert_eq!(ok(&s2, 0x3000, PRIV_R), Err(Fault::AccessFlag { level: 3 }));
        // XN[1] (bit 54) alone without FEAT_XNX: bit 53 is ignored.
        assert_eq!([PRIV_X, USER_X, PRIV_R].map(|a| ok(&s2, 0x4000, a).is_ok()), [false, false, true]);
        assert_eq!([PRIV_X, USER_X].map(|a| ok(&s2, 0x5000, a).is_ok()), [true, true]);
        assert_eq!([PRIV_X, USER_X].map(|a| ok(&s2, 0x6000, a).is_ok()), [false, false]);
        let xnx = S2Tables::new(&cfg, &Caps { xnx: true, ..Caps::default() }).unwrap();
        assert_eq!([PRIV_X, USER_X].map(|a| ok(&xnx, 0x5000, a).is_ok()), [false, true]);
        assert_eq!([PRIV_X, USER_X].map(|a| ok(&xnx, 0x6000, a).is_ok()), [true, false]);
        assert_eq!([PRIV_X, USER_X].map(|a| ok(&xnx, 0x4000, a).is_ok()), [false, false]);
        assert_eq!(ok(&s2, 0x7000, PRIV_W), perm, "DBM without S2HD");
        // Output sizes: S2PS 48 bits, then 40.
        assert_eq!(ok(&s2, 0x8000, PRIV_R), Ok(1 << 40));
        cfg.ps = 2;
        assert_eq!(
            ok(&S2Tables::new(&cfg, &Caps::default()).unwrap(), 0x8000, PRIV_R),
            Err(Fault::AddressSize { level: 3 })
        );
        // S2PS 52 with a 52-bit OAS is still 48 bits for 4K without DS.
        let mut c52 = cfg;
        c52.ps = 6;
        c52.vttb = 1 << 48;
        let s52 = S2Tables::new(&c52, &caps(52)).unwrap();
        assert_eq!(ok(&s52, 0x1000, PRIV_R), Err(Fault::AddressSize { level: 0 }));
        cfg.ps = 5;
        // S2AFFD; then S2HA sets AF and S2HD sets S2AP[1].
        cfg.affd = true;
        let s2 = S2Tables::new(&cfg, &Caps::default()).unwrap();
        assert_eq!(ok(&s2, 0x3000, PRIV_R), Ok(0x80_3000));
        assert!(!S2LeafDesc::from(mem.get(b.entry(0x3000, 3))).af());
        cfg.affd = false;
        cfg.ha = true;
        cfg.hd = true;
        let s2 = S2Tables::new(&cfg, &Caps::default()).unwrap();
        assert_eq!(ok(&s2, 0x3000, PRIV_R), Ok(0x80_3000));
        assert!(S2LeafDesc::from(mem.get(b.entry(0x3000, 3))).af());
        let o = s2.translate(&mem, 0x7000, PRIV_R).unwrap();
        assert!(!o.perms.write && o.perms.writable_clean);
        assert!(!S2LeafDesc::from(mem.get(b.entry(0x7000, 3))).s2ap_write());
        let o = s2.translate(&mem, 0x7000, PRIV_W).unwrap();
        assert_eq!(o.perms.perm(), Perm::RW);
        assert!(S2LeafDesc::from(mem.get(b.entry(0x7000, 3))).s2ap_write());
        // A VTTB beyond S2PS.
        cfg.vttb = 1 << 48;
        let s2 = S2Tables::new(&cfg, &Caps::default()).unwrap();
        assert_eq!(ok(&s2, 0x1000, PRIV_R), Err(Fault::AddressSize { level: 0 }));
    }

    // ------------------------------------------------------------ nested

    /// Stage 2 maps IPAs [1 GiB, 2 GiB) to PAs 8 GiB higher with a level-1
    /// block (`s2_write`: writable); stage 1 (4K, 39 bits) has its tables
    /// in that range.
    fn nested_setup(mem: &Mem, s2_write: bool) -> (Builder<'_>, Builder<'_>, S2Config, S1Config) {
        let s2sh = shape(Size4K, 1, 10);
        let mut s2b = Builder::new(mem, s2sh, 0x1_0000_0000, 0);
        let mut blk = s2_leaf(0x2_4000_0000, 1, s2sh);
        blk.set_s2ap_write(s2_write);
        s2b.map(0x4000_0000, 1, u64::from(blk));
        let s1b = Builder::new(mem, shape(Size4K, 1, 9), 0x2_4000_0000, 0x2_0000_0000);
        let s2cfg = s2cfg(s2b.root, 24, 1, Size4K);
        let s1cfg = s1cfg(tt(s1b.root, 25, Size4K), off());
        (s2b, s1b, s2cfg, s1cfg)
    }

    #[test]
    fn nested_walk_translates_tables_and_output_through_stage_2() {
        let mem = Mem::default();
        let (_s2b, mut s1b, s2c, s1c) = nested_setup(&mem, true);
        assert_eq!(s1b.root, 0x4000_0000, "stage-1 tables are addressed by IPA");
        let sh = s1b.shape;
        s1b.map(0x1000, 3, u64::from(s1_leaf(0x4800_0000, 3, sh)));
        let (s1, s2) =
            (S1Tables::new(&s1c, &Caps::default()).unwrap(), S2Tables::new(&s2c, &Caps::default()).unwrap());
        let o = nested_translate(&mem, &s1, &s2, 0x1234, PRIV_W).unwrap();
        assert_eq!((o.s1.out, o.s2.level, o.size_shift), (0x4800_0000, 1, 12));
        assert_eq!((o.out, o.output(0x1234)), (0x2_4800_0000, 0x2_4800_0234));
        assert!(o.allows(PRIV_W));
        assert_eq!(o.perm(true), Perm::RW);
        // Stage 1 alone would read its tables at the IPAs: unreadable here.
        assert!(matches!(s1.translate(&mem, 0x1234, PRIV_R), Err(VmsaError::Stage1(Fault::TableAbort { level: 1, root: true, .. }))));
        // A stage-1 fault is reported as such.
        assert_eq!(
            nested_translate(&mem, &s1, &s2, 0x2000, PRIV_R).err(),
            Some(VmsaError::Stage1(Fault::Translation { level: 3 }))
        );
    }

    #[test]
    fn nested_stage2_faults_say_tt_or_in_with_the_ipa() {
        let mem = Mem::default();
        let (_s2b, mut s1b, s2c, s1c) = nested_setup(&mem, false);
        let sh = s1b.shape;
        let (s1, s2) =
            (S1Tables::new(&s1c, &Caps::default()).unwrap(), S2Tables::new(&s2c, &Caps::default()).unwrap());
        // A level-3 table at an IPA stage 2 does not map: CLASS=TT, with the
        // IPA of the entry fetched.
        let l2 = s1b.entry(0x20_0000, 2);
        mem.put(l2, table_desc(0x9000_0000, sh));
        let err = nested_translate(&mem, &s1, &s2, 0x20_3000, PRIV_R).err();
        assert_eq!(
            err,
            Some(VmsaError::Stage2 {
                fault: Fault::Translation { level: 1 },
                ipa: 0x9000_0018,
                class: Class::Tt
            })
        );
        // The output IPA unmapped: CLASS=IN, with that IPA.
        s1b.map(0x1000, 3, u64::from(s1_leaf(0xc000_0000, 3, sh)));
        let err = nested_translate(&mem, &s1, &s2, 0x1234, PRIV_R).err();
        assert_eq!(
            err,
            Some(VmsaError::Stage2 {
                fault: Fault::Translation { level: 1 },
                ipa: 0xc000_0234,
                class: Class::In
            })
        );
        // A write to an output stage 2 maps read-only.
        s1b.map(0x2000, 3, u64::from(s1_leaf(0x4800_0000, 3, sh)));
        assert!(nested_translate(&mem, &s1, &s2, 0x2234, PRIV_R).is_ok());
        let err = nested_translate(&mem, &s1, &s2, 0x2234, PRIV_W).err();
        assert_eq!(
            err,
            Some(VmsaError::Stage2 {
                fault: Fault::Permission { level: 1 },
                ipa: 0x4800_0234,
                class: Class::In
            })
        );
        // The stage-1 root at an unmapped IPA: CLASS=TT on the root entry.
        let mut c = s1c;
        c.tt[0].base = 0x8000_0000;
        let s1x = S1Tables::new(&c, &Caps::default()).unwrap();
        let err = nested_translate(&mem, &s1x, &s2, 0x4000_0000, PRIV_R).err();
        assert_eq!(
            err,
            Some(VmsaError::Stage2 {
                fault: Fault::Translation { level: 1 },
                ipa: 0x8000_0008,
                class: Class::Tt
            })
        );
        // A stage-2 translation of an arbitrary IPA, as for a CD fetch.
        assert_eq!(s2.translate(&mem, 0x4000_0040, PRIV_R).map(|o| o.output(0x4000_0040)), Ok(0x2_4000_0040));
        assert_eq!(s2.translate(&mem, 0xc000_0000, PRIV_R).err(), Some(Fault::Translation { level: 1 }));
    }

    #[test]
    fn nested_hardware_updates_need_stage2_write() {
        for s2_write in [false, true] {
            let mem = Mem::default();
            let (mut s2b, mut s1b, mut s2c, mut s1c) = nested_setup(&mem, s2_write);
            let sh = s1b.shape;
            let mut d = s1_leaf(0x4800_0000, 3, sh);
            d.set_af(false);
            let raw = u64::from(d);
            s1b.map(0x1000, 3, raw);
            let entry_pa = s1b.entry(0x1000, 3);
            let entry_ipa = entry_pa - 0x2_0000_0000;
            s1c.ha = true;
            s2c.ha = true;
            // The stage-2 block's AF is clear too: the table fetches set it.
            let blk = s2b.entry(0x4000_0000, 1);
            let mut bd = S2LeafDesc::from(mem.get(blk));
            bd.set_af(false);
            mem.put(blk, u64::from(bd));
            let (s1, s2) = (
                S1Tables::new(&s1c, &Caps::default()).unwrap(),
                S2Tables::new(&s2c, &Caps::default()).unwrap(),
            );
            let r = nested_translate(&mem, &s1, &s2, 0x1000, PRIV_R);
            if s2_write {
                assert!(r.is_ok());
                assert_eq!(mem.get(entry_pa), raw | af_bit());
                assert!(S2LeafDesc::from(mem.get(blk)).af());
            } else {
                let e = VmsaError::Stage2 {
                    fault: Fault::Permission { level: 1 },
                    ipa: entry_ipa,
                    class: Class::Tt,
                };
                assert_eq!(r.err(), Some(e));
                assert_eq!(mem.get(entry_pa), raw, "no update after a fault");
                assert!(!S2LeafDesc::from(mem.get(blk)).af());
            }
        }
    }

    #[test]
    fn failed_update_write_is_a_walk_abort() {
        /// Memory whose writes all fail.
        struct ReadOnly<'a>(&'a Mem);
        impl GuestMemory for ReadOnly<'_> {
            fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
                self.0.read(addr, buf)
            }
            fn write(&self, _: u64, _: &[u8]) -> Result<(), MemError> {
                Err(MemError)
            }
        }
        let mem = Mem::default();
        let (mut b, mut cfg) = small_s1(&mem);
        let mut d = s1_leaf(0x30_0000, 3, b.shape);
        d.set_af(false);
        b.map(0x4000, 3, u64::from(d));
        cfg.ha = true;
        let t = S1Tables::new(&cfg, &Caps::default()).unwrap();
        // A failed hardware update: an abort at the leaf descriptor.
        let leaf = b.entry(0x4000, 3);
        assert_eq!(
            t.translate(&ReadOnly(&mem), 0x4000, PRIV_R),
            s1_err(Fault::TableAbort { level: 3, root: false, addr: leaf })
        );
    }

    // ------------------------------------------------------------ no panics

    /// splitmix64.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            mix(self.0)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn bit(&mut self) -> bool {
            self.next() & 1 != 0
        }
    }

    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Memory holding descriptor-like garbage everywhere (mostly valid
    /// bits and small addresses, so that walks go deep), with a few
    /// addresses that abort; writes are kept.
    struct Garbage {
        seed: u64,
        written: RefCell<HashMap<u64, u64>>,
    }

    impl Garbage {
        fn word(&self, a: u64) -> Result<u64, MemError> {
            if let Some(&w) = self.written.borrow().get(&a) {
                return Ok(w);
            }
            let r = mix(self.seed ^ a);
            match r % 64 {
                0 => Err(MemError),
                1..=6 => Ok(mix(r)),
                _ => {
                    // Addresses of 20 to 35 bits; AF and read permission
                    // (AP[1] / S2AP[0]) mostly set.
                    let bits = 20 + (r >> 40) as u32 % 16;
                    let addr = mix(r ^ 1) & width_mask(bits) & !0xfff;
                    let likely = if (r >> 44) % 8 != 0 { 0x440 } else { 0 };
                    Ok((r & 0xfff8_0000_0000_0fff) | addr | likely | 1)
                }
            }
        }
    }

    impl GuestMemory for Garbage {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
            for (i, b) in buf.iter_mut().enumerate() {
                let a = addr.wrapping_add(i as u64);
                *b = (self.word(a & !7)? >> ((a & 7) * 8)) as u8;
            }
            Ok(())
        }
        fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemError> {
            for (i, b) in buf.iter().enumerate() {
                let a = addr.wrapping_add(i as u64);
                let w = self.word(a & !7)?;
                let sh = (a & 7) * 8;
                self.written.borrow_mut().insert(a & !7, (w & !(0xff << sh)) | (u64::from(*b) << sh));
            }
            Ok(())
        }
    }

    fn any_granule(r: &mut Rng) -> Granule {
        Granule::from_tg0(r.below(3) as u8).unwrap_or(Size4K)
    }

    fn any_address(r: &mut Rng) -> u64 {
        match r.below(4) {
            0 => r.next(),
            1 => r.next() & width_mask(r.below(53) as u32),
            2 => r.next() | !width_mask(48 + r.below(16) as u32),
            _ => r.next() & width_mask(40),
        }
    }

    fn check_err(e: VmsaError) {
        match e {
            VmsaError::Config(_) => panic!("config error from a walk"),
            VmsaError::Stage1(f) | VmsaError::Stage2 { fault: f, .. } => {
                assert!((-1..=3).contains(&f.level()), "{e:?}")
            }
        }
    }

    /// An input address for `s1`: mostly inside one of its ranges, tagged
    /// or not.
    fn s1_address(r: &mut Rng, s1: &S1Tables) -> u64 {
        let mut upper = r.bit();
        if s1.va_bits(upper).is_none() {
            upper = !upper;
        }
        let Some(bits) = s1.va_bits(upper).filter(|_| r.below(4) != 0) else {
            return any_address(r);
        };
        let mut va = r.next() & width_mask(bits);
        if upper {
            va |= !width_mask(bits);
        }
        if r.bit() {
            va = (va & width_mask(56)) | (r.next() << 56);
        }
        va
    }

    fn table_base(r: &mut Rng) -> u64 {
        if r.below(8) == 0 {
            any_address(r)
        } else {
            r.next() & width_mask(20 + r.below(16) as u32)
        }
    }

    #[test]
    fn random_configs_and_tables_never_panic() {
        let mut r = Rng(0x005e_ed0f_5eed);
        // Successful walks: stage 1, stage 2, nested; and nested failures
        // in stage 2 with CLASS=IN.
        let mut ok = [0usize; 4];
        for i in 0..5000u64 {
            let mem = Garbage { seed: mix(i), written: RefCell::default() };
            let caps = Caps {
                oas_bits: [32, 36, 40, 42, 44, 48, 52, 0, 99][r.below(9) as usize],
                small_tables: r.bit(),
                va52: r.bit(),
                xnx: r.bit(),
            };
            let tt_any = |r: &mut Rng| TtConfig {
                base: table_base(r),
                tsz: if r.below(4) == 0 { r.next() as u8 } else { 12 + r.below(37) as u8 },
                granule: any_granule(r),
                epd: r.below(5) == 0,
                tbi: r.bit(),
                had: r.bit(),
            };
            let s1c = S1Config {
                aa64: r.below(20) != 0,
                tt: [tt_any(&mut r), tt_any(&mut r)],
                ips: r.next() as u8,
                affd: r.bit(),
                ha: r.bit(),
                hd: r.bit(),
                ds: r.bit(),
            };
            let granule = any_granule(&mut r);
            let sl0 = r.next() as u8;
            // Half the time an S2T0SZ consistent with S2SL0.
            let t0sz = match (r.below(4), s2_start_level(granule, sl0)) {
                (0, _) | (_, None) => r.next() as u8,
                (1, _) => 12 + r.below(37) as u8,
                (_, Some(level)) => {
                    let ia = granule.level_shift(level) + 1 + r.below(u64::from(granule.stride()) + 4) as u32;
                    64u32.saturating_sub(ia) as u8
                }
            };
            let s2c = S2Config {
                aa64: r.below(20) != 0,
                vttb: table_base(&mut r),
                t0sz,
                sl0,
                granule,
                ps: r.next() as u8,
                affd: r.bit(),
                ha: r.bit(),
                hd: r.bit(),
                ds: r.bit(),
            };
            let access = Access { write: r.bit(), privileged: r.bit(), instruction: r.bit() };
            let s1 = S1Tables::new(&s1c, &caps);
            let s2 = S2Tables::new(&s2c, &caps);
            if let Ok(s1) = &s1 {
                let va = s1_address(&mut r, s1);
                match s1.translate(&mem, va, access) {
                    Ok(o) => {
                        ok[0] += 1;
                        assert_eq!(o.out & width_mask(o.size_shift), 0);
                        assert_eq!(o.out >> 52, 0);
                        assert!((-1..=3).contains(&o.level));
                        assert!(o.perms.allows(access), "{o:?} {access:?}");
                    }
                    Err(e) => check_err(e),
                }
            }
            if let Ok(s2) = &s2 {
                assert!((1..=16).contains(&s2.concatenated()));
                let ipa = if r.bit() { r.next() & width_mask(s2.ia_bits()) } else { any_address(&mut r) };
                match s2.translate(&mem, ipa, access) {
                    Ok(o) => {
                        ok[1] += 1;
                        assert_eq!(o.out & width_mask(o.size_shift), 0);
                        assert_eq!(o.out >> 52, 0);
                        assert!(o.perms.allows(access), "{o:?} {access:?}");
                    }
                    Err(f) => assert!((-1..=3).contains(&f.level())),
                }
            }
            for _ in 0..8 {
                let (Ok(s1), Ok(s2)) = (&s1, &s2) else { break };
                let va = s1_address(&mut r, s1);
                match nested_translate(&mem, s1, s2, va, access) {
                    Ok(o) => {
                        ok[2] += 1;
                        assert_eq!(o.out & width_mask(o.size_shift), 0);
                        assert!(o.allows(access));
                        assert_eq!(o.output(va) & !width_mask(o.size_shift), o.out);
                    }
                    Err(VmsaError::Stage2 { class: Class::In, .. }) => ok[3] += 1,
                    Err(e) => check_err(e),
                }
            }
        }
        // The generator gets past the configuration and range checks often
        // enough for the walks themselves to be exercised.
        assert!(ok.iter().all(|&n| n >= 20), "{ok:?}");
    }
}
