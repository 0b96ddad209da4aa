"""shmkv.Cache against CPython's own mapping conformance tests
(test.mapping_tests.BasicTestMappingProtocol from Debian's
libpython3.11-testsuite), unmodified. Each _empty_mapping() is a new
segment of its own, so every mapping is fresh and isolated; tearDown closes
and unlinks them. _reference is str keys and str values: what a Cache
stores and gives back unchanged (the default reference has a tuple value)."""

try:
    import test.mapping_tests as mapping_tests
except ImportError as e:
    raise ImportError("test.mapping_tests is missing: "
                      "apt-get install libpython3.11-testsuite") from e

import shmkv
from conftest import unique_name


class CacheMappingTest(mapping_tests.BasicTestMappingProtocol):
    type2test = shmkv.Cache

    def _reference(self):
        return {"1": "2", "key1": "value1", "key2": "value2 \u00e9\u4e2d"}

    def _empty_mapping(self):
        name = unique_name("map")
        cache = shmkv.Cache(name, memory="1M", exclusive=True)
        self._opened.append((name, cache))
        return cache

    def setUp(self):
        self._opened = []

    def tearDown(self):
        for name, cache in self._opened:
            cache.close()
            shmkv.unlink(name)
