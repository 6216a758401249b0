"""The `transfer` experiment: how well each encoder's prefill states predict each local target's correctness.

Labels come from local targets (``data.source='collect'``: generated multiple-choice items, cloze-scored by
each target). Encoders default to the same models, so the diagonal of the encoder x target matrix is "the
target's own hidden states". For every encoder and readout control:

  1. extract pooled per-layer features of the router prompts (cached, resumable: features/extract.py);
  2. on TRAINING rows only: CV-AUC [L, K, P] of StandardScaler -> PCA(p) -> LogisticRegression(C)
     (`probes.cv_auc`); per target k pick (l*, p*) = argmax over layers and PCA widths;
  3. refit that probe on all training rows with a label for k, score the TEST rows once:
     test ROC-AUC with a 95 % percentile bootstrap CI over test prompts.

Readout controls = pooling x template:
  pooling  'last' (hidden state of the final prompt token) | 'mean' (mean over all prompt tokens);
  template 'chat'          the chat template with the generation prompt (the default rendering), so the
                           last token is the end of the assistant header ('<|im_start|>assistant\\n');
           'no_gen_prompt' the same template rendered with template_kwargs add_generation_prompt=False: the
                           prompt ends with the end of the user turn ('<|im_end|>\\n' for ChatML);
           'raw'           the bare router prompt, no template at all (BOS per the tokenizer's rule).
  An encoder without a chat template (Gemma-3-270M base) renders all three identically; its features are
  then reused and the cell is flagged ``same_as_chat``.

Own vs foreign: for each target whose model is also an encoder, the paired bootstrap difference
own - foreign of test AUC (same resamples of the test prompts), per foreign encoder.

Workdir: config.json, transfer.json (everything), metrics.json (headline matrix), report.md, plots/.
The stages live in `prefill_router.stages.transfer`.
"""
import pathlib

from absl import logging

from prefill_router import stages
from prefill_router.evaluation import plots as plots_lib
from prefill_router.stages import transfer


def run(config, workdir: pathlib.Path) -> dict:
    transfer.check_config(config)
    timings = {}
    (workdir / "plots").mkdir(exist_ok=True)
    with stages.stage("data", timings):
        ds, train, test, _, _ = stages.load_split(config)
        logging.info("dataset %s: %d prompts x %d targets (%s); %d train / %d test", ds.name, ds.num_rows,
                     ds.num_targets, ", ".join(ds.targets), len(train), len(test))

    controls = transfer.controls(config)
    with stages.stage("features_and_probes", timings):
        cells, info = transfer.transfer_cells(config, ds, train, test)

    with stages.stage("own_vs_foreign", timings):
        paired = {c: transfer.own_vs_foreign(cells, ds, config.encoders, c, config.eval.n_boot, config.seed)
                  for c in controls}

    result = transfer.summarize(config, ds, controls, cells, info, paired, train, test)
    result["timings_s"] = timings
    with stages.stage("report", timings):
        result["plots"] = []
        for c in controls:
            name = f"transfer_{c.replace('/', '_')}.png"
            plots_lib.plot_transfer_matrix(workdir / "plots" / name, result["matrices"][c], c)
            result["plots"].append(f"plots/{name}")
    stages.write_json(workdir / "transfer.json", result)
    metrics = {"headline": {c: {"auc": result["matrices"][c]["auc"], "encoders": list(config.encoders),
                                "targets": ds.targets, "summary": result["summary"][c]} for c in controls},
               "timings_s": timings}
    transfer.write_report(workdir, config, ds, controls, result)
    stages.write_json(workdir / "metrics.json", metrics)  # last: marks a complete run
    return metrics
