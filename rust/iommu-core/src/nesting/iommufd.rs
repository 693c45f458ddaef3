//! The requests a vIOMMU makes to a host IOMMU through Linux iommufd, as
//! typed values with their uAPI byte layout (`include/uapi/linux/iommufd.h`,
//! as QEMU 10.2.2's `linux-headers` carry it).
//!
//! Conventions: every uAPI structure is little-endian on the hosts we run
//! on (x86-64, arm64), `__aligned_u64` fields are 8-byte aligned and the
//! structures have no implicit padding, so a value is its fields' bytes in
//! declaration order. The glue passes [`NestedHwpt::data`] to
//! `IOMMU_HWPT_ALLOC` and [`Invalidations::bytes`] to
//! `IOMMU_HWPT_INVALIDATE` with the type and entry length given here;
//! [`HwInfo::parse`] reads what `IOMMU_GET_HW_INFO` returned, and
//! [`VEvents`] what a vEVENTQ file descriptor gives.

/// `IOMMU_HWPT_DATA_VTD_S1`.
pub const HWPT_DATA_VTD_S1: u32 = 1;
/// `IOMMU_HWPT_DATA_ARM_SMMUV3`.
pub const HWPT_DATA_ARM_SMMUV3: u32 = 2;
/// `IOMMU_HWPT_INVALIDATE_DATA_VTD_S1`.
pub const INVALIDATE_DATA_VTD_S1: u32 = 0;
/// `IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3`.
pub const INVALIDATE_DATA_ARM_SMMUV3: u32 = 1;
/// `IOMMU_HW_INFO_TYPE_INTEL_VTD`.
pub const HW_INFO_TYPE_INTEL_VTD: u32 = 1;
/// `IOMMU_HW_INFO_TYPE_ARM_SMMUV3`.
pub const HW_INFO_TYPE_ARM_SMMUV3: u32 = 2;
/// `IOMMU_VIOMMU_TYPE_ARM_SMMUV3`.
pub const VIOMMU_TYPE_ARM_SMMUV3: u32 = 1;
/// `IOMMU_VEVENTQ_TYPE_ARM_SMMUV3`.
pub const VEVENTQ_TYPE_ARM_SMMUV3: u32 = 1;
/// `IOMMU_VEVENTQ_FLAG_LOST_EVENTS`.
pub const VEVENTQ_FLAG_LOST_EVENTS: u32 = 1;
/// `IOMMU_VTD_INV_FLAGS_LEAF`.
pub const VTD_INV_FLAGS_LEAF: u32 = 1;

/// The data of a nested HWPT allocation: what the guest's stage 1 is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NestedHwpt {
    /// `struct iommu_hwpt_vtd_s1`: a VT-d first-stage table.
    VtdS1 {
        /// `IOMMU_VTD_S1_SRE` (1), `_EAFE` (2), `_WPE` (4).
        flags: u64,
        /// Guest physical address of the first-stage root table.
        pgtbl_addr: u64,
        /// Input address width (48 or 57).
        addr_width: u32,
    },
    /// `struct iommu_hwpt_arm_smmuv3`: the first two words of the guest's
    /// STE (V, Cfg, S1Fmt, S1ContextPtr, S1CDMax; EATS, S1DSS, S1CIR,
    /// S1COR, S1CSH, S1STALLD).
    ArmSmmuV3 {
        /// STE words 0 and 1.
        ste: [u64; 2],
    },
}

impl NestedHwpt {
    /// The `data_type` of `IOMMU_HWPT_ALLOC`.
    pub fn data_type(&self) -> u32 {
        match self {
            NestedHwpt::VtdS1 { .. } => HWPT_DATA_VTD_S1,
            NestedHwpt::ArmSmmuV3 { .. } => HWPT_DATA_ARM_SMMUV3,
        }
    }

    /// The data block (`data_len` is its length).
    pub fn data(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(24);
        match *self {
            NestedHwpt::VtdS1 { flags, pgtbl_addr, addr_width } => {
                b.extend_from_slice(&flags.to_le_bytes());
                b.extend_from_slice(&pgtbl_addr.to_le_bytes());
                b.extend_from_slice(&addr_width.to_le_bytes());
                b.extend_from_slice(&0u32.to_le_bytes());
            }
            NestedHwpt::ArmSmmuV3 { ste } => {
                for w in ste {
                    b.extend_from_slice(&w.to_le_bytes());
                }
            }
        }
        b
    }
}

/// One cache invalidation for the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Invalidation {
    /// `struct iommu_hwpt_vtd_s1_invalidate`, for a nested HWPT.
    VtdS1 {
        /// First address (4 KiB aligned; 0 with `npages` = `u64::MAX`).
        addr: u64,
        /// Number of 4 KiB pages; `u64::MAX`: everything.
        npages: u64,
        /// Only leaf entries changed.
        leaf: bool,
    },
    /// `struct iommu_viommu_arm_smmuv3_invalidate`, for a vIOMMU: one
    /// SMMUv3 command (TLBI_NH_*, ATC_INV, CFGI_CD(_ALL)), with guest
    /// StreamIDs.
    ArmSmmuV3 {
        /// The command's two words.
        cmd: [u64; 2],
    },
}

impl Invalidation {
    /// The `data_type` of `IOMMU_HWPT_INVALIDATE` for this kind.
    pub fn data_type(&self) -> u32 {
        match self {
            Invalidation::VtdS1 { .. } => INVALIDATE_DATA_VTD_S1,
            Invalidation::ArmSmmuV3 { .. } => INVALIDATE_DATA_ARM_SMMUV3,
        }
    }

    /// Bytes of one entry of this kind (`entry_len`).
    pub fn entry_len(&self) -> u32 {
        match self {
            Invalidation::VtdS1 { .. } => 24,
            Invalidation::ArmSmmuV3 { .. } => 16,
        }
    }

    fn encode(&self, b: &mut Vec<u8>) {
        match *self {
            Invalidation::VtdS1 { addr, npages, leaf } => {
                b.extend_from_slice(&addr.to_le_bytes());
                b.extend_from_slice(&npages.to_le_bytes());
                let flags = if leaf { VTD_INV_FLAGS_LEAF } else { 0 };
                b.extend_from_slice(&flags.to_le_bytes());
                b.extend_from_slice(&0u32.to_le_bytes());
            }
            Invalidation::ArmSmmuV3 { cmd } => {
                for w in cmd {
                    b.extend_from_slice(&w.to_le_bytes());
                }
            }
        }
    }
}

/// A batch of invalidations of one kind, encoded for one
/// `IOMMU_HWPT_INVALIDATE` call (the kernel may carry out fewer than all:
/// [`Invalidations::from_entry`] resumes after those it did).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invalidations {
    data_type: u32,
    entry_len: u32,
    count: usize,
    bytes: Vec<u8>,
}

impl Invalidations {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `inv`; a batch holds one kind only (`Err` for another kind).
    pub fn push(&mut self, inv: Invalidation) -> Result<(), Invalidation> {
        if self.count == 0 {
            self.data_type = inv.data_type();
            self.entry_len = inv.entry_len();
        } else if self.data_type != inv.data_type() || self.entry_len != inv.entry_len() {
            return Err(inv);
        }
        inv.encode(&mut self.bytes);
        self.count += 1;
        Ok(())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// `data_type` of the call.
    pub fn data_type(&self) -> u32 {
        self.data_type
    }

    /// `entry_len` of the call.
    pub fn entry_len(&self) -> u32 {
        self.entry_len
    }

    /// The entries from index `first` on, as the call's array (empty when
    /// `first` is past the end).
    pub fn from_entry(&mut self, first: usize) -> &mut [u8] {
        let start = first.saturating_mul(self.entry_len as usize).min(self.bytes.len());
        &mut self.bytes[start..]
    }

    /// The whole array.
    pub fn bytes(&mut self) -> &mut [u8] {
        self.from_entry(0)
    }
}

/// What `IOMMU_GET_HW_INFO` says about the host IOMMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HwInfo {
    /// `struct iommu_hw_info_vtd`.
    Vtd {
        /// `IOMMU_HW_INFO_VTD_*` flags.
        flags: u32,
        /// The host's CAP_REG.
        cap: u64,
        /// The host's ECAP_REG.
        ecap: u64,
    },
    /// `struct iommu_hw_info_arm_smmuv3`.
    ArmSmmuV3 {
        /// Flags (none defined).
        flags: u32,
        /// SMMU_IDR0..5 as the kernel filtered them.
        idr: [u32; 6],
        /// SMMU_IIDR.
        iidr: u32,
        /// SMMU_AIDR.
        aidr: u32,
    },
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl HwInfo {
    /// Decode the `out_data_type` / data pair; `None` for another type or
    /// a block too short for it.
    pub fn parse(data_type: u32, b: &[u8]) -> Option<HwInfo> {
        match data_type {
            HW_INFO_TYPE_INTEL_VTD => Some(HwInfo::Vtd { flags: le32(b, 0)?, cap: le64(b, 8)?, ecap: le64(b, 16)? }),
            HW_INFO_TYPE_ARM_SMMUV3 => {
                let mut idr = [0u32; 6];
                for (i, v) in idr.iter_mut().enumerate() {
                    *v = le32(b, 8 + 4 * i)?;
                }
                Some(HwInfo::ArmSmmuV3 { flags: le32(b, 0)?, idr, iidr: le32(b, 32)?, aidr: le32(b, 36)? })
            }
            _ => None,
        }
    }
}

/// One record read from an SMMUv3 vEVENTQ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VEvent {
    /// An event (`struct iommu_vevent_arm_smmuv3`, guest StreamID) with its
    /// sequence number.
    Event {
        /// `iommufd_vevent_header.sequence`.
        sequence: u32,
        /// The event record's four words.
        evt: [u64; 4],
    },
    /// The kernel dropped events before `sequence`
    /// (`IOMMU_VEVENTQ_FLAG_LOST_EVENTS`).
    Lost {
        /// The next sequence number.
        sequence: u32,
    },
}

/// Decoder of the bytes a vEVENTQ read returned (ARM SMMUv3 records): a
/// header, then the record unless the header reports lost events. A
/// truncated tail is left unread.
#[derive(Clone, Debug)]
pub struct VEvents<'a> {
    bytes: &'a [u8],
}

impl<'a> VEvents<'a> {
    /// Records in `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        VEvents { bytes }
    }
}

impl Iterator for VEvents<'_> {
    type Item = VEvent;

    fn next(&mut self) -> Option<VEvent> {
        let flags = le32(self.bytes, 0)?;
        let sequence = le32(self.bytes, 4)?;
        if flags & VEVENTQ_FLAG_LOST_EVENTS != 0 {
            self.bytes = &self.bytes[8..];
            return Some(VEvent::Lost { sequence });
        }
        let mut evt = [0u64; 4];
        for (i, w) in evt.iter_mut().enumerate() {
            *w = le64(self.bytes, 8 + 8 * i)?;
        }
        self.bytes = &self.bytes[40..];
        Some(VEvent::Event { sequence, evt })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_hwpt_data_has_the_uapi_layout() {
        let d = NestedHwpt::VtdS1 { flags: 5, pgtbl_addr: 0x1234_5000, addr_width: 48 }.data();
        assert_eq!(d.len(), 24);
        assert_eq!(&d[0..8], &5u64.to_le_bytes());
        assert_eq!(&d[8..16], &0x1234_5000u64.to_le_bytes());
        assert_eq!(&d[16..20], &48u32.to_le_bytes());
        assert_eq!(&d[20..], &[0; 4]);
        let s = NestedHwpt::ArmSmmuV3 { ste: [0x11, 0x22] };
        assert_eq!((s.data_type(), s.data().len()), (2, 16));
    }

    #[test]
    fn batches_hold_one_kind_and_resume_after_partial_completion() {
        let mut b = Invalidations::new();
        assert!(b.is_empty());
        b.push(Invalidation::VtdS1 { addr: 0x1000, npages: 2, leaf: true }).unwrap();
        b.push(Invalidation::VtdS1 { addr: 0, npages: u64::MAX, leaf: false }).unwrap();
        assert!(b.push(Invalidation::ArmSmmuV3 { cmd: [1, 2] }).is_err());
        assert_eq!((b.len(), b.data_type(), b.entry_len()), (2, 0, 24));
        assert_eq!(b.bytes().len(), 48);
        assert_eq!(&b.bytes()[16..20], &1u32.to_le_bytes());
        assert_eq!(&b.from_entry(1)[8..16], &u64::MAX.to_le_bytes());
        assert!(b.from_entry(2).is_empty());
        assert!(b.from_entry(usize::MAX).is_empty());
    }

    #[test]
    fn hw_info_and_vevents_decode_and_tolerate_short_input() {
        let mut v = vec![0u8; 24];
        v[8..16].copy_from_slice(&0xd2_0086_8672_0462u64.to_le_bytes());
        v[16..24].copy_from_slice(&0xf0_50daeu64.to_le_bytes());
        assert_eq!(
            HwInfo::parse(HW_INFO_TYPE_INTEL_VTD, &v),
            Some(HwInfo::Vtd { flags: 0, cap: 0xd2_0086_8672_0462, ecap: 0xf0_50dae })
        );
        assert_eq!(HwInfo::parse(HW_INFO_TYPE_INTEL_VTD, &v[..20]), None);
        assert_eq!(HwInfo::parse(HW_INFO_TYPE_ARM_SMMUV3, &v), None);
        assert_eq!(HwInfo::parse(7, &v), None);
        let mut a = vec![0u8; 40];
        a[8..12].copy_from_slice(&0x0d44_101bu32.to_le_bytes());
        a[36..40].copy_from_slice(&1u32.to_le_bytes());
        match HwInfo::parse(HW_INFO_TYPE_ARM_SMMUV3, &a) {
            Some(HwInfo::ArmSmmuV3 { idr, aidr, .. }) => assert_eq!((idr[0], aidr), (0x0d44_101b, 1)),
            other => panic!("{other:?}"),
        }

        let mut q = Vec::new();
        q.extend_from_slice(&0u32.to_le_bytes());
        q.extend_from_slice(&7u32.to_le_bytes());
        for w in [0x10u64, 2, 3, 4] {
            q.extend_from_slice(&w.to_le_bytes());
        }
        q.extend_from_slice(&VEVENTQ_FLAG_LOST_EVENTS.to_le_bytes());
        q.extend_from_slice(&9u32.to_le_bytes());
        q.extend_from_slice(&[0u8; 12]); // truncated record
        let got: Vec<VEvent> = VEvents::new(&q).collect();
        assert_eq!(got, vec![VEvent::Event { sequence: 7, evt: [0x10, 2, 3, 4] }, VEvent::Lost { sequence: 9 }]);
    }
}
