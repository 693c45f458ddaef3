#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The isolation models (VT-d and SMMUv3) and the checks they feed can
fail: tables written with the functional tests' encoders, answers made up."""

import struct
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import smmu_fuzz as SF  # pylint: disable=wrong-import-position
import vtd_fuzz as F  # pylint: disable=wrong-import-position
import vtd_model as M  # pylint: disable=wrong-import-position

V = F.V
SID = F.TD_DEVFN
IOVA = F.POOL[0]


def answers(status, word):
    """A checked read's answers: four register writes, the status, the data."""
    return ['OK'] * 4 + [f'OK 0x{status:x}', 'OK 0x' + struct.pack('<Q', word).hex()]


class Legacy(unittest.TestCase):

    def setUp(self):
        self.qt = F.Recorder()
        self.vtd = V.LegacyVtd(self.qt, F.TABLES, F.TABLES_END)
        self.top = self.vtd.new_address_space()
        self.leaf = self.vtd.map_4k(self.top, IOVA, F.DATA + 0x3000)
        self.vtd.set_context(0, SID, self.top, did=7)
        self.model = M.Model(self.qt.ram, F.RAM, [SID], [IOVA])
        self.model.latch_root(self.vtd.root)
        self.model.update()

    def check(self, status, word):
        prog = F.Program.__new__(F.Program)
        prog.irq_checks = []
        prog.checks = [(0, SID, None, IOVA + 0x10, self.model.allowed(SID, None, IOVA))]
        return prog.verify({0: answers(status, word)})

    def test_mapped_page_passes(self):
        self.assertEqual(self.model.allowed(SID, None, IOVA), ({F.DATA + 0x3000}, False))
        self.assertEqual(self.check(1, F.tag(F.DATA + 0x3010)), [])

    def test_other_page_is_a_violation(self):
        bad = self.check(1, F.tag(F.DATA + 0x5010))
        self.assertEqual(len(bad), 1)
        self.assertIn('reached page 0x805000', bad[0])

    def test_wrong_offset_is_a_violation(self):
        self.assertIn('wrong offset', self.check(1, F.tag(F.DATA + 0x3018))[0])

    def test_faulted_read_is_not_checked(self):
        self.assertEqual(self.check(2, 0), [])

    def test_read_cut_short_is_not_checked(self):
        # QEMU died inside the step: only some of its answers came
        prog = F.Program.__new__(F.Program)
        prog.irq_checks = []
        prog.checks = [(0, SID, None, IOVA, self.model.allowed(SID, None, IOVA))]
        self.assertEqual(prog.verify({0: ['OK', 'OK']}), [])

    def test_completion_without_any_mapping_is_a_violation(self):
        self.vtd.write_quads(self.leaf, 0)
        self.model = M.Model(self.qt.ram, F.RAM, [SID], [IOVA])
        self.model.latch_root(self.vtd.root)
        self.model.update()
        self.assertIn('no table ever mapped it', self.check(1, 0)[0])

    def test_stale_mapping_stays_allowed(self):
        # remapped without invalidation: a cached translation may still be used
        self.vtd.write_quads(self.leaf, (F.DATA + 0x4000) | 3)
        self.model.update()
        pages, identity = self.model.allowed(SID, None, IOVA)
        self.assertEqual(pages, {F.DATA + 0x3000, F.DATA + 0x4000})
        self.assertFalse(identity)

    def test_translation_off_allows_identity(self):
        self.model.translation_off()
        self.assertEqual(self.model.allowed(SID, None, IOVA)[1], True)

    def test_table_in_device_memory_is_unknown(self):
        self.vtd.write_quads(self.vtd.root, V.VTD_BASE | 1, 0)
        self.model.update()
        self.assertIsNone(self.model.allowed(SID, None, IOVA))

    def test_table_beyond_ram_maps_nothing(self):
        self.vtd.write_quads(self.vtd.root, (1 << 40) | 1, 0)
        model = M.Model(self.qt.ram, F.RAM, [SID], [IOVA])
        model.latch_root(self.vtd.root)
        model.update()
        self.assertEqual(model.allowed(SID, None, IOVA), (set(), False))


class Interrupts(unittest.TestCase):

    def program(self):
        prog = F.Program.__new__(F.Program)
        prog.qt = F.Recorder()
        prog.model = M.Model(prog.qt.ram, F.RAM, [SID], [IOVA])
        prog.checks, prog.irq_checks, prog.steps = [], [], []
        prog.irq_allowed, prog.irte_vectors, prog.irq_unknown = {0}, {}, False
        prog.regs = {}
        for i, b in enumerate((F.IRT | 7).to_bytes(8, 'little')):
            prog.regs[0xb8 + i] = b
        prog.irtas = {prog.irta_version()}
        prog.write_irte(5, (1 | (0x61 << 16), 0))
        return prog

    @staticmethod
    def lapic(*vectors):
        return [f'IRR {" ".join(str(v) for v in vectors)}\nISR (none)']

    def test_remapped_vector_allowed_others_not(self):
        prog = self.program()
        prog.irq_check()
        prog.allow_msi(0xfee00000 | (5 << 5) | (1 << 4), 0)     # handle 5
        prog.irq_check()
        ok = prog.verify_irqs({0: self.lapic(), 1: self.lapic(0x61)})
        self.assertEqual(ok, [])
        bad = prog.verify_irqs({0: self.lapic(), 1: self.lapic(0x61, 0x77)})
        self.assertEqual(len(bad), 1)
        self.assertIn('[119]', bad[0])

    def test_compatibility_format_vector_allowed(self):
        prog = self.program()
        prog.irq_check()
        prog.allow_msi(0xfee00000, 0x4077)
        prog.irq_check()
        self.assertEqual(prog.verify_irqs({0: self.lapic(), 1: self.lapic(0x77)}), [])

    def test_table_in_device_memory_is_not_checked(self):
        prog = self.program()
        prog.irtas = {(V.VTD_BASE, 256)}
        prog.irq_check()
        prog.allow_msi(0xfee00000 | (5 << 5) | (1 << 4), 0)
        prog.irq_check()
        self.assertEqual(prog.verify_irqs({0: self.lapic(), 1: self.lapic(0x99)}), [])


class Smmu(unittest.TestCase):

    def setUp(self):
        self.qt = SF.SmmuRecorder()
        S = SF.S
        self.smmu = S.Smmu(self.qt, S.SMMU_BASE, SF.TABLES, SF.TABLES_END)
        self.smmu.enable()
        iova = SF.POOL[0]
        s1, s2 = S.PageTable(self.smmu, 1), S.PageTable(self.smmu, 2)
        s1.map(iova, SF.DATA + 0x3000)
        s2.map(iova, SF.DATA + 0x5000)
        self.smmu.ste(SF.TD_BDF, S.STE_S1, cd=self.smmu.cd(s1.root, asid=3))
        self.smmu.ste(SF.EDU_BDF, S.STE_S2, s2ttb=s2.root, vmid=4)
        self.model = SF.smmu_model.Model(self.qt.ram, S.RAM_BASE, SF.RAM_SIZE,
                                         [SF.TD_BDF, SF.EDU_BDF], [iova])
        self.model.strtab(self.smmu.strtab, self.smmu.strtab_log2)
        self.model.update()

    def test_stage1_and_stage2(self):
        # (the union over start levels may add the tables' own pages)
        pages, identity = self.model.allowed(SF.TD_BDF, None, SF.POOL[0])
        self.assertIn(SF.DATA + 0x3000, pages)
        self.assertNotIn(SF.DATA + 0x5000, pages)
        self.assertFalse(identity)
        pages, identity = self.model.allowed(SF.EDU_BDF, None, SF.POOL[0])
        self.assertIn(SF.DATA + 0x5000, pages)
        self.assertNotIn(SF.DATA + 0x3000, pages)

    def test_other_page_is_a_violation(self):
        prog = SF.Program.__new__(SF.Program)
        prog.irq_checks = []
        prog.checks = [(0, SF.TD_BDF, None, SF.POOL[0] + 8,
                        self.model.allowed(SF.TD_BDF, None, SF.POOL[0]))]
        self.assertEqual(prog.verify({0: answers(1, SF.tag(SF.DATA + 0x3008))}), [])
        self.assertIn('reached page', prog.verify({0: answers(1, SF.tag(SF.DATA + 0x5008))})[0])

    def test_disabled_smmu_allows_identity(self):
        self.model.smmu_off()
        self.assertTrue(self.model.allowed(SF.TD_BDF, None, SF.POOL[0])[1])

    def test_cached_cd_is_walked_after_it_changed_in_ram(self):
        # The CD's TTB0 is overwritten, then the table it pointed to
        # changes: a device that cached the CD walks the new entry.
        S = SF.S
        s1 = S.PageTable(self.smmu, 1)
        s1.map(SF.POOL[0], SF.DATA + 0x7000)
        cd = self.smmu.cd(s1.root, asid=5)
        self.smmu.ste(SF.TD_BDF, S.STE_S1, cd=cd)
        self.model.update()
        self.smmu.put(cd + 8, S.RAM_BASE + SF.RAM_SIZE)   # TTB0 beyond RAM: maps nothing
        self.model.update()
        pages, _ = self.model.allowed(SF.TD_BDF, None, SF.POOL[0])
        self.assertIn(SF.DATA + 0x7000, pages)
        s1.map(SF.POOL[0], SF.DATA + 0x9000)      # the same L3 table, a new leaf
        self.model.update()
        pages, _ = self.model.allowed(SF.TD_BDF, None, SF.POOL[0])
        self.assertIn(SF.DATA + 0x9000, pages)

    def msi_prog(self, doorbell_mapped):
        """edu's stream (stage 2) with or without the doorbell page mapped to
        itself; one MSI (id 0x61) and one check."""
        if doorbell_mapped:
            s2 = SF.S.PageTable(self.smmu, 2)
            s2.map(SF.MSI_PAGE, SF.MSI_PAGE)
            self.smmu.ste(SF.EDU_BDF, SF.S.STE_S2, s2ttb=s2.root, vmid=4)
        prog = SF.Program.__new__(SF.Program)
        prog.qt, prog.steps, prog.checks, prog.irq_checks = self.qt, [], [], []
        prog.model = SF.smmu_model.Model(self.qt.ram, SF.S.RAM_BASE, SF.RAM_SIZE,
                                         [SF.TD_BDF, SF.EDU_BDF], [SF.POOL[0], SF.MSI_PAGE])
        prog.model.strtab(self.smmu.strtab, self.smmu.strtab_log2)
        prog.model.update()
        prog.msi_data, prog.irq_allowed, prog.irq_unknown = 0x61, set(), False
        prog.allow_msi()
        prog.irq_check()
        return prog

    @staticmethod
    def gic(*ids):
        """Answers to the ISPENDR reads (words 2-4) with `ids` pending, and to
        the ICPENDR writes."""
        words = [0, 0, 0]
        for i in ids:
            words[i // 32 - 2] |= 1 << (i % 32)
        return [f'OK 0x{w:08x}' for w in words] + ['OK'] * 3

    def test_msi_through_a_mapped_doorbell_passes(self):
        prog = self.msi_prog(True)
        self.assertEqual(prog.verify({0: self.gic(0x61)}), [])
        self.assertEqual(prog.verify({0: self.gic(0x61, 107)}), [], 'the SMMU\'s own line')

    def test_msi_without_a_doorbell_mapping_is_a_violation(self):
        prog = self.msi_prog(False)
        self.assertEqual(prog.verify({0: self.gic()}), [])
        self.assertIn('interrupt ids [97] pending', prog.verify({0: self.gic(0x61)})[0])

    def test_other_id_is_a_violation(self):
        prog = self.msi_prog(True)
        self.assertIn('[98]', prog.verify({0: self.gic(0x62)})[0])


class Scalable(unittest.TestCase):

    def test_first_stage_and_nested(self):
        qt = F.Recorder()
        vtd = V.ScalableVtd(qt, F.TABLES, F.TABLES_END)
        pdir = vtd.new_pasid_dir()
        vtd.set_context(0, SID, pdir, paside=True)
        ss = vtd.new_address_space()
        fs = vtd.first_stage()
        fs.map_4k(IOVA, F.DATA + 0x1000)
        vtd.set_pasid_entry(pdir, 0, V.PGTT_FS, did=3, flptptr=fs.root)
        nested_ss = vtd.new_address_space()
        nfs = vtd.first_stage(nested_ss, iova_base=0x4000000)
        nfs.map_4k(IOVA, 0x7000000)
        vtd.map_4k(nested_ss, 0x7000000, F.DATA + 0x2000)
        vtd.set_pasid_entry(pdir, 5, V.PGTT_NESTED, did=4, slptptr=nested_ss, flptptr=nfs.root)
        vtd.set_pasid_entry(pdir, 9, V.PGTT_SS, did=5, slptptr=ss)
        model = M.Model(qt.ram, F.RAM, [SID], [IOVA])
        model.pasids = {5, 9}
        model.latch_root(vtd.root | (1 << 10))
        model.update()
        self.assertEqual(model.allowed(SID, None, IOVA), ({F.DATA + 0x1000}, False))
        self.assertEqual(model.allowed(SID, 5, IOVA), ({F.DATA + 0x2000}, False))
        self.assertEqual(model.allowed(SID, 9, IOVA), (set(), False))


if __name__ == '__main__':
    unittest.main()
