"""GGUF files: what is in them (`header`), what they need in memory (`plan`, `budget`),
the sampler defaults of known model families (`families`), and writing them (`write`:
the atomic writer and the demo tokenizer; `synth`: models of any shape for tests)."""
