"""What every file schema shares: the pydantic base model, path and hash field types, and the
turning of a validation failure into ONE line naming the file and the field."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Optional, Type, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from typing_extensions import Annotated

from ..errors import DDNNError

M = TypeVar("M", bound="Schema")


class Schema(BaseModel):
    """Base of every file schema: unknown keys are kept (newer writers may add some), numbers must be
    finite, and ``from`` style aliases work in both directions."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, populate_by_name=True)

    def model_post_init(self, context: Any) -> None:
        # a file's format and version are always written, even when they came from the defaults
        self.__pydantic_fields_set__.update(k for k in ("format", "version") if k in type(self).model_fields)

    def to_json_dict(self) -> Dict[str, Any]:
        """The JSON object as written: the keys that were set (read or given), by their file names."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _relative_path(value: str) -> str:
    """A path inside the folder that holds the file: relative, no ``..``, POSIX separators."""
    pure = PurePosixPath(value)
    if not value or pure.is_absolute() or "\\" in value or ".." in pure.parts or re.match(r"^[A-Za-z]:", value):
        raise ValueError("must be a relative path inside the folder")
    return value


def _sha256(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("must be a sha256 (64 lowercase hex digits)")
    return value


def _non_negative(value: int) -> int:
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def _positive(value: int) -> int:
    if value < 1:
        raise ValueError("must be >= 1")
    return value


RelativePath = Annotated[str, AfterValidator(_relative_path)]
Sha256 = Annotated[str, AfterValidator(_sha256)]
NonNegativeInt = Annotated[int, AfterValidator(_non_negative)]
PositiveInt = Annotated[int, AfterValidator(_positive)]

# pydantic puts the member type of a union into the error location ("depth.int"); a reader wants the field
_TYPE_TAG = re.compile(r"^(int|float|str|bool|list|dict|tuple|none|literal)$|[\[\](]")


def field_path(loc: tuple) -> str:
    """``("artifacts", 2, "path")`` -> ``artifacts[2].path``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _TYPE_TAG.search(str(part)):
            continue  # a union member's type, not a field
        elif not re.fullmatch(r"[\w.-]+", str(part)):  # a key with spaces, quotes or newlines: quote it
            text += f"[{json.dumps(str(part))}]"
        else:
            text += ("." if text else "") + str(part)
    return text


_FRIENDLY = {
    "missing": "required field is missing",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "float_type": "must be a number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "tuple_type": "must be a list",
    "finite_number": "must be a finite number",
    "extra_forbidden": "is not a known key",
}


def _message(error: Dict[str, Any]) -> str:
    if error["type"] in _FRIENDLY:
        return _FRIENDLY[error["type"]]
    message = str(error.get("msg", "is invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message[:1].lower() + message[1:]


def first_problem(exc: ValidationError) -> str:
    """``field: message`` of the first problem, plus how many more there are."""
    seen: List[str] = []
    lines: List[str] = []
    for error in exc.errors():
        where = field_path(tuple(error["loc"]))
        if where in seen:
            continue  # the other members of a union complaining about the same field
        seen.append(where)
        lines.append(f"{where}: {_message(error)}" if where else _message(error))
    more = f" (and {len(lines) - 1} more problem{'s' if len(lines) > 2 else ''})" if len(lines) > 1 else ""
    return (lines[0] + more).replace("\n", "\\n")


def non_finite_path(value: Any, loc: tuple = ()) -> Optional[tuple]:
    """The location of the first NaN or infinity anywhere in a JSON-like value (json.loads accepts them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return loc
    if isinstance(value, dict):
        for key, item in value.items():
            found = non_finite_path(item, (*loc, str(key)))
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = non_finite_path(item, (*loc, index))
            if found is not None:
                return found
    return None


def validate(model: Type[M], data: Any, *, where: str, error: Type[DDNNError], fix: str = "") -> M:
    """``model`` validated from plain data (strictly: no "8" for 8), or ``error`` as one line."""
    suffix = f"; {fix}" if fix else ""
    bad = non_finite_path(data)
    if bad is not None:
        field = field_path(bad)
        raise error(f"{where}: {field + ': ' if field else ''}must be a finite number{suffix}")
    try:
        text = json.dumps(data)
    except (TypeError, ValueError) as exc:
        raise error(f"{where}: holds a value that is not plain data ({exc}){suffix}") from None
    try:
        return model.model_validate_json(text, strict=True)
    except ValidationError as exc:
        raise error(f"{where}: {first_problem(exc)}{suffix}") from None


def read_json_file(
    path: Path, *, fmt: str, version: int, what: str, fix: str, error: Type[DDNNError]
) -> Dict[str, Any]:
    """A JSON object whose ``format`` and ``version`` are ours; anything else raises ``error`` (one line)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise error(f"{path}: is not valid JSON ({reason}); {fix}") from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise error(f"{path}: is not a {what} (format {found!r}); {fix}")
    if data.get("version") != version:
        raise error(f"{path}: has {what} version {data.get('version')!r}; this tool reads version {version}; {fix}")
    return data
