"""``llmvec serve [MODEL]``: the server's flags, checked before the model loads."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from llmvec.serving import API_KEY_ENV
from llmvec.validation import check_positive

_EXAMPLES = f"""\
examples:
  llmvec serve all-minilm-l6-v2
  llmvec serve smollm2 --template ke --port 8081 --max-wait-ms 5
  {API_KEY_ENV}=secret llmvec serve runs/sup --host 0.0.0.0
  curl -s localhost:8080/v1/embeddings -H 'Content-Type: application/json' \\
      -d '{{"input": ["a sentence"], "input_type": "query", "dimensions": 256}}'
"""


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` subcommand's own flags (the encoder's are added by the CLI)."""
    parser.epilog = _EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "served", nargs="?", metavar="MODEL", help="the model to serve (same as --model)"
    )
    net = parser.add_argument_group("server")
    net.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1: loopback)")
    net.add_argument("--port", type=int, default=8080, help="port (8080)")
    net.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"clients must send it as a bearer token (default: ${API_KEY_ENV}; none: open)",
    )
    net.add_argument("--served-model-name", help="the model name clients send (default: MODEL)")
    net.add_argument(
        "--drain-timeout", type=float, default=30.0, help="seconds SIGTERM waits for requests (30)"
    )
    batching = parser.add_argument_group("dynamic batching")
    batching.add_argument(
        "--max-batch-tokens",
        type=int,
        default=16384,
        help="close a batch of requests at this many tokens (16384)",
    )
    batching.add_argument(
        "--max-wait-ms",
        type=float,
        default=0.0,
        help="how long a batch's first request waits for others (0: none; requests that "
        "arrive while a batch runs form the next one)",
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-inputs", type=int, default=2048, help="texts per request (2048)")
    limits.add_argument(
        "--max-input-chars", type=int, default=200_000, help="characters per text (200000)"
    )
    limits.add_argument(
        "--max-request-bytes", type=int, default=16 * 1024 * 1024, help="request body size (16 MiB)"
    )
    limits.add_argument(
        "--no-truncate",
        action="store_true",
        help="answer 400 to a text over --max-length tokens instead of cutting it",
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        help="JSON of per-dimension [low, high] ranges (llmvec.compress.calibrate) for int8 / "
        "uint8 output",
    )


def read_calibration(path: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``[[low...], [high...]]`` from a JSON file, checked for shape and numbers."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read the calibration {str(path)!r}: {error}") from None
    ok = (
        isinstance(data, list)
        and len(data) == 2
        and all(isinstance(row, list) and row for row in data)
        and len(data[0]) == len(data[1])
        and all(isinstance(v, int | float) and not isinstance(v, bool) for row in data for v in row)
    )
    if not ok:
        raise ValueError(
            f"the calibration {str(path)!r} must be [[low, ...], [high, ...]] with one number per "
            "dimension in each (json.dump(llmvec.compress.calibrate(sample), file))"
        )
    return tuple(float(v) for v in data[0]), tuple(float(v) for v in data[1])


def serve_from_args(args: argparse.Namespace, encoder_kwargs: dict[str, Any]) -> None:
    """Check the flags, load the encoder, serve until a signal drains the server."""
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be between 1 and 65535, got {args.port}")
    for name in ("max_batch_tokens", "max_inputs", "max_input_chars", "max_request_bytes"):
        check_positive(f"--{name.replace('_', '-')}", getattr(args, name))
    if args.max_wait_ms < 0:
        raise ValueError(f"--max-wait-ms must not be negative, got {args.max_wait_ms}")
    if args.drain_timeout < 0:
        raise ValueError(f"--drain-timeout must not be negative, got {args.drain_timeout}")
    calibration = None if args.calibration is None else read_calibration(args.calibration)

    from llmvec.encoder import Encoder
    from llmvec.serving.app import ServerConfig, build_app
    from llmvec.serving.protocol import Limits
    from llmvec.serving.server import serve

    encoder = Encoder(**encoder_kwargs)
    if calibration is not None and len(calibration[0]) != encoder.dim:
        raise ValueError(
            f"the calibration covers {len(calibration[0])} dimensions; the model gives "
            f"{encoder.dim}"
        )
    config = ServerConfig(
        model_name=args.served_model_name,
        api_key=args.api_key or None,
        limits=Limits(
            max_inputs=args.max_inputs,
            max_input_chars=args.max_input_chars,
            max_request_bytes=args.max_request_bytes,
            truncate=not args.no_truncate,
        ),
        max_batch_tokens=args.max_batch_tokens,
        max_wait_s=args.max_wait_ms / 1000,
        calibration=calibration,
    )
    serve(build_app(encoder, config), args.host, args.port, args.drain_timeout)
