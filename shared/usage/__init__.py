"""Usage allowances (workflow runs, SDK events, media storage) and period-end overage billing."""
