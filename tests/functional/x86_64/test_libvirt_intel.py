#!/usr/bin/env python3
#
# Our intel-iommu driven by a real libvirt (Debian 12's libvirt 9.0, `scripts/setup.sh
# testdeps`), as a user would: the build installed with scripts/install.sh into a
# directory of its own and named as the domain's <emulator>, no -L and no command-line
# passthrough (the installed binary finds SeaBIOS and linuxboot_dma.bin by itself), a
# private libvirtd in session mode started by the test (tests/functional/libvirt_session.py).
#
# - domcapabilities of ours and of the reference build (the C intel-iommu): libvirt probes
#   the same capabilities from both, the intel-iommu ones and every other;
# - a TCG q35 domain with <iommu model='intel'> and all its driver attributes (intremap, eim,
#   caching_mode, iotlb, aw_bits), scalable `modern` mode through <qemu:override>, whose
#   guest reads its disk through the IOMMU round after round (tests/guest/disk-rounds.sh);
#   the mode read back through libvirt's monitor; virsh save, restore (the guest carries
#   on), destroy;
# - the same guest in legacy mode saved by ours, restored by the C device's build, saved
#   again, restored by ours (virsh restore --xml naming the other emulator);
# - a domain without the override reads its mode back as `off`.
#
# SPDX-License-Identifier: GPL-2.0-or-later

import re

from qemu_test import QemuSystemTest

from libvirt_session import LibvirtTest
from rviommu_kit import Kit, cache_dir


class LibvirtIntel(LibvirtTest):

    NAME = 'rv-intel'

    def setUp(self):
        super().setUp()
        self.kit, why = Kit.load()
        if self.kit is None:
            self.fail(why)
        self.emulator = self.prefix / 'bin' / 'qemu-system-x86_64'

    def test_domcapabilities(self):
        machine, ours = self.same_capabilities_as_reference('qemu-system-x86_64', 'q35', 'x86_64')
        self.assertRegex(machine, r'^pc-q35-[0-9.]+$')
        for flag in ('intel-iommu', 'intel-iommu.intremap', 'intel-iommu.caching-mode',
                     'intel-iommu.eim', 'intel-iommu.device-iotlb', 'intel-iommu.aw-bits'):
            self.assertIn(flag, ours)

    def domain_xml(self, name, console, override=None, cmdline='', initrd=None, disk=None,
                   kernel=None):
        """A q35 TCG domain booting the kit's kernel, with the intel IOMMU and all its
        driver attributes; `override`: the value of x-scalable-mode set through
        <qemu:override>."""
        kernel = kernel or self.lv.copy_in(self.kit.kernel, 'vmlinuz-amd64')
        boot = f'<kernel>{kernel}</kernel>'
        if initrd:
            boot += f'<initrd>{initrd}</initrd><cmdline>{cmdline}</cmdline>'
        disk_xml = ''
        if disk:
            disk_xml = f'''
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' iommu='on'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
      <readonly/>
    </disk>'''
        qemu_ns = ''
        if override:
            qemu_ns = f'''
  <qemu:override>
    <qemu:device alias='iommu0'>
      <qemu:frontend>
        <qemu:property name='x-scalable-mode' type='string' value='{override}'/>
      </qemu:frontend>
    </qemu:device>
  </qemu:override>'''
        return f'''<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    {boot}
  </os>
  <features><acpi/><apic/><ioapic driver='qemu'/></features>
  <cpu mode='maximum'/>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{self.emulator}</emulator>{disk_xml}
    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path='{console}' append='on'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
    <iommu model='intel'>
      <driver intremap='on' caching_mode='on' eim='on' iotlb='on' aw_bits='48'/>
    </iommu>
  </devices>{qemu_ns}
</domain>
'''

    def create(self, name, xml, *flags):
        path = self.lv.dir / f'{name}.xml'
        path.write_text(xml)
        self.lv.virsh('create', str(path), *flags)
        return self.lv.command_line(name)

    def start_rounds(self, name, override, sm_on):
        """Domain `name` (intel IOMMU, x-scalable-mode `override` if given) whose
        guest reads its disk in rounds; (its command line, console file, sha256)."""
        kernel, initrd, disk, sha, console, cmdline = self.rounds_guest(
            self.kit, name, 'rviommu-libvirt-intel',
            f'console=ttyS0 panic=-1 no_timer_check intel_iommu=on{",sm_on" if sm_on else ""}')
        cmd = self.create(name, self.domain_xml(name, console, override, cmdline, initrd, disk,
                                                kernel))
        self.log.info('QEMU command line: %s', cmd)
        return cmd, console, sha

    def test_modern_guest_save_restore(self):
        cmd, console, sha = self.start_rounds(self.NAME, 'modern', sm_on=True)
        self.assertIn(f'{self.emulator} -name guest={self.NAME}', cmd)
        self.assertIn('"driver":"intel-iommu"', cmd)
        self.assertNotIn(' -L ', cmd)
        for prop in ('"intremap":"on"', '"caching-mode":true', '"eim":"on"',
                     '"device-iotlb":true', '"aw-bits":48'):
            self.assertIn(prop, cmd)
        self.assertEqual(self.qmp(self.NAME, 'qom-get', path='/machine/peripheral/iommu0',
                                  property='x-scalable-mode'), 'modern')
        text = self.wait_console(console, r'^RVIOMMU-ROUND: ', 300)
        self.assertIn('RVIOMMU-IOMMU-DOMAIN: DMA', text)
        self.assertIn('DMAR-IR: Enabled IRQ remapping in x2apic mode', text)
        ecap = re.search(r'^RVIOMMU-IOMMU: dmar\d+ cap=\S+ ecap=([0-9a-f]+)', text, re.M)
        self.assertIsNotNone(ecap, 'the guest found no VT-d unit')
        ecap = int(ecap[1], 16)
        self.assertTrue(ecap & (1 << 43), 'ECAP.SMTS clear: not in scalable mode')
        self.assertTrue(ecap & (1 << 47), 'ECAP.FLTS clear: not the modern (first-stage) mode')
        self.save_restore(self.NAME, console, sha, self.DISK_MIB * 2048)
        self.destroy(self.NAME)

    def test_restore_across_builds(self):
        """Saved by ours, restored by the C device's build, saved again and restored
        by ours: the guest reads on through each (legacy mode, which both have)."""
        ref = self.lv.install(cache_dir() / 'ref' / 'build', 'ref')
        _, console, sha = self.start_rounds(self.NAME, None, sm_on=False)
        self.save_restore(self.NAME, console, sha, self.DISK_MIB * 2048,
                          emulator=ref / 'bin' / 'qemu-system-x86_64')
        self.save_restore(self.NAME, console, sha, self.DISK_MIB * 2048, emulator=self.emulator)
        self.destroy(self.NAME)

    def test_default_mode_reads_back_off(self):
        console = self.lv.writable('out') / 'rv-plain.console'
        self.create('rv-plain', self.domain_xml('rv-plain', console), '--paused')
        self.assertEqual(self.qmp('rv-plain', 'qom-get', path='/machine/peripheral/iommu0',
                                  property='x-scalable-mode'), 'off')
        self.lv.virsh('destroy', 'rv-plain')


if __name__ == '__main__':
    QemuSystemTest.main()
