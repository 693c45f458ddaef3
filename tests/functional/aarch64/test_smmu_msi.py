#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""MSIs of our arm-smmuv3 (`x-msi=on`: IDR0.MSI), under qtest: CMD_SYNC with
CS = SIG_IRQ writes its MSIData to its MSIAddress (how Linux completes
CMD_SYNC with ARM_SMMU_OPT_MSIPOLL), the event queue and GERROR interrupts
are MSIs to EVENTQ_IRQ_CFG0/1 and GERROR_IRQ_CFG0/1 when those are set, and
an MSI write that fails raises its GERROR.MSI_*_ABT_ERR.

QEMU 10.2.2's C device has wired interrupts only: without `x-msi` both
builds leave a CMD_SYNC's MSIAddress untouched.
"""

import struct

import rviommu_kit
from smmu_qtest import (start_virt, RAM_BASE,
                        GERROR, GERRORN, CMD_SYNC, IRQ_CTRL, CMDQ_CONS)

SID = 2 << 3
MSI_SYNC, MSI_EVENTQ, MSI_GERROR = RAM_BASE + 0x1900000, RAM_BASE + 0x1900040, RAM_BASE + 0x1900080
EVENTQ_IRQ_CFG0, EVENTQ_IRQ_CFG1 = 0xb0, 0xb8
GERROR_IRQ_CFG0, GERROR_IRQ_CFG1 = 0x68, 0x70
IRQ_CTRL_GERROR, IRQ_CTRL_EVENTQ = 1 << 0, 1 << 2
CS_SIG_IRQ = 1 << 12
GERROR_CMDQ_ERR, GERROR_MSI_CMDQ_ABT_ERR = 1 << 0, 1 << 4
UNASSIGNED = 0x7f0000000000      # no memory or device at this address on virt


class SmmuMsi(rviommu_kit.MachinesTest):

    timeout = 60

    def start(self, build, msi):
        return start_virt(self, build, f'msi-{build}', *(['-global', 'arm-smmuv3.x-msi=on'] if msi else []))

    def word(self, qt, addr):
        return struct.unpack('<I', qt.memread(addr, 4))[0]

    def test_msis(self):
        qt, dev, smmu = self.start('rs', msi=True)
        self.assertTrue(smmu.rd(0x00) & (1 << 13), 'IDR0.MSI')
        # CMD_SYNC, SIG_IRQ: MSIData at MSIAddress (the queue slot itself
        # would do too: that is Linux's MSI polling).
        qt.memwrite(MSI_SYNC, b'\xff' * 4)
        smmu.command(CMD_SYNC, d0=CS_SIG_IRQ | 0x1234abcd << 32, d1=MSI_SYNC)
        self.assertEqual(self.word(qt, MSI_SYNC), 0x1234abcd)

        # The event queue interrupt as an MSI: an event (C_BAD_STE: the
        # test device's STE is invalid) writes EVENTQ_IRQ_CFG1.
        smmu.wrq(EVENTQ_IRQ_CFG0, MSI_EVENTQ)
        smmu.wr(EVENTQ_IRQ_CFG1, 0xe0e0)
        smmu.wrq(GERROR_IRQ_CFG0, MSI_GERROR)
        smmu.wr(GERROR_IRQ_CFG1, 0x9e9e)
        smmu.wr(IRQ_CTRL, IRQ_CTRL_EVENTQ | IRQ_CTRL_GERROR)
        self.assertEqual(dev.dma(1, 0x1000, 8), 2, 'DMA aborted')
        kinds = {q[0] & 0xff for q in smmu.events()}
        self.assertEqual(kinds, {0x04}, 'C_BAD_STE recorded (once per translation QEMU asks for)')
        self.assertEqual(self.word(qt, MSI_EVENTQ), 0xe0e0)

        # GERROR as an MSI: an illegal command (opcode 0x07).
        cons = smmu.post(0x07)
        self.assertEqual(smmu.rd(GERROR) ^ smmu.rd(GERRORN), GERROR_CMDQ_ERR, f'CONS 0x{cons:x}')
        self.assertEqual(self.word(qt, MSI_GERROR), 0x9e9e)
        # As Linux does: replace the bad command by a CMD_SYNC, acknowledge.
        smmu.put(smmu.cmdq + 16 * (cons & ((1 << smmu.LOG2_ENTRIES) - 1)), CMD_SYNC, 0)
        smmu.wr(GERRORN, smmu.rd(GERROR))
        self.assertEqual(smmu.rd(CMDQ_CONS) & 0x1ff, smmu.cmd_prod, 'the queue ran on')

        # A CMD_SYNC MSI nobody can take: GERROR.MSI_CMDQ_ABT_ERR, signalled.
        qt.memwrite(MSI_GERROR, b'\0' * 4)
        smmu.post(CMD_SYNC, d0=CS_SIG_IRQ | 1 << 32, d1=UNASSIGNED)
        self.assertEqual(smmu.rd(GERROR) ^ smmu.rd(GERRORN), GERROR_MSI_CMDQ_ABT_ERR)
        self.assertEqual(self.word(qt, MSI_GERROR), 0x9e9e)

    def test_without_msis_both_builds_write_nothing(self):
        for build in ('rs', 'ref'):
            qt, dev, smmu = self.start(build, msi=False)
            self.assertFalse(smmu.rd(0x00) & (1 << 13), f'{build}: IDR0.MSI')
            qt.memwrite(MSI_SYNC, b'\xff' * 4)
            smmu.command(CMD_SYNC, d0=CS_SIG_IRQ | 0x1234abcd << 32, d1=MSI_SYNC)
            self.assertEqual(self.word(qt, MSI_SYNC), 0xffffffff, build)


if __name__ == '__main__':
    rviommu_kit.MachinesTest.main()
