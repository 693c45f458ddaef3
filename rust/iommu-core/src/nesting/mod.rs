//! Hardware nested translation: the requests a vIOMMU makes to the host
//! IOMMU through iommufd ([`iommufd`]), independent of QEMU's iommufd
//! backend that carries them.

pub mod iommufd;
