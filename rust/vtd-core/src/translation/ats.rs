//! PCIe ATS translation requests (device-TLB support, ECAP.DT).
//!
//! Conventions: an [`AtsRequest`] is a translation request a device sends
//! to fill its device-TLB; [`Vtd::translate_ats`] answers it like the
//! hardware answers the request (VT-d spec, chapter 4, "Support for
//! Device-TLBs"), reusing the untranslated-request paths (context and PASID
//! caches, IOTLB, walks, accessed/dirty updates) so nothing is walked
//! twice and the IOTLB caches only what an ordinary DMA would have cached.
//!
//! Outcomes:
//!
//! | condition | result | fault recorded |
//! |-----------|--------|----------------|
//! | ECAP.DT = 0 (`Config::device_tlb` off) | Unsupported Request | no |
//! | translation disabled (GSTS.TES = 0) | success: identity 4 KiB, R = 1, W = !NW (as the C device) | no |
//! | request with PASID, legacy root table | Unsupported Request | 31h |
//! | root/context/PASID-structure error (not present, reserved, invalid, SRE clear) | Unsupported Request | its reason (FPD applies) |
//! | device-TLB not enabled: legacy TT != 01b / scalable DTE = 0 | Unsupported Request | Dh / 44h (FPD applies) |
//! | input in 0xFEEx_xxxx, request without PASID | success: identity 4 KiB, R = 0, W = 1, U = 1 (interrupts are untranslated writes) | no |
//! | pass-through (PGTT 100b) | success: identity 4 KiB, R = 1, W = !NW | no |
//! | page not present, not permitted (R/W, U/S), beyond the address width, non-canonical | success with R = W = 0 | no |
//! | paging-entry access error, reserved bit, A/D update failure | Completer Abort | its reason (FPD applies) |
//! | output in the interrupt range | Completer Abort | Eh / 87h (FPD applies) |
//!
//! A successful completion describes the whole page (`iova` and `phys`
//! aligned to `page_mask + 1`). Write permission is asked for, and W
//! reported, only when the request does not have `no_write`; when the page
//! is writable the first-stage D flag is set as for a DMA write, so the
//! device may write without asking again (with `no_write` only A is set).
//! Execute permission is never granted (no execute-requests support) and
//! the Global flag is never set. Faults are recorded with FRCD.AT = 01b.

use crate::config::EcapReg;
use crate::effects::Effects;
use crate::queues::fault::{self, Fault, FaultReason};
use crate::mem::GuestMemory;
use crate::translation::page_walk::Perm;
use crate::translation::root_context::{ContextFault, TranslationType};
use crate::translation::{Request, Translation};
use crate::vtd::{SmRequest, Vtd, INTERRUPT_ADDR_FIRST, INTERRUPT_ADDR_LAST};

/// A PCIe ATS translation request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AtsRequest {
    /// Requester id (bus << 8 | devfn).
    pub sid: u16,
    /// PASID of a request with PASID TLP prefix; `None` without.
    pub pasid: Option<u32>,
    /// Privileged-mode requested (only meaningful with a PASID).
    pub privileged: bool,
    /// Execute requested.
    pub exec: bool,
    /// Input address.
    pub iova: u64,
    /// NW: the device does not need write permission.
    pub no_write: bool,
}

/// A successful translation completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AtsTranslation {
    /// Input address of the page.
    pub iova: u64,
    /// Translated address of the page (0 when R = W = 0).
    pub phys: u64,
    /// Page size minus one.
    pub page_mask: u64,
    /// R and W.
    pub perm: Perm,
    /// X: execute permitted (never set).
    pub exec: bool,
    /// Priv: the permissions are for privileged-mode accesses (the
    /// request's privilege with a PASID).
    pub privileged: bool,
    /// U: the device must use untranslated requests for this range.
    pub untranslated_only: bool,
    /// Global mapping (never set).
    pub global: bool,
}

/// The answer to an ATS translation request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AtsResult {
    /// Translation completion (possibly with R = W = 0).
    Success(AtsTranslation),
    /// Completion with Unsupported Request status. `fault` is the condition
    /// found (recorded unless suppressed by FPD); `None` when the hardware
    /// has no device-TLB support.
    UnsupportedRequest {
        /// The fault condition.
        fault: Option<Fault>,
    },
    /// Completion with Completer Abort status.
    CompleterAbort {
        /// The fault condition (recorded unless suppressed by FPD).
        fault: Fault,
    },
}

/// Walk results that a translation request reports as R = W = 0 without a
/// fault record.
fn is_no_access(reason: FaultReason) -> bool {
    matches!(
        reason,
        FaultReason::AddressBeyondMgaw
            | FaultReason::Write
            | FaultReason::Read
            | FaultReason::SsEntryNotPresent
            | FaultReason::FsEntryNotPresent
            | FaultReason::NonCanonical
            | FaultReason::FsPrivilege
            | FaultReason::SmExecute
            | FaultReason::SmAddressBeyondAgaw
            | FaultReason::SmNestedOutputBeyondAgaw
            | FaultReason::SmWrite
            | FaultReason::SmRead
    )
}

/// Conditions found while resolving the context / PASID structures.
fn is_context_level(reason: FaultReason) -> bool {
    let c = reason.code();
    (0x1..=0x3).contains(&c) && reason != FaultReason::ContextEntryInvalid
        || (0x8..=0xb).contains(&c)
        || c == 0xd
        || (0x30..=0x5d).contains(&c)
}

/// A write attempt that failed for lack of write permission only.
fn write_denied(reason: FaultReason) -> bool {
    matches!(
        reason,
        FaultReason::Write | FaultReason::SmWrite | FaultReason::FsEntrySsWriteDenied
    )
}

fn identity(iova: u64, perm: Perm, untranslated_only: bool) -> AtsTranslation {
    AtsTranslation {
        iova: iova & !0xfff,
        phys: iova & !0xfff,
        page_mask: 0xfff,
        perm,
        exec: false,
        privileged: false,
        untranslated_only,
        global: false,
    }
}

impl Vtd {
    /// Answer a PCIe ATS translation request (see the module
    /// documentation for the outcomes). The effects may hold a fault event
    /// interrupt.
    pub fn translate_ats(
        &mut self,
        req: &AtsRequest,
        mem: &dyn GuestMemory,
    ) -> (AtsResult, Effects) {
        let mut fx = Effects::default();
        let r = self.translate_ats_inner(req, mem, &mut fx);
        (r, fx)
    }

    /// The answer [`Vtd::translate_ats`] gives `req` when the caches alone
    /// give it a translation (context and PASID caches allow device-TLBs,
    /// the IOTLB holds the page with the permission asked for): nothing is
    /// recorded, there are no effects.  `None` when the full path must run.
    pub fn translate_ats_cached(&self, req: &AtsRequest) -> Option<AtsTranslation> {
        if !EcapReg::from(self.ecap()).dt() || !self.translation_enabled() {
            return None;
        }
        let in_interrupt_range = req.pasid.is_none()
            && (INTERRUPT_ADDR_FIRST..=INTERRUPT_ADDR_LAST).contains(&req.iova);
        let write = !req.no_write;
        // A recent translation answers if it was recorded as allowed to
        // use a device-TLB (untranslated requests do not look that up).
        let recent = if req.pasid.is_none() && !in_interrupt_range {
            self.recent_translation(req.sid, req.iova, write).filter(|&(_, device_tlb)| device_tlb)
        } else {
            None
        };
        let t = if let Some((t, _)) = recent {
            t
        } else if self.root_table_scalable() {
            let sreq = SmRequest {
                sid: req.sid,
                iova: req.iova,
                write,
                pasid: req.pasid.map(|p| (p, req.privileged)),
            };
            let (pc, t) = self.sm_hit(&sreq)?;
            if !pc.context.dte() || in_interrupt_range {
                return None;
            }
            t
        } else {
            if req.pasid.is_some() || in_interrupt_range {
                return None;
            }
            let (ctx, t) = self.legacy_hit(&Request { sid: req.sid, iova: req.iova, write })?;
            if ctx.entry.translation_type() != TranslationType::DeviceTlb {
                return None;
            }
            t
        };
        if req.pasid.is_none() && recent.is_none() {
            // what an untranslated request of the same access gets too
            self.remember_translation(req.sid, req.iova, t, true);
        }
        Some(AtsTranslation {
            iova: t.iova,
            phys: t.phys,
            page_mask: t.page_mask,
            perm: Perm { read: t.perm.read, write: t.perm.write && write },
            exec: false,
            privileged: req.pasid.is_some() && req.privileged,
            untranslated_only: false,
            global: false,
        })
    }

    fn ats_fault(&mut self, req: &AtsRequest, cf: ContextFault, fx: &mut Effects) -> Fault {
        let mut f = match req.pasid {
            Some(p) => {
                Fault::with_pasid(cf.reason, req.sid, req.iova, !req.no_write, p, req.privileged)
            }
            None => Fault::new(cf.reason, req.sid, req.iova, !req.no_write),
        };
        f.translation_request = true;
        if !(cf.fpd && cf.reason.is_qualified()) {
            self.record(&f, fx);
        }
        f
    }

    fn translate_ats_inner(
        &mut self,
        req: &AtsRequest,
        mem: &dyn GuestMemory,
        fx: &mut Effects,
    ) -> AtsResult {
        if !EcapReg::from(self.ecap()).dt() {
            return AtsResult::UnsupportedRequest { fault: None };
        }
        let rw = Perm { read: true, write: !req.no_write };
        if !self.translation_enabled() {
            return AtsResult::Success(identity(req.iova, rw, false));
        }
        let ur = |v: &mut Vtd, cf: ContextFault, fx: &mut Effects| AtsResult::UnsupportedRequest {
            fault: Some(v.ats_fault(req, cf, fx)),
        };
        let scalable = self.root_table_scalable();
        // Resolve the context (through the caches, as a DMA would) and
        // check that it enables device-TLBs.
        if scalable {
            let pasid = req.pasid.map(|p| (p, req.privileged));
            match self.resolve_cached(req.sid, pasid, mem) {
                Err(cf) => return ur(self, cf, fx),
                Ok(pc) if !pc.context.dte() => {
                    let cf = ContextFault { reason: FaultReason::SmContextDteClear, fpd: pc.fpd };
                    return ur(self, cf, fx);
                }
                Ok(_) => {}
            }
        } else {
            if req.pasid.is_some() {
                let cf = ContextFault { reason: FaultReason::SmTtmLegacyWithPasid, fpd: false };
                return ur(self, cf, fx);
            }
            match self.legacy_context(req.sid, mem) {
                Err(cf) => return ur(self, cf, fx),
                Ok(c) if c.entry.translation_type() != TranslationType::DeviceTlb => {
                    let cf =
                        ContextFault { reason: FaultReason::ContextEntryTranslationType, fpd: c.fpd };
                    return ur(self, cf, fx);
                }
                Ok(_) => {}
            }
        }
        if req.pasid.is_none() && (INTERRUPT_ADDR_FIRST..=INTERRUPT_ADDR_LAST).contains(&req.iova) {
            return AtsResult::Success(identity(req.iova, Perm { read: false, write: true }, true));
        }
        let attempt = |v: &mut Vtd, write: bool| -> Result<Translation, ContextFault> {
            if scalable {
                let sreq = SmRequest {
                    sid: req.sid,
                    iova: req.iova,
                    write,
                    pasid: req.pasid.map(|p| (p, req.privileged)),
                };
                v.translate_sm_raw(&sreq, mem, true)
            } else {
                v.translate_legacy_raw(&Request { sid: req.sid, iova: req.iova, write }, mem, true)
            }
        };
        let mut result = attempt(self, !req.no_write);
        if let Err(cf) = result {
            if !req.no_write && write_denied(cf.reason) {
                result = attempt(self, false);
            }
        }
        let privileged = req.pasid.is_some() && req.privileged;
        match result {
            Ok(t) => AtsResult::Success(AtsTranslation {
                iova: t.iova,
                phys: t.phys,
                page_mask: t.page_mask,
                perm: Perm { read: t.perm.read, write: t.perm.write && !req.no_write },
                exec: false,
                privileged,
                untranslated_only: false,
                global: false,
            }),
            Err(cf) if is_no_access(cf.reason) => AtsResult::Success(AtsTranslation {
                iova: req.iova & !0xfff,
                phys: 0,
                page_mask: 0xfff,
                perm: Perm::default(),
                exec: false,
                privileged,
                untranslated_only: false,
                global: false,
            }),
            Err(cf) if is_context_level(cf.reason) => ur(self, cf, fx),
            Err(cf) => AtsResult::CompleterAbort { fault: self.ats_fault(req, cf, fx) },
        }
    }
}

impl Vtd {
    fn record(&mut self, f: &Fault, fx: &mut Effects) {
        let (regs, next) = self.fault_state();
        fault::record_fault(regs, next, f, fx);
    }
}
