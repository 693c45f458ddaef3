#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Random DMA remapping programming, side by side with the C intel-iommu
(reference build) under qtest: which DMAs complete, what they read, where
their writes land and which faults are recorded must be the same on both
builds, in legacy mode and in scalable mode as the C device offers it.

Each legacy round rebuilds, in guest RAM, the root entry of bus 0, the
context entry of `rviommu-testdev` (00:05.0) and a 3- or 4-level
second-stage walk with random flags and fields (present bits, FPD, every
translation type and address width, domain ids, reserved bits, table
pointers beyond RAM, R/W at every level, superpage bits, SNP / TM /
ignored / high address bits); each scalable round the scalable root and
context entries, the PASID directory and table entries (PGTT, AW, SRE,
WPE, FLPM, RID_PASID, RID_PRIV, reserved bits) and a second- or
first-stage walk. After invalidating the caches the device reads and then
writes 64 bytes at a random IOVA. Observed: the device's status and the
data it read, the RAM at every place the tables could send the write to,
the fault record (reason, address, direction, SID, FSTS) and the walked
entries afterwards. The differences docs/rviommu/intel-iommu.rst keeps are
made equal by `normalise` and counted. Seeds are fixed;
`RVIOMMU_DMA_SEEDS` runs more.
"""

import hashlib
import os
import random
import struct

from qemu_test import QemuSystemTest

import rviommu_kit
from vtd_qtest import (Qtest, TestDev, ScalableVtd, VTD_BASE, GCMD, GSTS, FSTS, RTADDR,
                       TD_READ, TD_WRITE, TD_DEVFN, TD_BAR0)

SEEDS = int(os.environ.get('RVIOMMU_DMA_SEEDS', '6'))
ROUNDS = 60
RAM = 256 << 20
ROOT, CTX = 0x100000, 0x101000
TABLES = [0x102000, 0x103000, 0x104000, 0x105000]      # level 4, 3, 2, 1
DATA = 0x4000000          # 64 MiB: what leaf entries point at (1 GiB-aligned below)
CCMD, GCMD_TE, GCMD_SRTP = 0x28, 1 << 31, 1 << 30
PATTERN_R = bytes((i * 13 + 5) & 0xff for i in range(64))
PATTERN_W = bytes((i * 29 + 11) & 0xff for i in range(64))
# Entry bits the random tables set now and then: X, EMT, PS, ignored,
# SNP, address bits above 39/48, ignored 61:52, TM, bit 63.
ODD_BITS = [2, 3, 5, 7, 8, 10, 11, 40, 47, 50, 52, 57, 61, 62, 63]


class Side:
    """One build: q35 under qtest, intel-iommu with `props`, the test
    device at 00:05.0."""

    def __init__(self, test, binary, props):
        self.vm = test.q35_qtest(binary, 'dma', '256M', 'intel-iommu' + (',' + props if props else ''),
                                 f'rviommu-testdev,addr={TD_DEVFN >> 3:02x}.0')
        self.qt = Qtest(self.vm)
        self.dev = TestDev(self.qt, TD_DEVFN, TD_BAR0)
        cap = self.qt.readq(VTD_BASE + 0x08)
        ecap = self.qt.readq(VTD_BASE + 0x10)
        self.frcd = ((cap >> 24) & 0x3ff) * 16
        self.iotlb = ((ecap >> 8) & 0x3ff) * 16 + 8

    def gcmd(self, bit):
        persistent = self.qt.readl(VTD_BASE + GSTS) & 0x96ffffff
        self.qt.writel(VTD_BASE + GCMD, persistent | bit)

    def fault(self):
        qt = self.qt
        fsts = qt.readl(VTD_BASE + FSTS) & 0x7f
        lo, hi = struct.unpack('<QQ', qt.memread(VTD_BASE + self.frcd, 16))
        out = None
        if fsts or hi >> 63:
            out = dict(fsts=hex(fsts), reason=hex((hi >> 32) & 0xff), read=bool((hi >> 62) & 1),
                       sid=hex(hi & 0xffff), address=hex(lo & ~0xfff)) if hi >> 63 \
                else dict(fsts=hex(fsts))
        if hi >> 63:
            qt.writel(VTD_BASE + self.frcd + 12, 1 << 31)
        qt.writel(VTD_BASE + FSTS, 0x7f)
        return out

    def invalidate(self):
        """Global context-cache and IOTLB invalidation by registers."""
        qt = self.qt
        qt.writeq(VTD_BASE + CCMD, (1 << 63) | (1 << 61))
        qt.writeq(VTD_BASE + self.iotlb, (1 << 63) | (1 << 60))


def random_iova(rng):
    """A 64-byte aligned IOVA below 2^39, now and then with a high bit."""
    iova = rng.randrange(1 << 39) & ~0xfff | rng.randrange(0, 0x1000, 64)
    if rng.random() < 0.1:
        iova |= 1 << rng.choice([39, 40, 47, 48, 56, 63])
    return iova


def random_walk(rng, iova, levels, flags, odd_bits):
    """The entries of one walk for `iova` (one per level, from `levels`
    down, at most 4): non-leaf entries point at the next table, the leaf
    (level 1, or a superpage now and then) at DATA, sometimes beyond RAM;
    `flags(addr)` adds the permission bits, then `odd_bits` are set now and
    then."""
    writes = []
    for level in range(min(levels, 4), 0, -1):
        table = TABLES[4 - level]
        index = (iova >> (12 + 9 * (level - 1))) & 0x1ff
        leaf = level == 1 or (level in (2, 3) and rng.random() < 0.15)
        addr = DATA if leaf else TABLES[4 - level + 1]
        if rng.random() < 0.02:
            addr = RAM + 0x400000
        entry = flags(addr)
        while rng.random() < 0.12:
            entry |= 1 << rng.choice(odd_bits)
        if leaf and level > 1:
            entry |= 1 << 7
        writes.append((table + index * 8, entry))
        if leaf:
            break
    return writes


def random_round(rng, levels_default):
    """The quadwords to write and the IOVA, for one round."""
    writes = []
    root_lo = CTX | (rng.random() < 0.97)
    if rng.random() < 0.05:
        root_lo |= 1 << rng.randrange(1, 12)
    if rng.random() < 0.03:
        root_lo = (RAM + 0x100000) | 1           # context table beyond RAM
    writes.append((ROOT, root_lo, 1 << rng.randrange(64) if rng.random() < 0.05 else 0))
    aw = levels_default - 2 if rng.random() < 0.85 else rng.randrange(8)
    levels = aw + 2
    tt = rng.choice([0] * 14 + [1, 2, 2, 3])
    top = TABLES[4 - levels] if 2 <= levels <= 4 else TABLES[0]
    if rng.random() < 0.03:
        top = RAM + 0x200000
    ctx_lo = top | (tt << 2) | ((rng.random() < 0.3) << 1) | (rng.random() < 0.97)
    if rng.random() < 0.05:
        ctx_lo |= 1 << rng.randrange(4, 12)
    ctx_hi = aw | (rng.randrange(1, 1 << 16) << 8)
    if rng.random() < 0.05:
        ctx_hi |= 1 << rng.choice([3, 7, 30, 63])
    writes.append((CTX + TD_DEVFN * 16, ctx_lo, ctx_hi))

    iova = random_iova(rng)
    walk = random_walk(rng, iova, levels, lambda addr: addr | (rng.random() < 0.96)
                       | ((rng.random() < 0.92) << 1), ODD_BITS)
    writes += [(addr, entry, None) for addr, entry in walk]
    return writes, iova


# Scalable mode: the context entry's PASID directory and table
PDIR, PTBL = 0x106000, 0x107000
# First-stage entry bits set now and then: PWT, PCD, A, D, PS, G, ignored,
# address bits above 39/48, ignored 62:52, XD.
FS_ODD_BITS = [3, 4, 5, 6, 7, 8, 9, 11, 40, 47, 50, 52, 58, 62, 63]


def random_scalable_round(rng, flts, pasid_bits):
    """The writes of one scalable-mode round (root, context, PASID
    directory and table entries, one walk of second- or first-stage
    tables), the IOVA, and the (did, pasid) to invalidate."""
    writes = []
    root_lo = CTX | (rng.random() < 0.97)
    if rng.random() < 0.04:
        root_lo |= 1 << rng.randrange(1, 12)
    writes.append((ROOT, root_lo, 1 << rng.randrange(64) if rng.random() < 0.04 else 0))
    rid_pasid = 0 if rng.random() < 0.8 else rng.randrange(1, 1 << 13)
    pdts = 0 if rng.random() < 0.9 else rng.randrange(8)
    q0 = (PDIR | (pdts << 9) | ((rng.random() < 0.1) << 4) | ((rng.random() < 0.2) << 3)
          | ((rng.random() < 0.1) << 2) | ((rng.random() < 0.3) << 1) | (rng.random() < 0.97))
    q1 = rid_pasid | ((rng.random() < 0.05) << 20)
    ctx = [q0, q1, 0, 0]
    if rng.random() < 0.06:
        ctx[rng.randrange(4)] |= 1 << rng.choice([5, 8, 30, 21, 40, 63])
    writes.append((CTX + TD_DEVFN * 32, *ctx))
    de = PTBL | (rng.random() < 0.96) | ((rng.random() < 0.2) << 1)
    if rng.random() < 0.04:
        de |= 1 << rng.choice([2, 5, 11, 63])
    writes.append((PDIR + (rid_pasid >> 6) * 8, de))
    pgtt = (1 if flts else 2) if rng.random() < 0.8 else rng.choice([1, 2, 3, 4, 0, 5, 7])
    aw = 2 if rng.random() < 0.85 else rng.randrange(8)
    did = rng.randrange(1, 1 << 16) if rng.random() < 0.95 else 0
    flpm = 0 if rng.random() < 0.9 else rng.randrange(4)
    levels_fs = 4 + flpm
    top_fs = TABLES[0]
    top_ss = TABLES[4 - (aw + 2)] if 0 <= aw <= 2 else TABLES[0]
    pe = [top_ss | (pgtt << 6) | (aw << 2) | ((rng.random() < 0.3) << 1) | (rng.random() < 0.96),
          did | ((rng.random() < 0.1) << 23) | ((rng.random() < 0.1) << 24),
          top_fs | ((rng.random() < 0.3) << 4) | (flpm << 2) | (rng.random() < 0.3),
          0, 0, 0, 0, 0]
    if rng.random() < 0.06:
        q = rng.randrange(8)
        pe[q] |= 1 << rng.randrange(9 if q == 0 else 0, 64)
    writes.append((PTBL + (rid_pasid & 0x3f) * 64, *pe))

    iova = random_iova(rng)
    first = pgtt == 1
    if first:
        writes += random_walk(rng, iova, min(levels_fs, 4), lambda addr: addr
                              | (rng.random() < 0.96) | ((rng.random() < 0.92) << 1)
                              | ((rng.random() < 0.92) << 2), FS_ODD_BITS)
    else:
        writes += random_walk(rng, iova, aw + 2, lambda addr: addr | (rng.random() < 0.96)
                              | ((rng.random() < 0.92) << 1), ODD_BITS)
    return writes, iova, (did, rid_pasid)


# Fault reasons of the C device in scalable mode (it reports the legacy
# codes for root, context and second-stage faults) and ours (the
# scalable-mode codes of the architecture), documented in intel-iommu.rst.
# (R = W = 0 in a second-stage entry: the C device's read/write fault, our
# "not present".)
SM_CODES = {'0x1': {'0x39'}, '0x2': {'0x41'}, '0x3': {'0x78'}, '0x4': {'0x83'},
            '0x5': {'0x85', '0x79'}, '0x6': {'0x86', '0x79'}, '0x7': {'0x78'},
            '0xa': {'0x3a'}, '0xb': {'0x42'}, '0xc': {'0x7a'}}


def canonical(iova, bits):
    top = iova >> (bits - 1)
    return top == 0 or top == (1 << (65 - bits)) - 1


def normalise(c, rs, scalable=False, first_stage=False, aw=2, iova=0):
    """Make the documented differences between the C device's observation
    `c` and ours `rs` equal; returns (c, rs, [names of those seen]).
    `aw` is the PASID entry's AW field, `iova` the request's."""
    c, rs, seen = dict(c), dict(rs), []
    narrow_canonical = first_stage and aw < 2 and not canonical(iova, 30 + 9 * aw) \
        and canonical(iova, 48)
    for kind, codes in (('read', ('0x6', '0x86')), ('write', ('0x5', '0x85'))):
        cf, rf = c[f'{kind}_fault'], rs[f'{kind}_fault']
        # An access refused by a cached translation lacking its permission:
        # refused by both, recorded only by ours.
        if cf is None and rf and rf.get('reason') in codes and c[kind] == rs[kind] == 'dma-error':
            rs[f'{kind}_fault'] = None
            seen.append('cached-permission')
        # Scalable mode: the C device's legacy fault codes.
        elif scalable and cf and rf and rf.get('reason') in SM_CODES.get(cf.get('reason'), ()) \
                and dict(cf, reason=None) == dict(rf, reason=None):
            rs[f'{kind}_fault'] = cf
            seen.append('sm-fault-code')
        # First stage: the C device takes the canonical width from the PASID
        # entry's AW field (30 + 9 * AW bits); where that is narrower than
        # the 4-level tables' 48 bits (AW 0, 1) it refuses what ours, as the
        # architecture, translates.
        elif narrow_canonical:
            rs[f'{kind}_fault'], rs[kind] = cf, c[kind]
            rs.update({'read': {'data': c['data']}, 'write': {'landed': c['landed']}}[kind])
            seen.append('fs-canonical-aw')
    if c != rs and first_stage and 'fs-canonical-aw' in seen:
        rs = dict(rs, tables=c['tables'])
    # First stage: the C device sets A in each entry it walks through, also
    # when the walk faults further down, and no D for a write through a
    # translation cached by a read; ours sets A/D for complete walks and D
    # for every write.
    ad = 0x60
    if c != rs and first_stage and [int(t, 16) & ~ad for t in c['tables']] == \
            [int(t, 16) & ~ad for t in rs['tables']]:
        rs = dict(rs, tables=c['tables'])
        seen.append('fs-accessed-dirty')
    return c, rs, seen


def summary(obs):
    """An observation in a few words: read/write outcome and fault reason."""
    def one(kind):
        f = obs[f'{kind}_fault']
        return f"{kind}:{obs[kind]}/{f.get('reason', f['fsts']) if f else '-'}"
    return f"{one('read')} {one('write')}"


class VtdDmaDifferential(rviommu_kit.ReferenceTest):

    def compare_round(self, sides, prepare, iova, entries=()):
        """Run one round on both sides (`prepare` programs a side); returns
        the observations of the C device and ours."""
        got = {}
        for name, side in sides.items():
            qt = side.qt
            prepare(side)
            side.fault()
            targets = sorted({DATA + (iova & 0xfff), DATA + (iova & 0x1fffff),
                              DATA + (iova & 0x3fffffff), iova & ~0x3f})
            for t in targets:
                if t + 64 <= RAM and t >= 0x200000:
                    qt.memwrite(t, PATTERN_R)
            read = side.dev.dma(TD_READ, iova, 64)
            data = side.dev.buffer(64) == PATTERN_R if read == 'ok' else None
            read_fault = side.fault()
            side.dev.load_buffer(PATTERN_W)
            write = side.dev.dma(TD_WRITE, iova, 64)
            write_fault = side.fault()
            landed = [hex(t) for t in targets if t >= 0x200000 and t + 64 <= RAM
                      and qt.memread(t, 64) == PATTERN_W]
            # the walk's entries afterwards (accessed/dirty updates)
            tables = [hex(struct.unpack('<Q', qt.memread(a, 8))[0]) for a in entries]
            got[name] = dict(read=read, data=data, read_fault=read_fault, write=write,
                             write_fault=write_fault, landed=landed, tables=tables)
        return got['C'], got['Rust']

    def test_random_scalable_programming_same_outcomes(self):
        """The same in scalable mode as the C device offers it: second
        stage (`x-scalable-mode=on`) or first stage only (`x-flts=on`)."""
        differences, ok_reads, faults, documented = [], 0, 0, {}
        configs = ['x-scalable-mode=on', 'x-scalable-mode=on,x-flts=on',
                   'x-scalable-mode=on,x-pasid-mode=on', 'x-scalable-mode=on,x-flts=on,pt=off']
        for seed in range(SEEDS):
            rng = random.Random(2000 + seed)
            props = configs[seed % len(configs)]
            flts = 'x-flts=on' in props
            sides = {'C': Side(self, self.ref_bin, props), 'Rust': Side(self, self.qemu_bin, props)}
            vtds = {}
            for name, side in sides.items():
                vtd = vtds[name] = ScalableVtd(side.qt, 0x1000000, 0x1100000)
                vtd.root = ROOT
                vtd.enable_queue()
                side.qt.writeq(VTD_BASE + RTADDR, ROOT | (1 << 10))
                side.gcmd(GCMD_SRTP)
                side.gcmd(GCMD_TE)
            last = (1, 0)
            for rnd in range(ROUNDS):
                writes, iova, inv = random_scalable_round(rng, flts, 0)

                def prepare(side):
                    qt = side.qt
                    for page in (ROOT, CTX, PDIR, PTBL, *TABLES):
                        qt.memwrite(page, bytes(0x1000))
                    for addr, *quads in writes:
                        if addr + 8 * len(quads) <= RAM:
                            qt.memwrite(addr, struct.pack(f'<{len(quads)}Q', *quads))
                    vtd = vtds['C' if side is sides['C'] else 'Rust']
                    vtd.invalidate(vtd.desc_context_global(), vtd.desc_pasid_cache_global(),
                                   vtd.desc_iotlb_global(), vtd.desc_piotlb_pasid(*inv),
                                   vtd.desc_piotlb_pasid(*last))
                walk = [a for a, *_ in writes if TABLES[0] <= a < TABLES[-1] + 0x1000]
                c, rs = self.compare_round(sides, prepare, iova, walk)
                pe0 = next(q[0] for a, *q in writes if PTBL <= a < PTBL + 0x1000)
                first = flts and (pe0 >> 6) & 7 == 1
                c, rs, seen = normalise(c, rs, scalable=True, first_stage=first,
                                        aw=(pe0 >> 2) & 7, iova=iova)
                last = inv
                for name in seen:
                    documented[name] = documented.get(name, 0) + 1
                if c != rs:
                    self.log.info('DIFF %s | %s | %s | %s | %s | %s | %#x', props,
                                  summary(c), summary(rs), [(hex(a), *map(hex, q)) for a, *q in writes],
                                  c, rs, iova)
                    differences.append(
                        f'seed {seed} round {rnd} {props}: iova {iova:#x} '
                        f'{[(hex(a), *map(hex, q)) for a, *q in writes]}'
                        f'\n    C    {c}\n    Rust {rs}')
                ok_reads += c['read'] == 'ok'
                faults += bool(c['read_fault'])
            for side in sides.values():
                side.vm.shutdown()
        self.log.info('%d scalable rounds: %d reads completed, %d faulted on the C device; '
                      'documented differences seen: %s', SEEDS * ROUNDS, ok_reads, faults,
                      documented)
        self.assertEqual(differences, [], '\n'.join(differences[:20]))
        self.assertGreater(ok_reads, SEEDS * ROUNDS // 10)
        self.assertGreater(faults, SEEDS * ROUNDS // 5)

    def test_random_legacy_programming_same_outcomes(self):
        differences, ok_reads, faults, cached_perm = [], 0, 0, 0
        for seed in range(SEEDS):
            rng = random.Random(1000 + seed)
            props = 'aw-bits=39' if seed % 3 == 2 else ('pt=off' if seed % 3 == 1 else '')
            levels = 3 if 'aw-bits=39' in props else 4
            sides = {'C': Side(self, self.ref_bin, props), 'Rust': Side(self, self.qemu_bin, props)}
            for side in sides.values():
                side.qt.writeq(VTD_BASE + RTADDR, ROOT)
                side.gcmd(GCMD_SRTP)
                side.gcmd(GCMD_TE)
            for rnd in range(ROUNDS):
                writes, iova = random_round(rng, levels)

                def prepare(side):
                    for page in (ROOT, CTX, *TABLES):
                        side.qt.memwrite(page, bytes(0x1000))
                    for addr, lo, hi in writes:
                        if addr + 16 <= RAM:
                            side.qt.memwrite(addr, struct.pack('<Q', lo) if hi is None
                                             else struct.pack('<QQ', lo, hi))
                    side.invalidate()
                got = dict(zip(('C', 'Rust'), self.compare_round(sides, prepare, iova)))
                c, rs, seen = normalise(got['C'], got['Rust'])
                cached_perm += seen.count('cached-permission')
                if c != rs:
                    differences.append(f'seed {seed} round {rnd} {props or "default"}: iova '
                                       f'{iova:#x} {[(hex(a), hex(lo), hi and hex(hi)) for a, lo, hi in writes]}'
                                       f'\n    C    {got["C"]}\n    Rust {got["Rust"]}')
                ok_reads += got['C']['read'] == 'ok'
                faults += bool(got['C']['read_fault'])
            for side in sides.values():
                side.vm.shutdown()
        self.log.info('%d rounds: %d reads completed, %d faulted on the C device; %d accesses '
                      'refused through a cached translation, recorded only by ours',
                      SEEDS * ROUNDS, ok_reads, faults, cached_perm)
        self.assertEqual(differences, [], '\n'.join(differences[:20]))
        self.assertGreater(ok_reads, SEEDS * ROUNDS // 5)
        self.assertGreater(faults, SEEDS * ROUNDS // 5)


if __name__ == '__main__':
    QemuSystemTest.main()
