"""The LLMRouter rows of a config, written in RouterBench's wide layout (no RouterBench data is stored here).

    PYTHONPATH=. python benchmarks/cross_attention_routerbench_layout.py OUT.csv [CONFIG_SPEC]

CONFIG_SPEC (default ``configs/cross_attention.py:source=llmrouter,max_train=1000``) selects the rows: its
de-duplicated, subsampled LLMRouter dataset (train and test rows; the RouterBench loader has no split, so the
pipeline re-splits them). Columns as RouterBench publishes them, behind a pandas-style unnamed index column:
sample_id (``<task>.<row>``), prompt (a one-turn list literal), eval_name (task), one raw score column per
target (the loader thresholds them as the LLMRouter loader does). LLMRouter has neither responses nor realised
costs, so there are no '<model>|model_response' / '<model>|total_cost' columns: run with the LLMRouter prices,

    --config.data.source=routerbench --config.data.path=OUT.csv
    --config.data.prices=$PREFILL_ROUTER_DATA/routing/llmrouter_dcrouter/default_llm.json

Prompts are the rendered LLMRouter prompts, so the feature store and the sentence-embedding cache serve them.
"""
import csv
import io
import pathlib
import sys

from common import REPO, load_config

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from prefill_router import fileio, stages  # noqa: E402


def main():
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__.split("\n\n")[1])
    out = pathlib.Path(sys.argv[1])
    spec = sys.argv[2] if len(sys.argv) == 3 else "configs/cross_attention.py:source=llmrouter,max_train=1000"
    config = load_config(spec)
    if config.data.source != "llmrouter":
        raise SystemExit(f"{spec}: data.source is {config.data.source!r}; this script writes LLMRouter rows")
    ds = stages.load_routing_data(config)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["", "sample_id", "prompt", "eval_name", *ds.targets])
    for i in range(ds.num_rows):
        scores = ["" if s != s else f"{s:.6g}" for s in ds.scores[i].tolist()]  # NaN (missing) -> empty cell
        w.writerow([i, f"{ds.tasks[i]}.{i}", repr([ds.prompts[i]]), ds.tasks[i], *scores])
    fileio.atomic_write_text(out, buf.getvalue())
    print(f"wrote {out}: {ds.num_rows} LLMRouter rows x {ds.num_targets} targets in RouterBench layout")


if __name__ == "__main__":
    main()
