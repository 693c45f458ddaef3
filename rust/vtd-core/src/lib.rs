//! A QEMU-free model of an Intel VT-d DMA remapping unit.
//!
//! The crate models the register window, the global command handshakes,
//! legacy root/context tables, second-stage page walks, the context cache
//! and IOTLB with their register-based and queued invalidation, and primary
//! fault logging with fault/completion event interrupts. Groundwork for
//! scalable mode: typed scalable root/context/PASID structures
//! ([`scalable`]), first-stage and nested walks ([`first_stage`]), and
//! translation of requests without PASID through them when
//! [`Config::scalable_mode`] is set and the root table is latched in
//! scalable format (see [`Vtd`] for what is still missing). It has no
//! dependencies and no `unsafe`; nothing a guest can program (registers,
//! table entries, descriptors, addresses) makes it panic: misbehaviour
//! yields the architected fault or a guest-error string in [`Effects`].
//!
//! Register layouts, reset values and capability values follow QEMU's C
//! `intel-iommu` device with interrupt remapping and device-IOTLB disabled
//! (scalable-mode capability differences: [`Config::ecap`]).
//!
//! Scalable mode also has 256-bit queued invalidation with the PASID-cache
//! and PASID-based IOTLB invalidations, a scalable context cache and a
//! PASID cache, and requests with PASID ([`Vtd::translate_pasid`]).
//!
//! Entry points: [`Vtd::read_reg`], [`Vtd::write_reg`], [`Vtd::translate`],
//! [`Vtd::translate_pasid`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod ats;
pub mod cache;
pub mod config;
pub mod effects;
pub mod fault;
pub mod first_stage;
pub mod inv_queue;
pub mod invalidation;
pub mod mem;
pub mod page_walk;
pub mod registers;
pub mod root_context;
pub mod scalable;
pub mod shadow;
pub mod translation;
mod vtd;

pub use ats::{AtsRequest, AtsResult, AtsTranslation};
pub use config::Config;
pub use effects::{Effects, Msi};
pub use invalidation::{GlobalCause, InvalidationEvent};
pub use fault::{Fault, FaultReason, FaultRecord};
pub use mem::{GuestMemory, MemError};
pub use page_walk::Perm;
pub use shadow::{
    AddressSpaceMode, NotifierEvent, NotifierKind, Shadow, ShadowEntry, SyncOutcome, TranslationKind,
};
pub use translation::{PasidRequest, Request, Translation};
pub use vtd::{Vtd, VtdState, INTERRUPT_ADDR_FIRST, INTERRUPT_ADDR_LAST};
