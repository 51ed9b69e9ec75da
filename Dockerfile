# One image for every role of a distributed llmload run: Locust master, Locust workers and the emulator.
# Build: docker build -t llmload .   (see docs/distributed.md)
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Pinned dependencies first, so code edits do not reinstall them.
COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY pyproject.toml README.md ./
COPY llmload ./llmload
COPY locustfiles ./locustfiles
COPY config ./config
RUN pip install --no-deps . \
    && useradd --create-home --uid 10001 llmload \
    && mkdir -p /app/reports \
    && chown llmload /app/reports

USER llmload

# 8089: Locust web UI (master), 5557: master <-> worker messages, 8000: emulator.
EXPOSE 8089 5557 8000

CMD ["locust", "-f", "locustfiles/chat.py", "--help"]
