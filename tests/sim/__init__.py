"""A seeded simulation of orgs' lives with injected faults (TigerBeetle's VOPR idea): `make sim`, and a
CI-sized run in `make test` (tests/sim/test_simulation.py). See tests/sim/README.md."""
