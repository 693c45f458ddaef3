//! Event records (IHI 0070 §7.3) and the Event queue the SMMU produces
//! them into (§7.2, §7.4).
//!
//! Conventions:
//! * a record is four little-endian quadwords, `words[0]` holding bits 63:0;
//! * [`Event::encode`] writes the architected layout with every RES0 bit
//!   clear; fields wider than the record's are truncated;
//! * [`Event::decode`] reads any record (a host vEVENTQ's, a test's) and
//!   returns `None` only for reserved and IMPLEMENTATION DEFINED event
//!   numbers; RES0 bits and UNKNOWN fields (SubstreamID without SSV, STAG
//!   without Stall) are dropped;
//! * [`Event::encode_qemu`] writes the record as QEMU 10.2.2's C device
//!   does, where it differs (F_CD_FETCH's address, the page offset of the
//!   IPA of stage-2 faults).
//!
//! Field positions come from the figures and tables of IHI 0070 §7.3 and
//! Linux's `EVTQ_*` definitions (`arm-smmu-v3.h`). Some figures are missing
//! or garbled in the text copy of the specification at hand and no other
//! reference pins their fields down; those fields are marked "placement
//! unverified": F_BAD_ATS_TREQ's R/W/X/Priv bits and Span, F_TLB_CONFLICT's
//! Reason and attribute bits (taken as in F_CFG_CONFLICT and the fault
//! records), E_PAGE_REQUEST's permission bits, F_UUT's Reason (taken as
//! bits 79:64, as in the fetch aborts), and the Reason and GPCF of
//! F_WALK_EABT and F_CD_FETCH (taken where F_STE_FETCH and F_VMS_FETCH have
//! them). No SMMU modelled here produces any of them.
//!
//! F_CD_FETCH's FetchAddr is settled as bits 247:195 (FetchAddr\[55:3\],
//! as for F_STE_FETCH, F_VMS_FETCH and F_WALK_EABT: §7.3 lists all four as
//! reporting a fetch address, and gives F_CD_FETCH the same
//! "FetchAddr bits \[55:OAS\] are RES0" rule). The C device instead writes
//! the CD address into InputAddr (bits 191:128) and leaves bits 255:192
//! zero (`smmuv3_record_event`, `EVT_SET_ADDR`).

use bilge::prelude::*;
use iommu_core::memory::GuestMemory;
use iommu_core::queues::ring::{self, ProduceError, Ring, Wrapped};
use iommu_core::translation::vmsa::Class;

use crate::registers::{EventqCons, EventqProd, EVENTQ_ENTRY_BYTES};

pub use layout::FaultClass;

// ---------------------------------------------------------------- layouts

/// Architected event record layouts, one per quadword. A module of its own
/// only because the constructors bilge generates carry no documentation;
/// every field is documented by hand.
#[allow(missing_docs)]
pub mod layout {
    use bilge::prelude::*;

    /// The CLASS field of fault records.
    #[bitsize(2)]
    #[derive(FromBits, Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum FaultClass {
        /// 0b00: CD fetch.
        Cd = 0,
        /// 0b01: stage-1 translation table fetch.
        Tt = 1,
        /// 0b10: the input address.
        In = 2,
        /// 0b11: reserved.
        Reserved = 3,
    }

    /// Quadword 0 of every record.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct EvtWord0 {
        /// Bits 7:0: event number.
        #[inline]
        pub event: u8,
        #[inline]
        reserved: u3,
        /// Bit 11: SSV, the SubstreamID is valid.
        #[inline]
        pub ssv: bool,
        /// Bits 31:12: SubstreamID.
        #[inline]
        pub ssid: u20,
        /// Bits 63:32: StreamID.
        #[inline]
        pub sid: u32,
    }

    /// Quadword 1 of the fault records (F_UUT, F_TRANSL_FORBIDDEN,
    /// F_WALK_EABT, F_TRANSLATION, F_ADDR_SIZE, F_ACCESS, F_PERMISSION) and
    /// of the fetch aborts (F_STE_FETCH, F_CD_FETCH, F_VMS_FETCH); each
    /// record uses the subset it defines.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct EvtWord1 {
        /// Bits 79:64: STAG (stall faults) or Reason (F_UUT, fetch aborts,
        /// F_WALK_EABT).
        #[inline]
        pub tag: u16,
        /// Bit 80: GPCF, the abort came from a granule protection check.
        #[inline]
        pub gpcf: bool,
        #[inline]
        reserved: u14,
        /// Bit 95: Stall, the transaction is stalled.
        #[inline]
        pub stall: bool,
        #[inline]
        reserved: bool,
        /// Bit 97: PnU, privileged.
        #[inline]
        pub pnu: bool,
        /// Bit 98: InD, instruction.
        #[inline]
        pub ind: bool,
        /// Bit 99: RnW, read.
        #[inline]
        pub rnw: bool,
        /// Bit 100: NSIPA (Secure streams only).
        #[inline]
        pub nsipa: bool,
        #[inline]
        reserved: u2,
        /// Bit 103: S2, a stage-2 fault.
        #[inline]
        pub s2: bool,
        /// Bits 105:104: CLASS.
        #[inline]
        pub class: FaultClass,
        #[inline]
        reserved: u2,
        /// Bit 108: TTRnW, a translation table read (not write) faulted.
        #[inline]
        pub ttrnw: bool,
        #[inline]
        reserved: u19,
    }

    /// Quadword 1 of F_TLB_CONFLICT and F_CFG_CONFLICT (the F_TLB_CONFLICT
    /// bits: placement unverified).
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct EvtWord1Conflict {
        /// Bits 95:64: Reason (IMPLEMENTATION DEFINED).
        #[inline]
        pub reason: u32,
        #[inline]
        reserved: bool,
        /// Bit 97: PnU (F_TLB_CONFLICT).
        #[inline]
        pub pnu: bool,
        /// Bit 98: InD (F_TLB_CONFLICT).
        #[inline]
        pub ind: bool,
        /// Bit 99: RnW (F_TLB_CONFLICT).
        #[inline]
        pub rnw: bool,
        /// Bit 100: NSIPA (F_TLB_CONFLICT).
        #[inline]
        pub nsipa: bool,
        #[inline]
        reserved: u2,
        /// Bit 103: S2, the IPA is valid (F_TLB_CONFLICT).
        #[inline]
        pub s2: bool,
        #[inline]
        reserved: u24,
    }

    /// Quadword 1 of E_PAGE_REQUEST (permission bits: placement unverified).
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct EvtWord1PageRequest {
        #[inline]
        reserved: u33,
        /// Bit 97: uX, unprivileged execute.
        #[inline]
        pub ux: bool,
        /// Bit 98: uW, unprivileged write.
        #[inline]
        pub uw: bool,
        /// Bit 99: uR, unprivileged read.
        #[inline]
        pub ur: bool,
        #[inline]
        reserved: bool,
        /// Bit 101: pX, privileged execute.
        #[inline]
        pub px: bool,
        /// Bit 102: pW, privileged write.
        #[inline]
        pub pw: bool,
        /// Bit 103: pR, privileged read.
        #[inline]
        pub pr: bool,
        #[inline]
        reserved: u4,
        /// Bits 115:108: Span, in 4 KiB pages.
        #[inline]
        pub span: u8,
        #[inline]
        reserved: u12,
    }

    /// Quadword 1 of F_BAD_ATS_TREQ (placement unverified).
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct EvtWord1AtsRequest {
        #[inline]
        reserved: u32,
        /// Bit 96: Priv requested.
        #[inline]
        pub privileged: bool,
        /// Bit 97: X (execute) requested.
        #[inline]
        pub exec: bool,
        /// Bit 98: W (write, = !NW) requested.
        #[inline]
        pub write: bool,
        /// Bit 99: R (read) requested.
        #[inline]
        pub read: bool,
        #[inline]
        reserved: u28,
    }

    /// Quadword 2 of E_PAGE_REQUEST and F_BAD_ATS_TREQ: a page address
    /// (and F_BAD_ATS_TREQ's Span below it, placement unverified).
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct EvtWord2Page {
        /// Bits 139:128: Span in STUs (F_BAD_ATS_TREQ).
        #[inline]
        pub span: u12,
        /// Bits 191:140: InputAddr\[63:12\].
        #[inline]
        pub page: u52,
    }

    /// Quadword 3 of records reporting a fetch address.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct EvtWord3Fetch {
        #[inline]
        reserved: u3,
        /// Bits 247:195: FetchAddr\[55:3\].
        #[inline]
        pub fetch_addr: u53,
        #[inline]
        reserved: u8,
    }

    /// Quadword 3 of records reporting an IPA.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy)]
    pub struct EvtWord3Ipa {
        #[inline]
        reserved: u12,
        /// Bits 247:204: IPA\[55:12\].
        #[inline]
        pub ipa: u44,
        #[inline]
        reserved: u8,
    }
}

impl From<Class> for FaultClass {
    /// The CLASS of a stage-2 fault the walker reports.
    fn from(class: Class) -> FaultClass {
        match class {
            Class::Cd => FaultClass::Cd,
            Class::Tt => FaultClass::Tt,
            Class::In => FaultClass::In,
        }
    }
}

use layout::{
    EvtWord0, EvtWord1, EvtWord1AtsRequest, EvtWord1Conflict, EvtWord1PageRequest, EvtWord2Page, EvtWord3Fetch,
    EvtWord3Ipa,
};

// ---------------------------------------------------------------- events

/// The event numbers of IHI 0070 §7.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EventType {
    /// F_UUT.
    Uut = 0x01,
    /// C_BAD_STREAMID.
    BadStreamId = 0x02,
    /// F_STE_FETCH.
    SteFetch = 0x03,
    /// C_BAD_STE.
    BadSte = 0x04,
    /// F_BAD_ATS_TREQ.
    BadAtsTreq = 0x05,
    /// F_STREAM_DISABLED.
    StreamDisabled = 0x06,
    /// F_TRANSL_FORBIDDEN.
    TranslForbidden = 0x07,
    /// C_BAD_SUBSTREAMID.
    BadSubstreamId = 0x08,
    /// F_CD_FETCH.
    CdFetch = 0x09,
    /// C_BAD_CD.
    BadCd = 0x0a,
    /// F_WALK_EABT.
    WalkEabt = 0x0b,
    /// F_TRANSLATION.
    Translation = 0x10,
    /// F_ADDR_SIZE.
    AddrSize = 0x11,
    /// F_ACCESS.
    Access = 0x12,
    /// F_PERMISSION.
    Permission = 0x13,
    /// F_TLB_CONFLICT.
    TlbConflict = 0x20,
    /// F_CFG_CONFLICT.
    CfgConflict = 0x21,
    /// E_PAGE_REQUEST.
    PageRequest = 0x24,
    /// F_VMS_FETCH.
    VmsFetch = 0x25,
}

impl EventType {
    /// The type of an event number (None: reserved or IMPLEMENTATION
    /// DEFINED).
    pub const fn from_code(code: u8) -> Option<EventType> {
        Some(match code {
            0x01 => EventType::Uut,
            0x02 => EventType::BadStreamId,
            0x03 => EventType::SteFetch,
            0x04 => EventType::BadSte,
            0x05 => EventType::BadAtsTreq,
            0x06 => EventType::StreamDisabled,
            0x07 => EventType::TranslForbidden,
            0x08 => EventType::BadSubstreamId,
            0x09 => EventType::CdFetch,
            0x0a => EventType::BadCd,
            0x0b => EventType::WalkEabt,
            0x10 => EventType::Translation,
            0x11 => EventType::AddrSize,
            0x12 => EventType::Access,
            0x13 => EventType::Permission,
            0x20 => EventType::TlbConflict,
            0x21 => EventType::CfgConflict,
            0x24 => EventType::PageRequest,
            0x25 => EventType::VmsFetch,
            _ => return None,
        })
    }

    /// The event number.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The architecture's name ("F_TRANSLATION").
    pub const fn name(self) -> &'static str {
        match self {
            EventType::Uut => "F_UUT",
            EventType::BadStreamId => "C_BAD_STREAMID",
            EventType::SteFetch => "F_STE_FETCH",
            EventType::BadSte => "C_BAD_STE",
            EventType::BadAtsTreq => "F_BAD_ATS_TREQ",
            EventType::StreamDisabled => "F_STREAM_DISABLED",
            EventType::TranslForbidden => "F_TRANSL_FORBIDDEN",
            EventType::BadSubstreamId => "C_BAD_SUBSTREAMID",
            EventType::CdFetch => "F_CD_FETCH",
            EventType::BadCd => "C_BAD_CD",
            EventType::WalkEabt => "F_WALK_EABT",
            EventType::Translation => "F_TRANSLATION",
            EventType::AddrSize => "F_ADDR_SIZE",
            EventType::Access => "F_ACCESS",
            EventType::Permission => "F_PERMISSION",
            EventType::TlbConflict => "F_TLB_CONFLICT",
            EventType::CfgConflict => "F_CFG_CONFLICT",
            EventType::PageRequest => "E_PAGE_REQUEST",
            EventType::VmsFetch => "F_VMS_FETCH",
        }
    }
}

/// The access attributes a record reports (RnW, InD, PnU).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AccessAttrs {
    /// RnW: a read (false: a write).
    pub read: bool,
    /// InD: an instruction fetch (false: data).
    pub instruction: bool,
    /// PnU: privileged (false: unprivileged).
    pub privileged: bool,
}

/// Requested permissions of a page request, at one privilege.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PagePerms {
    /// Read.
    pub read: bool,
    /// Write.
    pub write: bool,
    /// Execute.
    pub exec: bool,
}

/// An abort fetching a configuration structure (F_STE_FETCH, F_CD_FETCH,
/// F_VMS_FETCH).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FetchAbort {
    /// StreamID.
    pub sid: u32,
    /// SubstreamID (SSV = 1).
    pub ssid: Option<u32>,
    /// The physical address fetched (bits 55:3).
    pub fetch_addr: u64,
    /// Reason (IMPLEMENTATION DEFINED; placement unverified for F_CD_FETCH).
    pub reason: u16,
    /// GPCF (placement unverified for F_CD_FETCH).
    pub gpcf: bool,
}

/// F_WALK_EABT: an abort fetching a translation table descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WalkAbort {
    /// StreamID.
    pub sid: u32,
    /// SubstreamID (SSV = 1).
    pub ssid: Option<u32>,
    /// Attributes of the input transaction.
    pub access: AccessAttrs,
    /// A stage-2 walk aborted.
    pub s2: bool,
    /// What the walk was for (TT for any stage-1 walk).
    pub class: FaultClass,
    /// The transaction's address.
    pub input_addr: u64,
    /// The descriptor's physical address (bits 55:3).
    pub fetch_addr: u64,
    /// Reason (IMPLEMENTATION DEFINED; placement unverified).
    pub reason: u16,
    /// GPCF (placement unverified).
    pub gpcf: bool,
}

/// F_TRANSLATION, F_ADDR_SIZE, F_ACCESS and F_PERMISSION.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TranslationFault {
    /// StreamID.
    pub sid: u32,
    /// SubstreamID (SSV = 1).
    pub ssid: Option<u32>,
    /// Stall = 1 with the transaction's STAG.
    pub stag: Option<u16>,
    /// Attributes of the input transaction.
    pub access: AccessAttrs,
    /// NSIPA (Secure streams only).
    pub nsipa: bool,
    /// A stage-2 fault.
    pub s2: bool,
    /// What was being translated.
    pub class: FaultClass,
    /// TTRnW: with CLASS = TT, a descriptor read (not an update) faulted.
    pub ttrnw: bool,
    /// The transaction's address.
    pub input_addr: u64,
    /// The IPA of a stage-2 fault (bits 55:12 architected).
    pub ipa: u64,
}

/// An event record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// F_UUT: unsupported upstream transaction.
    Uut {
        /// StreamID.
        sid: u32,
        /// SubstreamID (SSV = 1).
        ssid: Option<u32>,
        /// The transaction's address.
        input_addr: u64,
        /// Its incoming attributes.
        access: AccessAttrs,
        /// Reason (IMPLEMENTATION DEFINED).
        reason: u16,
    },
    /// C_BAD_STREAMID.
    BadStreamId {
        /// StreamID.
        sid: u32,
        /// SubstreamID (SSV = 1).
        ssid: Option<u32>,
    },
    /// F_STE_FETCH.
    SteFetch(FetchAbort),
    /// C_BAD_STE.
    BadSte {
        /// StreamID.
        sid: u32,
        /// SubstreamID (SSV = 1).
        ssid: Option<u32>,
    },
    /// F_BAD_ATS_TREQ (detail fields: placement unverified).
    BadAtsTreq {
        /// StreamID.
        sid: u32,
        /// SubstreamID (SSV = 1).
        ssid: Option<u32>,
        /// The requested address (bits 63:12).
        input_addr: u64,
        /// Span, in STUs.
        span: u16,
        /// Read requested.
        read: bool,
        /// Write requested.
        write: bool,
        /// Execute requested.
        exec: bool,
        /// Privileged.
        privileged: bool,
    },
    /// F_STREAM_DISABLED.
    StreamDisabled {
        /// StreamID.
        sid: u32,
    },
    /// F_TRANSL_FORBIDDEN.
    TranslForbidden {
        /// StreamID.
        sid: u32,
        /// The transaction's address.
        input_addr: u64,
        /// RnW: a read.
        read: bool,
    },
    /// C_BAD_SUBSTREAMID.
    BadSubstreamId {
        /// StreamID.
        sid: u32,
        /// SubstreamID (always valid: there is no SSV).
        ssid: u32,
    },
    /// F_CD_FETCH.
    CdFetch(FetchAbort),
    /// C_BAD_CD.
    BadCd {
        /// StreamID.
        sid: u32,
        /// SubstreamID (SSV = 1).
        ssid: Option<u32>,
    },
    /// F_WALK_EABT.
    WalkEabt(WalkAbort),
    /// F_TRANSLATION.
    Translation(TranslationFault),
    /// F_ADDR_SIZE.
    AddrSize(TranslationFault),
    /// F_ACCESS.
    Access(TranslationFault),
    /// F_PERMISSION.
    Permission(TranslationFault),
    /// F_TLB_CONFLICT.
    TlbConflict {
        /// StreamID.
        sid: u32,
        /// SubstreamID (SSV = 1).
        ssid: Option<u32>,
        /// Attributes of the input transaction.
        access: AccessAttrs,
        /// NSIPA.
        nsipa: bool,
        /// S2: the IPA is valid.
        s2: bool,
        /// The transaction's address.
        input_addr: u64,
        /// The IPA (bits 55:12).
        ipa: u64,
        /// Reason (IMPLEMENTATION DEFINED).
        reason: u32,
    },
    /// F_CFG_CONFLICT.
    CfgConflict {
        /// StreamID.
        sid: u32,
        /// SubstreamID (SSV = 1).
        ssid: Option<u32>,
        /// Reason (IMPLEMENTATION DEFINED).
        reason: u32,
    },
    /// E_PAGE_REQUEST: a speculative page request hint.
    PageRequest {
        /// StreamID.
        sid: u32,
        /// SubstreamID (SSV = 1).
        ssid: Option<u32>,
        /// The address (bits 63:12).
        input_addr: u64,
        /// Span, in 4 KiB pages.
        span: u8,
        /// Anticipated privileged accesses.
        privileged: PagePerms,
        /// Anticipated unprivileged accesses.
        unprivileged: PagePerms,
    },
    /// F_VMS_FETCH.
    VmsFetch(FetchAbort),
}

fn ssid_field(ssid: Option<u32>) -> (bool, u20) {
    (ssid.is_some(), u20::extract_u32(ssid.unwrap_or(0), 0))
}

fn word0(ty: EventType, sid: u32, ssid: Option<u32>) -> u64 {
    let (ssv, ssid) = ssid_field(ssid);
    EvtWord0::new(ty.code(), ssv, ssid, sid).into()
}

fn fetch_word(addr: u64) -> u64 {
    EvtWord3Fetch::new(EvtWord3Fetch::from(addr).fetch_addr()).into()
}

fn ipa_word(addr: u64) -> u64 {
    EvtWord3Ipa::new(EvtWord3Ipa::from(addr).ipa()).into()
}

fn page_word(addr: u64, span: u16) -> u64 {
    EvtWord2Page::new(u12::extract_u16(span, 0), EvtWord2Page::from(addr).page()).into()
}

fn page_of(word: EvtWord2Page) -> u64 {
    EvtWord2Page::new(u12::new(0), word.page()).into()
}

impl TranslationFault {
    fn word1(&self) -> u64 {
        EvtWord1::new(
            self.stag.unwrap_or(0),
            false,
            self.stag.is_some(),
            self.access.privileged,
            self.access.instruction,
            self.access.read,
            self.nsipa,
            self.s2,
            self.class,
            self.ttrnw,
        )
        .into()
    }

    fn decode(w0: EvtWord0, words: [u64; 4]) -> TranslationFault {
        let w1 = EvtWord1::from(words[1]);
        TranslationFault {
            sid: w0.sid(),
            ssid: w0.ssv().then(|| w0.ssid().value()),
            stag: w1.stall().then(|| w1.tag()),
            access: attrs(w1.rnw(), w1.ind(), w1.pnu()),
            nsipa: w1.nsipa(),
            s2: w1.s2(),
            class: w1.class(),
            ttrnw: w1.ttrnw(),
            input_addr: words[2],
            ipa: ipa_word(words[3]),
        }
    }
}

fn attrs(read: bool, instruction: bool, privileged: bool) -> AccessAttrs {
    AccessAttrs { read, instruction, privileged }
}

fn fault_word1(reason: u16, gpcf: bool, access: AccessAttrs, s2: bool, class: FaultClass) -> u64 {
    EvtWord1::new(reason, gpcf, false, access.privileged, access.instruction, access.read, false, s2, class, false)
        .into()
}

impl FetchAbort {
    fn encode(&self, ty: EventType) -> [u64; 4] {
        let w1 = EvtWord1::new(self.reason, self.gpcf, false, false, false, false, false, false, FaultClass::Cd, false);
        [word0(ty, self.sid, self.ssid), w1.into(), 0, fetch_word(self.fetch_addr)]
    }

    fn decode(w0: EvtWord0, words: [u64; 4]) -> FetchAbort {
        let w1 = EvtWord1::from(words[1]);
        FetchAbort {
            sid: w0.sid(),
            ssid: w0.ssv().then(|| w0.ssid().value()),
            fetch_addr: fetch_word(words[3]),
            reason: w1.tag(),
            gpcf: w1.gpcf(),
        }
    }
}

impl Event {
    /// The record's type.
    pub fn event_type(&self) -> EventType {
        match self {
            Event::Uut { .. } => EventType::Uut,
            Event::BadStreamId { .. } => EventType::BadStreamId,
            Event::SteFetch(_) => EventType::SteFetch,
            Event::BadSte { .. } => EventType::BadSte,
            Event::BadAtsTreq { .. } => EventType::BadAtsTreq,
            Event::StreamDisabled { .. } => EventType::StreamDisabled,
            Event::TranslForbidden { .. } => EventType::TranslForbidden,
            Event::BadSubstreamId { .. } => EventType::BadSubstreamId,
            Event::CdFetch(_) => EventType::CdFetch,
            Event::BadCd { .. } => EventType::BadCd,
            Event::WalkEabt(_) => EventType::WalkEabt,
            Event::Translation(_) => EventType::Translation,
            Event::AddrSize(_) => EventType::AddrSize,
            Event::Access(_) => EventType::Access,
            Event::Permission(_) => EventType::Permission,
            Event::TlbConflict { .. } => EventType::TlbConflict,
            Event::CfgConflict { .. } => EventType::CfgConflict,
            Event::PageRequest { .. } => EventType::PageRequest,
            Event::VmsFetch(_) => EventType::VmsFetch,
        }
    }

    /// The StreamID.
    pub fn sid(&self) -> u32 {
        match *self {
            Event::Uut { sid, .. }
            | Event::BadStreamId { sid, .. }
            | Event::BadSte { sid, .. }
            | Event::BadAtsTreq { sid, .. }
            | Event::StreamDisabled { sid }
            | Event::TranslForbidden { sid, .. }
            | Event::BadSubstreamId { sid, .. }
            | Event::BadCd { sid, .. }
            | Event::TlbConflict { sid, .. }
            | Event::CfgConflict { sid, .. }
            | Event::PageRequest { sid, .. } => sid,
            Event::SteFetch(f) | Event::CdFetch(f) | Event::VmsFetch(f) => f.sid,
            Event::WalkEabt(w) => w.sid,
            Event::Translation(f) | Event::AddrSize(f) | Event::Access(f) | Event::Permission(f) => f.sid,
        }
    }

    /// The record in the architected layout.
    pub fn encode(&self) -> [u64; 4] {
        let ty = self.event_type();
        match *self {
            Event::Uut { sid, ssid, input_addr, access, reason } => {
                [word0(ty, sid, ssid), fault_word1(reason, false, access, false, FaultClass::Cd), input_addr, 0]
            }
            Event::BadStreamId { sid, ssid } | Event::BadSte { sid, ssid } | Event::BadCd { sid, ssid } => {
                [word0(ty, sid, ssid), 0, 0, 0]
            }
            Event::SteFetch(f) | Event::CdFetch(f) | Event::VmsFetch(f) => f.encode(ty),
            Event::BadAtsTreq { sid, ssid, input_addr, span, read, write, exec, privileged } => [
                word0(ty, sid, ssid),
                EvtWord1AtsRequest::new(privileged, exec, write, read).into(),
                page_word(input_addr, span),
                0,
            ],
            Event::StreamDisabled { sid } => [word0(ty, sid, None), 0, 0, 0],
            Event::TranslForbidden { sid, input_addr, read } => [
                word0(ty, sid, None),
                fault_word1(0, false, attrs(read, false, false), false, FaultClass::Cd),
                input_addr,
                0,
            ],
            Event::BadSubstreamId { sid, ssid } => {
                let w0 = EvtWord0::new(ty.code(), false, u20::extract_u32(ssid, 0), sid);
                [w0.into(), 0, 0, 0]
            }
            Event::WalkEabt(w) => [
                word0(ty, w.sid, w.ssid),
                fault_word1(w.reason, w.gpcf, w.access, w.s2, w.class),
                w.input_addr,
                fetch_word(w.fetch_addr),
            ],
            Event::Translation(f) | Event::AddrSize(f) | Event::Access(f) | Event::Permission(f) => {
                [word0(ty, f.sid, f.ssid), f.word1(), f.input_addr, ipa_word(f.ipa)]
            }
            Event::TlbConflict { sid, ssid, access, nsipa, s2, input_addr, ipa, reason } => [
                word0(ty, sid, ssid),
                EvtWord1Conflict::new(reason, access.privileged, access.instruction, access.read, nsipa, s2).into(),
                input_addr,
                ipa_word(ipa),
            ],
            Event::CfgConflict { sid, ssid, reason } => {
                [word0(ty, sid, ssid), EvtWord1Conflict::new(reason, false, false, false, false, false).into(), 0, 0]
            }
            Event::PageRequest { sid, ssid, input_addr, span, privileged: p, unprivileged: u } => [
                word0(ty, sid, ssid),
                EvtWord1PageRequest::new(u.exec, u.write, u.read, p.exec, p.write, p.read, span).into(),
                page_word(input_addr, 0),
                0,
            ],
        }
    }

    /// The record as QEMU 10.2.2's C device writes it. It differs from
    /// [`encode`](Event::encode) in two places:
    /// * F_CD_FETCH: the CD address goes into InputAddr (quadword 2) and
    ///   quadword 3 stays zero;
    /// * F_STE_FETCH, F_WALK_EABT (fetch address) and F_TRANSLATION,
    ///   F_ADDR_SIZE, F_ACCESS, F_PERMISSION (IPA) write the whole 64-bit
    ///   address into quadword 3, so an IPA keeps its page offset in the
    ///   RES0 bits 203:192.
    ///
    /// The C device never fills Reason, GPCF, NSIPA, TTRnW or (without a
    /// stall model) Stall and STAG: callers leave them zero.
    pub fn encode_qemu(&self) -> [u64; 4] {
        let mut w = self.encode();
        match *self {
            Event::CdFetch(f) => {
                w[2] = f.fetch_addr;
                w[3] = 0;
            }
            Event::SteFetch(f) => w[3] = f.fetch_addr,
            Event::WalkEabt(e) => w[3] = e.fetch_addr,
            Event::Translation(f) | Event::AddrSize(f) | Event::Access(f) | Event::Permission(f) => w[3] = f.ipa,
            _ => {}
        }
        w
    }

    /// Decode a record (None: reserved or IMPLEMENTATION DEFINED type).
    pub fn decode(words: [u64; 4]) -> Option<Event> {
        let w0 = EvtWord0::from(words[0]);
        let ty = EventType::from_code(w0.event())?;
        let sid = w0.sid();
        let ssid = w0.ssv().then(|| w0.ssid().value());
        let w1 = EvtWord1::from(words[1]);
        Some(match ty {
            EventType::Uut => Event::Uut {
                sid,
                ssid,
                input_addr: words[2],
                access: attrs(w1.rnw(), w1.ind(), w1.pnu()),
                reason: w1.tag(),
            },
            EventType::BadStreamId => Event::BadStreamId { sid, ssid },
            EventType::SteFetch => Event::SteFetch(FetchAbort::decode(w0, words)),
            EventType::BadSte => Event::BadSte { sid, ssid },
            EventType::BadAtsTreq => {
                let r = EvtWord1AtsRequest::from(words[1]);
                let w2 = EvtWord2Page::from(words[2]);
                Event::BadAtsTreq {
                    sid,
                    ssid,
                    input_addr: page_of(w2),
                    span: w2.span().value(),
                    read: r.read(),
                    write: r.write(),
                    exec: r.exec(),
                    privileged: r.privileged(),
                }
            }
            EventType::StreamDisabled => Event::StreamDisabled { sid },
            EventType::TranslForbidden => Event::TranslForbidden { sid, input_addr: words[2], read: w1.rnw() },
            EventType::BadSubstreamId => Event::BadSubstreamId { sid, ssid: w0.ssid().value() },
            EventType::CdFetch => Event::CdFetch(FetchAbort::decode(w0, words)),
            EventType::BadCd => Event::BadCd { sid, ssid },
            EventType::WalkEabt => Event::WalkEabt(WalkAbort {
                sid,
                ssid,
                access: attrs(w1.rnw(), w1.ind(), w1.pnu()),
                s2: w1.s2(),
                class: w1.class(),
                input_addr: words[2],
                fetch_addr: fetch_word(words[3]),
                reason: w1.tag(),
                gpcf: w1.gpcf(),
            }),
            EventType::Translation => Event::Translation(TranslationFault::decode(w0, words)),
            EventType::AddrSize => Event::AddrSize(TranslationFault::decode(w0, words)),
            EventType::Access => Event::Access(TranslationFault::decode(w0, words)),
            EventType::Permission => Event::Permission(TranslationFault::decode(w0, words)),
            EventType::TlbConflict => {
                let c = EvtWord1Conflict::from(words[1]);
                Event::TlbConflict {
                    sid,
                    ssid,
                    access: attrs(c.rnw(), c.ind(), c.pnu()),
                    nsipa: c.nsipa(),
                    s2: c.s2(),
                    input_addr: words[2],
                    ipa: ipa_word(words[3]),
                    reason: c.reason(),
                }
            }
            EventType::CfgConflict => {
                Event::CfgConflict { sid, ssid, reason: EvtWord1Conflict::from(words[1]).reason() }
            }
            EventType::PageRequest => {
                let p = EvtWord1PageRequest::from(words[1]);
                Event::PageRequest {
                    sid,
                    ssid,
                    input_addr: page_of(EvtWord2Page::from(words[2])),
                    span: p.span(),
                    privileged: PagePerms { read: p.pr(), write: p.pw(), exec: p.px() },
                    unprivileged: PagePerms { read: p.ur(), write: p.uw(), exec: p.ux() },
                }
            }
            EventType::VmsFetch => Event::VmsFetch(FetchAbort::decode(w0, words)),
        })
    }
}

// ---------------------------------------------------------------- queue

/// What becomes of a record that finds the Event queue full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OnFull {
    /// QEMU 10.2.2: the record is lost and GERROR.EVENTQ_ABT_ERR is raised,
    /// as for a failed write; EVENTQ_PROD.OVFLG is never set.
    #[default]
    AbortError,
    /// IHI 0070 §7.4: the record is lost and EVENTQ_PROD.OVFLG toggles,
    /// unless an overflow is already pending (OVFLG != CONS.OVACKFLG).
    Overflow,
}

/// The outcome of [`EventQueue::push`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pushed {
    /// The record is in the queue and PROD moved past it: the Event queue
    /// interrupt fires if IRQ_CTRL.EVENTQ_IRQEN is set.
    Written,
    /// The queue was full ([`OnFull::Overflow`]): the record is lost and
    /// the overflow condition is present.
    Overflowed,
    /// The record is lost and GERROR.EVENTQ_ABT_ERR must be raised: the
    /// write failed, or the queue was full under [`OnFull::AbortError`].
    Aborted,
    /// The queue is not writable (an unacknowledged EVENTQ_ABT_ERR under
    /// [`OnFull::Overflow`]): the record is silently lost.
    Discarded,
}

/// The producer side of the Event queue.
///
/// The caller checks CR0.EVENTQEN first (a disabled queue drops records
/// silently in both models), owns GERROR and the interrupt, and keeps
/// `prod` and `cons` in step with the EVENTQ_PROD/EVENTQ_CONS registers.
/// Stalled-fault records, which the architecture never discards, are not
/// distinguished: the models here do not stall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EventQueue {
    /// Where the 32-byte entries are.
    pub ring: Ring,
    /// EVENTQ_PROD: WR (index and wrap bit) and OVFLG (bit 31).
    pub prod: u32,
    /// EVENTQ_CONS as the guest wrote it: RD and OVACKFLG (bit 31).
    pub cons: u32,
    /// Full-queue behaviour.
    pub on_full: OnFull,
}

impl EventQueue {
    /// Bytes of an event record.
    pub const ENTRY_BYTES: u32 = EVENTQ_ENTRY_BYTES;

    /// An empty queue of 2^`log2` entries at `base`, C-compatible.
    pub fn new(base: u64, log2: u8) -> EventQueue {
        EventQueue { ring: Ring::new(base, log2, Self::ENTRY_BYTES), prod: 0, cons: 0, on_full: OnFull::default() }
    }

    /// Every entry holds a record the guest has not consumed.
    pub fn is_full(&self) -> bool {
        Wrapped::full(Wrapped { value: self.prod }, Wrapped { value: self.cons }, self.ring.log2)
    }

    /// No record is waiting.
    pub fn is_empty(&self) -> bool {
        Wrapped::empty(Wrapped { value: self.prod }, Wrapped { value: self.cons }, self.ring.log2)
    }

    /// The overflow condition: PROD.OVFLG != CONS.OVACKFLG.
    pub fn overflow_pending(&self) -> bool {
        EventqProd::from(self.prod).ovflg() != EventqCons::from(self.cons).ovackflg()
    }

    /// Produce `record` (an [`Event::encode`] or [`Event::encode_qemu`]
    /// result, or a host's record); `abort_pending` tells whether
    /// GERROR.EVENTQ_ABT_ERR is active (not yet acknowledged), which makes
    /// the queue unwritable architecturally; the C device ignores it.
    pub fn push(&mut self, mem: &dyn GuestMemory, record: [u64; 4], abort_pending: bool) -> Pushed {
        let architected = self.on_full == OnFull::Overflow;
        if architected && abort_pending {
            return Pushed::Discarded;
        }
        let mut bytes = [0u8; 32];
        for (chunk, w) in bytes.chunks_exact_mut(8).zip(record) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        let prod = Wrapped { value: self.prod };
        match ring::produce(mem, &self.ring, prod, Wrapped { value: self.cons }, &bytes) {
            Ok(next) => {
                // QEMU's increment keeps only the index and wrap bits (so it
                // clears OVFLG); the architecture keeps OVFLG.
                let mut prod = EventqProd::from(next.value);
                prod.set_ovflg(architected && EventqProd::from(self.prod).ovflg());
                self.prod = prod.into();
                Pushed::Written
            }
            Err(ProduceError::Full) if architected => {
                if !self.overflow_pending() {
                    let mut prod = EventqProd::from(self.prod);
                    prod.set_ovflg(!prod.ovflg());
                    self.prod = prod.into();
                }
                Pushed::Overflowed
            }
            Err(_) => Pushed::Aborted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Mem, Rng};
    use iommu_core::nesting::iommufd::{VEvent, VEvents};

    // ------------------------------------------------------------ helpers

    /// FIELD_GET(GENMASK_ULL(hi, lo), w), as Linux reads event words.
    fn get(w: u64, hi: u32, lo: u32) -> u64 {
        (w & (u64::MAX >> (63 - hi))) >> lo
    }

    /// The record as the C device's eight 32-bit words.
    fn c_words(w: [u32; 8]) -> [u64; 4] {
        let q = |i: usize| u64::from(w[2 * i]) | u64::from(w[2 * i + 1]) << 32;
        [q(0), q(1), q(2), q(3)]
    }

    const IN: AccessAttrs = AccessAttrs { read: true, instruction: true, privileged: true };

    fn fault(s2: bool, stag: Option<u16>) -> TranslationFault {
        TranslationFault {
            sid: 0x0010_0203,
            ssid: Some(0xf_ffff),
            stag,
            access: IN,
            nsipa: true,
            s2,
            class: FaultClass::Tt,
            ttrnw: true,
            input_addr: 0xffff_8000_dead_b000,
            ipa: if s2 { 0x00ff_ffff_ffff_f000 } else { 0 },
        }
    }

    fn fetch(ssid: Option<u32>) -> FetchAbort {
        FetchAbort { sid: 7, ssid, fetch_addr: 0x00ff_ffff_ffff_fff8, reason: 0xbeef, gpcf: true }
    }

    /// One event of every type, with every field non-zero where it can be.
    fn every_event() -> Vec<Event> {
        let p = PagePerms { read: true, write: false, exec: true };
        let u = PagePerms { read: false, write: true, exec: false };
        vec![
            Event::Uut { sid: 1, ssid: Some(2), input_addr: u64::MAX, access: IN, reason: 0xffff },
            Event::BadStreamId { sid: u32::MAX, ssid: Some(3) },
            Event::SteFetch(fetch(None)),
            Event::BadSte { sid: 4, ssid: None },
            Event::BadAtsTreq {
                sid: 5,
                ssid: Some(6),
                input_addr: 0xffff_ffff_ffff_f000,
                span: 0xfff,
                read: true,
                write: false,
                exec: true,
                privileged: true,
            },
            Event::StreamDisabled { sid: 8 },
            Event::TranslForbidden { sid: 9, input_addr: 0x1234_5678_9abc_def0, read: true },
            Event::BadSubstreamId { sid: 10, ssid: 0xf_ffff },
            Event::CdFetch(fetch(Some(11))),
            Event::BadCd { sid: 12, ssid: Some(0) },
            Event::WalkEabt(WalkAbort {
                sid: 13,
                ssid: Some(14),
                access: AccessAttrs { read: true, instruction: false, privileged: true },
                s2: true,
                class: FaultClass::Cd,
                input_addr: 0x8000_0000_0000_0001,
                fetch_addr: 0x0000_0400_0000_0ff8,
                reason: 1,
                gpcf: false,
            }),
            Event::Translation(fault(false, None)),
            Event::AddrSize(fault(true, None)),
            Event::Access(fault(false, Some(0x1234))),
            Event::Permission(fault(true, Some(0xffff))),
            Event::TlbConflict {
                sid: 15,
                ssid: None,
                access: IN,
                nsipa: true,
                s2: true,
                input_addr: 0xabcd,
                ipa: 0x00f0_0000_0000_1000,
                reason: 0xffff_ffff,
            },
            Event::CfgConflict { sid: 16, ssid: Some(17), reason: 0x8000_0001 },
            Event::PageRequest {
                sid: 18,
                ssid: Some(19),
                input_addr: 0x7fff_ffff_f000,
                span: 0xff,
                privileged: p,
                unprivileged: u,
            },
            Event::VmsFetch(fetch(Some(20))),
        ]
    }

    // ------------------------------------------------------------ layouts

    #[test]
    fn every_event_round_trips() {
        let all = every_event();
        assert_eq!(all.len(), 19);
        for e in all {
            let w = e.encode();
            assert_eq!(Event::decode(w), Some(e), "{w:x?}");
            assert_eq!(e.encode(), Event::decode(w).unwrap().encode());
            assert_eq!(get(w[0], 7, 0) as u8, e.event_type().code());
            assert_eq!(EventType::from_code(e.event_type().code()), Some(e.event_type()));
            assert_eq!(get(w[0], 63, 32) as u32, e.sid());
            let q = e.encode_qemu();
            assert_eq!(q[..2], w[..2]);
        }
    }

    #[test]
    fn type_codes_and_names() {
        let expect = [
            (0x01, "F_UUT"),
            (0x02, "C_BAD_STREAMID"),
            (0x03, "F_STE_FETCH"),
            (0x04, "C_BAD_STE"),
            (0x05, "F_BAD_ATS_TREQ"),
            (0x06, "F_STREAM_DISABLED"),
            (0x07, "F_TRANSL_FORBIDDEN"),
            (0x08, "C_BAD_SUBSTREAMID"),
            (0x09, "F_CD_FETCH"),
            (0x0a, "C_BAD_CD"),
            (0x0b, "F_WALK_EABT"),
            (0x10, "F_TRANSLATION"),
            (0x11, "F_ADDR_SIZE"),
            (0x12, "F_ACCESS"),
            (0x13, "F_PERMISSION"),
            (0x20, "F_TLB_CONFLICT"),
            (0x21, "F_CFG_CONFLICT"),
            (0x24, "E_PAGE_REQUEST"),
            (0x25, "F_VMS_FETCH"),
        ];
        for (e, (code, name)) in every_event().iter().zip(expect) {
            assert_eq!((e.event_type().code(), e.event_type().name()), (code, name));
        }
        for code in [0x00u8, 0x0c, 0x0f, 0x14, 0x22, 0x23, 0x26, 0xe0, 0xef, 0xff] {
            assert_eq!(EventType::from_code(code), None);
            assert_eq!(Event::decode([u64::from(code), 0, 0, 0]), None);
        }
    }

    #[test]
    fn fault_fields_sit_where_linux_reads_them() {
        // A stalled stage-2 permission fault on a stage-1 walk (CLASS TT).
        let w = Event::Permission(fault(true, Some(0x1234))).encode();
        assert_eq!(get(w[0], 7, 0), 0x13);
        assert_eq!(get(w[0], 11, 11), 1); // EVTQ_0_SSV
        assert_eq!(get(w[0], 31, 12), 0xf_ffff); // EVTQ_0_SSID
        assert_eq!(get(w[0], 63, 32), 0x0010_0203); // EVTQ_0_SID
        assert_eq!(get(w[1], 15, 0), 0x1234); // EVTQ_1_STAG
        assert_eq!(get(w[1], 31, 31), 1); // EVTQ_1_STALL
        assert_eq!(get(w[1], 33, 33), 1); // EVTQ_1_PnU
        assert_eq!(get(w[1], 34, 34), 1); // EVTQ_1_InD
        assert_eq!(get(w[1], 35, 35), 1); // EVTQ_1_RnW
        assert_eq!(get(w[1], 36, 36), 1); // NSIPA
        assert_eq!(get(w[1], 39, 39), 1); // EVTQ_1_S2
        assert_eq!(get(w[1], 41, 40), 1); // EVTQ_1_CLASS = TT
        assert_eq!(get(w[1], 44, 44), 1); // EVTQ_1_TT_READ
        assert_eq!(w[2], 0xffff_8000_dead_b000); // EVTQ_2_ADDR
        assert_eq!(get(w[3], 51, 12) << 12, 0x000f_ffff_ffff_f000); // EVTQ_3_IPA
        assert_eq!(w[3], 0x00ff_ffff_ffff_f000); // IPA[55:12], the rest RES0
                                                 // No stray bits: everything set above is all there is.
        assert_eq!(w[1], 0x0000_119e_8000_1234);
    }

    #[test]
    fn walker_classes_become_the_class_field() {
        assert_eq!(FaultClass::from(Class::Cd), FaultClass::Cd);
        assert_eq!(FaultClass::from(Class::Tt), FaultClass::Tt);
        assert_eq!(FaultClass::from(Class::In), FaultClass::In);
        assert_eq!(u2::from(FaultClass::from(Class::In)).value(), 2);
    }

    #[test]
    fn a_record_linux_would_print() {
        // "event 0x10 received:" for a stage-1 read of 0xffff1000 by SID 8:
        //   0x0000000800000010 0x0000020800000000 0x00000000ffff1000 0x0
        let e = Event::decode([0x0000_0008_0000_0010, 0x0000_0208_0000_0000, 0xffff_1000, 0]).unwrap();
        let Event::Translation(f) = e else { panic!("{e:?}") };
        assert_eq!((f.sid, f.ssid, f.stag), (8, None, None));
        assert_eq!((f.access.read, f.s2, f.class, f.input_addr), (true, false, FaultClass::In, 0xffff_1000));
        assert_eq!(e.encode(), [0x0000_0008_0000_0010, 0x0000_0208_0000_0000, 0xffff_1000, 0]);
    }

    #[test]
    fn records_match_the_c_device() {
        // smmuv3_record_event: w0 = type, w1 = SID, w3 = RnW<<3 | S2<<7 | CLASS<<8,
        // w4/w5 = InputAddr, w6/w7 = addr2.
        let f = TranslationFault {
            sid: 0x18,
            ssid: None,
            stag: None,
            access: AccessAttrs { read: false, ..AccessAttrs::default() },
            nsipa: false,
            s2: true,
            class: FaultClass::In,
            ttrnw: false,
            input_addr: 0x8000_1234,
            ipa: 0x4_0000_1234,
        };
        let c = c_words([0x10, 0x18, 0, 1 << 7 | 2 << 8, 0x8000_1234, 0, 0x0000_1234, 0x4]);
        assert_eq!(Event::Translation(f).encode_qemu(), c);
        // Architected: the IPA loses its page offset.
        assert_eq!(Event::Translation(f).encode()[3], 0x4_0000_1000);
        // F_STE_FETCH: fetch address in w6/w7 for both.
        let ste = Event::SteFetch(FetchAbort { sid: 0x18, fetch_addr: 0x8_1234_5640, ..FetchAbort::default() });
        let c = c_words([0x03, 0x18, 0, 0, 0, 0, 0x1234_5640, 0x8]);
        assert_eq!((ste.encode(), ste.encode_qemu()), (c, c));
        // F_CD_FETCH: the C device puts the CD address in w4/w5.
        let cd = Event::CdFetch(FetchAbort { sid: 0x18, fetch_addr: 0x8_1234_5640, ..FetchAbort::default() });
        assert_eq!(cd.encode_qemu(), c_words([0x09, 0x18, 0, 0, 0x1234_5640, 0x8, 0, 0]));
        assert_eq!(cd.encode(), c_words([0x09, 0x18, 0, 0, 0, 0, 0x1234_5640, 0x8]));
        // F_WALK_EABT of a stage-1 walk: CLASS TT, descriptor PA in w6/w7.
        let eabt = Event::WalkEabt(WalkAbort {
            sid: 0x18,
            ssid: None,
            access: AccessAttrs { read: true, ..AccessAttrs::default() },
            s2: false,
            class: FaultClass::Tt,
            input_addr: 0x1000,
            fetch_addr: 0x4000_0ff8,
            reason: 0,
            gpcf: false,
        });
        let c = c_words([0x0b, 0x18, 0, 1 << 3 | 1 << 8, 0x1000, 0, 0x4000_0ff8, 0]);
        assert_eq!((eabt.encode(), eabt.encode_qemu()), (c, c));
        // C_BAD_STREAMID, C_BAD_STE, C_BAD_CD: type and SID only.
        for (e, t) in [
            (Event::BadStreamId { sid: 0x10000, ssid: None }, 0x02),
            (Event::BadSte { sid: 0x10000, ssid: None }, 0x04),
            (Event::BadCd { sid: 0x10000, ssid: None }, 0x0a),
        ] {
            assert_eq!(e.encode_qemu(), c_words([t, 0x10000, 0, 0, 0, 0, 0, 0]));
        }
    }

    #[test]
    fn reserved_and_unknown_bits_are_dropped() {
        // SSV = 0: the SubstreamID is UNKNOWN; Stall = 0: STAG is not kept.
        let w = [0xffff_f000 | 0x10, 0xffff, 0x1000, 0xfff];
        let Some(Event::Translation(f)) = Event::decode(w) else { panic!() };
        assert_eq!((f.ssid, f.stag, f.ipa), (None, None, 0));
        // C_BAD_SUBSTREAMID has no SSV: the SubstreamID is always there.
        let Some(Event::BadSubstreamId { ssid, .. }) = Event::decode([0x1230_0008, 0, 0, 0]) else { panic!() };
        assert_eq!(ssid, 0x12300);
    }

    #[test]
    fn host_vevents_decode() {
        // An iommufd vEVENTQ read: a header then the record (vSID already in).
        let rec = Event::CdFetch(fetch(None)).encode();
        let mut buf = Vec::new();
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&41u32.to_le_bytes());
        for w in rec {
            buf.extend_from_slice(&w.to_le_bytes());
        }
        let Some(VEvent::Event { sequence: 41, evt }) = VEvents::new(&buf).next() else { panic!() };
        assert_eq!(Event::decode(evt), Some(Event::CdFetch(fetch(None))));
    }

    // ------------------------------------------------------------ queue

    /// Guest memory of `size` bytes at 0; accesses beyond fail.
    fn memory(size: u64) -> Mem {
        let m = Mem::default();
        m.map(0, size);
        m
    }

    const OVF: u32 = 1 << 31;

    fn rec(n: u64) -> [u64; 4] {
        Event::BadSte { sid: n as u32, ssid: None }.encode()
    }

    #[test]
    fn records_land_in_order_and_wrap() {
        let mem = memory(0x2000);
        let mut q = EventQueue::new(0x1000, 2);
        assert!(q.is_empty());
        for n in 0..4 {
            assert_eq!(q.push(&mem, rec(n), false), Pushed::Written);
        }
        assert!(q.is_full());
        assert_eq!(q.prod, 0b100); // index 0, wrap 1
        assert_eq!(Event::decode(q.ring.read_words::<4>(&mem, 3).unwrap()).map(|e| e.sid()), Some(3));
        q.cons = 0b010; // the guest consumed two
        assert_eq!(q.push(&mem, rec(4), false), Pushed::Written);
        assert_eq!(q.prod, 0b101);
        assert_eq!(Event::decode(q.ring.read_words::<4>(&mem, 0).unwrap()).map(|e| e.sid()), Some(4));
    }

    #[test]
    fn full_queue_raises_eventq_abt_err_in_the_c_model() {
        let mem = memory(0x2000);
        let mut q = EventQueue::new(0x1000, 1);
        assert_eq!(q.on_full, OnFull::AbortError);
        q.push(&mem, rec(0), false);
        q.push(&mem, rec(1), false);
        assert_eq!(q.push(&mem, rec(2), false), Pushed::Aborted);
        assert_eq!(q.prod, 0b10);
        assert!(!q.overflow_pending());
        // The C device writes even with EVENTQ_ABT_ERR pending.
        q.cons = 0b10;
        assert_eq!(q.push(&mem, rec(3), true), Pushed::Written);
        // Its PROD increment drops any high bit the guest wrote.
        q.prod = OVF | 0b11;
        q.cons = 0b11;
        assert_eq!(q.push(&mem, rec(4), false), Pushed::Written);
        assert_eq!(q.prod, 0b00);
    }

    #[test]
    fn full_queue_overflows_architecturally() {
        let mem = memory(0x2000);
        let mut q = EventQueue { on_full: OnFull::Overflow, ..EventQueue::new(0x1000, 1) };
        q.push(&mem, rec(0), false);
        q.push(&mem, rec(1), false);
        assert_eq!(q.push(&mem, rec(2), false), Pushed::Overflowed);
        assert_eq!(q.prod, OVF | 0b10);
        assert!(q.overflow_pending());
        // A second loss while the overflow is pending does not toggle again.
        assert_eq!(q.push(&mem, rec(3), false), Pushed::Overflowed);
        assert_eq!(q.prod, OVF | 0b10);
        // The guest consumes one and acknowledges: OVFLG is kept by writes.
        q.cons = OVF | 0b01;
        assert!(!q.overflow_pending());
        assert_eq!(q.push(&mem, rec(4), false), Pushed::Written);
        assert_eq!(q.prod, OVF | 0b11);
        // Full again: OVFLG toggles back.
        assert_eq!(q.push(&mem, rec(5), false), Pushed::Overflowed);
        assert_eq!(q.prod, 0b11);
        assert!(q.overflow_pending());
        // An unacknowledged EVENTQ_ABT_ERR makes the queue unwritable.
        q.cons = 0b11;
        assert_eq!(q.push(&mem, rec(6), true), Pushed::Discarded);
        assert_eq!(q.prod, 0b11);
    }

    #[test]
    fn write_failures_abort_in_both_models() {
        let mem = memory(0x1010);
        for on_full in [OnFull::AbortError, OnFull::Overflow] {
            let mut q = EventQueue { on_full, ..EventQueue::new(0x1000, 3) };
            assert_eq!(q.push(&mem, rec(0), false), Pushed::Aborted);
            assert_eq!(q.prod, 0);
        }
    }

    // ------------------------------------------------------------ randomized

    #[test]
    fn random_records_never_panic_and_round_trip() {
        let mut rng = Rng(0xfeed_face_cafe_beef);
        let codes = [0x01u64, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x10, 0x11, 0x12, 0x13];
        let more = [0x20u64, 0x21, 0x24, 0x25];
        let mut known = 0;
        for i in 0..200_000usize {
            let mut w = [rng.next(), rng.next(), rng.next(), rng.next()];
            if i % 4 != 0 {
                let k = i % (codes.len() + more.len());
                let c = if k < codes.len() { codes[k] } else { more[k - codes.len()] };
                w[0] = (w[0] & !0xff) | c;
            }
            if let Some(e) = Event::decode(w) {
                known += 1;
                assert_eq!(Event::decode(e.encode()), Some(e), "{w:x?}");
                assert_eq!(Event::decode(e.encode_qemu()).map(|d| d.event_type()), Some(e.event_type()));
            }
        }
        assert!(known > 140_000, "{known}");
    }

    #[test]
    fn random_queue_traffic_never_panics() {
        let mem = memory(0x3000);
        let mut rng = Rng(42);
        for on_full in [OnFull::AbortError, OnFull::Overflow] {
            let mut q = EventQueue { on_full, ..EventQueue::new(0x1000, 5) };
            for _ in 0..20_000 {
                let r = rng.next();
                match r % 8 {
                    0 => q.cons = r as u32 >> 3,
                    1 => q.prod = (r >> 8) as u32,
                    2 => q.ring = Ring::new(r >> 20, (r >> 8) as u8, EventQueue::ENTRY_BYTES),
                    _ => {
                        let _ = q.push(&mem, rec(r), r & 0x100 != 0);
                    }
                }
                let _ = (q.is_full(), q.is_empty(), q.overflow_pending());
            }
        }
    }
}
