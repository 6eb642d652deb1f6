"""llama.cpp's own OpenAI-compatible server (`python -m llama_cpp.server`), started with the same
CPU buffer choice as the appliance's engine (no extra buffer types: the AMX path crashes on some
machines), so the tests' upstream and the benchmarks' peer run wherever the appliance runs.

Usage: python tests/llama_server.py [llama_cpp.server arguments]
"""

import sys

import llama_cpp

_defaults = llama_cpp.llama_model_default_params


def _params():
    params = _defaults()
    params.use_extra_bufts = False
    return params


llama_cpp.llama_model_default_params = _params
llama_cpp.llama_cpp.llama_model_default_params = _params

if __name__ == "__main__":
    from llama_cpp.server.__main__ import main

    sys.argv[0] = "llama_cpp.server"
    main()
