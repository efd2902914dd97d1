# syntax=docker/dockerfile:1
# Three images from one file, each with its program's install extra (pyproject.toml), as an unprivileged user:
#   docker build --target api -t taas-api .          the API: FastAPI, SQLAlchemy, Celery producer; no torch
#   docker build --target worker -t taas-worker .    a training worker: torch (PyPI's CUDA wheels on x86_64); no API
#   docker build --target worker --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu -t taas-worker-cpu .
#   docker build --target tools --build-arg TORCH_INDEX_URL=... -t taas-tools .   both, for the one-shot migration
# Dependencies are installed from pyproject.toml before the code is copied, so a code change rebuilds in seconds.

FROM python:3.11-slim-bookworm AS base
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    TAAS_DATA_DIR=/data
RUN useradd --create-home --uid 10001 taas \
    && mkdir -p /data /cache \
    && chown 10001:10001 /data /cache
WORKDIR /srv

FROM base AS deps-api
COPY pyproject.toml ./
COPY scripts/requirements.py ./scripts/
# The API's extra (and the client's, for the `taas` command): the API image never gets torch.
RUN python -m venv /opt/venv \
    && python scripts/requirements.py api client > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt

FROM base AS deps-worker
COPY pyproject.toml ./
COPY scripts/requirements.py ./scripts/
# Empty: torch from PyPI (CUDA); https://download.pytorch.org/whl/cpu for a smaller CPU-only worker. The worker's
# extra only (and the client's): no FastAPI, SQLAlchemy or database driver.
ARG TORCH_INDEX_URL=""
RUN python -m venv /opt/venv \
    && python scripts/requirements.py worker client > /tmp/requirements.txt \
    && pip install --no-cache-dir ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} -r /tmp/requirements.txt

FROM deps-worker AS deps-tools
# Both sides, for the one-shot migration: the schema (API side) and converting trusted weights (torch, worker side).
RUN python scripts/requirements.py api > /tmp/requirements-api.txt \
    && pip install --no-cache-dir -r /tmp/requirements-api.txt

FROM base AS api
COPY --from=deps-api /opt/venv /opt/venv
COPY pyproject.toml alembic.ini ./
COPY migrations ./migrations
COPY core ./core
COPY client ./client
COPY app ./app
# Editable: the code stays in /srv, next to alembic.ini and migrations/, which `taas db upgrade` reads.
RUN pip install --no-cache-dir --no-deps -e .
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["taas", "api", "--host", "0.0.0.0"]

FROM base AS worker
COPY --from=deps-worker /opt/venv /opt/venv
COPY pyproject.toml ./
COPY core ./core
COPY client ./client
COPY worker ./worker
RUN pip install --no-cache-dir --no-deps -e .
ENV TAAS_CACHE_DIR=/cache
USER 10001:10001
CMD ["taas", "worker"]

FROM base AS tools
COPY --from=deps-tools /opt/venv /opt/venv
COPY pyproject.toml alembic.ini ./
COPY migrations ./migrations
COPY core ./core
COPY client ./client
COPY app ./app
COPY worker ./worker
RUN pip install --no-cache-dir --no-deps -e .
USER 10001:10001
CMD ["taas", "db", "upgrade"]
