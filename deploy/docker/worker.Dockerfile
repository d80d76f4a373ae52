# syntax=docker/dockerfile:1.7
# The scoring worker: `qscore worker`. Build from the repo root:
#   docker build -f deploy/docker/worker.Dockerfile -t qscore-worker:<tag> .
# Only the serving dependencies are installed: the local Triton (nvidia-pytriton),
# onnxruntime, training, plotting and Functions packages stay out of the image.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY qscore ./qscore
COPY workers ./workers
COPY functions ./functions
COPY qscore_cli ./qscore_cli
COPY qscore_local ./qscore_local
COPY qscore_tools ./qscore_tools
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade pip \
 # Serving dependencies = pyproject's list minus what the worker never imports.
 && python - <<'PY' > /tmp/requirements.txt
import tomllib
skip = ("nvidia-pytriton", "onnxruntime", "matplotlib", "azure-functions", "python-qpid-proton")
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print("\n".join(d for d in deps if not d.startswith(skip)))
PY
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt \
 && /opt/venv/bin/pip install --no-deps .

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/venv /opt/venv
RUN groupadd --gid 10001 qscore && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin qscore
USER 10001:10001
EXPOSE 8080
# SIGTERM starts the worker's drain (QSCORE_DRAIN_GRACE_S); exec form so it reaches Python.
ENTRYPOINT ["qscore"]
CMD ["worker"]
