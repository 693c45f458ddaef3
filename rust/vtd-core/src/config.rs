//! Device configuration and the capability registers derived from it.
//!
//! Conventions: [`Config`] holds the user-visible knobs of the legacy-mode
//! device (the equivalent of the C `intel-iommu` properties with scalable
//! mode, first-stage translation, interrupt remapping and device-IOTLB
//! off). CAP/ECAP are pure functions of the configuration, computed bit for
//! bit as the C device does for the same configuration.

use crate::registers::{FRCD_REG_NR, FRCD_REG_OFFSET, IOTLB_REG_OFFSET};

/// 39-bit guest/host address width (3-level second-stage tables).
pub const AW_39: u8 = 39;
/// 48-bit guest/host address width (4-level second-stage tables).
pub const AW_48: u8 = 48;

/// Maximum address-mask value for page-selective invalidation (CAP.MAMV).
pub const MAMV: u8 = 18;

/// Number of domain-id bits (CAP.ND = 6 means 16 bits).
pub const DOMAIN_ID_BITS: u32 = 16;

// CAP_REG fields.
/// CAP.ND (number of domains supported), encoded.
pub const CAP_ND: u64 = ((DOMAIN_ID_BITS as u64 - 4) / 2) & 7;
/// CAP.RWBF (required write-buffer flushing). Never set.
pub const CAP_RWBF: u64 = 1 << 4;
/// CAP.CM (caching mode).
pub const CAP_CM: u64 = 1 << 7;
/// CAP.SAGAW bit for 39-bit AGAW (3-level tables).
pub const CAP_SAGAW_39: u64 = 0x2 << 8;
/// CAP.SAGAW bit for 48-bit AGAW (4-level tables).
pub const CAP_SAGAW_48: u64 = 0x4 << 8;
/// Shift of CAP.SAGAW.
pub const CAP_SAGAW_SHIFT: u32 = 8;
/// Shift of CAP.MGAW.
pub const CAP_MGAW_SHIFT: u32 = 16;
/// CAP.FRO (fault-recording register offset / 16), in place.
pub const CAP_FRO: u64 = (FRCD_REG_OFFSET / 16) << 24;
/// CAP.SLLPS bit for 2 MiB second-stage pages.
pub const CAP_SLLPS_2M: u64 = 1 << 34;
/// CAP.SLLPS bit for 1 GiB second-stage pages.
pub const CAP_SLLPS_1G: u64 = 1 << 35;
/// CAP.PSI (page-selective invalidation).
pub const CAP_PSI: u64 = 1 << 39;
/// CAP.NFR (number of fault-recording registers - 1), in place.
pub const CAP_NFR: u64 = (FRCD_REG_NR as u64 - 1) << 40;
/// CAP.MAMV in place.
pub const CAP_MAMV: u64 = (MAMV as u64) << 48;
/// CAP.DWD (write draining).
pub const CAP_DWD: u64 = 1 << 54;
/// CAP.DRD (read draining).
pub const CAP_DRD: u64 = 1 << 55;
/// CAP.ESRTPS (SRTP also invalidates all caches).
pub const CAP_ESRTPS: u64 = 1 << 63;

// ECAP_REG fields.
/// ECAP.QI (queued invalidation).
pub const ECAP_QI: u64 = 1 << 1;
/// ECAP.DT (device-TLB).
pub const ECAP_DT: u64 = 1 << 2;
/// ECAP.IR (interrupt remapping).
pub const ECAP_IR: u64 = 1 << 3;
/// ECAP.PT (pass-through).
pub const ECAP_PT: u64 = 1 << 6;
/// ECAP.SC (snoop control).
pub const ECAP_SC: u64 = 1 << 7;
/// ECAP.IRO (IOTLB register offset / 16), in place.
pub const ECAP_IRO: u64 = (IOTLB_REG_OFFSET / 16) << 8;
/// ECAP.SMTS (scalable mode). Never set by this crate yet.
pub const ECAP_SMTS: u64 = 1 << 43;

/// Configuration of a legacy-mode VT-d unit.
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
        Ok(())
    }

    /// Mask of the host physical address bits (`aw_bits` wide).
    pub fn haw_mask(&self) -> u64 {
        width_mask(u32::from(self.aw_bits))
    }

    /// The Capability register value.
    pub fn cap(&self) -> u64 {
        let mut cap = CAP_FRO
            | CAP_NFR
            | CAP_ND
            | CAP_MAMV
            | CAP_PSI
            | CAP_SLLPS_2M
            | CAP_SLLPS_1G
            | CAP_ESRTPS
            | ((u64::from(self.aw_bits.wrapping_sub(1)) & 0x3f) << CAP_MGAW_SHIFT);
        if self.dma_drain {
            cap |= CAP_DRD | CAP_DWD;
        }
        if self.dma_translation {
            if self.aw_bits >= AW_39 {
                cap |= CAP_SAGAW_39;
            }
            if self.aw_bits >= AW_48 {
                cap |= CAP_SAGAW_48;
            }
        }
        if self.caching_mode {
            cap |= CAP_CM;
        }
        cap
    }

    /// The Extended Capability register value.
    pub fn ecap(&self) -> u64 {
        let mut ecap = ECAP_QI | ECAP_IRO;
        if self.pass_through {
            ecap |= ECAP_PT;
        }
        if self.snoop_control {
            ecap |= ECAP_SC;
        }
        ecap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
