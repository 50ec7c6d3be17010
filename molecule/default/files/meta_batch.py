#!/usr/bin/env python3
"""Writes one webhook delivery the size of Meta's largest: a batch of text messages.

Meta's WhatsApp Cloud API webhooks "can be up to 3MB" and batch "up to 1000 updates"
(developers.facebook.com/docs/whatsapp/cloud-api/guides/set-up-webhooks, "Webhook payloads";
the message shape: .../cloud-api/webhooks/components, "messages" object). The delivery has one
entry of the business account, whose changes carry one text message each, from distinct users.

  meta_batch.py --out FILE --waba ID --phone-number-id ID --display 4930555000100 \
      --prefix wamid.BATCH123 --updates 1000 --bytes 2620000
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--waba", required=True)
    parser.add_argument("--phone-number-id", required=True)
    parser.add_argument("--display", required=True, help="the business number without +")
    parser.add_argument("--prefix", required=True, help="message ids are <prefix>N")
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--bytes", type=int, default=2_620_000, help="the size to reach, about")
    args = parser.parse_args()

    now = int(time.time())
    # the text that brings each update to its share of the size
    text_len = max(16, args.bytes // args.updates - 420)
    changes = []
    for i in range(args.updates):
        user = f"49177{i:07d}"
        changes.append(
            {
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": args.display, "phone_number_id": args.phone_number_id},
                    "contacts": [{"profile": {"name": f"Batch {i}"}, "wa_id": user}],
                    "messages": [
                        {
                            "from": user,
                            "id": f"{args.prefix}{i}",
                            "timestamp": str(now),
                            "type": "text",
                            "text": {"body": ("Guten Tag " * (text_len // 10 + 1))[:text_len]},
                        }
                    ],
                },
            }
        )
    body = {"object": "whatsapp_business_account", "entry": [{"id": args.waba, "changes": changes}]}
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump(body, out, separators=(",", ":"))


if __name__ == "__main__":
    main()
