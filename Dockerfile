# One image for every worker (the compose services choose which one to start).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    PATH=/app/.venv/bin:$PATH

RUN pip install --no-cache-dir uv==0.13.8 \
    && useradd --create-home --uid 10001 tutor

WORKDIR /app

# dependencies first, exactly as locked (this layer is reused until uv.lock changes)
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

COPY agent ./agent
# the tutor roster (TUTOR_ROSTER names another file, e.g. one mounted from the host)
COPY tutors.toml ./
# /app/data holds the records store's SQLite file (a named volume in compose)
RUN uv sync --frozen --no-dev && mkdir -p /app/data && chown -R tutor:tutor /app

USER tutor
# model files the plugins fetch at run time are fetched now, at build time
RUN python -m livekit.agents download-files

EXPOSE 8081 8082
CMD ["python", "-m", "livekit.agents", "start", "agent/workers/orchestrator.py"]
