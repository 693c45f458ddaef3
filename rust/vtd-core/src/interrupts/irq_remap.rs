//! Interrupt remapping: the interrupt remapping table latched from IRTA,
//! its 128-bit entries (IRTEs), the decoding of interrupt requests and the
//! message an interrupt controller receives after remapping (VT-d spec,
//! chapter 5 and "Interrupt Remapping Table Entry").
//!
//! Conventions: an interrupt request is a DWORD write by requester `sid`
//! to the interrupt address range 0xFEE0_0000..=0xFEEF_FFFF
//! ([`InterruptRequest`]). Address bit 4 selects the format: compatibility
//! format (bit 4 = 0) or remappable format (bit 4 = 1), where the handle is
//! address bits 19:5 plus bit 2 as handle bit 15; with SHV (bit 3) the data
//! bits 15:0 are a subhandle added to it. The sum, the interrupt index,
//! selects the IRTE at IRTA + 16 * index.
//!
//! Two rule sets ([`Rules`]): the C device's (the default: guests written
//! against QEMU's C `intel-iommu` must keep working) and the architecture's
//! (`strict`, property `x-strict-ir`). Checks, in order, with the fault
//! reported for each (FPD in the IRTE suppresses the recording of the
//! qualified ones, 22h, 24h and 26h):
//!
//! | condition                                                     | code | rules       |
//! |---------------------------------------------------------------|------|-------------|
//! | address outside the interrupt range                           | 20h  | both        |
//! | remappable format with data bits 31:16 set                    | 20h  | strict      |
//! | compatibility format while CFIS = 0 or EIME = 1               | 25h  | strict      |
//! | interrupt index not below the table size 2^(IRTA.S + 1)       | 21h  | both        |
//! | the IRTE cannot be read                                       | 23h  | both        |
//! | IRTE present bit clear                                        | 22h  | both        |
//! | reserved IRTE bits set (see [`Irte::reserved`])               | 24h  | both        |
//! | source-id validation per SVT/SQ/SID fails                     | 26h  | both        |
//! | SHV set and data bits 31:16 set (index 0 recorded)            | 20h  | C           |
//!
//! Where the C device's rules are more lenient, the request is delivered:
//!
//! * compatibility-format requests always pass through unchanged (the C
//!   device has no CFIS and ignores EIME for them);
//! * data bits 31:16 of a remappable request matter only with SHV, and are
//!   checked after the IRTE;
//! * the index is handle + subhandle modulo 2^16;
//! * the reserved IRTE bits are low bits 14:12 and 31:24 and high bits
//!   127:84; strict rules add IM (posted format, not supported: ECAP.PI =
//!   0), the destination bits 39:32 and 63:48 in xAPIC mode (EIME = 0) and
//!   the reserved SVT encoding 11b (which the C device's rules report as a
//!   source-id failure, 26h);
//! * a request without an explicit requester id (`check_sid` false: the
//!   I/O APIC's messages, plain DMA writes into the interrupt window,
//!   interrupt routes without a device) is not validated against the
//!   IRTE's SVT/SQ/SID. Strict rules validate every request whose
//!   requester the caller knows, with the requester id the platform's DMAR
//!   table declares for sources that have none (the I/O APIC's).
//!
//! The remapped message follows QEMU's convention for x86 MSIs
//! ([`Irte::message`]): address 0xFEE0_0000 | dest\[7:0\] << 12 | RH << 3 |
//! DM << 2 | the request's address bits 1:0, with dest\[31:8\] in address
//! bits 63:40 (x2APIC destinations); data = vector | DLM << 8 | 1 << 14
//! (level assert) | TM << 15. IRTA.EIME is honoured without ECAP.EIM, as by
//! the C device; strict rules treat it as 0 then.
//!
//! The model has no interrupt entry cache: every request reads its IRTE
//! from guest memory, which the spec permits.

use iommu_core::layout::field_address;
use bilge::prelude::*;

use crate::effects::Msi;
use crate::queues::fault::FaultReason;
use crate::mem::GuestMemory;
use crate::vtd::{INTERRUPT_ADDR_FIRST, INTERRUPT_ADDR_LAST};

pub use layouts::{IrtaReg, IrteDstXapic, IrteHi, IrteLo, MsiAddr, MsiData, RemappableAddr, RemappableData};

/// Size in bytes of one IRTE.
pub const IRTE_SIZE: u64 = 16;

/// Architected bit layouts of interrupt remapping (VT-d 3.4, 5.1.4, 9.10,
/// 11.4.10) and of the x86 MSI a remapped interrupt becomes. A module of
/// its own because bilge's generated constructors carry no documentation.
#[allow(missing_docs)]
mod layouts {
    // Every field is #[inline]: bilge copies a field's attributes onto its
    // getter and setter, which QEMU's build (debug assertions on) would
    // otherwise leave out of line (+10% instructions on a page walk).
    use bilge::prelude::*;

    /// IRTA register.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct IrtaReg {
        /// Bits 3:0, S: the table has 2^(S+1) entries.
        #[inline]
        pub s: u4,
        /// Bits 10:4, reserved.
        #[inline]
        pub reserved: u7,
        /// Bit 11, EIME: extended interrupt mode (x2APIC destinations).
        #[inline]
        pub eime: bool,
        /// Bits 63:12, IRTA: the table's base >> 12.
        #[inline]
        pub base: u52,
    }

    /// Address of an interrupt request in remappable format.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct RemappableAddr {
        /// Bits 1:0, don't care.
        #[inline]
        pub ignored: u2,
        /// Bit 2, HANDLE\[15\].
        #[inline]
        pub handle_15: bool,
        /// Bit 3, SHV: the data's low 16 bits are a subhandle.
        #[inline]
        pub shv: bool,
        /// Bit 4, interrupt format: 1 = remappable.
        #[inline]
        pub remappable: bool,
        /// Bits 19:5, HANDLE\[14:0\].
        #[inline]
        pub handle: u15,
        /// Bits 31:20, 0FEEh.
        #[inline]
        pub fee: u12,
        /// Bits 63:32.
        #[inline]
        pub high: u32,
    }

    /// Data of an interrupt request in remappable format.
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct RemappableData {
        /// Bits 15:0, the subhandle (with SHV).
        #[inline]
        pub subhandle: u16,
        /// Bits 31:16, reserved.
        #[inline]
        pub reserved: u16,
    }

    /// IRTE bits 63:0 (remapped format).
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct IrteLo {
        /// Bit 0, P: present.
        #[inline]
        pub p: bool,
        /// Bit 1, FPD: fault processing disable.
        #[inline]
        pub fpd: bool,
        /// Bit 2, DM: destination mode, 1 = logical.
        #[inline]
        pub dm: bool,
        /// Bit 3, RH: redirection hint.
        #[inline]
        pub rh: bool,
        /// Bit 4, TM: trigger mode, 1 = level.
        #[inline]
        pub tm: bool,
        /// Bits 7:5, DLM: delivery mode.
        #[inline]
        pub dlm: u3,
        /// Bits 11:8, available to software.
        #[inline]
        pub avail: u4,
        /// Bits 14:12, reserved.
        #[inline]
        pub reserved: u3,
        /// Bit 15, IM: IRTE mode, 1 = posted (not supported: reserved by
        /// the strict rules).
        #[inline]
        pub im: bool,
        /// Bits 23:16, V: vector.
        #[inline]
        pub v: u8,
        /// Bits 31:24, reserved.
        #[inline]
        pub reserved: u8,
        /// Bits 63:32, DST: destination id (x2APIC), or [`IrteDstXapic`].
        #[inline]
        pub dst: u32,
    }

    /// The DST field of an IRTE in xAPIC mode (IRTA.EIME = 0).
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct IrteDstXapic {
        /// IRTE bits 39:32, reserved.
        #[inline]
        pub reserved: u8,
        /// IRTE bits 47:40, the APIC id.
        #[inline]
        pub apic_id: u8,
        /// IRTE bits 63:48, reserved.
        #[inline]
        pub reserved: u16,
    }

    /// IRTE bits 127:64.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct IrteHi {
        /// Bits 79:64, SID: source id.
        #[inline]
        pub sid: u16,
        /// Bits 81:80, SQ: source-id qualifier.
        #[inline]
        pub sq: u2,
        /// Bits 83:82, SVT: source validation type.
        #[inline]
        pub svt: u2,
        /// Bits 127:84, reserved.
        #[inline]
        pub reserved: u44,
    }

    /// An x86 MSI address (compatibility format) as QEMU delivers it: the
    /// destination id's bits 31:8 (x2APIC) in address bits 63:40.
    #[bitsize(64)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct MsiAddr {
        /// Bits 1:0, kept from the request.
        #[inline]
        pub low: u2,
        /// Bit 2, DM: logical destination mode.
        #[inline]
        pub dm: bool,
        /// Bit 3, RH: redirection hint.
        #[inline]
        pub rh: bool,
        /// Bits 11:4, zero (bit 4: compatibility format).
        #[inline]
        pub zero: u8,
        /// Bits 19:12, destination id bits 7:0.
        #[inline]
        pub dest_lo: u8,
        /// Bits 31:20, 0FEEh.
        #[inline]
        pub fee: u12,
        /// Bits 39:32, zero.
        #[inline]
        pub zero_hi: u8,
        /// Bits 63:40, destination id bits 31:8.
        #[inline]
        pub dest_hi: u24,
    }

    /// An x86 MSI data word.
    #[bitsize(32)]
    #[derive(FromBits, DebugBits, Clone, Copy, PartialEq, Eq)]
    pub struct MsiData {
        /// Bits 7:0, vector.
        #[inline]
        pub vector: u8,
        /// Bits 10:8, delivery mode.
        #[inline]
        pub dlm: u3,
        /// Bits 13:11, zero.
        #[inline]
        pub zero: u3,
        /// Bit 14, level: assert.
        #[inline]
        pub assert: bool,
        /// Bit 15, trigger mode: level.
        #[inline]
        pub tm: bool,
        /// Bits 31:16, zero.
        #[inline]
        pub zero_hi: u16,
    }
}

/// A DWORD write to the interrupt address range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InterruptRequest {
    /// Requester id (bus << 8 | devfn).
    pub sid: u16,
    /// Full write address (0xFEEx_xxxx for an interrupt).
    pub address: u64,
    /// The 32-bit data written.
    pub data: u32,
}

/// An interrupt request that was blocked; it must be dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct InterruptFault {
    /// Why the request was blocked (an interrupt-remapping reason).
    pub reason: FaultReason,
    /// Requester id.
    pub sid: u16,
    /// The interrupt index computed from a remappable-format request
    /// (`None` for compatibility-format requests and addresses outside the
    /// interrupt range). The fault record holds its low 16 bits.
    pub index: Option<u32>,
}

/// A blocked request together with the FPD bit of the IRTE that was used
/// (false when no present IRTE was read), which decides whether a
/// qualified fault is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RemapFailure {
    /// The fault.
    pub fault: InterruptFault,
    /// FPD of the IRTE the fault was detected in.
    pub fpd: bool,
}

/// The interrupt remapping table as latched by GCMD.SIRTP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IrTable {
    /// Table base (IRTA bits 63:12 within the host address width).
    pub base: u64,
    /// Number of entries, 2^(S+1); 0 before the first SIRTP.
    pub entries: u32,
    /// Extended interrupt mode (IRTA.EIME, only with ECAP.EIM).
    pub eime: bool,
}

impl IrTable {
    /// Latch an IRTA value. `eim_supported` is ECAP.EIM: without it EIME
    /// is treated as 0.
    pub fn from_irta(irta: u64, haw_mask: u64, eim_supported: bool) -> IrTable {
        IrTable {
            base: field_address(IrtaReg::from(irta).base(), 12) & haw_mask,
            // Arithmetic: S encodes 2^(S+1) entries.
            entries: 2u32 << IrtaReg::from(irta).s().value(),
            eime: eim_supported && IrtaReg::from(irta).eime(),
        }
    }

    /// Guest physical address of the IRTE with index `index`.
    #[inline]
    pub fn entry_address(&self, index: u32) -> u64 {
        self.base.wrapping_add(u64::from(index) * IRTE_SIZE)
    }
}

/// How an interrupt request is to be processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestFormat {
    /// Compatibility format (address bit 4 clear).
    Compatibility,
    /// Remappable format.
    Remappable {
        /// handle (+ subhandle with SHV): the IRTE index.
        index: u32,
    },
}

/// Which rules a request is checked by (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rules {
    /// GSTS.CFIS (used by strict rules only).
    pub cfis: bool,
    /// Validate the requester id against the IRTE's SVT/SQ/SID.
    pub check_sid: bool,
    /// The architecture's rules rather than the C device's.
    pub strict: bool,
}

/// Decode an interrupt request. `Err` is a 20h fault with the interrupt
/// index if one could be computed. `strict`: data bits 31:16 of a
/// remappable request are reserved and the index does not wrap; otherwise
/// the index is taken modulo 2^16 and the data bits are left to
/// [`remap_checked`] (they matter only with SHV there).
pub fn decode_request(
    address: u64,
    data: u32,
    strict: bool,
) -> Result<RequestFormat, (FaultReason, Option<u32>)> {
    if !(INTERRUPT_ADDR_FIRST..=INTERRUPT_ADDR_LAST).contains(&address) {
        return Err((FaultReason::IrRequestReserved, None));
    }
    let a = RemappableAddr::from(address);
    let d = RemappableData::from(data);
    if !a.remappable() {
        return Ok(RequestFormat::Compatibility);
    }
    // HANDLE is split: bits 14:0 in address bits 19:5, bit 15 in bit 2.
    let handle = u32::from(a.handle().value()) | (u32::from(a.handle_15()) << 15);
    let subhandle = if a.shv() { u32::from(d.subhandle()) } else { 0 };
    let index = handle + subhandle;
    if !strict {
        // The C device's 16-bit index wraps.
        return Ok(RequestFormat::Remappable { index: index & 0xffff });
    }
    if d.reserved_i() != 0 {
        return Err((FaultReason::IrRequestReserved, Some(index)));
    }
    Ok(RequestFormat::Remappable { index })
}

/// An interrupt remapping table entry: the (low, high) quadwords as read
/// from memory, decoded by accessors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Irte {
    /// Bits 63:0.
    pub lo: u64,
    /// Bits 127:64.
    pub hi: u64,
}

impl Irte {
    /// Bits 63:0.
    #[inline]
    pub fn low(&self) -> IrteLo {
        IrteLo::from(self.lo)
    }

    /// Bits 127:64.
    #[inline]
    pub fn high(&self) -> IrteHi {
        IrteHi::from(self.hi)
    }

    /// P: the entry is present.
    #[inline]
    pub fn present(&self) -> bool {
        self.low().p()
    }

    /// FPD: qualified faults for this entry are not recorded.
    #[inline]
    pub fn fpd(&self) -> bool {
        self.low().fpd()
    }

    /// DM: logical destination mode.
    #[inline]
    pub fn logical_destination(&self) -> bool {
        self.low().dm()
    }

    /// RH: redirection hint.
    #[inline]
    pub fn redirection_hint(&self) -> bool {
        self.low().rh()
    }

    /// TM: level-triggered.
    #[inline]
    pub fn level_triggered(&self) -> bool {
        self.low().tm()
    }

    /// DLM: delivery mode (bits 7:5).
    #[inline]
    pub fn delivery_mode(&self) -> u8 {
        self.low().dlm().value()
    }

    /// IM: posted-format entry.
    #[inline]
    pub fn posted(&self) -> bool {
        self.low().im()
    }

    /// V: vector (bits 23:16).
    #[inline]
    pub fn vector(&self) -> u8 {
        self.low().v()
    }

    /// DST field as stored (bits 63:32).
    #[inline]
    pub fn destination_field(&self) -> u32 {
        self.low().dst()
    }

    /// The destination id: all 32 bits in x2APIC mode (`eime`), else the
    /// 8-bit APIC id in DST bits 15:8.
    pub fn destination(&self, eime: bool) -> u32 {
        let dst = self.destination_field();
        if eime {
            dst
        } else {
            u32::from(IrteDstXapic::from(dst).apic_id())
        }
    }

    /// SID field (bits 79:64).
    #[inline]
    pub fn source_id(&self) -> u16 {
        self.high().sid()
    }

    /// SQ: source-id qualifier (bits 81:80).
    #[inline]
    pub fn source_qualifier(&self) -> u8 {
        self.high().sq().value()
    }

    /// SVT: source validation type (bits 83:82).
    #[inline]
    pub fn source_validation_type(&self) -> u8 {
        self.high().svt().value()
    }

    /// Whether a present entry has a non-zero reserved field or a reserved
    /// encoding: low bits 14:12 and 31:24 and high bits 127:84; with
    /// `strict` rules also IM (posted interrupts are not supported), SVT =
    /// 11b, and in xAPIC mode (`eime` false) destination bits 39:32 and
    /// 63:48.
    #[inline]
    pub fn reserved(&self, eime: bool, strict: bool) -> bool {
        // The reserved bits are those no field of the layout names: the
        // complement of every field at its maximum (constants).
        let lo_rsvd = !u64::from(IrteLo::new(
            true,
            true,
            true,
            true,
            true,
            <u3 as Number>::MAX,
            <u4 as Number>::MAX,
            true,
            u8::MAX,
            u32::MAX,
        ));
        let hi_rsvd = !u64::from(IrteHi::new(u16::MAX, <u2 as Number>::MAX, <u2 as Number>::MAX));
        let c_rsvd = self.lo & lo_rsvd != 0 || self.hi & hi_rsvd != 0;
        if !strict {
            return c_rsvd;
        }
        let lo = self.low();
        let dst = IrteDstXapic::from(lo.dst());
        let xapic = !eime && (dst.reserved_i() != 0 || dst.reserved_ii() != 0);
        c_rsvd || lo.im() || xapic || self.source_validation_type() == 3
    }

    /// Source-id validation of requester `sid` per SVT: 00b accepts
    /// everyone; 01b compares with SID, ignoring function-number bits per
    /// SQ (01b: bit 2, 10b: bits 2:1, 11b: bits 2:0); 10b requires the
    /// requester's bus within SID\[7:0\] (start) ..= SID\[15:8\] (end).
    /// SVT = 11b (reserved) accepts nobody.
    #[inline(always)]
    pub fn source_valid(&self, sid: u16) -> bool {
        let want = self.source_id();
        match self.source_validation_type() {
            0 => true,
            1 => {
                let ignore: u16 = [0, 0b100, 0b110, 0b111][usize::from(self.source_qualifier())];
                (want & !ignore) == (sid & !ignore)
            }
            2 => {
                // SID holds a bus range: start in bits 7:0, end in 15:8.
                let [start, end] = want.to_le_bytes();
                let bus = sid.to_be_bytes()[0];
                start <= bus && bus <= end
            }
            _ => false,
        }
    }

    /// The message delivered for this entry. `addr_low_bits` are the
    /// request's address bits 1:0, which are kept as the C device does.
    #[inline(always)]
    pub fn message(&self, eime: bool, addr_low_bits: u64) -> Msi {
        // The destination id is split: bits 7:0 and 31:8.
        let [d0, d1, d2, d3] = self.destination(eime).to_le_bytes();
        let address = MsiAddr::new(
            u2::new((addr_low_bits & 3) as u8),
            self.logical_destination(),
            self.redirection_hint(),
            0,
            d0,
            u12::new(0xfee),
            0,
            u24::new(u32::from_le_bytes([d1, d2, d3, 0])),
        );
        let data = MsiData::new(
            self.vector(),
            u3::new(self.delivery_mode()),
            u3::new(0),
            true,
            self.level_triggered(),
            0,
        );
        Msi { address: address.into(), data: data.into() }
    }
}

/// Remap `req` through `table` (interrupt remapping enabled) by the
/// architecture's rules, validating the requester id. `cfis` is GSTS.CFIS.
/// Compatibility-format requests that are allowed come back unchanged.
pub fn remap(
    table: &IrTable,
    cfis: bool,
    req: &InterruptRequest,
    mem: &dyn GuestMemory,
) -> Result<Msi, RemapFailure> {
    remap_checked(table, Rules { cfis, check_sid: true, strict: true }, req, mem)
}

/// Remap `req` through `table` by `rules` (see the module documentation).
pub fn remap_checked(
    table: &IrTable,
    rules: Rules,
    req: &InterruptRequest,
    mem: &dyn GuestMemory,
) -> Result<Msi, RemapFailure> {
    let fail = |reason: FaultReason, index: Option<u32>, fpd: bool| RemapFailure {
        fault: InterruptFault { reason, sid: req.sid, index },
        fpd,
    };
    let index = match decode_request(req.address, req.data, rules.strict) {
        Err((reason, index)) => return Err(fail(reason, index, false)),
        Ok(RequestFormat::Compatibility) => {
            if !rules.strict || (rules.cfis && !table.eime) {
                return Ok(Msi { address: req.address, data: req.data });
            }
            return Err(fail(FaultReason::IrCompatibilityBlocked, None, false));
        }
        Ok(RequestFormat::Remappable { index }) => index,
    };
    let at = Some(index);
    if index >= table.entries {
        return Err(fail(FaultReason::IrIndexBeyondTable, at, false));
    }
    let irte = match mem.read_u128_pair(table.entry_address(index)) {
        Ok((lo, hi)) => Irte { lo, hi },
        Err(_) => return Err(fail(FaultReason::IrTableAccess, at, false)),
    };
    let fpd = irte.fpd();
    if !irte.present() {
        return Err(fail(FaultReason::IrteNotPresent, at, fpd));
    }
    if irte.reserved(table.eime, rules.strict) {
        return Err(fail(FaultReason::IrteReserved, at, fpd));
    }
    if rules.check_sid && !irte.source_valid(req.sid) {
        return Err(fail(FaultReason::IrSourceIdInvalid, at, fpd));
    }
    // The C device's order: reserved data bits of a request with a
    // subhandle are found after the IRTE, and recorded with index 0.
    if !rules.strict && RemappableAddr::from(req.address).shv() && RemappableData::from(req.data).reserved_i() != 0 {
        return Err(fail(FaultReason::IrRequestReserved, None, false));
    }
    Ok(irte.message(table.eime, req.address))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Raw bit positions from the specification, independent of the
    // layouts (these tests check the layouts against them).
    const IRTA_EIME: u64 = 1 << 11;
    const MSI_ADDR_REMAPPABLE: u64 = 1 << 4;
    const MSI_ADDR_SHV: u64 = 1 << 3;
    use crate::mem::MemError;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Byte-addressed memory; addresses at or above 1 << 40 fail.
    #[derive(Default)]
    struct Mem(RefCell<HashMap<u64, u8>>);

    impl GuestMemory for Mem {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
            for (i, b) in buf.iter_mut().enumerate() {
                let a = addr.wrapping_add(i as u64);
                if a >= 1 << 40 {
                    return Err(MemError);
                }
                *b = self.0.borrow().get(&a).copied().unwrap_or(0);
            }
            Ok(())
        }
        fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemError> {
            for (i, b) in buf.iter().enumerate() {
                self.0.borrow_mut().insert(addr.wrapping_add(i as u64), *b);
            }
            Ok(())
        }
    }

    const BASE: u64 = 0x10_0000;

    fn table(s: u64, eime: bool) -> IrTable {
        IrTable::from_irta(BASE | s | if eime { IRTA_EIME } else { 0 }, (1 << 48) - 1, true)
    }

    fn put(mem: &Mem, index: u64, lo: u64, hi: u64) {
        mem.write_u64(BASE + index * 16, lo).unwrap();
        mem.write_u64(BASE + index * 16 + 8, hi).unwrap();
    }

    fn remappable(handle: u32, shv: bool) -> u64 {
        0xfee0_0000
            | (u64::from(handle & 0x7fff) << 5)
            | (u64::from(handle >> 15 & 1) << 2)
            | MSI_ADDR_REMAPPABLE
            | if shv { MSI_ADDR_SHV } else { 0 }
    }

    fn req(sid: u16, address: u64, data: u32) -> InterruptRequest {
        InterruptRequest { sid, address, data }
    }

    fn reason(r: Result<Msi, RemapFailure>) -> (u8, Option<u32>, bool) {
        let f = r.unwrap_err();
        (f.fault.reason.code(), f.fault.index, f.fpd)
    }

    #[test]
    fn irta_latch_size_address_and_eime() {
        let t = IrTable::from_irta(0xffff_1234_5678_9fff, (1 << 39) - 1, true);
        assert_eq!((t.base, t.entries, t.eime), (0x34_5678_9000, 1 << 16, true));
        let t = IrTable::from_irta(0x5000 | IRTA_EIME, u64::MAX, false);
        assert_eq!((t.base, t.entries, t.eime), (0x5000, 2, false), "EIME needs ECAP.EIM");
        assert_eq!(t.entry_address(3), 0x5030);
        assert_eq!(IrTable::default().entries, 0);
    }

    #[test]
    fn request_decoding_handle_subhandle_and_reserved() {
        assert_eq!(decode_request(0xfee0_0000, 0x41, true), Ok(RequestFormat::Compatibility));
        assert_eq!(
            decode_request(remappable(0x8123, false), 0xffff, true),
            Ok(RequestFormat::Remappable { index: 0x8123 }),
            "data is not a subhandle without SHV"
        );
        assert_eq!(
            decode_request(remappable(0x10, true), 5, true),
            Ok(RequestFormat::Remappable { index: 0x15 })
        );
        assert_eq!(
            decode_request(remappable(0xffff, true), 0xffff, true),
            Ok(RequestFormat::Remappable { index: 0x1_fffe })
        );
        assert_eq!(
            decode_request(remappable(7, true), 0x1_0000, true),
            Err((FaultReason::IrRequestReserved, Some(7)))
        );
        assert_eq!(
            decode_request(remappable(7, false), 0x8000_0000, true),
            Err((FaultReason::IrRequestReserved, Some(7)))
        );
        for a in [0xfed0_0000u64, 0xfef0_0000, 0x1_fee0_0010, u64::MAX] {
            assert_eq!(decode_request(a, 0, true), Err((FaultReason::IrRequestReserved, None)));
        }
    }

    #[test]
    fn irte_fields_and_xapic_message() {
        // P, DM=logical, RH, TM=level, DLM=lowest priority (001), vector
        // 0x31, APIC id 0x07 in DST bits 15:8.
        let e = Irte { lo: 0x1d | (1 << 5) | (0x31 << 16) | (0x0700 << 32), hi: 0 };
        assert!(e.present() && !e.fpd() && e.logical_destination() && e.redirection_hint());
        assert!(e.level_triggered() && !e.posted());
        assert_eq!((e.delivery_mode(), e.vector(), e.destination(false)), (1, 0x31, 7));
        assert!(!e.reserved(false, true));
        let m = e.message(false, 0b11);
        assert_eq!(m.address, 0xfee0_7000 | 0b1111);
        assert_eq!(m.data, 0x31 | (1 << 8) | (1 << 14) | (1 << 15));
    }

    #[test]
    fn x2apic_destination_goes_to_upper_address() {
        let e = Irte { lo: 1 | (0x40 << 16) | (0x0012_3456_u64 << 32), hi: 0 };
        assert!(!e.reserved(true, true));
        assert!(e.reserved(false, true), "xAPIC mode reserves DST bits 7:0 and 31:16");
        let m = e.message(true, 0);
        assert_eq!(m.address, (0x0012_3400_u64 << 32) | 0xfee5_6000);
        assert_eq!(m.data, 0x40 | (1 << 14));
    }

    #[test]
    fn irte_reserved_bits() {
        let ok = Irte { lo: 1, hi: 0 };
        assert!(!ok.reserved(false, true) && !ok.reserved(true, true));
        for bit in [12u32, 13, 14, 15, 24, 31] {
            let e = Irte { lo: 1 | (1 << bit), hi: 0 };
            assert!(e.reserved(true, true), "lo bit {bit}");
        }
        for bit in [32u32, 39, 48, 63] {
            let e = Irte { lo: 1 | (1 << bit), hi: 0 };
            assert!(e.reserved(false, true) && !e.reserved(true, true), "dest bit {bit}");
        }
        for bit in [20u32, 40, 63] {
            assert!(Irte { lo: 1, hi: 1 << bit }.reserved(true, true), "hi bit {bit}");
        }
        assert!(Irte { lo: 1, hi: 3 << 18 }.reserved(true, true), "SVT = 11b");
        // AVAIL (11:8), SID and SQ are free; SVT = 01b is valid.
        assert!(!Irte { lo: 1 | 0xf00, hi: 0x7_ffff }.reserved(false, true));
    }

    #[test]
    fn source_validation_variants() {
        let sid = |b: u16, d: u16, f: u16| (b << 8) | (d << 3) | f;
        let full = |sq: u64| Irte { lo: 1, hi: u64::from(sid(2, 3, 5)) | (sq << 16) | (1 << 18) };
        assert!(full(0).source_valid(sid(2, 3, 5)));
        assert!(!full(0).source_valid(sid(2, 3, 1)));
        assert!(full(1).source_valid(sid(2, 3, 1)), "SQ=1 ignores bit 2");
        assert!(!full(1).source_valid(sid(2, 3, 4)));
        assert!(full(2).source_valid(sid(2, 3, 3)), "SQ=2 ignores bits 2:1");
        assert!(!full(2).source_valid(sid(2, 3, 0)));
        assert!(full(3).source_valid(sid(2, 3, 0)), "SQ=3 ignores bits 2:0");
        assert!(!full(3).source_valid(sid(2, 4, 5)));
        assert!(!full(3).source_valid(sid(3, 3, 5)));
        let bus = Irte { lo: 1, hi: (0x0804 & 0xffff) | (2 << 18) };
        for b in 4..=8u16 {
            assert!(bus.source_valid(sid(b, 31, 7)), "bus {b}");
        }
        assert!(!bus.source_valid(sid(3, 0, 0)) && !bus.source_valid(sid(9, 0, 0)));
        assert!(Irte { lo: 1, hi: 0x1234 }.source_valid(0xffff), "SVT=00 checks nothing");
        assert!(!Irte { lo: 1, hi: 3 << 18 }.source_valid(0));
    }

    #[test]
    fn remap_checks_in_order() {
        let mem = Mem::default();
        let t = table(3, false); // 16 entries
        put(&mem, 2, 1 | (0x22 << 16) | (0x0100 << 32), 0);
        let ok = remap(&t, false, &req(9, remappable(2, false), 0), &mem).unwrap();
        assert_eq!(ok, Msi { address: 0xfee0_1000, data: 0x22 | (1 << 14) });
        // Subhandle added to the handle.
        let ok2 = remap(&t, false, &req(9, remappable(0, true), 2), &mem).unwrap();
        assert_eq!(ok2, ok);
        assert_eq!(
            reason(remap(&t, false, &req(9, remappable(16, false), 0), &mem)),
            (0x21, Some(16), false)
        );
        assert_eq!(
            reason(remap(&t, false, &req(9, remappable(3, false), 0), &mem)),
            (0x22, Some(3), false)
        );
        put(&mem, 4, 2, 0); // not present, FPD
        assert_eq!(reason(remap(&t, false, &req(9, remappable(4, false), 0), &mem)), (0x22, Some(4), true));
        put(&mem, 5, 1 | (1 << 12), 0);
        assert_eq!(reason(remap(&t, false, &req(9, remappable(5, false), 0), &mem)), (0x24, Some(5), false));
        put(&mem, 6, 1, 0x0101 | (1 << 18));
        assert_eq!(reason(remap(&t, false, &req(9, remappable(6, false), 0), &mem)), (0x26, Some(6), false));
        assert!(remap(&t, false, &req(0x0101, remappable(6, false), 0), &mem).is_ok());
        // Reserved request bits are found before the table size.
        assert_eq!(
            reason(remap(&t, false, &req(9, remappable(100, true), 0x1_0000), &mem)),
            (0x20, Some(100), false)
        );
        let far = IrTable { base: 1 << 40, entries: 2, eime: false };
        assert_eq!(reason(remap(&far, false, &req(9, remappable(1, false), 0), &mem)), (0x23, Some(1), false));
    }

    #[test]
    fn compatibility_format_needs_cfis_and_no_eime() {
        let mem = Mem::default();
        let r = req(1, 0xfee0_100c, 0x4031);
        let pass = remap(&table(0, false), true, &r, &mem).unwrap();
        assert_eq!(pass, Msi { address: r.address, data: r.data });
        assert_eq!(reason(remap(&table(0, false), false, &r, &mem)), (0x25, None, false));
        assert_eq!(reason(remap(&table(0, true), true, &r, &mem)), (0x25, None, false));
    }
}
