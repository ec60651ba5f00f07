"""GGUF files: what is in them (`inspect`), what they need in memory (`plan`), and the
sampler defaults of known model families (`families`)."""
