# SPDX-License-Identifier: GPL-2.0-or-later
"""An independent model of what VT-d tables allow a requester to reach,
for the isolation checks of the device fuzzer.

It reads only the guest RAM the fuzzer wrote (its shadow) and the
register writes it made, never the device.  Because both devices cache
context entries, PASID entries and translations (legitimately, until the
guest invalidates them), what a DMA may reach is the union of what the
tables allowed at any earlier step of the program: every root table ever
latched, every context and PASID entry ever readable through one of them,
walked against the RAM of every later step.  Translations are kept per
domain id (and PASID), as the IOTLB tags them, so a requester may also
reach what its domains' other requesters mapped.  Where the two devices'
leniencies differ (reserved bits, host address width, the PS bit where it
is reserved), the model takes the union of the interpretations, so it
never demands more than either device enforces; a walk that reads outside
RAM makes the key unknown (no check).  First-stage and nested PASID entries
are not modelled yet: their keys are unknown.
"""

import struct

ADDR = 0x000f_ffff_ffff_f000
MASKS = ((1 << 39) - 1, (1 << 48) - 1, (1 << 52) - 1)   # host address widths
from model_common import UNKNOWN, History


class Model(History):

    def __init__(self, ram, ram_size, sids, pages):
        super().__init__()
        self.ram, self.ram_size = ram, ram_size
        self.sids, self.pages = sids, pages
        self.pasids = set()
        self.roots = set()               # (table, TTM) ever latched
        self.identity_ever = False       # translation was off at some point
        self.ctx = {s: set() for s in sids}           # context entry versions
        self.pe = {}                                    # (sid, pasid) -> PASID entry versions
        self.dids = {s: set() for s in sids}            # domains a requester was in
        self.rid_pasids = {s: set() for s in sids}
        self.ident = set()               # (sid, pasid) with a pass-through entry ever

    # -- guest RAM -------------------------------------------------------

    def where(self, addr, size=8):
        """'ram' (what the fuzzer wrote, zero elsewhere), 'none' (nothing
        there: a read fails, which both devices treat as a fault) or
        'unknown' (device memory or firmware: no prediction)."""
        end = addr + size
        if end <= 0xa0000 or (0x100000 <= addr and end <= self.ram_size):
            return 'ram'
        if self.ram_size <= addr and end <= 0xb0000000 or addr >= 1 << 32:
            return 'none'
        return 'unknown'

    def in_ram(self, addr, size=8):
        return self.where(addr, size) == 'ram'

    def quad(self, addr):
        return struct.unpack('<Q', bytes(self.ram.get(addr + i, 0) for i in range(8)))[0]

    # -- what the fuzzer did -----------------------------------------------

    def latch_root(self, rtaddr):
        self.roots.add((rtaddr & ADDR, (rtaddr >> 10) & 3))

    def translation_off(self):
        self.identity_ever = True

    def update(self):
        """Take in the tables as they are now (after a step that wrote RAM
        or latched registers)."""
        for root, ttm in self.roots:
            for sid in self.sids:
                bus, devfn = sid >> 8, sid & 0xff
                if ttm in (0, 1):
                    size = 16 if ttm == 0 else 32
                    ra = root + bus * 16 + (0 if ttm == 0 else (devfn >> 7) * 8)
                    kind = self.where(ra)
                    if kind == 'unknown':
                        self.ctx[sid].add(UNKNOWN)
                    if kind != 'ram':
                        continue
                    re = self.quad(ra)
                    if not re & 1:
                        continue
                    for m in MASKS:
                        a = (re & ADDR & m) + (devfn * 16 if ttm == 0 else (devfn & 0x7f) * 32)
                        kind = self.where(a, size)
                        if kind == 'unknown':
                            self.ctx[sid].add(UNKNOWN)
                        elif kind == 'ram':
                            q = tuple(self.quad(a + 8 * i) for i in range(size // 8))
                            self.ctx[sid].add(('legacy' if ttm == 0 else 'scalable',) + q)
                else:
                    self.ctx[sid].add(UNKNOWN)
        for sid in self.sids:
            for ce in list(self.ctx[sid]):
                if ce == UNKNOWN:
                    continue
                if ce[0] == 'legacy':
                    self.legacy_context(sid, ce[1], ce[2])
                    continue
                else:
                    self.scalable_context(sid, ce[1:])

    def legacy_context(self, sid, lo, hi):
        if not lo & 1:
            return
        tt, did = (lo >> 2) & 3, (hi >> 8) & 0xffff
        self.dids[sid].add(did)
        if tt == 2:
            self.ident.add((sid, None))
            return
        for page in self.pages:
            self.record(did, None, page, self.ss_walk(lo & ADDR, page))

    def scalable_context(self, sid, q):
        if not q[0] & 1:
            return
        pdir = q[0] & ADDR
        rid_pasid = q[1] & 0xfffff
        self.rid_pasids[sid].add(rid_pasid)
        for pasid in {rid_pasid} | self.pasids:
            versions = self.pe.setdefault((sid, pasid), set())
            de_addr = pdir + (pasid >> 6) * 8
            kind = self.where(de_addr)
            if kind != 'ram':
                if kind == 'unknown':
                    versions.add(UNKNOWN)
                continue
            de = self.quad(de_addr)
            if not de & 1:
                continue
            for m in MASKS:
                a = (de & ADDR & m) + (pasid & 0x3f) * 64
                kind = self.where(a, 64)
                if kind == 'unknown':
                    versions.add(UNKNOWN)
                elif kind == 'ram':
                    versions.add(tuple(self.quad(a + 8 * i) for i in range(3)))
        for (s, pasid), versions in self.pe.items():
            if s != sid:
                continue
            for pe in versions:
                if pe == UNKNOWN:
                    for page in self.pages:
                        for did in self.dids[sid] | {None}:
                            self.record(did, pasid, page, UNKNOWN)
                    continue
                if not pe[0] & 1:
                    continue
                pgtt, did = (pe[0] >> 6) & 7, pe[1] & 0xffff
                self.dids[sid].add(did)
                if pgtt == 4:
                    self.ident.add((sid, pasid))
                    continue
                for page in self.pages:
                    if pgtt == 2:
                        pas = self.ss_walk(pe[0] & ADDR, page)
                    elif pgtt == 1:
                        pas = self.fs_walk(pe[2] & ADDR, page)
                    elif pgtt == 3:
                        pas = self.fs_walk(pe[2] & ADDR, page, ss_top=pe[0] & ADDR)
                    else:
                        pas = set()      # reserved: faults
                    self.record(did, pasid, page, pas)

    def ss_walk(self, top, iova):
        """Every output page a second-stage walk from `top` may give for
        `iova` (R or W makes an entry present), over 3, 4 and 5 levels and
        the host address widths; UNKNOWN when a walk reads device memory."""
        return self.x86_walk(top, iova, (3, 4, 5), 0b11)

    def fs_walk(self, root, va, ss_top=None):
        """The same for a first-stage (x86-64 paging) walk (P makes an entry
        present) over 4 and 5 levels; with `ss_top` (nested translation)
        every table address and the output are second-stage input
        addresses, walked by ss_walk."""
        def through_ss(gpas):
            out = set()
            for g in gpas:
                pas = self.ss_walk(ss_top, g & ~0xfff)
                if pas == UNKNOWN:
                    return UNKNOWN
                out |= {p | (g & 0xfff) for p in pas}
            return out
        return self.x86_walk(root, va, (4, 5), 0b1, through_ss if ss_top is not None else None)

    def x86_walk(self, top, addr, level_counts, present, through=None):
        """The walk both x86 formats share (9 bits a level, PS at levels 2
        and 3; with PS also walked on, for a device that ignores a reserved
        PS); `through` maps table and output addresses (nesting)."""
        def conv(addrs):
            return addrs if through is None or not addrs else through(addrs)

        out = set()
        for levels in level_counts:
            tables = conv({top & m for m in MASKS})
            if tables == UNKNOWN:
                return UNKNOWN
            for level in range(levels, 0, -1):
                nxt = set()
                shift = 12 + 9 * (level - 1)
                for table in tables:
                    a = table + ((addr >> shift) & 0x1ff) * 8
                    kind = self.where(a)
                    if kind == 'unknown':
                        return UNKNOWN
                    if kind == 'none':
                        continue
                    e = self.quad(a)
                    if not e & present:
                        continue
                    large = level in (2, 3) and e & (1 << 7)
                    if level == 1 or large:
                        size = 1 << shift
                        pas = conv({((e & ADDR & m) & ~(size - 1)) | (addr & (size - 1) & ~0xfff)
                                    for m in MASKS})
                        if pas == UNKNOWN:
                            return UNKNOWN
                        out |= pas
                    if level > 1:
                        nxt |= {e & ADDR & m for m in MASKS}
                tables = conv(nxt)
                if tables == UNKNOWN:
                    return UNKNOWN
                if not tables:
                    break
        return out

    # -- the check ---------------------------------------------------------

    def allowed(self, sid, pasid, page):
        """(pages a DMA of `sid` (with `pasid`, or None) to `page` may
        reach, identity allowed) or None when unknown."""
        if any(c == UNKNOWN for c in self.ctx[sid]):
            return None
        identity = self.identity_ever
        pasids = {pasid} if pasid is not None else (self.rid_pasids[sid] | {None})
        out = set()
        for p in pasids:
            if (sid, p) in self.ident or (sid, None) in self.ident:
                identity = True
            for did in self.dids[sid]:
                h = self.hist.get((did, p, page), set())
                if h == UNKNOWN:
                    return None
                out |= h
        return out, identity
