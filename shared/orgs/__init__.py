"""Orgs, members (seats) and projects: the aggregate every billing feature hangs off."""
