# Everyday tasks. `make test` is what CI runs (through .ci/run).
.PHONY: install build test lint fmt bench demo clean

install:
	python3 -m pip install -e '.[dev]'

build:
	maturin build --release

test:
	bash .ci/test

lint:
	ruff check cadence tests benchmarks
	ruff format --check cadence tests benchmarks
	mypy cadence
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

fmt:
	ruff format cadence tests benchmarks
	ruff check --fix cadence tests benchmarks
	cargo fmt

bench:
	mkdir -p .benchmarks
	python3 -m benchmarks.report --chart .benchmarks/report.svg

clean:
	rm -rf target build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis cadence/*.so
