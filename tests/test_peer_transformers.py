"""An independent peer: real inference from `transformers serve`, driven through llmload's OpenAI adapter.

The emulator was written from the same reading of the protocol as the adapter, so agreement between them could hide
a shared mistake. `transformers serve` is someone else's OpenAI-compatible server doing real (tiny, randomly
initialised) Llama inference. It differs from the emulator where it matters: usage rides on the finish chunk,
`stream_options` is ignored and no `data: [DONE]` is ever sent.

The peer lives in `.peer-venv/` (built by scripts/test-deps.d/30-transformers-peer.sh). A missing venv fails the
test: a skip would leave CI green without the check ever having run.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmload.metrics import measure
from llmload.providers.base import ProviderSettings
from llmload.providers.openai import OpenAIProvider
from llmload.results import BenchmarkScenario
from llmload.types import ChatRequest
from llmload.workload import execute
from tests.conftest import LOCUST, REPO, locust_env

pytestmark = pytest.mark.slow

PEER_VENV = REPO / ".peer-venv"
MAX_TOKENS = 12

# Built in the peer venv (transformers is not a dependency of llmload): a byte-level BPE tokenizer trained on one
# line and a 2-layer Llama with hidden size 64, randomly initialised. ~0.5 MB, built in about a second.
BUILD_MODEL = """
import sys
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

out = sys.argv[1]
tok = Tokenizer(models.BPE(unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
tok.train_from_iterator(["load testing measures how a system behaves under expected and peak traffic"], trainer)
fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
fast.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\\n{% endfor %}"
                      "{% if add_generation_prompt %}assistant: {% endif %}")
fast.save_pretrained(out)
config = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                     bos_token_id=1, eos_token_id=2)
LlamaForCausalLM(config).save_pretrained(out)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"transformers serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"transformers serve not healthy after {timeout_s:.0f} s: {log.read_text()[-2000:]}")


def _warm_up(url: str, model: str) -> None:
    """The server loads the model on its first request (seconds on a busy machine); keep that out of the tests."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}).encode()
    request = urllib.request.Request(f"{url}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.status == 200


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base URL, model dir) of a running `transformers serve` on a free loopback port."""
    transformers_bin = PEER_VENV / "bin" / "transformers"
    if not transformers_bin.exists():
        pytest.fail(f"{transformers_bin} is missing: run scripts/test-deps.d/30-transformers-peer.sh (make test does)")
    workdir = tmp_path_factory.mktemp("peer")
    model_dir = workdir / "tiny-llama"
    subprocess.run(
        [str(PEER_VENV / "bin" / "python"), "-c", BUILD_MODEL, str(model_dir)],
        check=True, capture_output=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(workdir / "hf-home")}
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [str(transformers_bin), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
             "--device", "cpu"],
            stdout=log_file, stderr=subprocess.STDOUT, env=env,
        )
    try:
        _wait_healthy(url, proc, log)
        _warm_up(url, str(model_dir))
        yield f"{url}/v1", str(model_dir)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_streamed_chat_through_workload_execute(peer: tuple[str, str]) -> None:
    base_url, model = peer
    provider = OpenAIProvider(ProviderSettings(base_url=base_url, timeout_s=60))
    scenario = BenchmarkScenario(name="peer_chat", prompts=("load testing measures traffic",), max_tokens=MAX_TOKENS)
    try:
        records = [execute(provider, scenario, model, random.Random(i)) for i in range(3)]
    finally:
        provider.close()
    for record in records:
        assert record.ok, (record.error_kind, record.error_message)
        assert record.ttft_ms is not None and 0 < record.ttft_ms <= record.e2e_ms
        # Usage came on the finish chunk (no separate usage chunk, no [DONE]) and was taken as reported.
        assert record.output_tokens_estimated is False
        assert 1 <= record.output_tokens <= MAX_TOKENS
        assert record.input_tokens and record.input_tokens > 0
        assert record.finish_reason in ("length", "stop")


def test_non_streamed_chat_usage(peer: tuple[str, str]) -> None:
    base_url, model = peer
    provider = OpenAIProvider(ProviderSettings(base_url=base_url, timeout_s=60))
    try:
        request = ChatRequest(model=model, messages=[{"role": "user", "content": "peak traffic"}],
                              max_tokens=MAX_TOKENS, stream=False)
        record = measure(provider.chat(request), provider="openai", model=model, scenario="peer", endpoint="chat",
                         streamed=False)
    finally:
        provider.close()
    assert record.ok, (record.error_kind, record.error_message)
    assert record.ttft_ms is None
    assert record.output_tokens_estimated is False and 1 <= record.output_tokens <= MAX_TOKENS


def test_headless_locust_run_against_peer(peer: tuple[str, str], tmp_path: Path) -> None:
    base_url, model = peer
    proc = subprocess.run(
        [LOCUST, "-f", "locustfiles/chat.py", "--headless", "-u", "2", "-r", "2", "-t", "6s", "--stop-timeout", "10",
         "--host", base_url, "--model", model, "--scenario", "simple_query", "--run-name", "peer",
         "--report-dir", str(tmp_path), "--only-summary"],
        cwd=REPO, env=locust_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, (proc.stdout[-1500:], proc.stderr[-1500:])
    (result,) = json.loads((tmp_path / "peer" / "result.json").read_text())["results"]
    assert result["requests_ok"] >= 2, result
    assert result["requests_failed"] == 0, result
    assert result["ttft"]["p50"] > 0
    assert result["tokens"]["output_tokens"] > 0


def test_peer_venv_uses_cpu_torch() -> None:
    """The +cpu wheel, not a CUDA build that drags in gigabytes of nvidia-* packages."""
    out = subprocess.run(
        [str(PEER_VENV / "bin" / "python"), "-c", "import torch; print(torch.__version__)"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()
    assert out.endswith("+cpu"), out
