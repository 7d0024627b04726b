"""CRM connectors and outbound webhooks, driven by the events stream (none connected yet)."""
