//! Interrupt remapping: the interrupt remapping table, IRTE validation,
//! the remapping of compatibility- and remappable-format requests and the
//! interrupt-remapping faults ([`irq_remap`]). The unit's own interrupts
//! (fault and invalidation-completion events) are [`crate::effects::Msi`]s.

pub mod irq_remap;
