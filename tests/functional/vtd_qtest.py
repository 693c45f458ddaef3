# SPDX-License-Identifier: GPL-2.0-or-later
"""Drive a VT-d (intel-iommu) and a DMA device (QEMU's `edu`, or our
`rviommu-testdev`) over qtest.

A test plays the guest driver: it writes root/context/PASID/page tables
into guest RAM (LegacyVtd, ScalableVtd), programs the IOMMU registers and
the invalidation queue, and makes the device DMA to chosen IOVAs.  No guest code runs (`-accel qtest`), so every step is
deterministic, and the virtual clock only moves when the test steps it.
"""

import re
import socket
import struct
import time

VTD_BASE = 0xfed90000

# Register offsets (VT-d spec, chapter 11)
CAP, ECAP, GCMD, GSTS, RTADDR = 0x08, 0x10, 0x18, 0x1c, 0x20
FSTS, FECTL, FEDATA, FEADDR = 0x34, 0x38, 0x3c, 0x40

IQH, IQT, IQA, ICS = 0x80, 0x88, 0x90, 0x9c
IECTL, IEDATA, IEADDR = 0xa0, 0xa4, 0xa8

GCMD_TE = 1 << 31
GCMD_SRTP = 1 << 30
GCMD_QIE = 1 << 26
IQA_DW = 1 << 11           # 256-bit descriptors (scalable-mode hardware)
FECTL_IM, FECTL_IP = 1 << 31, 1 << 30
FSTS_PFO = 1 << 0
FSTS_PPF = 1 << 1
FSTS_IQE = 1 << 4

# edu (hw/misc/edu.c) registers and DMA command bits
EDU_ID = 0x00
EDU_DMA_SRC, EDU_DMA_DST, EDU_DMA_CNT, EDU_DMA_CMD = 0x80, 0x88, 0x90, 0x98
EDU_DMA_RUN, EDU_DMA_TO_PCI = 0x1, 0x2
EDU_BUF = 0x40000          # the device-side DMA buffer address

PTE_R, PTE_W = 1 << 0, 1 << 1
ADDR_MASK = 0x000ffffffffff000


def lapic_irr(vm):
    """The vectors pending in CPU 0's local APIC (its IRR, from `info
    lapic`); under qtest no CPU takes them, so they stay set."""
    out = vm.qmp('human-monitor-command', command_line='info lapic')['return']
    line = next(ln for ln in out.splitlines() if ln.startswith('IRR'))
    return {int(v) for v in re.findall(r'\d+', line[3:])}


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


class Channel:
    """A line-oriented byte stream over a Unix socket that a QEMU chardev serves
    (socket,server=on), e.g. a virtio-serial port whose other end is in a guest."""

    def __init__(self, path, connect_timeout=60):
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.buf = b''

    def send(self, text):
        self.sock.sendall(text.encode())

    def read_until(self, marker, timeout):
        """Everything up to and including `marker` (bytes); raises
        QtestError when it does not come within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while marker not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QtestError(f'no {marker!r} within {timeout}s (got {self.buf[-300:]!r})')
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise QtestError(f'connection closed before {marker!r} (got {self.buf[-300:]!r})')
            self.buf += chunk
        end = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:end], self.buf[end:]
        return out.decode(errors='replace')

    def close(self):
        self.sock.close()


class StreamQtest(Qtest):
    """The qtest wire protocol on a Channel (a QEMU started with
    `-qtest chardev:X` somewhere else, e.g. inside a guest)."""

    def __init__(self, channel, timeout=60):
        super().__init__(None)
        self.channel, self.timeout = channel, timeout

    def cmd(self, line):
        self.channel.send(line + '\n')
        while True:
            resp = self.channel.read_until(b'\n', self.timeout).strip()
            if resp.startswith('IRQ'):
                continue        # asynchronous interrupt notifications
            if not resp.startswith('OK'):
                raise QtestError(f'{line!r} -> {resp!r}')
            return resp[2:].strip()


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


class VtdBase:
    """What legacy and scalable mode programming share: a bump allocator
    of zeroed 4 KiB pages in guest RAM, the root table, register access,
    the GCMD/GSTS handshakes, second-stage page tables (the same format in
    both modes), the invalidation queue and the fault recording registers.

    Subclasses set TTM (RTADDR translation table mode) and DESC_QUADS (2:
    128-bit descriptors, 4: 256-bit ones, IQA.DW)."""

    TTM = 0
    DESC_QUADS = 2

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
        self.queue = None
        self._wait_status = None
        self._wait_marker = 0

    def alloc_page(self):
        page = self.next_page
        if page >= self.limit:
            raise QtestError('out of table pages')
        self.next_page += 0x1000
        self.qt.memwrite(page, bytes(0x1000))
        return page

    def reg(self, off, width=4):
        return (self.qt.readq if width == 8 else self.qt.readl)(VTD_BASE + off)

    def read_quads(self, addr, n):
        return list(struct.unpack(f'<{n}Q', self.qt.memread(addr, 8 * n)))

    def write_quads(self, addr, *quads):
        self.qt.memwrite(addr, struct.pack(f'<{len(quads)}Q', *quads))

    # -- second-stage page tables ---------------------------------------

    def new_address_space(self):
        """Top-level second-stage table of a new, empty address space."""
        return self.alloc_page()

    def map_4k(self, top, iova, phys, perm=PTE_R | PTE_W):
        """Map the 4 KiB page at `iova` to `phys` in the second-stage
        tables at `top`; returns the address of the leaf entry."""
        table = top
        for level in range(self.levels, 1, -1):
            index = (iova >> (12 + 9 * (level - 1))) & 0x1ff
            entry_addr = table + index * 8
            entry = self.read_quads(entry_addr, 1)[0]
            if not entry & (PTE_R | PTE_W):
                nxt = self.alloc_page()
                entry = nxt | PTE_R | PTE_W
                self.write_quads(entry_addr, entry)
            table = entry & ADDR_MASK
        leaf = table + ((iova >> 12) & 0x1ff) * 8
        self.write_quads(leaf, (phys & ~0xfff) | perm)
        return leaf

    # -- global command ---------------------------------------------------

    def _gcmd(self, bit, status_bit):
        # GCMD is write-only; its persistent bits mirror GSTS (spec 11.4.4)
        persistent = self.reg(GSTS) & 0x96ffffff
        self.qt.writel(VTD_BASE + GCMD, persistent | bit)
        for _ in range(100):
            if self.reg(GSTS) & status_bit:
                return
        raise QtestError(f'GSTS bit 0x{status_bit:x} not set after GCMD')

    def enable(self):
        """Latch the root table (RTADDR.TTM = self.TTM) and enable
        translation."""
        self.qt.writeq(VTD_BASE + RTADDR, self.root | (self.TTM << 10))
        self._gcmd(GCMD_SRTP, GCMD_SRTP)
        self._gcmd(GCMD_TE, GCMD_TE)

    # -- invalidation -----------------------------------------------------

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
        """Queued invalidation with a 4K << size_order queue of
        DESC_QUADS-quadword descriptors (IQA.DW for 256-bit ones)."""
        self.queue = self.alloc_page()
        for _ in range((1 << size_order) - 1):
            self.alloc_page()
        self.queue_tail = 0
        self.queue_entries = (0x1000 << size_order) // (8 * self.DESC_QUADS)
        dw = IQA_DW if self.DESC_QUADS == 4 else 0
        self.qt.writeq(VTD_BASE + IQA, self.queue | dw | size_order)
        self.qt.writeq(VTD_BASE + IQT, 0)
        self._gcmd(GCMD_QIE, GCMD_QIE)

    def queue_index_reg(self, index):
        """IQH/IQT value for descriptor index `index`."""
        return index << (4 if self.DESC_QUADS == 2 else 5)

    def submit(self, *descriptors):
        """Write descriptors (tuples of 2 or DESC_QUADS quadwords, bits 63:0
        first; shorter ones are zero-extended) at the tail and move it."""
        size = 8 * self.DESC_QUADS
        for desc in descriptors:
            if len(desc) > self.DESC_QUADS:
                raise QtestError(f'{len(desc) * 64}-bit descriptor on a '
                                 f'{size * 8}-bit queue')
            quads = tuple(desc) + (0,) * (self.DESC_QUADS - len(desc))
            self.write_quads(self.queue + self.queue_tail * size, *quads)
            self.queue_tail = (self.queue_tail + 1) % self.queue_entries
        self.qt.writeq(VTD_BASE + IQT, self.queue_index_reg(self.queue_tail))

    def invalidate(self, *descriptors):
        """Submit descriptors followed by an invalidation wait with status
        write, and check that the whole batch completed (status written,
        head on the tail, no queue error)."""
        if self._wait_status is None:
            self._wait_status = self.alloc_page()
        self._wait_marker += 1
        marker = 0x5a000000 | self._wait_marker
        self.submit(*descriptors, self.desc_wait(self._wait_status, marker))
        if self.reg(FSTS) & FSTS_IQE:
            raise QtestError(f'invalidation queue error (FSTS=0x{self.reg(FSTS):x}, '
                             f'IQH=0x{self.reg(IQH, 8):x}) on {descriptors!r}')
        status = struct.unpack('<I', self.qt.memread(self._wait_status, 4))[0]
        if status != marker or self.reg(IQH, 8) != self.queue_index_reg(self.queue_tail):
            raise QtestError(f'invalidation wait did not complete (status 0x{status:x})')

    # Descriptors.  128-bit ones are (lo, hi); on a 256-bit queue their
    # upper half is zero.  PASID-based ones exist only in 256-bit form.

    @staticmethod
    def desc_context_global():
        return (0x1 | (0x1 << 4), 0)

    @staticmethod
    def desc_context_domain(did):
        return (0x1 | (0x2 << 4) | (did << 16), 0)

    @staticmethod
    def desc_context_device(sid, did=0, fm=0):
        return (0x1 | (0x3 << 4) | (did << 16) | (sid << 32) | (fm << 48), 0)

    @staticmethod
    def desc_iotlb_global():
        return (0x2 | (0x1 << 4), 0)

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

    @staticmethod
    def desc_piotlb_pasid(did, pasid):
        """PASID-based IOTLB invalidate (type 6), G = 10b: all mappings of
        `pasid` in domain `did`."""
        return (0x6 | (0x2 << 4) | (did << 16) | (pasid << 32), 0, 0, 0)

    @staticmethod
    def desc_piotlb_page(did, pasid, iova, am=0, ih=False):
        """PASID-based IOTLB invalidate, G = 11b: 2^am pages at `iova`."""
        return (0x6 | (0x3 << 4) | (did << 16) | (pasid << 32),
                (iova & ~0xfff) | (int(ih) << 6) | am, 0, 0)

    @staticmethod
    def desc_pasid_cache_domain(did):
        """PASID-cache invalidate (type 7), G = 00b: domain-selective."""
        return (0x7 | (did << 16), 0, 0, 0)

    @staticmethod
    def desc_pasid_cache_pasid(did, pasid):
        """PASID-cache invalidate, G = 01b: PASID-selective within `did`."""
        return (0x7 | (0x1 << 4) | (did << 16) | (pasid << 32), 0, 0, 0)

    @staticmethod
    def desc_pasid_cache_global():
        """PASID-cache invalidate, G = 11b: all entries."""
        return (0x7 | (0x3 << 4), 0, 0, 0)

    @staticmethod
    def desc_pasid_device_tlb(sid, pasid, iova, global_pasids=False, size_bit=False):
        """PASID-based device-TLB invalidate (type 8): SID 31:16, PASID
        51:32; G (bit 0: every PASID of the device), S (bit 11), ADDR."""
        return (0x8 | (sid << 16) | (pasid << 32),
                (iova & ~0xfff) | (int(size_bit) << 11) | int(global_pasids), 0, 0)

    # -- fault recording ----------------------------------------------------

    def fault_record_offset(self, index=0):
        return ((self.cap >> 24) & 0x3ff) * 16 + index * 16

    def fault_record_count(self):
        return ((self.cap >> 40) & 0xff) + 1

    def fault_record(self, index=0):
        off = self.fault_record_offset(index)
        lo = self.reg(off, 8)
        hi = self.reg(off + 8, 8)
        pp = bool((hi >> 31) & 1)
        return {
            'fault': bool(hi >> 63),
            'reason': (hi >> 32) & 0xff,
            'read': bool((hi >> 62) & 1),
            'sid': hi & 0xffff,
            'address': lo & ~0xfff,
            'pasid': ((hi >> 40) & 0xfffff) if pp else None,   # PP, PV
            'priv': bool((hi >> 29) & 1),
            'at': (hi >> 60) & 3,
            'raw': (lo, hi),
        }

    def pending_faults(self):
        """(index, record) of every fault recording register with F set."""
        recs = ((i, self.fault_record(i)) for i in range(self.fault_record_count()))
        return [(i, r) for i, r in recs if r['fault']]

    def clear_fault_record(self, index=0):
        self.qt.writel(VTD_BASE + self.fault_record_offset(index) + 12, 1 << 31)


class LegacyVtd(VtdBase):
    """Legacy-mode VT-d programming: root table, context tables and
    second-stage page tables, 128-bit invalidation descriptors."""

    def set_context(self, bus, devfn, slptptr, did=1, tt=0, present=True, aw=None):
        """A context entry; `aw` defaults to the second-stage width in use."""
        ctx = self.context_tables.get(bus)
        if ctx is None:
            ctx = self.context_tables[bus] = self.alloc_page()
            self.write_quads(self.root + bus * 16, ctx | 1, 0)
        lo = (slptptr & ~0xfff) | (tt << 2) | (1 if present else 0)
        hi = (self.aw if aw is None else aw) | (did << 8)
        self.write_quads(ctx + devfn * 16, lo, hi)


# PASID table entry PGTT values
PGTT_FS, PGTT_SS, PGTT_NESTED, PGTT_PT = 1, 2, 3, 4

# First-stage (x86-64 paging) entry bits
FS_P, FS_RW, FS_US, FS_A, FS_D, FS_PS = 1, 1 << 1, 1 << 2, 1 << 5, 1 << 6, 1 << 7
FS_XD = 1 << 63


class FirstStageTables:
    """4-level first-stage page tables (the x86-64 paging format the
    PASID entry's FLPTPTR points at).

    `alloc()` returns a new zeroed table as (address the IOMMU walks,
    address in guest RAM): the same page for first-stage translation; for
    nested translation an IOVA that the second stage maps to the RAM page,
    so table pointers are second-stage input addresses."""

    def __init__(self, vtd, alloc=None):
        self.vtd = vtd
        self._alloc = alloc or self._identity_alloc
        self.root, root_ram = self._alloc()
        self.ram = {self.root: root_ram}      # table address -> RAM address

    def _identity_alloc(self):
        page = self.vtd.alloc_page()
        return page, page

    def _table(self, addr):
        return self.ram[addr & ADDR_MASK]

    def map_4k(self, va, out, write=True, user=True, xd=False, flags=0):
        """Map the 4 KiB page at `va` to output address `out`. Non-leaf
        entries grant R/W and U/S, so the leaf's bits decide. Returns the
        RAM address of the leaf entry."""
        table = self.root
        for level in (4, 3, 2):
            entry_ram = self._table(table) + ((va >> (12 + 9 * (level - 1))) & 0x1ff) * 8
            entry = self.vtd.read_quads(entry_ram, 1)[0]
            if not entry & FS_P:
                nxt, nxt_ram = self._alloc()
                self.ram[nxt] = nxt_ram
                entry = nxt | FS_P | FS_RW | FS_US
                self.vtd.write_quads(entry_ram, entry)
            table = entry & ADDR_MASK
        leaf_ram = self._table(table) + ((va >> 12) & 0x1ff) * 8
        leaf = ((out & ~0xfff) | FS_P | (FS_RW if write else 0) | (FS_US if user else 0)
                | (FS_XD if xd else 0) | flags)
        self.vtd.write_quads(leaf_ram, leaf)
        return leaf_ram

    def entries(self, va):
        """RAM addresses of the PML4E, PDPTE, PDE and PTE used for `va`
        (stopping at the first entry that is not present)."""
        out, table = [], self.root
        for level in (4, 3, 2, 1):
            entry_ram = self._table(table) + ((va >> (12 + 9 * (level - 1))) & 0x1ff) * 8
            out.append(entry_ram)
            entry = self.vtd.read_quads(entry_ram, 1)[0]
            if not entry & FS_P:
                break
            table = entry & ADDR_MASK
        return out


class ScalableVtd(VtdBase):
    """Scalable-mode VT-d programming (RTADDR.TTM = 01b, 256-bit
    invalidation descriptors): scalable root table, 256-bit context
    entries, PASID directories and 512-bit PASID table entries, second-
    and first-stage page tables.

    Layouts (VT-d spec 4.x, chapter 9; bit numbers within the entry):
    root entry: LP 0, LCTP 63:12 (devfn 0..127), UP 64, UCTP 127:76;
    context entry: P 0, FPD 1, DTE 2, PASIDE 3, PRE 4, PDTS 11:9,
    PASIDDIRPTR 63:12, RID_PASID 83:64, RID_PRIV 84, the rest reserved;
    PASID directory entry: P 0, FPD 1, SMPTBLPTR 63:12;
    PASID table entry: P 0, FPD 1, AW 4:2, PGTT 8:6, SLPTPTR 63:12,
    DID 79:64, SRE 128, FLPM 131:130, WPE 132, FLPTPTR 191:140."""

    TTM = 1
    DESC_QUADS = 4

    def context_entry_addr(self, bus, devfn):
        """Address of the context entry of (bus, devfn), creating the
        context table of its root-entry half."""
        half = devfn >> 7
        table = self.context_tables.get((bus, half))
        if table is None:
            table = self.context_tables[(bus, half)] = self.alloc_page()
            self.write_quads(self.root + bus * 16 + half * 8, table | 1)
        return table + (devfn & 0x7f) * 32

    def set_context(self, bus, devfn, pasid_dir, rid_pasid=0, dte=False, paside=False,
                    pre=False, pdts=0, fpd=False, present=True, rid_priv=False,
                    rsvd=(0, 0, 0, 0)):
        """Write a scalable-mode context entry; `rsvd` is OR'ed into its
        four quadwords (to set reserved bits)."""
        q0 = ((pasid_dir & ~0xfff) | (pdts << 9) | (int(pre) << 4) | (int(paside) << 3)
              | (int(dte) << 2) | (int(fpd) << 1) | int(present))
        q1 = rid_pasid | (int(rid_priv) << 20)
        quads = [q | r for q, r in zip((q0, q1, 0, 0), rsvd)]
        self.write_quads(self.context_entry_addr(bus, devfn), *quads)

    def new_pasid_dir(self):
        """A PASID directory (PDTS 0: 128 entries, PASIDs 0..8191)."""
        return self.alloc_page()

    def pasid_dir_entry_addr(self, pasid_dir, pasid):
        return pasid_dir + (pasid >> 6) * 8

    def set_pasid_dir_entry(self, pasid_dir, pasid, table, present=True, fpd=False, rsvd=0):
        self.write_quads(self.pasid_dir_entry_addr(pasid_dir, pasid),
                         (table & ~0xfff) | (int(fpd) << 1) | int(present) | rsvd)

    def pasid_table(self, pasid_dir, pasid):
        """The PASID table holding `pasid`'s entry, created (with a present
        directory entry) when the directory entry is not present."""
        de = self.read_quads(self.pasid_dir_entry_addr(pasid_dir, pasid), 1)[0]
        if de & 1:
            return de & ADDR_MASK
        table = self.alloc_page()
        self.set_pasid_dir_entry(pasid_dir, pasid, table)
        return table

    def pasid_entry_addr(self, pasid_dir, pasid):
        return self.pasid_table(pasid_dir, pasid) + (pasid & 0x3f) * 64

    def set_pasid_entry(self, pasid_dir, pasid, pgtt, did=0, slptptr=0, flptptr=0, aw=None,
                        flpm=0, sre=False, wpe=False, fpd=False, present=True,
                        rsvd=(0,) * 8):
        """Write a PASID table entry; `aw` defaults to the second-stage
        width in use; `rsvd` is OR'ed into its eight quadwords."""
        aw = self.aw if aw is None else aw
        q0 = ((slptptr & ~0xfff) | (pgtt << 6) | (aw << 2) | (int(fpd) << 1)
              | int(present))
        q1 = did
        q2 = (flptptr & ~0xfff) | (int(wpe) << 4) | (flpm << 2) | int(sre)
        quads = [q | r for q, r in zip((q0, q1, q2, 0, 0, 0, 0, 0), rsvd)]
        self.write_quads(self.pasid_entry_addr(pasid_dir, pasid), *quads)

    def first_stage(self, ss_top=None, iova_base=None):
        """New first-stage tables. With `ss_top` (nested translation) the
        tables live at IOVAs from `iova_base` up, each mapped read/write by
        the second-stage tables at `ss_top` to a RAM page elsewhere."""
        if ss_top is None:
            return FirstStageTables(self)
        next_iova = [iova_base]

        def alloc():
            ram = self.alloc_page()
            iova = next_iova[0]
            next_iova[0] += 0x1000
            self.map_4k(ss_top, iova, ram)
            return iova, ram
        return FirstStageTables(self, alloc)


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
# Where the tests put the test device (-device rviommu-testdev,addr=05.0) and its BAR0
TD_DEVFN = 0x28           # 00:05.0
TD_BAR0 = 0xfe100000
ATS_CAP, PASID_CAP = 0x100, 0x120


def enable_ecam(qt):
    """Map PCIe extended configuration space (q35 PCIEXBAR; firmware would)."""
    qt.pci_cfg_writel(0, 0x64, 0)
    qt.pci_cfg_writel(0, 0x60, ECAM_BASE | 1)


def ecam(bdf, reg=0):
    """Address of configuration register `reg` of `bdf` in the ECAM (the
    0xcf8 ports reach only the first 256 bytes)."""
    return ECAM_BASE + (bdf << 12) + reg


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
        cfg = ecam(bdf)
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
