"""Where a model runs: GPU probing, the memory estimate from the GGUF header, and the placement plan."""
