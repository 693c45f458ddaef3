#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""The guest kit's content-named initramfs files: one whose body changed is
deleted once no checkout has used it for INITRAMFS_MAX_AGE_DAYS; the
current one, recent ones, other tests' files (also those whose name extends
this one's) and the kit's own fixed-name file stay."""

import os
import tempfile
import time
from pathlib import Path

from qemu_test import QemuSystemTest

from rviommu_kit import INITRAMFS_MAX_AGE_DAYS, prune_initramfs


class KitPrune(QemuSystemTest):

    def test_old_bodies_are_pruned(self):
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            old = time.time() - (INITRAMFS_MAX_AGE_DAYS + 1) * 86400
            names = {
                'current': 'dma-read-0123456789abcdef.cpio.gz',
                'stale': 'dma-read-fedcba9876543210.cpio.gz',
                'recent': 'dma-read-00000000000000aa.cpio.gz',
                'other-test': 'dma-read-extra-fedcba9876543210.cpio.gz',
                'kit': 'dma-read.cpio.gz',
            }
            for key, n in names.items():
                for f in (d / n, d / f'{n}.key'):
                    f.write_bytes(b'x')
                    if key != 'recent':
                        os.utime(f, (old, old))
            gone = prune_initramfs(d, 'dma-read', d / names['current'])
            self.assertEqual(gone, [names['stale']])
            left = sorted(p.name for p in d.iterdir())
            self.assertNotIn(names['stale'], left)
            self.assertNotIn(names['stale'] + '.key', left)
            for key in ('current', 'recent', 'other-test', 'kit'):
                self.assertIn(names[key], left)
            # The current one counts as used now.
            self.assertGreater((d / names['current']).stat().st_mtime, time.time() - 60)


if __name__ == '__main__':
    QemuSystemTest.main()
