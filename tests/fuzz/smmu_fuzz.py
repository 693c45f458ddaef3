# SPDX-License-Identifier: GPL-2.0-or-later
"""Hostile-guest programs for arm-smmuv3 on -M virt, generated from a seed
(the SMMUv3 counterpart of vtd_fuzz.py; device_fuzz.py runs them).

A valid prologue (stream table, linear or two-level; context descriptors and
stage-1/stage-2 tables for rviommu-testdev and edu; command and event
queues; the SMMU enabled), then random and mutated-valid register writes
(both register pages), STE, CD, L1-descriptor and page-table words mutated,
commands of every opcode with random fields (CMD_SYNC with MSI completion
to random addresses), DMA from the test device (SubstreamIDs as PASIDs,
ATS) and from edu, edu's MSIs (which the SMMU translates too), event queue
consumption and clock steps.  The table encoders are the functional tests'
(smmu_qtest.py).
"""

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'functional'))
# pylint: disable=wrong-import-position
import fuzz_program
import smmu_model
import smmu_qtest as S
import vtd_qtest as V

RAM_SIZE = 512 << 20
TABLES, TABLES_END = S.RAM_BASE + 0x100000, S.RAM_BASE + 0x1000000
DATA, DATA_PAGES = S.RAM_BASE + 0x2000000, 32
SCRATCH = S.RAM_BASE + 0x1800000        # where isolation programs let the SMMU write
TD_BDF, EDU_BDF = 2 << 3, 3 << 3
TD_BAR0, EDU_BAR0 = S.PCI_MMIO_BASE, S.PCI_MMIO_BASE + 0x100000
POOL = [0x8000000 + 0x1000 * k for k in range(8)] + [0x40000000 + 0x201000 * k for k in range(1, 5)]
EDU_MSI_CAP = 0x40
# Interrupts on -M virt (GICv2): edu's MSIs go to the GICv2m frame's SETSPI
# register, whose data is the interrupt id (80-143: SPIs 48-111); the
# SMMU's own wired lines are SPIs 74-77 (ids 106-109).
GICD = 0x08000000
DOORBELL = 0x08020040
MSI_PAGE = DOORBELL & ~0xfff
SMMU_WIRED = frozenset(range(106, 110))
PEND_WORDS = (2, 3, 4)                  # GICD_ISPENDR/ICPENDR words: ids 64-159

# Page 0 and page 1 registers (IHI 0070 6.3) with their widths.
REGS = [(0x00, 4), (0x04, 4), (0x08, 4), (0x0c, 4), (0x10, 4), (0x14, 4), (0x18, 4),
        (0x1c, 4), (0x20, 4), (0x24, 4), (0x28, 4), (0x2c, 4), (0x3c, 4), (0x40, 4),
        (0x44, 4), (0x48, 4), (0x4c, 4), (0x50, 4), (0x54, 4), (0x58, 8), (0x60, 4),
        (0x64, 4), (0x68, 8), (0x70, 4), (0x74, 4), (0x78, 4), (0x80, 8), (0x88, 4),
        (0x90, 8), (0x98, 4), (0x9c, 4), (0xa0, 8), (0xa8, 4), (0xac, 4), (0xb0, 8),
        (0xb8, 4), (0xbc, 4), (0xc0, 8), (0xc8, 4), (0xcc, 4), (0xd0, 8), (0xd8, 4),
        (0xdc, 4), (0x100a8, 4), (0x100ac, 4), (0x100c8, 4), (0x100cc, 4)]
OPCODES = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x11, 0x12, 0x13, 0x18, 0x1a, 0x20,
           0x28, 0x2a, 0x30, 0x40, 0x41, 0x44, 0x46]


class SmmuRecorder(fuzz_program.Recorder):
    """The recorder on -M virt: the few reads the encoders make get what a
    working SMMU answers (CONS follows PROD, CR0ACK follows CR0);
    configuration space through the ECAM."""

    def answer(self, addr, width):
        if width == 4 and addr in (S.SMMU_BASE + S.CMDQ_CONS, S.SMMU_BASE + S.CR0ACK,
                                   S.SMMU_BASE + S.CR0):
            src = S.CMDQ_PROD if addr == S.SMMU_BASE + S.CMDQ_CONS else S.CR0
            return self.last.get(S.SMMU_BASE + src, 0)
        return 0

    def pci_cfg_writel(self, bdf, off, val):
        self.writel(S.ECAM_BASE + (bdf << 12) + off, val)


tag = fuzz_program.tag


class Program(fuzz_program.ProgramBase):
    """One seed's configuration and steps (see vtd_fuzz.Program)."""

    RAM_MIB = RAM_SIZE >> 20
    # Writes that reach virt's flash (at 0, where bypass and hostile tables
    # send many DMAs) make QEMU hold a few hundred MiB for a while, on both
    # builds alike: only growth beyond that is reported.
    MAX_GROWTH_MIB = 1024

    TD_BAR0, TD_BDF, EDU_BDF = TD_BAR0, TD_BDF, EDU_BDF
    TD_CFG = S.ECAM_BASE + (TD_BDF << 12)
    POINTER_MASK = 0x000f_ffff_ffff_f000

    def __init__(self, seed, steps, isolation=None):
        self.seed = seed
        self.rng = random.Random(seed)
        self.mode = self.rng.choice(['s1', 's2', 'nested', 'bypass', 'mixed', '2lvl'])
        # Isolation programs (every fourth seed): the devices and the SMMU
        # write no memory but a scratch area (no DMA writes; event queue,
        # MSI and CMD_SYNC addresses in the scratch area), and the test
        # device's reads are checked against smmu_model.py.
        self.isolation = seed % 4 == 0 if isolation is None else isolation
        self.steps = []
        self.checks = []
        self.regs = {}
        self.qt = SmmuRecorder()
        self.words = []
        self.model = smmu_model.Model(self.qt.ram, S.RAM_BASE, RAM_SIZE, [TD_BDF, EDU_BDF],
                                      [p & ~0xfff for p in POOL] + [MSI_PAGE])
        # Interrupt isolation: after each MSI of an isolation program, the
        # interrupt ids pending in the GIC since the last check (then
        # cleared) may only be the MSI's, when edu's stream reaches the
        # doorbell, or the SMMU's own.
        self.irq_checks = []             # (step index, allowed ids or None)
        self.msi_data = 0x60
        self.irq_allowed, self.irq_unknown = set(), False
        self.prologue()
        self.prologue_steps = len(self.steps)
        for _ in range(steps):
            self.random_step()

    def pointer(self):
        rng = self.rng
        if rng.random() < (0.05 if self.isolation else 0.25):
            return rng.choice([S.SMMU_BASE, S.SMMU_BASE + 0x10000, TD_BAR0, EDU_BAR0,
                               0x08000000, S.ECAM_BASE, 0])
        return rng.choice([
            rng.randrange(TABLES, TABLES_END, 0x1000),
            rng.randrange(DATA, DATA + DATA_PAGES * 0x1000, 0x1000),
            S.RAM_BASE + RAM_SIZE, S.RAM_BASE - 0x1000, 1 << 44, (1 << 52) - 0x1000,
            2**64 - 0x1000, rng.getrandbits(48) & ~0xfff,
        ])

    def prologue(self):
        qt, rng = self.qt, self.rng
        qt.pci_cfg_writel(TD_BDF, 0x10, TD_BAR0)
        qt.pci_cfg_writel(TD_BDF, 0x14, 0)
        qt.pci_cfg_writel(TD_BDF, 0x04, 0x6)
        cfg = S.ECAM_BASE + (TD_BDF << 12)
        qt.cmd(f'writew 0x{cfg + S.ATS_CAP + 6:x} 0x8000')
        qt.cmd(f'writew 0x{cfg + S.PASID_CAP + 6:x} 0x7')
        qt.pci_cfg_writel(EDU_BDF, 0x10, EDU_BAR0)
        qt.pci_cfg_writel(EDU_BDF, 0x04, 0x6)
        self.emit('devices')
        self.tag_pages(DATA, DATA_PAGES)
        smmu = S.Smmu(qt, S.SMMU_BASE, TABLES, TABLES_END)
        self.smmu = smmu
        if self.mode == '2lvl':
            smmu.two_level(rng.choice([4, 6, 8]))
        smmu.enable()
        base = smmu.l1 if smmu.l2 else smmu.strtab
        cfg = (1 << 16 | smmu.split << 6 | smmu.strtab_log2) if smmu.l2 else smmu.strtab_log2
        self.model.strtab(base, cfg)
        self.regs[S.STRTAB_BASE], self.regs[S.STRTAB_BASE_CFG] = base, cfg
        self.emit('enable')
        for sid in (TD_BDF, EDU_BDF):
            kind = self.mode if self.mode in ('s1', 's2', 'nested', 'bypass') else \
                rng.choice(['s1', 's2', 'nested', 'bypass'])
            s1 = S.PageTable(smmu, 1)
            s2 = S.PageTable(smmu, 2)
            for i, iova in enumerate(POOL):
                out = DATA + ((i + sid) % DATA_PAGES) * 0x1000
                if kind == 's1':
                    s1.map(iova, out, write=rng.random() < 0.7)
                elif kind == 's2':
                    s2.map(iova, out, write=rng.random() < 0.7)
                elif kind == 'nested':
                    s1.map(iova, out, write=rng.random() < 0.7)
            if kind == 'nested':
                # stage 2: identity over the tables and the data (1 GiB blocks at level 1)
                for a in (S.RAM_BASE, S.RAM_BASE + 0x40000000):
                    smmu.put(s2.root + 8 * ((a >> 30) & 0x1ff),
                             a | S.DESC_BLOCK | s2.attrs(True))
            cd = smmu.cd(s1.root, asid=sid) if kind in ('s1', 'nested') else 0
            config = {'s1': S.STE_S1, 's2': S.STE_S2, 'nested': S.STE_NESTED,
                      'bypass': S.STE_BYPASS}[kind]
            smmu.ste(sid, config, cd=cd, s2ttb=s2.root, vmid=sid)
            self.words += [smmu.ste_addr(sid), smmu.ste_addr(sid) + 8, smmu.ste_addr(sid) + 16,
                           smmu.ste_addr(sid) + 24]
            if cd:
                self.words += [cd, cd + 8]
            self.words += [t + 8 * ((POOL[0] >> 12) & 0x1ff) for t in
                           list(s1.tables.values()) + list(s2.tables.values())]
            self.words += [s1.root, s2.root]
        self.model.ssids = {1, 2}
        self.model.update()
        self.emit('streams')
        qt.pci_cfg_writel(EDU_BDF, EDU_MSI_CAP + 4, DOORBELL)     # GICv2m frame SETSPI
        qt.pci_cfg_writel(EDU_BDF, EDU_MSI_CAP + 8, 0)
        qt.pci_cfg_writel(EDU_BDF, EDU_MSI_CAP + 12, 0x60)
        qt.pci_cfg_writel(EDU_BDF, EDU_MSI_CAP, 0x800005 | (1 << 16))
        self.emit('edu msi')
        if self.isolation:
            # The GICv2m ids enabled and edge-triggered (a pulse latches
            # pending), nothing pending.
            for n in PEND_WORDS:
                qt.writel(GICD + 0x100 + 4 * n, 0xffffffff)
            for n in range(4, 10):
                qt.writel(GICD + 0xc00 + 4 * n, 0xaaaaaaaa)
            for n in PEND_WORDS:
                qt.writel(GICD + 0x280 + 4 * n, 0xffffffff)
            self.emit('gic')

    # -- random steps -------------------------------------------------------

    def random_step(self):
        ops = [(self.op_register, 6), (self.op_table, 8), (self.op_command, 8),
               (self.op_testdev_dma, 8), (self.op_edu_dma, 3), (self.op_msi, 2),
               (self.op_eventq, 2), (self.op_clock, 1), (self.op_config, 1), (self.op_read, 2),
               (self.op_mirror, 1)]
        fn = self.rng.choices([f for f, _ in ops], [w for _, w in ops])[0]
        fn()

    def op_register(self):
        rng, qt = self.rng, self.qt
        off, width = rng.choice(REGS) if rng.random() < 0.9 else \
            (rng.choice([0, 0x10000]) + rng.randrange(0, 0x1000, 4), 4)
        if rng.random() < 0.05:
            width = 12 - width           # an access of the other width
        if off in (S.STRTAB_BASE, S.CMDQ_BASE, S.EVENTQ_BASE, 0xc0) and rng.random() < 0.6:
            val = (self.pointer() & 0x000f_ffff_ffff_ffc0) | rng.randrange(20) \
                | (rng.getrandbits(1) << 62)
        elif off == S.CR0 and rng.random() < 0.7:
            val = rng.getrandbits(5)
        elif off == S.CMDQ_PROD and rng.random() < 0.5:
            val = (self.smmu.cmd_prod + rng.randrange(-2, 300)) & 0xfffff
        else:
            val = self.r64()
        if self.isolation and off in (0xa0, 0xc0):             # event / PRI queue bases
            val = SCRATCH | (val & (1 << 62)) | min(val & 0x1f, 7)
        if self.isolation and off in (0x68, 0xb0, 0xd0):       # MSI addresses
            val = SCRATCH + 0x8000 + (val & 0xffc)
        def reaches(reg, size):
            return off < reg + size and reg < off + width
        if self.isolation and any(reaches(r, 8) and (off, width) != (r, 8)
                                  for r in (0xa0, 0xc0, 0x68, 0xb0, 0xd0)):
            # Part of a queue base or MSI address (a write across it, or
            # its upper half): a read instead, so that the SMMU keeps
            # writing only the scratch area.
            qt.cmd(f'readl 0x{S.SMMU_BASE + off:x}')
            self.emit(f'register 0x{off:x} (read)')
            return
        (qt.writeq if width == 8 else qt.writel)(S.SMMU_BASE + off, val)
        # What the model must know, from every register the write reaches
        # (an 8-byte write at 0x1c also writes CR0).
        strtab, cr0, gbpa = reaches(S.STRTAB_BASE, 12), reaches(S.CR0, 4), reaches(S.GBPA, 4)
        if strtab:
            for reg, size in ((S.STRTAB_BASE, 8), (S.STRTAB_BASE_CFG, 4)):
                self.regs[reg] = self.merged(reg, size, off, width, val)
            self.model.strtab(self.regs[S.STRTAB_BASE], self.regs[S.STRTAB_BASE_CFG])
        if (cr0 and not (off == S.CR0 and val & 1)) or gbpa:
            self.model.smmu_off()        # GBPA decides while disabled: maybe bypass
        if self.isolation and (strtab or cr0 or gbpa):
            self.model.update()
        self.emit(f'register 0x{off:x}')

    def merged(self, reg, size, off, width, val):
        """Register `reg` (`size` bytes, value in self.regs) after a write of
        `val` (`width` bytes at `off`), byte by byte."""
        cur = self.regs.get(reg, 0)
        for i in range(width):
            a = off + i
            if reg <= a < reg + size:
                shift = 8 * (a - reg)
                cur = (cur & ~(0xff << shift)) | (((val >> (8 * i)) & 0xff) << shift)
        return cur

    def op_table(self):
        rng = self.rng
        if self.words and rng.random() < 0.8:
            addr = rng.choice(self.words)
        else:
            addr = rng.randrange(TABLES, TABLES_END, 8)
        self.smmu.put(addr, self.mutate(self.quad(addr)) & (2**64 - 1))
        if self.isolation:
            self.model.update()
        self.emit(f'table 0x{addr:x}')

    def op_command(self):
        rng, smmu = self.rng, self.smmu
        for _ in range(rng.randint(1, 4)):
            op = rng.choice(OPCODES) if rng.random() < 0.9 else rng.randrange(256)
            d0 = op | (rng.getrandbits(56) << 8 if rng.random() < 0.3 else 0)
            d0 |= rng.choice([TD_BDF, EDU_BDF, rng.getrandbits(32)]) << 32 if rng.random() < 0.5 else 0
            d1 = rng.choice([0, 31, rng.choice(POOL) | rng.randrange(64), self.r64()])
            if op == S.CMD_SYNC:
                d0 |= rng.randrange(4) << 12
                d1 = self.pointer() & 0x000f_ffff_ffff_fffc
            if self.isolation and op == S.CMD_SYNC:
                d1 = SCRATCH + 0x9000 + (d1 & 0xffc)
            mask = (1 << smmu.LOG2_ENTRIES) - 1
            slot = smmu.cmd_prod & mask
            smmu.put(smmu.cmdq + 16 * slot, d0 & (2**64 - 1), d1 & (2**64 - 1))
            smmu.cmd_prod = (smmu.cmd_prod + 1) & ((2 << smmu.LOG2_ENTRIES) - 1)
        self.qt.writel(S.SMMU_BASE + S.CMDQ_PROD, smmu.cmd_prod)
        self.emit('commands')

    def op_testdev_dma(self):
        rng = self.rng
        if self.isolation and rng.random() < 0.6:
            return self.checked_read()
        iova = rng.choice(POOL) + rng.randrange(0, 0x1000, 8) if rng.random() < 0.8 else self.r64()
        length = rng.choice([8, 64, 4096, rng.randint(1, 4096)]) if rng.random() < 0.95 \
            else rng.choice([0, 4097])
        ats = rng.random() < 0.3
        pasid = 0
        if rng.random() < (0.5 if ats else 0.05):
            pasid = (1 << 31) | rng.choice([0, 1, 2, rng.getrandbits(20)]) | rng.choice([0, 1 << 30])
        cmd = rng.choice([S.TD_READ, S.TD_READ, S.TD_WRITE, 3]) if rng.random() < 0.97 \
            else rng.getrandbits(8)
        if ats:
            cmd |= S.TD_ATS
        if self.isolation and cmd & 3 == S.TD_WRITE:
            cmd ^= S.TD_WRITE ^ S.TD_READ
        self.testdev_dma(iova, length, pasid, cmd)
        self.emit('testdev dma')

    def op_edu_dma(self):
        rng, qt = self.rng, self.qt
        iova = rng.choice(POOL) + rng.randrange(0, 0x1000, 8) if rng.random() < 0.7 \
            else rng.getrandbits(28)
        count = rng.choice([8, 64, rng.randint(1, 4096)])
        to_pci = rng.random() < 0.5 and not self.isolation
        src, dst = (V.EDU_BUF, iova) if to_pci else (iova, V.EDU_BUF)
        qt.writeq(EDU_BAR0 + V.EDU_DMA_SRC, src)
        qt.writeq(EDU_BAR0 + V.EDU_DMA_DST, dst)
        qt.writeq(EDU_BAR0 + V.EDU_DMA_CNT, count)
        qt.writeq(EDU_BAR0 + V.EDU_DMA_CMD, (V.EDU_DMA_TO_PCI if to_pci else 0) | V.EDU_DMA_RUN)
        qt.clock_step(200_000_000)
        self.emit('edu dma')

    def checked_read(self):
        """A checked test-device read of a pool page (ProgramBase)."""
        rng = self.rng
        page = rng.choice(POOL) & ~0xfff
        iova = page + rng.randrange(0, 0x1000, 8)
        ats = rng.random() < 0.3
        ssid = rng.choice([1, 2]) if ats and rng.random() < 0.5 else None
        super().checked_read(page, iova, ssid, ats, self.model.allowed(TD_BDF, ssid, page))

    def verify(self, answers, stats=None):
        stats = {} if stats is None else stats
        return self.verify_reads(answers, stats) + self.verify_irqs(answers, stats)

    # -- interrupt isolation ------------------------------------------------

    def allow_msi(self):
        """edu just sent its MSI (data self.msi_data to the doorbell): its
        id may be pending if the SMMU lets edu's stream reach the doorbell
        page untranslated, as the model says."""
        allowed = self.model.allowed(EDU_BDF, None, MSI_PAGE)
        if allowed is None:
            self.irq_unknown = True
        elif allowed[1] or MSI_PAGE in allowed[0]:
            self.irq_allowed.add(self.msi_data & 0x3ff)

    def irq_check(self):
        """Read which GICv2m ids are pending, then clear them; the runner
        checks them (verify_irqs)."""
        for n in PEND_WORDS:
            self.qt.cmd(f'readl 0x{GICD + 0x200 + 4 * n:x}')
        for n in PEND_WORDS:
            self.qt.writel(GICD + 0x280 + 4 * n, 0xffffffff)
        self.irq_checks.append((len(self.steps), None if self.irq_unknown
                                else frozenset(self.irq_allowed | SMMU_WIRED)))
        self.irq_allowed, self.irq_unknown = set(), False
        self.emit('interrupt check')

    def verify_irqs(self, answers, stats):
        bad = []
        for step, allowed in self.irq_checks:
            got = answers.get(step)
            if not got or len(got) < len(PEND_WORDS):
                continue
            pending = set()
            for n, line in zip(PEND_WORDS, got):
                word = int(line.split()[1], 16)
                pending |= {32 * n + b for b in range(32) if word >> b & 1}
            if allowed is None:
                continue
            stats['irq checks'] = stats.get('irq checks', 0) + 1
            stats['ids pending'] = stats.get('ids pending', 0) + len(pending)
            stats['msi ids'] = stats.get('msi ids', 0) + len(pending - SMMU_WIRED)
            new = pending - allowed
            if new:
                bad.append(f'step {step}: interrupt ids {sorted(new)} pending; no MSI the '
                           f'tables let through to the doorbell sent them')
        return bad

    def op_msi(self):
        rng, qt = self.rng, self.qt
        if rng.random() < 0.5:
            addr = rng.choice([DOORBELL, rng.choice(POOL), self.r64() & ~3])
            if self.isolation and addr != DOORBELL:
                addr = DOORBELL              # an MSI to a pool IOVA would write memory
            qt.pci_cfg_writel(EDU_BDF, EDU_MSI_CAP + 4, addr & 0xffffffff)
            qt.pci_cfg_writel(EDU_BDF, EDU_MSI_CAP + 8, addr >> 32)
            self.msi_data = rng.getrandbits(16)
            qt.pci_cfg_writel(EDU_BDF, EDU_MSI_CAP + 12, self.msi_data)
        qt.writel(EDU_BAR0 + 0x60, rng.getrandbits(32) | 1)
        qt.writel(EDU_BAR0 + 0x64, 0xffffffff)
        self.emit('msi')
        if self.isolation:
            self.allow_msi()
            self.irq_check()

    def op_eventq(self):
        rng, qt = self.rng, self.qt
        qt.cmd(f'readl 0x{S.SMMU_BASE + S.EVENTQ_PROD:x}')
        qt.writel(S.SMMU_BASE + S.EVENTQ_CONS, rng.choice([0, rng.getrandbits(20)]))
        qt.writel(S.SMMU_BASE + S.GERRORN, rng.getrandbits(32))
        self.emit('event queue')

    def op_read(self):
        off, width = self.rng.choice(REGS)
        self.qt.cmd(f'read{"q" if width == 8 else "l"} 0x{S.SMMU_BASE + off:x}')
        self.emit(f'read 0x{off:x}')

    def qemu_args(self):
        return ['-machine', 'virt,iommu=smmuv3',
                '-device', f'rviommu-testdev,addr={TD_BDF >> 3:02x}.0',
                '-device', f'edu,addr={EDU_BDF >> 3:02x}.0']
