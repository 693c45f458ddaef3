# SPDX-License-Identifier: GPL-2.0-or-later
"""What the hostile-guest program generators of both IOMMUs share
(vtd_fuzz.py, smmu_fuzz.py): the recorder that stands for the qtest
connection while a program is written, the data-region tags, random and
mutated values, the test-device steps, and the check of test-device reads
against an isolation model."""

import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'functional'))
# pylint: disable=wrong-import-position
import vtd_qtest as V

TD_STATUS_NAMES = V.TD_STATUS_NAMES
TAG = 0xd47a
CHECKED_READ_ANSWERS = 6         # the four register writes, the status, the data


def tag(addr):
    """The 8-byte word at RAM address `addr` of a data region: names it."""
    return (TAG << 48) | addr


class Recorder:
    """Stands for the qtest connection while a program is generated: writes
    become command lines, guest RAM is shadowed so the encoders can read
    back what they wrote, register writes are remembered (`last`), and the
    few register reads the encoders make get what a working device answers
    (`answer`, per machine)."""

    def __init__(self):
        self.lines = []
        self.ram = {}
        self.last = {}

    def cmd(self, line):
        self.lines.append(line)
        return '0'

    def take(self):
        out, self.lines = self.lines, []
        return out

    def answer(self, addr, width):
        """A register read's value while generating (subclasses)."""
        return 0

    def readl(self, addr):
        return self.answer(addr, 4)

    def readq(self, addr):
        return self.answer(addr, 8)

    def writel(self, addr, val):
        self.last[addr] = val & 0xffffffff
        self.cmd(f'writel 0x{addr:x} 0x{val & 0xffffffff:x}')

    def writeq(self, addr, val):
        self.last[addr] = val & (2**64 - 1)
        self.cmd(f'writeq 0x{addr:x} 0x{val & (2**64 - 1):x}')

    def memwrite(self, addr, data):
        for i, b in enumerate(data):
            self.ram[addr + i] = b
        self.cmd(f'write 0x{addr:x} 0x{len(data):x} 0x{data.hex()}')

    def memread(self, addr, size):
        return bytes(self.ram.get(addr + i, 0) for i in range(size))

    def clock_step(self, ns):
        self.cmd(f'clock_step {ns}')


class ProgramBase:
    """A seed's program: subclasses set TD_BAR0 (the test device's BAR0),
    TD_CFG (its PCIe configuration space), TD_BDF and EDU_BDF, and write
    `prologue` and `random_step`."""

    # Reads whose answers the runner counts: the test device's status
    # after each DMA (low byte: 1 ok, 2 DMA error, 3/4 ATS refused, ...).
    @property
    def WATCH(self):                     # pylint: disable=invalid-name
        return (f'readl 0x{self.TD_BAR0 + V.TD_STATUS:x}',)

    @staticmethod
    def watch_key(_line, answer):
        """How the runner counts a watched answer: the status's name."""
        try:
            return 'testdev ' + TD_STATUS_NAMES.get(int(answer.split()[1], 16) & 0xff, '?')
        except (IndexError, ValueError):
            return answer

    def emit(self, label):
        lines = self.qt.take()
        if lines:
            self.steps.append((label, lines))

    def quad(self, addr):
        return struct.unpack('<Q', self.qt.memread(addr, 8))[0]

    def tag_pages(self, base, pages):
        """Fill `pages` pages from `base` with their tags."""
        for p in range(pages):
            page = base + p * 0x1000
            self.qt.cmd(f'write 0x{page:x} 0x1000 0x'
                        + b''.join(struct.pack('<Q', tag(page + 8 * i)) for i in range(512)).hex())
        self.emit('data tags')

    def r64(self):
        rng = self.rng
        return rng.choice([rng.getrandbits(64), rng.getrandbits(32), rng.getrandbits(12),
                           0, 2**64 - 1, 1 << rng.randrange(64)])

    POINTER_MASK = 2**64 - 1             # the bits of an address field

    def mutate(self, val):
        """`val` with bits flipped, extra or fewer bits, its address field
        replaced by a hostile pointer, or random."""
        rng = self.rng
        how = rng.randrange(6)
        if how == 0:
            for _ in range(rng.randint(1, 3)):
                val ^= 1 << rng.randrange(64)
            return val
        if how == 1:
            return (val & 0xfff) | (self.pointer() & self.POINTER_MASK)
        if how == 2:
            return val | (rng.getrandbits(64) & rng.getrandbits(64))   # extra bits
        if how == 3:
            return val & rng.getrandbits(64)
        if how == 4:
            return self.r64()
        return val ^ (1 << rng.randrange(12))                             # flags only

    # -- test-device steps --------------------------------------------------

    def testdev_dma(self, iova, length, pasid, cmd):
        qt = self.qt
        qt.writeq(self.TD_BAR0 + V.TD_IOVA, iova)
        qt.writel(self.TD_BAR0 + V.TD_LEN, length)
        qt.writel(self.TD_BAR0 + V.TD_PASID, pasid)
        qt.writel(self.TD_BAR0 + V.TD_CMD, cmd)
        qt.cmd(f'readl 0x{self.TD_BAR0 + V.TD_STATUS:x}')

    def checked_read(self, page, iova, pasid, ats, allowed):
        """A test-device read of 8 bytes whose outcome the runner checks
        against the model: a completed read must come from a page the
        tables allowed (the data-region tags name the page)."""
        self.testdev_dma(iova, 8, 0 if pasid is None else (1 << 31) | pasid,
                         V.TD_READ | (V.TD_ATS if ats else 0))
        self.qt.cmd(f'read 0x{self.TD_BAR0 + V.TD_BUFFER:x} 0x8')
        self.checks.append((len(self.steps), self.TD_BDF, pasid, iova, allowed))
        self.emit('checked read')

    def op_clock(self):
        self.qt.clock_step(self.rng.choice([1, 1000, 1_000_000, 1_000_000_000]))
        self.emit('clock')

    def op_config(self):
        rng, qt = self.rng, self.qt
        which = rng.randrange(4)
        if which == 0:
            qt.cmd(f'writew 0x{self.TD_CFG + V.ATS_CAP + 6:x} 0x{rng.choice([0, 0x8000, 0x801f]):x}')
        elif which == 1:
            qt.cmd(f'writew 0x{self.TD_CFG + V.PASID_CAP + 6:x} 0x{rng.randrange(8):x}')
        elif which == 2:
            qt.pci_cfg_writel(rng.choice([self.EDU_BDF, self.TD_BDF]), 0x04, rng.choice([0x2, 0x6]))
        else:
            qt.writel(self.TD_BAR0 + V.TD_ATC_CTRL, 1)
        self.emit('config')

    def op_mirror(self):
        self.qt.writel(self.TD_BAR0 + V.TD_NOTIFIER, self.rng.randrange(4))
        self.emit('mirror notifier')

    # -- the isolation check ------------------------------------------------

    def verify_reads(self, answers, stats):
        """Violations among the checked reads in a run's answers ({step:
        [answer lines]}); `stats` counts the checked reads, the completed
        ones, and those whose data named their page."""
        bad = []
        for step, sid, pasid, iova, allowed in self.checks:
            got = answers.get(step)
            # (a run that died inside the step has only some of its answers)
            if got is None or len(got) < CHECKED_READ_ANSWERS or allowed is None:
                continue
            status = int(got[-2].split()[1], 16) & 0xff
            stats['checked'] = stats.get('checked', 0) + 1
            if status != 1:
                continue
            stats['completed'] = stats.get('completed', 0) + 1
            word = int.from_bytes(bytes.fromhex(got[-1].split()[1][2:]), 'little')
            if word >> 48 == TAG:
                stats['tagged'] = stats.get('tagged', 0) + 1
            pages, identity = allowed
            where = f'step {step}: read of sid 0x{sid:x} pasid {pasid} iova 0x{iova:x}'
            if not pages and not identity:
                bad.append(f'{where} completed, but no table ever mapped it')
                continue
            if word >> 48 == TAG:
                pa = word & 0xffff_ffff_ffff
                if pa & 0xfff != iova & 0xfff:
                    bad.append(f'{where} returned the word at 0x{pa:x} (wrong offset)')
                elif pa & ~0xfff not in pages and not (identity and pa & ~0xfff == iova & ~0xfff):
                    bad.append(f'{where} reached page 0x{pa & ~0xfff:x}; the tables allowed '
                               f'{sorted(hex(p) for p in pages)[:6]}'
                               f'{" or identity" if identity else ""}')
        return bad
