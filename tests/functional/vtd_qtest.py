# SPDX-License-Identifier: GPL-2.0-or-later
"""Drive a VT-d (intel-iommu) and QEMU's `edu` PCI device over qtest.

A test plays the guest driver: it writes root/context/page tables into
guest RAM, programs the IOMMU registers, and makes `edu` DMA to chosen
IOVAs.  No guest code runs (`-accel qtest`), so every step is
deterministic, and the virtual clock only moves when the test steps it.
"""

import struct

VTD_BASE = 0xfed90000

# Register offsets (VT-d spec, chapter 11)
CAP, ECAP, GCMD, GSTS, RTADDR = 0x08, 0x10, 0x18, 0x1c, 0x20
FSTS, FECTL, FEDATA, FEADDR = 0x34, 0x38, 0x3c, 0x40

IQH, IQT, IQA, ICS = 0x80, 0x88, 0x90, 0x9c
IECTL, IEDATA, IEADDR = 0xa0, 0xa4, 0xa8

GCMD_TE = 1 << 31
GCMD_SRTP = 1 << 30
GCMD_QIE = 1 << 26
FECTL_IM, FECTL_IP = 1 << 31, 1 << 30
FSTS_PFO = 1 << 0
FSTS_PPF = 1 << 1

# edu (hw/misc/edu.c) registers and DMA command bits
EDU_ID = 0x00
EDU_DMA_SRC, EDU_DMA_DST, EDU_DMA_CNT, EDU_DMA_CMD = 0x80, 0x88, 0x90, 0x98
EDU_DMA_RUN, EDU_DMA_TO_PCI = 0x1, 0x2
EDU_BUF = 0x40000          # the device-side DMA buffer address

PTE_R, PTE_W = 1 << 0, 1 << 1


class QtestError(Exception):
    pass


class Qtest:
    """The qtest wire protocol, on a QEMUQtestMachine."""

    def __init__(self, vm):
        self.vm = vm

    def cmd(self, line):
        resp = self.vm.qtest(line).strip()
        if not resp.startswith('OK'):
            raise QtestError(f'{line!r} -> {resp!r}')
        return resp[2:].strip()

    def readl(self, addr):
        return int(self.cmd(f'readl 0x{addr:x}'), 16)

    def readq(self, addr):
        return int(self.cmd(f'readq 0x{addr:x}'), 16)

    def writel(self, addr, val):
        self.cmd(f'writel 0x{addr:x} 0x{val:x}')

    def writeq(self, addr, val):
        self.cmd(f'writeq 0x{addr:x} 0x{val:x}')

    def memwrite(self, addr, data):
        self.cmd(f'write 0x{addr:x} 0x{len(data):x} 0x{data.hex()}')

    def memread(self, addr, size):
        out = self.cmd(f'read 0x{addr:x} 0x{size:x}')
        return bytes.fromhex(out[2:] if out.startswith('0x') else out)

    def clock_step(self, ns):
        self.cmd(f'clock_step {ns}')

    # PCI configuration space through the legacy 0xcf8/0xcfc ports
    def _cfg_addr(self, bdf, reg):
        return 0x80000000 | (bdf << 8) | (reg & 0xfc)

    def pci_cfg_readl(self, bdf, reg):
        self.cmd(f'outl 0xcf8 0x{self._cfg_addr(bdf, reg):x}')
        return int(self.cmd('inl 0xcfc'), 16)

    def pci_cfg_writel(self, bdf, reg, val):
        self.cmd(f'outl 0xcf8 0x{self._cfg_addr(bdf, reg):x}')
        self.cmd(f'outl 0xcfc 0x{val:x}')


class Edu:
    """QEMU's educational PCI device, used as a programmable DMA engine."""

    def __init__(self, qt, bdf, bar0):
        self.qt, self.bdf, self.bar0 = qt, bdf, bar0
        qt.pci_cfg_writel(bdf, 0x10, bar0)           # BAR0 (1 MiB MMIO)
        qt.pci_cfg_writel(bdf, 0x04, 0x6)            # memory space + bus master
        ident = qt.readl(bar0 + EDU_ID)
        if ident & 0xff != 0xed:
            raise QtestError(f'edu not found at BAR0 (id 0x{ident:x})')

    def _dma(self, src, dst, count, cmd):
        qt = self.qt
        qt.writeq(self.bar0 + EDU_DMA_SRC, src)
        qt.writeq(self.bar0 + EDU_DMA_DST, dst)
        qt.writeq(self.bar0 + EDU_DMA_CNT, count)
        qt.writeq(self.bar0 + EDU_DMA_CMD, cmd | EDU_DMA_RUN)
        qt.clock_step(200_000_000)                   # edu runs DMA 100 ms later
        if qt.readq(self.bar0 + EDU_DMA_CMD) & EDU_DMA_RUN:
            raise QtestError('edu DMA did not run')

    def dma_from_memory(self, iova, count, buf_off=0):
        """Device reads `count` bytes at `iova` into its buffer."""
        self._dma(iova, EDU_BUF + buf_off, count, 0)

    def dma_to_memory(self, iova, count, buf_off=0):
        """Device writes `count` bytes of its buffer to `iova`."""
        self._dma(EDU_BUF + buf_off, iova, count, EDU_DMA_TO_PCI)


class LegacyVtd:
    """Legacy-mode VT-d programming: root table, context tables and
    second-stage page tables, allocated from a simple bump allocator in
    guest RAM."""

    def __init__(self, qt, table_base=0x100000, table_limit=0x200000):
        self.qt = qt
        self.next_page = table_base
        self.limit = table_limit
        self.cap = qt.readq(VTD_BASE + CAP)
        self.ecap = qt.readq(VTD_BASE + ECAP)
        sagaw = (self.cap >> 8) & 0x1f
        # 4-level (48-bit) when supported, else 3-level (39-bit)
        self.levels, self.aw = (4, 2) if sagaw & 0x4 else (3, 1)
        self.root = self.alloc_page()
        self.context_tables = {}

    def alloc_page(self):
        page = self.next_page
        if page >= self.limit:
            raise QtestError('out of table pages')
        self.next_page += 0x1000
        self.qt.memwrite(page, bytes(0x1000))
        return page

    def reg(self, off, width=4):
        return (self.qt.readq if width == 8 else self.qt.readl)(VTD_BASE + off)

    def fault_record_offset(self, index=0):
        return ((self.cap >> 24) & 0x3ff) * 16 + index * 16

    def set_context(self, bus, devfn, slptptr, did=1, tt=0, present=True):
        ctx = self.context_tables.get(bus)
        if ctx is None:
            ctx = self.context_tables[bus] = self.alloc_page()
            self.qt.memwrite(self.root + bus * 16, struct.pack('<QQ', ctx | 1, 0))
        lo = (slptptr & ~0xfff) | (tt << 2) | (1 if present else 0)
        hi = self.aw | (did << 8)
        self.qt.memwrite(ctx + devfn * 16, struct.pack('<QQ', lo, hi))

    def new_address_space(self):
        """Top-level second-stage table of a new, empty address space."""
        return self.alloc_page()

    def map_4k(self, top, iova, phys, perm=PTE_R | PTE_W):
        table = top
        for level in range(self.levels, 1, -1):
            index = (iova >> (12 + 9 * (level - 1))) & 0x1ff
            entry_addr = table + index * 8
            entry = struct.unpack('<Q', self.qt.memread(entry_addr, 8))[0]
            if not entry & (PTE_R | PTE_W):
                nxt = self.alloc_page()
                entry = nxt | PTE_R | PTE_W
                self.qt.memwrite(entry_addr, struct.pack('<Q', entry))
            table = entry & 0x000ffffffffff000
        index = (iova >> 12) & 0x1ff
        self.qt.memwrite(table + index * 8, struct.pack('<Q', (phys & ~0xfff) | perm))

    def _gcmd(self, bit, status_bit):
        # GCMD is write-only; its persistent bits mirror GSTS (spec 11.4.4)
        persistent = self.reg(GSTS) & 0x96ffffff
        self.qt.writel(VTD_BASE + GCMD, persistent | bit)
        for _ in range(100):
            if self.reg(GSTS) & status_bit:
                return
        raise QtestError(f'GSTS bit 0x{status_bit:x} not set after GCMD')

    def enable(self):
        self.qt.writeq(VTD_BASE + RTADDR, self.root)
        self._gcmd(GCMD_SRTP, GCMD_SRTP)
        self._gcmd(GCMD_TE, GCMD_TE)

    def iotlb_reg_offset(self):
        return ((self.ecap >> 8) & 0x3ff) * 16 + 8

    def register_iotlb_invalidate_global(self):
        """Register-based global IOTLB invalidation, waiting for IVT to clear."""
        off = self.iotlb_reg_offset()
        self.qt.writeq(VTD_BASE + off, (1 << 63) | (1 << 60))
        for _ in range(100):
            if not self.reg(off, 8) >> 63:
                return
        raise QtestError('IOTLB invalidation did not complete')

    def enable_queue(self, size_order=0):
        """Queued invalidation with a 4K << size_order queue."""
        self.queue = self.alloc_page()
        for _ in range((1 << size_order) - 1):
            self.alloc_page()
        self.queue_tail = 0
        self.queue_entries = 256 << size_order
        self.qt.writeq(VTD_BASE + IQA, self.queue | size_order)
        self.qt.writeq(VTD_BASE + IQT, 0)
        self._gcmd(GCMD_QIE, GCMD_QIE)

    def submit(self, *descriptors):
        """Write 128-bit descriptors (lo, hi) at the tail and move the tail."""
        for lo, hi in descriptors:
            self.qt.memwrite(self.queue + self.queue_tail * 16, struct.pack('<QQ', lo, hi))
            self.queue_tail = (self.queue_tail + 1) % self.queue_entries
        self.qt.writeq(VTD_BASE + IQT, self.queue_tail << 4)

    @staticmethod
    def desc_iotlb_page(did, iova, am=0):
        return (0x2 | (0x3 << 4) | (did << 16), (iova & ~0xfff) | am)

    @staticmethod
    def desc_iotlb_domain(did):
        return (0x2 | (0x2 << 4) | (did << 16), 0)

    @staticmethod
    def desc_device_tlb(sid, iova, size_bit=False):
        """Device-TLB invalidate (type 3): one page, or with the S bit a
        size encoded in the address's low set bits."""
        return (0x3 | (sid << 32), (iova & ~0xfff) | (1 if size_bit else 0))

    @staticmethod
    def desc_wait(status_addr, status, interrupt=False):
        lo = 0x5 | (1 << 5) | (status << 32) | ((1 << 4) if interrupt else 0)
        return (lo, status_addr & ~0x3)

    def fault_record(self, index=0):
        off = self.fault_record_offset(index)
        lo = self.reg(off, 8)
        hi = self.reg(off + 8, 8)
        return {
            'fault': bool(hi >> 63),
            'reason': (hi >> 32) & 0xff,
            'read': bool((hi >> 62) & 1),
            'sid': hi & 0xffff,
            'address': lo & ~0xfff,
        }

    def clear_fault_record(self, index=0):
        self.qt.writel(VTD_BASE + self.fault_record_offset(index) + 12, 1 << 31)


# rviommu-testdev (docs/rviommu/testdev.rst)
TD_ID, TD_IOVA, TD_LEN, TD_PASID, TD_CMD, TD_STATUS = 0x00, 0x08, 0x10, 0x14, 0x18, 0x1c
TD_RESULT, TD_XLATE, TD_ATC_HITS, TD_ATC_INVALS, TD_ATC_CTRL = 0x20, 0x28, 0x30, 0x34, 0x38
TD_BUFFER = 0x1000
TD_READ, TD_WRITE, TD_COMPARE, TD_ATS = 1, 2, 3, 1 << 4
TD_PASID_VALID, TD_PASID_PRIV = 1 << 31, 1 << 30
TD_STATUS_NAMES = {0: 'idle', 1: 'ok', 2: 'dma-error', 3: 'ats-denied', 4: 'ats-error',
                   5: 'mismatch', 6: 'bad-length', 7: 'pasid-unavailable',
                   8: 'ats-disabled', 9: 'bad-command', 10: 'mirror-fault'}
# The notifier-fed mirror (a vfio- or vhost-like consumer of IOMMU notifiers)
TD_MIRROR = 1 << 5
TD_NOTIFIER, TD_MIRROR_MAPS, TD_MIRROR_UNMAPS, TD_MIRROR_LEN, TD_MIRROR_CONFLICTS = \
    0x40, 0x48, 0x4c, 0x50, 0x54
TD_NOTIFY_NONE, TD_NOTIFY_MAP, TD_NOTIFY_UNMAP_ONLY, TD_NOTIFY_REPLAY = 0, 1, 2, 3
TD_NOTIFIER_ERRORS = {0: None, 1: 'refused', 2: 'no-iommu'}
ECAM_BASE = 0xb0000000
ATS_CAP, PASID_CAP = 0x100, 0x120


def enable_ecam(qt):
    """Map PCIe extended configuration space (q35 PCIEXBAR; firmware would)."""
    qt.pci_cfg_writel(0, 0x64, 0)
    qt.pci_cfg_writel(0, 0x60, ECAM_BASE | 1)


class TestDev:
    """Our PCIe DMA test device: DMA with or without ATS, with a PASID."""

    def __init__(self, qt, bdf, bar0, ats=True, pasid=True):
        self.qt, self.bdf, self.bar0 = qt, bdf, bar0
        enable_ecam(qt)
        qt.pci_cfg_writel(bdf, 0x10, bar0)
        qt.pci_cfg_writel(bdf, 0x04, 0x6)            # memory space + bus master
        ident = qt.readl(bar0 + TD_ID)
        if ident != 0x44545652:
            raise QtestError(f'rviommu-testdev not found at BAR0 (id 0x{ident:x})')
        cfg = ECAM_BASE + (bdf << 12)
        if (qt.readl(cfg + ATS_CAP) & 0xffff, qt.readl(cfg + PASID_CAP) & 0xffff) != (0x0f, 0x1b):
            raise QtestError('ATS/PASID extended capabilities not where expected')
        # ATS control: enable (bit 15); PASID control: enable, exec, privileged
        qt.cmd(f'writew 0x{cfg + ATS_CAP + 6:x} 0x{(1 << 15) if ats else 0:x}')
        qt.cmd(f'writew 0x{cfg + PASID_CAP + 6:x} 0x{7 if pasid else 0:x}')

    def reg(self, off, width=4):
        return (self.qt.readq if width == 8 else self.qt.readl)(self.bar0 + off)

    def load_buffer(self, data):
        self.qt.memwrite(self.bar0 + TD_BUFFER, data)

    def buffer(self, size):
        return self.qt.memread(self.bar0 + TD_BUFFER, size)

    def dma(self, op, iova, length, pasid=None, privileged=False, ats=False, mirror=False):
        """Run one command; returns the status name."""
        qt = self.qt
        qt.writeq(self.bar0 + TD_IOVA, iova)
        qt.writel(self.bar0 + TD_LEN, length)
        p = 0 if pasid is None else (TD_PASID_VALID | pasid | (TD_PASID_PRIV if privileged else 0))
        qt.writel(self.bar0 + TD_PASID, p)
        qt.writel(self.bar0 + TD_CMD, op | (TD_ATS if ats else 0) | (TD_MIRROR if mirror else 0))
        return TD_STATUS_NAMES.get(self.reg(TD_STATUS) & 0xff, 'unknown')

    def attach_notifier(self, kind):
        """Attach (or with TD_NOTIFY_NONE detach) the mirror's IOMMU
        notifier; returns None on success, else the error name."""
        self.qt.writel(self.bar0 + TD_NOTIFIER, kind)
        value = self.reg(TD_NOTIFIER)
        return TD_NOTIFIER_ERRORS.get((value >> 8) & 0xff, 'unknown')

    def mirror_counters(self):
        """(MAP events, UNMAP events, mirror entries, conflicting MAPs)."""
        return tuple(self.reg(r) for r in (TD_MIRROR_MAPS, TD_MIRROR_UNMAPS,
                                           TD_MIRROR_LEN, TD_MIRROR_CONFLICTS))

    def flush_atc(self):
        self.qt.writel(self.bar0 + TD_ATC_CTRL, 1)
