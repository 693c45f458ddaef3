/*
 * The C declarations the Rust arm-smmuv3 glue uses (bindgen input).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/main-loop.h"
#include "block/aio.h"
#include "system/memory.h"
#include "system/address-spaces.h"
#include "hw/pci/pci.h"
#include "hw/pci/pci_bus.h"
#include "hw/qdev-properties.h"
#include "hw/irq.h"
#include "qom/object.h"
