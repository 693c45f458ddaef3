#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The Rust arm-smmuv3 against QEMU 10.2.2's C device, side by side.

For each configuration (`-M virt,iommu=smmuv3`, user-created
`-device arm-smmuv3` with each `stage`), both builds start (or both refuse,
with the same message) under `-accel qtest`; the registers read the same
after reset; and a set of DMA experiments by `rviommu-testdev` gives the
same observations on both: whether each device read and write reached
memory, what it read, and the event records the SMMU wrote. The
experiments cover the SMMU disabled (GBPA bypass and abort), STE abort,
bypass and invalid, stage 1, stage 2 and nested translation with
read-only and missing pages, and a changed mapping before and after its
TLB invalidation; plus the UNMAP notifier that invalidations reach.
"""

import hashlib
import os
import subprocess

from qemu.machine.qtest import QEMUQtestMachine
from qemu_test import QemuSystemTest

import rviommu_kit
from smmu_qtest import (VirtQtest, Smmu, PageTable, TestDev, SMMU_BASE, PLATFORM_BUS_BASE,
                        PCI_MMIO_BASE, RAM_BASE, IDR0, STE_ABORT, STE_BYPASS, STE_S1, STE_S2,
                        STE_NESTED, TD_OK, GERROR, GERRORN, CMDQ_CONS, EVENTQ_PROD,
                        CMD_CFGI_CD, CMD_TLBI_NH_ASID, CMD_TLBI_NH_VA, CMD_TLBI_NH_ALL,
                        architected)

# (machine options, device options or None, base of the SMMU's registers)
CONFIGS = [
    ('iommu=smmuv3', None, SMMU_BASE),
    ('', 'primary-bus=pcie.0', PLATFORM_BUS_BASE),
    ('', 'primary-bus=pcie.0,stage=1', PLATFORM_BUS_BASE),
    ('', 'primary-bus=pcie.0,stage=2', PLATFORM_BUS_BASE),
    ('', 'primary-bus=pcie.0,stage=nested', PLATFORM_BUS_BASE),
    ('', 'primary-bus=pcie.0,stage=bogus', PLATFORM_BUS_BASE),
    ('', 'primary-bus=pcie.0,bus_num=3,smmu_per_bus=on', PLATFORM_BUS_BASE),
]
# both must refuse, with the same message
REFUSED = [
    ('', ''),                                    # no primary bus
    ('iommu=smmuv3', 'primary-bus=pcie.0'),      # the machine's and a user one
]

TESTDEV_BDF = 2 << 3                 # 00:02.0, the StreamID
TESTDEV_BAR0 = PCI_MMIO_BASE
# RAM pages the experiments DMA to (inside the blocks stage 2 maps identity)
PAGE_A, PAGE_B = RAM_BASE + 0x1800000, RAM_BASE + 0x1801000
IOVA = 0x8000000


def pattern(*tags):
    return hashlib.sha256(repr(tags).encode()).digest() * 2


def qemu_binary(build):
    return os.path.join(rviommu_kit.cache_dir(), build, 'build', 'qemu-system-aarch64')


class Experiments:
    """The experiments of one configuration, on one build."""

    def __init__(self, qt, base):
        self.qt, self.base = qt, base
        self.dev = TestDev(qt, TESTDEV_BDF, TESTDEV_BAR0)

    def smmu(self):
        # A fresh driver state per experiment: the device is reset between them.
        return Smmu(self.qt, self.base)

    def dma_pair(self, smmu, iova, tag):
        """A device write then read of 64 bytes at `iova`: outcomes, what
        landed in PAGE_A / PAGE_B, what was read back, the events."""
        data = pattern(tag)[:64]
        w = self.dev.write_memory(iova, data)
        r, back = self.dev.read_memory(iova, 64)
        landed = [self.qt.memread(p, 64) == data for p in (PAGE_A, PAGE_B)]
        return {'write': w, 'read': r, 'read_back_ok': back == data, 'landed': landed,
                'events': [architected(e) for e in smmu.events()]}

    def run(self, idr0):
        s1, s2 = bool(idr0 & 1 << 1), bool(idr0 & 1 << 0)
        out = {}
        s1_only = ('stale_until_tlbi', 'unmap_notifier', 'two_level_strtab', 'cd_invalid',
                   'stale_cd_until_cfgi_cd', 'tlbi_by_va_and_asid', 'tlbi_range')
        for name in ['disabled_bypass', 'disabled_abort', 'ste_abort', 'ste_bypass', 'ste_invalid',
                     'stage1', 'stage2', 'nested', 'bad_streamid', 'illegal_command',
                     'unadvertised_commands', 'eventq_overflow', *s1_only]:
            self.qt.vm.qmp('system_reset')
            self.qt.vm.event_wait('RESET', timeout=10)
            self.dev = TestDev(self.qt, TESTDEV_BDF, TESTDEV_BAR0)
            for p in (PAGE_A, PAGE_B):
                self.qt.memwrite(p, b'\0' * 64)
            if name in ('stage1',) and not s1 or name in ('stage2',) and not s2 \
                    or name == 'nested' and not (s1 and s2) or name in s1_only and not s1:
                continue
            out[name] = getattr(self, name)()
        return out

    def disabled_bypass(self):
        smmu = self.smmu()
        return self.dma_pair(smmu, PAGE_A, 'db')

    def disabled_abort(self):
        smmu = self.smmu()
        smmu.set_gbpa(abort=True)
        return self.dma_pair(smmu, PAGE_A, 'da')

    def ste_abort(self):
        smmu = self.smmu()
        smmu.enable()
        smmu.ste(TESTDEV_BDF, STE_ABORT)
        return self.dma_pair(smmu, PAGE_A, 'sa')

    def ste_bypass(self):
        smmu = self.smmu()
        smmu.enable()
        smmu.ste(TESTDEV_BDF, STE_BYPASS)
        return self.dma_pair(smmu, PAGE_A, 'sb')

    def ste_invalid(self):
        smmu = self.smmu()
        smmu.enable()
        smmu.ste(TESTDEV_BDF, STE_S1, valid=False)
        return self.dma_pair(smmu, PAGE_A, 'si')

    def _stage1(self, smmu, nested):
        pt = PageTable(smmu, 1)
        pt.map(IOVA, PAGE_A)
        pt.map(IOVA + 0x1000, PAGE_B, write=False)
        cd = smmu.cd(pt.root)
        if nested:
            s2 = PageTable(smmu, 2)
            s2.map_blocks(RAM_BASE, RAM_BASE + 0x1ffffff)
            smmu.ste(TESTDEV_BDF, STE_NESTED, cd=cd, s2ttb=s2.root)
        else:
            smmu.ste(TESTDEV_BDF, STE_S1, cd=cd)
        return {'mapped': self.dma_pair(smmu, IOVA, 's1'),
                'read_only': self.dma_pair(smmu, IOVA + 0x1000, 's1ro'),
                'unmapped': self.dma_pair(smmu, IOVA + 0x200000, 's1un')}

    def stage1(self):
        smmu = self.smmu()
        smmu.enable()
        return self._stage1(smmu, nested=False)

    def nested(self):
        smmu = self.smmu()
        smmu.enable()
        return self._stage1(smmu, nested=True)

    def stage2(self):
        smmu = self.smmu()
        smmu.enable()
        pt = PageTable(smmu, 2)
        pt.map(IOVA, PAGE_A)
        pt.map(IOVA + 0x1000, PAGE_B, write=False)
        smmu.ste(TESTDEV_BDF, STE_S2, s2ttb=pt.root)
        return {'mapped': self.dma_pair(smmu, IOVA, 's2'),
                'read_only': self.dma_pair(smmu, IOVA + 0x1000, 's2ro'),
                'unmapped': self.dma_pair(smmu, IOVA + 0x200000, 's2un')}

    def stale_until_tlbi(self):
        smmu = self.smmu()
        smmu.enable()
        pt = PageTable(smmu, 1)
        pt.map(IOVA, PAGE_A)
        smmu.ste(TESTDEV_BDF, STE_S1, cd=smmu.cd(pt.root))
        first = self.dma_pair(smmu, IOVA, 'st1')
        pt.map(IOVA, PAGE_B)
        for p in (PAGE_A, PAGE_B):
            self.qt.memwrite(p, b'\0' * 64)
        stale = self.dma_pair(smmu, IOVA, 'st2')
        smmu.tlbi_all()
        for p in (PAGE_A, PAGE_B):
            self.qt.memwrite(p, b'\0' * 64)
        fresh = self.dma_pair(smmu, IOVA, 'st3')
        return {'first': first, 'before_tlbi': stale, 'after_tlbi': fresh}

    def s1_setup(self, smmu, pages=1, asid=1):
        """A stage-1 stream for the device: `pages` IOVA pages from IOVA to
        PAGE_A onwards; (table, CD address)."""
        pt = PageTable(smmu, 1)
        for i in range(pages):
            pt.map(IOVA + 0x1000 * i, PAGE_A + 0x1000 * i)
        cd = smmu.cd(pt.root, asid=asid)
        smmu.ste(TESTDEV_BDF, STE_S1, cd=cd)
        return pt, cd

    def landed(self, iova, tag, pages=(PAGE_A, PAGE_B)):
        """The device writes 64 bytes at `iova`: (outcome, where they landed)."""
        data = pattern(tag)[:64]
        for p in pages:
            self.qt.memwrite(p, b'\0' * 64)
        st = self.dev.write_memory(iova, data)
        return st, [self.qt.memread(p, 64) == data for p in pages]

    def two_level_strtab(self):
        smmu = self.smmu()
        smmu.two_level(split=4)
        smmu.enable()
        self.s1_setup(smmu)
        return self.dma_pair(smmu, IOVA, '2l')

    def bad_streamid(self):
        smmu = Smmu(self.qt, self.base, strtab_log2=4)      # StreamIDs 0-15; ours is 16
        smmu.enable()
        return self.dma_pair(smmu, PAGE_A, 'bs')

    def cd_invalid(self):
        smmu = self.smmu()
        smmu.enable()
        pt = PageTable(smmu, 1)
        pt.map(IOVA, PAGE_A)
        smmu.ste(TESTDEV_BDF, STE_S1, cd=smmu.cd(pt.root, valid=False))
        return self.dma_pair(smmu, IOVA, 'ci')

    def stale_cd_until_cfgi_cd(self):
        smmu = self.smmu()
        smmu.enable()
        _, cd = self.s1_setup(smmu)
        out = {'first': self.landed(IOVA, 'c1')}
        other = PageTable(smmu, 1)
        other.map(IOVA, PAGE_B)
        smmu.cd(other.root, at=cd)                      # new TTB0 in place
        smmu.command(CMD_TLBI_NH_ALL)
        smmu.sync()
        out['after_tlbi_only'] = self.landed(IOVA, 'c2')
        smmu.command(CMD_CFGI_CD, d0=TESTDEV_BDF << 32, d1=1)
        smmu.command(CMD_TLBI_NH_ALL)
        smmu.sync()
        out['after_cfgi_cd'] = self.landed(IOVA, 'c3')
        out['events'] = smmu.events()
        return out

    def tlbi_by_va_and_asid(self):
        smmu = self.smmu()
        smmu.enable()
        pt, _ = self.s1_setup(smmu, pages=2, asid=5)
        moved = PAGE_A + 0x10000
        pages = (PAGE_A, PAGE_A + 0x1000, moved, moved + 0x1000)
        out = {'first': [self.landed(IOVA + o, f'v{o}', pages) for o in (0, 0x1000)]}
        pt.map(IOVA, moved)
        pt.map(IOVA + 0x1000, moved + 0x1000)
        smmu.command(CMD_TLBI_NH_VA, d0=5 << 48, d1=IOVA | 1)        # leaf, this page only
        smmu.sync()
        out['after_va'] = [self.landed(IOVA + o, f'w{o}', pages) for o in (0, 0x1000)]
        smmu.command(CMD_TLBI_NH_ASID, d0=6 << 48)                    # another ASID
        smmu.sync()
        out['after_other_asid'] = [self.landed(IOVA + o, f'x{o}', pages) for o in (0, 0x1000)]
        smmu.command(CMD_TLBI_NH_ASID, d0=5 << 48)
        smmu.sync()
        out['after_asid'] = [self.landed(IOVA + o, f'y{o}', pages) for o in (0, 0x1000)]
        return out

    def tlbi_range(self):
        smmu = self.smmu()
        smmu.enable()
        pt, _ = self.s1_setup(smmu, pages=4, asid=3)
        pages = tuple(PAGE_A + 0x1000 * i for i in range(4)) + tuple(PAGE_B + 0x10000 + 0x1000 * i
                                                                      for i in range(4))
        out = {'first': [self.landed(IOVA + 0x1000 * i, f'r{i}', pages)[1] for i in range(4)]}
        for i in range(4):
            pt.map(IOVA + 0x1000 * i, PAGE_B + 0x10000 + 0x1000 * i)
        # Range invalidation: NUM = 1, SCALE = 0 (2 pages), TG = 4 KiB, from IOVA.
        smmu.command(CMD_TLBI_NH_VA, d0=3 << 48 | 1 << 12, d1=IOVA | 1 << 10)
        smmu.sync()
        out['after'] = [self.landed(IOVA + 0x1000 * i, f's{i}', pages)[1] for i in range(4)]
        return out

    def illegal_command(self):
        smmu = self.smmu()
        smmu.enable()
        slot = smmu.cmd_prod
        cons = smmu.post(0x07)                  # not a command
        out = {'cons': cons, 'gerror': smmu.rd(GERROR)}
        smmu.post(0x46)                         # CMD_SYNC behind it waits
        out['cons_waiting'] = smmu.rd(CMDQ_CONS)
        # The driver skips the bad command (a CMD_SYNC in its place) and
        # acknowledges the error.
        smmu.put(smmu.cmdq + 16 * slot, 0x46, 0)
        smmu.wr(GERRORN, smmu.rd(GERROR))
        smmu.wr(0x98, smmu.cmd_prod)            # CMDQ_PROD again
        out['cons_after'] = smmu.rd(CMDQ_CONS)
        out['gerror_after'] = (smmu.rd(GERROR), smmu.rd(GERRORN))
        out['prod'] = smmu.cmd_prod
        return out

    def unadvertised_commands(self):
        """CMD_ATC_INV (no ATS), CMD_PRI_RESP (no PRI) and CMD_RESUME (no
        stalls): the C device accepts them and does nothing; so must we
        (before, ATC_INV tripped a debug assertion in our glue and aborted
        QEMU)."""
        smmu = self.smmu()
        smmu.enable()
        out = {}
        for name, opcode, d0 in (('atc_inv', 0x40, TESTDEV_BDF << 32 | 1 << 9),
                                 ('pri_resp', 0x41, TESTDEV_BDF << 32),
                                 ('resume', 0x44, TESTDEV_BDF << 32)):
            out[name] = (smmu.post(opcode, d0), smmu.rd(GERROR))
        smmu.post(0x46)
        out['sync'] = (smmu.rd(CMDQ_CONS), smmu.rd(GERROR), smmu.cmd_prod)
        return out

    def eventq_overflow(self):
        smmu = Smmu(self.qt, self.base, eventq_log2=1)       # two entries
        smmu.enable()
        smmu.ste(TESTDEV_BDF, STE_S1, valid=False)
        outcomes = [self.dev.write_memory(PAGE_A, b'z' * 4) for _ in range(3)]
        return {'outcomes': outcomes, 'prod': smmu.rd(EVENTQ_PROD), 'gerror': smmu.rd(GERROR),
                'events': [architected(e) for e in smmu.events()]}

    def unmap_notifier(self):
        smmu = self.smmu()
        smmu.enable()
        pt = PageTable(smmu, 1)
        pt.map(IOVA, PAGE_A)
        smmu.ste(TESTDEV_BDF, STE_S1, cd=smmu.cd(pt.root))
        attached = self.dev.attach_unmap_notifier()
        before = self.dev.unmaps()
        smmu.tlbi_all()
        return {'attached': attached & 0xff03, 'unmaps_seen': self.dev.unmaps() > before}


class SmmuParity(QemuSystemTest):

    timeout = 300

    def observe(self, build, machine, device, base):
        binary = qemu_binary(build)
        if not os.access(binary, os.X_OK):
            self.fail(f'no {binary} (scripts/setup.sh {build})')
        args = ['-M', 'virt' + (',' + machine if machine else ''), '-accel', 'qtest', '-m', '512M',
                '-nodefaults', '-display', 'none', '-device', 'rviommu-testdev,addr=02.0']
        if device is not None:
            args += ['-device', 'arm-smmuv3' + (',' + device if device else '')]
        vm = QEMUQtestMachine(binary, base_temp_dir=self.workdir, name=f'smmu-{build}')
        vm.add_args(*args)
        try:
            vm.launch()
        except Exception:       # the configuration was refused
            res = subprocess.run([binary, *args, '-qtest', 'null'], capture_output=True, text=True,
                                 timeout=30, input='')
            lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
            return {'refused': (res.returncode != 0, lines[-1].split('arm-smmuv3: ', 1)[-1]
                                if lines else '')}
        try:
            qt = VirtQtest(vm)
            regs = {off: qt.readl(base + off) for off in range(0, 0x100, 4)}
            regs.update({0x10000 + off: qt.readl(base + 0x10000 + off) for off in (0xa8, 0xac)})
            exps = Experiments(qt, base).run(regs[IDR0])
            return {'registers': regs, 'experiments': exps}
        finally:
            vm.shutdown()

    def compare(self, machine, device, base):
        c = self.observe('ref', machine, device, base)
        rs = self.observe('rs', machine, device, base)
        label = f'-M virt{"," + machine if machine else ""} -device arm-smmuv3,{device}'
        if 'refused' in c or 'refused' in rs:
            self.assertEqual(rs.get('refused'), c.get('refused'), label)
            return rs
        for off, v in c['registers'].items():
            self.assertEqual(rs['registers'][off], v, f'{label}: register 0x{off:x}')
        for name, obs in c['experiments'].items():
            self.assertEqual(rs['experiments'].get(name), obs, f'{label}: experiment {name}')
        self.assertEqual(sorted(rs['experiments']), sorted(c['experiments']), label)
        return rs

    def test_configurations(self):
        failures = []
        for machine, device, base in CONFIGS:
            try:
                rs = self.compare(machine, device, base)
                exps = rs['experiments']
                # What the architecture says, beyond agreeing with C:
                self.assertEqual(exps['disabled_bypass']['write'], TD_OK)
                self.assertNotEqual(exps['disabled_abort']['write'], TD_OK)
                self.assertNotEqual(exps['ste_abort']['write'], TD_OK)
                self.assertEqual(exps['ste_bypass']['write'], TD_OK)
                self.assertTrue(exps['ste_invalid']['events'], 'C_BAD_STE recorded')
                for name in ('stage1', 'stage2', 'nested'):
                    if name in exps:
                        e = exps[name]
                        self.assertEqual((e['mapped']['write'], e['mapped']['landed']),
                                         (TD_OK, [True, False]), name)
                        self.assertNotEqual(e['read_only']['write'], TD_OK, name)
                        self.assertEqual(e['read_only']['read'], TD_OK, name)
                        self.assertNotEqual(e['unmapped']['write'], TD_OK, name)
                        self.assertTrue(e['unmapped']['events'], f'{name}: fault recorded')
                if 'stale_until_tlbi' in exps:
                    e = exps['stale_until_tlbi']
                    self.assertEqual(e['after_tlbi']['landed'], [False, True])
                if 'unmap_notifier' in exps:
                    self.assertTrue(exps['unmap_notifier']['unmaps_seen'])
                self.assertEqual([e[0] & 0xff for e in exps['bad_streamid']['events']][:1],
                                 [0x02], 'C_BAD_STREAMID')
                e = exps['illegal_command']
                self.assertEqual((e['gerror'] & 1, e['cons'] >> 24 & 0x7f), (1, 1),
                                 'GERROR.CMDQ_ERR, CMDQ_CONS.ERR = CERROR_ILL')
                self.assertEqual(e['cons_waiting'], e['cons'], 'the queue waits')
                self.assertEqual(e['cons_after'] & 0xfffff, e['prod'], 'both consumed after the fix')
                e = exps['unadvertised_commands']
                self.assertEqual(e['sync'][:2], (e['sync'][2], 0),
                                 'ATC_INV/PRI_RESP/RESUME without the feature: consumed, no error')
                self.assertEqual(exps['eventq_overflow']['gerror'] >> 2 & 1, 1,
                                 'GERROR.EVENTQ_ABT_ERR (the C device\'s full queue)')
                if 'two_level_strtab' in exps:
                    self.assertEqual(exps['two_level_strtab']['landed'], [True, False])
                    self.assertEqual([e[0] & 0xff for e in exps['cd_invalid']['events']][:1],
                                     [0x0a], 'C_BAD_CD')
                    e = exps['stale_cd_until_cfgi_cd']
                    self.assertEqual([e['after_tlbi_only'][1], e['after_cfgi_cd'][1]],
                                     [[True, False], [False, True]], 'stale CD until CFGI_CD')
                    e = exps['tlbi_by_va_and_asid']
                    self.assertEqual([x[1] for x in e['after_va']],
                                     [[False, False, True, False], [False, True, False, False]])
                    self.assertEqual([x[1] for x in e['after_asid']],
                                     [[False, False, True, False], [False, False, False, True]])
                    e = exps['tlbi_range']
                    self.assertEqual([x[4:] for x in e['after']],
                                     [[True, False, False, False], [False, True, False, False],
                                      [False] * 4, [False] * 4], 'two pages invalidated')
            except AssertionError as e:
                failures.append(f'{dict(machine=machine, device=device)}: {e}')
        self.assertEqual(failures, [], '\n'.join(failures))

    def test_refused_configurations(self):
        failures = []
        for machine, device in REFUSED:
            try:
                rs = self.compare(machine, device, SMMU_BASE)
                self.assertIn('refused', rs)
            except AssertionError as e:
                failures.append(f'{dict(machine=machine, device=device)}: {e}')
        self.assertEqual(failures, [], '\n'.join(failures))

    def test_help_lists_the_c_device_properties_and_no_children(self):
        """`-device arm-smmuv3,help`: every property of the C device, and,
        as there, no child region or IRQ link (created at realize)."""
        def props(build):
            res = subprocess.run([qemu_binary(build), '-M', 'virt', '-device', 'arm-smmuv3,help'],
                                 capture_output=True, text=True, timeout=30)
            self.assertEqual(res.returncode, 0, res.stderr)
            return {ln.split('=', 1)[0].strip(): ln.split('=', 1)[1].split()[0]
                    for ln in res.stdout.splitlines()[1:] if '=' in ln}
        c, rs = props('ref'), props('rs')
        for name, typ in c.items():
            self.assertEqual(rs.get(name), typ, name)
        self.assertEqual([n for n, t in rs.items() if '<child<' in t or 'sysbus-irq' in n], [])


if __name__ == '__main__':
    QemuSystemTest.main()
