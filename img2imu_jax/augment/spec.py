"""Spec strings and `<op>_<param>` keywords: parsed and checked on the host, before tracing."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping

from img2imu_jax.augment.chain import Step


@dataclasses.dataclass(frozen=True)
class Param:
    """One op parameter's default and allowed range."""

    default: float
    low: float
    high: float = math.inf
    integer: bool = False
    open_low: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.high == math.inf:
            return f"{kind} {'>' if self.open_low else '≥'} {self.low:g}"
        return f"{kind} in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}]"

    def accepts(self, value: object) -> bool:
        if isinstance(value, bool):
            return False
        if self.integer:
            if not isinstance(value, numbers.Integral):
                return False
        elif not (isinstance(value, numbers.Real) and math.isfinite(value)):
            return False
        above = value > self.low if self.open_low else value >= self.low
        return above and value <= self.high


PROBABILITY = Param(1.0, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Op:
    """A spec name's builder (keywords: its params) and the rules for its params."""

    build: Callable[..., Step]
    params: Mapping[str, Param]
    # Pairs (a, b) whose values must satisfy a ≤ b.
    ordered: tuple[tuple[str, str], ...] = ()


def defaults(params: Mapping[str, Param]) -> dict[str, float]:
    return {name: rule.default for name, rule in params.items()}


def parse_spec(spec: str, ops: Mapping[str, Op]) -> list[str]:
    """`"op|op|…"` → op names, each one of `ops`."""
    valid = ", ".join(ops)
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"augmentation spec is empty; give ops joined by '|' from: {valid}")
    names = [name.strip() for name in spec.split("|")]
    for name in names:
        if name not in ops:
            shown = repr(name) if name else "an empty op"
            raise ValueError(f"unknown augmentation {shown} in spec {spec!r}; valid ops: {valid}")
    return names


def resolve_params(
    spec: str, names: list[str], params: Mapping[str, object], ops: Mapping[str, Op]
) -> dict[str, dict[str, float]]:
    """Keyword params → per-op values (defaults filled in), each name and range checked."""
    owner = {f"{op}_{param}": (op, param) for op in ops for param in ops[op].params}
    in_spec = [full for full, (op, _) in owner.items() if op in names]
    for full, value in params.items():
        if full not in owner:
            raise ValueError(
                f"unknown augmentation parameter {full!r}; valid for spec {spec!r}: "
                f"{', '.join(in_spec)}"
            )
        op, param = owner[full]
        if op not in names:
            raise ValueError(
                f"parameter {full!r} is for op {op!r}, which is not in spec {spec!r}; valid for "
                f"this spec: {', '.join(in_spec)}"
            )
        rule = ops[op].params[param]
        if not rule.accepts(value):
            raise ValueError(f"{full} must be {rule.describe()}; got {value!r}")
    values = {}
    for op in dict.fromkeys(names):
        values[op] = {
            param: params.get(f"{op}_{param}", rule.default)
            for param, rule in ops[op].params.items()
        }
        for low, high in ops[op].ordered:
            if values[op][low] > values[op][high]:
                raise ValueError(
                    f"{op}_{low} must not exceed {op}_{high}; got {values[op][low]!r} > "
                    f"{values[op][high]!r}"
                )
    return values
