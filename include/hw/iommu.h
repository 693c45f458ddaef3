/*
 * Capabilities a vIOMMU reports to the devices behind it
 * (PCIIOMMUOps.get_viommu_cap, pci_device_get_viommu_cap()).
 *
 * They follow from the vIOMMU's configuration alone: known before any host
 * device is attached and stable across migration.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_IOMMU_H
#define HW_IOMMU_H

#include "qemu/bitops.h"

enum {
    /*
     * The vIOMMU hands guest first-stage page tables to the host IOMMU
     * (hardware nested translation): a device backed by a host IOMMU needs
     * a nesting-parent stage 2 (guest physical -> host physical) from its
     * backend, under which the vIOMMU attaches nested stage-1 tables.
     */
    VIOMMU_CAP_HW_NESTED = BIT_ULL(0),
};

#endif /* HW_IOMMU_H */
