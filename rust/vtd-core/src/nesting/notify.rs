//! What the IOMMU notifiers of one address space must hear about a batch
//! of invalidations, and whether the address space is identity-mapped.
//!
//! QEMU's notifier consumers come in three kinds, told apart by the flags
//! they register with ([`NotifierFlags`]):
//!
//! * **MAP + UNMAP** (vfio): the consumer mirrors the guest's mappings in
//!   another translation structure (the host IOMMU). It needs caching mode
//!   and is served from a [`Shadow`] through [`Vtd::sync_shadow`]: a MAP for
//!   every new mapping, an UNMAP for every mapping gone or changed.
//! * **UNMAP only** (vhost without ATS): the consumer caches translations
//!   it asked for itself (through `translate`) and only needs to hear what
//!   the guest invalidated. It gets an UNMAP for the input range each
//!   invalidation covers for the address space ([`Vtd::invalidated_range`]),
//!   without any page walk, as QEMU's C device does.
//! * **device-IOTLB UNMAP** (vhost with ATS): device-TLB invalidation
//!   descriptors aimed at the function (requests without PASID).
//!
//! Independently of notifiers, every invalidation that can change what a
//! function's requests without PASID do (global events, context-cache and
//! PASID-cache invalidations) re-evaluates whether the address space is
//! identity (translation disabled or pass-through): the glue then routes
//! its DMA to plain memory instead of the IOMMU region, as the C device
//! does (which is also what lets vfio map all of guest memory for a
//! pass-through device).

use crate::queues::invalidation::InvalidationEvent;
use crate::mem::GuestMemory;
use crate::translation::page_walk::Perm;
use crate::nesting::shadow::{scope_range, NotifierEvent, NotifierKind, Shadow};
use crate::vtd::Vtd;

/// The kinds of notifier registered on an address space (the union of
/// the flags of all its notifiers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NotifierFlags {
    /// Some notifier wants MAP events (and so mirrors mappings).
    pub map: bool,
    /// Some notifier wants UNMAP events.
    pub unmap: bool,
    /// Some notifier wants device-IOTLB UNMAP events.
    pub device_iotlb: bool,
}

/// One notification to deliver to the notifiers of the matching kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Notification {
    /// `size` bytes at input address `iova` now translate to `phys`.
    Map {
        /// Input address (aligned to `size`).
        iova: u64,
        /// Size in bytes, a power of two.
        size: u64,
        /// Output address.
        phys: u64,
        /// Permissions.
        perm: Perm,
    },
    /// The input range `[first, last]` is no longer mapped as before.
    Unmap {
        /// First input address.
        first: u64,
        /// Last input address (inclusive).
        last: u64,
    },
    /// Device-TLB invalidation of `[iova, iova + mask]`.
    DeviceIotlbUnmap {
        /// First input address (aligned to `mask + 1`).
        iova: u64,
        /// Range size minus one.
        mask: u64,
    },
}

impl From<&NotifierEvent> for Notification {
    fn from(e: &NotifierEvent) -> Notification {
        match e.kind {
            NotifierKind::Map => {
                Notification::Map { iova: e.iova, size: e.size, phys: e.phys, perm: e.perm }
            }
            NotifierKind::Unmap => Notification::Unmap {
                first: e.iova,
                last: e.iova.saturating_add(e.size.max(1) - 1),
            },
        }
    }
}

/// Result of [`Vtd::update_notified_space`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpaceUpdate {
    /// Notifications to deliver, in order.
    pub notifications: Vec<Notification>,
    /// `Some(identity)` when one of the events can have changed whether
    /// the address space is identity-mapped: its current state.
    pub identity: Option<bool>,
    /// A shadow walk hit its work cap (the rest counted as unmapped).
    pub truncated: bool,
}

/// Whether `event` can change what requests without PASID of a function do
/// (beyond the mappings themselves): translation on/off, root table,
/// context entries, PASID entries.
pub fn changes_mode(event: &InvalidationEvent) -> bool {
    matches!(
        event,
        InvalidationEvent::Global(_)
            | InvalidationEvent::ContextGlobal
            | InvalidationEvent::ContextDomain { .. }
            | InvalidationEvent::ContextDevice { .. }
            | InvalidationEvent::PasidCacheGlobal
            | InvalidationEvent::PasidCacheDomain { .. }
            | InvalidationEvent::PasidCachePasid { .. }
    )
}

pub use iommu_core::nesting::notify::aligned_pieces;

impl Vtd {
    /// The input range that `event` invalidates for the requests without
    /// PASID (`pasid` `None`) or with `pasid` of function `sid`, as decided
    /// from the guest's current context / PASID entry; `None` when the
    /// event does not concern the address space. A whole-space scope is
    /// reported as `[0, 2^aw - 1]`.
    pub fn invalidated_range(
        &self,
        sid: u16,
        pasid: Option<u32>,
        event: &InvalidationEvent,
        mem: &dyn GuestMemory,
    ) -> Option<(u64, u64)> {
        let top = crate::config::width_mask(u32::from(self.config().aw_bits));
        let (first, last) = scope_range(self, sid, pasid, event, mem)?;
        (first <= top).then_some((first, last.min(top)))
    }

    /// Everything the notifiers of the address space of requests without
    /// PASID of function `sid` need after `events` (in the order the guest
    /// performed them): see the module documentation. `shadow` is the
    /// address space's shadow, required when `flags.map` is set (without
    /// one, MAP notifiers are served like UNMAP-only ones).
    pub fn update_notified_space(
        &self,
        sid: u16,
        flags: NotifierFlags,
        mut shadow: Option<&mut Shadow>,
        events: &[InvalidationEvent],
        mem: &dyn GuestMemory,
    ) -> SpaceUpdate {
        let mut up = SpaceUpdate::default();
        for event in events {
            match shadow.as_deref_mut() {
                Some(sh) if flags.map => {
                    let o = self.sync_shadow(sid, None, event, sh, mem);
                    up.truncated |= o.truncated;
                    up.notifications.extend(o.events.iter().map(Notification::from));
                }
                _ if flags.unmap || flags.map => {
                    if let Some((first, last)) = self.invalidated_range(sid, None, event, mem) {
                        up.notifications.push(Notification::Unmap { first, last });
                    }
                }
                _ => {}
            }
            if flags.device_iotlb {
                if let Some((iova, mask)) = event.device_tlb_range(sid, None) {
                    up.notifications.push(Notification::DeviceIotlbUnmap { iova, mask });
                }
            }
        }
        if events.iter().any(changes_mode) {
            up.identity = Some(self.address_space_mode(sid, None, mem).is_identity());
        }
        up
    }
}
