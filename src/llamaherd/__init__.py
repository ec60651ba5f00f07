"""llamaherd: run local LLMs with llama.cpp and keep them manageable."""

__version__ = "0.1.0"
