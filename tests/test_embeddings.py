"""Embeddings through the real openai and boto3 SDKs against the emulator, and a headless embeddings locust run."""

from __future__ import annotations

import base64
import json
import math
import random
import struct
import subprocess
from typing import Any

import boto3
import openai
import pytest
from botocore.config import Config

from llmload.config import load_scenarios
from llmload.emulator import EmulatorProcess
from llmload.errors import ErrorKind
from llmload.metrics import RequestRecord, measure
from llmload.providers.base import Provider, ProviderSettings
from llmload.providers.bedrock import BedrockProvider
from llmload.providers.openai import OpenAIProvider
from llmload.providers.openai_fast import OpenAIFastProvider
from llmload.results import BenchmarkScenario
from llmload.types import EmbeddingRequest
from llmload.workload import execute
from tests.conftest import LOCUST, REPO, locust_env
from tests.raw_http import RawHTTPServer

TEXTS = ["load testing under peak traffic", "time to first token", "percentiles describe the tail"]


def _embed(provider: Provider, request: EmbeddingRequest) -> RequestRecord:
    return measure(provider.embed(request), provider=provider.name, model=request.model, scenario="emb",
                   endpoint="embeddings", streamed=False)


def _vectors(data: list[Any]) -> list[list[float]]:
    """The SDK hands back floats, except for an explicit ``encoding_format="base64"``: then the raw string."""
    vectors = []
    for item in data:
        embedding = item.embedding
        if isinstance(embedding, str):
            raw = base64.b64decode(embedding)
            embedding = list(struct.unpack(f"<{len(raw) // 4}f", raw))
        vectors.append(embedding)
    return vectors


@pytest.mark.parametrize("encoding_format", ["float", "base64", None])
def test_openai_sdk_gets_the_same_vectors_in_every_encoding(
    emulator: EmulatorProcess, encoding_format: str | None
) -> None:
    """``None``: the SDK's default, which asks for base64 and decodes it itself (provider-protocols.md §0.8)."""
    client = openai.OpenAI(base_url=f"{emulator.url}/v1", api_key="unused", max_retries=0)
    reference = client.embeddings.create(model="m", input=TEXTS, dimensions=64, encoding_format="float")
    extra: dict[str, Any] = {"encoding_format": encoding_format} if encoding_format else {}
    response = client.embeddings.create(model="m", input=TEXTS, dimensions=64, **extra)
    client.close()
    vectors = _vectors(response.data)
    assert [len(v) for v in vectors] == [64, 64, 64]
    assert isinstance(response.data[0].embedding, str) is (encoding_format == "base64")
    for got, want in zip(vectors, _vectors(reference.data), strict=True):
        # base64 carries float32, the JSON floats are float64: equal to float32 precision.
        assert all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7) for a, b in zip(got, want, strict=True))
    assert vectors[0] != vectors[1]
    assert math.isclose(sum(v * v for v in vectors[0]), 1.0, rel_tol=1e-5)


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_openai_adapter_embeds(emulator: EmulatorProcess, encoding_format: Any) -> None:
    provider = OpenAIProvider(ProviderSettings(base_url=f"{emulator.url}/v1", emulated=True))
    record = _embed(provider, EmbeddingRequest(model="text-embedding-3-small", inputs=TEXTS,
                                               encoding_format=encoding_format, dimensions=32))
    provider.close()
    assert record.ok, record.error_message
    (truth,) = [t for t in emulator.truth() if t["endpoint"] == "embeddings"][-1:]
    assert record.input_tokens == truth["input_tokens"] > 0
    assert record.output_tokens == 0 and record.ttft_ms is None


def _boto(url: str) -> Any:
    return boto3.session.Session().client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=url, aws_access_key_id="test",
        aws_secret_access_key="test", config=Config(signature_version="v4", retries={"total_max_attempts": 1}),
    )


@pytest.mark.parametrize("dimensions", [256, 512, 1024])
def test_titan_v2_body_and_dimensions(emulator: EmulatorProcess, dimensions: int) -> None:
    body = {"inputText": "hello", "dimensions": dimensions, "normalize": True}
    response = _boto(emulator.url).invoke_model(modelId="amazon.titan-embed-text-v2:0", body=json.dumps(body))
    payload = json.loads(response["body"].read())
    assert len(payload["embedding"]) == dimensions == len(payload["embeddingsByType"]["float"])
    assert payload["inputTextTokenCount"] >= 1


def test_cohere_v3_bodies(emulator: EmulatorProcess) -> None:
    client = _boto(emulator.url)
    plain = json.loads(client.invoke_model(
        modelId="cohere.embed-english-v3", body=json.dumps({"texts": TEXTS, "input_type": "search_document"}),
    )["body"].read())
    assert plain["response_type"] == "embeddings_floats" and plain["texts"] == TEXTS
    assert [len(v) for v in plain["embeddings"]] == [1024, 1024, 1024]
    typed = json.loads(client.invoke_model(
        modelId="cohere.embed-english-v3",
        body=json.dumps({"texts": TEXTS, "input_type": "search_query", "embedding_types": ["float"]}),
    )["body"].read())
    assert typed["response_type"] == "embeddings_by_type" and typed["embeddings"]["float"] == plain["embeddings"]


@pytest.mark.parametrize(("model", "calls"), [("amazon.titan-embed-text-v2:0", 3), ("cohere.embed-english-v3", 1)])
def test_bedrock_adapter_embeds(emulator: EmulatorProcess, model: str, calls: int) -> None:
    provider = BedrockProvider(ProviderSettings(base_url=emulator.url, emulated=True))
    since = max((t["received_at"] for t in emulator.truth()), default=0.0)
    record = _embed(provider, EmbeddingRequest(model=model, inputs=TEXTS))
    provider.close()
    assert record.ok, record.error_message
    truth = [t for t in emulator.truth(since) if t["received_at"] > since]
    # Titan embeds one text per call, so a batch of three is three calls measured as one request.
    assert len(truth) == calls and all(t["model"] == model for t in truth)
    assert record.input_tokens == sum(t["input_tokens"] for t in truth)


def test_bedrock_titan_rejects_unsupported_dimensions(emulator: EmulatorProcess) -> None:
    provider = BedrockProvider(ProviderSettings(base_url=emulator.url, emulated=True))
    record = _embed(provider, EmbeddingRequest(model="amazon.titan-embed-text-v2:0", inputs=["x"], dimensions=100))
    provider.close()
    assert record.error_kind == ErrorKind.BAD_REQUEST and record.status_code == 400


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["openai", "bedrock", "ollama"])
def test_headless_embeddings_run(tmp_path, provider: str) -> None:
    proc = subprocess.run(
        [LOCUST, "-f", "locustfiles/embeddings.py", "--headless", "-u", "2", "-r", "2", "-t", "3s",
         "--stop-timeout", "5", "--provider", provider, "--run-name", "emb", "--report-dir", str(tmp_path),
         "--only-summary", "--emulator-ttft-ms", "20"],
        cwd=REPO, env=locust_env(), capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (result,) = json.loads((tmp_path / "emb" / "result.json").read_text())["results"]
    assert result["scenario"] == "embedding_generation" and result["requests_failed"] == 0
    defaults = {"openai": "text-embedding-3-small", "bedrock": "amazon.titan-embed-text-v2:0",
                "ollama": "nomic-embed-text"}
    assert result["model"] == defaults[provider]
    assert result["requests_ok"] >= 10
    assert result["tokens"]["input_tokens"] > 0 and result["tokens"]["output_tokens"] == 0


def _raw_embeddings_server(dimensions: int) -> RawHTTPServer:
    """An OpenAI-protocol server that answers every embeddings call with one base64 vector of ``dimensions``,
    whatever was asked: a server that ignores ``dimensions``."""
    vector = base64.b64encode(struct.pack(f"<{dimensions}f", *([0.5] * dimensions))).decode()
    body = json.dumps({"object": "list", "model": "m", "usage": {"prompt_tokens": 2, "total_tokens": 2},
                       "data": [{"object": "embedding", "index": 0, "embedding": vector}]}).encode()
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    return RawHTTPServer(lambda _: head + body)


@pytest.mark.parametrize("provider_cls", [OpenAIProvider, OpenAIFastProvider])
def test_a_vector_of_other_dimensions_than_asked_is_a_failure(provider_cls: type[Provider]) -> None:
    server = _raw_embeddings_server(3)
    try:
        provider = provider_cls(ProviderSettings(base_url=f"{server.url}/v1", emulated=True))
        wrong = _embed(provider, EmbeddingRequest(model="m", inputs=["a"], encoding_format="base64", dimensions=8))
        right = _embed(provider, EmbeddingRequest(model="m", inputs=["a"], encoding_format="base64", dimensions=3))
        provider.close()
    finally:
        server.close()
    assert not wrong.ok and wrong.error_kind == ErrorKind.MALFORMED_STREAM
    assert "wrong dimensions (asked for 8, got [3])" in (wrong.error_message or "")
    assert right.ok, right.error_message


def test_embedding_scenario_sends_its_dimensions(emulator: EmulatorProcess) -> None:
    """The shipped ``embedding_base64_256`` scenario: 256-dimension base64 vectors, checked by the adapter."""
    scenario = load_scenarios(REPO / "config" / "scenarios.yaml")["embedding_base64_256"]
    assert (scenario.dimensions, scenario.encoding_format) == (256, "base64")
    for provider_cls in (OpenAIProvider, OpenAIFastProvider):
        provider = provider_cls(ProviderSettings(base_url=f"{emulator.url}/v1", emulated=True))
        record = execute(provider, scenario, "text-embedding-3-small", random.Random(0))
        provider.close()
        assert record.ok, record.error_message
    server = _raw_embeddings_server(3)
    provider = OpenAIProvider(ProviderSettings(base_url=f"{server.url}/v1", emulated=True))
    short = BenchmarkScenario(name="short", endpoint="embeddings", dimensions=16)
    assert execute(provider, short, "m", random.Random(0)).error_kind == ErrorKind.MALFORMED_STREAM
    provider.close()
    server.close()
