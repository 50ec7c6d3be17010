"""roles/tls/files/wagw-tls-expiry: the certificate's notAfter in the node exporter's textfile
format, written only when it changed, never half-written, nothing written in check mode, and a
certificate it cannot read leaves the published file as it was."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import ROOT

SCRIPT = ROOT / "roles" / "tls" / "files" / "wagw-tls-expiry"
SAMPLE = re.compile(r'^wagw_tls_certificate_not_after_seconds\{path="(?P<path>[^"]*)",name="(?P<name>[^"]*)"\} '
                    r"(?P<value>\d+)$", re.MULTILINE)


def certificate(path: Path, not_after: dt.datetime, names: list[str]) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not-the-first-name.example")])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_after - dt.timedelta(days=90)).not_valid_after(not_after))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    path.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return path


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          check=False, timeout=60)


def test_the_expiry_is_published_once_and_again_only_when_it_changes(tmp_path: Path) -> None:
    not_after = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC)
    cert = certificate(tmp_path / "cert.pem", not_after, ["sip.beispiel-sanitaer.example", "hooks.example"])
    out = tmp_path / "wagw-tls.prom"

    # check mode on a host without the file: a run would write it; nothing is written
    checked = run(out, cert, "--check")
    assert (checked.returncode, checked.stdout.strip()) == (0, f"wagw-tls-expiry: {out}: changed"), checked
    assert not out.exists()

    first = run(out, cert)
    assert first.stdout.strip().endswith(": changed"), first
    text = out.read_text()
    assert "# TYPE wagw_tls_certificate_not_after_seconds gauge" in text
    samples = [m.groupdict() for m in SAMPLE.finditer(text)]
    # the first DNS name of the certificate, not its subject's CN
    assert samples == [{"path": str(cert), "name": "sip.beispiel-sanitaer.example",
                        "value": str(int(not_after.timestamp()))}]
    assert oct(out.stat().st_mode & 0o777) == "0o644"  # the exporter runs as prometheus

    # the same certificate: nothing written (the inode stays: no rename happened)
    inode = out.stat().st_ino
    for args in ((out, cert), (out, cert, "--check")):
        again = run(*args)
        assert again.stdout.strip().endswith(": unchanged"), again
    assert out.stat().st_ino == inode

    # a renewed certificate: the new expiry, by rename (the collector never reads half a file)
    renewed = not_after + dt.timedelta(days=60)
    certificate(cert, renewed, ["sip.beispiel-sanitaer.example"])
    assert run(out, cert).stdout.strip().endswith(": changed")
    assert out.stat().st_ino != inode
    assert [m["value"] for m in SAMPLE.finditer(out.read_text())] == [str(int(renewed.timestamp()))]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_a_certificate_without_dns_names_is_named_by_its_cn(tmp_path: Path) -> None:
    cert = certificate(tmp_path / 'we"ird.pem', dt.datetime(2027, 1, 1, tzinfo=dt.UTC), [])
    out = tmp_path / "wagw-tls.prom"
    assert run(out, cert).returncode == 0
    # the label value is escaped as the text format requires
    assert f'path="{tmp_path}/we\\"ird.pem",name="not-the-first-name.example"' in out.read_text()


def test_an_unreadable_certificate_leaves_the_published_expiry_alone(tmp_path: Path) -> None:
    cert = certificate(tmp_path / "cert.pem", dt.datetime(2027, 1, 1, tzinfo=dt.UTC), ["a.example"])
    out = tmp_path / "wagw-tls.prom"
    assert run(out, cert).returncode == 0
    before = out.read_text()
    cert.write_text("-----BEGIN CERTIFICATE-----\ntruncated\n")
    broken = run(out, cert)
    assert broken.returncode == 2
    assert "cannot read a certificate" in broken.stderr
    assert out.read_text() == before
    missing_dir = run(tmp_path / "absent" / "wagw-tls.prom", certificate(cert, dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
                                                                          ["a.example"]))
    assert (missing_dir.returncode, "cannot write" in missing_dir.stderr) == (2, True)


def test_the_settings_file_names_the_output_and_an_empty_output_publishes_nothing(tmp_path: Path) -> None:
    cert = certificate(tmp_path / "cert.pem", dt.datetime(2027, 1, 1, tzinfo=dt.UTC), ["a.example"])
    out, config = tmp_path / "wagw-tls.prom", tmp_path / "expiry.json"
    config.write_text(json.dumps({"output": "", "certificates": [str(cert)]}))
    nothing = run("--config", config)
    assert (nothing.returncode, "nothing to publish" in nothing.stdout, out.exists()) == (0, True, False)
    config.write_text(json.dumps({"output": str(out), "certificates": [str(cert)]}))
    assert run("--config", config).stdout.strip() == f"wagw-tls-expiry: {out}: changed"
    assert [m["path"] for m in SAMPLE.finditer(out.read_text())] == [str(cert)]
    assert run().returncode == 2  # neither arguments nor settings
