#!/usr/bin/env python3
#
# DMA remapping through the (Rust) intel-iommu: a Debian 6.12 guest reads a whole
# virtio-blk disk (iommu_platform=on) and checks its sha256, in the kernel's lazy,
# strict and pass-through DMA modes, in legacy and scalable mode (second and first
# stage), plus a baseline without an IOMMU and a check
# that a bad property value is refused.
#
# The guest kit (kernel, initramfs, firmware, disk image) comes from
# scripts/guest/kit.sh; run with tests/functional/run.sh.
#
# SPDX-License-Identifier: GPL-2.0-or-later

import subprocess

from rviommu_kit import RvIommuGuestTest


class RvIommuDma(RvIommuGuestTest):

    IOMMU = 'intel-iommu'

    def read_disk(self, iommu, append, iommu_platform=True):
        vm = self.q35_vm(iommu=iommu)
        self.add_disk(vm, self.kit.disk, iommu_platform=iommu_platform)
        res = self.boot_and_collect(
            vm, self.kit.initrd_dma,
            f'{append} rviommu.sha256={self.kit.disk_sha256}'.strip())
        self.log.info('disk read took %s s in the guest', res.value('READ-SECONDS'))
        self.assertGuestPassed(res)
        self.assertEqual(res.value('SHA256'), self.kit.disk_sha256,
                         'sha256 of /dev/vda differs from the disk image')
        self.assertEqual(res.values.get('DMAR-FAULT', []), [], 'DMAR faults in dmesg')
        return res

    def check_remapping(self, res, domain):
        for msg in ('DMAR: IOMMU enabled',
                    'DMAR: Intel(R) Virtualization Technology for Directed I/O'):
            self.assertTrue(res.dmesg_has(msg), f'"{msg}" not in the guest dmesg')
        self.assertNotEqual(res.value('IOMMU-GROUP'), 'none',
                            'the virtio-blk function is in no IOMMU group')
        self.assertEqual(res.value('IOMMU-DOMAIN'), domain,
                         'unexpected default domain type of the disk')

    def test_dma_lazy(self):
        res = self.read_disk(self.IOMMU, 'intel_iommu=on')
        self.check_remapping(res, 'DMA-FQ')

    def test_dma_strict(self):
        res = self.read_disk(self.IOMMU, 'intel_iommu=on iommu.strict=1')
        self.check_remapping(res, 'DMA')

    def test_dma_passthrough(self):
        res = self.read_disk(self.IOMMU, 'intel_iommu=on iommu=pt')
        self.check_remapping(res, 'identity')

    # Scalable mode: Linux (sm_on) puts each device's RID_PASID entry in a
    # PASID table and uses 256-bit descriptors and PASID-cache invalidation.
    SM = 'intel-iommu,x-scalable-mode=on'
    SM_FS = 'intel-iommu,x-scalable-mode=on,x-flts=on'

    def test_dma_scalable_second_stage_lazy(self):
        res = self.read_disk(self.SM, 'intel_iommu=on,sm_on')
        self.check_remapping(res, 'DMA-FQ')
        self.assertTrue(res.dmesg_has('Using Queued invalidation'))

    def test_dma_scalable_second_stage_strict(self):
        res = self.read_disk(self.SM, 'intel_iommu=on,sm_on iommu.strict=1')
        self.check_remapping(res, 'DMA')

    def test_dma_scalable_passthrough(self):
        res = self.read_disk(self.SM, 'intel_iommu=on,sm_on iommu=pt')
        self.check_remapping(res, 'identity')

    def test_dma_scalable_first_stage_lazy(self):
        res = self.read_disk(self.SM_FS, 'intel_iommu=on,sm_on')
        self.check_remapping(res, 'DMA-FQ')

    def test_dma_scalable_first_stage_strict(self):
        res = self.read_disk(self.SM_FS, 'intel_iommu=on,sm_on iommu.strict=1')
        self.check_remapping(res, 'DMA')

    # modern: first-stage DMA domains, PASID support, nested advertised;
    # interrupt remapping (intremap=auto) is on under TCG.
    MODERN = 'intel-iommu,x-scalable-mode=modern'

    def test_dma_modern_lazy(self):
        res = self.read_disk(self.MODERN, 'intel_iommu=on,sm_on')
        self.check_remapping(res, 'DMA-FQ')
        self.assertTrue(res.dmesg_has('ecap c99884f00f4a'))
        self.assertTrue(res.dmesg_has('Enabled IRQ remapping in xapic mode'))

    def test_dma_modern_strict(self):
        res = self.read_disk(self.MODERN, 'intel_iommu=on,sm_on iommu.strict=1')
        self.check_remapping(res, 'DMA')

    def test_dma_modern_passthrough(self):
        res = self.read_disk(self.MODERN, 'intel_iommu=on,sm_on iommu=pt')
        self.check_remapping(res, 'identity')

    def test_dma_legacy_x2apic_interrupt_remapping(self):
        """intremap=on,eim=on: Linux runs x2APIC with remapped interrupts."""
        res = self.read_disk('intel-iommu,intremap=on,eim=on', 'intel_iommu=on')
        self.check_remapping(res, 'DMA-FQ')
        self.assertTrue(res.dmesg_has('Enabled IRQ remapping in x2apic mode'))

    def test_dma_no_iommu(self):
        """Baseline: the same guest and disk with no IOMMU (validates the kit)."""
        res = self.read_disk(None, '', iommu_platform=False)
        self.assertEqual(res.value('IOMMU-DOMAIN'), 'none')

    def test_bad_aw_bits(self):
        """aw-bits=40 is not a supported address width: QEMU must refuse to start."""
        args = [self.qemu_bin, '-machine', 'q35', '-accel', 'tcg', '-nodefaults',
                '-display', 'none', '-L', self.kit.firmware_dir, '-S',
                '-device', f'{self.IOMMU},aw-bits=40']
        self.log.info('running: %s', ' '.join(args))
        try:
            r = subprocess.run(args, capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            self.fail('QEMU kept running with aw-bits=40')
        self.log.info('exit status %d, stderr: %s', r.returncode, r.stderr.strip())
        self.assertNotEqual(r.returncode, 0, 'QEMU accepted aw-bits=40')
        self.assertIn('aw-bits', r.stderr, 'the error message does not mention aw-bits')


if __name__ == '__main__':
    RvIommuGuestTest.main()
