# One image for the API and the worker; the worker's extra (torch) is installed with INSTALL_WORKER=1.
FROM python:3.11-slim
ARG INSTALL_WORKER=1
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 TAAS_DATA_DIR=/data
WORKDIR /srv
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
RUN if [ "$INSTALL_WORKER" = "1" ]; then pip install '.[worker]'; else pip install .; fi
RUN useradd --create-home taas && mkdir -p /data && chown taas /data
USER taas
EXPOSE 8000
CMD ["taas", "api", "--host", "0.0.0.0"]
