//! Hardware nested translation: the requests a vIOMMU makes to the host
//! IOMMU through iommufd ([`iommufd`]), independent of QEMU's iommufd
//! backend that carries them; and what IOMMU notifiers (vfio, vhost) are
//! told of invalidations ([`notify`]).

pub mod iommufd;
pub mod notify;
