"""Model families: thinking and tool-call syntaxes, as data (``table``)."""

from llmkit.engines.families.base import Family, Parsed, ReplyParser
from llmkit.engines.families.table import detect

__all__ = ["Family", "Parsed", "ReplyParser", "detect"]
