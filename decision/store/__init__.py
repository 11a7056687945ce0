"""State in Redis: profiles (written upstream), counters and logs (ours)."""
