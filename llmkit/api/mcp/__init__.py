"""MCP tools that run: the operator's MCP servers (``servers``) and the tool loop
every front end shares (``loop``): the Responses API, the page's conversations
API and, through it, ``llmkit chat``."""
