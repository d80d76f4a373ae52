# syntax=docker/dockerfile:1.7
# The Azure Functions app for AKS: function_app.py + functions/ + the qscore core, laid out
# as Azure's zip deploy lays out /home/site/wwwroot, with requirements.txt (the core + the
# `functions` extra, generated from pyproject.toml) in .python_packages. Built by
# `qscore release images`, or:
#   docker build -f deploy/docker/functions.Dockerfile --secret id=pip.conf,src=<pip.conf> \
#     --secret id=ca.crt,src=<CA bundle> -t qscore-functions:<tag> .
# BASE_IMAGE: the official Functions image (it holds the Functions host). The Debian 12
# fallback the release tool builds where that cannot be pulled has no host: such an image
# is good for the app-indexing smoke test, not for a deployment.
# The Functions host listens on 8080 so it can run as a non-root user.
ARG BASE_IMAGE=mcr.microsoft.com/azure-functions/python:4-python3.11

FROM ${BASE_IMAGE}
ENV AzureWebJobsScriptRoot=/home/site/wwwroot \
    AzureFunctionsJobHost__Logging__Console__IsEnabled=true \
    FUNCTIONS_WORKER_RUNTIME=python \
    ASPNETCORE_URLS=http://+:8080 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN groupadd --gid 10001 qscore \
 && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin qscore
# Dependencies first, from requirements.txt alone: a code change reuses this layer. pip
# runs from a throwaway venv so the image's own Python stays as the base ships it.
COPY requirements.txt /tmp/deps/
RUN --mount=type=secret,id=pip.conf,target=/etc/pip.conf --mount=type=secret,id=ca.crt \
    python3 -m venv /tmp/deps/pip \
 && /tmp/deps/pip/bin/pip install --quiet --target /home/site/wwwroot/.python_packages/lib/site-packages \
      -r /tmp/deps/requirements.txt \
 && rm -rf /tmp/deps
COPY host.json function_app.py requirements.txt /home/site/wwwroot/
COPY functions /home/site/wwwroot/functions
COPY qscore /home/site/wwwroot/qscore
USER 10001:10001
EXPOSE 8080
# Labels last, so their values (which change every commit) invalidate no other layer. The
# release tool passes them; org.opencontainers.image.* are the OCI annotation keys.
ARG BASE_IMAGE
ARG QSCORE_REVISION=unknown
ARG QSCORE_VERSION=dev
LABEL org.opencontainers.image.title="qscore-functions" \
      org.opencontainers.image.revision="${QSCORE_REVISION}" \
      org.opencontainers.image.version="${QSCORE_VERSION}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
