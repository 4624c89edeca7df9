"""wskit.core.handshake: the upgrade-request rules every server adapter shares
(their behaviour over sockets is checked by the transport conformance suite)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from wskit.core.handshake import (
    HostRules,
    offered_protocols,
    origin_allowed,
    select_protocol,
    token_from_offer,
)


def test_offered_protocols_splits_every_header_value() -> None:
    assert offered_protocols(["wskit.v1, bearer.t1", " chat ", ""]) == [
        "wskit.v1",
        "bearer.t1",
        "chat",
    ]


@pytest.mark.parametrize(
    ("offered", "query", "expected"),
    [
        (["bearer.abc"], None, ("abc", "bearer.abc")),
        (["bearer.abc"], "q", ("abc", "bearer.abc")),  # the subprotocol wins
        (["chat"], "q", ("q", None)),
        (["bearer."], None, (None, None)),  # an empty token is no token
        ([], "", (None, None)),
    ],
)
def test_token_from_offer(offered: list[str], query: str | None, expected: object) -> None:
    assert token_from_offer(offered, query) == expected


def test_select_protocol_prefers_the_application_protocols() -> None:
    assert select_protocol(["bearer.t", "v2", "v1"], ["v1", "v2"]) == "v1"
    assert select_protocol(["bearer.t"], ["v1"]) == "bearer.t"
    assert select_protocol(["other"], ["v1"]) is None


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "ok"),
    [
        (None, "evil.example", frozenset(), True),  # no Origin: not a browser
        ("http://app.example:8080", "app.example:8080", frozenset(), True),  # same origin
        ("http://app.example:9090", "app.example:8080", frozenset(), False),
        ("https://a.example", "b.example", frozenset({"https://a.example"}), True),
        ("HTTPS://A.EXAMPLE:443/", "b.example", frozenset({"https://a.example"}), True),
        ("null", "b.example", frozenset(), False),
        ("http://x.example", "b.example", frozenset({"*"}), True),
    ],
)
def test_origin_allowed(origin: str | None, host: str, allowed: frozenset[str], ok: bool) -> None:
    assert origin_allowed(origin, host, allowed) is ok


def test_host_rules() -> None:
    rules = HostRules(["app.example", ".example.org", "::1"])
    assert rules.allows("APP.example.:443")
    assert rules.allows("example.org") and rules.allows("a.b.example.org")
    assert rules.allows("[::1]:3000")
    assert not rules.allows("badexample.org")
    assert not rules.allows(None)


def test_handshake_and_the_conformance_suite_need_only_the_standard_library() -> None:
    # pytest (and what it imports) is loaded first: the suite needs it, nothing else.
    code = (
        "import sys, pytest\n"
        "before = set(sys.modules)\n"
        "import wskit.core.handshake, wskit.core.conformance\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "third = sorted(m for m in new if m not in sys.stdlib_module_names and m != 'wskit')\n"
        "print(','.join(third))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""
