#!/usr/bin/env python3
"""GET a Prometheus endpoint from a chosen source address; prints JSON: the HTTP status and, for
a 200, every sample as {"name{labels}": value} (timestamps dropped) and each metric's sum over
its labels as {"name": value}; and the Server header (null when there is none).

    metrics_get.py --source 127.0.0.40 --url http://127.0.0.1:9151/metrics
"""

from __future__ import annotations

import argparse
import http.client
import json
import urllib.parse


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", required=True)
    parser.add_argument("--url", required=True)
    args = parser.parse_args()
    url = urllib.parse.urlsplit(args.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10, source_address=(args.source, 0))
    conn.request("GET", url.path or "/")
    response = conn.getresponse()
    body = response.read().decode()
    samples: dict[str, float] = {}
    by_name: dict[str, float] = {}
    if response.status == 200:
        for line in body.splitlines():
            if not line or line.startswith("#"):
                continue
            # name{labels} value [timestamp]; a label value may hold spaces (Asterisk's
            # asterisk_core_properties), the value and the timestamp never a brace
            end = line.rfind("}") + 1
            series, value = (line[:end], line[end:].split()[0]) if end else line.split()[:2]
            samples[series] = float(value)
            name = series.split("{", 1)[0]
            by_name[name] = by_name.get(name, 0.0) + float(value)
    print(
        json.dumps(
            {"status": response.status, "server": response.getheader("Server"), "samples": samples, "by_name": by_name}
        )
    )


if __name__ == "__main__":
    main()
