"""Subscriptions through Stripe: checkout, seats, plan changes with proration, webhooks, dunning."""
