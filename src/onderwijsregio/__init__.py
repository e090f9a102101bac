"""Onderwijsregio API v2: an open implementation of the education regions' candidate API."""

__version__ = "0.1.0"
