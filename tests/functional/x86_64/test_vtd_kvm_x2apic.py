#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""eim=on with KVM's split irqchip enables KVM's x2APIC API, as the C
device does: without KVM_CAP_X2APIC_API (32-bit destination ids, no
broadcast quirk) KVM would take a remapped interrupt to APIC id 0xff in
x2APIC mode for a broadcast and cut destinations above 255 to 8 bits.

Each build is started (-S, then quit) with eim=on and eim=off and QEMU's
`kvm_vm_ioctl` trace counts its KVM_ENABLE_CAP calls: eim=on makes exactly
one more (the X2APIC_API one), the same on the C device and ours. Needs a
usable /dev/kvm (skipped otherwise)."""

import os
import subprocess

from qemu_test import QemuSystemTest

import rviommu_kit

KVM_ENABLE_CAP = 0x4068aea3      # _IOW(KVMIO, 0xa3, struct kvm_enable_cap)


def kvm_usable():
    try:
        os.close(os.open('/dev/kvm', os.O_RDWR))
        return True
    except OSError:
        return False


class VtdKvmX2apic(rviommu_kit.ReferenceTest):

    def enable_caps(self, binary, eim):
        out = subprocess.run(
            [binary, '-L', self.fw, '-accel', 'kvm', '-machine', 'q35,kernel-irqchip=split',
             '-m', '128M', '-nodefaults', '-display', 'none', '-S',
             '-device', f'intel-iommu,intremap=on,eim={eim}', '-trace', 'kvm_vm_ioctl',
             '-qmp', 'stdio'],
            input='{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n',
            capture_output=True, text=True, timeout=120, check=False)
        self.assertEqual(out.returncode, 0, f'{binary} eim={eim}: {out.stderr[-600:]}')
        return sum(1 for line in out.stderr.splitlines()
                   if 'kvm_vm_ioctl' in line and f'type 0x{KVM_ENABLE_CAP:x}' in line)

    def test_eim_enables_the_x2apic_api(self):
        if not kvm_usable():
            self.skipTest('no usable /dev/kvm')
        counts = {}
        for name, binary in (('C', self.ref_bin), ('Rust', self.qemu_bin)):
            counts[name] = {eim: self.enable_caps(binary, eim) for eim in ('on', 'off')}
            self.assertEqual(counts[name]['on'] - counts[name]['off'], 1,
                             f'{name}: KVM_ENABLE_CAP calls {counts[name]}')
        self.assertEqual(counts['Rust'], counts['C'])


if __name__ == '__main__':
    QemuSystemTest.main()
