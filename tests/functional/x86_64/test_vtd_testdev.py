#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""intel-iommu with our PCIe DMA test device (rviommu-testdev), over qtest:
untranslated DMA, ATS translation requests, the device's own translation
cache (device-TLB) and device-TLB invalidation reaching it.

The test plays the guest driver; no guest code runs (`-accel qtest`).
"""

import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qemu_test import QemuSystemTest  # noqa: E402

import rviommu_kit  # noqa: E402

from vtd_qtest import (TD_DEVFN, TD_BAR0, Qtest, LegacyVtd, TestDev, VTD_BASE, FSTS, FSTS_PPF,  # noqa: E402
                       PTE_R, TD_READ, TD_WRITE, TD_COMPARE, TD_XLATE,
                       TD_ATC_HITS, TD_ATC_INVALS, TD_RESULT, IQH)

IOVA = 0x300000
PHYS = 0x600000
PHYS2 = 0x700000
PATTERN = bytes((i * 13 + 5) & 0xff for i in range(512))
TT_DEVICE_TLB = 1         # legacy context entry: translation with device-TLB
TT_PASS_THROUGH = 2
IRTA = 0xb8                          # interrupt remapping table address
GCMD_CFI, GCMD_SIRTP, GCMD_IRE = 1 << 23, 1 << 24, 1 << 25
GSTS_CFIS, GSTS_IRTPS, GSTS_IRES = 1 << 23, 1 << 24, 1 << 25


class VtdTestDev(rviommu_kit.QtestVmTest):

    def launch(self, *iommu_props):
        vm = self.qtest_vm('testdev', 'intel-iommu' + ''.join(',' + p for p in iommu_props),
                           'rviommu-testdev,addr=05.0')
        qt = Qtest(vm)
        return qt, TestDev(qt, TD_DEVFN, TD_BAR0), LegacyVtd(qt)

    def map_device(self, vtd, tt=TT_DEVICE_TLB, perm=PTE_R | 2):
        top = vtd.new_address_space()
        vtd.map_4k(top, IOVA, PHYS, perm)
        vtd.set_context(0, TD_DEVFN, top, did=3, tt=tt)
        vtd.enable()
        return top

    def queue_and_wait(self, vtd, qt, *descs):
        status = vtd.alloc_page()
        vtd.submit(*descs, vtd.desc_wait(status, 0x5a))
        self.assertEqual(struct.unpack('<I', qt.memread(status, 4))[0], 0x5a)
        self.assertEqual(vtd.reg(IQH, 8), vtd.queue_tail << 4)

    def test_pci_identity_and_capabilities(self):
        qt, dev, vtd = self.launch('device-iotlb=on')
        self.assertEqual(qt.pci_cfg_readl(TD_DEVFN, 0), 0x11f01234)
        self.assertTrue(vtd.ecap & (1 << 2), 'ECAP.DT with device-iotlb=on')

    def test_untranslated_dma_goes_through_second_stage(self):
        qt, dev, vtd = self.launch('device-iotlb=on')
        self.map_device(vtd)
        dev.load_buffer(PATTERN)
        self.assertEqual(dev.dma(TD_WRITE, IOVA, len(PATTERN)), 'ok')
        self.assertEqual(qt.memread(PHYS, len(PATTERN)), PATTERN)
        self.assertEqual(dev.dma(TD_COMPARE, IOVA, len(PATTERN)), 'ok')
        # Unmapped IOVA: the DMA fails and the IOMMU records a fault.
        self.assertEqual(dev.dma(TD_READ, IOVA + 0x1000, 8), 'dma-error')
        self.assertTrue(vtd.reg(FSTS) & FSTS_PPF)
        rec = vtd.fault_record()
        self.assertEqual((rec['reason'], rec['sid'], rec['address']), (6, TD_DEVFN, IOVA + 0x1000))

    def test_pass_through_context_is_identity_and_blocks_ats(self):
        qt, dev, vtd = self.launch('device-iotlb=on')
        self.assertTrue(vtd.ecap & (1 << 6), 'ECAP.PT (pt=on is the default)')
        # The second-stage tables map IOVA elsewhere: TT = 10b must ignore them.
        self.map_device(vtd, tt=TT_PASS_THROUGH)
        dev.load_buffer(PATTERN)
        self.assertEqual(dev.dma(TD_WRITE, IOVA, len(PATTERN)), 'ok')
        self.assertEqual(qt.memread(IOVA, len(PATTERN)), PATTERN)
        self.assertEqual(qt.memread(PHYS, len(PATTERN)), bytes(len(PATTERN)))
        self.assertFalse(vtd.reg(FSTS) & FSTS_PPF)
        # Translation requests are blocked by TT = 10b (reason Dh).
        self.assertEqual(dev.dma(TD_READ, IOVA, 8, ats=True), 'ats-error')
        rec = vtd.fault_record()
        self.assertEqual((rec['fault'], rec['reason'], rec['sid'], rec['at']),
                         (True, 0xd, TD_DEVFN, 1))

    def test_ats_translation_and_translated_access(self):
        qt, dev, vtd = self.launch('device-iotlb=on')
        self.map_device(vtd)
        qt.memwrite(PHYS, PATTERN)
        self.assertEqual(dev.dma(TD_READ, IOVA + 0x10, 64, ats=True), 'ok')
        self.assertEqual(dev.buffer(64), PATTERN[0x10:0x50])
        self.assertEqual(dev.reg(TD_XLATE, 8), PHYS + 0x10)
        self.assertEqual(dev.reg(TD_RESULT), 1, 'one translation request')
        dev.load_buffer(b'\xee' * 32)
        self.assertEqual(dev.dma(TD_WRITE, IOVA + 0x100, 32, ats=True), 'ok')
        self.assertEqual(qt.memread(PHYS + 0x100, 32), b'\xee' * 32)
        # Not mapped: the translation completes without permission, and a
        # translation request records no fault.
        self.assertEqual(dev.dma(TD_READ, IOVA + 0x2000, 8, ats=True), 'ats-denied')
        self.assertFalse(vtd.reg(FSTS) & FSTS_PPF)

    def test_read_only_page_denies_ats_write(self):
        qt, dev, vtd = self.launch('device-iotlb=on')
        self.map_device(vtd, perm=PTE_R)
        self.assertEqual(dev.dma(TD_READ, IOVA, 8, ats=True), 'ok')
        self.assertEqual(dev.dma(TD_WRITE, IOVA, 8, ats=True), 'ats-denied')

    def test_device_tlb_is_stale_until_device_tlb_invalidation(self):
        qt, dev, vtd = self.launch('device-iotlb=on')
        top = self.map_device(vtd)
        vtd.enable_queue()
        qt.memwrite(PHYS, b'\x11' * 16)
        qt.memwrite(PHYS2, b'\x22' * 16)
        self.assertEqual(dev.dma(TD_READ, IOVA, 16, ats=True), 'ok')
        self.assertEqual(dev.buffer(16), b'\x11' * 16)
        # The guest moves the page and invalidates the IOTLB only: the
        # device keeps using its cached translation.
        vtd.map_4k(top, IOVA, PHYS2)
        self.queue_and_wait(vtd, qt, vtd.desc_iotlb_page(3, IOVA))
        self.assertEqual(dev.dma(TD_READ, IOVA, 16, ats=True), 'ok')
        self.assertEqual(dev.buffer(16), b'\x11' * 16, 'device-TLB hit expected')
        self.assertEqual(dev.reg(TD_ATC_HITS), 1)
        # Untranslated DMA sees the new page at once.
        self.assertEqual(dev.dma(TD_READ, IOVA, 16), 'ok')
        self.assertEqual(dev.buffer(16), b'\x22' * 16)
        # A device-TLB invalidation for another device changes nothing.
        self.queue_and_wait(vtd, qt, vtd.desc_device_tlb(TD_DEVFN + 1, IOVA))
        self.assertEqual(dev.reg(TD_ATC_INVALS), 0)
        self.assertEqual(dev.dma(TD_READ, IOVA, 16, ats=True), 'ok')
        self.assertEqual(dev.buffer(16), b'\x11' * 16)
        # The right one reaches the device, which asks again.
        self.queue_and_wait(vtd, qt, vtd.desc_device_tlb(TD_DEVFN, IOVA))
        self.assertEqual(dev.reg(TD_ATC_INVALS), 1)
        self.assertEqual(dev.dma(TD_READ, IOVA, 16, ats=True), 'ok')
        self.assertEqual(dev.buffer(16), b'\x22' * 16)
        self.assertEqual(dev.reg(TD_XLATE, 8), PHYS2)

    def test_ats_refused_without_device_tlb_in_context(self):
        qt, dev, vtd = self.launch('device-iotlb=on')
        self.map_device(vtd, tt=0)
        self.assertEqual(dev.dma(TD_READ, IOVA, 8, ats=True), 'ats-error')
        rec = vtd.fault_record()
        self.assertEqual((rec['fault'], rec['reason'], rec['sid']), (True, 0xd, TD_DEVFN))
        # Untranslated DMA still works through that context.
        self.assertEqual(dev.dma(TD_READ, IOVA, 8), 'ok')

    def test_ats_refused_without_device_iotlb_support(self):
        qt, dev, vtd = self.launch()
        # (TT = 01b would be a reserved translation type without ECAP.DT)
        self.map_device(vtd, tt=0)
        self.assertEqual(dev.dma(TD_READ, IOVA, 8, ats=True), 'ats-error')
        self.assertFalse(vtd.reg(FSTS) & FSTS_PPF, 'no fault: the IOMMU has no ATS')
        self.assertEqual(dev.dma(TD_READ, IOVA, 8), 'ok')

    def test_pasid_request_in_legacy_mode_is_refused(self):
        qt, dev, vtd = self.launch('device-iotlb=on')
        self.map_device(vtd)
        self.assertEqual(dev.dma(TD_READ, IOVA, 8, pasid=5, ats=True), 'ats-error')
        self.assertEqual(vtd.fault_record()['reason'], 0x31)

    def test_interrupt_remapping_faults(self):
        """MSIs the device writes (DMA writes to the interrupt address range)
        go through interrupt remapping; with x-strict-ir=on bad requests
        are recorded as the architected interrupt-remapping faults with
        their interrupt index: entry not present (22h), index beyond the
        table (21h), source-id check failed (26h), reserved bits (24h),
        compatibility format while it is blocked (25h); a good entry and,
        with GCMD.CFI, a compatibility-format request are not faults. By
        default (the C device's rules) a DMA write carries no requester id
        and is not source-id checked, and compatibility format passes."""
        for strict in (True, False):
            self.interrupt_remapping_faults(strict)

    def interrupt_remapping_faults(self, strict):
        qt, dev, vtd = self.launch('intremap=on' + (',x-strict-ir=on' if strict else ''))
        table = vtd.alloc_page()              # 256 entries of 16 bytes
        other_sid = TD_DEVFN + 1

        def irte(index, present=True, vector=0x40, sid=TD_DEVFN, svt=1, rsvd=0):
            lo = int(present) | (vector << 16) | rsvd     # fixed, physical, dest 0
            hi = sid | (svt << 18)                         # SQ 0: all 16 bits
            qt.memwrite(table + index * 16, struct.pack('<QQ', lo, hi))

        irte(0)
        irte(1, present=False)
        irte(2, sid=other_sid)
        irte(3, rsvd=1 << 13)                 # bits 14:12 are reserved
        qt.writeq(VTD_BASE + IRTA, table | 7)   # S = 7: 2^8 entries
        vtd._gcmd(GCMD_SIRTP, GSTS_IRTPS)
        vtd._gcmd(GCMD_IRE, GSTS_IRES)

        def msi(index=None, data=0):
            """The device writes an MSI: remappable format with `index`, or
            compatibility format (vector 0x33 to APIC 0) without."""
            if index is None:
                addr, data = 0xfee00000, 0x33
            else:
                addr = 0xfee00000 | ((index & 0x7fff) << 5) | (1 << 4) | ((index >> 15) << 2)
            dev.load_buffer(struct.pack('<I', data))
            dev.dma(TD_WRITE, addr, 4)
            recs = vtd.pending_faults()
            for i, _ in recs:
                vtd.clear_fault_record(i)
            qt.writel(VTD_BASE + FSTS, qt.readl(VTD_BASE + FSTS))
            return [(r['reason'], r['sid'], r['raw'][0] >> 48) for _, r in recs]

        self.assertEqual(msi(0), [], 'a valid entry')
        self.assertEqual(msi(1), [(0x22, TD_DEVFN, 1)])
        self.assertEqual(msi(300), [(0x21, TD_DEVFN, 300)])
        self.assertEqual(msi(2), [(0x26, TD_DEVFN, 2)] if strict else [])
        self.assertEqual(msi(3), [(0x24, TD_DEVFN, 3)])
        self.assertEqual(msi(None), [(0x25, TD_DEVFN, 0)] if strict else [])
        vtd._gcmd(GCMD_CFI, GSTS_CFIS)
        self.assertEqual(msi(None), [], 'compatibility format allowed (CFI)')
        self.assertEqual(msi(0), [], 'a valid entry again')


if __name__ == '__main__':
    QemuSystemTest.main()
