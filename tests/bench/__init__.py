"""`make bench`: benchmarks and the cost model, measured side by side against DynamoDB Local."""
