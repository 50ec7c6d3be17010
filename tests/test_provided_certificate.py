"""playbooks/validate.yml with wagw_tls.mode provided: the certificate, its key and its chain
are parsed on the controller before any host is touched, and each defect is refused with its
own message. Certificates are made here with the cryptography library (ansible-core's own)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import run_validate, vault, vault_args

# The example host is edge and bridge: its certificate needs both names.
NAMES = ["sip.beispiel-sanitaer.example", "hooks.beispiel-sanitaer.example"]
NOW = dt.datetime.now(dt.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _issue(subject: str, key: ec.EllipticCurvePrivateKey, issuer_key: ec.EllipticCurvePrivateKey, *,
           issuer: str, names: list[str] | None = None, days: tuple[int, int] = (-1, 90),
           ca: bool = False) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW + dt.timedelta(days=days[0]))
               .not_valid_after(NOW + dt.timedelta(days=days[1]))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _material(names: list[str] = NAMES, days: tuple[int, int] = (-1, 90)) -> dict[str, str]:
    """A leaf certificate from an intermediate CA: certificate, chain (the intermediate) and key."""
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    intermediate = _issue("Test Intermediate CA", ca_key, ca_key, issuer="Test Intermediate CA", ca=True)
    leaf = _issue(names[0], leaf_key, ca_key, issuer="Test Intermediate CA", names=names, days=days)
    return {"certificate": _pem(leaf), "chain": _pem(intermediate), "private_key": _key_pem(leaf_key)}


def _use(inventory: Path, tmp_path: Path, provided: dict[str, str]) -> None:
    """The material into a vault-encrypted file, as a production client keeps it."""
    vault_file = inventory / "group_vars" / "all" / "vault.yml"
    vault_file.write_text(yaml.safe_dump({f"vault_tls_{key}": value for key, value in provided.items()}))
    vault(tmp_path, "encrypt", str(vault_file))
    path = inventory / "group_vars" / "all" / "tls.yml"
    data = yaml.safe_load(path.read_text())
    data["wagw_tls"].update(mode="provided", provided={key: f"{{{{ vault_tls_{key} }}}}" for key in provided})
    path.write_text(yaml.safe_dump(data))


def test_a_matching_certificate_with_its_chain_passes(example_inventory: Path, tmp_path: Path) -> None:
    _use(example_inventory, tmp_path, _material())
    result = run_validate(example_inventory, tmp_path, *vault_args(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed=0" in result.stdout


def _other_key(material: dict[str, str]) -> dict[str, str]:
    return dict(material, private_key=_material()["private_key"])


def _wrong_chain(material: dict[str, str]) -> dict[str, str]:
    return dict(material, chain=_material()["certificate"])


def _not_a_certificate(material: dict[str, str]) -> dict[str, str]:
    return dict(material, certificate="sip.beispiel-sanitaer.example")


def _unreadable_key(material: dict[str, str]) -> dict[str, str]:
    return dict(material, private_key="-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")


DEFECTS = {
    "key of another certificate": (_material, _other_key, "does NOT MATCH the certificate"),
    "expired": (lambda: _material(days=(-90, -1)), None, "EXPIRED on"),
    "names not covered": (lambda: _material(names=["sip.beispiel-sanitaer.example"]), None,
                          "does NOT COVER the domain(s) hooks.beispiel-sanitaer.example"),
    "chain from another issuer": (_material, _wrong_chain, "the chain does not start with the issuer"),
    "not a certificate": (_material, _not_a_certificate, "must hold a PEM certificate"),
    "unreadable key": (_material, _unreadable_key, "tls_provided_private_key cannot be read"),
}


@pytest.mark.parametrize(("make", "spoil", "message"), DEFECTS.values(), ids=DEFECTS.keys())
def test_a_defective_certificate_is_refused_before_any_host(example_inventory: Path, tmp_path: Path,
                                                            make, spoil, message: str) -> None:
    material = make()
    provided = spoil(material) if spoil else material
    _use(example_inventory, tmp_path, provided)
    result = run_validate(example_inventory, tmp_path, *vault_args(tmp_path))
    assert result.returncode != 0, result.stdout
    assert message in result.stdout, result.stdout
    # The key never reaches the output, whatever failed.
    assert provided["private_key"].splitlines()[1] not in result.stdout
