# syntax=docker/dockerfile:1.7
# The model repository as an image, exactly what the MLflow registry says is released: the
# output of `qscore release package --output build/release` (every version with an alias or a
# flight, numbered as in the registry) at /models. An init container in the Triton pod copies it
# into a shared volume, so a model release is a small image and the Triton server image
# (nvcr.io/nvidia/tritonserver, pinned in deploy/base/triton/deployment.yaml) never has to be
# rebuilt. Rollback: move the alias (`qscore model rollback NAME`) and run the release again.
# Built by `qscore release images [--package build/release]` (it labels the image with the model
# versions inside), or:
#   qscore release package --output build/release
#   docker build -f deploy/docker/triton-models.Dockerfile \
#     --build-arg MODELS_DIR=build/release/triton_repo -t qscore-triton-models:<tag> .
# MODELS_DIR defaults to the committed triton_repo/ (local builds and the smoke test).
# BASE_IMAGE: anything with `cp` (the init container's command); the release tool uses its
# Debian 12 base where busybox cannot be pulled.
ARG BASE_IMAGE=busybox:1.36.1-musl
FROM ${BASE_IMAGE}
ARG MODELS_DIR=triton_repo
COPY --chown=65532:65532 ${MODELS_DIR}/ /models/
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
