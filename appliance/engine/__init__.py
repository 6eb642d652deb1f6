"""The llama.cpp engine: model loading, continuous batching, sampling, quantization."""

import os

# llama.cpp's CPU threads meet at OpenMP barriers hundreds of times per token. libgomp spins up to
# 300,000 rounds there before sleeping, which collapses throughput (measured: 110 -> 0.7 tokens/s)
# as soon as another process wants the same cores, as on a shared ERP server; sleeping at once
# (OMP_WAIT_POLICY=PASSIVE) costs 65% when the cores are free. A short spin keeps full speed on
# free cores and the best speed under contention (benchmarks in BENCHMARKS.md). libgomp reads it
# once, when llama.cpp's library loads, so it is set before `llama_cpp` is imported.
os.environ.setdefault("GOMP_SPINCOUNT", "2000")
