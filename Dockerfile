# tuf-mirror container image: `docker build -t tuf-mirror .`
# Build stage: a virtual environment with tuf-mirror and its `s3` extra (boto3).
# Final stage: the same slim Python base, that environment, a non-root user; no
# compiler, no pip cache, no source tree.
# Both stages use the same base, so the virtual environment's interpreter path holds.
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mirror ./mirror
# Every dependency ships manylinux wheels: nothing is compiled here either.
RUN python -m venv /opt/tuf-mirror \
    && /opt/tuf-mirror/bin/pip install --no-cache-dir ".[s3]" \
    && /opt/tuf-mirror/bin/pip uninstall --yes pip \
    && /opt/tuf-mirror/bin/tuf-mirror --version

FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="tuf-mirror" \
      org.opencontainers.image.description="A verifying mirror for TUF repositories" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/tuf-mirror/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 tuf-mirror \
    && useradd --system --uid 10001 --gid tuf-mirror --home-dir /var/lib/tuf-mirror \
       --create-home --shell /usr/sbin/nologin tuf-mirror
COPY --from=build /opt/tuf-mirror /opt/tuf-mirror
USER 10001:10001
WORKDIR /var/lib/tuf-mirror
# A batch job, not a server: the scheduler (Batch, Kubernetes) watches the exit
# status, so there is nothing for a health check to probe.
HEALTHCHECK NONE
# SIGTERM (spot interruption, pod eviction) stops a run cleanly: exit 143.
STOPSIGNAL SIGTERM
ENTRYPOINT ["tuf-mirror"]
CMD ["--help"]
