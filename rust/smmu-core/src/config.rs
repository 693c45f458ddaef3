//! Device configuration, as the glue builds it from the device's
//! properties, and the identification registers derived from it.
//!
//! Conventions: [`Config`] holds the knobs (`stage`, `oas`, `ssidsize`,
//! `ats`, `ril`, `msi` for `x-msi`, named after the QEMU properties); what the model always
//! advertises (16 StreamID bits, 2^19-entry queues, 4K/16K/64K granules,
//! ...) is fixed. With the default knobs, [`Config::id_registers`] equals
//! the C `arm-smmuv3` of QEMU 10.2.2 bit for bit, for each stage. The
//! other knobs change only their own ID register field, as upstream QEMU
//! 11 does (there only with `accel=on`; see
//! [`Config::upstream_accel_only`]).
//!
//! The decoders' capabilities, [`Config::ste_caps`] for STEs, stream
//! tables and CDs and [`Config::command_caps`] for commands, are decoded
//! from those ID registers ([`IdRegisters::ste_caps`],
//! [`IdRegisters::command_caps`]), so a decoder never assumes a feature
//! the guest was not told about, or refuses one it was. They select the
//! C device's (compatible) rules; a device wanting the architecture's
//! sets [`SteCaps::strict`] / clears [`CommandCaps::c_compatible`].

use std::fmt;
use std::str::FromStr;

use bilge::prelude::*;
use iommu_core::translation::vmsa::PaSize;

use crate::command::CommandCaps;
use crate::registers::{
    Aidr, Idr0, Idr1, Idr3, Idr5, Iidr, StLevel, StallModel, TableFormats, TtEndian, CMDQ_LOG2_MAX, EVENTQ_LOG2_MAX,
};
use crate::ste::{Granules, SteCaps};

/// The translation stages the SMMU implements (property `stage`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Stage 1 only (the C device's default).
    #[default]
    S1,
    /// Stage 2 only.
    S2,
    /// Both stages, nested.
    Nested,
}

impl Stage {
    /// The C device's reading of the `stage` property: exactly `"2"` is
    /// stage 2, exactly `"nested"` is both, anything else — unset, `"1"`,
    /// or any other string — is stage 1, silently.
    pub fn from_property(value: Option<&str>) -> Stage {
        match value {
            Some("2") => Stage::S2,
            Some("nested") => Stage::Nested,
            _ => Stage::S1,
        }
    }

    /// A strict reading of the `stage` property, for a device that wants
    /// to reject mistakes: only `"1"`, `"2"` and `"nested"` are accepted.
    pub fn parse_strict(value: &str) -> Result<Stage, ConfigError> {
        match value {
            "1" => Ok(Stage::S1),
            "2" => Ok(Stage::S2),
            "nested" => Ok(Stage::Nested),
            other => Err(ConfigError::UnknownStage(other.to_owned())),
        }
    }

    /// The property value that selects this stage.
    pub fn as_property(self) -> &'static str {
        match self {
            Stage::S1 => "1",
            Stage::S2 => "2",
            Stage::Nested => "nested",
        }
    }

    /// Stage-1 translation is implemented (IDR0.S1P).
    pub fn stage1(self) -> bool {
        matches!(self, Stage::S1 | Stage::Nested)
    }

    /// Stage-2 translation is implemented (IDR0.S2P).
    pub fn stage2(self) -> bool {
        matches!(self, Stage::S2 | Stage::Nested)
    }
}

impl FromStr for Stage {
    type Err = ConfigError;

    /// [`Stage::parse_strict`].
    fn from_str(s: &str) -> Result<Stage, ConfigError> {
        Stage::parse_strict(s)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_property())
    }
}

/// A configuration the model cannot honour.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ConfigError {
    /// The strict `stage` parser got something other than `1`, `2` or
    /// `nested`.
    UnknownStage(String),
    /// `oas` is neither 44 nor 48.
    UnsupportedOas(u8),
    /// `ssidsize` is above [`Config::SSID_BITS_MAX`].
    SsidSizeTooLarge(u8),
    /// `ssidsize` is not 0 on a stage-2-only SMMU.
    SubstreamsWithoutStage1(u8),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownStage(s) => {
                write!(f, "invalid stage '{s}': expected \"1\", \"2\" or \"nested\"")
            }
            ConfigError::UnsupportedOas(oas) => {
                write!(f, "oas={oas} is not supported: the output address size must be 44 or 48 bits")
            }
            ConfigError::SsidSizeTooLarge(n) => {
                write!(f, "ssidsize={n} is out of range: SubstreamIDs have 0 to {} bits", Config::SSID_BITS_MAX)
            }
            ConfigError::SubstreamsWithoutStage1(n) => write!(
                f,
                "ssidsize={n} needs stage-1 translation: SubstreamIDs select stage-1 context descriptors, \
                 which a stage-2-only SMMU does not have (use stage=1 or stage=nested, or ssidsize=0)"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The device configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Translation stages implemented (property `stage`).
    pub stage: Stage,
    /// Output address size in bits, 44 or 48 (property `oas`; IDR5.OAS).
    pub oas: u8,
    /// SubstreamID bits, 0 to 20; 0 means no substreams (property
    /// `ssidsize`; IDR1.SSIDSIZE).
    pub ssidsize: u8,
    /// Advertise PCIe ATS (property `ats`; IDR0.ATS).
    pub ats: bool,
    /// Advertise range invalidation (property `ril`; IDR3.RIL).
    pub ril: bool,
    /// Advertise MSIs (property `x-msi`; IDR0.MSI): the event queue, GERROR
    /// and CMD_SYNC signal by MSI when their address is set. Off by
    /// default, as the C device (wired interrupts only).
    pub msi: bool,
    /// The architecture's checks where the C device is lenient (property
    /// `x-strict`): STE ILLEGAL conditions, and stage-1 permission for an
    /// unprivileged request (AP\[1\]: the C device checks AP\[2\] only,
    /// as if every request were privileged).
    pub strict: bool,
}

impl Default for Config {
    /// Stage 1, 44-bit OAS, no substreams, no ATS, range invalidation:
    /// the C device.
    fn default() -> Config {
        Config { stage: Stage::S1, oas: Config::OAS_DEFAULT, ssidsize: 0, ats: false, ril: true, msi: false, strict: false }
    }
}

/// IDR0-IDR5, IIDR and AIDR: read-only for the guest, fixed by the
/// configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IdRegisters {
    /// IDR0 to IDR5, raw.
    pub idr: [u32; 6],
    /// IIDR, raw.
    pub iidr: u32,
    /// AIDR, raw.
    pub aidr: u32,
}

impl IdRegisters {
    /// IDR0, decoded.
    pub fn idr0(&self) -> Idr0 {
        Idr0::from(self.idr[0])
    }

    /// IDR1, decoded.
    pub fn idr1(&self) -> Idr1 {
        Idr1::from(self.idr[1])
    }

    /// IDR3, decoded.
    pub fn idr3(&self) -> Idr3 {
        Idr3::from(self.idr[3])
    }

    /// IDR5, decoded.
    pub fn idr5(&self) -> Idr5 {
        Idr5::from(self.idr[5])
    }

    /// What these registers advertise, as STE, stream table and CD
    /// decoding take it; compatible rules. Reserved encodings are taken
    /// as the decoders document (HTTU 0b11 as none, STALL_MODEL 0b11 as
    /// terminate-only). `ds` is always false: the IDR5 layout has no DS
    /// field (the model never advertises LPA2).
    pub fn ste_caps(&self) -> SteCaps {
        let (idr0, idr1, idr3, idr5) = (self.idr0(), self.idr1(), self.idr3(), self.idr5());
        SteCaps {
            s1: idr0.s1p(),
            s2: idr0.s2p(),
            granules: Granules { k4: idr5.gran4k(), k16: idr5.gran16k(), k64: idr5.gran64k() },
            // At most 52.
            oas_bits: idr5.oas().bits() as u8,
            sid_bits: idr1.sidsize().value(),
            ssid_bits: idr1.ssidsize().value(),
            two_level_strtab: idr0.st_level() == StLevel::TwoLevel,
            two_level_cd: idr0.cd2l(),
            ats: idr0.ats(),
            ns1ats: idr0.ns1ats(),
            vmid16: idr0.vmid16(),
            asid16: idr0.asid16(),
            httu: idr0.httu(),
            stall_model: idr0.stall_model(),
            abort_only: idr0.term_model(),
            small_tables: idr3.stt(),
            va52: idr5.vax().value() == 1,
            ds: false,
            xnx: idr3.xnx(),
            strict: false,
        }
    }

    /// What these registers advertise, as command decoding takes it;
    /// C-compatible rules. The stall model counts when STALL_MODEL is
    /// 0b00 or 0b10; `ds` is always false (see
    /// [`ste_caps`](Self::ste_caps)).
    pub fn command_caps(&self) -> CommandCaps {
        let (idr0, idr1, idr3) = (self.idr0(), self.idr1(), self.idr3());
        CommandCaps {
            stage1: idr0.s1p(),
            stage2: idr0.s2p(),
            ril: idr3.ril(),
            ds: false,
            ats: idr0.ats(),
            pri: idr0.pri(),
            stall: matches!(idr0.stall_model(), StallModel::StallAndTerminate | StallModel::StallForced),
            hyp: idr0.hyp(),
            mpam: idr3.mpam(),
            ssid_bits: idr1.ssidsize().value(),
            c_compatible: true,
        }
    }
}

impl Config {
    /// StreamID bits the model advertises (IDR1.SIDSIZE), as the C device.
    pub const SID_BITS: u8 = 16;
    /// The largest `ssidsize`: the architectural maximum of 20 bits.
    pub const SSID_BITS_MAX: u8 = 20;
    /// Default output address size in bits.
    pub const OAS_DEFAULT: u8 = 44;
    /// The output address sizes the model supports.
    pub const OAS_SUPPORTED: [u8; 2] = [44, 48];

    /// Whether the model can honour this configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !Self::OAS_SUPPORTED.contains(&self.oas) {
            return Err(ConfigError::UnsupportedOas(self.oas));
        }
        if self.ssidsize > Self::SSID_BITS_MAX {
            return Err(ConfigError::SsidSizeTooLarge(self.ssidsize));
        }
        if self.ssidsize != 0 && !self.stage.stage1() {
            return Err(ConfigError::SubstreamsWithoutStage1(self.ssidsize));
        }
        Ok(())
    }

    /// The properties set away from their defaults that upstream QEMU 11
    /// accepts only with `accel=on` (its C device refuses `oas=48`,
    /// `ssidsize>0`, `ats=on` and `ril=off` otherwise). A glue that mirrors
    /// those checks reports these names; the model itself does not need
    /// a host SMMU for any of them.
    pub fn upstream_accel_only(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.oas != Self::OAS_DEFAULT {
            names.push("oas");
        }
        if self.ssidsize != 0 {
            names.push("ssidsize");
        }
        if self.ats {
            names.push("ats");
        }
        if !self.ril {
            names.push("ril");
        }
        names
    }

    /// IDR5.OAS for [`oas`](Self::oas): the largest architected size not
    /// above it (so an unvalidated value still yields a defined field).
    fn oas_field(&self) -> PaSize {
        match self.oas {
            0..=35 => PaSize::Bits32,
            36..=39 => PaSize::Bits36,
            40..=41 => PaSize::Bits40,
            42..=43 => PaSize::Bits42,
            44..=47 => PaSize::Bits44,
            48..=51 => PaSize::Bits48,
            _ => PaSize::Bits52,
        }
    }

    /// The identification registers of a device with this configuration.
    /// Values a [`validate`](Self::validate) would refuse are clamped
    /// (`ssidsize` to 20, `oas` down to an architected size).
    pub fn id_registers(&self) -> IdRegisters {
        let mut idr0 = Idr0::from(0u32);
        idr0.set_s1p(self.stage.stage1());
        idr0.set_s2p(self.stage.stage2());
        idr0.set_ttf(TableFormats::AArch64);
        idr0.set_cohacc(true);
        idr0.set_asid16(true);
        // 16-bit VMIDs are advertised even without stage 2, as the C device.
        idr0.set_vmid16(true);
        idr0.set_ttendian(TtEndian::Little);
        idr0.set_stall_model(StallModel::TerminateOnly);
        idr0.set_term_model(true);
        idr0.set_st_level(StLevel::TwoLevel);
        idr0.set_ats(self.ats);
        // Split-stage ATS (STE.EATS = 0b10) is not implemented: a device's
        // translated accesses never come back through QEMU's SMMU, so their
        // stage 2 could not be applied.
        idr0.set_ns1ats(self.ats);
        idr0.set_msi(self.msi);

        let mut idr1 = Idr1::from(0u32);
        idr1.set_sidsize(u6::new(Self::SID_BITS));
        idr1.set_ssidsize(u5::new(self.ssidsize.min(Self::SSID_BITS_MAX)));
        idr1.set_eventqs(u5::new(EVENTQ_LOG2_MAX));
        idr1.set_cmdqs(u5::new(CMDQ_LOG2_MAX));

        let mut idr3 = Idr3::from(0u32);
        idr3.set_had(true);
        // XNX only means something at stage 2.
        idr3.set_xnx(self.stage.stage2());
        idr3.set_ril(self.ril);
        idr3.set_bbml(u2::new(2));

        let mut idr5 = Idr5::from(0u32);
        idr5.set_oas(self.oas_field());
        idr5.set_gran4k(true);
        idr5.set_gran16k(true);
        idr5.set_gran64k(true);

        let iidr = Iidr::from(0u32);
        let mut aidr = Aidr::from(0u32);
        // SMMUv3.1.
        aidr.set_arch_major_rev(u4::new(0));
        aidr.set_arch_minor_rev(u4::new(1));

        IdRegisters {
            idr: [idr0.into(), idr1.into(), 0, idr3.into(), 0, idr5.into()],
            iidr: iidr.into(),
            aidr: aidr.into(),
        }
    }

    /// The capabilities STE, stream table and CD decoding must assume:
    /// those [`id_registers`](Self::id_registers) advertises
    /// ([`IdRegisters::ste_caps`]), with the strict rules when
    /// [`strict`](Self::strict).
    pub fn ste_caps(&self) -> SteCaps {
        SteCaps { strict: self.strict, ..self.id_registers().ste_caps() }
    }

    /// The capabilities command decoding must assume: those
    /// [`id_registers`](Self::id_registers) advertises
    /// ([`IdRegisters::command_caps`]), with the C device's rules unless
    /// [`strict`](Self::strict).
    pub fn command_caps(&self) -> CommandCaps {
        CommandCaps { c_compatible: !self.strict, ..self.id_registers().command_caps() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registers::Httu;
    use iommu_core::translation::vmsa::Granule;

    #[test]
    fn defaults_are_the_c_device() {
        let c = Config::default();
        assert_eq!(c, Config { stage: Stage::S1, oas: 44, ssidsize: 0, ats: false, ril: true, msi: false, strict: false });
        assert_eq!(c.validate(), Ok(()));
        assert!(c.upstream_accel_only().is_empty());
        let id = c.id_registers();
        assert_eq!(id.idr, [0x0D44_101A, 0x0273_0010, 0, 0x0000_1404, 0, 0x0000_0074]);
        assert_eq!((id.iidr, id.aidr), (0, 1));
    }

    #[test]
    fn default_id_registers_per_stage() {
        for (stage, idr0, idr3) in
            [(Stage::S1, 0x0D44_101A, 0x1404), (Stage::S2, 0x0D44_1019, 0x1414), (Stage::Nested, 0x0D44_101B, 0x1414)]
        {
            let c = Config { stage, ..Config::default() };
            assert_eq!(c.validate(), Ok(()));
            let id = c.id_registers();
            assert_eq!(id.idr, [idr0, 0x0273_0010, 0, idr3, 0, 0x74], "{stage:?}");
            assert_eq!((id.iidr, id.aidr), (0, 1));
            assert_eq!((id.idr0().s1p(), id.idr0().s2p()), (stage.stage1(), stage.stage2()));
        }
    }

    #[test]
    fn id_register_fields_decode_as_advertised() {
        let id = Config::default().id_registers();
        let idr0 = id.idr0();
        assert_eq!(idr0.ttf(), TableFormats::AArch64);
        assert_eq!(idr0.ttendian(), TtEndian::Little);
        assert_eq!(idr0.stall_model(), StallModel::TerminateOnly);
        assert_eq!(idr0.st_level(), StLevel::TwoLevel);
        assert!(idr0.cohacc() && idr0.asid16() && idr0.vmid16() && idr0.term_model());
        assert!(!idr0.msi() && !idr0.sev() && !idr0.pri() && !idr0.ats() && !idr0.cd2l());
        let idr1 = id.idr1();
        assert_eq!((idr1.sidsize().value(), idr1.ssidsize().value()), (16, 0));
        assert_eq!((idr1.cmdqs().value(), idr1.eventqs().value(), idr1.priqs().value()), (19, 19, 0));
        let idr3 = id.idr3();
        assert!(idr3.had() && idr3.ril() && !idr3.xnx());
        assert_eq!(idr3.bbml().value(), 2);
        let idr5 = id.idr5();
        assert_eq!(idr5.oas(), PaSize::Bits44);
        assert!(idr5.gran4k() && idr5.gran16k() && idr5.gran64k());
        assert_eq!(idr5.vax().value(), 0);
    }

    #[test]
    fn each_knob_changes_its_field_only() {
        let base = Config::default().id_registers();
        let with = |c: Config| {
            assert_eq!(c.validate(), Ok(()), "{c:?}");
            c.id_registers()
        };

        let oas48 = with(Config { oas: 48, ..Config::default() });
        assert_eq!(oas48.idr5().oas(), PaSize::Bits48);
        assert_eq!(oas48.idr[5], 0x75);
        assert_eq!(oas48.idr[..5], base.idr[..5]);

        let ssid = with(Config { ssidsize: 20, ..Config::default() });
        assert_eq!(ssid.idr[1], 0x0273_0010 | (20 << 6));
        assert_eq!(with(Config { ssidsize: 1, ..Config::default() }).idr[1], 0x0273_0050);
        assert_eq!((ssid.idr[0], ssid.idr[3], ssid.idr[5]), (base.idr[0], base.idr[3], base.idr[5]));

        let ats = with(Config { ats: true, ..Config::default() });
        assert_eq!(ats.idr[0], 0x0D44_101A | 0x400 | 0x800);
        assert!(ats.idr0().ats());
        assert_eq!(ats.idr[1..], base.idr[1..]);

        let msi = with(Config { msi: true, ..Config::default() });
        assert_eq!(msi.idr[0], 0x0D44_101A | 1 << 13);
        assert_eq!(msi.idr[1..], base.idr[1..]);

        let no_ril = with(Config { ril: false, ..Config::default() });
        assert_eq!(no_ril.idr[3], 0x1004);
        let no_ril_s2 = with(Config { stage: Stage::S2, ril: false, ..Config::default() });
        assert_eq!(no_ril_s2.idr[3], 0x1014);
        assert_eq!((no_ril.idr[0], no_ril.idr[1], no_ril.idr[5]), (base.idr[0], base.idr[1], base.idr[5]));

        let all = with(Config { stage: Stage::Nested, oas: 48, ssidsize: 16, ats: true, ril: false, msi: false, strict: false });
        assert_eq!(all.idr, [0x0D44_1C1B, 0x0273_0410, 0, 0x1014, 0, 0x75]);
        assert_eq!(
            Config { stage: Stage::Nested, oas: 48, ssidsize: 16, ats: true, ril: false, msi: false, strict: false }.upstream_accel_only(),
            ["oas", "ssidsize", "ats", "ril"]
        );
    }

    #[test]
    fn lenient_stage_parser_is_the_c_device() {
        assert_eq!(Stage::from_property(None), Stage::S1);
        assert_eq!(Stage::from_property(Some("1")), Stage::S1);
        assert_eq!(Stage::from_property(Some("2")), Stage::S2);
        assert_eq!(Stage::from_property(Some("nested")), Stage::Nested);
        for garbage in ["", "Nested", "NESTED", "2 ", " 2", "02", "s2", "nested\0", "3", "stage2", "ü"] {
            assert_eq!(Stage::from_property(Some(garbage)), Stage::S1, "{garbage:?}");
        }
    }

    #[test]
    fn strict_stage_parser_rejects_garbage() {
        for s in [Stage::S1, Stage::S2, Stage::Nested] {
            assert_eq!(Stage::parse_strict(s.as_property()), Ok(s));
            assert_eq!(s.to_string().parse::<Stage>(), Ok(s));
        }
        for garbage in ["", "Nested", "2 ", "0", "3", "12", "both"] {
            let err = Stage::parse_strict(garbage).unwrap_err();
            assert_eq!(err, ConfigError::UnknownStage(garbage.to_owned()));
            assert!(err.to_string().contains("expected \"1\", \"2\" or \"nested\""));
        }
    }

    #[test]
    fn validate_refuses_what_the_model_cannot_honour() {
        for oas in [0, 32, 40, 42, 43, 45, 52, 255] {
            let c = Config { oas, ..Config::default() };
            assert_eq!(c.validate(), Err(ConfigError::UnsupportedOas(oas)));
            assert!(c.validate().unwrap_err().to_string().contains("44 or 48"));
        }
        for ssidsize in [21, 32, 255] {
            let c = Config { ssidsize, ..Config::default() };
            assert_eq!(c.validate(), Err(ConfigError::SsidSizeTooLarge(ssidsize)));
            assert!(c.validate().unwrap_err().to_string().contains("0 to 20"));
        }
        let c = Config { stage: Stage::S2, ssidsize: 8, ..Config::default() };
        assert_eq!(c.validate(), Err(ConfigError::SubstreamsWithoutStage1(8)));
        assert!(c.validate().unwrap_err().to_string().contains("stage-1"));
        for stage in [Stage::S1, Stage::Nested] {
            assert_eq!(Config { stage, ssidsize: 20, oas: 48, ..Config::default() }.validate(), Ok(()));
        }
        assert_eq!(Config { stage: Stage::S2, ats: true, ril: false, oas: 48, ..Config::default() }.validate(), Ok(()));
    }

    #[test]
    fn unvalidated_values_are_clamped_not_panicking() {
        let id = Config { oas: 255, ssidsize: 255, ..Config::default() }.id_registers();
        assert_eq!(id.idr5().oas(), PaSize::Bits52);
        assert_eq!(id.idr1().ssidsize().value(), 20);
        for (oas, field) in [
            (0, PaSize::Bits32),
            (36, PaSize::Bits36),
            (41, PaSize::Bits40),
            (43, PaSize::Bits42),
            (47, PaSize::Bits44),
            (52, PaSize::Bits52),
        ] {
            assert_eq!(Config { oas, ..Config::default() }.id_registers().idr5().oas(), field, "{oas}");
        }
    }

    /// Each stage with every knob at its default, each knob away from it,
    /// all of them together, and values `validate` refuses.
    fn configs() -> Vec<Config> {
        let mut v = Vec::new();
        for stage in [Stage::S1, Stage::S2, Stage::Nested] {
            let base = Config { stage, ..Config::default() };
            v.extend([
                base,
                Config { oas: 48, ..base },
                Config { ssidsize: 1, ..base },
                Config { ssidsize: 20, ..base },
                Config { ats: true, ..base },
                Config { ril: false, ..base },
                Config { oas: 48, ssidsize: 16, ats: true, ril: false, ..base },
                Config { oas: 255, ssidsize: 255, ..base },
                Config { oas: 0, ..base },
                Config { oas: 45, ..base },
            ]);
        }
        v
    }

    #[test]
    fn caps_decode_what_the_id_registers_advertise() {
        for c in configs() {
            let id = c.id_registers();
            let (idr0, idr1, idr3, idr5) = (id.idr0(), id.idr1(), id.idr3(), id.idr5());
            let (s, m) = (c.ste_caps(), c.command_caps());
            assert_eq!((s, m), (id.ste_caps(), id.command_caps()), "{c:?}");
            // Stages.
            assert_eq!((s.s1, s.s2), (idr0.s1p(), idr0.s2p()), "{c:?}");
            assert_eq!((m.stage1, m.stage2), (idr0.s1p(), idr0.s2p()), "{c:?}");
            assert_eq!((s.s1, s.s2), (c.stage.stage1(), c.stage.stage2()), "{c:?}");
            // Output address size: the IDR5.OAS encoding, the knob itself
            // when it is valid.
            assert_eq!(u32::from(s.oas_bits), idr5.oas().bits(), "{c:?}");
            if c.validate().is_ok() {
                assert_eq!(s.oas_bits, c.oas, "{c:?}");
            }
            // StreamID and SubstreamID bits.
            assert_eq!(s.sid_bits, idr1.sidsize().value(), "{c:?}");
            assert_eq!(s.sid_bits, Config::SID_BITS);
            assert_eq!((s.ssid_bits, m.ssid_bits), (idr1.ssidsize().value(), idr1.ssidsize().value()), "{c:?}");
            assert_eq!(s.ssid_bits, c.ssidsize.min(Config::SSID_BITS_MAX), "{c:?}");
            // ATS, range invalidation.
            assert_eq!((s.ats, m.ats), (idr0.ats(), idr0.ats()), "{c:?}");
            assert_eq!(s.ats, c.ats, "{c:?}");
            assert_eq!(s.ns1ats, idr0.ns1ats(), "{c:?}");
            assert_eq!((m.ril, c.ril), (idr3.ril(), idr3.ril()), "{c:?}");
            // 16-bit ASIDs and VMIDs.
            assert_eq!((s.asid16, s.vmid16), (idr0.asid16(), idr0.vmid16()), "{c:?}");
            // 2-level stream and CD tables.
            assert_eq!(s.two_level_strtab, idr0.st_level() == StLevel::TwoLevel, "{c:?}");
            assert_eq!(s.two_level_cd, idr0.cd2l(), "{c:?}");
            // Granules.
            for (g, advertised) in [
                (Granule::Size4K, idr5.gran4k()),
                (Granule::Size16K, idr5.gran16k()),
                (Granule::Size64K, idr5.gran64k()),
            ] {
                assert_eq!(s.granules.supports(g), advertised, "{c:?} {g:?}");
            }
            // Hardware updates, stalls, termination, table features.
            assert_eq!(s.httu, idr0.httu(), "{c:?}");
            assert_eq!((s.ha(), s.hd()), (false, false), "{c:?}");
            assert_eq!(s.stall_model, idr0.stall_model(), "{c:?}");
            assert_eq!(m.stall, idr0.stall_model() != StallModel::TerminateOnly, "{c:?}");
            assert_eq!(s.abort_only, idr0.term_model(), "{c:?}");
            assert_eq!(s.small_tables, idr3.stt(), "{c:?}");
            assert_eq!(s.va52, idr5.vax().value() == 1, "{c:?}");
            assert_eq!(s.xnx, idr3.xnx(), "{c:?}");
            // What commands need beyond that.
            assert_eq!((m.pri, m.hyp, m.mpam), (idr0.pri(), idr0.hyp(), idr3.mpam()), "{c:?}");
            // No LPA2: IDR5 has no DS field, nothing advertises it.
            assert!(!s.ds && !m.ds, "{c:?}");
            // The compatible rule sets.
            assert!(!s.strict && m.c_compatible, "{c:?}");
            // The walker's view follows.
            assert_eq!(s.vmsa().oas_bits, s.oas_bits);
        }
    }

    #[test]
    fn each_knob_changes_its_caps_only() {
        for stage in [Stage::S1, Stage::S2, Stage::Nested] {
            let base = Config { stage, ..Config::default() };
            let (s, m) = (base.ste_caps(), base.command_caps());
            let with = |c: Config| (c.ste_caps(), c.command_caps());
            assert_eq!(with(Config { oas: 48, ..base }), (SteCaps { oas_bits: 48, ..s }, m));
            assert_eq!(
                with(Config { ssidsize: 20, ..base }),
                (SteCaps { ssid_bits: 20, ..s }, CommandCaps { ssid_bits: 20, ..m })
            );
            assert_eq!(
                with(Config { ats: true, ..base }),
                (SteCaps { ats: true, ns1ats: true, ..s }, CommandCaps { ats: true, ..m })
            );
            assert_eq!(with(Config { ril: false, ..base }), (s, CommandCaps { ril: false, ..m }));
            assert_eq!(with(Config { msi: true, ..base }), (s, m));
        }
    }

    #[test]
    fn default_caps_are_the_c_devices() {
        for stage in [Stage::S1, Stage::S2, Stage::Nested] {
            let c = Config { stage, ..Config::default() };
            let (s1, s2) = (stage.stage1(), stage.stage2());
            // OAS 44, all granules, 16-bit StreamIDs, no substreams, 2-level
            // stream tables, linear CD tables only, no ATS, 16-bit ASIDs and
            // VMIDs, no HTTU, no stalls, aborts only, no STT/VAX/DS, XNX
            // with stage 2.
            assert_eq!(
                c.ste_caps(),
                SteCaps {
                    s1,
                    s2,
                    granules: Granules::ALL,
                    oas_bits: 44,
                    sid_bits: 16,
                    ssid_bits: 0,
                    two_level_strtab: true,
                    two_level_cd: false,
                    ats: false,
                    ns1ats: false,
                    vmid16: true,
                    asid16: true,
                    httu: Httu::None,
                    stall_model: StallModel::TerminateOnly,
                    abort_only: true,
                    small_tables: false,
                    va52: false,
                    ds: false,
                    xnx: s2,
                    strict: false,
                }
            );
            // RIL; no DS, ATS, PRI, stall, HYP, MPAM or substreams.
            assert_eq!(
                c.command_caps(),
                CommandCaps {
                    stage1: s1,
                    stage2: s2,
                    ril: true,
                    ds: false,
                    ats: false,
                    pri: false,
                    stall: false,
                    hyp: false,
                    mpam: false,
                    ssid_bits: 0,
                    c_compatible: true,
                }
            );
        }
        assert_eq!(CommandCaps::default(), Config::default().command_caps());
    }

    #[test]
    fn caps_of_any_id_registers_decode_without_panicking() {
        // Migrated or hand-made registers: reserved encodings included.
        let all = IdRegisters { idr: [u32::MAX; 6], iidr: u32::MAX, aidr: u32::MAX };
        let s = all.ste_caps();
        assert_eq!((s.oas_bits, s.sid_bits, s.ssid_bits), (52, 63, 31));
        assert_eq!((s.httu, s.stall_model), (Httu::Reserved, StallModel::Reserved));
        assert!(!s.ha() && !s.hd() && !s.two_level_strtab && !s.va52);
        assert!(!all.command_caps().stall);
        let none = IdRegisters { idr: [0; 6], iidr: 0, aidr: 0 };
        let s = none.ste_caps();
        assert_eq!((s.s1, s.s2, s.oas_bits, s.stall_model), (false, false, 32, StallModel::StallAndTerminate));
        assert!(none.command_caps().stall);
    }
}
