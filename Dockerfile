# kubeinfer images, one file, three targets:
#   operator     the operator, the gateway and the provider proxies (no torch)
#   server       the model server for built-in and Hugging Face models on CPU: ONNX
#                Runtime and tokenizers, no torch; it serves models whose ONNX export is
#                in the model cache (written by `kubeinfer export` or by a server with torch)
#   server-cuda  the model server with torch, on NVIDIA GPUs (and on CPU, exporting)
#
#   make images                                    # buildah, bases made from Debian's packages
#   docker build --target operator    -t ghcr.io/kubeinfer/kubeinfer:0.1.0 .
#   docker build --target server      -t ghcr.io/kubeinfer/kubeinfer-server:0.1.0 .
#   docker build --target server-cuda -t ghcr.io/kubeinfer/kubeinfer-server-cuda:0.1.0 .
#
# Each final stage holds a virtual environment built in earlier stages and nothing else
# of the build: no pip (not even the venv's), no pip cache (a cache mount, kept by the
# builder between builds), no compilers, no sources. It arrives in two layers: the
# dependencies (build-TARGET, keyed by pyproject.toml alone) and the package itself
# (build-TARGET-package, under 1 MB), so a change of the code adds a small layer to
# store, push and pull, never another copy of torch. No HEALTHCHECK: Kubernetes probes
# /healthz and /readyz.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04
ARG TORCH_VERSION=2.13.0
ARG TORCH_CUDA_INDEX=https://download.pytorch.org/whl/cu128

# ---------------------------------------------------------------- build stages

FROM ${PYTHON_IMAGE} AS requirements
WORKDIR /src
COPY pyproject.toml ./
# The requirements of each image, from pyproject.toml alone (a change of the code leaves
# them, and the layers that install them, as they were): requirements-base.txt (the
# operator's), -cpu.txt (with the CPU server's extra) and -server.txt (with torch's too).
RUN python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
extras = p["optional-dependencies"]; chain = {"base": [], "cpu": ["cpu"], "server": ["cpu", "server"]}; \
[open(f"/requirements-{name}.txt", "w").write("\n".join(p["dependencies"] + [r for x in xs for r in extras[x] \
 if not r.startswith("kubeinfer[")]) + "\n") for name, xs in chain.items()]'

# The project's sources, shared by the build stages.
FROM ${PYTHON_IMAGE} AS sources
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kubeinfer ./kubeinfer
COPY model_server ./model_server
COPY operator ./operator

# The package and its light dependencies, without torch.
FROM ${PYTHON_IMAGE} AS build-operator
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=requirements /requirements-base.txt /requirements.txt
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv /opt/kubeinfer \
    && /opt/kubeinfer/bin/pip install --requirement /requirements.txt
RUN /opt/kubeinfer/bin/pip uninstall --yes pip

# The package alone, in a tree of its own (/package/opt/kubeinfer) that the final stage
# lays over the dependencies: pip from a throwaway venv builds its wheel once and installs
# it for the venv's Python, compiled with the paths it will have; installed in the venv
# too, for `pip check`.
FROM build-operator AS build-operator-package
COPY --from=sources /src /src
RUN python3 -m venv /tmp/pip \
    && /tmp/pip/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/wheel /src \
    && /tmp/pip/bin/pip --python /opt/kubeinfer/bin/python install --no-cache-dir --no-deps --no-compile \
        --no-warn-script-location --root /package /tmp/wheel/kubeinfer-*.whl \
    && /opt/kubeinfer/bin/python -m compileall -q -s /package -p / /package/opt/kubeinfer/lib \
    && /tmp/pip/bin/pip --python /opt/kubeinfer/bin/python install --no-cache-dir --no-deps /tmp/wheel/kubeinfer-*.whl \
    && /tmp/pip/bin/pip --python /opt/kubeinfer/bin/python check

# The lean CPU server: ONNX Runtime, tokenizers and numpy; no torch, no transformers.
FROM ${PYTHON_IMAGE} AS build-server
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=requirements /requirements-cpu.txt /requirements.txt
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv /opt/kubeinfer \
    && /opt/kubeinfer/bin/pip install --requirement /requirements.txt
RUN /opt/kubeinfer/bin/pip uninstall --yes pip

FROM build-server AS build-server-package
COPY --from=sources /src /src
RUN python3 -m venv /tmp/pip \
    && /tmp/pip/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/wheel /src \
    && /tmp/pip/bin/pip --python /opt/kubeinfer/bin/python install --no-cache-dir --no-deps --no-compile \
        --no-warn-script-location --root /package /tmp/wheel/kubeinfer-*.whl \
    && /opt/kubeinfer/bin/python -m compileall -q -s /package -p / /package/opt/kubeinfer/lib \
    && /tmp/pip/bin/pip --python /opt/kubeinfer/bin/python install --no-cache-dir --no-deps /tmp/wheel/kubeinfer-*.whl \
    && /tmp/pip/bin/pip --python /opt/kubeinfer/bin/python check

# On the CUDA base the venv is built with that image's own Python, so the final stage
# (the same base) runs it as built. CUDA libraries come with torch's wheels.
FROM ${CUDA_IMAGE} AS build-server-cuda
ARG TORCH_VERSION
ARG TORCH_CUDA_INDEX
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv /opt/kubeinfer \
    && /opt/kubeinfer/bin/pip install --index-url "${TORCH_CUDA_INDEX}" "torch==${TORCH_VERSION}"
COPY --from=requirements /requirements-server.txt /requirements.txt
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/kubeinfer/bin/pip install --requirement /requirements.txt "torch==${TORCH_VERSION}"
RUN /opt/kubeinfer/bin/pip uninstall --yes pip

FROM build-server-cuda AS build-server-cuda-package
COPY --from=sources /src /src
RUN python3 -m venv /tmp/pip \
    && /tmp/pip/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/wheel /src \
    && /tmp/pip/bin/pip --python /opt/kubeinfer/bin/python install --no-cache-dir --no-deps --no-compile \
        --no-warn-script-location --root /package /tmp/wheel/kubeinfer-*.whl \
    && /opt/kubeinfer/bin/python -m compileall -q -s /package -p / /package/opt/kubeinfer/lib \
    && /tmp/pip/bin/pip --python /opt/kubeinfer/bin/python install --no-cache-dir --no-deps /tmp/wheel/kubeinfer-*.whl

# ---------------------------------------------------------------- final stages

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/kubeinfer/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    HF_HOME=/var/cache/kubeinfer/huggingface
# The base image's own pip goes too, where it has one: nothing installs at run time.
RUN if python3 -m pip --version >/dev/null 2>&1; then python3 -m pip uninstall --yes pip setuptools wheel; fi \
    && groupadd --gid 10001 kubeinfer \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin kubeinfer \
    && mkdir -p /var/cache/kubeinfer \
    && chown 10001:10001 /var/cache/kubeinfer
WORKDIR /tmp
ENTRYPOINT ["kubeinfer"]

FROM runtime AS operator
COPY --from=build-operator /opt/kubeinfer /opt/kubeinfer
COPY --from=build-operator-package /package/opt/kubeinfer /opt/kubeinfer
USER 10001:10001
EXPOSE 8080 9090 9200
CMD ["operator"]

FROM runtime AS server
COPY --from=build-server /opt/kubeinfer /opt/kubeinfer
COPY --from=build-server-package /package/opt/kubeinfer /opt/kubeinfer
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
COPY --from=build-server-cuda-package /package/opt/kubeinfer /opt/kubeinfer
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["kubeinfer"]
CMD ["serve", "--config", "/etc/kubeinfer/endpoint.yaml"]
