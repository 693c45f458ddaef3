#!/usr/bin/env python3
#
# DMA through the (Rust) arm-smmuv3 of `-M virt`: a stock Debian trixie arm64 kernel (6.12,
# booted from the device tree, no firmware) with a busybox initramfs reads a whole disk and
# checks its sha256 (tests/guest/dma-read.sh), behind the machine's SMMU (iommu=smmuv3:
# stage nested advertised, Linux uses stage 1) in strict, lazy and passthrough DMA modes,
# behind a user-created stage-2-only SMMU, and over nvme (no iommu_platform: its DMA always
# goes through the SMMU); plus a baseline without an SMMU.
#
# The guest kit (kernel, busybox, disk image) comes from `scripts/guest/kit.sh arm64`, which
# tests/functional/run.sh builds first (it fails when the kit cannot be built); without a
# kit the tests fail.  Run with tests/functional/run.sh test_smmu_dma (the
# qemu-system-aarch64 next to --qemu).
#
# SPDX-License-Identifier: GPL-2.0-or-later

import re

from qemu_test import QemuSystemTest

from rviommu_kit import Kit, RvIommuGuestTest


class SmmuDma(RvIommuGuestTest):

    # Under TCG the whole run takes about 15 s; the limits only stop a hung guest.
    GUEST_TIMEOUT = 150
    BOOT_ALLOWANCE = 90
    KERNEL_PARAMS = 'console=ttyAMA0 panic=-1'

    # Appended to dma-read.sh: the SMMU driver's own messages (probe, events, command
    # queue errors), which the body's dmesg extract (DMAR, iommu) does not catch; its
    # events are info messages, below the console level /init sets.
    SMMU_LOG = (
        '# epilogue of tests/functional/aarch64/test_smmu_dma.py\n'
        'dmesg | grep -i -e arm-smmu -e smmuv3 > /tmp/smmu\n'
        'while IFS= read -r l; do echo "RVIOMMU-SMMU-LOG: $l"; done < /tmp/smmu\n')
    # What Linux's arm-smmu-v3 driver prints about a translation fault or a broken
    # queue: "event 0x10 received:", "CMDQ error (cons ...)", "unexpected global error
    # reported ...", "CMD_SYNC timeout ...", "GERROR ...".
    SMMU_TROUBLE = re.compile(r'event 0x|error|fault|timeout|abort', re.I)

    # Bits of the probe line's "features 0x..." in Linux 6.12's arm-smmu-v3 driver
    # (ARM_SMMU_FEAT_TRANS_S1, _S2): the stages the driver found in SMMU_IDR0.
    FEAT_S1, FEAT_S2 = 1 << 9, 1 << 10
    # ARM_SMMU_FEAT_MSI: SMMU_IDR0.MSI (with coherency, CMD_SYNC completes by MSI polling).
    FEAT_MSI = 1 << 7

    VIRTIO_BLK_ID = '0x1af4:0x1042'
    NVME_ID = '0x1b36:0x0010'

    def setUp(self):
        QemuSystemTest.setUp(self)    # not RvIommuGuestTest's: that one wants the x86 kit
        self.kit, why = Kit.load(arch='arm64')
        if self.kit is None:
            self.fail(why)    # not a skip: a missing kit must not look like a pass

    def virt_vm(self, machine='', smmu=None):
        """-M virt (GICv3, TCG, 2 CPUs, 1 GiB), `machine` appended to its options;
        `smmu` is a -device string placed before every PCI device."""
        vm = self.vm
        vm.add_args('-machine', f'virt,gic-version=3{machine}', '-accel', 'tcg',
                    '-cpu', 'max', '-smp', '2', '-m', '1G', '-nodefaults', '-no-reboot')
        if smmu:
            vm.add_args('-device', smmu)
        return vm

    def read_disk(self, append, machine=',iommu=smmuv3', smmu=None, nvme=False):
        vm = self.virt_vm(machine, smmu)
        if nvme:
            vm.add_args('-blockdev',
                        'driver=raw,node-name=disk0,read-only=on,'
                        f'file.driver=file,file.filename={self.kit.disk},file.read-only=on')
            vm.add_args('-device', 'nvme,serial=rviommu,drive=disk0')
            # Without native multipath the namespace's block device hangs off the
            # controller, below the PCI function (with it, off a virtual subsystem).
            append += ' rviommu.disk=nvme0n1 nvme_core.multipath=N'
        else:
            self.add_disk(vm, self.kit.disk)
        append = f'{append} rviommu.sha256={self.kit.disk_sha256}'.strip()
        res = self.boot_and_collect(vm, self.kit.dma_initramfs(self.SMMU_LOG), append)
        self.log.info('disk read took %s s in the guest', res.value('READ-SECONDS'))
        for line in res.values.get('SMMU-LOG', []):
            self.log.info('smmu: %s', line)
        self.assertGuestPassed(res)
        self.assertEqual(res.value('SHA256'), self.kit.disk_sha256,
                         'sha256 of the guest disk differs from the disk image')
        self.assertEqual(res.value('PCI-DEVICE', '').split(' ')[-1],
                         self.NVME_ID if nvme else self.VIRTIO_BLK_ID,
                         'the disk is not on the expected PCI function')
        return res

    def check_smmu(self, res, domain, stages=FEAT_S1 | FEAT_S2):
        """The driver probed an SMMU with translation `stages` (FEAT_S1/FEAT_S2
        bits), the disk's function is in an IOMMU group with default domain
        `domain`, and the driver reported no event or error."""
        log = res.values.get('SMMU-LOG', [])
        probe = [l for l in log if 'arm-smmu-v3' in l and 'ias ' in l]
        self.assertTrue(probe, 'no "arm-smmu-v3 ...: ias ..." probe line in the guest dmesg')
        self.log.info('probe: %s', probe[0])
        m = re.search(r'features 0x([0-9a-f]+)', probe[0])
        self.assertIsNotNone(m, 'no features in the probe line')
        self.assertEqual(int(m.group(1), 16) & (self.FEAT_S1 | self.FEAT_S2), stages,
                         'the driver found other translation stages')
        self.assertNotEqual(res.value('IOMMU-GROUP'), 'none',
                            'the disk function is in no IOMMU group')
        self.assertEqual(res.value('IOMMU-DOMAIN'), domain,
                         'unexpected default domain type of the disk')
        trouble = [l for l in log if self.SMMU_TROUBLE.search(l)]
        self.assertEqual(trouble, [], 'SMMU events or errors in the guest dmesg')
        self.assertEqual(res.values.get('DMAR-FAULT', []), [])

    # -M virt,iommu=smmuv3: QEMU 10.2's machine SMMU advertises stage 1 and 2
    # (nested); Linux's DMA domains use stage 1.
    def test_dma_strict(self):
        res = self.read_disk('iommu.strict=1')
        self.check_smmu(res, 'DMA')

    def test_dma_lazy(self):
        res = self.read_disk('iommu.strict=0')
        self.check_smmu(res, 'DMA-FQ')

    def test_dma_passthrough(self):
        res = self.read_disk('iommu.passthrough=1')
        self.check_smmu(res, 'identity')

    def test_dma_user_stage2_strict(self):
        """A user-created SMMU with stage 2 only: Linux's DMA domains use it."""
        res = self.read_disk('iommu.strict=1', machine='',
                             smmu='arm-smmuv3,primary-bus=pcie.0,stage=2')
        self.check_smmu(res, 'DMA', stages=self.FEAT_S2)

    def test_dma_msi_strict(self):
        """A user-created SMMU advertising MSIs (x-msi=on, ours only): Linux
        completes every CMD_SYNC by polling for the SMMU's MSI write into
        the command queue (ARM_SMMU_OPT_MSIPOLL); the interrupts stay wired
        (virt gives the SMMU no MSI domain)."""
        res = self.read_disk('iommu.strict=1', machine='',
                             smmu='arm-smmuv3,primary-bus=pcie.0,x-msi=on')
        self.check_smmu(res, 'DMA', stages=self.FEAT_S1)
        probe = [l for l in res.values.get('SMMU-LOG', []) if 'ias ' in l][0]
        features = int(re.search(r'features 0x([0-9a-f]+)', probe).group(1), 16)
        self.assertTrue(features & self.FEAT_MSI, 'the driver did not find IDR0.MSI')

    def test_dma_nvme_strict(self):
        res = self.read_disk('iommu.strict=1', nvme=True)
        self.check_smmu(res, 'DMA')

    def test_dma_no_iommu(self):
        """Baseline: the same guest and disk without an SMMU (validates the kit)."""
        res = self.read_disk('', machine='')
        self.assertEqual(res.value('IOMMU-DOMAIN'), 'none')
        self.assertEqual([l for l in res.values.get('SMMU-LOG', []) if 'ias ' in l], [])


if __name__ == '__main__':
    QemuSystemTest.main()
