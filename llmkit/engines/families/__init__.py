"""Model families: thinking and tool-call syntaxes, as data (``table``).

``detect`` picks a model's family from its chat template (and GGUF metadata);
``stream`` is the one streaming parser they share and ``harmony`` gpt-oss's;
each call syntax is a module of its own (``hermes``, ``qwen_xml``, ``glm``,
``mistral``, ``llama3``, ``json_list``, ``deepseek``, ``kimi``), with the parse
and the GBNF that forces a call in it (``gbnf``: what the grammars share).
"""

from llmkit.engines.families.base import Family, Parsed, ReplyParser
from llmkit.engines.families.table import BY_NAME, GENERIC, detect

__all__ = ["BY_NAME", "GENERIC", "Family", "Parsed", "ReplyParser", "detect"]
