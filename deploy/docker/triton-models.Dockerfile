# syntax=docker/dockerfile:1.7
# The model repository as an image, exactly what the MLflow registry says is released: the
# output of `qscore release package --output build/release` (every version with an alias or a
# flight, numbered as in the registry) at /models. An init container in the Triton pod copies it
# into a shared volume, so a model release is a small image and the Triton server image
# (nvcr.io/nvidia/tritonserver, pinned in deploy/base/triton/deployment.yaml) never has to be
# rebuilt. Rollback: move the alias (`qscore model rollback NAME`) and run the release again.
#   qscore release package --output build/release
#   docker build -f deploy/docker/triton-models.Dockerfile -t qscore-triton-models:<tag> .
# BASE_IMAGE: anything with `cp` (the init container's command).
ARG BASE_IMAGE=busybox:1.36.1-musl
FROM ${BASE_IMAGE}
COPY --chown=65532:65532 build/release/triton_repo/ /models/
# What went in (versions, aliases, SHA-256 per file), outside the copied repository.
COPY --chown=65532:65532 build/release/release.json /release.json
USER 65532:65532
CMD ["ls", "-R", "/models"]
