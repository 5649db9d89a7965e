"""Tests of the visitor client and CLI."""
