"""A stateful local Stripe emulator for tests and the local stack (see README.md)."""

from .emulator import StripeEmulator
from .webhooks import Delivery

__all__ = ["Delivery", "StripeEmulator"]
