#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""intel-iommu's command-line interface: the properties of QEMU 10.2.2's C
device with the same types and defaults, and clear errors for values this
device refuses."""

import re
import subprocess

from qemu.machine.qtest import QEMUQtestMachine
from qemu_test import QemuSystemTest

import rviommu_kit

# name -> (type, default) of the C intel-iommu of QEMU 10.2.2 (its own
# properties plus those inherited from x86-iommu), as `-device help` shows
C_DEVICE_PROPERTIES = {
    'version': ('uint32', '0'),
    'eim': ('OnOffAuto', 'auto'),
    'x-buggy-eim': ('bool', 'off'),
    'aw-bits': ('uint8', '48'),
    'caching-mode': ('bool', 'off'),
    # a string here (off, on/legacy, modern): the one deliberate difference
    'x-scalable-mode': ('str', None),
    'x-flts': ('bool', 'off'),
    'snoop-control': ('bool', 'off'),
    'x-pasid-mode': ('bool', 'off'),
    'dma-drain': ('bool', 'on'),
    'stale-tm': ('bool', 'off'),
    'fs1gp': ('bool', 'on'),
    'intremap': ('OnOffAuto', 'auto'),
    'device-iotlb': ('bool', 'off'),
    'pt': ('bool', 'on'),
    'dma-translation': ('bool', 'on'),
}

# upstream's newer spellings, also accepted
NEW_PROPERTIES = {
    'scalable-mode': ('str', None),
    'fsts': ('bool', 'off'),
    'pasid-bits': ('uint8', '0'),
}

# CAP/ECAP (aw-bits 48, intremap off) per translation mode
MODE_REGISTERS = {
    '': (0x80d2008c222f0606, 0xf42),
    'x-scalable-mode=off': (0x80d2008c222f0606, 0xf42),
    # SMTS, SLTS, SRS (the C device's values)
    'x-scalable-mode=on': (0x80d2008c222f0606, 0x480080000f42),
    'x-scalable-mode=legacy': (0x80d2008c222f0606, 0x480080000f42),
    'scalable-mode=on': (0x80d2008c222f0606, 0x480080000f42),
    # + PASID, PSS = 7 (as the C device's x-pasid-mode)
    'x-scalable-mode=on,x-pasid-mode=on': (0x80d2008c222f0606, 0x493880000f42),
    # first stage only: FLTS without SLTS, SRS or NEST, + CAP.FS1GP (the C
    # device's values)
    'x-scalable-mode=on,x-flts=on': (0x81d2008c222f0606, 0x880000000f42),
    'x-scalable-mode=on,fsts=on': (0x81d2008c222f0606, 0x880000000f42),
    # modern: first/second/nested, PASID with PSS = 19 (20-bit PASIDs)
    'x-scalable-mode=modern': (0x81d2008c222f0606, 0xc99884000f42),
    'scalable-mode=modern': (0x81d2008c222f0606, 0xc99884000f42),
    'x-scalable-mode=modern,fs1gp=off': (0x80d2008c222f0606, 0xc99884000f42),
    'x-scalable-mode=modern,pasid-bits=10': (0x81d2008c222f0606, 0xc94884000f42),
    # + DT
    'device-iotlb=on': (0x80d2008c222f0606, 0xf46),
    'x-scalable-mode=modern,device-iotlb=on': (0x81d2008c222f0606, 0xc99884000f46),
    # + CAP.CM
    'caching-mode=on': (0x80d2008c222f0686, 0xf42),
    'x-scalable-mode=modern,caching-mode=on': (0x81d2008c222f0686, 0xc99884000f42),
}

# with interrupt remapping (intremap=auto is on under TCG): IR, MHMV (+ EIM)
IR_REGISTERS = {
    '': (0x80d2008c222f0606, 0xf00f4a),
    'intremap=on': (0x80d2008c222f0606, 0xf00f4a),
    'intremap=on,eim=on': (0x80d2008c222f0606, 0xf00f5a),
    'eim=on': (0x80d2008c222f0606, 0xf00f5a),
    'x-buggy-eim=on': (0x80d2008c222f0606, 0xf00f5a),
    'x-scalable-mode=modern': (0x81d2008c222f0606, 0xc99884f00f4a),
}


class VtdProperties(QemuSystemTest):

    def firmware(self):
        kit, why = rviommu_kit.Kit.load()
        if kit is None:
            self.fail(why)
        return kit.firmware_dir

    def run_qemu(self, device, *extra):
        args = [self.qemu_bin, '-L', self.firmware(), '-machine', 'q35', '-accel', 'qtest', '-nodefaults',
                '-display', 'none', '-device', device, *extra]
        self.log.info('running %s', ' '.join(args))
        return subprocess.run(args, capture_output=True, text=True, timeout=20,
                              input='')

    def test_help_lists_c_device_properties(self):
        res = self.run_qemu('intel-iommu,help')
        self.assertEqual(res.returncode, 0, res.stderr)
        found = {}
        for line in res.stdout.splitlines():
            m = re.match(r'^\s+([\w-]+)=<([\w]+)>.*?(?:\(default: (.*)\))?\s*$', line)
            if m:
                found[m.group(1)] = (m.group(2), m.group(3))
        self.log.info('help: %s', found)
        for name, (typ, default) in {**C_DEVICE_PROPERTIES, **NEW_PROPERTIES}.items():
            with self.subTest(property=name):
                self.assertIn(name, found)
                self.assertEqual(found[name], (typ, default))

    def test_help_shows_user_properties_only(self):
        """As the C device's: no child objects (the register window is
        created at realize, not at instance init)."""
        res = self.run_qemu('intel-iommu,help')
        self.assertEqual(res.returncode, 0, res.stderr)
        children = [l.strip() for l in res.stdout.splitlines() if '<child<' in l or 'intel_iommu[' in l]
        self.assertEqual(children, [])

    def test_help_describes_every_property(self):
        """Each property has its own description (the C device's help
        shows only the type's generic on/off text)."""
        res = self.run_qemu('intel-iommu,help')
        self.assertEqual(res.returncode, 0, res.stderr)
        described = {}
        for line in res.stdout.splitlines():
            m = re.match(r'^\s+([\w-]+)=<\w+>\s+- (.*?)\s*(?:\(default: .*\))?$', line)
            if m:
                described[m.group(1)] = m.group(2)
        for name in {**C_DEVICE_PROPERTIES, **NEW_PROPERTIES}:
            with self.subTest(property=name):
                self.assertNotIn(described.get(name, ''), ('', 'on/off', 'on/off/auto'))

    def assertRefused(self, props, *needles):
        res = self.run_qemu('intel-iommu,' + props, '-qtest', 'null')
        self.log.info('%s -> rc %d, %s', props, res.returncode, res.stderr.strip())
        self.assertNotEqual(res.returncode, 0, f'{props} was accepted')
        for needle in needles:
            self.assertIn(needle, res.stderr)

    def test_bad_aw_bits_is_refused(self):
        for value in ('40', '52', '0'):
            with self.subTest(aw_bits=value):
                self.assertRefused(f'aw-bits={value}', 'aw-bits', '39, 48')

    def test_contradictions_are_refused_as_c_device_does(self):
        self.assertRefused('intremap=off,eim=on',
                           'eim=on cannot be selected without intremap=on')
        self.assertRefused('x-flts=on', 'x-flts is only available in scalable mode')
        self.assertRefused('x-pasid-mode=on', 'Need to set scalable mode for PASID')
        self.assertRefused('x-scalable-mode=on,dma-drain=off',
                           'Need to set dma_drain for scalable mode')
        self.assertRefused('x-scalable-mode=on,x-flts=on,aw-bits=39',
                           'supported value for aw-bits is: 48')
        self.assertRefused('x-scalable-mode=modern,aw-bits=39',
                           'supported value for aw-bits is: 48')
        self.assertRefused('fsts=on', 'x-flts is only available in scalable mode')
        self.assertRefused('pasid-bits=8', 'Need to set scalable mode for PASID')
        self.assertRefused('x-scalable-mode=modern,pasid-bits=21', 'pasid-bits=21')
        self.assertRefused('x-scalable-mode=bogus', 'x-scalable-mode="bogus"',
                           'off, on, legacy or modern')
        self.assertRefused('x-scalable-mode=on,scalable-mode=modern', 'contradict')

    def test_mode_capabilities(self):
        self.check_registers(MODE_REGISTERS, 'intel-iommu,intremap=off')

    def test_interrupt_remapping_capabilities(self):
        self.check_registers(IR_REGISTERS, 'intel-iommu')

    def check_registers(self, table, base):
        for props, (cap, ecap) in table.items():
            with self.subTest(props=props):
                vm = QEMUQtestMachine(self.qemu_bin, base_temp_dir=self.workdir,
                                      name='modes')
                device = base + (',' + props if props else '')
                vm.add_args('-L', self.firmware(),
                            '-machine', 'q35', '-accel', 'qtest', '-nodefaults',
                            '-display', 'none', '-device', device)
                vm.launch()
                try:
                    got_cap = int(vm.qtest('readq 0xfed90008').split()[1], 16)
                    got_ecap = int(vm.qtest('readq 0xfed90010').split()[1], 16)
                    self.assertEqual((hex(got_cap), hex(got_ecap)), (hex(cap), hex(ecap)))
                finally:
                    vm.shutdown()

    def test_scalable_mode_takes_json_booleans_and_globals(self):
        """x-scalable-mode is a boolean in the C device: JSON -device (as
        libvirt writes it) and -global spellings must keep working, next to
        our string values; both properties read back the mode in effect
        (off by default), whichever set it."""
        dev = '{"driver": "intel-iommu", "id": "iommu", '
        cases = [
            (['-device', dev + '"x-scalable-mode": true}'], 0x480080000f42, 'on'),
            (['-device', dev + '"x-scalable-mode": false}'], 0xf42, 'off'),
            (['-device', dev + '"x-scalable-mode": "modern"}'], 0xc99884000f42, 'modern'),
            (['-device', dev + '"scalable-mode": true, "x-flts": true}'], 0x880000000f42, 'on'),
            (['-device', dev + '"aw-bits": 48}'], 0xf42, 'off'),
            (['-global', 'intel-iommu.x-scalable-mode=on', '-device', 'intel-iommu,id=iommu'],
             0x480080000f42, 'on'),
            (['-global', 'intel-iommu.x-scalable-mode=modern', '-device', 'intel-iommu,id=iommu'],
             0xc99884000f42, 'modern'),
        ]
        for args, ecap, value in cases:
            with self.subTest(args=args):
                vm = QEMUQtestMachine(self.qemu_bin, base_temp_dir=self.workdir, name='props')
                vm.add_args('-L', self.firmware(), '-machine', 'q35', '-accel', 'qtest',
                            '-nodefaults', '-display', 'none', '-global',
                            'intel-iommu.intremap=off', *args)
                vm.launch()
                try:
                    got = int(vm.qtest('readq 0xfed90010').split()[1], 16)
                    self.assertEqual(hex(got), hex(ecap))
                    self.assertEqual(vm.cmd('qom-get', path='/machine/peripheral/iommu',
                                            property='x-scalable-mode'), value)
                    # The newer spelling names the same mode in its words.
                    self.assertEqual(vm.cmd('qom-get', path='/machine/peripheral/iommu',
                                            property='scalable-mode'),
                                     'legacy' if value == 'on' else value)
                finally:
                    vm.shutdown()
        res = self.run_qemu('{"driver": "intel-iommu", "x-scalable-mode": 3}', '-qtest', 'null')
        self.assertNotEqual(res.returncode, 0)
        self.assertIn('x-scalable-mode', res.stderr)

    def test_accepted_configurations_start(self):
        for props in ('aw-bits=39', 'aw-bits=48', 'pt=off', 'snoop-control=on',
                      'dma-drain=off', 'stale-tm=on', 'version=3', 'intremap=off',
                      'intremap=on', 'intremap=on,eim=on', 'device-iotlb=on',
                      'x-scalable-mode=on', 'x-scalable-mode=on,x-flts=on'):
            with self.subTest(props=props):
                vm = QEMUQtestMachine(self.qemu_bin, base_temp_dir=self.workdir,
                                      name='props')
                vm.add_args('-L', self.firmware(),
                            '-machine', 'q35', '-accel', 'qtest', '-nodefaults',
                            '-display', 'none', '-device', 'intel-iommu,' + props)
                vm.launch()
                try:
                    # VER register of the remapping unit: 1.0
                    self.assertEqual(vm.qtest('readl 0xfed90000').strip(), 'OK 0x0000000000000010')
                    ecap = int(vm.qtest('readq 0xfed90010').split()[1], 16)
                    self.assertEqual(bool(ecap & (1 << 6)), 'pt=off' not in props)
                    self.assertEqual(bool(ecap & (1 << 7)), 'snoop-control=on' in props)
                    # SMTS with scalable mode, SLTS unless x-flts (first
                    # stage only, as the C device), FLTS with x-flts, NEST never
                    scalable = 'x-scalable-mode=on' in props
                    self.assertEqual(bool(ecap & (1 << 43)), scalable)
                    self.assertEqual(bool(ecap & (1 << 46)), scalable and 'x-flts=on' not in props)
                    self.assertEqual(bool(ecap & (1 << 47)), 'x-flts=on' in props)
                    self.assertFalse(ecap & (1 << 26))
                finally:
                    vm.shutdown()


if __name__ == '__main__':
    QemuSystemTest.main()
