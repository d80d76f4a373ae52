# syntax=docker/dockerfile:1.7
# The model repository as an image: triton_repo/ (config.pbtxt + versioned model files) at
# /models. An init container in the Triton pod copies it into a shared volume, so a model
# release is a small image and the Triton server image (nvcr.io/nvidia/tritonserver,
# pinned in deploy/base/triton/deployment.yaml) never has to be rebuilt.
# Built by `qscore release images` (it labels the image with the model versions inside), or:
#   docker build -f deploy/docker/triton-models.Dockerfile -t qscore-triton-models:<tag> .
# BASE_IMAGE: anything with `cp` (the init container's command); the release tool uses its
# Debian 12 base where busybox cannot be pulled.
ARG BASE_IMAGE=busybox:1.36.1-musl
FROM ${BASE_IMAGE}
COPY --chown=65532:65532 triton_repo/ /models/
USER 65532:65532
CMD ["ls", "-R", "/models"]
# Labels last, so their values (which change every commit) invalidate no other layer. The
# release tool passes them; org.opencontainers.image.* are the OCI annotation keys.
ARG BASE_IMAGE
ARG QSCORE_REVISION=unknown
ARG QSCORE_VERSION=dev
# name=versions;...: the numbered version folders of each model inside (from triton_repo/).
ARG QSCORE_MODELS=
LABEL org.opencontainers.image.title="qscore-triton-models" \
      org.opencontainers.image.revision="${QSCORE_REVISION}" \
      org.opencontainers.image.version="${QSCORE_VERSION}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" \
      dev.qscore.models="${QSCORE_MODELS}"
