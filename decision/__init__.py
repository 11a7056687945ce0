"""The next-best-action decisioning service: gRPC server, pipeline, store, CLI."""

__version__ = "0.1.0"
