"""The llama.cpp engine: model loading, continuous batching, sampling, quantization."""

import os

# llama.cpp's CPU threads meet at OpenMP barriers many times per token. Spinning there (libgomp's
# default) collapses throughput by 100x as soon as another process wants the same cores, as on a
# shared ERP server; sleeping costs little when the cores are free. libgomp reads this once, when
# llama.cpp's library loads, so it must be set before `llama_cpp` is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
