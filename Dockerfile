# One image for every worker and the web service (the compose services choose which runs).

# the student page's script: livekit-client bundled exactly as locked
FROM node:20-slim AS frontend
WORKDIR /src/agent/web/frontend
COPY agent/web/frontend/package.json agent/web/frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY agent/web/frontend/src ./src
RUN npm run build

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
COPY --from=frontend /src/agent/web/static/student.js /src/agent/web/static/student.js.map ./agent/web/static/
# the tutor roster (TUTOR_ROSTER names another file, e.g. one mounted from the host)
COPY tutors.toml ./
# the labelled set of `python -m agent eval`
COPY evals ./evals
# /app/data holds the records store's SQLite file (a named volume in compose)
RUN uv sync --frozen --no-dev && mkdir -p /app/data && chown -R tutor:tutor /app

USER tutor
# model files the plugins fetch at run time are fetched now, at build time
RUN python -m livekit.agents download-files

# the web service; worker health ports are picked per replica (WORKER_HTTP_PORT=0)
EXPOSE 8080
CMD ["python", "-m", "livekit.agents", "start", "agent/workers/orchestrator.py"]
