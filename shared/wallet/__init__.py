"""The agency-mode ad-spend wallet: a money ledger with holds, top-ups, spend debits and refunds."""
