"""Webhooks: integrations told about lead events over HTTP, signed, retried, logged.

Delivery is at least once: each (webhook, event) pair becomes one delivery row, sent until a
2xx answer or MAX_ATTEMPTS, with exponential backoff between attempts. A receiver checks the
`X-LeadFlow-Signature: t=<unix seconds>,v1=<hex>` header: v1 is HMAC-SHA256 with the webhook's
secret over "<t>.<raw body>" (see `signature`), and drops deliveries it has already seen by
the `X-LeadFlow-Delivery` id.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from domain.errors import DomainError, Invalid, ValidationErrors
from domain.model import utcnow

EVENT_TYPES = frozenset(
    {
        "CREATED",
        "SCORE_CHANGED",
        "MARKETING_QUALIFIED",
        "SALES_READY",
        "STAGE_CHANGED",
        "QUALIFIED",
        "DISQUALIFIED",
        "REACTIVATED",
        "ASSIGNED",
    }
)
MAX_ATTEMPTS = 10
FIRST_RETRY = timedelta(seconds=10)
MAX_RETRY = timedelta(hours=1)
MIN_SECRET = 16


class DeliveryStatus(enum.Enum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


@dataclass(slots=True)
class Webhook:
    name: str
    url: str
    secret: str
    event_types: list[str] = field(default_factory=list)  # empty: every type
    active: bool = True
    cursor: int = 0  # the position of the last event considered for this webhook
    id: int = 0
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


@dataclass(slots=True)
class Delivery:
    webhook_id: int
    event_id: int
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    next_attempt_at: datetime | None = field(default_factory=utcnow)
    last_status: int | None = None
    last_error: str | None = None
    id: int = 0
    created_at: datetime = field(default_factory=utcnow)
    delivered_at: datetime | None = None

    def record(self, status: int | None, error: str | None, now: datetime) -> None:
        """The outcome of one attempt: delivered on 2xx, else retried later or given up."""
        self.attempts += 1
        self.last_status, self.last_error = status, (error or None) and error[:500]
        if status is not None and 200 <= status < 300:
            self.status, self.delivered_at, self.next_attempt_at = (
                DeliveryStatus.DELIVERED,
                now,
                None,
            )
        elif self.attempts >= MAX_ATTEMPTS:
            self.status, self.next_attempt_at = DeliveryStatus.FAILED, None
        else:
            self.next_attempt_at = now + backoff(self.attempts)

    def give_up(self, reason: str) -> None:
        """Stop trying: there is nothing left to send."""
        self.status, self.next_attempt_at, self.last_error = DeliveryStatus.FAILED, None, reason


def backoff(attempts: int) -> timedelta:
    """How long to wait after `attempts` failed attempts: 10 s doubling, at most an hour."""
    wait: timedelta = FIRST_RETRY * (2 ** max(0, attempts - 1))
    return min(wait, MAX_RETRY)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The X-LeadFlow-Signature header value for `body` sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes) -> bool:
    """Whether a signature header was made with `secret` for `body` (what receivers check)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), header)


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(24)


def build_webhook(raw: Mapping[str, Any]) -> Webhook:
    """A webhook from a WebhookInput (API names), checked at once; a secret is made if none."""
    errors: list[DomainError] = []
    name = str(raw.get("name") or "").strip()
    if not name or len(name) > 200:
        errors.append(Invalid("name must be 1 to 200 characters", ["input", "name"]))
    url = str(raw.get("url") or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
        errors.append(Invalid("url must be an http(s) URL with a host", ["input", "url"]))
    types = list(dict.fromkeys(raw.get("eventTypes") or []))
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        errors.append(
            Invalid(f"unknown event types: {', '.join(unknown)}", ["input", "eventTypes"])
        )
    secret = raw.get("secret")
    if secret is not None and (len(str(secret)) < MIN_SECRET or len(str(secret)) > 200):
        errors.append(
            Invalid(f"secret must be {MIN_SECRET} to 200 characters", ["input", "secret"])
        )
    if errors:
        raise errors[0] if len(errors) == 1 else ValidationErrors(errors)
    return Webhook(
        name=name,
        url=url,
        secret=str(secret) if secret is not None else new_secret(),
        event_types=types,
        active=bool(raw.get("active", True)),
    )
