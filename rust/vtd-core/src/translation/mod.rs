//! DMA requests and their translations, and everything that produces
//! them: the legacy root and context tables ([`root_context`]), the
//! scalable-mode root, context and PASID tables ([`scalable`]), the
//! second-stage walk ([`page_walk`]) and the first-stage and nested walks
//! ([`first_stage`]) over the shared x86 formats of `iommu_core`, the
//! context, PASID and IO translation caches ([`cache`]), and ATS
//! translation requests ([`ats`]).
//!
//! Conventions: a [`Request`] is an untranslated DMA from requester id
//! `sid` (bus << 8 | devfn) to input address `iova`. A successful
//! [`Translation`] describes the whole page that contains the input
//! address: `iova` and `phys` are aligned to `page_mask + 1`, so the output
//! address of any byte `a` in the page is `phys | (a & page_mask)`.

pub mod ats;
pub mod cache;
pub mod first_stage;
pub mod page_walk;
pub mod root_context;
pub mod scalable;

pub use iommu_core::translation::Perm;

/// An untranslated DMA request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Request {
    /// Requester id (bus << 8 | devfn).
    pub sid: u16,
    /// Input (I/O virtual) address.
    pub iova: u64,
    /// The request writes memory.
    pub write: bool,
}

impl Request {
    /// A DMA read.
    pub fn read(sid: u16, iova: u64) -> Request {
        Request { sid, iova, write: false }
    }

    /// A DMA write.
    pub fn write(sid: u16, iova: u64) -> Request {
        Request { sid, iova, write: true }
    }
}

/// An untranslated DMA request with PASID (PCIe PASID TLP prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PasidRequest {
    /// Requester id (bus << 8 | devfn).
    pub sid: u16,
    /// The PASID (20 bits are architected; wider values fault as beyond
    /// the supported PASID width).
    pub pasid: u32,
    /// Privileged-mode-requested (supervisor request).
    pub privileged: bool,
    /// Input address.
    pub iova: u64,
    /// The request writes memory.
    pub write: bool,
}

/// A successful translation of one page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Translation {
    /// Input address of the page.
    pub iova: u64,
    /// Output address of the page.
    pub phys: u64,
    /// Page size minus one.
    pub page_mask: u64,
    /// Effective access permissions of the page.
    pub perm: Perm,
    /// Domain the translation belongs to (0 when translation is disabled).
    pub domain_id: u16,
}

impl Translation {
    /// Output address for input address `addr` inside this page.
    pub fn output(&self, addr: u64) -> u64 {
        self.phys | (addr & self.page_mask)
    }

    /// Identity mapping of the 4 KiB page containing `addr`, read/write.
    pub fn identity_4k(addr: u64, domain_id: u16) -> Translation {
        Translation {
            iova: addr & !0xfff,
            phys: addr & !0xfff,
            page_mask: 0xfff,
            perm: Perm::RW,
            domain_id,
        }
    }
}
