"""The response cache: LRU eviction, TTL expiry, counters, and keys that separate versions and scopes."""

from __future__ import annotations

from appliance.cache import CachedResponse, ResponseCache, cache_key

ANSWER = CachedResponse("text", "stop", 3, 1)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_least_recently_used_entry_goes_first():
    cache = ResponseCache(max_entries=2)
    cache.put("a", ANSWER)
    cache.put("b", ANSWER)
    assert cache.get("a") is ANSWER  # a is now the most recent
    cache.put("c", ANSWER)
    assert cache.get("b") is None
    assert cache.get("a") is ANSWER and cache.get("c") is ANSWER


def test_entries_expire_after_the_ttl():
    clock = Clock()
    cache = ResponseCache(max_entries=10, ttl_seconds=60, timer=clock)
    cache.put("a", ANSWER)
    clock.now = 59
    assert cache.get("a") is ANSWER
    clock.now = 61
    assert cache.get("a") is None
    assert cache.stats()["entries"] == 0


def test_hits_and_misses_are_counted():
    cache = ResponseCache()
    cache.get("x")
    cache.put("x", ANSWER)
    cache.get("x")
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["hit_rate"]) == (1, 1, 0.5)


def test_disabled_cache_stores_nothing():
    cache = ResponseCache(enabled=False)
    cache.put("x", ANSWER)
    assert cache.get("x") is None


def test_key_separates_model_versions_knowledge_versions_and_scopes():
    request = {"messages": [{"role": "user", "content": "hi"}], "params": {"temperature": 0}}
    base = cache_key(request, model_version="m1")
    assert base == cache_key(dict(request), model_version="m1")
    assert base != cache_key(request, model_version="m2")
    assert base != cache_key(request, model_version="m1", kb_version="k2")
    assert base != cache_key(request, model_version="m1", scope="group:finance")
