"""The router's method table: each MCP request method and the feature module that answers it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from hangar.features import completion, lifecycle, logs, prompts, resources, subscriptions, tools

if TYPE_CHECKING:
    from hangar.router import Router
    from hangar.session import Exchange

Handler = Callable[["Exchange"], Awaitable[None]]


def method_table(router: Router) -> dict[str, Handler]:
    return {
        "initialize": lambda x: lifecycle.initialize(router, x),
        "ping": lifecycle.ping,
        "server/discover": lambda x: lifecycle.discover(router, x),
        "tools/list": lambda x: tools.list_tools(router, x),
        "tools/call": lambda x: tools.call_tool(router, x),
        "resources/list": lambda x: resources.list_resources(router, x),
        "resources/templates/list": lambda x: resources.list_templates(router, x),
        "resources/read": lambda x: resources.read(router, x),
        "resources/subscribe": lambda x: resources.subscribe(router, x),
        "resources/unsubscribe": lambda x: resources.unsubscribe(router, x),
        "prompts/list": lambda x: prompts.list_prompts(router, x),
        "prompts/get": lambda x: prompts.get_prompt(router, x),
        "completion/complete": lambda x: completion.complete(router, x),
        "logging/setLevel": lambda x: logs.set_level(router, x),
        "subscriptions/listen": lambda x: subscriptions.listen(router, x),
    }
