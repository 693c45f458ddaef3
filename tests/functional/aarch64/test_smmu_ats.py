#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""PCIe ATS on our arm-smmuv3 (`ats=on`, SMMUv3 3.9.1), under qtest with
`rviommu-testdev` playing an ATS- and PASID-capable endpoint with its own
ATC: Translation Requests answered per STE.EATS (Unsupported Request and
F_BAD_ATS_TREQ when ATS is disabled, Completer Abort on configuration
errors, recorded only under SMMU_CR2.REC_CFG_ATS, success granting what
the tables allow), PASID-tagged requests selecting their SubstreamID's
context descriptor, the device's translated accesses, and CMD_ATC_INV
reaching the ATC of the StreamID and SubstreamID it names.

QEMU 10.2.2's C device has no ATS (no `ats` property): with `ats=off`,
both builds must refuse the device's translation requests and record
nothing.
"""

import hashlib

import rviommu_kit
from smmu_qtest import (start_virt, PageTable, RAM_BASE,
                        STE_S1, CR0, CR0_CMDQEN, CR0_EVENTQEN, CR2, CMD_ATC_INV, CMD_TLBI_NH_ALL,
                        TD_XLATE, TD_ATC_HITS, TD_ATC_INVALS)

SID = 2 << 3                      # 00:02.0
IOVA = 0x8000000
PAGE_A, PAGE_B, PAGE_C = RAM_BASE + 0x1800000, RAM_BASE + 0x1801000, RAM_BASE + 0x1802000
F_BAD_ATS_TREQ, C_BAD_STE = 0x05, 0x04
EATS_FULL = 1 << 28               # STE word 1, bits 29:28 = 0b01
S1DSS_SSID0 = 0b10                # STE word 1: non-PASID traffic uses CD 0
CR2_REC_CFG_ATS = 1 << 3


def pattern(*tags):
    return hashlib.sha256(repr(tags).encode()).digest() * 2


class SmmuAts(rviommu_kit.MachinesTest):

    timeout = 120

    def start(self, build, smmu_opts):
        args = [a for opt in smmu_opts for a in ('-global', f'arm-smmuv3.{opt}')]
        qt, dev, smmu = start_virt(self, build, f'ats-{build}', *args)
        dev.enable_ats()
        return qt, dev, smmu

    def s1_ste(self, smmu, cd, eats=True, cdmax=0, s1dss=0):
        """A stage-1 STE of the test device: CD table at `cd` (linear, 2^cdmax
        entries), EATS, S1DSS."""
        d0 = 1 | STE_S1 << 1 | (cd & 0x000fffffffffffc0) | cdmax << 59
        d1 = (EATS_FULL if eats else 0) | s1dss
        smmu.put(smmu.ste_addr(SID), d0, d1, 0, 0, 0, 0, 0, 0)
        smmu.cfgi_ste(SID)

    def atc_inv(self, smmu, ssid=None, global_=False, addr=0, size=52):
        d0 = SID << 32 | (1 << 11 | ssid << 12 if ssid is not None else 0) | (1 << 9 if global_ else 0)
        smmu.command(CMD_ATC_INV, d0=d0, d1=(addr & ~0xfff) | size)
        smmu.sync()

    def event_types(self, smmu):
        return [(q[0] & 0xff, q[0] >> 32) for q in smmu.events()]

    def test_translation_requests_and_atc_invalidation(self):
        qt, dev, smmu = self.start('rs', ['ats=on'])
        self.assertTrue(smmu.rd(0x00) & (1 << 10), 'IDR0.ATS')
        self.assertTrue(smmu.rd(0x00) & (1 << 11), 'IDR0.NS1ATS: no split-stage ATS')
        pt = PageTable(smmu, 1)
        pt.map(IOVA, PAGE_A)
        pt.map(IOVA + 0x1000, PAGE_B, write=False)
        cd = smmu.cd(pt.root, asid=3)
        qt.memwrite(PAGE_A, pattern('a'))
        qt.memwrite(PAGE_B, pattern('b'))

        # EATS = 0b00: Unsupported Request and F_BAD_ATS_TREQ; the same
        # page without ATS is translated.
        self.s1_ste(smmu, cd, eats=False)
        self.assertEqual(dev.ats_read(IOVA, 16)[0], 'ats-error')
        self.assertEqual(self.event_types(smmu), [(F_BAD_ATS_TREQ, SID)])
        self.assertEqual(dev.read_memory(IOVA, 16), (1, pattern('a')[:16]))

        # Full ATS: the device reads and writes through its ATC.
        self.s1_ste(smmu, cd)
        self.assertEqual(dev.ats_read(IOVA + 0x10, 32), ('ok', pattern('a')[0x10:0x30]))
        self.assertEqual(qt.readq(dev.bar0 + TD_XLATE), PAGE_A + 0x10)
        self.assertEqual(dev.ats_write(IOVA + 0x100, b'\x5a' * 8), 'ok')
        self.assertEqual(qt.memread(PAGE_A + 0x100, 8), b'\x5a' * 8)
        # Read-only page: read granted, write denied; unmapped: denied.
        self.assertEqual(dev.ats_read(IOVA + 0x1000, 8), ('ok', pattern('b')[:8]))
        self.assertEqual(dev.ats_write(IOVA + 0x1000, b'\1' * 8), 'ats-denied')
        self.assertEqual(qt.memread(PAGE_B, 8), pattern('b')[:8])
        self.assertEqual(dev.ats_read(IOVA + 0x5000, 8)[0], 'ats-denied')
        self.assertEqual(self.event_types(smmu), [], 'translation requests record no faults')

        # Remap IOVA to PAGE_C: the ATC keeps the old translation through a
        # TLB invalidation, until CMD_ATC_INV.
        qt.memwrite(PAGE_C, pattern('c'))
        pt.map(IOVA, PAGE_C)
        smmu.command(CMD_TLBI_NH_ALL)
        smmu.sync()
        hits = dev.counter(TD_ATC_HITS)
        self.assertEqual(dev.ats_read(IOVA, 8), ('ok', pattern('a')[:8]))
        self.assertGreater(dev.counter(TD_ATC_HITS), hits)
        invals = dev.counter(TD_ATC_INVALS)
        self.atc_inv(smmu, addr=IOVA, size=0)
        self.assertGreater(dev.counter(TD_ATC_INVALS), invals)
        self.assertEqual(dev.ats_read(IOVA, 8), ('ok', pattern('c')[:8]))

    def test_pasid_requests_use_their_substream(self):
        qt, dev, smmu = self.start('rs', ['ats=on', 'ssidsize=8'])
        # CD 0 (non-PASID traffic, S1DSS = 0b10) maps IOVA to PAGE_A, CD 5
        # maps it to PAGE_B.
        table = smmu.alloc(64 << 3)
        pt0, pt5 = PageTable(smmu, 1), PageTable(smmu, 1)
        pt0.map(IOVA, PAGE_A)
        pt5.map(IOVA, PAGE_B)
        smmu.cd(pt0.root, asid=1, at=table)
        smmu.cd(pt5.root, asid=5, at=table + 64 * 5)
        qt.memwrite(PAGE_A, pattern('a'))
        qt.memwrite(PAGE_B, pattern('b'))
        qt.memwrite(PAGE_C, pattern('c'))
        self.s1_ste(smmu, table, cdmax=3, s1dss=S1DSS_SSID0)
        self.assertEqual(dev.ats_read(IOVA, 8), ('ok', pattern('a')[:8]))
        self.assertEqual(dev.ats_read(IOVA, 8, pasid=5), ('ok', pattern('b')[:8]))
        # A SubstreamID without a valid CD: Completer Abort, not recorded
        # (REC_CFG_ATS = 0).
        self.assertEqual(dev.ats_read(IOVA, 8, pasid=6)[0], 'ats-error')
        self.assertEqual(self.event_types(smmu), [])

        # Both now map PAGE_C; ATC_INV with SubstreamID 5 reaches only the
        # PASID 5 entries, ATC_INV without SSV every entry of the stream.
        pt0.map(IOVA, PAGE_C)
        pt5.map(IOVA, PAGE_C)
        smmu.command(CMD_TLBI_NH_ALL)
        smmu.sync()
        self.atc_inv(smmu, ssid=5)
        self.assertEqual(dev.ats_read(IOVA, 8, pasid=5), ('ok', pattern('c')[:8]))
        self.assertEqual(dev.ats_read(IOVA, 8), ('ok', pattern('a')[:8]), 'stale until its ATC_INV')
        self.atc_inv(smmu)
        self.assertEqual(dev.ats_read(IOVA, 8), ('ok', pattern('c')[:8]))

    def test_configuration_errors_and_disabled_smmu(self):
        qt, dev, smmu = self.start('rs', ['ats=on'])
        # STE.V = 0: Completer Abort; recorded only with REC_CFG_ATS.
        smmu.put(smmu.ste_addr(SID), 0, EATS_FULL, 0, 0, 0, 0, 0, 0)
        smmu.cfgi_ste(SID)
        self.assertEqual(dev.ats_read(IOVA, 8)[0], 'ats-error')
        self.assertEqual(self.event_types(smmu), [])
        smmu.wr(CR2, CR2_REC_CFG_ATS)
        self.assertEqual(dev.ats_read(IOVA, 8)[0], 'ats-error')
        self.assertEqual(self.event_types(smmu), [(C_BAD_STE, SID)])
        # SMMUEN = 0: Unsupported Request and F_BAD_ATS_TREQ.
        smmu.wr(CR0, CR0_CMDQEN | CR0_EVENTQEN)
        self.assertEqual(dev.ats_read(IOVA, 8)[0], 'ats-error')
        self.assertEqual(self.event_types(smmu), [(F_BAD_ATS_TREQ, SID)])

    def test_without_ats_both_builds_refuse_translation_requests(self):
        for build in ('rs', 'ref'):
            qt, dev, smmu = self.start(build, [])
            self.assertFalse(smmu.rd(0x00) & (1 << 10), f'{build}: IDR0.ATS')
            pt = PageTable(smmu, 1)
            pt.map(IOVA, PAGE_A)
            cd = smmu.cd(pt.root)
            self.s1_ste(smmu, cd)
            qt.memwrite(PAGE_A, pattern('a'))
            self.assertEqual(dev.ats_read(IOVA, 8)[0], 'ats-error', build)
            self.assertEqual(self.event_types(smmu), [], build)
            self.assertEqual(dev.read_memory(IOVA, 8), (1, pattern('a')[:8]), build)

if __name__ == '__main__':
    rviommu_kit.MachinesTest.main()
