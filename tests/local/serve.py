"""`make serve`: the local stack plus the local HTTP API, until Ctrl-C.

python -m tests.local.serve [--port 8787]
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Sequence

from tests.local import devtokens
from tests.local.stack import start_local_stack


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the billing API locally.")
    parser.add_argument("--port", type=int, default=8787)
    args = parser.parse_args(argv)

    with start_local_stack() as stack:
        stack.apply_env()  # before the API imports any handler module
        _, base_url = stack.serve_api(port=args.port)
        token = devtokens.mint("user_dev", email="dev@example.com")
        print(f"Layers Billing local API: {base_url}")
        print(f"  Swagger UI : {base_url}/swagger")
        print(f"  OpenAPI    : {base_url}/openapi.json")
        print(f"  DynamoDB   : {stack.dynamodb_endpoint}   moto: {stack.moto_endpoint}")
        print(f"  Stripe     : {stack.env['STRIPE_API_BASE']} (emulator; webhooks -> {base_url}/webhooks/stripe)")
        print("\nDev token (user_dev, 1 hour):")
        print(token)
        print(f'\n  curl -H "Authorization: Bearer $TOKEN" {base_url}/v1/...')
        print("More tokens: make token USER_ID=user_123 GROUPS=support")
        print("Ctrl-C to stop.", flush=True)
        try:
            threading.Event().wait()  # block; the API runs in its own thread
        except KeyboardInterrupt:
            print("\nStopping...")


if __name__ == "__main__":
    main()
