# One image for every role of the Flower deployment in docker-compose.yml: SuperLink,
# ServerApp SuperExec, SuperNodes (ClientApps in subprocesses) and the one-shot `submit`.
#
# Built and run end to end by scripts/compose-e2e.sh (docs: how-to/deploy.md). Standard use:
#   DOCKER_BUILDKIT=1 docker build -t fl-sim:local .
# Where no registry is reachable (our CI machines), a Debian base made with debootstrap and
# the default package index only (the PyTorch CPU index is unreachable there):
#   DOCKER_BUILDKIT=1 docker build --network host --build-arg BASE=fl-base:bookworm \
#     --build-arg TORCH_INDEX= --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt -t fl-sim:local .
# The CA bundle is a build secret: mounted for the pip install only, never stored in a layer.
ARG BASE=python:3.11-slim
FROM ${BASE}

# PyTorch's CPU index: `torch==2.14.1` (constraints.txt) then resolves to 2.14.1+cpu, without
# several GB of CUDA wheels. Empty: the default index only (CUDA wheels, ~6.8 GB).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG UID=1000

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FLWR_TELEMETRY_ENABLED=0 \
    FLWR_DISABLE_UPDATE_CHECK=1 \
    FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 \
    FL_SIM_CACHE=/cache \
    FLWR_HOME=/home/flsim/.flwr \
    PYTHONPATH=/app \
    PATH=/opt/venv/bin:$PATH

# A venv, so the same steps work on python:3.11-slim and on Debian's python3 (PEP 668).
# The dependencies first (their own layer, kept while only the sources change), then the
# project itself without dependencies.
WORKDIR /app
COPY constraints.txt pyproject.toml /app/
RUN --mount=type=secret,id=ca,required=false \
    set -eu; \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    python3 -m venv /opt/venv; \
    python3 -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > /tmp/requirements.txt; \
    pip install -c constraints.txt ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} -r /tmp/requirements.txt; \
    useradd --create-home --uid "$UID" flsim; \
    mkdir -p /results /cache /home/flsim/.flwr; \
    chown flsim:flsim /results /cache /home/flsim/.flwr
COPY README.md /app/
COPY attacks /app/attacks
COPY models /app/models
COPY fl_sim /app/fl_sim
COPY experiments /app/experiments
RUN pip install --no-deps --no-build-isolation . && rm -rf /app/build

# Every role runs unprivileged; /results and /cache are the mount points (owned by flsim).
USER flsim
CMD ["fl-sim", "--help"]
