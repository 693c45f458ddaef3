//! The queues and logs: queued invalidation (the invalidation queue, its
//! descriptors and completion waits: [`inv_queue`]), what an invalidation
//! removes from the caches and reports to the glue ([`invalidation`]),
//! and fault recording and reporting ([`fault`]).

pub mod fault;
pub mod inv_queue;
pub mod invalidation;
