# openfdi: the API server (and, with OPENFDI_WORKER_PROCESSES, its worker processes).
# Build: docker build -t openfdi .   Run with PostgreSQL metadata: docker compose up (compose.yaml).

# --- build: a wheel of the package, installed with its dependencies into a virtualenv ----------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN python -m venv /opt/openfdi \
 && /opt/openfdi/bin/pip install --upgrade pip \
 && /opt/openfdi/bin/pip install .

# --- runtime: the virtualenv only, run by an unprivileged user ------------------------------------
FROM python:3.11-slim
LABEL org.opencontainers.image.title="openfdi" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 openfdi \
 && useradd --system --uid 10001 --gid openfdi --home-dir /var/lib/openfdi --create-home openfdi
COPY --from=build /opt/openfdi /opt/openfdi
ENV PATH="/opt/openfdi/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    OPENFDI_DATA_DIR=/var/lib/openfdi
WORKDIR /var/lib/openfdi
VOLUME /var/lib/openfdi
USER openfdi:openfdi
EXPOSE 8080
# /healthz answers 200 while the server and its metadata database are up (python: no curl here).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["openfdi"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
