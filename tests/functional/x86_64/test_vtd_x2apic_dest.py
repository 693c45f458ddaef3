#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Remapped interrupts reach a CPU whose APIC id is above 255.

A q35 guest with two CPUs: APIC id 0 and, in the second socket of a
2 x 256-core topology, APIC id 256 (cold-plugged with -device). Such an id
needs x2APIC mode, which Linux enables only with interrupt remapping in
extended interrupt mode (intremap=on, eim=on). The guest reads its disk
(virtio-blk, one request queue per CPU) from CPU 1, whose queue's MSI-X
vector Linux routes to APIC id 256 through an IRTE with a 32-bit
destination. The reads must complete, CPU 1 must count the queue's
interrupts, and nothing may land on CPU 0 as a vector without a handler
(what a destination cut to 8 bits would do). Under TCG, and under KVM with
its split irqchip (the device enables KVM's x2APIC API for eim=on) when
/dev/kvm is usable.
"""

import os
import subprocess
import time

from qemu_test import QemuSystemTest

import rviommu_kit

GUEST = r'''
n=0
while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
[ -b /dev/vda ] || { fail "no /dev/vda"; return; }
echo "RVIOMMU-CPUS: $(cat /sys/devices/system/cpu/online)"
echo "RVIOMMU-APIC-IDS: $(awk '/^apicid/ { printf "%s ", $3 }' /proc/cpuinfo)"
echo "RVIOMMU-APIC-ROUTING: $(dmesg | sed -n 's/.*Switched APIC routing to: //p' | tail -1)"
dmesg | grep -qi 'Enabled IRQ remapping in x2apic mode' && echo "RVIOMMU-IR: x2apic mode"
# "<CPU0 count> <CPU1 count>" of the request queue of CPU 1
counts() { awk '/virtio[0-9]*-req\.1/ { print $2, $3 }' /proc/interrupts; }
before=$(counts)
[ -n "$before" ] || { cat /proc/interrupts; fail "no virtio-req.1 interrupt"; return; }
echo 3 > /proc/sys/vm/drop_caches
taskset -c 1 dd if=/dev/vda of=/dev/null bs=4096 count=4096 2>/dev/null \
    || { fail "reading the disk from CPU 1 failed"; return; }
after=$(counts)
echo "RVIOMMU-REQ1-IRQS: $before -> $after"
set -- $before $after
echo "RVIOMMU-CPU1-IRQS: $(($4 - $2))"
echo "RVIOMMU-CPU0-IRQS: $(($3 - $1))"
echo "RVIOMMU-SPURIOUS: $(dmesg | grep -c 'No irq handler for vector')"
pass
'''


def kvm_boots(qemu, kit):
    """Why KVM cannot run the kit's kernel here, or None when it can: /dev/kvm
    may open and still fail at the first instructions a guest kernel runs
    (nested KVM on some hosts: 'KVM internal error'); a short boot tells."""
    try:
        os.close(os.open('/dev/kvm', os.O_RDWR))
    except OSError as e:
        return f'no usable /dev/kvm ({e.strerror})'
    with subprocess.Popen([qemu, '-accel', 'kvm', '-M', 'q35', '-cpu', 'host', '-m', '256M',
                           '-nodefaults', '-display', 'none', '-serial', 'stdio', '-no-reboot',
                           '-L', kit.firmware_dir, '-kernel', kit.kernel,
                           '-append', 'console=ttyS0 panic=-1'],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL) as p:
        os.set_blocking(p.stdout.fileno(), False)
        out, deadline = b'', time.monotonic() + 60
        try:
            while time.monotonic() < deadline and p.poll() is None:
                out += p.stdout.read() or b''
                if b'Linux version' in out:
                    return None
                if b'KVM internal error' in out:
                    return 'KVM cannot run the guest kernel on this host (KVM internal error)'
                time.sleep(0.2)
        finally:
            p.kill()
    return 'the guest kernel printed nothing under KVM within 60 s'


class VtdX2apicDestination(rviommu_kit.RvIommuGuestTest):

    GUEST_TIMEOUT = 240

    def boot(self, accel):
        self.set_machine('q35')
        vm = self.vm
        if accel == 'kvm':
            vm.add_args('-accel', 'kvm', '-machine', 'kernel-irqchip=split', '-cpu', 'host')
            cpu = 'host-x86_64-cpu'
        else:
            vm.add_args('-accel', 'tcg', '-cpu', 'max')
            cpu = 'max-x86_64-cpu'
        # APIC ids: socket << 8 | core; CPU 1 is socket 1, core 0: id 256.
        vm.add_args('-m', '512M', '-smp', '1,sockets=2,cores=256,threads=1,maxcpus=512',
                    '-nodefaults', '-no-reboot', '-L', self.kit.firmware_dir,
                    '-device', 'intel-iommu,intremap=on,eim=on',
                    '-device', f'{cpu},socket-id=1,core-id=0,thread-id=0',
                    '-blockdev', 'driver=raw,node-name=disk0,read-only=on,file.driver=file,'
                                 f'file.filename={self.kit.disk},file.read-only=on',
                    '-device', 'virtio-blk-pci,drive=disk0,num-queues=2,disable-legacy=on,'
                               'iommu_platform=on')
        initrd = self.kit.initramfs('x2apic-dest', GUEST, modules=('virtio_blk', 'virtio_pci'))
        res = self.boot_and_collect(vm, initrd, 'intel_iommu=on')
        self.assertGuestPassed(res)
        self.log.info('%s: CPUs %s, APIC ids %s, request queue 1 interrupts %s',
                      accel, res.value('CPUS'), res.value('APIC-IDS'), res.value('REQ1-IRQS'))
        self.assertEqual(res.value('CPUS'), '0-1')
        self.assertEqual(res.value('APIC-IDS', '').split(), ['0', '256'])
        self.assertIn('x2apic', res.value('APIC-ROUTING', ''))
        self.assertEqual(res.value('IR'), 'x2apic mode')
        self.assertGreater(int(res.value('CPU1-IRQS')), 0,
                           'no interrupt of the queue on the CPU with APIC id 256')
        self.assertEqual(int(res.value('CPU0-IRQS')), 0, 'the queue of CPU 1 interrupted CPU 0')
        self.assertEqual(res.value('SPURIOUS'), '0', 'vectors without a handler arrived')

    def test_tcg(self):
        self.boot('tcg')

    def test_kvm_split_irqchip(self):
        why = kvm_boots(self.qemu_bin, self.kit)
        if why:
            self.skipTest(why)
        self.boot('kvm')


if __name__ == '__main__':
    QemuSystemTest.main()
