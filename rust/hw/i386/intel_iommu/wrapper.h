/*
 * Headers whose declarations the Rust intel-iommu glue needs from QEMU.
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

/*
 * bindgen's libclang may not understand C11 atomics; as in QEMU's own Rust
 * crates, give it the one enum it needs from <stdatomic.h>.
 */
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
#include "hw/pci/pci_bus.h"
#include "hw/i386/x86-iommu.h"
#include "hw/i386/x86.h"
#include "system/iommufd.h"
#include "hw/iommu.h"
#include "qemu/error-report.h"
#include "qapi/visitor.h"
#include "qapi/visitor-impl.h"
