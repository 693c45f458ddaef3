//! Scalable-mode device-to-domain mapping structures: the scalable root
//! table, 256-bit context entries, the PASID directory and the 512-bit
//! PASID table entries.
//!
//! Conventions: every structure is read little-endian from guest memory
//! and kept raw (`val` quadwords, quadword 0 holding bits 63:0), read
//! through its quadwords' bilge layouts ([`SmRootHalf`], the legacy root
//! entry's layout; module `layouts`: [`SmContextQ0`], [`PasidQ0`], ...),
//! like the legacy structures in [`crate::translation::root_context`]. Fields (bit numbers within the
//! whole entry):
//!
//! * root entry (128 bits, indexed by bus): bit 0 LP and bits 63:12 LCTP
//!   (context table for devfn 0..=127), bit 64 UP and bits 127:76 UCTP
//!   (devfn 128..=255); every other bit is reserved;
//! * context entry (256 bits, 128 per 4 KiB table, indexed by devfn & 0x7f):
//!   P (0), FPD (1), DTE (2), PASIDE (3), PRE (4), PDTS (11:9, the PASID
//!   directory has 2^(PDTS+7) entries), PASIDDIRPTR (63:12), RID_PASID
//!   (83:64), RID_PRIV (84);
//! * PASID directory entry (64 bits, indexed by PASID bits 19:6): P (0), FPD
//!   (1), SMPTBLPTR (63:12);
//! * PASID table entry (512 bits, 64 per 4 KiB table, indexed by
//!   PASID bits 5:0): P (0), FPD (1), AW (4:2), SSEE (5), PGTT (8:6), SSADE (9),
//!   SSPTPTR (63:12), DID (79:64), PWSNP (87), PGSNP (88), SRE (128), FSPM /
//!   FLPM (131:130), WPE (132), NXE (133), SMEP (134), EAFE (135), FSPTPTR
//!   (191:140).
//!
//! Validation ([`lookup_sm_context`], [`lookup_pasid_entry`], [`resolve`])
//! follows the walk order of the hardware and yields a
//! [`ContextFault`]: the scalable-mode fault reason plus whether any FPD
//! bit read so far (context, PASID directory, PASID table entry; honoured
//! even in an entry whose P bit is clear, as the C device does) suppresses
//! qualified faults.
//!
//! # Checks
//!
//! Two rule sets, chosen by [`SmCaps::strict`] (property `x-strict`):
//!
//! * strict, the architecture's: bits the spec reserves, and fields that
//!   belong to features this model does not advertise (SSEE/SSADE without
//!   execute or second-stage A/D support, SRE/RID_PRIV without ECAP.SRS,
//!   EAFE without extended-accessed support), are checked; a PASID entry is
//!   checked for P, then reserved bits, then its type and table depth;
//!   RID_PASID must fit the PASID width and the directory (48h); RID_PRIV
//!   makes requests without PASID supervisor requests; every FPD on the
//!   path suppresses qualified faults.
//! * the default, QEMU's C device's (so that guests written against it keep
//!   working): no reserved bits in PASID directory and table entries; the
//!   PASID entry's type and depth are checked before P (a zeroed entry is
//!   5Bh, as there); RID_PASID is used as it is; RID_PRIV is ignored (requests
//!   without PASID are user requests) and not reserved; reserved bits of the
//!   root entry are checked in both halves; a fault in the PASID structures
//!   is suppressed by the context entry's FPD only; table pointers are not
//!   cut to the host address width (one beyond it fails to read).
//!
//! Both: the context entry's reserved bits are the C device's (8:5, bits
//! above the host address width, 127:85, quadwords 2 and 3; strict rules add
//! RID_PRIV, bit 84, without ECAP.SRS); the snoop and memory-type fields of
//! PASID-entry quadword 1 are accepted and ignored (snooping has no meaning
//! for an emulated IOMMU), as are NXE and SMEP (execute requests are not
//! modelled). Fault reasons are the architecture's scalable-mode codes in
//! both (the C device reports legacy codes for root, context and
//! second-stage faults in scalable mode).

use iommu_core::layout::field_address;
use crate::config::{width_mask, CapReg, EcapReg, MAX_PASID_BITS};
use crate::queues::fault::FaultReason;
use crate::translation::first_stage::{FsTable, SsTable};
use crate::mem::{GuestMemory, MemError};
use crate::translation::root_context::ContextFault;

/// Size of a scalable-mode root entry.
pub const SM_ROOT_ENTRY_SIZE: u64 = 16;
/// Size of a scalable-mode context entry.
pub const SM_CONTEXT_ENTRY_SIZE: u64 = 32;
/// Size of a PASID directory entry.
pub const PASID_DIR_ENTRY_SIZE: u64 = 8;
/// Size of a PASID table entry.
pub const PASID_ENTRY_SIZE: u64 = 64;

pub use layouts::{PasidDirWord, PasidQ0, PasidQ1, PasidQ2, SmContextQ0, SmContextQ1};
/// One half of a scalable-mode root entry: bits 63:0 (LP, LCTP: devfn
/// 0..=127) or bits 127:64 (UP, UCTP: devfn 128..=255), laid out as the
/// legacy root entry's bits 63:0 (P, reserved 11:1, the table >> 12).
pub use crate::translation::root_context::RootLo as SmRootHalf;

/// Architected bit layouts of the scalable-mode structures (VT-d 3.4, 9.2,
/// 9.4, 9.5, 9.6), one 64-bit word each: a root entry is two
/// [`SmRootHalf`]s, a context entry [`SmContextQ0`], [`SmContextQ1`] and two
/// reserved quadwords, a PASID table entry [`PasidQ0`], [`PasidQ1`],
/// [`PasidQ2`] and five reserved quadwords. A module of its own because
/// bilge's generated constructors carry no documentation.
#[allow(missing_docs)]
mod layouts {
    // Every field is #[inline]: bilge copies a field's attributes onto its
    // getter and setter, which QEMU's build (debug assertions on) would
    // otherwise leave out of line (+10% instructions on a page walk).
    use bilge::prelude::*;

    /// Scalable-mode context entry bits 63:0.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct SmContextQ0 {
        /// Bit 0, P.
        #[inline]
        pub present: bool,
        /// Bit 1, FPD.
        #[inline]
        pub fpd: bool,
        /// Bit 2, DTE: device-TLB (ATS) enable.
        #[inline]
        pub dte: bool,
        /// Bit 3, PASIDE: requests with PASID enabled.
        #[inline]
        pub paside: bool,
        /// Bit 4, PRE: page requests enabled.
        #[inline]
        pub pre: bool,
        /// Bits 8:5, reserved.
        #[inline]
        pub reserved: u4,
        /// Bits 11:9, PDTS: the PASID directory has 2^(PDTS + 7) entries.
        #[inline]
        pub pdts: u3,
        /// Bits 63:12, PASIDDIRPTR >> 12.
        #[inline]
        pub pasid_dir_ptr: u52,
    }

    /// Scalable-mode context entry bits 127:64.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct SmContextQ1 {
        /// Bits 83:64, RID_PASID: the PASID of requests without one.
        #[inline]
        pub rid_pasid: u20,
        /// Bit 84, RID_PRIV: requests without PASID are supervisor requests.
        #[inline]
        pub rid_priv: bool,
        /// Bits 127:85, reserved.
        #[inline]
        pub reserved: u43,
    }

    /// PASID directory entry.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct PasidDirWord {
        /// Bit 0, P.
        #[inline]
        pub present: bool,
        /// Bit 1, FPD.
        #[inline]
        pub fpd: bool,
        /// Bits 11:2, reserved.
        #[inline]
        pub reserved: u10,
        /// Bits 63:12, SMPTBLPTR: the PASID table >> 12.
        #[inline]
        pub smptblptr: u52,
    }

    /// PASID table entry bits 63:0.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct PasidQ0 {
        /// Bit 0, P.
        #[inline]
        pub present: bool,
        /// Bit 1, FPD.
        #[inline]
        pub fpd: bool,
        /// Bits 4:2, AW: second-stage adjusted guest address width.
        #[inline]
        pub aw: u3,
        /// Bit 5, SSEE (SLEE): second-stage execute enable.
        #[inline]
        pub ssee: bool,
        /// Bits 8:6, PGTT: the translation type ([`super::Pgtt`]).
        #[inline]
        pub pgtt: u3,
        /// Bit 9, SSADE (SLADE): second-stage accessed/dirty enable.
        #[inline]
        pub ssade: bool,
        /// Bits 11:10, reserved.
        #[inline]
        pub reserved: u2,
        /// Bits 63:12, SSPTPTR (SLPTPTR) >> 12.
        #[inline]
        pub ssptptr: u52,
    }

    /// PASID table entry bits 127:64: the domain, snoop and memory-type
    /// fields (bits 86:80 and 127:89 are accepted and ignored: see the
    /// module documentation).
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct PasidQ1 {
        /// Bits 79:64, DID.
        #[inline]
        pub did: u16,
        /// Bits 86:80, not checked.
        #[inline]
        pub unchecked: u7,
        /// Bit 87, PWSNP: page-walk snoop.
        #[inline]
        pub pwsnp: bool,
        /// Bit 88, PGSNP: page snoop.
        #[inline]
        pub pgsnp: bool,
        /// Bits 127:89, CD, EMTE, EMT, PWT, PCD, PAT: memory types.
        #[inline]
        pub memory_type: u39,
    }

    /// PASID table entry bits 191:128.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct PasidQ2 {
        /// Bit 128, SRE: supervisor requests enabled.
        #[inline]
        pub sre: bool,
        /// Bit 129, not checked.
        #[inline]
        pub unchecked_129: bool,
        /// Bits 131:130, FSPM (FLPM): first-stage paging mode.
        #[inline]
        pub fspm: u2,
        /// Bit 132, WPE: write protect for supervisor requests.
        #[inline]
        pub wpe: bool,
        /// Bit 133, NXE: no-execute enable.
        #[inline]
        pub nxe: bool,
        /// Bit 134, SMEP.
        #[inline]
        pub smep: bool,
        /// Bit 135, EAFE: extended-accessed flag enable.
        #[inline]
        pub eafe: bool,
        /// Bits 139:136, not checked.
        #[inline]
        pub unchecked_139_136: u4,
        /// Bits 191:140, FSPTPTR (FLPTPTR) >> 12.
        #[inline]
        pub fsptptr: u52,
    }
}

fn read_quads<const N: usize>(mem: &dyn GuestMemory, addr: u64) -> Result<[u64; N], MemError> {
    let mut out = [0u64; N];
    for (i, q) in out.iter_mut().enumerate() {
        *q = mem.read_u64(addr.wrapping_add(8 * i as u64))?;
    }
    Ok(out)
}

/// Hardware capabilities scalable-mode validation depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmCaps {
    /// Host address width mask.
    pub haw_mask: u64,
    /// CAP.SAGAW (bit n = AW encoding n supported).
    pub sagaw: u8,
    /// ECAP.PT: PGTT pass-through allowed.
    pub pass_through: bool,
    /// ECAP.SLTS: PGTT second-stage allowed.
    pub second_stage: bool,
    /// ECAP.FLTS: PGTT first-stage allowed.
    pub first_stage: bool,
    /// ECAP.NEST: PGTT nested allowed.
    pub nested: bool,
    /// ECAP.SRS: supervisor requests (SRE, RID_PRIV) supported.
    pub supervisor: bool,
    /// 5-level first-stage tables supported.
    pub fs_5level: bool,
    /// Extended-accessed flag (EAFE) supported.
    pub eafs: bool,
    /// Supported PASID width (0: no PASID support).
    pub pasid_bits: u8,
    /// The architecture's checks (`x-strict`); otherwise the C device's
    /// (see "Checks" in the module documentation).
    pub strict: bool,
}

impl SmCaps {
    /// Capabilities as advertised by CAP/ECAP for host address width
    /// `aw_bits`.
    pub fn from_regs(cap: u64, ecap: u64, aw_bits: u8) -> SmCaps {
        let (cap, ecap) = (CapReg::from(cap), EcapReg::from(ecap));
        let pasid_bits = if ecap.pasid() { (ecap.pss().value() + 1).min(MAX_PASID_BITS) } else { 0 };
        SmCaps {
            haw_mask: width_mask(u32::from(aw_bits)),
            sagaw: cap.sagaw().value(),
            pass_through: ecap.pt(),
            second_stage: ecap.ssts(),
            first_stage: ecap.fsts(),
            nested: ecap.nest(),
            supervisor: ecap.srs(),
            fs_5level: false,
            eafs: false,
            pasid_bits,
            strict: true,
        }
    }
}

/// A scalable-mode root entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SmRootEntry {
    /// Bits 63:0 (lower half: devfn 0..=127).
    pub lo: u64,
    /// Bits 127:64 (upper half: devfn 128..=255).
    pub hi: u64,
}

impl SmRootEntry {
    /// Read the entry for `bus` from the root table at `root_table`.
    pub fn read(mem: &dyn GuestMemory, root_table: u64, bus: u8) -> Result<SmRootEntry, MemError> {
        let addr = root_table.wrapping_add(u64::from(bus) * SM_ROOT_ENTRY_SIZE);
        let [lo, hi] = read_quads::<2>(mem, addr)?;
        Ok(SmRootEntry { lo, hi })
    }

    /// An entry from its two halves.
    pub fn from_halves(lo: SmRootHalf, hi: SmRootHalf) -> SmRootEntry {
        SmRootEntry { lo: lo.into(), hi: hi.into() }
    }

    /// LP: the lower context table pointer is valid.
    #[inline]
    pub fn lower_present(&self) -> bool {
        SmRootHalf::from(self.lo).present()
    }

    /// UP: the upper context table pointer is valid.
    #[inline]
    pub fn upper_present(&self) -> bool {
        SmRootHalf::from(self.hi).present()
    }

    /// LCTP: context table for devfn 0..=127.
    #[inline]
    pub fn lower_context_table(&self) -> u64 {
        field_address(SmRootHalf::from(self.lo).ctp(), 12)
    }

    /// UCTP: context table for devfn 128..=255.
    #[inline]
    pub fn upper_context_table(&self) -> u64 {
        field_address(SmRootHalf::from(self.hi).ctp(), 12)
    }

    /// The half used by `devfn`: (present, context table address, raw
    /// quadword).
    pub fn half(&self, devfn: u8) -> (bool, u64, u64) {
        // Devfn 128..=255 use the upper half.
        if devfn >= 0x80 {
            (self.upper_present(), self.upper_context_table(), self.hi)
        } else {
            (self.lower_present(), self.lower_context_table(), self.lo)
        }
    }

    /// Whether reserved bits are set (bits 11:1, or context table bits at or
    /// above the host address width): in the half used by `devfn` with
    /// `strict` checks, in either half with the C device's.
    pub fn has_reserved_bits(&self, devfn: u8, haw_mask: u64, strict: bool) -> bool {
        let bad = |raw: u64| {
            let h = SmRootHalf::from(raw);
            h.reserved_i().value() != 0 || field_address(h.ctp(), 12) & !haw_mask != 0
        };
        if strict {
            bad(self.half(devfn).2)
        } else {
            bad(self.lo) || bad(self.hi)
        }
    }
}

/// A scalable-mode (256-bit) context entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SmContextEntry {
    /// The four quadwords, bits 63:0 first.
    pub val: [u64; 4],
}

impl SmContextEntry {
    /// Read the entry for `devfn` from the context table `table` (the
    /// table of the root-entry half that covers `devfn`).
    pub fn read(mem: &dyn GuestMemory, table: u64, devfn: u8) -> Result<SmContextEntry, MemError> {
        // Each half's table holds 128 entries: devfn bits 6:0 index it.
        let addr = table.wrapping_add(u64::from(devfn % 128) * SM_CONTEXT_ENTRY_SIZE);
        Ok(SmContextEntry { val: read_quads::<4>(mem, addr)? })
    }

    /// An entry from its two defined quadwords (quadwords 2 and 3 zero).
    pub fn from_words(q0: SmContextQ0, q1: SmContextQ1) -> SmContextEntry {
        SmContextEntry { val: [q0.into(), q1.into(), 0, 0] }
    }

    /// Bits 63:0.
    #[inline]
    pub fn q0(&self) -> SmContextQ0 {
        SmContextQ0::from(self.val[0])
    }

    /// Bits 127:64.
    #[inline]
    pub fn q1(&self) -> SmContextQ1 {
        SmContextQ1::from(self.val[1])
    }

    /// P.
    #[inline]
    pub fn present(&self) -> bool {
        self.q0().present()
    }

    /// FPD.
    #[inline]
    pub fn fpd(&self) -> bool {
        self.q0().fpd()
    }

    /// DTE: device-TLB (ATS) enable.
    #[inline]
    pub fn dte(&self) -> bool {
        self.q0().dte()
    }

    /// PASIDE: requests-with-PASID enabled.
    #[inline]
    pub fn paside(&self) -> bool {
        self.q0().paside()
    }

    /// PRE: page requests enabled.
    #[inline]
    pub fn pre(&self) -> bool {
        self.q0().pre()
    }

    /// PDTS: PASID directory size encoding.
    #[inline]
    pub fn pdts(&self) -> u8 {
        self.q0().pdts().value()
    }

    /// Number of PASID directory entries, 2^(PDTS + 7).
    #[inline]
    pub fn pasid_dir_entries(&self) -> u32 {
        1u32 << (u32::from(self.pdts()) + 7)
    }

    /// PASIDDIRPTR: PASID directory address.
    #[inline]
    pub fn pasid_dir(&self) -> u64 {
        field_address(self.q0().pasid_dir_ptr(), 12)
    }

    /// RID_PASID: PASID used for requests without PASID.
    #[inline]
    pub fn rid_pasid(&self) -> u32 {
        self.q1().rid_pasid().value()
    }

    /// RID_PRIV: requests without PASID are supervisor requests.
    #[inline]
    pub fn rid_priv(&self) -> bool {
        self.q1().rid_priv()
    }

    /// Whether reserved bits are set: bits 8:5, directory pointer bits at or
    /// above the host address width, bits 127:85, quadwords 2 and 3, and
    /// with strict checks on an IOMMU without ECAP.SRS, RID_PRIV (which the
    /// C device's checks ignore: requests without PASID are never supervisor
    /// requests there).
    pub fn has_reserved_bits(&self, caps: &SmCaps) -> bool {
        let (q0, q1) = (self.q0(), self.q1());
        q0.reserved_i().value() != 0
            || self.pasid_dir() & !caps.haw_mask != 0
            || q1.reserved_i().value() != 0
            || (q1.rid_priv() && caps.strict && !caps.supervisor)
            || self.val[2] != 0
            || self.val[3] != 0
    }
}

/// A PASID directory entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PasidDirEntry(pub u64);

impl PasidDirEntry {
    /// Read the entry covering `pasid` from the directory at `dir`.
    pub fn read(mem: &dyn GuestMemory, dir: u64, pasid: u32) -> Result<PasidDirEntry, MemError> {
        // PASID bits 19:6 index the directory (64 PASIDs per table).
        let addr = dir.wrapping_add(u64::from(pasid / 64) * PASID_DIR_ENTRY_SIZE);
        mem.read_u64(addr).map(PasidDirEntry)
    }

    #[inline]
    fn word(&self) -> PasidDirWord {
        PasidDirWord::from(self.0)
    }

    /// P.
    #[inline]
    pub fn present(&self) -> bool {
        self.word().present()
    }

    /// FPD.
    #[inline]
    pub fn fpd(&self) -> bool {
        self.word().fpd()
    }

    /// SMPTBLPTR: PASID table address.
    #[inline]
    pub fn pasid_table(&self) -> u64 {
        field_address(self.word().smptblptr(), 12)
    }

    /// Whether reserved bits are set (11:2, or table pointer bits at or
    /// above the host address width).
    #[inline]
    pub fn has_reserved_bits(&self, haw_mask: u64) -> bool {
        self.word().reserved_i().value() != 0 || self.pasid_table() & !haw_mask != 0
    }
}

/// The PGTT field of a PASID table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pgtt {
    /// 001b: first-stage only.
    FirstStage,
    /// 010b: second-stage only.
    SecondStage,
    /// 011b: nested (first stage, each address translated by the second).
    Nested,
    /// 100b: pass-through.
    PassThrough,
    /// Any other encoding.
    Reserved(u8),
}

/// The first-stage paging mode (FSPM/FLPM) of a PASID table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FsPagingMode {
    /// 00b: 4-level tables, 48-bit canonical input.
    Level4,
    /// 01b: 5-level tables, 57-bit canonical input.
    Level5,
    /// 10b / 11b.
    Reserved(u8),
}

/// A scalable-mode (512-bit) PASID table entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PasidEntry {
    /// The eight quadwords, bits 63:0 first.
    pub val: [u64; 8],
}

impl PasidEntry {
    /// Read the entry for `pasid` from the PASID table at `table`.
    pub fn read(mem: &dyn GuestMemory, table: u64, pasid: u32) -> Result<PasidEntry, MemError> {
        // PASID bits 5:0 index the table.
        let addr = table.wrapping_add(u64::from(pasid % 64) * PASID_ENTRY_SIZE);
        Ok(PasidEntry { val: read_quads::<8>(mem, addr)? })
    }

    /// An entry from its three defined quadwords (the others zero).
    pub fn from_words(q0: PasidQ0, q1: PasidQ1, q2: PasidQ2) -> PasidEntry {
        PasidEntry { val: [q0.into(), q1.into(), q2.into(), 0, 0, 0, 0, 0] }
    }

    /// Bits 63:0.
    #[inline]
    pub fn q0(&self) -> PasidQ0 {
        PasidQ0::from(self.val[0])
    }

    /// Bits 127:64.
    #[inline]
    pub fn q1(&self) -> PasidQ1 {
        PasidQ1::from(self.val[1])
    }

    /// Bits 191:128.
    #[inline]
    pub fn q2(&self) -> PasidQ2 {
        PasidQ2::from(self.val[2])
    }

    /// P.
    #[inline]
    pub fn present(&self) -> bool {
        self.q0().present()
    }

    /// FPD.
    #[inline]
    pub fn fpd(&self) -> bool {
        self.q0().fpd()
    }

    /// AW: second-stage adjusted guest address width encoding.
    #[inline]
    pub fn aw(&self) -> u8 {
        self.q0().aw().value()
    }

    /// SSEE (SLEE): second-stage execute enable.
    #[inline]
    pub fn ssee(&self) -> bool {
        self.q0().ssee()
    }

    /// PGTT.
    pub fn pgtt(&self) -> Pgtt {
        match self.q0().pgtt().value() {
            1 => Pgtt::FirstStage,
            2 => Pgtt::SecondStage,
            3 => Pgtt::Nested,
            4 => Pgtt::PassThrough,
            v => Pgtt::Reserved(v),
        }
    }

    /// SSADE (SLADE): second-stage accessed/dirty enable.
    #[inline]
    pub fn ssade(&self) -> bool {
        self.q0().ssade()
    }

    /// SSPTPTR (SLPTPTR): second-stage table root.
    #[inline]
    pub fn ssptptr(&self) -> u64 {
        field_address(self.q0().ssptptr(), 12)
    }

    /// DID.
    #[inline]
    pub fn domain_id(&self) -> u16 {
        self.q1().did()
    }

    /// PWSNP: page-walk snoop.
    #[inline]
    pub fn pwsnp(&self) -> bool {
        self.q1().pwsnp()
    }

    /// PGSNP: page snoop.
    #[inline]
    pub fn pgsnp(&self) -> bool {
        self.q1().pgsnp()
    }

    /// SRE: supervisor requests enabled.
    #[inline]
    pub fn sre(&self) -> bool {
        self.q2().sre()
    }

    /// FSPM (FLPM): first-stage paging mode.
    pub fn fs_paging_mode(&self) -> FsPagingMode {
        match self.q2().fspm().value() {
            0 => FsPagingMode::Level4,
            1 => FsPagingMode::Level5,
            v => FsPagingMode::Reserved(v),
        }
    }

    /// WPE: write protect for supervisor requests.
    #[inline]
    pub fn wpe(&self) -> bool {
        self.q2().wpe()
    }

    /// EAFE: extended-accessed flag enable.
    #[inline]
    pub fn eafe(&self) -> bool {
        self.q2().eafe()
    }

    /// FSPTPTR (FLPTPTR): first-stage table root.
    #[inline]
    pub fn fsptptr(&self) -> u64 {
        field_address(self.q2().fsptptr(), 12)
    }

    /// Whether reserved bits are set (see the module documentation for the
    /// policy): bits 11:10, SSEE and SSADE (no second-stage execute or
    /// accessed/dirty support), table pointers at or above the host address
    /// width, SRE without ECAP.SRS, EAFE without extended-accessed support,
    /// quadwords 3 to 7.
    pub fn has_reserved_bits(&self, caps: &SmCaps) -> bool {
        let (q0, q2) = (self.q0(), self.q2());
        q0.reserved_i().value() != 0
            || q0.ssee()
            || q0.ssade()
            || self.ssptptr() & !caps.haw_mask != 0
            || (q2.sre() && !caps.supervisor)
            || (q2.eafe() && !caps.eafs)
            || self.fsptptr() & !caps.haw_mask != 0
            || self.val[3..].iter().any(|&q| q != 0)
    }
}

/// What a validated PASID table entry tells the hardware to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PasidMode {
    /// Output address = input address.
    PassThrough,
    /// Second-stage translation only.
    SecondStage(SsTable),
    /// First-stage translation only.
    FirstStage(FsTable),
    /// First-stage translation whose table and output addresses are
    /// translated by the second stage.
    Nested {
        /// First-stage tables (guest physical addresses).
        fs: FsTable,
        /// Second-stage tables.
        ss: SsTable,
    },
}

/// A present, validated PASID table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PasidConfig {
    /// The raw entry.
    pub entry: PasidEntry,
    /// DID.
    pub domain_id: u16,
    /// Translation mode.
    pub mode: PasidMode,
    /// SRE.
    pub sre: bool,
    /// WPE.
    pub wpe: bool,
    /// EAFE.
    pub eafe: bool,
}

/// Validate a PASID table entry read for a request (`fpd` is the FPD
/// state accumulated from the structures read before it).
pub fn decode_pasid_entry(
    pe: &PasidEntry,
    caps: &SmCaps,
    fpd: bool,
) -> Result<PasidConfig, ContextFault> {
    let fpd = fpd || (caps.strict && pe.fpd());
    let fail = |reason| ContextFault { reason, fpd };
    if caps.strict {
        if !pe.present() {
            return Err(fail(FaultReason::PasidEntryNotPresent));
        }
        if pe.has_reserved_bits(caps) {
            return Err(fail(FaultReason::PasidEntryReserved));
        }
    }
    let ss = || {
        let aw = pe.aw();
        // SAGAW has one bit per AW value (bit n: AW = n supported).
        if aw > 4 || caps.sagaw & (1 << aw) == 0 {
            return Err(fail(FaultReason::PasidEntryInvalid));
        }
        Ok(SsTable { root: pe.ssptptr(), levels: aw + 2, agaw: 30 + 9 * aw })
    };
    let fs = || {
        let levels = match pe.fs_paging_mode() {
            FsPagingMode::Level4 => 4,
            FsPagingMode::Level5 if caps.fs_5level => 5,
            _ => return Err(fail(FaultReason::PasidEntryInvalid)),
        };
        Ok(FsTable { root: pe.fsptptr(), levels })
    };
    let mode = match pe.pgtt() {
        Pgtt::FirstStage if caps.first_stage => PasidMode::FirstStage(fs()?),
        Pgtt::SecondStage if caps.second_stage => PasidMode::SecondStage(ss()?),
        Pgtt::Nested if caps.nested => PasidMode::Nested { fs: fs()?, ss: ss()? },
        Pgtt::PassThrough if caps.pass_through => PasidMode::PassThrough,
        _ => return Err(fail(FaultReason::PasidEntryInvalid)),
    };
    // The C device's order: the type and table depth, then P; no
    // reserved bits.
    if !caps.strict && !pe.present() {
        return Err(fail(FaultReason::PasidEntryNotPresent));
    }
    Ok(PasidConfig {
        entry: *pe,
        domain_id: pe.domain_id(),
        mode,
        sre: pe.sre(),
        wpe: pe.wpe(),
        eafe: pe.eafe(),
    })
}

/// Map requester `sid` to its validated scalable-mode context entry
/// through the scalable root table at `root_table`.
pub fn lookup_sm_context(
    mem: &dyn GuestMemory,
    root_table: u64,
    sid: u16,
    caps: &SmCaps,
) -> Result<SmContextEntry, ContextFault> {
    // The PCI requester id: bus in bits 15:8 (the root table index), devfn
    // in bits 7:0 (devfn bit 7 selects the root entry's half, bits 6:0 the
    // context entry).
    let [devfn, bus] = sid.to_le_bytes();
    let fail = |reason, fpd| ContextFault { reason, fpd };
    let re = SmRootEntry::read(mem, root_table, bus)
        .map_err(|_| fail(FaultReason::SmRootEntryAccess, false))?;
    let (present, table, _) = re.half(devfn);
    if !present {
        return Err(fail(FaultReason::SmRootEntryNotPresent, false));
    }
    if re.has_reserved_bits(devfn, caps.haw_mask, caps.strict) {
        return Err(fail(FaultReason::SmRootEntryReserved, false));
    }
    let ce = SmContextEntry::read(mem, table, devfn)
        .map_err(|_| fail(FaultReason::SmContextEntryAccess, false))?;
    let fpd = ce.fpd();
    if !ce.present() {
        return Err(fail(FaultReason::SmContextEntryNotPresent, fpd));
    }
    if ce.has_reserved_bits(caps) {
        return Err(fail(FaultReason::SmContextEntryReserved, fpd));
    }
    Ok(ce)
}

/// The PASID a request is processed with: its own (`Some`) or the
/// context entry's RID_PASID, after the context-level checks (PASIDE,
/// PASID width, PASID directory size).
pub fn effective_pasid(
    ce: &SmContextEntry,
    pasid: Option<u32>,
    caps: &SmCaps,
) -> Result<u32, FaultReason> {
    let width = if caps.pasid_bits == 0 { MAX_PASID_BITS } else { caps.pasid_bits };
    // Arithmetic: PASIDs below 2^width; 64 PASID entries per directory entry.
    let limit = 1u32 << u32::from(width.min(MAX_PASID_BITS));
    match pasid {
        None => {
            let p = ce.rid_pasid();
            if caps.strict && (p >= limit || (p >> 6) >= ce.pasid_dir_entries()) {
                return Err(FaultReason::SmContextRidPasidInvalid);
            }
            Ok(p)
        }
        Some(p) => {
            if caps.pasid_bits == 0 {
                return Err(FaultReason::SmContextEntryInvalid);
            }
            if !ce.paside() {
                return Err(FaultReason::SmContextPasidDisabled);
            }
            if p >= limit || (p >> 6) >= ce.pasid_dir_entries() {
                return Err(FaultReason::SmContextPasidTooLarge);
            }
            Ok(p)
        }
    }
}

/// Read and validate the PASID table entry used by a request on a
/// validated context entry: `pasid` is the request's PASID, `None` for a
/// request without PASID (RID_PASID is used). Returns the PASID used,
/// whether an FPD bit (context, directory or PASID entry) is set, and the
/// validated entry.
pub fn lookup_pasid_entry(
    mem: &dyn GuestMemory,
    ce: &SmContextEntry,
    pasid: Option<u32>,
    caps: &SmCaps,
) -> Result<(u32, bool, PasidConfig), ContextFault> {
    let fpd = ce.fpd();
    let p = effective_pasid(ce, pasid, caps).map_err(|reason| ContextFault { reason, fpd })?;
    let (own_fpd, pc) = read_pasid_entry(mem, ce, p, caps)?;
    Ok((p, fpd || own_fpd, pc))
}

/// Read and validate the PASID directory and table entries for PASID `p`
/// (already checked by [`effective_pasid`]) under context entry `ce`.
/// Returns whether the directory or table entry has FPD set (the context
/// entry's FPD is not included) and the validated entry; a fault's `fpd`
/// includes the context entry's.
pub fn read_pasid_entry(
    mem: &dyn GuestMemory,
    ce: &SmContextEntry,
    p: u32,
    caps: &SmCaps,
) -> Result<(bool, PasidConfig), ContextFault> {
    let ctx_fpd = ce.fpd();
    let de = PasidDirEntry::read(mem, ce.pasid_dir() & caps.haw_mask, p)
        .map_err(|_| ContextFault { reason: FaultReason::PasidDirEntryAccess, fpd: ctx_fpd })?;
    // The C device's rules: a fault found in the PASID structures is
    // suppressed by the context entry's FPD alone (their own FPD bits
    // count for the faults of the walk that follows).
    let fpd = ctx_fpd || (caps.strict && de.fpd());
    if !de.present() {
        return Err(ContextFault { reason: FaultReason::PasidDirEntryNotPresent, fpd });
    }
    if caps.strict && de.has_reserved_bits(caps.haw_mask) {
        return Err(ContextFault { reason: FaultReason::PasidDirEntryReserved, fpd });
    }
    let pe = PasidEntry::read(mem, de.pasid_table(), p)
        .map_err(|_| ContextFault { reason: FaultReason::PasidEntryAccess, fpd })?;
    let pc = decode_pasid_entry(&pe, caps, fpd)?;
    Ok((de.fpd() || pe.fpd(), pc))
}

/// Everything the hardware needs to translate a request in scalable mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PasidContext {
    /// The context entry.
    pub context: SmContextEntry,
    /// The PASID used (the request's, or RID_PASID).
    pub pasid: u32,
    /// The request is a supervisor request (for requests without PASID:
    /// RID_PRIV).
    pub privileged: bool,
    /// Some FPD bit on the path (context, directory or PASID entry) is set.
    pub fpd: bool,
    /// The validated PASID table entry.
    pub pasid_entry: PasidConfig,
}

/// Resolve requester `sid` (and PASID, `None` for requests without PASID,
/// with privilege `privileged` for requests with PASID) to its PASID
/// table entry through the scalable root table at `root_table`. A
/// supervisor request on an entry without SRE fails here (SPT.6).
pub fn resolve(
    mem: &dyn GuestMemory,
    root_table: u64,
    sid: u16,
    pasid: Option<(u32, bool)>,
    caps: &SmCaps,
) -> Result<PasidContext, ContextFault> {
    let ce = lookup_sm_context(mem, root_table, sid, caps)?;
    let (p, fpd, pc) = lookup_pasid_entry(mem, &ce, pasid.map(|(p, _)| p), caps)?;
    request_context(ce, p, fpd, pc, pasid, caps.strict)
}

/// The context of a request (PASID and privilege `request`, `None` for a
/// request without PASID) on validated context entry `ce` and PASID entry
/// `pc` of PASID `p`, `fpd` the FPD state of the path: its privilege (a
/// PASID request's own; RID_PRIV only with `strict` checks) and the SRE
/// check of a supervisor request (SPT.6).
pub fn request_context(
    ce: SmContextEntry,
    p: u32,
    fpd: bool,
    pc: PasidConfig,
    request: Option<(u32, bool)>,
    strict: bool,
) -> Result<PasidContext, ContextFault> {
    let privileged = match request {
        Some((_, pr)) => pr,
        None => strict && ce.rid_priv(),
    };
    if privileged && !pc.sre {
        return Err(ContextFault { reason: FaultReason::PasidEntrySreClear, fpd });
    }
    Ok(PasidContext { context: ce, pasid: p, privileged, fpd, pasid_entry: pc })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Raw bit positions from the specification, independent of the
    // layouts (these tests check the layouts against them).
    const SM_CTX_RID_PRIV: u64 = 1 << 20;
    const PE_SSEE: u64 = 1 << 5;
    const PE_SSADE: u64 = 1 << 9;
    const PE_SRE: u64 = 1;
    const PE_WPE: u64 = 1 << 4;
    const PE_EAFE: u64 = 1 << 7;
    const PE_PWSNP: u64 = 1 << 23;
    const PE_PGSNP: u64 = 1 << 24;

    fn caps() -> SmCaps {
        SmCaps {
            haw_mask: width_mask(48),
            sagaw: 0b0110,
            pass_through: true,
            second_stage: true,
            first_stage: true,
            nested: true,
            supervisor: true,
            fs_5level: false,
            eafs: false,
            pasid_bits: 20,
            strict: true,
        }
    }

    fn pe(q0: u64, q1: u64, q2: u64) -> PasidEntry {
        PasidEntry { val: [q0, q1, q2, 0, 0, 0, 0, 0] }
    }

    fn reason(r: Result<PasidConfig, ContextFault>) -> FaultReason {
        r.unwrap_err().reason
    }

    #[test]
    fn caps_from_registers_of_scalable_config() {
        let cfg = crate::Config {
            scalable_mode: true,
            first_stage: true,
            pasid_bits: 16,
            ..crate::Config::default()
        };
        let c = SmCaps::from_regs(cfg.cap(), cfg.ecap(), cfg.aw_bits);
        assert!(c.first_stage && c.second_stage && c.nested && c.supervisor && c.pass_through);
        assert_eq!((c.pasid_bits, c.sagaw), (16, 0b0110));
        let c = SmCaps::from_regs(0, 0, 39);
        assert_eq!(c.pasid_bits, 0);
        assert!(!c.first_stage && !c.second_stage);
    }

    #[test]
    fn root_entry_halves_select_by_devfn_bit7() {
        let re = SmRootEntry { lo: 0x1000 | 1, hi: 0x2000 };
        assert_eq!(re.half(0x7f), (true, 0x1000, 0x1001));
        assert_eq!(re.half(0x80), (false, 0x2000, 0x2000));
        assert!(re.lower_present() && !re.upper_present());
        assert_eq!((re.lower_context_table(), re.upper_context_table()), (0x1000, 0x2000));
    }

    #[test]
    fn root_entry_reserved_in_used_half_or_both_for_c_rules() {
        let haw = width_mask(39);
        let re = SmRootEntry { lo: 0x1001 | 0x2, hi: (1 << 40) | 0x2001 };
        assert!(re.has_reserved_bits(0, haw, true));
        assert!(re.has_reserved_bits(0x80, haw, true));
        let lower_only = SmRootEntry { lo: 0x1001 | 0x2, hi: 0x2001 };
        assert!(!lower_only.has_reserved_bits(0x80, haw, true));
        let upper_only = SmRootEntry { lo: 0x1001, hi: (1 << 40) | 0x2001 };
        assert!(!upper_only.has_reserved_bits(0, haw, true));
        // The C device checks both halves whichever is used.
        assert!(lower_only.has_reserved_bits(0x80, haw, false));
        assert!(upper_only.has_reserved_bits(0, haw, false));
        let ok = SmRootEntry { lo: 0x1001, hi: 0 };
        assert!(!ok.has_reserved_bits(5, haw, true) && !ok.has_reserved_bits(5, haw, false));
        for bit in 1..12 {
            assert!(SmRootEntry { lo: 0x1001 | (1 << bit), hi: 0 }.has_reserved_bits(0, haw, true), "bit {bit}");
        }
    }

    #[test]
    fn c_rules_for_pasid_structures() {
        let c = SmCaps { strict: false, supervisor: false, ..caps() };
        let strict = SmCaps { strict: true, ..c };
        // PASID entry: no reserved bits; the type is checked before P.
        let mut e = pe(0x5000 | (2 << 6) | (2 << 2) | 1, 0, PE_SRE);
        e.val[5] = 1 << 9;
        assert!(decode_pasid_entry(&e, &c, false).is_ok());
        assert_eq!(reason(decode_pasid_entry(&e, &strict, false)), FaultReason::PasidEntryReserved);
        let absent = pe(0, 0, 0);
        assert_eq!(reason(decode_pasid_entry(&absent, &c, false)), FaultReason::PasidEntryInvalid);
        assert_eq!(reason(decode_pasid_entry(&absent, &strict, false)), FaultReason::PasidEntryNotPresent);
        let typed_absent = pe(0x5000 | (4 << 6), 0, 0);
        assert_eq!(reason(decode_pasid_entry(&typed_absent, &c, false)), FaultReason::PasidEntryNotPresent);
        // Context entry: RID_PRIV without ECAP.SRS is accepted (and
        // ignored); RID_PASID beyond the PASID width or directory too.
        let ce = SmContextEntry { val: [0x3000 | 1, (1 << 20) | 0xf_ffff, 0, 0] };
        assert!(!ce.has_reserved_bits(&c));
        assert!(ce.has_reserved_bits(&strict));
        let c8 = SmCaps { pasid_bits: 8, ..c };
        assert_eq!(effective_pasid(&ce, None, &c8), Ok(0xf_ffff));
        assert!(effective_pasid(&ce, None, &SmCaps { strict: true, ..c8 }).is_err());
    }

    #[test]
    fn context_entry_fields_decode() {
        let ce = SmContextEntry {
            val: [0xabc_d000 | (5 << 9) | 0x1f, 0x12345 | SM_CTX_RID_PRIV, 0, 0],
        };
        assert!(ce.present() && ce.fpd() && ce.dte() && ce.paside() && ce.pre());
        assert_eq!(ce.pdts(), 5);
        assert_eq!(ce.pasid_dir_entries(), 4096);
        assert_eq!(ce.pasid_dir(), 0xabc_d000);
        assert_eq!(ce.rid_pasid(), 0x12345);
        assert!(ce.rid_priv());
        assert!(!ce.has_reserved_bits(&caps()));
    }

    #[test]
    fn context_entry_reserved_bits_each_quadword() {
        let c = caps();
        let reserved = |val| SmContextEntry { val }.has_reserved_bits(&c);
        assert!(!reserved([0x1001 | (7 << 9) | 0x1f, 0xf_ffff | SM_CTX_RID_PRIV, 0, 0]));
        for bit in (5..9).chain([50, 63]) {
            assert!(reserved([0x1001 | (1 << bit), 0, 0, 0]), "bit {bit}");
        }
        for bit in [21, 40, 63] {
            assert!(reserved([0x1001, 1 << bit, 0, 0]), "bit {}", 64 + bit);
        }
        assert!(reserved([0x1001, 0, 1, 0]) && reserved([0x1001, 0, 0, 1 << 63]));
        let ce = SmContextEntry { val: [0x1001, SM_CTX_RID_PRIV, 0, 0] };
        let no_srs = SmCaps { supervisor: false, ..c };
        assert!(ce.has_reserved_bits(&no_srs));
    }

    #[test]
    fn pasid_dir_entry_fields_and_reserved() {
        let d = PasidDirEntry(0x5000 | 3);
        assert!(d.present() && d.fpd());
        assert_eq!(d.pasid_table(), 0x5000);
        assert!(!d.has_reserved_bits(width_mask(48)));
        for bit in (2..12).chain([48, 63]) {
            assert!(PasidDirEntry(0x5001 | (1 << bit)).has_reserved_bits(width_mask(48)), "bit {bit}");
        }
    }

    #[test]
    fn pasid_entry_fields_decode() {
        let e = pe(
            0x7000 | (2 << 6) | (2 << 2) | 3,
            0x42 | PE_PWSNP | PE_PGSNP,
            0x9000 | PE_SRE | PE_WPE | PE_EAFE | (1 << 2),
        );
        assert!(e.present() && e.fpd() && !e.ssee() && !e.ssade());
        assert_eq!(e.aw(), 2);
        assert_eq!(e.pgtt(), Pgtt::SecondStage);
        assert_eq!(e.ssptptr(), 0x7000);
        assert_eq!(e.domain_id(), 0x42);
        assert!(e.pwsnp() && e.pgsnp() && e.sre() && e.wpe() && e.eafe());
        assert_eq!(e.fs_paging_mode(), FsPagingMode::Level5);
        assert_eq!(e.fsptptr(), 0x9000);
        for (v, p) in [(1, Pgtt::FirstStage), (3, Pgtt::Nested), (4, Pgtt::PassThrough), (0, Pgtt::Reserved(0)), (7, Pgtt::Reserved(7))] {
            assert_eq!(pe(v << 6, 0, 0).pgtt(), p);
        }
        assert_eq!(pe(0, 0, 3 << 2).fs_paging_mode(), FsPagingMode::Reserved(3));
    }

    #[test]
    fn pasid_entry_not_present_reports_its_fpd() {
        let f = decode_pasid_entry(&pe(2, 0, 0), &caps(), false).unwrap_err();
        assert_eq!((f.reason, f.fpd), (FaultReason::PasidEntryNotPresent, true));
        let f = decode_pasid_entry(&pe(0, 0, 0), &caps(), true).unwrap_err();
        assert_eq!((f.reason, f.fpd), (FaultReason::PasidEntryNotPresent, true));
        let f = decode_pasid_entry(&pe(0, 0, 0), &caps(), false).unwrap_err();
        assert!(!f.fpd);
    }

    #[test]
    fn pasid_entry_reserved_bits_fault_5ah() {
        let c = caps();
        let base = 0x7000 | (2 << 6) | (2 << 2) | 1;
        for q0 in [base | PE_SSEE, base | PE_SSADE, base | 0x400, base | (1 << 52)] {
            assert_eq!(reason(decode_pasid_entry(&pe(q0, 0, 0), &c, false)), FaultReason::PasidEntryReserved);
        }
        let mut e = pe(base, 0, 0);
        e.val[5] = 1;
        assert_eq!(reason(decode_pasid_entry(&e, &c, false)), FaultReason::PasidEntryReserved);
        // EAFE without extended-accessed support, SRE without SRS.
        let fs = (1 << 6) | 1;
        assert_eq!(reason(decode_pasid_entry(&pe(fs, 0, PE_EAFE), &c, false)), FaultReason::PasidEntryReserved);
        let no_srs = SmCaps { supervisor: false, ..c };
        assert_eq!(reason(decode_pasid_entry(&pe(fs, 0, PE_SRE), &no_srs, false)), FaultReason::PasidEntryReserved);
        // Snoop and memory-type fields of quadword 1 are accepted.
        assert!(decode_pasid_entry(&pe(base, u64::MAX, 0), &c, false).is_ok());
    }

    #[test]
    fn pasid_entry_pgtt_must_be_advertised() {
        let c = caps();
        for v in [0u64, 5, 6, 7] {
            assert_eq!(reason(decode_pasid_entry(&pe((v << 6) | 1, 0, 0), &c, false)), FaultReason::PasidEntryInvalid);
        }
        let fs_only = (1 << 6) | 1;
        let nested = (3 << 6) | (2 << 2) | 1;
        let pt = (4 << 6) | 1;
        let off = SmCaps { first_stage: false, nested: false, pass_through: false, ..c };
        for q0 in [fs_only, nested, pt] {
            assert_eq!(reason(decode_pasid_entry(&pe(q0, 0, 0), &off, false)), FaultReason::PasidEntryInvalid);
            assert!(decode_pasid_entry(&pe(q0, 0, 0), &c, false).is_ok());
        }
        let no_ss = SmCaps { second_stage: false, ..c };
        assert_eq!(reason(decode_pasid_entry(&pe((2 << 6) | (2 << 2) | 1, 0, 0), &no_ss, false)), FaultReason::PasidEntryInvalid);
    }

    #[test]
    fn pasid_entry_second_stage_aw_checked_against_sagaw() {
        let c = caps();
        for aw in [0u64, 3, 4, 5, 7] {
            let q0 = (2 << 6) | (aw << 2) | 1;
            assert_eq!(reason(decode_pasid_entry(&pe(q0, 0, 0), &c, false)), FaultReason::PasidEntryInvalid, "aw {aw}");
        }
        let ok = decode_pasid_entry(&pe(0x7000 | (2 << 6) | (1 << 2) | 1, 9, 0), &c, false).unwrap();
        assert_eq!(ok.mode, PasidMode::SecondStage(SsTable { root: 0x7000, levels: 3, agaw: 39 }));
        assert_eq!(ok.domain_id, 9);
        // First-stage only ignores AW (Linux programs it anyway).
        assert!(decode_pasid_entry(&pe((1 << 6) | (7 << 2) | 1, 0, 0), &c, false).is_ok());
    }

    #[test]
    fn pasid_entry_fs_paging_mode_5level_needs_support() {
        let c = caps();
        let q0 = (1 << 6) | 1;
        assert_eq!(reason(decode_pasid_entry(&pe(q0, 0, 1 << 2), &c, false)), FaultReason::PasidEntryInvalid);
        assert_eq!(reason(decode_pasid_entry(&pe(q0, 0, 2 << 2), &c, false)), FaultReason::PasidEntryInvalid);
        let c5 = SmCaps { fs_5level: true, ..c };
        let ok = decode_pasid_entry(&pe(q0, 0, 0x8000 | (1 << 2)), &c5, false).unwrap();
        assert_eq!(ok.mode, PasidMode::FirstStage(FsTable { root: 0x8000, levels: 5 }));
        let n = decode_pasid_entry(&pe(0x7000 | (3 << 6) | (2 << 2) | 1, 0, 0x8000 | PE_WPE), &c, false).unwrap();
        assert_eq!(
            n.mode,
            PasidMode::Nested {
                fs: FsTable { root: 0x8000, levels: 4 },
                ss: SsTable { root: 0x7000, levels: 4, agaw: 48 }
            }
        );
        assert!(n.wpe && !n.sre && !n.eafe);
    }

    #[test]
    fn rid_pasid_and_pasid_limits() {
        let c = caps();
        let ce = |pdts: u64, rid_pasid: u64, paside: bool| SmContextEntry {
            val: [0x1000 | (pdts << 9) | (u64::from(paside) << 3) | 1, rid_pasid, 0, 0],
        };
        // PDTS 0: 128 directory entries cover PASIDs 0..8192.
        assert_eq!(effective_pasid(&ce(0, 8191, false), None, &c), Ok(8191));
        assert_eq!(effective_pasid(&ce(0, 8192, false), None, &c), Err(FaultReason::SmContextRidPasidInvalid));
        assert_eq!(effective_pasid(&ce(7, 0xf_ffff, false), None, &c), Ok(0xf_ffff));
        let c8 = SmCaps { pasid_bits: 8, ..c };
        assert_eq!(effective_pasid(&ce(7, 256, false), None, &c8), Err(FaultReason::SmContextRidPasidInvalid));
        assert_eq!(effective_pasid(&ce(0, 0, false), Some(5), &c), Err(FaultReason::SmContextPasidDisabled));
        assert_eq!(effective_pasid(&ce(0, 0, true), Some(5), &c), Ok(5));
        assert_eq!(effective_pasid(&ce(0, 0, true), Some(8192), &c), Err(FaultReason::SmContextPasidTooLarge));
        assert_eq!(effective_pasid(&ce(7, 0, true), Some(256), &c8), Err(FaultReason::SmContextPasidTooLarge));
        let none = SmCaps { pasid_bits: 0, ..c };
        assert_eq!(effective_pasid(&ce(0, 0, true), Some(1), &none), Err(FaultReason::SmContextEntryInvalid));
    }
}
