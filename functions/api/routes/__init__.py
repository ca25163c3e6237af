"""One Router per resource; handler.py includes them all."""
