//! Second-stage (legacy "second-level") page table walk, with the legacy
//! fault reasons.
//!
//! The format (entries, reserved bits, permissions) is
//! [`iommu_core::translation::x86`]'s second stage; this module maps its
//! failures to VT-d legacy fault reasons and re-exports what the rest of
//! the crate uses under the names it has always used.

use crate::queues::fault::FaultReason;
use crate::mem::GuestMemory;

/// [`walk`] with the failure reported as an [`SsError`].
pub use iommu_core::translation::x86::ss_walk as walk_detailed;
pub use iommu_core::translation::x86::{
    level_shift, level_size, reserved_mask, ss_bits, SsError, SsPte, WalkConfig, WalkOutput,
};
pub use iommu_core::translation::Perm;

/// The legacy-mode fault reason for a second-stage failure (read/write
/// faults depend on the request type).
pub fn legacy_reason(e: SsError, write: bool) -> FaultReason {
    match e {
        SsError::BadLevels | SsError::RootAccess => FaultReason::ContextEntryInvalid,
        SsError::BeyondAgaw => FaultReason::AddressBeyondMgaw,
        SsError::EntryAccess => FaultReason::PagingEntryInvalid,
        SsError::Reserved => FaultReason::PagingEntryReserved,
        SsError::NotPresent | SsError::Permission if write => FaultReason::Write,
        SsError::NotPresent | SsError::Permission => FaultReason::Read,
    }
}

/// Translate `iova` through the second-stage tables rooted at `root`
/// (`levels` deep, `agaw` bits of input address).
#[inline]
pub fn walk(
    mem: &dyn GuestMemory,
    cfg: &WalkConfig,
    root: u64,
    levels: u8,
    agaw: u8,
    iova: u64,
    write: bool,
) -> Result<WalkOutput, FaultReason> {
    walk_detailed(mem, cfg, root, levels, agaw, iova, write).map_err(|e| legacy_reason(e, write))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_reasons_follow_the_request_type() {
        assert_eq!(legacy_reason(SsError::NotPresent, true), FaultReason::Write);
        assert_eq!(legacy_reason(SsError::Permission, false), FaultReason::Read);
        assert_eq!(legacy_reason(SsError::RootAccess, false), FaultReason::ContextEntryInvalid);
        assert_eq!(legacy_reason(SsError::EntryAccess, false), FaultReason::PagingEntryInvalid);
        assert_eq!(legacy_reason(SsError::BeyondAgaw, true), FaultReason::AddressBeyondMgaw);
    }
}
