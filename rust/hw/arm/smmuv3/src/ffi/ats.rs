// SPDX-License-Identifier: GPL-2.0-or-later

//! PCIe ATS through `PCIIOMMUOps`: Translation Requests from devices
//! (with a PASID: a SubstreamID) and their ATC (device-IOTLB) notifiers,
//! which CMD_ATC_INV reaches. The notifier list and the page loop are
//! `iommu_glue::ats`'s, shared with `intel-iommu`.

use iommu_glue::ats::{AtsOwner, AtsPage, AtsPageRequest};
use smmu_core::ats::{AtsRequest, AtsResponse, STU_SHIFT};

use crate::device::SmmuV3State;

iommu_glue::ats_callbacks!(SmmuV3State);

impl AtsOwner for SmmuV3State {
    fn ats_notifiers(&self) -> &iommu_glue::ats::AtsNotifiers {
        SmmuV3State::ats_notifiers(self)
    }

    fn iotlb_info(&self) -> (u8, u32) {
        (self.input_bits(), 1 << STU_SHIFT)
    }

    /// StreamID = requester id, SubstreamID = PASID.
    #[inline]
    fn ats_page(&self, req: &AtsPageRequest) -> AtsPage {
        let stus = (req.length as u64).div_ceil(1 << STU_SHIFT).clamp(1, u64::from(u16::MAX));
        let core_req = AtsRequest {
            sid: u32::from(req.rid),
            ssid: req.pasid,
            addr: req.iova,
            privileged: req.privileged,
            exec: req.exec,
            no_write: req.no_write,
            span: stus as u16,
        };
        match self.translate_ats(&core_req) {
            AtsResponse::Success(t) => AtsPage::Success {
                iova: t.input,
                phys: t.output,
                mask: (1u64 << t.size_shift.min(63)) - 1,
                read: t.perm.read,
                write: t.perm.write,
            },
            AtsResponse::UnsupportedRequest => AtsPage::UnsupportedRequest,
            AtsResponse::CompleterAbort => AtsPage::CompleterAbort,
        }
    }
}
