"""Analysis tools: statistics over seeds (more come with the studies)."""
