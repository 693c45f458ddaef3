//! Invalidation events: what the guest invalidated, as reported to the
//! device glue in [`Effects::invalidations`](crate::Effects::invalidations).
//!
//! Conventions: every invalidation the guest performs produces exactly one
//! [`InvalidationEvent`], in the order the hardware performed them
//! (register-based CCMD/IOTLB commands, each valid queued descriptor, and
//! the global events GCMD.SRTP, GCMD.TE on/off and reset). An event names
//! the scope the guest asked for, not what the model happened to have
//! cached, so it is reported even when nothing was cached. Invalid
//! requests (bad granularity, queue errors) produce no event. Domain ids
//! (`did`) and PASIDs are the descriptor's values; addresses are input
//! (I/O virtual) addresses; `size` is in bytes and naturally aligned.
//!
//! The glue feeds each event to [`Vtd::sync_shadow`](crate::Vtd::sync_shadow)
//! for every address space that has MAP notifiers, and to
//! [`InvalidationEvent::device_tlb_range`] for device-TLB (ATS) notifiers.

use crate::translation::cache::function_mask;
pub use crate::queues::inv_queue::DeviceTlbInvalidation;

/// Why every cached translation is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GlobalCause {
    /// GCMD.SRTP latched a new root table (CAP.ESRTPS: all caches flushed).
    RootTable,
    /// GCMD.TE set: translation enabled.
    TranslationEnabled,
    /// GCMD.TE cleared: translation disabled, DMA is untranslated.
    TranslationDisabled,
    /// Device reset ([`Vtd::reset_effects`](crate::Vtd::reset_effects)) or
    /// migrated state loaded: translation is as the registers now say.
    Reset,
}

/// One invalidation performed by the guest (or implied by a global
/// event), with its precise scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InvalidationEvent {
    /// Every cache of the unit was flushed.
    Global(GlobalCause),
    /// Context-cache invalidation, global.
    ContextGlobal,
    /// Context-cache invalidation, domain-selective.
    ContextDomain {
        /// Domain id.
        did: u16,
    },
    /// Context-cache invalidation, device-selective: every source-id equal
    /// to `sid` in the bits [`crate::translation::cache::function_mask`]
    /// of `fm` keeps.
    ContextDevice {
        /// Source-id.
        sid: u16,
        /// Function mask (0..=3: ignore none, 1, 2 or 3 low function bits).
        fm: u8,
    },
    /// IOTLB invalidation, global.
    IotlbGlobal,
    /// IOTLB invalidation, domain-selective (in scalable mode: every PASID
    /// of the domain).
    IotlbDomain {
        /// Domain id.
        did: u16,
    },
    /// IOTLB invalidation, page-selective within a domain: `size` bytes
    /// (2^AM 4 KiB pages) at `addr` (aligned down to `size`). In scalable
    /// mode it also covers every first-stage and nested mapping of the
    /// domain, whatever its address.
    IotlbPages {
        /// Domain id.
        did: u16,
        /// First address (aligned to `size`).
        addr: u64,
        /// Size in bytes (4 KiB << AM).
        size: u64,
        /// IH: only leaf entries changed (paging-structure caches may be
        /// kept).
        leaf_only: bool,
    },
    /// PASID-cache invalidation, global.
    PasidCacheGlobal,
    /// PASID-cache invalidation, domain-selective.
    PasidCacheDomain {
        /// Domain id.
        did: u16,
    },
    /// PASID-cache invalidation, PASID-selective within a domain.
    PasidCachePasid {
        /// Domain id.
        did: u16,
        /// PASID.
        pasid: u32,
    },
    /// PASID-based IOTLB invalidation, PASID-selective within a domain.
    PasidIotlb {
        /// Domain id.
        did: u16,
        /// PASID.
        pasid: u32,
    },
    /// PASID-based IOTLB invalidation, page-selective within a PASID.
    PasidIotlbPages {
        /// Domain id.
        did: u16,
        /// PASID.
        pasid: u32,
        /// First address (aligned to `size`).
        addr: u64,
        /// Size in bytes (4 KiB << AM).
        size: u64,
        /// IH: only leaf entries changed.
        leaf_only: bool,
    },
    /// Device-TLB invalidation (type 3: `pasid` None) or PASID-based
    /// device-TLB invalidation (type 8). Concerns the ATS translation
    /// cache of the device only; see
    /// [`device_tlb_range`](InvalidationEvent::device_tlb_range).
    DeviceTlb(DeviceTlbInvalidation),
}

/// Aligned range of 2^`am` 4 KiB pages containing `addr`: (first, size).
pub(crate) fn pages(addr: u64, am: u8) -> (u64, u64) {
    let size = 0x1000u64 << am.min(51);
    (addr & !(size - 1), size)
}

impl InvalidationEvent {
    /// Whether this event flushes everything (the global cases).
    pub fn is_global(&self) -> bool {
        matches!(
            self,
            InvalidationEvent::Global(_)
                | InvalidationEvent::ContextGlobal
                | InvalidationEvent::IotlbGlobal
                | InvalidationEvent::PasidCacheGlobal
        )
    }

    /// For a device-TLB event that targets the device-TLB of address space
    /// (`sid`, `pasid`) (`pasid` None: requests without PASID), the range
    /// to invalidate there as (base, address mask = size - 1; `u64::MAX`
    /// is the whole space). A type 3 descriptor targets requests without
    /// PASID of `sid`; a type 8 one the given PASID of `sid`, or with G
    /// set every PASID of `sid`. `None` for every other event.
    pub fn device_tlb_range(&self, sid: u16, pasid: Option<u32>) -> Option<(u64, u64)> {
        let InvalidationEvent::DeviceTlb(d) = self else { return None };
        if d.sid != sid {
            return None;
        }
        let hit = match (d.pasid, pasid) {
            (None, None) => true,
            (Some(p), Some(q)) => d.global || p == q,
            _ => false,
        };
        hit.then(|| d.range())
    }

    /// Whether a device-selective context-cache event covers `sid`.
    pub(crate) fn context_device_covers(sid: u16, fm: u8, other: u16) -> bool {
        let mask = function_mask(fm);
        sid & mask == other & mask
    }
}

use crate::queues::inv_queue::{
    ContextInvalidation, IotlbInvalidation, PasidCacheInvalidation, PasidIotlbInvalidation,
};

impl From<ContextInvalidation> for InvalidationEvent {
    fn from(inv: ContextInvalidation) -> Self {
        match inv {
            ContextInvalidation::Global => InvalidationEvent::ContextGlobal,
            ContextInvalidation::Domain(did) => InvalidationEvent::ContextDomain { did },
            ContextInvalidation::Device { sid, fm } => InvalidationEvent::ContextDevice { sid, fm },
        }
    }
}

impl From<IotlbInvalidation> for InvalidationEvent {
    fn from(inv: IotlbInvalidation) -> Self {
        match inv {
            IotlbInvalidation::Global => InvalidationEvent::IotlbGlobal,
            IotlbInvalidation::Domain(did) => InvalidationEvent::IotlbDomain { did },
            IotlbInvalidation::Pages { domain_id, addr, am, ih } => {
                let (addr, size) = pages(addr, am);
                InvalidationEvent::IotlbPages { did: domain_id, addr, size, leaf_only: ih }
            }
        }
    }
}

impl From<PasidCacheInvalidation> for InvalidationEvent {
    fn from(inv: PasidCacheInvalidation) -> Self {
        match inv {
            PasidCacheInvalidation::Global => InvalidationEvent::PasidCacheGlobal,
            PasidCacheInvalidation::Domain(did) => InvalidationEvent::PasidCacheDomain { did },
            PasidCacheInvalidation::Pasid { domain_id, pasid } => {
                InvalidationEvent::PasidCachePasid { did: domain_id, pasid }
            }
        }
    }
}

impl From<PasidIotlbInvalidation> for InvalidationEvent {
    fn from(inv: PasidIotlbInvalidation) -> Self {
        match inv {
            PasidIotlbInvalidation::Pasid { domain_id, pasid } => {
                InvalidationEvent::PasidIotlb { did: domain_id, pasid }
            }
            PasidIotlbInvalidation::Pages { domain_id, pasid, addr, am, ih } => {
                let (addr, size) = pages(addr, am);
                InvalidationEvent::PasidIotlbPages { did: domain_id, pasid, addr, size, leaf_only: ih }
            }
        }
    }
}

impl crate::Vtd {
    /// [`reset`](crate::Vtd::reset) that also reports the reset as
    /// [`InvalidationEvent::Global`]`(`[`GlobalCause::Reset`]`)`, so the glue
    /// resynchronizes its notified address spaces like after any other
    /// global invalidation. (After [`load_state`](crate::Vtd::load_state)
    /// the glue should do the same.)
    pub fn reset_effects(&mut self) -> crate::Effects {
        self.reset();
        self.loaded_effects()
    }

    /// What follows [`Vtd::load_state`](crate::Vtd::load_state): every cache is gone and
    /// translation is as the loaded registers say (address spaces, shadows
    /// and host bindings are to be brought in line, as after a reset).
    pub fn loaded_effects(&self) -> crate::Effects {
        let mut fx = crate::Effects::default();
        fx.invalidated(InvalidationEvent::Global(GlobalCause::Reset));
        fx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_ranges_are_aligned() {
        assert_eq!(pages(0x5000, 0), (0x5000, 0x1000));
        assert_eq!(pages(0x5000, 2), (0x4000, 0x4000));
        assert_eq!(pages(0x1234_5000, 18), (0x0, 0x4000_0000));
        assert_eq!(pages(!0xfff, 63), (1 << 63, 1 << 63));
    }

    #[test]
    fn device_tlb_targets() {
        let d = |pasid, global| {
            InvalidationEvent::DeviceTlb(DeviceTlbInvalidation {
                sid: 8,
                pfsid: 8,
                mip: 0,
                pasid,
                global,
                addr: 0x3000,
                size: false,
            })
        };
        assert_eq!(d(None, false).device_tlb_range(8, None), Some((0x3000, 0xfff)));
        assert_eq!(d(None, false).device_tlb_range(9, None), None);
        assert_eq!(d(None, false).device_tlb_range(8, Some(1)), None);
        assert_eq!(d(Some(1), false).device_tlb_range(8, Some(1)), Some((0x3000, 0xfff)));
        assert_eq!(d(Some(1), false).device_tlb_range(8, Some(2)), None);
        assert_eq!(d(Some(1), true).device_tlb_range(8, Some(2)), Some((0x3000, 0xfff)));
        assert_eq!(d(Some(1), true).device_tlb_range(8, None), None);
        assert_eq!(InvalidationEvent::IotlbGlobal.device_tlb_range(8, None), None);
    }
}
