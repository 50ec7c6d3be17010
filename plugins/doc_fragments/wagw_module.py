# Copyright: (c) 2026, wa-voip-gateway
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every module of the project promises: full check mode and diff (tests/unit/
test_module_docs.py holds each module to it)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
attributes:
  check_mode:
    description: Reports what would change and changes nothing.
    support: full
  diff_mode:
    description: Shows the difference before and after.
    support: full
"""
