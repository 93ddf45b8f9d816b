"""engine/store: the SQLite database — connection, pragmas, migrations. Only this package opens it."""

from engine.store.db import SYNC_MODES, connect, get_meta, migrate, migration_files, set_meta_if_absent

__all__ = ["SYNC_MODES", "connect", "get_meta", "migrate", "migration_files", "set_meta_if_absent"]
