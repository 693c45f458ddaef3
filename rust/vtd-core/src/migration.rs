//! The migration state of QEMU 10.2.2's C intel-iommu (`vtd_vmstate`:
//! section "iommu-intel", version 1), and its mapping to [`VtdState`].
//!
//! A VM migrated from the C device to ours, or back, carries exactly these
//! fields. What the C device derives in its `post_load` (the root table's
//! format from RTADDR, the descriptor width from IQA) is derived here the
//! same way; caches are not migrated (they are rebuilt on demand).

use crate::config::{Config, EcapReg};
use crate::queues::inv_queue::QueueState;
use crate::queues::inv_queue::IqaReg;
use crate::registers::{RtaddrReg, Ttm, DMAR_REG_SIZE, ECAP, IQA, RTADDR};
use crate::VtdState;

/// Version of the C device's section.
pub const C_VMSTATE_VERSION: u8 = 1;

/// The C device's fields, in its order (one unused byte, the obsolete
/// `root_extended`, lies between `iq_last_desc_type` and `dmar_enabled`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CVmState {
    /// Root table address latched by SRTP.
    pub root: u64,
    /// Interrupt remapping table address latched by SIRTP.
    pub intr_root: u64,
    /// Invalidation queue base (latched when QI was enabled).
    pub iq: u64,
    /// Interrupt remapping table entries.
    pub intr_size: u32,
    /// Invalidation queue head, in descriptors.
    pub iq_head: u16,
    /// Invalidation queue tail, in descriptors.
    pub iq_tail: u16,
    /// Invalidation queue entries.
    pub iq_size: u16,
    /// The fault recording register the next fault goes to.
    pub next_frcd_reg: u16,
    /// The register file.
    pub csr: [u8; DMAR_REG_SIZE],
    /// Type of the last descriptor fetched (0: none).
    pub iq_last_desc_type: u8,
    /// GSTS.TES.
    pub dmar_enabled: bool,
    /// GSTS.QIES.
    pub qi_enabled: bool,
    /// GSTS.IRES.
    pub intr_enabled: bool,
    /// Extended interrupt mode latched by SIRTP.
    pub intr_eime: bool,
}

impl Default for CVmState {
    fn default() -> Self {
        CVmState {
            root: 0,
            intr_root: 0,
            iq: 0,
            intr_size: 0,
            iq_head: 0,
            iq_tail: 0,
            iq_size: 0,
            next_frcd_reg: 0,
            csr: [0; DMAR_REG_SIZE],
            iq_last_desc_type: 0,
            dmar_enabled: false,
            qi_enabled: false,
            intr_enabled: false,
            intr_eime: false,
        }
    }
}

fn reg64(csr: &[u8; DMAR_REG_SIZE], off: u64) -> u64 {
    let o = off as usize;
    csr.get(o..o + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes)
}

impl CVmState {
    /// What the C device would send for `st`.
    pub fn from_state(st: &VtdState) -> CVmState {
        CVmState {
            root: st.root,
            intr_root: st.intr_root,
            iq: st.queue.base,
            intr_size: st.intr_size,
            iq_head: st.queue.head,
            iq_tail: st.queue.tail,
            iq_size: st.queue.size,
            next_frcd_reg: st.next_frcd_reg,
            csr: st.csr,
            iq_last_desc_type: st.queue.last_desc_type,
            dmar_enabled: st.dmar_enabled,
            qi_enabled: st.queue.enabled,
            intr_enabled: st.intr_enabled,
            intr_eime: st.intr_eime,
        }
    }

    /// The state to load into a unit configured as `cfg`, deriving what
    /// the C device's `post_load` derives (`Vtd::load_state` then checks it
    /// against the configuration).
    pub fn to_state(&self, cfg: &Config) -> VtdState {
        let ecap = reg64(&self.csr, ECAP);
        VtdState {
            csr: self.csr,
            root: self.root,
            dmar_enabled: self.dmar_enabled,
            queue: QueueState {
                enabled: self.qi_enabled,
                base: self.iq,
                size: self.iq_size,
                dw: EcapReg::from(ecap).smts() && IqaReg::from(reg64(&self.csr, IQA)).dw(),
                head: self.iq_head,
                tail: self.iq_tail,
                last_desc_type: self.iq_last_desc_type,
            },
            next_frcd_reg: self.next_frcd_reg,
            root_scalable: cfg.scalable_mode
                && RtaddrReg::from(reg64(&self.csr, RTADDR)).ttm() == Ttm::Scalable,
            intr_enabled: self.intr_enabled,
            intr_root: self.intr_root,
            intr_size: self.intr_size,
            intr_eime: self.intr_eime,
        }
    }
}
