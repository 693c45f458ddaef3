#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Our build finds its firmware without -L (issue 19): it is configured with
--firmwarepath=$CACHE/firmware, where the guest kit links SeaBIOS, the
x86 option ROMs and iPXE (scripts/setup.sh, scripts/guest/kit.sh). A q35
machine with -kernel (linuxboot_dma.bin), a NIC (its iPXE ROM) and a VGA
(its VGA BIOS) must start and boot a guest to its /init without -L; the
aarch64 binary beside it finds Debian's AAVMF by QEMU's own name for it,
`-bios edk2-aarch64-code.fd`."""

import os
import subprocess

from qemu_test import QemuSystemTest

from rviommu_kit import RvIommuGuestTest


class FirmwareDefault(RvIommuGuestTest):

    def test_q35_starts_without_L(self):
        kit = self.kit
        vm = self.get_vm(name='nofw')
        vm.add_args('-M', 'q35', '-accel', 'qtest', '-nodefaults', '-display', 'none',
                    '-kernel', kit.kernel, '-device', 'e1000e', '-device', 'VGA')
        vm.launch()
        self.assertEqual(vm.cmd('query-status')['status'], 'running')
        vm.shutdown()

    def test_virt_finds_edk2_by_name(self):
        aarch64 = os.path.join(os.path.dirname(self.qemu_bin), 'qemu-system-aarch64')
        r = subprocess.run([aarch64, '-M', 'virt', '-cpu', 'max', '-accel', 'qtest',
                            '-nodefaults', '-display', 'none', '-bios', 'edk2-aarch64-code.fd',
                            '-qmp', 'stdio'],
                           input='{"execute": "qmp_capabilities"} {"execute": "quit"}',
                           capture_output=True, text=True, timeout=60, check=False)
        self.log.info('%s: %d %s', aarch64, r.returncode, r.stderr)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('"host-qmp-quit"', r.stdout)

    def test_guest_boots_without_L(self):
        kit = self.kit
        vm = self.get_vm(name='nofw-boot')
        vm.add_args('-M', 'q35,kernel-irqchip=split', '-accel', 'tcg', '-m', '512M',
                    '-nodefaults', '-device', 'intel-iommu,intremap=on')
        self.add_disk(vm, kit.disk)
        res = self.boot_and_collect(vm, kit.dma_initramfs(), f'rviommu.sha256={kit.disk_sha256}')
        self.assertGuestPassed(res)
        self.assertEqual(res.value('SHA256'), kit.disk_sha256)


if __name__ == '__main__':
    QemuSystemTest.main()
