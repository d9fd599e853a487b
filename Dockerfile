# lstm-math: the pipeline's image. Every step of the Kubeflow pipeline, every training and
# tuning worker on Kubernetes, and Beam's SDK workers (custom container) run it.
#
#   docker build -t ghcr.io/OWNER/lstm-math:0.1.0 .                          # CPU
#   docker build --build-arg VARIANT=gpu -t ghcr.io/OWNER/lstm-math:0.1.0-gpu .   # CUDA
#   docker build --build-arg EXTRAS=kfp,gcp -t ... .       # + gs:// and Dataflow
#   docker push ghcr.io/OWNER/lstm-math:0.1.0
#
# Then: lstm-math compile-kfp --config default --set cluster.image=ghcr.io/OWNER/lstm-math:0.1.0 lstm_math.yaml
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

# cpu: tensorflow from PyPI (uses no GPU); gpu: tensorflow[and-cuda] (CUDA and cuDNN from
# NVIDIA's wheels; the node needs only the driver and the NVIDIA device plugin).
ARG VARIANT=cpu
# Optional parts of setup.py: kfp (the pipeline SDK: its lightweight components import it),
# gcp (gs:// pipeline roots, DataflowRunner).
ARG EXTRAS=kfp

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2

RUN groupadd --gid 1000 lstm && useradd --uid 1000 --gid 1000 --create-home lstm \
    && mkdir -p /data && chown lstm:lstm /data

WORKDIR /opt/lstm-math

# 1. Dependencies only: this layer is rebuilt when setup.py changes, not when the code does.
# The empty folders stand in for the packages (setup.py maps them to lstm_math.<folder>).
COPY setup.py pyproject.toml ./
RUN mkdir -p config pipeline components serving \
    && touch config/__init__.py pipeline/__init__.py components/__init__.py serving/__init__.py \
    && pip install ".[${EXTRAS}]" \
    && if [ "${VARIANT}" = "gpu" ]; then pip install "tensorflow[and-cuda]>=2.21,<2.22"; fi \
    && pip uninstall -y lstm-math \
    && rm -rf config pipeline components serving build ./*.egg-info

# 2. The project itself (no dependency resolution: they are all there).
COPY config ./config
COPY pipeline ./pipeline
COPY components ./components
COPY serving ./serving
RUN pip install --no-deps . && rm -rf build ./*.egg-info && lstm-math --help > /dev/null

USER 1000:1000
WORKDIR /home/lstm
CMD ["lstm-math", "--help"]
