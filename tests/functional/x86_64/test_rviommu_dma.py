#!/usr/bin/env python3
#
# DMA remapping through the (Rust) intel-iommu: a Debian 6.12 guest reads a whole
# virtio-blk disk (iommu_platform=on) and checks its sha256, then moves 4 MiB each way
# over a second device behind the IOMMU (e1000e or virtio-net with iommu_platform=on,
# on the user network) to a server of the test, checksums compared on both ends; in the
# kernel's lazy, strict and pass-through DMA modes, in legacy and scalable mode (second
# and first stage, modern), plus baselines without an IOMMU and a check that a bad
# property value is refused.
#
# The guest kit (kernel, initramfs, firmware, disk image) comes from
# scripts/guest/kit.sh; run with tests/functional/run.sh.
#
# SPDX-License-Identifier: GPL-2.0-or-later

import hashlib
import subprocess

from rviommu_kit import NetPeer, RvIommuGuestTest


class RvIommuDma(RvIommuGuestTest):

    IOMMU = 'intel-iommu'

    # Network traffic (nic=...): MiB the guest receives from / sends to the host.
    NET_RX_MIB = 4
    NET_TX_MIB = 4

    def read_disk(self, iommu, append, iommu_platform=True, nic=None):
        """Boot with the disk (and, with `nic`, a NIC of that model on the user
        network); the guest reads the disk and, with a NIC, moves data both ways."""
        vm = self.q35_vm(iommu=iommu)
        self.add_disk(vm, self.kit.disk, iommu_platform=iommu_platform)
        append = f'{append} rviommu.sha256={self.kit.disk_sha256}'.strip()
        initrd = self.kit.dma_initramfs()
        if nic is None:
            res = self.boot_and_collect(vm, initrd, append)
        else:
            self.add_nic(vm, nic, iommu_platform=iommu_platform)
            with open(self.kit.disk, 'rb') as f:
                tx_sha256 = hashlib.sha256(f.read(self.NET_TX_MIB << 20)).hexdigest()
            with NetPeer(self.NET_RX_MIB << 20) as peer:
                append += (f' rviommu.net_rx_port={peer.rx_port}'
                           f' rviommu.net_rx_sha256={peer.blob_sha256}'
                           f' rviommu.net_tx_port={peer.tx_port}'
                           f' rviommu.net_tx_mib={self.NET_TX_MIB}'
                           f' rviommu.net_tx_sha256={tx_sha256}')
                res = self.boot_and_collect(vm, initrd, append)
        self.log.info('disk read took %s s in the guest', res.value('READ-SECONDS'))
        if nic is not None:
            self.log.info('network: %s; rx %s bytes in %s s, tx %s MiB in %s s',
                          res.value('NET-IFACE'),
                          res.value('NET-RX-BYTES'), res.value('NET-RX-SECONDS'),
                          self.NET_TX_MIB, res.value('NET-TX-SECONDS'))
        self.assertGuestPassed(res)
        self.assertEqual(res.value('SHA256'), self.kit.disk_sha256,
                         'sha256 of /dev/vda differs from the disk image')
        self.assertNoDmarFaults(res.values.get('DMAR-FAULT', []))
        if nic is not None:
            self.assertEqual(peer.errors, [], 'the host end of the transfers failed')
            self.assertEqual(res.value('NET-RX-SHA256'), peer.blob_sha256,
                             'the guest received other data than the host sent')
            self.assertEqual(peer.received, [(self.NET_TX_MIB << 20, tx_sha256)],
                             'the host received other data than the first '
                             f'{self.NET_TX_MIB} MiB of the disk')
            self.assertEqual(res.value('NET-TX-ACK'),
                             f'{tx_sha256} {self.NET_TX_MIB << 20}')
            want = 'e1000e' if nic == 'e1000e' else 'virtio_net'
            self.assertTrue(res.value('NET-IFACE', '').endswith(f'driver={want}'),
                            f'the NIC is not driven by {want}')
        return res

    def check_remapping(self, res, domain):
        for msg in ('DMAR: IOMMU enabled',
                    'DMAR: Intel(R) Virtualization Technology for Directed I/O'):
            self.assertTrue(res.dmesg_has(msg), f'"{msg}" not in the guest dmesg')
        self.assertNotEqual(res.value('IOMMU-GROUP'), 'none',
                            'the virtio-blk function is in no IOMMU group')
        self.assertEqual(res.value('IOMMU-DOMAIN'), domain,
                         'unexpected default domain type of the disk')
        if 'NET-IFACE' in res.values:
            self.assertNotEqual(res.value('NET-IOMMU-GROUP'), 'none',
                                'the NIC is in no IOMMU group')
            self.assertEqual(res.value('NET-IOMMU-DOMAIN'), domain,
                             'unexpected default domain type of the NIC')

    def test_dma_lazy(self):
        res = self.read_disk(self.IOMMU, 'intel_iommu=on', nic='e1000e')
        self.check_remapping(res, 'DMA-FQ')

    def test_dma_strict(self):
        res = self.read_disk(self.IOMMU, 'intel_iommu=on iommu.strict=1', nic='virtio-net')
        self.check_remapping(res, 'DMA')

    def test_dma_passthrough(self):
        res = self.read_disk(self.IOMMU, 'intel_iommu=on iommu=pt', nic='e1000e')
        self.check_remapping(res, 'identity')

    # Scalable mode: Linux (sm_on) puts each device's RID_PASID entry in a
    # PASID table and uses 256-bit descriptors and PASID-cache invalidation.
    SM = 'intel-iommu,x-scalable-mode=on'
    SM_FS = 'intel-iommu,x-scalable-mode=on,x-flts=on'

    def test_dma_scalable_second_stage_lazy(self):
        res = self.read_disk(self.SM, 'intel_iommu=on,sm_on', nic='virtio-net')
        self.check_remapping(res, 'DMA-FQ')
        self.assertTrue(res.dmesg_has('Using Queued invalidation'))

    def test_dma_scalable_second_stage_strict(self):
        res = self.read_disk(self.SM, 'intel_iommu=on,sm_on iommu.strict=1', nic='e1000e')
        self.check_remapping(res, 'DMA')

    def test_dma_scalable_passthrough(self):
        res = self.read_disk(self.SM, 'intel_iommu=on,sm_on iommu=pt', nic='virtio-net')
        self.check_remapping(res, 'identity')

    def test_dma_scalable_first_stage_lazy(self):
        res = self.read_disk(self.SM_FS, 'intel_iommu=on,sm_on', nic='virtio-net')
        self.check_remapping(res, 'DMA-FQ')

    def test_dma_scalable_first_stage_strict(self):
        res = self.read_disk(self.SM_FS, 'intel_iommu=on,sm_on iommu.strict=1',
                             nic='e1000e')
        self.check_remapping(res, 'DMA')

    # modern: first-stage DMA domains, PASID support, nested advertised;
    # interrupt remapping (intremap=auto) is on under TCG.
    MODERN = 'intel-iommu,x-scalable-mode=modern'

    def test_dma_modern_lazy(self):
        res = self.read_disk(self.MODERN, 'intel_iommu=on,sm_on', nic='e1000e')
        self.check_remapping(res, 'DMA-FQ')
        self.assertTrue(res.dmesg_has('ecap c99884f00f4a'))
        self.assertTrue(res.dmesg_has('Enabled IRQ remapping in xapic mode'))
        self.assertRemappedInterrupts(res)

    def test_dma_modern_strict(self):
        res = self.read_disk(self.MODERN, 'intel_iommu=on,sm_on iommu.strict=1',
                             nic='virtio-net')
        self.check_remapping(res, 'DMA')

    def test_dma_modern_passthrough(self):
        res = self.read_disk(self.MODERN, 'intel_iommu=on,sm_on iommu=pt', nic='virtio-net')
        self.check_remapping(res, 'identity')

    # caching-mode=on (CAP.CM): Linux then also invalidates not-present ->
    # present changes (and context entries with domain 0); the IOMMU's
    # notifiers are idle here (no vfio/vhost) but every sync path runs.
    def test_dma_caching_mode_strict(self):
        res = self.read_disk('intel-iommu,caching-mode=on', 'intel_iommu=on iommu.strict=1',
                             nic='e1000e')
        self.check_remapping(res, 'DMA')
        self.assertTrue(res.dmesg_has('cap 80d2008c222f0686'))

    def test_dma_modern_caching_mode_lazy(self):
        res = self.read_disk(self.MODERN + ',caching-mode=on', 'intel_iommu=on,sm_on',
                             nic='virtio-net')
        self.check_remapping(res, 'DMA-FQ')
        self.assertTrue(res.dmesg_has('cap 81d2008c222f0686'))

    def test_dma_legacy_xapic_interrupt_remapping(self):
        """intremap=on: Linux remaps the disk's and e1000e's MSI-X in xAPIC mode."""
        res = self.read_disk('intel-iommu,intremap=on', 'intel_iommu=on', nic='e1000e')
        self.check_remapping(res, 'DMA-FQ')
        self.assertTrue(res.dmesg_has('Enabled IRQ remapping in xapic mode'))
        self.assertRemappedInterrupts(res)

    def test_dma_legacy_x2apic_interrupt_remapping(self):
        """intremap=on,eim=on: Linux runs x2APIC with remapped interrupts."""
        res = self.read_disk('intel-iommu,intremap=on,eim=on', 'intel_iommu=on',
                             nic='virtio-net')
        self.check_remapping(res, 'DMA-FQ')
        self.assertTrue(res.dmesg_has('Enabled IRQ remapping in x2apic mode'))
        self.assertRemappedInterrupts(res)

    def test_dma_legacy_x2apic_interrupt_remapping_e1000e(self):
        res = self.read_disk('intel-iommu,intremap=on,eim=on', 'intel_iommu=on', nic='e1000e')
        self.check_remapping(res, 'DMA-FQ')
        self.assertTrue(res.dmesg_has('Enabled IRQ remapping in x2apic mode'))
        self.assertRemappedInterrupts(res)

    def test_dma_translation_off_keeps_interrupt_remapping(self):
        """dma-translation=off (CAP.SAGAW = 0): Linux leaves DMA
        untranslated and still remaps interrupts in x2APIC mode (what the
        knob is for: many vCPUs without DMA translation)."""
        res = self.read_disk('intel-iommu,intremap=on,eim=on,dma-translation=off',
                             'intel_iommu=on', nic='e1000e')
        self.assertTrue(res.dmesg_has('No supported address widths'))
        self.assertTrue(res.dmesg_has('Enabled IRQ remapping in x2apic mode'))
        self.assertEqual(res.value('IOMMU-DOMAIN'), 'none')
        self.assertEqual(res.value('NET-IOMMU-DOMAIN'), 'none')
        self.assertRemappedInterrupts(res)

    def test_dma_no_iommu(self):
        """Baseline: the same guest, disk and e1000e traffic with no IOMMU
        (validates the kit)."""
        res = self.read_disk(None, '', iommu_platform=False, nic='e1000e')
        self.assertEqual(res.value('IOMMU-DOMAIN'), 'none')
        self.assertEqual(res.value('NET-IOMMU-DOMAIN'), 'none')
        self.assertRemappedInterrupts(res, remapped=False)

    def test_dma_virtio_net_no_iommu(self):
        """Baseline of the virtio-net traffic (no iommu_platform, no IOMMU)."""
        res = self.read_disk(None, '', iommu_platform=False, nic='virtio-net')
        self.assertEqual(res.value('NET-IOMMU-DOMAIN'), 'none')

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
