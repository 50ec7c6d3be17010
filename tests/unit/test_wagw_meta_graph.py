"""plugins/module_utils/wagw_graph.py in-process against tests/fake_meta_graph.py: the backoff,
which failures are retried, the token only in the Authorization header, the messages."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator

import pytest
from fake_meta_graph import DEFAULT_TOKEN, FakeMetaGraph, running

from conftest import ROOT

sys.path.insert(0, str(ROOT / "plugins" / "module_utils"))
import wagw_graph


@pytest.fixture
def meta() -> Iterator[tuple[FakeMetaGraph, str]]:
    fake = FakeMetaGraph()
    fake.add_number("1")
    with running(fake) as url:
        yield fake, url


def client(url: str, sleeps: list[float], **extra) -> wagw_graph.GraphClient:
    return wagw_graph.GraphClient(url, "v23.0", DEFAULT_TOKEN, sleep=sleeps.append, jitter=False, **extra)


def test_backoff_doubles_and_the_token_stays_out_of_the_url(meta: tuple[FakeMetaGraph, str]) -> None:
    fake, url = meta
    fake.throttle = 3
    sleeps: list[float] = []
    answer = client(url, sleeps, retry_delay=1.0).get("1/settings")
    assert answer["calling"]["status"] == "DISABLED"
    assert sleeps == [1.0, 2.0, 4.0]
    assert all("access_token" not in e["query"] for e in fake.log)


def test_a_refusal_is_not_retried_and_keeps_metas_words(meta: tuple[FakeMetaGraph, str]) -> None:
    _fake, url = meta
    sleeps: list[float] = []
    with pytest.raises(wagw_graph.GraphError) as caught:
        client(url, sleeps).post("1/settings", {"calling": {"status": "MAYBE"}})
    assert sleeps == []
    assert caught.value.code == 100
    message = wagw_graph.describe(caught.value, "WhatsApp number +49", "updating")
    assert message.startswith("WhatsApp number +49: updating failed: Meta refused a parameter (Graph error 100")
    assert "status must be one of" in message
    assert DEFAULT_TOKEN not in message


def test_an_unreachable_api_is_retried_twice_and_named() -> None:
    with socket.socket() as sock:  # a free port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sleeps: list[float] = []
    with pytest.raises(wagw_graph.GraphError) as caught:
        client(f"http://127.0.0.1:{port}", sleeps, timeout=2).get("1/settings")
    assert len(sleeps) == 2
    assert "not reachable" in wagw_graph.describe(caught.value, "WhatsApp number +49", "reading")


def test_retryable_status_and_codes() -> None:
    assert wagw_graph.is_retryable(429, None)
    assert wagw_graph.is_retryable(502, None)
    for code in (4, 17, 32, 613, 80007, 130429):
        assert wagw_graph.is_retryable(400, code)
    assert not wagw_graph.is_retryable(400, 100)
    assert not wagw_graph.is_retryable(401, 190)
