#!/usr/bin/env python3
"""Hand-made SIP requests against the edge, for the abuse tests of the verify step.

Plays an attacker (or a misbehaving peer) that SIPp's scenarios cannot: it sends requests a
well-behaved user agent never sends, from a chosen source address, and prints one JSON line per
request with the final status the edge answered (0: no answer within the timeout, i.e. dropped).

  sip_probe.py indialog --source 127.0.0.10 --edge 127.0.0.1:5061 --route-to 127.0.0.77:5099
      an in-dialog re-INVITE with a To-tag of its own and a Route header pointing past the edge
  sip_probe.py invite --transport udp --source 10.88.0.2:5098 --edge 10.88.0.2:5070 --ruri sip:+491701234567@wa.meta.vc
      one INVITE (here to the edge's internal socket from a media node's address but not its
      port); --from-user, --header and --media pcma make it a PBX's call
  sip_probe.py guess --source 127.0.0.11 --edge 127.0.0.1:5061 --user +4930555000100 --count 6
      INVITEs with wrong digest passwords (the password guessing the edge must ban)
  sip_probe.py rate --source 127.0.0.12 --edge 127.0.0.1:5061 --user +4930555000100 --count 20
      new calls as fast as possible on one TLS connection (the per-source call rate limit)
  sip_probe.py call --source 127.0.0.11 ... --password-file F
      one INVITE answered to the challenge with the right password (is the source banned?)

Only the project's own test containers and loopback are ever addressed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import socket
import ssl
import sys
import time
from pathlib import Path

SDP = (
    "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
    "m=audio 40000 RTP/SAVP 111\r\na=rtpmap:111 opus/48000/2\r\n"
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj\r\n"
)
# What a PBX offers: plain RTP, A-law.
SDP_PCMA = (
    "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
)


class Peer:
    """One TLS connection or UDP socket from the source address to the edge."""

    def __init__(self, transport: str, source: str, edge: str, timeout: float) -> None:
        src_host, _, src_port = source.partition(":")
        host, _, port = edge.partition(":")
        self.transport = transport
        self.edge = (host, int(port))
        self.timeout = timeout
        if transport == "tls":
            raw = socket.create_connection(self.edge, timeout=timeout, source_address=(src_host, int(src_port or 0)))
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            self.sock = context.wrap_socket(raw)
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((src_host, int(src_port or 0)))
            self.sock.settimeout(timeout)
        self.local = self.sock.getsockname()
        self.buffer = b""

    def send(self, message: str) -> None:
        data = message.encode()
        if self.transport == "tls":
            self.sock.sendall(data)
        else:
            self.sock.sendto(data, self.edge)

    def responses(self, call_id: str, cseq: int):
        """Yields (status, headers text) of the responses to this transaction until a final one."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            message = self.next_message(deadline - time.monotonic())
            if message is None:
                return
            if not message.startswith("SIP/2.0 ") or f"Call-ID: {call_id}" not in message:
                continue
            if not re.search(rf"^CSeq: {cseq} ", message, re.M):
                continue
            status = int(message.split(" ", 2)[1])
            yield status, message
            if status >= 200:
                return

    def next_message(self, wait: float) -> str | None:
        self.sock.settimeout(max(wait, 0.01))
        if self.transport == "udp":
            try:
                return self.sock.recv(65535).decode(errors="replace")
            except TimeoutError:
                return None
        while b"\r\n\r\n" not in self.buffer:
            try:
                chunk = self.sock.recv(65535)
            except (TimeoutError, ssl.SSLError):
                return None
            if not chunk:
                return None
            self.buffer += chunk
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = int((re.search(rb"Content-Length: *(\d+)", head, re.I) or [b"", b"0"])[1])
        while len(rest) < length:
            rest += self.sock.recv(65535)
        self.buffer = rest[length:]
        return head.decode(errors="replace") + "\r\n\r\n" + rest[:length].decode(errors="replace")


def request(peer: Peer, method: str, ruri: str, *, call_id: str, cseq: int, headers: list[str], body: str = "") -> str:
    proto = "TLS" if peer.transport == "tls" else "UDP"
    lines = [
        f"{method} {ruri} SIP/2.0",
        f"Via: SIP/2.0/{proto} {peer.local[0]}:{peer.local[1]};branch=z9hG4bK-{random.getrandbits(48):x};rport",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Max-Forwards: 70",
        "User-Agent: wagw-test-probe",
        *headers,
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body.encode())}")
    return "\r\n".join(lines) + "\r\n\r\n" + body


def final(peer: Peer, message: str, call_id: str, cseq: int) -> tuple[int, str]:
    peer.send(message)
    status, text = 0, ""
    for response in peer.responses(call_id, cseq):
        status, text = response
    if status >= 200 and message.startswith("INVITE ") and status != 200:
        peer.send(ack_for(message, text))
    return status, text


def ack_for(invite: str, response: str) -> str:
    """The ACK of a negative final response (same branch, the response's To)."""
    lines = invite.split("\r\n")
    to = next((line for line in response.split("\r\n") if line.lower().startswith("to:")), "")
    ruri = lines[0].split(" ")[1]
    keep = [line for line in lines[1:] if line.split(":")[0].lower() in ("via", "from", "call-id", "max-forwards")]
    cseq = re.search(r"^CSeq: (\d+)", invite, re.M)[1]
    return "\r\n".join([f"ACK {ruri} SIP/2.0", *keep, to, f"CSeq: {cseq} ACK", "Content-Length: 0"]) + "\r\n\r\n"


def digest(challenge: str, user: str, password: str, method: str, uri: str) -> str:
    header = re.search(r"^(WWW|Proxy)-Authenticate: *Digest (.*)$", challenge, re.M | re.I)
    if not header:
        raise SystemExit("no digest challenge in: " + challenge.splitlines()[0])
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', header[2]))

    def md5(text: str) -> str:  # digest authentication is MD5 by definition (RFC 2617)
        return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

    ha1 = md5(f"{user}:{params['realm']}:{password}")
    ha2 = md5(f"{method}:{uri}")
    name = "Proxy-Authorization" if header[1].lower() == "proxy" else "Authorization"
    fields = f'username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}", uri="{uri}"'
    if "qop" in params:
        cnonce = f"{random.getrandbits(32):08x}"
        response = md5(f"{ha1}:{params['nonce']}:00000001:{cnonce}:auth:{ha2}")
        fields += f', qop=auth, nc=00000001, cnonce="{cnonce}"'
    else:
        response = md5(f"{ha1}:{params['nonce']}:{ha2}")
    return f'{name}: Digest {fields}, response="{response}", algorithm=MD5'


def invite(peer: Peer, user: str, call_id: str, cseq: int, extra: list[str]) -> str:
    ruri = f"sip:{user}@{peer.edge[0]}:{peer.edge[1]};transport={peer.transport}"
    headers = [
        f"From: <sip:+491701234567@wa.meta.vc>;tag={random.getrandbits(32):x}",
        f"To: <sip:{user}@{peer.edge[0]}>",
        f"Contact: <sip:+491701234567@{peer.local[0]}:{peer.local[1]};transport={peer.transport}>",
        *extra,
    ]
    return request(peer, "INVITE", ruri, call_id=call_id, cseq=cseq, headers=headers, body=SDP.format(ip=peer.local[0]))


def report(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def probe_indialog(peer: Peer, args: argparse.Namespace) -> None:
    """A re-INVITE of a dialog that never existed, with a Route to somewhere else."""
    call_id = f"probe-indialog-{random.getrandbits(32):x}"
    route = f"Route: <sip:{args.edge};transport={args.transport};lr>, <sip:{args.route_to};lr>"
    msg = invite(peer, args.user, call_id, 2, [route])
    to = f"To: <sip:{args.user}@{peer.edge[0]}>"
    status, _ = final(peer, msg.replace(to, to + ";tag=forged1"), call_id, 2)
    report(action="indialog", status=status)


def probe_invite(peer: Peer, args: argparse.Namespace) -> None:
    """One INVITE to --ruri, from --from-user, with the extra --header lines."""
    call_id = f"probe-invite-{random.getrandbits(32):x}"
    headers = [
        f"From: <sip:{args.from_user}@{peer.local[0]}>;tag={random.getrandbits(32):x}",
        f"To: <{args.ruri}>",
        f"Contact: <sip:{args.from_user}@{peer.local[0]}:{peer.local[1]}>",
        *args.header,
    ]
    body = (SDP_PCMA if args.media == "pcma" else SDP).format(ip=peer.local[0])
    msg = request(peer, "INVITE", args.ruri, call_id=call_id, cseq=1, headers=headers, body=body)
    status, _ = final(peer, msg, call_id, 1)
    report(action="invite", status=status)


def probe_digest(peer: Peer, args: argparse.Namespace) -> None:
    """INVITEs answering the challenge with wrong passwords (guess) or the right one (call)."""
    password = Path(args.password_file).read_text().strip() if args.action == "call" else None
    for i in range(args.count):
        call_id = f"probe-{args.action}-{i}-{random.getrandbits(32):x}"
        first = invite(peer, args.user, call_id, 1, [])
        status, text = final(peer, first, call_id, 1)
        if status not in (401, 407):
            report(action=args.action, attempt=i, challenge=status, status=status)
            continue
        uri = first.split(" ")[1]
        guess = password if password is not None else f"guess-{i}-{random.getrandbits(32):x}"
        second = invite(peer, args.user, call_id, 2, [digest(text, args.user, guess, "INVITE", uri)])
        status, text = final(peer, second, call_id, 2)
        report(action=args.action, attempt=i, challenge=401, status=status,
               retry_after=bool(re.search(r"^Retry-After: *\d+", text, re.M)))
        if status == 200:
            # not expected in these tests: hang up at once
            bye = request(peer, "BYE", uri, call_id=call_id, cseq=3, headers=["From: <sip:x@y>;tag=1", f"To: <{uri}>"])
            peer.send(bye)


def probe_rate(peer: Peer, args: argparse.Namespace) -> None:
    """New calls as fast as possible on one connection; counts the final answers."""
    sent = []
    for i in range(args.count):
        call_id = f"probe-rate-{i}-{random.getrandbits(32):x}"
        peer.send(invite(peer, args.user, call_id, 1, []))
        sent.append(call_id)
    answers: dict[str, tuple[int, bool]] = {}
    deadline = time.monotonic() + args.timeout
    while len(answers) < len(sent) and time.monotonic() < deadline:
        message = peer.next_message(deadline - time.monotonic())
        if message is None:
            break
        match = re.search(r"^Call-ID: (\S+)", message, re.M)
        status = int(message.split(" ", 2)[1]) if message.startswith("SIP/2.0 ") else 0
        if match and status >= 200:
            answers[match[1]] = (status, bool(re.search(r"^Retry-After: *\d+", message, re.M)))
    counts: dict[str, int] = {}
    for call_id in sent:
        status, retry_after = answers.get(call_id, (0, False))
        key = f"{status}{'+retry-after' if retry_after else ''}"
        counts[key] = counts.get(key, 0) + 1
    report(action="rate", sent=len(sent), answers=counts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["indialog", "invite", "guess", "rate", "call"])
    parser.add_argument("--transport", choices=["tls", "udp"], default="tls")
    parser.add_argument("--source", required=True, help="source address[:port]")
    parser.add_argument("--edge", required=True, help="the edge's address:port")
    parser.add_argument("--route-to", default="127.0.0.77:5099", help="where the forged Route points")
    parser.add_argument("--ruri", default="sip:+491701234567@wa.meta.vc")
    parser.add_argument("--user", default="+4930555000100")
    parser.add_argument("--from-user", default="+4930555000100", help="From user of an invite")
    parser.add_argument("--header", action="append", default=[], help="an extra header line of an invite")
    parser.add_argument("--media", choices=["opus-srtp", "pcma"], default="opus-srtp", help="the SDP of an invite")
    parser.add_argument("--password-file", help="the right password (action call)")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args()
    peer = Peer(args.transport, args.source, args.edge, args.timeout)
    actions = {
        "indialog": probe_indialog,
        "invite": probe_invite,
        "guess": probe_digest,
        "call": probe_digest,
        "rate": probe_rate,
    }
    actions[args.action](peer, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
