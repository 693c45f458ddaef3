#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""What one DMA translation, interrupt or invalidation costs our intel-iommu
and arm-smmuv3 and QEMU's C devices, measured side by side in one run
(`make bench`).

No guest CPU runs: QEMU starts under `-accel qtest`, this driver plays the
guest driver (page tables, context and PASID tables, interrupt remapping
table and invalidation queue in guest RAM, written over qtest; see
tests/functional/vtd_qtest.py) and makes a device work: QEMU's `edu` for
DMA without PASID (one 8-byte read of an IOVA per operation) and MSIs, our
`rviommu-testdev` for ATS translation requests with and without a PASID
(one 8-byte read through the device's ATS path, its device-TLB flushed
first so that every operation reaches the IOMMU).  The reference build
carries the same test device (scripts/setup.sh ref).  Requests with a
PASID and nested translation run on ours only: QEMU 10.2.2's C device
refuses `x-pasid-mode` with `device-iotlb` ("PASID based device IOTLB is
not supported"), and has no other path for requests with a PASID.

Every case is a loop of qtest commands, sent in one batch and answered in
one batch.  Metrics per case and build:

* Ir/op: instructions per operation under `valgrind --tool=callgrind`,
  (cost of a loop of N2 operations - cost of N1 operations) / (N2 - N1):
  the start-up and everything outside the loops cancel, qtest's parsing of
  the commands of an operation is included (the same for both builds);
* entry Ir/call: the inclusive cost of the device's entry point for the
  operation (the IOMMU memory region's translate callback, the ATS
  translation request, the interrupt window's write, the register write
  that moves the invalidation queue tail) per call, from the same loops,
  and calls/op (a check that each operation reached the device);
* ns/op: wall-clock nanoseconds per operation of the uninstrumented loop,
  the median of several runs.

The SMMUv3 cases run `qemu-system-aarch64 -M virt,iommu=smmuv3` (the
binary next to the x86 one): `rviommu-testdev` reads 8 bytes at an IOVA
(no ATS) through a stage-1, stage-2 or nested stream (tables written over
qtest, tests/functional/smmu_qtest.py), and TLB invalidations by VA / IPA
(command + CMD_SYNC, the CMDQ_PROD write measured) run with K unrelated
pages cached (K < 256: both TLBs are emptied at 256 entries).

Cases that the C device does not support (nested translation) run on ours
only.  The invalidation cases keep K unrelated IOTLB entries cached
(K = 1, 64, 1024, 16384 distinct pages touched by DMA first) and measure
one invalidation that matches none of them; both devices bound their IOTLB
(C: VTD_IOTLB_MAX_SIZE, 1024 entries, then it is emptied).

Usage: vtd_bench.py --ours QEMU --ref QEMU --firmware DIR [--quick] [--out DIR]
"""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'functional'))
# pylint: disable=wrong-import-position
from vtd_qtest import (QtestError, Qtest, Edu, LegacyVtd, ScalableVtd, TestDev, VTD_BASE,
                       FSTS, IQT, EDU_DMA_SRC, EDU_DMA_CMD, EDU_DMA_RUN, EDU_BUF, EDU_DMA_DST,
                       EDU_DMA_CNT, PTE_R, PTE_W, PGTT_FS, PGTT_SS, PGTT_NESTED, PGTT_PT,
                       FS_P, FS_RW, FS_US, TD_IOVA, TD_LEN, TD_PASID, TD_CMD, TD_STATUS,
                       TD_ATC_CTRL, TD_READ, TD_ATS, TD_PASID_VALID, TD_BAR0, TD_DEVFN,
                       GSTS, GCMD_QIE)
import smmu_qtest

EDU_BAR0 = 0xd0000000
EDU_DEVFN = 0x20                 # 00:04.0
EDU2_DEVFN = 0x30                # 00:06.0 (context-cache and pass-through cases)
EDU2_BAR0 = 0xd0100000
DMA_LEN = 8
DMA_STEP_NS = 100_000_000        # edu runs its DMA 100 ms (virtual) after the command
HIT_IOVA = 0x800000
MISS_BASE = 0x1000000            # pages MISS_BASE + i * 4K, inside edu's 28-bit DMA mask
OCC_BASE = 0x6000000             # the pages that fill the IOTLB for the invalidation cases
RAM_PAGE = 0x3000000             # every IOVA maps to this RAM page
PASID = 5
OCCUPANCY = (1, 64, 1024, 16384)

# callgrind's names of each build's entry points (C function names; our
# Rust functions, demangled, end with these)
ENTRY = {
    'translate': ('vtd_iommu_translate', 'ffi::iommu_mr::vtd_translate'),
    'ats': ('vtd_ats_request_translation', 'intel_iommu::ffi::ats::ats_request_translation'),
    'msi': ('vtd_mem_ir_write', 'ffi::address_space::interrupt_window_write'),
    'mmio': ('vtd_mem_write', 'intel_iommu::device::IntelIommuState::mmio_write'),
    'smmu_translate': ('smmuv3_translate', 'ffi::iommu_mr::smmu_translate'),
    'smmu_mmio': ('smmu_write_mmio', 'smmuv3::device::SmmuV3State::mmio_write'),
}


class Client:
    """A qtest connection on a listening Unix socket that QEMU connects to
    (-qtest unix:PATH), with batched commands."""

    def __init__(self, listener, proc, timeout):
        listener.settimeout(timeout)
        try:
            self.sock, _ = listener.accept()
        except TimeoutError as e:
            raise QtestError(f'QEMU did not connect to qtest ({proc.args[0]})') from e
        self.sock.settimeout(None)
        self.buf = b''

    def _line(self):
        while b'\n' not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise QtestError('qtest connection closed')
            self.buf += chunk
        line, self.buf = self.buf.split(b'\n', 1)
        return line.decode()

    def qtest(self, line):
        return self.batch([line])[0]

    def batch(self, lines):
        """Send all lines, then read one answer per line (IRQ notices are
        skipped); returns the answers."""
        self.sock.sendall(''.join(l + '\n' for l in lines).encode())
        out = []
        while len(out) < len(lines):
            resp = self._line().strip()
            if resp.startswith('IRQ'):
                continue
            if not resp.startswith('OK'):
                raise QtestError(f'{lines[len(out)]!r} -> {resp!r}')
            out.append(resp)
        return out


class Machine:
    """A q35 QEMU under qtest, optionally under callgrind."""

    def __init__(self, binary, iommu, devices, firmware, workdir, callgrind=None, target='q35'):
        self.workdir = workdir
        sock = os.path.join(workdir, 'qtest.sock')
        if os.path.exists(sock):
            os.unlink(sock)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(sock)
        listener.listen(1)
        if target == 'virt':
            args = [binary, '-machine', f'virt,{iommu}'.rstrip(','), '-accel', 'qtest', '-m', '512M',
                    '-nodefaults', '-display', 'none', '-qtest', f'unix:{sock}',
                    '-qtest-log', 'none']
        else:
            args = [binary, '-machine', 'q35', '-accel', 'qtest', '-m', '512M', '-nodefaults',
                    '-display', 'none', '-L', firmware, '-qtest', f'unix:{sock}',
                    '-qtest-log', 'none', '-device', f'intel-iommu,{iommu}'.rstrip(',')]
        for dev in devices:
            args += ['-device', dev]
        self.callgrind = callgrind
        if callgrind:
            args = ['valgrind', '--tool=callgrind', f'--callgrind-out-file={callgrind}',
                    '--instr-atstart=no'] + (os.environ.get('VTD_BENCH_CALLGRIND')
                                           or '--dump-line=no --compress-pos=no').split() + args
        self.log = open(os.path.join(workdir, 'qemu.log'), 'w')
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            self.client = Client(listener, self.proc, 300 if callgrind else 30)
        except QtestError:
            self.proc.kill()
            self.proc.wait()
            raise QtestError(f'QEMU did not start: {self.log_text()}')
        finally:
            listener.close()
        self.qt = Qtest(self.client) if target == 'q35' else smmu_qtest.VirtQtest(self.client)
        self.dumps = 0

    def log_text(self):
        self.log.flush()
        return Path(self.log.name).read_text()[-2000:]

    def control(self, *args):
        subprocess.run(['callgrind_control', *args, str(self.proc.pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def dump(self):
        """Dump the counters since the last zero/dump; returns the file."""
        self.dumps += 1
        self.control('-d', f'part{self.dumps}')
        path = f'{self.callgrind}.{self.dumps}'
        for _ in range(1200):
            if os.path.exists(path) and 'totals:' in Path(path).read_text():
                return path
            time.sleep(0.05)
        raise QtestError(f'callgrind dump {path} not written')

    def close(self):
        try:
            self.client.sock.close()
        except OSError:
            pass
        # QEMU keeps running when the qtest connection closes
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# ---------------------------------------------------------------------------
# callgrind output: total cost and inclusive cost / calls of named functions


def parse_callgrind(path, names):
    """(total Ir, {name: (inclusive Ir, calls)}) of a callgrind dump, for
    every function whose (demangled) name equals or ends with a name in
    `names` (calls into it from outside itself)."""
    fn_names = {}
    cur_fn = None
    self_cost = {}
    calls_in = {}       # callee -> number of calls
    incoming = {}       # callee -> inclusive cost of the calls into it
    pending = None      # (callee, count) of a 'calls=' line
    cfn = None
    total = 0

    def name_of(spec):
        m = re.match(r'\((\d+)\)(?: (.*))?', spec)
        if not m:
            return spec
        if m.group(2) is not None:
            fn_names[m.group(1)] = m.group(2)
        return fn_names.get(m.group(1), m.group(1))

    npos = 1
    with open(path) as f:
        for line in f:
            if line.startswith('positions:'):
                npos = len(line.split()) - 1
            elif line.startswith('fn='):
                cur_fn = name_of(line[3:].rstrip('\n'))
            elif line.startswith(('cfn=', 'cfi=', 'cfl=')):
                if line.startswith('cfn='):
                    cfn = name_of(line[4:].rstrip('\n'))
            elif line.startswith('calls='):
                pending = (cfn, int(line[6:].split()[0]))
            elif line.startswith('totals:') or line.startswith('summary:'):
                total = int(line.split()[1])
            elif line[:1].isdigit() or line[:1] in '+-*':
                parts = line.split()
                cost = int(parts[npos]) if len(parts) > npos else 0
                if pending:
                    callee, count = pending
                    pending = None
                    if callee != cur_fn:
                        calls_in[callee] = calls_in.get(callee, 0) + count
                        incoming[callee] = incoming.get(callee, 0) + cost
                else:
                    self_cost[cur_fn] = self_cost.get(cur_fn, 0) + cost
    out = {}
    for want in names:
        inc = calls = 0
        for fn in set(calls_in) | set(self_cost):
            if fn == want or fn.endswith(want) or fn.endswith(want + '>'):
                inc += incoming.get(fn, 0)
                calls += calls_in.get(fn, 0)
        out[want] = (inc, calls)
    return total, out


# ---------------------------------------------------------------------------
# Guest-side programming shared by the configurations


def map_pages(vtd, map_one, iova0, count, phys, leaf_bits):
    """Map `count` 4 KiB pages from `iova0` (2 MiB aligned) to the RAM page
    `phys`: `map_one(iova)` maps the first page of each 2 MiB chunk (making
    the upper tables) and returns its leaf entry's address; the rest of the
    leaf table is written in one go."""
    done = 0
    while done < count:
        leaf = map_one(iova0 + done * 0x1000)
        n = min(512, count - done)
        vtd.qt.memwrite(leaf & ~0xfff, struct.pack('<Q', phys | leaf_bits) * n)
        done += n


def edu_lines(bar0, iova=None):
    """qtest lines of one edu DMA read of DMA_LEN bytes (at `iova`, or at
    the source already programmed)."""
    lines = [] if iova is None else [f'writeq 0x{bar0 + EDU_DMA_SRC:x} 0x{iova:x}']
    return lines + [f'writeq 0x{bar0 + EDU_DMA_CMD:x} 0x{EDU_DMA_RUN:x}',
                    f'clock_step {DMA_STEP_NS}']


def edu_setup(qt, bar0, iova):
    qt.writeq(bar0 + EDU_DMA_SRC, iova)
    qt.writeq(bar0 + EDU_DMA_DST, EDU_BUF)
    qt.writeq(bar0 + EDU_DMA_CNT, DMA_LEN)


def edu_check(qt, bar0):
    if qt.readq(bar0 + EDU_DMA_CMD) & EDU_DMA_RUN:
        raise QtestError('edu DMA did not run')


def testdev_lines(iova=None):
    """qtest lines of one ATS read of DMA_LEN bytes by the test device,
    its device-TLB flushed first (so that the IOMMU is asked)."""
    lines = [f'writel 0x{TD_BAR0 + TD_ATC_CTRL:x} 0x1']
    if iova is not None:
        lines.append(f'writeq 0x{TD_BAR0 + TD_IOVA:x} 0x{iova:x}')
    return lines + [f'writel 0x{TD_BAR0 + TD_CMD:x} 0x{TD_READ | TD_ATS:x}']


def testdev_setup(qt, iova, pasid):
    qt.writeq(TD_BAR0 + TD_IOVA, iova)
    qt.writel(TD_BAR0 + TD_LEN, DMA_LEN)
    qt.writel(TD_BAR0 + TD_PASID, 0 if pasid is None else TD_PASID_VALID | pasid)


def testdev_check(qt):
    status = qt.readl(TD_BAR0 + TD_STATUS) & 0xff
    if status != 1:
        raise QtestError(f'test device DMA status {status} (1 is ok)')


def check_no_fault(vtd):
    fsts = vtd.reg(FSTS)
    if fsts:
        raise QtestError(f'fault status 0x{fsts:x}: {vtd.pending_faults()}')


class Queue:
    """Invalidation descriptors as qtest lines: each operation writes its
    descriptors and an invalidation wait (status write) at the tail and
    moves IQT; check() verifies the last wait completed."""

    def __init__(self, vtd):
        self.vtd = vtd
        if vtd.queue is None:
            vtd.enable_queue()
        self.status = vtd.alloc_page()
        self.marker = 0

    def lines(self, *descs):
        vtd = self.vtd
        self.marker += 1
        size = 8 * vtd.DESC_QUADS
        out = []
        for desc in descs + (vtd.desc_wait(self.status, self.marker),):
            quads = tuple(desc) + (0,) * (vtd.DESC_QUADS - len(desc))
            addr = vtd.queue + vtd.queue_tail * size
            out.append(f'write 0x{addr:x} 0x{size:x} 0x{struct.pack(f"<{len(quads)}Q", *quads).hex()}')
            vtd.queue_tail = (vtd.queue_tail + 1) % vtd.queue_entries
        out.append(f'writeq 0x{VTD_BASE + IQT:x} 0x{vtd.queue_index_reg(vtd.queue_tail):x}')
        return out

    def check(self):
        status = struct.unpack('<I', self.vtd.qt.memread(self.status, 4))[0]
        if status != self.marker or self.vtd.reg(FSTS):
            raise QtestError(f'invalidation wait: status {status} (want {self.marker}), '
                             f'FSTS 0x{self.vtd.reg(FSTS):x}')


class Case:
    """One measured operation: `lines(i)` gives the qtest lines of the
    i-th operation (i counts up over the whole run, so miss cases never
    repeat a page); `check()` runs after each loop."""

    def __init__(self, name, entry, lines, check, prepare=None, ours_only=False, group=None,
                 occupancy=None):
        self.name, self.entry, self.lines, self.check = name, entry, lines, check
        self.prepare = prepare
        self.ours_only = ours_only
        self.group = group
        self.occupancy = occupancy


class Filler:
    """Brings the IOTLB to K cached pages of the edu's domain: a global
    IOTLB invalidation, then edu DMAs to OCC_BASE + i * 4K, i < K."""

    def __init__(self, machine, queue, bar0):
        self.machine, self.queue, self.bar0 = machine, queue, bar0

    def to(self, k):
        vtd = self.queue.vtd
        edu_setup(self.machine.qt, self.bar0, OCC_BASE)
        lines = self.queue.lines(vtd.desc_iotlb_global())
        for i in range(k):
            lines += edu_lines(self.bar0, OCC_BASE + i * 0x1000)
        for i in range(0, len(lines), 3000):
            self.machine.client.batch(lines[i:i + 3000])
        self.queue.check()
        edu_check(self.machine.qt, self.bar0)
        check_no_fault(vtd)


class Pages:
    """Fresh pages of the miss range, never used twice in one QEMU run."""

    COUNT = 16384

    def __init__(self):
        self.next = 0

    def take(self):
        if self.next >= self.COUNT:
            raise QtestError('miss range exhausted: lower the loop counts')
        self.next += 1
        return MISS_BASE + (self.next - 1) * 0x1000


def hit_miss_cases(m, vtd, label, dev, pages, ours_only=False, group=None):
    """IOTLB hit and miss cases of `dev` ('edu': untranslated DMA without
    PASID; ('testdev', pasid): ATS translation requests)."""
    qt = m.qt
    if dev == 'edu':
        def prep(iova):
            edu_setup(qt, EDU_BAR0, iova)
            m.client.batch(edu_lines(EDU_BAR0))
        return [
            Case(f'{label}: IOTLB hit', 'translate', lambda i: edu_lines(EDU_BAR0),
                 lambda: (edu_check(qt, EDU_BAR0), check_no_fault(vtd)),
                 prepare=lambda: prep(HIT_IOVA), ours_only=ours_only, group=group),
            Case(f'{label}: IOTLB miss', 'translate',
                 lambda i: edu_lines(EDU_BAR0, pages.take()),
                 lambda: (edu_check(qt, EDU_BAR0), check_no_fault(vtd)),
                 prepare=lambda: prep(pages.take()), ours_only=ours_only, group=group),
        ]
    _, pasid = dev

    def tprep(iova):
        testdev_setup(qt, iova, pasid)
        m.client.batch(testdev_lines())
    return [
        Case(f'{label}: IOTLB hit', 'ats', lambda i: testdev_lines(),
             lambda: (testdev_check(qt), check_no_fault(vtd)),
             prepare=lambda: tprep(HIT_IOVA), ours_only=ours_only, group=group),
        Case(f'{label}: IOTLB miss', 'ats', lambda i: testdev_lines(pages.take()),
             lambda: (testdev_check(qt), check_no_fault(vtd)),
             prepare=lambda: tprep(pages.take()), ours_only=ours_only, group=group),
    ]


def ss_tables(vtd):
    """Second-stage tables mapping the hit page, the miss range and the
    occupancy range to RAM_PAGE; returns the top table."""
    top = vtd.new_address_space()
    one = lambda a: vtd.map_4k(top, a, RAM_PAGE)    # noqa: E731
    one(HIT_IOVA)
    map_pages(vtd, one, MISS_BASE, Pages.COUNT, RAM_PAGE, PTE_R | PTE_W)
    map_pages(vtd, one, OCC_BASE, max(OCCUPANCY), RAM_PAGE, PTE_R | PTE_W)
    return top


def fs_tables(vtd, ss_top=None):
    """First-stage tables (nested: living at IOVAs `ss_top` maps) for the
    same ranges; returns the FirstStageTables."""
    fs = vtd.first_stage(ss_top=ss_top, iova_base=None if ss_top is None else 0xa000000)
    one = lambda a: fs.map_4k(a, RAM_PAGE)          # noqa: E731
    one(HIT_IOVA)
    bits = FS_P | FS_RW | FS_US
    map_pages(vtd, one, MISS_BASE, Pages.COUNT, RAM_PAGE, bits)
    map_pages(vtd, one, OCC_BASE, max(OCCUPANCY), RAM_PAGE, bits)
    return fs


def occupancy_cases(m, queue, invalidations, group):
    """For each K of OCCUPANCY: K pages of the edu's domain cached, then
    each of `invalidations` ((kind, descriptor): one that matches none of
    them) measured in turn."""
    filler = Filler(m, queue, EDU_BAR0)
    cases = []
    for k in OCCUPANCY:
        for n, (kind, desc) in enumerate(invalidations):
            cases.append(Case(f'{kind} invalidation, {k} pages cached', 'mmio',
                              lambda i, desc=desc: queue.lines(desc), queue.check,
                              prepare=(lambda k=k: filler.to(k)) if n == 0 else None,
                              group=group, occupancy=(kind, k)))
    return cases


# ---------------------------------------------------------------------------
# The SMMUv3 configurations (-M virt,iommu=smmuv3: stage 1 and 2 offered)

SMMU_RAM_PAGE = smmu_qtest.RAM_BASE + 0x1800000     # inside stage 2's identity blocks
SMMU_OCCUPANCY = (1, 64, 255)
SMMU_ASID, SMMU_VMID = 1, 1
TD_SID = 2 << 3                                      # rviommu-testdev at 00:02.0
TD_VIRT_BAR0 = smmu_qtest.PCI_MMIO_BASE


def td_read_lines(iova=None):
    """qtest lines of one 8-byte read by the test device (no ATS)."""
    lines = [] if iova is None else [f'writeq 0x{TD_VIRT_BAR0 + TD_IOVA:x} 0x{iova:x}']
    return lines + [f'writel 0x{TD_VIRT_BAR0 + TD_CMD:x} 0x{TD_READ:x}']


def smmu_stream(m, kind):
    """The SMMU on, the test device's stream translating by `kind` (1, 2 or
    'nested'): the hit page, the miss range and the occupancy range mapped
    to SMMU_RAM_PAGE. Returns the Smmu."""
    qt = m.qt
    smmu = smmu_qtest.Smmu(qt)
    smmu_qtest.TestDev(qt, TD_SID, TD_VIRT_BAR0)
    qt.writel(TD_VIRT_BAR0 + TD_LEN, DMA_LEN)
    qt.writel(TD_VIRT_BAR0 + TD_PASID, 0)
    smmu.enable()
    pt = smmu_qtest.PageTable(smmu, 2 if kind == 2 else 1)
    pt.map(HIT_IOVA, SMMU_RAM_PAGE)
    pt.map_run(MISS_BASE, Pages.COUNT, SMMU_RAM_PAGE)
    pt.map_run(OCC_BASE, max(SMMU_OCCUPANCY), SMMU_RAM_PAGE)
    if kind == 2:
        smmu.ste(TD_SID, smmu_qtest.STE_S2, s2ttb=pt.root, vmid=SMMU_VMID)
    elif kind == 1:
        smmu.ste(TD_SID, smmu_qtest.STE_S1, cd=smmu.cd(pt.root, asid=SMMU_ASID))
    else:
        s2 = smmu_qtest.PageTable(smmu, 2)
        s2.map_blocks(smmu_qtest.RAM_BASE, smmu_qtest.RAM_BASE + 0x1ffffff)
        smmu.ste(TD_SID, smmu_qtest.STE_NESTED, cd=smmu.cd(pt.root, asid=SMMU_ASID),
                 s2ttb=s2.root, vmid=SMMU_VMID)
    return smmu


def smmu_check(m, smmu):
    testdev_check_at(m.qt, TD_VIRT_BAR0)
    events = smmu.events()
    if events or smmu.rd(smmu_qtest.GERROR) != smmu.rd(smmu_qtest.GERRORN):
        raise QtestError(f'SMMU events {events}, GERROR 0x{smmu.rd(smmu_qtest.GERROR):x}')


def testdev_check_at(qt, bar0):
    status = qt.readl(bar0 + TD_STATUS) & 0xff
    if status != 1:
        raise QtestError(f'test device DMA status {status} (1 is ok)')


class SmmuCommands:
    """Commands as qtest lines: each operation writes its commands and a
    CMD_SYNC at PROD and moves CMDQ_PROD; check() verifies they were
    consumed without error."""

    def __init__(self, smmu):
        self.smmu = smmu

    def lines(self, *cmds):
        smmu = self.smmu
        out = []
        for op, d0, d1 in cmds + ((smmu_qtest.CMD_SYNC, 0, 0),):
            slot = smmu.cmd_prod & ((1 << smmu.LOG2_ENTRIES) - 1)
            out.append(f'write 0x{smmu.cmdq + 16 * slot:x} 0x10 0x{struct.pack("<QQ", op | d0, d1).hex()}')
            smmu.cmd_prod = (smmu.cmd_prod + 1) & ((2 << smmu.LOG2_ENTRIES) - 1)
        out.append(f'writel 0x{smmu.base + smmu_qtest.CMDQ_PROD:x} 0x{smmu.cmd_prod:x}')
        return out

    def check(self):
        smmu = self.smmu
        cons = smmu.rd(smmu_qtest.CMDQ_CONS) & ((2 << smmu.LOG2_ENTRIES) - 1)
        if cons != smmu.cmd_prod or smmu.rd(smmu_qtest.GERROR) != smmu.rd(smmu_qtest.GERRORN):
            raise QtestError(f'commands: CONS 0x{cons:x}, PROD 0x{smmu.cmd_prod:x}, '
                             f'GERROR 0x{smmu.rd(smmu_qtest.GERROR):x}')


def smmu_cases(m, smmu, label, invalidation=None, ours_only=False):
    """TLB hit and miss of the test device's reads; with `invalidation`
    ((kind, command)), its cost with K pages cached for each K."""
    pages = Pages()
    check = lambda: smmu_check(m, smmu)             # noqa: E731

    def prep(iova):
        m.client.batch(td_read_lines(iova))
    cases = [
        Case(f'{label}: TLB hit', 'smmu_translate', lambda i: td_read_lines(), check,
             prepare=lambda: prep(HIT_IOVA), ours_only=ours_only, group='smmu'),
        Case(f'{label}: TLB miss', 'smmu_translate', lambda i: td_read_lines(pages.take()), check,
             prepare=lambda: prep(pages.take()), ours_only=ours_only, group='smmu'),
    ]
    if invalidation:
        kind, cmd = invalidation
        cmds = SmmuCommands(smmu)
        everything = ((smmu_qtest.CMD_TLBI_NH_ALL, 0, 0), (smmu_qtest.CMD_TLBI_NSNH_ALL, 0, 0))

        def fill(k):
            lines = cmds.lines(*everything)
            for i in range(k):
                lines += td_read_lines(OCC_BASE + i * 0x1000)
            m.client.batch(lines)
            cmds.check()
            check()
        for k in SMMU_OCCUPANCY:
            cases.append(Case(f'{label}: {kind}, {k} pages cached', 'smmu_mmio',
                              lambda i, cmd=cmd: cmds.lines(cmd), cmds.check,
                              prepare=lambda k=k: fill(k), group='smmu'))
    return cases


def cfg_smmu_s1(m):
    smmu = smmu_stream(m, 1)
    # a mapped page of the ASID that is never read
    tlbi = (smmu_qtest.CMD_TLBI_NH_VA, SMMU_ASID << 48, (HIT_IOVA + 0x1000) | 1)
    return smmu_cases(m, smmu, 'SMMUv3 stage 1', ('TLBI_NH_VA', tlbi))


def cfg_smmu_s2(m):
    smmu = smmu_stream(m, 2)
    tlbi = (smmu_qtest.CMD_TLBI_S2_IPA, SMMU_VMID << 32, (HIT_IOVA + 0x1000) | 1)
    return smmu_cases(m, smmu, 'SMMUv3 stage 2', ('TLBI_S2_IPA', tlbi))


def cfg_smmu_nested(m):
    smmu = smmu_stream(m, 'nested')
    return smmu_cases(m, smmu, 'SMMUv3 nested')


# ---------------------------------------------------------------------------
# The configurations: one QEMU each (per build); their cases run in order.

EDU = f'edu,addr={EDU_DEVFN >> 3:02x}.0'
EDU2 = f'edu,addr={EDU2_DEVFN >> 3:02x}.0'
TESTDEV = f'rviommu-testdev,addr={TD_DEVFN >> 3:02x}.0'
CCMD = 0x28
IRTA, GCMD_SIRTP, GCMD_IRE, GSTS_IRTPS, GSTS_IRES = 0xb8, 1 << 24, 1 << 25, 1 << 24, 1 << 25


def legacy_edu(qt):
    """Legacy mode: the edu in domain 1 on the second-stage tables,
    translation on; returns the LegacyVtd."""
    vtd = LegacyVtd(qt, table_limit=0x1000000)
    top = ss_tables(vtd)
    Edu(qt, EDU_DEVFN, EDU_BAR0)
    vtd.set_context(0, EDU_DEVFN, top, did=1)
    vtd.enable()
    return vtd


def cfg_legacy(m):
    qt = m.qt
    vtd = legacy_edu(qt)
    pages = Pages()
    cases = hit_miss_cases(m, vtd, 'legacy second stage', 'edu', pages, group='legacy')
    ccmd = f'writeq 0x{VTD_BASE + CCMD:x} 0x{(1 << 63) | (3 << 61) | (EDU_DEVFN << 16) | 1:x}'

    def ctx_check():
        if qt.readq(VTD_BASE + CCMD) >> 63:
            raise QtestError('context-cache invalidation did not complete')
        edu_check(qt, EDU_BAR0)
        check_no_fault(vtd)
    cases.append(Case('legacy second stage: context-cache miss (device-selective '
                      'context invalidation, then a new page)', 'translate',
                      lambda i: [ccmd] + edu_lines(EDU_BAR0, pages.take()), ctx_check,
                      group='legacy'))
    return cases


def cfg_legacy_qi(m):
    vtd = legacy_edu(m.qt)
    queue = Queue(vtd)
    # page-selective: a mapped page of the domain that is never DMAed;
    # domain-selective: another domain (nothing of it is cached)
    return occupancy_cases(m, queue, [
        ('page-selective', vtd.desc_iotlb_page(1, HIT_IOVA + 0x1000)),
        ('domain-selective', vtd.desc_iotlb_domain(2))], 'invalidation')


def cfg_ats(m):
    qt = m.qt
    vtd = LegacyVtd(qt, table_limit=0x1000000)
    top = ss_tables(vtd)
    TestDev(qt, TD_DEVFN, TD_BAR0, ats=True, pasid=False)
    vtd.set_context(0, TD_DEVFN, top, did=1, tt=1)       # device-TLBs allowed
    vtd.enable()
    return hit_miss_cases(m, vtd, 'ATS translation request (legacy, device-iotlb=on)',
                          ('testdev', None), Pages(), group='ats')


def scalable(m, uses):
    """Scalable-mode tables: `uses` maps (devfn, PASID) (PASID 0 of an edu
    is its RID_PASID) to (PGTT, domain id); second-stage, first-stage and
    nested tables are built for the types used, all mapping the same
    ranges.  Translation and QI on; returns the ScalableVtd."""
    qt = m.qt
    vtd = ScalableVtd(qt, table_limit=0x1000000)
    pgtts = {pgtt for pgtt, _ in uses.values()}
    ss = ss_tables(vtd) if pgtts & {PGTT_SS, PGTT_NESTED} else None
    tables = {PGTT_PT: {}}
    if PGTT_SS in pgtts:
        tables[PGTT_SS] = dict(slptptr=ss)
    if PGTT_FS in pgtts:
        tables[PGTT_FS] = dict(flptptr=fs_tables(vtd).root)
    if PGTT_NESTED in pgtts:
        # the first stage's output (RAM_PAGE) and its own tables are
        # second-stage input addresses
        vtd.map_4k(ss, RAM_PAGE, RAM_PAGE)
        tables[PGTT_NESTED] = dict(slptptr=ss, flptptr=fs_tables(vtd, ss_top=ss).root)
    dirs = {}
    for (devfn, pasid), (pgtt, did) in sorted(uses.items()):
        if devfn not in dirs:
            dirs[devfn] = vtd.new_pasid_dir()
            if devfn == TD_DEVFN:
                TestDev(qt, TD_DEVFN, TD_BAR0, ats=True, pasid=True)
                vtd.set_context(0, devfn, dirs[devfn], dte=True, paside=True)
            else:
                Edu(qt, devfn, EDU_BAR0 if devfn == EDU_DEVFN else EDU2_BAR0)
                vtd.set_context(0, devfn, dirs[devfn])
        vtd.set_pasid_entry(dirs[devfn], pasid, pgtt, did=did, **tables[pgtt])
    vtd.enable()
    return vtd


def cfg_sm_ss(m):
    qt = m.qt
    vtd = scalable(m, {(EDU_DEVFN, 0): (PGTT_SS, 1), (EDU2_DEVFN, 0): (PGTT_PT, 4)})
    cases = hit_miss_cases(m, vtd, 'scalable second stage, no PASID', 'edu', Pages(),
                           group='scalable')

    def pt_prep():
        edu_setup(qt, EDU2_BAR0, HIT_IOVA)
        m.client.batch(edu_lines(EDU2_BAR0))
    cases.append(Case('scalable pass-through, no PASID', 'translate',
                      lambda i: edu_lines(EDU2_BAR0),
                      lambda: (edu_check(qt, EDU2_BAR0), check_no_fault(vtd)), prepare=pt_prep,
                      group='scalable'))
    queue = Queue(vtd)
    cases += occupancy_cases(m, queue, [('PASID-selective', vtd.desc_piotlb_pasid(1, PASID + 2))],
                             'invalidation')
    return cases


def cfg_sm_fs(m):
    vtd = scalable(m, {(EDU_DEVFN, 0): (PGTT_FS, 1)})
    return hit_miss_cases(m, vtd, 'scalable first stage, no PASID', 'edu', Pages(),
                          group='scalable')


def cfg_pasid(m):
    """Ours only: requests with a PASID (the C device refuses PASIDs with
    device-iotlb, and has no other PASID path) and nested translation."""
    qt = m.qt
    kinds = [('second stage', PGTT_SS), ('first stage', PGTT_FS), ('nested', PGTT_NESTED)]
    uses = {(EDU_DEVFN, 0): (PGTT_NESTED, 1), (TD_DEVFN, PASID + 3): (PGTT_PT, 6)}
    for n, (_, pgtt) in enumerate(kinds):
        uses[(TD_DEVFN, PASID + n)] = (pgtt, 2 + n)
    vtd = scalable(m, uses)
    pages = Pages()
    cases = hit_miss_cases(m, vtd, 'scalable nested, no PASID', 'edu', pages, ours_only=True,
                           group='scalable')
    for n, (label, _) in enumerate(kinds):
        cases += hit_miss_cases(m, vtd, f'scalable {label}, PASID (ATS)',
                                ('testdev', PASID + n), pages, ours_only=True,
                                group='scalable')

    def pt_prep():
        testdev_setup(qt, HIT_IOVA, PASID + 3)
        m.client.batch(testdev_lines())
    cases.append(Case('scalable pass-through, PASID (ATS)', 'ats', lambda i: testdev_lines(),
                      lambda: (testdev_check(qt), check_no_fault(vtd)), prepare=pt_prep,
                      ours_only=True, group='scalable'))
    return cases


def pci_find_cap(qt, bdf, cap_id):
    ptr = qt.pci_cfg_readl(bdf, 0x34) & 0xfc
    while ptr:
        hdr = qt.pci_cfg_readl(bdf, ptr)
        if hdr & 0xff == cap_id:
            return ptr
        ptr = (hdr >> 8) & 0xfc
    raise QtestError(f'capability {cap_id:#x} not found on {bdf:#x}')


def cfg_ir(m):
    qt = m.qt
    vtd = LegacyVtd(qt, table_limit=0x1000000)
    Edu(qt, EDU_DEVFN, EDU_BAR0)
    queue = Queue(vtd)
    handle = 3
    table = vtd.alloc_page()                   # 256 entries
    lo = 1 | (0x40 << 16)                      # present, fixed, physical, vector 0x40, APIC 0
    hi = EDU_DEVFN | (1 << 18)                 # SVT 01: requester id must be the edu's
    qt.memwrite(table + handle * 16, struct.pack('<QQ', lo, hi))
    qt.writeq(VTD_BASE + IRTA, table | 7)
    vtd._gcmd(GCMD_SIRTP, GSTS_IRTPS)          # pylint: disable=protected-access
    vtd._gcmd(GCMD_IRE, GSTS_IRES)             # pylint: disable=protected-access
    # edu's MSI (64-bit capable): remappable format, handle 3
    cap = pci_find_cap(qt, EDU_DEVFN, 0x05)
    flags = qt.pci_cfg_readl(EDU_DEVFN, cap) >> 16
    addr = 0xfee00000 | (handle << 5) | (1 << 4)
    qt.pci_cfg_writel(EDU_DEVFN, cap + 4, addr)
    if flags & (1 << 7):
        qt.pci_cfg_writel(EDU_DEVFN, cap + 8, 0)
        qt.pci_cfg_writel(EDU_DEVFN, cap + 12, 0)
    else:
        qt.pci_cfg_writel(EDU_DEVFN, cap + 8, 0)
    ctrl = qt.pci_cfg_readl(EDU_DEVFN, cap)
    qt.pci_cfg_writel(EDU_DEVFN, cap, ctrl | (1 << 16))     # MSI enable
    msi = f'writel 0x{EDU_BAR0 + 0x60:x} 0x1'                   # edu: raise an interrupt
    iec = (0x4 | (1 << 4) | (handle << 32), 0)                  # index-selective IEC

    def check():
        check_no_fault(vtd)
        if qt.readl(EDU_BAR0 + 0x24) != 1:
            raise QtestError('edu interrupt status not raised')
    return [
        Case('interrupt remapping: MSI through the IRTE', 'msi', lambda i: [msi], check,
             group='interrupt'),
        Case('interrupt remapping: interrupt entry cache invalidation (index), then the MSI',
             'msi', lambda i: queue.lines(iec) + [msi], lambda: (check(), queue.check()),
             group='interrupt'),
    ]


CONFIGS = [
    # (name, intel-iommu properties, devices, build function, ours only)
    ('legacy', '', [EDU], cfg_legacy, False),
    ('legacy-qi', '', [EDU], cfg_legacy_qi, False),
    ('ats', 'device-iotlb=on', [TESTDEV], cfg_ats, False),
    ('scalable-ss', 'x-scalable-mode=on', [EDU, EDU2], cfg_sm_ss, False),
    ('scalable-fs', 'x-scalable-mode=on,x-flts=on', [EDU], cfg_sm_fs, False),
    ('pasid', 'x-scalable-mode=modern,device-iotlb=on', [EDU, TESTDEV], cfg_pasid, True),
    ('interrupt', 'intremap=on', [EDU], cfg_ir, False),
    # (..., target): -M virt,<properties> on qemu-system-aarch64
    ('smmu-s1', 'iommu=smmuv3', ['rviommu-testdev,addr=02.0'], cfg_smmu_s1, False, 'virt'),
    ('smmu-s2', 'iommu=smmuv3', ['rviommu-testdev,addr=02.0'], cfg_smmu_s2, False, 'virt'),
    ('smmu-nested', 'iommu=smmuv3', ['rviommu-testdev,addr=02.0'], cfg_smmu_nested, False, 'virt'),
]


# ---------------------------------------------------------------------------
# Running


class Loops:
    """Loop lengths: callgrind's two (N1, N2) and the timed runs (N, runs)."""

    def __init__(self, quick):
        if quick:
            self.n1, self.n2, self.timed, self.runs, self.warm = 2, 5, 20, 2, 2
        else:
            self.n1, self.n2, self.timed, self.runs, self.warm = 50, 250, 400, 5, 3


def run_ops(m, case, counter, n):
    lines = []
    for _ in range(n):
        lines += case.lines(counter[0])
        counter[0] += 1
    for i in range(0, len(lines), 4000):
        m.client.batch(lines[i:i + 4000])


def run_config(build, binary, cfg, loops, firmware, workdir, callgrind, log):
    """Run every case of `cfg` on one QEMU; returns {case name: result}."""
    name, props, devices, setup, _ = cfg[:5]
    target = cfg[5] if len(cfg) > 5 else 'q35'
    if target == 'virt':
        binary = binary.replace('qemu-system-x86_64', 'qemu-system-aarch64')
    tag = f'{build}-{name}-{"cg" if callgrind else "time"}'
    wd = os.path.join(workdir, tag)
    os.makedirs(wd, exist_ok=True)
    out = os.path.join(wd, 'callgrind.out') if callgrind else None
    t0 = time.monotonic()
    m = Machine(binary, props, devices, firmware, wd, callgrind=out, target=target)
    t_start = time.monotonic() - t0
    results = {}
    try:
        cases = setup(m)
        t_setup = time.monotonic() - t0 - t_start
        counter = [0]
        for case in cases:
            if case.ours_only and build == 'C':
                continue
            if case.prepare:
                case.prepare()
            run_ops(m, case, counter, loops.warm)
            case.check()
            if callgrind:
                entry = ENTRY[case.entry][0 if build == 'C' else 1]
                m.control('-i', 'on')
                m.control('-z')
                run_ops(m, case, counter, loops.n1)
                f1 = m.dump()
                run_ops(m, case, counter, loops.n2)
                f2 = m.dump()
                m.control('-i', 'off')
                case.check()
                t1, e1 = parse_callgrind(f1, [entry])
                t2, e2 = parse_callgrind(f2, [entry])
                dn = loops.n2 - loops.n1
                (inc1, calls1), (inc2, calls2) = e1[entry], e2[entry]
                res = {'ir_op': (t2 - t1) / dn, 'calls_op': (calls2 - calls1) / dn,
                       'entry_call': ((inc2 - inc1) / (calls2 - calls1)
                                      if calls2 != calls1 else None),
                       'entry': entry, 'profile': f2}
            else:
                times = []
                for _ in range(loops.runs):
                    s = time.perf_counter_ns()
                    run_ops(m, case, counter, loops.timed)
                    times.append((time.perf_counter_ns() - s) / loops.timed)
                    case.check()
                res = {'ns_op': statistics.median(times)}
            results[case.name] = (case, res)
    except Exception:
        log(f'    QEMU log ({tag}):\n{m.log_text()}')
        raise
    finally:
        m.close()
    log(f'    {tag}: {len(results)} cases, {time.monotonic() - t0:.0f} s '
        f'(start {t_start:.0f} s, tables {t_setup:.0f} s)')
    return results


def fmt(v, digits=0):
    if v is None:
        return '-'
    return f'{v:,.{digits}f}'


def ratio(a, b):
    if a is None or b is None or b == 0:
        return '-'
    return f'{a / b:.2f}'


def report(rows, out_dir, meta):
    """The side-by-side table (markdown) and the JSON of every number."""
    head = ('| case | Ir/op C | Ir/op ours | ratio | entry Ir/call C | entry Ir/call ours | '
            'ratio | calls/op C / ours | ns/op C | ns/op ours | ratio |')
    lines = [head, '|' + '---|' * 11]
    for name, r in rows.items():
        c, o = r.get('C', {}), r.get('ours', {})
        calls = f"{fmt(c.get('calls_op'), 2)} / {fmt(o.get('calls_op'), 2)}"
        mark = ' (ours only)' if r['ours_only'] else ''
        lines.append(
            f"| {name}{mark} | {fmt(c.get('ir_op'))} | {fmt(o.get('ir_op'))} | "
            f"{ratio(o.get('ir_op'), c.get('ir_op'))} | {fmt(c.get('entry_call'))} | "
            f"{fmt(o.get('entry_call'))} | {ratio(o.get('entry_call'), c.get('entry_call'))} | "
            f"{calls} | {fmt(c.get('ns_op'))} | {fmt(o.get('ns_op'))} | "
            f"{ratio(o.get('ns_op'), c.get('ns_op'))} |")
    table = '\n'.join(lines)
    text = (f"Measured {meta['date']} on {meta['machine']}; loops N1={meta['n1']}, "
            f"N2={meta['n2']} (callgrind), {meta['runs']} timed runs of {meta['timed']}.\n\n"
            + table + '\n')
    Path(out_dir, 'bench.md').write_text(text)
    Path(out_dir, 'bench.json').write_text(json.dumps(
        {'meta': meta, 'cases': {n: {k: v for k, v in r.items() if k != 'case'}
                                 for n, r in rows.items()}}, indent=1, default=str))
    return text


def plot(rows, out_dir):
    """Invalidation cost (entry Ir per invalidation) against the number of
    pages cached, C and ours; returns the PNG path or None."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    series = {}
    for r in rows.values():
        if not r['occupancy']:
            continue
        kind, k = r['occupancy']
        for build in ('C', 'ours'):
            v = r.get(build, {}).get('entry_call')
            if v is not None:
                series.setdefault((kind, build), []).append((k, v))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    kinds = sorted({kind for kind, _ in series})
    colours = {kind: f'C{i}' for i, kind in enumerate(kinds)}
    for (kind, build), pts in sorted(series.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colours[kind],
                marker='o' if build == 'ours' else 's',
                linestyle='-' if build == 'ours' else '--', label=f'{kind} ({build})')
    ax.set_xscale('log', base=2)
    ax.set_yscale('log')
    ax.set_xlabel('distinct pages DMAed before (both IOTLBs hold at most 1024 entries)')
    ax.set_ylabel('instructions per invalidation (queue tail write, inclusive)')
    ax.set_title('intel-iommu: cost of an invalidation that matches no cached entry')
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=8)
    path = os.path.join(out_dir, 'invalidation.png')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def machine_name():
    cpu = 'unknown CPU'
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    return f'{os.cpu_count()} x {cpu}'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--ours', required=True)
    ap.add_argument('--ref', required=True)
    ap.add_argument('--firmware', required=True)
    ap.add_argument('--out', default='bench-out')
    ap.add_argument('--quick', action='store_true', help='tiny loops (CI: it runs, numbers exist)')
    ap.add_argument('--only', action='append', default=[], help='configurations to run')
    ap.add_argument('--no-time', action='store_true', help='callgrind only')
    ap.add_argument('--keep', action='store_true',
                    help='keep the callgrind profiles and QEMU logs (printed where)')
    args = ap.parse_args()
    loops = Loops(args.quick)
    out_dir = os.path.abspath(args.out)
    os.makedirs(out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix='vtd-bench-')

    def log(msg):
        print(msg, flush=True)
    builds = [('C', args.ref), ('ours', args.ours)]
    rows = {}
    configs = [c for c in CONFIGS if not args.only or c[0] in args.only]
    for cfg in configs:
        log(f'==> {cfg[0]} (' + (f'-M virt,{cfg[1]}' if len(cfg) > 5 else f'intel-iommu,{cfg[1]}') + ')')
        for build, binary in builds:
            if cfg[4] and build == 'C':
                continue
            modes = [True] + ([] if args.no_time else [False])
            for cg in modes:
                res = run_config(build, binary, cfg, loops, args.firmware, work, cg, log)
                for name, (case, r) in res.items():
                    row = rows.setdefault(name, {'ours_only': case.ours_only,
                                                 'occupancy': case.occupancy,
                                                 'group': case.group})
                    row.setdefault(build, {}).update(r)
    meta = {'date': time.strftime('%Y-%m-%d'), 'machine': machine_name(),
            'n1': loops.n1, 'n2': loops.n2, 'timed': loops.timed, 'runs': loops.runs,
            'ours': args.ours, 'ref': args.ref}
    text = report(rows, out_dir, meta)
    print('\n' + text)
    png = plot(rows, out_dir)
    print(f'table: {out_dir}/bench.md, numbers: {out_dir}/bench.json'
          + (f', plot: {png}' if png else ' (no plot: no invalidation cases, or no matplotlib)'))
    # every case must have a number from every build that runs it
    missing = []
    for name, r in rows.items():
        for build in ('ours',) if r['ours_only'] else ('C', 'ours'):
            b = r.get(build, {})
            if b.get('ir_op') is None or (not args.no_time and b.get('ns_op') is None):
                missing.append(f'{name} ({build})')
    if missing or args.keep:
        print(f'profiles and QEMU logs kept in {work}')
    else:
        shutil.rmtree(work, ignore_errors=True)
    if missing:
        print('missing numbers: ' + '; '.join(missing))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
