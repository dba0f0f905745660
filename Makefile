# The two commands of the README, plus the benchmarks.
.PHONY: demo test bench bench-canary setup

demo:
	bash scripts/demo

test:
	bash scripts/test

bench:
	cargo run --release -p replmon-shared --no-default-features --features fakes,allocator --example aggregation_bench

bench-canary:
	bash scripts/setup
	cargo run -p replmon-tests --bin canary-precision

setup:
	bash scripts/setup
