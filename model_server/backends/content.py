"""What an ``embedding`` input may hold, and Elasticsearch's refusals of what a model cannot read.

An ``embedding`` request carries groups of content items (``ContentItem``): text,
or a base64 data URI of an image, audio, video or PDF; each group gives one vector.
A backend says which kinds its model reads and whether a group may hold several items,
and ``check_contents`` refuses the rest before anything is computed or sent, with the
errors Elasticsearch's services give (a ``400`` ``status_exception``):

- a text-only model and any other kind: ``The openai service does not support embedding
  with non-text inputs``;
- several items in one group where the model takes one: ``Field [content] must contain
  a single item for [openai] service. [content] object with multiple items found at
  $.input.content[0]``.

A model that reads images but not audio, video or PDF (CLIP) refuses those in the same
words, naming the kinds. ``decode_data_uri`` reads a data URI's media type and bytes.

Knows nothing of HTTP or of any model.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Collection, Sequence

from kubeinfer.errors import ElasticsearchError

TEXT = "text"
IMAGE = "image"
# Elasticsearch's content types, in its order.
CONTENT_KINDS = (TEXT, IMAGE, "audio", "video", "pdf")


@dataclass(frozen=True)
class ContentItem:
    """One item of an ``embedding`` input: text, or a base64 data URI of an image, audio, video or PDF."""

    type: str
    value: str
    format: str = "text"


def _refused(reason: str) -> ElasticsearchError:
    return ElasticsearchError(400, "status_exception", reason)


def non_text_refused(service: str) -> ElasticsearchError:
    return _refused(f"The {service} service does not support embedding with non-text inputs")


def kinds_refused(service: str, kinds: Collection[str]) -> ElasticsearchError:
    return _refused(f"The {service} service does not support embedding with {', '.join(kinds)} inputs")


def several_items_refused(service: str, index: int) -> ElasticsearchError:
    return _refused(f"Field [content] must contain a single item for [{service}] service. "
                    f"[content] object with multiple items found at $.input.content[{index}]")


def check_contents(service: str, contents: Sequence[Sequence[ContentItem]], *, kinds: Collection[str] = (TEXT,),
                   several_items: bool = False) -> None:
    """Refuse, as Elasticsearch does, items of kinds the model cannot read (``kinds``) and
    groups of several items where it embeds one item at a time."""
    used = {item.type for group in contents for item in group}
    unread = [kind for kind in CONTENT_KINDS if kind in used and kind not in kinds]
    if unread:
        raise non_text_refused(service) if set(kinds) == {TEXT} else kinds_refused(service, unread)
    if not several_items:
        for index, group in enumerate(contents):
            if len(group) > 1:
                raise several_items_refused(service, index)


@dataclass(frozen=True)
class DataUri:
    media_type: str
    data: bytes


def decode_data_uri(value: str, where: str) -> DataUri:
    """``data:<media type>;base64,<data>`` read; a ``400`` naming ``where`` otherwise."""
    head, comma, payload = value.partition(",")
    if not head.startswith("data:") or not comma or not head.endswith(";base64"):
        raise ElasticsearchError(400, "illegal_argument_exception",
                                 f"{where} must be a base64 data URI (data:<media type>;base64,<data>)")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ElasticsearchError(400, "illegal_argument_exception", f"{where} is not valid base64") from None
    return DataUri(head[len("data:"):-len(";base64")].strip().lower(), data)
