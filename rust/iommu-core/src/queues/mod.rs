//! Queues in guest memory: the ring geometry, the two index conventions
//! (SMMUv3 wrap bits, VT-d bare indices) and producing records into a
//! queue the guest consumes ([`ring`]).

pub mod ring;
