# syntax=docker/dockerfile:1.7
# The Azure Functions app (function_app.py + functions/ + the shared qscore core) for AKS.
#   docker build -f deploy/docker/functions.Dockerfile -t qscore-functions:<tag> .
# The Functions host listens on 8080 so it can run as a non-root user.
ARG FUNCTIONS_IMAGE=mcr.microsoft.com/azure-functions/python:4-python3.11

FROM ${FUNCTIONS_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY qscore ./qscore
COPY workers ./workers
COPY functions ./functions
COPY qscore_cli ./qscore_cli
COPY qscore_local ./qscore_local
COPY qscore_tools ./qscore_tools
RUN python - <<'PY' > /tmp/requirements.txt
import tomllib
skip = ("nvidia-pytriton", "onnxruntime", "matplotlib", "python-qpid-proton")
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print("\n".join(d for d in deps if not d.startswith(skip)))
PY
RUN pip install --target /home/site/wwwroot/.python_packages/lib/site-packages -r /tmp/requirements.txt \
 && pip install --no-deps --target /home/site/wwwroot/.python_packages/lib/site-packages .

FROM ${FUNCTIONS_IMAGE}
ENV AzureWebJobsScriptRoot=/home/site/wwwroot \
    AzureFunctionsJobHost__Logging__Console__IsEnabled=true \
    FUNCTIONS_WORKER_RUNTIME=python \
    ASPNETCORE_URLS=http://+:8080
COPY --from=build /home/site/wwwroot/.python_packages /home/site/wwwroot/.python_packages
COPY host.json function_app.py /home/site/wwwroot/
COPY functions /home/site/wwwroot/functions
RUN groupadd --gid 10001 qscore && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin qscore \
 && chown -R 10001:10001 /home/site/wwwroot
USER 10001:10001
EXPOSE 8080
