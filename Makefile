# Benchmarks (never part of the test suite). See bench/README.md.
PYTHON ?= .venv/bin/python

.PHONY: bench bench-quick bench-peer bench-gpu

## Full side-by-side suite against the seed's TensorFlow stack (several minutes);
## rewrites the bench section of BENCHMARKS.md and adds a JSON file to bench/results/,
## then the arithmetic floor of the network on this machine against those figures.
bench: bench-peer
	$(PYTHON) bench/run.py
	$(PYTHON) bench/floor.py

## Tiny subsets, ours only, well under a minute.
bench-quick:
	$(PYTHON) bench/run.py --quick

## Create the peer's virtualenv (TensorFlow 2.14.1 + tensorflow-compression 2.14.1) if needed;
## without it `make bench` reports ours only.
bench-peer:
	-bash bench/peer/setup_peer.sh

## On a machine with a CUDA GPU: 5-epoch seed training and coding throughput.
bench-gpu:
	$(PYTHON) bench/gpu_check.py
