# The image every task of a compiled Kubeflow pipeline runs (docs/kubeflow.md): the project
# installed, its conf/ at /app, no data (each task mounts the shared volume at /app/data).
#
#   docker build -t <registry>/skeleton-attention:<tag> .          # CPU torch
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 \
#       -t <registry>/skeleton-attention:<tag>-cuda .              # CUDA torch, for the GPU tasks
#
# The CUDA wheels bring their own CUDA runtime: the cluster's GPU nodes need only the NVIDIA driver
# and device plugin. Same torch version either way (the project pins torch==2.13.0).

# --- 1. the project's wheel, with its optional C extensions (NTU parser, alignment fits: setup.py) ----
FROM python:3.11-slim AS wheel
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY pyproject.toml setup.py README.md ./
COPY src/ src/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- 2. the runtime image: torch first, then the project ---------------------------------------------
FROM python:3.11-slim
ARG TORCH_VERSION=2.13.0
# where torch comes from: the CPU wheels by default (PyPI's Linux torch is the CUDA build)
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DO_NOT_TRACK=1 \
    KEDRO_DISABLE_TELEMETRY=true \
    MLFLOW_DISABLE_TELEMETRY=true \
    DVC_NO_ANALYTICS=1

# torch before the project, pinned: the project's torch==2.13.0 is then met (2.13.0+cpu or +cu128
# both match), so installing the project never swaps in another torch build
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

COPY --from=wheel /wheels /wheels
RUN pip install /wheels/*.whl \
    && rm -rf /wheels \
    && python -c "from skeleton_attention.skeletons import ntu; assert ntu.FAST_PARSER_AVAILABLE, 'no C parser'"

# The Kedro project around the installed package: pyproject.toml (Kedro finds the project by it),
# the telemetry opt-out, conf/. src/ stays empty, so the installed package (with its compiled
# parser) is the one imported; data/ and mlruns/ are where the tasks mount the shared volume.
WORKDIR /app
COPY pyproject.toml .telemetry ./
COPY conf/ conf/
RUN mkdir -p src data mlruns conf/local

CMD ["kedro", "info"]
