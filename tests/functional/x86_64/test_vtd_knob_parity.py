#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Every property of the 10.2.2 C intel-iommu behaves the same on our
device: the reference build (C device) and ours run the same experiments
side by side and must observe the same.

For each configuration, both builds start (or both refuse to start, with
the same message) under `-accel qtest`; the registers read the same after
reset; and a set of DMA experiments gives the same result on both: QEMU's
`edu` devices (one per experiment, each in its own domain) DMA through page
tables that differ from a plain 4 KiB mapping in one respect (a superpage,
the SNP or TM bit in a leaf, a pass-through or device-TLB context entry, a
table the address width does not allow, a scalable-mode PASID entry of each
type, ...). An experiment's result is whether a device read and a device
write of the page under test reached memory, and the fault recorded for
each (reason, address, direction, FSTS).

Our additions beyond the C device (`x-scalable-mode=modern`, `pasid-bits`,
PASID with device-TLB) are not compared here; the configurations listed are
all those the C device accepts, combined with the knobs that change what
the experiments see.
"""

import hashlib
import subprocess

from qemu.machine.qtest import QEMUQtestMachine

import rviommu_kit
from vtd_qtest import (Qtest, QtestError, Edu, LegacyVtd, ScalableVtd, VTD_BASE, FSTS,
                       GSTS, PTE_R, PTE_W, ADDR_MASK, PGTT_FS, PGTT_SS, PGTT_NESTED,
                       PGTT_PT)

# Properties of the C device (and x86-iommu's) that these configurations
# exercise; each accepted configuration runs every experiment of its mode.
LEGACY_CONFIGS = [
    '', 'aw-bits=39', 'pt=off', 'snoop-control=on', 'dma-drain=off', 'stale-tm=on',
    'device-iotlb=on', 'device-iotlb=on,stale-tm=on', 'caching-mode=on', 'version=3',
    'dma-translation=off', 'intremap=on', 'intremap=on,eim=on', 'intremap=off',
    'x-buggy-eim=on', 'fs1gp=off', 'aw-bits=39,snoop-control=on,pt=off',
]
SCALABLE_CONFIGS = [
    'x-scalable-mode=on', 'x-scalable-mode=on,aw-bits=39', 'x-scalable-mode=on,pt=off',
    'x-scalable-mode=on,snoop-control=on', 'x-scalable-mode=on,x-flts=on',
    'x-scalable-mode=on,x-flts=on,fs1gp=off', 'x-scalable-mode=on,x-pasid-mode=on',
    'x-scalable-mode=on,x-flts=on,x-pasid-mode=on', 'x-scalable-mode=on,caching-mode=on',
    'x-scalable-mode=on,device-iotlb=on', 'x-scalable-mode=on,dma-translation=off',
    'x-scalable-mode=on,x-flts=on,pt=off', 'x-scalable-mode=on,intremap=on,eim=on',
]
# configurations both must refuse (with the C device's message)
REFUSED_CONFIGS = [
    'aw-bits=40', 'aw-bits=57', 'x-flts=on', 'x-pasid-mode=on', 'eim=on,intremap=off',
    'x-scalable-mode=on,dma-drain=off', 'x-scalable-mode=on,x-flts=on,aw-bits=39',
    'x-scalable-mode=on,aw-bits=40',
]

# registers compared after reset: (offset, width)
RESET_REGISTERS = [(0x00, 4), (0x08, 8), (0x10, 8), (0x1c, 4), (0x20, 8), (0x28, 8),
                   (0x34, 4), (0x38, 4), (0x3c, 4), (0x40, 4), (0x44, 4), (0x58, 8),
                   (0x64, 4), (0x68, 8), (0x70, 8), (0x80, 8), (0x88, 8), (0x90, 8),
                   (0x9c, 4), (0xa0, 4), (0xa4, 4), (0xa8, 4), (0xac, 4), (0xb8, 8)]

EDU_BAR0 = 0xd0000000          # 1 MiB each, in q35's 32-bit PCI window
FIRST_SLOT = 4                  # edu devices at 00:04.0, 00:05.0, ...
# per experiment: the page under test and a plain page, both at IOVAs
# inside edu's 28-bit DMA mask, and their RAM pages
IOVA_T, IOVA_G = 0x0a00000, 0x0c01000
RAM_T, RAM_G = 0x2000000, 0x3000000
RAM_STRIDE = 0x40000            # each experiment's RAM pages are apart

SL_SNP, SL_TM, SL_PS = 1 << 11, 1 << 62, 1 << 7


def pattern(*tags):
    return hashlib.sha256(repr(tags).encode()).digest() * 2


class Experiment:
    """Tables for one edu device: `setup(vtd, devfn, did, ram_t, ram_g)`
    writes them and returns (IOVA of the page under test, the RAM address
    it should reach, the RAM address IOVA_G should reach)."""

    def __init__(self, name, setup, legacy):
        self.name, self.setup, self.legacy = name, setup, legacy


def pde_addr(vtd, top, iova, level):
    """Address of the second-stage entry at `level` for `iova` (the
    tables down to it must exist)."""
    table = top
    for lvl in range(vtd.levels, level, -1):
        entry = vtd.read_quads(table + ((iova >> (12 + 9 * (lvl - 1))) & 0x1ff) * 8, 1)[0]
        table = entry & ADDR_MASK
    return table + ((iova >> (12 + 9 * (level - 1))) & 0x1ff) * 8


def ss_tables(vtd, ram_t, ram_g, leaf_bits=0):
    """Second-stage tables mapping IOVA_G -> ram_g and IOVA_T -> ram_t
    (with `leaf_bits` OR'ed into the leaf)."""
    top = vtd.new_address_space()
    vtd.map_4k(top, IOVA_G, ram_g)
    leaf = vtd.map_4k(top, IOVA_T, ram_t)
    if leaf_bits:
        vtd.write_quads(leaf, vtd.read_quads(leaf, 1)[0] | leaf_bits)
    return top


def ss_superpage(vtd, ram_t, ram_g, level):
    """IOVA_T's 2 MiB (level 2) or 1 GiB (level 3) region mapped by one
    superpage at 0, so that IOVA_T reaches RAM at its offset in it."""
    top = ss_tables(vtd, ram_t, ram_g)
    vtd.write_quads(pde_addr(vtd, top, IOVA_T, level), PTE_R | PTE_W | SL_PS)
    return top


def legacy(tt=0, leaf_bits=0, superpage=None, aw=None, phys_bits=0):
    def setup(vtd, devfn, did, ram_t, ram_g):
        if superpage:
            top = ss_superpage(vtd, ram_t, ram_g, superpage)
            size = 1 << (12 + 9 * (superpage - 1))
            ram_t = IOVA_T & (size - 1)
            if IOVA_G & ~(size - 1) == IOVA_T & ~(size - 1):
                ram_g = IOVA_G & (size - 1)      # the superpage covers it too
        else:
            top = ss_tables(vtd, ram_t | phys_bits, ram_g, leaf_bits)
        vtd.set_context(0, devfn, 0 if tt == 2 else top, did=did, tt=tt, aw=aw)
        if tt == 2:
            return IOVA_T, IOVA_T, IOVA_G
        return IOVA_T, ram_t, ram_g
    return setup


def scalable(pgtt, leaf_bits=0, aw=None):
    def setup(vtd, devfn, did, ram_t, ram_g):
        pdir = vtd.new_pasid_dir()
        vtd.set_context(0, devfn, pdir)
        if pgtt == PGTT_PT:
            vtd.set_pasid_entry(pdir, 0, PGTT_PT, did=did)
            return IOVA_T, IOVA_T, IOVA_G
        top = ss_tables(vtd, ram_t, ram_g, leaf_bits)
        fs = vtd.first_stage()
        fs.map_4k(IOVA_G, ram_g)
        fs.map_4k(IOVA_T, ram_t)
        if pgtt == PGTT_NESTED:
            # the first stage's tables and output pages seen through an
            # identity second stage
            for page in (*fs.ram, ram_t, ram_g):
                vtd.map_4k(top, page, page)
        vtd.set_pasid_entry(pdir, 0, pgtt, did=did, slptptr=top, flptptr=fs.root, aw=aw)
        return IOVA_T, ram_t, ram_g
    return setup


EXPERIMENTS = [
    # legacy mode: second-stage tables through context entries
    Experiment('4k', legacy(), True),
    Experiment('4k-leaf-snp', legacy(leaf_bits=SL_SNP), True),
    Experiment('4k-leaf-tm', legacy(leaf_bits=SL_TM), True),
    Experiment('4k-leaf-ignored-bits', legacy(leaf_bits=0x3ff0 << 48), True),
    Experiment('4k-phys-bit-40', legacy(phys_bits=1 << 40), True),
    Experiment('4k-phys-bit-47', legacy(phys_bits=1 << 47), True),
    Experiment('2m-superpage', legacy(superpage=2), True),
    Experiment('1g-superpage', legacy(superpage=3), True),
    Experiment('ctx-pass-through', legacy(tt=2), True),
    Experiment('ctx-device-tlb', legacy(tt=1), True),
    Experiment('ctx-tt-reserved', legacy(tt=3), True),
    Experiment('ctx-aw-5-level', legacy(aw=3), True),
    Experiment('ctx-aw-4-level', legacy(aw=2), True),
    # scalable mode: RID_PASID's PASID entry of each type
    Experiment('sm-second-stage', scalable(PGTT_SS), False),
    Experiment('sm-second-stage-snp', scalable(PGTT_SS, leaf_bits=SL_SNP), False),
    Experiment('sm-second-stage-aw-4-level', scalable(PGTT_SS, aw=2), False),
    Experiment('sm-first-stage', scalable(PGTT_FS), False),
    Experiment('sm-nested', scalable(PGTT_NESTED), False),
    Experiment('sm-pass-through', scalable(PGTT_PT), False),
    Experiment('sm-pgtt-reserved', scalable(5), False),
]


class Side:
    """One build with one configuration: starts QEMU, or keeps its error."""

    def __init__(self, test, binary, props, devices):
        args = ['-L', test.fw, '-machine', 'q35', '-accel', 'qtest', '-m', '256M',
                '-nodefaults', '-display', 'none', '-device',
                'intel-iommu' + (',' + props if props else '')]
        for slot in range(devices):
            args += ['-device', f'edu,addr={FIRST_SLOT + slot:02x}.0']
        self.error = None
        self.vm = None
        vm = QEMUQtestMachine(binary, base_temp_dir=test.workdir, name='knob')
        vm.add_args(*args)
        try:
            vm.launch()
        except Exception:       # the configuration was refused
            self.error = refused_message(binary, args)
            return
        test.vms.append(vm)
        self.vm = vm
        self.qt = Qtest(vm)

    def registers(self):
        return {f'0x{off:02x}': hex(self.qt.readq(VTD_BASE + off) if w == 8
                                    else self.qt.readl(VTD_BASE + off))
                for off, w in RESET_REGISTERS}


def refused_message(binary, args):
    res = subprocess.run([binary, *args, '-qtest', 'null'], capture_output=True, text=True,
                         timeout=30, input='')
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    return (res.returncode != 0, lines[-1].split('intel-iommu: ', 1)[-1] if lines else '')


def fault_of(vtd):
    """The pending fault record (reason, read, address, FSTS bits), then
    cleared; None when none is pending."""
    fsts = vtd.reg(FSTS) & 0x3
    rec = vtd.fault_record(0)
    out = None
    if rec['fault'] or fsts:
        out = dict(reason=hex(rec['reason']), read=rec['read'], address=hex(rec['address']),
                   fsts=hex(fsts), sid=hex(rec['sid']))
    if rec['fault']:
        vtd.clear_fault_record(0)
    vtd.qt.writel(VTD_BASE + FSTS, 0x7f)
    return out


def run_experiments(side, experiments, mode):
    """{experiment: (read result, read fault, write result, write fault)}."""
    qt = side.qt
    vtd = (LegacyVtd if mode == 'legacy' else ScalableVtd)(qt, 0x100000, 0x700000)
    edus, placed = [], []
    for i, exp in enumerate(experiments):
        devfn = (FIRST_SLOT + i) << 3
        edu = Edu(qt, devfn, EDU_BAR0 + i * 0x100000)
        ram_g = RAM_G + i * RAM_STRIDE
        ram_t = RAM_T + i * RAM_STRIDE
        placed.append(exp.setup(vtd, devfn, i + 1, ram_t, ram_g))
        edus.append(edu)
    try:
        vtd.enable()
        te = 'on'
    except QtestError:
        # translation stays off: every request is untranslated
        te = f'refused (GSTS 0x{vtd.reg(GSTS):x})'
        placed = [(iova_t, iova_t, IOVA_G) for iova_t, _, _ in placed]
    results = {'translation-enable': te}
    fault_of(vtd)
    for i, exp in enumerate(experiments):
        edu = edus[i]
        iova_t, ram_t, ram_g = placed[i]
        if ram_t == ram_g:
            raise QtestError(f'{exp.name}: both pages reach the same RAM')
        # device read of the page under test, written back to the plain page
        want = pattern(exp.name, 'read')
        qt.memwrite(ram_t, want)
        qt.memwrite(ram_g, bytes(len(want)))
        edu.dma_from_memory(iova_t, len(want))
        read_fault = fault_of(vtd)
        edu.dma_to_memory(IOVA_G, len(want))
        read_ok = qt.memread(ram_g, len(want)) == want
        fault_of(vtd)
        # device write to the page under test of what it read from the plain page
        want = pattern(exp.name, 'write')
        qt.memwrite(ram_g, want)
        qt.memwrite(ram_t, bytes(len(want)))
        edu.dma_from_memory(IOVA_G, len(want))
        fault_of(vtd)
        edu.dma_to_memory(iova_t, len(want))
        write_fault = fault_of(vtd)
        write_ok = qt.memread(ram_t, len(want)) == want
        results[exp.name] = dict(read=read_ok, read_fault=read_fault, write=write_ok,
                                 write_fault=write_fault)
    return results


class VtdKnobParity(rviommu_kit.ReferenceTest):

    def compare(self, props, mode):
        experiments = [e for e in EXPERIMENTS if e.legacy == (mode == 'legacy')]
        sides = {name: Side(self, binary, props, len(experiments))
                 for name, binary in (('C', self.ref_bin), ('Rust', self.qemu_bin))}
        c, rs = sides['C'], sides['Rust']
        self.assertEqual(c.error, None, f'the C device refused {props!r}')
        self.assertEqual(rs.error, None, f'our device refused {props!r}')
        self.assertEqual(rs.registers(), c.registers(), f'registers after reset, {props!r}')
        got = {name: run_experiments(side, experiments, mode) for name, side in sides.items()}
        for name in got['C']:
            self.log.info('%-26s %-32s C %s', props, name, got['C'][name])
            if got['Rust'][name] != got['C'][name]:
                self.log.info('%-26s %-32s Rust %s', props, name, got['Rust'][name])
        diff = {name: {'C': got['C'][name], 'Rust': got['Rust'][name]}
                for name in got['C'] if got['C'][name] != got['Rust'][name]}
        for side in sides.values():
            side.vm.shutdown()
        return diff

    def test_legacy_mode_configurations(self):
        diffs = {props: self.compare(props, 'legacy') for props in LEGACY_CONFIGS}
        self.assertEqual({p: d for p, d in diffs.items() if d}, {})

    def test_scalable_mode_configurations(self):
        diffs = {props: self.compare(props, 'scalable') for props in SCALABLE_CONFIGS}
        self.assertEqual({p: d for p, d in diffs.items() if d}, {})

    def test_refused_configurations(self):
        for props in REFUSED_CONFIGS:
            with self.subTest(props=props):
                args = ['-L', self.fw, '-machine', 'q35', '-accel', 'qtest', '-nodefaults',
                        '-display', 'none', '-device', 'intel-iommu,' + props]
                c = refused_message(self.ref_bin, args)
                rs = refused_message(self.qemu_bin, args)
                self.log.info('%s: C %s, Rust %s', props, c, rs)
                self.assertTrue(c[0], f'the C device accepted {props}')
                self.assertEqual(rs, c)


if __name__ == '__main__':
    rviommu_kit.ReferenceTest.main()
