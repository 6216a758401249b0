"""prefill_router: predict, from an encoder LLM's prefill residual stream, which target LLM answers a prompt."""

__version__ = "0.1.0"
