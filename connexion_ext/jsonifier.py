"""connexion's Jsonifier with orjson: the API's answers serialised in C.

The same output as `Jsonifier(json, ensure_ascii=False, separators=(",", ":"))`, which
connexion appends a newline to: compact, UTF-8 (names come back as written, not as
\\u escapes: the tutorial's JSON_AS_ASCII=False), one line. A value orjson cannot
serialise is a TypeError (a 500 with its traceback in the log), never a silent repr.
Reading JSON stays connexion's.
"""

from typing import Any

import orjson
from connexion.jsonifier import Jsonifier


class OrjsonJsonifier(Jsonifier):  # type: ignore[misc]
    def dumps(self, data: Any, **_kwargs: Any) -> bytes:
        return orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE)
