#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Migration of the SMMU between QEMU 10.2.2's C arm-smmuv3 and ours.

Under qtest, a driver programs the SMMU on one build (stream table, queues
with commands consumed and events recorded, a stage-1 or stage-2 stream
translating rviommu-testdev's DMA, GBPA changed so that the `smmuv3/gbpa`
subsection travels or not), migrates it to the other build, and checks
there: every register reads as before, the device's DMA still translates
through the migrated tables, the command queue goes on at the migrated
index and new events are written after the migrated ones. C -> Rust -> C.
"""

import os
import time

from qemu.machine.qtest import QEMUQtestMachine
from qemu_test import QemuSystemTest

import rviommu_kit
from smmu_qtest import (VirtQtest, Smmu, PageTable, TestDev, SMMU_BASE, PCI_MMIO_BASE, RAM_BASE,
                        STE_S1, STE_S2, TD_OK, GBPA, CMDQ_CONS, EVENTQ_PROD)

TESTDEV_BDF = 2 << 3
PAGE_A = RAM_BASE + 0x1800000
IOVA = 0x8000000
REGISTERS = list(range(0, 0x100, 4)) + [0x100a8, 0x100ac]


def migration_status(vm, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        status = vm.cmd('query-migrate').get('status')
        if status in ('completed', 'failed') or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


class SmmuMigration(QemuSystemTest):

    timeout = 120

    def setUp(self):
        super().setUp()
        self.vms = []

    def tearDown(self):
        for vm in self.vms:
            vm.shutdown()
        super().tearDown()

    def binary(self, build):
        path = os.path.join(rviommu_kit.cache_dir(), build, 'build', 'qemu-system-aarch64')
        if not os.access(path, os.X_OK):
            self.fail(f'no {path} (scripts/setup.sh {build})')
        return path

    def machine(self, build, incoming=None):
        vm = QEMUQtestMachine(self.binary(build), base_temp_dir=self.workdir, name=f'mig-{build}')
        vm.add_args('-M', 'virt,iommu=smmuv3', '-accel', 'qtest', '-m', '512M', '-nodefaults',
                    '-display', 'none', '-device', 'rviommu-testdev,addr=02.0')
        if incoming:
            vm.add_args('-incoming', f'file:{incoming}')
        vm.launch()
        self.vms.append(vm)
        return vm

    def hop(self, vm, build, n):
        """Migrate `vm` to a new machine of `build`; the new one."""
        path = os.path.join(self.workdir, f'smmu-{n}.mig')
        vm.cmd('migrate', uri=f'file:{path}')
        self.assertEqual(migration_status(vm), 'completed', 'outgoing migration')
        vm.shutdown()
        self.vms.remove(vm)
        dst = self.machine(build, incoming=path)
        self.assertEqual(migration_status(dst), 'completed', f'incoming migration into {build}')
        return dst

    def run_chain(self, stage, gbpa_abort):
        vm = self.machine('ref')
        qt = VirtQtest(vm)
        smmu = Smmu(qt, SMMU_BASE)
        dev = TestDev(qt, TESTDEV_BDF, PCI_MMIO_BASE)
        if gbpa_abort:
            smmu.set_gbpa(abort=True)           # away from its reset value: the subsection
        smmu.enable()
        pt = PageTable(smmu, stage)
        pt.map(IOVA, PAGE_A)
        if stage == 1:
            smmu.ste(TESTDEV_BDF, STE_S1, cd=smmu.cd(pt.root))
        else:
            smmu.ste(TESTDEV_BDF, STE_S2, s2ttb=pt.root)
        self.assertEqual(dev.write_memory(IOVA, b'before'), TD_OK)
        self.assertNotEqual(dev.write_memory(IOVA + 0x200000, b'x'), TD_OK)
        events = smmu.events()
        self.assertTrue(events, 'a translation fault recorded before migration')
        for n, build in enumerate(['rs', 'ref']):
            before = {off: smmu.rd(off) for off in REGISTERS}
            vm = self.hop(vm, build, n)
            qt = VirtQtest(vm)
            smmu.qt = qt
            # rviommu-testdev migrates no state (its BAR is set up again).
            dev = TestDev(qt, TESTDEV_BDF, PCI_MMIO_BASE)
            after = {off: smmu.rd(off) for off in REGISTERS}
            diff = {hex(o): (hex(before[o]), hex(after[o])) for o in before if before[o] != after[o]}
            self.assertEqual(diff, {}, f'registers after migration into {build} (source, destination)')
            self.assertEqual(smmu.rd(GBPA) >> 20 & 1, int(gbpa_abort), 'GBPA.ABORT')
            # DMA through the migrated configuration (caches start empty).
            data = f'after-{build}'.encode()
            self.assertEqual(dev.write_memory(IOVA, data), TD_OK, build)
            self.assertEqual(qt.memread(PAGE_A, len(data)), data, build)
            # The queues go on where they were: a command is consumed...
            cons = smmu.rd(CMDQ_CONS)
            smmu.sync()
            self.assertEqual(smmu.rd(CMDQ_CONS), (cons + 1) & 0x1ff, build)
            # ...and a new fault is written after the migrated events.
            prod = smmu.rd(EVENTQ_PROD)
            self.assertNotEqual(dev.write_memory(IOVA + 0x200000, b'y'), TD_OK, build)
            new = smmu.events()
            self.assertTrue(new, f'{build}: fault recorded after migration')
            self.assertEqual(new[0][0] & 0xff, 0x10, f'{build}: F_TRANSLATION')
            self.assertNotEqual(smmu.rd(EVENTQ_PROD), prod)

    def test_stage1_c_to_rust_and_back(self):
        self.run_chain(stage=1, gbpa_abort=False)

    def test_stage2_with_gbpa_subsection_c_to_rust_and_back(self):
        self.run_chain(stage=2, gbpa_abort=True)


if __name__ == '__main__':
    QemuSystemTest.main()
