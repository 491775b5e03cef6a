# syntax=docker/dockerfile:1
# One image for every role: `docker run IMAGE serve api|recurrence|notifications|audit`,
# `docker run IMAGE migrate` for the schema migration Job.
#
# Base pinned by full version tag. For reproducible builds pin the digest too, e.g.
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm   # prints the sha256
#   docker build --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest> .
# Both stages must use the same base: the virtual environment links to its Python.
# Without a registry, `python -m devstack image build` passes a base built from Debian's archive.
#
# Behind a TLS-inspecting proxy, hand pip your CA bundle as a build secret (mounted read-only
# for the two install steps, never stored in a layer):
#   docker build --secret id=build-ca,src=/etc/ssl/certs/ca-certificates.crt .
#   podman build --secret id=build-ca,src=/etc/ssl/certs/ca-certificates.crt .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- build: resolve the pinned dependencies into a virtual environment ----
FROM ${PYTHON_IMAGE} AS build
ENV VIRTUAL_ENV=/opt/venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# Dependencies first (from constraints.txt only), so source edits reuse this layer.
COPY constraints.txt ./
RUN --mount=type=secret,id=build-ca \
    if [ -s /run/secrets/build-ca ]; then \
        export PIP_CERT=/run/secrets/build-ca REQUESTS_CA_BUNDLE=/run/secrets/build-ca; \
    fi \
    && python -m venv "$VIRTUAL_ENV" \
    && "$VIRTUAL_ENV/bin/pip" install --requirement constraints.txt
# The project itself; README.md is optional (the glob copies it when present).
COPY pyproject.toml README.m[d] ./
COPY tasks/ tasks/
COPY auth/ auth/
COPY sidecar/ sidecar/
COPY mcp_server/ mcp_server/
COPY agent/ agent/
COPY events/ events/
COPY todo_agent/ todo_agent/
COPY observability/ observability/
# pip itself is not needed at run time: it leaves the venv before the runtime stage copies it.
RUN --mount=type=secret,id=build-ca \
    if [ -s /run/secrets/build-ca ]; then \
        export PIP_CERT=/run/secrets/build-ca REQUESTS_CA_BUNDLE=/run/secrets/build-ca; \
    fi \
    && "$VIRTUAL_ENV/bin/pip" install --no-deps --constraint constraints.txt . \
    && "$VIRTUAL_ENV/bin/pip" check \
    && "$VIRTUAL_ENV/bin/pip" uninstall --yes --quiet pip setuptools

# ---- runtime: the virtual environment on a clean base, as a non-root user ----
FROM ${PYTHON_IMAGE} AS runtime
ENV VIRTUAL_ENV=/opt/venv \
    PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    TODO_DATA_DIR=/tmp/todo-agent
RUN groupadd --system --gid 10001 todo \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin todo
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000 8001 8002 8003
# Alive when any role's default port answers /healthz (Kubernetes uses its own probes instead).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u\ndef ok(port):\n    try:\n        return u.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2).status == 200\n    except Exception:\n        return False\nsys.exit(0 if any(ok(p) for p in (8000, 8001, 8002, 8003)) else 1)"]
ENTRYPOINT ["todo-agent"]
# Outside loopback the CLI insists on TODO_JWT_SECRET or TODO_JWKS_URL (set by the manifests).
CMD ["serve", "api", "--host", "0.0.0.0"]
