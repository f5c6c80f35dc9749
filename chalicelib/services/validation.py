"""Request validation with pydantic: one translation of its errors to ``InvalidInput``."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from chalicelib.errors import InvalidInput
from chalicelib.services import text

M = TypeVar("M", bound=BaseModel)


# Put these last in an ``Annotated[str, Field(...), ...]``: lengths are checked first.
SingleLine = AfterValidator(text.single_line)
MultiLine = AfterValidator(text.multi_line)


class Strict(BaseModel):
    """Unknown fields are errors; strings are not coerced from numbers and back."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=False)


def _field_path(loc: tuple[Any, ...], prefix: str) -> str:
    parts: list[str] = [prefix] if prefix else []
    for item in loc:
        if isinstance(item, int):
            if parts:
                parts[-1] = f"{parts[-1]}[{item}]"
            else:
                parts.append(f"[{item}]")
        elif item not in ("function-after", "function-before", "function-wrap"):
            parts.append(str(item))
    return ".".join(parts) or "body"


def parse(model: type[M], data: Any, *, prefix: str = "") -> M:
    """Validate ``data`` into ``model`` or raise ``InvalidInput`` naming the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        field = _field_path(tuple(first.get("loc", ())), prefix)
        kind = first.get("type", "")
        if kind == "extra_forbidden":
            message = f"{field} is not a known field"
        elif kind == "missing":
            message = f"{field} is required"
        else:
            detail = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
            message = f"{field}: {detail}"
        raise InvalidInput(message, field=field) from None
