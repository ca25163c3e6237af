"""Generation credits: pooled per org per Stripe period, reservations, credit packs, overage."""
