"""The ``llmload`` command: ``emulate``, ``report`` and the analysis commands.

Every subcommand turns llmload's own errors into one line on stderr and exit code 2; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from llmload.errors import LLMLoadError

EXIT_CONFIG_ERROR = 2

Command = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        COMMANDS[name] = fn
        return fn

    return register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmload", description="Load testing and benchmarking for LLM providers")
    parser.add_argument("--debug", action="store_true", help="Show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    emulate = sub.add_parser("emulate", help="Serve a provider emulator (openai, anthropic, bedrock, ollama, all)")
    emulate.add_argument("protocol")
    emulate.add_argument("--host", default="127.0.0.1", help="Bind address (default 127.0.0.1)")
    emulate.add_argument("--port", type=int, default=8000, help="Port (0 picks a free one)")
    emulate.add_argument("--ttft-ms", type=float, default=200.0)
    emulate.add_argument("--itl-ms", type=float, default=20.0)
    emulate.add_argument("--output-tokens", type=int, default=64)
    emulate.add_argument("--reasoning-tokens", type=int, default=0, help="Reasoning tokens streamed before each answer")
    emulate.add_argument("--jitter", type=float, default=0.0, help="Relative timing jitter, e.g. 0.1")
    emulate.add_argument("--error-rate", type=float, default=0.0)
    emulate.add_argument("--faults", default="", help="Fault weights, e.g. rate_limited=1,disconnect=1")
    emulate.add_argument("--retry-after-s", type=float, default=1.0)
    emulate.add_argument("--stall-ms", type=float, default=2000.0)
    emulate.add_argument("--concurrency-limit", type=int, default=0, help="Queue requests beyond this many")
    emulate.add_argument("--quality", type=float, default=1.0, help="Probability of a correct answer")
    emulate.add_argument("--seed", type=int, default=0)
    emulate.add_argument("--config-json", default="", help="A full MockConfiguration as JSON (overrides the flags)")

    report = sub.add_parser("report", help="Write an HTML comparison report from run folders")
    report.add_argument("runs", nargs="+", help="Run folders or result.json files")
    report.add_argument("-o", "--output", default="reports/report.html")

    from llmload import cli_extra

    cli_extra.add_subcommands(sub)
    return parser


@command("emulate")
def _emulate(args: argparse.Namespace) -> int:
    from llmload.emulator.config import MockConfiguration, parse_faults
    from llmload.emulator.server import protocol_classes, run_forever

    protocol_classes(args.protocol)
    if args.config_json:
        config = MockConfiguration.from_dict(json.loads(args.config_json))
    else:
        config = MockConfiguration(
            ttft_ms=args.ttft_ms,
            itl_ms=args.itl_ms,
            output_tokens=args.output_tokens,
            reasoning_tokens=args.reasoning_tokens,
            jitter=args.jitter,
            error_rate=args.error_rate,
            fault_weights=parse_faults(args.faults) if args.faults else {"server_error": 1.0},
            retry_after_s=args.retry_after_s,
            stall_ms=args.stall_ms,
            concurrency_limit=args.concurrency_limit,
            quality=args.quality,
            seed=args.seed,
        )
    run_forever(args.protocol, config, args.host, args.port)
    return 0


@command("report")
def _report(args: argparse.Namespace) -> int:
    from llmload.recommend import report_sections
    from llmload.report import write_report
    from llmload.results import RunResult

    runs = [RunResult.load(Path(p)) for p in args.runs]
    path = write_report(runs, Path(args.output), extra_sections=report_sections(runs))
    print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except LLMLoadError as exc:
        if args.debug:
            raise
        print(f"llmload: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except KeyboardInterrupt:
        return 130
