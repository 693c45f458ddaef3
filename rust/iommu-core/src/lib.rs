//! QEMU-free building blocks shared by the rviommu IOMMU models (the Intel
//! VT-d in `vtd-core`, the Arm SMMUv3 in `smmu-core`).
//!
//! Organised by concern:
//! * [`memory`]: guest memory as the IOMMU reaches it (a trait, so that
//!   tests run over a fake memory);
//! * [`translation`]: permissions, the page-table walk engine and the
//!   formats it walks (x86 paging as VT-d uses it, VMSAv8-64 stage 1 and
//!   stage 2), single-stage and nested;
//! * [`cache`]: the hashing, bounded maps, the page cache (IOTLB) with
//!   selective invalidation by tag, address range and size, and the small
//!   direct-mapped cache of recent translations in front of them;
//! * [`queues`]: circular queues in guest memory (command/invalidation
//!   queues the guest produces, event/fault queues the IOMMU produces);
//! * [`nesting`]: the requests a vIOMMU makes to a host IOMMU through
//!   Linux iommufd, as typed values with their uAPI byte layout.
//!
//! Nothing here panics on guest-controlled input: a decoder returns a typed
//! error, a walk the architected failure, a queue an error state.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cache;
pub mod layout;
pub mod memory;
pub mod nesting;
pub mod queues;
pub mod translation;

pub use memory::{GuestMemory, MemError};
pub use translation::Perm;
