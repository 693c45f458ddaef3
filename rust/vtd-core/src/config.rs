//! Device configuration and the capability registers derived from it.
//!
//! Conventions: [`Config`] holds the user-visible knobs of the device (the
//! equivalent of the C `intel-iommu` properties; interrupt remapping
//! follows `intremap`/`eim`, device-TLB support follows `device_tlb`).
//! CAP/ECAP are pure functions of the configuration. With `scalable_mode` off they are computed bit for bit as
//! the C device does for the same configuration; the scalable-mode bits
//! deliberately differ from the C device in places, see [`Config::ecap`].

use bilge::prelude::*;

use crate::registers::{FRCD_REG_NR, FRCD_REG_OFFSET, IOTLB_REG_OFFSET};

/// 39-bit guest/host address width (3-level second-stage tables).
pub const AW_39: u8 = 39;
/// 48-bit guest/host address width (4-level second-stage tables).
pub const AW_48: u8 = 48;

/// Maximum address-mask value for page-selective invalidation (CAP.MAMV).
pub const MAMV: u8 = 18;

/// Number of domain-id bits (CAP.ND = 6 means 16 bits).
pub const DOMAIN_ID_BITS: u32 = 16;

pub use layouts::{CapReg, EcapReg};

/// Architected bit layouts of the Capability and Extended Capability
/// registers (VT-d 3.4, 11.4.2 and 11.4.3). A module of its own because
/// bilge's generated constructors carry no documentation.
#[allow(missing_docs)]
mod layouts {
    // Every field is #[inline]: bilge copies a field's attributes onto its
    // getter and setter, which QEMU's build (debug assertions on) would
    // otherwise leave out of line (+10% instructions on a page walk).
    use bilge::prelude::*;

    /// CAP_REG.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct CapReg {
        /// Bits 2:0, ND: 2^(4 + 2 * ND) domains.
        #[inline]
        pub nd: u3,
        /// Bit 3, AFL: advanced fault logging.
        #[inline]
        pub afl: bool,
        /// Bit 4, RWBF: required write-buffer flushing.
        #[inline]
        pub rwbf: bool,
        /// Bit 5, PLMR: protected low-memory region.
        #[inline]
        pub plmr: bool,
        /// Bit 6, PHMR: protected high-memory region.
        #[inline]
        pub phmr: bool,
        /// Bit 7, CM: caching mode.
        #[inline]
        pub cm: bool,
        /// Bits 12:8, SAGAW: bit n = second-stage AW encoding n supported
        /// (bit 1: 39 bits, 3 levels; bit 2: 48 bits, 4 levels).
        #[inline]
        pub sagaw: u5,
        /// Bits 15:13, reserved.
        #[inline]
        pub reserved: u3,
        /// Bits 21:16, MGAW: maximum guest address width - 1.
        #[inline]
        pub mgaw: u6,
        /// Bit 22, ZLR: zero-length reads.
        #[inline]
        pub zlr: bool,
        /// Bit 23, deprecated.
        #[inline]
        pub deprecated: bool,
        /// Bits 33:24, FRO: the fault recording registers' offset / 16.
        #[inline]
        pub fro: u10,
        /// Bit 34, SLLPS: 2 MiB second-stage pages.
        #[inline]
        pub sllps_2m: bool,
        /// Bit 35, SLLPS: 1 GiB second-stage pages.
        #[inline]
        pub sllps_1g: bool,
        /// Bits 37:36, SLLPS: 512 GiB and 1 TiB pages (never).
        #[inline]
        pub sllps_larger: u2,
        /// Bit 38, reserved.
        #[inline]
        pub reserved: bool,
        /// Bit 39, PSI: page-selective invalidation.
        #[inline]
        pub psi: bool,
        /// Bits 47:40, NFR: number of fault recording registers - 1.
        #[inline]
        pub nfr: u8,
        /// Bits 53:48, MAMV: maximum address mask value.
        #[inline]
        pub mamv: u6,
        /// Bit 54, DWD: write draining.
        #[inline]
        pub dwd: bool,
        /// Bit 55, DRD: read draining.
        #[inline]
        pub drd: bool,
        /// Bit 56, FS1GP (FL1GP): first-stage 1 GiB pages.
        #[inline]
        pub fs1gp: bool,
        /// Bits 58:57, reserved.
        #[inline]
        pub reserved: u2,
        /// Bit 59, PI: posted interrupts.
        #[inline]
        pub pi: bool,
        /// Bit 60, FS5LP: first-stage 5-level paging.
        #[inline]
        pub fs5lp: bool,
        /// Bit 61, ECMDS: enhanced command support.
        #[inline]
        pub ecmds: bool,
        /// Bit 62, ESIRTPS: SIRTP also invalidates the interrupt entry
        /// cache. Never set, as in the C device, even with interrupt
        /// remapping (the model has no interrupt entry cache, so the
        /// architectural guarantee would hold).
        #[inline]
        pub esirtps: bool,
        /// Bit 63, ESRTPS: SRTP also invalidates every cache.
        #[inline]
        pub esrtps: bool,
    }

    /// ECAP_REG.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct EcapReg {
        /// Bit 0, C: page-walk coherency.
        #[inline]
        pub c: bool,
        /// Bit 1, QI: queued invalidation.
        #[inline]
        pub qi: bool,
        /// Bit 2, DT: device-TLB.
        #[inline]
        pub dt: bool,
        /// Bit 3, IR: interrupt remapping.
        #[inline]
        pub ir: bool,
        /// Bit 4, EIM: extended interrupt mode (32-bit x2APIC destinations).
        #[inline]
        pub eim: bool,
        /// Bit 5, deprecated.
        #[inline]
        pub deprecated_5: bool,
        /// Bit 6, PT: pass-through.
        #[inline]
        pub pt: bool,
        /// Bit 7, SC: snoop control.
        #[inline]
        pub sc: bool,
        /// Bits 17:8, IRO: the IOTLB registers' offset / 16.
        #[inline]
        pub iro: u10,
        /// Bits 19:18, reserved.
        #[inline]
        pub reserved: u2,
        /// Bits 23:20, MHMV: maximum handle mask value.
        #[inline]
        pub mhmv: u4,
        /// Bit 24, deprecated.
        #[inline]
        pub deprecated_24: bool,
        /// Bit 25, MTS: memory type support.
        #[inline]
        pub mts: bool,
        /// Bit 26, NEST: nested translation.
        #[inline]
        pub nest: bool,
        /// Bit 27, reserved.
        #[inline]
        pub reserved: bool,
        /// Bit 28, deprecated.
        #[inline]
        pub deprecated_28: bool,
        /// Bit 29, PRS: page requests.
        #[inline]
        pub prs: bool,
        /// Bit 30, ERS: execute requests.
        #[inline]
        pub ers: bool,
        /// Bit 31, SRS: supervisor requests.
        #[inline]
        pub srs: bool,
        /// Bit 32, reserved.
        #[inline]
        pub reserved: bool,
        /// Bit 33, NWFS: no write flag.
        #[inline]
        pub nwfs: bool,
        /// Bit 34, EAFS: extended accessed flag.
        #[inline]
        pub eafs: bool,
        /// Bits 39:35, PSS: supported PASID width - 1.
        #[inline]
        pub pss: u5,
        /// Bit 40, PASID.
        #[inline]
        pub pasid: bool,
        /// Bit 41, DIT: device-TLB invalidation throttling.
        #[inline]
        pub dit: bool,
        /// Bit 42, PDS: page-request drain.
        #[inline]
        pub pds: bool,
        /// Bit 43, SMTS: scalable-mode translation.
        #[inline]
        pub smts: bool,
        /// Bit 44, VCS: virtual command.
        #[inline]
        pub vcs: bool,
        /// Bit 45, SSADS (SLADS): second-stage accessed/dirty.
        #[inline]
        pub ssads: bool,
        /// Bit 46, SSTS (SLTS): second-stage translation in scalable mode.
        #[inline]
        pub ssts: bool,
        /// Bit 47, FSTS (FLTS): first-stage translation.
        #[inline]
        pub fsts: bool,
        /// Bits 63:48, later features (SMPWCS, RPS, ...), never set here.
        #[inline]
        pub later: u16,
    }
}

/// Widest PASID the architecture allows (ECAP.PSS = 19).
pub const MAX_PASID_BITS: u8 = 20;

/// Configuration of a VT-d unit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Host and maximum guest address width in bits (`aw-bits`): 39 or 48.
    pub aw_bits: u8,
    /// Advertise pass-through translation (ECAP.PT, property `pt`).
    pub pass_through: bool,
    /// Advertise snoop control (ECAP.SC, property `snoop-control`).
    pub snoop_control: bool,
    /// Advertise read/write draining (CAP.DRD|DWD, property `dma-drain`).
    pub dma_drain: bool,
    /// Caching mode (CAP.CM, property `caching-mode`).
    pub caching_mode: bool,
    /// DMA translation available (property `dma-translation`): when false
    /// SAGAW is 0 and GCMD.TE is ignored, as in the C device.
    pub dma_translation: bool,
    /// Scalable-mode translation (ECAP.SMTS, property `x-scalable-mode`):
    /// the root table may be programmed in scalable format (RTADDR.TTM =
    /// 01b) and second-stage translation is then available through PASID
    /// table entries (ECAP.SLTS).
    pub scalable_mode: bool,
    /// First-stage translation (ECAP.FLTS, property `x-flts`); requires
    /// `scalable_mode` and `aw_bits` 48. Together with `second_stage`
    /// this also advertises nested translation (ECAP.NEST).
    pub first_stage: bool,
    /// Second-stage tables in scalable mode (ECAP.SLTS, with ECAP.SRS).
    /// On by default; off only together with `first_stage`, which then is
    /// the one translation type offered, as by the C device's `x-flts=on`
    /// (ECAP SMTS|FLTS, no SLTS, SRS or NEST). Ignored in legacy mode,
    /// where second-stage tables are the only kind.
    pub second_stage: bool,
    /// Width of supported PASIDs in bits (ECAP.PASID/PSS, property
    /// `x-pasid-mode`); 0 means no PASID support. At most 20; non-zero
    /// requires `scalable_mode`.
    pub pasid_bits: u8,
    /// First-stage 1 GiB pages (CAP.FS1GP, property `fs1gp`); only
    /// meaningful with `first_stage`.
    pub fs1gp: bool,
    /// Interrupt remapping (ECAP.IR and ECAP.MHMV, property `intremap`):
    /// GCMD.SIRTP/IRE/CFI take effect, interrupt entry cache invalidation
    /// descriptors are valid and [`Vtd::remap_interrupt`](crate::Vtd::remap_interrupt)
    /// remaps through the interrupt remapping table.
    pub intremap: bool,
    /// Extended interrupt mode (ECAP.EIM, property `eim`): IRTA.EIME
    /// selects 32-bit x2APIC destination ids. Requires `intremap`.
    pub eim: bool,
    /// Device-TLB support (ECAP.DT, property `device-iotlb`): context
    /// entries may enable ATS translation requests (legacy TT = 01b,
    /// scalable-mode DTE), and the device-TLB / PASID-based device-TLB
    /// invalidation descriptors are valid. Sets ECAP bit 2 and nothing
    /// else, as the C device does.
    pub device_tlb: bool,
    /// Accept the TM bit (62) in second-stage leaf entries instead of
    /// treating it as reserved (property `stale-tm`), for guests that still
    /// set it; as in the C device it takes effect only with `device_tlb`.
    pub stale_tm: bool,
    /// Interrupt remapping by the letter of the architecture (property
    /// `x-strict-ir`) instead of the C device's rules; see
    /// [`crate::interrupts::irq_remap`] for the list.
    pub strict_ir: bool,
    /// DMA remapping structures checked by the letter of the architecture
    /// (property `x-strict`) instead of the C device's rules; see
    /// [`crate::translation::scalable`].
    pub strict_dma: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            aw_bits: AW_48,
            pass_through: true,
            snoop_control: false,
            dma_drain: true,
            caching_mode: false,
            dma_translation: true,
            scalable_mode: false,
            first_stage: false,
            second_stage: true,
            pasid_bits: 0,
            fs1gp: true,
            intremap: false,
            eim: false,
            device_tlb: false,
            stale_tm: false,
            strict_ir: false,
            strict_dma: false,
        }
    }
}

/// `(1 << bits) - 1` without overflow for any `bits`.
pub fn width_mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

impl Config {
    /// Check that the configuration is one the model implements.
    pub fn validate(&self) -> Result<(), String> {
        if self.aw_bits != AW_39 && self.aw_bits != AW_48 {
            return Err(format!(
                "Legacy mode: supported values for aw-bits are: {}, {} (got {})",
                AW_39, AW_48, self.aw_bits
            ));
        }
        if self.eim && !self.intremap {
            return Err("eim=on cannot be selected without intremap=on".into());
        }
        if self.first_stage && !self.scalable_mode {
            return Err("x-flts requires scalable mode (x-scalable-mode=on)".into());
        }
        if self.scalable_mode && !self.first_stage && !self.second_stage {
            return Err("scalable mode needs first-stage or second-stage translation".into());
        }
        if self.pasid_bits != 0 && !self.scalable_mode {
            return Err("PASID support requires scalable mode (x-scalable-mode=on)".into());
        }
        if self.pasid_bits > MAX_PASID_BITS {
            return Err(format!(
                "PASID width must be at most {MAX_PASID_BITS} bits (got {})",
                self.pasid_bits
            ));
        }
        if self.first_stage && self.aw_bits != AW_48 {
            return Err(format!(
                "x-flts requires aw-bits={AW_48} (4-level first-stage tables; got {})",
                self.aw_bits
            ));
        }
        Ok(())
    }

    /// Mask of the host physical address bits (`aw_bits` wide).
    pub fn haw_mask(&self) -> u64 {
        width_mask(u32::from(self.aw_bits))
    }

    /// The Capability register value.
    pub fn cap(&self) -> u64 {
        let mut cap = CapReg::from(0u64);
        cap.set_nd(u3::new(((DOMAIN_ID_BITS - 4) / 2) as u8));
        cap.set_fro(u10::new((FRCD_REG_OFFSET / 16) as u16));
        cap.set_nfr((FRCD_REG_NR - 1) as u8);
        cap.set_mamv(u6::new(MAMV));
        cap.set_psi(true);
        cap.set_sllps_2m(true);
        cap.set_sllps_1g(true);
        cap.set_esrtps(true);
        // MGAW is 6 bits: an unsupported aw-bits (refused by validate())
        // must not panic here.
        cap.set_mgaw(u6::new(self.aw_bits.wrapping_sub(1) & 0x3f));
        cap.set_drd(self.dma_drain);
        cap.set_dwd(self.dma_drain);
        if self.dma_translation {
            // SAGAW bit 1: 39-bit AGAW; bit 2: 48-bit AGAW.
            let sagaw = u8::from(self.aw_bits >= AW_39) << 1 | u8::from(self.aw_bits >= AW_48) << 2;
            cap.set_sagaw(u5::new(sagaw));
        }
        cap.set_cm(self.caching_mode);
        cap.set_fs1gp(self.scalable_mode && self.first_stage && self.fs1gp);
        cap.into()
    }

    /// The Extended Capability register value.
    ///
    /// Scalable-mode bits, compared with the C device's `vtd_cap_init`:
    ///
    /// | configuration                    | C device                     | this model                         |
    /// |----------------------------------|------------------------------|------------------------------------|
    /// | `scalable_mode`                  | SMTS, SRS, SLTS              | the same                           |
    /// | `+ first_stage, !second_stage`   | SMTS, FLTS (+ CAP.FS1GP)     | the same (`x-flts=on`)             |
    /// | `+ first_stage, second_stage`    | (none)                       | SMTS, SLTS, FLTS, NEST, SRS (+ CAP.FS1GP): `modern` |
    /// | `pasid_bits`                     | PASID, PSS = 7 (fixed)       | PASID, PSS = `pasid_bits` - 1      |
    ///
    /// Beyond the C device: both stages together, and therefore nested
    /// translation (ECAP.NEST); PSS following the configured PASID width;
    /// `device_tlb` together with PASID support (the C device refuses
    /// `device-iotlb=on` with `x-pasid-mode=on` because it does not
    /// implement PASID-based device-TLB invalidation; this model does).
    ///
    /// Unchanged from the C device: CAP.ESRTPS is always set (SRTP flushes
    /// every cache, including PASID-derived state), CAP.ESIRTPS is never
    /// set, ECAP.IR|MHMV follow `intremap` and ECAP.EIM `eim`, CAP.FS1GP
    /// follows `fs1gp` when first-stage is on. The legacy-mode values are
    /// unaffected by the scalable-mode fields when `scalable_mode` is off.
    pub fn ecap(&self) -> u64 {
        let mut ecap = EcapReg::from(0u64);
        ecap.set_qi(true);
        ecap.set_iro(u10::new((IOTLB_REG_OFFSET / 16) as u16));
        if self.intremap {
            ecap.set_ir(true);
            // MHMV as the C device sets it with interrupt remapping.
            ecap.set_mhmv(u4::new(0xf));
            ecap.set_eim(self.eim);
        }
        ecap.set_dt(self.device_tlb);
        ecap.set_pt(self.pass_through);
        ecap.set_sc(self.snoop_control);
        if self.scalable_mode {
            ecap.set_smts(true);
            // As the C device: supervisor requests come with the second
            // stage (its x-flts=on has neither).
            ecap.set_ssts(self.second_stage);
            ecap.set_srs(self.second_stage);
            ecap.set_fsts(self.first_stage);
            ecap.set_nest(self.first_stage && self.second_stage);
            if self.pasid_bits != 0 {
                ecap.set_pasid(true);
                ecap.set_pss(u5::new(self.pasid_bits.min(MAX_PASID_BITS) - 1));
            }
        }
        ecap.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Raw bit positions from the specification, independent of the
    // layouts (these tests check the layouts against them).
    const CAP_SAGAW_SHIFT: u32 = 8;
    const CAP_FS1GP: u64 = 1 << 56;
    const CAP_ESIRTPS: u64 = 1 << 62;
    const CAP_ESRTPS: u64 = 1 << 63;
    const ECAP_DT: u64 = 1 << 2;
    const ECAP_NEST: u64 = 1 << 26;
    const ECAP_SRS: u64 = 1 << 31;
    const ECAP_PSS_SHIFT: u32 = 35;
    const ECAP_PASID: u64 = 1 << 40;
    const ECAP_SMTS: u64 = 1 << 43;
    const ECAP_SLTS: u64 = 1 << 46;
    const ECAP_FLTS: u64 = 1 << 47;

    #[test]
    fn default_config_is_valid_and_matches_c_defaults() {
        let c = Config::default();
        assert!(c.validate().is_ok());
        assert_eq!(c.aw_bits, 48);
        assert!(c.pass_through && c.dma_drain && c.dma_translation);
        assert!(!c.snoop_control && !c.caching_mode);
    }

    #[test]
    fn unsupported_aw_bits_rejected_with_message() {
        for aw in [0u8, 32, 40, 47, 57, 64, 255] {
            let c = Config { aw_bits: aw, ..Config::default() };
            let e = c.validate().unwrap_err();
            assert!(e.contains("aw-bits"), "{e}");
            // Computing capabilities for a bad config must not panic either.
            let _ = (c.cap(), c.ecap(), c.haw_mask());
        }
    }

    #[test]
    fn cap_ecap_default_aw48_match_c_device() {
        let c = Config::default();
        assert_eq!(c.cap(), 0x80d2_008c_222f_0606);
        assert_eq!(c.ecap(), 0xf42);
    }

    #[test]
    fn cap_ecap_aw39_match_c_device() {
        let c = Config { aw_bits: 39, ..Config::default() };
        assert_eq!(c.cap(), 0x80d2_008c_2226_0206);
        assert_eq!(c.ecap(), 0xf42);
    }

    #[test]
    fn cap_ecap_optional_bits() {
        let c = Config {
            pass_through: false,
            snoop_control: true,
            dma_drain: false,
            caching_mode: true,
            ..Config::default()
        };
        assert_eq!(c.cap(), 0x8012_008c_222f_0686);
        assert_eq!(c.ecap(), 0xf82);
        let c = Config { dma_translation: false, ..Config::default() };
        assert_eq!(c.cap() & (0x1f << CAP_SAGAW_SHIFT), 0);
    }

    fn sm() -> Config {
        Config { scalable_mode: true, ..Config::default() }
    }

    #[test]
    fn legacy_values_ignore_scalable_only_fields() {
        // fs1gp alone (without first-stage) changes nothing.
        let c = Config { fs1gp: false, ..Config::default() };
        assert_eq!((c.cap(), c.ecap()), (0x80d2_008c_222f_0606, 0xf42));
    }

    #[test]
    fn scalable_mode_second_stage_only_bits() {
        let c = sm();
        assert!(c.validate().is_ok());
        assert_eq!(c.cap(), Config::default().cap());
        // The C device's x-scalable-mode=on: SMTS, SLTS and SRS.
        assert_eq!(c.ecap(), 0xf42 | ECAP_SMTS | ECAP_SLTS | ECAP_SRS);
        assert_eq!(c.ecap(), 0x4800_8000_0f42);
        assert_eq!(c.ecap() & (ECAP_FLTS | ECAP_NEST | ECAP_PASID), 0);
    }

    #[test]
    fn scalable_mode_first_stage_adds_flts_nest_srs_fs1gp() {
        let c = Config { first_stage: true, ..sm() };
        assert!(c.validate().is_ok());
        assert_eq!(c.cap(), Config::default().cap() | CAP_FS1GP);
        assert_eq!(
            c.ecap(),
            0xf42 | ECAP_SMTS | ECAP_SLTS | ECAP_FLTS | ECAP_NEST | ECAP_SRS
        );
        let c = Config { fs1gp: false, ..c };
        assert_eq!(c.cap() & CAP_FS1GP, 0);
        assert_eq!(c.cap() & CAP_ESIRTPS, 0);
        assert_ne!(c.cap() & CAP_ESRTPS, 0);
    }

    #[test]
    fn first_stage_only_is_the_c_devices_x_flts() {
        let c = Config { first_stage: true, second_stage: false, ..sm() };
        assert!(c.validate().is_ok());
        // The 10.2.2 C device with x-scalable-mode=on,x-flts=on.
        assert_eq!((c.cap(), c.ecap()), (0x81d2_008c_222f_0606, 0x8800_0000_0f42));
        let ir = Config { intremap: true, ..c.clone() };
        assert_eq!(ir.ecap(), 0x8800_00f0_0f4a);
        // Neither stage is not a configuration.
        let e = Config { second_stage: false, ..sm() }.validate().unwrap_err();
        assert!(e.contains("stage"), "{e}");
        // Legacy mode ignores the field.
        let l = Config { second_stage: false, ..Config::default() };
        assert!(l.validate().is_ok());
        assert_eq!((l.cap(), l.ecap()), (0x80d2_008c_222f_0606, 0xf42));
    }

    #[test]
    fn pasid_width_encoded_in_pss() {
        for bits in 1..=MAX_PASID_BITS {
            let c = Config { pasid_bits: bits, ..sm() };
            assert!(c.validate().is_ok());
            assert_ne!(c.ecap() & ECAP_PASID, 0);
            assert_eq!((c.ecap() >> ECAP_PSS_SHIFT) & 0x1f, u64::from(bits - 1));
        }
        let c = Config { pasid_bits: 20, ..sm() };
        assert_eq!(c.ecap(), 0xf42 | ECAP_SMTS | ECAP_SLTS | ECAP_SRS | ECAP_PASID | (19 << 35));
    }

    #[test]
    fn device_tlb_sets_ecap_dt_only() {
        for base in [Config::default(), Config { aw_bits: 39, ..Config::default() }, sm(), Config { first_stage: true, pasid_bits: 20, ..sm() }] {
            let c = Config { device_tlb: true, ..base.clone() };
            assert!(c.validate().is_ok());
            assert_eq!(c.cap(), base.cap());
            assert_eq!(c.ecap(), base.ecap() | ECAP_DT);
            assert_eq!(ECAP_DT, 1 << 2);
        }
        // The C device with device-iotlb=on (legacy, aw-bits=48).
        let c = Config { device_tlb: true, ..Config::default() };
        assert_eq!((c.cap(), c.ecap()), (0x80d2_008c_222f_0606, 0xf46));
    }

    #[test]
    fn scalable_only_features_without_scalable_mode_rejected() {
        let e = Config { first_stage: true, ..Config::default() }.validate().unwrap_err();
        assert!(e.contains("scalable"), "{e}");
        let e = Config { pasid_bits: 8, ..Config::default() }.validate().unwrap_err();
        assert!(e.contains("scalable"), "{e}");
        // Capabilities of a rejected configuration carry no scalable bits.
        let c = Config { first_stage: true, pasid_bits: 8, ..Config::default() };
        assert_eq!((c.cap(), c.ecap()), (0x80d2_008c_222f_0606, 0xf42));
    }

    #[test]
    fn interrupt_remapping_bits_match_c_device() {
        // C vtd_cap_init: ecap |= IR | MHMV, plus EIM with eim=on; CAP is
        // unchanged (no ESIRTPS).
        let ir = Config { intremap: true, ..Config::default() };
        assert!(ir.validate().is_ok());
        assert_eq!((ir.cap(), ir.ecap()), (0x80d2_008c_222f_0606, 0xf0_0f4a));
        let eim = Config { eim: true, ..ir.clone() };
        assert!(eim.validate().is_ok());
        assert_eq!((eim.cap(), eim.ecap()), (0x80d2_008c_222f_0606, 0xf0_0f5a));
        let c = Config { aw_bits: 39, ..eim.clone() };
        assert_eq!((c.cap(), c.ecap()), (0x80d2_008c_2226_0206, 0xf0_0f5a));
        let c = Config { scalable_mode: true, ..ir };
        assert_eq!(c.ecap(), 0xf0_0f4a | ECAP_SMTS | ECAP_SLTS | ECAP_SRS);
        assert_eq!(c.cap() & CAP_ESIRTPS, 0);
    }

    #[test]
    fn eim_requires_intremap() {
        let c = Config { eim: true, ..Config::default() };
        let e = c.validate().unwrap_err();
        assert!(e.contains("intremap"), "{e}");
        // A rejected configuration advertises nothing of interrupt remapping.
        assert_eq!(c.ecap(), 0xf42);
    }

    #[test]
    fn first_stage_requires_aw48_and_pasid_width_bounded() {
        let e = Config { first_stage: true, aw_bits: 39, ..sm() }.validate().unwrap_err();
        assert!(e.contains("aw-bits"), "{e}");
        assert!(Config { aw_bits: 39, ..sm() }.validate().is_ok());
        for bits in [21u8, 32, 255] {
            let c = Config { pasid_bits: bits, ..sm() };
            assert!(c.validate().is_err());
            let _ = (c.cap(), c.ecap());
        }
    }
}
