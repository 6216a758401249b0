"""Label collection: runs local target LLMs on multiple-choice items (cloze scoring, all options of an item
in one packed row) and turns their answers into a RoutingDataset with prices. Stands on `data` and
`encoders`, beside `features`."""
from .cloze import PROMPT_FORMAT, cloze_prompt, correctness, score_items, score_items_raw
from .collect import collect_labels, collect_target, price_per_m_tokens, router_prompt
