//! Legacy-mode root table and context tables: the device-to-domain
//! mapping structures.
//!
//! Conventions: the root table is one 4 KiB page of 256 16-byte root
//! entries indexed by bus number; each present root entry points to a
//! 4 KiB context table of 256 16-byte context entries indexed by devfn.
//! Entries are kept raw (`lo`, `hi` quadwords) with accessor methods;
//! [`lookup_device_context`] performs the architected checks in the same
//! order as the C device and yields either a validated [`DeviceContext`]
//! or the fault reason (plus whether the context entry's FPD applies).

use crate::queues::fault::FaultReason;
use crate::mem::GuestMemory;

/// Size of a legacy root entry.
pub const ROOT_ENTRY_SIZE: u64 = 16;
/// Size of a legacy context entry.
pub const CONTEXT_ENTRY_SIZE: u64 = 16;

/// Root entry: present bit.
pub const ROOT_P: u64 = 1;
/// Context entry (lo): present bit.
pub const CTX_P: u64 = 1;
/// Context entry (lo): fault processing disable.
pub const CTX_FPD: u64 = 1 << 1;
/// Context entry (lo): translation type shift.
pub const CTX_TT_SHIFT: u32 = 2;
/// Context entry (hi): reserved bits (bit 7 and 63:24).
pub const CTX_HI_RSVD: u64 = 0xffff_ffff_ff00_0080;

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

    /// P: the context table pointer is valid.
    pub fn present(&self) -> bool {
        self.lo & ROOT_P != 0
    }

    /// CTP: context table address.
    pub fn context_table(&self) -> u64 {
        self.lo & !0xfff
    }

    /// Reserved bits that are set (bits 11:1, bits above the host address
    /// width, and the whole upper quadword).
    pub fn reserved_bits(&self, haw_mask: u64) -> (u64, u64) {
        (self.lo & (0xffe | !haw_mask), self.hi)
    }
}

/// The TT field of a legacy context entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TranslationType {
    /// 00b: untranslated requests use second-stage tables.
    SecondStage,
    /// 01b: as 00b, plus translation requests from a device-TLB.
    DeviceTlb,
    /// 10b: untranslated requests pass through unmodified.
    PassThrough,
    /// 11b: reserved.
    Reserved,
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

    /// P.
    pub fn present(&self) -> bool {
        self.lo & CTX_P != 0
    }

    /// FPD.
    pub fn fpd(&self) -> bool {
        self.lo & CTX_FPD != 0
    }

    /// TT.
    pub fn translation_type(&self) -> TranslationType {
        match (self.lo >> CTX_TT_SHIFT) & 3 {
            0 => TranslationType::SecondStage,
            1 => TranslationType::DeviceTlb,
            2 => TranslationType::PassThrough,
            _ => TranslationType::Reserved,
        }
    }

    /// SLPTPTR: second-stage page table root.
    pub fn slptptr(&self) -> u64 {
        self.lo & !0xfff
    }

    /// AW: adjusted guest address width encoding (0 = 30 bits, 1 = 39, ...).
    pub fn aw(&self) -> u8 {
        (self.hi & 7) as u8
    }

    /// DID: domain id.
    pub fn domain_id(&self) -> u16 {
        (self.hi >> 8) as u16
    }

    /// Reserved bits that are set: lo bits 11:4 and above the host address
    /// width, hi bit 7 and bits 63:24.
    pub fn reserved_bits(&self, haw_mask: u64) -> (u64, u64) {
        (self.lo & (0xff0 | !haw_mask), self.hi & CTX_HI_RSVD)
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
    let bus = (sid >> 8) as u8;
    let devfn = sid as u8;
    let re = RootEntry::read(mem, root_table, bus)
        .map_err(|_| fail(FaultReason::RootTableInvalid, false))?;
    if !re.present() {
        return Err(fail(FaultReason::RootEntryNotPresent, false));
    }
    if re.reserved_bits(checks.haw_mask) != (0, 0) {
        return Err(fail(FaultReason::RootEntryReserved, false));
    }
    let ce = ContextEntry::read(mem, re.context_table(), devfn)
        .map_err(|_| fail(FaultReason::ContextTableInvalid, false))?;
    let fpd = ce.fpd();
    if !ce.present() {
        return Err(fail(FaultReason::ContextEntryNotPresent, fpd));
    }
    if ce.reserved_bits(checks.haw_mask) != (0, 0) {
        return Err(fail(FaultReason::ContextEntryReserved, fpd));
    }
    let aw = ce.aw();
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
