"""How alike a model's answers to the same prompt are: the mean pairwise similarity of N repeated answers.

Default measure: the mean of token-level Jaccard overlap and ROUGE-L F1 (longest common token subsequence), both in
[0, 1], so that a reworded answer with the same content scores high and a different answer scores low. With an
embeddings provider, :func:`embedding_consistency` uses the mean pairwise cosine of the answers' embeddings instead.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from llmload.cli import command
from llmload.errors import ConfigError
from llmload.metrics import measure
from llmload.providers.base import Provider
from llmload.types import ChatRequest

DEFAULT_REPEATS = 10
_TOKEN = re.compile(r"\w+", re.UNICODE)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def jaccard(a: str, b: str) -> float:
    """Token-set overlap |A∩B| / |A∪B|; two empty answers are identical."""
    set_a, set_b = set(tokens(a)), set(tokens(b))
    if not set_a and not set_b:
        return 1.0
    return len(set_a & set_b) / len(set_a | set_b)


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F1 over word tokens: 2·LCS / (len(a) + len(b))."""
    ta, tb = tokens(a), tokens(b)
    if not ta and not tb:
        return 1.0
    if not ta or not tb:
        return 0.0
    previous = [0] * (len(tb) + 1)
    for x in ta:
        current = [0]
        for j, y in enumerate(tb, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return 2.0 * previous[-1] / (len(ta) + len(tb))


def text_similarity(a: str, b: str) -> float:
    return (jaccard(a, b) + rouge_l(a, b)) / 2.0


MAX_SCORED_ANSWERS = 50
"""Pairs grow quadratically; the first 50 answers (1,225 pairs) estimate the mean well and stay fast."""


def consistency_score(answers: Sequence[str]) -> float | None:
    """Mean pairwise text similarity of ``answers`` (the first MAX_SCORED_ANSWERS); None with fewer than two."""
    answers = answers[:MAX_SCORED_ANSWERS]
    if len(answers) < 2:
        return None
    pairs = list(itertools.combinations(answers, 2))
    return sum(text_similarity(a, b) for a, b in pairs) / len(pairs)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / norm if norm else 0.0


def embedding_consistency(vectors: Sequence[Sequence[float]]) -> float | None:
    """Mean pairwise cosine similarity of answer embeddings; None with fewer than two."""
    if len(vectors) < 2:
        return None
    pairs = list(itertools.combinations(vectors, 2))
    return sum(cosine(a, b) for a, b in pairs) / len(pairs)


Embedder = Callable[[list[str]], list[list[float]]]


def provider_embedder(provider: Provider, model: str) -> Embedder:
    """Embed texts through the provider's SDK embeddings client (the OpenAI adapter exposes ``embeddings``).

    The adapter's ``embed`` only reports how many vectors came back (it measures, it does not keep them), so the
    vectors are read from the SDK's response here."""
    client = getattr(provider, "embeddings", None)
    if client is None:
        raise ConfigError(f"provider '{provider.name}' has no embeddings client; drop --embedding-model")

    def embed(texts: list[str]) -> list[list[float]]:
        response = client.create(model=model, input=texts, encoding_format="float")
        return [list(item.embedding) for item in response.data]

    return embed


def measure_consistency(
    provider: Provider,
    model: str,
    prompt: str,
    *,
    repeats: int = DEFAULT_REPEATS,
    max_tokens: int = 128,
    temperature: float | None = None,
    embedder: Embedder | None = None,
) -> dict[str, float | int | str | None]:
    """Send ``prompt`` ``repeats`` times, one after another, and score how alike the answers are."""
    answers = []
    failed = 0
    for _ in range(repeats):
        request = ChatRequest(model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
                              stream=True, temperature=temperature)
        record = measure(provider.chat(request), provider=provider.name, model=model, scenario="consistency",
                         endpoint="chat", streamed=True)
        if record.ok:
            answers.append(record.text)
        else:
            failed += 1
    method = "embedding_cosine" if embedder is not None else "token_jaccard_rouge_l"
    score = embedding_consistency(embedder(answers)) if embedder is not None and len(answers) > 1 else None
    if embedder is None:
        score = consistency_score(answers)
    return {"consistency": score, "method": method, "answers": len(answers), "failed": failed}


def add_subcommand(subparsers: Any) -> None:
    p = subparsers.add_parser("consistency", help="Send one prompt N times and score how alike the answers are")
    p.add_argument("--provider", default="openai")
    p.add_argument("--model", default="", help="Model id (default: the provider's default model)")
    p.add_argument("--host", default="", help="Base URL (default: the provider's credentials, else the emulator)")
    p.add_argument("--prompt", default="", help="The prompt to repeat (default: the consistency scenario's)")
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help=f"Answers to compare (default "
                                                                         f"{DEFAULT_REPEATS})")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--embedding-model", default="",
                   help="Score by embedding cosine through this embeddings model instead of token overlap")


@command("consistency")
def _consistency(args: argparse.Namespace) -> int:
    from llmload.emulator.server import EmulatorProcess
    from llmload.providers import provider_class
    from llmload.providers.base import ProviderSettings, validate_base_url
    from llmload.secrets import read_secret
    from llmload.tasks import CONSISTENCY_PROMPT

    if args.repeats < 2:
        raise ConfigError("--repeats must be >= 2: consistency compares answers with each other")
    cls = provider_class(args.provider)
    with contextlib.ExitStack() as stack:
        # Same target rule as a load run: --host, else the provider's credentials, else the embedded emulator.
        emulated = not args.host and not cls.has_credentials() and cls.emulator_protocol is not None
        api_key = read_secret(cls.api_key_env) if cls.api_key_env and not emulated else None
        base_url = validate_base_url(args.host, args.provider) if args.host else None
        if emulated:
            base_url = cls.emulator_base_url(stack.enter_context(EmulatorProcess("all")).url)
        provider = cls(ProviderSettings(base_url=base_url, api_key=api_key, timeout_s=60.0, emulated=emulated))
        stack.callback(provider.close)
        embedder = provider_embedder(provider, args.embedding_model) if args.embedding_model else None
        outcome = measure_consistency(provider, args.model or cls.default_model, args.prompt or CONSISTENCY_PROMPT,
                                      repeats=args.repeats, temperature=args.temperature, embedder=embedder)
    print(json.dumps(outcome))
    return 0
