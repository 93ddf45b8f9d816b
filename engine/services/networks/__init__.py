"""Docker networks: events + projection (events.py), read model (model.py), commands (service.py) and
recovery at daemon start (recovery.py). The kernel side lives in engine/network.

Only the projection is imported here: ``all_projections()`` must stay cheap, and the service pulls in
pyroute2 (~200 ms of imports). Import ``NetworkService`` from ``engine.services.networks.service``.
"""

from engine.services.networks.events import PROJECTION

__all__ = ["PROJECTION"]
