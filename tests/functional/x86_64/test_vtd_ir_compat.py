#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Interrupt remapping as guests written against QEMU's C intel-iommu
expect it, side by side with the C device (reference build) under qtest.

No guest code runs: the test programs the interrupt remapping table, the
I/O APIC and QEMU's `edu` device (its INTx line and its MSI) as a guest
would, and reads which vectors reached the local APIC (its IRR, from
`info lapic`) and the fault recorded.

* The case a guest program hit: an edge-triggered I/O APIC pin whose IRTE
  validates SVT=01b against the PCI function that raised the INTx line
  (not the I/O APIC's id), with FPD, then an MSI of that function through
  an IRTE with the same validation. By default both arrive on both builds;
  `x-strict-ir=on` blocks the pin's request (silently with FPD, with fault
  26h for the I/O APIC's id 0xff00 without it) and still delivers the MSI.
* A differential test over random interrupt remapping programming (same
  seeds on both builds): random IRTEs (reserved bits, posted format,
  every SVT/SQ, xAPIC destination bits, FPD), table sizes and bases,
  EIME and CFI, and requests of every kind the platform makes: PCI MSIs
  (remappable and compatibility format, subhandles), I/O APIC messages
  and plain DMA writes into the interrupt window (data bits 31:16 too).
  Which vectors arrive and which faults are recorded must be the same,
  except the documented difference: a fault of a request without a
  requester id records the id the platform implies (0xff00 for the I/O
  APIC, the function for a DMA write), where the C device records 0xffff.
"""

import os
import random
import struct

from qemu_test import QemuSystemTest

import rviommu_kit
from vtd_qtest import lapic_irr, Qtest, Edu, VTD_BASE, GCMD, GSTS, FSTS, FECTL, FEDATA, FEADDR

EDU_BDF = 0x18                # 00:03.0
EDU_BAR0 = 0xfe000000
EDU_RAISE, EDU_ACK = 0x60, 0x64
IOAPIC = 0xfec00000
IOAPIC_SID = 0xff00
IRTA = 0xb8
GCMD_SIRTP, GCMD_IRE, GCMD_CFI = 1 << 24, 1 << 25, 1 << 23
IRT = 0x300000                # the interrupt remapping table in RAM
DATA = 0x7000000              # a dword the DMA-write requests copy from
RAM_TOP = 128 << 20
SEEDS = int(os.environ.get('RVIOMMU_IR_SEEDS', '6'))
ROUNDS = 80


def irte(vector, sid=0, svt=0, sq=0, fpd=False, dest=0, present=True):
    """A remapped-format IRTE (xAPIC destination `dest` in bits 47:40)."""
    lo = (1 if present else 0) | (2 if fpd else 0) | (vector << 16) | (dest << 40)
    hi = sid | (sq << 16) | (svt << 18)
    return lo, hi


def remappable_address(index, shv=False):
    return (0xfee00000 | ((index & 0x7fff) << 5) | ((index >> 15) << 2) | (1 << 4)
            | (8 if shv else 0))


class Side:
    """One build: q35 under qtest with intel-iommu (interrupt remapping on)
    and an edu device at 00:03.0."""

    def __init__(self, test, binary, props):
        self.vm = test.q35_qtest(binary, 'ir', '128M',
                                 'intel-iommu,intremap=on' + (',' + props if props else ''),
                                 f'edu,addr={EDU_BDF >> 3:02x}.0')
        self.qt = Qtest(self.vm)
        self.edu = Edu(self.qt, EDU_BDF, EDU_BAR0)
        self.frcd = ((self.qt.readq(VTD_BASE + 0x08) >> 24) & 0x3ff) * 16
        self.msi_cap = self.qt.pci_cfg_readl(EDU_BDF, 0x34) & 0xfc
        if self.qt.pci_cfg_readl(EDU_BDF, self.msi_cap) & 0xff != 0x05:
            raise AssertionError('edu has no MSI capability where expected')
        self.pin = self._intx_pin()

    # -- observation -------------------------------------------------------

    def irr(self):
        """The vectors pending in the local APIC's IRR."""
        return lapic_irr(self.vm)

    def fault(self):
        """(FSTS PFO|PPF, reason, sid, index) of the pending fault, or None;
        the record and FSTS are cleared."""
        qt = self.qt
        fsts = qt.readl(VTD_BASE + FSTS) & 3
        lo, hi = struct.unpack('<QQ', qt.memread(VTD_BASE + self.frcd, 16))
        out = None
        if fsts or hi >> 63:
            out = (fsts, hex((hi >> 32) & 0xff), hex(hi & 0xffff), hex(lo >> 48))
        if hi >> 63:
            qt.writel(VTD_BASE + self.frcd + 12, 1 << 31)
        qt.writel(VTD_BASE + FSTS, 0x7f)
        return out

    # -- programming -------------------------------------------------------

    def gcmd(self, set_bits=0, clear_bits=0):
        persistent = self.qt.readl(VTD_BASE + GSTS) & 0x96ffffff
        self.qt.writel(VTD_BASE + GCMD, (persistent | set_bits) & ~clear_bits)

    def table(self, base, size_bits, eime=False, cfi=False):
        """Latch an interrupt remapping table and enable remapping."""
        self.qt.writeq(VTD_BASE + IRTA, base | (1 << 11 if eime else 0) | size_bits)
        self.gcmd(GCMD_SIRTP)
        self.gcmd(GCMD_IRE)
        self.gcmd(GCMD_CFI if cfi else 0, 0 if cfi else GCMD_CFI)

    def set_irte(self, index, lo, hi, base=IRT):
        self.qt.memwrite(base + 16 * index, struct.pack('<QQ', lo, hi))

    def rte(self, pin, lo, hi):
        """I/O APIC redirection entry of `pin` (dwords)."""
        for reg, val in ((0x10 + 2 * pin, lo), (0x11 + 2 * pin, hi)):
            self.qt.writel(IOAPIC, reg)
            self.qt.writel(IOAPIC + 0x10, val)

    def rte_remappable(self, pin, index, vector):
        self.rte(pin, vector | ((index >> 15) << 11), ((index & 0x7fff) << 17) | (1 << 16))

    def _intx_pin(self):
        """The I/O APIC pin edu's INTA# reaches (remapping still off)."""
        for pin in range(16, 24):
            self.rte(pin, 0x30 + pin, 0)
        self.intx()
        hits = [v - 0x30 for v in self.irr() if 0x40 <= v < 0x48]
        if len(hits) != 1:
            raise AssertionError(f'edu INTx reached I/O APIC pins {hits}')
        for pin in range(16, 24):
            self.rte(pin, 1 << 16, 0)       # masked
        return hits[0]

    def intx(self):
        """edu raises and drops its INTx line (an edge on the pin)."""
        qt = self.qt
        qt.pci_cfg_writel(EDU_BDF, self.msi_cap, qt.pci_cfg_readl(EDU_BDF, self.msi_cap)
                          & ~(1 << 16))
        qt.writel(EDU_BAR0 + EDU_RAISE, 1)
        qt.writel(EDU_BAR0 + EDU_ACK, 1)

    def msi(self, address, data):
        """edu sends one MSI (address, 16-bit data) with its requester id."""
        qt, cap = self.qt, self.msi_cap
        qt.pci_cfg_writel(EDU_BDF, cap + 4, address & 0xffffffff)
        qt.pci_cfg_writel(EDU_BDF, cap + 8, address >> 32)
        qt.pci_cfg_writel(EDU_BDF, cap + 12, data & 0xffff)
        qt.pci_cfg_writel(EDU_BDF, cap, qt.pci_cfg_readl(EDU_BDF, cap) | (1 << 16))
        qt.writel(EDU_BAR0 + EDU_RAISE, 1)
        qt.writel(EDU_BAR0 + EDU_ACK, 1)

    def dma_write(self, address, data):
        """edu writes the dword `data` to `address` by DMA (no requester
        id: a plain memory write)."""
        self.qt.memwrite(DATA, struct.pack('<I', data))
        self.edu.dma_from_memory(DATA, 4)
        self.edu.dma_to_memory(address, 4)


class VtdIrCompat(rviommu_kit.ReferenceTest):

    def sides(self, props=''):
        return {'C': Side(self, self.ref_bin, props), 'Rust': Side(self, self.qemu_bin, props)}

    def pin_then_msi(self, side, fpd, eime=False):
        """The guest program of the report: returns (vectors, faults)."""
        side.table(IRT, 7, eime=eime)
        side.set_irte(1, *irte(0x61, sid=EDU_BDF, svt=1, fpd=fpd))
        side.set_irte(2, *irte(0x62, sid=EDU_BDF, svt=1, fpd=fpd))
        side.rte_remappable(side.pin, 1, 0x61)
        side.intx()
        pin = (side.irr() & {0x61, 0x62}, side.fault())
        side.msi(remappable_address(2), 0)
        msi = (side.irr() & {0x62}, side.fault())
        return pin, msi

    def test_ioapic_pin_irte_naming_the_function(self):
        # every mode, xAPIC and x2APIC (the C device has no modern mode)
        for props in ('', 'eim=on', 'x-scalable-mode=on', 'x-scalable-mode=modern,eim=on'):
            for fpd in (True, False):
                sides = self.sides(props) if 'modern' not in props else \
                    {'Rust': Side(self, self.qemu_bin, props)}
                for name, side in sides.items():
                    pin, msi = self.pin_then_msi(side, fpd, eime='eim=on' in props)
                    what = f'{name} {props or "legacy"}, FPD={fpd}'
                    self.assertEqual(pin, ({0x61}, None), f'{what}: the pin')
                    self.assertEqual(msi, ({0x62}, None), f'{what}: the MSI')
                    side.vm.shutdown()
        # The architecture's rules: the pin's request carries the I/O APIC's
        # id, which the IRTE does not name.
        strict = Side(self, self.qemu_bin, 'x-strict-ir=on')
        pin, msi = self.pin_then_msi(strict, fpd=True)
        self.assertEqual(pin, (set(), None), 'strict, FPD: blocked silently')
        self.assertEqual(msi, ({0x62}, None), 'strict: the MSI')
        strict = Side(self, self.qemu_bin, 'x-strict-ir=on')
        pin, msi = self.pin_then_msi(strict, fpd=False)
        self.assertEqual(pin, (set(), (2, '0x26', hex(IOAPIC_SID), '0x1')),
                         'strict: fault 26h for the I/O APIC, index 1')
        self.assertEqual(msi, ({0x62}, None), 'strict: the MSI')

    def test_compatibility_format_needs_cfi_only_when_strict(self):
        """Linux clears CFI; a compatibility-format message still arrives
        by default, as on the C device."""
        for props, want in (('', {0x71, 0x72}), ('x-strict-ir=on', set())):
            sides = self.sides() if not props else {'strict': Side(self, self.qemu_bin, props)}
            for name, side in sides.items():
                side.table(IRT, 7, cfi=False)
                side.rte(side.pin, 0x71, 0)
                side.intx()
                side.msi(0xfee00000, 0x72)
                got = side.irr() & {0x71, 0x72}
                fault = side.fault()
                self.assertEqual(got, want, f'{name}: compatibility format, CFI clear')
                self.assertEqual(fault is None, not props, f'{name}: {fault}')
                if props:
                    self.assertEqual(fault[1:3], ('0x25', hex(IOAPIC_SID)))

    # -- differential over random programming ------------------------------

    def random_round(self, rng, vector):
        """One random configuration and request, as a list of steps to
        apply to both sides, and the implied requester id if the request
        carries none."""
        base = IRT if rng.random() < 0.9 else rng.choice([RAM_TOP, 0xfed00000, IRT + 0x1000])
        size_bits = rng.choice([0, 1, 3, 7])
        eime, cfi = rng.random() < 0.3, rng.random() < 0.5
        index = rng.randrange(1 << (size_bits + 1)) if rng.random() < 0.85 \
            else rng.choice([1 << (size_bits + 1), 0xffff, 0x8000 + rng.randrange(4)])
        lo, hi = irte(vector, fpd=rng.random() < 0.3, present=rng.random() < 0.9)
        kind = rng.choice(['msi', 'msi', 'ioapic', 'dma'])
        svt = rng.choice([0, 0, 1, 1, 2, 3])
        sid = rng.choice([EDU_BDF, EDU_BDF ^ rng.choice([1, 2, 4, 8]), IOAPIC_SID,
                          rng.randrange(1 << 16)])
        if svt == 2:
            sid = rng.choice([0x0000, 0x0100, 0xff00, 0xffff, 0x0201])
        hi |= sid | (rng.randrange(4) << 16) | (svt << 18)
        for bit, p in ((15, 0.1), (12, 0.05), (24, 0.05), (33, 0.08), (50, 0.08),
                       (2, 0.05), (3, 0.2), (4, 0.3), (5, 0.1), (9, 0.2)):
            if rng.random() < p:
                lo |= 1 << bit       # IM, reserved, xAPIC dest bits, DM, RH, TM, DLM, avail
        if rng.random() < 0.05:
            hi |= 1 << (rng.randrange(84, 128) - 64)
        compat = rng.random() < 0.2
        shv = rng.random() < 0.3
        sub = rng.randrange(4) if shv else 0
        handle = (index - sub) & 0xffff if rng.random() < 0.95 else rng.randrange(1 << 16)
        steps = [('table', base, size_bits, eime, cfi)]
        if base == IRT:
            steps.append(('irte', index & 0xffff, lo, hi))
        implied = None
        data = sub if shv else rng.randrange(1 << 16)
        address = 0xfee00000 if compat else remappable_address(handle, shv) | rng.randrange(4)
        if compat:
            data = vector
        if kind == 'msi':
            steps.append(('msi', address, data))
        elif kind == 'ioapic':
            implied = IOAPIC_SID
            if compat:
                steps.append(('rte', vector, 0))
            else:
                steps.append(('rte', vector | ((handle >> 15) << 11),
                              ((handle & 0x7fff) << 17) | (1 << 16)))
            steps.append(('intx',))
        else:
            implied = EDU_BDF
            steps.append(('dma', address, data | (rng.choice([0, 0, 1, 0xffff]) << 16)))
        return steps, implied

    @staticmethod
    def apply(side, steps):
        for step in steps:
            op, args = step[0], step[1:]
            if op == 'table':
                side.table(*args)
            elif op == 'irte':
                side.set_irte(*args)
            elif op == 'rte':
                side.rte(side.pin, *args)
            elif op == 'intx':
                side.intx()
            elif op == 'msi':
                side.msi(*args)
            elif op == 'dma':
                side.dma_write(*args)

    def test_random_programming_same_outcomes(self):
        """Seeded random IR programming: the same vectors arrive and the same
        faults are recorded on both builds (up to the documented fault
        source id of requests without a requester id)."""
        differences, documented, delivered, faulted = [], 0, 0, 0
        for seed in range(SEEDS):
            rng = random.Random(seed)
            props = 'eim=on' if seed % 2 else ''
            sides = self.sides(props)
            seen = {name: side.irr() for name, side in sides.items()}
            for rnd in range(ROUNDS):
                vector = 0x50 + rnd          # a vector no earlier round used
                steps, implied = self.random_round(rng, vector)
                got = {}
                for name, side in sides.items():
                    # a recorded fault raises the fault event: vector 0xa0 + round
                    side.qt.writel(VTD_BASE + FEADDR, 0xfee00000)
                    side.qt.writel(VTD_BASE + FEDATA, 0xa0 + rnd)
                    side.qt.writel(VTD_BASE + FECTL, 0)
                    self.apply(side, steps)
                    irr = side.irr()
                    got[name] = (sorted(irr - seen[name]), side.fault())
                    seen[name] = irr
                c, rs = got['C'], got['Rust']
                if c != rs and implied is not None and c[1] and rs[1] \
                        and c[1][3] == rs[1][3] and c[1][1] == rs[1][1] \
                        and c[1][2] == '0xffff' and rs[1][2] == hex(implied) and c[0] == rs[0]:
                    documented += 1
                elif c != rs:
                    differences.append(f'seed {seed} round {rnd} {props or "xapic"}: {steps} '
                                       f'-> C {c}, Rust {rs}')
                delivered += vector in c[0]
                faulted += bool(c[1])
            for side in sides.values():
                side.vm.shutdown()
        self.log.info('%d rounds: %d delivered, %d faulted on the C device; %d with the '
                      'documented source-id difference', SEEDS * ROUNDS, delivered, faulted,
                      documented)
        self.assertEqual(differences, [], '\n'.join(differences))
        # The random programming must exercise both outcomes.
        self.assertGreater(delivered, SEEDS * ROUNDS // 4)
        self.assertGreater(faulted, SEEDS * ROUNDS // 10)


if __name__ == '__main__':
    QemuSystemTest.main()
