#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The ACPI DMAR table of our intel-iommu is byte for byte the C device's.

For each configuration the test starts the reference build (QEMU 10.2.2 with
the C intel-iommu, scripts/setup.sh ref) and ours under `-accel qtest`, reads
the ACPI tables QEMU hands to the firmware (fw_cfg file "etc/acpi/tables",
through fw_cfg's DMA interface; no guest code runs) and compares the DMAR
tables.  The configurations cover what the table depends on: interrupt
remapping (flags), the address width, device-TLBs (the ATSR structure) and
PCI buses that bypass the IOMMU (device scopes instead of "all devices").

Upstream's own DMAR case of bios-tables-test (acpi/q35/kvm/dmar) needs KVM,
which these machines do not offer; its configuration is one of the cases
here, under TCG's qtest accelerator.
"""

import struct

from qemu.machine.qtest import QEMUQtestMachine
from qemu_test import QemuSystemTest

import rviommu_kit

FW_CFG_DMA = 0x514                     # 64-bit big-endian address, high then low
FW_CFG_FILE_DIR = 0x19
DMA_CTL_ERROR, DMA_CTL_READ, DMA_CTL_SELECT = 0x01, 0x02, 0x08
CONTROL_AT, DATA_AT = 0x10000, 0x100000   # guest RAM used for fw_cfg DMA

# name -> (machine options, extra arguments, intel-iommu options)
CASES = {
    'default': ('', [], ''),
    'intremap': ('kernel-irqchip=split', [], 'intremap=on'),
    'intremap-eim': ('kernel-irqchip=split', [], 'intremap=on,eim=on'),
    'intremap-off': ('', [], 'intremap=off'),
    'aw-bits-39': ('', [], 'aw-bits=39'),
    'device-iotlb': ('', [], 'device-iotlb=on'),
    # bios-tables-test's acpi/q35/kvm/dmar, under qtest
    'bios-tables-dmar': ('kernel-irqchip=split', [], 'intremap=on,device-iotlb=on'),
    'scalable': ('', [], 'x-scalable-mode=on,caching-mode=on'),
    'first-stage': ('', [], 'x-scalable-mode=on,x-flts=on,caching-mode=on'),
    'interrupt-remapping-only': ('kernel-irqchip=split', [],
                                 'intremap=on,eim=on,dma-translation=off'),
    # buses that bypass the IOMMU: the DRHD lists the translated ones
    'bypass-buses': ('default_bus_bypass_iommu=on',
                     ['-device', 'pxb-pcie,bus=pcie.0,bus_nr=0x40,id=pxb1,bypass_iommu=off',
                      '-device', 'pcie-root-port,bus=pxb1,chassis=1,id=rp1',
                      '-device', 'e1000e,bus=rp1,romfile=',
                      '-device', 'pxb-pcie,bus=pcie.0,bus_nr=0x80,id=pxb2',
                      '-device', 'pcie-root-port,bus=pxb2,chassis=2,id=rp2',
                      '-device', 'pcie-pci-bridge,bus=pcie.0,addr=0x5'],
                     'intremap=on'),
}


def bswap32(v):
    return struct.unpack('<I', struct.pack('>I', v))[0]


class VtdAcpiDmar(rviommu_kit.ReferenceTest):

    def fw_cfg_read(self, vm, select, size):
        """`size` bytes of fw_cfg item `select`, by DMA into guest RAM."""
        vm.qtest(f'write 0x{CONTROL_AT:x} 0x10 0x'
                 + struct.pack('>IIQ', (select << 16) | DMA_CTL_SELECT | DMA_CTL_READ,
                               size, DATA_AT).hex())
        # A big-endian register behind a little-endian port: swapped halves.
        vm.qtest(f'outl 0x{FW_CFG_DMA:x} 0x{bswap32(0):x}')
        vm.qtest(f'outl 0x{FW_CFG_DMA + 4:x} 0x{bswap32(CONTROL_AT):x}')
        ctl = vm.qtest(f'read 0x{CONTROL_AT:x} 0x4').split()[-1]
        self.assertEqual(int(ctl, 16) & DMA_CTL_ERROR, 0, 'fw_cfg DMA error')
        if size == 0:
            return b''
        out = vm.qtest(f'read 0x{DATA_AT:x} 0x{size:x}').split()[-1]
        return bytes.fromhex(out[2:])

    def fw_cfg_file(self, vm, name):
        count = struct.unpack('>I', self.fw_cfg_read(vm, FW_CFG_FILE_DIR, 4))[0]
        entries = self.fw_cfg_read(vm, FW_CFG_FILE_DIR, 4 + 64 * count)[4:]
        for i in range(count):
            size, select = struct.unpack('>IH', entries[i * 64:i * 64 + 6])
            fname = entries[i * 64 + 8:i * 64 + 64].split(b'\0')[0].decode()
            if fname == name:
                return self.fw_cfg_read(vm, select, size)
        self.fail(f'no fw_cfg file {name}')

    def dmar(self, binary, machine, extra, iommu):
        vm = QEMUQtestMachine(binary, base_temp_dir=self.workdir)
        self.vms.append(vm)
        vm.add_args('-L', self.fw, '-machine', 'q35' + (',' + machine if machine else ''),
                    '-accel', 'qtest', '-m', '256M', '-nodefaults', '-display', 'none',
                    '-device', 'intel-iommu' + (',' + iommu if iommu else ''), *extra)
        vm.launch()
        tables = self.fw_cfg_file(vm, 'etc/acpi/tables')
        vm.shutdown()
        # The tables follow each other (FACS first): walk their headers.
        off, seen = 0, []
        while off + 8 <= len(tables):
            sig = tables[off:off + 4]
            length = struct.unpack('<I', tables[off + 4:off + 8])[0]
            self.assertTrue(sig.isalnum() and length >= 8,
                            f'no ACPI table header at {off} ({seen})')
            if sig == b'DMAR':
                return tables[off:off + length]
            seen.append(sig.decode())
            off += length
        self.fail(f'no DMAR table among {seen}')

    def test_dmar_is_the_c_devices(self):
        """Every case: the same DMAR bytes as the C device."""
        for name, (machine, extra, iommu) in CASES.items():
            with self.subTest(case=name):
                ref = self.dmar(self.ref_bin, machine, extra, iommu)
                ours = self.dmar(self.qemu_bin, machine, extra, iommu)
                self.log.info('%s: DMAR of %d bytes: %s', name, len(ref), ref[36:].hex())
                self.assertEqual(ours.hex(), ref.hex(), f'{name}: DMAR differs')

    def test_dmar_contents(self):
        """What the table says, decoded (so that equal is also right): the
        host address width, INTR_REMAP, the DRHD at 0xfed90000 with the I/O
        APIC scope, the ATSR with device-TLBs, device scopes of buses that
        are translated when the default bus bypasses the IOMMU."""
        def decode(t):
            haw, flags = t[36], t[37]
            structs, off = [], 48
            while off < len(t):
                typ, length = struct.unpack('<HH', t[off:off + 4])
                structs.append((typ, t[off:off + length]))
                off += length
            return haw, flags, structs

        haw, flags, s = decode(self.dmar(self.qemu_bin, *CASES['bios-tables-dmar']))
        self.assertEqual((haw, flags), (47, 1))
        self.assertEqual([t for t, _ in s], [0, 2])            # DRHD, ATSR
        drhd = s[0][1]
        self.assertEqual(struct.unpack('<Q', drhd[8:16])[0], 0xfed90000)
        self.assertEqual(drhd[4] & 1, 0, 'INCLUDE_PCI_ALL')
        self.assertEqual(drhd[16], 3, 'first scope: the I/O APIC')
        haw, flags, s = decode(self.dmar(self.qemu_bin, *CASES['aw-bits-39']))
        self.assertEqual((haw, [t for t, _ in s]), (38, [0]))
        _, _, s = decode(self.dmar(self.qemu_bin, *CASES['bypass-buses']))
        scopes = s[0][1][16:]
        types = []
        while scopes:
            types.append(scopes[0])
            scopes = scopes[scopes[1]:]
        # the I/O APIC, then bus ranges / bridges of the translated buses
        self.assertEqual(types[0], 3)
        self.assertGreater(len(types), 1, 'no device scope for the translated bus')


if __name__ == '__main__':
    QemuSystemTest.main()
