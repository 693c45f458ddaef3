#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""intel-iommu caching mode and IOMMU notifiers, over qtest.

The consumer is rviommu-testdev's mirror: a translation table of the
device's own that only the IOMMU's notifiers fill, as a vfio-assigned
device behind a host IOMMU (MAP/UNMAP notifier, filled by replay and MAP
events) or a vhost backend (UNMAP-only notifier, misses asked of the
IOMMU). DMA "through the mirror" therefore shows exactly what the
notifiers were told: a mapping the guest changed but did not invalidate
stays stale, a correct invalidation updates it, a wrong one does not.

The test plays the guest driver; no guest code runs (`-accel qtest`).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import rviommu_kit  # noqa: E402

from vtd_qtest import (TD_DEVFN, TD_BAR0, Qtest, LegacyVtd, ScalableVtd, TestDev, PTE_R, PTE_W,  # noqa: E402
                       PGTT_FS, PGTT_SS, TD_READ, TD_WRITE, TD_XLATE, TD_NOTIFY_NONE,
                       TD_NOTIFY_MAP, TD_NOTIFY_UNMAP_ONLY, TD_NOTIFY_REPLAY, TD_NOTIFIER)

DID = 3
IOVA = 0x300000
PHYS = 0x600000
PHYS2 = 0x700000
CAP_CM = 1 << 7
TT_PASS_THROUGH = 2


class VtdCachingMode(rviommu_kit.QtestVmTest):

    def launch(self, *iommu_props, vtd_class=LegacyVtd):
        vm = self.qtest_vm('cm', 'intel-iommu' + ''.join(',' + p for p in iommu_props),
                           'rviommu-testdev,addr=05.0')
        qt = Qtest(vm)
        return vm, qt, TestDev(qt, TD_DEVFN, TD_BAR0), vtd_class(qt)

    def fill(self, qt, addr, byte):
        qt.memwrite(addr, bytes([byte]) * 0x1000)

    def read_byte(self, dev, iova, mirror=True):
        """One-byte DMA read; (status, byte read)."""
        status = dev.dma(TD_READ, iova, 1, mirror=mirror)
        return status, dev.buffer(1)[0] if status == 'ok' else None

    def mapped_device(self, vtd, pages):
        """Context entry of the test device in domain DID with `pages`
        {iova: (phys, perm)}; translation and queued invalidation on."""
        top = vtd.new_address_space()
        for iova, (phys, perm) in pages.items():
            vtd.map_4k(top, iova, phys, perm)
        vtd.set_context(0, TD_DEVFN, top, did=DID)
        vtd.enable()
        vtd.enable_queue()
        return top

    def test_cap_cm_follows_the_property(self):
        _, qt, _, vtd = self.launch('caching-mode=on')
        self.assertTrue(vtd.cap & CAP_CM)
        _, qt, _, vtd = self.launch()
        self.assertFalse(vtd.cap & CAP_CM)

    def test_map_notifier_needs_caching_mode(self):
        vm, qt, dev, vtd = self.launch()
        self.mapped_device(vtd, {IOVA: (PHYS, PTE_R | PTE_W)})
        self.assertEqual(dev.attach_notifier(TD_NOTIFY_MAP), 'refused')
        self.assertEqual(self.read_byte(dev, IOVA), ('mirror-fault', None))
        # An UNMAP-only notifier (vhost) needs no caching mode.
        self.assertIsNone(dev.attach_notifier(TD_NOTIFY_UNMAP_ONLY))
        vm.shutdown()
        self.assertIn('requires caching mode', vm.get_log())

    def test_replay_reports_every_mapping_once(self):
        _, qt, dev, vtd = self.launch('caching-mode=on')
        self.fill(qt, PHYS, 0x11)
        self.fill(qt, PHYS2, 0x22)
        self.mapped_device(vtd, {IOVA: (PHYS, PTE_R | PTE_W),
                                 IOVA + 0x1000: (PHYS2, PTE_R),
                                 IOVA + 0x5000: (PHYS, PTE_R | PTE_W)})
        self.assertIsNone(dev.attach_notifier(TD_NOTIFY_MAP))
        self.assertEqual(dev.mirror_counters(), (3, 0, 3, 0))
        self.assertEqual(self.read_byte(dev, IOVA + 0x10), ('ok', 0x11))
        self.assertEqual(dev.reg(TD_XLATE, 8), PHYS + 0x10)
        self.assertEqual(self.read_byte(dev, IOVA + 0x1010), ('ok', 0x22))
        self.assertEqual(dev.dma(TD_WRITE, IOVA + 0x1000, 1, mirror=True), 'mirror-fault',
                         'read-only page mirrored writable')
        self.assertEqual(self.read_byte(dev, IOVA + 0x2000), ('mirror-fault', None))
        # Replaying again reports every mapping to our notifier again
        # (a consumer that replays keeps what it has: conflicts).
        dev.qt.writel(TD_BAR0 + TD_NOTIFIER, TD_NOTIFY_REPLAY)
        self.assertEqual(dev.mirror_counters(), (6, 0, 3, 3))

    def test_mappings_change_only_at_invalidation(self):
        _, qt, dev, vtd = self.launch('caching-mode=on')
        self.fill(qt, PHYS, 0x11)
        self.fill(qt, PHYS2, 0x22)
        top = self.mapped_device(vtd, {IOVA: (PHYS, PTE_R | PTE_W)})
        self.assertIsNone(dev.attach_notifier(TD_NOTIFY_MAP))
        # A new mapping is not reported before its invalidation (caching
        # mode: the guest invalidates not-present -> present changes too).
        vtd.map_4k(top, IOVA + 0x1000, PHYS2, PTE_R)
        self.assertEqual(self.read_byte(dev, IOVA + 0x1000), ('mirror-fault', None))
        vtd.invalidate(vtd.desc_iotlb_page(DID, IOVA + 0x1000))
        self.assertEqual(dev.mirror_counters(), (2, 0, 2, 0))
        self.assertEqual(self.read_byte(dev, IOVA + 0x1000), ('ok', 0x22))
        # A changed mapping stays stale until invalidated, even by an
        # invalidation of another domain or of another page.
        vtd.map_4k(top, IOVA, PHYS2, PTE_R | PTE_W)
        vtd.invalidate(vtd.desc_iotlb_domain(DID + 1),
                        vtd.desc_iotlb_page(DID, IOVA + 0x8000))
        self.assertEqual(self.read_byte(dev, IOVA), ('ok', 0x11), 'updated without invalidation')
        vtd.invalidate(vtd.desc_iotlb_page(DID, IOVA))
        self.assertEqual(dev.mirror_counters(), (3, 1, 2, 0))
        self.assertEqual(self.read_byte(dev, IOVA), ('ok', 0x22))
        # Removal, with a domain-selective invalidation (register-based).
        vtd.map_4k(top, IOVA + 0x1000, 0, 0)
        self.assertEqual(self.read_byte(dev, IOVA + 0x1000), ('ok', 0x22))
        vtd.invalidate(vtd.desc_iotlb_domain(DID))
        self.assertEqual(dev.mirror_counters(), (3, 2, 1, 0))
        self.assertEqual(self.read_byte(dev, IOVA + 0x1000), ('mirror-fault', None))
        self.assertEqual(self.read_byte(dev, IOVA), ('ok', 0x22))

    def test_register_based_invalidation_notifies_too(self):
        _, qt, dev, vtd = self.launch('caching-mode=on')
        self.fill(qt, PHYS2, 0x22)
        top = vtd.new_address_space()
        vtd.map_4k(top, IOVA, PHYS, PTE_R | PTE_W)
        vtd.set_context(0, TD_DEVFN, top, did=DID)
        vtd.enable()
        self.assertIsNone(dev.attach_notifier(TD_NOTIFY_MAP))
        vtd.map_4k(top, IOVA, PHYS2, PTE_R | PTE_W)
        vtd.register_iotlb_invalidate_global()
        self.assertEqual(dev.mirror_counters(), (2, 1, 1, 0))
        self.assertEqual(self.read_byte(dev, IOVA), ('ok', 0x22))

    def test_pass_through_and_disabled_translation_are_identity(self):
        _, qt, dev, vtd = self.launch('caching-mode=on')
        self.fill(qt, IOVA, 0x33)
        self.fill(qt, PHYS, 0x11)
        # Translation off: DMA is untranslated and there is no IOMMU
        # region to attach a notifier to (vfio maps guest RAM instead).
        self.assertEqual(dev.attach_notifier(TD_NOTIFY_MAP), 'no-iommu')
        self.assertEqual(self.read_byte(dev, IOVA, mirror=False), ('ok', 0x33))
        top = self.mapped_device(vtd, {IOVA: (PHYS, PTE_R | PTE_W)})
        self.assertIsNone(dev.attach_notifier(TD_NOTIFY_MAP))
        self.assertEqual(self.read_byte(dev, IOVA, mirror=False), ('ok', 0x11))
        # The guest makes the device pass-through: at the context-cache
        # invalidation its mappings are unmapped and DMA is untranslated.
        vtd.set_context(0, TD_DEVFN, 0, did=DID, tt=TT_PASS_THROUGH)
        self.assertEqual(self.read_byte(dev, IOVA, mirror=False), ('ok', 0x11), 'context cached')
        vtd.invalidate(vtd.desc_context_device(TD_DEVFN))
        self.assertEqual(dev.mirror_counters(), (1, 1, 0, 0))
        self.assertEqual(self.read_byte(dev, IOVA, mirror=False), ('ok', 0x33))
        self.assertEqual(dev.attach_notifier(TD_NOTIFY_MAP), 'no-iommu')
        # Back to translation.
        vtd.set_context(0, TD_DEVFN, top, did=DID)
        vtd.invalidate(vtd.desc_context_device(TD_DEVFN))
        self.assertEqual(self.read_byte(dev, IOVA, mirror=False), ('ok', 0x11))
        self.assertIsNone(dev.attach_notifier(TD_NOTIFY_MAP))
        self.assertEqual(self.read_byte(dev, IOVA), ('ok', 0x11))

    def test_unmap_only_notifier_hears_invalidated_ranges(self):
        _, qt, dev, vtd = self.launch()
        self.fill(qt, PHYS, 0x11)
        self.fill(qt, PHYS2, 0x22)
        top = self.mapped_device(vtd, {IOVA: (PHYS, PTE_R | PTE_W)})
        self.assertIsNone(dev.attach_notifier(TD_NOTIFY_UNMAP_ONLY))
        self.assertEqual(self.read_byte(dev, IOVA), ('ok', 0x11))
        self.assertEqual(dev.mirror_counters(), (0, 0, 1, 0), 'the miss was asked and cached')
        vtd.map_4k(top, IOVA, PHYS2, PTE_R | PTE_W)
        vtd.invalidate(vtd.desc_iotlb_page(DID + 1, IOVA))
        self.assertEqual(self.read_byte(dev, IOVA), ('ok', 0x11), 'other domain: still cached')
        vtd.invalidate(vtd.desc_iotlb_page(DID, IOVA))
        self.assertEqual(dev.mirror_counters()[1], 1)
        self.assertEqual(self.read_byte(dev, IOVA), ('ok', 0x22))
        vtd.map_4k(top, IOVA, 0, 0)
        vtd.invalidate(vtd.desc_iotlb_domain(DID))
        self.assertEqual(self.read_byte(dev, IOVA), ('mirror-fault', None))
        dev.attach_notifier(TD_NOTIFY_NONE)
        self.assertEqual(self.read_byte(dev, IOVA), ('mirror-fault', None))

    def test_scalable_second_stage_is_shadowed(self):
        """x-scalable-mode=on + caching mode: RID_PASID's second-stage
        mappings reach the MAP notifier at PASID-based IOTLB invalidations
        (of the right domain and PASID only)."""
        _, qt, dev, vtd = self.launch('x-scalable-mode=on', 'caching-mode=on',
                                      vtd_class=ScalableVtd)
        self.fill(qt, PHYS, 0x11)
        self.fill(qt, PHYS2, 0x22)
        ss = vtd.new_address_space()
        vtd.map_4k(ss, IOVA, PHYS)
        pdir = vtd.new_pasid_dir()
        vtd.set_pasid_entry(pdir, 0, pgtt=PGTT_SS, did=DID, slptptr=ss)
        vtd.set_context(0, TD_DEVFN, pdir)
        vtd.enable()
        vtd.enable_queue()
        self.assertIsNone(dev.attach_notifier(TD_NOTIFY_MAP))
        self.assertEqual(dev.mirror_counters(), (1, 0, 1, 0))
        self.assertEqual(self.read_byte(dev, IOVA), ('ok', 0x11))
        vtd.map_4k(ss, IOVA, PHYS2)
        vtd.invalidate(vtd.desc_piotlb_page(DID, 7, IOVA), vtd.desc_piotlb_pasid(DID + 1, 0))
        self.assertEqual(self.read_byte(dev, IOVA), ('ok', 0x11))
        vtd.invalidate(vtd.desc_piotlb_page(DID, 0, IOVA))
        self.assertEqual(dev.mirror_counters(), (2, 1, 1, 0))
        self.assertEqual(self.read_byte(dev, IOVA), ('ok', 0x22))
        self.assertEqual(dev.reg(TD_XLATE, 8), PHYS2)

    def test_first_stage_cannot_be_shadowed(self):
        """With first-stage translation advertised (modern), a MAP notifier is
        refused: guests need not invalidate new first-stage mappings (Linux
        does not), so a shadow would miss them. UNMAP-only notifiers work:
        the guest does invalidate what it unmaps."""
        vm, qt, dev, vtd = self.launch('x-scalable-mode=modern', 'caching-mode=on',
                                       vtd_class=ScalableVtd)
        self.fill(qt, PHYS, 0x11)
        fs = vtd.first_stage()
        fs.map_4k(IOVA, PHYS)
        pdir = vtd.new_pasid_dir()
        vtd.set_pasid_entry(pdir, 0, pgtt=PGTT_FS, did=DID, flptptr=fs.root)
        vtd.set_context(0, TD_DEVFN, pdir)
        vtd.enable()
        vtd.enable_queue()
        self.assertEqual(dev.attach_notifier(TD_NOTIFY_MAP), 'refused')
        self.assertIsNone(dev.attach_notifier(TD_NOTIFY_UNMAP_ONLY))
        self.assertEqual(self.read_byte(dev, IOVA), ('ok', 0x11))
        vtd.write_quads(fs.entries(IOVA)[-1], 0)
        vtd.invalidate(vtd.desc_piotlb_page(DID, 0, IOVA))
        self.assertEqual(dev.mirror_counters()[1], 1, 'no UNMAP for the invalidated page')
        vm.shutdown()
        self.assertIn('cannot be shadowed for vfio with first-stage translation', vm.get_log())

if __name__ == '__main__':
    rviommu_kit.QtestVmTest.main()
