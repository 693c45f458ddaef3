//! What the unit tells the rest of QEMU and the host about its
//! translations: shadows of notified address spaces kept in sync with the
//! guest's invalidations ([`shadow`], [`notify`]: vfio and vhost
//! notifiers, caching mode), and hardware nested translation through a
//! host IOMMU ([`hw_nest`]).

pub mod hw_nest;
pub mod notify;
pub mod shadow;
