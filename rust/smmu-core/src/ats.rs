//! PCIe ATS (SMMUv3 3.9.1): Translation Requests from endpoints and the
//! ATC invalidations the command queue sends them.
//!
//! A Translation Request is answered per page (the glue asks page by page
//! for a longer request) with one of the responses of 3.9.1.2:
//!
//! * **Unsupported Request** when ATS is disabled for the stream:
//!   SMMU_CR0.SMMUEN = 0, STE.Config = 0b000 (abort; nothing recorded), a
//!   bypass STE, or an effective STE.EATS of 0b00. All but the abort STE
//!   record F_BAD_ATS_TREQ. Split-stage ATS (EATS = 0b10) is not
//!   implemented (IDR0.NS1ATS = 1): such an STE is ILLEGAL when ATS is
//!   advertised, so the request meets C_BAD_STE below.
//! * **Completer Abort** on a configuration error (C_BAD_STREAMID,
//!   F_STE_FETCH, C_BAD_STE, C_BAD_SUBSTREAMID, F_STREAM_DISABLED,
//!   F_CD_FETCH, C_BAD_CD, F_WALK_EABT): the event is recorded only when
//!   SMMU_CR2.REC_CFG_ATS is set (and, for C_BAD_STREAMID, RECINVSID).
//! * **Success** otherwise. Translation, Address Size and Access faults of
//!   either stage (including stage-2 faults of a CD fetch or of a stage-1
//!   table walk) give a success that grants nothing (R = W = 0) for one
//!   STU (4 KiB); no event is recorded. Permissions are granted where
//!   requested (write only without NW) and the tables allow them: a
//!   request for read and write on a read-only page gets read. A stage-1
//!   configuration whose S1DSS skips stage 1 answers the identity with
//!   R = W = 1.
//!
//! Translations come from the TLB or fill it, as for ordinary
//! transactions, and use the same privilege rule (the C device's: checks
//! as for a privileged access unless `strict`). The Execute permission is
//! not reported (QEMU's IOMMU TLB entries have none) and the Global bit is
//! always clear.
//!
//! Translated transactions never reach the SMMU in QEMU (a device's
//! translated accesses go to system memory directly), so SMMU_CR0.ATSCHK
//! and F_TRANSL_FORBIDDEN have nothing to act on.

use iommu_core::memory::GuestMemory;
use iommu_core::translation::vmsa::{Access, Fault, VmsaError};
use iommu_core::translation::Perm;

use crate::event::Event;
use crate::smmu::{config_event, walk_event, AtcInvalidation, Effects, Request, Smmu, Translation};
use crate::ste::{Eats, StreamConfig};
use crate::stream::ConfigEvent;

/// The Smallest Translation Unit: the smallest granule advertised (IDR5
/// always has 4 KiB).
pub const STU_SHIFT: u32 = 12;

/// A PCIe ATS Translation Request for one page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AtsRequest {
    /// StreamID.
    pub sid: u32,
    /// The PASID prefix's SubstreamID, if any.
    pub ssid: Option<u32>,
    /// The address whose page is asked for.
    pub addr: u64,
    /// The PASID prefix's Privileged Mode Requested.
    pub privileged: bool,
    /// The PASID prefix's Execute Requested.
    pub exec: bool,
    /// No Write: only read permission is asked for.
    pub no_write: bool,
    /// STUs the whole request covers (for F_BAD_ATS_TREQ).
    pub span: u16,
}

/// The SMMU's completion of a Translation Request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AtsResponse {
    /// Success: the translation (its `perm` may grant nothing).
    Success(Translation),
    /// UR: ATS is disabled for the stream.
    UnsupportedRequest,
    /// CA: a configuration error.
    CompleterAbort,
}

impl AtcInvalidation {
    /// Whether this invalidation reaches an ATC entry of StreamID `sid`
    /// cached for SubstreamID `ssid` (`None`: from requests without a
    /// PASID). Without SSV it reaches every entry of the range, with or
    /// without a PASID (an ATS Invalidate Request without a PASID prefix
    /// does); with SSV those of that SubstreamID, or of every SubstreamID
    /// when Global is set (the model cannot tell global entries apart, so
    /// it drops them all).
    pub fn covers(&self, sid: u32, ssid: Option<u32>) -> bool {
        sid == self.sid
            && match self.ssid {
                None => true,
                Some(want) => self.global || ssid == Some(want),
            }
    }
}

impl Smmu {
    /// Answer an ATS Translation Request (3.9.1.2).
    pub fn translate_ats(&mut self, req: &AtsRequest, mem: &dyn GuestMemory) -> (AtsResponse, Effects) {
        let mut fx = Effects::default();
        let r = self.translate_ats_inner(req, mem, &mut fx);
        (r, fx)
    }

    fn translate_ats_inner(&mut self, req: &AtsRequest, mem: &dyn GuestMemory, fx: &mut Effects) -> AtsResponse {
        // No ATS interface: nothing reaches the SMMU to record.
        if !self.config().ats {
            return AtsResponse::UnsupportedRequest;
        }
        let access = Access { write: !req.no_write, privileged: req.privileged, instruction: false };
        let ordinary = Request { sid: req.sid, ssid: req.ssid, addr: req.addr, access };
        if !self.registers().smmu_enabled() {
            return self.bad_treq(req, mem, fx);
        }
        let t = match self.stream_config(req.sid, mem) {
            Ok(StreamConfig::Abort) => return AtsResponse::UnsupportedRequest,
            Ok(StreamConfig::Bypass(_)) => return self.bad_treq(req, mem, fx),
            Ok(StreamConfig::Translate(t)) => t,
            Err(e) => return self.ats_config_error(e, &ordinary, mem, fx),
        };
        if t.eats != Eats::Full {
            return self.bad_treq(req, mem, fx);
        }
        let cd = match self.context(req.sid, req.ssid, &t, mem) {
            Ok(cd) => cd,
            Err(ConfigEvent::CdStage2 { fault, .. }) if !matches!(fault, Fault::TableAbort { .. }) => {
                return denied(req.addr);
            }
            Err(e) => return self.ats_config_error(e, &ordinary, mem, fx),
        };
        let access = self.effective_access(access);
        let walked = match self.walk_resolved(req.addr, &t, cd.as_ref(), access, mem) {
            // Read and write asked for, the page refuses the write: try
            // for read alone (the response grants a subset).
            Err(e) if access.write && is_permission(&e) => {
                self.walk_resolved(req.addr, &t, cd.as_ref(), Access { write: false, ..access }, mem)
            }
            other => other,
        };
        match walked {
            Ok(mut tr) => {
                tr.perm.write &= !req.no_write;
                AtsResponse::Success(tr)
            }
            // Walk aborts and an unusable CD are configuration errors.
            Err(
                e @ (VmsaError::Config(_)
                | VmsaError::Stage1(Fault::TableAbort { .. })
                | VmsaError::Stage2 { fault: Fault::TableAbort { .. }, .. }),
            ) => {
                if let Some(ev) = walk_event(e, &ordinary, true, true) {
                    self.ats_record_config(ev, mem, fx, false);
                }
                AtsResponse::CompleterAbort
            }
            Err(_) => denied(req.addr),
        }
    }

    /// UR with F_BAD_ATS_TREQ.
    fn bad_treq(&mut self, req: &AtsRequest, mem: &dyn GuestMemory, fx: &mut Effects) -> AtsResponse {
        let ev = Event::BadAtsTreq {
            sid: req.sid,
            ssid: req.ssid,
            input_addr: stu_base(req.addr),
            span: req.span.max(1),
            // A PCIe Translation Request always asks for read.
            read: true,
            write: !req.no_write,
            exec: req.exec,
            privileged: req.privileged,
        };
        fx.log.push(format!("smmuv3: stream {:#x}: ATS translation request refused: ATS disabled", req.sid));
        self.record_event(ev, mem, fx);
        AtsResponse::UnsupportedRequest
    }

    /// CA for a configuration error, recorded under SMMU_CR2.REC_CFG_ATS.
    fn ats_config_error(&mut self, e: ConfigEvent, req: &Request, mem: &dyn GuestMemory, fx: &mut Effects) -> AtsResponse {
        let bad_sid = matches!(e, ConfigEvent::BadStreamId);
        let (ev, _) = config_event(e, req, true);
        self.ats_record_config(ev, mem, fx, bad_sid);
        AtsResponse::CompleterAbort
    }

    fn ats_record_config(&mut self, ev: Event, mem: &dyn GuestMemory, fx: &mut Effects, bad_sid: bool) {
        fx.log.push(format!("smmuv3: ATS translation request: {}", ev.event_type().name()));
        let cr2 = self.registers().cr2;
        if cr2.rec_cfg_atc() && (!bad_sid || cr2.recinvsid()) {
            self.record_event(ev, mem, fx);
        }
    }
}

fn is_permission(e: &VmsaError) -> bool {
    matches!(e, VmsaError::Stage1(Fault::Permission { .. }) | VmsaError::Stage2 { fault: Fault::Permission { .. }, .. })
}

/// The STU holding `addr`.
fn stu_base(addr: u64) -> u64 {
    addr & !((1u64 << STU_SHIFT) - 1)
}

/// Success granting nothing, for one STU.
fn denied(addr: u64) -> AtsResponse {
    AtsResponse::Success(Translation { input: stu_base(addr), output: 0, size_shift: STU_SHIFT, perm: Perm::NONE })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::smmu::tests::{rig, Rig, CD, RAM, SID, STRTAB};

    const VA: u64 = 0x8000_1000;

    fn ats_rig() -> Rig {
        let mut r = rig(Config { ats: true, ..Config::default() });
        r.s1_stream(SID);
        r.map(VA, RAM + 0x5000);
        set_eats(&r, 1);
        r
    }

    /// STE.EATS (word 1, bits 29:28) of the rig's stream.
    fn set_eats(r: &Rig, eats: u64) {
        r.mem.put(STRTAB + 64 * u64::from(SID) + 8, &[eats << 28]);
    }

    fn request(addr: u64, no_write: bool) -> AtsRequest {
        AtsRequest { sid: SID, ssid: None, addr, privileged: false, exec: false, no_write, span: 1 }
    }

    fn ats(r: &mut Rig, req: AtsRequest) -> AtsResponse {
        r.smmu.translate_ats(&req, &r.mem).0
    }

    fn granted(resp: AtsResponse) -> (u64, u32, Perm) {
        match resp {
            AtsResponse::Success(t) => (t.output, t.size_shift, t.perm),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn full_ats_grants_what_was_asked_and_the_tables_allow() {
        let mut r = ats_rig();
        assert_eq!(granted(ats(&mut r, request(VA + 0x10, false))), (RAM + 0x5000, 12, Perm::RW));
        // NW: read only, although the page is writable.
        assert_eq!(granted(ats(&mut r, request(VA, true))), (RAM + 0x5000, 12, Perm::RO));
        // Not mapped: success without permission for one STU, no event.
        assert_eq!(granted(ats(&mut r, request(0x9000_0000, false))), (0, STU_SHIFT, Perm::NONE));
        assert!(r.events().is_empty());
    }

    #[test]
    fn read_only_page_grants_read_to_a_read_write_request() {
        let mut r = ats_rig();
        // AP[2] = 1 (read-only) in the leaf: rewrite it through map's layout.
        let ro = 0x9000_2000;
        r.map(ro, RAM + 0x6000);
        let mut table = crate::smmu::tests::TABLES;
        for level in 0..3 {
            let mut b = [0u8; 8];
            r.mem.read(table + ((ro >> (39 - 9 * level)) & 0x1ff) * 8, &mut b).unwrap();
            table = u64::from_le_bytes(b) & 0x0000_ffff_ffff_f000;
        }
        r.mem.put(table + 8 * ((ro >> 12) & 0x1ff), &[(RAM + 0x6000) | 0b11 | (1 << 10) | (0b11 << 6)]);
        assert_eq!(granted(ats(&mut r, request(ro, false))), (RAM + 0x6000, 12, Perm::RO));
        assert!(r.events().is_empty());
    }

    #[test]
    fn disabled_ats_is_unsupported_request_with_f_bad_ats_treq() {
        // EATS = 0b00.
        let mut r = ats_rig();
        set_eats(&r, 0);
        let req = AtsRequest { ssid: None, privileged: true, span: 3, ..request(VA + 0x123, false) };
        assert_eq!(ats(&mut r, req), AtsResponse::UnsupportedRequest);
        match r.events().as_slice() {
            [Event::BadAtsTreq { sid, ssid: None, input_addr, span: 3, read: true, write: true, exec: false, privileged: true }] => {
                assert_eq!((*sid, *input_addr), (SID, VA));
            }
            other => panic!("{other:?}"),
        }
        // SMMUEN = 0 (queues still on): the same.
        let mut r = ats_rig();
        r.smmu.write_reg(0x20, 4, 0b1100, &r.mem);
        assert_eq!(ats(&mut r, request(VA, true)), AtsResponse::UnsupportedRequest);
        assert!(matches!(r.events().as_slice(), [Event::BadAtsTreq { write: false, .. }]));
        // A bypass STE: UR and the event; an abort STE: UR, nothing.
        for (config, events) in [(0b100u64, 1), (0b000, 0)] {
            let mut r = ats_rig();
            r.mem.put(STRTAB + 64 * u64::from(SID), &[1 | (config << 1), 1 << 28]);
            assert_eq!(ats(&mut r, request(VA, false)), AtsResponse::UnsupportedRequest);
            assert_eq!(r.events().len(), events, "config {config:#b}");
        }
        // Without ATS advertised: UR, nothing recorded (no ATS interface).
        let mut r = rig(Config::default());
        r.s1_stream(SID);
        assert_eq!(ats(&mut r, request(VA, false)), AtsResponse::UnsupportedRequest);
        assert!(r.events().is_empty());
    }

    #[test]
    fn configuration_errors_are_completer_abort_recorded_under_rec_cfg_ats() {
        for rec in [false, true] {
            let mut r = ats_rig();
            if rec {
                r.smmu.write_reg(0x2c, 4, 1 << 3, &r.mem);
            }
            // STE.V = 0: C_BAD_STE.
            r.mem.put(STRTAB + 64 * u64::from(SID), &[0, 1 << 28]);
            assert_eq!(ats(&mut r, request(VA, false)), AtsResponse::CompleterAbort);
            // A SubstreamID on a stream without substreams: C_BAD_SUBSTREAMID.
            let mut s = ats_rig();
            if rec {
                s.smmu.write_reg(0x2c, 4, 1 << 3, &s.mem);
            }
            let req = AtsRequest { ssid: Some(3), ..request(VA, false) };
            assert_eq!(ats(&mut s, req), AtsResponse::CompleterAbort);
            // A CD outside memory: F_CD_FETCH.
            let mut t = ats_rig();
            if rec {
                t.smmu.write_reg(0x2c, 4, 1 << 3, &t.mem);
            }
            t.mem.put(STRTAB + 64 * u64::from(SID), &[1 | (0b101 << 1) | 0x7000_0000, 1 << 28]);
            assert_eq!(ats(&mut t, request(VA, false)), AtsResponse::CompleterAbort);
            let got: Vec<_> = [&r, &s, &t].iter().flat_map(|x| x.events()).map(|e| e.event_type()).collect();
            if rec {
                use crate::event::EventType::*;
                assert_eq!(got, vec![BadSte, BadSubstreamId, CdFetch]);
            } else {
                assert!(got.is_empty(), "{got:?}");
            }
        }
        let _ = CD;
    }

    #[test]
    fn atc_invalidation_reaches_the_stream_and_substreams_it_names() {
        let mut r = ats_rig();
        // CMD_ATC_INV (0x40): SID, SSV = 0, 8 KiB at VA.
        let fx = r.command([0x40 | (u64::from(SID) << 32), VA | 1]);
        let inv = match fx.atc.as_slice() {
            [inv] => *inv,
            other => panic!("{other:?}"),
        };
        assert_eq!((inv.first, inv.last), (VA & !0x1fff, (VA & !0x1fff) + 0x1fff));
        // Without SSV: every entry of the stream, with or without a PASID.
        assert!(inv.covers(SID, None) && inv.covers(SID, Some(9)) && !inv.covers(SID + 1, None));
        // SSV = 1, SubstreamID 5.
        let fx = r.command([0x40 | (1 << 11) | (5 << 12) | (u64::from(SID) << 32), 0x3f]);
        let inv = fx.atc[0];
        assert_eq!((inv.first, inv.last), (0, u64::MAX));
        assert!(inv.covers(SID, Some(5)) && !inv.covers(SID, Some(6)) && !inv.covers(SID, None));
        // Global: every SubstreamID.
        let fx = r.command([0x40 | (1 << 9) | (1 << 11) | (5 << 12) | (u64::from(SID) << 32), 0]);
        assert!(fx.atc[0].covers(SID, Some(6)));
    }

    #[test]
    fn translations_are_cached_and_follow_tlb_invalidation() {
        let mut r = ats_rig();
        assert_eq!(granted(ats(&mut r, request(VA, false))).0, RAM + 0x5000);
        r.map(VA, RAM + 0x9000);
        // The TLB entry answers until TLBI_NH_VA.
        assert_eq!(granted(ats(&mut r, request(VA, false))).0, RAM + 0x5000);
        r.command([0x12 | (u64::from(crate::smmu::tests::ASID) << 48), VA]);
        assert_eq!(granted(ats(&mut r, request(VA, false))).0, RAM + 0x9000);
    }
}
