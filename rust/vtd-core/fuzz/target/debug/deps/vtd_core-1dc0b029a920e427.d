/work/main/rust/vtd-core/fuzz/target/debug/deps/vtd_core-1dc0b029a920e427.d: /work/main/rust/vtd-core/src/lib.rs /work/main/rust/vtd-core/src/ats.rs /work/main/rust/vtd-core/src/cache.rs /work/main/rust/vtd-core/src/config.rs /work/main/rust/vtd-core/src/effects.rs /work/main/rust/vtd-core/src/fault.rs /work/main/rust/vtd-core/src/first_stage.rs /work/main/rust/vtd-core/src/hw_nest.rs /work/main/rust/vtd-core/src/inv_queue.rs /work/main/rust/vtd-core/src/irq_remap.rs /work/main/rust/vtd-core/src/invalidation.rs /work/main/rust/vtd-core/src/mem.rs /work/main/rust/vtd-core/src/notify.rs /work/main/rust/vtd-core/src/page_walk.rs /work/main/rust/vtd-core/src/registers.rs /work/main/rust/vtd-core/src/root_context.rs /work/main/rust/vtd-core/src/scalable.rs /work/main/rust/vtd-core/src/shadow.rs /work/main/rust/vtd-core/src/translation.rs /work/main/rust/vtd-core/src/vtd.rs

/work/main/rust/vtd-core/fuzz/target/debug/deps/libvtd_core-1dc0b029a920e427.rmeta: /work/main/rust/vtd-core/src/lib.rs /work/main/rust/vtd-core/src/ats.rs /work/main/rust/vtd-core/src/cache.rs /work/main/rust/vtd-core/src/config.rs /work/main/rust/vtd-core/src/effects.rs /work/main/rust/vtd-core/src/fault.rs /work/main/rust/vtd-core/src/first_stage.rs /work/main/rust/vtd-core/src/hw_nest.rs /work/main/rust/vtd-core/src/inv_queue.rs /work/main/rust/vtd-core/src/irq_remap.rs /work/main/rust/vtd-core/src/invalidation.rs /work/main/rust/vtd-core/src/mem.rs /work/main/rust/vtd-core/src/notify.rs /work/main/rust/vtd-core/src/page_walk.rs /work/main/rust/vtd-core/src/registers.rs /work/main/rust/vtd-core/src/root_context.rs /work/main/rust/vtd-core/src/scalable.rs /work/main/rust/vtd-core/src/shadow.rs /work/main/rust/vtd-core/src/translation.rs /work/main/rust/vtd-core/src/vtd.rs

/work/main/rust/vtd-core/src/lib.rs:
/work/main/rust/vtd-core/src/ats.rs:
/work/main/rust/vtd-core/src/cache.rs:
/work/main/rust/vtd-core/src/config.rs:
/work/main/rust/vtd-core/src/effects.rs:
/work/main/rust/vtd-core/src/fault.rs:
/work/main/rust/vtd-core/src/first_stage.rs:
/work/main/rust/vtd-core/src/hw_nest.rs:
/work/main/rust/vtd-core/src/inv_queue.rs:
/work/main/rust/vtd-core/src/irq_remap.rs:
/work/main/rust/vtd-core/src/invalidation.rs:
/work/main/rust/vtd-core/src/mem.rs:
/work/main/rust/vtd-core/src/notify.rs:
/work/main/rust/vtd-core/src/page_walk.rs:
/work/main/rust/vtd-core/src/registers.rs:
/work/main/rust/vtd-core/src/root_context.rs:
/work/main/rust/vtd-core/src/scalable.rs:
/work/main/rust/vtd-core/src/shadow.rs:
/work/main/rust/vtd-core/src/translation.rs:
/work/main/rust/vtd-core/src/vtd.rs:
