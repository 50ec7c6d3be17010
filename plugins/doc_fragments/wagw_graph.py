# Copyright: (c) 2026, wa-voip-gateway
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Graph API options every wagw_meta_* module takes (their argument spec is
module_utils/wagw_graph.py's GRAPH_ARGUMENT_SPEC): documented once here."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  graph_api_url:
    description: Base URL of the Graph API (a test points it at C(tests/fake_meta_graph.py)).
    type: str
    default: https://graph.facebook.com
  graph_api_version:
    description: Graph API version in the path.
    type: str
    default: v23.0
  access_token:
    description:
      - A system user access token with C(whatsapp_business_management) on the WABA and its numbers.
      - Sent only in the C(Authorization) header, never in a URL, a message or the result.
    type: str
    required: true
  retries:
    description: Retries of a throttled (HTTP 429, Graph codes 4, 17, 32, 613, 80007, 130429) or failed (5xx) request.
    type: int
    default: 5
  retry_delay:
    description: Seconds before the first retry, doubled for each further one (a C(Retry-After) header wins).
    type: float
    default: 2.0
  timeout:
    description: Seconds per HTTP request.
    type: float
    default: 30.0
"""
