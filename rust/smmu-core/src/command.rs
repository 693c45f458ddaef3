//! Command queue entries (IHI 0070 chapter 4): their layouts, a decoder
//! that checks them against what the SMMU advertises, and the address
//! arithmetic of the range invalidations.
//!
//! Conventions:
//! * a command is the two little-endian quadwords the guest wrote, `words[0]`
//!   holding bits 63:0 and `words[1]` bits 127:64;
//! * [`decode`] returns a typed [`Command`] or the reason the command
//!   stops the queue ([`CommandError`], whose
//!   [`code`](CommandError::code) is the `CMDQ_CONS.ERR` value,
//!   [`CmdqError`]); it never panics, whatever the words;
//! * RES0 fields are ignored, never reported (the architecture permits both);
//! * address ranges are inclusive (`first..=last`);
//! * what the SMMU advertises comes from its configuration
//!   ([`Config::command_caps`](crate::config::Config::command_caps));
//!   [`CommandCaps::c_compatible`] (the default) reproduces the choices of
//!   QEMU 10.2.2's C device where it accepts or rejects a command unlike the
//!   architecture; each such choice is listed on [`CommandCaps`];
//! * granules are the walker's [`Granule`]s; a TLBI's TG field encodes them
//!   unlike CD.TG0 ([`tlbi_granule`]).
//!
//! Field positions follow Linux's `CMDQ_*` definitions (`arm-smmu-v3.h`)
//! and the tables of IHI 0070 §4. Two layouts rest on the figures alone,
//! which the text copy of the specification at hand lacks, and are marked
//! "placement unverified": CMD_PREFETCH_ADDR's Size/Stride/NS and
//! CMD_CFGI_VMS_PIDM's VMID. Neither has an effect in the models here.
//!
//! Decoding only classifies: what a command does to the caches, the
//! interrupt lines or a host IOMMU is the caller's business.
//! [`Command::to_iommufd`] gives the commands a vIOMMU forwards to a host
//! SMMUv3 through iommufd, re-encoded with every reserved bit clear.

use bilge::prelude::*;
use iommu_core::nesting::iommufd::Invalidation;
use iommu_core::translation::vmsa::Granule;

use crate::config::Config;
use crate::registers::CmdqError;

pub use layout::{Opcode, PriResponse, SyncCs};

// ---------------------------------------------------------------- layouts

/// Architected command layouts (IHI 0070 §4.2 to §4.7). A module of its own
/// only because the constructors bilge generates carry no documentation;
/// every field is documented by hand.
#[allow(missing_docs)]
pub mod layout {
    use bilge::prelude::*;

    /// The command opcode, bits 7:0 of every command.
    #[bitsize(8)]
    #[derive(FromBits, Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[repr(u8)]
    pub enum Opcode {
        /// 0x01 CMD_PREFETCH_CONFIG.
        PrefetchConfig = 0x01,
        /// 0x02 CMD_PREFETCH_ADDR.
        PrefetchAddr = 0x02,
        /// 0x03 CMD_CFGI_STE.
        CfgiSte = 0x03,
        /// 0x04 CMD_CFGI_STE_RANGE (CMD_CFGI_ALL is Range 31).
        CfgiSteRange = 0x04,
        /// 0x05 CMD_CFGI_CD.
        CfgiCd = 0x05,
        /// 0x06 CMD_CFGI_CD_ALL.
        CfgiCdAll = 0x06,
        /// 0x07 CMD_CFGI_VMS_PIDM (QEMU's enum calls it CFGI_ALL).
        CfgiVmsPidm = 0x07,
        /// 0x10 CMD_TLBI_NH_ALL.
        TlbiNhAll = 0x10,
        /// 0x11 CMD_TLBI_NH_ASID.
        TlbiNhAsid = 0x11,
        /// 0x12 CMD_TLBI_NH_VA.
        TlbiNhVa = 0x12,
        /// 0x13 CMD_TLBI_NH_VAA.
        TlbiNhVaa = 0x13,
        /// 0x18 CMD_TLBI_EL3_ALL.
        TlbiEl3All = 0x18,
        /// 0x1A CMD_TLBI_EL3_VA.
        TlbiEl3Va = 0x1a,
        /// 0x20 CMD_TLBI_EL2_ALL.
        TlbiEl2All = 0x20,
        /// 0x21 CMD_TLBI_EL2_ASID.
        TlbiEl2Asid = 0x21,
        /// 0x22 CMD_TLBI_EL2_VA.
        TlbiEl2Va = 0x22,
        /// 0x23 CMD_TLBI_EL2_VAA.
        TlbiEl2Vaa = 0x23,
        /// 0x28 CMD_TLBI_S12_VMALL.
        TlbiS12Vmall = 0x28,
        /// 0x2A CMD_TLBI_S2_IPA.
        TlbiS2Ipa = 0x2a,
        /// 0x30 CMD_TLBI_NSNH_ALL.
        TlbiNsnhAll = 0x30,
        /// 0x40 CMD_ATC_INV.
        AtcInv = 0x40,
        /// 0x41 CMD_PRI_RESP.
        PriResp = 0x41,
        /// 0x44 CMD_RESUME.
        Resume = 0x44,
        /// 0x45 CMD_STALL_TERM.
        StallTerm = 0x45,
        /// 0x46 CMD_SYNC.
        Sync = 0x46,
        /// Any other value: reserved, Secure-only, DPT or IMPLEMENTATION
        /// DEFINED opcodes, none of which a Non-secure queue accepts here.
        #[fallback]
        Other(u8),
    }

    /// Bits 7:0 of any command, the rest left alone.
    #[bitsize(128)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct CmdHeader {
        /// Bits 7:0: opcode.
        #[inline]
        pub opcode: Opcode,
        #[inline]
        reserved: u120,
    }

    /// Commands naming a stream: PREFETCH_CONFIG, CFGI_STE, CFGI_CD,
    /// CFGI_CD_ALL, STALL_TERM (each uses the subset it defines).
    #[bitsize(128)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct CmdStream {
        /// Bits 7:0: opcode.
        #[inline]
        pub opcode: u8,
        #[inline]
        reserved: u2,
        /// Bit 10: SSec, the StreamID is Secure (ILLEGAL on this queue).
        #[inline]
        pub ssec: bool,
        /// Bit 11: SSV, SubstreamID valid (PREFETCH_CONFIG).
        #[inline]
        pub ssv: bool,
        /// Bits 31:12: SubstreamID (PREFETCH_CONFIG, CFGI_CD).
        #[inline]
        pub ssid: u20,
        /// Bits 63:32: StreamID.
        #[inline]
        pub sid: u32,
        /// Bit 64: Leaf (CFGI_STE, CFGI_CD).
        #[inline]
        pub leaf: bool,
        #[inline]
        reserved: u63,
    }

    /// CMD_PREFETCH_ADDR (Size, Stride, NS: placement unverified).
    #[bitsize(128)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct CmdPrefetchAddr {
        /// Bits 7:0: opcode (0x02).
        #[inline]
        pub opcode: u8,
        #[inline]
        reserved: u2,
        /// Bit 10: SSec.
        #[inline]
        pub ssec: bool,
        /// Bit 11: SSV.
        #[inline]
        pub ssv: bool,
        /// Bits 31:12: SubstreamID.
        #[inline]
        pub ssid: u20,
        /// Bits 63:32: StreamID.
        #[inline]
        pub sid: u32,
        /// Bits 68:64: Size, 2^Size translations.
        #[inline]
        pub size: u5,
        /// Bits 73:69: Stride, 2^(12+Stride) bytes apart.
        #[inline]
        pub stride: u5,
        #[inline]
        reserved: bool,
        /// Bit 75: NS (Secure queue only; RES0 here).
        #[inline]
        pub ns: bool,
        /// Bits 119:76: Addr\[55:12\].
        #[inline]
        pub addr_55_12: u44,
        /// Bits 127:120: Addr\[63:56\].
        #[inline]
        pub addr_63_56: u8,
    }

    /// CMD_CFGI_STE_RANGE and CMD_CFGI_ALL.
    #[bitsize(128)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct CmdCfgiRange {
        /// Bits 7:0: opcode (0x04).
        #[inline]
        pub opcode: u8,
        #[inline]
        reserved: u2,
        /// Bit 10: SSec.
        #[inline]
        pub ssec: bool,
        #[inline]
        reserved: u21,
        /// Bits 63:32: StreamID.
        #[inline]
        pub sid: u32,
        /// Bits 68:64: Range, 2^(Range+1) StreamIDs.
        #[inline]
        pub range: u5,
        #[inline]
        reserved: u59,
    }

    /// CMD_CFGI_VMS_PIDM (VMID placement unverified; taken where the TLBI
    /// commands have it).
    #[bitsize(128)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct CmdVmsPidm {
        /// Bits 7:0: opcode (0x07).
        #[inline]
        pub opcode: u8,
        #[inline]
        reserved: u2,
        /// Bit 10: SSec.
        #[inline]
        pub ssec: bool,
        #[inline]
        reserved: u21,
        /// Bits 47:32: VMID.
        #[inline]
        pub vmid: u16,
        #[inline]
        reserved: u16,
        #[inline]
        reserved: u64,
    }

    /// The TLB invalidations (CMD_TLBI_*): each uses the subset it defines.
    #[bitsize(128)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct CmdTlbi {
        /// Bits 7:0: opcode.
        #[inline]
        pub opcode: u8,
        #[inline]
        reserved: u4,
        /// Bits 16:12: NUM, range multiplier minus one.
        #[inline]
        pub num: u5,
        #[inline]
        reserved: u3,
        /// Bits 24:20: SCALE bits 4:0.
        #[inline]
        pub scale: u5,
        /// Bit 25: SCALE bit 5 (only with SMMU_IDR5.DS; RES0 otherwise).
        #[inline]
        pub scale_ds: bool,
        #[inline]
        reserved: u6,
        /// Bits 47:32: VMID.
        #[inline]
        pub vmid: u16,
        /// Bits 63:48: ASID.
        #[inline]
        pub asid: u16,
        /// Bit 64: Leaf, only last-level entries.
        #[inline]
        pub leaf: bool,
        #[inline]
        reserved: u6,
        /// Bit 71: TTL128, the TTL hint is for 128-bit descriptors.
        #[inline]
        pub ttl128: bool,
        /// Bits 73:72: TTL, level hint.
        #[inline]
        pub ttl: u2,
        /// Bits 75:74: TG, granule of the entries (0: any, no range).
        #[inline]
        pub tg: u2,
        /// Bits 119:76: Address\[55:12\] (VA or IPA).
        #[inline]
        pub addr_55_12: u44,
        /// Bits 127:120: Address\[63:56\] (VA only; RES0 for an IPA).
        #[inline]
        pub addr_63_56: u8,
    }

    /// CMD_ATC_INV.
    #[bitsize(128)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct CmdAtcInv {
        /// Bits 7:0: opcode (0x40).
        #[inline]
        pub opcode: u8,
        #[inline]
        reserved: bool,
        /// Bit 9: Global (with SSV).
        #[inline]
        pub global: bool,
        #[inline]
        reserved: bool,
        /// Bit 11: SSV.
        #[inline]
        pub ssv: bool,
        /// Bits 31:12: SubstreamID.
        #[inline]
        pub ssid: u20,
        /// Bits 63:32: StreamID.
        #[inline]
        pub sid: u32,
        /// Bits 69:64: Size, a span of 4 KiB << Size.
        #[inline]
        pub size: u6,
        #[inline]
        reserved: u6,
        /// Bits 119:76: Address\[55:12\].
        #[inline]
        pub addr_55_12: u44,
        /// Bits 127:120: Address\[63:56\].
        #[inline]
        pub addr_63_56: u8,
    }

    /// The Resp field of CMD_PRI_RESP.
    #[bitsize(2)]
    #[derive(FromBits, Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum PriResponse {
        /// 0b00: ResponseFailure.
        Failure = 0,
        /// 0b01: InvalidRequest.
        InvalidRequest = 1,
        /// 0b10: Success.
        Success = 2,
        /// 0b11: reserved, ILLEGAL.
        Reserved = 3,
    }

    /// CMD_PRI_RESP.
    #[bitsize(128)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct CmdPriResp {
        /// Bits 7:0: opcode (0x41).
        #[inline]
        pub opcode: u8,
        #[inline]
        reserved: u3,
        /// Bit 11: SSV.
        #[inline]
        pub ssv: bool,
        /// Bits 31:12: SubstreamID.
        #[inline]
        pub ssid: u20,
        /// Bits 63:32: StreamID.
        #[inline]
        pub sid: u32,
        /// Bits 72:64: PRGIndex.
        #[inline]
        pub prg_index: u9,
        #[inline]
        reserved: u3,
        /// Bits 77:76: Resp.
        #[inline]
        pub resp: PriResponse,
        #[inline]
        reserved: u50,
    }

    /// CMD_RESUME.
    #[bitsize(128)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct CmdResume {
        /// Bits 7:0: opcode (0x44).
        #[inline]
        pub opcode: u8,
        #[inline]
        reserved: u2,
        /// Bit 10: SSec.
        #[inline]
        pub ssec: bool,
        #[inline]
        reserved: bool,
        /// Bit 12: Ac, retry (1) or terminate (0).
        #[inline]
        pub retry: bool,
        /// Bit 13: Ab, terminate with an abort (1) or RAZ/WI (0).
        #[inline]
        pub abort: bool,
        #[inline]
        reserved: u18,
        /// Bits 63:32: StreamID.
        #[inline]
        pub sid: u32,
        /// Bits 79:64: STAG.
        #[inline]
        pub stag: u16,
        #[inline]
        reserved: u48,
    }

    /// The ComplSignal (CS) field of CMD_SYNC.
    #[bitsize(2)]
    #[derive(FromBits, Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum SyncCs {
        /// 0b00: SIG_NONE.
        None = 0,
        /// 0b01: SIG_IRQ.
        Irq = 1,
        /// 0b10: SIG_SEV.
        Sev = 2,
        /// 0b11: reserved, ILLEGAL.
        Reserved = 3,
    }

    /// CMD_SYNC.
    #[bitsize(128)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct CmdSync {
        /// Bits 7:0: opcode (0x46).
        #[inline]
        pub opcode: u8,
        #[inline]
        reserved: u4,
        /// Bits 13:12: CS, the completion signal.
        #[inline]
        pub cs: SyncCs,
        #[inline]
        reserved: u8,
        /// Bits 23:22: MSH, shareability of the MSI write.
        #[inline]
        pub msh: u2,
        /// Bits 27:24: MSIAttr, memory type of the MSI write.
        #[inline]
        pub msi_attr: u4,
        #[inline]
        reserved: u4,
        /// Bits 63:32: MSIData.
        #[inline]
        pub msi_data: u32,
        #[inline]
        reserved: u2,
        /// Bits 75:66: MSIAddress\[11:2\].
        #[inline]
        pub msi_addr_11_2: u10,
        /// Bits 119:76: MSIAddress\[55:12\].
        #[inline]
        pub msi_addr_55_12: u44,
        #[inline]
        reserved: u8,
    }

    /// How a command's address fields map onto a 64-bit address: bits
    /// 11:2 (MSIAddress only), 55:12 (every address) and 63:56 (VAs).
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct CmdAddr {
        #[inline]
        reserved: u2,
        /// Bits 11:2.
        #[inline]
        pub bits_11_2: u10,
        /// Bits 55:12.
        #[inline]
        pub bits_55_12: u44,
        /// Bits 63:56.
        #[inline]
        pub bits_63_56: u8,
    }

    /// A command as its two quadwords.
    #[bitsize(128)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct CmdWords {
        /// Bits 63:0.
        #[inline]
        pub lo: u64,
        /// Bits 127:64.
        #[inline]
        pub hi: u64,
    }
}

use layout::{
    CmdAddr, CmdAtcInv, CmdCfgiRange, CmdHeader, CmdPrefetchAddr, CmdPriResp, CmdResume, CmdStream, CmdSync, CmdTlbi,
    CmdVmsPidm, CmdWords,
};

// ---------------------------------------------------------------- capabilities

/// What the SMMU advertises, as far as commands care, and whether QEMU
/// 10.2.2's own choices apply. A device takes them from its configuration,
/// [`Config::command_caps`] (or from its ID registers,
/// [`IdRegisters::command_caps`](crate::config::IdRegisters::command_caps)),
/// so that they are what the guest reads there.
///
/// With [`c_compatible`](CommandCaps::c_compatible) set (the default),
/// [`decode`] reproduces the C device (`smmuv3_cmdq_consume`):
/// * opcode 0x07 (CMD_CFGI_VMS_PIDM, QEMU's "CFGI_ALL") is CERROR_ILL
///   whatever [`mpam`](CommandCaps::mpam) says;
/// * SSec = 1 is CERROR_ILL only for CFGI_STE, CFGI_STE_RANGE, CFGI_CD and
///   CFGI_CD_ALL; PREFETCH_*, RESUME and STALL_TERM accept it;
/// * TLBI_EL3_* and TLBI_EL2_* are accepted (and ignored by the device)
///   although there is no Secure queue and no EL2 (IDR0.HYP = 0);
/// * ATC_INV, PRI_RESP, RESUME and STALL_TERM are accepted without ATS, PRI
///   or the stall model;
/// * CFGI_CD and CFGI_CD_ALL are accepted on a stage-2-only SMMU;
/// * CMD_SYNC with the reserved CS = 0b11 is accepted and behaves as
///   SIG_IRQ (the device tests CS bit 0);
/// * a range TLBI with TG != 0 and NUM = SCALE = TTL = 0 is accepted;
/// * range fields (NUM, SCALE, TG, TTL) are used even without
///   [`ril`](CommandCaps::ril) (QEMU always advertises RIL);
/// * TLBI_S2_IPA keeps Address\[63:56\];
/// * SubstreamIDs with SSV = 1 are reported even without substreams
///   (IDR1.SSIDSIZE = 0), where the architected mode takes SSV as 0.
///
/// Both modes reject reserved opcodes and the stage-1 (TLBI_NH_*) and
/// stage-2 (TLBI_S12_VMALL, TLBI_S2_IPA) invalidations of a stage the SMMU
/// lacks, and both ignore non-zero RES0 fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CommandCaps {
    /// IDR0.S1P: stage 1 translation.
    pub stage1: bool,
    /// IDR0.S2P: stage 2 translation.
    pub stage2: bool,
    /// IDR3.RIL: range invalidation and the TTL hint.
    pub ril: bool,
    /// IDR5.DS: SCALE has 6 bits and TTL = 1 is a level-1 hint for 16 KiB.
    pub ds: bool,
    /// IDR0.ATS.
    pub ats: bool,
    /// IDR0.PRI.
    pub pri: bool,
    /// IDR0.STALL_MODEL is 0b00 or 0b10: the stall model.
    pub stall: bool,
    /// IDR0.HYP: EL2 StreamWorlds.
    pub hyp: bool,
    /// IDR3.MPAM.
    pub mpam: bool,
    /// IDR1.SSIDSIZE: SubstreamID bits (0: no substreams).
    pub ssid_bits: u8,
    /// Reproduce QEMU 10.2.2's acceptance rules (see the type's
    /// documentation) instead of the architecture's.
    pub c_compatible: bool,
}

impl Default for CommandCaps {
    /// The C device with its `stage` property unset (stage 1 only): the
    /// capabilities of [`Config::default`].
    fn default() -> Self {
        Config::default().command_caps()
    }
}

// ---------------------------------------------------------------- errors

/// Why a command is illegal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IllegalReason {
    /// The opcode is reserved or names a command this queue never accepts
    /// (Secure-only, DPT, IMPLEMENTATION DEFINED), or QEMU rejects it (0x07).
    Opcode,
    /// SSec = 1 on the Non-secure queue.
    SecureStream,
    /// A Secure-queue-only command (TLBI_EL3_*).
    SecureOnly,
    /// A stage-1 command on an SMMU without stage 1.
    NoStage1,
    /// A stage-2 command on an SMMU without stage 2.
    NoStage2,
    /// TLBI_EL2_* without IDR0.HYP.
    NoHyp,
    /// ATC_INV without IDR0.ATS.
    NoAts,
    /// PRI_RESP without IDR0.PRI.
    NoPri,
    /// RESUME or STALL_TERM without the stall model.
    NoStall,
    /// CFGI_VMS_PIDM without IDR3.MPAM.
    NoMpam,
    /// A reserved value: CMD_SYNC CS = 0b11, PRI_RESP Resp = 0b11, or a
    /// range TLBI with TG != 0 and NUM = SCALE = TTL = 0.
    ReservedValue,
}

/// A command the SMMU could not consume: `CMDQ_CONS.ERR` gets
/// [`code`](CommandError::code) and CONS stays on the command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommandError {
    /// CERROR_ILL.
    Illegal {
        /// The command's opcode (QEMU logs "Illegal command type: %d").
        opcode: u8,
        /// Why.
        reason: IllegalReason,
    },
    /// CERROR_ABT: the command could not be read (the caller's verdict;
    /// [`decode`] never returns it).
    FetchAbort,
    /// CERROR_ATC_INV_SYNC (an SMMU with ATS only; QEMU never raises it).
    AtcInvSync,
}

impl CommandError {
    /// The `CMDQ_CONS.ERR` code
    /// ([`Registers::set_cmdq_error`](crate::registers::Registers::set_cmdq_error)
    /// stores it).
    pub const fn code(&self) -> CmdqError {
        match self {
            CommandError::Illegal { .. } => CmdqError::Ill,
            CommandError::FetchAbort => CmdqError::Abt,
            CommandError::AtcInvSync => CmdqError::AtcInvSync,
        }
    }
}

// ---------------------------------------------------------------- commands

/// The granule a TLB invalidation's TG field names: 0b01 4 KiB, 0b10
/// 16 KiB, 0b11 64 KiB (not CD.TG0's encoding); `None` for 0b00, the
/// non-range form. Only the two low bits of `tg` count.
pub const fn tlbi_granule(tg: u8) -> Option<Granule> {
    match tg % 4 {
        1 => Some(Granule::Size4K),
        2 => Some(Granule::Size16K),
        3 => Some(Granule::Size64K),
        _ => None,
    }
}

/// The TG field of a TLB invalidation of entries with `granule` (the
/// inverse of [`tlbi_granule`]).
pub const fn tlbi_tg(granule: Granule) -> u8 {
    match granule {
        Granule::Size4K => 1,
        Granule::Size16K => 2,
        Granule::Size64K => 3,
    }
}

/// The address fields of a TLB invalidation by address (TLBI_NH_VA,
/// TLBI_NH_VAA, TLBI_EL2_VA, TLBI_EL2_VAA, TLBI_EL3_VA, TLBI_S2_IPA).
///
/// Every combination of values is accepted by [`scope`](TlbiAddr::scope):
/// only the field widths of the command count (TG and TTL two bits, NUM
/// five, SCALE six and at most 39), and address bits 11:0 are taken as zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlbiAddr {
    /// The address: a VA (Address\[63:12\]) or an IPA (Address\[55:12\]).
    pub addr: u64,
    /// Leaf: only last-level entries need to go.
    pub leaf: bool,
    /// TG: 0 for the non-range form, else the granule of the entries.
    pub tg: u8,
    /// TTL: level hint (0: any level).
    pub ttl: u8,
    /// NUM: the range is (NUM + 1) << SCALE granules.
    pub num: u8,
    /// SCALE (bit 5 only with IDR5.DS).
    pub scale: u8,
    /// TTL128: the hint is for 128-bit descriptors (not modelled; kept).
    pub ttl128: bool,
    /// The SMMU has IDR5.DS (16 KiB granule, TTL = 1 is a level-1 hint).
    pub ds: bool,
}

/// The entries a TLB invalidation by address concerns: those overlapping
/// `first..=last`, restricted by granule and level when given.
///
/// The non-range form (TG = 0) names one 4 KiB page: every entry, of any
/// size, holding its address overlaps it. A range form with NUM = SCALE = 0
/// names one granule; with a TTL hint the entries are of that level's size
/// ([`covering`](InvalidationScope::covering) gives their extent). A range
/// running past 2^64 is cut there (the address does not wrap).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InvalidationScope {
    /// First address named (inclusive; the command's address, whose bits
    /// 11:0 are zero).
    pub first: u64,
    /// Last address named (inclusive).
    pub last: u64,
    /// Only entries inserted with this granule (None: any granule).
    pub granule: Option<Granule>,
    /// Only leaf entries from this walk level, 1..=3 (None: any level).
    pub level: Option<u8>,
    /// Only last-level entries (Leaf = 1).
    pub leaf_only: bool,
    /// The range form (TG != 0).
    pub ranged: bool,
    /// The range ran past the top of the address space and was cut
    /// (QEMU's C device wraps around to address 0 instead and invalidates
    /// the low addresses too, an allowed over-invalidation).
    pub clipped: bool,
}

impl TlbiAddr {
    /// The scope of the invalidation, as IHI 0070 §4.4.1.1 defines it:
    /// TG = 0 names the page at `addr`; otherwise `(NUM + 1) << SCALE`
    /// granules from `addr` with the TTL level hint.
    pub fn scope(&self) -> InvalidationScope {
        let first = self.addr - self.addr % 4096;
        let Some(granule) = tlbi_granule(self.tg) else {
            return InvalidationScope {
                first,
                last: first + 4095,
                granule: None,
                level: None,
                leaf_only: self.leaf,
                ranged: false,
                clipped: false,
            };
        };
        let num = u128::from(self.num % 32) + 1;
        let scale = u32::from((self.scale % 64).min(39));
        // Arithmetic: (NUM + 1) << SCALE granules, in bytes.
        let bytes = num << (scale + granule.shift());
        let end = u128::from(first) + bytes - 1;
        let last = u64::try_from(end).unwrap_or(u64::MAX);
        let level = match self.ttl % 4 {
            0 => None,
            1 if granule == Granule::Size16K && !self.ds => None,
            l => Some(l),
        };
        InvalidationScope {
            first,
            last,
            granule: Some(granule),
            level,
            leaf_only: self.leaf,
            ranged: true,
            clipped: end > u128::from(u64::MAX),
        }
    }

    /// The reserved range encoding: TG != 0 with NUM = SCALE = 0 and no
    /// (effective) TTL hint, which the architecture makes CERROR_ILL.
    pub fn reserved_encoding(&self) -> bool {
        let s = self.scope();
        s.ranged && self.num % 32 == 0 && self.scale % 64 == 0 && s.level.is_none()
    }
}

impl InvalidationScope {
    /// Size of the leaf entries the level hint names, if there is one: a
    /// page at level 3, a block above (a level beyond 3 counts as 3).
    pub fn leaf_size(&self) -> Option<u64> {
        let level = self.level?.min(3) as i8;
        1u64.checked_shl(self.granule?.level_shift(level))
    }

    /// The extent of the entries concerned: `first..=last` widened to whole
    /// entries of the hinted level (unchanged without a hint).
    pub fn covering(&self) -> (u64, u64) {
        match self.leaf_size() {
            Some(size) => {
                let first = self.first - self.first % size;
                let last = self.last.saturating_add(size - 1 - self.last % size);
                (first, last)
            }
            None => (self.first, self.last),
        }
    }

    /// `first..=last` split into naturally aligned power-of-two blocks,
    /// each as (start, size - 1), lowest first: the pieces QEMU's C device
    /// invalidates one by one (`dma_aligned_pow2_mask`).
    pub fn aligned_blocks(&self) -> AlignedBlocks {
        AlignedBlocks { next: self.first, last: self.last, done: self.first > self.last }
    }
}

/// Iterator of [`InvalidationScope::aligned_blocks`].
#[derive(Clone, Debug)]
pub struct AlignedBlocks {
    next: u64,
    last: u64,
    done: bool,
}

impl Iterator for AlignedBlocks {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        if self.done {
            return None;
        }
        let start = self.next;
        let room = self.last - start;
        // Arithmetic: the largest naturally aligned power-of-two block at start
        // that fits in what remains.
        let align = if start == 0 { u64::MAX } else { (1u64 << start.trailing_zeros()) - 1 };
        let mask = if align <= room {
            align
        } else if room == u64::MAX {
            u64::MAX
        } else {
            (1u64 << (63 - (room + 1).leading_zeros())) - 1
        };
        if start + mask == self.last {
            self.done = true;
        } else {
            self.next = start + mask + 1;
        }
        Some((start, mask))
    }
}

/// The completion signal of a CMD_SYNC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyncSignal {
    /// SIG_NONE: nothing beyond CONS moving past the command.
    None,
    /// SIG_IRQ: an MSI to `msi_addr` if non-zero and MSIs are supported,
    /// and the wired CMD_SYNC interrupt (QEMU pulses its line 2 only).
    Irq,
    /// SIG_SEV: a WFE wake-up event, none without IDR0.SEV (then as None).
    Sev,
}

/// CMD_SYNC's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Sync {
    /// CS.
    pub signal: SyncSignal,
    /// MSIAddress (bits 55:2; 0: no MSI).
    pub msi_addr: u64,
    /// MSIData.
    pub msi_data: u32,
    /// MSIAttr (STE.MemAttr encoding).
    pub msi_attr: u8,
    /// MSH (shareability).
    pub msh: u8,
}

/// What CMD_RESUME does with the stalled transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResumeAction {
    /// Ac = 1: retry it (Ab ignored).
    Retry,
    /// Ac = 0: terminate it, with an abort if `abort` (Ab), else RAZ/WI
    /// (forced to abort with IDR0.TERM_MODEL = 1).
    Terminate {
        /// Ab.
        abort: bool,
    },
}

/// A decoded command. SubstreamIDs are `Some` when SSV = 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// CMD_PREFETCH_CONFIG: may prefetch a stream's configuration.
    PrefetchConfig {
        /// StreamID.
        sid: u32,
        /// SubstreamID.
        ssid: Option<u32>,
    },
    /// CMD_PREFETCH_ADDR: may prefetch translations.
    PrefetchAddr {
        /// StreamID.
        sid: u32,
        /// SubstreamID.
        ssid: Option<u32>,
        /// Address (bits 63:12).
        addr: u64,
        /// Size: 2^Size translations.
        size: u8,
        /// Stride: 2^(12 + Stride) bytes apart.
        stride: u8,
        /// NS (RES0 on this queue, kept).
        ns: bool,
    },
    /// CMD_CFGI_STE.
    CfgiSte {
        /// StreamID.
        sid: u32,
        /// Leaf: L1 descriptors may stay cached.
        leaf: bool,
    },
    /// CMD_CFGI_STE_RANGE; Range 31 is CMD_CFGI_ALL.
    CfgiSteRange {
        /// StreamID (the low Range + 1 bits ignored).
        sid: u32,
        /// Range: 2^(Range + 1) StreamIDs.
        range: u8,
    },
    /// CMD_CFGI_CD.
    CfgiCd {
        /// StreamID.
        sid: u32,
        /// SubstreamID (the CD index; always present, no SSV).
        ssid: u32,
        /// Leaf: L1CDs may stay cached.
        leaf: bool,
    },
    /// CMD_CFGI_CD_ALL.
    CfgiCdAll {
        /// StreamID.
        sid: u32,
    },
    /// CMD_CFGI_VMS_PIDM.
    CfgiVmsPidm {
        /// VMID.
        vmid: u16,
    },
    /// CMD_TLBI_NH_ALL.
    TlbiNhAll {
        /// VMID (RES0 without stage 2).
        vmid: u16,
    },
    /// CMD_TLBI_NH_ASID.
    TlbiNhAsid {
        /// VMID (RES0 without stage 2).
        vmid: u16,
        /// ASID.
        asid: u16,
    },
    /// CMD_TLBI_NH_VA.
    TlbiNhVa {
        /// VMID (RES0 without stage 2).
        vmid: u16,
        /// ASID.
        asid: u16,
        /// The VA and range.
        va: TlbiAddr,
    },
    /// CMD_TLBI_NH_VAA.
    TlbiNhVaa {
        /// VMID (RES0 without stage 2).
        vmid: u16,
        /// The VA and range.
        va: TlbiAddr,
    },
    /// CMD_TLBI_EL3_ALL.
    TlbiEl3All,
    /// CMD_TLBI_EL3_VA.
    TlbiEl3Va {
        /// The VA and range.
        va: TlbiAddr,
    },
    /// CMD_TLBI_EL2_ALL.
    TlbiEl2All,
    /// CMD_TLBI_EL2_ASID.
    TlbiEl2Asid {
        /// ASID.
        asid: u16,
    },
    /// CMD_TLBI_EL2_VA.
    TlbiEl2Va {
        /// ASID.
        asid: u16,
        /// The VA and range.
        va: TlbiAddr,
    },
    /// CMD_TLBI_EL2_VAA.
    TlbiEl2Vaa {
        /// The VA and range.
        va: TlbiAddr,
    },
    /// CMD_TLBI_S12_VMALL.
    TlbiS12Vmall {
        /// VMID.
        vmid: u16,
    },
    /// CMD_TLBI_S2_IPA.
    TlbiS2Ipa {
        /// VMID.
        vmid: u16,
        /// The IPA and range.
        ipa: TlbiAddr,
    },
    /// CMD_TLBI_NSNH_ALL.
    TlbiNsnhAll,
    /// CMD_ATC_INV.
    AtcInv {
        /// StreamID.
        sid: u32,
        /// SubstreamID.
        ssid: Option<u32>,
        /// Global (with a SubstreamID).
        global: bool,
        /// Address (bits 63:12).
        addr: u64,
        /// Size: a span of 4 KiB << Size (52 and above: everything).
        size: u8,
    },
    /// CMD_PRI_RESP.
    PriResp {
        /// StreamID.
        sid: u32,
        /// SubstreamID.
        ssid: Option<u32>,
        /// PRGIndex.
        prg_index: u16,
        /// Resp.
        resp: PriResponse,
    },
    /// CMD_RESUME.
    Resume {
        /// StreamID.
        sid: u32,
        /// STAG of the stalled transaction.
        stag: u16,
        /// Retry or terminate.
        action: ResumeAction,
    },
    /// CMD_STALL_TERM.
    StallTerm {
        /// StreamID.
        sid: u32,
    },
    /// CMD_SYNC.
    Sync(Sync),
}

impl Command {
    /// The opcode.
    pub fn opcode(&self) -> u8 {
        let op = match self {
            Command::PrefetchConfig { .. } => Opcode::PrefetchConfig,
            Command::PrefetchAddr { .. } => Opcode::PrefetchAddr,
            Command::CfgiSte { .. } => Opcode::CfgiSte,
            Command::CfgiSteRange { .. } => Opcode::CfgiSteRange,
            Command::CfgiCd { .. } => Opcode::CfgiCd,
            Command::CfgiCdAll { .. } => Opcode::CfgiCdAll,
            Command::CfgiVmsPidm { .. } => Opcode::CfgiVmsPidm,
            Command::TlbiNhAll { .. } => Opcode::TlbiNhAll,
            Command::TlbiNhAsid { .. } => Opcode::TlbiNhAsid,
            Command::TlbiNhVa { .. } => Opcode::TlbiNhVa,
            Command::TlbiNhVaa { .. } => Opcode::TlbiNhVaa,
            Command::TlbiEl3All => Opcode::TlbiEl3All,
            Command::TlbiEl3Va { .. } => Opcode::TlbiEl3Va,
            Command::TlbiEl2All => Opcode::TlbiEl2All,
            Command::TlbiEl2Asid { .. } => Opcode::TlbiEl2Asid,
            Command::TlbiEl2Va { .. } => Opcode::TlbiEl2Va,
            Command::TlbiEl2Vaa { .. } => Opcode::TlbiEl2Vaa,
            Command::TlbiS12Vmall { .. } => Opcode::TlbiS12Vmall,
            Command::TlbiS2Ipa { .. } => Opcode::TlbiS2Ipa,
            Command::TlbiNsnhAll => Opcode::TlbiNsnhAll,
            Command::AtcInv { .. } => Opcode::AtcInv,
            Command::PriResp { .. } => Opcode::PriResp,
            Command::Resume { .. } => Opcode::Resume,
            Command::StallTerm { .. } => Opcode::StallTerm,
            Command::Sync(_) => Opcode::Sync,
        };
        u8::from(op)
    }

    /// The command's name as the architecture spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::PrefetchConfig { .. } => "CMD_PREFETCH_CONFIG",
            Command::PrefetchAddr { .. } => "CMD_PREFETCH_ADDR",
            Command::CfgiSte { .. } => "CMD_CFGI_STE",
            Command::CfgiSteRange { range: 31, .. } => "CMD_CFGI_ALL",
            Command::CfgiSteRange { .. } => "CMD_CFGI_STE_RANGE",
            Command::CfgiCd { .. } => "CMD_CFGI_CD",
            Command::CfgiCdAll { .. } => "CMD_CFGI_CD_ALL",
            Command::CfgiVmsPidm { .. } => "CMD_CFGI_VMS_PIDM",
            Command::TlbiNhAll { .. } => "CMD_TLBI_NH_ALL",
            Command::TlbiNhAsid { .. } => "CMD_TLBI_NH_ASID",
            Command::TlbiNhVa { .. } => "CMD_TLBI_NH_VA",
            Command::TlbiNhVaa { .. } => "CMD_TLBI_NH_VAA",
            Command::TlbiEl3All => "CMD_TLBI_EL3_ALL",
            Command::TlbiEl3Va { .. } => "CMD_TLBI_EL3_VA",
            Command::TlbiEl2All => "CMD_TLBI_EL2_ALL",
            Command::TlbiEl2Asid { .. } => "CMD_TLBI_EL2_ASID",
            Command::TlbiEl2Va { .. } => "CMD_TLBI_EL2_VA",
            Command::TlbiEl2Vaa { .. } => "CMD_TLBI_EL2_VAA",
            Command::TlbiS12Vmall { .. } => "CMD_TLBI_S12_VMALL",
            Command::TlbiS2Ipa { .. } => "CMD_TLBI_S2_IPA",
            Command::TlbiNsnhAll => "CMD_TLBI_NSNH_ALL",
            Command::AtcInv { .. } => "CMD_ATC_INV",
            Command::PriResp { .. } => "CMD_PRI_RESP",
            Command::Resume { .. } => "CMD_RESUME",
            Command::StallTerm { .. } => "CMD_STALL_TERM",
            Command::Sync(_) => "CMD_SYNC",
        }
    }

    /// The command as its two quadwords, every reserved bit clear; fields
    /// wider than the command's are truncated. `decode(encode(c))` gives
    /// `c` back for any command [`decode`] produces.
    pub fn encode(&self) -> [u64; 2] {
        let op = self.opcode();
        let raw: u128 = match *self {
            Command::PrefetchConfig { sid, ssid } => stream(op, sid, ssid, false).into(),
            Command::PrefetchAddr { sid, ssid, addr, size, stride, ns } => {
                let a = CmdAddr::from(addr);
                CmdPrefetchAddr::new(
                    op,
                    false,
                    ssid.is_some(),
                    u20::extract_u32(ssid.unwrap_or(0), 0),
                    sid,
                    u5::extract_u8(size, 0),
                    u5::extract_u8(stride, 0),
                    ns,
                    a.bits_55_12(),
                    a.bits_63_56(),
                )
                .into()
            }
            Command::CfgiSte { sid, leaf } => stream(op, sid, None, leaf).into(),
            Command::CfgiSteRange { sid, range } => CmdCfgiRange::new(op, false, sid, u5::extract_u8(range, 0)).into(),
            Command::CfgiCd { sid, ssid, leaf } => {
                CmdStream::new(op, false, false, u20::extract_u32(ssid, 0), sid, leaf).into()
            }
            Command::CfgiCdAll { sid } | Command::StallTerm { sid } => stream(op, sid, None, false).into(),
            Command::CfgiVmsPidm { vmid } => CmdVmsPidm::new(op, false, vmid).into(),
            Command::TlbiNhAll { vmid } | Command::TlbiS12Vmall { vmid } => tlbi(op, vmid, 0, None).into(),
            Command::TlbiNhAsid { vmid, asid } => tlbi(op, vmid, asid, None).into(),
            Command::TlbiNhVa { vmid, asid, va } => tlbi(op, vmid, asid, Some(va)).into(),
            Command::TlbiNhVaa { vmid, va } => tlbi(op, vmid, 0, Some(va)).into(),
            Command::TlbiEl3All | Command::TlbiEl2All | Command::TlbiNsnhAll => tlbi(op, 0, 0, None).into(),
            Command::TlbiEl3Va { va } | Command::TlbiEl2Vaa { va } => tlbi(op, 0, 0, Some(va)).into(),
            Command::TlbiEl2Asid { asid } => tlbi(op, 0, asid, None).into(),
            Command::TlbiEl2Va { asid, va } => tlbi(op, 0, asid, Some(va)).into(),
            Command::TlbiS2Ipa { vmid, ipa } => tlbi(op, vmid, 0, Some(ipa)).into(),
            Command::AtcInv { sid, ssid, global, addr, size } => {
                let a = CmdAddr::from(addr);
                CmdAtcInv::new(
                    op,
                    global,
                    ssid.is_some(),
                    u20::extract_u32(ssid.unwrap_or(0), 0),
                    sid,
                    u6::extract_u8(size, 0),
                    a.bits_55_12(),
                    a.bits_63_56(),
                )
                .into()
            }
            Command::PriResp { sid, ssid, prg_index, resp } => CmdPriResp::new(
                op,
                ssid.is_some(),
                u20::extract_u32(ssid.unwrap_or(0), 0),
                sid,
                u9::extract_u16(prg_index, 0),
                resp,
            )
            .into(),
            Command::Resume { sid, stag, action } => {
                let (retry, abort) = match action {
                    ResumeAction::Retry => (true, false),
                    ResumeAction::Terminate { abort } => (false, abort),
                };
                CmdResume::new(op, false, retry, abort, sid, stag).into()
            }
            Command::Sync(s) => {
                let cs = match s.signal {
                    SyncSignal::None => SyncCs::None,
                    SyncSignal::Irq => SyncCs::Irq,
                    SyncSignal::Sev => SyncCs::Sev,
                };
                let a = CmdAddr::from(s.msi_addr);
                CmdSync::new(
                    op,
                    cs,
                    u2::extract_u8(s.msh, 0),
                    u4::extract_u8(s.msi_attr, 0),
                    s.msi_data,
                    a.bits_11_2(),
                    a.bits_55_12(),
                )
                .into()
            }
        };
        split(raw)
    }

    /// The request that forwards this command to a host SMMUv3 through
    /// iommufd (`IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3`), for the commands
    /// the host kernel takes from a vIOMMU: TLBI_NSNH_ALL, TLBI_NH_ALL,
    /// TLBI_NH_ASID, TLBI_NH_VA, TLBI_NH_VAA, ATC_INV, CFGI_CD and
    /// CFGI_CD_ALL. StreamIDs stay the guest's (the kernel maps them and
    /// imposes the VMID); the words are [`encode`](Command::encode)'s, so
    /// no reserved bit trips the kernel's checks. TTL128 is dropped.
    pub fn to_iommufd(&self) -> Option<Invalidation> {
        let mut cmd = *self;
        match &mut cmd {
            Command::TlbiNhVa { va, .. } | Command::TlbiNhVaa { va, .. } => va.ttl128 = false,
            Command::TlbiNsnhAll
            | Command::TlbiNhAll { .. }
            | Command::TlbiNhAsid { .. }
            | Command::AtcInv { .. }
            | Command::CfgiCd { .. }
            | Command::CfgiCdAll { .. } => {}
            _ => return None,
        }
        Some(Invalidation::ArmSmmuV3 { cmd: cmd.encode() })
    }
}

impl Command {
    /// The StreamIDs CFGI_STE_RANGE / CFGI_ALL covers, inclusive
    /// (`None` for other commands).
    pub fn sid_range(&self) -> Option<(u32, u32)> {
        match *self {
            Command::CfgiSteRange { sid, range } => {
                // Arithmetic: 2^(Range + 1) StreamIDs, aligned to their number.
                let span = 2u64 << (range % 32);
                let first = u64::from(sid) - u64::from(sid) % span;
                let last = first + span - 1;
                Some((first as u32, last.min(u64::from(u32::MAX)) as u32))
            }
            _ => None,
        }
    }

    /// The address span of an ATC_INV, inclusive (`None` for other
    /// commands): 4 KiB << Size, aligned to its size; Size 52 and above
    /// span everything.
    pub fn atc_range(&self) -> Option<(u64, u64)> {
        match *self {
            Command::AtcInv { addr, size, .. } => {
                let shift = 12 + u32::from(size);
                if shift >= 64 {
                    return Some((0, u64::MAX));
                }
                // Arithmetic: the span in bytes.
                let span = 1u64 << shift;
                let first = addr - addr % span;
                Some((first, first + (span - 1)))
            }
            _ => None,
        }
    }
}

fn stream(op: u8, sid: u32, ssid: Option<u32>, leaf: bool) -> CmdStream {
    CmdStream::new(op, false, ssid.is_some(), u20::extract_u32(ssid.unwrap_or(0), 0), sid, leaf)
}

fn tlbi(op: u8, vmid: u16, asid: u16, a: Option<TlbiAddr>) -> CmdTlbi {
    let a = a.unwrap_or_default();
    let addr = CmdAddr::from(a.addr);
    CmdTlbi::new(
        op,
        u5::extract_u8(a.num, 0),
        u5::extract_u8(a.scale, 0),
        a.scale % 64 >= 32,
        vmid,
        asid,
        a.leaf,
        a.ttl128,
        u2::extract_u8(a.ttl, 0),
        u2::extract_u8(a.tg, 0),
        addr.bits_55_12(),
        addr.bits_63_56(),
    )
}

/// A page address from its bits 55:12 and 63:56.
fn page_addr(bits_55_12: u44, bits_63_56: u8) -> u64 {
    CmdAddr::new(u10::new(0), bits_55_12, bits_63_56).into()
}

fn join(words: [u64; 2]) -> u128 {
    CmdWords::new(words[0], words[1]).into()
}

fn split(raw: u128) -> [u64; 2] {
    let w = CmdWords::from(raw);
    [w.lo(), w.hi()]
}

// ---------------------------------------------------------------- decoding

/// Decode the command in `words` for an SMMU advertising `caps`.
///
/// Errors are always CERROR_ILL ([`CommandError::Illegal`]); which
/// commands are illegal depends on `caps`, C-compatible or architected
/// (see [`CommandCaps`]).
pub fn decode(words: [u64; 2], caps: &CommandCaps) -> Result<Command, CommandError> {
    let raw = join(words);
    let opcode = CmdHeader::from(raw).opcode();
    let op = u8::from(opcode);
    let strict = !caps.c_compatible;
    let ill = |reason| Err(CommandError::Illegal { opcode: op, reason });
    // Substreams: without SSIDSIZE, SSV = 1 behaves as SSV = 0 (one of the
    // CONSTRAINED UNPREDICTABLE choices) in the architected mode; QEMU
    // ignores substreams everywhere, so keeping the field costs nothing.
    let substream = |ssv: bool, ssid: u20| -> Option<u32> {
        (ssv && (caps.c_compatible || caps.ssid_bits > 0)).then_some(ssid.value())
    };
    // SSec is ILLEGAL on the Non-secure queue; QEMU checks it for CFGI_* only.
    let secure = |ssec: bool, checked_by_qemu: bool| ssec && (strict || checked_by_qemu);

    match opcode {
        Opcode::PrefetchConfig => {
            let c = CmdStream::from(raw);
            if secure(c.ssec(), false) {
                return ill(IllegalReason::SecureStream);
            }
            Ok(Command::PrefetchConfig { sid: c.sid(), ssid: substream(c.ssv(), c.ssid()) })
        }
        Opcode::PrefetchAddr => {
            let c = CmdPrefetchAddr::from(raw);
            if secure(c.ssec(), false) {
                return ill(IllegalReason::SecureStream);
            }
            Ok(Command::PrefetchAddr {
                sid: c.sid(),
                ssid: substream(c.ssv(), c.ssid()),
                addr: page_addr(c.addr_55_12(), c.addr_63_56()),
                size: c.size().value(),
                stride: c.stride().value(),
                ns: c.ns(),
            })
        }
        Opcode::CfgiSte => {
            let c = CmdStream::from(raw);
            if secure(c.ssec(), true) {
                return ill(IllegalReason::SecureStream);
            }
            Ok(Command::CfgiSte { sid: c.sid(), leaf: c.leaf() })
        }
        Opcode::CfgiSteRange => {
            let c = CmdCfgiRange::from(raw);
            if secure(c.ssec(), true) {
                return ill(IllegalReason::SecureStream);
            }
            Ok(Command::CfgiSteRange { sid: c.sid(), range: c.range().value() })
        }
        Opcode::CfgiCd | Opcode::CfgiCdAll => {
            let c = CmdStream::from(raw);
            if secure(c.ssec(), true) {
                return ill(IllegalReason::SecureStream);
            }
            if strict && !caps.stage1 {
                return ill(IllegalReason::NoStage1);
            }
            Ok(if opcode == Opcode::CfgiCd {
                Command::CfgiCd { sid: c.sid(), ssid: c.ssid().value(), leaf: c.leaf() }
            } else {
                Command::CfgiCdAll { sid: c.sid() }
            })
        }
        Opcode::CfgiVmsPidm => {
            if caps.c_compatible {
                return ill(IllegalReason::Opcode);
            }
            let c = CmdVmsPidm::from(raw);
            if !caps.mpam {
                return ill(IllegalReason::NoMpam);
            }
            if c.ssec() {
                return ill(IllegalReason::SecureStream);
            }
            Ok(Command::CfgiVmsPidm { vmid: c.vmid() })
        }
        Opcode::TlbiNhAll | Opcode::TlbiNhAsid | Opcode::TlbiNhVa | Opcode::TlbiNhVaa => {
            if !caps.stage1 {
                return ill(IllegalReason::NoStage1);
            }
            let c = CmdTlbi::from(raw);
            let (vmid, asid) = (c.vmid(), c.asid());
            match opcode {
                Opcode::TlbiNhAll => Ok(Command::TlbiNhAll { vmid }),
                Opcode::TlbiNhAsid => Ok(Command::TlbiNhAsid { vmid, asid }),
                Opcode::TlbiNhVa => Ok(Command::TlbiNhVa { vmid, asid, va: tlbi_addr(c, caps, false, op)? }),
                _ => Ok(Command::TlbiNhVaa { vmid, va: tlbi_addr(c, caps, false, op)? }),
            }
        }
        Opcode::TlbiEl3All | Opcode::TlbiEl3Va => {
            if strict {
                return ill(IllegalReason::SecureOnly);
            }
            let c = CmdTlbi::from(raw);
            Ok(if opcode == Opcode::TlbiEl3All {
                Command::TlbiEl3All
            } else {
                Command::TlbiEl3Va { va: tlbi_addr(c, caps, false, op)? }
            })
        }
        Opcode::TlbiEl2All | Opcode::TlbiEl2Asid | Opcode::TlbiEl2Va | Opcode::TlbiEl2Vaa => {
            if strict && !caps.hyp {
                return ill(IllegalReason::NoHyp);
            }
            let c = CmdTlbi::from(raw);
            let asid = c.asid();
            match opcode {
                Opcode::TlbiEl2All => Ok(Command::TlbiEl2All),
                Opcode::TlbiEl2Asid => Ok(Command::TlbiEl2Asid { asid }),
                Opcode::TlbiEl2Va => Ok(Command::TlbiEl2Va { asid, va: tlbi_addr(c, caps, false, op)? }),
                _ => Ok(Command::TlbiEl2Vaa { va: tlbi_addr(c, caps, false, op)? }),
            }
        }
        Opcode::TlbiS12Vmall | Opcode::TlbiS2Ipa => {
            if !caps.stage2 {
                return ill(IllegalReason::NoStage2);
            }
            let c = CmdTlbi::from(raw);
            Ok(if opcode == Opcode::TlbiS12Vmall {
                Command::TlbiS12Vmall { vmid: c.vmid() }
            } else {
                Command::TlbiS2Ipa { vmid: c.vmid(), ipa: tlbi_addr(c, caps, true, op)? }
            })
        }
        Opcode::TlbiNsnhAll => Ok(Command::TlbiNsnhAll),
        Opcode::AtcInv => {
            if strict && !caps.ats {
                return ill(IllegalReason::NoAts);
            }
            let c = CmdAtcInv::from(raw);
            Ok(Command::AtcInv {
                sid: c.sid(),
                ssid: substream(c.ssv(), c.ssid()),
                global: c.global(),
                addr: page_addr(c.addr_55_12(), c.addr_63_56()),
                size: c.size().value(),
            })
        }
        Opcode::PriResp => {
            if strict && !caps.pri {
                return ill(IllegalReason::NoPri);
            }
            let c = CmdPriResp::from(raw);
            if strict && c.resp() == PriResponse::Reserved {
                return ill(IllegalReason::ReservedValue);
            }
            Ok(Command::PriResp {
                sid: c.sid(),
                ssid: substream(c.ssv(), c.ssid()),
                prg_index: c.prg_index().value(),
                resp: c.resp(),
            })
        }
        Opcode::Resume => {
            if strict && !caps.stall {
                return ill(IllegalReason::NoStall);
            }
            let c = CmdResume::from(raw);
            if secure(c.ssec(), false) {
                return ill(IllegalReason::SecureStream);
            }
            let action = if c.retry() { ResumeAction::Retry } else { ResumeAction::Terminate { abort: c.abort() } };
            Ok(Command::Resume { sid: c.sid(), stag: c.stag(), action })
        }
        Opcode::StallTerm => {
            if strict && !caps.stall {
                return ill(IllegalReason::NoStall);
            }
            let c = CmdStream::from(raw);
            if secure(c.ssec(), false) {
                return ill(IllegalReason::SecureStream);
            }
            Ok(Command::StallTerm { sid: c.sid() })
        }
        Opcode::Sync => {
            let c = CmdSync::from(raw);
            let signal = match c.cs() {
                SyncCs::None => SyncSignal::None,
                SyncCs::Irq => SyncSignal::Irq,
                SyncCs::Sev => SyncSignal::Sev,
                // QEMU tests CS bit 0 only: the reserved 0b11 raises the IRQ.
                SyncCs::Reserved if caps.c_compatible => SyncSignal::Irq,
                SyncCs::Reserved => return ill(IllegalReason::ReservedValue),
            };
            Ok(Command::Sync(Sync {
                signal,
                msi_addr: CmdAddr::new(c.msi_addr_11_2(), c.msi_addr_55_12(), 0).into(),
                msi_data: c.msi_data(),
                msi_attr: c.msi_attr().value(),
                msh: c.msh().value(),
            }))
        }
        Opcode::Other(_) => ill(IllegalReason::Opcode),
    }
}

/// The address fields of a TLBI by address, checked.
fn tlbi_addr(c: CmdTlbi, caps: &CommandCaps, ipa: bool, op: u8) -> Result<TlbiAddr, CommandError> {
    let strict = !caps.c_compatible;
    // An IPA is Address[55:12]; QEMU takes bits 63:56 along.
    let high = if ipa && strict { 0 } else { c.addr_63_56() };
    let mut a = TlbiAddr {
        addr: page_addr(c.addr_55_12(), high),
        leaf: c.leaf(),
        tg: c.tg().value(),
        ttl: c.ttl().value(),
        num: c.num().value(),
        scale: c.scale().value() + if caps.ds && c.scale_ds() { 32 } else { 0 },
        ttl128: c.ttl128(),
        ds: caps.ds,
    };
    if strict && !caps.ril {
        // Without RIL the range fields are RES0: ignored.
        a = TlbiAddr { tg: 0, ttl: 0, num: 0, scale: 0, ttl128: false, ..a };
    }
    if strict && a.reserved_encoding() {
        return Err(CommandError::Illegal { opcode: op, reason: IllegalReason::ReservedValue });
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{command_caps, Rng};

    // ------------------------------------------------------------ helpers

    /// The C device with both stages.
    fn nested() -> CommandCaps {
        command_caps(true, true)
    }

    /// GENMASK_ULL(hi, lo) / FIELD_PREP, as Linux builds command words.
    fn prep(hi: u32, lo: u32, v: u64) -> u64 {
        let mask = (u64::MAX >> (63 - hi)) & (u64::MAX << lo);
        (v << lo) & mask
    }

    fn strict(caps: CommandCaps) -> CommandCaps {
        CommandCaps { c_compatible: false, ..caps }
    }

    fn ill(op: u8, reason: IllegalReason) -> Result<Command, CommandError> {
        Err(CommandError::Illegal { opcode: op, reason })
    }

    /// Decode, and check that the canonical encoding is `words` again.
    fn decode_exact(words: [u64; 2], caps: &CommandCaps) -> Command {
        let c = decode(words, caps).unwrap_or_else(|e| panic!("{words:x?}: {e:?}"));
        assert_eq!(c.encode(), words, "{c:?}");
        c
    }

    // Linux's arm_smmu_cmdq_build_cmd field masks.
    fn op(o: u8) -> u64 {
        prep(7, 0, u64::from(o))
    }
    fn sid(v: u32) -> u64 {
        prep(63, 32, u64::from(v))
    }
    fn ssid(v: u32) -> u64 {
        prep(31, 12, u64::from(v))
    }
    const SSV: u64 = 1 << 11;
    fn vmid(v: u16) -> u64 {
        prep(47, 32, u64::from(v))
    }
    fn asid(v: u16) -> u64 {
        prep(63, 48, u64::from(v))
    }
    fn num(v: u8) -> u64 {
        prep(16, 12, u64::from(v))
    }
    fn scale(v: u8) -> u64 {
        prep(24, 20, u64::from(v))
    }
    fn ttl(v: u8) -> u64 {
        prep(9, 8, u64::from(v))
    }
    fn tg(v: u8) -> u64 {
        prep(11, 10, u64::from(v))
    }
    const VA_MASK: u64 = 0xffff_ffff_ffff_f000;
    const IPA_MASK: u64 = 0x000f_ffff_ffff_f000;

    // ------------------------------------------------------------ Linux's commands

    #[test]
    fn linux_configuration_commands_decode() {
        let c = decode_exact([op(0x01) | sid(0x0108), 0], &nested());
        assert_eq!(c, Command::PrefetchConfig { sid: 0x0108, ssid: None });
        let c = decode_exact([op(0x03) | sid(0x0108), 1], &nested());
        assert_eq!(c, Command::CfgiSte { sid: 0x0108, leaf: true });
        // CFGI_ALL: opcode 0x04 with Range 31.
        let c = decode_exact([op(0x04), prep(4, 0, 31)], &nested());
        assert_eq!(c, Command::CfgiSteRange { sid: 0, range: 31 });
        assert_eq!(c.name(), "CMD_CFGI_ALL");
        assert_eq!(c.sid_range(), Some((0, u32::MAX)));
        let c = decode_exact([op(0x05) | ssid(7) | sid(0x10), 1], &nested());
        assert_eq!(c, Command::CfgiCd { sid: 0x10, ssid: 7, leaf: true });
        let c = decode_exact([op(0x06) | sid(0x10), 0], &nested());
        assert_eq!(c, Command::CfgiCdAll { sid: 0x10 });
    }

    #[test]
    fn linux_tlb_commands_decode() {
        let c = decode_exact([op(0x10) | vmid(3), 0], &nested());
        assert_eq!(c, Command::TlbiNhAll { vmid: 3 });
        let c = decode_exact([op(0x11) | asid(0x42) | vmid(3), 0], &nested());
        assert_eq!(c, Command::TlbiNhAsid { vmid: 3, asid: 0x42 });
        // TLBI_NH_VA of 2 MiB of 4 KiB pages at a kernel VA (range form).
        let va = 0xffff_8000_0020_0000u64;
        let w = [op(0x12) | vmid(1) | num(0) | scale(9) | asid(7), 1 | ttl(3) | tg(1) | (va & VA_MASK)];
        let c = decode_exact(w, &nested());
        let Command::TlbiNhVa { vmid: 1, asid: 7, va: a } = c else { panic!("{c:?}") };
        assert_eq!((a.addr, a.leaf, a.tg, a.ttl, a.num, a.scale), (va, true, 1, 3, 0, 9));
        let s = a.scope();
        assert_eq!((s.first, s.last, s.level, s.granule), (va, va + 0x1f_ffff, Some(3), Some(Granule::Size4K)));
        // Pre-RIL kernels: one page, TG = 0.
        let c = decode_exact([op(0x12) | asid(7), 0xffff_0000_1234_5000 & VA_MASK], &nested());
        let Command::TlbiNhVa { va: a, .. } = c else { panic!() };
        assert_eq!(a.scope().first..=a.scope().last, 0xffff_0000_1234_5000..=0xffff_0000_1234_5fff);
        let c = decode_exact([op(0x13) | vmid(2), 0x8000_0000], &nested());
        assert!(matches!(c, Command::TlbiNhVaa { vmid: 2, va: TlbiAddr { addr: 0x8000_0000, .. } }));
        // Stage 2, EL2 and global forms.
        let c = decode_exact([op(0x28) | vmid(9), 0], &nested());
        assert_eq!(c, Command::TlbiS12Vmall { vmid: 9 });
        let ipa = 0x0000_0400_8000_0000u64;
        let c = decode_exact([op(0x2a) | num(3) | scale(1) | vmid(9), tg(3) | ttl(3) | (ipa & IPA_MASK)], &nested());
        let Command::TlbiS2Ipa { vmid: 9, ipa: a } = c else { panic!() };
        assert_eq!(a.scope().last - a.scope().first + 1, 8 << 16);
        assert_eq!(decode_exact([op(0x30), 0], &nested()), Command::TlbiNsnhAll);
        assert_eq!(decode_exact([op(0x20), 0], &nested()), Command::TlbiEl2All);
        assert_eq!(decode_exact([op(0x21) | asid(5), 0], &nested()), Command::TlbiEl2Asid { asid: 5 });
        let c = decode_exact([op(0x22) | asid(5), 1 | 0x7000], &nested());
        assert!(matches!(c, Command::TlbiEl2Va { asid: 5, va: TlbiAddr { addr: 0x7000, leaf: true, .. } }));
    }

    #[test]
    fn linux_ats_pri_resume_and_sync_decode() {
        // ATC_INV with a PASID and Global, 16 KiB at 0x12340000.
        let w = [op(0x40) | SSV | (1 << 9) | ssid(0x99) | sid(0x300), prep(5, 0, 2) | (0x1234_0000 & VA_MASK)];
        let c = decode_exact(w, &nested());
        assert_eq!(c, Command::AtcInv { sid: 0x300, ssid: Some(0x99), global: true, addr: 0x1234_0000, size: 2 });
        assert_eq!(c.atc_range(), Some((0x1234_0000, 0x1234_3fff)));
        let all = Command::AtcInv { sid: 0, ssid: None, global: false, addr: 0x5000, size: 52 };
        assert_eq!(all.atc_range(), Some((0, u64::MAX)));
        // PRI_RESP: Success for group 5.
        let c = decode_exact([op(0x41) | SSV | ssid(1) | sid(0x300), prep(8, 0, 5) | prep(13, 12, 2)], &nested());
        assert_eq!(c, Command::PriResp { sid: 0x300, ssid: Some(1), prg_index: 5, resp: PriResponse::Success });
        // RESUME: Linux's RESP values TERM 0, RETRY 1, ABORT 2 (Ac, Ab).
        for (resp, action) in [
            (0, ResumeAction::Terminate { abort: false }),
            (1, ResumeAction::Retry),
            (2, ResumeAction::Terminate { abort: true }),
        ] {
            let c = decode_exact([op(0x44) | prep(13, 12, resp) | sid(0x300), prep(15, 0, 0x77)], &nested());
            assert_eq!(c, Command::Resume { sid: 0x300, stag: 0x77, action });
        }
        // CMD_SYNC as Linux issues it without MSIs (CS = SEV), and with one.
        let c = decode_exact([op(0x46) | prep(13, 12, 2) | prep(23, 22, 3) | prep(27, 24, 0xf), 0], &nested());
        assert_eq!(c, Command::Sync(Sync { signal: SyncSignal::Sev, msi_addr: 0, msi_data: 0, msi_attr: 0xf, msh: 3 }));
        let msi = 0x0000_0008_0800_0040u64;
        let c =
            decode_exact([op(0x46) | prep(13, 12, 1) | prep(63, 32, 0xdead), msi & 0x000f_ffff_ffff_fffc], &nested());
        assert_eq!(
            c,
            Command::Sync(Sync { signal: SyncSignal::Irq, msi_addr: msi, msi_data: 0xdead, msi_attr: 0, msh: 0 })
        );
    }

    #[test]
    fn remaining_commands_decode() {
        let w = [op(0x02) | SSV | ssid(3) | sid(4), prep(68 - 64, 0, 5) | prep(73 - 64, 69 - 64, 2) | 0xabcd_e000];
        let c = decode_exact(w, &nested());
        assert_eq!(
            c,
            Command::PrefetchAddr { sid: 4, ssid: Some(3), addr: 0xabcd_e000, size: 5, stride: 2, ns: false }
        );
        assert_eq!(decode_exact([op(0x45) | sid(4), 0], &nested()), Command::StallTerm { sid: 4 });
        assert_eq!(decode_exact([op(0x18), 0], &nested()), Command::TlbiEl3All);
        let c = decode_exact([op(0x1a), 0x1000], &nested());
        assert!(matches!(c, Command::TlbiEl3Va { va: TlbiAddr { addr: 0x1000, .. } }));
        let c = decode_exact([op(0x23), 0x2000], &nested());
        assert!(matches!(c, Command::TlbiEl2Vaa { va: TlbiAddr { addr: 0x2000, .. } }));
        let caps = CommandCaps { mpam: true, ..strict(nested()) };
        assert_eq!(decode_exact([op(0x07) | vmid(6), 0], &caps), Command::CfgiVmsPidm { vmid: 6 });
        let c = decode_exact([op(0x04) | sid(0x1234), 3], &nested());
        assert_eq!(c.sid_range(), Some((0x1230, 0x123f)));
    }

    #[test]
    fn reserved_fields_are_ignored_and_not_reencoded() {
        // RES0 bits 9:8 and 127:65 of CFGI_STE set: same command.
        let c = decode([op(0x03) | 0x300 | sid(1), u64::MAX], &nested()).unwrap();
        assert_eq!(c, Command::CfgiSte { sid: 1, leaf: true });
        assert_eq!(c.encode(), [op(0x03) | sid(1), 1]);
    }

    // ------------------------------------------------------------ legality

    #[test]
    fn reserved_opcodes_are_illegal_in_both_modes() {
        for o in [0x00u8, 0x08, 0x0a, 0x0f, 0x14, 0x17, 0x19, 0x1b, 0x24, 0x29, 0x2b, 0x31, 0x42, 0x43, 0x47]
            .into_iter()
            .chain([0x50, 0x58, 0x5a, 0x60, 0x70, 0x73, 0x80, 0x8f, 0x90, 0xff])
        {
            for caps in [nested(), strict(nested())] {
                assert_eq!(decode([u64::from(o), 0], &caps), ill(o, IllegalReason::Opcode), "{o:#x}");
            }
        }
    }

    #[test]
    fn qemu_rejects_opcode_7_even_with_mpam() {
        let caps = CommandCaps { mpam: true, ..nested() };
        assert_eq!(decode([op(0x07), 0], &caps), ill(7, IllegalReason::Opcode));
        assert_eq!(decode([op(0x07), 0], &strict(nested())), ill(7, IllegalReason::NoMpam));
        let caps = CommandCaps { mpam: true, ..strict(nested()) };
        assert_eq!(decode([op(0x07) | 1 << 10, 0], &caps), ill(7, IllegalReason::SecureStream));
    }

    #[test]
    fn ssec_is_checked_for_cfgi_by_qemu_and_everywhere_by_the_architecture() {
        const SSEC: u64 = 1 << 10;
        for o in [0x03u8, 0x04, 0x05, 0x06] {
            assert_eq!(decode([op(o) | SSEC, 0], &nested()), ill(o, IllegalReason::SecureStream));
        }
        let caps = CommandCaps { stall: true, ..strict(nested()) };
        for o in [0x01u8, 0x02, 0x44, 0x45] {
            assert!(decode([op(o) | SSEC, 0], &nested()).is_ok(), "{o:#x}");
            assert_eq!(decode([op(o) | SSEC, 0], &caps), ill(o, IllegalReason::SecureStream));
        }
    }

    #[test]
    fn unadvertised_features_are_accepted_by_qemu_and_illegal_architecturally() {
        let s = strict(nested());
        let cases = [
            (0x18u8, IllegalReason::SecureOnly),
            (0x1a, IllegalReason::SecureOnly),
            (0x20, IllegalReason::NoHyp),
            (0x21, IllegalReason::NoHyp),
            (0x22, IllegalReason::NoHyp),
            (0x23, IllegalReason::NoHyp),
            (0x40, IllegalReason::NoAts),
            (0x41, IllegalReason::NoPri),
            (0x44, IllegalReason::NoStall),
            (0x45, IllegalReason::NoStall),
        ];
        for (o, reason) in cases {
            assert!(decode([op(o), 0], &nested()).is_ok(), "{o:#x}");
            assert_eq!(decode([op(o), 0], &s), ill(o, reason));
        }
        // Advertised, they are legal.
        let all = CommandCaps { hyp: true, ats: true, pri: true, stall: true, ..s };
        for o in [0x20u8, 0x21, 0x22, 0x23, 0x40, 0x41, 0x44, 0x45] {
            assert!(decode([op(o), 0], &all).is_ok(), "{o:#x}");
        }
        // EL3 stays Secure-only.
        assert_eq!(decode([op(0x18), 0], &all), ill(0x18, IllegalReason::SecureOnly));
    }

    #[test]
    fn stage_checks() {
        let s1 = command_caps(true, false);
        let s2 = command_caps(false, true);
        for o in [0x10u8, 0x11, 0x12, 0x13] {
            assert!(decode([op(o), 0], &s1).is_ok());
            assert_eq!(decode([op(o), 0], &s2), ill(o, IllegalReason::NoStage1));
            assert_eq!(decode([op(o), 0], &strict(s2)), ill(o, IllegalReason::NoStage1));
        }
        for o in [0x28u8, 0x2a] {
            assert!(decode([op(o), 0], &s2).is_ok());
            assert_eq!(decode([op(o), 0], &s1), ill(o, IllegalReason::NoStage2));
            assert_eq!(decode([op(o), 0], &strict(s1)), ill(o, IllegalReason::NoStage2));
        }
        // QEMU accepts CFGI_CD(_ALL) without stage 1; the architecture does not.
        for o in [0x05u8, 0x06] {
            assert!(decode([op(o), 0], &s2).is_ok());
            assert_eq!(decode([op(o), 0], &strict(s2)), ill(o, IllegalReason::NoStage1));
        }
        // TLBI_NSNH_ALL is valid whatever the stages.
        assert_eq!(decode([op(0x30), 0], &strict(s2)), Ok(Command::TlbiNsnhAll));
    }

    #[test]
    fn sync_reserved_cs() {
        let w = [op(0x46) | prep(13, 12, 3), 0];
        assert!(matches!(decode(w, &nested()), Ok(Command::Sync(Sync { signal: SyncSignal::Irq, .. }))));
        assert_eq!(decode(w, &strict(nested())), ill(0x46, IllegalReason::ReservedValue));
    }

    #[test]
    fn pri_resp_reserved_response() {
        let w = [op(0x41), prep(13, 12, 3)];
        let caps = CommandCaps { pri: true, ..strict(nested()) };
        assert!(matches!(decode(w, &nested()), Ok(Command::PriResp { resp: PriResponse::Reserved, .. })));
        assert_eq!(decode(w, &caps), ill(0x41, IllegalReason::ReservedValue));
    }

    #[test]
    fn range_reserved_encoding() {
        // TG != 0, NUM = SCALE = TTL = 0: reserved, ILLEGAL architecturally.
        let w = [op(0x12), tg(1) | 0x1000];
        assert!(decode(w, &nested()).is_ok());
        assert_eq!(decode(w, &strict(nested())), ill(0x12, IllegalReason::ReservedValue));
        // With a TTL hint or a range it is fine.
        assert!(decode([op(0x12), tg(1) | ttl(3) | 0x1000], &strict(nested())).is_ok());
        assert!(decode([op(0x12) | num(1), tg(1) | 0x1000], &strict(nested())).is_ok());
        // 16 KiB with TTL 1 without DS: TTL reads as 0, so reserved again.
        let w = [op(0x2a), tg(2) | ttl(1) | 0x4000];
        assert_eq!(decode(w, &strict(nested())), ill(0x2a, IllegalReason::ReservedValue));
        let ds = CommandCaps { ds: true, ..strict(nested()) };
        assert!(decode(w, &ds).is_ok());
        // Without RIL the fields are RES0: ignored, not reserved.
        let noril = CommandCaps { ril: false, ..strict(nested()) };
        let Ok(Command::TlbiNhVa { va, .. }) = decode([op(0x12) | num(5), tg(1) | 0x1000], &noril) else { panic!() };
        assert_eq!((va.tg, va.num, va.scope().ranged), (0, 0, false));
    }

    #[test]
    fn ipa_high_bits_kept_by_qemu_only() {
        let w = [op(0x2a) | vmid(1), 0xff00_0000_0000_1000];
        let Ok(Command::TlbiS2Ipa { ipa, .. }) = decode(w, &nested()) else { panic!() };
        assert_eq!(ipa.addr, 0xff00_0000_0000_1000);
        let Ok(Command::TlbiS2Ipa { ipa, .. }) = decode(w, &strict(nested())) else { panic!() };
        assert_eq!(ipa.addr, 0x1000);
    }

    #[test]
    fn substreams_without_ssidsize() {
        let w = [op(0x01) | SSV | ssid(5) | sid(1), 0];
        assert_eq!(decode(w, &nested()), Ok(Command::PrefetchConfig { sid: 1, ssid: Some(5) }));
        assert_eq!(decode(w, &strict(nested())), Ok(Command::PrefetchConfig { sid: 1, ssid: None }));
        let caps = CommandCaps { ssid_bits: 20, ..strict(nested()) };
        assert_eq!(decode(w, &caps), Ok(Command::PrefetchConfig { sid: 1, ssid: Some(5) }));
    }

    #[test]
    fn error_codes() {
        let e = decode([0, 0], &nested()).unwrap_err();
        assert_eq!((e.code(), e.code().code()), (CmdqError::Ill, 1));
        assert_eq!(CommandError::FetchAbort.code().code(), 2);
        assert_eq!(CommandError::AtcInvSync.code().code(), 3);
        assert_eq!(CmdqError::None.code(), 0);
    }

    #[test]
    fn host_forwarding_uses_the_canonical_words() {
        let w = [op(0x12) | vmid(1) | asid(7) | 0x300, 1 | ttl(3) | tg(1) | 1 << 7 | 0x5000];
        let c = decode(w, &nested()).unwrap();
        let Some(Invalidation::ArmSmmuV3 { cmd }) = c.to_iommufd() else { panic!() };
        assert_eq!(cmd, [op(0x12) | vmid(1) | asid(7), 1 | ttl(3) | tg(1) | 0x5000]);
        for words in
            [[op(0x30), 0], [op(0x10), 0], [op(0x11), 0], [op(0x13), 0], [op(0x40), 0], [op(0x05), 0], [op(0x06), 0]]
        {
            assert!(decode(words, &nested()).unwrap().to_iommufd().is_some(), "{words:x?}");
        }
        for words in [[op(0x03), 0], [op(0x04), 0], [op(0x28), 0], [op(0x2a), 0], [op(0x46), 0], [op(0x01), 0]] {
            assert!(decode(words, &nested()).unwrap().to_iommufd().is_none(), "{words:x?}");
        }
    }

    // ------------------------------------------------------------ range math

    fn range(addr: u64, tg: u8, num: u8, scale: u8, ttl: u8) -> InvalidationScope {
        TlbiAddr { addr, tg, num, scale, ttl, ..TlbiAddr::default() }.scope()
    }

    #[test]
    fn non_range_form_is_one_page_of_any_granule_and_level() {
        let s = range(0x1234_5000, 0, 31, 31, 3);
        assert_eq!((s.first, s.last, s.granule, s.level, s.ranged), (0x1234_5000, 0x1234_5fff, None, None, false));
        assert_eq!(s.covering(), (0x1234_5000, 0x1234_5fff));
        // Bits 11:0 are not part of the address.
        assert_eq!(range(0x1234_5fff, 0, 0, 0, 0).first, 0x1234_5000);
        assert_eq!(range(u64::MAX, 0, 0, 0, 0).last, u64::MAX);
    }

    #[test]
    fn single_granule_with_level_hint_covers_a_whole_entry() {
        // 4 KiB, level 2: a 2 MiB block.
        let s = range(0x20_1000, 1, 0, 0, 2);
        assert_eq!((s.first, s.last, s.level), (0x20_1000, 0x20_1fff, Some(2)));
        assert_eq!(s.leaf_size(), Some(2 << 20));
        assert_eq!(s.covering(), (0x20_0000, 0x3f_ffff));
        // 4 KiB level 1: 1 GiB; 64 KiB level 2: 512 MiB, level 1: 4 TiB.
        assert_eq!(range(0, 1, 0, 0, 1).leaf_size(), Some(1 << 30));
        assert_eq!(range(0, 3, 0, 0, 2).leaf_size(), Some(512 << 20));
        assert_eq!(range(0, 3, 0, 0, 1).leaf_size(), Some(1 << 42));
        assert_eq!(range(0, 3, 0, 0, 3).leaf_size(), Some(64 << 10));
        // 16 KiB: level 1 only with DS.
        assert_eq!(range(0, 2, 0, 0, 1).level, None);
        let ds = TlbiAddr { tg: 2, ttl: 1, ds: true, ..TlbiAddr::default() }.scope();
        assert_eq!((ds.level, ds.leaf_size()), (Some(1), Some(1 << 36)));
        assert_eq!(range(0, 2, 0, 0, 2).leaf_size(), Some(32 << 20));
        // Covering near the top does not overflow.
        let top = range(u64::MAX - 0xfff, 1, 0, 0, 1);
        assert_eq!(top.covering(), (u64::MAX - (1 << 30) + 1, u64::MAX));
    }

    #[test]
    fn tg_is_not_encoded_as_in_a_cd() {
        assert_eq!(tlbi_granule(0), None);
        for g in [Granule::Size4K, Granule::Size16K, Granule::Size64K] {
            assert_eq!(tlbi_granule(tlbi_tg(g)), Some(g));
            assert_eq!(tlbi_granule(tlbi_tg(g) | 0xfc), Some(g), "only the low two bits count");
        }
        // 0b01 is 4 KiB here, 64 KiB in CD.TG0 and 16 KiB in CD.TG1.
        assert_eq!(tlbi_granule(1), Some(Granule::Size4K));
        assert_eq!((Granule::from_tg0(1), Granule::from_tg1(1)), (Some(Granule::Size64K), Some(Granule::Size16K)));
        // Leaf entry sizes: a page at level 3, blocks above; a level
        // beyond 3 (only a hand-made scope has one) counts as 3.
        for g in [Granule::Size4K, Granule::Size16K, Granule::Size64K] {
            for level in 0..=255u8 {
                let s = InvalidationScope {
                    first: 0,
                    last: 0,
                    granule: Some(g),
                    level: Some(level),
                    leaf_only: false,
                    ranged: true,
                    clipped: false,
                };
                let shift = g.shift() + 3u32.saturating_sub(u32::from(level)) * g.stride();
                assert_eq!(s.leaf_size(), 1u64.checked_shl(shift), "{g:?} level {level}");
            }
        }
    }

    #[test]
    fn num_and_scale_extremes_for_each_granule() {
        for (tg, shift) in [(1u8, 12u32), (2, 14), (3, 16)] {
            let s = range(0, tg, 0, 0, 3);
            assert_eq!(s.last, (1u64 << shift) - 1);
            let s = range(0, tg, 31, 0, 0);
            assert_eq!(s.last, (32u64 << shift) - 1);
            let s = range(0, tg, 31, 31, 0);
            assert_eq!(s.last, (32u64 << (31 + shift)) - 1);
            assert!(!s.clipped);
            // SCALE beyond 39 (6-bit field with DS) counts as 39.
            let s = range(0, tg, 0, 63, 0);
            assert_eq!(s.last, (1u64 << (39 + shift)) - 1);
            assert_eq!(range(0, tg, 0, 40, 0), range(0, tg, 0, 39, 0));
        }
        // The largest range: 32 << (39 + 16) = 2^60 bytes.
        assert_eq!(range(0, 3, 31, 39, 0).last, (1u64 << 60) - 1);
    }

    #[test]
    fn ranges_past_the_top_are_clipped() {
        let s = range(0xffff_ffff_ffff_f000, 1, 1, 0, 0);
        assert_eq!((s.first, s.last, s.clipped), (0xffff_ffff_ffff_f000, u64::MAX, true));
        let s = range(0xffff_ffff_ffff_e000, 1, 1, 0, 0);
        assert_eq!((s.last, s.clipped), (u64::MAX, false));
        let s = range(0xfff0_0000_0000_0000, 3, 31, 39, 3);
        assert!(s.clipped && s.last == u64::MAX);
    }

    #[test]
    fn out_of_range_field_values_use_the_field_width() {
        assert_eq!(range(0, 7, 0, 0, 7), range(0, 3, 0, 0, 3));
        assert_eq!(range(0, 1, 200, 0, 0), range(0, 1, 200 % 32, 0, 0));
        assert_eq!(range(0, 1, 0, 200, 0), range(0, 1, 0, 200 % 64, 0));
        assert_eq!(range(0, 4, 5, 5, 5), range(0, 0, 0, 0, 0));
    }

    #[test]
    fn aligned_blocks_match_qemus_split() {
        // 3 pages from 0x1000: [0x1000] then [0x2000, 0x3000].
        let s = range(0x1000, 1, 2, 0, 0);
        assert_eq!(s.aligned_blocks().collect::<Vec<_>>(), vec![(0x1000, 0xfff), (0x2000, 0x1fff)]);
        // Everything is one block.
        let all = InvalidationScope { first: 0, last: u64::MAX, ..s };
        assert_eq!(all.aligned_blocks().collect::<Vec<_>>(), vec![(0, u64::MAX)]);
        let top = InvalidationScope { first: u64::MAX, last: u64::MAX, ..s };
        assert_eq!(top.aligned_blocks().collect::<Vec<_>>(), vec![(u64::MAX, 0)]);
        let empty = InvalidationScope { first: 5, last: 4, ..s };
        assert_eq!(empty.aligned_blocks().count(), 0);
    }

    /// Linux's arm_smmu_tlb_inv_range_cmd: range commands covering
    /// `size` bytes at `iova` with 4 KiB pages. Leaf invalidations carry
    /// the level-3 TTL; others round a single-page remainder up to two
    /// pages to avoid the reserved NUM = SCALE = TTL = 0 encoding.
    fn linux_range_cmds(mut iova: u64, size: u64, leaf: bool) -> Vec<[u64; 2]> {
        let tgs = 12u32;
        let mut num_pages = size >> tgs;
        let level = if leaf { ttl(3) | 1 } else { 0 };
        if !leaf && num_pages & 31 == 1 {
            num_pages += 1;
        }
        let mut out = Vec::new();
        while num_pages > 0 {
            let sc = num_pages.trailing_zeros();
            let n = (num_pages >> sc) & 31;
            out.push([op(0x12) | num(n as u8 - 1) | scale(sc as u8) | asid(1), tg(1) | level | (iova & VA_MASK)]);
            iova += n << (sc + tgs);
            num_pages -= n << sc;
        }
        out
    }

    #[test]
    fn linux_range_commands_tile_the_range() {
        let cases = [(0x4000_0000u64, 0x1000u64), (0x4000_1000, 0x21_3000), (0xffff_0000_0000_0000, 0x8765_4000)];
        for (iova, size) in cases {
            for leaf in [true, false] {
                let mut next = iova;
                for w in linux_range_cmds(iova, size, leaf) {
                    let Ok(Command::TlbiNhVa { va, .. }) = decode(w, &strict(nested())) else { panic!("{w:x?}") };
                    let s = va.scope();
                    assert_eq!((s.first, s.leaf_only, s.level), (next, leaf, leaf.then_some(3)));
                    next = s.last + 1;
                }
                // Non-leaf single pages are rounded up to two.
                let extra = if !leaf && (size >> 12) & 31 == 1 { 0x1000 } else { 0 };
                assert_eq!(next, iova + size + extra);
            }
        }
    }

    // ------------------------------------------------------------ randomized

    /// A word biased towards valid opcodes and interesting bits.
    fn random_word0(rng: &mut Rng) -> u64 {
        let ops = [0x01u64, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x10, 0x11, 0x12, 0x13, 0x18, 0x1a, 0x20, 0x21];
        let more = [0x22u64, 0x23, 0x28, 0x2a, 0x30, 0x40, 0x41, 0x44, 0x45, 0x46];
        let r = rng.next();
        match r % 4 {
            0 => r,
            _ => {
                let i = (r >> 8) as usize % (ops.len() + more.len());
                let o = if i < ops.len() { ops[i] } else { more[i - ops.len()] };
                (rng.next() & !0xff) | o
            }
        }
    }

    #[test]
    fn random_commands_never_panic_and_reencode() {
        let mut rng = Rng(0x5eed_c0ff_ee12_3457);
        let mut base = [nested(), strict(nested()), command_caps(false, true), command_caps(true, false)];
        base[1].ds = true;
        let all =
            CommandCaps { hyp: true, ats: true, pri: true, stall: true, mpam: true, ssid_bits: 20, ..strict(nested()) };
        let noril = CommandCaps { ril: false, ..strict(command_caps(true, false)) };
        let mut accepted = 0;
        for i in 0..200_000 {
            let caps = [base[0], base[1], base[2], base[3], all, noril][i % 6];
            let words = [random_word0(&mut rng), rng.next()];
            match decode(words, &caps) {
                Ok(c) => {
                    accepted += 1;
                    assert_eq!(decode(c.encode(), &caps), Ok(c), "{words:x?}");
                    let _ = (c.name(), c.sid_range(), c.atc_range(), c.to_iommufd());
                    if let Command::TlbiNhVa { va, .. } | Command::TlbiS2Ipa { ipa: va, .. } = c {
                        check_scope(&va.scope());
                    }
                }
                Err(e) => assert_eq!(e.code(), CmdqError::Ill),
            }
        }
        assert!(accepted > 50_000, "{accepted}");
    }

    fn check_scope(s: &InvalidationScope) {
        assert!(s.first <= s.last);
        assert_eq!(s.first % 4096, 0);
        let (lo, hi) = s.covering();
        assert!(lo <= s.first && s.last <= hi);
        let mut next = Some(s.first);
        let mut count = 0;
        for (start, mask) in s.aligned_blocks() {
            count += 1;
            assert_eq!(Some(start), next);
            assert_eq!(start & mask, 0, "block {start:#x}/{mask:#x} unaligned");
            assert!(mask == u64::MAX || (mask + 1).is_power_of_two());
            next = start.checked_add(mask).and_then(|e| e.checked_add(1));
            assert!(start + mask <= s.last);
        }
        assert!(count <= 128);
        assert_eq!(next, s.last.checked_add(1));
    }

    #[test]
    fn random_range_fields_never_panic() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        for _ in 0..100_000 {
            let r = rng.next();
            let a = TlbiAddr {
                addr: rng.next(),
                leaf: r & 1 != 0,
                tg: (r >> 8) as u8,
                ttl: (r >> 16) as u8,
                num: (r >> 24) as u8,
                scale: (r >> 32) as u8,
                ttl128: r & 2 != 0,
                ds: r & 4 != 0,
            };
            check_scope(&a.scope());
            let _ = a.reserved_encoding();
            let c = Command::AtcInv { sid: 0, ssid: None, global: false, addr: rng.next(), size: (r >> 40) as u8 };
            let (lo, hi) = c.atc_range().unwrap();
            assert!(lo <= hi);
            let c = Command::CfgiSteRange { sid: r as u32, range: (r >> 48) as u8 };
            let (lo, hi) = c.sid_range().unwrap();
            assert!(lo <= r as u32 && r as u32 <= hi);
        }
    }
}
