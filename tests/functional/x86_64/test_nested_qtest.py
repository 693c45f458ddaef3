#!/usr/bin/env python3
#
# Hardware nested translation, driven step by step: L0 (our QEMU, TCG) gives L1 (the
# iommufd kernel, behind our intel-iommu in modern mode with caching mode) our DMA test
# device; L1 hands it to vfio-pci and runs an L2 QEMU with `-accel qtest`, our
# intel-iommu (modern, caching mode) and the device through vfio's iommufd backend.
# This test plays L2's guest over qtest (through a virtio-serial port of L0): it writes
# L2's first-stage tables and PASID entries, drives L2's invalidation queue and makes the
# real (L0-emulated) device DMA.  L2's QEMU binds the device's PASID entry on L1's
# iommufd (nested HWPT over vfio's nesting parent) and forwards L2's first-stage
# invalidations; L1's intel-iommu driver programs L0's VT-d, which walks L2's tables
# nested over L1's stage 2.  So:
#   - DMA through L2's first-stage mapping reaches L2's memory (nesting works),
#   - L1's own translation structures show a nested PASID entry pointing at L2's table,
#   - after L2 changes a mapping, DMA keeps hitting the old page until L2 invalidates:
#     the invalidation is forwarded (one IOMMU_HWPT_INVALIDATE per batch), then the new
#     page is used,
#   - requests with a PASID (ATS-translated, as the device makes them): L2 sees an
#     emulated PASID capability on the assigned function (vfio hides the real one),
#     its PASID entries are bound on L1's iommufd per PASID (VFIO_DEVICE_ATTACH_PASID)
#     and their invalidations forwarded to that PASID's nested HWPT,
#   - PASID entry replace (pass-through, another first stage), detach (DMA blocked),
#     guest reset, hot-unplug and hot-plug while translation is on leave no HWPT
#     behind and QEMU running,
#   - configuration errors are refused with clear messages (no iommufd backend, caching
#     mode off, a host IOMMU without 1 GiB first-stage pages).
#
# Skipped when the iommufd kernel has not been built.
#
# SPDX-License-Identifier: GPL-2.0-or-later

import os
import re
import shutil
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rviommu_kit import RvIommuGuestTest  # noqa: E402
from vtd_qtest import (Channel, StreamQtest, ScalableVtd, QtestError, ecam, enable_ecam,  # noqa: E402
                       VTD_BASE, FSTS, FSTS_IQE, FSTS_PPF, IQH, GCMD, GSTS, GCMD_TE, PGTT_FS, PGTT_PT, TD_ID, TD_BAR0, TD_READ, TD_IOVA, TD_LEN, TD_PASID,
                       TD_CMD, TD_STATUS, TD_BUFFER, TD_STATUS_NAMES, TD_ATS, TD_PASID_VALID)

# L2's view: root ports 00:04.0 and 00:06.0, an assigned test device behind each, at
# 01:00.0 (BAR0 at TD_BAR0) and 02:00.0 (BAR0 at TD_BAR0_B).  Both are in one guest
# domain (same PASID directory, DID and first-stage table); vfio gives each its own
# container (one per address space), so each has its own parent and nested HWPT.
RP_BDF, RP_B_BDF = 0x20, 0x30
TD_BDF, TD_B_BDF = 0x100, 0x200
TD_BAR0_B = 0xfe200000
DID = 7
IOVA = 0x40000000                 # first-stage input addresses (three pages)
PAGES = 3
RAM_A, RAM_B, RAM_C = 0x300000, 0x310000, 0x320000   # L2 RAM: old, new, third pages
PGTT_NESTED = 3                   # PGTT in L1's (the host's) PASID entry
PGTT_SS = 2
SLTCTL_PCC = 1 << 10              # power controller control: off
SLTCTL_PIC_OFF = 3 << 8           # power indicator off
SLTCTL_PIC_ON = 1 << 8            # power indicator on
PASID, DID_P = 5, 8               # a PASID of L2's with a first stage of its own
LPC_BDF = 0xf8                    # ICH9 LPC (00:1f.0): PMBASE at 0x40, ACPI_CNTL at 0x44
PASID_CAP_ID, PASID_CAP_AT = 0x1b, 0xff8   # the emulated capability in L2
# rviommu-testdev (L0): ATS control at 0x106 (bit 15 enable), PASID control at 0x126
TD_ATS_CTRL, TD_PASID_CTRL = 0x106, 0x126

# What L0 gives L1: no 1 GiB first-stage pages (to check the refusal of an L2 that
# advertises them; L2 then runs with fs1gp=off), and device-TLBs: L1 enables ATS and
# PASIDs on the test devices, which make requests with a PASID as ATS translations.
L0_IOMMU = 'intel-iommu,x-scalable-mode=modern,caching-mode=on,fs1gp=off,device-iotlb=on'
L2_IOMMU = 'x-scalable-mode=modern,caching-mode=on,fs1gp=off'
# An L2 QEMU started through L1's shell to check a configuration (no guest code).
L2_CHECK = ('timeout 120 qemu-system-x86_64 -M q35 -accel qtest -nodefaults -no-user-config '
            '-display none -L /usr/share/qemu')


class Monitor:
    """L2's human monitor on a Channel."""

    def __init__(self, channel, timeout=60):
        self.channel, self.timeout = channel, timeout

    def banner(self, timeout):
        return self.channel.read_until(b'(qemu) ', timeout)

    def cmd(self, line):
        self.channel.send(line + '\n')
        out = self.channel.read_until(b'(qemu) ', self.timeout)
        # the monitor echoes the command line (with terminal escapes): drop it
        # and the prompt
        text = re.sub(r'\x1b\[[0-9;]*[A-Za-z]', '', out.replace('\r', ''))[:-len('(qemu) ')]
        lines = [l for l in text.split('\n') if l.strip() and line not in l]
        return '\n'.join(lines)

    def quit(self):
        self.channel.send('quit\n')


class Shell:
    """A shell of L1's on a Channel (no prompt, no echo)."""

    def __init__(self, channel, timeout=120):
        self.channel, self.timeout, self.n = channel, timeout, 0

    def wait_ready(self, timeout):
        """Until the shell answers (what is sent before L1 opens its end of the
        port is lost)."""
        deadline = time.monotonic() + timeout
        while True:
            self.channel.send('echo __RVIOMMU_SHELL_READY__\n')
            try:
                return self.channel.read_until(b'__RVIOMMU_SHELL_READY__', 3)
            except QtestError:
                if time.monotonic() > deadline:
                    raise

    def run(self, command, timeout=None):
        self.n += 1
        marker = f'__RVIOMMU_SHELL_DONE_{self.n}__'
        self.channel.send(f'{command}\necho "{marker} $?"\n')
        out = self.channel.read_until(marker.encode(), timeout or self.timeout)
        status = self.channel.read_until(b'\n', 10).strip()
        return out[:-len(marker)], int(status)


class NestedQtest(RvIommuGuestTest):

    GUEST_TIMEOUT = 900
    L1_MEMORY = '2G'

    def setUp(self):
        super().setUp()
        if self.kit.iommufd_kernel is None:
            self.skipTest(self.kit.iommufd_kernel_why)
        self.sockdir = tempfile.mkdtemp(prefix='rvnq', dir='/tmp')  # short socket paths
        self.addCleanup(shutil.rmtree, self.sockdir, True)

    # -- L2 as a qtest "guest" ------------------------------------------------

    def pci_setup(self, qt, devices=((RP_BDF, TD_BDF, TD_BAR0), (RP_B_BDF, TD_B_BDF, TD_BAR0_B))):
        """What firmware would do: ECAM, each root port's bus numbers and
        memory window, each device's BAR0 and command register."""
        enable_ecam(qt)
        for rp, td, bar in devices:
            bus = td >> 8
            qt.pci_cfg_writel(rp, 0x18, (bus << 16) | (bus << 8))      # sub, sec, pri 0
            window = (bar >> 16) & 0xfff0
            qt.pci_cfg_writel(rp, 0x20, (window << 16) | window)       # memory base/limit
            qt.pci_cfg_writel(rp, 0x04, 0x6)
            qt.pci_cfg_writel(td, 0x10, bar)
            qt.pci_cfg_writel(td, 0x04, 0x6)
            self.assertEqual(qt.readl(bar + TD_ID), 0x44545652,
                             f'the assigned rviommu-testdev is not at 0x{bar:x} in L2')

    def dma_read(self, qt, iova, n=64, bar=TD_BAR0):
        """The device at `bar` reads n bytes at `iova` (request without
        PASID); returns the data, or the status name when the DMA failed."""
        qt.writeq(bar + TD_IOVA, iova)
        qt.writel(bar + TD_LEN, n)
        qt.writel(bar + TD_PASID, 0)
        qt.writel(bar + TD_CMD, TD_READ)
        status = TD_STATUS_NAMES.get(qt.readl(bar + TD_STATUS) & 0xff, 'unknown')
        return qt.memread(bar + TD_BUFFER, n) if status == 'ok' else status

    def dma_read_pasid(self, qt, iova, pasid, n=64, bar=TD_BAR0):
        """The same with PASID `pasid` (an ATS translation request, then the
        translated access; the device caches the translation)."""
        qt.writeq(bar + TD_IOVA, iova)
        qt.writel(bar + TD_LEN, n)
        qt.writel(bar + TD_PASID, TD_PASID_VALID | pasid)
        qt.writel(bar + TD_CMD, TD_READ | TD_ATS)
        status = TD_STATUS_NAMES.get(qt.readl(bar + TD_STATUS) & 0xff, 'unknown')
        return qt.memread(bar + TD_BUFFER, n) if status == 'ok' else status

    def ext_caps(self, qt, bdf):
        """{id: offset} of a function's extended capabilities in L2."""
        caps, pos = {}, 0x100
        while pos and len(caps) < 64:
            head = qt.readl(ecam(bdf, pos))
            if head & 0xffff:
                caps[head & 0xffff] = pos
            pos = (head >> 20) & 0xffc
        return caps

    @staticmethod
    def pattern(tag, n=64):
        return bytes((i * 13 + tag * 101) & 0xff for i in range(n))

    def pcie_cap(self, qt, bdf):
        pos = qt.pci_cfg_readl(bdf, 0x34) & 0xfc
        while pos:
            head = qt.pci_cfg_readl(bdf, pos)
            if head & 0xff == 0x10:
                return pos
            pos = (head >> 8) & 0xfc
        self.fail(f'no PCIe capability at {bdf:#x}')

    def slot_power(self, qt, on, rp=RP_BDF):
        """Power a root port's slot on or off (and its indicator with it)."""
        cap = self.pcie_cap(qt, rp)
        sltctl = qt.pci_cfg_readl(rp, cap + 0x18) & 0xffff
        sltctl &= ~(SLTCTL_PCC | SLTCTL_PIC_OFF)
        sltctl |= SLTCTL_PIC_ON if on else SLTCTL_PCC | SLTCTL_PIC_OFF
        qt.pci_cfg_writel(rp, cap + 0x18, sltctl)

    def unplug(self, qt, mon, dev_id, rp=RP_BDF):
        """Hot-unplug with the guest's part of the handshake: device_del
        presses the slot's attention button, the guest powers the slot off
        and QEMU removes the device."""
        before = mon.cmd('info pci').count('1234:11f0')
        self.assertEqual(mon.cmd(f'device_del {dev_id}'), '', 'device_del')
        self.assertEqual(mon.cmd('info pci').count('1234:11f0'), before,
                         'removed before the guest agreed')
        self.slot_power(qt, False, rp)
        self.assertEqual(mon.cmd('info pci').count('1234:11f0'), before - 1,
                         f'{dev_id} is still plugged')

    # -- L1's view ---------------------------------------------------------------

    def l1_pasid_entry(self, sh, bdf, pasid=0, missing_ok=False):
        """(PGTT, first-stage table pointer) of PASID `pasid` of L1's function
        `bdf` in the translation structures L1's kernel programmed into L0's
        VT-d (None with `missing_ok` when there is no such entry)."""
        out, rc = sh.run('cat /sys/kernel/debug/iommu/intel/dmar_translation_struct')
        self.assertEqual(rc, 0, out)
        for line in out.splitlines():
            f = line.split()
            if len(f) == 5 and f[0] == bdf and f[3] == str(pasid):
                val2, _, val0 = (int(v, 16) for v in f[4].split(':'))
                return (val0 >> 6) & 7, val2 & 0x000ffffffffff000
        if missing_ok:
            return None
        self.fail(f'no PASID {pasid} entry of {bdf} in L1 dmar_translation_struct:\n{out}')

    def l1_config_word(self, sh, bdf, off):
        """A 16-bit register of L1's function `bdf` (its real config space)."""
        out, rc = sh.run(f'od -An -tx2 -j {off} -N 2 /sys/bus/pci/devices/0000:{bdf}/config')
        self.assertEqual(rc, 0, out)
        return int(out.split()[0], 16)

    def l1_dma_faults(self, sh):
        out, _ = sh.run("dmesg | grep -c 'DMAR: \\[DMA'")
        return int(out.strip() or 0)

    # -- the scenario ------------------------------------------------------------

    def config_errors(self, sh, bdf):
        """L2 configurations that must be refused, each with a clear message."""
        cases = [
            ('legacy vfio container', f'-device intel-iommu,{L2_IOMMU} '
             f'-device vfio-pci,host={bdf}', 'iommufd'),
            ('caching mode off', '-device intel-iommu,x-scalable-mode=modern,fs1gp=off '
             f'-object iommufd,id=i -device vfio-pci,host={bdf},iommufd=i', 'caching-mode=on'),
            ('host without 1 GiB first-stage pages',
             '-device intel-iommu,x-scalable-mode=modern,caching-mode=on '
             f'-object iommufd,id=i -device vfio-pci,host={bdf},iommufd=i', 'FS1GP'),
        ]
        for what, args, expect in cases:
            out, rc = sh.run(f'{L2_CHECK} {args} 2>&1 </dev/null')
            self.log.info('L2 with %s: exit %d: %s', what, rc, out.strip())
            self.assertNotEqual(rc, 0, f'L2 with {what} started')
            self.assertNotEqual(rc, 124, f'L2 with {what} hung')
            self.assertIn(expect, out, f'L2 with {what}: unclear error')
            self.assertIn('intel-iommu', out, f'L2 with {what}: error does not name the device')

    def drive(self, scenario=None, config_errors=True):
        ch = {n: Channel(os.path.join(self.sockdir, n)) for n in ('qt', 'mon', 'sh')}
        sh = Shell(ch['sh'])
        # L1's shell answers once L1 is up; the function vfio-pci holds is the device.
        sh.wait_ready(600)
        out, _ = sh.run('ls /sys/bus/pci/drivers/vfio-pci/')
        bdfs = sorted(re.findall(r'0000:([0-9a-f]{2}:[0-9a-f]{2}\.[0-7])', out))
        self.assertEqual(len(bdfs), 2, f'functions bound to vfio-pci in L1: {out!r}')
        if config_errors:
            self.config_errors(sh, '0000:' + bdfs[0])
        sh.run('touch /tmp/l2-go')
        mon = Monitor(ch['mon'])
        mon.banner(300)
        qt = StreamQtest(ch['qt'])
        (scenario or self.scenario)(qt, mon, sh, *bdfs)
        mon.quit()

    def scenario(self, qt, mon, sh, l1_bdf, l1_bdf_b):
        self.pci_setup(qt)
        vtd = ScalableVtd(qt, table_base=0x100000, table_limit=0x200000)
        for i, ram in enumerate((RAM_A, RAM_B, RAM_C)):
            for p in range(PAGES):
                qt.memwrite(ram + p * 0x1000, self.pattern(i * PAGES + p))
        A = [self.pattern(p) for p in range(PAGES)]
        B = [self.pattern(PAGES + p) for p in range(PAGES)]

        # 1. First stage at RID_PASID: the device's DMA walks L2's tables nested.
        fs = vtd.first_stage()
        for p in range(PAGES):
            fs.map_4k(IOVA + p * 0x1000, RAM_A + p * 0x1000)
        pdir = vtd.new_pasid_dir()
        vtd.set_pasid_entry(pdir, 0, PGTT_FS, did=DID, flptptr=fs.root)
        vtd.set_context(1, 0, pdir)
        vtd.set_context(2, 0, pdir)           # the second device: the same domain
        vtd.enable()
        vtd.enable_queue()
        vtd.invalidate(vtd.desc_context_global(), vtd.desc_pasid_cache_global(),
                       vtd.desc_piotlb_pasid(DID, 0))
        for p in range(PAGES):
            for bar in (TD_BAR0, TD_BAR0_B):
                self.assertEqual(self.dma_read(qt, IOVA + p * 0x1000, bar=bar), A[p],
                                 f'DMA through L2 first stage, page {p}, device 0x{bar:x}')
        for bdf in (l1_bdf, l1_bdf_b):
            pgtt, fsptr = self.l1_pasid_entry(sh, bdf)
            self.assertEqual((pgtt, fsptr), (PGTT_NESTED, fs.root),
                             f"L1's PASID entry of {bdf} is not nested over L2's first-stage table")
            self.log.info('L1 %s PASID 0: PGTT %d (nested), first-stage table 0x%x = L2 table',
                          bdf, pgtt, fsptr)

        # 2. L2 changes its mappings: stale until its invalidation is forwarded.
        for p in range(PAGES):
            fs.map_4k(IOVA + p * 0x1000, RAM_B + p * 0x1000)
        for p in range(PAGES):
            self.assertEqual(self.dma_read(qt, IOVA + p * 0x1000), A[p],
                             f'page {p}: the new mapping was used before L2 invalidated '
                             '(no IOTLB in L0, or an invalidation nobody asked for)')
        self.assertEqual(self.dma_read(qt, IOVA, bar=TD_BAR0_B), A[0], 'second device: stale')
        vtd.invalidate(*(vtd.desc_piotlb_page(DID, 0, IOVA + p * 0x1000) for p in range(PAGES)))
        for p in range(PAGES):
            self.assertEqual(self.dma_read(qt, IOVA + p * 0x1000), B[p],
                             f'page {p}: still the old page after L2 invalidated')
        self.assertEqual(self.dma_read(qt, IOVA, bar=TD_BAR0_B), B[0],
                         'second device: still the old page after L2 invalidated')

        # 2b. Requests with a PASID.
        self.pasid_requests(qt, vtd, sh, pdir, l1_bdf, l1_bdf_b)
        self.assertEqual(self.dma_read(qt, IOVA), B[0], 'requests without PASID changed')

        # 3. Replace the PASID entry: pass-through (the nesting parent: L2 GPA).
        vtd.set_pasid_entry(pdir, 0, PGTT_PT, did=DID)
        vtd.invalidate(vtd.desc_pasid_cache_pasid(DID, 0), vtd.desc_piotlb_pasid(DID, 0))
        self.assertEqual(self.dma_read(qt, RAM_A), A[0], 'pass-through DMA')
        self.assertEqual(self.l1_pasid_entry(sh, l1_bdf)[0], PGTT_SS,
                         'L1 does not translate with the parent (second stage) alone')

        # 4. Replace again: another first-stage table (a new nested HWPT).
        fs2 = vtd.first_stage()
        fs2.map_4k(IOVA, RAM_C)
        vtd.set_pasid_entry(pdir, 0, PGTT_FS, did=DID, flptptr=fs2.root)
        vtd.invalidate(vtd.desc_pasid_cache_pasid(DID, 0), vtd.desc_piotlb_pasid(DID, 0))
        self.assertEqual(self.dma_read(qt, IOVA), self.pattern(2 * PAGES), 'second first stage')
        self.assertEqual(self.l1_pasid_entry(sh, l1_bdf), (PGTT_NESTED, fs2.root))

        # 5. Detach: a cleared PASID entry blocks DMA (L0 reports it to L1).
        faults = self.l1_dma_faults(sh)
        vtd.set_pasid_entry(pdir, 0, 0, present=False)
        vtd.invalidate(vtd.desc_pasid_cache_pasid(DID, 0), vtd.desc_piotlb_pasid(DID, 0))
        self.assertEqual(self.dma_read(qt, IOVA), 'dma-error', 'DMA of a detached function')
        self.assertGreater(self.l1_dma_faults(sh), faults, 'no DMAR fault in L1 for the blocked DMA')

        # 6. Bind again, then reset L2: translation off, the parent again.
        vtd.set_pasid_entry(pdir, 0, PGTT_FS, did=DID, flptptr=fs2.root)
        vtd.invalidate(vtd.desc_pasid_cache_pasid(DID, 0))
        self.assertEqual(self.dma_read(qt, IOVA), self.pattern(2 * PAGES))
        self.assertEqual(self.l1_pasid_entry(sh, l1_bdf, PASID)[0], PGTT_NESTED,
                         f'PASID {PASID} is not bound before the reset')
        self.assertEqual(mon.cmd('system_reset'), '')
        self.pci_setup(qt)
        self.assertEqual(self.dma_read(qt, RAM_B), B[0], 'DMA after reset (translation off)')
        self.assertEqual(self.l1_pasid_entry(sh, l1_bdf)[0], PGTT_SS)
        # Requests with a PASID are blocked while translation is off.
        self.assertIsNone(self.l1_pasid_entry(sh, l1_bdf, PASID, missing_ok=True),
                          f'PASID {PASID} still bound after the reset')
        self.assertNotEqual(self.dma_read_pasid(qt, IOVA, PASID), 'ok',
                            f'PASID {PASID} DMA after the reset')

        # 7. Translate once more, then hot-unplug.
        vtd2, fs3 = self.new_tables(qt, RAM_A)
        self.assertEqual(self.dma_read(qt, IOVA), A[0], 'DMA after reset and new tables')
        self.unplug(qt, mon, 'td')

        # 8. Hot-plug while translation is on: vfio meets the IOMMU region before
        # its host device reaches the vIOMMU; the device is bound as the tables say.
        out = mon.cmd(f'device_add vfio-pci,host=0000:{l1_bdf},iommufd=ifd0,bus=rp0,id=td2,'
                      'rombar=0')
        # (vfio warns that the test device has no reset mechanism)
        self.assertNotIn('rror', out, 'device_add')
        self.assertEqual(mon.cmd('info pci').count('1234:11f0'), 2, 'hot-plugged device not there')
        self.slot_power(qt, True)
        qt.pci_cfg_writel(TD_BDF, 0x10, TD_BAR0)
        qt.pci_cfg_writel(TD_BDF, 0x04, 0x6)
        self.assertEqual(self.dma_read(qt, IOVA), A[0], 'DMA of a device hot-plugged with TE on')
        self.assertEqual(self.l1_pasid_entry(sh, l1_bdf), (PGTT_NESTED, fs3.root))
        self.unplug(qt, mon, 'td2')
        self.unplug(qt, mon, 'tdb', rp=RP_B_BDF)

        # No HWPT of L2's QEMU outlives the device.
        out, _ = sh.run('cat /tmp/l2-trace.log')
        self.trace = out
        # iommufd reuses ids: follow allocations and frees in order (vfio's
        # through QEMU's backend, ours traced by the device).
        live, allocated = set(), 0
        for m in re.finditer(r'iommufd_backend_alloc_hwpt .*out_hwpt=(\d+) \(0\)|'
                             r'iommufd_backend_free_id .* id=(\d+) \(0\)|'
                             r'vtd_hw_nested_free .* hwpt (\d+) \(0\)', out):
            if m.group(1):
                allocated += 1
                live.add(m.group(1))
            else:
                live.discard(m.group(2) or m.group(3))
        self.log.info('%d HWPTs allocated; live after the last unplug: %s', allocated, live)
        self.assertGreaterEqual(allocated, 6, 'parents and nested HWPTs')
        self.assertEqual(live, set(), 'HWPTs left allocated after hot-unplug')

    @staticmethod
    def new_tables(qt, ram):
        """After a reset: new tables at 0x200000 that map IOVA to `ram` for
        the first device's requests without PASID, translation and the
        queue enabled, the caches invalidated.  (ScalableVtd, first stage)."""
        vtd = ScalableVtd(qt, table_base=0x200000, table_limit=0x280000)
        fs = vtd.first_stage()
        fs.map_4k(IOVA, ram)
        pdir = vtd.new_pasid_dir()
        vtd.set_pasid_entry(pdir, 0, PGTT_FS, did=DID, flptptr=fs.root)
        vtd.set_context(1, 0, pdir)
        vtd.enable()
        vtd.enable_queue()
        vtd.invalidate(vtd.desc_context_global(), vtd.desc_pasid_cache_global())
        return vtd, fs

    def pasid_requests(self, qt, vtd, sh, pdir, l1_bdf, l1_bdf_b):
        """PASID `PASID` of both devices (same PASID directory): an emulated
        PASID capability, bind, translate, invalidate, unbind, bind again
        (left bound for the reset step)."""
        for bdf in (l1_bdf, l1_bdf_b):
            self.assertTrue(self.l1_config_word(sh, bdf, TD_PASID_CTRL) & 1,
                            f'L1 did not enable PASIDs on {bdf}')
            self.assertTrue(self.l1_config_word(sh, bdf, TD_ATS_CTRL) & 0x8000,
                            f'L1 did not enable ATS on {bdf}')
        for bdf in (TD_BDF, TD_B_BDF):
            caps = self.ext_caps(qt, bdf)
            self.assertEqual(caps.get(PASID_CAP_ID), PASID_CAP_AT,
                             f'no emulated PASID capability in L2 at {bdf:#x}: {caps}')
            ctl = ecam(bdf, PASID_CAP_AT + 4)
            cap = qt.readl(ctl) & 0xffff
            self.assertEqual(((cap >> 8) & 0x1f, cap & 6), (20, 6),
                             f'PASID capability register {cap:#x}: 20 bits, exec and priv')
            # Emulated: L2 disabling PASIDs does not disable them on the device.
            qt.writel(ctl, 0)
            self.assertEqual(qt.readl(ctl) >> 16, 0)
            qt.writel(ctl, 1 << 16)     # PASID Enable
            self.assertEqual(qt.readl(ctl) >> 16, 1)
        self.assertTrue(self.l1_config_word(sh, l1_bdf, TD_PASID_CTRL) & 1,
                        "L2's write reached the device's real PASID control")
        fs_p = vtd.first_stage()
        fs_p.map_4k(IOVA, RAM_C)
        vtd.set_pasid_entry(pdir, PASID, PGTT_FS, did=DID_P, flptptr=fs_p.root)
        vtd.set_context(1, 0, pdir, paside=True)
        vtd.set_context(2, 0, pdir, paside=True)
        vtd.invalidate(vtd.desc_context_global(), vtd.desc_piotlb_pasid(DID_P, PASID))
        C0 = self.pattern(2 * PAGES)
        for bar in (TD_BAR0, TD_BAR0_B):
            self.assertEqual(self.dma_read_pasid(qt, IOVA, PASID, bar=bar), C0,
                             f'PASID {PASID} DMA through its first stage, device 0x{bar:x}')
        for bdf in (l1_bdf, l1_bdf_b):
            self.assertEqual(self.l1_pasid_entry(sh, bdf, PASID), (PGTT_NESTED, fs_p.root),
                             f"L1's PASID {PASID} entry of {bdf} is not nested over L2's table")
        self.log.info('L1 %s PASID %d: nested over L2 table 0x%x', l1_bdf, PASID, fs_p.root)
        # Stale (the device's ATC, L0's IOTLB) until L2 invalidates the PASID.
        fs_p.map_4k(IOVA, RAM_A)
        self.assertEqual(self.dma_read_pasid(qt, IOVA, PASID), C0, 'new mapping before L2 invalidated')
        vtd.invalidate(vtd.desc_piotlb_page(DID_P, PASID, IOVA))
        for bar in (TD_BAR0, TD_BAR0_B):
            self.assertEqual(self.dma_read_pasid(qt, IOVA, PASID, bar=bar), self.pattern(0),
                             f'PASID {PASID}: old page after L2 invalidated, device 0x{bar:x}')
        # Unbind: the entry cleared, a PASID-selective PASID-cache invalidation.
        vtd.set_pasid_entry(pdir, PASID, 0, present=False)
        vtd.invalidate(vtd.desc_pasid_cache_pasid(DID_P, PASID), vtd.desc_piotlb_pasid(DID_P, PASID))
        self.assertNotEqual(self.dma_read_pasid(qt, IOVA, PASID), 'ok', f'PASID {PASID} DMA unbound')
        self.assertIsNone(self.l1_pasid_entry(sh, l1_bdf, PASID, missing_ok=True),
                          f'PASID {PASID} still bound in L1 after L2 cleared its entry')
        # Bound again.
        vtd.set_pasid_entry(pdir, PASID, PGTT_FS, did=DID_P, flptptr=fs_p.root)
        vtd.invalidate(vtd.desc_pasid_cache_pasid(DID_P, PASID))
        self.assertEqual(self.dma_read_pasid(qt, IOVA, PASID), self.pattern(0), 'bound again')

    # -- host failures -----------------------------------------------------------
    # L2's QEMU runs with tests/guest/host-fail.c preloaded: a rule written to
    # L1's /tmp/host-fail makes its next iommufd or vfio request of a kind
    # fail; /tmp/host-fail.log has every such request with the kernel's answer.

    def rule(self, sh, rule):
        self.host_log(sh)           # what follows is this rule's
        out, rc = sh.run(f"echo '{rule}' > /tmp/host-fail")
        self.assertEqual(rc, 0, out)

    def host_log(self, sh):
        """The host-fail log lines since the last call (all of them: self.host_lines)."""
        out, rc = sh.run('cat /tmp/host-fail.log')
        self.assertEqual(rc, 0, out)
        lines = [l for l in out.splitlines() if l.strip()]
        new, self.host_lines = lines[len(self.host_lines):], lines
        return new

    def injected(self, sh, name, count=1):
        """The log since the last look: `count` requests `name` were failed."""
        lines = self.host_log(sh)
        failed = [l for l in lines if l.endswith(' injected')]
        self.assertEqual([l.split()[0] for l in failed], [name] * count,
                         f'injected failures: {lines}')
        self.log.info('%s refused: %s', name, '; '.join(lines))
        return lines

    def submit_failing(self, vtd, descs, at, what):
        """Submit `descs` and a wait: the queue must stop at descs[at] with an
        invalidation queue error, the wait not done.  Returns the wait."""
        self.marker += 1
        wait = (self.wait_status, 0x6a000000 | self.marker)
        start = vtd.queue_tail
        vtd.submit(*descs, vtd.desc_wait(*wait))
        fsts = vtd.reg(FSTS)
        if not fsts & FSTS_IQE:
            log, _ = self.sh.run('cat /tmp/host-fail.log /tmp/l2-trace.log')
            self.fail(f'{what} refused: no invalidation queue error (FSTS {fsts:#x}); '
                      f'requests and trace:\n{log}')
        self.assertEqual(vtd.reg(IQH, 8), vtd.queue_index_reg((start + at) % vtd.queue_entries),
                         f'{what} refused: IQH is not at the descriptor that asked for it')
        self.assertNotEqual(struct.unpack('<I', vtd.qt.memread(wait[0], 4))[0], wait[1],
                            f'{what} refused: the wait behind the failed descriptor completed')
        return wait

    def resume(self, vtd, wait, what):
        """Clear FSTS.IQE: the queue is fetched again from the failed
        descriptor and must complete up to the wait."""
        vtd.qt.writel(VTD_BASE + FSTS, FSTS_IQE)
        self.assertFalse(vtd.reg(FSTS) & FSTS_IQE, f'{what}: the retry failed again')
        self.assertEqual(struct.unpack('<I', vtd.qt.memread(wait[0], 4))[0], wait[1],
                         f'{what}: the wait did not complete after the retry')
        self.assertEqual(vtd.reg(IQH, 8), vtd.queue_index_reg(vtd.queue_tail))

    def alive(self, mon, qt):
        self.assertIn('running', mon.cmd('info status'), "L2's QEMU is not running")
        self.assertEqual(qt.readl(TD_BAR0 + TD_ID), 0x44545652, "L2's device does not answer")

    def l1_pgtt(self, sh, bdf, pasid=0):
        entry = self.l1_pasid_entry(sh, bdf, pasid, missing_ok=True)
        return entry and entry[0]

    def live_hwpts(self, sh):
        """HWPT ids allocated and not destroyed, by the kernel's answers in
        the host-fail log (iommufd reuses ids: in order)."""
        self.host_log(sh)
        live = set()
        for line in self.host_lines:
            m = re.match(r'(HWPT_ALLOC|DESTROY) ret=0 .*\bid=(\d+)', line)
            if m and m.group(1) == 'HWPT_ALLOC':
                live.add(int(m.group(2)))
            elif m:
                live.discard(int(m.group(2)))
        return live

    def host_failures(self, qt, mon, sh, l1_bdf, _l1_bdf_b):
        """Each iommufd/vfio request L2's intel-iommu makes, refused in turn."""
        self.host_lines, self.marker, self.sh = [], 0, sh
        self.pci_setup(qt)
        # One device (the other's requests would take turns with its own).
        self.unplug(qt, mon, 'tdb', rp=RP_B_BDF)
        vtd = ScalableVtd(qt, table_base=0x100000, table_limit=0x200000)
        self.wait_status = vtd.alloc_page()
        for i, ram in enumerate((RAM_A, RAM_B, RAM_C)):
            for p in range(PAGES):
                qt.memwrite(ram + p * 0x1000, self.pattern(i * PAGES + p))
        A, B, C = ([self.pattern(i * PAGES + p) for p in range(PAGES)] for i in range(3))
        fs = vtd.first_stage()
        for p in range(PAGES):
            fs.map_4k(IOVA + p * 0x1000, RAM_A + p * 0x1000)
        vtd.enable()
        vtd.enable_queue()
        # (after enabling: translation enabled over present entries binds them)
        pdir = vtd.new_pasid_dir()
        vtd.set_pasid_entry(pdir, 0, PGTT_FS, did=DID, flptptr=fs.root)
        vtd.set_context(1, 0, pdir)

        # 1. The nested HWPT of the RID_PASID entry cannot be allocated: the
        # queue stops at the PASID-cache invalidation that asked for it, DMA
        # is blocked (neither the guest's table nor its RAM untranslated);
        # clearing IQE retries it, and the host takes it now.
        self.rule(sh, 'HWPT_ALLOC 1 ENOMEM')
        wait = self.submit_failing(vtd, (vtd.desc_context_global(), vtd.desc_pasid_cache_global(),
                                         vtd.desc_piotlb_pasid(DID, 0)), 1, 'HWPT_ALLOC')
        self.injected(sh, 'HWPT_ALLOC')
        self.assertEqual(self.dma_read(qt, IOVA), 'dma-error', 'DMA after the refused allocation')
        self.assertNotEqual(self.l1_pgtt(sh, l1_bdf), PGTT_NESTED)
        self.alive(mon, qt)
        self.resume(vtd, wait, 'HWPT_ALLOC')
        self.assertEqual(self.dma_read(qt, IOVA), A[0], 'DMA after the retried binding')
        self.assertEqual(self.l1_pgtt(sh, l1_bdf), PGTT_NESTED)

        # 2. The attach (replace) of a new nested HWPT refused: the new HWPT
        # is destroyed, the old one detached and destroyed, DMA blocked.
        fs2 = vtd.first_stage()
        for p in range(PAGES):
            fs2.map_4k(IOVA + p * 0x1000, RAM_C + p * 0x1000)
        vtd.set_pasid_entry(pdir, 0, PGTT_FS, did=DID, flptptr=fs2.root)
        self.rule(sh, 'ATTACH 1 EBUSY')
        wait = self.submit_failing(vtd, (vtd.desc_pasid_cache_pasid(DID, 0),
                                         vtd.desc_piotlb_pasid(DID, 0)), 0, 'ATTACH')
        lines = self.injected(sh, 'ATTACH')
        new = [re.search(r' id=(\d+)', l).group(1) for l in lines if l.startswith('HWPT_ALLOC ret=0')]
        self.assertEqual(len(new), 1, lines)
        self.assertIn(f'DESTROY ret=0 errno=0 id={new[0]}', lines, 'the unattached HWPT was not freed')
        self.assertEqual(self.dma_read(qt, IOVA), 'dma-error', 'DMA after the refused attach')
        self.alive(mon, qt)
        self.resume(vtd, wait, 'ATTACH')
        for p in range(PAGES):
            self.assertEqual(self.dma_read(qt, IOVA + p * 0x1000), C[p], f'page {p} after the retry')

        # 3. A forwarded invalidation the host carries out in part: of three
        # pages, the first is invalidated, then the host fails.  The queue
        # stops at the second descriptor; the first page is fresh, the others
        # stale until the retry.
        for p in range(PAGES):
            fs2.map_4k(IOVA + p * 0x1000, RAM_B + p * 0x1000)
        self.rule(sh, 'HWPT_INVALIDATE 1 EIO 1')
        wait = self.submit_failing(vtd, [vtd.desc_piotlb_page(DID, 0, IOVA + p * 0x1000)
                                         for p in range(PAGES)], 1, 'HWPT_INVALIDATE')
        lines = self.injected(sh, 'HWPT_INVALIDATE')
        self.assertEqual(len([l for l in lines if l.startswith('HWPT_INVALIDATE')]), 1,
                         f'the three pages were not forwarded in one call: {lines}')
        self.assertEqual([self.dma_read(qt, IOVA + p * 0x1000) for p in range(PAGES)],
                         [B[0], C[1], C[2]], 'pages after a partly carried out invalidation')
        self.alive(mon, qt)
        self.resume(vtd, wait, 'HWPT_INVALIDATE')
        self.assertEqual([self.dma_read(qt, IOVA + p * 0x1000) for p in range(PAGES)], B)

        # 4. A PASID's attach refused.
        ctl = ecam(TD_BDF, PASID_CAP_AT + 4)
        qt.writel(ctl, 1 << 16)     # PASID Enable (emulated)
        fs_p = vtd.first_stage()
        fs_p.map_4k(IOVA, RAM_A)
        vtd.set_pasid_entry(pdir, PASID, PGTT_FS, did=DID_P, flptptr=fs_p.root)
        vtd.set_context(1, 0, pdir, paside=True)
        self.rule(sh, 'ATTACH_PASID 1 ENOMEM')
        wait = self.submit_failing(vtd, (vtd.desc_context_global(),
                                         vtd.desc_pasid_cache_pasid(DID_P, PASID)), 1, 'ATTACH_PASID')
        lines = self.injected(sh, 'ATTACH_PASID')
        new = [re.search(r' id=(\d+)', l).group(1) for l in lines if l.startswith('HWPT_ALLOC ret=0')]
        self.assertEqual(len(new), 1, lines)
        self.assertIn(f'DESTROY ret=0 errno=0 id={new[0]}', lines, 'the unattached HWPT was not freed')
        self.assertNotEqual(self.dma_read_pasid(qt, IOVA, PASID), 'ok', 'PASID DMA after the refusal')
        self.assertIsNone(self.l1_pgtt(sh, l1_bdf, PASID))
        self.alive(mon, qt)
        self.resume(vtd, wait, 'ATTACH_PASID')
        self.assertEqual(self.dma_read_pasid(qt, IOVA, PASID), A[0], 'PASID DMA after the retry')
        self.assertEqual(self.l1_pgtt(sh, l1_bdf, PASID), PGTT_NESTED)

        # 5. A PASID's detach refused, every time: the queue stops (the guest
        # must not take the PASID for unbound; the host still translates it
        # with the old table), and stops again while the host refuses; once
        # the host takes the detach the HWPT is freed.
        vtd.set_pasid_entry(pdir, PASID, 0, present=False)
        self.rule(sh, 'DETACH_PASID * EBUSY')
        wait = self.submit_failing(vtd, (vtd.desc_pasid_cache_pasid(DID_P, PASID),
                                         vtd.desc_piotlb_pasid(DID_P, PASID)), 0, 'DETACH_PASID')
        self.injected(sh, 'DETACH_PASID', count=2)       # the binding, then the clean-up
        self.assertEqual(self.l1_pgtt(sh, l1_bdf, PASID), PGTT_NESTED)
        self.alive(mon, qt)
        qt.writel(VTD_BASE + FSTS, FSTS_IQE)
        self.assertTrue(vtd.reg(FSTS) & FSTS_IQE, 'the retry the host refused again did not stop the queue')
        self.injected(sh, 'DETACH_PASID', count=2)
        self.rule(sh, '')
        self.resume(vtd, wait, 'DETACH_PASID')
        self.assertIsNone(self.l1_pgtt(sh, l1_bdf, PASID), 'PASID still bound after the detach')
        self.assertNotEqual(self.dma_read_pasid(qt, IOVA, PASID), 'ok', 'PASID DMA after the detach')

        # 6. A destroy refused (the old nested HWPT, after a replace by
        # pass-through): the guest's request was carried out and it sees no
        # error; the HWPT (attached to nothing) is destroyed again at the next
        # binding change, here in step 7.
        vtd.set_pasid_entry(pdir, 0, PGTT_PT, did=DID)
        self.rule(sh, 'DESTROY 1 EBUSY')
        vtd.invalidate(vtd.desc_pasid_cache_pasid(DID, 0), vtd.desc_piotlb_pasid(DID, 0))
        lines = self.injected(sh, 'DESTROY')
        unfreed = [re.search(r' id=(\d+)', l).group(1) for l in lines if l.endswith(' injected')]
        self.assertEqual(self.dma_read(qt, RAM_A), A[0], 'pass-through DMA')
        self.assertEqual(self.l1_pgtt(sh, l1_bdf), PGTT_SS)
        self.alive(mon, qt)

        # 7. Outside the queue, where no descriptor can stop: translation
        # disabled (GCMD.TE), and the host refuses the parent's attach.  The
        # device is blocked and the guest finds a primary fault record
        # (reason 58h, its source-id); enabling translation binds it again.
        vtd.set_pasid_entry(pdir, 0, PGTT_FS, did=DID, flptptr=fs2.root)
        vtd.invalidate(vtd.desc_pasid_cache_pasid(DID, 0))
        self.assertEqual(self.dma_read(qt, IOVA), B[0])
        self.assertIn(f'DESTROY ret=0 errno=0 id={unfreed[0]}', self.host_log(sh),
                      'the HWPT whose destroy was refused was not destroyed again')
        self.rule(sh, 'ATTACH 1 EIO')
        qt.writel(VTD_BASE + GCMD, vtd.reg(GSTS) & 0x96ffffff & ~GCMD_TE)
        self.assertFalse(vtd.reg(GSTS) & GCMD_TE)
        self.injected(sh, 'ATTACH')
        self.assertTrue(vtd.reg(FSTS) & FSTS_PPF, 'no primary fault after the refused binding')
        faults = vtd.pending_faults()
        self.assertEqual([(r['reason'], r['sid'], r['pasid']) for _, r in faults],
                         [(0x58, TD_BDF, None)], faults)
        self.assertEqual(self.dma_read(qt, RAM_B), 'dma-error', 'DMA after the refused binding')
        self.alive(mon, qt)
        vtd.clear_fault_record(faults[0][0])
        self.assertFalse(vtd.reg(FSTS) & FSTS_PPF)
        vtd._gcmd(GCMD_TE, GCMD_TE)
        self.assertEqual(self.dma_read(qt, IOVA), B[0], 'DMA once translation is on again')

        # 8. The same at a reset.  The fault record names the function by
        # the bus number it has then: none yet (firmware has not numbered the
        # buses again), so only its device and function are checked.
        self.rule(sh, 'ATTACH 1 EIO')
        self.assertEqual(mon.cmd('system_reset'), '')
        self.pci_setup(qt, devices=((RP_BDF, TD_BDF, TD_BAR0),))
        self.injected(sh, 'ATTACH')
        faults = vtd.pending_faults()
        self.assertEqual([(r['reason'], r['sid'] & 0xff, r['pasid']) for _, r in faults],
                         [(0x58, TD_BDF & 0xff, None)], faults)
        self.assertEqual(self.dma_read(qt, RAM_B), 'dma-error', 'DMA after the refused binding')
        self.alive(mon, qt)
        vtd2, _ = self.new_tables(qt, RAM_C)
        self.assertEqual(self.dma_read(qt, IOVA), C[0], 'DMA once bound again')

        # 9. A device plugged in while translation is on, whose nested HWPT
        # the host refuses (vfio's nesting parent is the first allocation, the
        # nested HWPT the second): plugged, blocked, a primary fault record;
        # the guest's next PASID-cache invalidation binds it.
        self.unplug(qt, mon, 'td')
        vtd2.clear_fault_record(faults[0][0])
        self.rule(sh, 'HWPT_ALLOC 2 ENOMEM')
        out = mon.cmd(f'device_add vfio-pci,host=0000:{l1_bdf},iommufd=ifd0,bus=rp0,id=td2,'
                      'rombar=0')
        self.assertNotIn('rror', out, 'device_add')
        lines = self.injected(sh, 'HWPT_ALLOC')
        parent = [re.search(r' id=(\d+)', l).group(1) for l in lines if l.startswith('HWPT_ALLOC ret=0')]
        self.assertTrue(any(l.startswith(f'HWPT_ALLOC ret=-1 errno=12 pt={parent[0]} ')
                            for l in lines), f'not the nested HWPT over the parent: {lines}')
        self.slot_power(qt, True)
        qt.pci_cfg_writel(TD_BDF, 0x10, TD_BAR0)
        qt.pci_cfg_writel(TD_BDF, 0x04, 0x6)
        faults = vtd2.pending_faults()
        self.assertEqual([(r['reason'], r['sid'], r['pasid']) for _, r in faults],
                         [(0x58, TD_BDF, None)], faults)
        self.assertEqual(self.dma_read(qt, IOVA), 'dma-error', 'DMA of the device plugged in')
        self.alive(mon, qt)
        vtd2.invalidate(vtd2.desc_pasid_cache_pasid(DID, 0))
        self.assertEqual(self.dma_read(qt, IOVA), C[0], 'DMA once bound')

        # Nothing left allocated after the device goes.
        self.unplug(qt, mon, 'td2')
        self.assertEqual(self.live_hwpts(sh), set(), 'HWPTs left allocated')

    # -- migration ---------------------------------------------------------------

    def wait_monitor(self, mon, command, text, what, timeout=120):
        deadline = time.monotonic() + timeout
        while True:
            out = mon.cmd(command)
            if text in out:
                return out
            if time.monotonic() > deadline:
                self.fail(f'{what}: no {text!r} in {command!r}: {out}')
            time.sleep(0.5)

    def migration(self, qt, mon, sh, l1_bdf, l1_bdf_b):
        """Nested bindings replayed after a migration.  vfio cannot migrate
        the test device (no migration uAPI in its driver: a blocker for
        normal migration), but QEMU's cpr-reboot mode takes a suspended
        guest: L2 binds PASID 0 and PASID 5 of both devices, suspends (S3),
        is saved to a file and quits; a new L2 QEMU opens the devices again
        (vfio: the nesting parent only) and loads the file.  Its intel-iommu's
        post_load must bind them again, before the guest runs: L1 shows the
        nested entries, and DMA goes through L2's first-stage tables."""
        self.pci_setup(qt)
        vtd = ScalableVtd(qt, table_base=0x100000, table_limit=0x200000)
        for p in range(PAGES):
            qt.memwrite(RAM_A + p * 0x1000, self.pattern(p))
            qt.memwrite(RAM_C + p * 0x1000, self.pattern(2 * PAGES + p))
        fs = vtd.first_stage()
        fs.map_4k(IOVA, RAM_A)
        fs_p = vtd.first_stage()
        fs_p.map_4k(IOVA, RAM_C)
        pdir = vtd.new_pasid_dir()
        vtd.set_pasid_entry(pdir, 0, PGTT_FS, did=DID, flptptr=fs.root)
        vtd.set_pasid_entry(pdir, PASID, PGTT_FS, did=DID_P, flptptr=fs_p.root)
        for bus, bdf in ((1, TD_BDF), (2, TD_B_BDF)):
            vtd.set_context(bus, 0, pdir, paside=True)
            qt.writel(ecam(bdf, PASID_CAP_AT + 4), 1 << 16)     # PASID Enable (emulated)
        vtd.enable()
        vtd.enable_queue()
        vtd.invalidate(vtd.desc_context_global(), vtd.desc_pasid_cache_global())
        expect = {0: fs.root, PASID: fs_p.root}
        for bdf in (l1_bdf, l1_bdf_b):
            for pasid, root in expect.items():
                self.assertEqual(self.l1_pasid_entry(sh, bdf, pasid), (PGTT_NESTED, root))
        self.assertEqual(self.dma_read(qt, IOVA), self.pattern(0))
        self.assertEqual(self.dma_read_pasid(qt, IOVA, PASID, bar=TD_BAR0_B), self.pattern(2 * PAGES))

        # Suspend to RAM as a guest does (ICH9 PM I/O at 0x600, PM1a_CNT:
        # SLP_TYP 1 = S3, SLP_EN), then cpr-reboot migration to a file.
        qt.pci_cfg_writel(LPC_BDF, 0x40, 0x600)
        qt.pci_cfg_writel(LPC_BDF, 0x44, 0x80)
        qt.cmd('outw 0x604 0x2400')
        self.wait_monitor(mon, 'info status', 'suspended', 'S3')
        self.assertEqual(mon.cmd('migrate_set_parameter mode cpr-reboot'), '')
        out = mon.cmd('migrate file:/tmp/l2-cpr.mig')
        self.assertNotIn('rror', out, 'migrate')
        self.wait_monitor(mon, 'info migrate', 'completed', 'migration to the file')
        sh.run('echo "-incoming defer -D /tmp/l2-trace-2.log" > /tmp/l2-next')
        mon.quit()

        # The destination: the devices are attached to vfio's nesting
        # parents only until the state is loaded.
        mon.banner(300)
        for bdf in (l1_bdf, l1_bdf_b):
            self.assertEqual(self.l1_pgtt(sh, bdf), PGTT_SS, f'{bdf} before the load')
            self.assertIsNone(self.l1_pgtt(sh, bdf, PASID), f'{bdf} PASID {PASID} before the load')
        self.assertEqual(mon.cmd('migrate_set_parameter mode cpr-reboot'), '')
        out = mon.cmd('migrate_incoming file:/tmp/l2-cpr.mig')
        self.assertNotIn('rror', out, 'migrate_incoming')
        self.wait_monitor(mon, 'info status', 'suspended', 'the loaded guest')
        for bdf in (l1_bdf, l1_bdf_b):
            for pasid, root in expect.items():
                self.assertEqual(self.l1_pasid_entry(sh, bdf, pasid), (PGTT_NESTED, root),
                                 f'{bdf} PASID {pasid} not bound again after the load')
        self.log.info('after the load: both devices, PASIDs 0 and %d, nested over L2 tables '
                      '0x%x and 0x%x', PASID, fs.root, fs_p.root)
        trace, _ = sh.run('cat /tmp/l2-trace-2.log')
        self.log.info('destination trace:\n%s', trace)
        # The assigned functions' own configuration (BARs, command) is the
        # device's, not migrated: set up again as firmware does at resume.
        # DMA goes through L2's first-stage tables as before.
        self.log.info('TD ID after the load: 0x%x', qt.readl(TD_BAR0 + TD_ID))
        self.pci_setup(qt)
        self.assertEqual(self.dma_read(qt, IOVA), self.pattern(0), 'DMA after the load')
        self.assertEqual(self.dma_read_pasid(qt, IOVA, PASID, bar=TD_BAR0_B),
                         self.pattern(2 * PAGES), 'PASID DMA after the load')

    # -- the tests ---------------------------------------------------------------

    def l0_vm(self, l0_iommu):
        vm = self.q35_vm(iommu=l0_iommu, memory=self.L1_MEMORY)
        vm.add_args('-device', 'rviommu-testdev,addr=05.0', '-device', 'rviommu-testdev,addr=06.0',
                    '-device', 'virtio-serial-pci,id=vser,disable-legacy=on,iommu_platform=on')
        for name, port in (('qt', 'l2-qtest'), ('mon', 'l2-monitor'), ('sh', 'l1-shell')):
            path = os.path.join(self.sockdir, name)
            vm.add_args('-chardev', f'socket,id=rv{name},path={path},server=on,wait=off',
                        '-device', f'virtserialport,bus=vser.0,chardev=rv{name},'
                                   f'name=rviommu.{port}')
        return vm

    def boot_l1(self, vm, during, l1_append='intel_iommu=on,sm_on', host_fail=False):
        files = self.nested_qemu_files() + (self.host_fail_files() if host_fail else [])
        initrd = self.kit.initramfs('l1-qtest', self.l1_body('l1-qtest.sh'),
                                    files=files, kmods='none')
        append = f'{l1_append} rviommu.l2_iommu={L2_IOMMU} rviommu.l2_timeout=600'
        if host_fail:
            append += ' rviommu.l2_host_fail=1'
        return self.boot_and_collect(vm, initrd, append, kernel=self.kit.iommufd_kernel,
                                     during=during)

    def test_host_address_width_checked_in_every_mode(self):
        """As the C device, in every mode: a host IOMMU that cannot take
        aw-bits wide IOVAs is refused (L0's VT-d has 39 bits here; legacy
        mode, vfio's legacy container)."""
        vm = self.l0_vm('intel-iommu,aw-bits=39,caching-mode=on')

        def during():
            sh = Shell(Channel(os.path.join(self.sockdir, 'sh')))
            sh.wait_ready(600)
            out, _ = sh.run('ls /sys/bus/pci/drivers/vfio-pci/')
            bdf = sorted(re.findall(r'0000:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]', out))[0]
            base = f'echo quit | {L2_CHECK} -monitor stdio'
            out, rc = sh.run(f'{base} -device intel-iommu,caching-mode=on '
                             f'-device vfio-pci,host={bdf} 2>&1')
            self.log.info('aw-bits 48 on a 39-bit host: exit %d: %s', rc, out.strip())
            self.assertNotEqual(rc, 0)
            self.assertIn('aw-bits 48 > host aw-bits 39', out)
            out, rc = sh.run(f'{base} -device intel-iommu,caching-mode=on,aw-bits=39 '
                             f'-device vfio-pci,host={bdf} 2>&1')
            self.assertEqual(rc, 0, f'aw-bits 39 on a 39-bit host: {out}')
            sh.run('touch /tmp/l2-skip')

        res = self.boot_l1(vm, during, l1_append='intel_iommu=on')
        self.assertGuestPassed(res)

    def test_qtest_driven_l2_hardware_nested(self):
        vm = self.l0_vm(L0_IOMMU)
        self.trace = ''
        res = self.boot_l1(vm, self.drive)
        self.log.info('L2 ran %s s in L1', res.value('L1-L2-SECONDS'))
        self.assertGuestPassed(res)
        log = self.l2_qemu_log(res)
        self.assertEqual([l for l in log if 'intel-iommu' in l], [],
                         'L1 QEMU reported intel-iommu errors')
        # One IOMMU_HWPT_INVALIDATE per forwarded batch and nested HWPT: the
        # three-page batch of step 2 once for each device.
        calls = [(int(e), int(c)) for e, c in
                 re.findall(r'vtd_hw_nested_invalidate .*entries (\d+) in (\d+) '
                            r'IOMMU_HWPT_INVALIDATE calls \(0\)', self.trace)]
        self.log.info('forwarded invalidation batches (entries, calls): %s', calls)
        self.assertEqual(calls.count((PAGES, 1)), 2, calls)
        self.assertTrue(all(c == 1 for _, c in calls), calls)
        # The PASID's invalidations (PASID-selective at the bind, then the
        # page) went to its own nested HWPT, one call each per device.
        pasid_calls = re.findall(rf'vtd_hw_nested_invalidate .*pasid {PASID} hwpt \d+ entries 1 in 1 ',
                                 self.trace)
        self.assertEqual(len(pasid_calls), 4, self.trace)

    def test_host_failures_reach_the_guest(self):
        """Every iommufd/vfio request of L2's intel-iommu refused in turn (an
        LD_PRELOAD library in L1): the guest sees an invalidation queue error
        at the descriptor that asked (a fault record outside the queue),
        QEMU keeps running, a retry works, no HWPT is left behind."""
        vm = self.l0_vm(L0_IOMMU)
        self.host_lines = []
        res = self.boot_l1(vm, lambda: self.drive(self.host_failures, config_errors=False),
                           host_fail=True)
        self.assertGuestPassed(res)

    def test_bindings_replayed_after_migration(self):
        vm = self.l0_vm(L0_IOMMU)
        res = self.boot_l1(vm, lambda: self.drive(self.migration, config_errors=False))
        self.assertGuestPassed(res)


if __name__ == '__main__':
    RvIommuGuestTest.main()
