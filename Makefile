# The two commands of the README, plus the benchmark.
.PHONY: demo test bench setup

demo:
	bash scripts/demo

test:
	bash scripts/test

bench:
	cargo run --release -p replmon-shared --no-default-features --features fakes,allocator --example aggregation_bench

setup:
	bash scripts/setup
