# One image for every role of the Flower deployment in docker-compose.yml: SuperLink,
# ServerApp SuperExec, SuperNodes (ClientApps in subprocesses) and the one-shot `submit`.
#
# UNTESTED: the machines this project is developed on have no Docker engine; CI only
# validates docker-compose.yml with `docker-compose config` (tests/test_compose.py).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FLWR_TELEMETRY_ENABLED=0 \
    FLWR_DISABLE_UPDATE_CHECK=1 \
    FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 \
    FL_SIM_CACHE=/cache \
    PYTHONPATH=/app

WORKDIR /app
COPY . /app

# CPU-only torch: on the PyTorch CPU index `torch==2.14.1` (constraints.txt) resolves to
# 2.14.1+cpu, which skips several GB of CUDA wheels. Only here: the project's own installs
# (README, CI) use the default index, which is all these machines can reach.
RUN pip install -c constraints.txt --extra-index-url https://download.pytorch.org/whl/cpu . \
    && mkdir -p /results /cache

# `flwr run` builds the app bundle from /app, and fl_sim finds pyproject.toml there through
# PYTHONPATH=/app (the same sources as the installed copy).
CMD ["fl-sim", "--help"]
