"""API keys: `taas_<prefix>_<secret>`, stored as prefix + HMAC-SHA256(pepper, key)."""

import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import pg
from app.config import get_settings
from app.errors import Invalid, NotFound, Unauthorized
from app.models import ApiKey, utcnow
from core.ids import new_id

SCOPES = ("read", "write", "admin")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant with scopes."""

    tenant: str
    scopes: frozenset[str]
    key_id: str


def _digest(key: str) -> str:
    # A keyed hash suffices: the secret has 256 bits of entropy, so no KDF is needed. The HMAC keyed with the
    # pepper is made once and copied per key (every request checks one).
    mac = _keyed(get_settings().secret("secret_key")).copy()
    mac.update(key.encode())
    return mac.hexdigest()


@functools.lru_cache(maxsize=4)
def _keyed(pepper: str) -> "hmac.HMAC":
    return hmac.new(pepper.encode(), digestmod=hashlib.sha256)


def normalise_scopes(scopes: list[str]) -> list[str]:
    """Validated, implied scopes (write implies read; admin implies both)."""
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise Invalid(f"scopes must be a non-empty subset of {list(SCOPES)}", code="invalid_scopes",
                      details={"invalid": bad})
    out = set(scopes)
    if "admin" in out:
        out |= {"write", "read"}
    if "write" in out:
        out.add("read")
    return [s for s in SCOPES if s in out]


def create_key(*, session: Session, tenant: str, scopes: list[str], name: str | None = None
               ) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the plaintext (shown once, never stored)."""
    if not tenant or len(tenant) > 64:
        raise Invalid("tenant must be 1 to 64 characters", code="invalid_tenant")
    prefix = secrets.token_hex(6)
    plaintext = f"taas_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(id=new_id("key"), tenant=tenant, name=name, prefix=prefix, hmac=_digest(plaintext),
                 scopes=normalise_scopes(scopes))
    session.add(row)
    session.commit()
    return row, plaintext


def key_prefix(key: str) -> str:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "taas" or not parts[1] or not parts[2]:
        raise Unauthorized("malformed API key", code="invalid_api_key")
    return parts[1]


def verify_key(key: str, found: Any) -> Principal:
    """found: the key's row (ORM object or a record with the same fields), or None."""
    if found is None or not hmac.compare_digest(found.hmac, _digest(key)) or found.revoked_at is not None:
        raise Unauthorized("invalid or revoked API key", code="invalid_api_key")
    return Principal(tenant=found.tenant, scopes=frozenset(found.scopes), key_id=found.id)


def authenticate(*, session: Session, key: str) -> Principal:
    """One indexed lookup by prefix and one constant-time compare."""
    prefix = key_prefix(key)
    return verify_key(key, session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).first())


KEY_PREFIX = "key__"  # the key's columns in rows that carry a resource beside them: key__id, key__tenant, …
_KEY_COLUMNS = ", ".join(f"k.{c} AS {KEY_PREFIX}{c}" for c in ("id", "tenant", "scopes", "hmac", "revoked_at"))
_KEYS = pg.Coalesced(f"SELECT q.i, {_KEY_COLUMNS} FROM unnest($1::text[]) WITH ORDINALITY AS q(prefix, i) "
                     "JOIN api_keys k ON k.prefix = q.prefix")


def key_and(resource_sql: str) -> pg.Coalesced:
    """One statement for a key and a resource of its tenant: the key's row by prefix, with the resource's columns
    beside it (NULL when the resource is absent or another tenant's). resource_sql selects the resource's columns
    and may use k.tenant (the key's tenant) and q.arg (the request's argument)."""
    return pg.Coalesced(f"SELECT q.i, {_KEY_COLUMNS}, r.* FROM unnest($1::text[], $2::text[]) WITH ORDINALITY "
                        f"AS q(prefix, arg, i) JOIN api_keys k ON k.prefix = q.prefix "
                        f"LEFT JOIN LATERAL ({resource_sql}) r ON true")


async def authenticate_async(key: str) -> Principal:
    """authenticate() on PostgreSQL through app.pg: the same lookup, on the event loop, coalesced with the
    lookups of requests that arrive at the same moment."""
    row = await _KEYS.fetchrow(key_prefix(key))
    return verify_key(key, None if row is None else pg.Attrs(row, prefix=KEY_PREFIX))


def list_keys(*, session: Session, tenant: str) -> list[ApiKey]:
    """Keys of a tenant, newest first."""
    return list(session.scalars(select(ApiKey).where(ApiKey.tenant == tenant).order_by(ApiKey.id.desc())))


def revoke_key(*, session: Session, tenant: str, key_id: str) -> ApiKey:
    """Revoke a key of the tenant."""
    row = session.get(ApiKey, key_id)
    if row is None or row.tenant != tenant:
        raise NotFound(f"key {key_id} not found", code="key_not_found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.commit()
    return row
