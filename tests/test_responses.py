"""json_response writes what the standard library's compact, UTF-8 json.dumps writes."""

from __future__ import annotations

import json

import pytest

from service.responses import json_response

PRICES = [0.0, 0.01, 0.1, 0.3, 4.5, 12.34, 19.99, 100.0, 123456789.01, 999999999999.99]


@pytest.mark.parametrize(
    "data",
    [
        {"id": 1, "name": "Tea", "price": 4.5, "in_stock": True, "description": None},
        {"data": [{"price": cents / 100} for cents in range(0, 100_001, 7)], "count": 14287},
        {"prices": PRICES},
        {"name": 'Зелёный чай 🍵 \u2028 "quoted" \\ \n\t\x01', "tags": []},
        {"id": 2**63 - 1, "nested": {"empty": {}, "list": [1, 2.5, "x", None, False]}},
    ],
)
def test_the_bytes_equal_compact_utf8_json_dumps(data: object) -> None:
    response = json_response(data)
    expected = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    assert response.body == expected
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
