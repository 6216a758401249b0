"""Routing data: the RoutingDataset container, loaders for real routing sets, leak-proof splits,
per-prompt costs and dataset statistics."""
from .dataset import SPLIT_NAMES, UNASSIGNED, RoutingDataset
from .splits import (assign_splits, carve_validation, check_no_leak, deduplicate, drop_test_twins,
                     normalise_prompt, question_stem, split_overlap, stem_key, twins_of)
from .costs import (DEFAULT_OUTPUT_TOKENS, PriceTable, estimate_input_tokens, expected_output_tokens,
                    per_prompt_costs)
from .loaders import (load_dataset, load_llmrouter, load_long_format, load_routellm, load_routerbench,
                      render_llmrouter_prompt, render_multiple_choice)
from .stats import dataset_stats, format_stats_markdown, write_stats
from .synthetic import LOCAL_TARGETS_DIFFICULTIES, LOCAL_TARGETS_MIX, MCItem, generate_items
