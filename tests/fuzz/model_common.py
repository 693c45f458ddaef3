# SPDX-License-Identifier: GPL-2.0-or-later
"""What the isolation models of both IOMMUs (vtd_model.py, smmu_model.py)
share: the per-tag history of what a translation may give."""

UNKNOWN = 'unknown'


class History:
    """`hist`: (tag, PASID or SubstreamID, page) -> the pages a cached or
    current translation may give, or UNKNOWN (never checked again)."""

    def __init__(self):
        self.hist = {}

    def record(self, tag, pasid, page, pas):
        key = (tag, pasid, page)
        cur = self.hist.setdefault(key, set())
        if cur == UNKNOWN:
            return
        if pas == UNKNOWN:
            self.hist[key] = UNKNOWN
        else:
            cur |= pas
