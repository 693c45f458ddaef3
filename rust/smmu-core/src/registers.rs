//! The SMMUv3 register file: architected layouts, the offsets of the
//! MMIO window, and [`Registers`], a pure model of what QEMU 10.2.2's C
//! `arm-smmuv3` keeps and how guest accesses change it.
//!
//! Conventions:
//! * Offsets are byte offsets into the 128 KiB window ([`MMIO_SIZE`]).
//!   Page 1 (0x10000-0x1FFFF) is an exact alias of page 0, as in the C
//!   device: every access first drops bit 16 ([`page0_offset`]). So
//!   EVENTQ_PROD/CONS answer at 0xA8/0xAC as well as at their architected
//!   page-1 addresses 0x100A8/0x100AC, and the IDRs, CR0 etc. answer on
//!   page 1 too.
//! * Accesses are 4 or 8 bytes, naturally aligned. Anything else is what
//!   QEMU's memory core refuses before the device sees it; here it reads
//!   as zero, writes nothing and reports [`Diagnostic::InvalidAccess`].
//! * A 64-bit register can be accessed whole or as two 32-bit words (low
//!   word at +0, high at +4). Only GERROR_IRQ_CFG0, STRTAB_BASE, CMDQ_BASE
//!   and EVENTQ_BASE can be read with a 64-bit access; EVENTQ_IRQ_CFG0 can
//!   also be written with one. Every other 64-bit access is read-as-zero /
//!   write-ignored.
//! * Registers the C device does not decode read as zero and ignore
//!   writes, reporting [`Diagnostic::Unimplemented`] (the C device's
//!   `LOG_UNIMP` lines): the ID registers and other read-only registers on
//!   a write, AGBPA, the PRI queue, the secure page, holes.
//! * Values are stored raw: the register reads back what was written, bits
//!   the architecture reserves included, except where noted (CR0ACK,
//!   GBPA.UPDATE, IRQ_CTRLACK).
//! * [`Registers::write`] never acts: it returns a [`WriteEffect`] saying
//!   what the device must do next (run the command queue, ...). Nothing
//!   here panics, whatever the offset, size, value or stored state
//!   (migrated state included).
//!
//! Reset ([`Registers::reset`]) reproduces the C device's partial reset:
//! CR1, CR2, the *_IRQ_CFG registers, STRTAB_BASE, STRTAB_BASE_CFG, the
//! queue bases' address bits and the queues' effective sizes survive it.

use iommu_core::layout::field_address;
use std::fmt;

use bilge::prelude::*;
use iommu_core::queues::ring::{Ring, Wrapped};
use iommu_core::translation::width_mask;

use crate::config::IdRegisters;
use crate::ste::SteCaps;
use crate::stream::{StreamTable, StreamTableFormat};

pub use layouts::{
    Aidr, CmdqCons, CmdqError, CmdqProd, Cr0, Cr1, Cr2, EventqCons, EventqProd, Gbpa, Gerror, Httu, Idr0, Idr1, Idr2,
    Idr3, Idr5, Iidr, IrqCfg0, IrqCfg2, IrqCtrl, QueueBase, StLevel, StallModel, Statusr, StrtabBase, StrtabBaseCfg,
    StrtabFormat, TableFormats, TtEndian,
};

/// PRIQ_PROD has EVENTQ_PROD's layout.
pub type PriqProd = EventqProd;
/// PRIQ_CONS has EVENTQ_CONS's layout.
pub type PriqCons = EventqCons;

/// Size of the MMIO window: two 64 KiB register pages.
pub const MMIO_SIZE: u64 = 0x20000;

/// The offset bit that selects register page 1.
pub const PAGE1: u64 = 0x10000;

/// Largest command queue (log2 of entries) the model supports; IDR1.CMDQS.
pub const CMDQ_LOG2_MAX: u8 = 19;
/// Largest event queue (log2 of entries) the model supports; IDR1.EVENTQS.
pub const EVENTQ_LOG2_MAX: u8 = 19;
/// Bytes per command queue entry.
pub const CMDQ_ENTRY_BYTES: u32 = 16;
/// Bytes per event queue entry.
pub const EVENTQ_ENTRY_BYTES: u32 = 32;

/// CR0 bits the C device copies into CR0ACK: everything outside its
/// reserved mask 0xFFFF_FC20, i.e. SMMUEN, PRIQEN, EVENTQEN, CMDQEN,
/// ATSCHK, VMW and (a C quirk) the architecturally reserved bit 9.
pub const CR0ACK_MIRRORED: u32 = 0x0000_03DF;

/// GBPA after reset: SHCFG = 0b01 (use the incoming shareability), all
/// else zero.
pub fn gbpa_reset_value() -> Gbpa {
    let mut g = Gbpa::from(0u32);
    g.set_shcfg(u2::new(1));
    g
}

/// The Peripheral and Component ID registers at 0xFD0-0xFFC, in offset
/// order (PIDR4-7, PIDR0-3, CIDR0-3): the identity of an Arm MMU-600, as
/// the C device reports it.
pub const ID_BLOCK: [u32; 12] = [0x04, 0, 0, 0, 0x84, 0xB4, 0xF0, 0x10, 0x0D, 0xF0, 0x05, 0xB1];

// ---------------------------------------------------------------- layouts

/// Architected bit layouts (IHI 0070). A module of its own only because
/// bilge's generated constructors carry no documentation; every item is
/// documented all the same and re-exported from [`registers`](super).
#[allow(missing_docs)]
mod layouts {
    use bilge::prelude::*;
    use iommu_core::translation::vmsa::PaSize;

    /// IDR0.TTF: translation table formats supported.
    #[bitsize(2)]
    #[derive(FromBits, Debug, Clone, Copy, PartialEq, Eq)]
    pub enum TableFormats {
        /// 0b00: reserved.
        Reserved = 0,
        /// 0b01: AArch32 (LPAE) only.
        AArch32 = 1,
        /// 0b10: AArch64 only.
        AArch64 = 2,
        /// 0b11: both.
        Both = 3,
    }

    /// IDR0.TTENDIAN: translation table endianness supported.
    #[bitsize(2)]
    #[derive(FromBits, Debug, Clone, Copy, PartialEq, Eq)]
    pub enum TtEndian {
        /// 0b00: both, chosen per context.
        Mixed = 0,
        /// 0b01: reserved.
        Reserved = 1,
        /// 0b10: little-endian only.
        Little = 2,
        /// 0b11: big-endian only.
        Big = 3,
    }

    /// IDR0.HTTU: hardware translation table updates.
    #[bitsize(2)]
    #[derive(FromBits, Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Httu {
        /// 0b00: none.
        None = 0,
        /// 0b01: the Access flag only.
        AccessFlag = 1,
        /// 0b10: the Access flag and dirty state.
        Dirty = 2,
        /// 0b11: reserved (taken as none).
        Reserved = 3,
    }

    /// IDR0.STALL_MODEL.
    #[bitsize(2)]
    #[derive(FromBits, Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum StallModel {
        /// 0b00: stall and terminate both supported, chosen per STE/CD.
        StallAndTerminate = 0,
        /// 0b01: stall not supported, faulting transactions terminate.
        TerminateOnly = 1,
        /// 0b10: stall forced, faulting transactions always stall.
        StallForced = 2,
        /// 0b11: reserved (the decoders take it as 0b01).
        Reserved = 3,
    }

    /// IDR0.ST_LEVEL: stream table formats supported.
    #[bitsize(2)]
    #[derive(FromBits, Debug, Clone, Copy, PartialEq, Eq)]
    pub enum StLevel {
        /// 0b00: linear only.
        Linear = 0,
        /// 0b01: linear and 2-level.
        TwoLevel = 1,
        /// 0b10: reserved.
        Reserved2 = 2,
        /// 0b11: reserved.
        Reserved3 = 3,
    }

    /// SMMU_IDR0 (0x00): features.
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct Idr0 {
        /// Bit 0: stage-2 translation supported.
        #[inline]
        pub s2p: bool,
        /// Bit 1: stage-1 translation supported.
        #[inline]
        pub s1p: bool,
        /// Bits 3:2: table formats.
        #[inline]
        pub ttf: TableFormats,
        /// Bit 4: coherent table walks and queue accesses.
        #[inline]
        pub cohacc: bool,
        /// Bit 5: broadcast TLB maintenance.
        #[inline]
        pub btm: bool,
        /// Bits 7:6: hardware access/dirty flag updates.
        #[inline]
        pub httu: Httu,
        /// Bit 8: dormant hint.
        #[inline]
        pub dormhint: bool,
        /// Bit 9: hypervisor stage 1 contexts.
        #[inline]
        pub hyp: bool,
        /// Bit 10: PCIe ATS.
        #[inline]
        pub ats: bool,
        /// Bit 11: stage-1-only ATS.
        #[inline]
        pub ns1ats: bool,
        /// Bit 12: 16-bit ASIDs.
        #[inline]
        pub asid16: bool,
        /// Bit 13: MSIs.
        #[inline]
        pub msi: bool,
        /// Bit 14: WFE wake-up events.
        #[inline]
        pub sev: bool,
        /// Bit 15: address translation operations.
        #[inline]
        pub atos: bool,
        /// Bit 16: PRI.
        #[inline]
        pub pri: bool,
        /// Bit 17: VMID wildcard matching.
        #[inline]
        pub vmw: bool,
        /// Bit 18: 16-bit VMIDs.
        #[inline]
        pub vmid16: bool,
        /// Bit 19: 2-level CD tables.
        #[inline]
        pub cd2l: bool,
        /// Bit 20: virtual ATOS.
        #[inline]
        pub vatos: bool,
        /// Bits 22:21: table endianness.
        #[inline]
        pub ttendian: TtEndian,
        /// Bit 23: ATS recoverable error.
        #[inline]
        pub atsrecerr: bool,
        /// Bits 25:24: stall model.
        #[inline]
        pub stall_model: StallModel,
        /// Bit 26: terminated transactions with an abort (1) or RAZ/WI (0).
        #[inline]
        pub term_model: bool,
        /// Bits 28:27: stream table formats.
        #[inline]
        pub st_level: StLevel,
        #[inline]
        reserved: u1,
        /// Bit 30: Realm Management Extension.
        #[inline]
        pub rme_impl: bool,
        #[inline]
        reserved: u1,
    }

    /// SMMU_IDR1 (0x04): sizes.
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct Idr1 {
        /// Bits 5:0: StreamID bits.
        #[inline]
        pub sidsize: u6,
        /// Bits 10:6: SubstreamID bits.
        #[inline]
        pub ssidsize: u5,
        /// Bits 15:11: log2 of the largest PRI queue.
        #[inline]
        pub priqs: u5,
        /// Bits 20:16: log2 of the largest event queue.
        #[inline]
        pub eventqs: u5,
        /// Bits 25:21: log2 of the largest command queue.
        #[inline]
        pub cmdqs: u5,
        /// Bit 26: incoming permission attributes can be overridden.
        #[inline]
        pub attr_perms_ovr: bool,
        /// Bit 27: incoming memory attributes can be overridden.
        #[inline]
        pub attr_types_ovr: bool,
        /// Bit 28: base addresses are relative to the SMMU base.
        #[inline]
        pub rel: bool,
        /// Bit 29: queue bases and sizes are fixed.
        #[inline]
        pub queues_preset: bool,
        /// Bit 30: table bases are fixed.
        #[inline]
        pub tables_preset: bool,
        /// Bit 31: enhanced command queues.
        #[inline]
        pub ecmdq: bool,
    }

    /// SMMU_IDR2 (0x08).
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct Idr2 {
        /// Bits 9:0: VATOS page offset.
        #[inline]
        pub ba_vatos: u10,
        #[inline]
        reserved: u22,
    }

    /// SMMU_IDR3 (0x0C): further features.
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct Idr3 {
        #[inline]
        reserved: u2,
        /// Bit 2: hierarchical attribute disables.
        #[inline]
        pub had: bool,
        /// Bit 3: page-based hardware attributes.
        #[inline]
        pub pbha: bool,
        /// Bit 4: stage-2 execute-never by privilege.
        #[inline]
        pub xnx: bool,
        /// Bit 5: PASID with PRI responses.
        #[inline]
        pub pps: bool,
        #[inline]
        reserved: u1,
        /// Bit 7: MPAM.
        #[inline]
        pub mpam: bool,
        /// Bit 8: stage-2 forced write-back.
        #[inline]
        pub fwb: bool,
        /// Bit 9: small translation tables.
        #[inline]
        pub stt: bool,
        /// Bit 10: range invalidation.
        #[inline]
        pub ril: bool,
        /// Bits 12:11: break-before-make level.
        #[inline]
        pub bbml: u2,
        /// Bit 13: E0PD.
        #[inline]
        pub e0pd: bool,
        /// Bit 14: non-cacheable PTW accesses.
        #[inline]
        pub ptwnnc: bool,
        /// Bit 15: device permission table.
        #[inline]
        pub dpt: bool,
        #[inline]
        reserved: u16,
    }

    /// SMMU_IDR5 (0x14): address sizes and granules.
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct Idr5 {
        /// Bits 2:0: output address size.
        #[inline]
        pub oas: PaSize,
        #[inline]
        reserved: u1,
        /// Bit 4: 4 KiB granule.
        #[inline]
        pub gran4k: bool,
        /// Bit 5: 16 KiB granule.
        #[inline]
        pub gran16k: bool,
        /// Bit 6: 64 KiB granule.
        #[inline]
        pub gran64k: bool,
        #[inline]
        reserved: u3,
        /// Bits 11:10: virtual address extension (0 = 48-bit VAs).
        #[inline]
        pub vax: u2,
        #[inline]
        reserved: u4,
        /// Bits 31:16: maximum outstanding stalled transactions.
        #[inline]
        pub stall_max: u16,
    }

    /// SMMU_IIDR (0x18): implementation identification.
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct Iidr {
        /// Bits 11:0: JEP106 implementer code.
        #[inline]
        pub implementer: u12,
        /// Bits 15:12: revision.
        #[inline]
        pub revision: u4,
        /// Bits 19:16: variant.
        #[inline]
        pub variant: u4,
        /// Bits 31:20: product ID.
        #[inline]
        pub product_id: u12,
    }

    /// SMMU_AIDR (0x1C): architecture version.
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct Aidr {
        /// Bits 3:0: minor revision (SMMUv3.x).
        #[inline]
        pub arch_minor_rev: u4,
        /// Bits 7:4: major revision minus 3.
        #[inline]
        pub arch_major_rev: u4,
        #[inline]
        reserved: u24,
    }

    /// SMMU_CR0 (0x20) and SMMU_CR0ACK (0x24).
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq, Default)]
    pub struct Cr0 {
        /// Bit 0: SMMUEN, translation enabled.
        #[inline]
        pub smmuen: bool,
        /// Bit 1: PRI queue enabled.
        #[inline]
        pub priqen: bool,
        /// Bit 2: event queue enabled.
        #[inline]
        pub eventqen: bool,
        /// Bit 3: command queue enabled.
        #[inline]
        pub cmdqen: bool,
        /// Bit 4: ATS check.
        #[inline]
        pub atschk: bool,
        #[inline]
        reserved: u1,
        /// Bits 8:6: VMID wildcard.
        #[inline]
        pub vmw: u3,
        #[inline]
        reserved: u23,
    }

    /// SMMU_CR1 (0x28): table and queue memory attributes.
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq, Default)]
    pub struct Cr1 {
        /// Bits 1:0: queue inner cacheability.
        #[inline]
        pub queue_ic: u2,
        /// Bits 3:2: queue outer cacheability.
        #[inline]
        pub queue_oc: u2,
        /// Bits 5:4: queue shareability.
        #[inline]
        pub queue_sh: u2,
        /// Bits 7:6: table inner cacheability.
        #[inline]
        pub table_ic: u2,
        /// Bits 9:8: table outer cacheability.
        #[inline]
        pub table_oc: u2,
        /// Bits 11:10: table shareability.
        #[inline]
        pub table_sh: u2,
        #[inline]
        reserved: u20,
    }

    /// SMMU_CR2 (0x2C).
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq, Default)]
    pub struct Cr2 {
        /// Bit 0: EL2-E2H translation regime.
        #[inline]
        pub e2h: bool,
        /// Bit 1: record C_BAD_STREAMID for invalid input StreamIDs.
        #[inline]
        pub recinvsid: bool,
        /// Bit 2: private TLB maintenance (ignore broadcast).
        #[inline]
        pub ptm: bool,
        /// Bit 3: record ATS translation requests' configuration errors.
        #[inline]
        pub rec_cfg_atc: bool,
        #[inline]
        reserved: u28,
    }

    /// SMMU_STATUSR (0x40).
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq, Default)]
    pub struct Statusr {
        /// Bit 0: the SMMU is dormant.
        #[inline]
        pub dormant: bool,
        #[inline]
        reserved: u31,
    }

    /// SMMU_GBPA (0x44): global bypass attributes, used while SMMUEN = 0.
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq, Default)]
    pub struct Gbpa {
        /// Bits 3:0: memory type.
        #[inline]
        pub memattr: u4,
        /// Bit 4: memory type override.
        #[inline]
        pub mtcfg: bool,
        #[inline]
        reserved: u3,
        /// Bits 11:8: allocation hints.
        #[inline]
        pub alloccfg: u4,
        /// Bits 13:12: shareability.
        #[inline]
        pub shcfg: u2,
        #[inline]
        reserved: u2,
        /// Bits 17:16: privilege.
        #[inline]
        pub privcfg: u2,
        /// Bits 19:18: instruction/data.
        #[inline]
        pub instcfg: u2,
        /// Bit 20: abort incoming transactions (else bypass).
        #[inline]
        pub abort: bool,
        #[inline]
        reserved: u10,
        /// Bit 31: the guest requests an update; reads 0 once done.
        #[inline]
        pub update: bool,
    }

    /// SMMU_IRQ_CTRL (0x50) and SMMU_IRQ_CTRLACK (0x54).
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq, Default)]
    pub struct IrqCtrl {
        /// Bit 0: GERROR interrupt enabled.
        #[inline]
        pub gerror_irqen: bool,
        /// Bit 1: PRI queue interrupt enabled.
        #[inline]
        pub priq_irqen: bool,
        /// Bit 2: event queue interrupt enabled.
        #[inline]
        pub eventq_irqen: bool,
        #[inline]
        reserved: u29,
    }

    /// SMMU_GERROR (0x60) and SMMU_GERRORN (0x64): global errors, active
    /// while a bit differs between the two.
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq, Default)]
    pub struct Gerror {
        /// Bit 0: command queue error (CMDQ_CONS.ERR says which).
        #[inline]
        pub cmdq_err: bool,
        #[inline]
        reserved: u1,
        /// Bit 2: an event could not be written to the event queue.
        #[inline]
        pub eventq_abt_err: bool,
        /// Bit 3: a PRI request could not be written to the PRI queue.
        #[inline]
        pub priq_abt_err: bool,
        /// Bit 4: a CMD_SYNC MSI write was aborted.
        #[inline]
        pub msi_cmdq_abt_err: bool,
        /// Bit 5: an event queue MSI write was aborted.
        #[inline]
        pub msi_eventq_abt_err: bool,
        /// Bit 6: a PRI queue MSI write was aborted.
        #[inline]
        pub msi_priq_abt_err: bool,
        /// Bit 7: a GERROR MSI write was aborted.
        #[inline]
        pub msi_gerror_abt_err: bool,
        /// Bit 8: service failure mode.
        #[inline]
        pub sfm_err: bool,
        #[inline]
        reserved: u23,
    }

    /// SMMU_*_IRQ_CFG0 (GERROR 0x68, EVENTQ 0xB0, PRIQ 0xD0): MSI address.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq, Default)]
    pub struct IrqCfg0 {
        #[inline]
        reserved: u2,
        /// Bits 51:2: MSI address bits 51:2.
        #[inline]
        pub addr: u50,
        #[inline]
        reserved: u12,
    }

    /// SMMU_*_IRQ_CFG2 (GERROR 0x74, EVENTQ 0xBC, PRIQ 0xDC): MSI
    /// attributes.
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq, Default)]
    pub struct IrqCfg2 {
        /// Bits 3:0: memory type of the MSI write.
        #[inline]
        pub memattr: u4,
        /// Bits 5:4: shareability of the MSI write.
        #[inline]
        pub sh: u2,
        #[inline]
        reserved: u25,
        /// Bit 31: PRIQ_IRQ_CFG2.LO, PRI queue overflow behaviour
        /// (reserved in the other two).
        #[inline]
        pub lo: bool,
    }

    /// SMMU_STRTAB_BASE (0x80). ADDR is the architecture's bits 55:6;
    /// the C device uses bits 51:6 only ([`StrtabBase::address_51_6`]).
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq, Default)]
    pub struct StrtabBase {
        #[inline]
        reserved: u6,
        /// Bits 55:6: ADDR, address bits 55:6.
        #[inline]
        pub addr: u50,
        #[inline]
        reserved: u6,
        /// Bit 62: RA, read-allocate hint.
        #[inline]
        pub ra: bool,
        #[inline]
        reserved: u1,
    }

    /// SMMU_STRTAB_BASE_CFG.FMT.
    #[bitsize(2)]
    #[derive(FromBits, Debug, Clone, Copy, PartialEq, Eq)]
    pub enum StrtabFormat {
        /// 0b00: linear.
        Linear = 0,
        /// 0b01: 2-level.
        TwoLevel = 1,
        /// 0b10: reserved (a lookup takes the table as linear).
        Reserved2 = 2,
        /// 0b11: reserved (a lookup takes the table as linear).
        Reserved3 = 3,
    }

    /// SMMU_STRTAB_BASE_CFG (0x88).
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct StrtabBaseCfg {
        /// Bits 5:0: log2 of the number of StreamIDs the table covers.
        #[inline]
        pub log2size: u6,
        /// Bits 10:6: StreamID bits resolved by the second level.
        #[inline]
        pub split: u5,
        #[inline]
        reserved: u5,
        /// Bits 17:16: format.
        #[inline]
        pub fmt: StrtabFormat,
        #[inline]
        reserved: u14,
    }

    /// SMMU_CMDQ_BASE (0x90), SMMU_EVENTQ_BASE (0xA0), SMMU_PRIQ_BASE
    /// (0xC0).
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq, Default)]
    pub struct QueueBase {
        /// Bits 4:0: log2 of the number of entries.
        #[inline]
        pub log2size: u5,
        /// Bits 51:5: address bits 51:5.
        #[inline]
        pub addr: u47,
        #[inline]
        reserved: u10,
        /// Bit 62: read-allocate (CMDQ) or write-allocate (EVENTQ, PRIQ)
        /// hint.
        #[inline]
        pub alloc_hint: bool,
        #[inline]
        reserved: u1,
    }

    /// SMMU_CMDQ_PROD (0x98).
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq, Default)]
    pub struct CmdqProd {
        /// Bits 19:0: index (low LOG2SIZE bits) and wrap bit above it.
        #[inline]
        pub wr: u20,
        #[inline]
        reserved: u12,
    }

    /// CMDQ_CONS.ERR (IHI 0070 §7.1): why command processing stopped.
    /// [`crate::command::CommandError::code`] gives the code of a command
    /// the SMMU could not consume.
    #[bitsize(7)]
    #[derive(FromBits, Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum CmdqError {
        /// 0: CERROR_NONE, no error.
        None,
        /// 1: CERROR_ILL, illegal or unsupported command.
        Ill,
        /// 2: CERROR_ABT, abort on command fetch.
        Abt,
        /// 3: CERROR_ATC_INV_SYNC, a CMD_SYNC could not complete an
        /// ATC_INV.
        AtcInvSync,
        /// Any other value (the guest may write anything).
        #[fallback]
        Other(u7),
    }

    /// SMMU_CMDQ_CONS (0x9C).
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct CmdqCons {
        /// Bits 19:0: index (low LOG2SIZE bits) and wrap bit above it.
        #[inline]
        pub rd: u20,
        #[inline]
        reserved: u4,
        /// Bits 30:24: error code.
        #[inline]
        pub err: CmdqError,
        #[inline]
        reserved: u1,
    }

    /// SMMU_EVENTQ_PROD (0x100A8) and SMMU_PRIQ_PROD (0x100C8).
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq, Default)]
    pub struct EventqProd {
        /// Bits 19:0: index (low LOG2SIZE bits) and wrap bit above it.
        #[inline]
        pub wr: u20,
        #[inline]
        reserved: u11,
        /// Bit 31: overflow flag, toggled when records were lost.
        #[inline]
        pub ovflg: bool,
    }

    /// SMMU_EVENTQ_CONS (0x100AC) and SMMU_PRIQ_CONS (0x100CC).
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq, Default)]
    pub struct EventqCons {
        /// Bits 19:0: index (low LOG2SIZE bits) and wrap bit above it.
        #[inline]
        pub rd: u20,
        #[inline]
        reserved: u11,
        /// Bit 31: overflow acknowledge flag.
        #[inline]
        pub ovackflg: bool,
    }
}

impl StrtabBase {
    /// ADDR in place: the table address as the architecture reads it,
    /// bits 55:6.
    pub fn address(self) -> u64 {
        field_address(self.addr(), 6)
    }

    /// ADDR bits 51:6 in place: the address as the C device reads it (its
    /// mask drops bits 55:52; it uses the same mask for the queue bases).
    pub fn address_51_6(self) -> u64 {
        self.address() & width_mask(52)
    }
}

impl CmdqError {
    /// The 7-bit value of CMDQ_CONS.ERR.
    pub const fn code(self) -> u8 {
        match self {
            CmdqError::None => 0,
            CmdqError::Ill => 1,
            CmdqError::Abt => 2,
            CmdqError::AtcInvSync => 3,
            CmdqError::Other(code) => code.value(),
        }
    }
}

// ---------------------------------------------------------------- offsets

/// Offset of each register in page 0 of the window (the C device answers
/// for page-1 registers at their page-0 offsets too, and the other way
/// round). 64-bit registers are listed once, at their low word.
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegisterOffset {
    /// Identification register 0: features.
    IDR0 = 0x00,
    /// Identification register 1: sizes.
    IDR1 = 0x04,
    /// Identification register 2.
    IDR2 = 0x08,
    /// Identification register 3: further features.
    IDR3 = 0x0C,
    /// Identification register 4 (implementation defined).
    IDR4 = 0x10,
    /// Identification register 5: address sizes, granules.
    IDR5 = 0x14,
    /// Implementation identification.
    IIDR = 0x18,
    /// Architecture version.
    AIDR = 0x1C,
    /// Global control 0.
    CR0 = 0x20,
    /// CR0 update acknowledge.
    CR0ACK = 0x24,
    /// Global control 1.
    CR1 = 0x28,
    /// Global control 2.
    CR2 = 0x2C,
    /// Status.
    STATUSR = 0x40,
    /// Global bypass attributes.
    GBPA = 0x44,
    /// Alternative global bypass attributes (not implemented: RAZ/WI).
    AGBPA = 0x48,
    /// Interrupt enables.
    IRQ_CTRL = 0x50,
    /// IRQ_CTRL update acknowledge.
    IRQ_CTRLACK = 0x54,
    /// Global errors.
    GERROR = 0x60,
    /// Global error acknowledge.
    GERRORN = 0x64,
    /// GERROR MSI address (64-bit).
    GERROR_IRQ_CFG0 = 0x68,
    /// GERROR MSI data.
    GERROR_IRQ_CFG1 = 0x70,
    /// GERROR MSI attributes.
    GERROR_IRQ_CFG2 = 0x74,
    /// Stream table base (64-bit).
    STRTAB_BASE = 0x80,
    /// Stream table format and size.
    STRTAB_BASE_CFG = 0x88,
    /// Command queue base (64-bit).
    CMDQ_BASE = 0x90,
    /// Command queue producer index.
    CMDQ_PROD = 0x98,
    /// Command queue consumer index and error.
    CMDQ_CONS = 0x9C,
    /// Event queue base (64-bit).
    EVENTQ_BASE = 0xA0,
    /// Event queue producer index (architecturally at 0x100A8).
    EVENTQ_PROD = 0xA8,
    /// Event queue consumer index (architecturally at 0x100AC).
    EVENTQ_CONS = 0xAC,
    /// Event queue MSI address (64-bit).
    EVENTQ_IRQ_CFG0 = 0xB0,
    /// Event queue MSI data.
    EVENTQ_IRQ_CFG1 = 0xB8,
    /// Event queue MSI attributes.
    EVENTQ_IRQ_CFG2 = 0xBC,
    /// PRI queue base (64-bit; not implemented: RAZ/WI).
    PRIQ_BASE = 0xC0,
    /// PRI queue producer index (architecturally at 0x100C8; RAZ/WI).
    PRIQ_PROD = 0xC8,
    /// PRI queue consumer index (architecturally at 0x100CC; RAZ/WI).
    PRIQ_CONS = 0xCC,
    /// PRI queue MSI address (64-bit; RAZ/WI).
    PRIQ_IRQ_CFG0 = 0xD0,
    /// PRI queue MSI data (RAZ/WI).
    PRIQ_IRQ_CFG1 = 0xD8,
    /// PRI queue MSI attributes (RAZ/WI).
    PRIQ_IRQ_CFG2 = 0xDC,
    /// Peripheral ID 4.
    PIDR4 = 0xFD0,
    /// Peripheral ID 5.
    PIDR5 = 0xFD4,
    /// Peripheral ID 6.
    PIDR6 = 0xFD8,
    /// Peripheral ID 7.
    PIDR7 = 0xFDC,
    /// Peripheral ID 0.
    PIDR0 = 0xFE0,
    /// Peripheral ID 1.
    PIDR1 = 0xFE4,
    /// Peripheral ID 2.
    PIDR2 = 0xFE8,
    /// Peripheral ID 3.
    PIDR3 = 0xFEC,
    /// Component ID 0.
    CIDR0 = 0xFF0,
    /// Component ID 1.
    CIDR1 = 0xFF4,
    /// Component ID 2.
    CIDR2 = 0xFF8,
    /// Component ID 3.
    CIDR3 = 0xFFC,
}

/// Which 32-bit word of a register an access touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Word {
    /// Bits 31:0 (the whole of a 32-bit register).
    Low,
    /// Bits 63:32 of a 64-bit register.
    High,
}

impl RegisterOffset {
    /// Every register, in offset order.
    pub const ALL: [RegisterOffset; 51] = {
        use RegisterOffset::*;
        [
            IDR0,
            IDR1,
            IDR2,
            IDR3,
            IDR4,
            IDR5,
            IIDR,
            AIDR,
            CR0,
            CR0ACK,
            CR1,
            CR2,
            STATUSR,
            GBPA,
            AGBPA,
            IRQ_CTRL,
            IRQ_CTRLACK,
            GERROR,
            GERRORN,
            GERROR_IRQ_CFG0,
            GERROR_IRQ_CFG1,
            GERROR_IRQ_CFG2,
            STRTAB_BASE,
            STRTAB_BASE_CFG,
            CMDQ_BASE,
            CMDQ_PROD,
            CMDQ_CONS,
            EVENTQ_BASE,
            EVENTQ_PROD,
            EVENTQ_CONS,
            EVENTQ_IRQ_CFG0,
            EVENTQ_IRQ_CFG1,
            EVENTQ_IRQ_CFG2,
            PRIQ_BASE,
            PRIQ_PROD,
            PRIQ_CONS,
            PRIQ_IRQ_CFG0,
            PRIQ_IRQ_CFG1,
            PRIQ_IRQ_CFG2,
            PIDR4,
            PIDR5,
            PIDR6,
            PIDR7,
            PIDR0,
            PIDR1,
            PIDR2,
            PIDR3,
            CIDR0,
            CIDR1,
            CIDR2,
            CIDR3,
        ]
    };

    /// The page-0 offset.
    #[inline]
    pub fn offset(self) -> u64 {
        self as u64
    }

    /// Width in bytes: 8 for the 64-bit registers, 4 otherwise.
    pub fn width(self) -> u64 {
        use RegisterOffset::*;
        match self {
            GERROR_IRQ_CFG0 | STRTAB_BASE | CMDQ_BASE | EVENTQ_BASE | EVENTQ_IRQ_CFG0 | PRIQ_BASE | PRIQ_IRQ_CFG0 => 8,
            _ => 4,
        }
    }

    /// The register a page-0 offset falls in, and which word of it; `None`
    /// for holes and for offsets not on a 32-bit boundary.
    pub fn decode(offset: u64) -> Option<(RegisterOffset, Word)> {
        if offset % 4 != 0 {
            return None;
        }
        Self::ALL.iter().find_map(|&r| {
            let start = r.offset();
            if offset == start {
                Some((r, Word::Low))
            } else if r.width() == 8 && offset == start + 4 {
                Some((r, Word::High))
            } else {
                None
            }
        })
    }
}

/// The page-0 offset an access to `offset` reaches: the C device ignores
/// bit 16, so page 1 aliases page 0 register for register.
#[inline]
pub fn page0_offset(offset: u64) -> u64 {
    offset & !PAGE1
}

// ---------------------------------------------------------------- effects

/// How the C device reports a message about an access (the `qemu_log_mask`
/// class the glue should use).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogClass {
    /// `LOG_GUEST_ERROR`: the guest programmed the device wrongly.
    GuestError,
    /// `LOG_UNIMP`: the device does not implement what was accessed.
    Unimplemented,
    /// `LOG_INVALID_MEM`: the memory core refused the access.
    InvalidAccess,
}

/// A message about one guest access, for the glue to log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Diagnostic {
    /// Size other than 4 or 8, an unaligned access, or an offset outside
    /// the window. QEMU's memory core refuses these (a decode error) before
    /// the C device sees them; the model reads 0 and writes nothing.
    InvalidAccess {
        /// Offset as accessed.
        offset: u64,
        /// Access size in bytes.
        size: u32,
        /// A write (else a read).
        write: bool,
    },
    /// A register the device does not decode for this access: the read
    /// returned 0 or the write was dropped.
    Unimplemented {
        /// Page-0 offset (after the page-1 alias).
        offset: u64,
        /// Access size in bytes.
        size: u32,
        /// A write (else a read).
        write: bool,
    },
    /// A GERRORN write toggled bits whose GERROR error was not active
    /// (the write still took effect).
    InactiveGerrorToggled {
        /// The bits toggled while inactive.
        bits: u32,
    },
}

impl Diagnostic {
    /// The log class the C device uses for this message.
    pub fn log_class(&self) -> LogClass {
        match self {
            Diagnostic::InvalidAccess { .. } => LogClass::InvalidAccess,
            Diagnostic::Unimplemented { .. } => LogClass::Unimplemented,
            Diagnostic::InactiveGerrorToggled { .. } => LogClass::GuestError,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Diagnostic::InvalidAccess { offset, size, write } => write!(
                f,
                "smmuv3: invalid {}-byte {} at offset 0x{offset:x} (need 4 or 8 bytes, naturally aligned, inside the 0x{MMIO_SIZE:x}-byte window)",
                size,
                if write { "write" } else { "read" },
            ),
            Diagnostic::Unimplemented { offset, size, write } => write!(
                f,
                "smmuv3: no {}-bit register to {} at offset 0x{offset:x} ({})",
                size * 8,
                if write { "write" } else { "read" },
                if write { "write ignored" } else { "reads as zero" },
            ),
            Diagnostic::InactiveGerrorToggled { bits } => {
                write!(f, "smmuv3: GERRORN write toggles bits of inactive errors: 0x{bits:x}")
            }
        }
    }
}

/// A read's value and the message, if any, to log about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReadOutcome {
    /// The value read (zero-extended to 64 bits for 32-bit reads).
    pub value: u64,
    /// What to log.
    pub diagnostic: Option<Diagnostic>,
}

/// What the device must do after a register write. The register file has
/// already changed; none of this has happened yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteEffect {
    /// Process the command queue now. Set after every write to CR0,
    /// GERRORN and CMDQ_PROD, where the C device calls its consumer (which
    /// does nothing unless CR0.CMDQEN is set, and stops while
    /// GERROR.CMDQ_ERR is active).
    pub consume_cmdq: bool,
    /// CR0.SMMUEN changed to this value (translation switched on or off;
    /// the C device keeps its caches across the change).
    pub smmu_enable_changed: Option<bool>,
    /// The guest wrote EVENTQ_CONS (it freed event queue entries). The C
    /// device does nothing then.
    pub eventq_cons_moved: bool,
    /// GERROR errors the guest acknowledged by toggling GERRORN (bits that
    /// were active). Interrupt state may need re-evaluation; the C device
    /// pulses edge interrupts and has nothing to do.
    pub gerror_acknowledged: Gerror,
    /// IRQ_CTRL was written (interrupt enables may have changed; the C
    /// device does not raise pending interrupts when enabled).
    pub irq_ctrl_changed: bool,
    /// STRTAB_BASE or STRTAB_BASE_CFG was written. The C device keeps its
    /// configuration cache until CFGI commands.
    pub strtab_changed: bool,
    /// GBPA was updated (a write with GBPA.UPDATE set): the attributes for
    /// transactions while SMMUEN = 0 (abort or bypass) may have changed.
    pub gbpa_changed: bool,
    /// What to log.
    pub diagnostic: Option<Diagnostic>,
}

// ---------------------------------------------------------------- queues

/// A queue's registers and the C device's derived state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Queue {
    /// The base register as written (including LOG2SIZE).
    pub base: QueueBase,
    /// The producer register, raw.
    pub prod: u32,
    /// The consumer register, raw.
    pub cons: u32,
    /// The effective log2 of the number of entries: the base register's
    /// LOG2SIZE capped at the queue's maximum, captured when the low word
    /// of the base is written (not recomputed at reset, not by a write of
    /// the high word).
    pub log2size: u8,
    /// Bytes per entry.
    pub entry_bytes: u32,
}

impl Queue {
    fn new(entry_bytes: u32) -> Queue {
        Queue { base: QueueBase::from(0u64), prod: 0, cons: 0, log2size: 0, entry_bytes }
    }

    /// Where entry 0 is, as the C device computes it: base bits 51:6 (it
    /// uses the stream table's address mask, so bit 5 of a queue base,
    /// architecturally an address bit, is dropped).
    pub fn base_address(&self) -> u64 {
        StrtabBase::from(u64::from(self.base)).address_51_6()
    }

    /// The ring of entries at [`base_address`](Self::base_address).
    pub fn ring(&self) -> Ring {
        Ring::new(self.base_address(), self.log2size, self.entry_bytes)
    }

    /// The producer index and wrap bit.
    #[inline]
    pub fn prod(&self) -> Wrapped {
        Wrapped { value: self.prod }
    }

    /// The consumer index and wrap bit.
    #[inline]
    pub fn cons(&self) -> Wrapped {
        Wrapped { value: self.cons }
    }

    /// No entry between consumer and producer.
    pub fn is_empty(&self) -> bool {
        Wrapped::empty(self.prod(), self.cons(), self.log2size)
    }

    /// Every entry between consumer and producer.
    pub fn is_full(&self) -> bool {
        Wrapped::full(self.prod(), self.cons(), self.log2size)
    }

    /// Advance the producer by one as the SMMU does when it writes a
    /// record: the new value keeps only the index and wrap bit (bits above,
    /// such as EVENTQ_PROD.OVFLG, are cleared), as in the C device.
    pub fn advance_prod(&mut self) {
        self.prod = self.prod().next(self.log2size).value;
    }

    /// Advance the consumer by one as the SMMU does when it has executed a
    /// command: only the index and wrap bit change, bits above (such as
    /// CMDQ_CONS.ERR) are kept.
    pub fn advance_cons(&mut self) {
        let next = self.cons().next(self.log2size).value;
        // The index and wrap bit: bits log2size:0.
        let field = 2u32.wrapping_shl(u32::from(self.log2size.min(31))).wrapping_sub(1);
        self.cons = (self.cons & !field) | next;
    }
}

fn deposit_word(old: u64, word: Word, value: u32) -> u64 {
    match word {
        // A 32-bit access to one half of a 64-bit register (arithmetic).
        Word::Low => (old & 0xFFFF_FFFF_0000_0000) | u64::from(value),
        Word::High => (old & 0x0000_0000_FFFF_FFFF) | (u64::from(value) << 32),
    }
}

fn extract_word(value: u64, word: Word) -> u32 {
    match word {
        // The 32-bit half of a 64-bit register an access reads (arithmetic).
        Word::Low => value as u32,
        Word::High => (value >> 32) as u32,
    }
}

// ---------------------------------------------------------------- the file

/// Everything the C device keeps in its registers, with its access rules.
///
/// Fields are public so that migration can save and restore them; every
/// method copes with any stored value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registers {
    /// IDR0-IDR5, IIDR, AIDR (from the configuration; read-only).
    pub id: IdRegisters,
    /// The C device's sticky "2-level stream table" feature: set by any
    /// STRTAB_BASE_CFG write with FMT = 2-level and cleared only by reset.
    /// Stream table walks use it instead of the current FMT.
    pub two_level_strtab: bool,
    /// The C device's `sid_size`: never written, always 0, but migrated.
    pub sid_size: u8,
    /// SPLIT of the last STRTAB_BASE_CFG write with FMT = 2-level.
    pub sid_split: u8,
    /// CR0 as written.
    pub cr0: Cr0,
    /// CR0ACK: the [`CR0ACK_MIRRORED`] bits of the last CR0 write.
    pub cr0ack: Cr0,
    /// CR1 as written (no effect).
    pub cr1: Cr1,
    /// CR2 as written (no effect).
    pub cr2: Cr2,
    /// STATUSR (always 0).
    pub statusr: Statusr,
    /// GBPA (UPDATE always clear).
    pub gbpa: Gbpa,
    /// IRQ_CTRL as written (IRQ_CTRLACK reads the same).
    pub irq_ctrl: IrqCtrl,
    /// GERROR.
    pub gerror: Gerror,
    /// GERRORN as written.
    pub gerrorn: Gerror,
    /// GERROR_IRQ_CFG0 (storage only: the model sends no MSIs).
    pub gerror_irq_cfg0: IrqCfg0,
    /// GERROR_IRQ_CFG1, the MSI data (storage only).
    pub gerror_irq_cfg1: u32,
    /// GERROR_IRQ_CFG2 (storage only).
    pub gerror_irq_cfg2: IrqCfg2,
    /// STRTAB_BASE as written.
    pub strtab_base: StrtabBase,
    /// STRTAB_BASE_CFG as written.
    pub strtab_base_cfg: StrtabBaseCfg,
    /// EVENTQ_IRQ_CFG0 (write-only in the C device: reads return 0).
    pub eventq_irq_cfg0: IrqCfg0,
    /// EVENTQ_IRQ_CFG1 (write-only).
    pub eventq_irq_cfg1: u32,
    /// EVENTQ_IRQ_CFG2 (write-only).
    pub eventq_irq_cfg2: IrqCfg2,
    /// The command queue.
    pub cmdq: Queue,
    /// The event queue.
    pub eventq: Queue,
}

impl Registers {
    /// The registers of a device with identification `id`, after its first
    /// reset (everything else starts at zero, as a new QEMU object does).
    pub fn new(id: IdRegisters) -> Registers {
        let mut r = Registers {
            id,
            two_level_strtab: false,
            sid_size: 0,
            sid_split: 0,
            cr0: Cr0::from(0u32),
            cr0ack: Cr0::from(0u32),
            cr1: Cr1::from(0u32),
            cr2: Cr2::from(0u32),
            statusr: Statusr::from(0u32),
            gbpa: Gbpa::from(0u32),
            irq_ctrl: IrqCtrl::from(0u32),
            gerror: Gerror::from(0u32),
            gerrorn: Gerror::from(0u32),
            gerror_irq_cfg0: IrqCfg0::from(0u64),
            gerror_irq_cfg1: 0,
            gerror_irq_cfg2: IrqCfg2::from(0u32),
            strtab_base: StrtabBase::from(0u64),
            strtab_base_cfg: StrtabBaseCfg::from(0u32),
            eventq_irq_cfg0: IrqCfg0::from(0u64),
            eventq_irq_cfg1: 0,
            eventq_irq_cfg2: IrqCfg2::from(0u32),
            cmdq: Queue::new(CMDQ_ENTRY_BYTES),
            eventq: Queue::new(EVENTQ_ENTRY_BYTES),
        };
        r.reset();
        r
    }

    /// Device reset, as the C device does it. Reset: CR0, CR0ACK,
    /// IRQ_CTRL, GERROR, GERRORN, STATUSR (to 0), GBPA (to SHCFG = 0b01),
    /// the queues' PROD and CONS (to 0), the queue bases' LOG2SIZE (to 19),
    /// the 2-level flag and SPLIT. Kept: CR1, CR2, GERROR_IRQ_CFG0-2,
    /// EVENTQ_IRQ_CFG0-2, STRTAB_BASE, STRTAB_BASE_CFG, the queue bases'
    /// other bits, and the queues' effective sizes — so after a reset
    /// CMDQ_BASE reads LOG2SIZE = 19 while the queue still has the size of
    /// the last base write (1 entry if never written) until the guest
    /// writes the base again.
    pub fn reset(&mut self) {
        let mut cmdq_base = self.cmdq.base;
        cmdq_base.set_log2size(u5::new(CMDQ_LOG2_MAX));
        self.cmdq = Queue { base: cmdq_base, prod: 0, cons: 0, entry_bytes: CMDQ_ENTRY_BYTES, ..self.cmdq };
        let mut eventq_base = self.eventq.base;
        eventq_base.set_log2size(u5::new(EVENTQ_LOG2_MAX));
        self.eventq = Queue { base: eventq_base, prod: 0, cons: 0, entry_bytes: EVENTQ_ENTRY_BYTES, ..self.eventq };
        self.two_level_strtab = false;
        self.sid_split = 0;
        self.cr0 = Cr0::from(0u32);
        self.cr0ack = Cr0::from(0u32);
        self.irq_ctrl = IrqCtrl::from(0u32);
        self.gerror = Gerror::from(0u32);
        self.gerrorn = Gerror::from(0u32);
        self.statusr = Statusr::from(0u32);
        self.gbpa = gbpa_reset_value();
    }

    // ------------------------------------------------------------ access

    /// A guest read of `size` bytes at `offset` (see the module
    /// conventions); the value only.
    pub fn read(&self, offset: u64, size: u32) -> u64 {
        self.read_checked(offset, size).value
    }

    /// A guest read of `size` bytes at `offset`, with what to log about it.
    pub fn read_checked(&self, offset: u64, size: u32) -> ReadOutcome {
        if !access_ok(offset, size) {
            return ReadOutcome {
                value: 0,
                diagnostic: Some(Diagnostic::InvalidAccess { offset, size, write: false }),
            };
        }
        let off = page0_offset(offset);
        let decoded = RegisterOffset::decode(off);
        let value = match (size, decoded) {
            (8, Some((reg, Word::Low))) => self.read64(reg),
            (4, Some((reg, word))) => self.read32(reg, word).map(u64::from),
            _ => None,
        };
        match value {
            Some(value) => ReadOutcome { value, diagnostic: None },
            None => ReadOutcome {
                value: 0,
                diagnostic: Some(Diagnostic::Unimplemented { offset: off, size, write: false }),
            },
        }
    }

    fn read64(&self, reg: RegisterOffset) -> Option<u64> {
        use RegisterOffset::*;
        Some(match reg {
            GERROR_IRQ_CFG0 => self.gerror_irq_cfg0.into(),
            STRTAB_BASE => self.strtab_base.into(),
            CMDQ_BASE => self.cmdq.base.into(),
            EVENTQ_BASE => self.eventq.base.into(),
            // EVENTQ_IRQ_CFG0 included: the C device has no read case.
            _ => return None,
        })
    }

    fn read32(&self, reg: RegisterOffset, word: Word) -> Option<u32> {
        use RegisterOffset::*;
        Some(match reg {
            IDR0 => self.id.idr[0],
            IDR1 => self.id.idr[1],
            IDR2 => self.id.idr[2],
            IDR3 => self.id.idr[3],
            IDR4 => self.id.idr[4],
            IDR5 => self.id.idr[5],
            IIDR => self.id.iidr,
            AIDR => self.id.aidr,
            CR0 => self.cr0.into(),
            CR0ACK => self.cr0ack.into(),
            CR1 => self.cr1.into(),
            CR2 => self.cr2.into(),
            STATUSR => self.statusr.into(),
            GBPA => self.gbpa.into(),
            IRQ_CTRL | IRQ_CTRLACK => self.irq_ctrl.into(),
            GERROR => self.gerror.into(),
            GERRORN => self.gerrorn.into(),
            GERROR_IRQ_CFG0 => extract_word(self.gerror_irq_cfg0.into(), word),
            GERROR_IRQ_CFG1 => self.gerror_irq_cfg1,
            GERROR_IRQ_CFG2 => self.gerror_irq_cfg2.into(),
            STRTAB_BASE => extract_word(self.strtab_base.into(), word),
            STRTAB_BASE_CFG => self.strtab_base_cfg.into(),
            CMDQ_BASE => extract_word(self.cmdq.base.into(), word),
            CMDQ_PROD => self.cmdq.prod,
            CMDQ_CONS => self.cmdq.cons,
            EVENTQ_BASE => extract_word(self.eventq.base.into(), word),
            EVENTQ_PROD => self.eventq.prod,
            EVENTQ_CONS => self.eventq.cons,
            PIDR4 | PIDR5 | PIDR6 | PIDR7 | PIDR0 | PIDR1 | PIDR2 | PIDR3 | CIDR0 | CIDR1 | CIDR2 | CIDR3 => {
                let index = (reg.offset() - PIDR4.offset()) / 4;
                ID_BLOCK.get(index as usize).copied().unwrap_or(0)
            }
            // C quirk: EVENTQ_IRQ_CFG0-2 are write-only. AGBPA and the PRI
            // queue are not implemented.
            EVENTQ_IRQ_CFG0 | EVENTQ_IRQ_CFG1 | EVENTQ_IRQ_CFG2 | AGBPA | PRIQ_BASE | PRIQ_PROD | PRIQ_CONS
            | PRIQ_IRQ_CFG0 | PRIQ_IRQ_CFG1 | PRIQ_IRQ_CFG2 => return None,
        })
    }

    /// A guest write of the low `size` bytes of `value` at `offset` (see
    /// the module conventions), and what the device must do next.
    pub fn write(&mut self, offset: u64, size: u32, value: u64) -> WriteEffect {
        let mut effect = WriteEffect::default();
        if !access_ok(offset, size) {
            effect.diagnostic = Some(Diagnostic::InvalidAccess { offset, size, write: true });
            return effect;
        }
        let off = page0_offset(offset);
        let handled = match (size, RegisterOffset::decode(off)) {
            (8, Some((reg, Word::Low))) => self.write64(reg, value, &mut effect),
            (4, Some((reg, word))) => self.write32(reg, word, value as u32, &mut effect),
            _ => false,
        };
        if !handled {
            effect.diagnostic = Some(Diagnostic::Unimplemented { offset: off, size, write: true });
        }
        effect
    }

    fn write64(&mut self, reg: RegisterOffset, value: u64, effect: &mut WriteEffect) -> bool {
        use RegisterOffset::*;
        match reg {
            GERROR_IRQ_CFG0 => self.gerror_irq_cfg0 = IrqCfg0::from(value),
            STRTAB_BASE => {
                self.strtab_base = StrtabBase::from(value);
                effect.strtab_changed = true;
            }
            CMDQ_BASE => set_queue_base(&mut self.cmdq, value, CMDQ_LOG2_MAX),
            EVENTQ_BASE => set_queue_base(&mut self.eventq, value, EVENTQ_LOG2_MAX),
            EVENTQ_IRQ_CFG0 => self.eventq_irq_cfg0 = IrqCfg0::from(value),
            _ => return false,
        }
        true
    }

    fn write32(&mut self, reg: RegisterOffset, word: Word, value: u32, effect: &mut WriteEffect) -> bool {
        use RegisterOffset::*;
        match reg {
            CR0 => {
                let was = self.cr0.smmuen();
                self.cr0 = Cr0::from(value);
                self.cr0ack = Cr0::from(value & CR0ACK_MIRRORED);
                if was != self.cr0.smmuen() {
                    effect.smmu_enable_changed = Some(self.cr0.smmuen());
                }
                effect.consume_cmdq = true;
            }
            CR1 => self.cr1 = Cr1::from(value),
            CR2 => self.cr2 = Cr2::from(value),
            IRQ_CTRL => {
                self.irq_ctrl = IrqCtrl::from(value);
                effect.irq_ctrl_changed = true;
            }
            GERRORN => {
                let old = u32::from(self.gerrorn);
                let active = u32::from(self.gerror) ^ old;
                let toggled = old ^ value;
                if toggled & !active != 0 {
                    effect.diagnostic = Some(Diagnostic::InactiveGerrorToggled { bits: toggled & !active });
                }
                self.gerrorn = Gerror::from(value);
                effect.gerror_acknowledged = Gerror::from(toggled & active);
                effect.consume_cmdq = true;
            }
            GERROR_IRQ_CFG0 => {
                self.gerror_irq_cfg0 = IrqCfg0::from(deposit_word(self.gerror_irq_cfg0.into(), word, value))
            }
            GERROR_IRQ_CFG1 => self.gerror_irq_cfg1 = value,
            GERROR_IRQ_CFG2 => self.gerror_irq_cfg2 = IrqCfg2::from(value),
            GBPA => {
                let mut gbpa = Gbpa::from(value);
                if gbpa.update() {
                    // The update completes at once: UPDATE never reads 1.
                    gbpa.set_update(false);
                    self.gbpa = gbpa;
                    effect.gbpa_changed = true;
                }
            }
            STRTAB_BASE => {
                self.strtab_base = StrtabBase::from(deposit_word(self.strtab_base.into(), word, value));
                effect.strtab_changed = true;
            }
            STRTAB_BASE_CFG => {
                self.strtab_base_cfg = StrtabBaseCfg::from(value);
                if self.strtab_base_cfg.fmt() == StrtabFormat::TwoLevel {
                    self.sid_split = self.strtab_base_cfg.split().value();
                    self.two_level_strtab = true;
                }
                effect.strtab_changed = true;
            }
            CMDQ_BASE => {
                let raw = deposit_word(self.cmdq.base.into(), word, value);
                match word {
                    Word::Low => set_queue_base(&mut self.cmdq, raw, CMDQ_LOG2_MAX),
                    Word::High => self.cmdq.base = QueueBase::from(raw),
                }
            }
            CMDQ_PROD => {
                self.cmdq.prod = value;
                effect.consume_cmdq = true;
            }
            CMDQ_CONS => self.cmdq.cons = value,
            EVENTQ_BASE => {
                let raw = deposit_word(self.eventq.base.into(), word, value);
                match word {
                    Word::Low => set_queue_base(&mut self.eventq, raw, EVENTQ_LOG2_MAX),
                    Word::High => self.eventq.base = QueueBase::from(raw),
                }
            }
            EVENTQ_PROD => self.eventq.prod = value,
            EVENTQ_CONS => {
                self.eventq.cons = value;
                effect.eventq_cons_moved = true;
            }
            EVENTQ_IRQ_CFG0 => {
                self.eventq_irq_cfg0 = IrqCfg0::from(deposit_word(self.eventq_irq_cfg0.into(), word, value))
            }
            EVENTQ_IRQ_CFG1 => self.eventq_irq_cfg1 = value,
            EVENTQ_IRQ_CFG2 => self.eventq_irq_cfg2 = IrqCfg2::from(value),
            IDR0 | IDR1 | IDR2 | IDR3 | IDR4 | IDR5 | IIDR | AIDR | CR0ACK | STATUSR | AGBPA | IRQ_CTRLACK | GERROR
            | PRIQ_BASE | PRIQ_PROD | PRIQ_CONS | PRIQ_IRQ_CFG0 | PRIQ_IRQ_CFG1 | PRIQ_IRQ_CFG2 | PIDR4 | PIDR5
            | PIDR6 | PIDR7 | PIDR0 | PIDR1 | PIDR2 | PIDR3 | CIDR0 | CIDR1 | CIDR2 | CIDR3 => return false,
        }
        true
    }

    // ------------------------------------------------------------ state

    /// CR0.SMMUEN: translation enabled (else GBPA applies).
    pub fn smmu_enabled(&self) -> bool {
        self.cr0.smmuen()
    }

    /// CR0.CMDQEN.
    pub fn cmdq_enabled(&self) -> bool {
        self.cr0.cmdqen()
    }

    /// CR0.EVENTQEN.
    pub fn eventq_enabled(&self) -> bool {
        self.cr0.eventqen()
    }

    /// GBPA.ABORT: with SMMUEN = 0, transactions abort (else they bypass).
    pub fn gbpa_abort(&self) -> bool {
        self.gbpa.abort()
    }

    /// IRQ_CTRL.EVENTQ_IRQEN.
    pub fn eventq_irq_enabled(&self) -> bool {
        self.irq_ctrl.eventq_irqen()
    }

    /// IRQ_CTRL.GERROR_IRQEN.
    pub fn gerror_irq_enabled(&self) -> bool {
        self.irq_ctrl.gerror_irqen()
    }

    /// The active global errors: GERROR bits that differ from GERRORN.
    pub fn gerror_active(&self) -> Gerror {
        Gerror::from(u32::from(self.gerror) ^ u32::from(self.gerrorn))
    }

    /// Raise the global errors in `errors`: each one not already active is
    /// toggled in GERROR. Returns whether the GERROR interrupt must be
    /// pulsed: something new was raised and IRQ_CTRL.GERROR_IRQEN is set.
    pub fn raise_gerror(&mut self, errors: Gerror) -> bool {
        let new = u32::from(errors) & !u32::from(self.gerror_active());
        if new == 0 {
            return false;
        }
        self.gerror = Gerror::from(u32::from(self.gerror) ^ new);
        self.gerror_irq_enabled()
    }

    /// Store `error` in CMDQ_CONS.ERR (the rest of CMDQ_CONS is kept).
    pub fn set_cmdq_error(&mut self, error: CmdqError) {
        let mut cons = CmdqCons::from(self.cmdq.cons);
        cons.set_err(error);
        self.cmdq.cons = cons.into();
    }

    /// The stream table address as the C device uses it: STRTAB_BASE
    /// bits 51:6 (RA and reserved bits dropped).
    pub fn strtab_base_address(&self) -> u64 {
        self.strtab_base.address_51_6()
    }

    /// STRTAB_BASE_CFG.LOG2SIZE.
    pub fn strtab_log2size(&self) -> u8 {
        self.strtab_base_cfg.log2size().value()
    }

    /// The C device's 2-level flag and SPLIT, as one value: `Some(split)`
    /// once any STRTAB_BASE_CFG write had FMT = 2-level (until reset, even
    /// if FMT was written back to linear), `None` for a linear table.
    pub fn strtab_two_level_split(&self) -> Option<u8> {
        self.two_level_strtab.then_some(self.sid_split)
    }

    /// The Stream table the C device walks: STRTAB_BASE as written, the
    /// current LOG2SIZE, and the 2-level format with the SPLIT it
    /// remembers ([`strtab_two_level_split`](Self::strtab_two_level_split))
    /// instead of the current FMT, which
    /// [`StreamTable::from_regs`] reads as the architecture does. Without
    /// 2-level support in `caps` the table is linear.
    pub fn stream_table(&self, caps: &SteCaps) -> StreamTable {
        let format = match self.strtab_two_level_split() {
            Some(split) if caps.two_level_strtab => StreamTableFormat::TwoLevel { split },
            _ => StreamTableFormat::Linear,
        };
        StreamTable { base: self.strtab_base.into(), log2size: self.strtab_log2size(), format }
    }

    /// The C device's `features` word as migrated (bit 0: 2-level stream
    /// table).
    pub fn features_word(&self) -> u32 {
        u32::from(self.two_level_strtab)
    }

    /// Restore the `features` word from a migration stream (bits other than
    /// bit 0 are unknown to the C device and ignored).
    pub fn set_features_word(&mut self, features: u32) {
        self.two_level_strtab = features & 1 != 0;
    }
}

/// The base register and effective size after a write of the low word or
/// of all 64 bits.
fn set_queue_base(q: &mut Queue, raw: u64, log2_max: u8) {
    q.base = QueueBase::from(raw);
    q.log2size = q.base.log2size().value().min(log2_max);
}

/// An access QEMU's memory core would pass to the device: 4 or 8 bytes,
/// naturally aligned, inside the window.
fn access_ok(offset: u64, size: u32) -> bool {
    matches!(size, 4 | 8) && offset % u64::from(size) == 0 && offset < MMIO_SIZE
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Stage};
    use crate::testutil::Rng;

    fn regs() -> Registers {
        Registers::new(Config::default().id_registers())
    }

    fn r32(r: &Registers, off: u64) -> u64 {
        let out = r.read_checked(off, 4);
        assert_eq!(out.diagnostic, None, "read of 0x{off:x} logged {:?}", out.diagnostic);
        out.value
    }

    fn w32(r: &mut Registers, off: u64, v: u32) -> WriteEffect {
        let e = r.write(off, 4, u64::from(v));
        assert!(
            !matches!(e.diagnostic, Some(Diagnostic::Unimplemented { .. } | Diagnostic::InvalidAccess { .. })),
            "write of 0x{off:x} logged {:?}",
            e.diagnostic
        );
        e
    }

    fn unimplemented_read(r: &Registers, off: u64, size: u32) {
        let out = r.read_checked(off, size);
        assert_eq!(out.value, 0, "0x{off:x}/{size}");
        assert_eq!(out.diagnostic, Some(Diagnostic::Unimplemented { offset: page0_offset(off), size, write: false }));
    }

    fn unimplemented_write(r: &mut Registers, off: u64, size: u32, v: u64) {
        let before = *r;
        let e = r.write(off, size, v);
        assert_eq!(
            e,
            WriteEffect {
                diagnostic: Some(Diagnostic::Unimplemented { offset: page0_offset(off), size, write: true }),
                ..WriteEffect::default()
            },
            "0x{off:x}/{size}"
        );
        assert_eq!(*r, before, "0x{off:x}/{size} changed state");
    }

    #[test]
    fn layouts_cover_their_registers() {
        // The bilge types place fields where the C device's masks do.
        let mut cr0 = Cr0::from(0u32);
        cr0.set_cmdqen(true);
        cr0.set_eventqen(true);
        cr0.set_smmuen(true);
        assert_eq!(u32::from(cr0), 0xD);
        let mut gbpa = Gbpa::from(0u32);
        gbpa.set_abort(true);
        gbpa.set_update(true);
        assert_eq!(u32::from(gbpa), 0x8010_0000);
        assert_eq!(u32::from(gbpa_reset_value()), 0x1000);
        let mut g = Gerror::from(0u32);
        g.set_eventq_abt_err(true);
        g.set_cmdq_err(true);
        assert_eq!(u32::from(g), 0x5);
        let cfg = StrtabBaseCfg::from(0x0001_0210u32);
        assert_eq!((cfg.log2size().value(), cfg.split().value(), cfg.fmt()), (16, 8, StrtabFormat::TwoLevel));
        let mut cons = CmdqCons::from(0u32);
        cons.set_err(CmdqError::Abt);
        assert_eq!(u32::from(cons), 0x0200_0000);
        assert_eq!(CmdqCons::from(0x7f00_0000u32).err(), CmdqError::Other(u7::new(0x7f)));
        assert_eq!(u32::from(CmdqCons::from(0x7f00_0000u32)), 0x7f00_0000);
        assert!(EventqProd::from(0x8000_0000u32).ovflg());
        assert!(EventqCons::from(0x8000_0000u32).ovackflg());
        let mut irq = IrqCtrl::from(0u32);
        irq.set_eventq_irqen(true);
        assert_eq!(u32::from(irq), 4);
        assert_eq!(QueueBase::from(0x4000_0000_1234_5673u64).addr().value() << 5, 0x1234_5660);
        assert!(QueueBase::from(0x4000_0000_0000_0000u64).alloc_hint());
        assert!(StrtabBase::from(0x4000_0000_0000_0000u64).ra());
        assert_eq!(StrtabBase::from(u64::MAX).address(), 0x00FF_FFFF_FFFF_FFC0);
        assert_eq!(StrtabBase::from(u64::MAX).address_51_6(), 0x000F_FFFF_FFFF_FFC0);
        for code in 0..128u8 {
            assert_eq!(CmdqError::from(u7::new(code)).code(), code);
        }
        assert_eq!(CmdqError::Other(u7::new(5)).code(), 5);
        assert_eq!(IrqCfg0::from(u64::MAX).addr().value() << 2, 0x000F_FFFF_FFFF_FFFC);
    }

    #[test]
    fn offsets_decode_to_registers_and_words() {
        for r in RegisterOffset::ALL {
            assert_eq!(RegisterOffset::decode(r.offset()), Some((r, Word::Low)));
            if r.width() == 8 {
                assert_eq!(RegisterOffset::decode(r.offset() + 4), Some((r, Word::High)));
            }
        }
        // Sorted, no overlaps.
        for pair in RegisterOffset::ALL.windows(2) {
            assert!(pair[0].offset() + pair[0].width() <= pair[1].offset());
        }
        assert_eq!(RegisterOffset::decode(0x30), None);
        assert_eq!(RegisterOffset::decode(0x22), None);
        assert_eq!(RegisterOffset::decode(0x8000), None);
        assert_eq!(page0_offset(0x100A8), RegisterOffset::EVENTQ_PROD.offset());
    }

    #[test]
    fn reset_values_match_the_c_device() {
        let r = regs();
        let expect: &[(u64, u64)] = &[
            (0x00, 0x0D44_101A),
            (0x04, 0x0273_0010),
            (0x08, 0),
            (0x0C, 0x1404),
            (0x10, 0),
            (0x14, 0x74),
            (0x18, 0),
            (0x1C, 1),
            (0x20, 0),
            (0x24, 0),
            (0x28, 0),
            (0x2C, 0),
            (0x40, 0),
            (0x44, 0x1000),
            (0x50, 0),
            (0x54, 0),
            (0x60, 0),
            (0x64, 0),
            (0x68, 0),
            (0x6C, 0),
            (0x70, 0),
            (0x74, 0),
            (0x80, 0),
            (0x84, 0),
            (0x88, 0),
            (0x90, 19),
            (0x94, 0),
            (0x98, 0),
            (0x9C, 0),
            (0xA0, 19),
            (0xA4, 0),
            (0xA8, 0),
            (0xAC, 0),
        ];
        for &(off, v) in expect {
            assert_eq!(r32(&r, off), v, "offset 0x{off:x}");
            assert_eq!(r32(&r, off | PAGE1), v, "page-1 offset 0x{:x}", off | PAGE1);
        }
        // Effective sizes start at 0 (one entry) although the bases read 19.
        assert_eq!((r.cmdq.log2size, r.eventq.log2size), (0, 0));
        assert_eq!((r.cmdq.entry_bytes, r.eventq.entry_bytes), (16, 32));
        assert_eq!(r.strtab_two_level_split(), None);
        assert_eq!(r.features_word(), 0);
    }

    #[test]
    fn id_registers_follow_the_stage() {
        for (stage, idr0, idr3) in
            [(Stage::S1, 0x0D44_101A, 0x1404), (Stage::S2, 0x0D44_1019, 0x1414), (Stage::Nested, 0x0D44_101B, 0x1414)]
        {
            let r = Registers::new(Config { stage, ..Config::default() }.id_registers());
            assert_eq!((r32(&r, 0x00), r32(&r, 0x0C)), (idr0, idr3), "{stage:?}");
        }
    }

    #[test]
    fn peripheral_and_component_ids() {
        let r = regs();
        let values: Vec<u64> = (0..12).map(|i| r32(&r, 0xFD0 + 4 * i)).collect();
        assert_eq!(values, [0x04, 0, 0, 0, 0x84, 0xB4, 0xF0, 0x10, 0x0D, 0xF0, 0x05, 0xB1]);
        assert_eq!(r32(&r, 0x10FE0), 0x84);
        // 64-bit reads of the block are not decoded; writes are ignored.
        unimplemented_read(&r, 0xFD0, 8);
        let mut r = r;
        unimplemented_write(&mut r, 0xFD0, 4, 0xFFFF);
    }

    #[test]
    fn read_only_registers_ignore_writes() {
        let mut r = regs();
        r.cr0ack = Cr0::from(5u32);
        r.gerror = Gerror::from(1u32);
        for off in [0x00, 0x04, 0x08, 0x0C, 0x10, 0x14, 0x18, 0x1C, 0x24, 0x40, 0x48, 0x54, 0x60] {
            unimplemented_write(&mut r, off, 4, 0xFFFF_FFFF);
            unimplemented_write(&mut r, off | PAGE1, 4, 0xFFFF_FFFF);
        }
        // AGBPA reads as zero with a message, STATUSR reads silently.
        unimplemented_read(&r, 0x48, 4);
        assert_eq!(r32(&r, 0x40), 0);
    }

    #[test]
    fn cr0_is_stored_raw_and_acknowledged_masked() {
        let mut r = regs();
        let e = w32(&mut r, 0x20, 0xFFFF_FFFF);
        assert_eq!(r32(&r, 0x20), 0xFFFF_FFFF);
        assert_eq!(r32(&r, 0x24), 0x3DF);
        assert!(e.consume_cmdq);
        assert_eq!(e.smmu_enable_changed, Some(true));
        assert!(r.smmu_enabled() && r.cmdq_enabled() && r.eventq_enabled());
        // Same SMMUEN: no change reported, the queue is still run.
        let e = w32(&mut r, 0x20, 0x1);
        assert_eq!((e.consume_cmdq, e.smmu_enable_changed), (true, None));
        assert_eq!(r32(&r, 0x24), 1);
        let e = w32(&mut r, 0x10020, 0x8);
        assert_eq!((e.consume_cmdq, e.smmu_enable_changed), (true, Some(false)));
        assert_eq!(r32(&r, 0x24), 8);
        assert!(r.cmdq_enabled() && !r.smmu_enabled());
    }

    #[test]
    fn cr1_cr2_are_storage() {
        let mut r = regs();
        assert_eq!(w32(&mut r, 0x28, 0xDEAD_BEEF), WriteEffect::default());
        assert_eq!(w32(&mut r, 0x2C, 0x2), WriteEffect::default());
        assert_eq!((r32(&r, 0x28), r32(&r, 0x2C)), (0xDEAD_BEEF, 2));
        assert!(r.cr2.recinvsid());
    }

    #[test]
    fn gbpa_changes_only_with_update_and_never_shows_it() {
        let mut r = regs();
        let e = w32(&mut r, 0x44, 0x0010_0000);
        assert_eq!(e, WriteEffect::default());
        assert_eq!(r32(&r, 0x44), 0x1000);
        let e = w32(&mut r, 0x44, 0x8010_00FF);
        assert!(e.gbpa_changed);
        assert_eq!(r32(&r, 0x44), 0x0010_00FF);
        assert!(r.gbpa_abort());
        // Reserved bits are stored verbatim.
        w32(&mut r, 0x44, 0xFFFF_FFFF);
        assert_eq!(r32(&r, 0x44), 0x7FFF_FFFF);
    }

    #[test]
    fn irq_ctrl_is_acknowledged_at_once() {
        let mut r = regs();
        let e = w32(&mut r, 0x50, 0xFFFF_FFFF);
        assert!(e.irq_ctrl_changed && !e.consume_cmdq);
        assert_eq!((r32(&r, 0x50), r32(&r, 0x54)), (0xFFFF_FFFF, 0xFFFF_FFFF));
        assert!(r.gerror_irq_enabled() && r.eventq_irq_enabled());
        w32(&mut r, 0x50, 0x2);
        assert_eq!(r32(&r, 0x54), 2);
        assert!(!r.gerror_irq_enabled() && !r.eventq_irq_enabled());
    }

    #[test]
    fn gerrorn_acknowledges_and_reruns_the_command_queue() {
        let mut r = regs();
        let mut cmdq_err = Gerror::from(0u32);
        cmdq_err.set_cmdq_err(true);
        let mut evt_abt = Gerror::from(0u32);
        evt_abt.set_eventq_abt_err(true);
        // Raising without GERROR_IRQEN: toggled, no pulse.
        assert!(!r.raise_gerror(cmdq_err));
        assert_eq!(r32(&r, 0x60), 1);
        w32(&mut r, 0x50, 1);
        // Already active: no toggle, no pulse.
        assert!(!r.raise_gerror(cmdq_err));
        assert_eq!(r32(&r, 0x60), 1);
        assert!(r.raise_gerror(evt_abt));
        assert_eq!(r32(&r, 0x60), 5);
        assert_eq!(u32::from(r.gerror_active()), 5);
        // Acknowledge CMDQ_ERR only.
        let e = w32(&mut r, 0x64, 1);
        assert_eq!(e.gerror_acknowledged, cmdq_err);
        assert!(e.consume_cmdq);
        assert_eq!(e.diagnostic, None);
        assert_eq!(u32::from(r.gerror_active()), 4);
        // Raised again: GERROR toggles back to 0 for that bit.
        assert!(r.raise_gerror(cmdq_err));
        assert_eq!(r32(&r, 0x60), 4);
        // Toggling an inactive bit is stored but logged as a guest error.
        // (GERROR = 0b100, GERRORN = 0b001: both errors active; writing
        // 0b100 toggles bits 0 and 2 back in line.)
        let e = w32(&mut r, 0x64, 0x4 | 0x100);
        assert_eq!(u32::from(e.gerror_acknowledged), 0x5);
        assert_eq!(e.diagnostic, Some(Diagnostic::InactiveGerrorToggled { bits: 0x100 }));
        assert_eq!(e.diagnostic.unwrap().log_class(), LogClass::GuestError);
        assert_eq!(r32(&r, 0x64), 0x104);
        assert_eq!(u32::from(r.gerror_active()), 0x100);
    }

    #[test]
    fn gerror_irq_cfg_registers_in_words_and_whole() {
        let mut r = regs();
        w32(&mut r, 0x68, 0x1111_2222);
        w32(&mut r, 0x6C, 0x3333_4444);
        assert_eq!(r.read(0x68, 8), 0x3333_4444_1111_2222);
        assert_eq!(r.write(0x68, 8, 0xAAAA_BBBB_CCCC_DDDD), WriteEffect::default());
        assert_eq!((r32(&r, 0x68), r32(&r, 0x6C)), (0xCCCC_DDDD, 0xAAAA_BBBB));
        w32(&mut r, 0x70, 0x1234);
        w32(&mut r, 0x74, 0xFFFF_FFFF);
        assert_eq!((r32(&r, 0x70), r32(&r, 0x74)), (0x1234, 0xFFFF_FFFF));
        // 0x70 is not a 64-bit register.
        unimplemented_read(&r, 0x70, 8);
        unimplemented_write(&mut r, 0x70, 8, 1);
    }

    #[test]
    fn strtab_base_in_words_and_whole() {
        let mut r = regs();
        let e = w32(&mut r, 0x80, 0x8765_4321);
        assert!(e.strtab_changed);
        w32(&mut r, 0x84, 0xC00F_FFFF);
        assert_eq!(r.read(0x80, 8), 0xC00F_FFFF_8765_4321);
        assert_eq!(r.strtab_base_address(), 0x000F_FFFF_8765_4300);
        assert!(r.write(0x10080, 8, 0x4000_0000_0001_0000).strtab_changed);
        assert_eq!((r32(&r, 0x80), r32(&r, 0x84)), (0x0001_0000, 0x4000_0000));
        assert_eq!(r.strtab_base_address(), 0x1_0000);
    }

    #[test]
    fn strtab_base_cfg_two_level_flag_is_sticky() {
        let mut r = regs();
        assert!(w32(&mut r, 0x88, 0x0000_0210).strtab_changed);
        assert_eq!(r.strtab_two_level_split(), None);
        assert_eq!(r.strtab_log2size(), 16);
        w32(&mut r, 0x88, 0x0001_0210);
        assert_eq!(r.strtab_two_level_split(), Some(8));
        assert_eq!(r.features_word(), 1);
        // Back to linear: the table stays 2-level with the old split.
        w32(&mut r, 0x88, 0x0000_0150);
        assert_eq!(r32(&r, 0x88), 0x150);
        assert_eq!(r.strtab_two_level_split(), Some(8));
        // Reserved formats change nothing either; the raw value is kept.
        w32(&mut r, 0x88, 0xFFFF_FFFF);
        assert_eq!(r32(&r, 0x88), 0xFFFF_FFFF);
        assert_eq!(r.strtab_two_level_split(), Some(8));
        w32(&mut r, 0x88, 0x0001_0000 | (31 << 6));
        assert_eq!(r.strtab_two_level_split(), Some(31));
        r.reset();
        assert_eq!(r.strtab_two_level_split(), None);
        assert_eq!(r32(&r, 0x88), 0x0001_07C0);
    }

    #[test]
    fn stream_table_keeps_the_sticky_two_level_format() {
        let mut r = regs();
        let caps = Config::default().ste_caps();
        r.write(0x80, 8, 0x4000_0000_8765_4321);
        w32(&mut r, 0x88, 0x0000_0150);
        let linear = StreamTable { base: 0x4000_0000_8765_4321, log2size: 16, format: StreamTableFormat::Linear };
        assert_eq!(r.stream_table(&caps), linear);
        assert_eq!(StreamTable::from_regs(r.read(0x80, 8), r32(&r, 0x88) as u32, &caps), linear);
        w32(&mut r, 0x88, 0x0001_0210);
        let two = StreamTable { format: StreamTableFormat::TwoLevel { split: 8 }, ..linear };
        assert_eq!(r.stream_table(&caps), two);
        assert_eq!(StreamTable::from_regs(r.read(0x80, 8), r32(&r, 0x88) as u32, &caps), two);
        // Back to linear: the C device keeps walking the 2-level table,
        // the architecture does not.
        w32(&mut r, 0x88, 0x0000_0150);
        assert_eq!(r.stream_table(&caps), two);
        assert_eq!(StreamTable::from_regs(r.read(0x80, 8), r32(&r, 0x88) as u32, &caps), linear);
        let linear_only = SteCaps { two_level_strtab: false, ..caps };
        assert_eq!(r.stream_table(&linear_only), linear);
        r.reset();
        assert_eq!(r.stream_table(&caps), linear);
    }

    #[test]
    fn queue_bases_capture_their_size_on_low_writes() {
        for (base, q) in [(0x90u64, 0usize), (0xA0, 1)] {
            let mut r = regs();
            let queue = |r: &Registers| if q == 0 { r.cmdq } else { r.eventq };
            w32(&mut r, base, 0x1234_5678 | 0x1F);
            assert_eq!(queue(&r).log2size, 19, "capped");
            w32(&mut r, base, 0x1234_5640 | 7);
            assert_eq!(queue(&r).log2size, 7);
            // A high-word write keeps the size, even if LOG2SIZE changed
            // meanwhile through another path.
            w32(&mut r, base + 4, 0x4000_0001);
            assert_eq!(queue(&r).log2size, 7);
            assert_eq!(r.read(base, 8), 0x4000_0001_1234_5647);
            // Bit 5 is dropped from the address, as the C device does.
            assert_eq!(queue(&r).base_address(), 0x1_1234_5640);
            w32(&mut r, base, 0x1234_5660 | 3);
            assert_eq!(queue(&r).base_address(), 0x1_1234_5640);
            assert_eq!(r.write(base | PAGE1, 8, 0xFFFF_FFFF_FFFF_FFE5), WriteEffect::default());
            assert_eq!(queue(&r).log2size, 5);
            assert_eq!(r.read(base, 8), 0xFFFF_FFFF_FFFF_FFE5);
            assert_eq!(queue(&r).base_address(), 0x000F_FFFF_FFFF_FFC0);
            let ring = queue(&r).ring();
            assert_eq!((ring.base, ring.log2, ring.entry_bytes), (0x000F_FFFF_FFFF_FFC0, 5, [16, 32][q]));
        }
    }

    #[test]
    fn command_queue_indices_are_raw() {
        let mut r = regs();
        let e = w32(&mut r, 0x98, 0xFFFF_FFFF);
        assert!(e.consume_cmdq);
        assert_eq!(r32(&r, 0x98), 0xFFFF_FFFF);
        let e = w32(&mut r, 0x9C, 0x7F00_0003);
        assert_eq!(e, WriteEffect::default());
        assert_eq!(r32(&r, 0x9C), 0x7F00_0003);
        // 64-bit access to the PROD/CONS pair is not decoded.
        unimplemented_read(&r, 0x98, 8);
        unimplemented_write(&mut r, 0x98, 8, 0);
    }

    #[test]
    fn event_queue_indices_through_both_pages() {
        let mut r = regs();
        assert_eq!(w32(&mut r, 0x100A8, 0x8000_0005), WriteEffect::default());
        assert_eq!((r32(&r, 0xA8), r32(&r, 0x100A8)), (0x8000_0005, 0x8000_0005));
        let e = w32(&mut r, 0x100AC, 0x8000_0002);
        assert!(e.eventq_cons_moved);
        assert_eq!(r32(&r, 0xAC), 0x8000_0002);
        assert!(w32(&mut r, 0xAC, 3).eventq_cons_moved);
        assert_eq!(r32(&r, 0x100AC), 3);
    }

    #[test]
    fn eventq_irq_cfg_registers_are_write_only() {
        let mut r = regs();
        w32(&mut r, 0xB0, 0x1111_1111);
        w32(&mut r, 0xB4, 0x2222_2222);
        w32(&mut r, 0xB8, 0x3333_3333);
        w32(&mut r, 0xBC, 0x4444_4444);
        assert_eq!(u64::from(r.eventq_irq_cfg0), 0x2222_2222_1111_1111);
        assert_eq!((r.eventq_irq_cfg1, u32::from(r.eventq_irq_cfg2)), (0x3333_3333, 0x4444_4444));
        assert_eq!(r.write(0xB0, 8, 0x5555_5555_6666_6666), WriteEffect::default());
        assert_eq!(u64::from(r.eventq_irq_cfg0), 0x5555_5555_6666_6666);
        for off in [0xB0, 0xB4, 0xB8, 0xBC] {
            unimplemented_read(&r, off, 4);
        }
        unimplemented_read(&r, 0xB0, 8);
    }

    #[test]
    fn pri_queue_secure_page_and_holes_are_raz_wi() {
        let mut r = regs();
        for off in [0xC0, 0xC4, 0xC8, 0xCC, 0xD0, 0xD4, 0xD8, 0xDC, 0x100C8, 0x30, 0x8000, 0x8020, 0xFFFC, 0x1FFFC] {
            unimplemented_read(&r, off, 4);
            unimplemented_write(&mut r, off, 4, 0xFFFF_FFFF);
        }
        for off in [0x00, 0x20, 0xC0, 0xD0, 0x8000, 0x1FFF8] {
            unimplemented_read(&r, off, 8);
            unimplemented_write(&mut r, off, 8, u64::MAX);
        }
        assert_eq!(r.read_checked(0x8000, 4).diagnostic.unwrap().log_class(), LogClass::Unimplemented);
    }

    #[test]
    fn invalid_sizes_alignment_and_offsets() {
        let mut r = regs();
        for (off, size) in [
            (0x20, 1),
            (0x20, 2),
            (0x20, 3),
            (0x20, 16),
            (0x20, 0),
            (0x22, 4),
            (0x84, 8),
            (0x20000, 4),
            (u64::MAX - 3, 4),
        ] {
            let out = r.read_checked(off, size);
            assert_eq!(
                out,
                ReadOutcome {
                    value: 0,
                    diagnostic: Some(Diagnostic::InvalidAccess { offset: off, size, write: false })
                }
            );
            let before = r;
            let e = r.write(off, size, u64::MAX);
            assert_eq!(e.diagnostic, Some(Diagnostic::InvalidAccess { offset: off, size, write: true }));
            assert_eq!(e.diagnostic.unwrap().log_class(), LogClass::InvalidAccess);
            assert!(!e.consume_cmdq);
            assert_eq!(r, before);
        }
        // Messages render without panicking.
        assert!(format!("{}", Diagnostic::InvalidAccess { offset: 1, size: 0, write: true }).contains("0x1"));
    }

    #[test]
    fn thirty_two_bit_writes_ignore_upper_value_bits() {
        let mut r = regs();
        w32(&mut r, 0x28, 7);
        r.write(0x28, 4, 0xFFFF_FFFF_0000_0001);
        assert_eq!(r32(&r, 0x28), 1);
        r.write(0x84, 4, 0x1234_5678_9ABC_DEF0);
        assert_eq!(r.read(0x80, 8), 0x9ABC_DEF0_0000_0000);
    }

    #[test]
    fn reset_keeps_what_the_c_device_keeps() {
        let mut r = regs();
        w32(&mut r, 0x20, 0xD);
        w32(&mut r, 0x28, 0x15);
        w32(&mut r, 0x2C, 0x2);
        w32(&mut r, 0x44, 0x8010_0000);
        w32(&mut r, 0x50, 5);
        w32(&mut r, 0x64, 1);
        r.write(0x68, 8, 0x1234_5678);
        w32(&mut r, 0x70, 0x99);
        w32(&mut r, 0x74, 0x3);
        r.write(0x80, 8, 0x4000_0000_8000_0000);
        w32(&mut r, 0x88, 0x0001_0210);
        r.write(0x90, 8, 0x0000_0001_0000_0007);
        w32(&mut r, 0x98, 3);
        w32(&mut r, 0x9C, 0x0100_0002);
        r.write(0xA0, 8, 0x4000_0002_0000_0005);
        w32(&mut r, 0xA8, 0x8000_0001);
        w32(&mut r, 0xAC, 1);
        r.write(0xB0, 8, 0xABCD);
        w32(&mut r, 0xB8, 0x77);
        w32(&mut r, 0xBC, 0x1);
        r.raise_gerror(Gerror::from(4u32));
        r.reset();
        // Reset.
        for off in [0x20, 0x24, 0x50, 0x54, 0x60, 0x64, 0x98, 0x9C, 0xA8, 0xAC] {
            assert_eq!(r32(&r, off), 0, "offset 0x{off:x}");
        }
        assert_eq!(r32(&r, 0x44), 0x1000);
        assert_eq!(r.strtab_two_level_split(), None);
        // Kept.
        assert_eq!((r32(&r, 0x28), r32(&r, 0x2C)), (0x15, 2));
        assert_eq!(r.read(0x68, 8), 0x1234_5678);
        assert_eq!((r32(&r, 0x70), r32(&r, 0x74)), (0x99, 3));
        assert_eq!(r.read(0x80, 8), 0x4000_0000_8000_0000);
        assert_eq!(r32(&r, 0x88), 0x0001_0210);
        assert_eq!((u64::from(r.eventq_irq_cfg0), r.eventq_irq_cfg1, u32::from(r.eventq_irq_cfg2)), (0xABCD, 0x77, 1));
        // Queue bases: LOG2SIZE reads 19, other bits kept; the effective
        // size is the one last written.
        assert_eq!(r.read(0x90, 8), 0x0000_0001_0000_0013);
        assert_eq!(r.read(0xA0, 8), 0x4000_0002_0000_0013);
        assert_eq!((r.cmdq.log2size, r.eventq.log2size), (7, 5));
        // The ID registers are unchanged.
        assert_eq!(r.id, Config::default().id_registers());
    }

    #[test]
    fn queue_index_helpers_follow_the_c_device() {
        let mut r = regs();
        w32(&mut r, 0x90, 2); // 4 entries
        w32(&mut r, 0xA0, 1); // 2 entries
                              // CONS advances keep ERR and other high bits, wrap at 2 * size.
        r.cmdq.cons = 0x0100_0003;
        r.cmdq.advance_cons();
        assert_eq!(r.cmdq.cons, 0x0100_0004);
        r.cmdq.cons = 0x0100_0007;
        r.cmdq.advance_cons();
        assert_eq!(r.cmdq.cons, 0x0100_0000);
        r.cmdq.cons = 0xFFFF_FFF7;
        r.cmdq.advance_cons();
        assert_eq!(r.cmdq.cons, 0xFFFF_FFF0);
        // PROD advances drop the bits above the wrap bit (OVFLG included).
        r.eventq.prod = 0x8000_0001;
        r.eventq.advance_prod();
        assert_eq!(r.eventq.prod, 2);
        r.eventq.advance_prod();
        assert_eq!(r.eventq.prod, 3);
        r.eventq.advance_prod();
        assert_eq!(r.eventq.prod, 0);
        // Full/empty ignore the bits above the wrap bit.
        r.eventq.prod = 0x8000_0002;
        r.eventq.cons = 0x0000_0000;
        assert!(r.eventq.is_full() && !r.eventq.is_empty());
        r.eventq.cons = 0x8000_0002;
        assert!(r.eventq.is_empty());
        // CONS.ERR.
        r.cmdq.cons = 0x8000_0005;
        r.set_cmdq_error(CmdqError::Ill);
        assert_eq!(r.cmdq.cons, 0x8100_0005);
        r.set_cmdq_error(CmdqError::None);
        assert_eq!(r.cmdq.cons, 0x8000_0005);
        // Large sizes (e.g. from a migration stream) do not panic.
        r.cmdq.log2size = 255;
        r.cmdq.cons = u32::MAX;
        r.cmdq.advance_cons();
        r.cmdq.advance_prod();
        let _ = (r.cmdq.is_full(), r.cmdq.is_empty(), r.cmdq.ring().slot(u32::MAX));
        r.cmdq.log2size = 31;
        r.cmdq.cons = 0x7FFF_FFFF;
        r.cmdq.advance_cons();
        assert_eq!(r.cmdq.cons, 0x8000_0000);
        r.cmdq.advance_cons();
        r.cmdq.log2size = 0;
        r.cmdq.cons = 0xF0;
        r.cmdq.advance_cons();
        assert_eq!(r.cmdq.cons, 0xF1);
        r.cmdq.advance_cons();
        assert_eq!(r.cmdq.cons, 0xF0);
    }

    #[test]
    fn features_word_round_trips() {
        let mut r = regs();
        r.set_features_word(0xFFFF_FFFF);
        assert_eq!(r.features_word(), 1);
        assert_eq!(r.strtab_two_level_split(), Some(0));
        r.set_features_word(2);
        assert_eq!(r.features_word(), 0);
    }

    #[test]
    fn random_accesses_never_panic_and_keep_invariants() {
        let mut rng = Rng(0x5EED_1234_ABCD_0001);
        let configs = [
            Config::default(),
            Config { stage: Stage::Nested, oas: 48, ssidsize: 20, ats: true, ril: false, msi: true, strict: true },
            Config { stage: Stage::S2, ..Config::default() },
        ];
        for config in configs {
            let mut r = Registers::new(config.id_registers());
            for i in 0..200_000u32 {
                let x = rng.next();
                let offset = match x % 4 {
                    0 => rng.next(),
                    1 => rng.next() % 0x30000,
                    2 => (rng.next() % 0x100) & !3 | (rng.next() & PAGE1),
                    _ => RegisterOffset::ALL[(rng.next() % 51) as usize].offset() + (rng.next() % 2) * 4,
                };
                let size = [0, 1, 2, 3, 4, 4, 4, 8, 8, 16, u32::MAX][(rng.next() % 11) as usize];
                let value = rng.next();
                if x & 0x100 != 0 {
                    let out = r.read_checked(offset, size);
                    if size == 4 {
                        assert!(out.value <= u64::from(u32::MAX));
                    }
                    if let Some(d) = out.diagnostic {
                        let _ = d.to_string();
                    }
                } else {
                    let e = r.write(offset, size, value);
                    if let Some(d) = e.diagnostic {
                        let _ = d.to_string();
                    }
                }
                // Queue-side operations interleaved, as the device does them.
                match rng.next() % 16 {
                    0 => r.cmdq.advance_cons(),
                    1 => r.eventq.advance_prod(),
                    2 => {
                        let _ = r.raise_gerror(Gerror::from(rng.next() as u32));
                    }
                    3 => r.set_cmdq_error(CmdqError::from(u7::new((rng.next() % 128) as u8))),
                    4 if i % 1000 == 0 => r.reset(),
                    _ => {}
                }
                assert!(r.cmdq.log2size <= CMDQ_LOG2_MAX && r.eventq.log2size <= EVENTQ_LOG2_MAX);
                assert!(!r.gbpa.update());
                assert_eq!(u32::from(r.cr0ack), u32::from(r.cr0) & CR0ACK_MIRRORED);
                assert_eq!(r.read(0x50, 4), r.read(0x54, 4));
                assert_eq!(r.id, config.id_registers());
                let _ = (r.cmdq.is_full(), r.eventq.is_empty(), r.cmdq.ring().slot(r.cmdq.prod));
            }
        }
    }
}
