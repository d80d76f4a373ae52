# syntax=docker/dockerfile:1.7
# The scoring worker: `qscore worker`, with only the `worker` extra installed (the core
# library + the CLI). Built by `qscore release images` (buildah; docs/deploying.md), or:
#   docker build -f deploy/docker/worker.Dockerfile --secret id=pip.conf,src=<pip.conf> \
#     --secret id=ca.crt,src=<CA bundle> -t qscore-worker:<tag> .
# BASE_IMAGE: the official Python image, or a Debian 12 base with python3 + python3-venv
# (what the release tool builds with mmdebstrap where the official one cannot be pulled).
# The pip secrets carry the builder's own pip configuration; no registry address lives here.
ARG BASE_IMAGE=python:3.11.11-slim-bookworm

# The project's wheel, built apart so its build tool (hatchling) stays out of the image.
FROM ${BASE_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN --mount=type=secret,id=pip.conf,target=/etc/pip.conf --mount=type=secret,id=ca.crt \
    python3 -m venv /opt/build && /opt/build/bin/pip install --quiet "hatchling>=1.21"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY qscore ./qscore
COPY workers ./workers
COPY functions ./functions
COPY qscore_cli ./qscore_cli
COPY qscore_local ./qscore_local
COPY qscore_tools ./qscore_tools
RUN /opt/build/bin/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir /wheels .

FROM ${BASE_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN groupadd --gid 10001 qscore \
 && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin qscore
# Dependencies first, from pyproject.toml alone: a code change reuses this layer.
COPY pyproject.toml qscore_tools/release/extras.py /tmp/deps/
RUN --mount=type=secret,id=pip.conf,target=/etc/pip.conf --mount=type=secret,id=ca.crt \
    python3 /tmp/deps/extras.py --pyproject /tmp/deps/pyproject.toml worker > /tmp/deps/requirements.txt \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --quiet -r /tmp/deps/requirements.txt \
 && rm -rf /tmp/deps
# The code: the wheel only, no index, no dependency resolution; then pip and setuptools go
# (nothing installs at run time; the SBOM is read from the dist-info directories).
COPY --from=wheel /wheels /tmp/wheels
RUN /opt/venv/bin/pip install --quiet --no-deps --no-index /tmp/wheels/*.whl && rm -rf /tmp/wheels \
 && /opt/venv/bin/pip uninstall --quiet --yes pip setuptools
USER 10001:10001
EXPOSE 8080
# The CLI rather than `python -m workers`: flags and QSCORE_* variables both work, a bad
# setting is one `error:` line (exit 2), and the manifests pass `args: ["worker"]`.
# SIGTERM starts the worker's drain (QSCORE_DRAIN_GRACE_S); exec form so it reaches Python.
ENTRYPOINT ["qscore"]
CMD ["worker"]
# Labels last, so their values (which change every commit) invalidate no other layer. The
# release tool passes them; org.opencontainers.image.* are the OCI annotation keys.
ARG BASE_IMAGE
ARG QSCORE_REVISION=unknown
ARG QSCORE_VERSION=dev
LABEL org.opencontainers.image.title="qscore-worker" \
      org.opencontainers.image.revision="${QSCORE_REVISION}" \
      org.opencontainers.image.version="${QSCORE_VERSION}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
