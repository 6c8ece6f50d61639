# The one image for the operator and the workers (`python -m hean.operator`,
# `python -m hean.worker`). Market data is mounted at run time (hostPath), never baked in.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends g++ cmake ninja-build && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml CMakeLists.txt README.md ./
COPY native native
COPY src src
COPY operator operator
COPY worker worker
RUN pip wheel --no-deps -w /wheels . && pip wheel -w /wheels /wheels/hean-*.whl

FROM python:3.11-slim
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin hean
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001:10001
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
ENTRYPOINT []
CMD ["python", "-m", "hean.worker"]
