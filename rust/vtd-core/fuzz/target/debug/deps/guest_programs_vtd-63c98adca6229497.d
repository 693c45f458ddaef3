/work/main/rust/vtd-core/fuzz/target/debug/deps/guest_programs_vtd-63c98adca6229497.d: fuzz_targets/guest_programs_vtd.rs

/work/main/rust/vtd-core/fuzz/target/debug/deps/libguest_programs_vtd-63c98adca6229497.rmeta: fuzz_targets/guest_programs_vtd.rs

fuzz_targets/guest_programs_vtd.rs:
