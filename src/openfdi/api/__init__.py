"""The ASGI application: FDI routers, IAM subset, auth, error rendering, operations endpoints."""
