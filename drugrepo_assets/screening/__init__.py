"""The repurposing matrix: library shards × target blocks, scored, merged and explained."""
