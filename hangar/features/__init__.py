"""One module per MCP feature area, each answering its methods for the router (`hangar.router`)."""
