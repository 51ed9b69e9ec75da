"""Chat load test: `locust -f locustfiles/chat.py` (web UI) or add `--headless -u 8 -r 8 -t 30s`.

With no credentials and no --host, requests go to llmload's embedded emulator. Pick the target with
--provider {openai,anthropic,bedrock,ollama,mock}, --model, --host URL, and workloads with --scenario.
Load shapes (--load-shape step|spike|soak|sweep|breaking_point) and open-loop arrivals (--arrival-rate) come from
llmload; LLMLoadShape keeps plain -u/-r/-t runs unchanged when no --load-shape is given.
"""

from llmload.shapes import LLMLoadShape
from llmload.users import LLMUser

__all__ = ["ChatUser", "LLMLoadShape"]


class ChatUser(LLMUser):
    default_scenarios = "simple_query"
