"""The CRM connectors Switchboard offers: an explicit list, like the channel registry."""

from __future__ import annotations

import httpx

from crm_sync.base import Connector
from crm_sync.hubspot import HubSpot
from crm_sync.pipedrive import Pipedrive


def build_connectors(http: httpx.AsyncClient) -> dict[str, Connector]:
    """Every connector, over the process's guarded HTTP client."""
    connectors: list[Connector] = [HubSpot(http), Pipedrive(http)]
    return {connector.kind: connector for connector in connectors}
