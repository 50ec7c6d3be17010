"""plugins/modules/wagw_meta_webhook_subscription.py against tests/fake_meta_graph.py: the app's
subscription for whatsapp_business_account and the WABA's subscribed apps, posted once with the
documented parameters, then left alone; check mode; tokens and errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fake_meta_graph import DEFAULT_APP_ID, DEFAULT_APP_SECRET, DEFAULT_TOKEN, FakeMetaGraph, running

from conftest import run_module

WABA_ID = "100000000000010"
CALLBACK = "https://hooks.beispiel-sanitaer.example/webhook"
VERIFY = "verify-token-of-the-bridge"
ROTATED = "rotated-verify-token"


@pytest.fixture
def meta() -> Iterator[tuple[FakeMetaGraph, str]]:
    fake = FakeMetaGraph()
    with running(fake) as url:
        yield fake, url


def args(url: str, **extra: Any) -> dict[str, Any]:
    return {"graph_api_url": url, "access_token": DEFAULT_TOKEN, "retry_delay": 0.01, "app_id": DEFAULT_APP_ID,
            "app_secret": DEFAULT_APP_SECRET, "callback_url": CALLBACK, "verify_token": VERIFY,
            "waba_id": WABA_ID, **extra}


def test_subscribes_once_with_the_documented_parameters(meta: tuple[FakeMetaGraph, str]) -> None:
    fake, url = meta
    first = run_module("wagw_meta_webhook_subscription", args(url))
    assert first["changed"] is True, first
    assert first["posted"] == [f"{DEFAULT_APP_ID}/subscriptions", f"{WABA_ID}/subscribed_apps"]
    posts = fake.posts()
    assert posts[0]["path"] == f"/v23.0/{DEFAULT_APP_ID}/subscriptions"
    assert posts[0]["body"] == {"object": "whatsapp_business_account", "callback_url": CALLBACK,
                                "verify_token": VERIFY, "fields": "calls,messages,user_preferences"}
    assert posts[1]["path"] == f"/v23.0/{WABA_ID}/subscribed_apps"
    assert fake.waba_apps[WABA_ID] == [DEFAULT_APP_ID]
    assert fake.app_subscriptions[DEFAULT_APP_ID][0]["callback_url"] == CALLBACK
    assert VERIFY not in str(first)
    assert DEFAULT_APP_SECRET not in str(first)
    fake.log.clear()
    second = run_module("wagw_meta_webhook_subscription", args(url))
    assert second["changed"] is False, second
    assert [e["method"] for e in fake.log] == ["GET", "GET"]


def test_a_new_callback_url_or_field_is_posted_extra_fields_stay(meta: tuple[FakeMetaGraph, str]) -> None:
    fake, url = meta
    run_module("wagw_meta_webhook_subscription", args(url, fields=["messages", "account_update"]))
    fake.log.clear()
    moved = run_module("wagw_meta_webhook_subscription", args(url, callback_url="https://new.example/webhook",
                                                              fields=["messages"]))
    assert moved["changed"] is True
    assert moved["posted"] == [f"{DEFAULT_APP_ID}/subscriptions"]
    assert moved["subscription"]["fields"] == ["account_update", "messages"]  # Meta removes none on a POST
    assert fake.posts()[0]["body"]["callback_url"] == "https://new.example/webhook"


def test_check_mode_posts_nothing_and_shows_the_diff(meta: tuple[FakeMetaGraph, str]) -> None:
    fake, url = meta
    result = run_module("wagw_meta_webhook_subscription", args(url), "--check", "--diff")
    assert result["changed"] is True
    assert fake.posts() == []
    assert '"callback_url": null' in result["diff"]["before"]
    assert CALLBACK in result["diff"]["after"]
    assert DEFAULT_APP_ID in result["diff"]["after"]
    assert VERIFY not in result["diff"]["after"]


def test_force_resends_the_verify_token(meta: tuple[FakeMetaGraph, str]) -> None:
    fake, url = meta
    run_module("wagw_meta_webhook_subscription", args(url))
    fake.log.clear()
    forced = run_module("wagw_meta_webhook_subscription", args(url, verify_token=ROTATED, force=True))
    assert forced["changed"] is True
    assert fake.posts()[0]["body"]["verify_token"] == ROTATED


def test_the_app_token_and_the_system_user_token_go_where_meta_wants_them(meta: tuple[FakeMetaGraph, str]) -> None:
    fake, url = meta
    user_token_as_app_token = {k: v for k, v in args(url, app_access_token=DEFAULT_TOKEN).items() if k != "app_secret"}
    wrong = run_module("wagw_meta_webhook_subscription", user_token_as_app_token)
    assert wrong["failed"] is True
    assert f"Meta app {DEFAULT_APP_ID}: reading the app's webhook subscriptions failed" in wrong["msg"]
    assert "(#15) This method must be called with an app access_token" in wrong["msg"]
    fake.throttle = 1
    fake.token_expired = False
    assert run_module("wagw_meta_webhook_subscription", args(url))["changed"] is True


def test_an_expired_token_fails_clearly(meta: tuple[FakeMetaGraph, str]) -> None:
    fake, url = meta
    fake.token_expired = True
    result = run_module("wagw_meta_webhook_subscription", args(url))
    assert result["failed"] is True
    assert "Meta refused the access token (Graph error 190" in result["msg"]
    assert DEFAULT_APP_SECRET not in str(result)
