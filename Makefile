# The two commands of the README, plus the benchmarks.
.PHONY: demo test bench bench-canary bench-startup bench-ledger bench-report setup

demo:
	bash scripts/demo

test:
	bash scripts/test

bench:
	cargo run --release -p replmon-shared --no-default-features --features fakes,allocator --example aggregation_bench

bench-canary:
	bash scripts/setup
	cargo run -p replmon-tests --bin canary-precision

# Cold start, first and warm invocations, peak RSS and size of each function's release binary.
bench-startup:
	bash scripts/setup
	cargo build --release -p replication-events -p alarm-events -p canary
	cargo run -p replmon-tests --bin startup-bench -- --starts 20 --warm 5 --tls
	cargo run -p replmon-tests --bin startup-bench -- --starts 20 --warm 5 --tls --set REPLMON_WARM_UP=true

# AWS requests per event and DynamoDB items read per page, through the counting fault proxy,
# for N = 1,000 and 10,000 failed objects, beside the Python peer (BENCHMARKS.md).
bench-ledger:
	bash scripts/setup
	cargo build --release -p replication-events -p alarm-events
	cargo run --release -p replmon-tests --bin ledger-bench -- --objects 1000,10000 --peer-objects 1000,10000

# What `replmon report` reads and costs for a month and a year of canary roll-ups (BENCHMARKS.md).
bench-report:
	bash scripts/setup
	cargo run --release -p replmon-tests --bin report-bench -- --days 365 --rules 3 --interval-minutes 5

setup:
	bash scripts/setup
