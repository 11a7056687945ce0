# The NBA decisioning service. Same install as the README.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    NBA_HOST=0.0.0.0 \
    NBA_PORT=50051 \
    NBA_DATA_DIR=/data \
    NBA_CATALOG=/app/examples/catalog.yaml

RUN useradd --create-home --uid 10001 nba && mkdir -p /data && chown nba:nba /data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY decision ./decision
COPY bandits ./bandits
COPY examples ./examples
RUN pip install -e .

USER nba
VOLUME ["/data"]
EXPOSE 50051
# Health through the gRPC health service (grpc.health.v1).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["nba", "health", "--target", "127.0.0.1:50051"]
# Without REDIS_URL the service runs its own private Redis-compatible server in /data.
CMD ["nba", "serve"]
