/*
 * Headers whose declarations the rviommu test device needs from QEMU.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

/* As in QEMU's own Rust crates: the one <stdatomic.h> enum bindgen needs. */
#ifndef __CLANG_STDATOMIC_H
#define __CLANG_STDATOMIC_H
typedef enum memory_order {
  memory_order_relaxed,
  memory_order_consume,
  memory_order_acquire,
  memory_order_release,
  memory_order_acq_rel,
  memory_order_seq_cst,
} memory_order;
#endif /* __CLANG_STDATOMIC_H */

#include "qemu/osdep.h"
#include "system/memory.h"
#include "system/address-spaces.h"
#include "hw/pci/pci.h"
#include "hw/pci/pci_device.h"
#include "hw/pci/pci_bus.h"
#include "hw/pci/pcie.h"
#include "hw/qdev-core.h"
