#!/usr/bin/python3
"""Keep a SIP-over-TLS connection to the edge open across a forced renewal.

Connects from 127.0.0.10 (an allow-listed "Meta" source) to the TLS listener, sends an
OPTIONS, forces a renewal by running the renewal timer's service, sends a second OPTIONS on
the SAME connection, then opens a new connection. Prints a JSON report: the status lines,
the serial seen on the old and on the new connection, Kamailio's main PID before and after,
and the renewal time.
"""
import json
import pathlib
import socket
import ssl
import subprocess
import sys
import time

from cryptography import x509

host, port, ca_file, force_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
context = ssl.create_default_context(cafile=ca_file)


def connect():
    raw = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.10", 0), timeout=10)
    conn = context.wrap_socket(raw, server_hostname=host)
    return conn, f"{x509.load_der_x509_certificate(conn.getpeercert(binary_form=True)).serial_number:x}"


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
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return "connection closed"
        data += chunk
    return data.split(b"\r\n", 1)[0].decode()


def main_pid():
    return subprocess.run(["systemctl", "show", "-p", "MainPID", "--value", "kamailio"],
                          capture_output=True, text=True, check=True).stdout.strip()


report = {"pid_before": main_pid()}
old, report["serial_old_connection"] = connect()
report["options_before"] = options(old, 1)
pathlib.Path(force_file).touch()
start = time.monotonic()
renew = subprocess.run(["systemctl", "start", "wagw-tls-renew.service"], capture_output=True, text=True)
report["renew_seconds"] = round(time.monotonic() - start, 2)
report["renew_rc"] = renew.returncode
report["options_after_same_connection"] = options(old, 2)
new, report["serial_new_connection"] = connect()
report["options_new_connection"] = options(new, 3)
report["pid_after"] = main_pid()
print(json.dumps(report))
