# Front end.  Everything built or downloaded goes to $(RVIOMMU_CACHE)
# (default ~/.cache/rviommu), outside the clone; re-runs are incremental.
#
#   make            build QEMU with the Rust intel-iommu and run the main job
#   make check      the whole test suite (what CI runs)
#   make ref        the pristine reference QEMU (C intel-iommu), for comparisons
#   make unit       cargo tests of the QEMU-free crates only
#   make iommufd-kernel  the guest kernel with iommufd/VFIO cdevs (part of check)
#   make bench      translation benchmark, our device against the C one (callgrind + wall clock)
#   make fuzz-device [FUZZ_SECONDS=600]  hostile-guest fuzzing of the whole device, ours and C
#   make fuzz-generic [FUZZ_SECONDS=600]  QEMU's own generic-fuzz (libFuzzer, clang build) on our IOMMUs
#   make install [PREFIX=/usr/local]   both system emulators with firmware and docs (any prefix)

SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eo pipefail -c
.PHONY: all qemu ref kit iommufd-kernel testdeps demo check unit functional upstream bench bench-quick fuzz-device fuzz-device-slice fuzz-generic install clean-cache

all: demo

qemu:
	scripts/setup.sh rs

ref:
	scripts/setup.sh ref

kit:
	scripts/guest/kit.sh

iommufd-kernel:
	scripts/guest/kernel.sh

# Packages only tests use (libvirt, which the libvirt test starts by itself).
testdeps:
	scripts/setup.sh testdeps

demo: qemu kit
	scripts/demo.sh

unit:
	scripts/unit.sh

functional: qemu ref kit iommufd-kernel testdeps
	tests/functional/run.sh

upstream: qemu ref kit
	tests/upstream-qtests.sh

bench: qemu ref kit
	scripts/bench.sh

# In check: tiny loops, only that every case ran and gave numbers on both builds.
bench-quick: qemu ref kit
	scripts/bench.sh --quick

FUZZ_SECONDS ?= 600
fuzz-device: qemu ref kit
	scripts/fuzz-device.sh --seconds "$(FUZZ_SECONDS)"

# In check: fixed seeds, a few hundred programs per IOMMU.
fuzz-device-slice: qemu ref kit
	scripts/fuzz-device.sh --slice

# FUZZ_SECONDS for each of its three configurations.
fuzz-generic:
	scripts/fuzz-generic.sh --seconds "$(FUZZ_SECONDS)"

check: unit qemu ref kit iommufd-kernel functional upstream bench-quick fuzz-device-slice
	@echo "==> all tests passed"

PREFIX ?= /usr/local
install: qemu kit
	scripts/install.sh "$(PREFIX)"

clean-cache:
	@echo "removing $${RVIOMMU_CACHE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/rviommu}"
	rm -rf "$${RVIOMMU_CACHE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/rviommu}"
