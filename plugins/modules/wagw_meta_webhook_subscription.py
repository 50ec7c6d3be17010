#!/usr/bin/python
# Copyright: (c) 2026, wa-voip-gateway
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Meta app's webhook subscription for WhatsApp Business Accounts, and the WABA's subscribed apps."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wagw_meta_webhook_subscription
short_description: Subscribe the Meta app's webhooks to the bridge and the app to the WABA
description:
  - Two things Meta needs before the webhook bridge receives anything - the app's webhook
    subscription for the object C(whatsapp_business_account) (callback URL, verify token,
    fields), read with C(GET /{version}/{app-id}/subscriptions) and written with
    C(POST /{version}/{app-id}/subscriptions) (an app access token, C({app-id}|{app-secret}));
    and the app in the WhatsApp Business Account's subscribed apps, read with
    C(GET /{version}/{waba-id}/subscribed_apps) and written with
    C(POST /{version}/{waba-id}/subscribed_apps) (the system user token; Meta subscribes the
    token's app). Meta's documentation -
    U(https://developers.facebook.com/docs/graph-api/reference/app/subscriptions/),
    U(https://developers.facebook.com/docs/graph-api/webhooks/subscriptions-edge),
    U(https://developers.facebook.com/docs/graph-api/reference/whats-app-business-account/subscribed_apps/).
  - Posts only what differs - a subscription is current when its callback URL is the wanted
    one, it is active and it has every wanted field (Meta adds fields on a POST and removes
    none; fields subscribed besides are left alone). Meta never returns the verify token, so a
    changed verify token is not seen; O(force) posts the subscription anyway.
  - When Meta receives the POST it sends a verification request (C(hub.mode=subscribe),
    C(hub.verify_token), C(hub.challenge)) to the callback URL; the webhook bridge must be
    running and answer it, or Meta refuses the subscription.
  - Throttling and server errors are retried with backoff; runs on the controller.
options:
  app_id:
    description: ID of the Meta app.
    type: str
    required: true
  app_secret:
    description: The app secret; the app access token is C({app_id}|{app_secret}). One of this and O(app_access_token) is required.
    type: str
  app_access_token:
    description: An app access token of the app instead of O(app_secret).
    type: str
  callback_url:
    description: The bridge's webhook URL, C(https://<public_host>/webhook).
    type: str
    required: true
  verify_token:
    description: The verify token the bridge expects in Meta's verification request.
    type: str
    required: true
  fields:
    description: Webhook fields of the object C(whatsapp_business_account) the bridge handles.
    type: list
    elements: str
    default: [messages, calls, user_preferences]
  waba_id:
    description: The WhatsApp Business Account the app must be subscribed to; unset skips that part.
    type: str
  force:
    description: Post the subscription even when it looks current (to send a new verify token).
    type: bool
    default: false
extends_documentation_fragment:
  - wagw.gateway.wagw_module
  - wagw.gateway.wagw_graph
author:
  - wa-voip-gateway
"""

EXAMPLES = r"""
- name: Webhooks of the app to the bridge, the app subscribed to the WABA
  wagw.gateway.wagw_meta_webhook_subscription:
    app_id: "{{ wagw_meta.app_id }}"
    app_secret: "{{ wagw_bridge.app_secret }}"
    access_token: "{{ wagw_meta.access_token }}"
    callback_url: "https://{{ wagw_bridge.public_host }}/webhook"
    verify_token: "{{ wagw_bridge.verify_token }}"
    waba_id: "{{ wagw_whatsapp.waba_id }}"
  delegate_to: localhost
"""

RETURN = r"""
subscription:
  description: The app's subscription for C(whatsapp_business_account) as it is (or in check mode would be) now.
  returned: always
  type: dict
  sample: {callback_url: "https://hooks.example.com/webhook", active: true, fields: [calls, messages]}
waba_subscribed:
  description: Whether the app is (or in check mode would be) among the WABA's subscribed apps.
  returned: when waba_id is set
  type: bool
  sample: true
posted:
  description: The Graph paths posted to (or in check mode that would be).
  returned: always
  type: list
  elements: str
  sample: [900000000000001/subscriptions]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.wagw.gateway.plugins.module_utils.wagw_graph import (
    GRAPH_ARGUMENT_SPEC,
    GraphClient,
    GraphError,
    canonical_json,
    describe,
)

OBJECT = "whatsapp_business_account"


def _subscription(data: dict) -> dict:
    for entry in data.get("data") or []:
        if isinstance(entry, dict) and entry.get("object") == OBJECT:
            names = sorted({str(f.get("name")) if isinstance(f, dict) else str(f) for f in entry.get("fields") or []})
            return {"callback_url": entry.get("callback_url"), "active": bool(entry.get("active")), "fields": names}
    return {"callback_url": None, "active": False, "fields": []}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **GRAPH_ARGUMENT_SPEC,
            "app_id": {"type": "str", "required": True},
            "app_secret": {"type": "str", "no_log": True},
            "app_access_token": {"type": "str", "no_log": True},
            "callback_url": {"type": "str", "required": True},
            "verify_token": {"type": "str", "required": True, "no_log": True},
            "fields": {"type": "list", "elements": "str", "default": ["messages", "calls", "user_preferences"]},
            "waba_id": {"type": "str"},
            "force": {"type": "bool", "default": False},
        },
        required_one_of=[("app_secret", "app_access_token")],
        mutually_exclusive=[("app_secret", "app_access_token")],
        supports_check_mode=True,
    )
    params = module.params
    app_id = params["app_id"]
    app_token = params["app_access_token"] or f"{app_id}|{params['app_secret']}"
    module.no_log_values.add(app_token)
    subject = f"Meta app {app_id}"
    app_client = GraphClient.from_module(params, access_token=app_token)
    posted: list[str] = []

    try:
        current = _subscription(app_client.get(f"{app_id}/subscriptions"))
    except GraphError as exc:
        module.fail_json(msg=describe(exc, subject, "reading the app's webhook subscriptions"), graph_error=exc.error,
                         http_status=exc.status)
    fields = sorted(set(params["fields"]))
    want = {"callback_url": params["callback_url"], "active": True, "fields": sorted(set(current["fields"]) | set(fields))}
    if want != current or params["force"]:
        body = {"object": OBJECT, "callback_url": params["callback_url"], "verify_token": params["verify_token"],
                "fields": ",".join(fields)}
        posted.append(f"{app_id}/subscriptions")
        if not module.check_mode:
            try:
                app_client.post(f"{app_id}/subscriptions", body)
            except GraphError as exc:
                module.fail_json(msg=describe(exc, subject, f"subscribing the app's webhooks to {params['callback_url']} "
                                              "(Meta verifies the URL with the verify token: is the bridge up?)"),
                                 graph_error=exc.error, http_status=exc.status)
    result: dict = {"subscription": want}
    before: dict = {"app_subscription": current}
    after: dict = {"app_subscription": want}

    if params["waba_id"]:
        waba = params["waba_id"]
        client = GraphClient.from_module(params)
        waba_subject = f"WhatsApp Business Account {waba}"
        try:
            apps = client.get(f"{waba}/subscribed_apps").get("data") or []
        except GraphError as exc:
            module.fail_json(msg=describe(exc, waba_subject, "reading the subscribed apps"), graph_error=exc.error,
                             http_status=exc.status)
        ids = sorted({str((a.get("whatsapp_business_api_data") or {}).get("id")) for a in apps if isinstance(a, dict)})
        before["waba_subscribed_apps"] = ids
        after["waba_subscribed_apps"] = sorted(set(ids) | {app_id})
        if app_id not in ids:
            posted.append(f"{waba}/subscribed_apps")
            if not module.check_mode:
                try:
                    client.post(f"{waba}/subscribed_apps")
                except GraphError as exc:
                    module.fail_json(msg=describe(exc, waba_subject, f"subscribing app {app_id}"),
                                     graph_error=exc.error, http_status=exc.status)
        result["waba_subscribed"] = True

    result.update(changed=bool(posted), posted=posted)
    if module._diff:
        result["diff"] = {"before_header": subject, "after_header": subject,
                          "before": canonical_json(before), "after": canonical_json(after)}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
