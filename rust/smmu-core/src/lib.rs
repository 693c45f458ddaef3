//! A QEMU-free model of an Arm SMMUv3 (IHI 0070), the core of the Rust
//! `arm-smmuv3` device.
//!
//! Architected layouts (registers, stream table entries, context
//! descriptors, commands, events) are declared with `bilge`; decoders
//! return typed values or the architected error, never panic. Guest memory
//! is reached through [`iommu_core::memory::GuestMemory`]; translation
//! walks are [`iommu_core::translation::vmsa`]'s. Where QEMU 10.2.2's C
//! device is more lenient than the architecture, its behaviour is the
//! default and the stricter check is opt-in.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod ats;
pub mod cd;
pub mod command;
pub mod config;
pub mod event;
pub mod migration;
pub mod registers;
pub mod smmu;
pub mod ste;
pub mod stream;

#[cfg(test)]
mod testutil;
