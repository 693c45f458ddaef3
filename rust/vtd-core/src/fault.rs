//! Primary fault logging: fault reasons, fault recording registers and the
//! fault event interrupt.
//!
//! Conventions: a translation failure is described by a [`Fault`] whose
//! [`FaultReason`] carries the architected legacy-mode reason code (VT-d
//! spec, "Fault Reason Encodings"). Recording follows the C device: the
//! records form a ring indexed by `next_frcd`; a fault from a source-id that
//! already has a pending record is collapsed (dropped); a fault that finds
//! the next record still pending sets FSTS.PFO; PPF is recomputed as the OR
//! of all F bits; a fault event (FECTL.IP, then an MSI unless FECTL.IM) is
//! raised only when no FSTS status field was already set.

use crate::effects::{Effects, Msi};
use crate::registers::{
    RegisterFile, EVT_IM, EVT_IP, FEADDR, FECTL, FEDATA, FEUADDR, FRCD_F, FRCD_REG_NR,
    FRCD_REG_OFFSET, FRCD_T, FSTS, FSTS_EVENT_FIELDS, FSTS_FRI_MASK, FSTS_FRI_SHIFT, FSTS_PFO,
    FSTS_PPF,
};

/// Legacy-mode DMA remapping fault reasons.
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
}

const ALL_REASONS: [FaultReason; 14] = [
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
        }
    }

    /// The reason with the given code, if it is a legacy DMA reason.
    pub fn from_code(code: u8) -> Option<FaultReason> {
        ALL_REASONS.iter().copied().find(|r| r.code() == code)
    }

    /// Whether the fault is "qualified": suppressed when the context entry
    /// used to process the request has FPD set. Same table as the C device.
    pub fn is_qualified(&self) -> bool {
        !matches!(
            self,
            FaultReason::RootEntryNotPresent
                | FaultReason::RootTableInvalid
                | FaultReason::ContextTableInvalid
                | FaultReason::RootEntryReserved
                | FaultReason::ContextEntryReserved
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
}

impl Fault {
    /// Build a fault description.
    pub fn new(reason: FaultReason, sid: u16, address: u64, write: bool) -> Fault {
        Fault { reason, sid, address, write }
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
}

impl FaultRecord {
    /// Decode the (low, high) quadwords of a record.
    pub fn from_raw(lo: u64, hi: u64) -> FaultRecord {
        FaultRecord {
            pending: hi & FRCD_F != 0,
            reason_code: (hi >> 32) as u8,
            sid: hi as u16,
            address: lo & !0xfff,
            write: hi & FRCD_T == 0,
        }
    }

    /// Encode a fault into the (low, high) quadwords, without the F bit.
    pub fn encode(fault: &Fault) -> (u64, u64) {
        let lo = fault.address & !0xfff;
        let mut hi = u64::from(fault.sid) | (u64::from(fault.reason.code()) << 32);
        if !fault.write {
            hi |= FRCD_T;
        }
        (lo, hi)
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
    regs.get64(frcd_hi_offset(index)) & FRCD_F != 0
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
        let hi = regs.get64(frcd_hi_offset(i));
        hi & FRCD_F != 0 && hi as u16 == fault.sid
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
    regs.set64(hi_off, hi | FRCD_F);
    if fsts & FSTS_PPF == 0 {
        regs.clear_set32(
            FSTS,
            FSTS_FRI_MASK,
            (u32::from(index) << FSTS_FRI_SHIFT) & FSTS_FRI_MASK,
        );
    }
    update_ppf(regs);
    *next_frcd = if index + 1 >= FRCD_REG_NR { 0 } else { index + 1 };
    fault_event(regs, fsts, fx);
    RecordOutcome::Recorded(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_roundtrip() {
        for r in ALL_REASONS {
            assert_eq!(FaultReason::from_code(r.code()), Some(r));
        }
        assert_eq!(FaultReason::from_code(0), None);
        assert_eq!(FaultReason::from_code(0xf), None);
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
    }
}
