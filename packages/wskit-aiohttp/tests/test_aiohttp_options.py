"""Handler options are validated at construction, with the option and value named."""

from __future__ import annotations

import math
from typing import Any

import pytest

from wskit.aiohttp import create_app, create_handler
from wskit.pydantic import create_router


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("max_connections", 0, "max_connections must be a positive int or None, got 0"),
        ("max_connections", -1, "got -1"),
        ("max_connections", 2.5, "got 2.5"),
        ("max_connections", "10", "got '10'"),
        ("max_connections", True, "got True"),
        ("max_message_bytes", 0, "max_message_bytes must be a positive int or None, got 0"),
        ("max_message_bytes", -1024, "got -1024"),
        ("max_buffered_bytes", 0, "max_buffered_bytes must be a positive int or None, got 0"),
        ("max_buffered_bytes", 1e6, "got 1000000.0"),
        ("overflow", "explode", "overflow must be 'close', 'drop' or None, got 'explode'"),
        ("close_timeout", 0, "close_timeout must be a positive number of seconds, got 0"),
        ("close_timeout", None, "got None"),
        ("close_timeout", math.inf, "got inf"),
        ("close_timeout", math.nan, "got nan"),
        ("send_timeout", -1, "send_timeout must be a positive number of seconds or None, got -1"),
        ("send_timeout", math.inf, "got inf"),
        ("shutdown_timeout", 0.0, "shutdown_timeout must be a positive number of seconds"),
        ("shutdown_timeout", "10", "got '10'"),
        ("allowed_origins", "https://app.example", "allowed_origins must be a list of strings"),
        ("allowed_origins", ["app.example"], "invalid entry 'app.example': expected scheme://"),
        ("allowed_origins", ["https://app.example/chat"], "invalid entry 'https://app.example/"),
        ("allowed_origins", ["https://app.example?x=1"], "invalid entry"),
        ("allowed_origins", ["https://user@app.example"], "invalid entry"),
        ("allowed_origins", ["null"], "invalid entry 'null': browsers send 'null'"),
        ("allowed_origins", [None], "invalid entry None"),
        ("allowed_hosts", "app.example", "allowed_hosts must be a list of strings"),
        ("allowed_hosts", [], "allowed_hosts: empty list"),
        ("allowed_hosts", ["*.example.com"], "use '.example.com'"),
        ("allowed_hosts", ["https://app.example"], "not a URL"),
        ("allowed_hosts", ["app.example:8080"], "ports are not part of an entry"),
        ("allowed_hosts", ["[app.example]"], "not an IPv6 address"),
        ("allowed_hosts", ["app example"], "invalid entry 'app example'"),
        ("allowed_hosts", [".127.0.0.1"], "expected '.' followed by a domain name"),
        ("allowed_hosts", [""], "invalid entry ''"),
        ("allowed_hosts", [42], "each entry must be a str, got 42"),
        ("protocols", "wskit.v1", "protocols must be a list of strings, got 'wskit.v1'"),
    ],
)
def test_bad_option_values_raise_at_construction(option: str, value: Any, expected: str) -> None:
    router = create_router()
    with pytest.raises(ValueError) as info:
        create_handler(router, **{option: value})
    assert expected in str(info.value)
    assert option in str(info.value)  # the option is named
    with pytest.raises(ValueError):  # create_app/serve validate the same way
        create_app(router, **{option: value})


def test_good_values_are_normalized() -> None:
    handler = create_handler(
        create_router(),
        allowed_hosts=["App.Example.", "[::1]", "0:0::1", ".Example.org", "bücher.example"],
        allowed_origins=["HTTPS://App.Example:443/", "http://[0::1]:3000", "*"],
        max_connections=1,
        close_timeout=1,
        send_timeout=None,
    )
    assert handler.allowed_hosts == ("app.example", "::1", ".example.org", "xn--bcher-kva.example")
    assert handler.allowed_origins == {"https://app.example", "http://[::1]:3000", "*"}
    assert handler.close_timeout == 1.0
    assert handler.send_timeout is None
    assert create_handler(create_router()).allowed_hosts is None
