"""Route prompts with a saved router: the chosen target, P(correct) per target and estimated cost.

    python -m experiments.route --checkpoint=runs/default/router --prompt "What is 17 * 23?"
    python -m experiments.route --checkpoint=DIR --prompts_file prompts.txt --lam 0.7

The tolerance rule (cheapest target within τ of the best P(correct); default τ = 0.2) is used unless
--lam selects the λ-utility rule. --prompts_file holds one prompt per line (blank lines skipped).
An empty --prompt, or a checkpoint that fails its checksums, stops with a one-line error (exit 2).
"""
import pathlib

from absl import flags, logging

from prefill_router import cli

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Router checkpoint directory (workdir/router).")
_PROMPT = flags.DEFINE_multi_string("prompt", [], "A prompt to route (repeatable).")
_PROMPTS_FILE = flags.DEFINE_string("prompts_file", None, "A text file with one prompt per line.")
_TOLERANCE = flags.DEFINE_float("tolerance", 0.2, "Tolerance τ of the tolerance rule.")
_LAM = flags.DEFINE_float("lam", None, "Use the λ-utility rule λ·p − (1−λ)·normalised cost instead.")
_CACHE_DIR = flags.DEFINE_string("cache_dir", None, "Cache directory for weights and features.")
flags.mark_flag_as_required("checkpoint")


def read_prompts() -> list[str]:
    prompts = list(_PROMPT.value)
    empty = [i for i, p in enumerate(prompts, 1) if not p.strip()]
    if empty:
        raise cli.UsageError(f"--prompt number {empty[0]} is empty or whitespace; give the text to route")
    if _PROMPTS_FILE.value:
        path = pathlib.Path(_PROMPTS_FILE.value)
        if not path.is_file():
            raise cli.UsageError(f"--prompts_file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as e:
            line = path.read_bytes()[:e.start].count(b"\n") + 1
            raise cli.UsageError(f"--prompts_file {path} line {line} is not UTF-8; re-save the file as UTF-8") from None
        prompts += [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise cli.UsageError("give at least one --prompt or a --prompts_file with a non-blank line")
    return prompts


def main(argv):
    del argv
    from prefill_router.predict import RouterPredictor

    logging.set_verbosity(logging.WARNING)
    prompts = read_prompts()
    predictor = RouterPredictor.load(_CHECKPOINT.value, _CACHE_DIR.value)
    choices, P, costs = predictor.route(prompts, tolerance=_TOLERANCE.value, lam=_LAM.value)
    rule = f"λ-utility (λ={_LAM.value})" if _LAM.value is not None else f"tolerance (τ={_TOLERANCE.value})"
    names = predictor.targets
    width = max(len(n) for n in names)
    for prompt, choice, p, c in zip(prompts, choices, P, costs):
        short = prompt if len(prompt) <= 70 else prompt[:67] + "..."
        print(f"\nprompt: {short}\nroute → {names[choice]}   [{rule}]")
        print(f"  {'target':<{width}}  P(correct)  est. cost ($)")
        for k, name in enumerate(names):
            mark = "*" if k == choice else " "
            print(f"{mark} {name:<{width}}  {p[k]:10.3f}  {c[k]:.3g}")


if __name__ == "__main__":
    cli.run(main)
