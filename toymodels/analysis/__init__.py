"""Analysis tools: statistics over seeds; representation similarity, probes and weight stats (similarity.py)."""
