# hangar's container image: `hangar serve --http` as a non-root user on a read-only root file system.
#
#   docker build -t hangar .                                   # from PyPI, on python:3.12-slim
#   docker build --build-arg EXTRAS=examples -t hangar .       # with extras (mcp, mcp-server-time)
#   docker run --read-only --tmpfs /run/hangar --tmpfs /tmp --tmpfs /var/lib/hangar -p 8000:8000 \
#       -e HANGAR_TOKENS=... -v ./hangar.yaml:/etc/hangar/hangar.yaml:ro hangar
#
# BASE is any image with python3 (>= 3.11) whose pip and venv work; nothing else is needed from it
# (no shell: every RUN is in exec form). Offline, build a wheelhouse for the base's Python first
# and hand it in (hangar itself is always built from the sources):
#   pip wheel --wheel-dir wheels '.[examples]' 'setuptools>=68' && rm wheels/hangar-*.whl
#   docker build --build-arg WHEELHOUSE=wheels --build-arg PIP_NO_INDEX=1 ...
# The index can be chosen with PIP_INDEX_URL / PIP_EXTRA_INDEX_URL / PIP_TRUSTED_HOST.
# docs/scaling.md describes the image and the Kubernetes manifests in deploy/kubernetes.
ARG BASE=python:3.12-slim

FROM ${BASE} AS build
ARG EXTRAS=""
ARG WHEELHOUSE=deploy/docker/wheelhouse
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_NO_INDEX
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore \
    PIP_FIND_LINKS=/wheels PYTHONDONTWRITEBYTECODE=1
COPY ${WHEELHOUSE}/ /wheels/
COPY pyproject.toml README.md /src/
COPY hangar/ /src/hangar/
COPY supervisors/ /src/supervisors/
COPY workers/ /src/workers/
# a venv without pip: the image runs hangar, it installs nothing
RUN ["python3", "-m", "venv", "--without-pip", "/opt/hangar"]
RUN ["python3", "-c", "\
import os, subprocess; extras = os.environ.get('EXTRAS', '').strip(); \
subprocess.run(['python3', '-m', 'pip', '--python', '/opt/hangar/bin/python', 'install', '--no-compile', \
'/src[%s]' % extras if extras else '/src'], check=True)"]
RUN ["/opt/hangar/bin/python", "-m", "compileall", "-q", "/opt/hangar/lib"]
# the writable places (volumes or tmpfs at run time): world-writable and sticky like /tmp, as an
# emptyDir is; hangar makes its own private directory in the runtime one
RUN ["python3", "-c", "\
import os; [(os.makedirs('/out' + d), os.chmod('/out' + d, 0o1777)) \
for d in ('/run/hangar', '/var/lib/hangar')]; os.makedirs('/out/etc/hangar')"]

FROM ${BASE}
COPY --from=build /opt/hangar /opt/hangar
COPY --from=build /out/ /
COPY deploy/docker/hangar.yaml /etc/hangar/hangar.yaml
# XDG_RUNTIME_DIR: hangar makes its own 0700 directory in it (/run/hangar/hangar) for each
# instance's ZeroMQ and control sockets, so a volume owned by root (an emptyDir, a tmpfs) will do;
# HOME holds what a provider writes (state)
ENV PATH=/opt/hangar/bin:/usr/local/bin:/usr/bin:/bin \
    XDG_RUNTIME_DIR=/run/hangar \
    HOME=/var/lib/hangar \
    HANGAR_HTTP_HOST=0.0.0.0 \
    HANGAR_HTTP_PORT=8000 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/hangar
EXPOSE 8000
# hangar's root is a child subreaper that reaps every orphan and stops its tree on SIGTERM, so it
# runs as PID 1 without an init (docker run --init works as well)
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 CMD ["python3", "-c", "\
import os, sys, urllib.request; \
url = 'http://127.0.0.1:%s/health/ready' % os.environ.get('HANGAR_HTTP_PORT', '8000'); \
sys.exit(0 if urllib.request.urlopen(url, timeout=2).status == 200 else 1)"]
ENTRYPOINT ["hangar"]
CMD ["serve", "--http", "--config", "/etc/hangar/hangar.yaml"]
