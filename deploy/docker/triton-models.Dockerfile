# syntax=docker/dockerfile:1.7
# The model repository as an image: triton_repo/ (config.pbtxt + versioned model files) at
# /models. An init container in the Triton pod copies it into a shared volume, so a model
# release is a small image and the Triton server image (nvcr.io/nvidia/tritonserver,
# pinned in deploy/base/triton/deployment.yaml) never has to be rebuilt.
#   docker build -f deploy/docker/triton-models.Dockerfile -t qscore-triton-models:<tag> .
FROM busybox:1.36.1-musl
COPY --chown=65532:65532 triton_repo/ /models/
USER 65532:65532
CMD ["ls", "-R", "/models"]
