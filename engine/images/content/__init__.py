"""engine/images/content: containerd's local content store on disk (blobs by digest, resumable ingests).

The journal-backed, namespaced view over it is engine/services/content.py.
"""

from engine.images.content.local import BlobInfo, IngestStatus, LocalStore, ReaderAt, Writer, validate_ref

__all__ = ["BlobInfo", "IngestStatus", "LocalStore", "ReaderAt", "Writer", "validate_ref"]
