"""Webhook payload parsing, validation and the de-duplication fingerprint (docs/domain.md#signals).

Rounding rule: prices, stops, ATR and SuperTrend are quantized to 0.01 with ROUND_HALF_UP as they
are parsed — the database stores them as numeric(12,2) and rounds half away from zero, which for
positive values is the same rule — so the engine computes with exactly what the database keeps.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Mapping, Optional

from pm_engine.core.instruments import InstrumentConfig
from pm_engine.core.models import Signal, SignalType

IST = timezone(timedelta(hours=5, minutes=30))
CENT = Decimal("0.01")
MAX_BODY_BYTES = 64 * 1024
MAX_PRICE = Decimal("9999999999")  # numeric(12,2) holds < 10^10
MAX_LOTS = 100_000
FUTURE_TOLERANCE = timedelta(minutes=5)
MIN_YEAR, MAX_YEAR = 2000, 2100  # outside this a timestamp is a mistake (and may not convert to UTC)
_LAYER = re.compile(r"^long_([1-9]\d*)$", re.IGNORECASE)


class SignalValidationError(ValueError):
    """A payload was rejected; ``field`` names the culprit (None for the body as a whole)."""

    def __init__(self, field: Optional[str], message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def fingerprint(instrument: str, signal_type: str, position: str, timestamp: datetime) -> str:
    """SHA-256 of ``INSTRUMENT:TYPE:position:timestamp`` with the time in UTC, whole seconds, ISO 8601."""
    utc = timestamp.astimezone(timezone.utc).replace(microsecond=0)
    return hashlib.sha256(f"{instrument}:{signal_type}:{position}:{utc.isoformat()}".encode()).hexdigest()


def parse_body(body: bytes) -> dict[str, Any]:
    """Decode a raw request body (any Content-Type) into a JSON object, or raise with a clear reason."""
    if len(body) > MAX_BODY_BYTES:
        raise SignalValidationError(None, f"body is larger than {MAX_BODY_BYTES // 1024} KiB")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignalValidationError(None, "body is not valid UTF-8") from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except SignalValidationError:
        raise
    except json.JSONDecodeError as exc:
        raise SignalValidationError(None, f"body is not valid JSON ({exc.__class__.__name__})") from None
    except RecursionError:
        raise SignalValidationError(None, "body is not valid JSON (nested too deeply)") from None
    except ValueError:  # an integer past Python's int-string limit (4,300 digits)
        raise SignalValidationError(None, "body holds a number with too many digits") from None
    if not isinstance(data, dict):
        raise SignalValidationError(None, "body must be a JSON object")
    return data


def check_storable(value: Any, field: Optional[str] = None) -> None:
    """Refuse text PostgreSQL cannot store or UTF-8 cannot carry: NUL, lone surrogates (naming the field).

    Only a ``\\u`` escape can put either into decoded JSON, so a caller holding the raw body may skip
    this when the body has none (the webhook does)."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_storable(key, str(key)[:64] if field is None else field)
            check_storable(item, str(key)[:64] if field is None else field)
    elif isinstance(value, list):
        for item in value:
            check_storable(item, field)
    elif isinstance(value, str) and ("\x00" in value or not _encodable(value)):
        raise SignalValidationError(_encodable_name(field), "must not contain NUL or unpaired surrogate characters")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _encodable_name(field: Optional[str]) -> Optional[str]:
    return field if field is None or _encodable(field) and "\x00" not in field else "body"


def _refuse_constant(name: str) -> Any:
    raise SignalValidationError(None, f"body contains {name}, which is not a number JSON allows")


def _number(data: Mapping[str, Any], field: str, required: bool = True) -> Optional[Decimal]:
    if field not in data or data[field] is None:
        if required:
            raise SignalValidationError(field, "is required")
        return None
    value = data[field]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SignalValidationError(field, f"must be a number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise SignalValidationError(field, "must be a finite number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:  # pragma: no cover - str() of a finite float always parses
        raise SignalValidationError(field, "must be a number") from None
    if abs(number) > MAX_PRICE:
        raise SignalValidationError(field, f"is out of range (|{field}| must be <= {MAX_PRICE})")
    return number


def _string(data: Mapping[str, Any], field: str, required: bool = True, max_len: int = 50) -> Optional[str]:
    if field not in data or data[field] is None:
        if required:
            raise SignalValidationError(field, "is required")
        return None
    value = data[field]
    if not isinstance(value, str):
        raise SignalValidationError(field, f"must be a string, got {type(value).__name__}")
    value = value.strip()
    if not value:
        raise SignalValidationError(field, "must not be empty")
    if len(value) > max_len:
        raise SignalValidationError(field, f"is longer than {max_len} characters")
    return value


def parse_timestamp(value: Any) -> datetime:
    """ISO 8601 with or without milliseconds and offset; a value without a zone is IST."""
    if not isinstance(value, str):
        raise SignalValidationError("timestamp", f"must be an ISO 8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise SignalValidationError("timestamp", f"is not ISO 8601: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=IST)
    try:
        year = parsed.astimezone(timezone.utc).year
    except OverflowError:  # e.g. 0001-01-01T00:00+14:00 has no UTC equivalent
        year = 0
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise SignalValidationError("timestamp", f"must be between {MIN_YEAR} and {MAX_YEAR}")
    return parsed


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def parse_signal(data: Mapping[str, Any], instruments: Mapping[str, InstrumentConfig],
                 now: Optional[datetime] = None, max_age: Optional[timedelta] = timedelta(minutes=10)) -> Signal:
    """Validate a payload into a Signal, or raise SignalValidationError naming the field.

    ``max_age=None`` turns the age check off (replay); the future check always applies to live
    use (``now`` given) and is skipped when ``now`` is None.
    """
    raw_type = _string(data, "type", max_len=20)
    assert raw_type is not None
    try:
        signal_type = SignalType(raw_type.upper())
    except ValueError:
        raise SignalValidationError("type", f"must be BASE_ENTRY, PYRAMID or EXIT, got {raw_type!r}") from None

    raw_instrument = _string(data, "instrument", max_len=20)
    assert raw_instrument is not None
    instrument = raw_instrument.upper()
    if instrument not in instruments:
        raise SignalValidationError("instrument", f"unknown instrument {raw_instrument!r} "
                                                  f"(configured: {', '.join(sorted(instruments))})")
    config = instruments[instrument]

    raw_position = _string(data, "position", max_len=20)
    assert raw_position is not None
    position = _parse_layer(raw_position, signal_type, config)

    price = _number(data, "price")
    assert price is not None
    if price <= 0:
        raise SignalValidationError("price", "must be > 0")
    price = _cents(price)
    if price <= 0:
        raise SignalValidationError("price", "must be at least 0.01")

    stop: Optional[Decimal] = None
    if signal_type is SignalType.EXIT:
        stop = _number(data, "stop", required=False)
        stop = _cents(stop) if stop is not None else None
    else:
        stop = _number(data, "stop")
        assert stop is not None
        if stop <= 0:
            raise SignalValidationError("stop", "must be > 0")
        stop = _cents(stop)
        if stop >= price:
            raise SignalValidationError("stop", f"must be below price for a long entry (stop {stop} >= price {price})")

    lots_value = data.get("lots")
    if lots_value is None:
        raise SignalValidationError("lots", "is required")
    if isinstance(lots_value, bool) or not isinstance(lots_value, (int, float)) or (
            isinstance(lots_value, float) and not lots_value.is_integer()):
        raise SignalValidationError("lots", "must be a whole number")
    lots = int(lots_value)
    if lots < 0 or lots > MAX_LOTS:
        raise SignalValidationError("lots", f"must be between 0 and {MAX_LOTS}")

    atr = _number(data, "atr")
    assert atr is not None
    if atr < 0:
        raise SignalValidationError("atr", "must be >= 0")
    atr = _cents(atr)
    if signal_type is not SignalType.EXIT and atr <= 0:
        raise SignalValidationError("atr", f"must be > 0 for {signal_type.value}")

    er = _number(data, "er")
    assert er is not None
    if not Decimal(0) <= er <= Decimal(1):
        raise SignalValidationError("er", "must be between 0 and 1")

    supertrend = _number(data, "supertrend")
    assert supertrend is not None
    roc = _number(data, "roc", required=False)
    reason = _string(data, "reason", required=signal_type is SignalType.EXIT)
    if reason is not None:
        reason = reason.upper()

    timestamp = parse_timestamp(data.get("timestamp")) if "timestamp" in data else None
    if timestamp is None:
        raise SignalValidationError("timestamp", "is required")
    if now is not None:
        if timestamp - now > FUTURE_TOLERANCE:
            raise SignalValidationError("timestamp", "is more than 5 minutes in the future")
        if max_age is not None and now - timestamp > max_age:
            raise SignalValidationError("timestamp", f"is older than the maximum signal age ({max_age})")

    payload = {k: v for k, v in data.items() if k != "secret"}
    return Signal(
        type=signal_type, instrument=instrument, position=position, price=price, stop=stop, lots=lots, atr=atr,
        er=er, supertrend=_cents(supertrend), timestamp=timestamp,
        fingerprint=fingerprint(instrument, signal_type.value, position, timestamp),
        roc=roc, reason=reason, payload=payload,
    )


def _parse_layer(raw: str, signal_type: SignalType, config: InstrumentConfig) -> str:
    if raw.upper() == "ALL":
        if signal_type is not SignalType.EXIT:
            raise SignalValidationError("position", "ALL is allowed only for EXIT")
        return "ALL"
    match = _LAYER.match(raw)
    if not match:
        raise SignalValidationError("position",
                                    f"must be Long_1 ... Long_{config.max_pyramids + 1} or ALL, got {raw!r}")
    layer = int(match.group(1))
    if layer > config.max_pyramids + 1:
        raise SignalValidationError("position", f"{config.name} allows at most Long_{config.max_pyramids + 1}")
    if signal_type is SignalType.BASE_ENTRY and layer != 1:
        raise SignalValidationError("position", "a BASE_ENTRY is always Long_1")
    if signal_type is SignalType.PYRAMID and layer == 1:
        raise SignalValidationError("position", "a PYRAMID is Long_2 or later (Long_1 is the base)")
    return f"Long_{layer}"
