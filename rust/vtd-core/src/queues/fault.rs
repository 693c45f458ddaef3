//! Primary fault logging: fault reasons, fault recording registers and the
//! fault event interrupt.
//!
//! Conventions: a translation failure is described by a [`Fault`] whose
//! [`FaultReason`] carries the architected reason code (VT-d spec, "Fault
//! Reason Encodings"): codes 1h..Eh for legacy-mode translation, 20h..26h
//! for interrupt remapping, 30h..91h for scalable-mode translation.
//! Interrupt-remapping faults are recorded with the interrupt index in
//! bits 63:48 of the FI field ([`Fault::interrupt`],
//! [`FaultRecord::interrupt_index`]). Recording follows the C device: the
//! records form a ring indexed by `next_frcd`; a fault from a source-id that
//! already has a pending record is collapsed (dropped); a fault that finds
//! the next record still pending sets FSTS.PFO; PPF is recomputed as the OR
//! of all F bits; a fault event (FECTL.IP, then an MSI unless FECTL.IM) is
//! raised only when no FSTS status field was already set.

use iommu_core::layout::{address_field, field_address};
use bilge::prelude::*;

use crate::effects::{Effects, Msi};
use crate::registers::{
    FstsReg,
    RegisterFile, EVT_IM, EVT_IP, FEADDR, FECTL, FEDATA, FEUADDR, FRCD_REG_NR,
    FRCD_REG_OFFSET, FSTS, FSTS_EVENT_FIELDS, FSTS_PFO,
    FSTS_PPF,
};

/// DMA remapping (legacy and scalable mode) and interrupt remapping fault
/// reasons.
///
/// Scalable-mode variants carry the condition label of the spec's
/// scalable-mode fault table in their documentation (RTA = root table
/// address, SRT = scalable root table, SCT = scalable context table, SPD =
/// PASID directory, SPT = PASID table, SFS = first stage, SSS = second
/// stage, SGN = general).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultReason {
    /// 1h: the present bit of the root entry is clear.
    RootEntryNotPresent,
    /// 2h: the present bit of the context entry is clear.
    ContextEntryNotPresent,
    /// 3h: invalid programming of a context entry (unsupported AW or TT,
    /// or the SLPTPTR table could not be accessed).
    ContextEntryInvalid,
    /// 4h: input address above 2^X - 1 (X = min(MGAW, context AGAW)).
    AddressBeyondMgaw,
    /// 5h: write request without write permission.
    Write,
    /// 6h: read request without read permission.
    Read,
    /// 7h: a second-stage paging entry (below the root level) could not be
    /// accessed.
    PagingEntryInvalid,
    /// 8h: the root entry could not be accessed.
    RootTableInvalid,
    /// 9h: the context entry could not be accessed.
    ContextTableInvalid,
    /// Ah: non-zero reserved field in a present root entry.
    RootEntryReserved,
    /// Bh: non-zero reserved field in a present context entry.
    ContextEntryReserved,
    /// Ch: non-zero reserved field in a present second-stage paging entry.
    PagingEntryReserved,
    /// Dh: request blocked by the translation type of the context entry.
    ContextEntryTranslationType,
    /// Eh: translated address falls in the interrupt address range.
    InterruptAddress,

    // ---- interrupt remapping -----------------------------------------
    /// 20h: a reserved field of a remappable-format interrupt request is
    /// set (data bits 31:16, or an address outside the interrupt window).
    IrRequestReserved,
    /// 21h: the interrupt index is not below the table size (IRTA.S).
    IrIndexBeyondTable,
    /// 22h: the present bit of the IRTE is clear.
    IrteNotPresent,
    /// 23h: the IRTE could not be read from the interrupt remapping table.
    IrTableAccess,
    /// 24h: non-zero reserved field (or reserved encoding) in a present
    /// IRTE.
    IrteReserved,
    /// 25h: compatibility-format interrupt blocked (GSTS.CFIS clear, or
    /// extended interrupt mode enabled).
    IrCompatibilityBlocked,
    /// 26h: the requester failed source-id validation (IRTE SID/SQ/SVT).
    IrSourceIdInvalid,

    // ---- scalable mode ---------------------------------------------
    /// 30h (RTA.1): the root table address is invalid.
    SmRootTableAddressInvalid,
    /// 31h (RTA.2): request-with-PASID while RTADDR.TTM is legacy.
    SmTtmLegacyWithPasid,
    /// 38h (SRT.1): the scalable-mode root entry could not be accessed.
    SmRootEntryAccess,
    /// 39h (SRT.2): the present bit (LP/UP) of the root entry half is clear.
    SmRootEntryNotPresent,
    /// 3Ah (SRT.3): non-zero reserved field in a present root entry half.
    SmRootEntryReserved,
    /// 40h (SCT.1): the scalable-mode context entry could not be accessed.
    SmContextEntryAccess,
    /// 41h (SCT.2): the present bit of the context entry is clear.
    SmContextEntryNotPresent,
    /// 42h (SCT.3): non-zero reserved field in a present context entry.
    SmContextEntryReserved,
    /// 43h (SCT.4): invalid programming of a present context entry.
    SmContextEntryInvalid,
    /// 44h (SCT.5): translation request with DTE clear.
    SmContextDteClear,
    /// 45h (SCT.6): request-with-PASID with PASIDE clear.
    SmContextPasidDisabled,
    /// 46h (SCT.7): the PASID is beyond the PASID directory size (PDTS).
    SmContextPasidTooLarge,
    /// 47h (SCT.8): page request with PRE clear.
    SmContextPreClear,
    /// 48h (SCT.9): RID_PASID of the context entry is invalid (beyond the
    /// PASID directory or the supported PASID width).
    SmContextRidPasidInvalid,
    /// 50h (SPD.1): the PASID directory entry could not be accessed.
    PasidDirEntryAccess,
    /// 51h (SPD.2): the present bit of the PASID directory entry is clear.
    PasidDirEntryNotPresent,
    /// 52h (SPD.3): non-zero reserved field in a present PASID directory
    /// entry.
    PasidDirEntryReserved,
    /// 58h (SPT.1): the PASID table entry could not be accessed.
    PasidEntryAccess,
    /// 59h (SPT.2): the present bit of the PASID table entry is clear.
    PasidEntryNotPresent,
    /// 5Ah (SPT.3): non-zero reserved field in a present PASID table entry.
    PasidEntryReserved,
    /// 5Bh (SPT.4): invalid programming of a present PASID table entry
    /// (unsupported PGTT, AW or FLPM).
    PasidEntryInvalid,
    /// 5Ch (SPT.5): execute request with ERE clear.
    PasidEntryEreClear,
    /// 5Dh (SPT.6): supervisor request with SRE clear.
    PasidEntrySreClear,
    /// 70h (SFS.1): a first-stage paging entry below the root could not be
    /// accessed.
    FsEntryAccess,
    /// 71h (SFS.2): the present bit of a first-stage paging entry is clear.
    FsEntryNotPresent,
    /// 72h (SFS.3): non-zero reserved field in a present first-stage paging
    /// entry.
    FsEntryReserved,
    /// 73h (SFS.4): the first-stage root table (FSPTPTR) could not be
    /// accessed.
    FsRootAccess,
    /// 74h (SFS.5): nested: a first-stage table address is beyond the
    /// second-stage address width.
    FsTableBeyondSsAgaw,
    /// 75h (SFS.6): nested: no second-stage read permission for the
    /// first-stage root table.
    FsRootSsReadDenied,
    /// 76h (SFS.7): nested: no second-stage read permission for a
    /// first-stage table below the root.
    FsEntrySsReadDenied,
    /// 77h (SFS.8): nested: no second-stage write permission for an
    /// accessed/dirty update of a first-stage entry.
    FsEntrySsWriteDenied,
    /// 78h (SSS.1): a second-stage paging entry could not be accessed.
    SsEntryAccess,
    /// 79h (SSS.2): a second-stage paging entry has both R and W clear
    /// (not present).
    SsEntryNotPresent,
    /// 7Ah (SSS.3): non-zero reserved field in a present second-stage
    /// paging entry.
    SsEntryReserved,
    /// 7Bh (SSS.4): invalid second-stage table pointer (SSPTPTR).
    SsRootInvalid,
    /// 80h (SGN.1): the input address is not canonical for first-stage
    /// translation.
    NonCanonical,
    /// 81h (SGN.2): user request to a page with U/S clear on some level.
    FsPrivilege,
    /// 82h (SGN.3): execute request without execute permission.
    SmExecute,
    /// 83h (SGN.4.1): input address beyond the second-stage address width.
    SmAddressBeyondAgaw,
    /// 84h (SGN.4.2): nested: first-stage output address beyond the
    /// second-stage address width.
    SmNestedOutputBeyondAgaw,
    /// 85h (SGN.5): write request without write permission.
    SmWrite,
    /// 86h (SGN.6): read request without read permission.
    SmRead,
    /// 87h (SGN.7): translated address falls in the interrupt range.
    SmInterruptAddress,
    /// 90h (SFS.9): accessed/dirty update needed in a first-stage entry
    /// that is not snooped.
    FsAdUpdateNoSnoop,
    /// 91h (SFS.10): the accessed/dirty update of a first-stage entry
    /// failed.
    FsAdUpdateFailed,
}

const ALL_REASONS: [FaultReason; 66] = [
    FaultReason::RootEntryNotPresent,
    FaultReason::ContextEntryNotPresent,
    FaultReason::ContextEntryInvalid,
    FaultReason::AddressBeyondMgaw,
    FaultReason::Write,
    FaultReason::Read,
    FaultReason::PagingEntryInvalid,
    FaultReason::RootTableInvalid,
    FaultReason::ContextTableInvalid,
    FaultReason::RootEntryReserved,
    FaultReason::ContextEntryReserved,
    FaultReason::PagingEntryReserved,
    FaultReason::ContextEntryTranslationType,
    FaultReason::InterruptAddress,
    FaultReason::IrRequestReserved,
    FaultReason::IrIndexBeyondTable,
    FaultReason::IrteNotPresent,
    FaultReason::IrTableAccess,
    FaultReason::IrteReserved,
    FaultReason::IrCompatibilityBlocked,
    FaultReason::IrSourceIdInvalid,
    FaultReason::SmRootTableAddressInvalid,
    FaultReason::SmTtmLegacyWithPasid,
    FaultReason::SmRootEntryAccess,
    FaultReason::SmRootEntryNotPresent,
    FaultReason::SmRootEntryReserved,
    FaultReason::SmContextEntryAccess,
    FaultReason::SmContextEntryNotPresent,
    FaultReason::SmContextEntryReserved,
    FaultReason::SmContextEntryInvalid,
    FaultReason::SmContextDteClear,
    FaultReason::SmContextPasidDisabled,
    FaultReason::SmContextPasidTooLarge,
    FaultReason::SmContextPreClear,
    FaultReason::SmContextRidPasidInvalid,
    FaultReason::PasidDirEntryAccess,
    FaultReason::PasidDirEntryNotPresent,
    FaultReason::PasidDirEntryReserved,
    FaultReason::PasidEntryAccess,
    FaultReason::PasidEntryNotPresent,
    FaultReason::PasidEntryReserved,
    FaultReason::PasidEntryInvalid,
    FaultReason::PasidEntryEreClear,
    FaultReason::PasidEntrySreClear,
    FaultReason::FsEntryAccess,
    FaultReason::FsEntryNotPresent,
    FaultReason::FsEntryReserved,
    FaultReason::FsRootAccess,
    FaultReason::FsTableBeyondSsAgaw,
    FaultReason::FsRootSsReadDenied,
    FaultReason::FsEntrySsReadDenied,
    FaultReason::FsEntrySsWriteDenied,
    FaultReason::SsEntryAccess,
    FaultReason::SsEntryNotPresent,
    FaultReason::SsEntryReserved,
    FaultReason::SsRootInvalid,
    FaultReason::NonCanonical,
    FaultReason::FsPrivilege,
    FaultReason::SmExecute,
    FaultReason::SmAddressBeyondAgaw,
    FaultReason::SmNestedOutputBeyondAgaw,
    FaultReason::SmWrite,
    FaultReason::SmRead,
    FaultReason::SmInterruptAddress,
    FaultReason::FsAdUpdateNoSnoop,
    FaultReason::FsAdUpdateFailed,
];

impl FaultReason {
    /// The architected fault reason code recorded in FRCD.FR.
    pub fn code(&self) -> u8 {
        match self {
            FaultReason::RootEntryNotPresent => 0x1,
            FaultReason::ContextEntryNotPresent => 0x2,
            FaultReason::ContextEntryInvalid => 0x3,
            FaultReason::AddressBeyondMgaw => 0x4,
            FaultReason::Write => 0x5,
            FaultReason::Read => 0x6,
            FaultReason::PagingEntryInvalid => 0x7,
            FaultReason::RootTableInvalid => 0x8,
            FaultReason::ContextTableInvalid => 0x9,
            FaultReason::RootEntryReserved => 0xa,
            FaultReason::ContextEntryReserved => 0xb,
            FaultReason::PagingEntryReserved => 0xc,
            FaultReason::ContextEntryTranslationType => 0xd,
            FaultReason::InterruptAddress => 0xe,
            FaultReason::IrRequestReserved => 0x20,
            FaultReason::IrIndexBeyondTable => 0x21,
            FaultReason::IrteNotPresent => 0x22,
            FaultReason::IrTableAccess => 0x23,
            FaultReason::IrteReserved => 0x24,
            FaultReason::IrCompatibilityBlocked => 0x25,
            FaultReason::IrSourceIdInvalid => 0x26,
            FaultReason::SmRootTableAddressInvalid => 0x30,
            FaultReason::SmTtmLegacyWithPasid => 0x31,
            FaultReason::SmRootEntryAccess => 0x38,
            FaultReason::SmRootEntryNotPresent => 0x39,
            FaultReason::SmRootEntryReserved => 0x3a,
            FaultReason::SmContextEntryAccess => 0x40,
            FaultReason::SmContextEntryNotPresent => 0x41,
            FaultReason::SmContextEntryReserved => 0x42,
            FaultReason::SmContextEntryInvalid => 0x43,
            FaultReason::SmContextDteClear => 0x44,
            FaultReason::SmContextPasidDisabled => 0x45,
            FaultReason::SmContextPasidTooLarge => 0x46,
            FaultReason::SmContextPreClear => 0x47,
            FaultReason::SmContextRidPasidInvalid => 0x48,
            FaultReason::PasidDirEntryAccess => 0x50,
            FaultReason::PasidDirEntryNotPresent => 0x51,
            FaultReason::PasidDirEntryReserved => 0x52,
            FaultReason::PasidEntryAccess => 0x58,
            FaultReason::PasidEntryNotPresent => 0x59,
            FaultReason::PasidEntryReserved => 0x5a,
            FaultReason::PasidEntryInvalid => 0x5b,
            FaultReason::PasidEntryEreClear => 0x5c,
            FaultReason::PasidEntrySreClear => 0x5d,
            FaultReason::FsEntryAccess => 0x70,
            FaultReason::FsEntryNotPresent => 0x71,
            FaultReason::FsEntryReserved => 0x72,
            FaultReason::FsRootAccess => 0x73,
            FaultReason::FsTableBeyondSsAgaw => 0x74,
            FaultReason::FsRootSsReadDenied => 0x75,
            FaultReason::FsEntrySsReadDenied => 0x76,
            FaultReason::FsEntrySsWriteDenied => 0x77,
            FaultReason::SsEntryAccess => 0x78,
            FaultReason::SsEntryNotPresent => 0x79,
            FaultReason::SsEntryReserved => 0x7a,
            FaultReason::SsRootInvalid => 0x7b,
            FaultReason::NonCanonical => 0x80,
            FaultReason::FsPrivilege => 0x81,
            FaultReason::SmExecute => 0x82,
            FaultReason::SmAddressBeyondAgaw => 0x83,
            FaultReason::SmNestedOutputBeyondAgaw => 0x84,
            FaultReason::SmWrite => 0x85,
            FaultReason::SmRead => 0x86,
            FaultReason::SmInterruptAddress => 0x87,
            FaultReason::FsAdUpdateNoSnoop => 0x90,
            FaultReason::FsAdUpdateFailed => 0x91,
        }
    }

    /// Whether this is a scalable-mode reason (code 30h and above).
    #[inline]
    pub fn is_scalable_mode(&self) -> bool {
        self.code() >= 0x30
    }

    /// Whether this is an interrupt-remapping reason (codes 20h..2Fh).
    #[inline]
    pub fn is_interrupt_remapping(&self) -> bool {
        (0x20..0x30).contains(&self.code())
    }

    /// The reason with the given code, if it is a reason known to the
    /// model (DMA remapping in legacy or scalable mode, or interrupt
    /// remapping).
    pub fn from_code(code: u8) -> Option<FaultReason> {
        ALL_REASONS.iter().copied().find(|r| r.code() == code)
    }

    /// Whether the fault is "qualified": suppressed when the context entry
    /// used to process the request has FPD set (in scalable mode: when the
    /// context, PASID directory or PASID table entry involved has FPD set).
    /// Legacy reasons: same table as the C device. Scalable-mode reasons
    /// follow the same pattern: faults on the root-table address, on the
    /// root entry, and access/reserved errors on the context entry are not
    /// qualified, nor are access errors on PASID structures (as in the C
    /// device); everything found after a context entry was read is.
    /// Interrupt-remapping reasons: those detected in a fetched IRTE (22h,
    /// 24h, 26h) are qualified by the IRTE's FPD, as in the spec's table
    /// of interrupt-remapping fault conditions; request decoding, table
    /// size, table access and compatibility-format faults are not.
    pub fn is_qualified(&self) -> bool {
        !matches!(
            self,
            FaultReason::RootEntryNotPresent
                | FaultReason::RootTableInvalid
                | FaultReason::ContextTableInvalid
                | FaultReason::RootEntryReserved
                | FaultReason::ContextEntryReserved
                | FaultReason::IrRequestReserved
                | FaultReason::IrIndexBeyondTable
                | FaultReason::IrTableAccess
                | FaultReason::IrCompatibilityBlocked
                | FaultReason::SmRootTableAddressInvalid
                | FaultReason::SmTtmLegacyWithPasid
                | FaultReason::SmRootEntryAccess
                | FaultReason::SmRootEntryNotPresent
                | FaultReason::SmRootEntryReserved
                | FaultReason::SmContextEntryAccess
                | FaultReason::SmContextEntryReserved
                | FaultReason::PasidDirEntryAccess
                | FaultReason::PasidEntryAccess
        )
    }
}

/// A failed DMA translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Fault {
    /// Why the request failed.
    pub reason: FaultReason,
    /// Requester id (bus << 8 | devfn).
    pub sid: u16,
    /// The faulting input address (not page aligned).
    pub address: u64,
    /// The request was a write.
    pub write: bool,
    /// The PASID of a request with PASID (`None` for requests without
    /// PASID, including those processed with RID_PASID).
    pub pasid: Option<u32>,
    /// A request with PASID asked for supervisor privilege.
    pub privileged: bool,
    /// The request was a PCIe ATS translation request (recorded with
    /// FRCD.AT = 01b; untranslated requests have AT = 00b).
    pub translation_request: bool,
}

impl Fault {
    /// Build a fault description for a request without PASID.
    pub fn new(reason: FaultReason, sid: u16, address: u64, write: bool) -> Fault {
        Fault { reason, sid, address, write, pasid: None, privileged: false, translation_request: false }
    }

    /// Build the fault description of an interrupt-remapping fault: FI
    /// carries the interrupt index in bits 63:48 (bits 47:12 clear), T is
    /// 0 (interrupt requests are writes), no PASID.
    pub fn interrupt(reason: FaultReason, sid: u16, index: u16) -> Fault {
        Fault::new(reason, sid, FrcdLoInterrupt::new(index).into(), true)
    }

    /// Build a fault description for a request with PASID.
    pub fn with_pasid(
        reason: FaultReason,
        sid: u16,
        address: u64,
        write: bool,
        pasid: u32,
        privileged: bool,
    ) -> Fault {
        Fault {
            reason,
            sid,
            address,
            write,
            pasid: Some(pasid),
            privileged,
            translation_request: false,
        }
    }
}

pub use layouts::{AddressType, FrcdHi, FrcdLo, FrcdLoInterrupt};

/// Architected bit layouts of a fault recording register (VT-d 3.4,
/// 11.4.14), two 64-bit words. A module of its own because bilge's
/// generated constructors carry no documentation.
#[allow(missing_docs)]
mod layouts {
    // Every field is #[inline]: bilge copies a field's attributes onto its
    // getter and setter, which QEMU's build (debug assertions on) would
    // otherwise leave out of line (+10% instructions on a page walk).
    use bilge::prelude::*;

    /// Record bits 63:0 of a DMA remapping fault.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct FrcdLo {
        /// Bits 11:0, reserved.
        #[inline]
        pub reserved: u12,
        /// Bits 63:12, FI: the faulting page >> 12.
        #[inline]
        pub fi: u52,
    }

    /// Record bits 63:0 of an interrupt-remapping fault: FI carries the
    /// interrupt index in bits 63:48, bits 47:12 clear.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct FrcdLoInterrupt {
        /// Bits 47:0, zero.
        #[inline]
        pub reserved: u48,
        /// Bits 63:48, the interrupt index.
        #[inline]
        pub index: u16,
    }

    /// FRCD.AT: the faulting request's address type.
    #[bitsize(2)]
    #[derive(FromBits, Debug, Clone, Copy, PartialEq, Eq)]
    pub enum AddressType {
        /// 00b: untranslated request.
        Untranslated = 0,
        /// 01b: translation request.
        TranslationRequest = 1,
        /// 10b: translated request.
        Translated = 2,
        /// 11b: reserved.
        Reserved = 3,
    }

    /// Record bits 127:64.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct FrcdHi {
        /// Bits 79:64, SID: requester id.
        #[inline]
        pub sid: u16,
        /// Bits 92:80, reserved.
        #[inline]
        pub reserved: u13,
        /// Bit 93, PRIV: supervisor request (valid with PP).
        #[inline]
        pub priv_: bool,
        /// Bit 94, EXE: execute request (valid with PP; never set here).
        #[inline]
        pub exe: bool,
        /// Bit 95, PP: PV holds the request's PASID.
        #[inline]
        pub pp: bool,
        /// Bits 103:96, FR: fault reason.
        #[inline]
        pub fr: u8,
        /// Bits 123:104, PV: PASID value.
        #[inline]
        pub pv: u20,
        /// Bits 125:124, AT: address type.
        #[inline]
        pub at: AddressType,
        /// Bit 126, T: type, 0 = write, 1 = read.
        #[inline]
        pub t: bool,
        /// Bit 127, F: the record holds a fault.
        #[inline]
        pub f: bool,
    }
}

/// Decoded contents of one fault recording register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRecord {
    /// F: the record holds a pending fault.
    pub pending: bool,
    /// FR: the fault reason code.
    pub reason_code: u8,
    /// SID: requester id.
    pub sid: u16,
    /// FI: page-aligned faulting address.
    pub address: u64,
    /// The faulting request was a write (T = 0).
    pub write: bool,
    /// PV when PP is set: the request carried this PASID.
    pub pasid: Option<u32>,
    /// PRIV (meaningful only with a PASID): supervisor request.
    pub privileged: bool,
    /// AT: address type of the faulting request (0: untranslated, 1:
    /// translation request).
    pub address_type: u8,
}

impl FaultRecord {
    /// Decode the (low, high) quadwords of a record.
    pub fn from_raw(lo: u64, hi: u64) -> FaultRecord {
        let hi = FrcdHi::from(hi);
        FaultRecord {
            pending: hi.f(),
            reason_code: hi.fr(),
            sid: hi.sid(),
            address: field_address(FrcdLo::from(lo).fi(), 12),
            write: !hi.t(),
            pasid: hi.pp().then_some(hi.pv().value()),
            privileged: hi.pp() && hi.priv_(),
            address_type: hi.at() as u8,
        }
    }

    /// The interrupt index of an interrupt-remapping fault (FR in
    /// 20h..2Fh): FI bits 63:48. `None` for DMA remapping faults.
    #[inline]
    pub fn interrupt_index(&self) -> Option<u16> {
        (0x20..0x30)
            .contains(&self.reason_code)
            .then_some(FrcdLoInterrupt::from(self.address).index())
    }

    /// Encode a fault into the (low, high) quadwords, without the F bit.
    pub fn encode(fault: &Fault) -> (u64, u64) {
        let lo = FrcdLo::new(u52::new(address_field(fault.address, 12)));
        let at = if fault.translation_request {
            AddressType::TranslationRequest
        } else {
            AddressType::Untranslated
        };
        let (pp, pv) = match fault.pasid {
            // A PASID is 20 bits wide; wider values are cut as the C device does.
            Some(p) => (true, u20::new(p & 0xf_ffff)),
            None => (false, u20::new(0)),
        };
        let priv_ = pp && fault.privileged;
        let hi = FrcdHi::new(fault.sid, priv_, false, pp, fault.reason.code(), pv, at, !fault.write, false);
        (lo.into(), hi.into())
    }
}

fn frcd_hi_offset(index: u16) -> u64 {
    FRCD_REG_OFFSET + 16 * u64::from(index) + 8
}

/// Read fault record `index` from the register file.
pub fn read_record(regs: &RegisterFile, index: u16) -> Option<FaultRecord> {
    (index < FRCD_REG_NR).then(|| {
        let hi_off = frcd_hi_offset(index);
        FaultRecord::from_raw(regs.get64(hi_off - 8), regs.get64(hi_off))
    })
}

fn record_pending(regs: &RegisterFile, index: u16) -> bool {
    FrcdHi::from(regs.get64(frcd_hi_offset(index))).f()
}

/// Recompute FSTS.PPF from the F bits of all records.
pub fn update_ppf(regs: &mut RegisterFile) {
    let any = (0..FRCD_REG_NR).any(|i| record_pending(regs, i));
    regs.clear_set32(FSTS, FSTS_PPF, if any { FSTS_PPF } else { 0 });
}

/// Clear FECTL.IP once software has serviced every FSTS status field.
pub fn clear_ip_if_serviced(regs: &mut RegisterFile) {
    if regs.get32(FSTS) & FSTS_EVENT_FIELDS == 0 {
        regs.clear_set32(FECTL, EVT_IP, 0);
    }
}

/// The fault event message as currently programmed.
pub fn fault_event_msi(regs: &RegisterFile) -> Msi {
    Msi {
        address: (u64::from(regs.get32(FEUADDR)) << 32) | u64::from(regs.get32(FEADDR)),
        data: regs.get32(FEDATA),
    }
}

/// Raise a fault event for a status change, given FSTS as it was before the
/// change: nothing happens if a status field was already set.
pub fn fault_event(regs: &mut RegisterFile, pre_fsts: u32, fx: &mut Effects) {
    if pre_fsts & FSTS_EVENT_FIELDS != 0 {
        return;
    }
    let fectl = regs.clear_set32(FECTL, 0, EVT_IP);
    if fectl & EVT_IM == 0 {
        fx.interrupts.push(fault_event_msi(regs));
        regs.clear_set32(FECTL, EVT_IP, 0);
    }
}

/// Send the held fault event if FECTL.IP is set and IM was cleared.
pub fn fectl_written(regs: &mut RegisterFile, fx: &mut Effects) {
    let fectl = regs.get32(FECTL);
    if fectl & EVT_IP != 0 && fectl & EVT_IM == 0 {
        fx.interrupts.push(fault_event_msi(regs));
        regs.clear_set32(FECTL, EVT_IP, 0);
    }
}

/// What happened to a reported fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Written to the record with this index.
    Recorded(u16),
    /// Dropped: a record for the same source-id is pending.
    Collapsed,
    /// Dropped: primary fault overflow (PFO set now or already).
    Overflow,
}

/// Log a fault in the fault recording registers. `next_frcd` is the index
/// of the record the next fault goes to.
pub fn record_fault(
    regs: &mut RegisterFile,
    next_frcd: &mut u16,
    fault: &Fault,
    fx: &mut Effects,
) -> RecordOutcome {
    let fsts = regs.get32(FSTS);
    if fsts & FSTS_PFO != 0 {
        return RecordOutcome::Overflow;
    }
    let collapsed = (0..FRCD_REG_NR).any(|i| {
        let hi = FrcdHi::from(regs.get64(frcd_hi_offset(i)));
        hi.f() && hi.sid() == fault.sid
    });
    if collapsed {
        return RecordOutcome::Collapsed;
    }
    if *next_frcd >= FRCD_REG_NR {
        *next_frcd = 0;
    }
    let index = *next_frcd;
    if record_pending(regs, index) {
        regs.clear_set32(FSTS, 0, FSTS_PFO);
        fault_event(regs, fsts, fx);
        return RecordOutcome::Overflow;
    }
    let (lo, hi) = FaultRecord::encode(fault);
    let hi_off = frcd_hi_offset(index);
    regs.set64(hi_off - 8, lo);
    let mut hi = FrcdHi::from(hi);
    hi.set_f(true);
    regs.set64(hi_off, hi.into());
    if fsts & FSTS_PPF == 0 {
        let mut fsts = FstsReg::from(regs.get32(FSTS));
        // FRI is 8 bits wide (there is one fault recording register).
        fsts.set_fri(index as u8);
        regs.set32(FSTS, fsts.into());
    }
    update_ppf(regs);
    *next_frcd = if index + 1 >= FRCD_REG_NR { 0 } else { index + 1 };
    fault_event(regs, fsts, fx);
    RecordOutcome::Recorded(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    /// FRCD bits 127 (F) and 126 (T) as the specification numbers them,
    /// in the high quadword: an independent check of FrcdHi.
    const FRCD_F: u64 = 1 << 63;
    const FRCD_T: u64 = 1 << 62;

    // Raw bit positions of the record's high quadword from the
    // specification, independent of the layouts.
    const FRCD_PP: u64 = 1 << 31;
    const FRCD_PRIV: u64 = 1 << 29;

    #[test]
    fn reason_codes_roundtrip() {
        for r in ALL_REASONS {
            assert_eq!(FaultReason::from_code(r.code()), Some(r));
        }
        assert_eq!(FaultReason::from_code(0), None);
        assert_eq!(FaultReason::from_code(0xf), None);
        assert_eq!(FaultReason::from_code(0x32), None);
        assert_eq!(FaultReason::from_code(0xff), None);
    }

    #[test]
    fn reason_codes_are_unique_and_split_by_mode() {
        for (i, a) in ALL_REASONS.iter().enumerate() {
            for b in &ALL_REASONS[i + 1..] {
                assert_ne!(a.code(), b.code(), "{a:?} vs {b:?}");
            }
            assert_eq!(a.is_scalable_mode(), a.code() >= 0x30);
            assert_eq!(a.is_interrupt_remapping(), (0x20..0x30).contains(&a.code()));
        }
        let legacy = |r: &&FaultReason| !r.is_scalable_mode() && !r.is_interrupt_remapping();
        assert_eq!(ALL_REASONS.iter().filter(legacy).count(), 14);
        assert_eq!(ALL_REASONS.iter().filter(|r| r.is_interrupt_remapping()).count(), 7);
    }

    #[test]
    fn scalable_mode_codes_match_spec_table() {
        assert_eq!(FaultReason::SmRootEntryNotPresent.code(), 0x39);
        assert_eq!(FaultReason::SmContextEntryNotPresent.code(), 0x41);
        assert_eq!(FaultReason::SmContextPreClear.code(), 0x47);
        assert_eq!(FaultReason::PasidDirEntryNotPresent.code(), 0x51);
        assert_eq!(FaultReason::PasidEntryInvalid.code(), 0x5b);
        assert_eq!(FaultReason::FsEntryNotPresent.code(), 0x71);
        assert_eq!(FaultReason::FsRootAccess.code(), 0x73);
        assert_eq!(FaultReason::SsEntryReserved.code(), 0x7a);
        assert_eq!(FaultReason::NonCanonical.code(), 0x80);
        assert_eq!(FaultReason::SmWrite.code(), 0x85);
        assert_eq!(FaultReason::SmInterruptAddress.code(), 0x87);
        assert_eq!(FaultReason::FsAdUpdateFailed.code(), 0x91);
    }

    #[test]
    fn scalable_qualification_follows_structure_order() {
        assert!(!FaultReason::SmRootEntryNotPresent.is_qualified());
        assert!(!FaultReason::SmContextEntryAccess.is_qualified());
        assert!(!FaultReason::PasidDirEntryAccess.is_qualified());
        assert!(FaultReason::SmContextEntryNotPresent.is_qualified());
        assert!(FaultReason::PasidEntryNotPresent.is_qualified());
        assert!(FaultReason::FsEntryNotPresent.is_qualified());
        assert!(FaultReason::SmWrite.is_qualified());
    }

    #[test]
    fn interrupt_remapping_codes_and_qualification_match_spec() {
        let table = [
            (FaultReason::IrRequestReserved, 0x20, false),
            (FaultReason::IrIndexBeyondTable, 0x21, false),
            (FaultReason::IrteNotPresent, 0x22, true),
            (FaultReason::IrTableAccess, 0x23, false),
            (FaultReason::IrteReserved, 0x24, true),
            (FaultReason::IrCompatibilityBlocked, 0x25, false),
            (FaultReason::IrSourceIdInvalid, 0x26, true),
        ];
        for (r, code, qualified) in table {
            assert_eq!(r.code(), code, "{r:?}");
            assert_eq!(r.is_qualified(), qualified, "{r:?}");
            assert!(r.is_interrupt_remapping() && !r.is_scalable_mode());
        }
        assert_eq!(FaultReason::from_code(0x27), None, "no posted interrupts");
    }

    #[test]
    fn interrupt_fault_record_carries_index_in_fi() {
        let f = Fault::interrupt(FaultReason::IrteNotPresent, 0x0310, 0xbeef);
        let (lo, hi) = FaultRecord::encode(&f);
        assert_eq!(lo, 0xbeef_u64 << 48);
        assert_eq!(hi, 0x0310 | (0x22 << 32), "T = 0, no PASID");
        let r = FaultRecord::from_raw(lo, hi | FRCD_F);
        assert_eq!(r.interrupt_index(), Some(0xbeef));
        assert_eq!((r.sid, r.reason_code, r.write), (0x0310, 0x22, true));
        let dma = FaultRecord::from_raw(0xffff_0000_0000_0000, 6 << 32);
        assert_eq!(dma.interrupt_index(), None);
    }

    #[test]
    fn record_encoding_sets_type_for_reads() {
        let f = Fault::new(FaultReason::Read, 0x1234, 0xdead_beef, false);
        let (lo, hi) = FaultRecord::encode(&f);
        assert_eq!(lo, 0xdead_b000);
        assert_eq!(hi, 0x1234 | (6 << 32) | FRCD_T);
        let r = FaultRecord::from_raw(lo, hi | FRCD_F);
        assert!(r.pending && !r.write);
        assert_eq!((r.sid, r.reason_code, r.address), (0x1234, 6, 0xdead_b000));
        assert_eq!((r.pasid, r.privileged), (None, false));
    }

    #[test]
    fn record_encoding_carries_pasid_pp_pv_and_priv() {
        let f = Fault::with_pasid(FaultReason::SmWrite, 0x10, 0x5000, true, 0xf_abcd, true);
        let (_, hi) = FaultRecord::encode(&f);
        assert_eq!(hi, 0x10 | (0x85 << 32) | FRCD_PP | FRCD_PRIV | (0xf_abcd << 40));
        let r = FaultRecord::from_raw(0, hi);
        assert_eq!((r.pasid, r.privileged, r.write), (Some(0xf_abcd), true, true));
        // PRIV without PP is not reported; PASID bits above 20 are dropped.
        let r = FaultRecord::from_raw(0, FRCD_PRIV);
        assert_eq!((r.pasid, r.privileged), (None, false));
        let f = Fault::with_pasid(FaultReason::SmRead, 0, 0, false, u32::MAX, false);
        let (_, hi) = FaultRecord::encode(&f);
        assert_eq!((hi >> 40) & 0x3f_ffff, 0xf_ffff, "PV is 20 bits, AT stays clear");
    }
}
