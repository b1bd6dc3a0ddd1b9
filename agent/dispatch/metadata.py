"""Codec for LiveKit dispatch metadata in the `key:value|key:value` format.

Fields are separated by `|`; each field is a key and a value separated by the first `:`.
Keys are lower-case identifiers (`[a-z][a-z0-9_]*`, at most 32 characters). Values are
percent-escaped by the encoder: `%` -> `%25`, `|` -> `%7C`, `:` -> `%3A`, and every control
character (below 0x20, and 0x7F) -> `%XX` with upper-case hex; everything else is kept.
The parser only decodes `%XX` sequences the encoder can produce (hex in either case), so
legacy unescaped values such as `question:Is 50% a half?` or `question:Time: 3pm` still
read as before. The parser never raises: unreadable parts are skipped and reported in one
warning on the `tutor.metadata` logger, with a short preview rather than the full text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

logger = logging.getLogger("tutor.metadata")

KNOWN_KEYS = (
    "session",
    "student",
    "question",
    "return_from_english",
    "from",
    "handover",
    "tutor",
)
MAX_QUESTION_CHARS = 1000
MAX_METADATA_BYTES = 4096
MAX_KEY_CHARS = 32

FIELD_SEPARATOR = "|"
KEY_SEPARATOR = ":"
ELLIPSIS = "…"
PREVIEW_CHARS = 80

_KEY_RE = re.compile(rf"[a-z][a-z0-9_]{{0,{MAX_KEY_CHARS - 1}}}")
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
# the code points the encoder escapes; the decoder decodes exactly these
_ESCAPED_CODES = frozenset([*range(0x20), 0x7F, ord("%"), ord("|"), ord(":")])
_ESCAPE_TABLE = {code: f"%{code:02X}" for code in _ESCAPED_CODES}
# how much of the limit cap_question may give up to end on a word boundary
_WORD_CUT_WINDOW = 0.2


def is_valid_key(key: object) -> bool:
    """Whether `key` is a lower-case identifier of at most 32 characters."""
    return isinstance(key, str) and _KEY_RE.fullmatch(key) is not None


def escape_value(value: str) -> str:
    """Percent-escape `%`, `|`, `:` and control characters of `value`."""
    return value.translate(_ESCAPE_TABLE)


def _decode_escape(match: re.Match[str]) -> str:
    code = int(match.group(1), 16)
    return chr(code) if code in _ESCAPED_CODES else match.group(0)


def unescape_value(value: str) -> str:
    """Undo `escape_value`; any other `%` is kept literally."""
    return _ESCAPE_RE.sub(_decode_escape, value)


def encode_metadata(fields: Mapping[str, str]) -> str:
    """Encode `fields`, in order, as `key:value|key:value`.

    Raises ValueError, naming the key, for an invalid key or a non-str value.
    """
    parts: list[str] = []
    for key, value in fields.items():
        if not is_valid_key(key):
            raise ValueError(
                f"invalid metadata key {key!r}: keys must match [a-z][a-z0-9_]* "
                f"and be at most {MAX_KEY_CHARS} characters"
            )
        if not isinstance(value, str):
            raise ValueError(
                f"invalid value for metadata key {key!r}: expected str, got {type(value).__name__}"
            )
        parts.append(f"{key}{KEY_SEPARATOR}{escape_value(value)}")
    return FIELD_SEPARATOR.join(parts)


def _as_text(text: object) -> str | None:
    """The input as str: bytes are decoded leniently, None is empty, other types are None."""
    if text is None:
        return ""
    if isinstance(text, str):
        return text
    if isinstance(text, bytes | bytearray | memoryview):
        return bytes(text).decode("utf-8", errors="replace")
    return None


def _parse_fields(text: str) -> tuple[dict[str, str], int]:
    """The readable fields of `text`, and how many non-empty parts were unreadable."""
    fields: dict[str, str] = {}
    unreadable = 0
    for part in text.split(FIELD_SEPARATOR):
        if not part:
            continue
        key, separator, value = part.partition(KEY_SEPARATOR)
        if not separator or not is_valid_key(key) or key in fields:
            unreadable += 1
            continue
        fields[key] = unescape_value(value)
    return fields, unreadable


def _warn(reason: str, text: str) -> None:
    logger.warning("unreadable dispatch metadata (%s); preview %r", reason, text[:PREVIEW_CHARS])


def parse_dispatch_metadata(text: str | bytes | None) -> dict[str, str]:
    """Parse `key:value|key:value` metadata into a dict; never raises.

    Empty parts (e.g. after a trailing `|`) are ignored. Parts without `:`, with an invalid
    key, or repeating an earlier key are skipped. One warning is logged if anything was
    skipped or no field could be read; the fields that were readable are returned.
    """
    try:
        decoded = _as_text(text)
        if decoded is None:
            logger.warning("unreadable dispatch metadata of type %s", type(text).__name__)
            return {}
        if not decoded.strip():
            _warn("empty", decoded)
            return {}
        fields, unreadable = _parse_fields(decoded)
        if unreadable:
            _warn(f"{unreadable} unreadable part(s), {len(fields)} field(s) read", decoded)
        elif not fields:
            _warn("no fields", decoded)
        return fields
    except Exception as exc:  # last-resort guard: callers rely on this never raising
        logger.warning("unreadable dispatch metadata (%s)", type(exc).__name__)
        return {}


def _word_cut(text: str, limit: int) -> str | None:
    """`text` cut at its last whitespace at or before `limit`, if within the cut window."""
    earliest = max(1, int(limit * (1 - _WORD_CUT_WINDOW)))
    for index in range(limit, earliest - 1, -1):
        if text[index].isspace():
            return text[:index].rstrip()
    return None


def cap_question(text: str, limit: int = MAX_QUESTION_CHARS) -> str:
    """`text` stripped and, if longer than `limit`, shortened to at most `limit` characters.

    The cut is made at the last whitespace at or before `limit` if there is one in the last
    20% of the limit, else exactly at `limit`; "…" is appended only if it still fits.
    """
    text = text.strip()
    if len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    cut = _word_cut(text, limit)
    if cut is None:
        return text[:limit]
    return cut + ELLIPSIS if len(cut) < limit else cut


def _encoded_size(fields: Mapping[str, str]) -> int:
    return len(encode_metadata(fields).encode("utf-8"))


def _fit_question(fields: dict[str, str]) -> None:
    """Cap `fields["question"]` in characters, then shorten it until everything fits.

    A 1000-character question can take up to 4000 bytes (4-byte characters, or 3 bytes per
    escaped character), so with other fields it may not fit in MAX_METADATA_BYTES; then the
    character limit is lowered by at least a quarter of the overshoot (no character takes
    more than 4 bytes) and the question is capped again, until it fits or is empty.
    """
    question = fields["question"]
    limit = MAX_QUESTION_CHARS
    fields["question"] = cap_question(question, limit)
    while (overshoot := _encoded_size(fields) - MAX_METADATA_BYTES) > 0 and limit > 0:
        limit -= max(1, -(-overshoot // 4))
        fields["question"] = cap_question(question, limit)
    if not fields["question"]:
        del fields["question"]


def dispatch_metadata(**fields: str | None) -> str:
    """Encode dispatch metadata for an agent dispatch.

    None and empty values are dropped, `question` is capped with `cap_question` (and
    shortened further if needed to fit), and the result is encoded with `encode_metadata`.
    Raises ValueError for an invalid key or value, or if the fields other than the
    question alone take more than MAX_METADATA_BYTES.
    """
    kept = {key: value for key, value in fields.items() if value is not None and value != ""}
    if isinstance(kept.get("question"), str):
        _fit_question(kept)
    encoded = encode_metadata(kept)
    size = len(encoded.encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise ValueError(
            f"dispatch metadata is {size} bytes encoded, over the limit of "
            f"{MAX_METADATA_BYTES} bytes; shorten the fields other than the question"
        )
    return encoded
