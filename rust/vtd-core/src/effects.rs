//! Side effects a register access or translation asks the embedding
//! device glue to perform.
//!
//! Conventions: the core never calls back into the host; instead it
//! returns an [`Effects`] value. The glue performs the actions after it has
//! released whatever lock protects the [`Vtd`](crate::Vtd) state, in order:
//! interrupts are listed in the order the hardware would have sent them.
//! Interrupt entry cache invalidations are notifications: the model keeps
//! no interrupt entry cache, but the glue may hold state derived from
//! remapped interrupts (QEMU re-routes KVM MSI routes) and must refresh it.
//! Invalidations are listed in the order the guest performed them.

use crate::queues::invalidation::InvalidationEvent;

use crate::queues::inv_queue::IecInvalidation;

/// An MSI message: one the remapping unit sends (fault event or
/// invalidation completion event), or the result of interrupt remapping.
/// `address` is the full 64-bit message address (upper-address register
/// in bits 63:32), `data` the message data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Msi {
    /// Message address.
    pub address: u64,
    /// Message data.
    pub data: u32,
}

/// What the glue must do after an operation on the model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Interrupt messages to deliver, in order.
    pub interrupts: Vec<Msi>,
    /// Human-readable descriptions of guest programming errors; the glue
    /// should log them as guest errors (rate limiting is up to the glue).
    pub guest_errors: Vec<String>,
    /// Interrupt entry cache invalidations, in order: from queued IEC
    /// descriptors, and a global one whenever the interrupt remapping
    /// table pointer is set or GSTS.IRES/CFIS change (anything that may
    /// change how an interrupt is remapped).
    pub iec_invalidations: Vec<IecInvalidation>,
    /// Invalidations the guest performed, in order: the glue synchronizes
    /// its notified address spaces with them
    /// ([`Vtd::sync_shadow`](crate::Vtd::sync_shadow)) and forwards
    /// device-TLB invalidations to ATS-capable devices.
    pub invalidations: Vec<InvalidationEvent>,
    /// For each entry of `invalidations`, the invalidation queue index of
    /// the descriptor it came from; `None` for register-based invalidations
    /// and for what register writes imply (TE, SRTP, reset).  A glue that
    /// forwards an invalidation and sees it fail names the descriptor with
    /// [`Vtd::invalidation_failed`](crate::Vtd::invalidation_failed).
    pub invalidation_sources: Vec<Option<u16>>,
    /// Queue processing stopped in front of an invalidation wait
    /// descriptor (only with [`Vtd::set_queue_barriers`](crate::Vtd::set_queue_barriers)):
    /// the descriptors before it produced the invalidations above.  The glue
    /// carries them out (notifiers, host IOMMU) and then calls
    /// [`Vtd::resume_queue`](crate::Vtd::resume_queue), so that the wait
    /// descriptor's status write and interrupt, which tell the guest its
    /// invalidations are complete, come after they took effect.
    pub queue_barrier: bool,
}

impl Effects {
    /// True when nothing needs to be done.
    pub fn is_empty(&self) -> bool {
        self.interrupts.is_empty()
            && self.guest_errors.is_empty()
            && self.iec_invalidations.is_empty()
            && self.invalidations.is_empty()
            && !self.queue_barrier
    }

    /// Append `other` to `self`.
    pub fn extend(&mut self, other: Effects) {
        self.interrupts.extend(other.interrupts);
        self.guest_errors.extend(other.guest_errors);
        self.iec_invalidations.extend(other.iec_invalidations);
        self.invalidations.extend(other.invalidations);
        self.invalidation_sources.extend(other.invalidation_sources);
        self.queue_barrier = other.queue_barrier;
    }

    /// The queue descriptor `invalidations[index]` came from, if any.
    pub fn invalidation_source(&self, index: usize) -> Option<u16> {
        self.invalidation_sources.get(index).copied().flatten()
    }

    pub(crate) fn invalidated(&mut self, event: InvalidationEvent) {
        self.invalidations.push(event);
        self.invalidation_sources.push(None);
    }

    /// Attribute the invalidations from `first` on to queue descriptor `index`.
    pub(crate) fn attribute_invalidations(&mut self, first: usize, index: u16) {
        for s in self.invalidation_sources.iter_mut().skip(first) {
            *s = Some(index);
        }
    }

    pub(crate) fn guest_error(&mut self, msg: impl Into<String>) {
        self.guest_errors.push(msg.into());
    }
}
