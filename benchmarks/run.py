"""The harness's own accuracy, capacity and memory, measured against the emulator's ground truth (``make bench``).

Three clients drive the same emulator, each in its own gevent process (as one Locust worker would), and in the
accuracy section the peer tools GuideLLM and AIPerf too, where their executables are given (``--guidellm``,
``--aiperf``; each installs offline into a venv of its own):

* ``handrolled``: the openai SDK with a ``perf_counter`` around ``create()`` and its first content chunk, the way
  a plain Locust + SDK locustfile times requests. The baseline.
* ``openai``: llmload's SDK adapter measured by ``llmload.metrics.measure``.
* ``openai-fast``: llmload's raw-SSE adapter (``--provider openai-fast``), same ``measure``.

Sections (numbers are ratios against the baseline measured in the same run, plus the raw figures):

accuracy
    TTFT/ITL p50 and p99 error against the emulator's truth as concurrency rises. Truth TTFT per request is
    ``first_content_at − received_at`` on the server; truth ITL is the emulator's per-request mean token gap.
    The client also pays connect + send (and the emulator's accept queue) before ``received_at``, so a small
    positive TTFT error is inherent.
capacity
    Users double until TTFT p99 error exceeds the limit; the last step under it gives the request rate and
    streamed chunks/s one generator process sustains, and its CPU share.
memory
    tracemalloc bytes held by llmload's aggregates (``llmload.aggregate``) after 25k, 50k, 100k and 200k requests
    of 64 tokens, against the baseline of keeping every ``RequestRecord`` (what llmload itself did before).

The emulator and the clients share the machine: on a small or busy box the emulator saturates too, and its own
queueing lands in the error figures. The JSON records ``os.getloadavg()`` and the CPU count next to the numbers.

Usage: ``python benchmarks/run.py [--quick] [--only memory|accuracy|capacity] [--guidellm PATH] [--aiperf PATH]
[--out reports/bench]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CLIENTS = ("handrolled", "openai", "openai-fast")
TTFT_ERROR_LIMIT_MS = 5.0


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100.0 * len(ordered) + 0.5) - 1))]


# --- client process ------------------------------------------------------------------------------------------------


def client_main(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``users`` closed-loop greenlets for ``duration_s`` against the emulator; print what they measured."""
    from gevent import monkey

    monkey.patch_all()
    import gevent
    import psutil

    from llmload.metrics import clock, measure
    from llmload.providers.base import ProviderSettings
    from llmload.types import ChatRequest

    kind, users, base_url = spec["client"], spec["users"], f"{spec['url']}/v1"
    tokens = spec["output_tokens"]
    messages = [{"role": "user", "content": "Summarise the plot of a long novel in detail."}]
    settings = ProviderSettings(base_url=base_url, emulated=True, timeout_s=120, connect_timeout_s=30,
                                max_connections=users)
    ttfts: list[float] = []
    gaps: list[float] = []
    failures = 0
    chunks = 0

    if kind == "handrolled":
        import httpx
        import openai

        client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=120,
                               http_client=openai.DefaultHttpxClient(limits=httpx.Limits(max_connections=users)))
        completions = client.chat.completions

        def one() -> tuple[float | None, list[float], bool]:
            start = time.perf_counter()
            first = last = None
            own_gaps: list[float] = []
            stream = completions.create(model="m", messages=messages, max_tokens=tokens, stream=True)
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    now = time.perf_counter()
                    if first is None:
                        first = now
                    else:
                        own_gaps.append((now - last) * 1000.0)  # type: ignore[operator]
                    last = now
            return (None if first is None else (first - start) * 1000.0), own_gaps, first is not None
    else:
        from llmload.providers import provider_class

        provider = provider_class(kind)(settings)
        request = ChatRequest(model="m", messages=messages, max_tokens=tokens)

        def one() -> tuple[float | None, list[float], bool]:
            record = measure(provider.chat(request), provider=kind, model="m", scenario="bench", endpoint="chat",
                             streamed=True)
            return record.ttft_ms, record.itl_ms, record.ok

    warm_until = clock() + spec["warmup_s"]
    deadline = warm_until + spec["duration_s"]
    measured_from = time.time() + spec["warmup_s"]

    def user(index: int) -> None:
        nonlocal failures, chunks
        gevent.sleep(index * spec["warmup_s"] / max(users, 1) * 0.5)  # spread the first requests like a ramp-up
        while clock() < deadline:
            started = clock()
            try:
                ttft, own_gaps, ok = one()
            except Exception:
                ok, ttft, own_gaps = False, None, []
            if started < warm_until:
                continue
            if not ok or ttft is None:
                failures += 1
                continue
            ttfts.append(ttft)
            gaps.extend(own_gaps)
            chunks += len(own_gaps) + 1

    proc = psutil.Process()
    cpu_before = sum(proc.cpu_times()[:2])
    wall_before = time.monotonic()
    gevent.joinall([gevent.spawn(user, i) for i in range(users)], timeout=spec["duration_s"] + spec["warmup_s"] + 60)
    wall = time.monotonic() - wall_before
    cpu = sum(proc.cpu_times()[:2]) - cpu_before
    return {
        "ttft_ms": ttfts,
        "itl_ms": gaps,
        "failures": failures,
        "chunks": chunks,
        "measured_from": measured_from,
        "measured_to": measured_from + spec["duration_s"],
        "cpu_share": cpu / wall if wall else 0.0,
    }


# --- orchestration -------------------------------------------------------------------------------------------------


PEER_TOKENIZER = """
import sys
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast
tok = Tokenizer(models.BPE(unk_token="<unk>"))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
tok.train_from_iterator(["load testing measures how a system behaves under expected and peak traffic"], trainer)
PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>").save_pretrained(
    sys.argv[1])
"""
"""The peers' synthetic prompts need a tokenizer; with no network, a tiny one is trained locally (it only sizes the
prompts: the emulator answers with its configured token count whatever the prompt)."""

PEERS = ("guidellm", "aiperf")
"""Peer load generators, each installed in its own venv and given by its executable (``--guidellm``, ``--aiperf``)."""


def peer_tokenizer(exe: Path) -> Path:
    """The locally trained tokenizer, built once with the peer venv's own ``tokenizers``/``transformers``."""
    import tempfile

    tokenizer = Path(tempfile.gettempdir()) / "llmload-bench-tokenizer"
    if not (tokenizer / "tokenizer.json").exists():
        subprocess.run([str(exe.parent / "python"), "-c", PEER_TOKENIZER, str(tokenizer)], check=True,
                       capture_output=True, timeout=120)
    return tokenizer


def _peer_window(starts: list[float], spec: dict[str, Any]) -> tuple[float, float]:
    """The measured window of a peer's run: from ``warmup_s`` after its first request, ``duration_s`` long."""
    measured_from = min(starts) + spec["warmup_s"]
    return measured_from, measured_from + spec["duration_s"]


def _run_peer(command: list[str], spec: dict[str, Any], name: str, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(command, capture_output=True, text=True, env=env,
                          timeout=spec["duration_s"] + spec["warmup_s"] + 240)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed: {(proc.stdout + proc.stderr)[-1500:]}")


def guidellm_client(spec: dict[str, Any]) -> dict[str, Any]:
    """GuideLLM (``guidellm run``, its own process model) at ``users`` concurrent streams against the emulator.

    Its per-request TTFT and ITL (a request's mean gap) come from its JSON output, over the same kind of window as
    the other clients: requests started ``warmup_s`` after its first request and within ``duration_s``."""
    import tempfile

    exe = Path(spec["peer"])
    tokenizer = peer_tokenizer(exe)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "guidellm.json"
        _run_peer(
            [str(exe), "run", "--backend", f"kind=openai_http,target={spec['url']},model={tokenizer}",
             "--profile", f"kind=concurrent,streams={spec['users']}",
             "--constraint", f"kind=max_duration,seconds={spec['warmup_s'] + spec['duration_s']}",
             "--data", f"kind=synthetic_text,prompt_tokens=32,output_tokens={spec['output_tokens']}",
             "--output", f"kind=json,path={out}", "--disable-console-interactive"],
            spec, "guidellm", env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        if not out.exists():
            raise RuntimeError("guidellm wrote no JSON output")
        (benchmark,) = json.loads(out.read_text())["benchmarks"]
    requests = benchmark["requests"]
    done = requests["successful"]
    measured_from, measured_to = _peer_window([r["request_start_time"] for r in done], spec)
    window = [r for r in done if measured_from <= r["request_start_time"] <= measured_to]
    return {
        "ttft_ms": [r["time_to_first_token_ms"] for r in window],
        "itl_ms": [r["inter_token_latency_ms"] for r in window if r["inter_token_latency_ms"] is not None],
        "failures": len(requests.get("errored") or []),
        "chunks": sum(r["output_tokens"] for r in window),
        "measured_from": measured_from,
        "measured_to": measured_to,
        "cpu_share": None,
    }


def aiperf_client(spec: dict[str, Any]) -> dict[str, Any]:
    """NVIDIA AIPerf (``aiperf profile``, its own worker processes) at ``users`` concurrent streams.

    Per-request TTFT and every inter-chunk gap come from its ``profile_export.jsonl``, so its ITL error compares
    gap for gap with llmload's. HF_HUB_OFFLINE stays unset: AIPerf 0.13 then looks a local tokenizer path up in the
    hub cache and fails; given a path, it never reaches the network."""
    import tempfile

    exe = Path(spec["peer"])
    tokenizer = peer_tokenizer(exe)
    with tempfile.TemporaryDirectory() as tmp:
        _run_peer(
            [str(exe), "profile", "--model", "m", "--url", spec["url"], "--endpoint-type", "chat", "--streaming",
             "--concurrency", str(spec["users"]), "--benchmark-duration", str(spec["warmup_s"] + spec["duration_s"]),
             "--tokenizer", str(tokenizer), "--prompt-input-tokens-mean", "32",
             "--prompt-output-tokens-mean", str(spec["output_tokens"]), "--output-artifact-dir", tmp,
             "--ui-type", "none", "--no-auto-plot"],
            spec, "aiperf",
        )
        export = Path(tmp) / "profile_export.jsonl"
        if not export.exists():
            raise RuntimeError("aiperf wrote no profile_export.jsonl")
        rows = [json.loads(line) for line in export.read_text().splitlines() if line.strip()]
    done = [r for r in rows if not r.get("error") and "time_to_first_token" in r["metrics"]]
    for r in done:
        r["started_at"] = r["metadata"]["request_start_ns"] / 1e9
    measured_from, measured_to = _peer_window([r["started_at"] for r in done], spec)
    window = [r for r in done if measured_from <= r["started_at"] <= measured_to]
    gaps = [g for r in window for g in (r["metrics"].get("inter_chunk_latency") or {}).get("value", [])]
    return {
        "ttft_ms": [r["metrics"]["time_to_first_token"]["value"] for r in window],
        "itl_ms": gaps,
        "failures": len(rows) - len(done),
        "chunks": len(gaps) + len(window),
        "measured_from": measured_from,
        "measured_to": measured_to,
        "cpu_share": None,
    }


def run_client(spec: dict[str, Any]) -> dict[str, Any]:
    if spec["client"] in PEERS:
        return {"guidellm": guidellm_client, "aiperf": aiperf_client}[spec["client"]](spec)
    proc = subprocess.run(
        [sys.executable, __file__, "--client-spec", json.dumps(spec)],
        cwd=REPO, capture_output=True, text=True, timeout=spec["duration_s"] + spec["warmup_s"] + 180,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark client failed: {proc.stderr[-1500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_point(emu: Any, client: str, users: int, *, duration_s: float, warmup_s: float,
                  output_tokens: int, peer: str | None = None) -> dict[str, Any]:
    emu.reset()
    spec = {"client": client, "users": users, "url": emu.url, "duration_s": duration_s, "warmup_s": warmup_s,
            "output_tokens": output_tokens, "peer": peer}
    got = run_client(spec)
    truth = [t for t in emu.truth(since=got["measured_from"] - 5)
             if t["first_content_at"] and t["tokens_sent"] == output_tokens
             and got["measured_from"] <= t["received_at"] <= got["measured_to"]]
    truth_ttft = [(t["first_content_at"] - t["received_at"]) * 1000.0 for t in truth]
    truth_itl = [(t["last_content_at"] - t["first_content_at"]) * 1000.0 / (output_tokens - 1) for t in truth]
    measured = got["ttft_ms"]
    point: dict[str, Any] = {
        "client": client,
        "users": users,
        "requests": len(measured),
        "failures": got["failures"],
        "requests_per_s": round(len(measured) / duration_s, 1),
        "chunks_per_s": round(got["chunks"] / duration_s, 1),
        "client_cpu_share": None if got["cpu_share"] is None else round(got["cpu_share"], 3),
        # CPU per streamed chunk does not depend on how much of a core a busy machine leaves the client.
        "client_cpu_us_per_chunk": round(got["cpu_share"] * duration_s / got["chunks"] * 1e6, 1)
        if got["chunks"] and got["cpu_share"] is not None else None,
    }
    for name, client_values, truth_values in (("ttft", measured, truth_ttft), ("itl", got["itl_ms"], truth_itl)):
        for q in (50, 99):
            c, t = percentile(client_values, q), percentile(truth_values, q)
            point[f"{name}_p{q}_ms"] = None if c is None else round(c, 2)
            point[f"{name}_p{q}_error_ms"] = None if c is None or t is None else round(c - t, 2)
    return point


def accuracy(user_steps: list[int], *, duration_s: float, peers: dict[str, str] | None = None,
             clients: tuple[str, ...] = CLIENTS) -> list[dict[str, Any]]:
    """``peers``: peer tool name (``PEERS``) to its executable; each runs as one more client at every step."""
    from llmload.emulator import EmulatorProcess, MockConfiguration

    points = []
    config = MockConfiguration(ttft_ms=200, itl_ms=20, output_tokens=32)
    with EmulatorProcess("openai", config) as emu:
        for users in user_steps:
            for client in (*clients, *(peers or {})):
                point = measure_point(emu, client, users, duration_s=duration_s, warmup_s=2.0, output_tokens=32,
                                      peer=(peers or {}).get(client))
                points.append(point)
                print(f"accuracy {client:>11} users={users:<5} TTFT p50/p99 err {point['ttft_p50_error_ms']}/"
                      f"{point['ttft_p99_error_ms']} ms  ITL p50/p99 err {point['itl_p50_error_ms']}/"
                      f"{point['itl_p99_error_ms']} ms  {point['requests_per_s']} req/s", flush=True)
    return points


def _within_limit(point: dict[str, Any]) -> bool:
    error = point["ttft_p99_error_ms"]
    return error is not None and error <= TTFT_ERROR_LIMIT_MS and not point["failures"]


def capacity(user_steps: list[int], *, duration_s: float) -> dict[str, Any]:
    from llmload.emulator import EmulatorProcess, MockConfiguration

    found: dict[str, Any] = {}
    config = MockConfiguration(ttft_ms=50, itl_ms=5, output_tokens=32)
    with EmulatorProcess("openai", config) as emu:
        for client in CLIENTS:
            steps = []
            for users in user_steps:
                # A step's p99 rests on a few hundred requests, so one stray hiccup of a shared machine can fail
                # it: a failed step is measured once more, and the search ends when it fails twice.
                for attempt in (1, 2):
                    point = measure_point(emu, client, users, duration_s=duration_s, warmup_s=1.5, output_tokens=32)
                    point["attempt"] = attempt
                    steps.append(point)
                    print(f"capacity {client:>11} users={users:<5} {point['requests_per_s']} req/s "
                          f"{point['chunks_per_s']} chunks/s TTFT p99 err {point['ttft_p99_error_ms']} ms "
                          f"CPU {point['client_cpu_share']} (attempt {attempt})", flush=True)
                    if _within_limit(point):
                        break
                if not _within_limit(point):
                    break
            passing = [s for s in steps if _within_limit(s)]
            best = max(passing, key=lambda s: s["requests_per_s"], default=None)
            found[client] = {"steps": steps, "sustained": best}
    return found


def memory(checkpoints: tuple[int, ...] = (25_000, 50_000, 100_000, 200_000), output_tokens: int = 64,
           baseline_count: int = 25_000) -> dict[str, Any]:
    """Bytes llmload holds as a run's request count grows, against keeping every record (the baseline).

    llmload: a ``RunAccumulator`` (what the recorder folds each record into) with the default exact-sample cap,
    measured by tracemalloc at each checkpoint. Baseline: a list of the same ``RequestRecord``s, measured at
    ``baseline_count`` and scaled linearly (it is linear; building more under tracemalloc takes minutes)."""
    import random
    import tracemalloc

    from llmload.aggregate import RunAccumulator
    from llmload.metrics import RequestRecord

    rng = random.Random(0)
    gaps = [[rng.uniform(5, 30) for _ in range(output_tokens - 1)] for _ in range(1_000)]

    def record(i: int) -> RequestRecord:
        return RequestRecord(provider="openai", model="gpt-4o-mini", scenario="simple_query", endpoint="chat",
                             started_at=1.7e9 + i * 0.01, ok=i % 100 != 0, e2e_ms=rng.uniform(500, 900),
                             # New float objects per record, as a real stream's measured gaps would be.
                             ttft_ms=rng.uniform(100, 300), itl_ms=[g + 0.0 for g in gaps[i % len(gaps)]],
                             input_tokens=40,
                             output_tokens=output_tokens, finish_reason="stop",
                             error_kind=None if i % 100 else "server_error")

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = [record(i) for i in range(baseline_count)]
    baseline_per_request = (tracemalloc.get_traced_memory()[0] - before) / baseline_count
    del kept
    before = tracemalloc.get_traced_memory()[0]
    aggregate = RunAccumulator()
    held: dict[int, int] = {}
    done = 0
    for target in checkpoints:
        while done < target:
            aggregate.add(record(done))
            done += 1
        held[target] = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    last = checkpoints[-1]
    return {
        "output_tokens_per_record": output_tokens,
        "baseline_bytes_per_request": round(baseline_per_request),
        "llmload_bytes_held": {str(n): b for n, b in held.items()},
        "baseline_bytes_held": {str(n): round(baseline_per_request * n) for n in checkpoints},
        "ratio_baseline_over_llmload_at_100k": round(baseline_per_request * 100_000 / held[100_000], 1)
        if 100_000 in held else None,
        "llmload_growth_bytes_per_request_after_100k": round((held[last] - held[100_000]) / (last - 100_000), 1)
        if 100_000 in held and last > 100_000 else None,
    }


def ratios(acc: list[dict[str, Any]], cap: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    base = cap.get("handrolled", {}).get("sustained")
    for client in ("openai", "openai-fast"):
        best = cap.get(client, {}).get("sustained")
        if base and best:
            out[f"capacity_{client}_over_handrolled"] = round(best["requests_per_s"] / base["requests_per_s"], 2)
    sdk, fast = cap.get("openai", {}).get("sustained"), cap.get("openai-fast", {}).get("sustained")
    if sdk and fast:
        out["capacity_fast_over_sdk"] = round(fast["requests_per_s"] / sdk["requests_per_s"], 2)
    for client in ("openai", "openai-fast"):
        costs = [p["client_cpu_us_per_chunk"] for p in acc if p["client"] == client and p["client_cpu_us_per_chunk"]]
        base_costs = [p["client_cpu_us_per_chunk"] for p in acc
                      if p["client"] == "handrolled" and p["client_cpu_us_per_chunk"]]
        if costs and base_costs:
            out[f"cpu_per_chunk_{client}_over_handrolled"] = round(min(costs) / min(base_costs), 2)
    for point in acc:
        for name in PEERS:
            peer = next((p for p in acc if p["client"] == name and p["users"] == point["users"]), None)
            if point["client"] == "openai-fast" and peer and peer["ttft_p99_error_ms"] and point["ttft_p99_error_ms"]:
                key = f"ttft_p99_error_openai-fast_over_{name}@{point['users']}"
                out[key] = round(point["ttft_p99_error_ms"] / peer["ttft_p99_error_ms"], 2)
        if point["client"] == "handrolled":
            continue
        baseline = next((p for p in acc if p["client"] == "handrolled" and p["users"] == point["users"]), None)
        if baseline and baseline["ttft_p99_error_ms"] and point["ttft_p99_error_ms"] is not None:
            key = f"ttft_p99_error_{point['client']}_over_handrolled@{point['users']}"
            out[key] = round(point["ttft_p99_error_ms"] / baseline["ttft_p99_error_ms"], 2)
    return out


def _peer_version(exe: str) -> str:
    """The installed version of a peer tool, read from its own venv."""
    name = Path(exe).name
    proc = subprocess.run([str(Path(exe).parent / "python"), "-c", f"import importlib.metadata as m; "
                           f"print(m.version({name!r}))"], capture_output=True, text=True, timeout=60)
    return proc.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Fewer, shorter steps (about 2 minutes)")
    parser.add_argument("--out", default=str(REPO / "reports" / "bench"), help="Folder for the JSON of numbers")
    for name in PEERS:
        parser.add_argument(f"--{name}", default=os.environ.get(f"LLMLOAD_BENCH_{name.upper()}") or shutil.which(name),
                            help=f"{name} executable, installed in its own venv (pip install {name}); adds it as a "
                            "peer client in the accuracy section")
    parser.add_argument("--only", choices=["memory", "accuracy", "capacity"],
                        help="Run only this section (e.g. accuracy, to compare peers)")
    parser.add_argument("--client-spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client_spec:
        print(json.dumps(client_main(json.loads(args.client_spec))), flush=True)
        return 0
    sys.path.insert(0, str(REPO))
    started = time.time()
    load_before = os.getloadavg()
    acc_users = [16, 64, 256] if args.quick else [16, 64, 256, 1024]
    cap_users = [2, 8, 32, 128] if args.quick else [2, 8, 32, 64, 128, 256, 512, 1024]
    duration = 4.0 if args.quick else 8.0
    peers = {name: getattr(args, name) for name in PEERS if getattr(args, name)}
    for name in sorted(set(PEERS) - set(peers)):
        print(f"{name} not found (--{name} PATH): accuracy runs without that peer", flush=True)
    mem: dict[str, Any] = {}
    acc: list[dict[str, Any]] = []
    cap: dict[str, Any] = {}
    if args.only in (None, "memory"):
        mem = memory((10_000, 100_000, 120_000) if args.quick else (25_000, 50_000, 100_000, 200_000),
                     baseline_count=10_000 if args.quick else 25_000)
        print(f"memory {mem}", flush=True)
    if args.only in (None, "accuracy"):
        acc = accuracy(acc_users, duration_s=duration, peers=peers)
    if args.only in (None, "capacity"):
        cap = capacity(cap_users, duration_s=duration)
    result = {
        "started_at": started,
        "elapsed_s": round(time.time() - started, 1),
        "quick": args.quick,
        "only": args.only,
        "peers": {name: _peer_version(exe) for name, exe in peers.items()},
        "machine": {"cpu_count": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                    "python": platform.python_version(), "platform": platform.platform()},
        "ttft_error_limit_ms": TTFT_ERROR_LIMIT_MS,
        "ratios": ratios(acc, cap),
        "accuracy": acc,
        "capacity": cap,
        "memory": mem,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["ratios"], indent=2))
    print(f"wrote {path} (load average {result['machine']['loadavg_after']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
