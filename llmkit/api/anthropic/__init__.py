"""Anthropic's Messages API (``/v1/messages``), over the same engines as the others."""
