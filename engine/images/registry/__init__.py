"""The registry client (distribution spec v2): HTTP on httptools, auth from WWW-Authenticate, repositories.

``http`` is the small HTTP/1.1 client, ``auth`` the credentials and challenge handling, ``client`` the
registry and repository operations the pull and push services (engine/services/pull.py) use.
"""

from engine.images.registry.auth import Credentials, Unauthorized, from_docker_config, from_header
from engine.images.registry.client import Manifest, Registry, Repository, endpoint, is_insecure
from engine.images.registry.http import HttpClient

__all__ = ["Credentials", "HttpClient", "Manifest", "Registry", "Repository", "Unauthorized", "endpoint",
           "from_docker_config", "from_header", "is_insecure"]
