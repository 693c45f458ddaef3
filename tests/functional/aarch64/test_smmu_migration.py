#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Migration of the SMMU between QEMU 10.2.2's C arm-smmuv3 and ours.

Two levels: a qtest driver's SMMU state (below), and a Linux guest reading
its disk through the SMMU in a loop while it is migrated (SmmuGuestMigration).

Under qtest, a driver programs the SMMU on one build (stream table, queues
with commands consumed and events recorded, a stage-1 or stage-2 stream
translating rviommu-testdev's DMA, GBPA changed so that the `smmuv3/gbpa`
subsection travels or not), migrates it to the other build, and checks
there: every register reads as before, the device's DMA still translates
through the migrated tables, the command queue goes on at the migrated
index and new events are written after the migrated ones. C -> Rust -> C.
"""

import os
import re
import time

from qemu.machine import QEMUMachine
from qemu.machine.qtest import QEMUQtestMachine
from qemu_test import QemuSystemTest, wait_for_console_pattern

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


class SmmuMigration(rviommu_kit.MachinesTest):

    timeout = 120

    def binary(self, build):
        return self.aarch64_binary(build)

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


# /init body of the migrated guest: read the whole disk `rviommu.loops` times (page cache
# dropped before each read, so every read is DMA through the SMMU), print each sum.
READ_LOOP = r"""
want=$(kparam sha256)
n=$(kparam loops)
i=0
while [ $i -lt $n ]; do
    echo 3 > /proc/sys/vm/drop_caches
    sum=$(sha256sum /dev/vda | cut -d' ' -f1)
    echo "RVIOMMU-LOOP: $i $sum"
    [ "$sum" = "$want" ] || { fail "read $i: $sum"; break; }
    i=$((i + 1))
done
dmesg | grep -i -e arm-smmu -e smmuv3 | sed 's/^/RVIOMMU-SMMU-LOG: /'
[ $i -eq $n ] && pass
"""


class SmmuGuestMigration(rviommu_kit.RvIommuGuestTest):
    """A Debian arm64 guest under DMA load (strict DMA domains: every read maps and
    unmaps through the SMMU's stage 1) migrated from the C device to ours and from
    ours to the C device, on -M virt,iommu=smmuv3 under TCG."""

    LOOPS = 10
    KERNEL_PARAMS = 'console=ttyAMA0 panic=-1 iommu.strict=1'

    def setUp(self):
        QemuSystemTest.setUp(self)    # not RvIommuGuestTest's: that one wants the x86 kit
        self.kit, why = rviommu_kit.Kit.load(arch='arm64')
        if self.kit is None:
            self.fail(why)    # not a skip: a missing kit must not look like a pass
        self.guest_vms = []

    def tearDown(self):
        for vm in self.guest_vms:
            vm.shutdown()
        super().tearDown()

    def binary(self, build):
        path = os.path.join(rviommu_kit.cache_dir(), build, 'build', 'qemu-system-aarch64')
        if not os.access(path, os.X_OK):
            self.fail(f'no {path} (scripts/setup.sh {build})')
        return path

    def guest_vm(self, build, initrd, append, incoming=None):
        vm = QEMUMachine(self.binary(build), base_temp_dir=self.workdir)
        vm.set_machine('virt,gic-version=3,iommu=smmuv3')
        vm.set_console()
        vm.add_args('-accel', 'tcg', '-cpu', 'max', '-smp', '1', '-m', '1G', '-nodefaults',
                    '-no-reboot')
        self.add_disk(vm, self.kit.disk)
        vm.add_args('-kernel', self.kit.kernel, '-initrd', initrd, '-append', append)
        if incoming:
            vm.add_args('-incoming', f'file:{incoming}')
        vm.launch()
        self.guest_vms.append(vm)
        return vm

    def migrate_guest(self, src, dst):
        initrd = self.kit.initramfs('smmu-mig-loop', READ_LOOP,
                                    (rviommu_kit.repo_dir() / 'tests' / 'guest'
                                     / 'dma-read.modules').read_text().split())
        append = (f'{self.KERNEL_PARAMS} rviommu.timeout=300 '
                  f'rviommu.sha256={self.kit.disk_sha256} rviommu.loops={self.LOOPS}')
        vm = self.guest_vm(src, initrd, append)
        wait_for_console_pattern(self, 'RVIOMMU-LOOP: 1 ', vm=vm)
        path = os.path.join(self.workdir, f'guest-{len(self.guest_vms)}.mig')
        vm.cmd('migrate', uri=f'file:{path}')
        self.assertEqual(migration_status(vm, timeout=120), 'completed')
        vm.shutdown()
        dst_vm = self.guest_vm(dst, initrd, append, incoming=path)
        self.assertEqual(migration_status(dst_vm, timeout=120), 'completed')
        out = wait_for_console_pattern(self, 'RVIOMMU-TEST-END',
                                       failure_message='Kernel panic - not syncing', vm=dst_vm)
        res = rviommu_kit.GuestResult(out.decode(errors='replace'))
        loops = res.values.get('LOOP', [])
        self.log.info('%s -> %s: reads after migration: %s', src, dst, loops)
        self.assertEqual(res.result, 'PASS', f'{res.reason} (reads: {loops})')
        self.assertGreaterEqual(len(loops), 2, 'no read after the migration')
        log = res.values.get('SMMU-LOG', [])
        self.assertEqual([l for l in log if re.search(r'event 0x|error|fault|timeout', l, re.I)],
                         [], 'SMMU events or errors in the guest')
        dst_vm.wait(timeout=60)

    def test_guest_reads_its_disk_across_migration_c_to_rust(self):
        self.migrate_guest('ref', 'rs')

    def test_guest_reads_its_disk_across_migration_rust_to_c(self):
        self.migrate_guest('rs', 'ref')


if __name__ == '__main__':
    QemuSystemTest.main()
