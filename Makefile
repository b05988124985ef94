# Everyday tasks. `make test` is what CI runs (through .ci/run).
.PHONY: install build test lint fmt bench demo clean

install:
	python3 -m pip install -e '.[dev]'

build:
	maturin build --release

test:
	bash .ci/test

lint:
	ruff check .
	ruff format --check .
	mypy cadence
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

fmt:
	ruff format .
	ruff check --fix .
	cargo fmt

bench:
	python3 -m benchmarks.report

clean:
	rm -rf target build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis cadence/*.so
