"""Ollama-style model names: ``FAMILY:TAG`` (``qwen2.5:0.5b``,
``qwen2.5:7b-instruct-q4_K_M``, ``llama3.2:1b``) turned into a GGUF repository
per source and the quantisation to take from it.

The names come from a small catalog: ``tags.toml`` beside this module (its
format is in its own comments), extended or overridden family by family by
``tags.toml`` in llmkit's data directory. A bare family name means its
``latest`` tag, as in ollama.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from llmkit.errors import ModelSpecError

#: A quantisation at the end of a tag: "-q4_K_M", "-q8_0", "-f16", "-iq4_xs".
_QUANT_SUFFIX = re.compile(
    r"^(?P<tag>.*?)-?(?P<quant>i?q\d_(?:k_[sml]|k|\d|xxs|xs|s|m|nl)|q\d_k|bf16|f16|f32)$",
    re.IGNORECASE,
)
SOURCES_OF_HF = ("hf", "hf-mirror")


@dataclass(frozen=True)
class TagTarget:
    """What a tagged name stands for."""

    name: str  # as the user typed it
    family: str
    tag: str  # the catalog's tag, after ``latest`` and aliases
    repos: dict[str, str]  # source -> repository id
    quant: str  # the quantisation to take (lower case), unless --fit chooses
    quant_given: bool  # the name itself said which

    def repo_on(self, source: str) -> str | None:
        if source in self.repos:
            return self.repos[source]
        return self.repos.get("hf") if source == "hf-mirror" else None

    @property
    def include(self) -> tuple[str, ...]:
        """The glob of the quantisation's file(s), shards included."""
        return (f"*{self.quant}*.gguf",)


def bundled_catalog() -> dict[str, Any]:
    text = resources.files("llmkit.models").joinpath("tags.toml").read_text()
    return tomllib.loads(text)


def load_catalog(user_file: Path | None) -> dict[str, Any]:
    """The shipped families, with the user's file laid over them (a family there
    replaces the shipped one's keys it names; its tags and aliases add to them)."""
    families = {k.lower(): v for k, v in bundled_catalog().items()}
    if user_file is None or not user_file.is_file():
        return families
    try:
        mine = tomllib.loads(user_file.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ModelSpecError(f"{user_file} is not a readable TOML file: {e}") from None
    for name, fam in mine.items():
        if not isinstance(fam, dict):
            raise ModelSpecError(f"{user_file}: [{name}] must be a table (see tags.toml).")
        old = families.get(name.lower(), {})
        merged = {**old, **fam}
        for key in ("tags", "aliases"):
            merged[key] = {**old.get(key, {}), **fam.get(key, {})}
        families[name.lower()] = merged
    return families


def split_name(name: str) -> tuple[str, str]:
    family, _, tag = name.partition(":")
    return family.lower(), (tag or "latest").lower()


def lookup(name: str, user_file: Path | None) -> TagTarget | None:
    """The target of ``name``, None when its family is not in the catalog (it may be
    a repository id or a local model). A known family with an unknown tag is an
    error listing the tags there are."""
    if "/" in name or name.lower().endswith(".gguf"):
        return None
    families = load_catalog(user_file)
    family, tag = split_name(name)
    fam = families.get(family)
    if fam is None:
        return None
    tags = {k.lower(): v for k, v in fam.get("tags", {}).items()}
    aliases = {k.lower(): v.lower() for k, v in fam.get("aliases", {}).items()}

    def known(t: str) -> str | None:
        t = fam.get("latest", "").lower() if t in ("", "latest") else t
        t = aliases.get(t, t)
        return t if t in tags else None

    quant, given = str(fam.get("quant", "q4_k_m")).lower(), False
    found = known(tag)
    if found is None and (m := _QUANT_SUFFIX.match(tag)):
        found = known(m["tag"])
        quant, given = m["quant"].lower(), True
    if found is None:
        listed = ", ".join(f"{family}:{t}" for t in sorted({*tags, *aliases}))
        raise ModelSpecError(
            f"'{name}': the tag catalog knows {family} but not the tag '{tag}'. "
            f"Known: {listed}; a tag may end in a quantisation (-q4_K_M, -q8_0). "
            f"Add it to {user_file or 'tags.toml in the data directory'}, or pull by "
            "repository id (OWNER/NAME)."
        )
    target = tags[found]
    repos = {s: target for s in ("hf", "modelscope")} if isinstance(target, str) else dict(target)
    return TagTarget(name, family, found, repos, quant, given)


def unknown_name(name: str, user_file: Path | None, tried: list[str]) -> ModelSpecError:
    """The error for a name nothing knows: what was tried, and what to do."""
    families = ", ".join(sorted(load_catalog(user_file)))
    return ModelSpecError(
        f"Nothing is called '{name}'. Tried: {'; '.join(tried)}. "
        f"The tag catalog has: {families} (`FAMILY:TAG`). Pull by repository id "
        f"(`llmkit pull OWNER/NAME-GGUF`), or add the name to "
        f"{user_file or 'tags.toml in the data directory'}."
    )
