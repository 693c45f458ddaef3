//! Invalidation requests: the 128-bit and 256-bit queued-invalidation
//! descriptors and the register-based CCMD/IOTLB commands.
//!
//! Conventions: 128-bit descriptors are two little-endian quadwords (`lo`,
//! `hi`); 256-bit descriptors (IQA.DW = 1, scalable-mode hardware only)
//! are four, the first two laid out as the 128-bit form. [`decode`]
//! (128-bit) and [`decode_256`] validate the type and every reserved field
//! and yield an [`InvRequest`]; an error string means the descriptor is
//! invalid and the hardware must report an invalidation queue error
//! (FSTS.IQE) with the queue head left on it. The queue registers are
//! decoded by [`QueueState`], which is plain data so it can be migrated.
//!
//! Descriptor validity by mode (VT-d spec, 6.5.2, "descriptor types"):
//!
//! | descriptor (type)          | 128-bit, legacy | 256-bit, legacy | 128-bit, scalable | 256-bit, scalable |
//! |----------------------------|-----------------|-----------------|-------------------|-------------------|
//! | context-cache (1)          | valid           | valid           | invalid           | valid             |
//! | IOTLB (2)                  | valid           | valid           | invalid           | valid             |
//! | device-TLB (3)             | ECAP.DT only    | ECAP.DT only    | invalid           | ECAP.DT only      |
//! | interrupt entry cache (4)  | ECAP.IR only    | ECAP.IR only    | invalid           | ECAP.IR only      |
//! | invalidation wait (5)      | valid           | valid           | invalid           | valid             |
//! | PASID-based IOTLB (6)      | invalid         | invalid         | invalid           | valid             |
//! | PASID cache (7)            | invalid         | invalid         | invalid           | valid             |
//! | PASID-based device-TLB (8) | invalid         | invalid         | invalid           | ECAP.DT only      |
//!
//! "Scalable" means the root table is latched with RTADDR.TTM = 01b: the
//! spec treats 128-bit descriptors as invalid then. In 256-bit form the
//! upper 128 bits of the legacy descriptors are reserved (zero).

use iommu_core::layout::field_address;
use bilge::prelude::*;

use crate::config::MAMV;

/// Largest IEC descriptor index mask (ECAP.MHMV with interrupt
/// remapping).
pub const MHMV: u8 = 15;

/// Context-cache invalidate descriptor type.
pub const DESC_CC: u8 = 0x1;
/// IOTLB invalidate descriptor type.
pub const DESC_IOTLB: u8 = 0x2;
/// Device-TLB invalidate descriptor type.
pub const DESC_DEVICE_TLB: u8 = 0x3;
/// Interrupt entry cache invalidate descriptor type.
pub const DESC_IEC: u8 = 0x4;
/// Invalidation wait descriptor type.
pub const DESC_WAIT: u8 = 0x5;
/// PASID-based IOTLB invalidate descriptor type (256-bit only).
pub const DESC_PIOTLB: u8 = 0x6;
/// PASID-cache invalidate descriptor type (256-bit only).
pub const DESC_PASID_CACHE: u8 = 0x7;
/// PASID-based device-TLB invalidate descriptor type (256-bit only).
pub const DESC_PASID_DEVICE_TLB: u8 = 0x8;
/// "No descriptor" marker for `last_desc_type`.
pub const DESC_NONE: u8 = 0;

pub use layouts::*;

/// Architected bit layouts of the invalidation descriptors (VT-d 3.4, 6.5.2)
/// and of the register-based invalidation and queue registers (11.4.7,
/// 11.4.8, 11.4.9). A 128-bit descriptor is two words (`Lo`, `Hi`), a
/// 256-bit one four (`Q0` .. `Q3`; quadwords not declared are reserved). The
/// descriptor type is split: bits 3:0 and, as type bits 6:4, bits 11:9. A
/// module of its own because bilge's generated constructors carry no
/// documentation.
#[allow(missing_docs)]
mod layouts {
    // Every field is #[inline]: bilge copies a field's attributes onto its
    // getter and setter, which QEMU's build (debug assertions on) would
    // otherwise leave out of line (+10% instructions on a page walk).
    use bilge::prelude::*;

    /// The fields every descriptor's first quadword shares.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct DescHeader {
        /// Bits 3:0, type bits 3:0.
        #[inline]
        pub ty: u4,
        /// Bits 8:4, per descriptor.
        #[inline]
        pub body: u5,
        /// Bits 11:9, type bits 6:4.
        #[inline]
        pub ty_hi: u3,
        /// Bits 63:12, per descriptor.
        #[inline]
        pub rest: u52,
    }

    /// Context-cache invalidate descriptor (type 1), bits 63:0; bits
    /// 127:64 are reserved.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct CcDesc {
        #[inline]
        pub ty: u4,
        /// Bits 5:4, G: 01b global, 10b domain, 11b device.
        #[inline]
        pub g: u2,
        /// Bits 8:6, reserved.
        #[inline]
        pub reserved: u3,
        #[inline]
        pub ty_hi: u3,
        /// Bits 15:12, reserved.
        #[inline]
        pub reserved: u4,
        /// Bits 31:16, DID.
        #[inline]
        pub did: u16,
        /// Bits 47:32, SID.
        #[inline]
        pub sid: u16,
        /// Bits 49:48, FM: function mask.
        #[inline]
        pub fm: u2,
        /// Bits 63:50, reserved.
        #[inline]
        pub reserved: u14,
    }

    /// IOTLB invalidate descriptor (type 2), bits 63:0.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct IotlbDescLo {
        #[inline]
        pub ty: u4,
        /// Bits 5:4, G: 01b global, 10b domain, 11b page-selective.
        #[inline]
        pub g: u2,
        /// Bit 6, DW: drain writes (a hint, accepted).
        #[inline]
        pub dw: bool,
        /// Bit 7, DR: drain reads (a hint, accepted).
        #[inline]
        pub dr: bool,
        /// Bit 8, reserved.
        #[inline]
        pub reserved: bool,
        #[inline]
        pub ty_hi: u3,
        /// Bits 15:12, reserved.
        #[inline]
        pub reserved: u4,
        /// Bits 31:16, DID.
        #[inline]
        pub did: u16,
        /// Bits 63:32, reserved.
        #[inline]
        pub reserved: u32,
    }

    /// The address quadword of IOTLB and PASID-based IOTLB invalidations:
    /// IOTLB invalidate bits 127:64, PASID-based IOTLB invalidate bits
    /// 127:64, and the IVA register.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct InvAddr {
        /// Bits 5:0, AM: log2 of the number of 4 KiB pages.
        #[inline]
        pub am: u6,
        /// Bit 6, IH: invalidation hint (only leaf entries changed).
        #[inline]
        pub ih: bool,
        /// Bits 11:7, reserved.
        #[inline]
        pub reserved: u5,
        /// Bits 63:12, ADDR >> 12.
        #[inline]
        pub addr: u52,
    }

    /// Device-TLB invalidate descriptor (type 3), bits 63:0.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct DevTlbDescLo {
        #[inline]
        pub ty: u4,
        /// Bits 8:4, reserved.
        #[inline]
        pub reserved: u5,
        #[inline]
        pub ty_hi: u3,
        /// Bits 15:12, PFSID bits 3:0.
        #[inline]
        pub pfsid_lo: u4,
        /// Bits 20:16, MIP: maximum invalidations pending.
        #[inline]
        pub mip: u5,
        /// Bits 31:21, reserved.
        #[inline]
        pub reserved: u11,
        /// Bits 47:32, SID.
        #[inline]
        pub sid: u16,
        /// Bits 51:48, reserved.
        #[inline]
        pub reserved: u4,
        /// Bits 63:52, PFSID bits 15:4.
        #[inline]
        pub pfsid_hi: u12,
    }

    /// Device-TLB invalidate descriptor (type 3), bits 127:64.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct DevTlbDescHi {
        /// Bit 64, S: the size is encoded in ADDR's low bits.
        #[inline]
        pub s: bool,
        /// Bits 75:65, reserved.
        #[inline]
        pub reserved: u11,
        /// Bits 127:76, ADDR >> 12.
        #[inline]
        pub addr: u52,
    }

    /// Interrupt entry cache invalidate descriptor (type 4), bits 63:0;
    /// bits 127:64 are reserved.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct IecDesc {
        #[inline]
        pub ty: u4,
        /// Bit 4, G: 0 global, 1 index-selective.
        #[inline]
        pub g: bool,
        /// Bits 8:5, reserved.
        #[inline]
        pub reserved: u4,
        #[inline]
        pub ty_hi: u3,
        /// Bits 26:12, reserved.
        #[inline]
        pub reserved: u15,
        /// Bits 31:27, IM: index mask.
        #[inline]
        pub im: u5,
        /// Bits 47:32, IIDX: interrupt index.
        #[inline]
        pub iidx: u16,
        /// Bits 63:48, reserved.
        #[inline]
        pub reserved: u16,
    }

    /// Invalidation wait descriptor (type 5), bits 63:0.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct WaitDescLo {
        #[inline]
        pub ty: u4,
        /// Bit 4, IF: raise an invalidation completion event.
        #[inline]
        pub if_: bool,
        /// Bit 5, SW: write the status data.
        #[inline]
        pub sw: bool,
        /// Bit 6, FN: fence.
        #[inline]
        pub fn_: bool,
        /// Bits 8:7, PD (page-request drain, no page requests here) and a
        /// reserved bit: reserved.
        #[inline]
        pub reserved: u2,
        #[inline]
        pub ty_hi: u3,
        /// Bits 31:12, reserved.
        #[inline]
        pub reserved: u20,
        /// Bits 63:32, status data.
        #[inline]
        pub status_data: u32,
    }

    /// Invalidation wait descriptor (type 5), bits 127:64.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct WaitDescHi {
        /// Bits 65:64, reserved.
        #[inline]
        pub reserved: u2,
        /// Bits 127:66, status address >> 2.
        #[inline]
        pub status_addr: u62,
    }

    /// PASID-based IOTLB (type 6) and PASID-cache (type 7) invalidate
    /// descriptors, bits 63:0.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct PasidDescQ0 {
        #[inline]
        pub ty: u4,
        /// Bits 5:4, G.
        #[inline]
        pub g: u2,
        /// Bits 8:6, reserved.
        #[inline]
        pub reserved: u3,
        #[inline]
        pub ty_hi: u3,
        /// Bits 15:12, reserved.
        #[inline]
        pub reserved: u4,
        /// Bits 31:16, DID.
        #[inline]
        pub did: u16,
        /// Bits 51:32, PASID.
        #[inline]
        pub pasid: u20,
        /// Bits 63:52, reserved.
        #[inline]
        pub reserved: u12,
    }

    /// PASID-based device-TLB invalidate descriptor (type 8), bits 63:0.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct PasidDevTlbQ0 {
        #[inline]
        pub ty: u4,
        /// Bits 8:4, MIP.
        #[inline]
        pub mip: u5,
        #[inline]
        pub ty_hi: u3,
        /// Bits 15:12, PFSID bits 3:0.
        #[inline]
        pub pfsid_lo: u4,
        /// Bits 31:16, SID.
        #[inline]
        pub sid: u16,
        /// Bits 51:32, PASID.
        #[inline]
        pub pasid: u20,
        /// Bits 63:52, PFSID bits 15:4.
        #[inline]
        pub pfsid_hi: u12,
    }

    /// PASID-based device-TLB invalidate descriptor (type 8), bits 127:64.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct PasidDevTlbQ1 {
        /// Bit 64, G: every PASID's global translations too.
        #[inline]
        pub g: bool,
        /// Bits 74:65, reserved.
        #[inline]
        pub reserved: u10,
        /// Bit 75, S.
        #[inline]
        pub s: bool,
        /// Bits 127:76, ADDR >> 12.
        #[inline]
        pub addr: u52,
    }

    /// CCMD register.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct CcmdReg {
        /// Bits 15:0, DID.
        #[inline]
        pub did: u16,
        /// Bits 31:16, SID.
        #[inline]
        pub sid: u16,
        /// Bits 33:32, FM.
        #[inline]
        pub fm: u2,
        /// Bits 58:34, reserved.
        #[inline]
        pub reserved: u25,
        /// Bits 60:59, CAIG: actual granularity.
        #[inline]
        pub caig: u2,
        /// Bits 62:61, CIRG: requested granularity.
        #[inline]
        pub cirg: u2,
        /// Bit 63, ICC: invalidate context cache.
        #[inline]
        pub icc: bool,
    }

    /// IOTLB invalidate register.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct IotlbReg {
        /// Bits 31:0, reserved.
        #[inline]
        pub reserved: u32,
        /// Bits 47:32, DID.
        #[inline]
        pub did: u16,
        /// Bit 48, DW.
        #[inline]
        pub dw: bool,
        /// Bit 49, DR.
        #[inline]
        pub dr: bool,
        /// Bits 56:50, reserved.
        #[inline]
        pub reserved: u7,
        /// Bits 58:57, IAIG: actual granularity.
        #[inline]
        pub iaig: u2,
        /// Bit 59, reserved.
        #[inline]
        pub reserved: bool,
        /// Bits 61:60, IIRG: requested granularity.
        #[inline]
        pub iirg: u2,
        /// Bit 62, reserved.
        #[inline]
        pub reserved: bool,
        /// Bit 63, IVT: invalidate IOTLB.
        #[inline]
        pub ivt: bool,
    }

    /// IQA register.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct IqaReg {
        /// Bits 2:0, QS: the queue is 2^QS 4 KiB pages.
        #[inline]
        pub qs: u3,
        /// Bits 10:3, reserved.
        #[inline]
        pub reserved: u8,
        /// Bit 11, DW: 256-bit descriptors.
        #[inline]
        pub dw: bool,
        /// Bits 63:12, IQA: the queue's base >> 12.
        #[inline]
        pub base: u52,
    }

    /// IQH and IQT registers (the queue index is QH/QT with 128-bit
    /// descriptors, QH/QT >> 1 with 256-bit ones).
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct IqIndexReg {
        /// Bits 3:0, reserved.
        #[inline]
        pub reserved: u4,
        /// Bits 18:4, QH / QT: the offset in the queue >> 4.
        #[inline]
        pub q: u15,
        /// Bits 63:19, reserved.
        #[inline]
        pub reserved: u45,
    }
}

/// Context-cache invalidation granularity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextInvalidation {
    /// All entries.
    Global,
    /// Entries of one domain.
    Domain(u16),
    /// Entries of one device (source-id), with function mask.
    Device {
        /// Source-id.
        sid: u16,
        /// Function mask (0..=3).
        fm: u8,
    },
}

impl ContextInvalidation {
    /// The 2-bit granularity encoding (CIRG/CAIG, descriptor G).
    pub fn granularity(&self) -> u64 {
        match self {
            ContextInvalidation::Global => 1,
            ContextInvalidation::Domain(_) => 2,
            ContextInvalidation::Device { .. } => 3,
        }
    }
}

/// IOTLB invalidation granularity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IotlbInvalidation {
    /// All entries.
    Global,
    /// Entries of one domain.
    Domain(u16),
    /// 2^`am` pages at `addr` in `domain_id`.
    Pages {
        /// Domain id.
        domain_id: u16,
        /// Address (page aligned).
        addr: u64,
        /// Address mask (log2 of the number of 4 KiB pages).
        am: u8,
        /// Invalidation hint (only leaf entries changed).
        ih: bool,
    },
}

impl IotlbInvalidation {
    /// The 2-bit granularity encoding (IIRG/IAIG, descriptor G).
    pub fn granularity(&self) -> u64 {
        match self {
            IotlbInvalidation::Global => 1,
            IotlbInvalidation::Domain(_) => 2,
            IotlbInvalidation::Pages { .. } => 3,
        }
    }
}

/// PASID-cache invalidation granularity (PASID-cache invalidate
/// descriptor G field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasidCacheInvalidation {
    /// 00b: every entry whose cached domain-id is the given one.
    Domain(u16),
    /// 01b: entries for one PASID within the domain.
    Pasid {
        /// Domain id.
        domain_id: u16,
        /// PASID.
        pasid: u32,
    },
    /// 11b: all entries.
    Global,
}

/// PASID-based IOTLB invalidation granularity (G field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasidIotlbInvalidation {
    /// 10b: all mappings of one PASID within the domain.
    Pasid {
        /// Domain id.
        domain_id: u16,
        /// PASID.
        pasid: u32,
    },
    /// 11b: first-stage (and nested) mappings of 2^`am` pages at `addr`
    /// for one PASID within the domain.
    Pages {
        /// Domain id.
        domain_id: u16,
        /// PASID.
        pasid: u32,
        /// Address (page aligned).
        addr: u64,
        /// Address mask (log2 of the number of 4 KiB pages).
        am: u8,
        /// Invalidation hint (only leaf entries changed).
        ih: bool,
    },
}

/// Interrupt entry cache invalidation granularity (IEC descriptor G,
/// IIDX and IM fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IecInvalidation {
    /// G = 0: every interrupt entry.
    Global,
    /// G = 1: the 2^`mask` entries whose indexes equal `index` in all
    /// bits above the low `mask` bits.
    Index {
        /// IIDX: interrupt index.
        index: u16,
        /// IM: index mask (0..=MHMV).
        mask: u8,
    },
}

impl IecInvalidation {
    /// Whether the invalidation covers interrupt index `index`.
    pub fn covers(&self, index: u32) -> bool {
        match *self {
            IecInvalidation::Global => true,
            IecInvalidation::Index { index: base, mask } => {
                let m = u32::from(mask);
                // Arithmetic: the 2^IM entries aligned around IIDX.
                m >= 32 || (index >> m) == (u32::from(base) >> m)
            }
        }
    }
}

/// Invalidation wait descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitRequest {
    /// SW: write `data` to `addr`.
    pub status_write: Option<(u64, u32)>,
    /// IF: raise an invalidation completion event.
    pub interrupt: bool,
    /// FN: fence.
    pub fence: bool,
}

/// A decoded, valid invalidation descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvRequest {
    /// Context-cache invalidation.
    Context(ContextInvalidation),
    /// IOTLB invalidation (drain bits accepted and ignored).
    Iotlb(IotlbInvalidation),
    /// Device-TLB invalidation (type 3) or PASID-based device-TLB
    /// invalidation (type 8); only valid with device-TLB support.
    DeviceTlb(DeviceTlbInvalidation),
    /// Interrupt entry cache invalidation (only valid with interrupt
    /// remapping, which the unit checks when it executes the request).
    InterruptEntryCache(IecInvalidation),
    /// Invalidation wait.
    Wait(WaitRequest),
    /// PASID-cache invalidation (256-bit, scalable mode).
    PasidCache(PasidCacheInvalidation),
    /// PASID-based IOTLB invalidation (256-bit, scalable mode).
    PasidIotlb(PasidIotlbInvalidation),
}

/// A device-TLB invalidate (type 3) or PASID-based device-TLB invalidate
/// (type 8) descriptor.
///
/// Layout: type 3 has MIP in bits 20:16, SID in 47:32, PFSID in 15:12 and
/// 63:52 of the low quadword, and S (bit 0) plus ADDR (63:12) in the high
/// one. Type 8 has MIP in 8:4, SID in 31:16, PASID in 51:32 and PFSID as
/// type 3 in quadword 0, and G (bit 0), S (bit 11) and ADDR (63:12) in
/// quadword 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceTlbInvalidation {
    /// Source-id of the device (function) whose device-TLB is invalidated.
    pub sid: u16,
    /// Physical-function source-id (for an SR-IOV virtual function; the
    /// function's own source-id otherwise).
    pub pfsid: u16,
    /// Maximum invalidations pending (MIP, a hint for the hardware).
    pub mip: u8,
    /// PASID of a type 8 descriptor; `None` for type 3 (translations of
    /// requests without PASID).
    pub pasid: Option<u32>,
    /// Type 8 G bit: invalidate (global) translations of every PASID of the
    /// device, not only `pasid`'s.
    pub global: bool,
    /// ADDR field (bits 63:12 of the address quadword).
    pub addr: u64,
    /// S bit: the range size is encoded in the low address bits.
    pub size: bool,
}

impl DeviceTlbInvalidation {
    /// The invalidated range as (base address, address mask = size - 1),
    /// decoding the PCIe ATS S-bit encoding: S = 0 is the 4 KiB page at
    /// ADDR; S = 1 makes the lowest clear bit of ADDR\[63:12\] the size: bit
    /// 12 clear is 8 KiB, bits 12 set and 13 clear 16 KiB, and so on. When
    /// every address bit is set (or the size reaches 2^64) the whole 64-bit
    /// space is invalidated: mask `u64::MAX`.
    pub fn range(&self) -> (u64, u64) {
        let addr = self.addr & !0xfff;
        if !self.size {
            return (addr, 0xfff);
        }
        // Arithmetic: S=1 encodes the size in the address's low ones (the
        // 2^(13 + ones)-byte block around it).
        let ones = (addr >> 12).trailing_ones();
        let log2 = 13 + ones;
        if log2 >= 64 {
            return (0, u64::MAX);
        }
        let mask = (1u64 << log2) - 1;
        (addr & !mask, mask)
    }
}

/// The PFSID, split over bits 15:12 (PFSID 3:0) and 63:52 (PFSID 15:4).
fn pfsid(lo: u4, hi: u12) -> u16 {
    u16::from(lo.value()) | (hi.value() << 4)
}

/// What [`decode_256`] needs to know about the hardware state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeContext {
    /// ECAP.DT: device-TLB descriptors are valid.
    pub device_tlb: bool,
    /// The root table is latched in scalable mode (RTADDR.TTM = 01b):
    /// PASID-based descriptors are valid.
    pub scalable: bool,
}

/// Decode a 256-bit descriptor (`val[0]` holds bits 63:0).
pub fn decode_256(val: [u64; 4], ctx: DecodeContext) -> Result<InvRequest, String> {
    decode_256_typed(descriptor_type(val[0]), val, ctx)
}

/// [`decode_256`] of a descriptor whose type the caller has read already
/// (the queue keeps it for the last-descriptor-type state).
pub(crate) fn decode_256_typed(ty: u8, val: [u64; 4], ctx: DecodeContext) -> Result<InvRequest, String> {
    let [v0, v1, v2, v3] = val;
    let reserved = |what: &str, set: bool| -> Result<(), String> {
        if set {
            Err(format!(
                "invalid {what} descriptor: {v3:#x} {v2:#x} {v1:#x} {v0:#x} (reserved bits set)"
            ))
        } else {
            Ok(())
        }
    };
    let pasid_based = |name: &str| -> Result<(), String> {
        if ctx.scalable {
            Ok(())
        } else {
            Err(format!(
                "{name} descriptor while the root table is in legacy mode: {v3:#x} {v2:#x} {v1:#x} {v0:#x}"
            ))
        }
    };
    match ty {
        DESC_CC | DESC_IOTLB | DESC_DEVICE_TLB | DESC_IEC | DESC_WAIT => {
            if v2 != 0 || v3 != 0 {
                return Err(format!(
                    "invalid descriptor type {ty:#x}: {v3:#x} {v2:#x} {v1:#x} {v0:#x} (upper 128 bits reserved)"
                ));
            }
            decode(v0, v1, ctx.device_tlb)
        }
        DESC_PIOTLB => {
            pasid_based("PASID-based IOTLB invalidate")?;
            let (q0, q1) = (PasidDescQ0::from(v0), InvAddr::from(v1));
            reserved(
                "PASID-based IOTLB invalidate",
                pasid_desc_reserved(q0) || q1.reserved_i().value() != 0 || v2 != 0 || v3 != 0,
            )?;
            let domain_id = q0.did();
            let pasid = q0.pasid().value();
            match q0.g().value() {
                2 => Ok(InvRequest::PasidIotlb(PasidIotlbInvalidation::Pasid { domain_id, pasid })),
                3 => {
                    let am = q1.am().value();
                    if am > MAMV {
                        return Err(format!(
                            "invalid PASID-based IOTLB invalidate descriptor: {v1:#x} (AM {am} > MAMV {MAMV})"
                        ));
                    }
                    Ok(InvRequest::PasidIotlb(PasidIotlbInvalidation::Pages {
                        domain_id,
                        pasid,
                        addr: field_address(q1.addr(), 12),
                        am,
                        ih: q1.ih(),
                    }))
                }
                g => Err(format!(
                    "invalid PASID-based IOTLB invalidate descriptor: {v0:#x} (granularity {g})"
                )),
            }
        }
        DESC_PASID_CACHE => {
            pasid_based("PASID-cache invalidate")?;
            let q0 = PasidDescQ0::from(v0);
            reserved("PASID-cache invalidate", pasid_desc_reserved(q0) || v1 != 0 || v2 != 0 || v3 != 0)?;
            let domain_id = q0.did();
            let pasid = q0.pasid().value();
            match q0.g().value() {
                0 => Ok(InvRequest::PasidCache(PasidCacheInvalidation::Domain(domain_id))),
                1 => Ok(InvRequest::PasidCache(PasidCacheInvalidation::Pasid { domain_id, pasid })),
                3 => Ok(InvRequest::PasidCache(PasidCacheInvalidation::Global)),
                g => Err(format!(
                    "invalid PASID-cache invalidate descriptor: {v0:#x} (granularity {g})"
                )),
            }
        }
        DESC_PASID_DEVICE_TLB => {
            if !ctx.device_tlb {
                return Err(format!(
                    "PASID-based device-TLB invalidate descriptor without device-TLB support (ECAP.DT=0): {v3:#x} {v2:#x} {v1:#x} {v0:#x}"
                ));
            }
            pasid_based("PASID-based device-TLB invalidate")?;
            let (q0, q1) = (PasidDevTlbQ0::from(v0), PasidDevTlbQ1::from(v1));
            reserved(
                "PASID-based device-TLB invalidate",
                q1.reserved_i().value() != 0 || v2 != 0 || v3 != 0,
            )?;
            Ok(InvRequest::DeviceTlb(DeviceTlbInvalidation {
                sid: q0.sid(),
                pfsid: pfsid(q0.pfsid_lo(), q0.pfsid_hi()),
                mip: q0.mip().value(),
                pasid: Some(q0.pasid().value()),
                global: q1.g(),
                addr: field_address(q1.addr(), 12),
                size: q1.s(),
            }))
        }
        _ => Err(format!(
            "unsupported invalidation descriptor type {ty:#x}: {v3:#x} {v2:#x} {v1:#x} {v0:#x}"
        )),
    }
}

fn pasid_desc_reserved(q0: PasidDescQ0) -> bool {
    q0.reserved_i().value() != 0 || q0.reserved_ii().value() != 0 || q0.reserved_iii().value() != 0
}

/// Descriptor type from the low quadword: type bits 3:0 and 6:4.
#[inline]
pub fn descriptor_type(lo: u64) -> u8 {
    let h = DescHeader::from(lo);
    // The type is split: bits 3:0 of the descriptor are its bits 3:0,
    // bits 11:9 its bits 6:4.
    h.ty().value() | (h.ty_hi().value() << 4)
}

/// Decode a legacy 128-bit descriptor.
pub fn decode(lo: u64, hi: u64, device_tlb: bool) -> Result<InvRequest, String> {
    decode_typed(descriptor_type(lo), lo, hi, device_tlb)
}

/// [`decode`] of a descriptor whose type the caller has read already.
pub(crate) fn decode_typed(ty: u8, lo: u64, hi: u64, device_tlb: bool) -> Result<InvRequest, String> {
    let reserved = |what: &str, set: bool| -> Result<(), String> {
        if set {
            Err(format!(
                "invalid {what} descriptor: hi={hi:#x} lo={lo:#x} (reserved bits set)"
            ))
        } else {
            Ok(())
        }
    };
    match ty {
        DESC_CC => {
            let d = CcDesc::from(lo);
            reserved(
                "context-cache invalidate",
                d.reserved_i().value() != 0
                    || d.reserved_ii().value() != 0
                    || d.reserved_iii().value() != 0
                    || hi != 0,
            )?;
            let g = match d.g().value() {
                1 => ContextInvalidation::Global,
                2 => ContextInvalidation::Domain(d.did()),
                3 => ContextInvalidation::Device { sid: d.sid(), fm: d.fm().value() },
                _ => {
                    return Err(format!(
                        "invalid context-cache invalidate descriptor: lo={lo:#x} (granularity 0)"
                    ))
                }
            };
            Ok(InvRequest::Context(g))
        }
        DESC_IOTLB => {
            let (d, a) = (IotlbDescLo::from(lo), InvAddr::from(hi));
            reserved(
                "IOTLB invalidate",
                d.reserved_i()
                    || d.reserved_ii().value() != 0
                    || d.reserved_iii() != 0
                    || a.reserved_i().value() != 0,
            )?;
            let did = d.did();
            let g = match d.g().value() {
                1 => IotlbInvalidation::Global,
                2 => IotlbInvalidation::Domain(did),
                3 => {
                    let am = a.am().value();
                    if am > MAMV {
                        return Err(format!(
                            "invalid IOTLB invalidate descriptor: hi={hi:#x} (AM {am} > MAMV {MAMV})"
                        ));
                    }
                    IotlbInvalidation::Pages {
                        domain_id: did,
                        addr: field_address(a.addr(), 12),
                        am,
                        ih: a.ih(),
                    }
                }
                _ => {
                    return Err(format!(
                        "invalid IOTLB invalidate descriptor: lo={lo:#x} (granularity 0)"
                    ))
                }
            };
            Ok(InvRequest::Iotlb(g))
        }
        DESC_DEVICE_TLB => {
            if !device_tlb {
                return Err(format!(
                    "device-TLB invalidate descriptor without device-TLB support (ECAP.DT=0): hi={hi:#x} lo={lo:#x}"
                ));
            }
            let (d, h) = (DevTlbDescLo::from(lo), DevTlbDescHi::from(hi));
            reserved(
                "device-TLB invalidate",
                d.reserved_i().value() != 0
                    || d.reserved_ii().value() != 0
                    || d.reserved_iii().value() != 0
                    || h.reserved_i().value() != 0,
            )?;
            Ok(InvRequest::DeviceTlb(DeviceTlbInvalidation {
                sid: d.sid(),
                pfsid: pfsid(d.pfsid_lo(), d.pfsid_hi()),
                mip: d.mip().value(),
                pasid: None,
                global: false,
                addr: field_address(h.addr(), 12),
                size: h.s(),
            }))
        }
        DESC_IEC => {
            let d = IecDesc::from(lo);
            reserved(
                "interrupt entry cache invalidate",
                d.reserved_i().value() != 0
                    || d.reserved_ii().value() != 0
                    || d.reserved_iii() != 0
                    || hi != 0,
            )?;
            if !d.g() {
                return Ok(InvRequest::InterruptEntryCache(IecInvalidation::Global));
            }
            let mask = d.im().value();
            if mask > MHMV {
                return Err(format!(
                    "invalid interrupt entry cache invalidate descriptor: lo={lo:#x} (IM {mask} > MHMV {MHMV})"
                ));
            }
            Ok(InvRequest::InterruptEntryCache(IecInvalidation::Index { index: d.iidx(), mask }))
        }
        DESC_WAIT => {
            let (d, h) = (WaitDescLo::from(lo), WaitDescHi::from(hi));
            reserved(
                "invalidation wait",
                d.reserved_i().value() != 0 || d.reserved_ii().value() != 0 || h.reserved_i().value() != 0,
            )?;
            if !d.if_() && !d.sw() && !d.fn_() {
                return Err(format!(
                    "invalid invalidation wait descriptor: lo={lo:#x} (none of IF/SW/FN set)"
                ));
            }
            Ok(InvRequest::Wait(WaitRequest {
                status_write: d.sw().then_some((field_address(h.status_addr(), 2), d.status_data())),
                interrupt: d.if_(),
                fence: d.fn_(),
            }))
        }
        _ => Err(format!(
            "unsupported invalidation descriptor type {ty:#x}: hi={hi:#x} lo={lo:#x}"
        )),
    }
}

/// Decode a CCMD register value with ICC set. `Err` carries the guest
/// error for an invalid request granularity.
pub fn decode_ccmd(val: u64) -> Result<ContextInvalidation, String> {
    let r = CcmdReg::from(val);
    match r.cirg().value() {
        1 => Ok(ContextInvalidation::Global),
        2 => Ok(ContextInvalidation::Domain(r.did())),
        3 => Ok(ContextInvalidation::Device { sid: r.sid(), fm: r.fm().value() }),
        _ => Err(format!("CCMD: invalid context invalidation granularity: {val:#x}")),
    }
}

/// Decode an IOTLB register value with IVT set, using the IVA register
/// for page-selective requests.
pub fn decode_iotlb_reg(val: u64, iva: u64) -> Result<IotlbInvalidation, String> {
    let r = IotlbReg::from(val);
    let did = r.did();
    match r.iirg().value() {
        1 => Ok(IotlbInvalidation::Global),
        2 => Ok(IotlbInvalidation::Domain(did)),
        3 => {
            let a = InvAddr::from(iva);
            let am = a.am().value();
            if am > MAMV {
                return Err(format!(
                    "IOTLB: address mask {am} above MAMV {MAMV} (IVA={iva:#x})"
                ));
            }
            Ok(IotlbInvalidation::Pages {
                domain_id: did,
                addr: field_address(a.addr(), 12),
                am,
                ih: a.ih(),
            })
        }
        _ => Err(format!("IOTLB: invalid invalidation granularity: {val:#x}")),
    }
}

/// Queued invalidation state latched from IQA and updated from IQT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueState {
    /// GSTS.QIES.
    pub enabled: bool,
    /// Queue base address (latched when QI is enabled).
    pub base: u64,
    /// Number of entries (latched when QI is enabled): 16-byte entries, or
    /// 32-byte ones when `dw`.
    pub size: u16,
    /// 256-bit descriptors (IQA.DW, latched when QI is enabled; only ever
    /// set on scalable-mode hardware).
    pub dw: bool,
    /// Index of the next descriptor to fetch (IQH.QH).
    pub head: u16,
    /// Index software will write next (IQT.QT).
    pub tail: u16,
    /// Type of the last descriptor fetched ([`DESC_NONE`] initially).
    pub last_desc_type: u8,
}

impl QueueState {
    /// Number of entries for an IQA value (2^(QS+8)).
    pub fn size_from_iqa(iqa: u64) -> u16 {
        Self::size_for(iqa, false)
    }

    /// IQT.QT from a 128-bit-descriptor IQT value.
    pub fn tail_from_iqt(iqt: u64) -> u16 {
        IqIndexReg::from(iqt).q().value()
    }

    /// Number of entries for an IQA value and descriptor width: the queue
    /// is 2^QS 4 KiB pages, 2^(QS+8) 128-bit or 2^(QS+7) 256-bit entries.
    pub fn size_for(iqa: u64, dw: bool) -> u16 {
        let qs = u32::from(IqaReg::from(iqa).qs().value());
        1u16 << (qs + if dw { 7 } else { 8 })
    }

    /// Size in bytes of one descriptor.
    pub fn entry_bytes(dw: bool) -> u64 {
        if dw {
            32
        } else {
            16
        }
    }

    /// IQT.QT for descriptor width `dw`: the queue offset in descriptors
    /// (QT counts 16-byte units; a 256-bit descriptor is two).
    pub fn tail_for(iqt: u64, dw: bool) -> u16 {
        Self::tail_from_iqt(iqt) >> u32::from(dw)
    }

    /// IQH/IQT register value for index `index`.
    pub fn index_reg(index: u16, dw: bool) -> u64 {
        // In 16-byte units, cut to the field's 15 bits.
        let units = (index << u32::from(dw)) & 0x7fff;
        IqIndexReg::new(u15::new(units)).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Raw bit positions from the specification, independent of the
    // layouts (these tests check the layouts against them).
    const WAIT_IF: u64 = 1 << 4;
    const WAIT_SW: u64 = 1 << 5;
    const WAIT_FN: u64 = 1 << 6;

    #[test]
    fn queue_sizes() {
        assert_eq!(QueueState::size_from_iqa(0), 256);
        assert_eq!(QueueState::size_from_iqa(7), 32768);
        assert_eq!(QueueState::tail_from_iqt(0x7fff0), 0x7fff);
    }

    #[test]
    fn queue_geometry_with_256_bit_descriptors() {
        assert_eq!(QueueState::size_for(0, true), 128);
        assert_eq!(QueueState::size_for(7, true), 16384);
        assert_eq!(QueueState::size_for(7, false), 32768);
        assert_eq!(QueueState::tail_for(0x7ffe0, true), 0x3fff);
        assert_eq!(QueueState::tail_for(0x30, true), 1);
        assert_eq!(QueueState::index_reg(3, true), 0x60);
        assert_eq!(QueueState::index_reg(3, false), 0x30);
    }

    #[test]
    fn decode_256_pasid_descriptors() {
        let sm = DecodeContext { device_tlb: false, scalable: true };
        let pc = 0x7 | (1 << 4) | (9 << 16) | (0xf_ffff << 32);
        assert_eq!(
            decode_256([pc, 0, 0, 0], sm),
            Ok(InvRequest::PasidCache(PasidCacheInvalidation::Pasid { domain_id: 9, pasid: 0xf_ffff }))
        );
        let pi = 0x6 | (3 << 4) | (9 << 16) | (5 << 32);
        assert_eq!(
            decode_256([pi, 0x7000 | 0x40 | 2, 0, 0], sm),
            Ok(InvRequest::PasidIotlb(PasidIotlbInvalidation::Pages {
                domain_id: 9,
                pasid: 5,
                addr: 0x7000,
                am: 2,
                ih: true
            }))
        );
        let legacy = DecodeContext { device_tlb: false, scalable: false };
        assert!(decode_256([pc, 0, 0, 0], legacy).is_err());
        assert!(decode_256([DESC_WAIT as u64 | WAIT_FN, 0, 0, 0], legacy).is_ok());
        assert!(decode_256([DESC_DEVICE_TLB as u64, 0, 0, 0], DecodeContext { device_tlb: true, scalable: true }).is_ok());
        assert!(decode_256([0x208, 0, 0, 0], sm).is_err());
    }

    #[test]
    fn type_includes_high_bits() {
        assert_eq!(descriptor_type(0x5), 5);
        assert_eq!(descriptor_type(0x200 | 0x5), 0x15);
        assert!(decode(0x205 | WAIT_FN, 0, false).is_err());
    }

    #[test]
    fn wait_decoding() {
        let lo = DESC_WAIT as u64 | WAIT_SW | WAIT_IF | (0xabcd_u64 << 32);
        let r = decode(lo, 0x1000, false).unwrap();
        assert_eq!(
            r,
            InvRequest::Wait(WaitRequest {
                status_write: Some((0x1000, 0xabcd)),
                interrupt: true,
                fence: false
            })
        );
        assert!(decode(lo, 0x1002, false).is_err(), "status address must be dword aligned");
        assert!(decode(DESC_WAIT as u64, 0, false).is_err());
        assert!(decode(DESC_WAIT as u64 | WAIT_FN | (1 << 7), 0, false).is_err(), "PD reserved");
    }

    #[test]
    fn iotlb_psi_am_limit() {
        let lo = DESC_IOTLB as u64 | (3 << 4) | (5 << 16);
        assert!(decode(lo, 0x1000 | 18, false).is_ok());
        assert!(decode(lo, 0x1000 | 19, false).is_err());
        assert!(decode(lo, 0x1000 | 0x80, false).is_err());
        // Drain bits are accepted.
        assert!(decode(lo | (3 << 6), 0, false).is_ok());
    }

    #[test]
    fn iec_decoding() {
        assert_eq!(
            decode(DESC_IEC as u64, 0, false),
            Ok(InvRequest::InterruptEntryCache(IecInvalidation::Global))
        );
        // IM and IIDX are ignored for a global request.
        assert_eq!(
            decode(DESC_IEC as u64 | (31 << 27) | (0x1234 << 32), 0, false),
            Ok(InvRequest::InterruptEntryCache(IecInvalidation::Global))
        );
        let sel = DESC_IEC as u64 | (1 << 4) | (3 << 27) | (0xabcd << 32);
        let inv = IecInvalidation::Index { index: 0xabcd, mask: 3 };
        assert_eq!(decode(sel, 0, false), Ok(InvRequest::InterruptEntryCache(inv)));
        assert!(inv.covers(0xabc8) && inv.covers(0xabcf));
        assert!(!inv.covers(0xabc7) && !inv.covers(0xabd0) && !inv.covers(0x1_abc8));
        assert!(IecInvalidation::Index { index: 5, mask: 0 }.covers(5));
        assert!(!IecInvalidation::Index { index: 5, mask: 0 }.covers(4));
        assert!(IecInvalidation::Global.covers(u32::MAX));
        let im16 = DESC_IEC as u64 | (1 << 4) | (16 << 27);
        assert!(decode(im16, 0, false).is_err(), "IM above MHMV");
        let im15 = DESC_IEC as u64 | (1 << 4) | (15 << 27);
        assert!(decode(im15, 0, false).is_ok());
        for bad in [1u64 << 5, 1 << 12, 1 << 26, 1 << 48, 1 << 63] {
            assert!(decode(DESC_IEC as u64 | bad, 0, false).is_err(), "{bad:#x}");
        }
        assert!(decode(DESC_IEC as u64, 1, false).is_err());
    }

    #[test]
    fn device_tlb_rejected_without_support() {
        assert!(decode(DESC_DEVICE_TLB as u64, 0, false).is_err());
        assert!(decode(DESC_DEVICE_TLB as u64, 0, true).is_ok());
        let sm = DecodeContext { device_tlb: false, scalable: true };
        assert!(decode_256([DESC_PASID_DEVICE_TLB as u64, 0, 0, 0], sm).is_err());
        let dt = DecodeContext { device_tlb: true, scalable: true };
        assert!(decode_256([DESC_PASID_DEVICE_TLB as u64, 0, 0, 0], dt).is_ok());
        let legacy_dt = DecodeContext { device_tlb: true, scalable: false };
        assert!(decode_256([DESC_PASID_DEVICE_TLB as u64, 0, 0, 0], legacy_dt).is_err());
    }

    #[test]
    fn device_tlb_fields_and_reserved_bits() {
        // SID 0x0108, PFSID 0x0abc, MIP 7, S set.
        let lo = DESC_DEVICE_TLB as u64 | (0x0108 << 32) | (0xc << 12) | (0xab << 52) | (7 << 16);
        assert_eq!(
            decode(lo, 0x5000 | 1, true),
            Ok(InvRequest::DeviceTlb(DeviceTlbInvalidation {
                sid: 0x108,
                pfsid: 0xabc,
                mip: 7,
                pasid: None,
                global: false,
                addr: 0x5000,
                size: true
            }))
        );
        for bad_lo in [1 << 4, 1 << 8, 1 << 21, 1 << 31, 1 << 48, 1 << 51] {
            assert!(decode(lo | bad_lo, 0, true).is_err(), "{bad_lo:#x}");
        }
        for bad_hi in [2, 1 << 11] {
            assert!(decode(lo, bad_hi, true).is_err(), "{bad_hi:#x}");
        }
        let dt = DecodeContext { device_tlb: true, scalable: true };
        let v0 = DESC_PASID_DEVICE_TLB as u64 | (0x0108 << 16) | (0x12345 << 32) | (3 << 4) | (0x1 << 12) | (0x2 << 52);
        assert_eq!(
            decode_256([v0, 0x7000 | (1 << 11) | 1, 0, 0], dt),
            Ok(InvRequest::DeviceTlb(DeviceTlbInvalidation {
                sid: 0x108,
                pfsid: 0x21,
                mip: 3,
                pasid: Some(0x12345),
                global: true,
                addr: 0x7000,
                size: true
            }))
        );
        for bad in [[v0, 2, 0, 0], [v0, 1 << 10, 0, 0], [v0, 0, 1, 0], [v0, 0, 0, 1 << 63]] {
            assert!(decode_256(bad, dt).is_err(), "{bad:x?}");
        }
        // Type 3 in 256-bit form: upper half reserved.
        assert!(decode_256([lo, 0, 1, 0], dt).is_err());
    }

    #[test]
    fn device_tlb_size_encoding() {
        let r = |addr: u64, size: bool| {
            DeviceTlbInvalidation { sid: 0, pfsid: 0, mip: 0, pasid: None, global: false, addr, size }.range()
        };
        assert_eq!(r(0x5000, false), (0x5000, 0xfff));
        assert_eq!(r(0x4000, true), (0x4000, 0x1fff));
        assert_eq!(r(0x5000, true), (0x4000, 0x3fff));
        assert_eq!(r(0x3000, true), (0x0, 0x7fff));
        assert_eq!(r(0x7000, true), (0x0, 0xffff));
        assert_eq!(r(0x1_7000, true), (0x1_0000, 0xffff));
        assert_eq!(r(0xf000, true), (0x0, 0x1_ffff));
        assert_eq!(r(0x7fff_ffff_ffff_f000, true), (0, u64::MAX));
        assert_eq!(r(0xffff_ffff_ffff_f000, true), (0, u64::MAX));
        assert_eq!(r(0x3fff_ffff_ffff_f000, true), (0, 0x7fff_ffff_ffff_ffff));
    }

    #[test]
    fn register_decoding() {
        assert_eq!(decode_ccmd(1 << 61), Ok(ContextInvalidation::Global));
        assert_eq!(
            decode_ccmd((3 << 61) | (2 << 32) | (0x0108 << 16)),
            Ok(ContextInvalidation::Device { sid: 0x108, fm: 2 })
        );
        assert!(decode_ccmd(0).is_err());
        assert_eq!(
            decode_iotlb_reg((3 << 60) | (7 << 32), 0x5000 | 0x41),
            Ok(IotlbInvalidation::Pages { domain_id: 7, addr: 0x5000, am: 1, ih: true })
        );
        assert!(decode_iotlb_reg(3 << 60, 19).is_err());
    }
}
