"""Filters that turn the client inventory (what an MSP writes) into role parameters, and the
rules of the client inventory that are easier to state in Python than in Jinja."""
# Each filter's documentation is plugins/filter/<name>.yml (ansible-doc -t filter wagw.gateway.<name>).

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

# The single-value rules (E.164, phone names, addresses) are the Jinja tests of plugins/test/wagw.py;
# loaded from there by path, as Ansible loads plugins (not a package).
_spec = importlib.util.spec_from_file_location("wagw_tests", Path(__file__).resolve().parents[1] / "test" / "wagw.py")
_tests = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(_tests)  # type: ignore[union-attr]

# A WhatsApp call rings the business's phone system over VoIP, never the PSTN (Meta's Calling
# documentation, "integration patterns": its terms disallow the PSTN on any leg of a WhatsApp
# call). A route's destination is therefore one of these two, and nothing else:
#   phone:<name>       an account of wagw_phones (a phone registered to the SIP edge)
#   pbx:<extension>    an extension of wagw_pbx (the business's own IP-PBX)
# An extension: up to 8 digits or *, never a leading 0 before more digits (the usual outside-line
# prefix of a PBX: pbx:0301234567 would be the PSTN through the PBX).
PBX_EXTENSION_RE = re.compile(r"^(0|[1-9*][0-9*]{0,7})$")
# What a phone number looks like, however it is written: the PSTN, refused with Meta's rule.
PSTN_LIKE_RE = re.compile(r"^(tel:|sips?:)?\+?[0-9][0-9 ()/.-]{2,}(@.*)?$")
NO_PSTN_RULE = (
    "Meta's terms disallow the PSTN on any leg of a WhatsApp call (WhatsApp Business Calling API, "
    "'integration patterns'): a WhatsApp call may ring only the business's phones or IP-PBX over VoIP. "
    "Name a phone account (phone:<name>) or a PBX extension (pbx:<extension>); see docs/architecture.md, "
    "'No PSTN on a WhatsApp call'"
)


def wagw_sip_accounts(numbers: list[dict], srtp_default: str | None = None) -> list[dict]:
    accounts = []
    for item in numbers:
        if "number" not in item or "sip_password" not in item:
            raise ValueError(
                "each wagw_whatsapp.numbers item needs 'number' and 'sip_password'"
            )
        account = {"number": str(item["number"]), "password": str(item["sip_password"])}
        if srtp_default is not None:
            account["media_encryption"] = str(item.get("srtp_key_exchange") or srtp_default).lower()
        accounts.append(account)
    return accounts


def wagw_route_windows(routes: list[dict]) -> list[dict]:
    """The weekly windows of all routes, flat, each with its route's number and position."""
    return [
        {"whatsapp_number": route.get("whatsapp_number"), "index": i, **window}
        for route in routes
        for i, window in enumerate(route.get("windows") or [])
    ]


def wagw_route_destinations(routes: list[dict]) -> list[str]:
    """Every destination a route may ring: its default destinations and those of its windows."""
    found = [str(d) for route in routes for d in route.get("destinations") or []]
    found += [str(d) for window in wagw_route_windows(routes) for d in window.get("destinations") or []]
    return list(dict.fromkeys(found))


def wagw_destination_errors(routes: list[dict], phone_names: list[str] | None = None,
                            has_pbx: bool = True) -> list[str]:
    """Why the routes' destinations are refused, one sentence each (empty: all are fine).

    A destination must name one of ``phone_names`` (any valid name when None) or, with a PBX,
    one of its extensions; anything that looks like a phone number is refused with Meta's rule.
    The single statement of the destination rule: the client check, the asterisk role and the
    webhook_bridge role all call it."""
    pstn: list[str] = []
    errors: list[str] = []
    for dest in wagw_route_destinations(routes):
        kind, _, ident = dest.partition(":")
        if kind == "phone" and _tests.wagw_phone_name(ident):
            if phone_names is not None and ident not in phone_names:
                errors.append(f"{dest} names no phone account {sorted(phone_names)}")
        elif kind == "pbx" and PBX_EXTENSION_RE.match(ident):
            if not has_pbx:
                errors.append(f"{dest} names a PBX extension, but there is no PBX")
        elif kind == "pbx" and re.match(r"^0[0-9*]+$", ident):
            errors.append(f"{dest} would dial an outside line at the PBX (a leading 0): {NO_PSTN_RULE}")
        elif PSTN_LIKE_RE.match(dest):
            pstn.append(dest)
        else:
            errors.append(
                f"{dest} is neither phone:<name> (lower-case letters, digits and _) "
                "nor pbx:<extension> (up to 8 digits and *, no leading 0 before more digits: that is an outside line)"
            )
    if pstn:
        errors.insert(0, f"{pstn} are phone numbers (the PSTN): {NO_PSTN_RULE}")
    return errors


def wagw_phone_name_errors(phones: dict | None) -> list[str]:
    """Account names of wagw_phones that are not valid or not unique."""
    names = [str(a.get("name")) for a in (phones or {}).get("accounts") or []]
    errors = [f"{n!r} is not a valid name (lower-case letter first, then letters, digits and _, "
              "at most 32)" for n in names if not _tests.wagw_phone_name(n)]
    errors += [f"{n!r} is listed twice" for n in sorted({n for n in names if names.count(n) > 1})]
    return errors


DNS_NAME_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", re.IGNORECASE)
RING_TIMEOUT_MAX = 300
# The media nodes' RTP range grows with the peak (8 ports a call) and must stay below Linux's
# ephemeral ports (32768 up); far above what 2 cores carry (about 150 transcoded calls).
CONCURRENT_CALLS_MAX = 2000
# New calls per second at the peak: 200 keeps Kamailio's topology-hiding memory under 1 GB.
CALLS_PER_SECOND_MAX = 200


def _number_errors(key: str, value: object) -> list[str]:
    if isinstance(value, int) and not isinstance(value, bool):
        return [f"{key}: {value} was read as a number, not text (YAML drops the + of an unquoted "
                f"+{value}): write it in quotes, \"+{value}\""]
    if not _tests.wagw_e164(value):
        return [f"{key}: {value!r} is not E.164 (+ and 7 to 15 digits, the first not 0)"]
    return []


def _duplicates(key: str, values: list, what: str) -> list[str]:
    first: dict = {}
    errors = []
    for index, value in enumerate(values):
        if value in (None, ""):
            continue
        if str(value) in first:
            errors.append(f"{key.format(index)}: {value} {what} {key.format(first[str(value)])}")
        else:
            first[str(value)] = index
    return errors


def wagw_client_errors(settings: dict) -> list[str]:
    whatsapp = settings.get("wagw_whatsapp") or {}
    routes = settings.get("wagw_routes") or []
    numbers = whatsapp.get("numbers") or []
    errors: list[str] = []
    domain = whatsapp.get("sip_domain")
    if not isinstance(domain, str) or not DNS_NAME_RE.match(domain):
        errors.append(f"wagw_whatsapp.sip_domain: {domain!r} is not a DNS name (Meta's SIP servers "
                      "call it, and the certificate is issued for it)")
    for index, item in enumerate(numbers):
        key = f"wagw_whatsapp.numbers[{index}]"
        errors += _number_errors(f"{key}.number", item.get("number"))
        if not str(item.get("sip_password") or "").strip():
            errors.append(f"{key}.sip_password is empty (Meta's SIP password of the number: the edge "
                          "digest-challenges Meta with it)")
    errors += _duplicates("wagw_whatsapp.numbers[{}].number", [n.get("number") for n in numbers],
                          "is listed twice, first at")
    errors += _duplicates("wagw_whatsapp.numbers[{}].phone_number_id",
                          [n.get("phone_number_id") for n in numbers], "is listed twice, first at")
    for index, route in enumerate(routes):
        key = f"wagw_routes[{index}]"
        errors += _number_errors(f"{key}.whatsapp_number", route.get("whatsapp_number"))
        if not route.get("destinations"):
            errors.append(f"{key}.destinations is empty (a route rings at least one phone:<name> or pbx:<extension>)")
        timeout = route.get("ring_timeout", 30)
        if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= RING_TIMEOUT_MAX:
            errors.append(f"{key}.ring_timeout: {timeout!r} is not 1 to {RING_TIMEOUT_MAX} seconds")
    # the capacity's defaults are the schema's (playbooks/schema/client.yml): a key is checked
    # where it is given
    capacity = settings.get("wagw_capacity") or {}
    peak = capacity.get("concurrent_calls", 1)
    if not isinstance(peak, int) or isinstance(peak, bool) or not 1 <= peak <= CONCURRENT_CALLS_MAX:
        errors.append(f"wagw_capacity.concurrent_calls: {peak!r} is not 1 to {CONCURRENT_CALLS_MAX} (calls at once "
                      "on each media node)")
    rate = capacity.get("calls_per_second", 1)
    if not isinstance(rate, int) or isinstance(rate, bool) or not 1 <= rate <= CALLS_PER_SECOND_MAX:
        errors.append(f"wagw_capacity.calls_per_second: {rate!r} is not 1 to {CALLS_PER_SECOND_MAX} (new calls "
                      "per second at the peak; the edge's memory is sized for it)")
    errors += _duplicates("wagw_routes[{}].whatsapp_number", [r.get("whatsapp_number") for r in routes],
                          "has a second route; one route per business number, the first is")
    return errors


def wagw_media_cpu_error(peak_calls: int, cores: int, percent_per_call: float, budget_percent: float) -> str:
    """Why a media node's cores do not carry the client's peak: each call costs `percent_per_call`
    % of a core (measured by benchmarks/calls.sh), all calls together may use `budget_percent` % of
    every core. Empty when they carry it."""
    need = peak_calls * percent_per_call
    have = cores * budget_percent
    if need <= have:
        return ""
    fits = int(have // percent_per_call) if percent_per_call > 0 else 0
    return (f"{peak_calls} calls at once at {percent_per_call:g} % of a core each need {need:g} % of a core, "
            f"but {cores} core{'s' if cores != 1 else ''} within {budget_percent:g} % give {have:g} %: this node "
            f"carries {fits} calls. Size the media node for the peak (at least "
            f"{-(-need // budget_percent):.0f} cores) or state a lower wagw_capacity.concurrent_calls")


# --- the controller's record (GDPR Art. 30) -----------------------------------------------
# EU and EEA (Art. 44 ff. GDPR): a processor elsewhere needs a transfer mechanism.
EEA = frozenset({"AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT",
                 "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO"})
HTTPS_URL_RE = re.compile(r"^https://[A-Za-z0-9.-]+\.[A-Za-z]{2,}(:[0-9]+)?(/\S*)?$")
EMAIL_RE = re.compile(r"^[^@\s]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
DATE_RE = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")


def _processor_errors(key: str, item: dict) -> list[str]:
    errors = []
    country = str(item.get("country", ""))
    if not re.match(r"^[A-Z]{2}$", country):
        errors.append(f"{key}.country: {country!r} is not an ISO 3166 country code (two capitals, DE, IE, US)")
    elif (country in EEA) != (item.get("transfer_mechanism") == "eea"):
        errors.append(f"{key}.transfer_mechanism: {item.get('transfer_mechanism')!r} does not fit country {country} "
                      "(eea for a processor in the EU/EEA; adequacy, scc or bcr elsewhere, Art. 45-47 GDPR)")
    if not DATE_RE.match(str(item.get("dpa_date", ""))):
        errors.append(f"{key}.dpa_date: {item.get('dpa_date')!r} is not a date YYYY-MM-DD (quote it): the day the "
                      "data processing agreement (Art. 28(3)) was signed")
    return errors


def wagw_client_record_errors(client: dict) -> list[str]:
    """The rules of wagw_client, the controller's record an auditor reads first."""
    errors = []
    if not HTTPS_URL_RE.match(str(client.get("imprint_url", ""))):
        errors.append(f"wagw_client.imprint_url: {client.get('imprint_url')!r} is not an https:// URL (the imprint, "
                      "§5 DDG, linked from the opt-in request)")
    privacy = str(client.get("privacy_url") or "")
    if privacy and not HTTPS_URL_RE.match(privacy):
        errors.append(f"wagw_client.privacy_url: {privacy!r} is not an https:// URL")
    dpo = str(client.get("dpo_contact", ""))
    if not (EMAIL_RE.match(dpo) or HTTPS_URL_RE.match(dpo)):
        errors.append(f"wagw_client.dpo_contact: {dpo!r} is neither an e-mail address nor an https:// URL "
                      "(Art. 37(7) GDPR: the DPO's contact is published)")
    if not client.get("purposes"):
        errors.append("wagw_client.purposes is empty (Art. 30(1)(b): each purpose with its legal basis)")
    for index, item in enumerate(client.get("processors") or []):
        errors += _processor_errors(f"wagw_client.processors[{index}]", item)
    if client.get("bsp"):
        errors += _processor_errors("wagw_client.bsp", client["bsp"])
    return errors


# --- secrets in clear text -------------------------------------------------------------------
# The schema (playbooks/schema/client.yml) marks every secret with no_log: true; that mark is the
# list of secrets. A production client's secret must come from the vault (an inline !vault value
# or a vault-encrypted file) or from a lookup, never be written in clear in an inventory file.
# Where a value came from is read from the data tags ansible-core 2.19 puts on every value it
# loads (Origin: file and line; VaultedValue: an inline !vault); a templated value carries the
# Origin of the value it resolved to, or of the template itself where a lookup produced it.
try:
    from ansible.module_utils._internal._datatag import AnsibleTagHelper
except ImportError:  # ansible-core before 2.19 keeps no origins; nothing can be told
    AnsibleTagHelper = None


def _secret_paths(spec: dict, value: object, key: str) -> list[tuple[str, object, object]]:
    """(key, value, schema default) of every no_log option of spec found in value."""
    found: list[tuple[str, object, object]] = []
    if spec.get("no_log"):
        return [(key, value, spec.get("default"))]
    options = spec.get("options") or {}
    items = list(enumerate(value)) if spec.get("type") == "list" and isinstance(value, list) else [(None, value)]
    for index, item in items:
        if not isinstance(item, dict):
            continue
        prefix = key if index is None else f"{key}[{index}]"
        for name, option in options.items():
            if name in item:
                found += _secret_paths(option, item[name], f"{prefix}.{name}")
    return found


def _written_in_clear(value: object) -> str | None:
    """Where value stands in clear text ("file line N"), or None if it is vaulted or looked up."""
    tags = {type(tag).__name__: tag for tag in AnsibleTagHelper.tags(value)} if AnsibleTagHelper else {}
    origin = tags.get("Origin")
    if "VaultedValue" in tags or "SourceWasEncrypted" in tags or origin is None or not origin.path:
        return None
    try:
        text = Path(origin.path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if text.startswith("$ANSIBLE_VAULT;"):
        return None
    lines = text.splitlines()
    line = lines[origin.line_num - 1] if origin.line_num and origin.line_num <= len(lines) else ""
    # A block scalar (key: >- or |) holds its text on the next line.
    if re.search(r":\s*[>|][-+0-9]*\s*$", line) and origin.line_num < len(lines):
        line += lines[origin.line_num]
    if "{{" in line:
        return None
    return f"{origin.path} line {origin.line_num}"


def wagw_secrets_in_clear(settings: dict, schema_options: dict) -> list[str]:
    """Every secret of the client (options marked no_log in the schema) that is written in clear
    text in an inventory file, as "key (file line N)"."""
    errors = []
    for name, option in schema_options.items():
        if name not in settings:
            continue
        for key, value, default in _secret_paths(option, settings[name], name):
            if value in ("", None) or value == default:
                continue
            where = _written_in_clear(value)
            if where:
                errors.append(f"{key} ({where})")
    return errors


def wagw_audit_failures(evidence: list[dict]) -> list[dict]:
    """The controls of an audit run that did not pass, each with its host."""
    return [{"host": host.get("host"), **control}
            for host in evidence for control in host.get("controls", []) if not control.get("passed")]


class FilterModule:
    def filters(self) -> dict:
        return {
            "wagw_sip_accounts": wagw_sip_accounts,
            "wagw_route_windows": wagw_route_windows,
            "wagw_route_destinations": wagw_route_destinations,
            "wagw_destination_errors": wagw_destination_errors,
            "wagw_media_cpu_error": wagw_media_cpu_error,
            "wagw_phone_name_errors": wagw_phone_name_errors,
            "wagw_client_errors": wagw_client_errors,
            "wagw_client_record_errors": wagw_client_record_errors,
            "wagw_secrets_in_clear": wagw_secrets_in_clear,
            "wagw_audit_failures": wagw_audit_failures,
        }
