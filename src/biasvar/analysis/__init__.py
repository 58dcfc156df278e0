"""Diagnosis: learning and complexity curves, the bias-variance decomposition and the verdict."""
