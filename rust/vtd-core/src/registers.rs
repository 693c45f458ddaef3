//! The VT-d register file (the MMIO window of one remapping unit).
//!
//! Conventions: registers are stored as a little-endian byte image
//! (`csr`) of the whole window, exactly like the C device's `csr` array,
//! so that the image can be migrated as-is. Every byte also has a write
//! mask (RW bits), a write-1-to-clear mask (RW1C bits) and a write-only
//! mask (bits that always read as 0). A guest write of `v` to a register
//! whose current value is `old` stores
//! `((old & !wmask) | (v & wmask)) & !(w1cmask & v)`; a guest read returns
//! `value & !womask`. Bits in none of the masks are read-only; hardware
//! ("raw") updates bypass the masks. Offsets are byte offsets into the
//! window; accessors never panic on any offset (out-of-range raw accesses
//! read as 0 and are dropped).

use bilge::prelude::*;

use crate::interrupts::irq_remap::IrtaReg;
use iommu_core::layout::{bits, bits32};
use crate::queues::inv_queue::{CcmdReg, InvAddr, IotlbReg, IqIndexReg, IqaReg};

/// Size of the register window (`DMAR_REG_SIZE` in the C device).
pub const DMAR_REG_SIZE: usize = 0x230;

/// Version register (32-bit).
pub const VER: u64 = 0x00;
/// Capability register (64-bit).
pub const CAP: u64 = 0x08;
/// Extended capability register (64-bit).
pub const ECAP: u64 = 0x10;
/// Global command register (32-bit).
pub const GCMD: u64 = 0x18;
/// Global status register (32-bit).
pub const GSTS: u64 = 0x1c;
/// Root table address register (64-bit).
pub const RTADDR: u64 = 0x20;
/// Context command register (64-bit).
pub const CCMD: u64 = 0x28;
/// Fault status register (32-bit).
pub const FSTS: u64 = 0x34;
/// Fault event control register (32-bit).
pub const FECTL: u64 = 0x38;
/// Fault event data register (32-bit).
pub const FEDATA: u64 = 0x3c;
/// Fault event address register (32-bit).
pub const FEADDR: u64 = 0x40;
/// Fault event upper address register (32-bit).
pub const FEUADDR: u64 = 0x44;
/// Advanced fault log register (64-bit).
pub const AFLOG: u64 = 0x58;
/// Protected memory enable register (32-bit).
pub const PMEN: u64 = 0x64;
/// Protected low memory base (32-bit).
pub const PLMBASE: u64 = 0x68;
/// Protected low memory limit (32-bit).
pub const PLMLIMIT: u64 = 0x6c;
/// Protected high memory base (64-bit).
pub const PHMBASE: u64 = 0x70;
/// Protected high memory limit (64-bit).
pub const PHMLIMIT: u64 = 0x78;
/// Invalidation queue head (64-bit).
pub const IQH: u64 = 0x80;
/// Invalidation queue tail (64-bit).
pub const IQT: u64 = 0x88;
/// Invalidation queue address (64-bit).
pub const IQA: u64 = 0x90;
/// Invalidation completion status (32-bit).
pub const ICS: u64 = 0x9c;
/// Invalidation event control (32-bit).
pub const IECTL: u64 = 0xa0;
/// Invalidation event data (32-bit).
pub const IEDATA: u64 = 0xa4;
/// Invalidation event address (32-bit).
pub const IEADDR: u64 = 0xa8;
/// Invalidation event upper address (32-bit).
pub const IEUADDR: u64 = 0xac;
/// Interrupt remapping table address (64-bit).
pub const IRTA: u64 = 0xb8;
/// Offset of the IOTLB registers (reported in ECAP.IRO).
pub const IOTLB_REG_OFFSET: u64 = 0xf0;
/// Invalidate address register (64-bit).
pub const IVA: u64 = IOTLB_REG_OFFSET;
/// IOTLB invalidate register (64-bit).
pub const IOTLB: u64 = IOTLB_REG_OFFSET + 8;
/// Offset of the fault recording registers (reported in CAP.FRO).
pub const FRCD_REG_OFFSET: u64 = 0x220;
/// Number of fault recording registers (CAP.NFR + 1).
pub const FRCD_REG_NR: u16 = 1;

pub use layouts::{EventAddrReg, EventDataReg, FstsReg, RtaddrReg, Ttm};

/// Architected bit layouts of the registers with multi-bit fields that
/// this module owns (VT-d 3.4, 11.4.5 and 11.4.9.1); the invalidation
/// registers' are in [`crate::queues::inv_queue`], CAP/ECAP in
/// [`crate::config`]. Registers that are sets of independent flags (GCMD,
/// GSTS, FECTL, IECTL, ICS) keep named bit constants. A module of its own
/// because bilge's generated constructors carry no documentation.
#[allow(missing_docs)]
mod layouts {
    // Every field is #[inline]: bilge copies a field's attributes onto its
    // getter and setter, which QEMU's build (debug assertions on) would
    // otherwise leave out of line.
    use bilge::prelude::*;

    /// RTADDR.TTM: the translation table mode.
    #[bitsize(2)]
    #[derive(FromBits, Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Ttm {
        /// 00b: legacy root and context tables.
        Legacy = 0,
        /// 01b: scalable-mode tables.
        Scalable = 1,
        /// 10b: reserved (was advanced mode).
        Reserved2 = 2,
        /// 11b: abort DMA mode.
        AbortDma = 3,
    }

    /// RTADDR register.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct RtaddrReg {
        /// Bits 9:0, reserved.
        #[inline]
        pub reserved: u10,
        /// Bits 11:10, TTM.
        #[inline]
        pub ttm: Ttm,
        /// Bits 63:12, RTA: the root table >> 12.
        #[inline]
        pub rta: u52,
    }

    /// FEDATA / IEDATA: the event interrupt's message data.
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct EventDataReg {
        /// Bits 15:0, IMD / FED: message data.
        #[inline]
        pub data: u16,
        /// Bits 31:16, EIMD: extended message data (with ECAP.EIM).
        #[inline]
        pub eimd: u16,
    }

    /// FEADDR / IEADDR: the event interrupt's message address.
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct EventAddrReg {
        /// Bits 1:0, reserved.
        #[inline]
        pub reserved: u2,
        /// Bits 31:2, MA: message address >> 2.
        #[inline]
        pub ma: u30,
    }

    /// FSTS register.
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct FstsReg {
        /// Bit 0, PFO: primary fault overflow.
        #[inline]
        pub pfo: bool,
        /// Bit 1, PPF: primary pending fault.
        #[inline]
        pub ppf: bool,
        /// Bit 2, AFO: advanced fault overflow.
        #[inline]
        pub afo: bool,
        /// Bit 3, APF: advanced pending fault.
        #[inline]
        pub apf: bool,
        /// Bit 4, IQE: invalidation queue error.
        #[inline]
        pub iqe: bool,
        /// Bit 5, ICE: invalidation completion error.
        #[inline]
        pub ice: bool,
        /// Bit 6, ITE: invalidation time-out error.
        #[inline]
        pub ite: bool,
        /// Bit 7, reserved.
        #[inline]
        pub reserved: bool,
        /// Bits 15:8, FRI: fault record index.
        #[inline]
        pub fri: u8,
        /// Bits 31:16, reserved.
        #[inline]
        pub reserved: u16,
    }
}

// GCMD / GSTS bits.
/// GCMD.TE: translation enable.
pub const GCMD_TE: u32 = 1 << 31;
/// GCMD.SRTP: set root table pointer.
pub const GCMD_SRTP: u32 = 1 << 30;
/// GCMD.SFL: set fault log.
pub const GCMD_SFL: u32 = 1 << 29;
/// GCMD.EAFL: enable advanced fault logging.
pub const GCMD_EAFL: u32 = 1 << 28;
/// GCMD.WBF: write buffer flush.
pub const GCMD_WBF: u32 = 1 << 27;
/// GCMD.QIE: queued invalidation enable.
pub const GCMD_QIE: u32 = 1 << 26;
/// GCMD.IRE: interrupt remapping enable.
pub const GCMD_IRE: u32 = 1 << 25;
/// GCMD.SIRTP: set interrupt remap table pointer.
pub const GCMD_SIRTP: u32 = 1 << 24;
/// GCMD.CFI: compatibility format interrupts.
pub const GCMD_CFI: u32 = 1 << 23;
/// GSTS.TES.
pub const GSTS_TES: u32 = 1 << 31;
/// GSTS.RTPS.
pub const GSTS_RTPS: u32 = 1 << 30;
/// GSTS.FLS.
pub const GSTS_FLS: u32 = 1 << 29;
/// GSTS.AFLS.
pub const GSTS_AFLS: u32 = 1 << 28;
/// GSTS.WBFS.
pub const GSTS_WBFS: u32 = 1 << 27;
/// GSTS.QIES.
pub const GSTS_QIES: u32 = 1 << 26;
/// GSTS.IRES.
pub const GSTS_IRES: u32 = 1 << 25;
/// GSTS.IRTPS.
pub const GSTS_IRTPS: u32 = 1 << 24;
/// GSTS.CFIS.
pub const GSTS_CFIS: u32 = 1 << 23;




// FSTS bits.
/// FSTS.PFO: primary fault overflow (RW1C).
pub const FSTS_PFO: u32 = 1 << 0;
/// FSTS.PPF: primary pending fault (RO, OR of all FRCD.F).
pub const FSTS_PPF: u32 = 1 << 1;
/// FSTS.IQE: invalidation queue error (RW1C).
pub const FSTS_IQE: u32 = 1 << 4;
/// FSTS.ICE: invalidation completion error (RW1C).
pub const FSTS_ICE: u32 = 1 << 5;
/// FSTS.ITE: invalidation time-out error (RW1C).
pub const FSTS_ITE: u32 = 1 << 6;

/// All FSTS status fields that hold off a new fault event.
pub const FSTS_EVENT_FIELDS: u32 = FSTS_PFO | FSTS_PPF | FSTS_IQE | FSTS_ICE | FSTS_ITE;

/// FECTL/IECTL.IM: interrupt mask.
pub const EVT_IM: u32 = 1 << 31;
/// FECTL/IECTL.IP: interrupt pending.
pub const EVT_IP: u32 = 1 << 30;

/// ICS.IWC: invalidation wait descriptor complete.
pub const ICS_IWC: u32 = 1;




/// Width of an architectural register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// 32-bit register.
    W32,
    /// 64-bit register.
    W64,
}

impl Width {
    /// Size in bytes.
    pub fn bytes(self) -> u64 {
        match self {
            Width::W32 => 4,
            Width::W64 => 8,
        }
    }
}

/// The architectural registers of the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Reg {
    Ver,
    Cap,
    Ecap,
    Gcmd,
    Gsts,
    Rtaddr,
    Ccmd,
    Fsts,
    Fectl,
    Fedata,
    Feaddr,
    Feuaddr,
    Aflog,
    Pmen,
    Plmbase,
    Plmlimit,
    Phmbase,
    Phmlimit,
    Iqh,
    Iqt,
    Iqa,
    Ics,
    Iectl,
    Iedata,
    Ieaddr,
    Ieuaddr,
    Irta,
    Iva,
    Iotlb,
    /// Low quadword of fault recording register `n`.
    FrcdLo(u16),
    /// High quadword of fault recording register `n`.
    FrcdHi(u16),
}

/// Fixed registers: (register, offset, width, name).
const FIXED: [(Reg, u64, Width, &str); 29] = [
    (Reg::Ver, VER, Width::W32, "VER"),
    (Reg::Cap, CAP, Width::W64, "CAP"),
    (Reg::Ecap, ECAP, Width::W64, "ECAP"),
    (Reg::Gcmd, GCMD, Width::W32, "GCMD"),
    (Reg::Gsts, GSTS, Width::W32, "GSTS"),
    (Reg::Rtaddr, RTADDR, Width::W64, "RTADDR"),
    (Reg::Ccmd, CCMD, Width::W64, "CCMD"),
    (Reg::Fsts, FSTS, Width::W32, "FSTS"),
    (Reg::Fectl, FECTL, Width::W32, "FECTL"),
    (Reg::Fedata, FEDATA, Width::W32, "FEDATA"),
    (Reg::Feaddr, FEADDR, Width::W32, "FEADDR"),
    (Reg::Feuaddr, FEUADDR, Width::W32, "FEUADDR"),
    (Reg::Aflog, AFLOG, Width::W64, "AFLOG"),
    (Reg::Pmen, PMEN, Width::W32, "PMEN"),
    (Reg::Plmbase, PLMBASE, Width::W32, "PLMBASE"),
    (Reg::Plmlimit, PLMLIMIT, Width::W32, "PLMLIMIT"),
    (Reg::Phmbase, PHMBASE, Width::W64, "PHMBASE"),
    (Reg::Phmlimit, PHMLIMIT, Width::W64, "PHMLIMIT"),
    (Reg::Iqh, IQH, Width::W64, "IQH"),
    (Reg::Iqt, IQT, Width::W64, "IQT"),
    (Reg::Iqa, IQA, Width::W64, "IQA"),
    (Reg::Ics, ICS, Width::W32, "ICS"),
    (Reg::Iectl, IECTL, Width::W32, "IECTL"),
    (Reg::Iedata, IEDATA, Width::W32, "IEDATA"),
    (Reg::Ieaddr, IEADDR, Width::W32, "IEADDR"),
    (Reg::Ieuaddr, IEUADDR, Width::W32, "IEUADDR"),
    (Reg::Irta, IRTA, Width::W64, "IRTA"),
    (Reg::Iva, IVA, Width::W64, "IVA"),
    (Reg::Iotlb, IOTLB, Width::W64, "IOTLB"),
];

impl Reg {
    /// Byte offset of the register in the window.
    pub fn offset(self) -> u64 {
        match self {
            Reg::FrcdLo(n) => FRCD_REG_OFFSET + 16 * u64::from(n),
            Reg::FrcdHi(n) => FRCD_REG_OFFSET + 16 * u64::from(n) + 8,
            r => FIXED
                .iter()
                .find(|(f, ..)| *f == r)
                .map(|(_, off, ..)| *off)
                .unwrap_or(0),
        }
    }

    /// Width of the register.
    pub fn width(self) -> Width {
        match self {
            Reg::FrcdLo(_) | Reg::FrcdHi(_) => Width::W64,
            r => FIXED
                .iter()
                .find(|(f, ..)| *f == r)
                .map(|(_, _, w, _)| *w)
                .unwrap_or(Width::W32),
        }
    }

    /// Register mnemonic.
    pub fn name(self) -> &'static str {
        match self {
            Reg::FrcdLo(_) => "FRCD.lo",
            Reg::FrcdHi(_) => "FRCD.hi",
            r => FIXED
                .iter()
                .find(|(f, ..)| *f == r)
                .map(|(.., n)| *n)
                .unwrap_or("?"),
        }
    }

    /// The register that starts exactly at `offset`, if any.
    pub fn at(offset: u64) -> Option<Reg> {
        if let Some((r, ..)) = FIXED.iter().find(|(_, off, ..)| *off == offset) {
            return Some(*r);
        }
        let end = FRCD_REG_OFFSET + 16 * u64::from(FRCD_REG_NR);
        if (FRCD_REG_OFFSET..end).contains(&offset) && offset & 7 == 0 {
            let rel = offset - FRCD_REG_OFFSET;
            let n = u16::try_from(rel / 16).ok()?;
            return Some(if rel & 15 == 0 {
                Reg::FrcdLo(n)
            } else {
                Reg::FrcdHi(n)
            });
        }
        None
    }

    /// Every architectural register, in offset order of the fixed ones
    /// followed by the fault recording registers.
    pub fn all() -> Vec<Reg> {
        let mut v: Vec<Reg> = FIXED.iter().map(|(r, ..)| *r).collect();
        for n in 0..FRCD_REG_NR {
            v.push(Reg::FrcdLo(n));
            v.push(Reg::FrcdHi(n));
        }
        v
    }
}

/// Which part of a register a naturally aligned 4- or 8-byte access hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The whole register (access size equals register width).
    Full,
    /// Low dword of a 64-bit register.
    Low,
    /// High dword of a 64-bit register.
    High,
}

/// Resolve a 4-byte access at `offset` to a register part.
pub fn decode_dword(offset: u64) -> Option<(Reg, Part)> {
    if let Some(r) = Reg::at(offset) {
        return Some(match r.width() {
            Width::W32 => (r, Part::Full),
            Width::W64 => (r, Part::Low),
        });
    }
    let r = Reg::at(offset.checked_sub(4)?)?;
    (r.width() == Width::W64).then_some((r, Part::High))
}

/// The register byte image with its access masks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterFile {
    csr: [u8; DMAR_REG_SIZE],
    wmask: [u8; DMAR_REG_SIZE],
    w1cmask: [u8; DMAR_REG_SIZE],
    womask: [u8; DMAR_REG_SIZE],
}

fn range(offset: u64, len: usize) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(len)?;
    (end <= DMAR_REG_SIZE).then_some(start..end)
}

fn load(arr: &[u8; DMAR_REG_SIZE], offset: u64, len: usize) -> u64 {
    match range(offset, len).and_then(|r| arr.get(r)) {
        Some(bytes) => bytes
            .iter()
            .rev()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        None => 0,
    }
}

fn store(arr: &mut [u8; DMAR_REG_SIZE], offset: u64, len: usize, val: u64) {
    if let Some(bytes) = range(offset, len).and_then(|r| arr.get_mut(r)) {
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (val >> (8 * i)) as u8;
        }
    }
}

impl RegisterFile {
    /// The architected reset state of the window for the given CAP/ECAP.
    pub fn new(cap: u64, ecap: u64) -> Self {
        let mut rf = RegisterFile {
            csr: [0; DMAR_REG_SIZE],
            wmask: [0; DMAR_REG_SIZE],
            w1cmask: [0; DMAR_REG_SIZE],
            womask: [0; DMAR_REG_SIZE],
        };
        let smts = crate::config::EcapReg::from(ecap).smts();
        // The writable fields of the registers with layouts, from the layouts
        // (the values are the C device's, `vtd_init`).
        let rtaddr_rw = bits(|r: &mut RtaddrReg| {
            r.set_ttm(Ttm::AbortDma);
            r.set_rta(<u52 as Number>::MAX);
        });
        let ccmd_rw = bits(|r: &mut CcmdReg| {
            r.set_did(u16::MAX);
            r.set_sid(u16::MAX);
            r.set_fm(<u2 as Number>::MAX);
            r.set_icc(true);
            r.set_cirg(<u2 as Number>::MAX);
        });
        // SID and FM read as 0 (the C device's write-only mask).
        let ccmd_wo = bits(|r: &mut CcmdReg| {
            r.set_sid(u16::MAX);
            r.set_fm(<u2 as Number>::MAX);
        });
        let iqt_rw = bits(|r: &mut IqIndexReg| r.set_q(<u15 as Number>::MAX));
        // DW is reserved without ECAP.SMTS.
        let iqa_rw = bits(|r: &mut IqaReg| {
            r.set_qs(<u3 as Number>::MAX);
            r.set_dw(smts);
            r.set_base(<u52 as Number>::MAX);
        });
        let irta_rw = bits(|r: &mut IrtaReg| {
            r.set_s(<u4 as Number>::MAX);
            r.set_eime(true);
            r.set_base(<u52 as Number>::MAX);
        });
        let iotlb_rw = bits(|r: &mut IotlbReg| {
            r.set_did(u16::MAX);
            r.set_dw(true);
            r.set_dr(true);
            r.set_iirg(<u2 as Number>::MAX);
            r.set_ivt(true);
        });
        let gcmd_flags = GCMD_TE | GCMD_SRTP | GCMD_SFL | GCMD_EAFL | GCMD_WBF | GCMD_QIE | GCMD_IRE
            | GCMD_SIRTP | GCMD_CFI;
        let fsts_w1c = bits32(|r: &mut FstsReg| {
            r.set_pfo(true);
            r.set_iqe(true);
            r.set_ice(true);
            r.set_ite(true);
        });
        // FEDATA's writable bits are the C device's: the data only; IEDATA's
        // its EIMD too.
        let fedata_rw = bits32(|r: &mut EventDataReg| r.set_data(u16::MAX));
        let iedata_rw = bits32(|r: &mut EventDataReg| {
            r.set_data(u16::MAX);
            r.set_eimd(u16::MAX);
        });
        let eaddr_rw = bits32(|r: &mut EventAddrReg| r.set_ma(<u30 as Number>::MAX));
        let iva_rw = bits(|r: &mut InvAddr| {
            r.set_am(<u6 as Number>::MAX);
            r.set_ih(true);
            r.set_addr(<u52 as Number>::MAX);
        });

        // (offset, width, reset, RW mask, RW1C mask, write-only mask)
        let defs: [(u64, usize, u64, u64, u64, u64); 19] = [
            (VER, 4, 0x10, 0, 0, 0),
            (CAP, 8, cap, 0, 0, 0),
            (ECAP, 8, ecap, 0, 0, 0),
            (GCMD, 4, 0, u64::from(gcmd_flags), 0, u64::from(gcmd_flags)),
            (RTADDR, 8, 0, rtaddr_rw, 0, 0),
            (CCMD, 8, 0, ccmd_rw, 0, ccmd_wo),
            (FSTS, 4, 0, 0, fsts_w1c, 0),
            (FECTL, 4, u64::from(EVT_IM), u64::from(EVT_IM), 0, 0),
            (FEDATA, 4, 0, fedata_rw, 0, 0),
            (FEADDR, 4, 0, eaddr_rw, 0, 0),
            // FEUADDR/IEUADDR are RsvdZ without ECAP.EIM; PMEN and the
            // protected-region registers are RO 0 without CAP.PLMR/PHMR.
            (IQT, 8, 0, iqt_rw, 0, 0),
            (IQA, 8, 0, iqa_rw, 0, 0),
            (ICS, 4, 0, 0, u64::from(ICS_IWC), 0),
            (IECTL, 4, u64::from(EVT_IM), u64::from(EVT_IM), 0, 0),
            (IEDATA, 4, 0, iedata_rw, 0, 0),
            (IEADDR, 4, 0, eaddr_rw, 0, 0),
            // Kept read/write as in the C device even without ECAP.IR.
            (IRTA, 8, 0, irta_rw, 0, 0),
            (IOTLB, 8, 0, iotlb_rw, 0, 0),
            (IVA, 8, 0, iva_rw, 0, iva_rw),
        ];
        for (off, len, val, w, w1c, wo) in defs {
            store(&mut rf.csr, off, len, val);
            store(&mut rf.wmask, off, len, w);
            store(&mut rf.w1cmask, off, len, w1c);
            store(&mut rf.womask, off, len, wo);
        }
        // Fault recording registers: all RO except the RW1C F bit.
        for n in 0..FRCD_REG_NR {
            let off = FRCD_REG_OFFSET + 16 * u64::from(n) + 8;
            store(&mut rf.w1cmask, off, 8, bits::<crate::queues::fault::FrcdHi>(|h| h.set_f(true)));
        }
        rf
    }

    /// Raw 32-bit value (hardware view, ignores the write-only mask).
    pub fn get32(&self, offset: u64) -> u32 {
        load(&self.csr, offset, 4) as u32
    }

    /// Raw 64-bit value.
    pub fn get64(&self, offset: u64) -> u64 {
        load(&self.csr, offset, 8)
    }

    /// Raw 32-bit store (hardware update).
    pub fn set32(&mut self, offset: u64, val: u32) {
        store(&mut self.csr, offset, 4, u64::from(val));
    }

    /// Raw 64-bit store (hardware update).
    pub fn set64(&mut self, offset: u64, val: u64) {
        store(&mut self.csr, offset, 8, val);
    }

    /// Hardware clear-then-set of a 32-bit register; returns the new value.
    pub fn clear_set32(&mut self, offset: u64, clear: u32, set: u32) -> u32 {
        let v = (self.get32(offset) & !clear) | set;
        self.set32(offset, v);
        v
    }

    /// Hardware clear-then-set of a 64-bit register; returns the new value.
    pub fn clear_set64(&mut self, offset: u64, clear: u64, set: u64) -> u64 {
        let v = (self.get64(offset) & !clear) | set;
        self.set64(offset, v);
        v
    }

    /// Guest read of `size` (4 or 8) bytes: the value with write-only bits
    /// reading as zero.
    pub fn guest_read(&self, offset: u64, size: usize) -> u64 {
        load(&self.csr, offset, size) & !load(&self.womask, offset, size)
    }

    /// Guest write of `size` bytes honouring the RW / RW1C masks.
    pub fn guest_write(&mut self, offset: u64, size: usize, val: u64) {
        let old = load(&self.csr, offset, size);
        let w = load(&self.wmask, offset, size);
        let w1c = load(&self.w1cmask, offset, size);
        let new = ((old & !w) | (val & w)) & !(w1c & val);
        store(&mut self.csr, offset, size, new);
    }

    /// RW mask of `size` bytes at `offset`.
    pub fn wmask(&self, offset: u64, size: usize) -> u64 {
        load(&self.wmask, offset, size)
    }

    /// RW1C mask of `size` bytes at `offset`.
    pub fn w1cmask(&self, offset: u64, size: usize) -> u64 {
        load(&self.w1cmask, offset, size)
    }

    /// Write-only mask of `size` bytes at `offset`.
    pub fn womask(&self, offset: u64, size: usize) -> u64 {
        load(&self.womask, offset, size)
    }

    /// The byte image (for migration).
    pub fn csr(&self) -> &[u8; DMAR_REG_SIZE] {
        &self.csr
    }

    /// Replace the byte image (for migration); masks are unchanged.
    pub fn load_csr(&mut self, csr: &[u8; DMAR_REG_SIZE]) {
        self.csr = *csr;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_table_has_no_overlaps_and_fits_window() {
        let regs = Reg::all();
        for (i, a) in regs.iter().enumerate() {
            let (ao, aw) = (a.offset(), a.width().bytes());
            assert_eq!(ao % aw, 0, "{a:?} misaligned");
            assert!(ao + aw <= DMAR_REG_SIZE as u64);
            assert_eq!(Reg::at(ao), Some(*a));
            for b in &regs[i + 1..] {
                let (bo, bw) = (b.offset(), b.width().bytes());
                assert!(ao + aw <= bo || bo + bw <= ao, "{a:?} overlaps {b:?}");
            }
        }
    }

    #[test]
    fn decode_dword_halves_of_64bit_registers() {
        assert_eq!(decode_dword(CCMD), Some((Reg::Ccmd, Part::Low)));
        assert_eq!(decode_dword(CCMD + 4), Some((Reg::Ccmd, Part::High)));
        assert_eq!(decode_dword(GSTS), Some((Reg::Gsts, Part::Full)));
        assert_eq!(decode_dword(FRCD_REG_OFFSET + 12), Some((Reg::FrcdHi(0), Part::High)));
        assert_eq!(decode_dword(0x30), None);
        assert_eq!(decode_dword(0x4), None);
        assert_eq!(decode_dword(0), Some((Reg::Ver, Part::Full)));
        assert_eq!(decode_dword(u64::MAX), None);
    }

    #[test]
    fn raw_accessors_out_of_range_do_not_panic() {
        let mut rf = RegisterFile::new(0, 0);
        assert_eq!(rf.get64(u64::MAX), 0);
        assert_eq!(rf.get32(DMAR_REG_SIZE as u64 - 2), 0);
        rf.set64(u64::MAX - 3, 1);
        rf.guest_write(DMAR_REG_SIZE as u64, 8, !0);
        assert_eq!(rf.guest_read(DMAR_REG_SIZE as u64 - 4, 8), 0);
    }

    #[test]
    fn rw1c_semantics_clear_only_written_ones() {
        let mut rf = RegisterFile::new(0, 0);
        rf.set32(FSTS, FSTS_PFO | FSTS_PPF | FSTS_IQE);
        rf.guest_write(FSTS, 4, u64::from(FSTS_IQE));
        assert_eq!(rf.get32(FSTS), FSTS_PFO | FSTS_PPF);
        rf.guest_write(FSTS, 4, u64::from(FSTS_PPF));
        assert_eq!(rf.get32(FSTS), FSTS_PFO | FSTS_PPF, "PPF is read-only");
    }
}
