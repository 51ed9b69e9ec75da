"""Embeddings load test: `locust -f locustfiles/embeddings.py --headless -u 8 -r 8 -t 30s`.

Each request embeds the scenario's batch of passages. With no --model, the provider's default embedding model is
used (openai: text-embedding-3-small; bedrock: amazon.titan-embed-text-v2:0, or pass a cohere.* model id).
Embeddings stream nothing, so only e2e latency and throughput are reported, no TTFT/ITL.
Load shapes (--load-shape step|spike|soak|sweep|breaking_point) and open-loop arrivals (--arrival-rate) work as in
chat.py; LLMLoadShape keeps plain -u/-r/-t runs unchanged when no --load-shape is given.
"""

from llmload.shapes import LLMLoadShape
from llmload.users import LLMUser

__all__ = ["EmbeddingsUser", "LLMLoadShape"]


class EmbeddingsUser(LLMUser):
    default_scenarios = "embedding_generation"
