#!/usr/bin/python3
"""Keep a SIP-over-TLS connection and an HTTPS request open across a forced renewal.

Connects from 127.0.0.10 (an allow-listed "Meta" source) to the SIP TLS listener, sends an
OPTIONS, and starts a webhook POST through nginx (443) whose body is only half sent. Then it
forces a renewal by running the renewal timer's service, sends a second OPTIONS on the SAME
SIP connection, completes the POST on its connection and reads the answer, then opens new
connections to both. Prints a JSON report: status lines, the serials seen on old and new
connections, the main PIDs of Kamailio and nginx before and after, and the renewal time.
"""
import json
import pathlib
import socket
import ssl
import subprocess
import sys
import time

from cryptography import x509

host, port, ca_file, force_file, web_host = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
context = ssl.create_default_context(cafile=ca_file)
BODY = b'{"object":"whatsapp_business_account","entry":[]}'


def connect(server_name=host, to_port=port):
    raw = socket.create_connection(("127.0.0.1", to_port), source_address=("127.0.0.10", 0), timeout=10)
    conn = context.wrap_socket(raw, server_hostname=server_name)
    return conn, f"{x509.load_der_x509_certificate(conn.getpeercert(binary_form=True)).serial_number:x}"


def start_post(conn):
    """Headers and half the body of an (unsigned) webhook delivery; nginx waits for the rest."""
    conn.sendall((
        f"POST /webhook HTTP/1.1\r\nHost: {web_host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\nConnection: close\r\n\r\n").encode() + BODY[:10])


def status_line(conn):
    """The first line of the answer (SIP or HTTP), once its header is complete."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return "connection closed"
        data += chunk
    return data.split(b"\r\n", 1)[0].decode()


def finish_post(conn):
    try:
        conn.sendall(BODY[10:])
        return status_line(conn)
    except OSError as exc:
        return f"connection failed: {exc}"


def options(conn, seq):
    local = conn.getsockname()
    conn.sendall((
        f"OPTIONS sip:{host} SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS {local[0]}:{local[1]};rport;branch=z9hG4bK-probe-{seq}-{time.time_ns()}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@{host}>;tag=probe{seq}\r\n"
        f"To: <sip:{host}>\r\n"
        f"Call-ID: renewal-probe-{seq}-{time.time_ns()}\r\n"
        f"CSeq: {seq} OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n").encode())
    return status_line(conn)


def main_pid(unit):
    return subprocess.run(["systemctl", "show", "-p", "MainPID", "--value", unit],
                          capture_output=True, text=True, check=True).stdout.strip()


report = {"pid_before": main_pid("kamailio"), "nginx_pid_before": main_pid("nginx")}
old, report["serial_old_connection"] = connect()
report["options_before"] = options(old, 1)
web_old, report["web_serial_old_connection"] = connect(web_host, 443)
start_post(web_old)
pathlib.Path(force_file).touch()
start = time.monotonic()
renew = subprocess.run(["systemctl", "start", "wagw-tls-renew.service"], capture_output=True, text=True, check=False)
report["renew_seconds"] = round(time.monotonic() - start, 2)
report["renew_rc"] = renew.returncode
report["options_after_same_connection"] = options(old, 2)
report["web_request_across_reload"] = finish_post(web_old)
new, report["serial_new_connection"] = connect()
report["options_new_connection"] = options(new, 3)
# `systemctl reload nginx` returns once the master is signalled; its new workers (new
# certificate) take over a moment later. Poll new connections for up to 10 s and report when.
reload_done = time.monotonic()
while True:
    _, report["web_serial_new_connection"] = connect(web_host, 443)
    if report["web_serial_new_connection"] == report["serial_new_connection"] or time.monotonic() - reload_done > 10:
        break
    time.sleep(0.1)
report["web_new_serial_after_seconds"] = round(time.monotonic() - reload_done, 2)
report["pid_after"] = main_pid("kamailio")
report["nginx_pid_after"] = main_pid("nginx")
print(json.dumps(report))
