#!/usr/bin/env python3
#
# QEMU in QEMU with device assignment: L0 (our QEMU, TCG, -cpu max) runs the iommufd
# kernel (scripts/guest/kernel.sh) behind our intel-iommu in modern scalable mode with
# caching mode; L1 binds the virtio-blk function L0 gives it to vfio-pci and runs our
# QEMU again (KVM, nested SVM) with that function assigned to an L2 guest, which reads
# the whole disk (tests/guest/dma-read.sh) and checks its sha256.
#
# Every DMA of the assigned function goes through L0's emulated VT-d, programmed by
# L1's intel-iommu driver for vfio (legacy container or iommufd). With an intel-iommu
# in L2 too (caching-mode=on), L2's mappings reach L1's vfio through our MAP/UNMAP
# notifiers (shadowing): the baseline of hardware nested translation.
#
# Skipped when the iommufd kernel has not been built.
#
# SPDX-License-Identifier: GPL-2.0-or-later

import os
import shutil
import subprocess

from rviommu_kit import RvIommuGuestTest, repo_dir


class NestedVfio(RvIommuGuestTest):

    L0_IOMMU = 'intel-iommu,x-scalable-mode=modern,caching-mode=on'
    L1_APPEND = 'intel_iommu=on,sm_on'
    L1_MEMORY = '2G'
    # L0 boots L1 (~6 s), L1 boots L2 under nested KVM, L2 reads 16 MiB.
    GUEST_TIMEOUT = 420

    def setUp(self):
        super().setUp()
        if self.kit.iommufd_kernel is None:
            self.skipTest(self.kit.iommufd_kernel_why)

    def l1_files(self):
        """(host, guest) pairs: our QEMU without debug info, its libraries and
        loader, the firmware, and L2's kernel and initramfs."""
        stripped = os.path.join(self.workdir, 'qemu-system-x86_64')
        subprocess.run(['strip', '--strip-debug', '-o', stripped, self.qemu_bin], check=True)
        files = [(stripped, '/usr/bin/qemu-system-x86_64')]
        ldd = subprocess.run(['ldd', self.qemu_bin], check=True, capture_output=True,
                             text=True).stdout
        for line in ldd.splitlines():
            parts = line.split()
            path = parts[2] if '=>' in parts and len(parts) > 2 else parts[0]
            if path.startswith('/'):
                files.append((os.path.realpath(path), path))
        fw = self.kit.firmware_dir
        for name in ('bios-256k.bin', 'linuxboot_dma.bin', 'kvmvapic.bin'):
            files.append((os.path.join(fw, name), f'/usr/share/qemu/{name}'))
        files.append((self.kit.kernel, '/l2/vmlinuz'))
        files.append((self.kit.dma_initramfs(), '/l2/initrd.gz'))
        return files

    def run_stack(self, l2_iommu='none', backend='legacy', l2_append=''):
        body = (repo_dir() / 'tests' / 'guest' / 'l1-vfio.sh').read_text()
        initrd = self.kit.initramfs('l1-vfio', body, files=self.l1_files(), kmods='none')
        vm = self.q35_vm(iommu=self.L0_IOMMU, memory=self.L1_MEMORY)
        self.add_disk(vm, self.kit.disk)
        append = (f'{self.L1_APPEND} rviommu.l2_iommu={l2_iommu} rviommu.l2_backend={backend}'
                  f' rviommu.sha256={self.kit.disk_sha256} rviommu.l2_timeout=240')
        if l2_append:
            append += ' rviommu.l2_append=' + l2_append.replace(' ', '+')
        res = self.boot_and_collect(vm, initrd, append, kernel=self.kit.iommufd_kernel)
        self.log.info('L2 (%s, %s) ran %s s in L1; L2 read the disk in %s s',
                      l2_iommu, backend, res.value('L1-L2-SECONDS'),
                      res.value('L2-READ-SECONDS'))
        self.assertGuestPassed(res)
        self.assertEqual(res.value('L2-SHA256'), self.kit.disk_sha256,
                         'L2 read other data than the disk image through the assigned function')
        self.assertEqual(res.values.get('L1-DMAR-FAULT', []), [], 'DMAR faults in L1')
        self.assertEqual(res.values.get('L2-DMAR-FAULT', []), [], 'DMAR faults in L2')
        return res

    def test_l2_without_viommu_legacy_container(self):
        res = self.run_stack()
        self.assertEqual(res.value('L2-IOMMU-DOMAIN'), 'none')

    def test_l2_without_viommu_iommufd(self):
        self.run_stack(backend='iommufd')

    def test_l2_caching_mode_legacy_container(self):
        """Shadowing: L2's own intel-iommu (caching mode) maps through our
        MAP/UNMAP notifiers into L1's vfio container. (Linux makes
        second-stage DMA domains strict under caching mode.)"""
        res = self.run_stack(l2_iommu='caching-mode=on', l2_append='intel_iommu=on')
        self.assertEqual(res.value('L2-IOMMU-DOMAIN'), 'DMA')

    def test_l2_scalable_caching_mode_iommufd(self):
        """The same in scalable mode (second stage through RID_PASID, 256-bit
        PASID-based invalidations) with vfio on iommufd."""
        res = self.run_stack(l2_iommu='x-scalable-mode=on,caching-mode=on',
                             backend='iommufd', l2_append='intel_iommu=on,sm_on')
        self.assertEqual(res.value('L2-IOMMU-DOMAIN'), 'DMA')

    def l2_qemu_log(self, res):
        """What L1's QEMU (the one running L2) printed on stderr."""
        out, inside = [], False
        for line in res.lines:
            if 'RVIOMMU-L1-L2-QEMU-LOG-BEGIN' in line:
                inside = True
            elif 'RVIOMMU-L1-L2-QEMU-LOG-END' in line:
                inside = False
            elif inside:
                out.append(line)
        return out

    def test_l2_hardware_nested(self):
        """Hardware nested translation: L2's intel-iommu in modern mode with
        caching mode hands L2's first-stage tables to L1's iommufd (a nested
        HWPT on the nesting parent vfio allocated); L0's VT-d walks them
        nested over L1's stage 2. Shadowing is refused with first stage, so
        L2's DMA can only work through the nesting."""
        res = self.run_stack(l2_iommu='x-scalable-mode=modern,caching-mode=on',
                             backend='iommufd', l2_append='intel_iommu=on,sm_on')
        self.assertEqual(res.value('L2-IOMMU-DOMAIN'), 'DMA-FQ')
        log = self.l2_qemu_log(res)
        self.assertEqual([l for l in log if 'intel-iommu' in l], [],
                         'L1 QEMU reported intel-iommu errors')


if __name__ == '__main__':
    RvIommuGuestTest.main()
