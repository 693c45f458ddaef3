//! Helpers for the `bilge` layouts of both IOMMUs: masks computed from a
//! layout's declaration, and the addresses that address fields name.
//!
//! An architected address field holds an address's bits from some bit up
//! (VT-d's table pointers and page addresses from bit 12, the SMMU's
//! context pointers from bit 6, MSI addresses from bit 2, ...): the layout
//! declares the field, [`field_address`] says where its bits go in the
//! address, so that no decoder shifts a field by hand.

/// The address that an address field names: the field holds the address's
/// bits from `lsb` up; the bits below are zero (alignment) or come from
/// another field.
#[inline(always)]
pub fn field_address(field: impl Into<u64>, lsb: u32) -> u64 {
    field.into() << lsb
}

/// The value of an address field for `address` (its bits from `lsb` up),
/// the inverse of [`field_address`] for an aligned address.
#[inline(always)]
pub fn address_field(address: u64, lsb: u32) -> u64 {
    address >> lsb
}

/// The bits of a 32-bit layout `T` that `set` sets in a zero value
/// (constant-folded when `set` stores constants).
#[inline(always)]
pub fn bits32<T: From<u32> + Into<u32>>(set: impl FnOnce(&mut T)) -> u64 {
    let mut v = T::from(0);
    set(&mut v);
    u64::from(v.into())
}

/// The bits of a 64-bit layout `T` that `set` sets in a zero value
/// (constant-folded when `set` stores constants).
#[inline(always)]
pub fn bits<T: From<u64> + Into<u64>>(set: impl FnOnce(&mut T)) -> u64 {
    let mut v = T::from(0);
    set(&mut v);
    v.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_fields() {
        assert_eq!(field_address(0xabcdeu64, 12), 0xabcd_e000);
        assert_eq!(address_field(0xabcd_e000, 12), 0xabcde);
        assert_eq!(field_address(1u32, 2), 4);
    }
}
