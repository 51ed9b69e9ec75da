"""Chat load test: `locust -f locustfiles/chat.py` (web UI) or add `--headless -u 8 -r 8 -t 30s`.

With no credentials and no --host, requests go to llmload's embedded emulator. Pick the target with
--provider {openai,anthropic,bedrock,ollama,mock}, --model, --host URL, and workloads with --scenario.
"""

from llmload.users import LLMUser


class ChatUser(LLMUser):
    default_scenarios = "simple_query"
