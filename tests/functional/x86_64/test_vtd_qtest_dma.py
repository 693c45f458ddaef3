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

from qemu.machine.qtest import QEMUQtestMachine  # noqa: E402
from qemu_test import QemuSystemTest  # noqa: E402

import rviommu_kit  # noqa: E402

from vtd_qtest import (Qtest, Edu, LegacyVtd, VTD_BASE, FSTS,  # noqa: E402
                       FSTS_PPF, PTE_R)

EDU_BDF = 0x20            # 00:04.0
EDU_BAR0 = 0xfe000000
IOVA = 0x200000
PHYS = 0x600000
PATTERN = bytes((i * 7 + 3) & 0xff for i in range(256))


class VtdQtestDma(QemuSystemTest):

    def setUp(self):
        super().setUp()
        self._qtest_vms = []

    def tearDown(self):
        # before the base class removes the scratch dir holding their logs
        for vm in self._qtest_vms:
            vm.shutdown()
        super().tearDown()

    def firmware(self):
        kit, why = rviommu_kit.Kit.load()
        if kit is None:
            self.fail(why)
        return kit.firmware_dir

    def launch(self, *extra):
        vm = QEMUQtestMachine(self.qemu_bin, base_temp_dir=self.workdir,
                              name='vtd-qtest')
        vm.add_args('-L', self.firmware(),
                    '-machine', 'q35', '-accel', 'qtest', '-m', '128M',
                    '-nodefaults', '-display', 'none',
                    '-device', 'intel-iommu' + ''.join(',' + e for e in extra),
                    '-device', 'edu,addr=04.0')
        vm.launch()
        self._qtest_vms.append(vm)
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

    def test_translation_disabled_is_identity(self):
        vm, qt, edu, vtd = self.launch()
        qt.memwrite(PHYS, PATTERN)
        got = self.roundtrip(qt, edu, PHYS, PHYS + 0x100, PHYS + 0x100)
        self.assertEqual(got, PATTERN)


if __name__ == '__main__':
    QemuSystemTest.main()
