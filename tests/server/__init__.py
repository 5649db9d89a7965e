"""Tests of the kefu server, against the real server on a free port."""
