#!/usr/bin/env python3
#
# Smoke test of the iommufd guest kernel (scripts/guest/kernel.sh: Debian's linux-source
# with IOMMUFD, VFIO_DEVICE_CDEV, VFIO_PCI and KVM built in), the L1 kernel of the
# nested (QEMU-in-QEMU) tests.  It boots under TCG behind our intel-iommu in modern
# scalable mode with caching mode, and the guest checks /dev/iommu, the DMAR lines,
# binding an e1000e to vfio-pci (its cdev /dev/vfio/devices/vfio0 and legacy group)
# and /dev/kvm (kvm_amd: -cpu max gives the guest SVM).
#
# Skipped when the kernel has not been built (it is not part of the kit: 30-45 min on 2 cores).
#
# SPDX-License-Identifier: GPL-2.0-or-later

from rviommu_kit import RvIommuGuestTest

# busybox ash, sourced by /init (scripts/guest/mkinitramfs.sh).  The e1000e is
# 8086:10d3; its built-in driver has it at boot and gives it up to vfio-pci.
BODY = r'''
# Open a device node read-write in a subshell (a failed redirection of `exec` would end /init).
opens() { [ -c "$1" ] && (true <> "$1") 2>/dev/null; }

echo "RVIOMMU-KERNEL-RELEASE: $(uname -r)"
for o in IOMMUFD VFIO_DEVICE_CDEV VFIO_CONTAINER VFIO_PCI INTEL_IOMMU_SVM KVM_AMD; do
    v=$(zcat /proc/config.gz | sed -n "s/^CONFIG_$o=//p")
    echo "RVIOMMU-CONFIG: $o=${v:-unset}"
    [ "$v" = y ] || fail "CONFIG_$o is '${v:-unset}' in /proc/config.gz"
done

# iommufd
if opens /dev/iommu; then
    echo "RVIOMMU-DEV-IOMMU: ok"
else
    fail "/dev/iommu missing or cannot be opened"
fi

# VT-d in scalable mode: sm_on accepted, ECAP.SMTS (bit 43) set, the DMAR lines
ecap=$(cat /sys/class/iommu/dmar0/intel-iommu/ecap 2>/dev/null)
[ -n "$ecap" ] || fail "no /sys/class/iommu/dmar0"
echo "RVIOMMU-ECAP: $ecap"
echo "RVIOMMU-ECAP-SMTS: $(( (0x${ecap:-0} >> 43) & 1 ))"
echo "RVIOMMU-DMESG-BEGIN"
dmesg | grep -i -e DMAR -e iommu -e vfio -e kvm
echo "RVIOMMU-DMESG-END"
dmesg | grep -e 'DMAR: \[DMA' -e 'DMAR: \[INTR-REMAP' -e 'DMAR:.*[Ff]ault' | while read -r l; do
    echo "RVIOMMU-DMAR-FAULT: $l"
done

# an e1000e to vfio-pci: driver_override + drivers_probe
dev=""
for d in /sys/bus/pci/devices/*; do
    [ "$(cat $d/vendor):$(cat $d/device)" = 0x8086:0x10d3 ] && { dev=${d##*/}; break; }
done
echo "RVIOMMU-PCI-DEVICE: ${dev:-none}"
if [ -z "$dev" ]; then
    fail "no e1000e (8086:10d3) on the PCI bus"
else
    d=/sys/bus/pci/devices/$dev
    group=$(basename "$(readlink $d/iommu_group)")
    echo "RVIOMMU-IOMMU-GROUP: ${group:-none}"
    echo "RVIOMMU-DRIVER-BEFORE: $(basename "$(readlink $d/driver)")"
    [ -e $d/driver ] && echo "$dev" > $d/driver/unbind
    echo vfio-pci > $d/driver_override
    echo "$dev" > /sys/bus/pci/drivers_probe
    drv=$(basename "$(readlink $d/driver)")
    echo "RVIOMMU-DRIVER-AFTER: $drv"
    [ "$drv" = vfio-pci ] || fail "$dev is bound to '$drv', not vfio-pci"
    cdev=$(ls $d/vfio-dev 2>/dev/null | sed -n 1p)
    echo "RVIOMMU-VFIO-CDEV: ${cdev:-none}"
    run ls -l /dev/vfio /dev/vfio/devices
    if opens /dev/vfio/devices/vfio0; then
        echo "RVIOMMU-DEV-VFIO0: ok"
    else
        fail "/dev/vfio/devices/vfio0 missing or cannot be opened"
    fi
    [ -c "/dev/vfio/$group" ] || fail "no legacy group node /dev/vfio/$group"
    [ -c /dev/vfio/vfio ] || fail "no legacy container node /dev/vfio/vfio"
fi

# KVM (kvm_amd built in; SVM from -cpu max)
grep -qw svm /proc/cpuinfo && echo "RVIOMMU-CPU-SVM: yes" || echo "RVIOMMU-CPU-SVM: no"
if opens /dev/kvm; then
    echo "RVIOMMU-DEV-KVM: ok"
else
    fail "/dev/kvm missing or cannot be opened"
fi
pass
'''


class IommufdKernel(RvIommuGuestTest):

    IOMMU = 'intel-iommu,x-scalable-mode=modern,caching-mode=on'
    APPEND = 'intel_iommu=on,sm_on'

    def setUp(self):
        super().setUp()
        if self.kit.iommufd_kernel is None:
            self.skipTest(self.kit.iommufd_kernel_why)
        stale = self.kit.iommufd_kernel_stale()
        if stale:
            self.log.warning('%s', stale)

    def test_iommufd_vfio_kvm(self):
        initrd = self.kit.initramfs('iommufd-kernel', BODY, kmods='none')
        vm = self.q35_vm(iommu=self.IOMMU)
        vm.add_args('-netdev', 'user,id=n0', '-device', 'e1000e,netdev=n0,romfile=')
        res = self.boot_and_collect(vm, initrd, self.APPEND, kernel=self.kit.iommufd_kernel)
        self.log.info('kernel %s; e1000e %s: group %s, %s -> %s, cdev %s',
                      res.value('KERNEL-RELEASE'), res.value('PCI-DEVICE'),
                      res.value('IOMMU-GROUP'), res.value('DRIVER-BEFORE'),
                      res.value('DRIVER-AFTER'), res.value('VFIO-CDEV'))
        self.assertGuestPassed(res)
        if self.kit.iommufd_kernel_release:
            self.assertEqual(res.value('KERNEL-RELEASE'), self.kit.iommufd_kernel_release,
                             'the guest did not run the iommufd kernel')
        for msg in ('DMAR: IOMMU enabled', 'DMAR: Enable scalable mode if hardware supports',
                    'DMAR: Intel(R) Virtualization Technology for Directed I/O',
                    'Enabled IRQ remapping'):
            self.assertTrue(res.dmesg_has(msg), f'"{msg}" not in the guest dmesg')
        self.assertEqual(res.value('ECAP-SMTS'), '1', 'ECAP.SMTS clear')
        self.assertEqual(res.value('DEV-IOMMU'), 'ok')
        self.assertEqual(res.value('DRIVER-BEFORE'), 'e1000e')
        self.assertEqual(res.value('DRIVER-AFTER'), 'vfio-pci')
        self.assertEqual(res.value('VFIO-CDEV'), 'vfio0')
        self.assertEqual(res.value('DEV-VFIO0'), 'ok')
        self.assertEqual(res.value('CPU-SVM'), 'yes')
        self.assertEqual(res.value('DEV-KVM'), 'ok')
        self.assertNoDmarFaults(res.values.get('DMAR-FAULT', []))


if __name__ == '__main__':
    RvIommuGuestTest.main()
