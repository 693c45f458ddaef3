//! Legacy-mode root table and context tables: the device-to-domain
//! mapping structures.
//!
//! Conventions: the root table is one 4 KiB page of 256 16-byte root
//! entries indexed by bus number; each present root entry points to a
//! 4 KiB context table of 256 16-byte context entries indexed by devfn.
//! Entries are kept raw (`lo`, `hi` quadwords, as read from memory) and
//! read through their bilge layouts ([`RootLo`], [`ContextLo`],
//! [`ContextHi`]);
//! [`lookup_device_context`] performs the architected checks in the same
//! order as the C device and yields either a validated [`DeviceContext`]
//! or the fault reason (plus whether the context entry's FPD applies).

use iommu_core::layout::{address_field, field_address};
use bilge::prelude::*;

use crate::mem::GuestMemory;
use crate::queues::fault::FaultReason;

pub use layouts::{ContextHi, ContextLo, RootLo, TranslationType};

/// Size of a legacy root entry.
pub const ROOT_ENTRY_SIZE: u64 = 16;
/// Size of a legacy context entry.
pub const CONTEXT_ENTRY_SIZE: u64 = 16;

/// Architected bit layouts of the legacy root and context entries (VT-d
/// 3.4, 9.1 and 9.3), one 64-bit word each. A module of its own because
/// bilge's generated constructors carry no documentation.
#[allow(missing_docs)]
mod layouts {
    // Every field is #[inline]: bilge copies a field's attributes onto its
    // getter and setter, which QEMU's build (debug assertions on) would
    // otherwise leave out of line (+10% instructions on a page walk).
    use bilge::prelude::*;

    /// Root entry bits 63:0 (bits 127:64 are all reserved).
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct RootLo {
        /// Bit 0, P: the context table pointer is valid.
        #[inline]
        pub present: bool,
        /// Bits 11:1, reserved.
        #[inline]
        pub reserved: u11,
        /// Bits 63:12, CTP: the context table's address >> 12.
        #[inline]
        pub ctp: u52,
    }

    /// The TT field of a legacy context entry.
    #[bitsize(2)]
    #[derive(FromBits, Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum TranslationType {
        /// 00b: untranslated requests use second-stage tables.
        SecondStage = 0,
        /// 01b: as 00b, plus translation requests from a device-TLB.
        DeviceTlb = 1,
        /// 10b: untranslated requests pass through unmodified.
        PassThrough = 2,
        /// 11b: reserved.
        Reserved = 3,
    }

    /// Context entry bits 63:0.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct ContextLo {
        /// Bit 0, P.
        #[inline]
        pub present: bool,
        /// Bit 1, FPD: fault processing disable.
        #[inline]
        pub fpd: bool,
        /// Bits 3:2, TT.
        #[inline]
        pub tt: TranslationType,
        /// Bits 11:4, reserved.
        #[inline]
        pub reserved: u8,
        /// Bits 63:12, SLPTPTR: the second-stage root table >> 12.
        #[inline]
        pub slptptr: u52,
    }

    /// Context entry bits 127:64.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct ContextHi {
        /// Bits 66:64, AW: adjusted guest address width (0 = 30 bits, 1 = 39, ...).
        #[inline]
        pub aw: u3,
        /// Bits 70:67, ignored.
        #[inline]
        pub ignored: u4,
        /// Bit 71, reserved.
        #[inline]
        pub reserved: bool,
        /// Bits 87:72, DID: domain id.
        #[inline]
        pub did: u16,
        /// Bits 127:88, reserved.
        #[inline]
        pub reserved: u40,
    }
}

/// A legacy root entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RootEntry {
    /// Bits 63:0.
    pub lo: u64,
    /// Bits 127:64 (reserved in legacy mode).
    pub hi: u64,
}

impl RootEntry {
    /// Read the entry for `bus` from the root table at `root_table`.
    pub fn read(
        mem: &dyn GuestMemory,
        root_table: u64,
        bus: u8,
    ) -> Result<RootEntry, crate::mem::MemError> {
        let addr = root_table.wrapping_add(u64::from(bus) * ROOT_ENTRY_SIZE);
        let (lo, hi) = mem.read_u128_pair(addr)?;
        Ok(RootEntry { lo, hi })
    }

    /// An entry pointing at the context table `table` (4 KiB aligned).
    pub fn new(present: bool, table: u64) -> RootEntry {
        RootEntry { lo: RootLo::new(present, u52::new(address_field(table, 12))).into(), hi: 0 }
    }

    #[inline]
    fn lo(&self) -> RootLo {
        RootLo::from(self.lo)
    }

    /// P: the context table pointer is valid.
    #[inline]
    pub fn present(&self) -> bool {
        self.lo().present()
    }

    /// CTP: context table address.
    #[inline]
    pub fn context_table(&self) -> u64 {
        field_address(self.lo().ctp(), 12)
    }

    /// Whether a reserved bit is set: bits 11:1, the whole upper quadword,
    /// or a CTP bit above the host address width (`haw_mask`).
    #[inline]
    pub fn has_reserved_bits(&self, haw_mask: u64) -> bool {
        self.lo().reserved_i().value() != 0 || self.context_table() & !haw_mask != 0 || self.hi != 0
    }
}

/// A legacy context entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ContextEntry {
    /// Bits 63:0.
    pub lo: u64,
    /// Bits 127:64.
    pub hi: u64,
}

impl ContextEntry {
    /// Read the entry for `devfn` from the context table at `table`.
    pub fn read(
        mem: &dyn GuestMemory,
        table: u64,
        devfn: u8,
    ) -> Result<ContextEntry, crate::mem::MemError> {
        let addr = table.wrapping_add(u64::from(devfn) * CONTEXT_ENTRY_SIZE);
        let (lo, hi) = mem.read_u128_pair(addr)?;
        Ok(ContextEntry { lo, hi })
    }

    /// An entry from its two words.
    pub fn from_words(lo: ContextLo, hi: ContextHi) -> ContextEntry {
        ContextEntry { lo: lo.into(), hi: hi.into() }
    }

    /// Bits 63:0.
    #[inline]
    pub fn lo(&self) -> ContextLo {
        ContextLo::from(self.lo)
    }

    /// Bits 127:64.
    #[inline]
    pub fn hi(&self) -> ContextHi {
        ContextHi::from(self.hi)
    }

    /// P.
    #[inline]
    pub fn present(&self) -> bool {
        self.lo().present()
    }

    /// FPD.
    #[inline]
    pub fn fpd(&self) -> bool {
        self.lo().fpd()
    }

    /// TT.
    #[inline]
    pub fn translation_type(&self) -> TranslationType {
        self.lo().tt()
    }

    /// SLPTPTR: second-stage page table root.
    #[inline]
    pub fn slptptr(&self) -> u64 {
        field_address(self.lo().slptptr(), 12)
    }

    /// AW: adjusted guest address width encoding (0 = 30 bits, 1 = 39, ...).
    #[inline]
    pub fn aw(&self) -> u8 {
        self.hi().aw().value()
    }

    /// DID: domain id.
    #[inline]
    pub fn domain_id(&self) -> u16 {
        self.hi().did()
    }

    /// Whether a reserved bit is set: lo bits 11:4, an SLPTPTR bit above the
    /// host address width (`haw_mask`), hi bit 71 or bits 127:88.
    pub fn has_reserved_bits(&self, haw_mask: u64) -> bool {
        let (lo, hi) = (self.lo(), self.hi());
        lo.reserved_i() != 0
            || self.slptptr() & !haw_mask != 0
            || hi.reserved_i()
            || hi.reserved_ii().value() != 0
    }
}

/// What a validated context entry tells the hardware to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContextMode {
    /// Pass-through (TT = 10b).
    PassThrough,
    /// Second-stage translation.
    SecondStage {
        /// Page table root.
        slptptr: u64,
        /// Number of paging levels (3 or 4).
        levels: u8,
        /// Adjusted guest address width in bits (39 or 48).
        agaw: u8,
    },
}

/// A present, validated context entry as cached by the context cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceContext {
    /// The raw entry.
    pub entry: ContextEntry,
    /// Domain id.
    pub domain_id: u16,
    /// Fault processing disable.
    pub fpd: bool,
    /// Translation mode.
    pub mode: ContextMode,
}

/// Hardware capabilities that context-entry validation depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextChecks {
    /// Host address width mask.
    pub haw_mask: u64,
    /// CAP.SAGAW (5-bit field, bit n = AW encoding n supported).
    pub sagaw: u8,
    /// ECAP.PT.
    pub pass_through: bool,
    /// ECAP.DT.
    pub device_tlb: bool,
}

/// A failed device-to-context mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextFault {
    /// Architected reason.
    pub reason: FaultReason,
    /// FPD of the context entry involved (false if none was read).
    pub fpd: bool,
}

fn fail(reason: FaultReason, fpd: bool) -> ContextFault {
    ContextFault { reason, fpd }
}

/// Map requester `sid` to its validated context entry through the root
/// table at `root_table`.
pub fn lookup_device_context(
    mem: &dyn GuestMemory,
    root_table: u64,
    sid: u16,
    checks: &ContextChecks,
) -> Result<DeviceContext, ContextFault> {
    // The PCI requester id: bus in bits 15:8 (the root table index), devfn
    // in bits 7:0 (the context table index).
    let [devfn, bus] = sid.to_le_bytes();
    let re = RootEntry::read(mem, root_table, bus)
        .map_err(|_| fail(FaultReason::RootTableInvalid, false))?;
    if !re.present() {
        return Err(fail(FaultReason::RootEntryNotPresent, false));
    }
    if re.has_reserved_bits(checks.haw_mask) {
        return Err(fail(FaultReason::RootEntryReserved, false));
    }
    let ce = ContextEntry::read(mem, re.context_table(), devfn)
        .map_err(|_| fail(FaultReason::ContextTableInvalid, false))?;
    let fpd = ce.fpd();
    if !ce.present() {
        return Err(fail(FaultReason::ContextEntryNotPresent, fpd));
    }
    if ce.has_reserved_bits(checks.haw_mask) {
        return Err(fail(FaultReason::ContextEntryReserved, fpd));
    }
    let aw = ce.aw();
    // SAGAW has one bit per AW value (bit n: AW = n supported).
    if aw > 4 || checks.sagaw & (1 << aw) == 0 {
        return Err(fail(FaultReason::ContextEntryInvalid, fpd));
    }
    let levels = aw + 2;
    let agaw = 30 + 9 * aw;
    let second_stage = ContextMode::SecondStage { slptptr: ce.slptptr(), levels, agaw };
    let mode = match ce.translation_type() {
        TranslationType::SecondStage => second_stage,
        TranslationType::DeviceTlb if checks.device_tlb => second_stage,
        TranslationType::PassThrough if checks.pass_through => ContextMode::PassThrough,
        _ => return Err(fail(FaultReason::ContextEntryInvalid, fpd)),
    };
    Ok(DeviceContext { entry: ce, domain_id: ce.domain_id(), fpd, mode })
}
