# syntax=docker/dockerfile:1
# Two images from one file, both running as an unprivileged user:
#   docker build --target api -t taas-api .          the API: FastAPI, SQLAlchemy, Celery producer; no torch
#   docker build --target worker -t taas-worker .    a training worker: torch (PyPI's CUDA wheels on x86_64)
#   docker build --target worker --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu -t taas-worker-cpu .
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
# The main dependencies only, read from pyproject.toml: the API image never gets torch.
RUN python -m venv /opt/venv \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt

FROM deps-api AS deps-worker
# Empty: torch from PyPI (CUDA); https://download.pytorch.org/whl/cpu for a smaller CPU-only worker.
ARG TORCH_INDEX_URL=""
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['worker']))" \
        > /tmp/requirements-worker.txt \
    && pip install --no-cache-dir ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} -r /tmp/requirements-worker.txt

FROM base AS api
COPY --from=deps-api /opt/venv /opt/venv
COPY pyproject.toml alembic.ini ./
COPY migrations ./migrations
COPY app ./app
COPY worker ./worker
# Editable: the code stays in /srv, next to alembic.ini and migrations/, which `taas db upgrade` reads.
RUN pip install --no-cache-dir --no-deps -e .
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["taas", "api", "--host", "0.0.0.0"]

FROM base AS worker
COPY --from=deps-worker /opt/venv /opt/venv
COPY pyproject.toml alembic.ini ./
COPY migrations ./migrations
COPY app ./app
COPY worker ./worker
RUN pip install --no-cache-dir --no-deps -e .
ENV TAAS_CACHE_DIR=/cache
USER 10001:10001
CMD ["taas", "worker"]
