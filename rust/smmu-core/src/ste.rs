//! Stream Table Entries (IHI 0070 §5.2): the 64-byte structure a StreamID
//! selects, decoded into a [`StreamConfig`].
//!
//! # Conventions
//!
//! * An STE is handled as eight little-endian 64-bit words (`words[0]` is
//!   bits 63:0). Words 0 to 3 hold everything the non-secure,
//!   non-MPAM, non-realm model uses and have bilge layouts
//!   ([`SteWord0`] .. [`SteWord3`]); words 4 to 7 (secure stage 2, MPAM,
//!   VMS, permission overlays) are not decoded.
//! * [`decode`] returns either a configuration or the reason the STE is
//!   ILLEGAL ([`SteError`]); every reason is reported as C_BAD_STE. It never
//!   panics, whatever the words.
//! * What the SMMU implements is given by [`SteCaps`] (the ID registers'
//!   view), which also selects between two rule sets:
//!   - **compatible** (`strict == false`, the default): the checks QEMU
//!     10.2.2's C `arm-smmuv3` makes (`decode_ste` and
//!     `decode_ste_s2_cfg` in `hw/arm/smmuv3.c`), generalised to the given
//!     capabilities where the C rule follows from the C device's fixed
//!     ones (it refuses S2S = 1 because it cannot stall, so we refuse it
//!     when [`SteCaps::stall_model`] cannot stall);
//!   - **strict**: the architecture's ILLEGAL conditions (§5.2.2, the
//!     pseudocode `SteIllegal`) for the features modelled here.
//!
//!   RES0 and IGNORED fields are ignored in both.
//!
//! # Where the compatible rules accept more than the architecture
//!
//! Each of these is an STE the strict rules refuse (C_BAD_STE) or read
//! differently:
//!
//! 1. S1ContextPtr is taken from bits 47:6 only (the C device's
//!    `STE_CTXPTR`); bits 55:48 are dropped and the pointer is never
//!    checked against the OAS/IAS. Strict: bits 55:6, and a pointer at or
//!    above 2^OAS is ILLEGAL (the SMMUv3.1 rule; IAS equals OAS here).
//! 2. S2TTB is taken from bits 47:4 (`STE_S2TTB`); bits 51:48 are dropped
//!    before the range check against the effective S2PS. Strict: bits
//!    51:4.
//! 3. S2HA / S2HD are ignored when the SMMU has no HTTU (the C device
//!    implements none and never looks at them): the walk then makes no
//!    hardware update. Strict: ILLEGAL, as is S2HD with AF-only HTTU.
//! 4. S2VMID\[15:8\] non-zero on an SMMU with 8-bit VMIDs is accepted
//!    (the C device has 16-bit VMIDs). Strict: ILLEGAL.
//! 5. EATS is not checked without ATS (the C device has no ATS and
//!    ignores it). With [`SteCaps::ats`] (a configuration the C device
//!    does not offer, so there is nothing to be compatible with) the
//!    architecture's rules apply: split-stage ATS (0b10) needs a nested
//!    STE, S2S = 0 and no NS1ATS; full ATS (0b01) with stage 2 needs
//!    S2S = 0.
//! 6. S1Fmt selecting a 2-level CD table is accepted when the SMMU does not
//!    implement them (SMMU_IDR0.CD2L = 0); the table is walked anyway.
//!    Strict: ILLEGAL when substreams are enabled.
//!
//! # Where the compatible rules refuse more than the architecture
//!
//! Kept because the C device refuses them (so a guest sees the same
//! C_BAD_STE):
//!
//! 7. S1CDMax != 0 on an SMMU without substreams (SSIDSIZE = 0): the
//!    architecture IGNOREs the field there.
//! 8. S1CDMax and S1STALLD are checked for every translating STE,
//!    including stage-2-only ones, where the architecture IGNOREs all
//!    stage-1 fields.
//! 9. S2T0SZ below 64 - effective S2PS: the C device takes the stage-2
//!    output size as the IPA size; the architecture bounds S2T0SZ by the
//!    IAS (= OAS) only.
//!
//! # Where both rule sets differ from the C device
//!
//! * S2AA64 = 0 (AArch32 stage-2 tables) is C_BAD_STE. The C device
//!   reaches `g_assert_not_reached()` there: a guest-triggerable abort of
//!   QEMU.
//! * An S2SL0 that starts the walk at a level resolving no IPA bit (too
//!   shallow for S2T0SZ, e.g. 4 KiB, S2T0SZ = 39, S2SL0 = 0b10) is
//!   C_BAD_STE, as the architecture requires; the C device accepts it and
//!   walks the extra, almost empty, level. Linux never programs it.
//! * The StreamWorld is always NS-EL1: the model implements no EL2
//!   (SMMU_IDR0.HYP = 0), so STRW is RES0 and ignored, as in the C device.

use iommu_core::layout::field_address;
use bilge::prelude::*;
use iommu_core::translation::vmsa::{self, ConfigError, Granule, S2Config, S2Tables};
use iommu_core::translation::width_mask;

use crate::registers::{Httu, StallModel};

pub use layouts::{Config, EatsField, S1DssField, S1FmtField, SteWord0, SteWord1, SteWord2, SteWord3};

// ---------------------------------------------------------------- layouts

/// Architected bit layouts of the STE words. A module of its own because
/// bilge's generated constructors carry no documentation; the fields are
/// documented all the same.
#[allow(missing_docs)]
mod layouts {
    use bilge::prelude::*;
    use iommu_core::translation::vmsa::{PaSize, Tg0};

    /// STE.Config, bits 3:1.
    #[bitsize(3)]
    #[derive(FromBits, Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Config {
        /// 0b000: abort every transaction, no event.
        Abort = 0,
        /// 0b001: reserved, behaves as abort.
        Reserved1 = 1,
        /// 0b010: reserved, behaves as abort.
        Reserved2 = 2,
        /// 0b011: reserved, behaves as abort.
        Reserved3 = 3,
        /// 0b100: both stages bypass.
        Bypass = 4,
        /// 0b101: stage 1 translates, stage 2 bypasses.
        Stage1 = 5,
        /// 0b110: stage 1 bypasses, stage 2 translates.
        Stage2 = 6,
        /// 0b111: both stages translate (nested).
        Nested = 7,
    }

    /// STE.S1Fmt, bits 5:4: the layout of the CD table when substreams
    /// are enabled.
    #[bitsize(2)]
    #[derive(FromBits, Debug, Clone, Copy, PartialEq, Eq)]
    pub enum S1FmtField {
        /// 0b00: a linear table of CDs indexed by SubstreamID.
        Linear = 0,
        /// 0b01: L1CDs pointing to 4 KiB tables of 64 CDs.
        TwoLevel4K = 1,
        /// 0b10: L1CDs pointing to 64 KiB tables of 1024 CDs.
        TwoLevel64K = 2,
        /// 0b11: reserved, behaves as 0b00.
        Reserved = 3,
    }

    /// STE.S1DSS, bits 65:64: what a transaction without a SubstreamID
    /// does when substreams are enabled.
    #[bitsize(2)]
    #[derive(FromBits, Debug, Clone, Copy, PartialEq, Eq)]
    pub enum S1DssField {
        /// 0b00: terminate, F_STREAM_DISABLED.
        Terminate = 0,
        /// 0b01: bypass stage 1.
        Bypass = 1,
        /// 0b10: use CD 0 (then SubstreamID 0 is refused).
        Substream0 = 2,
        /// 0b11: reserved, behaves as 0b00.
        Reserved = 3,
    }

    /// STE.EATS, bits 93:92: PCIe ATS.
    #[bitsize(2)]
    #[derive(FromBits, Debug, Clone, Copy, PartialEq, Eq)]
    pub enum EatsField {
        /// 0b00: ATS Translation Requests refused.
        Abort = 0,
        /// 0b01: full ATS.
        Full = 1,
        /// 0b10: split-stage ATS (stage 1 in the ATC, stage 2 here).
        SplitStage = 2,
        /// 0b11: full ATS with DPT checks.
        FullDpt = 3,
    }

    /// STE bits 63:0.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct SteWord0 {
        /// Bit 0, V: the STE is valid.
        #[inline]
        pub v: bool,
        /// Bits 3:1, Config.
        #[inline]
        pub config: Config,
        /// Bits 5:4, S1Fmt.
        #[inline]
        pub s1_fmt: S1FmtField,
        /// Bits 55:6, S1ContextPtr\[55:6\].
        #[inline]
        pub s1_context_ptr: u50,
        #[inline]
        reserved: u3,
        /// Bits 63:59, S1CDMax: log2 of the number of CDs.
        #[inline]
        pub s1_cd_max: u5,
    }

    /// STE bits 127:64.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct SteWord1 {
        /// Bits 65:64, S1DSS.
        #[inline]
        pub s1_dss: S1DssField,
        /// Bits 67:66, S1CIR: inner cacheability of CD fetches.
        #[inline]
        pub s1_cir: u2,
        /// Bits 69:68, S1COR: outer cacheability of CD fetches.
        #[inline]
        pub s1_cor: u2,
        /// Bits 71:70, S1CSH: shareability of CD fetches.
        #[inline]
        pub s1_csh: u2,
        /// Bits 75:72, S2HWU59..S2HWU62 (PBHA).
        #[inline]
        pub s2_hwu: u4,
        /// Bit 76, DRE: destructive reads allowed.
        #[inline]
        pub dre: bool,
        /// Bits 80:77, CONT: contiguous hint, 2^CONT identical STEs.
        #[inline]
        pub cont: u4,
        /// Bit 81, DCP: directed cache prefetch allowed.
        #[inline]
        pub dcp: bool,
        /// Bit 82, PPAR: PRI auto-responses carry a PASID.
        #[inline]
        pub ppar: bool,
        /// Bit 83, MEV: similar events may be merged.
        #[inline]
        pub mev: bool,
        /// Bits 87:84, software use.
        #[inline]
        pub sw_reserved: u4,
        /// Bit 88, S1PIE: CDs may enable stage-1 permission indirection.
        #[inline]
        pub s1_pie: bool,
        /// Bit 89, S2FWB.
        #[inline]
        pub s2_fwb: bool,
        /// Bit 90, S1MPAM.
        #[inline]
        pub s1_mpam: bool,
        /// Bit 91, S1STALLD: CDs may not select the stall model.
        #[inline]
        pub s1_stalld: bool,
        /// Bits 93:92, EATS.
        #[inline]
        pub eats: EatsField,
        /// Bits 95:94, STRW: StreamWorld control.
        #[inline]
        pub strw: u2,
        /// Bits 99:96, MemAttr override.
        #[inline]
        pub mem_attr: u4,
        /// Bit 100, MTCFG: MemAttr replaces the incoming type.
        #[inline]
        pub mtcfg: bool,
        /// Bits 104:101, ALLOCCFG.
        #[inline]
        pub alloccfg: u4,
        #[inline]
        reserved: u3,
        /// Bits 109:108, SHCFG.
        #[inline]
        pub shcfg: u2,
        /// Bits 111:110, NSCFG.
        #[inline]
        pub nscfg: u2,
        /// Bits 113:112, PRIVCFG.
        #[inline]
        pub privcfg: u2,
        /// Bits 115:114, INSTCFG.
        #[inline]
        pub instcfg: u2,
        /// Bits 127:116, IMPLEMENTATION DEFINED.
        #[inline]
        pub impdef: u12,
    }

    /// STE bits 191:128.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct SteWord2 {
        /// Bits 143:128, S2VMID.
        #[inline]
        pub s2_vmid: u16,
        /// Bits 159:144, IMPLEMENTATION DEFINED.
        #[inline]
        pub impdef: u16,
        /// Bits 165:160, S2T0SZ.
        #[inline]
        pub s2_t0sz: u6,
        /// Bits 167:166, S2SL0.
        #[inline]
        pub s2_sl0: u2,
        /// Bits 169:168, S2IR0.
        #[inline]
        pub s2_ir0: u2,
        /// Bits 171:170, S2OR0.
        #[inline]
        pub s2_or0: u2,
        /// Bits 173:172, S2SH0.
        #[inline]
        pub s2_sh0: u2,
        /// Bits 175:174, S2TG (encoded as CD.TG0).
        #[inline]
        pub s2_tg: Tg0,
        /// Bits 178:176, S2PS.
        #[inline]
        pub s2_ps: PaSize,
        /// Bit 179, S2AA64: VMSAv8-64 stage-2 tables.
        #[inline]
        pub s2_aa64: bool,
        /// Bit 180, S2ENDI: big-endian stage-2 tables.
        #[inline]
        pub s2_endi: bool,
        /// Bit 181, S2AFFD: no Access flag faults.
        #[inline]
        pub s2_affd: bool,
        /// Bit 182, S2PTW: stage-1 walks to Device memory fault.
        #[inline]
        pub s2_ptw: bool,
        /// Bit 183, S2HD: hardware dirty state.
        #[inline]
        pub s2_hd: bool,
        /// Bit 184, S2HA: hardware Access flag.
        #[inline]
        pub s2_ha: bool,
        /// Bit 185, S2S: stall on stage-2 faults.
        #[inline]
        pub s2_s: bool,
        /// Bit 186, S2R: record stage-2 faults.
        #[inline]
        pub s2_r: bool,
        /// Bit 187, S2HAFT.
        #[inline]
        pub s2_haft: bool,
        /// Bit 188, S2PIE.
        #[inline]
        pub s2_pie: bool,
        /// Bit 189, S2POE.
        #[inline]
        pub s2_poe: bool,
        /// Bits 191:190, DPT_VMATCH.
        #[inline]
        pub dpt_vmatch: u2,
    }

    /// STE bits 255:192.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct SteWord3 {
        /// Bit 192, S2NSW (secure STEs only).
        #[inline]
        pub s2_nsw: bool,
        /// Bit 193, S2NSA (secure STEs only).
        #[inline]
        pub s2_nsa: bool,
        /// Bit 194, S2SL0\[2\] (4 KiB with S2DS).
        #[inline]
        pub s2_sl0_2: bool,
        /// Bit 195, S2DS: 52-bit addresses with 4/16 KiB granules.
        #[inline]
        pub s2_ds: bool,
        /// Bits 247:196, S2TTB\[55:4\].
        #[inline]
        pub s2_ttb: u52,
        #[inline]
        reserved: u5,
        /// Bits 254:253, S2SKL (VMSAv9-128 only).
        #[inline]
        pub s2_skl: u2,
        #[inline]
        reserved: bool,
    }
}

// ---------------------------------------------------------------- capabilities

/// Translation granules the SMMU implements (SMMU_IDR5.GRAN4K/16K/64K,
/// which apply to both stages).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Granules {
    /// 4 KiB.
    pub k4: bool,
    /// 16 KiB.
    pub k16: bool,
    /// 64 KiB.
    pub k64: bool,
}

impl Granules {
    /// All three.
    pub const ALL: Granules = Granules { k4: true, k16: true, k64: true };

    /// Whether `g` is implemented.
    pub fn supports(&self, g: Granule) -> bool {
        match g {
            Granule::Size4K => self.k4,
            Granule::Size16K => self.k16,
            Granule::Size64K => self.k64,
        }
    }
}

/// What the SMMU advertises, as STE, stream table and CD decoding depend
/// on it, and which rule set applies. A device takes them from its
/// configuration, [`Config::ste_caps`](crate::config::Config::ste_caps)
/// (or from its ID registers,
/// [`IdRegisters::ste_caps`](crate::config::IdRegisters::ste_caps)), so
/// that they are what the guest reads there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SteCaps {
    /// Stage 1 implemented (SMMU_IDR0.S1P).
    pub s1: bool,
    /// Stage 2 implemented (SMMU_IDR0.S2P). Both stages: nesting.
    pub s2: bool,
    /// Granules of both stages (SMMU_IDR5.GRAN*).
    pub granules: Granules,
    /// Output address size in bits (SMMU_IDR5.OAS decoded: 32 to 52),
    /// also the IAS (no AArch32 tables).
    pub oas_bits: u8,
    /// StreamID bits (SMMU_IDR1.SIDSIZE).
    pub sid_bits: u8,
    /// SubstreamID bits (SMMU_IDR1.SSIDSIZE, 0 to 20; 0: no substreams).
    pub ssid_bits: u8,
    /// 2-level stream tables (SMMU_IDR0.ST_LEVEL = 0b01).
    pub two_level_strtab: bool,
    /// 2-level CD tables (SMMU_IDR0.CD2L).
    pub two_level_cd: bool,
    /// PCIe ATS (SMMU_IDR0.ATS).
    pub ats: bool,
    /// Stage-1-only ATS not supported (SMMU_IDR0.NS1ATS).
    pub ns1ats: bool,
    /// 16-bit VMIDs (SMMU_IDR0.VMID16).
    pub vmid16: bool,
    /// 16-bit ASIDs (SMMU_IDR0.ASID16).
    pub asid16: bool,
    /// Hardware Access flag / dirty state updates (SMMU_IDR0.HTTU; the
    /// reserved 0b11 is taken as none).
    pub httu: Httu,
    /// SMMU_IDR0.STALL_MODEL (the reserved 0b11 is taken as 0b01: no
    /// stalls).
    pub stall_model: StallModel,
    /// Terminated transactions always abort, no RAZ/WI (SMMU_IDR0.TERM_MODEL).
    pub abort_only: bool,
    /// Small translation tables (SMMU_IDR3.STT).
    pub small_tables: bool,
    /// 52-bit VAs with 64 KiB granules (SMMU_IDR5.VAX = 0b01).
    pub va52: bool,
    /// LPA2: 52-bit addresses with 4/16 KiB granules (SMMU_IDR5.DS).
    pub ds: bool,
    /// Two-bit stage-2 XN (SMMU_IDR3.XNX).
    pub xnx: bool,
    /// Apply the architecture's checks instead of the C device's (see the
    /// module documentation of [`crate::ste`] and [`crate::cd`]).
    pub strict: bool,
}

impl SteCaps {
    /// The same capabilities with the strict rules.
    pub fn strict(self) -> SteCaps {
        SteCaps { strict: true, ..self }
    }

    /// The walker's view of these capabilities.
    pub fn vmsa(&self) -> vmsa::Caps {
        vmsa::Caps { oas_bits: self.oas_bits, small_tables: self.small_tables, va52: self.va52, xnx: self.xnx }
    }

    /// The OAS in bits, clamped to 32..=52.
    pub fn oas(&self) -> u32 {
        u32::from(self.oas_bits.clamp(32, 52))
    }

    /// Whether the Access flag may be updated by hardware.
    pub fn ha(&self) -> bool {
        matches!(self.httu, Httu::AccessFlag | Httu::Dirty)
    }

    /// Whether dirty state may be updated by hardware.
    pub fn hd(&self) -> bool {
        self.httu == Httu::Dirty
    }
}

// ---------------------------------------------------------------- decoded configuration

/// Memory attributes of the SMMU's own accesses to a table (CD fetches,
/// stage-2 walks): the raw IRGN/ORGN/SH encodings. Not used by the model,
/// which has no caches, but kept for tracing and for hosts that need them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TableAttrs {
    /// Inner cacheability (0b00 NC, 0b01 WB RA WA, 0b10 WT RA, 0b11 WB RA).
    pub inner: u8,
    /// Outer cacheability, same encoding.
    pub outer: u8,
    /// Shareability (0b00 NSH, 0b10 OSH, 0b11 ISH; 0b01 behaves as NSH).
    pub sh: u8,
}

/// The per-stream attribute and permission overrides (STE.MTCFG,
/// MemAttr, ALLOCCFG, SHCFG, NSCFG, PRIVCFG, INSTCFG), raw. They matter
/// only with SMMU_IDR1.ATTR_TYPES_OVR / ATTR_PERMS_OVR, which the model
/// does not advertise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Overrides {
    /// MTCFG: MemAttr replaces the incoming memory type.
    pub mtcfg: bool,
    /// MemAttr.
    pub mem_attr: u8,
    /// ALLOCCFG.
    pub alloccfg: u8,
    /// SHCFG (0b01: use the incoming shareability, as Linux sets).
    pub shcfg: u8,
    /// NSCFG.
    pub nscfg: u8,
    /// PRIVCFG.
    pub privcfg: u8,
    /// INSTCFG.
    pub instcfg: u8,
}

/// Where the CDs of a stream are (STE.S1Fmt with S1CDMax).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CdTableFormat {
    /// Substreams disabled (S1CDMax = 0, or the SMMU has none): the
    /// context pointer addresses one CD.
    Single,
    /// A linear table of 2^S1CDMax CDs (S1Fmt 0b00, or the reserved 0b11).
    Linear,
    /// L1CDs pointing to 4 KiB leaf tables of 64 CDs (S1Fmt 0b01).
    TwoLevel4K,
    /// L1CDs pointing to 64 KiB leaf tables of 1024 CDs (S1Fmt 0b10).
    TwoLevel64K,
}

impl CdTableFormat {
    /// SubstreamID bits that index a leaf table of a 2-level layout.
    pub fn split(self) -> Option<u32> {
        match self {
            CdTableFormat::TwoLevel4K => Some(6),
            CdTableFormat::TwoLevel64K => Some(10),
            CdTableFormat::Single | CdTableFormat::Linear => None,
        }
    }
}

/// What a transaction without a SubstreamID does on a stream with
/// substreams enabled (STE.S1DSS, effective value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum S1Dss {
    /// Terminated with F_STREAM_DISABLED (0b00, and the reserved 0b11).
    Terminate,
    /// Stage 1 bypassed, no CD fetched (0b01).
    Bypass,
    /// Translated with CD 0; a transaction with SubstreamID 0 is then
    /// terminated with F_STREAM_DISABLED (0b10).
    Substream0,
}

/// The stage-1 part of a translating STE: where its CDs are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stage1 {
    /// S1ContextPtr: the CD, CD table or L1CD table address (an IPA when
    /// stage 2 also translates).
    pub context_ptr: u64,
    /// The CD table layout.
    pub fmt: CdTableFormat,
    /// S1CDMax, effective: 0 when substreams are disabled or unsupported.
    pub cd_max: u8,
    /// S1DSS, effective (meaningful only when `cd_max` is non-zero).
    pub dss: S1Dss,
    /// S1STALLD: CDs may not select stalling.
    pub stall_disabled: bool,
    /// S1CIR/S1COR/S1CSH.
    pub attrs: TableAttrs,
}

/// The stage-2 part of a translating STE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage2 {
    /// The decoded fields, as the walker takes them.
    pub config: S2Config,
    /// The same, validated: ready to walk.
    pub tables: S2Tables,
    /// S2R: record stage-2 Translation, Address size, Access flag and
    /// Permission faults.
    pub record: bool,
    /// S2S: stall on those faults (only ever set when the SMMU can stall).
    pub stall: bool,
    /// S2PTW: stage-1 walks and CD fetches to Device memory fault (not
    /// modelled by the walker).
    pub ptw: bool,
    /// S2IR0/S2OR0/S2SH0.
    pub attrs: TableAttrs,
}

/// PCIe ATS as the STE enables it (STE.EATS, effective value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Eats {
    /// Translation Requests refused (also whenever the SMMU has no ATS,
    /// and for the DPT encoding the model does not implement).
    Abort,
    /// Full ATS.
    Full,
    /// Split-stage ATS.
    SplitStage,
}

/// A translating STE (Config 0b101, 0b110, 0b111).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translate {
    /// Stage 1, when Config\[0\] is set.
    pub s1: Option<Stage1>,
    /// Stage 2, when Config\[1\] is set.
    pub s2: Option<Stage2>,
    /// S2VMID, the VMID translations are tagged with: present whenever the
    /// SMMU implements stage 2, even for a stage-1-only STE (NS-EL1).
    pub vmid: Option<u16>,
    /// EATS.
    pub eats: Eats,
    /// MEV: events may be merged.
    pub mev: bool,
    /// CONT: the STE is one of 2^CONT identical ones (a caching hint).
    pub cont: u8,
    /// Attribute overrides.
    pub overrides: Overrides,
}

/// A stream's configuration, as its STE gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamConfig {
    /// Config 0b0xx: every transaction is aborted, without an event.
    Abort,
    /// Config 0b100: both stages bypass, with these overrides.
    Bypass(Overrides),
    /// Config 0b1x1 / 0b11x: translate.
    Translate(Translate),
}

// ---------------------------------------------------------------- errors

/// Why an STE is ILLEGAL. Every variant is reported as **C_BAD_STE**
/// (event 0x04, with the StreamID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SteError {
    /// V = 0.
    Invalid,
    /// Stage 1 enabled on an SMMU without stage 1.
    Stage1Unsupported,
    /// Stage 2 enabled on an SMMU without stage 2.
    Stage2Unsupported,
    /// S2AA64 = 0: AArch32 stage-2 tables are not implemented.
    S2NotAArch64,
    /// S2TG = 0b11.
    S2GranuleReserved,
    /// S2TG selects a granule the SMMU does not implement.
    S2GranuleUnsupported,
    /// S2TTB has bits at or above the effective S2PS (or above 48 bits
    /// with 4/16 KiB granules without S2DS).
    S2TtbOutOfRange,
    /// S2T0SZ below 64 - effective S2PS (compatible rules only).
    S2T0szBeyondPs,
    /// S2T0SZ, S2SL0 and S2TG do not make a walkable configuration.
    S2Tables(ConfigError),
    /// S2ENDI = 1: big-endian tables are not implemented.
    S2BigEndian,
    /// S2S does not fit the stall model.
    S2Stall,
    /// S2HA / S2HD without the HTTU they need (strict rules only).
    S2Httu,
    /// S1CDMax != 0 on an SMMU without substreams (compatible rules only).
    SubstreamsUnsupported,
    /// S1CDMax above SSIDSIZE.
    CdMaxTooLarge,
    /// S1Fmt selects a 2-level CD table the SMMU does not implement
    /// (strict rules only).
    TwoLevelCdUnsupported,
    /// S1STALLD = 1 on an SMMU whose stall model is not configurable.
    S1StallDisable,
    /// S1ContextPtr at or above 2^OAS (strict rules only).
    ContextPtrOutOfRange,
    /// S2VMID\[15:8\] non-zero with 8-bit VMIDs (strict rules only).
    Vmid16,
    /// EATS inconsistent with the configuration (only when ATS is
    /// advertised).
    Eats,
}

impl SteError {
    /// The event this error becomes.
    pub fn event(&self) -> crate::stream::ConfigEvent {
        crate::stream::ConfigEvent::BadSte
    }
}

impl From<ConfigError> for SteError {
    fn from(e: ConfigError) -> Self {
        SteError::S2Tables(e)
    }
}

// ---------------------------------------------------------------- decoding

/// Decode an STE (its eight words, already fetched) for an SMMU with
/// `caps`.
pub fn decode(words: [u64; 8], caps: &SteCaps) -> Result<StreamConfig, SteError> {
    let w0 = SteWord0::from(words[0]);
    let w1 = SteWord1::from(words[1]);
    if !w0.v() {
        return Err(SteError::Invalid);
    }
    let (s1_on, s2_on) = match w0.config() {
        Config::Abort | Config::Reserved1 | Config::Reserved2 | Config::Reserved3 => {
            return Ok(StreamConfig::Abort)
        }
        Config::Bypass => return Ok(StreamConfig::Bypass(overrides(&w1))),
        Config::Stage1 => (true, false),
        Config::Stage2 => (false, true),
        Config::Nested => (true, true),
    };
    if s1_on && !caps.s1 {
        return Err(SteError::Stage1Unsupported);
    }
    if s2_on && !caps.s2 {
        return Err(SteError::Stage2Unsupported);
    }
    let w2 = SteWord2::from(words[2]);
    let w3 = SteWord3::from(words[3]);

    let vmid = caps.s2.then(|| w2.s2_vmid());
    // Arithmetic: a VMID wider than 8 bits without IDR0.VMID16.
    if caps.strict && !caps.vmid16 && vmid.is_some_and(|v| v >> 8 != 0) {
        return Err(SteError::Vmid16);
    }
    let s2 = if s2_on { Some(decode_s2(&w2, &w3, caps)?) } else { None };

    // The C device checks S1CDMax and S1STALLD on every translating STE;
    // the architecture only when stage 1 is enabled.
    if s1_on || !caps.strict {
        let cd_max = w0.s1_cd_max().value();
        if caps.ssid_bits == 0 {
            if cd_max != 0 && !caps.strict {
                return Err(SteError::SubstreamsUnsupported);
            }
        } else if cd_max > caps.ssid_bits {
            return Err(SteError::CdMaxTooLarge);
        }
        if w1.s1_stalld() && caps.stall_model != StallModel::StallAndTerminate {
            return Err(SteError::S1StallDisable);
        }
    }
    let s1 = if s1_on { Some(decode_s1(&w0, &w1, caps)?) } else { None };
    let eats = decode_eats(&w1, &w2, s1_on, s2_on, caps)?;

    Ok(StreamConfig::Translate(Translate {
        s1,
        s2,
        vmid,
        eats,
        mev: w1.mev(),
        cont: w1.cont().value(),
        overrides: overrides(&w1),
    }))
}

fn overrides(w1: &SteWord1) -> Overrides {
    Overrides {
        mtcfg: w1.mtcfg(),
        mem_attr: w1.mem_attr().value(),
        alloccfg: w1.alloccfg().value(),
        shcfg: w1.shcfg().value(),
        nscfg: w1.nscfg().value(),
        privcfg: w1.privcfg().value(),
        instcfg: w1.instcfg().value(),
    }
}

fn decode_s1(w0: &SteWord0, w1: &SteWord1, caps: &SteCaps) -> Result<Stage1, SteError> {
    let field = field_address(w0.s1_context_ptr(), 6);
    let context_ptr = if caps.strict {
        // Arithmetic: an address beyond the output address size.
        if field >> caps.oas() != 0 {
            return Err(SteError::ContextPtrOutOfRange);
        }
        field
    } else {
        field & width_mask(48)
    };
    // Compatible rules refused a non-zero S1CDMax without substreams
    // already; strict ones ignore it.
    let cd_max = if caps.ssid_bits == 0 { 0 } else { w0.s1_cd_max().value() };
    let fmt = if cd_max == 0 {
        CdTableFormat::Single
    } else {
        match w0.s1_fmt() {
            S1FmtField::Linear | S1FmtField::Reserved => CdTableFormat::Linear,
            S1FmtField::TwoLevel4K => CdTableFormat::TwoLevel4K,
            S1FmtField::TwoLevel64K => CdTableFormat::TwoLevel64K,
        }
    };
    if caps.strict && !caps.two_level_cd && fmt.split().is_some() {
        return Err(SteError::TwoLevelCdUnsupported);
    }
    let dss = match w1.s1_dss() {
        S1DssField::Terminate | S1DssField::Reserved => S1Dss::Terminate,
        S1DssField::Bypass => S1Dss::Bypass,
        S1DssField::Substream0 => S1Dss::Substream0,
    };
    Ok(Stage1 {
        context_ptr,
        fmt,
        cd_max,
        dss,
        stall_disabled: w1.s1_stalld(),
        attrs: TableAttrs { inner: w1.s1_cir().value(), outer: w1.s1_cor().value(), sh: w1.s1_csh().value() },
    })
}

fn decode_s2(w2: &SteWord2, w3: &SteWord3, caps: &SteCaps) -> Result<Stage2, SteError> {
    if !w2.s2_aa64() {
        return Err(SteError::S2NotAArch64);
    }
    let granule = Granule::from_s2tg(u2::from(w2.s2_tg()).value()).ok_or(SteError::S2GranuleReserved)?;
    if !caps.granules.supports(granule) {
        return Err(SteError::S2GranuleUnsupported);
    }
    let ds = caps.ds && w3.s2_ds() && granule != Granule::Size64K;
    // S2SL0[2] selects level -1 (4 KiB with S2DS), which the walker does
    // not implement.
    if ds && granule == Granule::Size4K && w3.s2_sl0_2() {
        return Err(SteError::S2Tables(ConfigError::BadStartLevel));
    }
    let ps = u3::from(w2.s2_ps()).value();
    let mut eff_ps = vmsa::pa_size_bits(ps).min(caps.oas());
    if granule != Granule::Size64K && !ds {
        eff_ps = eff_ps.min(48);
    }
    let field = field_address(w3.s2_ttb(), 4);
    let vttb = if caps.strict { field & width_mask(52) } else { field & width_mask(48) };
    // Arithmetic: an address beyond the effective PS.
    if vttb >> eff_ps != 0 {
        return Err(SteError::S2TtbOutOfRange);
    }
    let t0sz = w2.s2_t0sz().value();
    if !caps.strict && u32::from(t0sz) < 64 - eff_ps {
        return Err(SteError::S2T0szBeyondPs);
    }
    if caps.strict && (((w2.s2_ha() || w2.s2_hd()) && !caps.ha()) || (w2.s2_hd() && !caps.hd())) {
        return Err(SteError::S2Httu);
    }
    let config = S2Config {
        aa64: true,
        vttb,
        t0sz,
        sl0: w2.s2_sl0().value(),
        granule,
        ps,
        affd: w2.s2_affd(),
        ha: w2.s2_ha() && caps.ha(),
        hd: w2.s2_hd() && caps.hd(),
        ds,
    };
    let tables = S2Tables::new(&config, &caps.vmsa())?;
    if w2.s2_endi() {
        return Err(SteError::S2BigEndian);
    }
    let stall = w2.s2_s();
    match caps.stall_model {
        StallModel::TerminateOnly | StallModel::Reserved if stall => return Err(SteError::S2Stall),
        StallModel::StallForced if !stall => return Err(SteError::S2Stall),
        _ => {}
    }
    Ok(Stage2 {
        config,
        tables,
        record: w2.s2_r(),
        stall,
        ptw: w2.s2_ptw(),
        attrs: TableAttrs { inner: w2.s2_ir0().value(), outer: w2.s2_or0().value(), sh: w2.s2_sh0().value() },
    })
}

fn decode_eats(w1: &SteWord1, w2: &SteWord2, s1_on: bool, s2_on: bool, caps: &SteCaps) -> Result<Eats, SteError> {
    if !caps.ats {
        return Ok(Eats::Abort);
    }
    let s2s = w2.s2_s();
    let raw = w1.eats();
    let bad = match raw {
        EatsField::SplitStage => !(s1_on && s2_on) || s2s || caps.ns1ats,
        EatsField::Full => s2_on && s2s,
        EatsField::Abort | EatsField::FullDpt => false,
    };
    if bad {
        return Err(SteError::Eats);
    }
    Ok(match raw {
        EatsField::Full => Eats::Full,
        EatsField::SplitStage => Eats::SplitStage,
        EatsField::Abort | EatsField::FullDpt => Eats::Abort,
    })
}

// ---------------------------------------------------------------- tests

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testutil::{ste_caps, Rng};
    use iommu_core::translation::vmsa::{PaSize, Tg0};

    /// Linux's encodings (drivers/iommu/arm/arm-smmu-v3), for readability.
    pub(crate) const CACHE_WBRA: u8 = 1;
    pub(crate) const SH_ISH: u8 = 3;

    pub(crate) fn word0(f: impl FnOnce(&mut SteWord0)) -> u64 {
        let mut w = SteWord0::from(0u64);
        f(&mut w);
        u64::from(w)
    }

    pub(crate) fn word1(f: impl FnOnce(&mut SteWord1)) -> u64 {
        let mut w = SteWord1::from(0u64);
        f(&mut w);
        u64::from(w)
    }

    pub(crate) fn word2(f: impl FnOnce(&mut SteWord2)) -> u64 {
        let mut w = SteWord2::from(0u64);
        f(&mut w);
        u64::from(w)
    }

    pub(crate) fn word3(f: impl FnOnce(&mut SteWord3)) -> u64 {
        let mut w = SteWord3::from(0u64);
        f(&mut w);
        u64::from(w)
    }

    /// An STE as Linux's arm_smmu_make_cdtable_ste() writes it for a
    /// domain without PASIDs: one CD at `cdptr`, S1DSS = SSID0, CD
    /// fetches WBRA/ISH, StreamWorld NS-EL1.
    pub(crate) fn linux_s1_ste(cdptr: u64) -> [u64; 8] {
        let mut w = [0u64; 8];
        w[0] = word0(|w| {
            w.set_v(true);
            w.set_config(Config::Stage1);
            w.set_s1_context_ptr(u50::new(cdptr >> 6));
        });
        w[1] = word1(|w| {
            w.set_s1_dss(S1DssField::Substream0);
            w.set_s1_cir(u2::new(CACHE_WBRA));
            w.set_s1_cor(u2::new(CACHE_WBRA));
            w.set_s1_csh(u2::new(SH_ISH));
        });
        w
    }

    /// The stage-2 words Linux's arm_smmu_make_s2_domain_ste() writes:
    /// VTCR fields for `ias` bits of IPA with `granule`, WBWA/ISH walks,
    /// S2AA64, S2R (and S2PTW for a nesting parent).
    pub(crate) fn linux_s2_words(vmid: u16, vttb: u64, granule: Granule, ias: u8, nest_parent: bool) -> (u64, u64) {
        // The start level io-pgtable-arm picks, and its S2SL0 encoding.
        let stride = granule.stride();
        let levels = (u32::from(ias) - granule.shift()).div_ceil(stride);
        let mut start = 4 - levels as i8;
        let root_bits = u32::from(ias) - (granule.shift() + stride * (3 - start as u32));
        if start == 0 && root_bits <= 4 {
            start = 1; // concatenate up to 16 tables instead of a level 0
        }
        let sl0 = match granule {
            Granule::Size4K => (!(start + 1) & 3) as u8,
            _ => (!start & 3) as u8,
        };
        let tg = match granule {
            Granule::Size4K => Tg0::Granule4K,
            Granule::Size16K => Tg0::Granule16K,
            Granule::Size64K => Tg0::Granule64K,
        };
        let w2 = word2(|w| {
            w.set_s2_vmid(vmid);
            w.set_s2_t0sz(u6::new(64 - ias));
            w.set_s2_sl0(u2::new(sl0));
            w.set_s2_ir0(u2::new(CACHE_WBRA));
            w.set_s2_or0(u2::new(CACHE_WBRA));
            w.set_s2_sh0(u2::new(SH_ISH));
            w.set_s2_tg(tg);
            w.set_s2_ps(PaSize::Bits44);
            w.set_s2_aa64(true);
            w.set_s2_r(true);
            w.set_s2_ptw(nest_parent);
        });
        let w3 = word3(|w| w.set_s2_ttb(u52::new(vttb >> 4)));
        (w2, w3)
    }

    pub(crate) fn linux_s2_ste(vmid: u16, vttb: u64, granule: Granule) -> [u64; 8] {
        let mut w = [0u64; 8];
        w[0] = word0(|w| {
            w.set_v(true);
            w.set_config(Config::Stage2);
        });
        w[1] = word1(|w| w.set_shcfg(u2::new(1)));
        (w[2], w[3]) = linux_s2_words(vmid, vttb, granule, 44, false);
        w
    }

    pub(crate) fn linux_nested_ste(cdptr: u64, vmid: u16, vttb: u64) -> [u64; 8] {
        let mut w = set0(linux_s1_ste(cdptr), |x| x.set_config(Config::Nested));
        (w[2], w[3]) = linux_s2_words(vmid, vttb, Granule::Size4K, 44, true);
        w
    }

    fn translate(r: Result<StreamConfig, SteError>) -> Translate {
        match r {
            Ok(StreamConfig::Translate(t)) => t,
            other => panic!("expected a translating STE, got {other:?}"),
        }
    }

    fn qemu() -> SteCaps {
        ste_caps(true, true)
    }

    fn with(mut w: [u64; 8], i: usize, f: impl FnOnce(u64) -> u64) -> [u64; 8] {
        w[i] = f(w[i]);
        w
    }

    fn set2(w: [u64; 8], f: impl FnOnce(&mut SteWord2)) -> [u64; 8] {
        with(w, 2, |x| {
            let mut s = SteWord2::from(x);
            f(&mut s);
            u64::from(s)
        })
    }

    fn set1(w: [u64; 8], f: impl FnOnce(&mut SteWord1)) -> [u64; 8] {
        with(w, 1, |x| {
            let mut s = SteWord1::from(x);
            f(&mut s);
            u64::from(s)
        })
    }

    fn set0(w: [u64; 8], f: impl FnOnce(&mut SteWord0)) -> [u64; 8] {
        with(w, 0, |x| {
            let mut s = SteWord0::from(x);
            f(&mut s);
            u64::from(s)
        })
    }

    fn set3(w: [u64; 8], f: impl FnOnce(&mut SteWord3)) -> [u64; 8] {
        with(w, 3, |x| {
            let mut s = SteWord3::from(x);
            f(&mut s);
            u64::from(s)
        })
    }

    // ------------------------------------------------------------ layouts

    #[test]
    fn layouts_match_the_architected_bit_positions() {
        assert_eq!(word0(|w| w.set_v(true)), 1);
        assert_eq!(word0(|w| w.set_config(Config::Bypass)), 0b1000);
        assert_eq!(word0(|w| w.set_s1_fmt(S1FmtField::TwoLevel64K)), 2 << 4);
        assert_eq!(word0(|w| w.set_s1_context_ptr(u50::new((1 << 50) - 1))), 0x00ff_ffff_ffff_ffc0);
        assert_eq!(word0(|w| w.set_s1_cd_max(u5::new(20))), 20 << 59);
        assert_eq!(word1(|w| w.set_s1_stalld(true)), 1 << 27);
        assert_eq!(word1(|w| w.set_eats(EatsField::Full)), 1 << 28);
        assert_eq!(word1(|w| w.set_strw(u2::new(2))), 2 << 30);
        assert_eq!(word1(|w| w.set_shcfg(u2::new(1))), 1 << 44);
        assert_eq!(word1(|w| w.set_mev(true)), 1 << 19);
        assert_eq!(word1(|w| w.set_cont(u4::new(0xf))), 0xf << 13);
        assert_eq!(word2(|w| w.set_s2_vmid(0xabcd)), 0xabcd);
        assert_eq!(word2(|w| w.set_s2_t0sz(u6::new(0x3f))), 0x3f << 32);
        assert_eq!(word2(|w| w.set_s2_tg(Tg0::Reserved)), 3 << 46);
        assert_eq!(word2(|w| w.set_s2_ps(PaSize::Reserved)), 7 << 48);
        assert_eq!(word2(|w| w.set_s2_aa64(true)), 1 << 51);
        assert_eq!(word2(|w| w.set_s2_endi(true)), 1 << 52);
        assert_eq!(word2(|w| w.set_s2_ptw(true)), 1 << 54);
        assert_eq!(word2(|w| w.set_s2_s(true)), 1 << 57);
        assert_eq!(word2(|w| w.set_s2_r(true)), 1 << 58);
        assert_eq!(word3(|w| w.set_s2_ttb(u52::new((1 << 52) - 1))), 0x00ff_ffff_ffff_fff0);
        assert_eq!(word3(|w| w.set_s2_ds(true)), 1 << 3);
    }

    // ------------------------------------------------------------ Linux's STEs

    #[test]
    fn linux_abort_and_bypass_stes() {
        let abort = [word0(|w| w.set_v(true)), 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode(abort, &qemu()), Ok(StreamConfig::Abort));
        let bypass = [word0(|w| {
            w.set_v(true);
            w.set_config(Config::Bypass);
        }), word1(|w| w.set_shcfg(u2::new(1))), 0, 0, 0, 0, 0, 0];
        let want = Overrides { shcfg: 1, ..Overrides::default() };
        assert_eq!(decode(bypass, &qemu()), Ok(StreamConfig::Bypass(want)));
        assert_eq!(decode(bypass, &qemu().strict()), Ok(StreamConfig::Bypass(want)));
    }

    #[test]
    fn abort_and_bypass_check_nothing_else() {
        // Garbage everywhere but V/Config: still abort / bypass.
        for cfg in [Config::Abort, Config::Reserved1, Config::Reserved2, Config::Reserved3] {
            let w = [word0(|w| {
                *w = SteWord0::from(u64::MAX);
                w.set_config(cfg);
            }), u64::MAX, u64::MAX, u64::MAX, 0, 0, 0, 0];
            assert_eq!(decode(w, &qemu().strict()), Ok(StreamConfig::Abort), "{cfg:?}");
        }
        let w = [word0(|w| {
            *w = SteWord0::from(u64::MAX);
            w.set_config(Config::Bypass);
        }), 0, u64::MAX, u64::MAX, 0, 0, 0, 0];
        assert!(matches!(decode(w, &ste_caps(false, false)), Ok(StreamConfig::Bypass(_))));
    }

    #[test]
    fn invalid_ste_is_bad_ste_even_if_otherwise_fine() {
        let w = set0(linux_s1_ste(0x4000_0000), |w| w.set_v(false));
        assert_eq!(decode(w, &qemu()), Err(SteError::Invalid));
        assert_eq!(SteError::Invalid.event(), crate::stream::ConfigEvent::BadSte);
    }

    #[test]
    fn linux_stage1_ste() {
        let t = translate(decode(linux_s1_ste(0x8_1234_5680), &ste_caps(true, false)));
        let s1 = t.s1.unwrap();
        assert_eq!(s1.context_ptr, 0x8_1234_5680);
        assert_eq!(s1.fmt, CdTableFormat::Single);
        assert_eq!(s1.cd_max, 0);
        assert_eq!(s1.attrs, TableAttrs { inner: 1, outer: 1, sh: 3 });
        assert!(t.s2.is_none());
        assert_eq!(t.vmid, None, "no VMID without stage 2");
        assert_eq!(t.eats, Eats::Abort);
        // On a nesting-capable SMMU the VMID field tags S1 translations.
        let t = translate(decode(linux_s1_ste(0x8_1234_5680), &qemu()));
        assert_eq!(t.vmid, Some(0));
    }

    #[test]
    fn linux_stage2_ste_4k() {
        let t = translate(decode(linux_s2_ste(5, 0x4_0000_0000, Granule::Size4K), &qemu()));
        assert!(t.s1.is_none());
        assert_eq!(t.vmid, Some(5));
        let s2 = t.s2.unwrap();
        assert_eq!(s2.config.vttb, 0x4_0000_0000);
        assert_eq!(s2.config.t0sz, 20);
        assert_eq!(s2.config.sl0, 2);
        assert_eq!(s2.config.granule, Granule::Size4K);
        assert_eq!(s2.tables.start_level(), 0);
        assert_eq!(s2.tables.ia_bits(), 44);
        assert!(s2.record && !s2.stall && !s2.ptw);
        assert_eq!(s2.attrs, TableAttrs { inner: 1, outer: 1, sh: 3 });
        assert_eq!(t.overrides.shcfg, 1);
    }

    #[test]
    fn linux_stage2_ste_64k_and_16k() {
        let t = translate(decode(linux_s2_ste(1, 0x1_0000, Granule::Size64K), &qemu()));
        let s2 = t.s2.unwrap();
        assert_eq!(s2.tables.start_level(), 1);
        assert_eq!(s2.config.sl0, 2);
        assert_eq!(s2.tables.concatenated(), 1);
        let t = translate(decode(linux_s2_ste(1, 0x4000, Granule::Size16K), &qemu()));
        let s2 = t.s2.unwrap();
        // 44 bits with 16K: 30 bits in 3 levels of 11, a level-1 root of 256 entries.
        assert_eq!(s2.tables.start_level(), 1);
        assert_eq!(s2.tables.ia_bits(), 44);
    }

    #[test]
    fn linux_nested_ste_decodes() {
        let t = translate(decode(linux_nested_ste(0x1000, 9, 0x8000_0000), &qemu()));
        assert_eq!(t.s1.unwrap().context_ptr, 0x1000);
        let s2 = t.s2.unwrap();
        assert!(s2.ptw);
        assert_eq!(t.vmid, Some(9));
        assert_eq!(decode(linux_nested_ste(0x1000, 9, 0x8000_0000), &qemu().strict()), Ok(StreamConfig::Translate(t)));
    }

    // ------------------------------------------------------------ unsupported stages

    #[test]
    fn stages_the_smmu_lacks_are_bad_ste() {
        assert_eq!(decode(linux_s1_ste(0x1000), &ste_caps(false, true)), Err(SteError::Stage1Unsupported));
        let s2 = linux_s2_ste(1, 0x1000, Granule::Size4K);
        assert_eq!(decode(s2, &ste_caps(true, false)), Err(SteError::Stage2Unsupported));
        let nested = linux_nested_ste(0x1000, 1, 0x1000);
        assert_eq!(decode(nested, &ste_caps(true, false)), Err(SteError::Stage2Unsupported));
        assert_eq!(decode(nested, &ste_caps(false, true)), Err(SteError::Stage1Unsupported));
    }

    // ------------------------------------------------------------ stage 2 illegal fields

    fn s2() -> [u64; 8] {
        linux_s2_ste(1, 0x4_0000_0000, Granule::Size4K)
    }

    #[test]
    fn aarch32_stage2_is_bad_ste_not_an_abort() {
        let w = set2(s2(), |w| w.set_s2_aa64(false));
        assert_eq!(decode(w, &qemu()), Err(SteError::S2NotAArch64));
        assert_eq!(decode(w, &qemu().strict()), Err(SteError::S2NotAArch64));
    }

    #[test]
    fn s2_granule_reserved_or_unsupported() {
        let w = set2(s2(), |w| w.set_s2_tg(Tg0::Reserved));
        assert_eq!(decode(w, &qemu()), Err(SteError::S2GranuleReserved));
        let caps = SteCaps { granules: Granules { k16: false, ..Granules::ALL }, ..qemu() };
        let w = linux_s2_ste(1, 0x4000, Granule::Size16K);
        assert_eq!(decode(w, &caps), Err(SteError::S2GranuleUnsupported));
    }

    #[test]
    fn s2_start_level_checks() {
        // SL0 = 3 with 4K: level 3 needs STT, which QEMU lacks.
        let w = set2(s2(), |w| w.set_s2_sl0(u2::new(3)));
        assert_eq!(decode(w, &qemu()), Err(SteError::S2Tables(ConfigError::BadStartLevel)));
        // Level 2 start for a 44-bit IPA needs 2^(44-30) tables: too many.
        let w = set2(s2(), |w| w.set_s2_sl0(u2::new(0)));
        assert_eq!(decode(w, &qemu()), Err(SteError::S2Tables(ConfigError::BadStartLevel)));
        // A 40-bit IPA from level 1: two concatenated tables, fine.
        let w = set2(s2(), |w| {
            w.set_s2_t0sz(u6::new(24));
            w.set_s2_sl0(u2::new(1));
        });
        let t = translate(decode(w, &qemu()));
        assert_eq!(t.s2.unwrap().tables.concatenated(), 2);
        // Too shallow: 25-bit IPA starting at level 0 (the C device walks
        // it; the architecture and we do not).
        let w = set2(s2(), |w| {
            w.set_s2_t0sz(u6::new(39));
            w.set_s2_sl0(u2::new(2));
        });
        assert_eq!(decode(w, &qemu()), Err(SteError::S2Tables(ConfigError::BadStartLevel)));
    }

    #[test]
    fn s2_t0sz_bounds() {
        let w = set2(s2(), |w| {
            w.set_s2_t0sz(u6::new(40));
            w.set_s2_sl0(u2::new(0));
        });
        assert_eq!(decode(w, &qemu()), Err(SteError::S2Tables(ConfigError::TszOutOfRange)));
        // Below 64 - OAS.
        let w = set2(s2(), |w| w.set_s2_t0sz(u6::new(19)));
        assert!(decode(w, &qemu()).is_err());
        assert!(decode(w, &qemu().strict()).is_err());
        // S2PS 40 bits, 44-bit IPA: the C device refuses, the architecture
        // does not (output range and IPA range are separate).
        let w = set2(s2(), |w| w.set_s2_ps(PaSize::Bits40));
        assert_eq!(decode(w, &qemu()), Err(SteError::S2T0szBeyondPs));
        assert!(decode(w, &qemu().strict()).is_ok());
    }

    #[test]
    fn s2ttb_range() {
        // Bit 44 with S2PS 44.
        let w = set3(s2(), |w| w.set_s2_ttb(u52::new(1 << 40)));
        assert_eq!(decode(w, &qemu()), Err(SteError::S2TtbOutOfRange));
        // S2PS 32 bits and a table at 4 GiB.
        let w = set2(set3(s2(), |w| w.set_s2_ttb(u52::new(0x1_0000_0000 >> 4))), |w| {
            w.set_s2_ps(PaSize::Bits32);
            w.set_s2_t0sz(u6::new(32));
            w.set_s2_sl0(u2::new(1));
        });
        assert_eq!(decode(w, &qemu()), Err(SteError::S2TtbOutOfRange));
        // S2PS 0b111 behaves as the OAS: no assertion, no refusal.
        let w = set2(s2(), |w| w.set_s2_ps(PaSize::Reserved));
        assert!(decode(w, &qemu()).is_ok());
        // Bits 51:48: dropped by the C device, refused by the architecture.
        let w = set3(s2(), |w| w.set_s2_ttb(u52::new((1 << 44) | (0x4_0000_0000 >> 4))));
        let t = translate(decode(w, &qemu()));
        assert_eq!(t.s2.unwrap().config.vttb, 0x4_0000_0000);
        assert_eq!(decode(w, &qemu().strict()), Err(SteError::S2TtbOutOfRange));
    }

    #[test]
    fn s2_endianness_and_stalls() {
        let w = set2(s2(), |w| w.set_s2_endi(true));
        assert_eq!(decode(w, &qemu()), Err(SteError::S2BigEndian));
        let w = set2(s2(), |w| w.set_s2_s(true));
        assert_eq!(decode(w, &qemu()), Err(SteError::S2Stall));
        assert_eq!(decode(w, &qemu().strict()), Err(SteError::S2Stall));
        let stalling = SteCaps { stall_model: StallModel::StallAndTerminate, ..qemu() };
        assert!(translate(decode(w, &stalling)).s2.unwrap().stall);
        let forced = SteCaps { stall_model: StallModel::StallForced, ..qemu() };
        assert_eq!(decode(s2(), &forced), Err(SteError::S2Stall));
    }

    #[test]
    fn s2_httu_fields() {
        let w = set2(s2(), |w| {
            w.set_s2_ha(true);
            w.set_s2_hd(true);
        });
        let t = translate(decode(w, &qemu()));
        assert!(!t.s2.unwrap().config.ha && !t.s2.unwrap().config.hd, "ignored without HTTU");
        assert_eq!(decode(w, &qemu().strict()), Err(SteError::S2Httu));
        let af = SteCaps { httu: Httu::AccessFlag, ..qemu().strict() };
        assert_eq!(decode(w, &af), Err(SteError::S2Httu));
        let w_ha = set2(s2(), |w| w.set_s2_ha(true));
        assert!(translate(decode(w_ha, &af)).s2.unwrap().config.ha);
        let dirty = SteCaps { httu: Httu::Dirty, ..qemu().strict() };
        let c = translate(decode(w, &dirty)).s2.unwrap().config;
        assert!(c.ha && c.hd);
    }

    #[test]
    fn s2_ds_only_with_lpa2() {
        let w = set3(s2(), |w| w.set_s2_ds(true));
        assert!(!translate(decode(w, &qemu())).s2.unwrap().config.ds, "RES0 without IDR5.DS");
        let lpa2 = SteCaps { ds: true, oas_bits: 52, ..qemu() };
        assert!(translate(decode(w, &lpa2)).s2.unwrap().config.ds);
        let w = set3(w, |w| w.set_s2_sl0_2(true));
        assert_eq!(decode(w, &lpa2), Err(SteError::S2Tables(ConfigError::BadStartLevel)));
    }

    // ------------------------------------------------------------ stage 1 illegal fields

    #[test]
    fn s1cdmax_without_substreams() {
        let w = set0(linux_s1_ste(0x1000), |w| w.set_s1_cd_max(u5::new(1)));
        assert_eq!(decode(w, &qemu()), Err(SteError::SubstreamsUnsupported));
        // The architecture ignores it: one CD.
        let t = translate(decode(w, &qemu().strict()));
        assert_eq!(t.s1.unwrap().fmt, CdTableFormat::Single);
        // The C device checks it on a stage-2-only STE too.
        let w = set0(s2(), |w| w.set_s1_cd_max(u5::new(3)));
        assert_eq!(decode(w, &qemu()), Err(SteError::SubstreamsUnsupported));
        assert!(decode(w, &qemu().strict()).is_ok());
    }

    #[test]
    fn s1cdmax_with_substreams() {
        let caps = SteCaps { ssid_bits: 20, two_level_cd: true, ..qemu() };
        for strict in [false, true] {
            let caps = SteCaps { strict, ..caps };
            let w = set0(linux_s1_ste(0x10_0000), |w| {
                w.set_s1_cd_max(u5::new(20));
                w.set_s1_fmt(S1FmtField::TwoLevel64K);
            });
            let s1 = translate(decode(w, &caps)).s1.unwrap();
            assert_eq!((s1.cd_max, s1.fmt, s1.dss), (20, CdTableFormat::TwoLevel64K, S1Dss::Substream0));
            let w = set0(w, |w| w.set_s1_cd_max(u5::new(21)));
            assert_eq!(decode(w, &caps), Err(SteError::CdMaxTooLarge));
        }
        // Reserved S1Fmt behaves as linear; reserved S1DSS as terminate.
        let w = set1(set0(linux_s1_ste(0x10_0000), |w| {
            w.set_s1_cd_max(u5::new(4));
            w.set_s1_fmt(S1FmtField::Reserved);
        }), |w| w.set_s1_dss(S1DssField::Reserved));
        let s1 = translate(decode(w, &caps)).s1.unwrap();
        assert_eq!((s1.fmt, s1.dss), (CdTableFormat::Linear, S1Dss::Terminate));
    }

    #[test]
    fn two_level_cd_without_cd2l() {
        let caps = SteCaps { ssid_bits: 20, ..qemu() };
        let w = set0(linux_s1_ste(0x10_0000), |w| {
            w.set_s1_cd_max(u5::new(8));
            w.set_s1_fmt(S1FmtField::TwoLevel4K);
        });
        assert_eq!(translate(decode(w, &caps)).s1.unwrap().fmt, CdTableFormat::TwoLevel4K);
        assert_eq!(decode(w, &caps.strict()), Err(SteError::TwoLevelCdUnsupported));
    }

    #[test]
    fn s1stalld() {
        let w = set1(linux_s1_ste(0x1000), |w| w.set_s1_stalld(true));
        assert_eq!(decode(w, &qemu()), Err(SteError::S1StallDisable));
        assert_eq!(decode(w, &qemu().strict()), Err(SteError::S1StallDisable));
        let stalling = SteCaps { stall_model: StallModel::StallAndTerminate, ..qemu() };
        assert!(translate(decode(w, &stalling)).s1.unwrap().stall_disabled);
        // On a stage-2-only STE: refused by the C device only.
        let w = set1(s2(), |w| w.set_s1_stalld(true));
        assert_eq!(decode(w, &qemu()), Err(SteError::S1StallDisable));
        assert!(decode(w, &qemu().strict()).is_ok());
    }

    #[test]
    fn context_pointer_range() {
        // Bit 44 set with a 44-bit OAS.
        let w = linux_s1_ste(1 << 44);
        assert_eq!(translate(decode(w, &qemu())).s1.unwrap().context_ptr, 1 << 44);
        assert_eq!(decode(w, &qemu().strict()), Err(SteError::ContextPtrOutOfRange));
        // Bits 55:48 are not part of the C device's pointer.
        let w = linux_s1_ste((0x55 << 48) | 0x1000);
        assert_eq!(translate(decode(w, &qemu())).s1.unwrap().context_ptr, 0x1000);
        assert_eq!(decode(w, &qemu().strict()), Err(SteError::ContextPtrOutOfRange));
    }

    #[test]
    fn eight_bit_vmids() {
        let caps = SteCaps { vmid16: false, ..qemu() };
        let w = linux_s2_ste(0x100, 0x1000, Granule::Size4K);
        assert_eq!(translate(decode(w, &caps)).vmid, Some(0x100));
        assert_eq!(decode(w, &caps.strict()), Err(SteError::Vmid16));
        assert!(decode(linux_s2_ste(0xff, 0x1000, Granule::Size4K), &caps.strict()).is_ok());
    }

    #[test]
    fn eats() {
        let ats = SteCaps { ats: true, ..qemu() };
        let full = set1(linux_s1_ste(0x1000), |w| w.set_eats(EatsField::Full));
        assert_eq!(translate(decode(full, &ats)).eats, Eats::Full);
        assert_eq!(translate(decode(full, &qemu())).eats, Eats::Abort, "no ATS: IGNORED");
        let split = set1(linux_s1_ste(0x1000), |w| w.set_eats(EatsField::SplitStage));
        // With ATS the architecture's rules apply, strict or not (the C
        // device has no ATS to be compatible with).
        assert_eq!(decode(split, &ats), Err(SteError::Eats));
        assert_eq!(decode(split, &ats.strict()), Err(SteError::Eats));
        let nested_split = set1(linux_nested_ste(0x1000, 1, 0x1000), |w| w.set_eats(EatsField::SplitStage));
        assert_eq!(translate(decode(nested_split, &ats)).eats, Eats::SplitStage);
        assert_eq!(translate(decode(nested_split, &ats.strict())).eats, Eats::SplitStage);
        let ns1ats = SteCaps { ns1ats: true, ..ats.strict() };
        assert_eq!(decode(nested_split, &ns1ats), Err(SteError::Eats));
        let dpt = set1(linux_s1_ste(0x1000), |w| w.set_eats(EatsField::FullDpt));
        assert_eq!(translate(decode(dpt, &ats.strict())).eats, Eats::Abort);
        let stalling = SteCaps { stall_model: StallModel::StallAndTerminate, ..ats.strict() };
        let s2_full = set2(set1(s2(), |w| w.set_eats(EatsField::Full)), |w| w.set_s2_s(true));
        assert_eq!(decode(s2_full, &stalling), Err(SteError::Eats));
    }

    // ------------------------------------------------------------ robustness

    /// Random words biased towards valid translating STEs.
    fn random_ste(rng: &mut Rng) -> [u64; 8] {
        let mut w = [0u64; 8];
        for x in w.iter_mut() {
            *x = rng.next();
        }
        if rng.next() & 1 == 0 {
            w[0] |= 1 | (4 << 1);
            w[2] |= 1 << 51;
        }
        w
    }

    pub(crate) fn caps_variants() -> Vec<SteCaps> {
        let q = ste_caps(true, true);
        let rich = SteCaps {
            ssid_bits: 20,
            two_level_cd: true,
            ats: true,
            httu: Httu::Dirty,
            stall_model: StallModel::StallAndTerminate,
            oas_bits: 52,
            small_tables: true,
            va52: true,
            ds: true,
            vmid16: false,
            asid16: false,
            ..q
        };
        let odd = SteCaps { oas_bits: 0, sid_bits: 40, ssid_bits: 31, granules: Granules { k4: false, k16: true, k64: false }, ..rich };
        vec![q, q.strict(), rich, rich.strict(), odd, odd.strict(), ste_caps(false, false)]
    }

    #[test]
    fn random_words_never_panic() {
        let mut rng = Rng(0x5eed_0001);
        let caps = caps_variants();
        let mut accepted = 0;
        for _ in 0..20_000 {
            let w = random_ste(&mut rng);
            for c in &caps {
                if let Ok(StreamConfig::Translate(_)) = decode(w, c) {
                    accepted += 1;
                }
            }
        }
        assert!(accepted > 0, "the generator should reach translating STEs");
    }
}
