//! A QEMU-free model of an Intel VT-d DMA remapping unit.
//!
//! The crate models the register window, the global command handshakes,
//! legacy root/context tables, second-stage page walks, the context cache
//! and IOTLB with their register-based and queued invalidation, and primary
//! fault logging with fault/completion event interrupts. Groundwork for
//! scalable mode: typed scalable root/context/PASID structures
//! ([`scalable`](translation::scalable)), first-stage and nested walks ([`first_stage`](translation::first_stage)), and
//! translation of requests without PASID through them when
//! [`Config::scalable_mode`] is set and the root table is latched in
//! scalable format (see [`Vtd`] for what is still missing). It has no
//! dependencies and no `unsafe`; nothing a guest can program (registers,
//! table entries, descriptors, addresses) makes it panic: misbehaviour
//! yields the architected fault or a guest-error string in [`Effects`].
//!
//! Register layouts, reset values and capability values follow QEMU's C
//! `intel-iommu` device (scalable-mode capability differences:
//! [`Config::ecap`]; interrupt remapping behaviour differences:
//! [`irq_remap`](interrupts::irq_remap)); device-TLB support ([`Config::device_tlb`]) adds
//! ECAP.DT exactly as the C device's `device-iotlb` property does.
//!
//! Scalable mode also has 256-bit queued invalidation with the PASID-cache
//! and PASID-based IOTLB invalidations, a scalable context cache and a
//! PASID cache, and requests with PASID ([`Vtd::translate_pasid`]).
//!
//! Interrupt remapping ([`Config::intremap`], [`irq_remap`](interrupts::irq_remap)): GCMD.SIRTP,
//! IRE and CFI, remapping of compatibility- and remappable-format
//! interrupt requests through the interrupt remapping table with source-id
//! validation and x2APIC destinations ([`Config::eim`]), the
//! interrupt-remapping fault reasons, and interrupt entry cache
//! invalidation descriptors, reported to the glue in
//! [`Effects::iec_invalidations`]. Posted interrupts are not modelled.
//!
//! For caching mode and IOMMU notifiers (vfio, vhost) every invalidation
//! the guest performs is reported in [`Effects::invalidations`] as an
//! [`InvalidationEvent`]; [`Vtd::sync_shadow`] turns one into the MAP/UNMAP
//! events that bring a notified address space's [`Shadow`] up to date
//! (module [`shadow`](nesting::shadow)), and [`Vtd::replay_shadow`] maps a whole address
//! space. With device-TLB support, [`Vtd::translate_ats`] answers PCIe ATS
//! translation requests (module [`ats`](translation::ats)) and device-TLB invalidations are
//! reported as events for the glue to forward.
//!
//! Entry points: [`Vtd::read_reg`], [`Vtd::write_reg`], [`Vtd::translate`],
//! [`Vtd::translate_pasid`], [`Vtd::translate_ats`], [`Vtd::sync_shadow`],
//! [`Vtd::replay_shadow`], [`Vtd::address_space_mode`],
//! [`Vtd::reset_effects`], [`Vtd::remap_interrupt`].
//!
//! Typical glue use with notifiers, under the lock that protects the
//! [`Vtd`]: after any operation that returned [`Effects`], for each event
//! in `effects.invalidations` and each notified address space (`sid`,
//! `pasid`, `shadow`) call `vtd.sync_shadow(sid, pasid, &event, &mut
//! shadow, &mem)`; after releasing the lock deliver the returned
//! [`NotifierEvent`]s in order, switch the address space to untranslated
//! memory when [`SyncOutcome::mode`] is identity (and back to the IOMMU
//! region otherwise), and send every device-TLB event to the address
//! spaces [`InvalidationEvent::device_tlb_range`] selects. On notifier
//! registration or `replay`, call [`Vtd::replay_shadow`].
//! [`Vtd::update_notified_space`] (module [`notify`](nesting::notify)) does the per-event
//! part for one address space and every kind of notifier (MAP, UNMAP-only,
//! device-IOTLB) and says when to re-evaluate identity mapping.

//! Source layout, by concern: [`translation`] (requests, table decoding,
//! walks, caches, ATS), [`queues`] (queued invalidation, fault recording),
//! [`interrupts`] (interrupt remapping), [`nesting`] (notifier shadows,
//! hardware nesting), and at the top the register file ([`registers`]),
//! the configuration ([`config`]), migration ([`migration`]) and the unit
//! that ties them together ([`Vtd`]). What is not VT-d specific (guest
//! memory, the walk engine and the x86 formats, the page cache) lives in
//! the `iommu_core` crate, shared with the SMMUv3.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
pub mod effects;
pub mod interrupts;
pub use iommu_core::memory as mem;
pub mod migration;
pub mod nesting;
pub mod queues;
pub mod registers;
pub mod translation;
mod vtd;

pub use translation::ats::{AtsRequest, AtsResult, AtsTranslation};
pub use config::Config;
pub use effects::{Effects, Msi};
pub use queues::invalidation::{GlobalCause, InvalidationEvent};
pub use queues::fault::{Fault, FaultReason, FaultRecord};
pub use nesting::hw_nest::{HostBinding, HostVtd, PasidRebind, S1Flags, S1Invalidation};
pub use queues::inv_queue::IecInvalidation;
pub use interrupts::irq_remap::{InterruptFault, InterruptRequest, IrTable};
pub use mem::{GuestMemory, MemError};
pub use nesting::notify::{Notification, NotifierFlags, SpaceUpdate};
pub use translation::page_walk::Perm;
pub use nesting::shadow::{
    AddressSpaceMode, NotifierEvent, NotifierKind, Shadow, ShadowEntry, SyncOutcome, TranslationKind,
};
pub use translation::{PasidRequest, Request, Translation};
pub use vtd::{CacheMiss, Vtd, VtdState, INTERRUPT_ADDR_FIRST, INTERRUPT_ADDR_LAST};
