"""Request validation in OpenAlgo's manner: every field checked, unknown fields refused.

OpenAlgo validates each body with a schema that refuses unknown fields and answers 400 with the
field → messages map. Numbers may come as numbers or as strings (the official client sends strings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Optional

EXCHANGES = ("NSE", "NFO", "CDS", "BSE", "BFO", "BCD", "MCX", "NCDEX", "NCO", "NSE_INDEX", "BSE_INDEX",
             "MCX_INDEX", "GLOBAL_INDEX", "CRYPTO")
FO_EXCHANGES = ("NFO", "BFO", "MCX", "CDS", "BCD", "NCDEX", "NCO", "CRYPTO")
ACTIONS = ("BUY", "SELL", "buy", "sell")
PRICE_TYPES = ("MARKET", "LIMIT", "SL", "SL-M")
PRODUCTS = ("MIS", "NRML", "CNC")
MISSING = "Missing data for required field."


@dataclass(frozen=True)
class Field:
    kind: str  # str | number | int
    required: bool = False
    choices: tuple[str, ...] = ()
    default: Any = None
    positive: bool = False  # numbers: > 0 (else >= 0)
    message: str = ""  # the range error's text


APIKEY = Field("apikey", required=True)
SCHEMAS: dict[str, dict[str, Field]] = {
    "placeorder": {
        "apikey": APIKEY, "strategy": Field("str", True), "exchange": Field("str", True, EXCHANGES),
        "symbol": Field("str", True), "action": Field("str", True, ACTIONS),
        "quantity": Field("number", True, positive=True, message="Quantity must be a positive number."),
        "pricetype": Field("str", choices=PRICE_TYPES, default="MARKET"),
        "product": Field("str", choices=PRODUCTS, default="MIS"),
        "price": Field("number", default=Decimal(0), message="Price must be a non-negative number."),
        "trigger_price": Field("number", default=Decimal(0), message="Trigger price must be a non-negative number."),
        "disclosed_quantity": Field("int", default=0,
                                    message="Disclosed quantity must be a non-negative integer."),
        "underlying_ltp": Field("number"),
    },
    "orderstatus": {"apikey": APIKEY, "strategy": Field("str", True), "orderid": Field("str", True)},
    "cancelorder": {"apikey": APIKEY, "strategy": Field("str", True), "orderid": Field("str", True)},
    "orderbook": {"apikey": APIKEY},
    "tradebook": {"apikey": APIKEY},
    "positionbook": {"apikey": APIKEY},
    "funds": {"apikey": APIKEY},
    "ping": {"apikey": APIKEY},
    "quotes": {"apikey": APIKEY, "symbol": Field("str", True), "exchange": Field("str", True, EXCHANGES)},
    "expiry": {"apikey": APIKEY, "symbol": Field("str", True), "exchange": Field("str", True, FO_EXCHANGES),
               "instrumenttype": Field("str", True, ("futures", "options"))},
}


@dataclass
class Validated:
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)


def _number(value: Any) -> Optional[Decimal]:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _check(name: str, spec: Field, value: Any) -> tuple[Any, Optional[str]]:
    """The field's value, or the error text for it."""
    if spec.kind in ("str", "apikey"):
        if not isinstance(value, str):
            return None, "Not a valid string."
        if spec.kind == "apikey" and not 1 <= len(value) <= 256:
            return None, "Length must be between 1 and 256."
        if spec.choices and value not in spec.choices:
            return None, f"Must be one of: {', '.join(spec.choices)}."
        return value, None
    number = _number(value)
    if number is None:
        return None, "Not a valid integer." if spec.kind == "int" else "Not a valid number."
    if spec.kind == "int" and number != number.to_integral_value():
        return None, "Not a valid integer."
    if number < 0 or (spec.positive and number == 0):
        return None, spec.message
    return (int(number) if spec.kind == "int" else number), None


def validate(endpoint: str, body: Any) -> Validated:
    """Check a body against the endpoint's schema: values with defaults filled in, or the errors map."""
    schema = SCHEMAS[endpoint]
    result = Validated()
    if not isinstance(body, dict):
        result.errors["_schema"] = ["Invalid input type."]
        return result
    for name in body:
        if name not in schema:
            result.errors[name] = ["Unknown field."]
    for name, spec in schema.items():
        if name not in body or body[name] is None:
            if spec.required:
                result.errors[name] = [MISSING]
            else:
                result.values[name] = spec.default
            continue
        value, error = _check(name, spec, body[name])
        if error:
            result.errors[name] = [error]
        else:
            result.values[name] = value
    quantity = result.values.get("quantity")
    if endpoint == "placeorder" and isinstance(quantity, Decimal) and result.values.get("exchange") != "CRYPTO":
        if quantity != quantity.to_integral_value():
            result.errors["quantity"] = [f"Fractional quantity ({quantity}) is not allowed for non-crypto exchanges."]
        else:
            result.values["quantity"] = int(quantity)
    return result
