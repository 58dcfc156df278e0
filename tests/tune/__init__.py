"""Tests of biasvar.tune (mirrors src/biasvar/tune)."""
