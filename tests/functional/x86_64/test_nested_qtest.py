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
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rviommu_kit import RvIommuGuestTest  # noqa: E402
from vtd_qtest import (Channel, StreamQtest, ScalableVtd, QtestError, ecam, enable_ecam,  # noqa: E402
                       PGTT_FS, PGTT_PT, TD_ID, TD_BAR0, TD_READ, TD_IOVA, TD_LEN, TD_PASID,
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

    def drive(self):
        ch = {n: Channel(os.path.join(self.sockdir, n)) for n in ('qt', 'mon', 'sh')}
        sh = Shell(ch['sh'])
        # L1's shell answers once L1 is up; the function vfio-pci holds is the device.
        sh.wait_ready(600)
        out, _ = sh.run('ls /sys/bus/pci/drivers/vfio-pci/')
        bdfs = sorted(re.findall(r'0000:([0-9a-f]{2}:[0-9a-f]{2}\.[0-7])', out))
        self.assertEqual(len(bdfs), 2, f'functions bound to vfio-pci in L1: {out!r}')
        self.config_errors(sh, '0000:' + bdfs[0])
        sh.run('touch /tmp/l2-go')
        mon = Monitor(ch['mon'])
        mon.banner(300)
        qt = StreamQtest(ch['qt'])
        self.scenario(qt, mon, sh, *bdfs)
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
        vtd2 = ScalableVtd(qt, table_base=0x200000, table_limit=0x280000)
        fs3 = vtd2.first_stage()
        fs3.map_4k(IOVA, RAM_A)
        pdir = vtd2.new_pasid_dir()
        vtd2.set_pasid_entry(pdir, 0, PGTT_FS, did=DID, flptptr=fs3.root)
        vtd2.set_context(1, 0, pdir)
        vtd2.enable()
        vtd2.enable_queue()
        vtd2.invalidate(vtd2.desc_context_global(), vtd2.desc_pasid_cache_global())
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
        # iommufd reuses ids: follow allocations and frees in order.
        live, allocated = set(), 0
        for m in re.finditer(r'iommufd_backend_(alloc_hwpt .*out_hwpt|free_id .* id)=(\d+) \(0\)',
                             out):
            if m.group(1).startswith('alloc'):
                allocated += 1
                live.add(m.group(2))
            else:
                live.discard(m.group(2))
        self.log.info('%d HWPTs allocated; live after the last unplug: %s', allocated, live)
        self.assertGreaterEqual(allocated, 6, 'parents and nested HWPTs')
        self.assertEqual(live, set(), 'HWPTs left allocated after hot-unplug')

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

    def boot_l1(self, vm, during, l1_append='intel_iommu=on,sm_on'):
        initrd = self.kit.initramfs('l1-qtest', self.l1_body('l1-qtest.sh'),
                                    files=self.nested_qemu_files(), kmods='none')
        append = f'{l1_append} rviommu.l2_iommu={L2_IOMMU} rviommu.l2_timeout=600'
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


if __name__ == '__main__':
    RvIommuGuestTest.main()
