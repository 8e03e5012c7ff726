# syntax=docker/dockerfile:1
# The ImageFlow services, one recipe: the same core package and pinned dependencies, the
# service chosen at build time (its entrypoint and port). Build from the repository root:
#   docker build --build-arg SERVICE=image-handler --build-arg PORT=8080 -t imageflow/image-handler .
#   docker build --build-arg SERVICE=interaction-manager --build-arg PORT=8081 -t imageflow/interaction-manager .
#   docker build --build-arg SERVICE=image-processor --build-arg PORT=8082 -t imageflow/image-processor .
# (The email function has its own Dockerfile: it is deployed from its folder alone, without
# this package, as Cloud Functions builds it.)
# The image docker build makes by default (the last stage) holds imageflow/ and services/ only:
# no devtools/, tests/ or bench/ (tests/unit/test_dockerfile.py). docker-compose's emulator
# setup and SendGrid stand-in run devtools from the `devtools` stage (--target devtools).

# Base images are pinned by digest (image:tag@sha256:...); Dependabot (.github/dependabot.yml)
# proposes each new digest, and tests/deploy/test_image_pins.py refuses an unpinned FROM.
# -- build: the core package and its locked dependencies (requirements.lock) in a venv -----
FROM python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5 AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /venv
# Every dependency, transitive ones included, at the version and hash of requirements.lock
# (pip-compile --generate-hashes --extra gcp, from pyproject.toml's pins); then the project.
COPY requirements.lock ./
RUN /venv/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY imageflow ./imageflow
COPY services ./services
RUN /venv/bin/pip install --no-deps ".[gcp]"

# -- runtime: slim, non-root (uid 10001, as the k8s securityContext expects) ---------------
FROM python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5 AS runtime
ARG SERVICE
ARG PORT
RUN case "${SERVICE}:${PORT}" in \
      image-handler:[0-9]*|interaction-manager:[0-9]*|image-processor:[0-9]*) ;; \
      *) echo "build with --build-arg SERVICE=image-handler|interaction-manager|image-processor --build-arg PORT=N" >&2; exit 1 ;; \
    esac \
 && groupadd --system --gid 10001 imageflow \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin imageflow
COPY --from=build /venv /venv
WORKDIR /app
# image-handler listens on IMAGEFLOW_PORT, the other services on PORT.
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    IMAGEFLOW_SERVICE=${SERVICE} \
    IMAGEFLOW_BACKEND=gcp \
    IMAGEFLOW_DATA_DIR=/tmp/imageflow \
    BIND_HOST=0.0.0.0 \
    IMAGEFLOW_PORT=${PORT} \
    PORT=${PORT}
USER 10001:10001
EXPOSE ${PORT}
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s \
  CMD ["sh", "-c", "exec python -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/healthz', timeout=2)\""]
# image-handler under gunicorn (its slow-client-safe worker); the others are their own main.
CMD ["sh", "-c", "if [ \"$IMAGEFLOW_SERVICE\" = image-handler ]; then exec gunicorn 'services.image_handler.app:create_app()' --worker-class services.image_handler.server.Worker --bind \"${BIND_HOST}:${IMAGEFLOW_PORT}\"; else exec python -m \"services.$(echo \"$IMAGEFLOW_SERVICE\" | tr - _)\"; fi"]

# -- devtools: the runtime plus docker-compose's tools (emulator setup, SendGrid stand-in) ---
FROM runtime AS devtools
COPY devtools ./devtools

# -- the production image: the runtime alone (last, so a plain `docker build` makes it) -----
FROM runtime
