"""Run the emulator standalone: `python -m tests.local.stripe_emulator --port 12111 --webhook-url URL`."""

from __future__ import annotations

import argparse
import threading

from .emulator import StripeEmulator


def main() -> None:
    parser = argparse.ArgumentParser(description="Local Stripe emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--api-key", default="sk_test_local")
    parser.add_argument("--webhook-secret", default="whsec_local")
    parser.add_argument("--webhook-url", default=None, help="where signed events are POSTed")
    parser.add_argument(
        "--strict-contract", action="store_true", help="answer 500 for objects outside the API version's contract"
    )
    args = parser.parse_args()
    emulator = StripeEmulator(
        api_key=args.api_key,
        webhook_secret=args.webhook_secret,
        webhook_url=args.webhook_url,
        strict_contract=args.strict_contract,
    )
    base_url = emulator.start(host=args.host, port=args.port)
    print(f"Stripe emulator on {base_url} (api key {args.api_key}, webhook secret {args.webhook_secret})", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
