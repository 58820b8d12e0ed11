"""What every file schema shares: the pydantic base model, path and hash field types, and the
turning of a validation failure into ONE line naming the file and the field."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Optional, Tuple, Type, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from typing_extensions import Annotated

from ..errors import DDNNError

M = TypeVar("M", bound="Schema")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_NESTING = 64  # none of the files nests deeper than a handful of levels; pydantic's own limit is about 200
INT64 = 2**63  # a JSON integer outside the 64-bit range is no count, size or id these files hold


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
    """A path inside the folder that holds the file: relative, no ``..``, POSIX separators, no control
    characters (a NUL or a newline is no file name this tool writes), at most 1024 characters."""
    pure = PurePosixPath(value)
    if not value or pure.is_absolute() or "\\" in value or ".." in pure.parts or re.match(r"^[A-Za-z]:", value):
        raise ValueError("must be a relative path inside the folder")
    if _CONTROL.search(value) or len(value) > 1024:
        raise ValueError("must be a file name of at most 1024 characters without control characters")
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


def bad_value_path(value: Any) -> Optional[Tuple[tuple, str]]:
    """(location, problem) of the first value no file of ours holds: NaN or infinity (json.loads accepts
    them), an integer outside the 64-bit range, or nesting deeper than ``MAX_NESTING`` levels; else None.

    Iterative, so a deeply nested value is reported, never a RecursionError."""
    stack: List[Tuple[Any, tuple]] = [(value, ())]
    while stack:
        item, loc = stack.pop()
        if len(loc) > MAX_NESTING:
            return loc[:4], f"is nested more than {MAX_NESTING} levels deep"
        if isinstance(item, float) and not math.isfinite(item):
            return loc, "must be a finite number"
        if isinstance(item, int) and not isinstance(item, bool) and not -INT64 <= item < INT64:
            return loc, "must be an integer within the 64-bit range"
        if isinstance(item, dict):
            stack.extend((v, (*loc, str(k))) for k, v in reversed(list(item.items())))
        elif isinstance(item, (list, tuple)):
            stack.extend((v, (*loc, i)) for i, v in reversed(list(enumerate(item))))
    return None


def validate(model: Type[M], data: Any, *, where: str, error: Type[DDNNError], fix: str = "") -> M:
    """``model`` validated from plain data (strictly: no "8" for 8), or ``error`` as one line."""
    suffix = f"; {fix}" if fix else ""
    bad = bad_value_path(data)
    if bad is not None:
        field = field_path(bad[0])
        raise error(f"{where}: {field + ': ' if field else ''}{bad[1]}{suffix}")
    try:
        text = json.dumps(data)
    except (TypeError, ValueError, RecursionError) as exc:
        raise error(f"{where}: holds a value that is not plain data ({reason_of(exc)}){suffix}") from None
    try:
        return model.model_validate_json(text, strict=True)
    except ValidationError as exc:
        raise error(f"{where}: {first_problem(exc)}{suffix}") from None


def reason_of(exc: BaseException, limit: int = 160) -> str:
    """An exception as a short reason for a one-line error: its first line, cut to ``limit`` characters."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters: a file's garbage never makes a long error line."""
    try:
        text = repr(value)
    except ValueError:  # an integer of more than 4300 digits
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_json_file(
    path: Path, *, fmt: str, version: int, what: str, fix: str, error: Type[DDNNError]
) -> Dict[str, Any]:
    """A JSON object whose ``format`` and ``version`` are ours; anything else raises ``error`` (one line)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or type(exc).__name__}; {fix}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: is not valid JSON (not UTF-8 text: {exc.reason} at byte {exc.start}); {fix}") from None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, a 5000-digit number, [[[[... 100000 deep
        raise error(f"{path}: is not valid JSON ({reason_of(exc)}); {fix}") from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        found = _short(data.get("format")) if isinstance(data, dict) else type(data).__name__
        raise error(f"{path}: is not a {what} (format {found}); {fix}")
    if data.get("version") != version:
        raise error(
            f"{path}: has {what} version {_short(data.get('version'))}; this tool reads version {version}; {fix}"
        )
    return data
