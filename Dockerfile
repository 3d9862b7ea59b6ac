# The after-sale deadline enforcer's image: one image, three processes.
#
#   docker build -t aftersale-deadlines .
#   docker run aftersale-deadlines                 # aftersale worker (ENTRYPOINT + CMD)
#   docker run aftersale-deadlines api             # aftersale api: the command (CMD) overridden
#   docker run aftersale-deadlines project         # aftersale project
#
# In Kubernetes (deploy/k8s) the worker's StatefulSet keeps the default, the API's and the
# projector's Deployments set `args` (Kubernetes' name for CMD). Settings come from AFTERSALE_*
# (README, "Configuration of the streaming worker").
#
# Checked by tests/unit/deploy/test_image.py (hadolint, non-root user, what the final stage
# holds, the entrypoint) and tests/integration/test_image_entrypoint.py (a virtualenv built the
# way this file builds it runs this ENTRYPOINT + CMD against Kafka, as deploy/k8s configures it).
# For a reproducible build pin the base image by digest too (python:3.11-slim-bookworm@sha256:...).

# ---- build: the wheel, and a virtualenv with it and its dependencies --------------------------
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# What the wheel is built from (and nothing else: .dockerignore lets only these in).
COPY pyproject.toml README.md ./
COPY topics ./topics
COPY streams ./streams

# `pip wheel .` builds the package's wheel and fetches its dependencies' wheels (every one of
# them is a binary wheel: no compiler needed); the virtualenv gets no pip of its own (pip installs
# into it from outside), so the final image cannot install anything at run time.
RUN pip wheel --wheel-dir /wheels . \
    && python -m venv --without-pip /opt/aftersale \
    && pip --python /opt/aftersale/bin/python install --no-index --find-links /wheels \
        /wheels/aftersale_deadlines-*.whl

# ---- final: the virtualenv on a clean base, a fixed non-root user -----------------------------
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="aftersale-deadlines" \
      org.opencontainers.image.description="After-sale deadline enforcer: worker, read API, Redis projector" \
      org.opencontainers.image.licenses="Apache-2.0"

# UID/GID 10001: fixed, so the Kubernetes securityContext (runAsUser, fsGroup) can name them.
RUN groupadd --system --gid 10001 aftersale \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/aftersale --shell /usr/sbin/nologin aftersale

COPY --from=build /opt/aftersale /opt/aftersale

# The RocksDB store lives in data/ (a volume in Kubernetes, where the root filesystem is
# read-only); the working directory is the user's home.
WORKDIR /var/lib/aftersale
RUN mkdir -p /var/lib/aftersale/data && chown -R 10001:10001 /var/lib/aftersale

ENV PATH=/opt/aftersale/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AFTERSALE_DATA_DIR=/var/lib/aftersale/data \
    AFTERSALE_WEB_BIND=0.0.0.0 \
    AFTERSALE_API_BIND=0.0.0.0

USER 10001:10001

# 6066: the worker's /metrics, /healthz, /readyz; 8080: the read API.
EXPOSE 6066 8080

ENTRYPOINT ["aftersale"]
CMD ["worker"]
