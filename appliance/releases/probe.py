"""Load a GGUF and generate a few tokens, in a throwaway process: `python -m appliance.releases.probe FILE`.

The validation gate runs this in a subprocess so a GGUF that crashes or hangs llama.cpp takes
down only this process, never the server. Prints one JSON line on success.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from appliance.errors import ApplianceError
from appliance.llm.base import GenerationRequest, SamplingParams, TextDelta
from appliance.settings import EngineSettings


async def probe(path: str) -> dict:
    from appliance.llm.local import LocalBackend

    started = time.perf_counter()
    backend = LocalBackend(EngineSettings(model_path=path, slots=1, max_request_tokens=256, max_queue=1))
    loaded = time.perf_counter()
    try:
        request = GenerationRequest(SamplingParams(temperature=0.0, max_tokens=4), prompt="The invoice")
        generation = await backend.start(request)
        text = "".join([e.text async for e in generation if isinstance(e, TextDelta)])
    finally:
        await backend.close()
    return {"ok": True, "load_seconds": loaded - started, "generate_seconds": time.perf_counter() - loaded,
            "sample": text}


def main() -> int:
    try:
        result = asyncio.run(probe(sys.argv[1]))
    except ApplianceError as exc:
        print(json.dumps({"ok": False, "error": exc.message}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
