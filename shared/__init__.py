"""Layers Billing domain package: models, services, repositories, gateways, observability."""
