# SPDX-License-Identifier: GPL-2.0-or-later
"""Hostile-guest programs for intel-iommu, generated from a seed.

A program is a q35 configuration (one of the device's modes) and a list of
steps, each a few qtest command lines: a valid prologue (tables, queue,
interrupt remapping table, devices), then random and mutated-valid writes
to the registers, the tables in guest RAM, the invalidation queue and the
interrupt remapping table, DMA from `edu` and `rviommu-testdev` (with and
without PASID and ATS, through the mirror notifiers) and MSIs from `edu`.
Nothing depends on the device's answers: the same seed gives the same
command lines, which run on our build and on the C reference build alike
(device_fuzz.py).  The table encoders are the functional tests' (written
from the specification, independent of the device's code).
"""

import random
import re
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'functional'))
# pylint: disable=wrong-import-position
import fuzz_program
import vtd_model
import vtd_qtest as V

RAM = 256 << 20
TABLES, TABLES_END = 0x100000, 0x300000
QUEUE = 0x300000                 # up to 128 pages (IQA.QS 7)
STATUS_PAGE = 0x3f0000
IRT = 0x400000                   # up to 64K entries of 16 bytes
DATA, DATA_PAGES = 0x800000, 64  # tagged pages the DMA pool maps to
# IOVAs the tables map: twelve pages in one last-level table, four far apart
POOL = [0x400000 + 0x1000 * k for k in range(12)] + [(k << 30) | 0x5000 for k in range(1, 5)]
EDU_DEVFN, TD_DEVFN = 0x20, V.TD_DEVFN
EDU_BAR0 = 0xd0000000
EDU_MSI_CAP = 0x40               # edu's MSI capability (64-bit)
EDU_RAISE, EDU_ACK = 0x60, 0x64
FRCD = 0xf0 + 0x130              # DMAR_FRCD_REG_OFFSET (0x220)
IVA, IOTLB = 0xf0, 0xf8          # ECAP.IRO = 0xf in both devices

# (offset, width) of every register of the window, as the C device lays it out
REGS = [(0x00, 4), (0x08, 8), (0x10, 8), (0x18, 4), (0x1c, 4), (0x20, 8), (0x28, 8),
        (0x34, 4), (0x38, 4), (0x3c, 4), (0x40, 4), (0x44, 4), (0x58, 8), (0x64, 4),
        (0x68, 4), (0x6c, 4), (0x70, 8), (0x78, 8), (0x80, 8), (0x88, 8), (0x90, 8),
        (0x9c, 4), (0xa0, 4), (0xa4, 4), (0xa8, 4), (0xac, 4), (0xb0, 8), (0xb8, 8),
        (0xc0, 8), (0xc8, 8), (0xd0, 8), (0xdc, 4), (0xe0, 4), (0xe4, 4), (0xe8, 4),
        (0xec, 4), (IVA, 8), (IOTLB, 8), (FRCD, 8), (FRCD + 8, 8)]
GCMD_BITS = [1 << b for b in range(23, 32)]

# The modes a program runs in: intel-iommu properties and machine options.
MODES = [
    ('legacy', 'aw-bits=48', ''),
    ('legacy-qi-ir', 'aw-bits=48,intremap=on', 'kernel-irqchip=split'),
    ('legacy-cm-dt', 'aw-bits=48,caching-mode=on,device-iotlb=on', ''),
    ('scalable', 'aw-bits=48,x-scalable-mode=on', ''),
    ('modern', 'aw-bits=48,x-scalable-mode=on,x-flts=on', ''),
    ('modern-dt-ir', 'aw-bits=48,x-scalable-mode=on,x-flts=on,device-iotlb=on,intremap=on',
     'kernel-irqchip=split'),
    ('modern-cm', 'aw-bits=48,x-scalable-mode=on,x-flts=on,caching-mode=on', ''),
    ('ir-eim', 'aw-bits=48,intremap=on,eim=on', 'kernel-irqchip=split'),
]


class Recorder(fuzz_program.Recorder):
    """The recorder on q35: the register reads the encoders make get the
    values both devices report (CAP with 4-level tables, ECAP.IRO, every
    GSTS handshake complete at once); configuration space through the
    0xcf8/0xcfc ports."""

    def answer(self, addr, width):
        if addr == V.VTD_BASE + V.GSTS:
            return 0xffffffff
        if addr == V.VTD_BASE + V.CAP:
            return 0x4 << 8              # SAGAW: 4-level
        if addr == V.VTD_BASE + V.ECAP:
            return 0xf << 8              # IRO
        return 0

    def pci_cfg_writel(self, bdf, reg, val):
        self.cmd(f'outl 0xcf8 0x{0x80000000 | (bdf << 8) | (reg & 0xfc):x}')
        self.cmd(f'outl 0xcfc 0x{val:x}')

    def pci_cfg_readl(self, bdf, reg):
        self.cmd(f'outl 0xcf8 0x{0x80000000 | (bdf << 8) | (reg & 0xfc):x}')
        self.cmd('inl 0xcfc')
        return 0


tag = fuzz_program.tag


class Program(fuzz_program.ProgramBase):
    """One seed's configuration and steps (lists of qtest lines with a
    label)."""

    RAM_MIB = RAM >> 20

    TD_BAR0, TD_BDF, EDU_BDF = V.TD_BAR0, TD_DEVFN, EDU_DEVFN
    TD_CFG = V.ecam(TD_DEVFN)

    def __init__(self, seed, steps, isolation=None):
        self.seed = seed
        self.rng = random.Random(seed)
        self.mode, self.props, self.machine = self.rng.choice(MODES)
        # Isolation programs (every fourth seed) check each test-device read
        # against the model (vtd_model.py); so that guest RAM stays what the
        # fuzzer wrote, their devices do not write memory (no DMA writes,
        # wait descriptors write only the status page).
        self.isolation = seed % 4 == 0 if isolation is None else isolation
        self.checks = []                 # (step index, sid, pasid, iova, allowed)
        self.regs = {}                   # register bytes the fuzzer wrote
        # Interrupts: vectors that may appear in CPU 0's IRR (sticky under
        # qtest), IRTE vectors seen per index (the interrupt entry cache
        # keeps them), interrupt remapping tables ever latched.
        self.irq_checks = []             # (step index, allowed vectors or None)
        self.irq_allowed = {0}
        self.irte_vectors = {}
        self.irtas = set()
        self.ir_off_ever = True
        self.irq_unknown = False
        self.scalable = 'scalable' in self.props
        self.first_stage = 'x-flts=on' in self.props
        self.steps = []
        self.qt = Recorder()
        self.words = []                  # addresses of entries the prologue wrote
        self.model = vtd_model.Model(self.qt.ram, RAM, [EDU_DEVFN, TD_DEVFN],
                                     [p & ~0xfff for p in POOL])
        self.prologue()
        self.prologue_steps = len(self.steps)
        for _ in range(steps):
            self.random_step()

    # -- helpers --------------------------------------------------------

    def write_quad(self, addr, val):
        self.qt.memwrite(addr, struct.pack('<Q', val & (2**64 - 1)))

    def pointer(self):
        """An address a hostile entry points at (device memory rarely in
        isolation programs: what a table read there returns is not
        predictable, which ends the checks of the requesters concerned)."""
        rng = self.rng
        if rng.random() < (0.05 if self.isolation else 0.25):
            return rng.choice([V.VTD_BASE, 0xfee00000, EDU_BAR0, V.TD_BAR0, 0xfffff000])
        return rng.choice([
            rng.randrange(TABLES, TABLES_END, 0x1000),        # another table
            rng.randrange(DATA, DATA + DATA_PAGES * 0x1000, 0x1000),
            RAM, RAM - 0x1000, 1 << 40, (1 << 52) - 0x1000, 2**64 - 0x1000, 0,
            rng.getrandbits(52) << 12,
        ])

    # -- prologue: a valid configuration ---------------------------------

    def prologue(self):
        qt, rng = self.qt, self.rng
        V.enable_ecam(qt)
        qt.pci_cfg_writel(EDU_DEVFN, 0x10, EDU_BAR0)
        qt.pci_cfg_writel(EDU_DEVFN, 0x04, 0x6)
        qt.pci_cfg_writel(TD_DEVFN, 0x10, V.TD_BAR0)
        qt.pci_cfg_writel(TD_DEVFN, 0x04, 0x6)
        cfg = V.ecam(TD_DEVFN)
        qt.cmd(f'writew 0x{cfg + V.ATS_CAP + 6:x} 0x8000')
        qt.cmd(f'writew 0x{cfg + V.PASID_CAP + 6:x} 0x7')
        self.emit('devices')
        self.tag_pages(DATA, DATA_PAGES)
        vtd = (V.ScalableVtd if self.scalable else V.LegacyVtd)(qt, TABLES, TABLES_END)
        self.vtd = vtd
        self.pasids = set()
        if self.scalable:
            for devfn in (EDU_DEVFN, TD_DEVFN):
                pdir = vtd.new_pasid_dir()
                vtd.set_context(0, devfn, pdir, rid_pasid=0, dte=rng.random() < 0.5,
                                paside=True)
                self.words.append(vtd.context_entry_addr(0, devfn))
                pasids = [0] + rng.sample(range(1, 8192), 3)
                self.pasids |= set(pasids)
                for pasid in pasids:
                    pgtt = rng.choice([V.PGTT_SS, V.PGTT_FS, V.PGTT_PT, V.PGTT_NESTED])
                    top = vtd.new_address_space()
                    fs = None
                    if pgtt in (V.PGTT_FS, V.PGTT_NESTED):
                        fs = vtd.first_stage(top if pgtt == V.PGTT_NESTED else None,
                                             iova_base=0x4000000)
                    for i, iova in enumerate(POOL):
                        out = DATA + ((i + pasid) % DATA_PAGES) * 0x1000
                        if fs is not None:
                            self.words.append(fs.map_4k(iova, out))
                            if pgtt == V.PGTT_NESTED:
                                vtd.map_4k(top, out, out)
                        else:
                            self.words.append(vtd.map_4k(top, iova, out))
                    vtd.set_pasid_entry(pdir, pasid, pgtt, did=1 + pasid % 4, slptptr=top,
                                        flptptr=fs.root if fs else 0,
                                        flpm=0, sre=rng.random() < 0.5)
                    self.words.append(vtd.pasid_entry_addr(pdir, pasid))
                    self.words.append(vtd.pasid_dir_entry_addr(pdir, pasid))
        else:
            for devfn in (EDU_DEVFN, TD_DEVFN):
                top = vtd.new_address_space()
                for i, iova in enumerate(POOL):
                    self.words.append(vtd.map_4k(top, iova, DATA + i * 0x1000,
                                                 perm=rng.choice([1, 2, 3, 3])))
                tt = 1 if ('device-iotlb' in self.props and devfn == TD_DEVFN) else 0
                vtd.set_context(0, devfn, top, did=devfn >> 3, tt=tt)
                self.words.append(vtd.context_tables[0] + devfn * 16)
        self.words.append(vtd.root)
        self.emit('tables')
        vtd.enable()
        rt = vtd.root | (vtd.TTM << 10)
        for i in range(8):
            self.regs[V.RTADDR + i] = (rt >> (8 * i)) & 0xff
        self.model.latch_root(rt)
        self.model.pasids = {p for p in self.pasids}
        self.model.update()
        self.emit('enable translation')
        # The queue: QI with one page of descriptors.
        self.queue_base, self.queue_order = QUEUE, 0
        self.dw = self.scalable
        self.qt.writeq(V.VTD_BASE + V.IQA, QUEUE | (V.IQA_DW if self.dw else 0))
        self.qt.writeq(V.VTD_BASE + V.IQT, 0)
        self.qt.writel(V.VTD_BASE + V.GCMD, (1 << 31) | (1 << 26))
        self.tail = 0
        self.emit('enable queue')
        if 'intremap' in self.props:
            self.irt_entries = 256
            for i in range(16):
                self.write_irte(i, self.valid_irte(i))
            eime = 1 << 11 if 'eim' in self.props else 0
            qt.writeq(V.VTD_BASE + 0xb8, IRT | eime | 7)      # 256 entries
            qt.writel(V.VTD_BASE + V.GCMD, (1 << 31) | (1 << 26) | (1 << 24))
            qt.writel(V.VTD_BASE + V.GCMD, (1 << 31) | (1 << 26) | (1 << 25))
            for i in range(8):
                self.regs[0xb8 + i] = ((IRT | eime | 7) >> (8 * i)) & 0xff
            self.irtas.add(self.irta_version())
            self.ir_off_ever = False
            self.emit('enable interrupt remapping')
        # edu's MSI: enabled, compatibility format to vector 0x40
        self.edu_msi(0xfee00000, 0x40)
        self.emit('edu msi')
        if self.isolation:
            self.irq_check()                 # the baseline

    def valid_irte(self, i):
        rng = self.rng
        vector = 0x30 + i
        lo = 1 | (vector << 16) | (rng.choice([0, 0, 0, 1]) << 2) | (rng.choice([0, 0, 0, 1, 2, 4]) << 5)
        # mostly CPU 0 (APIC id 0), the only CPU: what reaches it is checked
        lo |= rng.choice([0, 0, 0, rng.randrange(256)]) << (32 + 8 if 'eim' not in self.props else 32)
        hi = rng.choice([0, (1 << 18) | EDU_DEVFN, (2 << 18) | 0x0000])
        return lo, hi

    def write_irte(self, index, entry):
        self.qt.memwrite(IRT + 16 * index, struct.pack('<QQ', *entry))

    def edu_msi(self, addr, data, enable=True):
        qt = self.qt
        qt.pci_cfg_writel(EDU_DEVFN, EDU_MSI_CAP + 4, addr & 0xffffffff)
        qt.pci_cfg_writel(EDU_DEVFN, EDU_MSI_CAP + 8, addr >> 32)
        qt.pci_cfg_writel(EDU_DEVFN, EDU_MSI_CAP + 12, data & 0xffff)
        qt.pci_cfg_writel(EDU_DEVFN, EDU_MSI_CAP, 0x800005 | ((1 << 16) if enable else 0))

    # -- random steps --------------------------------------------------

    def random_step(self):
        ops = [(self.op_register, 6), (self.op_table, 8), (self.op_queue, 7),
               (self.op_edu_dma, 4), (self.op_testdev_dma, 8), (self.op_msi, 3),
               (self.op_irte, 2), (self.op_clock, 1), (self.op_config, 1),
               (self.op_read, 2), (self.op_mirror, 1), (self.op_fault_clear, 1)]
        fn = self.rng.choices([f for f, _ in ops], [w for _, w in ops])[0]
        fn()

    def op_register(self):
        rng, qt = self.rng, self.qt
        off, width = rng.choice(REGS) if rng.random() < 0.9 else (rng.randrange(0, 0x1000, 4), 4)
        if rng.random() < 0.05:
            width = 12 - width           # an access of the other width
        if off == V.GCMD and rng.random() < 0.7:
            val = 0
            for b in GCMD_BITS:
                if rng.random() < 0.4:
                    val |= b
        elif off in (V.RTADDR, V.IQA, 0xb8) and rng.random() < 0.6:
            val = self.pointer() | rng.choice([0, 1 << 10, 2 << 10, 3 << 10, 1 << 11]) | rng.randrange(16)
        else:
            val = self.r64()
        if off == V.GCMD and self.isolation and rng.random() < 0.9:
            val |= 1 << 31               # mostly keep translation on
        (qt.writeq if width == 8 else qt.writel)(V.VTD_BASE + off, val)
        for i in range(width):
            self.regs[off + i] = (val >> (8 * i)) & 0xff
        for vec_reg in (V.FEDATA, 0xa4):     # fault and completion event vectors
            self.irq_allowed.add(self.regs.get(vec_reg, 0))
        if off <= V.GCMD < off + width:
            gcmd = (val >> (8 * (V.GCMD - off))) & 0xffffffff
            if gcmd & (1 << 24):
                self.irtas.add(self.irta_version())
            if not gcmd & (1 << 25):
                self.ir_off_ever = True
            if gcmd & (1 << 30):
                rt = sum(self.regs.get(V.RTADDR + i, 0) << (8 * i) for i in range(8))
                self.model.latch_root(rt)
            if not gcmd & (1 << 31):
                self.model.translation_off()
            if self.isolation:
                self.model.update()
        if off == V.IQA:
            self.queue_base = val & ~0xfff & (2**64 - 1)
            self.queue_order = val & 7
            self.dw = bool(val & V.IQA_DW)
        self.emit(f'register 0x{off:x}')

    def op_table(self):
        rng = self.rng
        if self.words and rng.random() < 0.8:
            addr = rng.choice(self.words) + 8 * rng.randrange(4 if rng.random() < 0.3 else 1)
        else:
            addr = rng.randrange(TABLES, TABLES_END, 8)
        self.write_quad(addr, self.mutate(self.quad(addr)))
        if self.isolation:
            self.model.update()
        self.emit(f'table 0x{addr:x}')

    def descriptor(self):
        rng = self.rng
        ty = rng.choice([1, 2, 3, 4, 5, 5, 6, 7, 8, 9, rng.randrange(128)])
        lo = (ty & 0xf) | ((ty >> 4) << 9)
        hi = 0
        g = rng.randrange(4)
        if ty == 1:      # context cache
            lo |= (g << 4) | (rng.randrange(4) << 8 if False else 0) | (rng.randrange(8) << 16) \
                | (rng.choice([EDU_DEVFN, TD_DEVFN, rng.getrandbits(16)]) << 32) \
                | (rng.randrange(4) << 48)
        elif ty == 2:    # IOTLB
            lo |= (g << 4) | (rng.randrange(4) << 12) | (rng.randrange(8) << 16)
            hi = rng.choice(POOL + [self.r64()]) | rng.randrange(64) | (rng.randrange(2) << 6)
        elif ty == 3:    # device-TLB
            lo |= (rng.randrange(32) << 16) | (rng.choice([TD_DEVFN, rng.getrandbits(16)]) << 32)
            hi = rng.choice(POOL + [self.r64()]) | rng.randrange(2)
        elif ty == 4:    # interrupt entry cache
            lo |= (g & 1) << 4 | (rng.randrange(32) << 27) | (rng.getrandbits(16) << 32)
        elif ty == 5:    # wait
            lo |= (rng.randrange(8) << 4) | (rng.getrandbits(32) << 32)
            hi = rng.choice([STATUS_PAGE, STATUS_PAGE + 4, self.pointer(), self.r64()]) & ~3
            if self.isolation:
                hi = STATUS_PAGE + (hi & 0xffc)
        elif ty in (6, 7, 8):   # PASID-based IOTLB, PASID cache, PASID device-TLB
            lo |= (g << 4) | (rng.randrange(8) << 16) | (rng.getrandbits(20) << 32)
            hi = rng.choice(POOL + [self.r64()]) | rng.randrange(128)
        else:
            lo |= rng.getrandbits(64) & ~0xe0f
            hi = self.r64()
        if rng.random() < 0.2:
            lo |= 1 << rng.randrange(64)
        quads = [lo, hi]
        if self.dw:
            quads += [self.r64() if rng.random() < 0.1 else 0, 0]
        return quads

    def op_queue(self):
        rng, qt = self.rng, self.qt
        size = 16 * (2 if self.dw else 1)
        entries = (0x1000 << self.queue_order) // size
        for _ in range(rng.randint(1, 4)):
            addr = self.queue_base + (self.tail % entries) * size
            if addr + size <= RAM and not DATA <= addr < DATA + DATA_PAGES * 0x1000:
                qt.memwrite(addr, struct.pack(f'<{size // 8}Q', *self.descriptor()))
            self.tail = (self.tail + 1) % entries
        index = self.tail if rng.random() < 0.9 else rng.getrandbits(16)
        qt.writeq(V.VTD_BASE + V.IQT, index << (5 if self.dw else 4))
        if self.isolation:
            self.model.update()
        self.emit('queue')

    def op_edu_dma(self):
        rng, qt = self.rng, self.qt
        iova = rng.choice(POOL) + rng.randrange(0, 0x1000, 8) if rng.random() < 0.7 \
            else rng.getrandbits(28)
        count = rng.choice([8, 64, 4096 - (iova & 0xfff) or 8, rng.randint(1, 4096)])
        cmd = rng.choice([0, 0 if self.isolation else V.EDU_DMA_TO_PCI]) | V.EDU_DMA_RUN
        if cmd & V.EDU_DMA_TO_PCI:
            src, dst = V.EDU_BUF, iova
        else:
            src, dst = iova, V.EDU_BUF
        qt.writeq(EDU_BAR0 + V.EDU_DMA_SRC, src)
        qt.writeq(EDU_BAR0 + V.EDU_DMA_DST, dst)
        qt.writeq(EDU_BAR0 + V.EDU_DMA_CNT, count)
        qt.writeq(EDU_BAR0 + V.EDU_DMA_CMD, cmd)
        qt.clock_step(200_000_000)
        self.emit('edu dma')

    def op_testdev_dma(self):
        rng = self.rng
        iova = rng.choice(POOL) + rng.randrange(0, 0x1000, 8) if rng.random() < 0.8 \
            else self.r64()
        length = rng.choice([8, 64, 4096, rng.randint(1, 4096)]) if rng.random() < 0.95 \
            else rng.choice([0, 4097, 2**32 - 1])
        dt = 'device-iotlb' in self.props
        ats = rng.random() < (0.7 if dt else 0.02)
        pasid = 0
        if rng.random() < (0.5 if ats and self.scalable else 0.05):
            pasid = (1 << 31) | rng.choice([0, 1, rng.getrandbits(13), rng.getrandbits(20)])
            pasid |= rng.choice([0, 0, 1 << 30, 1 << 29])
        if self.isolation and rng.random() < 0.6:
            return self.checked_read()
        cmd = rng.choice([V.TD_READ, V.TD_READ, V.TD_WRITE, V.TD_COMPARE]) \
            if rng.random() < 0.97 else rng.choice([0, rng.getrandbits(32)])
        if self.isolation and cmd & 3 == V.TD_WRITE:
            cmd ^= V.TD_WRITE ^ V.TD_READ
        if ats:
            cmd |= V.TD_ATS
        if rng.random() < 0.03:
            cmd |= V.TD_MIRROR
        self.testdev_dma(iova, length, pasid, cmd)
        self.emit('testdev dma')

    def checked_read(self):
        """A checked test-device read of a pool page (ProgramBase)."""
        rng = self.rng
        page = rng.choice(POOL) & ~0xfff
        iova = page + rng.randrange(0, 0x1000, 8)
        dt = 'device-iotlb' in self.props
        ats = dt and rng.random() < 0.5
        pasid = None
        if ats and self.scalable and rng.random() < 0.5:
            pasid = rng.choice(sorted(self.pasids))
        super().checked_read(page, iova, pasid, ats, self.model.allowed(TD_DEVFN, pasid, page))

    def verify(self, answers, stats=None):
        """Isolation violations in a run's answers ({step: [answer lines]});
        `stats` (a dict) counts the checked reads: completed, and of those
        the ones whose data named their page."""
        stats = {} if stats is None else stats
        return self.verify_irqs(answers, stats) + self.verify_reads(answers, stats)

    def op_msi(self):
        rng = self.rng
        if rng.random() < 0.5:
            handle = rng.randrange(300)
            addr = 0xfee00000 | ((handle & 0x7fff) << 5) | (1 << 4) | ((handle >> 15) << 2) \
                | (rng.randrange(2) << 3)
        else:
            addr = rng.choice([0xfee00000, 0xfee00000 | (rng.randrange(256) << 12), 0xfee00000
                               | rng.getrandbits(20), self.r64()])
        data = rng.getrandbits(16)
        self.edu_msi(addr, data, enable=rng.random() < 0.95)
        self.qt.writel(EDU_BAR0 + EDU_RAISE, rng.getrandbits(32) | 1)
        self.qt.writel(EDU_BAR0 + EDU_ACK, 0xffffffff)
        self.allow_msi(addr, data)
        self.emit('msi')
        if self.isolation:
            self.irq_check()

    # -- interrupt isolation ------------------------------------------------

    def irta_version(self):
        irta = sum(self.regs.get(0xb8 + i, 0) << (8 * i) for i in range(8))
        return irta & vtd_model.ADDR, 2 << (irta & 0xf)

    def allow_msi(self, addr, data):
        """Add the vectors the MSI (address, data) from edu may deliver:
        as it is (compatibility format, or remapping off at some point), or
        through any IRTE ever found at its index in a latched table."""
        self.irq_allowed.add(data & 0xff)
        if not (addr >> 4) & 1 or addr >> 32 or addr & 0xfff00000 != 0xfee00000:
            return
        handle = ((addr >> 5) & 0x7fff) | (((addr >> 2) & 1) << 15)
        index = handle + (data & 0xffff if (addr >> 3) & 1 else 0)
        for idx in {index, index & 0xffff}:
            vectors = self.irte_vectors.setdefault(idx, set())
            for base, _entries in self.irtas:
                kind = self.model.where(base + 16 * idx, 16)
                if kind == 'unknown':
                    self.irq_unknown = True
                elif kind == 'ram':
                    lo = self.quad(base + 16 * idx)
                    if lo & 1:
                        vectors.add((lo >> 16) & 0xff)
            self.irq_allowed |= vectors

    def irq_check(self):
        """Read CPU 0's IRR; the runner checks that what appeared since the
        last reading is allowed."""
        self.qt.cmd('#hmp info lapic')
        self.irq_checks.append((len(self.steps), None if self.irq_unknown
                                else frozenset(self.irq_allowed)))
        self.emit('interrupt check')

    def verify_irqs(self, answers, stats=None):
        bad, before = [], None
        stats = {} if stats is None else stats
        for step, allowed in self.irq_checks:
            got = answers.get(step)
            if not got:
                break
            if allowed is not None and before is not None:
                stats['irr checked'] = stats.get('irr checked', 0) + 1
            line = next((l for l in got[-1].splitlines() if l.startswith('IRR')), '')
            irr = {int(v) for v in re.findall(r'\d+', line[3:])}
            if before is not None and allowed is not None:
                stats['vectors delivered'] = stats.get('vectors delivered', 0) + len(irr - before)
                new = irr - before - allowed
                if new:
                    bad.append(f'step {step}: vectors {sorted(new)} delivered; no MSI, IRTE '
                               f'or event register allowed them')
            before = irr
        return bad

    def op_irte(self):
        rng = self.rng
        index = rng.randrange(20)
        lo, hi = self.valid_irte(index)
        if rng.random() < 0.7:
            lo, hi = self.mutate(lo), self.mutate(hi) if rng.random() < 0.5 else hi
        self.write_irte(index, (lo, hi))
        self.emit('irte')

    def op_read(self):
        rng, qt = self.rng, self.qt
        off, width = rng.choice(REGS)
        qt.cmd(f'read{"q" if width == 8 else "l"} 0x{V.VTD_BASE + off:x}')
        self.emit(f'read 0x{off:x}')

    def op_fault_clear(self):
        self.qt.writeq(V.VTD_BASE + FRCD + 8, 1 << 63)
        self.qt.writel(V.VTD_BASE + V.FSTS, 0x7f)
        self.emit('fault clear')

    def qemu_args(self):
        machine = 'q35' + (f',{self.machine}' if self.machine else '')
        return ['-machine', machine, '-device', f'intel-iommu,{self.props}',
                '-device', f'edu,addr={EDU_DEVFN >> 3:02x}.0',
                '-device', f'rviommu-testdev,addr={TD_DEVFN >> 3:02x}.0']
