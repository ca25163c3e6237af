"""Daily reconciliation (issue 18): our books checked against Stripe, the ad platforms and themselves."""
