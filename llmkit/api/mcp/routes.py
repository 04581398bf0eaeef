"""``GET /mcp/servers``: the operator's MCP servers and their tools, for the chat
page and ``llmkit chat`` to pick from. Neither a URL nor a command is shown:
they are the operator's, and may hold secrets."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Request

from llmkit.api.mcp.servers import McpServers

router = APIRouter(prefix="/mcp", tags=["mcp"])


@router.get("/servers")
async def list_servers(
    request: Request,
    refresh: bool = Query(False, description="List the tools again instead of the cached list."),
) -> dict[str, Any]:
    mcp: McpServers = request.app.state.mcp
    specs = list(mcp.specs.values())
    listings = await asyncio.gather(*(mcp.list_tools(s, refresh=refresh) for s in specs))
    return {
        "object": "list",
        "data": [
            {
                "name": spec.name,
                "transport": spec.transport,
                "require_approval": mcp.approval,
                "tools": [
                    {"name": t.name, "description": t.description, "input_schema": t.input_schema}
                    for t in listing.tools
                ],
                "error": listing.error,
            }
            for spec, listing in zip(specs, listings, strict=True)
        ],
    }
