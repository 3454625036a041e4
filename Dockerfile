# kubeinfer images, one file, three targets:
#   operator     the operator, the gateway and the provider proxies (no torch)
#   server       the model server for built-in and Hugging Face models on CPU
#   server-cuda  the same on NVIDIA GPUs
#
#   docker build --target operator    -t ghcr.io/kubeinfer/kubeinfer:0.1.0 .
#   docker build --target server      -t ghcr.io/kubeinfer/kubeinfer-server:0.1.0 .
#   docker build --target server-cuda -t ghcr.io/kubeinfer/kubeinfer-server-cuda:0.1.0 .
#
# Each final stage holds a virtual environment built in an earlier stage and nothing
# else of the build: no pip cache, no compilers, no sources. No HEALTHCHECK: Kubernetes
# probes /healthz and /readyz.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04
ARG TORCH_VERSION=2.13.0
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_CUDA_INDEX=https://download.pytorch.org/whl/cu128

# ---------------------------------------------------------------- build stages

# The project's sources, shared by the build stages.
FROM ${PYTHON_IMAGE} AS sources
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kubeinfer ./kubeinfer
COPY model_server ./model_server
COPY operator ./operator

# The package and its light dependencies, without torch.
FROM ${PYTHON_IMAGE} AS build-operator
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/kubeinfer
COPY --from=sources /src /src
RUN /opt/kubeinfer/bin/pip install /src \
    && /opt/kubeinfer/bin/pip uninstall --yes pip

# CPU torch first, from PyTorch's CPU index, so the server extra does not pull CUDA.
FROM ${PYTHON_IMAGE} AS build-server
ARG TORCH_VERSION
ARG TORCH_CPU_INDEX
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/kubeinfer \
    && /opt/kubeinfer/bin/pip install --index-url "${TORCH_CPU_INDEX}" "torch==${TORCH_VERSION}"
COPY --from=sources /src /src
RUN /opt/kubeinfer/bin/pip install "/src[server]" "torch==${TORCH_VERSION}" \
    && /opt/kubeinfer/bin/pip uninstall --yes pip

# On the CUDA base the venv is built with that image's own Python, so the final stage
# (the same base) runs it as built. CUDA libraries come with torch's wheels.
FROM ${CUDA_IMAGE} AS build-server-cuda
ARG TORCH_VERSION
ARG TORCH_CUDA_INDEX
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/kubeinfer \
    && /opt/kubeinfer/bin/pip install --index-url "${TORCH_CUDA_INDEX}" "torch==${TORCH_VERSION}"
COPY --from=sources /src /src
RUN /opt/kubeinfer/bin/pip install "/src[server]" "torch==${TORCH_VERSION}" \
    && /opt/kubeinfer/bin/pip uninstall --yes pip

# ---------------------------------------------------------------- final stages

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/kubeinfer/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    HF_HOME=/var/cache/kubeinfer/huggingface
# The base image's own pip goes too: nothing installs at run time.
RUN python -m pip uninstall --yes pip setuptools wheel \
    && groupadd --gid 10001 kubeinfer \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin kubeinfer \
    && mkdir -p /var/cache/kubeinfer \
    && chown 10001:10001 /var/cache/kubeinfer
WORKDIR /tmp
ENTRYPOINT ["kubeinfer"]

FROM runtime AS operator
COPY --from=build-operator /opt/kubeinfer /opt/kubeinfer
USER 10001:10001
EXPOSE 8080 9090 9200
CMD ["operator"]

FROM runtime AS server
COPY --from=build-server /opt/kubeinfer /opt/kubeinfer
USER 10001:10001
EXPOSE 8080
CMD ["serve", "--config", "/etc/kubeinfer/endpoint.yaml"]

FROM ${CUDA_IMAGE} AS server-cuda
ENV PATH=/opt/kubeinfer/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    HF_HOME=/var/cache/kubeinfer/huggingface \
    DEBIAN_FRONTEND=noninteractive \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
# Python only: the venv's interpreter. No pip, no venv module, no compilers.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 kubeinfer \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin kubeinfer \
    && mkdir -p /var/cache/kubeinfer \
    && chown 10001:10001 /var/cache/kubeinfer
COPY --from=build-server-cuda /opt/kubeinfer /opt/kubeinfer
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["kubeinfer"]
CMD ["serve", "--config", "/etc/kubeinfer/endpoint.yaml"]
