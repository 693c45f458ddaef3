//! The Stream table (IHI 0070 §3.3.1, SMMU_STRTAB_BASE/_CFG, §5.1
//! L1STD): from a StreamID to the address and words of its STE, and the
//! configuration events a lookup can end in ([`ConfigEvent`]).
//!
//! # Conventions
//!
//! * A [`StreamTable`] is the pair of registers as written (base, LOG2SIZE
//!   and the format with its split; their layouts are
//!   [`crate::registers`]' [`StrtabBase`] and [`StrtabBaseCfg`]);
//!   [`StreamTable::from_regs`] reads them as the architecture does.
//!   QEMU's C device instead keeps the 2-level format and the split from
//!   the last write of STRTAB_BASE_CFG with FMT = 0b01 until reset (FMT
//!   0b00, 0b10, 0b11 do not switch back);
//!   [`Registers::stream_table`](crate::registers::Registers::stream_table)
//!   builds the table with the format it remembers.
//! * A StreamID at or above 2^min(LOG2SIZE, SIDSIZE) is out of range
//!   (C_BAD_STREAMID); the table base is aligned using the literal
//!   LOG2SIZE.
//! * Structures are read in one access each: 8 bytes for an L1STD, 64 for
//!   an STE, little-endian. A failed read is F_STE_FETCH with the address
//!   read.
//!
//! # Compatible and strict rules
//!
//! As for STEs ([`crate::ste`]), [`SteCaps::strict`] selects the
//! architecture's rules; the default follows QEMU 10.2.2's `smmu_find_ste`:
//!
//! 1. Base address: bits 51:6 of STRTAB_BASE (strict: 55:6), aligned down
//!    to 2^(LOG2SIZE + 5) for a linear table and to
//!    2^max(5, LOG2SIZE - SPLIT + 2) for a 2-level one: one bit less than
//!    the table size (strict: 2^(LOG2SIZE + 6) and
//!    2^(max(5, LOG2SIZE - SPLIT + 2) + 1)).
//! 2. SPLIT: any value 0 to 31 is used as written (strict: only 6, 8 and
//!    10; the reserved values behave as 6).
//! 3. L1STD.Span: only 0 is invalid (C_BAD_STREAMID); the level-2 table is
//!    taken to hold 2^Span STEs, and an index beyond that is **C_BAD_STE**.
//!    Strict: Span 0, a reserved Span (12 to 31) or one above SPLIT + 1
//!    makes every StreamID of the descriptor invalid, and the table holds
//!    2^(Span - 1) STEs; both are C_BAD_STREAMID.
//! 4. L1STD.L2Ptr: the descriptor with bits 4:0 cleared, i.e. bit 5 and
//!    bits 63:56 kept, not aligned (strict: bits 55:6, aligned to the
//!    level-2 table's size, 2^(Span + 5)).
//! 5. Addresses beyond the OAS are read as they are (strict: an STE or
//!    L1STD address at or above 2^OAS is F_STE_FETCH, one of the two
//!    behaviours §3.4.3 allows).

use iommu_core::layout::field_address;
use iommu_core::memory::{GuestMemory, MemError};
use iommu_core::translation::vmsa::Fault;
use iommu_core::translation::width_mask;

use crate::registers::{StrtabBase, StrtabBaseCfg, StrtabFormat};
use crate::ste::SteCaps;

pub use layouts::L1Std;

// ---------------------------------------------------------------- layouts

/// Architected bit layout of the Level 1 Stream Table Descriptor. A
/// module of its own because bilge's generated constructors carry no
/// documentation.
#[allow(missing_docs)]
mod layouts {
    use bilge::prelude::*;

    /// A Level 1 Stream Table Descriptor (§5.1).
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct L1Std {
        /// Bits 4:0, Span: 0 invalid, else the level-2 table holds
        /// 2^(Span - 1) STEs.
        #[inline]
        pub span: u5,
        #[inline]
        reserved: bool,
        /// Bits 55:6, L2Ptr\[55:6\].
        #[inline]
        pub l2_ptr: u50,
        #[inline]
        reserved: u8,
    }
}

// ---------------------------------------------------------------- events

/// The configuration event a failed stream, STE or CD lookup becomes: the
/// event type and the data of its record beyond the StreamID (which the
/// caller knows), InputAddr and the access attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfigEvent {
    /// C_BAD_STREAMID (0x02).
    BadStreamId,
    /// F_STE_FETCH (0x03): reading an L1STD or STE at `fetch_addr` failed.
    SteFetch {
        /// The physical address read.
        fetch_addr: u64,
    },
    /// C_BAD_STE (0x04).
    BadSte,
    /// F_STREAM_DISABLED (0x06): a transaction without a SubstreamID on a
    /// stream whose S1DSS terminates them, or with SubstreamID 0 when CD 0
    /// is reserved for those (then SSV = 1, SubstreamID = 0).
    StreamDisabled {
        /// The transaction's SubstreamID (`None`: SSV = 0).
        ssid: Option<u32>,
    },
    /// C_BAD_SUBSTREAMID (0x08): the SubstreamID field is always valid
    /// (0 for a transaction without one that reached an invalid L1CD
    /// through S1DSS = 0b10).
    BadSubstreamId {
        /// The SubstreamID (the index of the CD that was looked for).
        ssid: u32,
    },
    /// F_CD_FETCH (0x09): reading an L1CD or CD at `fetch_addr` failed.
    CdFetch {
        /// The physical address read.
        fetch_addr: u64,
    },
    /// C_BAD_CD (0x0A).
    BadCd,
    /// A stage-2 fault translating the IPA of an L1CD or CD: the
    /// F_TRANSLATION, F_ADDR_SIZE, F_ACCESS, F_PERMISSION or F_WALK_EABT
    /// event of `fault`, with S2 = 1 and CLASS = CD. Translation-related
    /// ones are recorded only if STE.S2R is set.
    CdStage2 {
        /// The stage-2 fault.
        fault: Fault,
        /// The IPA being translated (the L1CD or CD address).
        ipa: u64,
    },
}

// ---------------------------------------------------------------- errors

/// Why a StreamID is out of range (all become C_BAD_STREAMID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BadStreamId {
    /// At or above 2^min(LOG2SIZE, SIDSIZE).
    BeyondTable,
    /// Its L1STD is invalid (Span 0; strict: also reserved, or above
    /// SPLIT + 1).
    InvalidL1,
    /// Beyond the level-2 table its L1STD describes (strict rules).
    BeyondSpan,
}

/// Why the STE of a StreamID could not be fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamError {
    /// **C_BAD_STREAMID**.
    BadStreamId(BadStreamId),
    /// **F_STE_FETCH**: the L1STD or STE read at `addr` failed.
    SteFetch {
        /// The physical address read.
        addr: u64,
    },
    /// **C_BAD_STE**: the index is beyond 2^L1STD.Span (compatible rules,
    /// where the architecture says C_BAD_STREAMID).
    BadSte,
}

impl StreamError {
    /// The event this error becomes.
    pub fn event(&self) -> ConfigEvent {
        match *self {
            StreamError::BadStreamId(_) => ConfigEvent::BadStreamId,
            StreamError::SteFetch { addr } => ConfigEvent::SteFetch { fetch_addr: addr },
            StreamError::BadSte => ConfigEvent::BadSte,
        }
    }
}

impl From<StreamError> for ConfigEvent {
    fn from(e: StreamError) -> Self {
        e.event()
    }
}

impl From<crate::ste::SteError> for ConfigEvent {
    fn from(e: crate::ste::SteError) -> Self {
        e.event()
    }
}

// ---------------------------------------------------------------- the table

/// The layout of a Stream table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamTableFormat {
    /// An array of STEs indexed by StreamID.
    Linear,
    /// L1STDs indexed by StreamID\[LOG2SIZE-1:split\], each pointing to an
    /// array of STEs indexed by StreamID\[split-1:0\].
    TwoLevel {
        /// STRTAB_BASE_CFG.SPLIT as written (see the module documentation
        /// for which values are honoured).
        split: u8,
    },
}

/// A Stream table as the registers describe it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamTable {
    /// SMMU_STRTAB_BASE as written (RA and RES0 bits are ignored).
    pub base: u64,
    /// STRTAB_BASE_CFG.LOG2SIZE as written.
    pub log2size: u8,
    /// The format.
    pub format: StreamTableFormat,
}

impl StreamTable {
    /// The table SMMU_STRTAB_BASE / SMMU_STRTAB_BASE_CFG describe: FMT
    /// 0b01 is 2-level when the SMMU implements it, every other value (and
    /// 0b01 without 2-level support, where FMT is RES0) linear.
    pub fn from_regs(strtab_base: u64, strtab_base_cfg: u32, caps: &SteCaps) -> StreamTable {
        let cfg = StrtabBaseCfg::from(strtab_base_cfg);
        let format = match cfg.fmt() {
            StrtabFormat::TwoLevel if caps.two_level_strtab => {
                StreamTableFormat::TwoLevel { split: cfg.split().value() }
            }
            _ => StreamTableFormat::Linear,
        };
        StreamTable { base: strtab_base, log2size: cfg.log2size().value(), format }
    }

    /// The table's effective base address before alignment.
    fn base_addr(&self, caps: &SteCaps) -> u64 {
        let base = StrtabBase::from(self.base);
        if caps.strict {
            base.address()
        } else {
            base.address_51_6()
        }
    }

    /// The physical address of `sid`'s STE (reading its L1STD for a
    /// 2-level table).
    pub fn locate(&self, mem: &dyn GuestMemory, sid: u32, caps: &SteCaps) -> Result<u64, StreamError> {
        let sid = u64::from(sid);
        let eff_log2size = u32::from(self.log2size.min(caps.sid_bits));
        if sid.checked_shr(eff_log2size).unwrap_or(0) != 0 {
            return Err(StreamError::BadStreamId(BadStreamId::BeyondTable));
        }
        let log2size = u32::from(self.log2size);
        let base = self.base_addr(caps);
        let addr = match self.format {
            StreamTableFormat::Linear => {
                let align = if caps.strict { log2size + 6 } else { log2size + 5 };
                (base & !width_mask(align)).wrapping_add(sid * 64)
            }
            StreamTableFormat::TwoLevel { split } => {
                let split = u32::from(split);
                let split = if caps.strict && !matches!(split, 6 | 8 | 10) { 6 } else { split };
                // Highest L1 table address bit that must be zero, + 1.
                let top = (log2size + 2).saturating_sub(split).max(5);
                let align = if caps.strict { top + 1 } else { top };
                let base = base & !width_mask(align);
                let l1_index = sid.checked_shr(split).unwrap_or(0);
                let l2_index = sid & width_mask(split);
                let l1_addr = base.wrapping_add(l1_index * 8);
                let raw = read_u64(mem, l1_addr, caps).map_err(|_| StreamError::SteFetch { addr: l1_addr })?;
                let l1 = L1Std::from(raw);
                let span = u32::from(l1.span().value());
                let l2_ptr = if caps.strict {
                    if span == 0 || span > 11 || span > split + 1 {
                        return Err(StreamError::BadStreamId(BadStreamId::InvalidL1));
                    }
                    // Arithmetic: an index beyond the level-2 table's Span.
                    if l2_index >> (span - 1) != 0 {
                        return Err(StreamError::BadStreamId(BadStreamId::BeyondSpan));
                    }
                    field_address(l1.l2_ptr(), 6) & !width_mask(span + 5)
                } else {
                    if span == 0 {
                        return Err(StreamError::BadStreamId(BadStreamId::InvalidL1));
                    }
                    if l2_index > width_mask(span) {
                        return Err(StreamError::BadSte);
                    }
                    raw & !0x1f
                };
                l2_ptr.wrapping_add(l2_index * 64)
            }
        };
        // Arithmetic: an address beyond the output address size.
        if caps.strict && addr >> caps.oas() != 0 {
            return Err(StreamError::SteFetch { addr });
        }
        Ok(addr)
    }

    /// The eight words of `sid`'s STE.
    pub fn fetch(&self, mem: &dyn GuestMemory, sid: u32, caps: &SteCaps) -> Result<[u64; 8], StreamError> {
        let addr = self.locate(mem, sid, caps)?;
        read_words(mem, addr).map_err(|_| StreamError::SteFetch { addr })
    }
}

/// An L1 descriptor read, refusing (strict rules) an address beyond the
/// OAS.
fn read_u64(mem: &dyn GuestMemory, addr: u64, caps: &SteCaps) -> Result<u64, MemError> {
    if caps.strict && addr >> caps.oas() != 0 {
        return Err(MemError);
    }
    mem.read_u64(addr)
}

/// Read a 64-byte structure (STE, CD) in one access, as eight
/// little-endian words.
pub(crate) fn read_words(mem: &dyn GuestMemory, addr: u64) -> Result<[u64; 8], MemError> {
    let mut bytes = [0u8; 64];
    mem.read(addr, &mut bytes)?;
    let mut words = [0u64; 8];
    for (w, b) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut le = [0u8; 8];
        le.copy_from_slice(b);
        *w = u64::from_le_bytes(le);
    }
    Ok(words)
}

// ---------------------------------------------------------------- tests

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ste::tests::caps_variants;
    use crate::testutil::{ste_caps, Mem, Rng};
    use bilge::prelude::*;

    fn qemu() -> SteCaps {
        ste_caps(true, true)
    }

    fn ste(tag: u64) -> [u64; 8] {
        [1 | (4 << 1), tag, 0, 0, 0, 0, 0, tag]
    }

    fn cfg(fmt: StrtabFormat, split: u8, log2size: u8) -> u32 {
        let mut c = StrtabBaseCfg::from(0u32);
        c.set_fmt(fmt);
        c.set_split(u5::new(split));
        c.set_log2size(u6::new(log2size));
        u32::from(c)
    }

    fn l1std(span: u8, l2: u64) -> u64 {
        let mut d = L1Std::from(0u64);
        d.set_span(u5::new(span));
        d.set_l2_ptr(u50::new(l2 >> 6));
        u64::from(d)
    }

    #[test]
    fn register_layouts() {
        assert_eq!(cfg(StrtabFormat::TwoLevel, 8, 16), 0x0001_0210);
        assert_eq!(l1std(9, 0x4010_0000), 0x4010_0009);
        assert_eq!(StrtabBase::from(u64::MAX).addr().value() << 6, 0x00ff_ffff_ffff_ffc0);
    }

    #[test]
    fn from_regs_formats() {
        let two = StreamTable::from_regs(0x1000, cfg(StrtabFormat::TwoLevel, 8, 16), &qemu());
        assert_eq!(two, StreamTable { base: 0x1000, log2size: 16, format: StreamTableFormat::TwoLevel { split: 8 } });
        let linear_only = SteCaps { two_level_strtab: false, ..qemu() };
        let t = StreamTable::from_regs(0x1000, cfg(StrtabFormat::TwoLevel, 8, 6), &linear_only);
        assert_eq!(t.format, StreamTableFormat::Linear);
        for fmt in [StrtabFormat::Linear, StrtabFormat::Reserved2, StrtabFormat::Reserved3] {
            let t = StreamTable::from_regs(0x1000, cfg(fmt, 8, 6), &qemu());
            assert_eq!(t.format, StreamTableFormat::Linear, "{fmt:?}");
        }
    }

    #[test]
    fn linear_table() {
        let mem = Mem::default();
        mem.map(0x8000, 256 * 64);
        let t = StreamTable::from_regs(0x8000, cfg(StrtabFormat::Linear, 0, 8), &qemu());
        for sid in [0u32, 1, 0x42, 255] {
            mem.put(0x8000 + u64::from(sid) * 64, &ste(u64::from(sid)));
        }
        for caps in [qemu(), qemu().strict()] {
            for sid in [0u32, 1, 0x42, 255] {
                assert_eq!(t.locate(&mem, sid, &caps), Ok(0x8000 + u64::from(sid) * 64));
                assert_eq!(t.fetch(&mem, sid, &caps), Ok(ste(u64::from(sid))));
            }
            assert_eq!(t.fetch(&mem, 256, &caps), Err(StreamError::BadStreamId(BadStreamId::BeyondTable)));
            assert_eq!(t.fetch(&mem, u32::MAX, &caps), Err(StreamError::BadStreamId(BadStreamId::BeyondTable)));
        }
    }

    #[test]
    fn ste_is_read_in_one_access() {
        let mem = Mem::default();
        mem.map(0x8000, 0x1000);
        let t = StreamTable::from_regs(0x8000, cfg(StrtabFormat::Linear, 0, 6), &qemu());
        t.fetch(&mem, 3, &qemu()).unwrap();
        assert_eq!(*mem.reads.borrow(), vec![(0x80c0, 64)]);
    }

    #[test]
    fn log2size_is_capped_by_sidsize() {
        let mem = Mem::default();
        let t = StreamTable { base: 0, log2size: 20, format: StreamTableFormat::Linear };
        assert_eq!(t.locate(&mem, 0xffff, &qemu()), Ok(0xffff * 64));
        assert_eq!(t.locate(&mem, 0x10000, &qemu()), Err(StreamError::BadStreamId(BadStreamId::BeyondTable)));
        // Huge values do not overflow anything.
        let t = StreamTable { base: u64::MAX, log2size: 255, format: StreamTableFormat::Linear };
        let wide = SteCaps { sid_bits: 255, ..qemu() };
        assert_eq!(t.locate(&mem, u32::MAX, &wide), Ok(u64::from(u32::MAX) * 64));
        assert_eq!(t.locate(&mem, u32::MAX, &wide.strict()), Ok(u64::from(u32::MAX) * 64));
    }

    #[test]
    fn linear_base_alignment() {
        let mem = Mem::default();
        // LOG2SIZE 4: a 1 KiB table. Bit 9 of the base is kept by the C
        // device, cleared by the architecture.
        let t = StreamTable::from_regs(0x1_0200, cfg(StrtabFormat::Linear, 0, 4), &qemu());
        assert_eq!(t.locate(&mem, 1, &qemu()), Ok(0x1_0240));
        assert_eq!(t.locate(&mem, 1, &qemu().strict()), Ok(0x1_0040));
        // Bits 63:52 (C device) or 63:56 (architecture) are not address bits.
        let t = StreamTable::from_regs(0x4ff0_0000_0001_0000 | (1 << 62), cfg(StrtabFormat::Linear, 0, 4), &qemu());
        assert_eq!(t.locate(&mem, 0, &qemu()), Ok(0x0_0000_0001_0000));
        assert_eq!(t.locate(&mem, 0, &qemu().strict()), Err(StreamError::SteFetch { addr: 0xf0_0000_0001_0000 }));
    }

    /// Linux's layout: LOG2SIZE 16, SPLIT 8, a 2 KiB L1 table, 16 KiB
    /// level-2 tables of 256 STEs (Span 9) allocated per bus on demand.
    fn linux_two_level(mem: &Mem) -> StreamTable {
        mem.map(0x4000_0000, 0x400); // the first half of the L1 table
        mem.map(0x4010_0000, 0x4000);
        mem.put(0x4000_0000 + 8, &[l1std(9, 0x4010_0000)]);
        mem.put(0x4010_0000 + 8 * 64, &ste(0x108));
        StreamTable::from_regs(0x4000_0000, cfg(StrtabFormat::TwoLevel, 8, 16), &qemu())
    }

    #[test]
    fn linux_two_level_table() {
        let mem = Mem::default();
        let t = linux_two_level(&mem);
        for caps in [qemu(), qemu().strict()] {
            // Bus 1, device 1 function 0.
            assert_eq!(t.locate(&mem, 0x108, &caps), Ok(0x4010_0200));
            assert_eq!(t.fetch(&mem, 0x108, &caps), Ok(ste(0x108)));
            assert_eq!(t.fetch(&mem, 0x1ff, &caps), Ok([0; 8]));
            // Bus 0: Span 0, no level-2 table.
            assert_eq!(t.fetch(&mem, 0x8, &caps), Err(StreamError::BadStreamId(BadStreamId::InvalidL1)));
            // Bus 0x80: the L1STD is outside the mapped memory.
            assert_eq!(t.fetch(&mem, 0x8000, &caps), Err(StreamError::SteFetch { addr: 0x4000_0400 }));
        }
        assert_eq!(StreamError::SteFetch { addr: 0x4000_0400 }.event(), ConfigEvent::SteFetch {
            fetch_addr: 0x4000_0400
        });
    }

    #[test]
    fn ste_fetch_failure_reports_the_ste_address() {
        let mem = Mem::default();
        mem.map(0x1000, 0x100);
        mem.put(0x1000, &[l1std(7, 0x9000_0000)]);
        let t = StreamTable::from_regs(0x1000, cfg(StrtabFormat::TwoLevel, 6, 12), &qemu());
        assert_eq!(t.fetch(&mem, 5, &qemu()), Err(StreamError::SteFetch { addr: 0x9000_0140 }));
    }

    #[test]
    fn span_edges() {
        let mem = Mem::default();
        mem.map(0, 0x10_0000);
        // SPLIT 8; L1[0] has Span 3: 4 STEs architecturally, 8 for the C device.
        mem.put(0, &[l1std(3, 0x8000)]);
        let t = StreamTable::from_regs(0, cfg(StrtabFormat::TwoLevel, 8, 16), &qemu());
        let strict = qemu().strict();
        assert_eq!(t.locate(&mem, 3, &strict), Ok(0x8000 + 3 * 64));
        assert_eq!(t.locate(&mem, 4, &strict), Err(StreamError::BadStreamId(BadStreamId::BeyondSpan)));
        assert_eq!(t.locate(&mem, 7, &qemu()), Ok(0x8000 + 7 * 64));
        assert_eq!(t.locate(&mem, 8, &qemu()), Err(StreamError::BadSte));
        assert_eq!(StreamError::BadSte.event(), ConfigEvent::BadSte);
        // Span 1: a single STE.
        mem.put(8, &[l1std(1, 0x9000)]);
        assert_eq!(t.locate(&mem, 0x100, &strict), Ok(0x9000));
        assert_eq!(t.locate(&mem, 0x101, &strict), Err(StreamError::BadStreamId(BadStreamId::BeyondSpan)));
        assert_eq!(t.locate(&mem, 0x101, &qemu()), Ok(0x9040));
        // Span above SPLIT + 1, and a reserved Span.
        for span in [10u8, 12, 31] {
            mem.put(16, &[l1std(span, 0xc000)]);
            assert_eq!(t.locate(&mem, 0x205, &strict), Err(StreamError::BadStreamId(BadStreamId::InvalidL1)));
            assert_eq!(t.locate(&mem, 0x205, &qemu()), Ok(0xc000 + 5 * 64), "span {span}");
        }
    }

    #[test]
    fn l2_pointer_bits() {
        let mem = Mem::default();
        mem.map(0, 0x1000);
        // Bit 5 and bits 63:56 set, and the pointer misaligned for Span 9.
        let raw = l1std(9, 0x8040) | (1 << 5) | (0xab << 56);
        mem.put(0, &[raw]);
        let t = StreamTable::from_regs(0, cfg(StrtabFormat::TwoLevel, 8, 16), &qemu());
        assert_eq!(t.locate(&mem, 1, &qemu()), Ok(0xab00_0000_0000_8060 + 64));
        // Architecture: bits 55:6 aligned to the 16 KiB table.
        assert_eq!(t.locate(&mem, 1, &qemu().strict()), Ok(0x8000 + 64));
    }

    #[test]
    fn splits() {
        let mem = Mem::default();
        mem.map(0, 0x1_0000);
        // SPLIT 6: L1 index SID[15:6]; SPLIT 10: SID[15:10].
        mem.put(8 * 2, &[l1std(7, 0x4000)]);
        let t6 = StreamTable::from_regs(0, cfg(StrtabFormat::TwoLevel, 6, 16), &qemu());
        assert_eq!(t6.locate(&mem, 0x85, &qemu().strict()), Ok(0x4000 + 5 * 64));
        mem.put(8, &[l1std(11, 0x10_0000)]);
        let t10 = StreamTable::from_regs(0, cfg(StrtabFormat::TwoLevel, 10, 16), &qemu());
        assert_eq!(t10.locate(&mem, 0x7ff, &qemu().strict()), Ok(0x10_0000 + 0x3ff * 64));
        // SPLIT 7 is reserved: the architecture uses 6, the C device 7.
        let t7 = StreamTable::from_regs(0, cfg(StrtabFormat::TwoLevel, 7, 16), &qemu());
        assert_eq!(t7.locate(&mem, 0x85, &qemu().strict()), Ok(0x4000 + 5 * 64));
        mem.put(8, &[l1std(8, 0x2_0000)]);
        assert_eq!(t7.locate(&mem, 0x85, &qemu()), Ok(0x2_0000 + 5 * 64));
        // SPLIT 0 (C device): every StreamID has its own L1STD.
        let t0 = StreamTable::from_regs(0, cfg(StrtabFormat::TwoLevel, 0, 8), &qemu());
        mem.put(8 * 3, &[l1std(1, 0x3000)]);
        assert_eq!(t0.locate(&mem, 3, &qemu()), Ok(0x3000));
    }

    #[test]
    fn two_level_base_alignment() {
        let mem = Mem::default();
        mem.map(0, 0x10_0000);
        // LOG2SIZE 16, SPLIT 8: a 2 KiB L1 table; base 0x1c00 is aligned
        // to 1 KiB only.
        mem.put(0x1c00 + 8, &[l1std(9, 0x4000)]);
        mem.put(0x1800 + 8, &[l1std(9, 0x8000)]);
        let t = StreamTable::from_regs(0x1c00, cfg(StrtabFormat::TwoLevel, 8, 16), &qemu());
        assert_eq!(t.locate(&mem, 0x100, &qemu()), Ok(0x4000));
        assert_eq!(t.locate(&mem, 0x100, &qemu().strict()), Ok(0x8000));
    }

    #[test]
    fn random_tables_never_panic() {
        let mut rng = Rng(0x5eed_0002);
        let mem = Mem::default();
        mem.map(0, 0x2_0000);
        for a in (0..0x2_0000u64).step_by(8) {
            let v = rng.next();
            // Mostly small Spans and pointers into the mapped window.
            let v = if v & 3 == 0 { v } else { (v & 0x1_ffc0) | (v >> 59) };
            mem.put(a, &[v]);
        }
        let caps = caps_variants();
        for _ in 0..20_000 {
            let base = if rng.next() & 1 == 0 { rng.next() & 0x1_ffc0 } else { rng.next() };
            let t = StreamTable::from_regs(base, rng.next() as u32, &caps[rng.next() as usize % caps.len()]);
            let sid = if rng.next() & 1 == 0 { rng.next() as u32 & 0xffff } else { rng.next() as u32 };
            for c in &caps {
                let _ = t.fetch(&mem, sid, c);
            }
        }
    }
}
