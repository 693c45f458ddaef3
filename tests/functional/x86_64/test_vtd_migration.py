#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Migration between the C intel-iommu (the reference build of QEMU 10.2.2)
and ours, both ways, under `-accel qtest`: the test programs the source's
VT-d (root table and translation, interrupt remapping, the invalidation
queue with descriptors processed, a fault event mask), migrates it through a
file, and checks on the destination that every register reads as it did on
the source and that the queue goes on where it stopped (a wait descriptor
written at the migrated tail completes and moves the head).

A Linux guest reading its disk through the IOMMU in a loop is migrated the
same ways while it reads (GuestMigration): every read after the migration
must still give the disk's sha256, and no DMAR fault may appear.
"""

import os
import struct
import subprocess
import time

from qemu.machine import QEMUMachine
from qemu.machine.qtest import QEMUQtestMachine
from qemu_test import QemuSystemTest, wait_for_console_pattern

import rviommu_kit

VTD_BASE = 0xfed90000
GCMD, GSTS, RTADDR, FECTL, IQH, IQT, IQA, IRTA = 0x18, 0x1c, 0x20, 0x38, 0x80, 0x88, 0x90, 0xb8
GCMD_TE, GCMD_SRTP, GCMD_QIE, GCMD_IRE, GCMD_SIRTP = 1 << 31, 1 << 30, 1 << 26, 1 << 25, 1 << 24
# registers compared after migration (offset, width)
REGISTERS = [(0x0, 4), (0x8, 8), (0x10, 8), (GSTS, 4), (RTADDR, 8), (0x34, 4), (FECTL, 4),
             (0x3c, 4), (0x40, 4), (0x44, 4), (IQH, 8), (IQT, 8), (IQA, 8), (0x9c, 4),
             (0xa0, 4), (0xa4, 4), (0xa8, 4), (0xac, 4), (IRTA, 8)]
ROOT, IRT, QUEUE, STATUS = 0x100000, 0x200000, 0x300000, 0x400000


def migration_status(vm, timeout=10):
    """The migration's status once it is completed or failed."""
    deadline = time.monotonic() + timeout
    while True:
        status = vm.cmd('query-migrate').get('status')
        if status in ('completed', 'failed') or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


class Machine:
    """One side: a QEMU build with intel-iommu under qtest."""

    def __init__(self, test, binary, iommu, incoming=None):
        self.vm = QEMUQtestMachine(binary, base_temp_dir=test.workdir)
        test.vms.append(self.vm)
        self.vm.add_args('-L', test.fw, '-machine', 'q35', '-accel', 'qtest', '-m', '64M',
                         '-nodefaults', '-display', 'none', '-device', f'intel-iommu,{iommu}')
        if incoming:
            self.vm.add_args('-incoming', f'file:{incoming}')
        self.vm.launch()

    def qt(self, line):
        resp = self.vm.qtest(line).strip()
        assert resp.startswith('OK'), (line, resp)
        return resp[2:].strip()

    def reg(self, off, width=4):
        return int(self.qt(f'read{"q" if width == 8 else "l"} 0x{VTD_BASE + off:x}'), 16)

    def wreg(self, off, val, width=4):
        self.qt(f'write{"q" if width == 8 else "l"} 0x{VTD_BASE + off:x} 0x{val:x}')

    def mem(self, addr, data):
        self.qt(f'write 0x{addr:x} 0x{len(data):x} 0x{data.hex()}')

    def gcmd(self, bit):
        self.wreg(GCMD, (self.reg(GSTS) & 0x96ffffff) | bit)
        assert self.reg(GSTS) & bit, f'GSTS 0x{bit:x}'

    def wait_desc(self, index, value, dw):
        """A wait descriptor (status write of `value` to STATUS) at queue
        `index`, then IQT moved past it."""
        size = 32 if dw else 16
        desc = struct.pack('<QQ', 0x5 | (1 << 5) | (value << 32), STATUS)
        self.mem(QUEUE + index * size, desc + bytes(size - 16))
        self.wreg(IQT, (index + 1) << (5 if dw else 4), 8)

    def status(self):
        return struct.unpack('<I', bytes.fromhex(self.qt(f'read 0x{STATUS:x} 0x4')[2:]))[0]


class VtdMigration(rviommu_kit.ReferenceTest):

    def migrate(self, src_bin, dst_bin, iommu, scalable):
        dw = scalable
        src = Machine(self, src_bin, iommu)
        # Root table (scalable or legacy format) and translation on.
        src.wreg(RTADDR, ROOT | ((1 << 10) if scalable else 0), 8)
        src.gcmd(GCMD_SRTP)
        src.gcmd(GCMD_TE)
        # Interrupt remapping: 256 entries, extended mode, enabled.
        src.wreg(IRTA, IRT | (1 << 11) | 7, 8)
        src.gcmd(GCMD_SIRTP)
        src.gcmd(GCMD_IRE)
        # The queue: three wait descriptors processed.
        src.wreg(IQA, QUEUE | ((1 << 11) if dw else 0), 8)
        src.gcmd(GCMD_QIE)
        for i in range(3):
            src.wait_desc(i, 0x100 + i, dw)
        self.assertEqual(src.status(), 0x102)
        src.wreg(FECTL, 0)                # fault events unmasked
        before = {off: src.reg(off, w) for off, w in REGISTERS}
        path = os.path.join(self.workdir, 'vtd.mig')
        src.vm.cmd('migrate', uri=f'file:{path}')
        self.assertEqual(migration_status(src.vm), 'completed', 'outgoing migration')
        src.vm.shutdown()
        dst = Machine(self, dst_bin, iommu, incoming=path)
        self.assertEqual(migration_status(dst.vm), 'completed', 'incoming migration')
        after = {off: dst.reg(off, w) for off, w in REGISTERS}
        diff = {hex(o): (hex(before[o]), hex(after[o])) for o in before if before[o] != after[o]}
        self.assertEqual(diff, {}, 'registers after migration (source, destination)')
        # The queue goes on at the migrated tail.
        dst.wait_desc(3, 0x777, dw)
        self.assertEqual(dst.status(), 0x777, 'wait descriptor after migration')
        self.assertEqual(dst.reg(IQH, 8), 4 << (5 if dw else 4))
        dst.vm.shutdown()
        return before

    def test_c_to_rust_and_back_legacy(self):
        iommu = 'intremap=on,eim=on'
        self.migrate(self.ref_bin, self.qemu_bin, iommu, scalable=False)
        self.migrate(self.qemu_bin, self.ref_bin, iommu, scalable=False)

    def test_c_to_rust_and_back_scalable(self):
        iommu = 'intremap=on,eim=on,x-scalable-mode=on'
        self.migrate(self.ref_bin, self.qemu_bin, iommu, scalable=True)
        self.migrate(self.qemu_bin, self.ref_bin, iommu, scalable=True)

    def test_c_to_rust_and_back_first_stage(self):
        """x-flts=on: first stage only on both devices (same ECAP)."""
        iommu = 'intremap=on,eim=on,x-scalable-mode=on,x-flts=on,caching-mode=on'
        self.migrate(self.ref_bin, self.qemu_bin, iommu, scalable=True)
        self.migrate(self.qemu_bin, self.ref_bin, iommu, scalable=True)

    def test_rust_to_rust_refuses_another_configuration(self):
        """The destination's configuration must match: CAP/ECAP differ with
        and without interrupt remapping, and the load fails cleanly."""
        src = Machine(self, self.qemu_bin, 'intremap=on')
        path = os.path.join(self.workdir, 'vtd.mig')
        src.vm.cmd('migrate', uri=f'file:{path}')
        self.assertEqual(migration_status(src.vm), 'completed')
        src.vm.shutdown()
        r = subprocess.run([self.qemu_bin, '-L', self.fw, '-machine', 'q35', '-accel', 'qtest',
                            '-qtest', 'null', '-m', '64M', '-nodefaults', '-display', 'none',
                            '-monitor', 'none', '-device', 'intel-iommu,intremap=off',
                            '-incoming', f'file:{path}'],
                           capture_output=True, text=True, timeout=60, check=False)
        self.log.info('load into another configuration: exit %d: %s', r.returncode, r.stderr)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('do not match configured', r.stderr)


# /init body of the migrated guest: read the whole disk `rviommu.loops` times
# (page cache dropped before each read, so every read is DMA), print each sum.
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
dmesg | grep -e 'DMAR: \[DMA' -e 'DMAR:.*[Ff]ault' | sed 's/^/RVIOMMU-DMAR-FAULT: /'
[ $i -eq $n ] && pass
"""


class GuestMigration(rviommu_kit.RvIommuGuestTest):
    """A guest under DMA load migrated between the C device and ours."""

    LOOPS = 12

    def guest_vm(self, binary, iommu, initrd, append, incoming=None):
        vm = QEMUMachine(binary, base_temp_dir=self.workdir)
        vm.set_machine('q35')
        vm.set_console()
        vm.add_args('-accel', 'tcg', '-cpu', 'max', '-m', '512M', '-smp', '1', '-nodefaults',
                    '-no-reboot', '-L', self.kit.firmware_dir, '-device', iommu)
        self.add_disk(vm, self.kit.disk)
        vm.add_args('-kernel', self.kit.kernel, '-initrd', initrd, '-append', append)
        if incoming:
            vm.add_args('-incoming', f'file:{incoming}')
        vm.launch()
        self.guest_vms.append(vm)
        return vm

    def setUp(self):
        super().setUp()
        self.guest_vms = []
        self.ref_bin = rviommu_kit.reference_qemu(self)

    def tearDown(self):
        for vm in self.guest_vms:
            vm.shutdown()
        super().tearDown()

    def migrate_guest(self, src_bin, dst_bin, iommu, guest_iommu):
        initrd = self.kit.initramfs('mig-loop', READ_LOOP,
                                    (rviommu_kit.repo_dir() / 'tests' / 'guest'
                                     / 'dma-read.modules').read_text().split())
        append = (f'{self.KERNEL_PARAMS} rviommu.timeout=300 {guest_iommu} '
                  f'rviommu.sha256={self.kit.disk_sha256} rviommu.loops={self.LOOPS}')
        src = self.guest_vm(src_bin, iommu, initrd, append)
        wait_for_console_pattern(self, 'RVIOMMU-LOOP: 1 ', vm=src)
        path = os.path.join(self.workdir, f'guest-{len(self.guest_vms)}.mig')
        src.cmd('migrate', uri=f'file:{path}')
        self.assertEqual(migration_status(src, timeout=120), 'completed')
        src.shutdown()
        dst = self.guest_vm(dst_bin, iommu, initrd, append, incoming=path)
        self.assertEqual(migration_status(dst, timeout=120), 'completed')
        out = wait_for_console_pattern(self, 'RVIOMMU-TEST-END',
                                       failure_message='Kernel panic - not syncing', vm=dst)
        res = rviommu_kit.GuestResult(out.decode(errors='replace'))
        loops = res.values.get('LOOP', [])
        self.log.info('%s -> %s: reads after migration: %s', os.path.basename(
            os.path.dirname(os.path.dirname(src_bin))), os.path.basename(
            os.path.dirname(os.path.dirname(dst_bin))), loops)
        self.assertEqual(res.result, 'PASS', f'{res.reason} (reads: {loops})')
        self.assertGreaterEqual(len(loops), 2, 'no read after the migration')
        self.assertNoDmarFaults(res.values.get('DMAR-FAULT', []))
        dst.wait(timeout=60)

    def test_guest_reads_its_disk_across_migration_legacy(self):
        iommu = 'intel-iommu,intremap=on'
        self.migrate_guest(self.ref_bin, self.qemu_bin, iommu, 'intel_iommu=on')
        self.migrate_guest(self.qemu_bin, self.ref_bin, iommu, 'intel_iommu=on')

    def test_guest_reads_its_disk_across_migration_scalable(self):
        iommu = 'intel-iommu,intremap=on,x-scalable-mode=on'
        self.migrate_guest(self.ref_bin, self.qemu_bin, iommu, 'intel_iommu=on,sm_on')
        self.migrate_guest(self.qemu_bin, self.ref_bin, iommu, 'intel_iommu=on,sm_on')

    def test_guest_reads_its_disk_across_migration_first_stage(self):
        """x-flts=on: Linux maps DMA with first-stage tables."""
        iommu = 'intel-iommu,intremap=on,x-scalable-mode=on,x-flts=on'
        self.migrate_guest(self.ref_bin, self.qemu_bin, iommu, 'intel_iommu=on,sm_on')
        self.migrate_guest(self.qemu_bin, self.ref_bin, iommu, 'intel_iommu=on,sm_on')


if __name__ == '__main__':
    QemuSystemTest.main()
