#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Random SMMUv3 programming, side by side with QEMU's C arm-smmuv3
(reference build) under qtest: which DMAs complete, where writes land,
what is read back, which events are recorded and whether GERROR is raised
must be the same on both builds.

Each round writes, for `rviommu-testdev` (StreamID 0x10), a stream table
entry of a random configuration (abort, bypass, stage 1, stage 2, nested)
and a context descriptor built valid and then with random bits flipped
(every field but the two the C device aborts QEMU on: STE.S2AA64 = 0 and
CD.IPS 6/7), stage-1 tables for one IOVA and an identity stage 2 (1 GiB
blocks) with random bits flipped in their descriptors, invalidates
everything (CFGI_ALL, TLBI_NH_ALL, TLBI_NSNH_ALL, CMD_SYNC), and has the
device write then read 64 bytes. The DMA outcomes must be equal; event
records are compared in the architected layout, TTRnW aside (the C device
never sets it), and the differences docs/rviommu/smmuv3.rst lists (where
the C device's records depart from the architecture) are counted by name
(`same_events`), not failed; anything else fails. Seeds are fixed;
`RVIOMMU_SMMU_SEEDS` runs more.
"""

import os
import random

from qemu_test import QemuSystemTest

import rviommu_kit
from smmu_qtest import (start_virt, RAM_BASE, GERROR,
                        CMD_CFGI_ALL, CMD_TLBI_NH_ALL, CMD_TLBI_NSNH_ALL, DESC_TABLE, DESC_PAGE,
                        DESC_BLOCK, AF, SH_INNER, S1_AP_EL0, S2_AP_R, S2_AP_W, S2_MEMATTR_WB,
                        architected)

SEEDS = int(os.environ.get('RVIOMMU_SMMU_SEEDS', '4'))
ROUNDS = 50
TESTDEV_BDF = 2 << 3
PAGE = RAM_BASE + 0x1800000
IOVA = 0x8000000


def flip(rng, word, p, bits=range(64), keep=0):
    """`word` with each of a few random `bits` flipped now and then, never
    those in `keep`."""
    while rng.random() < p:
        word ^= (1 << rng.choice(bits)) & ~keep
    return word


class Side:
    """One build: -M virt,iommu=smmuv3 under qtest, the test device at 00:02.0."""

    def __init__(self, test, build):
        self.qt, self.dev, self.smmu = start_virt(test, build, f'smmu-{build}')
        self.vm = self.qt.vm
        # fixed pages for the round's structures
        self.cd = self.smmu.alloc()
        self.s1 = [self.smmu.alloc() for _ in range(3)]
        self.s2 = self.smmu.alloc()


def random_round(rng, side_pages):
    """The quadwords of one round, as (address, [qwords])."""
    cd_page, s1, s2 = side_pages
    config = rng.choice([0b101, 0b101, 0b110, 0b111, 0b111, 0b100, 0b000])
    ste = [1 | config << 1 | cd_page, 0,
           1 | 25 << 32 | 1 << 38 | 1 << 40 | 1 << 42 | 3 << 44 | 2 << 48 | 1 << 51 | 1 << 58,
           s2, 0, 0, 0, 0]
    s2aa64 = 1 << 51
    for i in range(4):
        ste[i] = flip(rng, ste[i], 0.15, keep=s2aa64 if i == 2 else 0)
    cd = [25 | 1 << 8 | 1 << 10 | 3 << 12 | 1 << 30 | 1 << 31 | 2 << 32 | 1 << 41 | 1 << 45
          | 1 << 46 | rng.randrange(1, 1 << 16) << 48, s1[0], 0, 0xff]
    ips = 7 << 32
    for i in range(4):
        cd[i] = flip(rng, cd[i], 0.15, keep=ips if i == 0 else 0)
    if (cd[0] >> 32) & 7 >= 6:
        cd[0] &= ~(4 << 32)
    writes = [(0, ste), (cd_page, cd)]
    # stage 1: IOVA -> PAGE through three levels
    s1_attrs = AF | SH_INNER | S1_AP_EL0
    entries = [(s1[0] + 8 * ((IOVA >> 30) & 0x1ff), s1[1] | DESC_TABLE),
               (s1[1] + 8 * ((IOVA >> 21) & 0x1ff), s1[2] | DESC_TABLE),
               (s1[2] + 8 * ((IOVA >> 12) & 0x1ff), PAGE | DESC_PAGE | s1_attrs)]
    for addr, d in entries:
        writes.append((addr, [flip(rng, d, 0.12)]))
    # stage 2: identity 1 GiB blocks over the first 4 GiB of RAM's space
    s2_attrs = AF | SH_INNER | S2_MEMATTR_WB | S2_AP_R | S2_AP_W
    for gib in range(4):
        a = gib << 30
        writes.append((s2 + 8 * gib, [flip(rng, a | DESC_BLOCK | s2_attrs, 0.04)]))
    iova = IOVA + rng.randrange(0, 0x1000, 64)
    if rng.random() < 0.1:
        iova |= 1 << rng.choice([30, 38, 39, 44, 48, 55, 56, 63])
    return writes, iova


def normalise(events):
    """Event records in the architected layout (as ints), without TTRnW
    (quadword 1 bit 44; the C device never sets it)."""
    out = []
    for e in events:
        q = architected([int(x, 16) for x in e] if isinstance(e[0], str) else e)
        q[1] &= ~(1 << 44)
        out.append(q)
    return out


F_WALK_EABT, F_TRANSLATION, F_ADDR_SIZE, F_ACCESS, F_PERMISSION = 0x0b, 0x10, 0x11, 0x12, 0x13
RNW, S2 = 1 << 35, 1 << 39
CLASS_CD, CLASS_TT, CLASS_IN = 0, 1, 2


def fields(q):
    return q[0] & 0xff, bool(q[1] & S2), (q[1] >> 40) & 3


def same_event(c, r):
    """Whether the C device's record `c` and ours `r` differ only as
    docs/rviommu/smmuv3.rst lists; returns the name of the difference
    ('' when equal), or None."""
    if c == r:
        return ''
    (ct, cs2, ccl), (rt, rs2, rcl) = fields(c), fields(r)
    rest = lambda q, mask: [q[0], q[1] & ~mask, q[2]]      # noqa: E731
    # RnW of a stage-2 fault on a CD or table descriptor fetch: the C device
    # reports the fetch (a read); ours the input transaction, as the
    # architecture says.
    if (ct, cs2, ccl) == (rt, rs2, rcl) and cs2 and ccl in (CLASS_CD, CLASS_TT) and \
            rest(c, RNW) + [c[3]] == rest(r, RNW) + [r[3]]:
        return 'fetch-rnw'
    # A stage-2 fault while walking the stage-1 tables: S2 = 1 (ours, the
    # architecture), S2 = 0 in the C device's record.
    if ct == rt == F_TRANSLATION and ccl == rcl == CLASS_TT and rs2 and not cs2 and \
            rest(c, S2 | RNW) + [c[3]] == rest(r, S2 | RNW) + [r[3]]:
        return 's2-fault-on-s1-walk'
    # A stage-1 Address Size fault on a table descriptor: CLASS = IN, no IPA
    # (ours, the architecture); CLASS = TT with the table address in the
    # C device's.
    if ct == rt == F_ADDR_SIZE and not cs2 and not rs2 and ccl == CLASS_TT and rcl == CLASS_IN \
            and c[0] == r[0] and c[2] == r[2] and r[3] == 0:
        return 's1-table-address-size'
    # A table address beyond the IPA/PA size: an Address Size fault (ours,
    # the architecture) before the fetch the C device tries (F_WALK_EABT).
    if ct == F_WALK_EABT and rt == F_ADDR_SIZE and cs2 == rs2 and c[2] == r[2]:
        return 'address-size-before-fetch'
    # A leaf whose output is beyond the size: Address Size fault first
    # (ours, the architecture's priority); the C device checks the access
    # flag or the permission first.
    if ct in (F_ACCESS, F_PERMISSION) and rt == F_ADDR_SIZE and cs2 == rs2 and c[2] == r[2]:
        return 'address-size-before-access-checks'
    return None


def same_events(c, r):
    """The documented differences between two event lists (C's, ours), or
    None when they differ otherwise."""
    # A stage-2 translation fault the C device does not record: on a CD
    # fetch (CLASS = CD) and for a stage-2-only input beyond S2T0SZ.
    if not c and r and all(fields(q)[:2] == (F_TRANSLATION, True) and fields(q)[2] in
                           (CLASS_CD, CLASS_IN) for q in r):
        return ['s2-translation-fault-recorded']
    if len(c) != len(r):
        return None
    names = [same_event(a, b) for a, b in zip(c, r)]
    return None if None in names else sorted({n for n in names if n})


class SmmuDifferential(rviommu_kit.MachinesTest):

    timeout = 600

    def test_random_programming_same_outcomes(self):
        differences, ok, faulted, documented = [], 0, 0, {}
        for seed in range(SEEDS):
            rng = random.Random(3000 + seed)
            sides = {'C': Side(self, 'ref'), 'Rust': Side(self, 'rs')}
            for rnd in range(ROUNDS):
                got = {}
                pages = [(s.cd, s.s1, s.s2) for s in sides.values()]
                if pages[0] != pages[1]:
                    self.fail('the two builds allocated different pages')
                writes, iova = random_round(rng, pages[0])
                for name, side in sides.items():
                    smmu, qt = side.smmu, side.qt
                    for page in (side.cd, *side.s1, side.s2):
                        qt.memwrite(page, bytes(0x1000))
                    for addr, words in writes:
                        smmu.put(smmu.ste_addr(TESTDEV_BDF) if addr == 0 else addr, *words)
                    smmu.post(CMD_CFGI_ALL, d1=31)
                    smmu.post(CMD_TLBI_NH_ALL)
                    smmu.post(CMD_TLBI_NSNH_ALL)
                    smmu.post(0x46)
                    qt.memwrite(PAGE, bytes(64))
                    data = bytes((i * 7 + rnd) & 0xff for i in range(64))
                    w = side.dev.write_memory(iova, data)
                    landed = qt.memread(PAGE + (iova & 0xfc0), 64) == data
                    r, back = side.dev.read_memory(iova, 64)
                    got[name] = dict(write=w, landed=landed, read=r, back=back == data,
                                     events=normalise(smmu.events()),
                                     gerror=smmu.rd(GERROR) ^ smmu.rd(0x64))
                c, rs = got['C'], got['Rust']
                names = same_events(c['events'], rs['events'])
                if names is not None and dict(c, events=None) == dict(rs, events=None):
                    for n in names:
                        documented[n] = documented.get(n, 0) + 1
                else:
                    self.log.info('DIFF %s | %s | %s | %#x', c, rs,
                                  [(hex(a), [hex(x) for x in w]) for a, w in writes], iova)

                    def brief(o):
                        ev = [[hex(x) for x in q] for q in o['events']]
                        return (f"w={o['write']} landed={o['landed']} r={o['read']} back={o['back']} "
                                f"gerror={o['gerror']} {len(ev)} events, first {ev[:1]}, "
                                f"last {ev[-1:]}")
                    differences.append(f'seed {seed} round {rnd}: iova {iova:#x} '
                                       f'{[(hex(a), [hex(x) for x in w]) for a, w in writes]}'
                                       f'\n    C    {brief(c)}\n    Rust {brief(rs)}')
                ok += got['C']['write'] == 1
                faulted += bool(got['C']['events'])
            for side in sides.values():
                side.vm.shutdown()
        self.log.info('%d rounds: %d writes completed, %d with events on the C device; '
                      'documented differences: %s', SEEDS * ROUNDS, ok, faulted, documented)
        self.assertEqual(differences, [], '\n'.join(differences[:30]))
        self.assertGreater(ok, SEEDS * ROUNDS // 10)
        self.assertGreater(faulted, SEEDS * ROUNDS // 10)


if __name__ == '__main__':
    QemuSystemTest.main()
