//! First-stage page walk (x86-64 paging format, 4 or 5 levels) and the
//! nested walk that runs every first-stage address through the second
//! stage, with VT-d's scalable-mode fault reasons.
//!
//! The format (entries, reserved bits, privilege, accessed/dirty updates
//! and their limits) is [`iommu_core::translation::x86`]'s first stage;
//! this module maps its failures to the VT-d fault reasons:
//! non-canonical input (SGN.?), entry access/present/reserved (SFS.1..3),
//! privilege (SGN.2), write (SMW), accessed/dirty update failures (SFS.10,
//! 91h) and, for nested walks, the second stage's failures on a table
//! address (FsRootSsReadDenied, FsEntrySsReadDenied, ...) or on the output
//! (SSxx, SMxx).
//!
//! Translation output: [`FsOutput::perm`] is the permission of the page;
//! [`FsOutput::dirty`] tells whether the leaf's D flag is set after the
//! walk. Callers that cache the translation must not let a cached
//! read-only-dirty-clear entry satisfy a later write (it must walk again
//! so that D gets set).

use crate::queues::fault::FaultReason;
use crate::mem::GuestMemory;
use crate::translation::page_walk::{SsError, WalkConfig};
use iommu_core::translation::x86::{self, FsError};

pub use iommu_core::translation::x86::{
    fs_bits, fs_reserved_mask, is_canonical, FsAccess, FsControls, FsLargePte, FsOutput, FsPte,
    FsTable, FsWalkConfig, SsTable,
};

/// The VT-d fault reason of a first-stage or nested walk failure.
pub fn fs_fault(e: FsError, write: bool) -> FaultReason {
    match e {
        FsError::BadLevels => FaultReason::PasidEntryInvalid,
        FsError::NonCanonical => FaultReason::NonCanonical,
        FsError::RootAccess => FaultReason::FsRootAccess,
        FsError::EntryAccess => FaultReason::FsEntryAccess,
        FsError::NotPresent => FaultReason::FsEntryNotPresent,
        FsError::Reserved => FaultReason::FsEntryReserved,
        FsError::Privilege => FaultReason::FsPrivilege,
        FsError::Write => FaultReason::SmWrite,
        FsError::UpdateBlocked => FaultReason::FsEntrySsWriteDenied,
        FsError::UpdateFailed => FaultReason::FsAdUpdateFailed,
        FsError::Stage2Table { error, root } => ss_table_fault(error, root),
        FsError::Stage2Output(error) => ss_output_fault(error, write, true),
    }
}

/// Translate `iova` through first-stage tables whose addresses are host
/// (output) addresses, updating accessed/dirty flags on success.
pub fn fs_walk(
    mem: &dyn GuestMemory,
    cfg: &FsWalkConfig,
    table: &FsTable,
    ctl: &FsControls,
    iova: u64,
    access: FsAccess,
) -> Result<FsOutput, FaultReason> {
    x86::fs_walk(mem, cfg, table, ctl, iova, access).map_err(|e| fs_fault(e, access.write))
}

/// Scalable-mode fault for a second-stage failure on the final output
/// address of a request (second-stage-only or nested translation).
pub fn ss_output_fault(e: SsError, write: bool, nested: bool) -> FaultReason {
    match e {
        SsError::BadLevels => FaultReason::SsRootInvalid,
        SsError::BeyondAgaw if nested => FaultReason::SmNestedOutputBeyondAgaw,
        SsError::BeyondAgaw => FaultReason::SmAddressBeyondAgaw,
        SsError::RootAccess | SsError::EntryAccess => FaultReason::SsEntryAccess,
        SsError::NotPresent => FaultReason::SsEntryNotPresent,
        SsError::Reserved => FaultReason::SsEntryReserved,
        SsError::Permission if write => FaultReason::SmWrite,
        SsError::Permission => FaultReason::SmRead,
    }
}

/// Scalable-mode fault for a second-stage failure while translating the
/// address of a first-stage table entry (`root`: the first-stage root).
fn ss_table_fault(e: SsError, root: bool) -> FaultReason {
    match e {
        SsError::BadLevels => FaultReason::SsRootInvalid,
        SsError::BeyondAgaw => FaultReason::FsTableBeyondSsAgaw,
        SsError::RootAccess | SsError::EntryAccess => FaultReason::SsEntryAccess,
        SsError::NotPresent => FaultReason::SsEntryNotPresent,
        SsError::Reserved => FaultReason::SsEntryReserved,
        SsError::Permission if root => FaultReason::FsRootSsReadDenied,
        SsError::Permission => FaultReason::FsEntrySsReadDenied,
    }
}

/// Nested translation: the first-stage tables at `fs` hold guest physical
/// addresses; every table entry address and the final output address are
/// translated by the second-stage tables at `ss`. A failure reports the
/// fault of the stage that failed. Accessed/dirty updates of first-stage
/// entries happen only once the whole translation succeeded, and need
/// second-stage write permission on the page holding the entry (SFS.8).
#[allow(clippy::too_many_arguments)]
pub fn nested_walk(
    mem: &dyn GuestMemory,
    fs_cfg: &FsWalkConfig,
    ss_cfg: &WalkConfig,
    fs: &FsTable,
    ss: &SsTable,
    ctl: &FsControls,
    iova: u64,
    access: FsAccess,
) -> Result<FsOutput, FaultReason> {
    x86::nested_walk(mem, fs_cfg, ss_cfg, fs, ss, ctl, iova, access).map_err(|e| fs_fault(e, access.write))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fs_faults_name_the_failing_stage() {
        let t = |error, root| FsError::Stage2Table { error, root };
        assert_eq!(fs_fault(t(SsError::Permission, true), false), FaultReason::FsRootSsReadDenied);
        assert_eq!(fs_fault(FsError::Stage2Output(SsError::BeyondAgaw), false), FaultReason::SmNestedOutputBeyondAgaw);
        assert_eq!(fs_fault(FsError::UpdateBlocked, true), FaultReason::FsEntrySsWriteDenied);
        assert_eq!(fs_fault(FsError::BadLevels, true), FaultReason::PasidEntryInvalid);
    }

    #[test]
    fn ss_fault_mapping_distinguishes_stage_and_position() {
        assert_eq!(ss_output_fault(SsError::BeyondAgaw, false, false), FaultReason::SmAddressBeyondAgaw);
        assert_eq!(ss_output_fault(SsError::BeyondAgaw, false, true), FaultReason::SmNestedOutputBeyondAgaw);
        assert_eq!(ss_output_fault(SsError::Permission, true, false), FaultReason::SmWrite);
        assert_eq!(ss_output_fault(SsError::Permission, false, false), FaultReason::SmRead);
        assert_eq!(ss_output_fault(SsError::NotPresent, true, false), FaultReason::SsEntryNotPresent);
        assert_eq!(ss_table_fault(SsError::Permission, true), FaultReason::FsRootSsReadDenied);
        assert_eq!(ss_table_fault(SsError::Permission, false), FaultReason::FsEntrySsReadDenied);
        assert_eq!(ss_table_fault(SsError::BeyondAgaw, false), FaultReason::FsTableBeyondSsAgaw);
        assert_eq!(ss_table_fault(SsError::RootAccess, true), FaultReason::SsEntryAccess);
    }
}
