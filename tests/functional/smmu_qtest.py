# SPDX-License-Identifier: GPL-2.0-or-later
"""Drive an Arm SMMUv3 (arm-smmuv3) and our DMA device (`rviommu-testdev`)
on `-M virt` over qtest.

A test plays the guest driver: it writes stream tables, context
descriptors and VMSAv8-64 page tables (4 KiB granule) into guest RAM,
programs the SMMU's registers and command queue, reads the event queue,
and makes the device DMA to chosen IOVAs. No guest code runs
(`-accel qtest`), so every step is deterministic.
"""

import struct

from vtd_qtest import Qtest, QtestError, TD_STATUS_NAMES

SMMU_BASE = 0x09050000          # -M virt,iommu=smmuv3 (VIRT_SMMU)
PLATFORM_BUS_BASE = 0x0c000000  # the first user-created sysbus device
ECAM_BASE = 0x4010000000        # virt's high PCIe ECAM (256 buses)
PCI_MMIO_BASE = 0x10000000      # virt's 32-bit PCI memory window
RAM_BASE = 0x40000000

# Registers (IHI 0070, chapter 6)
IDR0, IDR1, IDR3, IDR5 = 0x00, 0x04, 0x0c, 0x14
CR0, CR0ACK, CR1, CR2, GBPA, IRQ_CTRL = 0x20, 0x24, 0x28, 0x2c, 0x44, 0x50
GERROR, GERRORN = 0x60, 0x64
STRTAB_BASE, STRTAB_BASE_CFG = 0x80, 0x88
CMDQ_BASE, CMDQ_PROD, CMDQ_CONS = 0x90, 0x98, 0x9c
EVENTQ_BASE, EVENTQ_PROD, EVENTQ_CONS = 0xa0, 0x100a8, 0x100ac
CR0_SMMUEN, CR0_EVENTQEN, CR0_CMDQEN = 1 << 0, 1 << 2, 1 << 3
GBPA_UPDATE, GBPA_ABORT = 1 << 31, 1 << 20

# Commands
CMD_CFGI_STE, CMD_CFGI_ALL, CMD_CFGI_CD = 0x03, 0x04, 0x05
CMD_TLBI_NH_ALL, CMD_TLBI_NH_ASID, CMD_TLBI_NH_VA = 0x10, 0x11, 0x12
CMD_TLBI_S12_VMALL, CMD_TLBI_S2_IPA, CMD_TLBI_NSNH_ALL = 0x28, 0x2a, 0x30
CMD_ATC_INV, CMD_SYNC = 0x40, 0x46

# STE configurations (STE.Config)
STE_ABORT, STE_BYPASS, STE_S1, STE_S2, STE_NESTED = 0b000, 0b100, 0b101, 0b110, 0b111

# rviommu-testdev (docs/rviommu/testdev.rst)
TD_ID, TD_IOVA, TD_LEN, TD_PASID, TD_CMD, TD_STATUS = 0x00, 0x08, 0x10, 0x14, 0x18, 0x1c
TD_NOTIFIER, TD_MAPS, TD_UNMAPS = 0x40, 0x48, 0x4c
TD_XLATE, TD_ATC_HITS, TD_ATC_INVALS = 0x28, 0x30, 0x34
TD_BUF = 0x1000
TD_READ, TD_WRITE = 1, 2
TD_OK, TD_DMA_ERROR = 1, 2
TD_ATS, TD_PASID_VALID, TD_PASID_PRIV = 1 << 4, 1 << 31, 1 << 30
ATS_CAP, PASID_CAP = 0x100, 0x120     # the test device's extended capabilities

# Page table descriptors
DESC_TABLE, DESC_PAGE, DESC_BLOCK = 0b11, 0b11, 0b01
AF = 1 << 10
SH_INNER = 3 << 8
S1_AP_EL0 = 1 << 6          # AP[1]: unprivileged access
S1_AP_RO = 1 << 7           # AP[2]: read-only
S2_AP_R, S2_AP_W = 1 << 6, 1 << 7
S2_MEMATTR_WB = 0xf << 2
ADDR_MASK = 0x000ffffffffff000


class VirtQtest(Qtest):
    """Qtest on -M virt: PCI configuration space through the ECAM."""

    def pci_cfg_writel(self, bdf, off, val):
        self.writel(ECAM_BASE + (bdf << 12) + off, val)

    def pci_cfg_readl(self, bdf, off):
        return self.readl(ECAM_BASE + (bdf << 12) + off)


class TestDev:
    """rviommu-testdev: synchronous DMA of up to 4 KiB at an IOVA."""

    def __init__(self, qt, bdf, bar0):
        self.qt, self.bdf, self.bar0 = qt, bdf, bar0
        qt.pci_cfg_writel(bdf, 0x10, bar0 & 0xffffffff)
        qt.pci_cfg_writel(bdf, 0x14, bar0 >> 32)
        qt.pci_cfg_writel(bdf, 0x04, 0x6)             # memory space + bus master
        ident = qt.readl(bar0 + TD_ID)
        if ident != 0x44545652:
            raise QtestError(f'rviommu-testdev not found at BAR0 (id 0x{ident:x})')

    def dma(self, op, iova, length):
        """Run one DMA; its outcome (STATUS bits 7:0)."""
        qt = self.qt
        qt.writeq(self.bar0 + TD_IOVA, iova)
        qt.writel(self.bar0 + TD_LEN, length)
        qt.writel(self.bar0 + TD_PASID, 0)
        qt.writel(self.bar0 + TD_CMD, op)
        return qt.readl(self.bar0 + TD_STATUS) & 0xff

    def write_memory(self, iova, data):
        """The device writes `data` to `iova`; the outcome."""
        self.qt.memwrite(self.bar0 + TD_BUF, data)
        return self.dma(TD_WRITE, iova, len(data))

    def read_memory(self, iova, length):
        """The device reads `length` bytes at `iova`: (outcome, bytes)."""
        self.qt.memwrite(self.bar0 + TD_BUF, b'\0' * length)
        st = self.dma(TD_READ, iova, length)
        return st, self.qt.memread(self.bar0 + TD_BUF, length)

    def enable_ats(self, pasid=True):
        """Enable the ATS capability (and PASID, with exec and privileged),
        as a guest driver would."""
        cfg = ECAM_BASE + (self.bdf << 12)
        qt = self.qt
        if (qt.readl(cfg + ATS_CAP) & 0xffff, qt.readl(cfg + PASID_CAP) & 0xffff) != (0x0f, 0x1b):
            raise QtestError('ATS/PASID extended capabilities not where expected')
        qt.cmd(f'writew 0x{cfg + ATS_CAP + 6:x} 0x{1 << 15:x}')
        qt.cmd(f'writew 0x{cfg + PASID_CAP + 6:x} 0x{7 if pasid else 0:x}')

    def ats_dma(self, op, iova, length, pasid=None, privileged=False):
        """One DMA through ATS (translation requests, then translated
        accesses from the device's ATC); the status name."""
        qt = self.qt
        qt.writeq(self.bar0 + TD_IOVA, iova)
        qt.writel(self.bar0 + TD_LEN, length)
        p = 0 if pasid is None else (TD_PASID_VALID | pasid | (TD_PASID_PRIV if privileged else 0))
        qt.writel(self.bar0 + TD_PASID, p)
        qt.writel(self.bar0 + TD_CMD, op | TD_ATS)
        return TD_STATUS_NAMES.get(qt.readl(self.bar0 + TD_STATUS) & 0xff, 'unknown')

    def ats_read(self, iova, length, pasid=None):
        """(status name, bytes) of an ATS read."""
        self.qt.memwrite(self.bar0 + TD_BUF, b'\0' * length)
        st = self.ats_dma(TD_READ, iova, length, pasid)
        return st, self.qt.memread(self.bar0 + TD_BUF, length)

    def ats_write(self, iova, data, pasid=None):
        self.qt.memwrite(self.bar0 + TD_BUF, data)
        return self.ats_dma(TD_WRITE, iova, len(data), pasid)

    def counter(self, off):
        return self.qt.readl(self.bar0 + off)

    def attach_unmap_notifier(self):
        self.qt.writel(self.bar0 + TD_NOTIFIER, 2)
        return self.qt.readl(self.bar0 + TD_NOTIFIER)

    def unmaps(self):
        return self.qt.readl(self.bar0 + TD_UNMAPS)


def start_virt(test, build, name, *args):
    """For a rviommu_kit.MachinesTest: `build`'s -M virt,iommu=smmuv3
    under qtest with `args` and the test device at 00:02.0 (StreamID
    0x10), the SMMU enabled; (qtest, device, SMMU)."""
    # Imported here: the benchmark uses this module without QEMU's python
    # package on its path.
    from qemu.machine.qtest import QEMUQtestMachine
    vm = QEMUQtestMachine(test.aarch64_binary(build), base_temp_dir=test.workdir, name=name)
    vm.add_args('-M', 'virt,iommu=smmuv3', '-accel', 'qtest', '-m', '512M', '-nodefaults',
                '-display', 'none', '-device', 'rviommu-testdev,addr=02.0', *args)
    vm.launch()
    test.vms.append(vm)
    qt = VirtQtest(vm)
    dev = TestDev(qt, 2 << 3, PCI_MMIO_BASE)
    smmu = Smmu(qt, SMMU_BASE)
    smmu.enable()
    return qt, dev, smmu


class Smmu:
    """A guest driver's view of one SMMUv3: a bump allocator of zeroed
    pages in RAM, a linear stream table of 256 entries, command and event
    queues of 256 entries, STEs, CDs and 4 KiB-granule page tables
    (39-bit input, starting at level 1)."""

    LOG2_ENTRIES = 8

    def __init__(self, qt, base=SMMU_BASE, pages=RAM_BASE + 0x100000, limit=RAM_BASE + 0x1000000,
                 strtab_log2=LOG2_ENTRIES, eventq_log2=LOG2_ENTRIES):
        self.qt, self.base = qt, base
        self.next_page, self.limit = pages, limit
        self.strtab_log2, self.eventq_log2 = strtab_log2, eventq_log2
        self.strtab = self.alloc(64 << strtab_log2)
        self.cmdq = self.alloc(16 << self.LOG2_ENTRIES)
        self.eventq = self.alloc(32 << eventq_log2)
        self.cmd_prod = 0
        self.event_cons = 0
        self.l2 = None
        self.split = 0

    # -- memory and registers
    def alloc(self, size=0x1000):
        size = (size + 0xfff) & ~0xfff
        addr = self.next_page
        if addr + size > self.limit:
            raise QtestError('out of table pages')
        self.next_page += size
        self.qt.memwrite(addr, b'\0' * size)
        return addr

    def rd(self, off):
        return self.qt.readl(self.base + off)

    def rdq(self, off):
        return self.qt.readq(self.base + off)

    def wr(self, off, val):
        self.qt.writel(self.base + off, val)

    def wrq(self, off, val):
        self.qt.writeq(self.base + off, val)

    def put(self, addr, *qwords):
        self.qt.memwrite(addr, struct.pack(f'<{len(qwords)}Q', *qwords))

    def get(self, addr, n):
        return list(struct.unpack(f'<{n}Q', self.qt.memread(addr, 8 * n)))

    # -- bring-up
    def enable(self, smmuen=True):
        if self.l2:
            self.wrq(STRTAB_BASE, self.l1)
            self.wr(STRTAB_BASE_CFG, 1 << 16 | self.split << 6 | self.strtab_log2)
        else:
            self.wrq(STRTAB_BASE, self.strtab)
            self.wr(STRTAB_BASE_CFG, self.strtab_log2)     # linear
        self.wrq(CMDQ_BASE, self.cmdq | self.LOG2_ENTRIES)
        self.wr(CMDQ_PROD, 0)
        self.wr(CMDQ_CONS, 0)
        self.wrq(EVENTQ_BASE, self.eventq | self.eventq_log2)
        self.wr(EVENTQ_PROD, 0)
        self.wr(EVENTQ_CONS, 0)
        self.wr(CR0, CR0_CMDQEN | CR0_EVENTQEN)
        self.command(CMD_CFGI_ALL, d1=31)
        self.command(CMD_TLBI_NSNH_ALL)
        self.sync()
        if smmuen:
            self.wr(CR0, CR0_CMDQEN | CR0_EVENTQEN | CR0_SMMUEN)
        if self.rd(CR0ACK) != self.rd(CR0):
            raise QtestError(f'CR0ACK 0x{self.rd(CR0ACK):x} != CR0 0x{self.rd(CR0):x}')

    def set_gbpa(self, abort):
        self.wr(GBPA, GBPA_UPDATE | (GBPA_ABORT if abort else 0) | 1 << 12)

    # -- command queue
    def post(self, opcode, d0=0, d1=0):
        """Write one command and move PROD past it; CONS afterwards."""
        mask = (1 << self.LOG2_ENTRIES) - 1
        slot = self.cmd_prod & mask
        self.put(self.cmdq + 16 * slot, opcode | d0, d1)
        self.cmd_prod = (self.cmd_prod + 1) & ((2 << self.LOG2_ENTRIES) - 1)
        self.wr(CMDQ_PROD, self.cmd_prod)
        return self.rd(CMDQ_CONS)

    def command(self, opcode, d0=0, d1=0):
        cons = self.post(opcode, d0, d1)
        if (cons & ((2 << self.LOG2_ENTRIES) - 1)) != self.cmd_prod or self.rd(GERROR) != self.rd(GERRORN):
            raise QtestError(f'command 0x{opcode:x}: CONS 0x{cons:x} PROD 0x{self.cmd_prod:x} '
                             f'GERROR 0x{self.rd(GERROR):x}')

    def sync(self):
        self.command(CMD_SYNC)

    def cfgi_ste(self, sid):
        self.command(CMD_CFGI_STE, d0=sid << 32, d1=1)
        self.sync()

    def tlbi_all(self):
        self.command(CMD_TLBI_NH_ALL)
        self.command(CMD_TLBI_NSNH_ALL)
        self.sync()

    # -- event queue
    def events(self):
        """The new event records, as lists of 4 qwords."""
        out = []
        prod = self.rd(EVENTQ_PROD)
        wrap = (2 << self.eventq_log2) - 1
        while self.event_cons != (prod & wrap):
            slot = self.event_cons & ((1 << self.eventq_log2) - 1)
            out.append(self.get(self.eventq + 32 * slot, 4))
            self.event_cons = (self.event_cons + 1) & wrap
        self.wr(EVENTQ_CONS, self.event_cons)
        return out

    def two_level(self, split=6):
        """Use a 2-level stream table (SPLIT `split`) from `enable()` on: an
        L1 table whose every descriptor points to an array of 2^split STEs;
        `ste()` writes into those arrays."""
        n1 = 1 << (self.strtab_log2 - split)
        self.l1 = self.alloc(8 * n1)
        self.l2 = []
        for i in range(n1):
            arr = self.alloc(64 << split)
            self.put(self.l1 + 8 * i, arr | (split + 1))     # L2Ptr | Span
            self.l2.append(arr)
        self.split = split

    def ste_addr(self, sid):
        if self.l2:
            return self.l2[sid >> self.split] + 64 * (sid & ((1 << self.split) - 1))
        return self.strtab + 64 * sid

    # -- stream table entries
    def ste(self, sid, config, cd=0, s2ttb=0, vmid=1, s2r=True, valid=True):
        d0 = (1 if valid else 0) | config << 1 | (cd & 0x000fffffffffffc0)
        d2 = 0
        if config & 0b010:              # stage 2 in use
            d2 = (vmid | 25 << 32 | 1 << 38 | 1 << 40 | 1 << 42 | 3 << 44 | 2 << 48 | 1 << 51
                  | (1 << 58 if s2r else 0))
        self.put(self.ste_addr(sid), d0, 0, d2, s2ttb & 0x000ffffffffffff0, 0, 0, 0, 0)
        self.cfgi_ste(sid)

    def cd(self, ttb0, asid=1, record=True, valid=True, at=None):
        """A context descriptor for a 39-bit TTB0 (4 KiB granule), written
        at `at` or in a new page; its address."""
        cd = self.alloc() if at is None else at
        d0 = (25 | 1 << 8 | 1 << 10 | 3 << 12 | 1 << 30 | (1 << 31 if valid else 0) | 2 << 32
              | 1 << 41 | (1 << 45 if record else 0) | 1 << 46 | asid << 48)
        self.put(cd, d0, ttb0 & 0x000ffffffffffff0, 0, 0xff)
        return cd


class PageTable:
    """A 39-bit, 4 KiB-granule VMSAv8-64 table (levels 1-3) of `stage` 1
    or 2, built in pages from `smmu`'s allocator."""

    def __init__(self, smmu, stage):
        self.smmu, self.stage = smmu, stage
        self.root = smmu.alloc()
        self.tables = {}

    def _table(self, parent, index):
        key = (parent, index)
        if key not in self.tables:
            t = self.smmu.alloc()
            self.smmu.put(parent + 8 * index, t | DESC_TABLE)
            self.tables[key] = t
        return self.tables[key]

    def attrs(self, write=True):
        if self.stage == 1:
            return AF | SH_INNER | S1_AP_EL0 | (0 if write else S1_AP_RO)
        return AF | SH_INNER | S2_MEMATTR_WB | S2_AP_R | (S2_AP_W if write else 0)

    def map(self, iova, pa, write=True):
        l2 = self._table(self.root, (iova >> 30) & 0x1ff)
        l3 = self._table(l2, (iova >> 21) & 0x1ff)
        self.smmu.put(l3 + 8 * ((iova >> 12) & 0x1ff), (pa & ADDR_MASK) | DESC_PAGE | self.attrs(write))

    def map_run(self, iova0, count, pa, write=True):
        """Map `count` 4 KiB pages from `iova0` (2 MiB aligned) all to the
        page `pa`, a leaf table at a time."""
        done = 0
        while done < count:
            iova = iova0 + done * 0x1000
            l2 = self._table(self.root, (iova >> 30) & 0x1ff)
            l3 = self._table(l2, (iova >> 21) & 0x1ff)
            n = min(512 - ((iova >> 12) & 0x1ff), count - done)
            entry = (pa & ADDR_MASK) | DESC_PAGE | self.attrs(write)
            self.smmu.qt.memwrite(l3 + 8 * ((iova >> 12) & 0x1ff), struct.pack('<Q', entry) * n)
            done += n

    def unmap(self, iova):
        l2 = self._table(self.root, (iova >> 30) & 0x1ff)
        l3 = self._table(l2, (iova >> 21) & 0x1ff)
        self.smmu.put(l3 + 8 * ((iova >> 12) & 0x1ff), 0)

    def map_blocks(self, first, last, write=True):
        """Identity 2 MiB blocks over [first, last]."""
        for a in range(first & ~0x1fffff, last + 1, 0x200000):
            l2 = self._table(self.root, (a >> 30) & 0x1ff)
            self.smmu.put(l2 + 8 * ((a >> 21) & 0x1ff), a | DESC_BLOCK | self.attrs(write))


# Event records: the C device writes two fields outside the architected
# layout (docs/rviommu/smmuv3.rst): a fault's IPA keeps its page offset in
# the RES0 bits 11:0 of quadword 3, and F_CD_FETCH's fetch address goes to
# quadword 2 instead of 3. Records are compared in the architected layout.
F_CD_FETCH = 0x09
ADDR_FAULTS = (0x10, 0x11, 0x12, 0x13)      # F_TRANSLATION .. F_PERMISSION


def architected(record):
    q = list(record)
    kind = q[0] & 0xff
    if kind in ADDR_FAULTS:
        q[3] &= ~0xfff
    elif kind == F_CD_FETCH and q[3] == 0:
        q[2], q[3] = 0, q[2] & ~0x7
    return q
