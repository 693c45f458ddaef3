#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""intel-iommu in scalable mode with our PCIe DMA test device
(rviommu-testdev), over qtest: the PASID-granular translation types,
every cache and invalidation granularity, and the scalable-mode fault
reasons in the fault recording registers.

The device issues untranslated requests without PASID (translated through
the context entry's RID_PASID) and, for a PASID, ATS translation requests
followed by accesses to the translated address. Before each IOMMU-side
check the device's own translation cache (device-TLB) is flushed, so the
IOMMU answers; the device-TLB tests keep it instead.

The test plays the guest driver; no guest code runs (`-accel qtest`).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qemu_test import QemuSystemTest  # noqa: E402

import rviommu_kit  # noqa: E402

from vtd_qtest import (TD_DEVFN, TD_BAR0, Qtest, ScalableVtd, TestDev, FSTS, FSTS_PPF,  # noqa: E402
                       PTE_R, PGTT_FS, PGTT_SS, PGTT_NESTED, PGTT_PT, FS_A, FS_D,
                       FS_PS, TD_READ, TD_WRITE, TD_COMPARE, TD_XLATE, TD_ATC_HITS,
                       TD_ATC_INVALS)

SID = TD_DEVFN            # bus 0
IOVA = 0x300000
PHYS, PHYS2, PHYS3 = 0x600000, 0x700000, 0x780000
PASID = 5                 # the non-zero PASID used with ATS
DID, DID2 = 3, 4
FS_TABLE_IOVA = 0x4000000  # nested: first-stage tables live at these IOVAs
GPA_OUT, GPA_OUT2 = 0x500000, 0x510000  # nested: first-stage output addresses
OLD, NEW, THIRD = b'\x11' * 16, b'\x22' * 16, b'\x33' * 16
ECAP_SMTS, ECAP_PASID = 1 << 43, 1 << 40

# Scalable-mode fault reasons (VT-d spec 4.x, "Fault Reason Encodings";
# the same codes as Linux's dma_remap_sm_fault_reasons)
FR_ROOT_NOT_PRESENT = 0x39       # SRT.2
FR_CTX_NOT_PRESENT = 0x41        # SCT.2
FR_CTX_RESERVED = 0x42           # SCT.3
FR_CTX_DTE_CLEAR = 0x44          # SCT.5
FR_CTX_PASID_DISABLED = 0x45     # SCT.6
FR_PDIR_NOT_PRESENT = 0x51       # SPD.2
FR_PDIR_RESERVED = 0x52          # SPD.3
FR_PE_NOT_PRESENT = 0x59         # SPT.2
FR_PE_RESERVED = 0x5a            # SPT.3
FR_PE_INVALID = 0x5b             # SPT.4
FR_PE_SRE_CLEAR = 0x5d           # SPT.6
FR_FS_NOT_PRESENT = 0x71         # SFS.2
FR_FS_RESERVED = 0x72            # SFS.3
FR_SS_NOT_PRESENT = 0x79         # SSS.2
FR_NON_CANONICAL = 0x80          # SGN.1
FR_FS_USER = 0x81                # SGN.2
FR_BEYOND_AGAW = 0x83            # SGN.4.1
FR_WRITE = 0x85                  # SGN.5


class VtdSmTestDev(rviommu_kit.QtestVmTest):

    def launch(self, mode='modern', *props):
        # The architecture's checks (x-strict): these tests follow the
        # specification's fault conditions; the C device's more lenient
        # rules, our default, are compared by test_vtd_dma_differential.py.
        opts = (f'x-scalable-mode={mode}', 'device-iotlb=on', 'x-strict=on') + props
        vm = self.qtest_vm('sm-testdev', 'intel-iommu,' + ','.join(opts),
                           'rviommu-testdev,addr=05.0')
        qt = Qtest(vm)
        vtd = self.vtd = ScalableVtd(qt)
        self.assertTrue(vtd.ecap & ECAP_SMTS, f'ECAP.SMTS (ECAP 0x{vtd.ecap:x})')
        self._pattern = 0
        return qt, TestDev(qt, TD_DEVFN, TD_BAR0), vtd

    def attach(self, vtd, entries, edit=None, **ctx):
        """A PASID directory holding `entries` ({pasid: set_pasid_entry
        arguments}), then `edit(pdir)`, the device's context entry (DTE and
        PASIDE set unless given), then the root table, translation and the
        queue. (Structures changed after this need an invalidation: the
        IOMMU may cache what it finds when translation is enabled.)"""
        pdir = vtd.new_pasid_dir()
        for pasid, kw in entries.items():
            vtd.set_pasid_entry(pdir, pasid, **kw)
        if edit:
            edit(pdir)
        vtd.set_context(0, TD_DEVFN, pdir, **{'dte': True, 'paside': True, **ctx})
        vtd.enable()
        vtd.enable_queue()
        return pdir

    def ss_space(self, vtd, *maps):
        """Second-stage tables with the given (iova, phys[, perm]) pages."""
        top = vtd.new_address_space()
        for m in maps:
            vtd.map_4k(top, *m)
        return top

    def pattern(self, n=64):
        self._pattern += 1
        return bytes((i * 29 + self._pattern * 71) & 0xff for i in range(n))

    def dma(self, dev, op, pasid, iova=IOVA, n=16, privileged=False):
        """Untranslated at RID_PASID when `pasid` is None; otherwise an ATS
        translation request with `pasid` (the device-TLB flushed first, so
        the IOMMU translates) and a translated access."""
        if pasid is not None:
            dev.flush_atc()
        return dev.dma(op, iova, n, pasid=pasid, privileged=privileged, ats=pasid is not None)

    def read(self, dev, pasid, iova=IOVA, n=16, privileged=False):
        self.assertEqual(self.dma(dev, TD_READ, pasid, iova, n, privileged), 'ok')
        return dev.buffer(n)

    def check_write(self, qt, dev, pasid, iova, phys, decoys=()):
        """A write through the device at (`pasid`, `iova`) lands at `phys`
        and nowhere in `decoys`; reading it back through the device
        matches, and the ATS translation of the page is `phys`."""
        data = self.pattern()
        self.assertNotEqual(qt.memread(phys, len(data)), data)
        dev.load_buffer(data)
        self.assertEqual(self.dma(dev, TD_WRITE, pasid, iova, len(data)), 'ok')
        self.assertEqual(qt.memread(phys, len(data)), data, f'PASID {pasid}: data not at 0x{phys:x}')
        for d in decoys:
            self.assertNotEqual(qt.memread(d, len(data)), data, f'data landed at 0x{d:x}')
        # Read back with an ATS translation request (with the PASID, or
        # without one: RID_PASID) and check the translated address.
        dev.flush_atc()
        self.assertEqual(dev.dma(TD_COMPARE, iova, len(data), pasid=pasid, ats=True), 'ok')
        self.assertEqual(dev.reg(TD_XLATE, 8), phys)
        self.assertNoFault(self.vtd)

    def assertFault(self, vtd, reason, pasid=None, read=True, address=IOVA, at=0, priv=False):
        """Exactly one fault is recorded, with these fields; it is then
        cleared (and FSTS.PPF with it)."""
        self.assertTrue(vtd.reg(FSTS) & FSTS_PPF, 'FSTS.PPF not set')
        faults = vtd.pending_faults()
        self.assertEqual(len(faults), 1, f'{len(faults)} faults recorded')
        i, rec = faults[0]
        lo, hi = rec['raw']
        got = {k: rec[k] for k in ('reason', 'sid', 'pasid', 'read', 'address', 'at', 'priv')}
        want = {'reason': reason, 'sid': SID, 'pasid': pasid, 'read': read,
                'address': address & ~0xfff, 'at': at, 'priv': priv}
        self.assertEqual(got, want, f'FRCD{i} = 0x{hi:016x}_{lo:016x}')
        vtd.clear_fault_record(i)
        self.assertFalse(vtd.reg(FSTS) & FSTS_PPF, 'FSTS.PPF still set')

    def assertNoFault(self, vtd):
        self.assertEqual(vtd.pending_faults(), [])
        self.assertFalse(vtd.reg(FSTS) & FSTS_PPF)

    # ------------------------------------------------------------------
    # Translation types, at RID_PASID (PASID 0) and at PASID 5
    # ------------------------------------------------------------------

    def test_pass_through(self):
        qt, dev, vtd = self.launch()
        self.attach(vtd, {0: dict(pgtt=PGTT_PT, did=DID), PASID: dict(pgtt=PGTT_PT, did=DID2)})
        self.check_write(qt, dev, None, IOVA, IOVA)
        self.check_write(qt, dev, PASID, IOVA + 0x1000, IOVA + 0x1000)

    def test_second_stage(self):
        qt, dev, vtd = self.launch()
        top0 = self.ss_space(vtd, (IOVA, PHYS))
        top5 = self.ss_space(vtd, (IOVA, PHYS2))
        self.attach(vtd, {0: dict(pgtt=PGTT_SS, did=DID, slptptr=top0),
                          PASID: dict(pgtt=PGTT_SS, did=DID2, slptptr=top5)})
        self.check_write(qt, dev, None, IOVA, PHYS, decoys=(PHYS2, IOVA))
        self.check_write(qt, dev, PASID, IOVA, PHYS2, decoys=(PHYS, IOVA))

    def test_first_stage(self):
        qt, dev, vtd = self.launch()
        fs0, fs5 = vtd.first_stage(), vtd.first_stage()
        fs0.map_4k(IOVA, PHYS)
        fs5.map_4k(IOVA, PHYS2)
        self.attach(vtd, {0: dict(pgtt=PGTT_FS, did=DID, flptptr=fs0.root),
                          PASID: dict(pgtt=PGTT_FS, did=DID2, flptptr=fs5.root)})
        self.check_write(qt, dev, None, IOVA, PHYS, decoys=(PHYS2, IOVA))
        self.check_write(qt, dev, PASID, IOVA, PHYS2, decoys=(PHYS, IOVA))
        # Accessed on every level, dirty in the leaf written.
        for fs in (fs0, fs5):
            entries = [vtd.read_quads(a, 1)[0] for a in fs.entries(IOVA)]
            self.assertTrue(all(e & FS_A for e in entries), [hex(e) for e in entries])
            self.assertTrue(entries[-1] & FS_D, hex(entries[-1]))

    def test_nested(self):
        qt, dev, vtd = self.launch()
        # One second stage (the "guest physical" space) for both PASIDs; the
        # first-stage tables and outputs are IOVAs it maps elsewhere, so an
        # implementation that skipped the second stage for either would
        # read empty tables or write to GPA_OUT*.
        ss = self.ss_space(vtd, (GPA_OUT, PHYS), (GPA_OUT2, PHYS2))
        fs0 = vtd.first_stage(ss_top=ss, iova_base=FS_TABLE_IOVA)
        fs5 = vtd.first_stage(ss_top=ss, iova_base=FS_TABLE_IOVA + 0x100000)
        fs0.map_4k(IOVA, GPA_OUT)
        fs5.map_4k(IOVA, GPA_OUT2)
        self.assertNotEqual(fs0.ram[fs0.root], fs0.root)
        self.attach(vtd, {0: dict(pgtt=PGTT_NESTED, did=DID, slptptr=ss, flptptr=fs0.root),
                          PASID: dict(pgtt=PGTT_NESTED, did=DID2, slptptr=ss,
                                      flptptr=fs5.root)})
        self.check_write(qt, dev, None, IOVA, PHYS, decoys=(GPA_OUT, IOVA, PHYS2))
        self.check_write(qt, dev, PASID, IOVA, PHYS2, decoys=(GPA_OUT2, IOVA, PHYS))
        # Accessed/dirty updates go to the first-stage entries where the
        # second stage puts them; the table IOVAs' own pages stay empty.
        for fs in (fs0, fs5):
            leaf = vtd.read_quads(fs.entries(IOVA)[-1], 1)[0]
            self.assertEqual(leaf & (FS_A | FS_D), FS_A | FS_D, hex(leaf))
            for table in fs.ram:
                self.assertEqual(qt.memread(table, 0x1000), bytes(0x1000))

    def test_second_stage_in_on_mode(self):
        """x-scalable-mode=on (the 10.2.2 C device's scalable mode):
        second stage through RID_PASID, no PASID support."""
        qt, dev, vtd = self.launch('on')
        self.assertFalse(vtd.ecap & ECAP_PASID)
        top = self.ss_space(vtd, (IOVA, PHYS))
        self.attach(vtd, {0: dict(pgtt=PGTT_SS, did=DID, slptptr=top)}, paside=False)
        self.check_write(qt, dev, None, IOVA, PHYS, decoys=(IOVA,))

    def test_first_stage_in_on_mode_with_x_flts(self):
        qt, dev, vtd = self.launch('on', 'x-flts=on')
        fs = vtd.first_stage()
        fs.map_4k(IOVA, PHYS)
        self.attach(vtd, {0: dict(pgtt=PGTT_FS, did=DID, flptptr=fs.root)}, paside=False)
        self.check_write(qt, dev, None, IOVA, PHYS, decoys=(IOVA,))

    def test_first_stage_privilege_and_write_protect(self):
        """U/S and R/W with supervisor requests (SRE): a supervisor may use
        user and supervisor pages and, with WPE clear, write read-only
        ones; a user request only reaches user pages."""
        qt, dev, vtd = self.launch()
        fs = vtd.first_stage()
        fs.map_4k(IOVA, PHYS, user=False, write=False)
        pdir = self.attach(vtd, {PASID: dict(pgtt=PGTT_FS, did=DID, flptptr=fs.root, sre=True)})
        qt.memwrite(PHYS, OLD)
        self.assertEqual(self.dma(dev, TD_READ, PASID), 'ats-denied')
        self.assertEqual(self.read(dev, PASID, privileged=True), OLD)
        dev.load_buffer(NEW)
        self.assertEqual(self.dma(dev, TD_WRITE, PASID, privileged=True), 'ok')
        self.assertEqual(qt.memread(PHYS, 16), NEW)
        # WPE set: supervisor writes honour R/W.
        vtd.set_pasid_entry(pdir, PASID, PGTT_FS, did=DID, flptptr=fs.root, sre=True, wpe=True)
        vtd.invalidate(vtd.desc_pasid_cache_pasid(DID, PASID), vtd.desc_piotlb_pasid(DID, PASID))
        dev.load_buffer(THIRD)
        self.assertEqual(self.dma(dev, TD_WRITE, PASID, privileged=True), 'ats-denied')
        self.assertEqual(qt.memread(PHYS, 16), NEW)
        self.assertNoFault(vtd)  # translation requests report R = W = 0, no fault

    # ------------------------------------------------------------------
    # Caches: stale until the right invalidation, whatever the others do
    # ------------------------------------------------------------------

    def assertStaleUntil(self, vtd, read, right, wrong=()):
        """`read()` returns OLD (the cached translation) after each of the
        `wrong` invalidations, and NEW after the `right` one."""
        self.assertEqual(read(), OLD, 'the change must not be seen before an invalidation')
        for desc in wrong:
            vtd.invalidate(desc)
            self.assertEqual(read(), OLD, f'descriptor {[hex(q) for q in desc]} invalidated it')
        vtd.invalidate(right)
        self.assertEqual(read(), NEW, 'still stale after the invalidation')

    def context_cache_case(self, right, wrong=()):
        """Requests without PASID go to PASID 0 (-> PHYS) until the context
        entry's RID_PASID, changed to 1 (-> PHYS2), is re-read."""
        qt, dev, vtd = self.launch()
        qt.memwrite(PHYS, OLD)
        qt.memwrite(PHYS2, NEW)
        top0 = self.ss_space(vtd, (IOVA, PHYS))
        top1 = self.ss_space(vtd, (IOVA, PHYS2))
        pdir = self.attach(vtd, {0: dict(pgtt=PGTT_SS, did=DID, slptptr=top0),
                                 1: dict(pgtt=PGTT_SS, did=DID, slptptr=top1)})
        self.assertEqual(self.read(dev, None), OLD)
        vtd.set_context(0, TD_DEVFN, pdir, rid_pasid=1, dte=True, paside=True)
        self.assertStaleUntil(vtd, lambda: self.read(dev, None), right, wrong)

    def test_context_cache_device_selective(self):
        self.context_cache_case(
            ScalableVtd.desc_context_device(SID, DID),
            wrong=[ScalableVtd.desc_context_device(SID + 8, DID),     # 00:06.0
                   ScalableVtd.desc_context_device(SID + 1, DID)])    # 00:05.1

    def test_context_cache_device_selective_function_mask(self):
        # FM = 3 ignores the function bits: 00:05.7 with FM 3 covers 00:05.0.
        self.context_cache_case(
            ScalableVtd.desc_context_device(SID + 7, DID, fm=3),
            wrong=[ScalableVtd.desc_context_device(SID + 7, DID, fm=2)])

    def test_context_cache_domain_selective(self):
        # Scalable-mode context entries carry no domain-id; the model
        # flushes every one on a domain-selective request (a permitted
        # over-invalidation), so there is no wrong domain to show here.
        self.context_cache_case(ScalableVtd.desc_context_domain(DID),
                                wrong=[ScalableVtd.desc_context_device(SID + 8, DID)])

    def test_context_cache_global(self):
        self.context_cache_case(ScalableVtd.desc_context_global(),
                                wrong=[ScalableVtd.desc_context_device(SID + 8, DID)])

    def pasid_cache_case(self, pasid, right, wrong=()):
        """The PASID entry moves to another domain with other tables
        (PHYS -> PHYS2); the cached entry keeps the old ones."""
        qt, dev, vtd = self.launch()
        qt.memwrite(PHYS, OLD)
        qt.memwrite(PHYS2, NEW)
        top = self.ss_space(vtd, (IOVA, PHYS))
        top2 = self.ss_space(vtd, (IOVA, PHYS2))
        p = 0 if pasid is None else pasid
        pdir = self.attach(vtd, {p: dict(pgtt=PGTT_SS, did=DID, slptptr=top)})
        self.assertEqual(self.read(dev, pasid), OLD)
        vtd.set_pasid_entry(pdir, p, PGTT_SS, did=DID2, slptptr=top2)
        self.assertStaleUntil(vtd, lambda: self.read(dev, pasid), right, wrong)

    def test_pasid_cache_pasid_selective(self):
        self.pasid_cache_case(PASID, ScalableVtd.desc_pasid_cache_pasid(DID, PASID), wrong=[
            ScalableVtd.desc_pasid_cache_pasid(DID, PASID + 1),
            # the cached entry is tagged with the domain it had, not the new one
            ScalableVtd.desc_pasid_cache_pasid(DID2, PASID),
            ScalableVtd.desc_pasid_cache_domain(9)])

    def test_pasid_cache_domain_selective(self):
        self.pasid_cache_case(None, ScalableVtd.desc_pasid_cache_domain(DID), wrong=[
            ScalableVtd.desc_pasid_cache_domain(DID2),
            ScalableVtd.desc_pasid_cache_pasid(DID, PASID)])

    def test_pasid_cache_global(self):
        self.pasid_cache_case(PASID, ScalableVtd.desc_pasid_cache_global(), wrong=[
            ScalableVtd.desc_pasid_cache_pasid(DID, 0),
            ScalableVtd.desc_pasid_cache_domain(DID2)])

    def iotlb_case(self, pasid, right, wrong=()):
        """A second-stage PTE changes (PHYS -> PHYS2)."""
        qt, dev, vtd = self.launch()
        qt.memwrite(PHYS, OLD)
        qt.memwrite(PHYS2, NEW)
        top = self.ss_space(vtd, (IOVA, PHYS), (IOVA + 0x1000, PHYS + 0x1000))
        self.attach(vtd, {0 if pasid is None else pasid:
                          dict(pgtt=PGTT_SS, did=DID, slptptr=top)})
        self.assertEqual(self.read(dev, pasid), OLD)
        vtd.map_4k(top, IOVA, PHYS2)
        self.assertStaleUntil(vtd, lambda: self.read(dev, pasid), right, wrong)

    def test_iotlb_page_selective(self):
        self.iotlb_case(None, ScalableVtd.desc_iotlb_page(DID, IOVA), wrong=[
            ScalableVtd.desc_iotlb_page(DID2, IOVA),
            ScalableVtd.desc_iotlb_page(DID, IOVA + 0x1000)])

    def test_iotlb_page_selective_with_pasid(self):
        # AM 1 at IOVA + 0x2000: 2 pages from there, missing IOVA; AM 2: the
        # aligned 4 pages from IOVA.
        self.iotlb_case(PASID, ScalableVtd.desc_iotlb_page(DID, IOVA + 0x2000, am=2), wrong=[
            ScalableVtd.desc_iotlb_page(DID, IOVA + 0x2000, am=1)])

    def test_iotlb_domain_selective(self):
        self.iotlb_case(PASID, ScalableVtd.desc_iotlb_domain(DID), wrong=[
            ScalableVtd.desc_iotlb_domain(DID2)])

    def test_iotlb_global(self):
        self.iotlb_case(None, ScalableVtd.desc_iotlb_global(), wrong=[
            ScalableVtd.desc_iotlb_domain(DID2)])

    def piotlb_case(self, pasid, right, wrong=()):
        """A first-stage PTE changes (PHYS -> PHYS2)."""
        qt, dev, vtd = self.launch()
        qt.memwrite(PHYS, OLD)
        qt.memwrite(PHYS2, NEW)
        fs = vtd.first_stage()
        fs.map_4k(IOVA, PHYS)
        fs.map_4k(IOVA + 0x1000, PHYS + 0x1000)
        self.attach(vtd, {0 if pasid is None else pasid:
                          dict(pgtt=PGTT_FS, did=DID, flptptr=fs.root)})
        self.assertEqual(self.read(dev, pasid), OLD)
        fs.map_4k(IOVA, PHYS2)
        self.assertStaleUntil(vtd, lambda: self.read(dev, pasid), right, wrong)

    def test_piotlb_all_in_pasid(self):
        # Requests without PASID are cached under RID_PASID (0).
        self.piotlb_case(None, ScalableVtd.desc_piotlb_pasid(DID, 0), wrong=[
            ScalableVtd.desc_piotlb_pasid(DID, PASID),
            ScalableVtd.desc_piotlb_pasid(DID2, 0)])

    def test_piotlb_page_selective(self):
        self.piotlb_case(PASID, ScalableVtd.desc_piotlb_page(DID, PASID, IOVA), wrong=[
            ScalableVtd.desc_piotlb_page(DID, PASID, IOVA + 0x1000),
            ScalableVtd.desc_piotlb_page(DID, PASID + 1, IOVA),
            ScalableVtd.desc_piotlb_page(DID2, PASID, IOVA),
            ScalableVtd.desc_iotlb_domain(DID2)])

    def test_piotlb_page_selective_address_mask(self):
        self.piotlb_case(PASID, ScalableVtd.desc_piotlb_page(DID, PASID, IOVA + 0x1000, am=1),
                         wrong=[ScalableVtd.desc_piotlb_page(DID, PASID, IOVA + 0x2000, am=1)])

    def test_device_tlb(self):
        """Device-TLB (type 3) for translations of requests without PASID
        (RID_PASID, second stage)."""
        qt, dev, vtd = self.launch()
        qt.memwrite(PHYS, OLD)
        qt.memwrite(PHYS2, NEW)
        top = self.ss_space(vtd, (IOVA, PHYS))
        self.attach(vtd, {0: dict(pgtt=PGTT_SS, did=DID, slptptr=top)})
        self.assertEqual(dev.dma(TD_READ, IOVA, 16, ats=True), 'ok')
        self.assertEqual(dev.buffer(16), OLD)
        vtd.map_4k(top, IOVA, PHYS2)
        vtd.invalidate(vtd.desc_iotlb_page(DID, IOVA))
        self.assertEqual(self.read(dev, None), NEW, 'the IOMMU sees the new mapping')

        def ats_read():
            self.assertEqual(dev.dma(TD_READ, IOVA, 16, ats=True), 'ok')
            return dev.buffer(16)
        self.assertEqual(ats_read(), OLD, 'device-TLB hit expected')
        self.assertEqual((dev.reg(TD_ATC_HITS), dev.reg(TD_ATC_INVALS)), (1, 0))
        # Another device: nothing reaches ours.
        vtd.invalidate(vtd.desc_device_tlb(SID + 1, IOVA))
        self.assertEqual(ats_read(), OLD)
        self.assertEqual(dev.reg(TD_ATC_INVALS), 0)
        # Another page: it reaches the device but does not cover IOVA.
        vtd.invalidate(vtd.desc_device_tlb(SID, IOVA + 0x1000))
        self.assertEqual(dev.reg(TD_ATC_INVALS), 1)
        self.assertEqual(ats_read(), OLD)
        # The right one.
        vtd.invalidate(vtd.desc_device_tlb(SID, IOVA))
        self.assertEqual(dev.reg(TD_ATC_INVALS), 2)
        self.assertEqual(ats_read(), NEW)
        self.assertEqual(dev.reg(TD_XLATE, 8), PHYS2)

    def test_pasid_device_tlb(self):
        """PASID-based device-TLB (type 8) at PASID 5 (first stage): PASID-
        selective, and with G set (every PASID of the device)."""
        qt, dev, vtd = self.launch()
        qt.memwrite(PHYS, OLD)
        qt.memwrite(PHYS2, NEW)
        qt.memwrite(PHYS3, THIRD)
        fs = vtd.first_stage()
        fs.map_4k(IOVA, PHYS)
        self.attach(vtd, {PASID: dict(pgtt=PGTT_FS, did=DID, flptptr=fs.root)})

        def ats_read():
            self.assertEqual(dev.dma(TD_READ, IOVA, 16, pasid=PASID, ats=True), 'ok')
            return dev.buffer(16)
        self.assertEqual(ats_read(), OLD)
        fs.map_4k(IOVA, PHYS2)
        vtd.invalidate(vtd.desc_piotlb_page(DID, PASID, IOVA))
        self.assertEqual(ats_read(), OLD, 'device-TLB hit expected')
        self.assertEqual(dev.reg(TD_ATC_HITS), 1)
        for desc in (vtd.desc_pasid_device_tlb(SID, PASID + 1, IOVA),
                     vtd.desc_pasid_device_tlb(SID + 1, PASID, IOVA)):
            vtd.invalidate(desc)
            self.assertEqual(dev.reg(TD_ATC_INVALS), 0, [hex(q) for q in desc])
            self.assertEqual(ats_read(), OLD)
        vtd.invalidate(vtd.desc_pasid_device_tlb(SID, PASID, IOVA + 0x1000))
        self.assertEqual(dev.reg(TD_ATC_INVALS), 1)
        self.assertEqual(ats_read(), OLD)
        vtd.invalidate(vtd.desc_pasid_device_tlb(SID, PASID, IOVA))
        self.assertEqual(dev.reg(TD_ATC_INVALS), 2)
        self.assertEqual(ats_read(), NEW)
        self.assertEqual(dev.reg(TD_XLATE, 8), PHYS2)
        # G = 1: another PASID in the descriptor, every PASID invalidated.
        fs.map_4k(IOVA, PHYS3)
        vtd.invalidate(vtd.desc_piotlb_page(DID, PASID, IOVA))
        self.assertEqual(ats_read(), NEW, 'device-TLB hit expected')
        vtd.invalidate(vtd.desc_pasid_device_tlb(SID, PASID + 1, IOVA, global_pasids=True))
        self.assertEqual(dev.reg(TD_ATC_INVALS), 3)
        self.assertEqual(ats_read(), THIRD)

    # ------------------------------------------------------------------
    # Faults
    # ------------------------------------------------------------------

    def test_fault_root_entry_not_present(self):
        qt, dev, vtd = self.launch()
        vtd.enable()                         # empty scalable root table
        self.assertEqual(self.dma(dev, TD_READ, None), 'dma-error')
        self.assertFault(vtd, FR_ROOT_NOT_PRESENT)
        self.assertEqual(self.dma(dev, TD_READ, PASID), 'ats-error')
        self.assertFault(vtd, FR_ROOT_NOT_PRESENT, pasid=PASID, at=1)

    def test_fault_context_entry_not_present(self):
        qt, dev, vtd = self.launch()
        top = self.ss_space(vtd, (IOVA, PHYS))
        self.attach(vtd, {0: dict(pgtt=PGTT_SS, did=DID, slptptr=top)}, present=False)
        self.assertEqual(self.dma(dev, TD_WRITE, None), 'dma-error')
        self.assertFault(vtd, FR_CTX_NOT_PRESENT, read=False)

    def test_fault_pasid_directory_entry_not_present(self):
        qt, dev, vtd = self.launch()
        self.attach(vtd, {})                 # empty PASID directory
        self.assertEqual(self.dma(dev, TD_READ, None), 'dma-error')
        self.assertFault(vtd, FR_PDIR_NOT_PRESENT)
        self.assertEqual(self.dma(dev, TD_READ, PASID), 'ats-error')
        self.assertFault(vtd, FR_PDIR_NOT_PRESENT, pasid=PASID, at=1)
        self.assertEqual(self.dma(dev, TD_WRITE, PASID), 'ats-error')
        self.assertFault(vtd, FR_PDIR_NOT_PRESENT, pasid=PASID, at=1, read=False)

    def test_fault_pasid_entry_not_present(self):
        qt, dev, vtd = self.launch()
        # PASID 1's entry makes the PASID table (PASIDs 0..63) present.
        self.attach(vtd, {1: dict(pgtt=PGTT_PT, did=DID)})
        self.assertEqual(self.dma(dev, TD_READ, None), 'dma-error')
        self.assertFault(vtd, FR_PE_NOT_PRESENT)
        self.assertEqual(self.dma(dev, TD_READ, PASID), 'ats-error')
        self.assertFault(vtd, FR_PE_NOT_PRESENT, pasid=PASID, at=1)

    def test_fault_page_not_present(self):
        qt, dev, vtd = self.launch()
        top = self.ss_space(vtd, (IOVA + 0x1000, PHYS))
        fs = vtd.first_stage()
        fs.map_4k(IOVA + 0x1000, PHYS)
        pdir = self.attach(vtd, {0: dict(pgtt=PGTT_SS, did=DID, slptptr=top),
                                 PASID: dict(pgtt=PGTT_FS, did=DID, flptptr=fs.root)})
        self.assertEqual(self.dma(dev, TD_WRITE, None), 'dma-error')
        self.assertFault(vtd, FR_SS_NOT_PRESENT, read=False)
        # A translation request is answered with R = W = 0, no fault.
        self.assertEqual(self.dma(dev, TD_READ, PASID), 'ats-denied')
        self.assertNoFault(vtd)
        vtd.set_pasid_entry(pdir, 0, PGTT_FS, did=DID, flptptr=fs.root)
        vtd.invalidate(vtd.desc_pasid_cache_pasid(DID, 0))
        self.assertEqual(self.dma(dev, TD_READ, None), 'dma-error')
        self.assertFault(vtd, FR_FS_NOT_PRESENT)

    def test_fault_write_to_read_only_page(self):
        qt, dev, vtd = self.launch()
        top = self.ss_space(vtd, (IOVA, PHYS, PTE_R))
        fs = vtd.first_stage()
        fs.map_4k(IOVA, PHYS, write=False)
        pdir = self.attach(vtd, {0: dict(pgtt=PGTT_SS, did=DID, slptptr=top),
                                 PASID: dict(pgtt=PGTT_FS, did=DID2, flptptr=fs.root)})
        qt.memwrite(PHYS, OLD)
        self.assertEqual(self.read(dev, None), OLD)
        dev.load_buffer(NEW)
        self.assertEqual(self.dma(dev, TD_WRITE, None), 'dma-error')
        self.assertFault(vtd, FR_WRITE, read=False)
        self.assertEqual(qt.memread(PHYS, 16), OLD)
        # First stage, R/W clear: through ATS the page comes back read-only.
        self.assertEqual(self.read(dev, PASID), OLD)
        self.assertEqual(self.dma(dev, TD_WRITE, PASID), 'ats-denied')
        self.assertNoFault(vtd)
        # ... and an untranslated write through it faults.
        vtd.set_pasid_entry(pdir, 0, PGTT_FS, did=DID2, flptptr=fs.root)
        vtd.invalidate(vtd.desc_pasid_cache_pasid(DID, 0))
        self.assertEqual(self.dma(dev, TD_WRITE, None), 'dma-error')
        self.assertFault(vtd, FR_WRITE, read=False)
        self.assertEqual(qt.memread(PHYS, 16), OLD)

    def test_fault_user_access_to_supervisor_page(self):
        qt, dev, vtd = self.launch()
        fs = vtd.first_stage()
        fs.map_4k(IOVA, PHYS, user=False)
        pdir = self.attach(vtd, {0: dict(pgtt=PGTT_FS, did=DID, flptptr=fs.root, sre=True)})
        qt.memwrite(PHYS, OLD)
        # Requests without PASID are user requests while RID_PRIV is clear.
        self.assertEqual(self.dma(dev, TD_READ, None), 'dma-error')
        self.assertFault(vtd, FR_FS_USER)
        vtd.set_context(0, TD_DEVFN, pdir, dte=True, paside=True, rid_priv=True)
        vtd.invalidate(vtd.desc_context_device(SID, DID))
        self.assertEqual(self.read(dev, None), OLD)

    def test_fault_supervisor_request_without_sre(self):
        qt, dev, vtd = self.launch()
        fs = vtd.first_stage()
        fs.map_4k(IOVA, PHYS)
        self.attach(vtd, {PASID: dict(pgtt=PGTT_FS, did=DID, flptptr=fs.root)})
        self.assertEqual(self.dma(dev, TD_READ, PASID, privileged=True), 'ats-error')
        self.assertFault(vtd, FR_PE_SRE_CLEAR, pasid=PASID, at=1, priv=True)
        self.assertEqual(self.dma(dev, TD_READ, PASID), 'ok')

    def test_fault_reserved_bits_in_context_entry(self):
        qt, dev, vtd = self.launch()
        top = self.ss_space(vtd, (IOVA, PHYS))
        pdir = self.attach(vtd, {0: dict(pgtt=PGTT_SS, did=DID, slptptr=top)},
                           rsvd=(1 << 5, 0, 0, 0))          # bits 8:5
        self.assertEqual(self.dma(dev, TD_READ, None), 'dma-error')
        self.assertFault(vtd, FR_CTX_RESERVED)
        for rsvd in ((0, 1 << 21, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1 << 63)):
            vtd.set_context(0, TD_DEVFN, pdir, dte=True, paside=True, rsvd=rsvd)
            vtd.invalidate(vtd.desc_context_device(SID, DID))
            self.assertEqual(self.dma(dev, TD_READ, None), 'dma-error', rsvd)
            self.assertFault(vtd, FR_CTX_RESERVED)
        vtd.set_context(0, TD_DEVFN, pdir, dte=True, paside=True)
        vtd.invalidate(vtd.desc_context_device(SID, DID))
        self.assertEqual(self.dma(dev, TD_READ, None), 'ok')

    def test_fault_reserved_bits_in_pasid_directory_entry(self):
        qt, dev, vtd = self.launch()
        top = self.ss_space(vtd, (IOVA, PHYS))
        self.attach(vtd, {0: dict(pgtt=PGTT_SS, did=DID, slptptr=top)},
                    edit=lambda pdir: vtd.set_pasid_dir_entry(
                        pdir, 0, vtd.pasid_table(pdir, 0), rsvd=1 << 2))   # bits 11:2
        self.assertEqual(self.dma(dev, TD_READ, None), 'dma-error')
        self.assertFault(vtd, FR_PDIR_RESERVED)
        self.assertEqual(self.dma(dev, TD_READ, PASID), 'ats-error')
        self.assertFault(vtd, FR_PDIR_RESERVED, pasid=PASID, at=1)

    def test_fault_reserved_bits_in_pasid_entry(self):
        qt, dev, vtd = self.launch()
        top = self.ss_space(vtd, (IOVA, PHYS))
        pdir = self.attach(vtd, {})
        cases = [(0, 1 << 10), (3, 1), (7, 1 << 63)]        # bits 11:10, 255:192, 511
        for pasid in (0, PASID):
            for q, bit in cases:
                rsvd = [0] * 8
                rsvd[q] = bit
                vtd.set_pasid_entry(pdir, pasid, PGTT_SS, did=DID, slptptr=top, rsvd=rsvd)
                vtd.invalidate(vtd.desc_pasid_cache_pasid(DID, pasid))
                if pasid:
                    self.assertEqual(self.dma(dev, TD_READ, pasid), 'ats-error')
                    self.assertFault(vtd, FR_PE_RESERVED, pasid=pasid, at=1)
                else:
                    self.assertEqual(self.dma(dev, TD_READ, None), 'dma-error')
                    self.assertFault(vtd, FR_PE_RESERVED)

    def test_fault_reserved_bits_in_first_stage_entry(self):
        qt, dev, vtd = self.launch()
        fs = vtd.first_stage()
        leaf = fs.map_4k(IOVA, PHYS, flags=1 << 50)            # above aw-bits=48
        self.attach(vtd, {0: dict(pgtt=PGTT_FS, did=DID, flptptr=fs.root),
                          PASID: dict(pgtt=PGTT_FS, did=DID, flptptr=fs.root)})
        self.assertEqual(self.dma(dev, TD_READ, None), 'dma-error')
        self.assertFault(vtd, FR_FS_RESERVED)
        # A translation request completes with Completer Abort, recorded.
        self.assertEqual(self.dma(dev, TD_READ, PASID), 'ats-error')
        self.assertFault(vtd, FR_FS_RESERVED, pasid=PASID, at=1)
        # PS in a PML4 entry is reserved.
        fs.map_4k(IOVA, PHYS)
        pml4e = fs.entries(IOVA)[0]
        vtd.write_quads(pml4e, vtd.read_quads(pml4e, 1)[0] | FS_PS)
        vtd.invalidate(vtd.desc_piotlb_pasid(DID, 0))
        self.assertEqual(self.dma(dev, TD_WRITE, None), 'dma-error')
        self.assertFault(vtd, FR_FS_RESERVED, read=False)
        self.assertNotEqual(vtd.read_quads(leaf, 1)[0] & FS_A, FS_A, 'A set by a failed walk')

    def test_fault_invalid_pasid_entry(self):
        qt, dev, vtd = self.launch()
        top = self.ss_space(vtd, (IOVA, PHYS))
        pdir = self.attach(vtd, {})
        for pgtt in (0, 5, 6, 7):
            vtd.set_pasid_entry(pdir, 0, pgtt, did=DID, slptptr=top)
            vtd.invalidate(vtd.desc_pasid_cache_pasid(DID, 0))
            self.assertEqual(self.dma(dev, TD_READ, None), 'dma-error', f'PGTT {pgtt}')
            self.assertFault(vtd, FR_PE_INVALID)
        # AW 3 (5-level second stage) is not in CAP.SAGAW.
        vtd.set_pasid_entry(pdir, PASID, PGTT_SS, did=DID, slptptr=top, aw=3)
        vtd.invalidate(vtd.desc_pasid_cache_pasid(DID, PASID))
        self.assertEqual(self.dma(dev, TD_READ, PASID), 'ats-error')
        self.assertFault(vtd, FR_PE_INVALID, pasid=PASID, at=1)
        # FLPM 10b is reserved.
        fs = vtd.first_stage()
        vtd.set_pasid_entry(pdir, PASID, PGTT_FS, did=DID, flptptr=fs.root, flpm=2)
        vtd.invalidate(vtd.desc_pasid_cache_pasid(DID, PASID))
        self.assertEqual(self.dma(dev, TD_READ, PASID), 'ats-error')
        self.assertFault(vtd, FR_PE_INVALID, pasid=PASID, at=1)

    def test_fault_first_stage_pgtt_without_x_flts(self):
        """x-scalable-mode=on without x-flts: no ECAP.FLTS/NEST, so
        first-stage and nested PGTTs are invalid PASID entries."""
        qt, dev, vtd = self.launch('on')
        top = self.ss_space(vtd, (IOVA, PHYS))
        fs = vtd.first_stage()
        fs.map_4k(IOVA, PHYS)
        pdir = self.attach(vtd, {0: dict(pgtt=PGTT_FS, did=DID, flptptr=fs.root)}, paside=False)
        self.assertEqual(self.dma(dev, TD_READ, None), 'dma-error')
        self.assertFault(vtd, FR_PE_INVALID)
        vtd.set_pasid_entry(pdir, 0, PGTT_NESTED, did=DID, slptptr=top, flptptr=fs.root)
        vtd.invalidate(vtd.desc_pasid_cache_pasid(DID, 0))
        self.assertEqual(self.dma(dev, TD_READ, None), 'dma-error')
        self.assertFault(vtd, FR_PE_INVALID)
        vtd.set_pasid_entry(pdir, 0, PGTT_SS, did=DID, slptptr=top)
        vtd.invalidate(vtd.desc_pasid_cache_pasid(DID, 0))
        self.assertEqual(self.dma(dev, TD_READ, None), 'ok')

    def test_fault_pasid_disabled_and_dte_clear(self):
        qt, dev, vtd = self.launch()
        top = self.ss_space(vtd, (IOVA, PHYS))
        pdir = self.attach(vtd, {0: dict(pgtt=PGTT_SS, did=DID, slptptr=top),
                                 PASID: dict(pgtt=PGTT_SS, did=DID, slptptr=top)},
                           paside=False)
        self.assertEqual(self.dma(dev, TD_READ, PASID), 'ats-error')
        self.assertFault(vtd, FR_CTX_PASID_DISABLED, pasid=PASID, at=1)
        self.assertEqual(dev.dma(TD_READ, IOVA, 16, ats=True), 'ok')     # no PASID: fine
        vtd.set_context(0, TD_DEVFN, pdir, dte=False, paside=True)
        vtd.invalidate(vtd.desc_context_device(SID, DID))
        dev.flush_atc()
        self.assertEqual(dev.dma(TD_READ, IOVA, 16, ats=True), 'ats-error')
        self.assertFault(vtd, FR_CTX_DTE_CLEAR, at=1)
        self.assertEqual(self.dma(dev, TD_READ, None), 'ok')     # untranslated: fine

    def test_fault_address_checks(self):
        qt, dev, vtd = self.launch()
        fs = vtd.first_stage()
        top39 = vtd.new_address_space()
        pdir = self.attach(vtd, {0: dict(pgtt=PGTT_FS, did=DID, flptptr=fs.root)})
        non_canonical = 0x0000800000000000
        self.assertEqual(self.dma(dev, TD_READ, None, iova=non_canonical), 'dma-error')
        self.assertFault(vtd, FR_NON_CANONICAL, address=non_canonical)
        vtd.set_pasid_entry(pdir, 0, PGTT_SS, did=DID, slptptr=top39, aw=1)   # 39-bit
        vtd.invalidate(vtd.desc_pasid_cache_pasid(DID, 0))
        self.assertEqual(self.dma(dev, TD_READ, None, iova=1 << 40), 'dma-error')
        self.assertFault(vtd, FR_BEYOND_AGAW, address=1 << 40)

    def test_fault_processing_disable(self):
        qt, dev, vtd = self.launch()
        top = self.ss_space(vtd)                        # nothing mapped
        pdir = self.attach(vtd, {0: dict(pgtt=PGTT_SS, did=DID, slptptr=top, fpd=True)})
        # FPD in the PASID entry: the fault is not recorded.
        self.assertEqual(self.dma(dev, TD_READ, None), 'dma-error')
        self.assertNoFault(vtd)
        vtd.set_pasid_entry(pdir, 0, PGTT_SS, did=DID, slptptr=top)
        vtd.invalidate(vtd.desc_pasid_cache_pasid(DID, 0))
        self.assertEqual(self.dma(dev, TD_READ, None), 'dma-error')
        self.assertFault(vtd, FR_SS_NOT_PRESENT)
        # FPD in the PASID directory entry.
        table = vtd.pasid_table(pdir, PASID)
        self.assertEqual(self.dma(dev, TD_READ, PASID), 'ats-error')
        self.assertFault(vtd, FR_PE_NOT_PRESENT, pasid=PASID, at=1)
        vtd.set_pasid_dir_entry(pdir, PASID, table, fpd=True)
        vtd.invalidate(vtd.desc_pasid_cache_global())
        self.assertEqual(self.dma(dev, TD_READ, PASID), 'ats-error')
        self.assertNoFault(vtd)
        vtd.set_pasid_dir_entry(pdir, PASID, table)
        # FPD in the context entry (PASID 5's entry is still not present).
        vtd.set_context(0, TD_DEVFN, pdir, dte=True, paside=True, fpd=True)
        vtd.invalidate(vtd.desc_context_device(SID, DID))
        self.assertEqual(self.dma(dev, TD_READ, PASID), 'ats-error')
        self.assertEqual(self.dma(dev, TD_READ, None), 'dma-error')
        self.assertNoFault(vtd)
        # Non-qualified faults are recorded regardless: an empty root entry.
        vtd.write_quads(vtd.root, 0, 0)
        vtd.invalidate(vtd.desc_context_global())
        self.assertEqual(self.dma(dev, TD_READ, None), 'dma-error')
        self.assertFault(vtd, FR_ROOT_NOT_PRESENT)


if __name__ == '__main__':
    QemuSystemTest.main()
