#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Legacy-mode DMA remapping of intel-iommu, driven over qtest.

QEMU's `edu` device is the DMA engine; the test programs the IOMMU the way
a guest driver would and checks data and fault records.
"""

import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qemu_test import QemuSystemTest  # noqa: E402

import rviommu_kit  # noqa: E402

from vtd_qtest import (lapic_irr, Qtest, Edu, LegacyVtd, VTD_BASE, FSTS,  # noqa: E402
                       FSTS_PPF, PTE_R, FECTL, FEDATA, FEADDR, FECTL_IM,
                       FECTL_IP, IQH)

EDU_BDF = 0x20            # 00:04.0
EDU_BAR0 = 0xfe000000
IOVA = 0x200000
PHYS = 0x600000
PATTERN = bytes((i * 7 + 3) & 0xff for i in range(256))


class VtdQtestDma(rviommu_kit.QtestVmTest):

    def launch(self, *extra):
        vm = self.qtest_vm('vtd-qtest', 'intel-iommu' + ''.join(',' + e for e in extra),
                           'edu,addr=04.0')
        qt = Qtest(vm)
        return vm, qt, Edu(qt, EDU_BDF, EDU_BAR0), LegacyVtd(qt)

    def mapped_vtd(self, *extra):
        vm, qt, edu, vtd = self.launch(*extra)
        top = vtd.new_address_space()
        vtd.map_4k(top, IOVA, PHYS)
        vtd.set_context(0, EDU_BDF, top)
        vtd.enable()
        return vm, qt, edu, vtd, top

    def roundtrip(self, qt, edu, src_iova, dst_iova, dst_phys):
        qt.memwrite(dst_phys, bytes(len(PATTERN)))
        edu.dma_from_memory(src_iova, len(PATTERN))
        edu.dma_to_memory(dst_iova, len(PATTERN))
        return qt.memread(dst_phys, len(PATTERN))

    def test_translated_dma_reaches_mapped_page(self):
        for aw in ('48', '39'):
            with self.subTest(aw_bits=aw):
                vm, qt, edu, vtd, _ = self.mapped_vtd(f'aw-bits={aw}')
                self.assertEqual(vtd.levels, 4 if aw == '48' else 3)
                qt.memwrite(PHYS, PATTERN)
                got = self.roundtrip(qt, edu, IOVA, IOVA + 0x100, PHYS + 0x100)
                self.assertEqual(got, PATTERN)
                self.assertEqual(vtd.reg(FSTS) & FSTS_PPF, 0)
                # The same data must not have gone to the IOVA as a physical address
                self.assertNotEqual(qt.memread(IOVA + 0x100, len(PATTERN)), PATTERN)
                vm.shutdown()

    def test_unmapped_iova_is_recorded_as_fault(self):
        vm, qt, edu, vtd, _ = self.mapped_vtd()
        unmapped = IOVA + 0x400000
        edu.dma_from_memory(unmapped, 64)
        fsts = vtd.reg(FSTS)
        self.assertTrue(fsts & FSTS_PPF, f'FSTS=0x{fsts:x}: no primary fault pending')
        rec = vtd.fault_record()
        self.log.info('fault record: %s', rec)
        self.assertTrue(rec['fault'])
        self.assertEqual(rec['sid'], EDU_BDF)
        self.assertEqual(rec['address'], unmapped)
        self.assertTrue(rec['read'])
        self.assertIn(rec['reason'], (0x6, 0x7))   # read of a not-present entry
        # QEMU keeps running and the IOMMU keeps translating
        self.assertEqual(vm.qmp('query-status')['return']['status'], 'running')
        qt.memwrite(PHYS, PATTERN)
        self.assertEqual(self.roundtrip(qt, edu, IOVA, IOVA + 0x100, PHYS + 0x100), PATTERN)
        # RW1C of the fault record clears PPF
        vtd.clear_fault_record()
        self.assertEqual(vtd.reg(FSTS) & FSTS_PPF, 0)

    def test_write_to_read_only_page_faults(self):
        vm, qt, edu, vtd, top = self.mapped_vtd()
        vtd.map_4k(top, IOVA + 0x1000, PHYS + 0x1000, perm=PTE_R)
        qt.memwrite(PHYS + 0x1000, bytes(64))
        edu.dma_to_memory(IOVA + 0x1000, 64)
        rec = vtd.fault_record()
        self.assertTrue(rec['fault'])
        self.assertFalse(rec['read'])
        self.assertEqual(rec['reason'], 0x5)
        self.assertEqual(qt.memread(PHYS + 0x1000, 64), bytes(64))

    def test_device_without_context_entry_faults(self):
        vm, qt, edu, vtd = self.launch()
        vtd.enable()          # root table empty: root entry not present
        edu.dma_from_memory(IOVA, 64)
        rec = vtd.fault_record()
        self.assertTrue(rec['fault'])
        self.assertEqual(rec['reason'], 0x1)
        self.assertEqual(vm.qmp('query-status')['return']['status'], 'running')

    # where dma_read copies the device buffer out to, mapped by stale_mapping
    SCRATCH_IOVA = IOVA + 0x5000
    SCRATCH = PHYS + 0x30000

    def dma_read(self, qt, edu, vtd, iova):
        """Read len(PATTERN) bytes at `iova` through the device."""
        edu.dma_from_memory(iova, len(PATTERN))
        qt.memwrite(self.SCRATCH, bytes(len(PATTERN)))
        edu.dma_to_memory(self.SCRATCH_IOVA, len(PATTERN))
        return qt.memread(self.SCRATCH, len(PATTERN))

    def stale_mapping(self, queued):
        """IOVA cached by one DMA, then its PTE moved to another page (with
        other data) without telling the IOMMU: DMA must still see the old
        page.  Returns what the new page holds."""
        vm, qt, edu, vtd, top = self.mapped_vtd()
        vtd.map_4k(top, self.SCRATCH_IOVA, self.SCRATCH)
        other = PHYS + 0x10000
        new_pattern = bytes(reversed(PATTERN))
        qt.memwrite(PHYS, PATTERN)
        qt.memwrite(other, new_pattern)
        if queued:
            vtd.enable_queue()
        self.assertEqual(self.dma_read(qt, edu, vtd, IOVA), PATTERN)
        vtd.map_4k(top, IOVA, other)
        self.assertEqual(self.dma_read(qt, edu, vtd, IOVA), PATTERN,
                         'the IOTLB must keep the old translation until invalidated')
        return vm, qt, edu, vtd, new_pattern

    def test_iotlb_is_stale_until_queued_page_invalidation(self):
        vm, qt, edu, vtd, new_pattern = self.stale_mapping(queued=True)
        status = PHYS + 0x40000
        qt.memwrite(status, bytes(4))
        # ... an invalidation of another domain does not help ...
        vtd.submit(vtd.desc_iotlb_page(2, IOVA), vtd.desc_wait(status, 0x1111))
        self.assertEqual(struct.unpack('<I', qt.memread(status, 4))[0], 0x1111)
        self.assertEqual(self.dma_read(qt, edu, vtd, IOVA), PATTERN)
        # ... nor one of another page of the right domain ...
        vtd.submit(vtd.desc_iotlb_page(1, IOVA + 0x1000), vtd.desc_wait(status, 0x2222))
        self.assertEqual(struct.unpack('<I', qt.memread(status, 4))[0], 0x2222)
        self.assertEqual(self.dma_read(qt, edu, vtd, IOVA), PATTERN)
        # ... the page-selective invalidation of the right page does
        vtd.submit(vtd.desc_iotlb_page(1, IOVA), vtd.desc_wait(status, 0x3333))
        self.assertEqual(struct.unpack('<I', qt.memread(status, 4))[0], 0x3333)
        self.assertEqual(vtd.reg(IQH, 8), vtd.queue_tail << 4)
        self.assertEqual(self.dma_read(qt, edu, vtd, IOVA), new_pattern)
        self.assertEqual(vtd.reg(FSTS) & 0x70, 0)      # no IQE/ICE/ITE

    def test_iotlb_is_stale_until_register_invalidation(self):
        vm, qt, edu, vtd, new_pattern = self.stale_mapping(queued=False)
        vtd.register_iotlb_invalidate_global()
        self.assertEqual(self.dma_read(qt, edu, vtd, IOVA), new_pattern)

    def test_bad_descriptor_is_a_queue_error(self):
        vm, qt, edu, vtd, _ = self.mapped_vtd()
        vtd.enable_queue()
        vtd.submit((0xf, 0))                           # no such descriptor type
        self.assertTrue(vtd.reg(FSTS) & (1 << 4), 'FSTS.IQE not set')
        self.assertEqual(vtd.reg(IQH, 8), 0, 'IQH must point at the bad descriptor')
        self.assertEqual(vm.qmp('query-status')['return']['status'], 'running')

    def test_fault_event_interrupt_honours_mask(self):
        vm, qt, edu, vtd, _ = self.mapped_vtd()
        # The fault event goes to the local APIC as the C device sends it
        # (the APIC bus); the test reads the APIC's IRR for its vector.
        qt.writel(VTD_BASE + FEDATA, 0x67)
        qt.writel(VTD_BASE + FEADDR, 0xfee00000)
        self.assertTrue(vtd.reg(FECTL) & FECTL_IM)     # masked out of reset
        edu.dma_from_memory(IOVA + 0x400000, 64)       # unmapped: primary fault
        self.assertTrue(vtd.reg(FECTL) & FECTL_IP, 'masked event not pending')
        self.assertNotIn(0x67, lapic_irr(vm), 'masked event was delivered')
        qt.writel(VTD_BASE + FECTL, 0)                 # unmask: pending event fires
        self.assertIn(0x67, lapic_irr(vm))
        self.assertFalse(vtd.reg(FECTL) & FECTL_IP)

    def test_translation_disabled_is_identity(self):
        vm, qt, edu, vtd = self.launch()
        qt.memwrite(PHYS, PATTERN)
        got = self.roundtrip(qt, edu, PHYS, PHYS + 0x100, PHYS + 0x100)
        self.assertEqual(got, PATTERN)


if __name__ == '__main__':
    QemuSystemTest.main()
