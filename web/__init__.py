"""Starlette routes: webhooks, the JSON API, websockets, health and metrics."""
