# GPU image for cluster runs. Not built in CI (the development machines have no Docker engine);
# the tag follows the official pytorch/pytorch naming and matches the pinned torch 2.14.1+cu130.
# Run it with --shm-size large enough for the reader's batch slots (docs/shards.md): Docker's
# default 64 MB /dev/shm fits 2 workers with 128-image batches of 144 px (48 MB), not more.
ARG BASE_IMAGE=pytorch/pytorch:2.14.1-cuda13.0-cudnn9-devel
FROM ${BASE_IMAGE}

# devel image: DeepSpeed JIT-compiles its CUDA ops with nvcc on first use.
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/facetrain
COPY setup.py ./
COPY requirements/constraints.txt requirements/
COPY launcher/ launcher/
COPY facetrain/ facetrain/
COPY medtrain/ medtrain/
COPY shards/ shards/
COPY configs/ configs/
RUN pip install --no-cache-dir -c requirements/constraints.txt . \
 && python -c "import torch, deepspeed, webdataset, facenet_pytorch, simplejpeg; print(torch.__version__)"

# Prometheus metrics, one port per local rank (metrics.port + local rank; set
# metrics.address=0.0.0.0 so a scraper outside the container reaches them).
EXPOSE 9400-9407

ENTRYPOINT ["launch"]
CMD ["--help"]
