//! IOMMU notifiers: what QEMU's notifier consumers (vfio, vhost) are
//! told about a range a vIOMMU invalidated. QEMU's notifier events carry a
//! power-of-two, naturally aligned range; [`aligned_pieces`] cuts any
//! range into such pieces.

/// Split `[first, last]` into naturally aligned power-of-two pieces, as
/// (start, size) in address order (at most 128 pieces; sizes up to 2^63).
pub fn aligned_pieces(first: u64, last: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    if first > last {
        return out;
    }
    let mut start = first;
    loop {
        // Largest alignment of `start`, capped at 2^63 (start 0 aligns to all).
        let align_shift = if start == 0 { 63 } else { start.trailing_zeros().min(63) };
        let remaining = last - start; // size - 1 of what is left
        // Largest power of two <= remaining + 1, without overflow.
        let fit_shift = if remaining == u64::MAX { 63 } else { 63 - (remaining + 1).leading_zeros() };
        let size = 1u64 << align_shift.min(fit_shift);
        out.push((start, size));
        match start.checked_add(size) {
            Some(next) if next <= last => start = next,
            _ => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::aligned_pieces;

    #[test]
    fn pieces_cover_exactly_and_are_aligned() {
        for &(f, l) in &[
            (0u64, u64::MAX),
            (0, 0xfedf_ffff),
            (0xfef0_0000, u64::MAX),
            (0x1000, 0x1fff),
            (0x3000, 0x8fff),
            (0x1234, 0x1234),
            (u64::MAX, u64::MAX),
            (0x8000_0000_0000_0000, u64::MAX),
        ] {
            let p = aligned_pieces(f, l);
            assert!(!p.is_empty() && p.len() <= 128, "{f:#x}..{l:#x}: {p:x?}");
            assert_eq!(p[0].0, f);
            let mut next = f;
            for &(s, size) in &p {
                assert_eq!(s, next);
                assert!(size.is_power_of_two() && s % size == 0, "{s:#x}/{size:#x}");
                next = s.wrapping_add(size);
            }
            let (s, size) = *p.last().unwrap();
            assert_eq!(s + (size - 1), l);
        }
        assert_eq!(aligned_pieces(0, u64::MAX), vec![(0, 1 << 63), (1 << 63, 1 << 63)]);
        assert_eq!(aligned_pieces(0x3000, 0x8fff), vec![(0x3000, 0x1000), (0x4000, 0x4000), (0x8000, 0x1000)]);
        assert!(aligned_pieces(5, 4).is_empty());
    }
}
