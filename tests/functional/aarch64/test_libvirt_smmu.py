#!/usr/bin/env python3
#
# Our arm-smmuv3 driven by a real libvirt (Debian 12's libvirt 9.0, `scripts/setup.sh
# testdeps`): the build installed with scripts/install.sh and named as the domain's
# <emulator>, a private libvirtd in session mode started by the test
# (tests/functional/libvirt_session.py), as tests/functional/x86_64/test_libvirt_intel.py
# does for intel-iommu.
#
# - domcapabilities of ours and of the reference build (the C arm-smmuv3): libvirt probes
#   the same capabilities from both, machine.virt.iommu among them;
# - a TCG `virt` domain with <iommu model='smmuv3'/> (libvirt makes it the machine's SMMU,
#   `-machine virt,iommu=smmuv3`), UEFI (<os firmware='efi'>: the AAVMF that
#   scripts/install.sh installs, found through its firmware descriptor) and ACPI (the SMMU
#   in the IORT), a stock Debian arm64 kernel whose guest reads its disk through the SMMU
#   round after round (tests/guest/disk-rounds.sh);
#   the SMMU is ours (its x-msi property in `info qtree`); virsh save, restore (the guest
#   carries on), destroy;
# - the same guest saved by ours, restored by the C SMMU's build, saved again, restored by
#   ours (virsh restore --xml naming the other emulator).
# UEFI and ACPI are not a choice: libvirt 9.0 starts a domain without <acpi/> with
# `-no-acpi`, which QEMU 10.2 no longer has, and an aarch64 domain with ACPI needs UEFI.
#
# SPDX-License-Identifier: GPL-2.0-or-later

import re

from qemu_test import QemuSystemTest

from libvirt_session import LibvirtTest
from rviommu_kit import Kit, cache_dir


class LibvirtSmmu(LibvirtTest):

    NAME = 'rv-smmu'

    def setUp(self):
        super().setUp()
        self.kit, why = Kit.load(arch='arm64')
        if self.kit is None:
            self.fail(why)
        self.emulator = self.prefix / 'bin' / 'qemu-system-aarch64'

    def test_domcapabilities(self):
        machine, ours = self.same_capabilities_as_reference('qemu-system-aarch64', 'virt', 'aarch64')
        self.assertRegex(machine, r'^virt-[0-9.]+$')
        self.assertIn('machine.virt.iommu', ours)

    def start_rounds(self, name):
        """Domain `name` (the machine's SMMUv3, UEFI, ACPI) whose guest reads its
        disk in rounds; (its command line, console file, sha256)."""
        kernel, initrd, disk, sha, console, cmdline = self.rounds_guest(
            self.kit, name, 'rviommu-libvirt-smmu', 'console=ttyAMA0 panic=-1')
        xml = f'''<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>1024</memory>
  <vcpu>2</vcpu>
  <os firmware='efi'>
    <type arch='aarch64' machine='virt'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features><acpi/><gic version='3'/></features>
  <cpu mode='maximum'/>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{self.emulator}</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' iommu='on'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
      <readonly/>
    </disk>
    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path='{console}' append='on'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
    <iommu model='smmuv3'/>
  </devices>
</domain>
'''
        # As a user of the installation would: its firmware descriptor where libvirt
        # looks (here the session's ~/.config/qemu/firmware; for a system libvirt,
        # /etc/qemu/firmware), for <os firmware='efi'>.
        self.lv.link_firmware_descriptor(
            self.prefix / 'share' / 'qemu' / 'firmware' / '60-edk2-aarch64.json')
        path = self.lv.dir / f'{name}.xml'
        path.write_text(xml)
        self.lv.virsh('create', str(path))
        cmd = self.lv.command_line(name)
        self.log.info('QEMU command line: %s', cmd)
        return cmd, console, sha

    def test_guest_save_restore(self):
        cmd, console, sha = self.start_rounds(self.NAME)
        self.assertIn(f'{self.emulator} -name guest={self.NAME}', cmd)
        self.assertRegex(cmd, r'-machine virt-[0-9.]+,[^ ]*iommu=smmuv3')
        qtree = self.lv.virsh('qemu-monitor-command', '--hmp', self.NAME, 'info qtree')
        smmu = re.search(r'dev: arm-smmuv3, id ""\n((?:\s{4,}.*\n)+)', qtree)
        self.assertIsNotNone(smmu, 'no arm-smmuv3 in info qtree')
        self.assertIn('x-msi = ', smmu[1], 'the arm-smmuv3 is not ours (no x-msi property)')
        text = self.wait_console(console, r'^RVIOMMU-ROUND: ', 300)
        self.assertRegex(text, r'RVIOMMU-IOMMU-DOMAIN: DMA(-FQ)?\s')
        self.assertRegex(text, r'arm-smmu-v3 \S+: ias \d+-bit, oas \d+-bit')
        self.save_restore(self.NAME, console, sha, self.DISK_MIB * 2048)
        self.destroy(self.NAME)

    def test_restore_across_builds(self):
        """Saved by ours, restored by the C SMMU's build, saved again and restored
        by ours: the guest reads on through each."""
        ref = self.lv.install(cache_dir() / 'ref' / 'build', 'ref')
        _, console, sha = self.start_rounds(self.NAME)
        self.save_restore(self.NAME, console, sha, self.DISK_MIB * 2048,
                          emulator=ref / 'bin' / 'qemu-system-aarch64')
        self.save_restore(self.NAME, console, sha, self.DISK_MIB * 2048, emulator=self.emulator)
        self.destroy(self.NAME)


if __name__ == '__main__':
    QemuSystemTest.main()
