"""What the services' browser pages share: their words per language from a YAML
catalog, the language a page is shown in, and Jinja2 templates escaped by default.

Each page's texts are a pydantic model, so a catalog missing a word for one language
fails when the service starts, not when a customer opens the page."""

from __future__ import annotations

from pathlib import Path
from typing import Generic, TypeVar

from fastapi import Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ConfigDict

Texts = TypeVar("Texts", bound=BaseModel)


class Catalog(BaseModel, Generic[Texts]):
    """A page's texts in every language it is offered in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    zh: Texts
    en: Texts

    def get(self, lang: str) -> Texts:
        texts: Texts = getattr(self, lang)
        return texts

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(type(self).model_fields)


def browser_language(request: Request, languages: tuple[str, ...]) -> str | None:
    """The first of ``languages`` (two-letter codes) the browser's Accept-Language asks
    for, in the order it gives them; None when it asks for none of them."""
    for part in request.headers.get("accept-language", "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in languages:
            return tag
    return None


def templates(directory: Path) -> Environment:
    return Environment(
        loader=FileSystemLoader(directory),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
