"""The plugin's log redaction lives in :mod:`kefu.logs`, shared by every process."""

from kefu.logs import MASK, RedactingFilter, configure_logging, redact_secrets

__all__ = ["MASK", "RedactingFilter", "configure_logging", "redact_secrets"]
