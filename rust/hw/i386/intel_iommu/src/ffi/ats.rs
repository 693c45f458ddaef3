// SPDX-License-Identifier: GPL-2.0-or-later

//! PCI ATS: translation requests from devices and device-TLB invalidation notifiers.

use iommu_glue::ats::{AtsOwner, AtsPage, AtsPageRequest};

use crate::{bindings, device::IntelIommuState};
// The other interfaces' items (some modules use none).
#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------
// ATS: translation requests and device-TLB invalidation notifiers (the
// notifier list and the request loop are iommu-glue's).

pub use iommu_glue::ats::AtsNotifiers;

pub(crate) fn sid_of(bus: *mut bindings::PCIBus, devfn: u8) -> u16 {
    // SAFETY: bus is a live PCI bus.
    unsafe { iommu_glue::ats::requester_id(bus.cast(), devfn) }
}

/// Fire the device-TLB notifiers a device-TLB invalidation targets.
pub(crate) fn notify_device_tlb(list: &AtsNotifiers, event: &vtd_core::InvalidationEvent) {
    if matches!(event, vtd_core::InvalidationEvent::DeviceTlb(_)) {
        list.notify(|sid, pasid| event.device_tlb_range(sid, pasid));
    }
}

iommu_glue::ats_callbacks!(IntelIommuState);

impl AtsOwner for IntelIommuState {
    fn ats_notifiers(&self) -> &AtsNotifiers {
        IntelIommuState::ats_notifiers(self)
    }

    fn iotlb_info(&self) -> (u8, u32) {
        (self.aw_bits(), 4096)
    }

    /// The core's answer (Unsupported Request also when the IOMMU has no
    /// device-TLB support).
    #[inline]
    fn ats_page(&self, req: &AtsPageRequest) -> AtsPage {
        let core_req = vtd_core::AtsRequest {
            sid: req.rid,
            pasid: req.pasid,
            privileged: req.privileged,
            exec: req.exec,
            iova: req.iova,
            no_write: req.no_write,
        };
        match self.translate_ats(&core_req) {
            Some(vtd_core::AtsResult::Success(t)) => AtsPage::Success {
                iova: t.iova,
                phys: t.phys,
                mask: t.page_mask,
                read: t.perm.read,
                write: t.perm.write,
            },
            Some(vtd_core::AtsResult::UnsupportedRequest { .. }) | None => AtsPage::UnsupportedRequest,
            Some(vtd_core::AtsResult::CompleterAbort { .. }) => AtsPage::CompleterAbort,
        }
    }
}
