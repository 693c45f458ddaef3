#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""What `-M virt` tells the guest about the SMMUs is the same with the C
device and ours: the ACPI tables (IORT's SMMUv3 nodes and ID mappings come
from the SMMUs' QOM type, `primary-bus` link and MMIO/IRQ placement) read
through fw_cfg under qtest, and the device tree (`dumpdtb`, without its
random seeds), for the
machine's SMMU, one user-created SMMU, and SMMUs on pcie.0 and on a
pxb-pcie root bus.
"""

import os
import subprocess

from qemu.machine.qtest import QEMUQtestMachine
from qemu_test import QemuSystemTest

import rviommu_kit
from vtd_qtest import Qtest

FW_CFG_BASE = 0x09020000        # virt's fw_cfg: data +0, selector +8 (big-endian)
FW_CFG_FILE_DIR = 0x19

CONFIGS = {
    'machine': ['-M', 'virt,iommu=smmuv3,dtb-randomness=off'],
    'user': ['-M', 'virt,dtb-randomness=off', '-device', 'arm-smmuv3,primary-bus=pcie.0'],
    'pxb': ['-M', 'virt,dtb-randomness=off', '-device', 'pxb-pcie,id=pxb1,bus_nr=0x80,bus=pcie.0',
            '-device', 'arm-smmuv3,primary-bus=pcie.0',
            '-device', 'arm-smmuv3,primary-bus=pxb1'],
}


class FwCfg:
    def __init__(self, qt):
        self.qt = qt

    def select(self, key):
        # qtest stores the value little-endian; the register is big-endian.
        swapped = (key & 0xff) << 8 | key >> 8
        self.qt.cmd(f'writew 0x{FW_CFG_BASE + 8:x} 0x{swapped:x}')

    def read(self, n):
        """The next `n` bytes of the selected item: 8 at a time (a readq's
        little-endian value holds them in stream order), the rest singly."""
        out = bytearray()
        while n - len(out) >= 8:
            out += int(self.qt.cmd(f'readq 0x{FW_CFG_BASE:x}'), 16).to_bytes(8, 'little')
        while len(out) < n:
            out.append(int(self.qt.cmd(f'readb 0x{FW_CFG_BASE:x}'), 16))
        return bytes(out)

    def files(self):
        self.select(FW_CFG_FILE_DIR)
        count = int.from_bytes(self.read(4), 'big')
        out = {}
        for _ in range(count):
            e = self.read(64)
            name = e[8:].split(b'\0', 1)[0].decode()
            out[name] = (int.from_bytes(e[0:4], 'big'), int.from_bytes(e[4:6], 'big'))
        return out

    def file(self, name):
        size, key = self.files()[name]
        self.select(key)
        return self.read(size)


def acpi_tables(blob):
    """The ACPI tables in QEMU's etc/acpi/tables blob, by signature
    (several of one signature numbered)."""
    out, off = {}, 0
    while off + 8 <= len(blob):
        sig = blob[off:off + 4].decode('ascii', 'replace')
        length = int.from_bytes(blob[off + 4:off + 8], 'little')
        if length < 36 or not sig.isalnum():
            off += 1 if length < 36 else length     # padding between tables
            continue
        key, n = sig, 1
        while key in out:
            n += 1
            key = f'{sig}{n}'
        out[key] = blob[off:off + length]
        off += length
    return out


class SmmuFirmwareTables(QemuSystemTest):

    timeout = 300

    def binary(self, build):
        path = os.path.join(rviommu_kit.cache_dir(), build, 'build', 'qemu-system-aarch64')
        if not os.access(path, os.X_OK):
            self.fail(f'no {path} (scripts/setup.sh {build})')
        return path

    def tables(self, build, args):
        # virt builds its ACPI tables for firmware only: an empty image
        # stands in for it (no CPU runs under qtest).
        bios = os.path.join(self.workdir, 'no-firmware.fd')
        with open(bios, 'wb') as f:
            f.write(b'\0' * 4096)
        vm = QEMUQtestMachine(self.binary(build), base_temp_dir=self.workdir, name=f'fw-{build}')
        vm.add_args(*args, '-bios', bios, '-accel', 'qtest', '-m', '256M', '-nodefaults',
                    '-display', 'none')
        vm.launch()
        try:
            fw = FwCfg(Qtest(vm))
            return acpi_tables(fw.file('etc/acpi/tables'))
        finally:
            vm.shutdown()

    def dtb(self, build, args):
        path = os.path.join(self.workdir, f'{build}.dtb')
        machine = args[1] + ',dumpdtb=' + path
        subprocess.run([self.binary(build), '-M', machine, *args[2:], '-accel', 'qtest',
                        '-m', '256M', '-nodefaults', '-display', 'none'],
                       check=True, capture_output=True, timeout=60)
        with open(path, 'rb') as f:
            return f.read()

    def test_acpi_tables(self):
        failures = []
        for name, args in CONFIGS.items():
            try:
                c, rs = self.tables('ref', args), self.tables('rs', args)
                self.assertIn('IORT', c, f'{name}: the C build has an IORT')
                self.assertEqual(sorted(rs), sorted(c), name)
                for sig in c:
                    self.assertEqual(rs[sig].hex(), c[sig].hex(), f'{name}: {sig}')
                # IORT node count: ITS group + root complex + one per SMMU.
                smmus = 2 if name == 'pxb' else 1
                self.assertEqual(int.from_bytes(rs['IORT'][36:40], 'little'), 2 + smmus, name)
            except AssertionError as e:
                failures.append(f'{dict(config=name)}: {e}')
        self.assertEqual(failures, [], '\n'.join(failures))

    def test_device_tree(self):
        failures = []
        for name in ('machine', 'user'):
            try:
                args = CONFIGS[name]
                c, rs = self.dtb('ref', args), self.dtb('rs', args)
                self.assertIn(b'arm,smmu-v3', c, name)
                self.assertEqual(rs, c, name)
            except AssertionError as e:
                failures.append(f'{dict(config=name)}: {e}')
        self.assertEqual(failures, [], '\n'.join(failures))


if __name__ == '__main__':
    QemuSystemTest.main()
