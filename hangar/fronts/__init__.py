"""One front per transport: how clients' bytes become sessions and exchanges for the router."""
